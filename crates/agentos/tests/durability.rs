//! The durability contract (design.md §5) with the real engine, host and
//! sidecar: a filesystem write acknowledged to a client survives SIGKILL of
//! the host, of the sidecar and of the engine, and actor sleep/wake; guest
//! writes are durable once the action that made them returns. Every test
//! ends with the consistency checker.
//!
//! Each test starts its own `agentos serve` (and engine) on free ports,
//! because it kills them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use rivetkit_client::handle::ActorHandle;
use serde_json::{Value, json};
use testkit::{OwnStack, bytes_of, eventually, uint8array};

const FILES: usize = 1000;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_agentos"))
}

type Setup = OwnStack;

/// Distinct content per file: sizes from 1 byte to ~40 KiB (so some span
/// several 16 KiB chunks), bytes depending on the index.
fn content(i: usize) -> Vec<u8> {
    let len = 1 + (i * 7919) % 40_000;
    (0..len).map(|b| ((b * 31 + i * 17) % 251) as u8).collect()
}

fn path(i: usize) -> String {
    format!("/workspace/d/f{i:04}.bin")
}

/// Writes the files `indices`, eight at a time, until a write fails (the
/// crash); records the indices acknowledged.
async fn write_until_failure(actor: &ActorHandle, indices: impl IntoIterator<Item = usize>, acked: &Mutex<Vec<usize>>) {
    let failed = std::sync::atomic::AtomicBool::new(false);
    futures::stream::iter(indices)
        .for_each_concurrent(8, |i| {
            let failed = &failed;
            async move {
                if failed.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let written = tokio::time::timeout(
                    Duration::from_secs(30),
                    actor.action("writeFile", vec![json!(path(i)), uint8array(&content(i))]),
                )
                .await;
                match written {
                    Ok(Ok(_)) => acked.lock().unwrap().push(i),
                    _ => failed.store(true, std::sync::atomic::Ordering::Relaxed),
                }
            }
        })
        .await;
}

/// Every acknowledged file reads back byte for byte; the store is consistent.
async fn verify(actor: &ActorHandle, acked: &[usize]) {
    futures::stream::iter(acked.iter().copied())
        .for_each_concurrent(8, |i| async move {
            let value =
                actor.action("readFile", vec![json!(path(i))]).await.unwrap_or_else(|e| panic!("{}: {e}", path(i)));
            assert!(bytes_of(&value) == content(i), "{} differs after the crash", path(i));
        })
        .await;
    assert_clean(actor).await;
}

async fn assert_clean(actor: &ActorHandle) {
    let report = actor.action("checkRootFilesystem", vec![]).await.unwrap();
    assert_eq!(report["clean"], json!(true), "consistency check failed: {report}");
}

/// The first action after a crash: the engine reschedules the actor once it
/// notices, so retry (bounded) until the actor answers.
async fn first_answer(actor: &ActorHandle, action: &str, args: Vec<Value>) -> Value {
    eventually(Duration::from_secs(120), "the actor answers after the crash", || {
        let args = args.clone();
        async move { actor.action(action, args).await.ok() }
    })
    .await
}

