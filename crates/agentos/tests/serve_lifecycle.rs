//! `agentos serve` as a user runs it: starts its own engine, serves real
//! actions, and on SIGTERM drains and stops exactly what it started.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rivetkit_client::{Client, ClientConfig, GetOrCreateOptions};
use serde_json::json;
use testkit::{ChildGuard, pid_alive};

struct Served {
    guard: ChildGuard,
    stderr_lines: mpsc::Receiver<String>,
}

/// Starts `agentos serve` and waits (bounded) for its ready line.
fn serve(port: u16, data_dir: &std::path::Path) -> Served {
    let plugin = std::path::Path::new(env!("CARGO_BIN_EXE_agentos")).with_file_name("libagentos_actor.so");
    assert!(plugin.exists(), "{} missing: build the workspace first", plugin.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentos"))
        .args(["serve", "--port", &port.to_string(), "--data-dir"])
        .arg(data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn agentos serve");
    let (ready_tx, ready_rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("agentos: ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    let (line_tx, stderr_lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let guard = ChildGuard::new(child);
    ready_rx.recv_timeout(Duration::from_secs(90)).expect("agentos serve did not become ready within 90 s");
    Served { guard, stderr_lines }
}

fn engine_pid(lines: &mpsc::Receiver<String>) -> Option<u32> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Some(remaining) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(remaining) {
            Ok(line) if line.contains("engine pid ") => {
                return line.rsplit("engine pid ").next().and_then(|p| p.trim().parse().ok());
            }
            Ok(line) if line.contains("reusing the engine") => return None,
            Ok(_) => continue,
            Err(_) => break,
        }
    }
    None
}

/// Kills the engine by pid if the test ends (or panics) while it still runs,
/// so a failing run never leaves an engine behind.
struct EngineReaper(u32);

impl Drop for EngineReaper {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            testkit::kill_pid(self.0);
        }
    }
}

#[tokio::test]
async fn serve_runs_actors_and_stops_what_it_started() {
    let port = testkit::free_port_base();
    let data = std::env::temp_dir().join(testkit::unique_key("serve-lifecycle"));
    let mut first = serve(port, &data);
    let engine = engine_pid(&first.stderr_lines).expect("the first serve starts its own engine");
    let _reaper = EngineReaper(engine);
    assert!(pid_alive(engine));

    let client = Client::new(ClientConfig::new(format!("http://127.0.0.1:{port}")).pool_name("default"));
    let handle = client.get_or_create("agentOS", vec!["lifecycle".into()], GetOrCreateOptions::default()).unwrap();
    let out = handle.action("exec", vec![json!("echo served")]).await.unwrap();
    assert_eq!(out["stdout"], json!("served\n"));

    // A second host on the same port reuses the running engine...
    let mut second = serve(port, &data);
    assert_eq!(engine_pid(&second.stderr_lines), None, "the second serve must reuse the engine");
    // ...and leaves it running when it stops.
    assert!(second.guard.stop(Duration::from_secs(60)), "second serve did not exit on SIGTERM within 60 s");
    assert!(pid_alive(engine), "a reused engine must not be stopped");

    // The first stops its own engine, by pid.
    assert!(first.guard.stop(Duration::from_secs(60)), "serve did not exit on SIGTERM within 60 s");
    let deadline = Instant::now() + Duration::from_secs(15);
    while pid_alive(engine) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!pid_alive(engine), "the engine serve started is still running after serve exited");
    std::fs::remove_dir_all(&data).ok();
}
