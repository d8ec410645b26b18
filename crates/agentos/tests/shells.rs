//! Interactive shells (PTY) driven by the official Rust client against the
//! real engine, host, sidecar and WASM command set (brush as `sh`).
//!
//! The VM hands input to a shell only when the guest next reads, which at an
//! idle prompt takes up to ~10 s, so these tests type few lines and wait
//! generously (bounded) for output.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use rivetkit_client::connection::ActorConnection;
use serde_json::{Value, json};
use testkit::{Gateway, bytes_of, unique_key};

const ACTOR: &str = "agentOS";
const OUTPUT_LIMIT: Duration = Duration::from_secs(90);

/// Shell events one connection received, in arrival order.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Value)>>>);

impl Events {
    async fn subscribe(conn: &ActorConnection) -> Self {
        let events = Self::default();
        for name in ["shellData", "shellStderr", "shellExit"] {
            let sink = events.0.clone();
            conn.on_event(name, move |args: &Vec<Value>| {
                sink.lock().unwrap().push((name.to_owned(), args[0].clone()));
            })
            .await;
        }
        events
    }

    fn of(&self, name: &str, shell: &Value) -> Vec<Value> {
        let all = self.0.lock().unwrap();
        all.iter().filter(|(n, v)| n == name && &v["shellId"] == shell).map(|(_, v)| v.clone()).collect()
    }

    /// The terminal output (`shellData`) of `shell` after `after`, as text.
    fn text(&self, shell: &Value, after: u64) -> String {
        let data: Vec<u8> = self
            .of("shellData", shell)
            .iter()
            .filter(|v| v["seq"].as_u64().unwrap() > after)
            .flat_map(|v| bytes_of(&v["data"]))
            .collect();
        String::from_utf8_lossy(&data).into_owned()
    }

    async fn wait_text(&self, shell: &Value, after: u64, needle: &str) -> String {
        testkit::eventually(OUTPUT_LIMIT, &format!("`{needle}` in shellData"), || {
            let text = self.text(shell, after);
            async move { text.contains(needle).then_some(text) }
        })
        .await
    }
}

fn replay_text(replay: &Value) -> String {
    let data: Vec<u8> = replay["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["stream"] == "stdout")
        .flat_map(|c| bytes_of(&c["data"]))
        .collect();
    String::from_utf8_lossy(&data).into_owned()
}

fn shell_info(list: &Value, id: &Value) -> Value {
    list.as_array().unwrap().iter().find(|s| &s["shellId"] == id).cloned().unwrap_or_else(|| panic!("{id} not in {list}"))
}

#[tokio::test]
async fn a_shell_runs_commands_streams_output_and_exits_with_its_code() {
    let client = testkit::client();
    let handle = client.get_or_create(ACTOR, vec![unique_key("sh-run")], GetOrCreateOptions::default()).unwrap();
    let conn = handle.connect();
    let events = Events::subscribe(&conn).await;

    let opened = conn.action("openShell", vec![json!({ "cols": 100, "rows": 30, "env": { "WHO": "tester" } })]).await.unwrap();
    let id = opened["shellId"].clone();
    assert!(id.as_str().unwrap().starts_with("shell-"), "{opened}");
    // Typed ahead of the first prompt; the shell reads it once it is up.
    conn.action("writeShell", vec![id.clone(), json!("echo hi-$WHO-$((6*7)) $COLUMNS; echo oops >&2; exit 7\n")])
        .await
        .unwrap();

    let code = conn.action("waitShell", vec![id.clone()]).await.unwrap();
    assert_eq!(code, json!(7));
    let exit = testkit::eventually(OUTPUT_LIMIT, "shellExit", || {
        let exits = events.of("shellExit", &id);
        async move { exits.first().cloned() }
    })
    .await;
    assert_eq!(exit, json!({ "shellId": id, "exitCode": 7 }));

    // shellExit comes after the last shellData: all output is here now.
    let text = events.text(&id, 0);
    assert!(text.contains("hi-tester-42 100\r\n"), "{text:?}");
    assert!(text.contains("oops\r\n"), "{text:?}");
    let data = events.of("shellData", &id);
    let stderr = events.of("shellStderr", &id);
    assert!(!stderr.is_empty(), "brush prints its prompt on stderr: a shellStderr event arrives");
    // One log numbers both streams: every seq once, strictly increasing per event kind.
    let mut seqs: Vec<u64> = data.iter().chain(&stderr).map(|v| v["seq"].as_u64().unwrap()).collect();
    for kind in [&data, &stderr] {
        let s: Vec<u64> = kind.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert!(s.windows(2).all(|w| w[0] < w[1]), "seq increases: {s:?}");
    }
    seqs.sort();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());

    // The log replays the same output; the listing shows the exit.
    let replay = conn.action("readShellOutput", vec![id.clone()]).await.unwrap();
    assert_eq!(replay_text(&replay), text);
    assert_eq!((replay["lastSeq"].as_u64(), replay["missed"].as_u64()), (Some(seqs.len() as u64), Some(0)));
    let after = conn.action("readShellOutput", vec![id.clone(), json!(seqs.len() - 1)]).await.unwrap();
    assert_eq!(after["chunks"].as_array().unwrap().len(), 1);
    let info = shell_info(&conn.action("listShells", vec![]).await.unwrap(), &id);
    assert_eq!(
        info,
        json!({ "shellId": id, "command": "sh", "args": [], "cols": 100, "rows": 30, "running": false, "exitCode": 7, "lastSeq": seqs.len() })
    );

    // An exited shell takes no input; closing it again is harmless.
    let err = conn.action("writeShell", vec![id.clone(), json!("echo late\n")]).await.unwrap_err().to_string();
    assert!(err.contains("shell_exited") && err.contains(id.as_str().unwrap()), "{err}");
    conn.action("closeShell", vec![id.clone()]).await.unwrap();
    assert_eq!(conn.action("waitShell", vec![id.clone()]).await.unwrap(), json!(7));
    conn.disconnect().await;
}