/// Writes the 1,000 files from a second client while `crash` runs once
/// `crash_after` writes were acknowledged; returns the indices acknowledged
/// before the writer gave up.
async fn write_through_a_crash(setup: &mut Setup, key: &str, crash_after: usize, crash: impl FnOnce(&mut Setup)) -> Vec<usize> {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let (actor, acked) = (setup.actor(key), acked.clone());
        tokio::spawn(async move { write_until_failure(&actor, 0..FILES, &acked).await })
    };
    eventually(Duration::from_secs(120), "writes acknowledged before the crash", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= crash_after).then_some(()) }
    })
    .await;
    crash(setup);
    tokio::time::timeout(Duration::from_secs(90), writer).await.expect("the writer stops after the crash").unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= crash_after && acked.len() < FILES, "{} acknowledged", acked.len());
    acked
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_of_the_host() {
    let mut setup = Setup::start(binary(), "kill-host", &[]);
    let key = testkit::unique_key("kill-host");
    let actor = setup.actor(&key);
    actor.action("mkdir", vec![json!("/workspace/d")]).await.unwrap();

    // Kill the host mid-stream, after a few hundred acknowledged writes.
    let before = write_through_a_crash(&mut setup, &key, 300, |setup| setup.host.kill_hard()).await;

    setup.restart_host();
    let actor = setup.actor(&key);
    first_answer(&actor, "exists", vec![json!("/workspace/d")]).await;
    verify(&actor, &before).await;

    // The actor carries on: every file not acknowledged before the crash.
    let after = Mutex::new(Vec::new());
    let missing: Vec<usize> = (0..FILES).filter(|i| !before.contains(i)).collect();
    write_until_failure(&actor, missing.iter().copied(), &after).await;
    let after = after.into_inner().unwrap();
    assert_eq!(after.len(), missing.len(), "every write after the restart is acknowledged");
    verify(&actor, &after).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_of_the_engine() {
    let mut setup = Setup::start(binary(), "kill-engine", &[]);
    let key = testkit::unique_key("kill-engine");
    let actor = setup.actor(&key);
    actor.action("mkdir", vec![json!("/workspace/d")]).await.unwrap();
    // A guest write too: durable once its action returned.
    let out = actor.action("exec", vec![json!("echo from-the-guest > /workspace/d/guest.txt")]).await.unwrap();
    assert_eq!(out["exitCode"], json!(0), "{out}");

    let before = write_through_a_crash(&mut setup, &key, 200, |setup| testkit::kill_pid(setup.engine.0)).await;

    // The host lost its engine: stop it and start host + engine afresh on
    // the same data directory.
    setup.host.stop(Duration::from_secs(60));
    setup.restart_host();
    assert_eq!(setup.host.started_engine_pid(), Some(setup.engine.0), "a new engine was started and is reaped");
    let actor = setup.actor(&key);
    let guest = first_answer(&actor, "readFile", vec![json!("/workspace/d/guest.txt")]).await;
    assert_eq!(bytes_of(&guest), b"from-the-guest\n");
    verify(&actor, &before).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_sigkill_of_the_sidecar() {
    let setup = Setup::start(binary(), "kill-sidecar", &[]);
    let key = testkit::unique_key("kill-sidecar");
    let actor = setup.actor(&key);
    actor.action("mkdir", vec![json!("/workspace/d")]).await.unwrap();
    let out = actor.action("exec", vec![json!("echo before > /workspace/d/guest.txt")]).await.unwrap();
    assert_eq!(out["exitCode"], json!(0), "{out}");
    let acked = Mutex::new(Vec::new());
    write_all(&actor, 0..50, &acked).await;

    // A long-running guest process: what it wrote is durable before its
    // action ends (each root operation commits before the guest's system
    // call returns), so the crash below does not lose it.
    let long_running = {
        let actor = setup.actor(&key);
        tokio::spawn(async move {
            actor.action("exec", vec![json!("echo progress > /workspace/d/long.txt; sleep 60; echo done >> /workspace/d/long.txt")]).await
        })
    };
    let sidecars = setup.host.sidecar_pids();
    assert!(!sidecars.is_empty(), "the host runs a sidecar");
    eventually(Duration::from_secs(30), "the long-running process wrote its progress", || {
        let actor = &actor;
        async move {
            // Its content, not just the file: `>` creates the file before
            // the write lands.
            let out = actor.action("readFile", vec![json!("/workspace/d/long.txt")]).await.ok()?;
            (bytes_of(&out) == b"progress\n").then_some(())
        }
    })
    .await;
    for pid in &sidecars {
        testkit::kill_pid(*pid);
    }
    let interrupted = tokio::time::timeout(Duration::from_secs(30), long_running).await.expect("the exec ends with its sidecar");
    assert!(interrupted.unwrap().is_err(), "the exec cannot succeed without its sidecar");
    let long = actor.action("readFile", vec![json!("/workspace/d/long.txt")]).await.unwrap();
    assert_eq!(bytes_of(&long), b"progress\n");

    // The VM died with its sidecar: the next guest action gets a new VM on
    // the same durable root, which still holds everything.
    let out = first_answer(&actor, "exec", vec![json!("cat /workspace/d/guest.txt && echo after >> /workspace/d/guest.txt")]).await;
    assert_eq!(out["stdout"], json!("before\n"), "{out}");
    write_all(&actor, 50..100, &acked).await;
    let all: Vec<usize> = acked.lock().unwrap().clone();
    assert_eq!(all.len(), 100);
    let guest = actor.action("readFile", vec![json!("/workspace/d/guest.txt")]).await.unwrap();
    assert_eq!(bytes_of(&guest), b"before\nafter\n");
    verify(&actor, &all).await;
    let new_sidecars = setup.host.sidecar_pids();
    assert!(new_sidecars.iter().all(|pid| !sidecars.contains(pid)), "a new sidecar serves the VM");
}

/// Writes the files `indices`; every write must be acknowledged.
async fn write_all(actor: &ActorHandle, indices: std::ops::Range<usize>, acked: &Mutex<Vec<usize>>) {
    let before = acked.lock().unwrap().len();
    let count = indices.len();
    write_until_failure(actor, indices, acked).await;
    assert_eq!(acked.lock().unwrap().len(), before + count, "a write failed");
}

#[tokio::test]
async fn files_survive_sleep_and_wake() {
    let setup = Setup::start(binary(), "sleep-wake", &["--sleep-after-secs", "2"]);
    let key = testkit::unique_key("sleep-wake");
    let actor = setup.actor(&key);
    actor.action("mkdir", vec![json!("/workspace/d")]).await.unwrap();
    let out = actor
        .action("exec", vec![json!("echo guest > /workspace/d/guest.txt; mkdir -p /workspace/d/tree/x; echo deep > /workspace/d/tree/x/y")])
        .await
        .unwrap();
    assert_eq!(out["exitCode"], json!(0), "{out}");
    let acked = Mutex::new(Vec::new());
    write_all(&actor, 0..100, &acked).await;

    // No connection holds the actor awake: it sleeps after 2 s idle.
    setup.wait_asleep(&actor).await;

    let all: Vec<usize> = acked.lock().unwrap().clone();
    let guest = actor.action("readFile", vec![json!("/workspace/d/tree/x/y")]).await.unwrap();
    assert_eq!(bytes_of(&guest), b"deep\n");
    verify(&actor, &all).await;
    let out = actor.action("exec", vec![json!("cat /workspace/d/guest.txt")]).await.unwrap();
    assert_eq!(out["stdout"], json!("guest\n"));
}

/// Actors on one host share one sidecar. One actor's VM shutting down (it
/// falls asleep) while another actor's VM boots must not take the sidecar
/// from under the booting VM: agentos-client counts a VM on its sidecar
/// only once booted and kills the sidecar when that count reaches zero
/// (the actor's `sidecar_gate` orders the two).
#[tokio::test]
async fn actors_falling_asleep_while_others_boot_keep_their_sidecar() {
    const ACTORS: usize = 4;
    const ROUNDS: usize = 4;
    let setup = Setup::start(binary(), "boot-vs-sleep", &["--sleep-after-secs", "1"]);
    let keys: Vec<String> = (0..ACTORS).map(|i| testkit::unique_key(&format!("boot-vs-sleep-{i}"))).collect();
    let setup = &setup;
    let cycles = keys.iter().enumerate().map(|(i, key)| async move {
        let actor = setup.actor(key);
        // Staggered, so boots and shutdowns of different actors interleave.
        tokio::time::sleep(Duration::from_millis(350 * i as u64)).await;
        for round in 0..ROUNDS {
            let out = actor
                .action("exec", vec![json!(format!("echo {i}-{round}"))])
                .await
                .unwrap_or_else(|e| panic!("actor {i}, round {round}: {e:#}"));
            assert_eq!(out["stdout"], json!(format!("{i}-{round}\n")), "{out}");
            setup.wait_asleep(&actor).await;
        }
    });
    futures::future::join_all(cycles).await;
    let log = setup.host.stderr_text();
    for lost in ["sidecar lost", "VM lost with its sidecar"] {
        assert!(!log.contains(lost), "a VM lost its sidecar to another actor's shutdown (`{lost}` in the host log)");
    }
}
