//! Batch filesystem actions, runtime mounts, `vmFetch` and preview URLs,
//! against the real engine, host and sidecar.

use std::path::Path;
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use rivetkit_client::handle::ActorHandle;
use serde_json::{Value, json};
use testkit::{Gateway, OwnStack, bytes_of, eventually, uint8array, unique_key};

fn actor(name: &str, key: &str) -> ActorHandle {
    testkit::client().get_or_create(name, vec![key.to_owned()], GetOrCreateOptions::default()).unwrap()
}

/// The error text of a failed action.
async fn error_of(actor: &ActorHandle, action: &str, args: Vec<Value>) -> String {
    match actor.action(action, args).await {
        Ok(value) => panic!("{action} should fail, got {value}"),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test]
async fn batch_reads_writes_and_recursive_listing_match_on_both_roots() {
    let mut listings = Vec::new();
    for name in ["agentOS", "agentOSEphemeral"] {
        let os = actor(name, &unique_key("batch"));
        let written = os
            .action(
                "writeFiles",
                vec![json!([
                    { "path": "/workspace/b/one.txt", "content": "one" },
                    { "path": "/workspace/b/deep/two.bin", "content": uint8array(&[0, 1, 2, 255]) },
                    { "path": "/proc/nope", "content": "x" },
                    { "path": "/workspace/b/node_modules/skip.js", "content": "s" },
                ])],
            )
            .await
            .unwrap();
        let results = written.as_array().unwrap();
        assert_eq!(results.len(), 4, "{written}");
        assert!(results[..2].iter().all(|r| r["success"] == json!(true)), "{name}: {written}");
        assert_eq!(results[2]["success"], json!(false), "{name}: {written}");
        assert!(results[2]["error"].as_str().unwrap().contains("EROFS"), "{name}: {written}");

        let read = os
            .action("readFiles", vec![json!(["/workspace/b/one.txt", "/workspace/b/deep/two.bin", "/workspace/b/missing"])])
            .await
            .unwrap();
        let read = read.as_array().unwrap();
        assert_eq!(bytes_of(&read[0]["content"]), b"one");
        assert_eq!(bytes_of(&read[1]["content"]), vec![0, 1, 2, 255]);
        assert!(read[2].get("content").is_none(), "{name}: {read:?}");
        assert!(read[2]["error"].as_str().unwrap().contains("ENOENT"), "{name}: {read:?}");

        let all = os.action("readdirRecursive", vec![json!("/workspace/b")]).await.unwrap();
        let shallow = os
            .action("readdirRecursive", vec![json!("/workspace/b"), json!({ "maxDepth": 0, "exclude": ["node_modules"] })])
            .await
            .unwrap();
        listings.push((all, shallow));
    }
    let (durable, ephemeral) = (&listings[0], &listings[1]);
    let sorted = |v: &Value| {
        let mut items: Vec<(String, String, u64)> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["path"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().to_owned(), e["size"].as_u64().unwrap()))
            .collect();
        items.sort();
        items
    };
    let files = |items: Vec<(String, String, u64)>| items.into_iter().filter(|i| i.1 != "directory").collect::<Vec<_>>();
    // Directory sizes are the store's own; files and types must agree.
    assert_eq!(files(sorted(&durable.0)), files(sorted(&ephemeral.0)));
    assert_eq!(
        files(sorted(&durable.0)),
        vec![
            ("/workspace/b/deep/two.bin".into(), "file".into(), 4),
            ("/workspace/b/node_modules/skip.js".into(), "file".into(), 1),
            ("/workspace/b/one.txt".into(), "file".into(), 3),
        ]
    );
    let paths = |v: &Value| sorted(v).into_iter().map(|i| i.0).collect::<Vec<_>>();
    assert_eq!(paths(&durable.1), vec!["/workspace/b/deep", "/workspace/b/one.txt"]);
    assert_eq!(paths(&durable.1), paths(&ephemeral.1));
}

