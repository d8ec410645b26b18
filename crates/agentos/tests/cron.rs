//! Cron jobs: run targets (a command, one of the actor's own actions),
//! report `cronEvent`s, and fire from host alarms that wake a sleeping
//! actor, also across a host restart.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use serde_json::{Value, json};
use testkit::{OwnStack, bytes_of, eventually, unique_key};

fn rfc3339_in(seconds: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(seconds)).to_rfc3339()
}

#[tokio::test]
async fn jobs_run_targets_report_events_and_cancel() {
    let handle = testkit::client()
        .get_or_create("agentOS", vec![unique_key("cron")], GetOrCreateOptions::default())
        .unwrap();
    let conn = handle.connect();
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = seen.clone();
    let _subscription = conn
        .on_event("cronEvent", move |args: &Vec<Value>| sink.lock().unwrap().push(args[0]["event"].clone()))
        .await;

    let every = conn
        .action(
            "scheduleCron",
            vec![json!({ "id": "tick", "schedule": "*/2 * * * * *", "overlap": "skip",
                         "action": { "type": "exec", "command": "sh", "args": ["-c", "echo run >> /workspace/cron.log"] } })],
        )
        .await
        .unwrap();
    assert_eq!(every, json!({ "id": "tick" }));
    let once = conn
        .action(
            "scheduleCron",
            vec![json!({ "schedule": rfc3339_in(3),
                         "action": { "type": "action", "name": "writeFile", "args": ["/workspace/from-cron.txt", "by cron"] } })],
        )
        .await
        .unwrap();
    let once_id = once["id"].as_str().unwrap().to_owned();

    let events = eventually(Duration::from_secs(30), "both jobs to complete", || {
        let seen = seen.clone();
        let once_id = once_id.clone();
        async move {
            let events = seen.lock().unwrap().clone();
            let done = |id: &str| events.iter().any(|e| e["type"] == json!("cron:complete") && e["jobId"] == json!(id));
            (done("tick") && done(&once_id)).then_some(events)
        }
    })
    .await;
    let fire = events.iter().find(|e| e["type"] == json!("cron:fire")).unwrap();
    assert!(fire["time"].as_f64().unwrap() > 1.0e12, "{fire}");
    assert!(events.iter().any(|e| e["type"] == json!("cron:complete") && e["durationMs"].is_number()));
    let written = conn.action("readFile", vec![json!("/workspace/from-cron.txt")]).await.unwrap();
    assert_eq!(bytes_of(&written), b"by cron");
    let log = conn.action("readFile", vec![json!("/workspace/cron.log")]).await.unwrap();
    assert!(String::from_utf8(bytes_of(&log)).unwrap().starts_with("run\n"));

    let jobs = conn.action("listCronJobs", vec![]).await.unwrap();
    let tick = jobs.as_array().unwrap().iter().find(|j| j["id"] == json!("tick")).unwrap().clone();
    assert!(tick["runCount"].as_u64().unwrap() >= 1, "{tick}");
    assert!(tick["nextRun"].as_f64().unwrap() > tick["lastRun"].as_f64().unwrap(), "{tick}");
    assert_eq!(tick["overlap"], json!("skip"));
    assert_eq!(tick["action"]["command"], json!("sh"));
    let done = jobs.as_array().unwrap().iter().find(|j| j["id"] == json!(once_id)).unwrap().clone();
    assert_eq!(done["nextRun"], Value::Null, "a one-shot job has no next run: {done}");
    assert_eq!(done["runCount"], json!(1));

    // A failing command is reported as cron:error and kept as lastError.
    conn.action(
        "scheduleCron",
        vec![json!({ "id": "fails", "schedule": rfc3339_in(2), "action": { "type": "exec", "command": "sh", "args": ["-c", "echo bad >&2; exit 3"] } })],
    )
    .await
    .unwrap();
    let failed = eventually(Duration::from_secs(30), "the failing job's cron:error", || {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().iter().find(|e| e["type"] == json!("cron:error") && e["jobId"] == json!("fails")).cloned()
        }
    })
    .await;
    assert!(failed["error"].as_str().unwrap().contains("exited with 3"), "{failed}");

    conn.action("cancelCronJob", vec![json!("tick")]).await.unwrap();
    let jobs = conn.action("listCronJobs", vec![]).await.unwrap();
    assert!(!jobs.as_array().unwrap().iter().any(|j| j["id"] == json!("tick")), "{jobs}");
    let e = conn.action("cancelCronJob", vec![json!("tick")]).await.unwrap_err();
    assert!(format!("{e:#}").contains("no cron job `tick`"), "{e:#}");

    for (options, argument) in [
        (json!({ "schedule": "every day", "action": { "type": "exec", "command": "true" } }), "options.schedule"),
        (json!({ "schedule": "2001-01-01T00:00:00Z", "action": { "type": "exec", "command": "true" } }), "options.schedule"),
        (json!({ "schedule": "* * * * *", "action": { "type": "exec", "command": "true" }, "overlap": "sometimes" }), "options.overlap"),
        (json!({ "schedule": "* * * * *", "action": { "type": "teleport" } }), "options.action"),
        (json!({ "schedule": "* * * * *", "action": { "type": "action", "name": "readFile", "args": [] } }), "options.action.args"),
        (json!({ "schedule": "* * * * *" }), "options.action"),
        (json!({ "schedule": "* * * * *", "action": { "type": "exec", "command": "true" }, "when": 1 }), "options.when"),
    ] {
        let e = conn.action("scheduleCron", vec![options.clone()]).await.unwrap_err();
        let text = format!("{e:#}");
        assert!(text.contains(&format!("`{argument}`")), "{options} → {text}");
    }
    conn.disconnect().await;
}