#[tokio::test]
async fn a_shell_survives_prompts_and_a_new_client_reattaches_to_it() {
    let key = unique_key("sh-attach");
    let client = testkit::client();
    let handle = client.get_or_create(ACTOR, vec![key.clone()], GetOrCreateOptions::default()).unwrap();

    // Client A opens a shell, types, sees the result and goes away.
    let conn_a = handle.connect();
    let events_a = Events::subscribe(&conn_a).await;
    let id = conn_a.action("openShell", vec![]).await.unwrap()["shellId"].clone();
    // Nobody types for longer than the line editor waits for a cursor
    // answer (2 s): the shell must still be there, at a prompt.
    events_a.wait_text(&id, 0, "$ ").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle = conn_a.action("readShellOutput", vec![id.clone()]).await.unwrap();
    assert!(!replay_text(&idle).contains("cursor position could not be read"), "{idle}");
    assert_eq!(shell_info(&conn_a.action("listShells", vec![]).await.unwrap(), &id)["running"], json!(true), "{idle}");
    conn_a.action("writeShell", vec![id.clone(), json!("echo one-$((1+1))\n")]).await.unwrap();
    events_a.wait_text(&id, 0, "one-2\r\n").await;
    conn_a.disconnect().await;

    // Client B, a new connection, finds the shell and reads what it missed.
    let client_b = testkit::client();
    let handle_b = client_b.get_or_create(ACTOR, vec![key], GetOrCreateOptions::default()).unwrap();
    let conn_b = handle_b.connect();
    let events_b = Events::subscribe(&conn_b).await;
    let info = shell_info(&conn_b.action("listShells", vec![]).await.unwrap(), &id);
    assert_eq!((info["running"].clone(), info["command"].clone()), (json!(true), json!("sh")));
    let missed = conn_b.action("readShellOutput", vec![id.clone(), json!(0)]).await.unwrap();
    assert!(replay_text(&missed).contains("one-2\r\n"), "{missed}");
    let seen = missed["lastSeq"].as_u64().unwrap();
    assert!(seen >= info["lastSeq"].as_u64().unwrap());

    // B keeps typing: new output arrives as events after what it read.
    conn_b.action("writeShell", vec![id.clone(), json!("echo two-$((2+2))\n")]).await.unwrap();
    events_b.wait_text(&id, seen, "two-4\r\n").await;

    // Resize: the listing follows and the shell keeps working.
    conn_b.action("resizeShell", vec![id.clone(), json!(120), json!(40)]).await.unwrap();
    let info = shell_info(&conn_b.action("listShells", vec![]).await.unwrap(), &id);
    assert_eq!((info["cols"].clone(), info["rows"].clone()), (json!(120), json!(40)));
    conn_b.action("writeShell", vec![id.clone(), json!("echo three-$((3+3))\n")]).await.unwrap();
    events_b.wait_text(&id, seen, "three-6\r\n").await;

    // The line editor asked for the cursor at every prompt and got answers
    // (it gives up and exits otherwise): three prompts, still running.
    let all = replay_text(&conn_b.action("readShellOutput", vec![id.clone()]).await.unwrap());
    assert!(all.matches("\x1b[6n").count() >= 3, "{all:?}");
    assert!(!all.contains("cursor position could not be read"), "{all:?}");
    assert_eq!(shell_info(&conn_b.action("listShells", vec![]).await.unwrap(), &id)["running"], json!(true));

    // Close: the shell ends (SIGTERM), its end stays readable.
    conn_b.action("closeShell", vec![id.clone()]).await.unwrap();
    let code = conn_b.action("waitShell", vec![id.clone()]).await.unwrap();
    let info = shell_info(&conn_b.action("listShells", vec![]).await.unwrap(), &id);
    assert_eq!((info["running"].clone(), info["exitCode"].clone()), (json!(false), code));
    let err = conn_b.action("writeShell", vec![id.clone(), json!("x")]).await.unwrap_err().to_string();
    assert!(err.contains("shell_exited"), "{err}");
    conn_b.disconnect().await;
}