#[tokio::test]
async fn batch_and_listing_arguments_are_checked() {
    let os = actor("agentOS", &unique_key("batch-bad"));
    let e = error_of(&os, "writeFiles", vec![json!([{ "path": "/a" }])]).await;
    assert!(e.contains("`entries[0].content`") && e.contains("required"), "{e}");
    let e = error_of(&os, "writeFiles", vec![json!([{ "path": "/a", "content": "x", "mode": 1 }])]).await;
    assert!(e.contains("`entries[0].mode`"), "{e}");
    let e = error_of(&os, "readFiles", vec![json!(["/a", 3])]).await;
    assert!(e.contains("`paths[1]`"), "{e}");
    let e = error_of(&os, "readdirRecursive", vec![json!("/"), json!({ "maxDepth": -1 })]).await;
    assert!(e.contains("`options.maxDepth`"), "{e}");
    let e = error_of(&os, "readdirRecursive", vec![json!("relative")]).await;
    assert!(e.contains("`path`") && e.contains("absolute"), "{e}");
    let e = error_of(&os, "readFiles", vec![]).await;
    assert!(e.contains("`paths`") && e.contains("required"), "{e}");
}

#[tokio::test]
async fn memory_mount_routes_paths_to_the_vm_and_unmounts() {
    let os = actor("agentOS", &unique_key("mount"));
    os.action("mountFs", vec![json!("/mnt/scratch"), json!({ "id": "memory" })]).await.unwrap();
    // A client write under the mount lands in the mount, seen by the guest.
    os.action("writeFile", vec![json!("/mnt/scratch/a.txt"), json!("in memory")]).await.unwrap();
    let out = os.action("exec", vec![json!("cat /mnt/scratch/a.txt")]).await.unwrap();
    assert_eq!(out["stdout"], json!("in memory"), "{out}");
    // A recursive listing reaches into the mount, not the empty mount point.
    let listed = os.action("readdirRecursive", vec![json!("/mnt")]).await.unwrap();
    assert!(listed.as_array().unwrap().iter().any(|e| e["path"] == json!("/mnt/scratch/a.txt")), "{listed}");
    let mounts = os.action("listMounts", vec![]).await.unwrap();
    let scratch = mounts.as_array().unwrap().iter().find(|m| m["path"] == json!("/mnt/scratch")).cloned();
    let scratch = scratch.unwrap_or_else(|| panic!("no /mnt/scratch in {mounts}"));
    assert_eq!(scratch["persisted"], json!(true), "{scratch}");
    assert_eq!(scratch["readOnly"], json!(false), "{scratch}");

    os.action("unmountFs", vec![json!("/mnt/scratch")]).await.unwrap();
    assert_eq!(os.action("exists", vec![json!("/mnt/scratch/a.txt")]).await.unwrap(), json!(false));
    let mounts = os.action("listMounts", vec![]).await.unwrap();
    assert!(!mounts.as_array().unwrap().iter().any(|m| m["path"] == json!("/mnt/scratch")), "{mounts}");
    // The durable root never saw the mount's file.
    let check = os.action("checkRootFilesystem", vec![]).await.unwrap();
    assert_eq!(check["clean"], json!(true), "{check}");

    let e = error_of(&os, "unmountFs", vec![json!("/mnt/scratch")]).await;
    assert!(e.contains("not_found") || e.contains("no mount"), "{e}");
    let e = error_of(&os, "mountFs", vec![json!("/mnt/h"), json!({ "id": "host_dir", "config": { "hostPath": "/" } })]).await;
    assert!(e.contains("`driver.id`") && e.contains("not allowed"), "{e}");
    let e = error_of(&os, "mountFs", vec![json!("/proc/x"), json!({ "id": "memory" })]).await;
    assert!(e.contains("EROFS") || e.contains("`path`"), "{e}");
    let e = error_of(&os, "mountFs", vec![json!("/mnt/x"), json!({ "plugin": "memory" })]).await;
    assert!(e.contains("`driver.plugin`") || e.contains("`driver.id`"), "{e}");
    let e = error_of(&os, "mountFs", vec![json!("/mnt/x")]).await;
    assert!(e.contains("`driver`") && e.contains("required"), "{e}");
}

