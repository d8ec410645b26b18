//! The agentOS actor driven by the official Rust client (rivetkit-client
//! 2.3.19) and by raw gateway HTTP calls, against the real engine, host,
//! sidecar and WASM command set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use serde_json::{Value, json};
use testkit::{Gateway, bytes_of, uint8array, unique_key};

const ACTOR: &str = "agentOS";

#[tokio::test]
async fn files_and_exec_through_the_rust_client() {
    let client = testkit::client();
    let handle = client
        .get_or_create(ACTOR, vec![unique_key("rs-files")], GetOrCreateOptions::default())
        .unwrap();

    handle.action("writeFile", vec![json!("/tmp/t.txt"), json!("text content")]).await.unwrap();
    let read = handle.action("readFile", vec![json!("/tmp/t.txt")]).await.unwrap();
    assert_eq!(bytes_of(&read), b"text content");

    let binary: Vec<u8> = (0..=255u8).rev().collect();
    handle.action("writeFile", vec![json!("/tmp/b.bin"), uint8array(&binary)]).await.unwrap();
    let read = handle.action("readFile", vec![json!("/tmp/b.bin")]).await.unwrap();
    assert_eq!(bytes_of(&read), binary);

    handle.action("mkdir", vec![json!("/tmp/d/e/f")]).await.unwrap();
    let names = handle.action("readdir", vec![json!("/tmp/d/e")]).await.unwrap();
    assert_eq!(names, json!(["f"]));
    let entries = handle.action("readdirEntries", vec![json!("/tmp/d")]).await.unwrap();
    assert_eq!(entries, json!([{ "name": "e", "isDirectory": true, "isSymbolicLink": false }]));

    let stat = handle.action("stat", vec![json!("/tmp/b.bin")]).await.unwrap();
    assert_eq!(stat["size"], json!(256));
    assert_eq!(stat["isDirectory"], json!(false));
    assert!(stat["mtimeMs"].as_f64().unwrap() > 1.0e12, "mtime is epoch ms: {stat}");

    assert_eq!(handle.action("exists", vec![json!("/tmp/b.bin")]).await.unwrap(), json!(true));
    handle.action("move", vec![json!("/tmp/b.bin"), json!("/tmp/d/moved.bin")]).await.unwrap();
    assert_eq!(handle.action("exists", vec![json!("/tmp/b.bin")]).await.unwrap(), json!(false));
    handle.action("deleteFile", vec![json!("/tmp/d/moved.bin")]).await.unwrap();
    assert_eq!(handle.action("exists", vec![json!("/tmp/d/moved.bin")]).await.unwrap(), json!(false));

    let out = handle.action("exec", vec![json!("echo hi")]).await.unwrap();
    assert_eq!(out, json!({ "exitCode": 0, "stdout": "hi\n", "stderr": "" }));
    let out = handle
        .action(
            "exec",
            vec![json!("cat t.txt; echo \" $GREETING\"; exit 3"), json!({ "cwd": "/tmp", "env": { "GREETING": "hey" } })],
        )
        .await
        .unwrap();
    assert_eq!(out["exitCode"], json!(3));
    assert_eq!(out["stdout"], json!("text content hey\n"));
}

#[tokio::test]
async fn vm_booted_reaches_a_connection() {
    let client = testkit::client();
    let handle = client
        .get_or_create(ACTOR, vec![unique_key("rs-events")], GetOrCreateOptions::default())
        .unwrap();
    let conn = handle.connect();
    let seen: Arc<Mutex<Vec<Vec<Value>>>> = Arc::default();
    let sink = seen.clone();
    let _subscription = conn
        .on_event("vmBooted", move |args: &Vec<Value>| sink.lock().unwrap().push(args.clone()))
        .await;
    // The first VM action on the connection boots the VM.
    conn.action("exists", vec![json!("/")]).await.unwrap();
    let events = testkit::eventually(Duration::from_secs(30), "vmBooted", || {
        let seen = seen.clone();
        async move {
            let events = seen.lock().unwrap().clone();
            (!events.is_empty()).then_some(events)
        }
    })
    .await;
    assert_eq!(events[0], vec![json!({})]);
    conn.disconnect().await;
}

#[tokio::test]
async fn errors_are_public_structured_and_name_what_was_wrong() {
    let gateway = Gateway::new(ACTOR, &unique_key("rs-errors")).unwrap();

    let err = gateway.action("readFile", vec![json!("/no/such/file")]).await.unwrap_err();
    assert_eq!((err.group.as_str(), err.code.as_str()), ("user", "ENOENT"), "{err:?}");
    assert!(err.message.contains("/no/such/file"), "{err:?}");
    assert_eq!(err.metadata.as_ref().unwrap()["path"], json!("/no/such/file"));

    let err = gateway.action("frobnicate", vec![]).await.unwrap_err();
    assert_eq!((err.group.as_str(), err.code.as_str()), ("user", "action_not_found"), "{err:?}");
    assert!(err.message.contains("`frobnicate`"), "{err:?}");

    let cases: &[(&str, Vec<Value>, &str)] = &[
        ("readFile", vec![json!(7)], "`path`"),
        ("readFile", vec![], "`path`"),
        ("writeFile", vec![json!("/tmp/x"), json!(true)], "`content`"),
        ("writeFile", vec![json!("/tmp/x"), json!(["$Uint8Array", "***"])], "`content`"),
        ("mkdir", vec![json!("/tmp/x"), json!({ "recursive": "yes" })], "`options.recursive`"),
        ("mkdir", vec![json!("/tmp/x"), json!({ "parents": true })], "`options.parents`"),
        ("move", vec![json!("/a")], "`to`"),
        ("exec", vec![json!("true"), json!({ "env": { "A": 1 } })], "`options.env.A`"),
        ("exists", vec![json!("/"), json!("/extra")], "too many arguments"),
    ];
    for (action, args, needle) in cases {
        let err = gateway.action(action, args.clone()).await.unwrap_err();
        assert_eq!(
            (err.group.as_str(), err.code.as_str()),
            ("user", "invalid_argument"),
            "{action} {args:?}: {err:?}"
        );
        assert!(err.message.contains(needle), "{action} {args:?}: message {:?} lacks {needle}", err.message);
    }

    // Errors lose nothing: the actor still works afterwards.
    assert_eq!(gateway.action("exists", vec![json!("/tmp")]).await.unwrap(), json!(true));
}

#[tokio::test]
async fn relative_paths_are_rejected_clearly() {
    let gateway = Gateway::new(ACTOR, &unique_key("rs-relative")).unwrap();
    let err = gateway.action("readFile", vec![json!("relative/path")]).await.unwrap_err();
    assert_eq!(err.group, "user");
    assert_eq!(err.code, "invalid_argument", "{err:?}");
    assert!(err.message.contains("relative/path"), "{err:?}");
}

#[tokio::test]
async fn raw_http_without_a_route_is_a_json_404() {
    let gateway = Gateway::new(ACTOR, &unique_key("rs-http")).unwrap();
    let response = gateway.http().get(gateway.url("/request/nothing-here")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], json!("not_found"));
}