#[tokio::test]
async fn bad_arguments_and_unknown_shells_are_named() {
    let gateway = Gateway::new(ACTOR, &unique_key("sh-bad")).unwrap();
    // No VM yet: nothing listed, and listing does not boot one.
    assert_eq!(gateway.action("listShells", vec![]).await.unwrap(), json!([]));

    let cases: &[(&str, Vec<Value>, &str)] = &[
        ("openShell", vec![json!("sh")], "`options`"),
        ("openShell", vec![json!({ "cols": 0 })], "`options.cols`"),
        ("openShell", vec![json!({ "rows": 70000 })], "`options.rows`"),
        ("openShell", vec![json!({ "args": "-i" })], "`options.args`"),
        ("openShell", vec![json!({ "shell": "bash" })], "`options.shell`"),
        ("writeShell", vec![json!("shell-1")], "`data`"),
        ("writeShell", vec![json!(1), json!("x")], "`shellId`"),
        ("writeShell", vec![json!("shell-1"), json!(true)], "`data`"),
        ("resizeShell", vec![json!("shell-1"), json!(80)], "`rows`"),
        ("resizeShell", vec![json!("shell-1"), json!(-1), json!(24)], "`cols`"),
        ("resizeShell", vec![json!("shell-1"), json!(0), json!(24)], "`cols`"),
        ("closeShell", vec![], "`shellId`"),
        ("waitShell", vec![json!({})], "`shellId`"),
        ("listShells", vec![json!(1)], "too many arguments"),
        ("readShellOutput", vec![json!("shell-1"), json!("5")], "`after`"),
        ("readShellOutput", vec![json!("shell-1"), json!(1.5)], "`after`"),
        ("closeShell", vec![json!("shell-1"), json!("extra")], "too many arguments"),
    ];
    for (action, args, needle) in cases {
        let err = gateway.action(action, args.clone()).await.unwrap_err();
        assert_eq!((err.group.as_str(), err.code.as_str()), ("user", "invalid_argument"), "{action} {args:?}: {err:?}");
        assert!(err.message.contains(needle), "{action} {args:?}: {:?} lacks {needle}", err.message);
    }

    // Unknown ids, with and without a running VM.
    for boot in [false, true] {
        if boot {
            gateway.action("exists", vec![json!("/")]).await.unwrap();
        }
        let unknown: &[(&str, Vec<Value>)] = &[
            ("writeShell", vec![json!("shell-404"), json!("x")]),
            ("resizeShell", vec![json!("shell-404"), json!(80), json!(24)]),
            ("closeShell", vec![json!("shell-404")]),
            ("waitShell", vec![json!("shell-404")]),
            ("readShellOutput", vec![json!("shell-404")]),
        ];
        for (action, args) in unknown {
            let err = gateway.action(action, args.clone()).await.unwrap_err();
            assert_eq!((err.group.as_str(), err.code.as_str()), ("user", "shell_not_found"), "{action}: {err:?}");
            assert!(err.message.contains("`shell-404`"), "{action}: {err:?}");
            assert_eq!(err.metadata.as_ref().unwrap()["shellId"], json!("shell-404"));
        }
    }
}

#[test]
fn typescript_client_suite() {
    testkit::run_ts_suite("shells.test.mjs", 2);
}