/// The `nextRun` (Unix ms) of the actor's only cron job.
async fn next_run(os: &rivetkit_client::handle::ActorHandle) -> i64 {
    let jobs = os.action("listCronJobs", vec![]).await.unwrap();
    jobs[0]["nextRun"].as_i64().unwrap_or_else(|| panic!("a job with a next run: {jobs}"))
}

#[tokio::test]
async fn a_due_job_wakes_the_sleeping_actor_also_after_a_host_restart() {
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let mut stack = OwnStack::start(binary, "cron-wake", &["--sleep-after-secs", "2"]);
    let key = unique_key("cron-wake");
    let os = stack.actor(&key);
    os.action(
        "scheduleCron",
        vec![json!({ "id": "wake", "schedule": "*/20 * * * * *",
                     "action": { "type": "exec", "command": "sh", "args": ["-c", "date +%s >> /workspace/wake.log"] } })],
    )
    .await
    .unwrap();
    let id = os.resolve().await.unwrap();
    let due = next_run(&os).await;
    stack.wait_asleep(&os).await;

    // A graceful host restart while the actor sleeps: the alarm is kept.
    stack.host.stop(Duration::from_secs(60));
    stack.restart_host();

    // No client calls the actor from here on: only its alarm can wake it.
    stack.wait_awake_after(&id, due).await;
    eventually(Duration::from_secs(60), "the actor to sleep again after the run", || async {
        (stack.asleep(&id).await == Some(true)).then_some(())
    })
    .await;

    let os = stack.actor(&key);
    let jobs = os.action("listCronJobs", vec![]).await.unwrap();
    let job = jobs[0].clone();
    assert!(job["runCount"].as_u64().unwrap() >= 1, "{job}");
    assert_eq!(job["lastError"], Value::Null, "{job}");
    let log = os.action("readFile", vec![json!("/workspace/wake.log")]).await.unwrap();
    let lines = String::from_utf8(bytes_of(&log)).unwrap();
    assert!(!lines.trim().is_empty(), "the job ran while no client was there");
}

/// The same wake-up with the TypeScript client scheduling the job and
/// checking its runs; only the stack is handled here.
#[tokio::test]
async fn typescript_client_cron_wakes_the_sleeping_actor() {
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let mut stack = OwnStack::start(binary, "ts-cron-wake", &["--sleep-after-secs", "2"]);
    let key = unique_key("ts-cron-wake");
    let run = |stack: &OwnStack, phase: &str| {
        let env = [("AGENTOS_TEST_PHASE", phase), ("AGENTOS_TEST_ACTOR_KEY", key.as_str())];
        testkit::run_ts_suite_on(&stack.host.endpoint(), "cron-wake.test.mjs", 1, &env);
    };
    run(&stack, "schedule");
    let os = stack.actor(&key);
    let id = os.resolve().await.unwrap();
    let due = next_run(&os).await;
    stack.wait_asleep(&os).await;
    stack.host.stop(Duration::from_secs(60));
    stack.restart_host();
    // No client calls the actor until the check phase: only its alarm wakes it.
    stack.wait_awake_after(&id, due).await;
    eventually(Duration::from_secs(60), "the actor to sleep again after the run", || async {
        (stack.asleep(&id).await == Some(true)).then_some(())
    })
    .await;
    run(&stack, "check");
}