/// A guest HTTP server on `port` that echoes method, URL and body as JSON,
/// started by a detached `exec` that ends after `seconds`.
async fn start_echo_server(os: &ActorHandle, key: &str, port: u16, seconds: u32) -> tokio::task::JoinHandle<Value> {
    let script = format!(
        "require('http').createServer((req, res) => {{ const parts = []; req.on('data', c => parts.push(c)); \
         req.on('end', () => {{ res.setHeader('x-echo', 'yes'); res.end(JSON.stringify({{ method: req.method, url: req.url, \
         body: Buffer.concat(parts).toString() }})); }}); }}).listen({port}); setTimeout(() => process.exit(0), {ms});",
        ms = seconds * 1000
    );
    os.action("writeFile", vec![json!("/tmp/echo.js"), json!(script)]).await.unwrap();
    let server = actor("agentOS", key);
    let task = tokio::spawn(async move { server.action("exec", vec![json!("node /tmp/echo.js")]).await.unwrap() });
    eventually(Duration::from_secs(30), "the guest server answers", || async {
        os.action("vmFetch", vec![json!(port), json!("/ready")]).await.ok().filter(|r| r["status"] == json!(200))
    })
    .await;
    task
}

#[tokio::test]
async fn vm_fetch_sends_a_body_and_previews_proxy_with_the_query() {
    let key = unique_key("net");
    let os = actor("agentOS", &key);
    let server = start_echo_server(&os, &key, 8080, 40).await;

    let response = os
        .action(
            "vmFetch",
            vec![json!(8080), json!("/submit?x=1"), json!({ "method": "post", "headers": { "content-type": "text/plain" }, "body": "hello body" })],
        )
        .await
        .unwrap();
    assert_eq!(response["status"], json!(200), "{response}");
    assert_eq!(response["headers"]["x-echo"], json!("yes"), "{response}");
    let echoed: Value = serde_json::from_slice(&bytes_of(&response["body"])).unwrap();
    assert_eq!(echoed, json!({ "method": "POST", "url": "/submit?x=1", "body": "hello body" }));
    let binary = os
        .action("vmFetch", vec![json!(8080), json!("http://localhost:8080/b"), json!({ "method": "PUT", "body": uint8array(b"\x00\x01") })])
        .await
        .unwrap();
    let echoed: Value = serde_json::from_slice(&bytes_of(&binary["body"])).unwrap();
    assert_eq!(echoed["url"], json!("/b"));
    assert_eq!(echoed["body"], json!("\u{0}\u{1}"));

    let preview = os.action("createSignedPreviewUrl", vec![json!(8080), json!(600)]).await.unwrap();
    let token = preview["token"].as_str().unwrap().to_owned();
    assert_eq!(preview["path"], json!(format!("/request/preview/{token}")));
    assert!(token.len() >= 32, "{token}");
    let gateway = Gateway::new("agentOS", &key).unwrap();
    let proxied = gateway
        .http()
        .post(gateway.url(&format!("/request/preview/{token}/app/page?q=1&r=two")))
        .body("proxied body")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status().as_u16(), 200);
    assert_eq!(proxied.headers().get("x-echo").unwrap(), "yes");
    let echoed: Value = proxied.json().await.unwrap();
    assert_eq!(echoed["method"], json!("POST"));
    assert_eq!(echoed["body"], json!("proxied body"));
    let url = echoed["url"].as_str().unwrap();
    assert!(url.starts_with("/app/page?") && url.contains("q=1") && url.contains("r=two"), "{url}");

    let status = |path: String| {
        let gateway = &gateway;
        async move { gateway.http().get(gateway.url(&path)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/request/preview/not-a-token/x".into()).await, 404);
    assert_eq!(status("/request/elsewhere".into()).await, 404);
    os.action("expireSignedPreviewUrl", vec![json!(token)]).await.unwrap();
    assert_eq!(status(format!("/request/preview/{token}/app")).await, 404);
    os.action("expireSignedPreviewUrl", vec![json!(token)]).await.unwrap();

    // A one-second link stops working once it expires.
    let short = os.action("createSignedPreviewUrl", vec![json!(8080), json!(1)]).await.unwrap();
    let short_token = short["token"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(10), "the short preview to expire", || {
        let path = format!("/request/preview/{short_token}/");
        let status = &status;
        async move { (status(path).await == 404).then_some(()) }
    })
    .await;

    let e = error_of(&os, "createSignedPreviewUrl", vec![json!(8080), json!(86_401)]).await;
    assert!(e.contains("`ttlSeconds`") && e.contains("out of range"), "{e}");
    let e = error_of(&os, "createSignedPreviewUrl", vec![json!(70_000)]).await;
    assert!(e.contains("`port`"), "{e}");
    let e = error_of(&os, "vmFetch", vec![json!(8080), json!("no-slash")]).await;
    assert!(e.contains("`url`"), "{e}");
    let e = error_of(&os, "vmFetch", vec![json!(8080), json!("/"), json!({ "body": 5 })]).await;
    assert!(e.contains("`options.body`"), "{e}");
    let e = error_of(&os, "vmFetch", vec![json!("8080"), json!("/")]).await;
    assert!(e.contains("`port`"), "{e}");

    let exit = server.await.unwrap();
    assert_eq!(exit["exitCode"], json!(0), "{exit}");
}

/// An own host whose actors sleep after 2 idle seconds and may mount
/// `host_dir` under a new test directory; `<dir>/data` (mode 0777) holds
/// `from-host.txt`. The directory goes with the stack.
fn host_dir_stack() -> (OwnStack, std::path::PathBuf) {
    let shared = std::env::temp_dir().join(unique_key("host-dir"));
    std::fs::create_dir_all(shared.join("data")).unwrap();
    // The guest (uid 1000) writes through host_dir only where "other" may.
    let mut permissions = std::fs::metadata(shared.join("data")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o777);
    std::fs::set_permissions(shared.join("data"), permissions).unwrap();
    std::fs::write(shared.join("data/from-host.txt"), "host file").unwrap();
    let config = shared.join("config.json");
    let policy = json!({ "runtimeMounts": { "plugins": ["memory", "host_dir"], "hostDirRoots": [shared.display().to_string()] } });
    std::fs::write(&config, policy.to_string()).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let stack = OwnStack::start(binary, "mount-sleep", &["--sleep-after-secs", "2", "--actor-config", config.to_str().unwrap()]);
    (stack, shared)
}

#[tokio::test]
async fn mounts_and_previews_survive_sleep() {
    let (stack, shared) = host_dir_stack();
    let os = stack.actor(&unique_key("mount-sleep"));

    let host_path = shared.join("data").display().to_string();
    os.action("mountFs", vec![json!("/mnt/host"), json!({ "id": "host_dir", "config": { "hostPath": host_path } })])
        .await
        .unwrap();
    let out = os.action("exec", vec![json!("cat /mnt/host/from-host.txt; echo guest > /mnt/host/from-guest.txt")]).await.unwrap();
    assert_eq!(out["stdout"], json!("host file"), "{out}");
    assert_eq!(std::fs::read_to_string(shared.join("data/from-guest.txt")).unwrap(), "guest\n");
    let preview = os.action("createSignedPreviewUrl", vec![json!(8080)]).await.unwrap();

    stack.wait_asleep(&os).await;

    // Woken by the next action: the mount is back before the guest runs.
    let read = os.action("readFile", vec![json!("/mnt/host/from-host.txt")]).await.unwrap();
    assert_eq!(bytes_of(&read), b"host file");
    let mounts = os.action("listMounts", vec![]).await.unwrap();
    assert!(
        mounts.as_array().unwrap().iter().any(|m| m["path"] == json!("/mnt/host") && m["persisted"] == json!(true)),
        "{mounts}"
    );
    // The preview token is still valid: with no guest server it is a 502, not a 404.
    let url = format!("{}{}", "/request/preview/", preview["token"].as_str().unwrap());
    let handle_url = os.gateway_url().unwrap();
    let (base, query) = handle_url.split_once('?').unwrap_or((&handle_url, ""));
    let response = reqwest::get(format!("{}{url}?{query}", base.trim_end_matches('/'))).await.unwrap();
    assert_eq!(response.status().as_u16(), 502, "{:?}", response.text().await);
    drop(stack);
    std::fs::remove_dir_all(&shared).unwrap();
}

#[tokio::test]
async fn a_snapshot_starts_a_new_actor_with_the_same_root() {
    let source = actor("agentOS", &unique_key("snap-src"));
    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    source.action("mkdir", vec![json!("/workspace/s")]).await.unwrap();
    source.action("writeFile", vec![json!("/workspace/s/data.bin"), uint8array(&binary)]).await.unwrap();
    let out = source
        .action(
            "exec",
            vec![json!("cd /workspace/s && echo text > a.txt && node -e \"require('fs').chmodSync('/workspace/s/a.txt', 0o640)\" && ln -s a.txt link && node -e \"require('fs').linkSync('/workspace/s/data.bin', '/workspace/s/hard.bin')\" && mkdir -p d/e")],
        )
        .await
        .unwrap();
    assert_eq!(out["exitCode"], json!(0), "{out}");
    let snapshot = source.action("snapshotRootFilesystem", vec![]).await.unwrap();
    assert_eq!(snapshot["format"], json!("agentos-root-v1"));
    let entries = snapshot["entries"].as_array().unwrap();
    let entry = |path: &str| entries.iter().find(|e| e["path"] == json!(path)).cloned().unwrap_or_else(|| panic!("{path} missing"));
    assert_eq!(entry("/workspace/s/link")["target"], json!("a.txt"));
    let links = [entry("/workspace/s/data.bin"), entry("/workspace/s/hard.bin")];
    assert!(links.iter().any(|e| e["type"] == json!("hardlink")), "{links:?}");

    let copy = actor("agentOS", &unique_key("snap-copy"));
    let restored = copy.action("restoreRootFilesystem", vec![snapshot.clone()]).await.unwrap();
    assert!(restored["entries"].as_u64().unwrap() > 10, "{restored}");
    let read = copy.action("readFile", vec![json!("/workspace/s/hard.bin")]).await.unwrap();
    assert_eq!(bytes_of(&read), binary);
    for path in ["/workspace/s/a.txt", "/workspace/s/data.bin", "/workspace/s/d"] {
        let (a, b) = (
            source.action("stat", vec![json!(path)]).await.unwrap(),
            copy.action("stat", vec![json!(path)]).await.unwrap(),
        );
        for field in ["mode", "uid", "gid", "size", "nlink", "mtimeMs"] {
            assert_eq!(a[field], b[field], "{path} {field}: {a} vs {b}");
        }
    }
    let out = copy.action("exec", vec![json!("cd /workspace/s && readlink link && cat link")]).await.unwrap();
    assert_eq!(out["stdout"], json!("a.txt\ntext\n"), "{out}");
    let check = copy.action("checkRootFilesystem", vec![]).await.unwrap();
    assert_eq!(check["clean"], json!(true), "{check}");

    // The VM now runs: a restore would write under it.
    let e = error_of(&copy, "restoreRootFilesystem", vec![snapshot]).await;
    assert!(e.contains("stopped VM"), "{e}");
    let e = error_of(&copy, "restoreRootFilesystem", vec![json!({ "format": "tar", "entries": [] })]).await;
    assert!(e.contains("`snapshot.format`"), "{e}");
    let e = error_of(&copy, "restoreRootFilesystem", vec![json!({ "format": "agentos-root-v1" })]).await;
    assert!(e.contains("`snapshot.entries`"), "{e}");
}

#[test]
fn typescript_client_fetches_previews_and_restores_snapshots() {
    testkit::run_ts_suite("vm-surface.test.mjs", 3);
}

#[tokio::test]
async fn typescript_client_mounts_survive_sleep() {
    let (stack, shared) = host_dir_stack();
    let key = unique_key("ts-mount-sleep");
    let data = shared.join("data").display().to_string();
    let run = |phase: &str| {
        let env = [("AGENTOS_TEST_PHASE", phase), ("AGENTOS_TEST_ACTOR_KEY", key.as_str()), ("AGENTOS_TEST_HOST_DIR", data.as_str())];
        testkit::run_ts_suite_on(&stack.host.endpoint(), "mounts-sleep.test.mjs", 1, &env);
    };
    run("mount");
    stack.wait_asleep(&stack.actor(&key)).await;
    run("woken");
    drop(stack);
    std::fs::remove_dir_all(&shared).unwrap();
}
