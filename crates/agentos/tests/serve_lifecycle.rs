//! `agentos serve` as a user runs it: starts its own engine, serves real
//! actions, and on SIGTERM drains and stops exactly what it started.

use std::path::Path;
use std::time::{Duration, Instant};

use rivetkit_client::GetOrCreateOptions;
use serde_json::json;
use testkit::{OwnHost, Reaper, pid_alive};

#[tokio::test]
async fn serve_runs_actors_and_stops_what_it_started() {
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let port = testkit::free_port_base();
    let data = std::env::temp_dir().join(testkit::unique_key("serve-lifecycle"));
    let mut first = OwnHost::start(binary, port, &data, &[]);
    let engine = first.started_engine_pid().expect("the first serve starts its own engine");
    let _reaper = Reaper(engine);
    assert!(pid_alive(engine));

    let handle = first.client().get_or_create("agentOS", vec!["lifecycle".into()], GetOrCreateOptions::default()).unwrap();
    let out = handle.action("exec", vec![json!("echo served")]).await.unwrap();
    assert_eq!(out["stdout"], json!("served\n"));

    // A second host on the same port reuses the running engine...
    let mut second = OwnHost::start(binary, port, &data, &[]);
    assert_eq!(second.started_engine_pid(), None, "the second serve must reuse the engine");
    // ...and leaves it running when it stops.
    assert!(second.stop(Duration::from_secs(60)), "second serve did not exit on SIGTERM within 60 s");
    assert!(pid_alive(engine), "a reused engine must not be stopped");

    // The first stops its own engine, by pid.
    assert!(first.stop(Duration::from_secs(60)), "serve did not exit on SIGTERM within 60 s");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid_alive(engine) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pid_alive(engine), "the engine serve started is still running after serve exited");
    std::fs::remove_dir_all(&data).ok();
}
