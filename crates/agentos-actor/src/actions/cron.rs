//! Cron jobs that outlive the VM and wake the actor.
//!
//! A job is a row in SQLite. Its next run is a host alarm (`schedule_at`)
//! that delivers the internal tick action `CRON_TICK` at the due time, waking
//! a sleeping actor and surviving host restarts. A tick runs the job only if
//! it is still the job's current due time, so stale or forged ticks do
//! nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentos_client::ExecOptions;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{now_ms, reply, reply_null};
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, EventSpec, Section};
use crate::error::{ActorError, code, internal_while};
use crate::host::HostCtx;
use crate::vm::broadcast_event;

mod session;

use session::SessionJob;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

const OVERLAPS: &[&str] = &["allow", "skip", "queue"];
const CRON_OPTIONS: &[Field] = &[
    opt("id", ArgType::Str, "Job id (default: a new UUID); scheduling an existing id replaces that job."),
    req("schedule", ArgType::Str, "Cron expression (5 fields, or 6 with seconds) or an RFC 3339 time for a one-shot job."),
    req("action", ArgType::Json, "What runs: `{ type: \"exec\", command, args?, cwd?, env? }`; `{ type: \"action\", name, args? }` (one of this actor's actions); or `{ type: \"session\", agentType, prompt, sessionId?, options? }`: prompt an agent. With `sessionId` every run goes on with that session's conversation (created with `agentType` and `options`, those of `createSession`, if it does not exist yet; use `overlap: \"queue\"` so runs take turns); without it each run gets a new session `cron-<jobId>-<run time ms>` whose history is kept."),
    opt("overlap", ArgType::OneOf(OVERLAPS), "When a run is due while the last one still runs: `allow` (default), `skip` it, or `queue` it."),
];

/// The cron area of the contract.
pub static SECTION: Section = Section {
    area: "Cron",
    actions: &[
        ActionSpec {
            name: "scheduleCron",
            summary: "Schedule a job; it runs at its times even while the actor sleeps (a host alarm wakes it) and survives restarts.",
            params: &[req("options", ArgType::Object(CRON_OPTIONS), "The job.")],
            returns: "{ id: string }",
            handler: schedule_cron,
            detached: false,
        },
        ActionSpec {
            name: "listCronJobs",
            summary: "Every scheduled job with its last and next run (epoch ms, or null).",
            params: &[],
            returns: "CronJob[]",
            handler: list_cron_jobs,
            detached: false,
        },
        ActionSpec {
            name: "cancelCronJob",
            summary: "Remove a job; a run in progress finishes.",
            params: &[req("id", ArgType::Str, "Job id.")],
            returns: "null",
            handler: cancel_cron_job,
            detached: false,
        },
    ],
    events: &[EventSpec {
        name: "cronEvent",
        summary: "A job fired, completed or failed (`time` in epoch ms). Session jobs name their `sessionId`; on completion they carry the reply's `stopReason` and `text` (its first 2,000 characters; the whole turn is in `getSessionEvents`).",
        payload: "{ event: { type: \"cron:fire\"; jobId: string; time: number; sessionId?: string } | { type: \"cron:complete\"; jobId: string; time: number; durationMs: number; sessionId?: string; stopReason?: string; text?: string; textTruncated?: boolean } | { type: \"cron:error\"; jobId: string; time: number; error: string; sessionId?: string } }",
    }],
    types: &[(
        "CronJob",
        "{ id: string; schedule: string; action: unknown; overlap: \"allow\" | \"skip\" | \"queue\"; lastRun: number | null; nextRun: number | null; runCount: number; running: boolean; lastError: string | null }",
    )],
};

/// The internal action the host alarm delivers; not in the public table.
pub static CRON_TICK: ActionSpec = ActionSpec {
    name: "__agentosCronTick",
    summary: "Internal: a cron job's alarm.",
    params: &[req("id", ArgType::Str, "Job id."), req("due", ArgType::U64, "The due time the alarm was set for.")],
    returns: "null",
    handler: cron_tick,
    detached: true,
};

/// What a job runs.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Target {
    Exec {
        command: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        args: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<std::collections::BTreeMap<String, String>>,
    },
    Action {
        name: String,
        #[serde(default)]
        args: Vec<Value>,
    },
    #[serde(rename_all = "camelCase")]
    Session {
        agent_type: String,
        prompt: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        options: Option<Value>,
    },
}

impl Target {
    fn parse(value: Value) -> Result<Self, ActorError> {
        if value.get("type").and_then(Value::as_str) == Some("session") {
            // Checked field by field, so errors name the field.
            SessionJob::check(&value)?;
        }
        let target: Target = serde_json::from_value(value).map_err(|e| {
            ActorError::invalid_argument(
                "options.action",
                format!(
                    "{e} (expected {{ type: \"exec\", command, ... }}, {{ type: \"action\", name, args }} or {{ type: \"session\", agentType, prompt, ... }})"
                ),
            )
        })?;
        if let Target::Action { name, args } = &target {
            // Checked now, so a bad job fails when scheduled, not at 3 a.m.
            let spec = crate::contract::find(name).ok_or_else(|| {
                ActorError::invalid_argument("options.action.name", format!("no action named `{name}`"))
            })?;
            crate::args::decode(spec.params, &cbor_args(args)?).map_err(|e| {
                ActorError::invalid_argument("options.action.args", format!("do not fit `{name}`: {}", e.message))
            })?;
        }
        Ok(target)
    }

    /// The session a run at `fired` prompts: the job's own, or a new one
    /// named after the job and the run.
    fn session_of(&self, job_id: &str, fired: i64) -> Option<String> {
        match self {
            Target::Session { session_id: Some(id), .. } => Some(id.clone()),
            Target::Session { session_id: None, .. } => Some(format!("cron-{job_id}-{fired}")),
            _ => None,
        }
    }
}

fn cbor_args(args: &[Value]) -> Result<Vec<u8>, ActorError> {
    let value = ciborium::Value::serialized(args).map_err(|e| ActorError::internal(format!("encode args: {e}")))?;
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).map_err(|e| ActorError::internal(format!("encode args: {e}")))?;
    Ok(out)
}

/// The first run of `schedule` strictly after `after_ms`; None when a
/// one-shot time has passed.
pub fn next_run(schedule: &str, after_ms: i64) -> Result<Option<i64>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(schedule) {
        let at = at.timestamp_millis();
        return Ok((at > after_ms).then_some(at));
    }
    let cron = croner::Cron::new(schedule)
        .with_seconds_optional()
        .parse()
        .map_err(|e| format!("`{schedule}` is neither a cron expression nor an RFC 3339 time: {e}"))?;
    let after = DateTime::<Utc>::from_timestamp_millis(after_ms).ok_or("time out of range")?;
    cron.find_next_occurrence(&after, false)
        .map(|t| Some(t.timestamp_millis()))
        .map_err(|e| format!("`{schedule}` has no next run: {e}"))
}

async fn arm(host: &HostCtx, id: &str, due: i64) -> Result<(), ActorError> {
    host.schedule_at(due, CRON_TICK.name, cbor_args(&[json!(id), json!(due)])?)
        .await
        .map_err(internal_while("set the cron alarm"))
}

fn schedule_cron(call: Call) -> Reply {
    async move {
        let options = call.args.object(0)?;
        let id = options.str("id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        if id.is_empty() {
            return Err(ActorError::invalid_argument("options.id", "must not be empty"));
        }
        let schedule = options.str("schedule").unwrap_or_default();
        let target = Target::parse(options.json("action").unwrap_or(Value::Null))?;
        let overlap = options.str("overlap").unwrap_or_else(|| "allow".into());
        let now = now_ms();
        let next = next_run(&schedule, now)
            .map_err(|e| ActorError::invalid_argument("options.schedule", e))?
            .ok_or_else(|| ActorError::invalid_argument("options.schedule", format!("`{schedule}` is in the past")))?;
        call.host
            .db_run(
                "INSERT OR REPLACE INTO agentos_cron_jobs (id, schedule, target, overlap, created_at_ms, next_run_ms, run_count)
                 VALUES (?, ?, ?, ?, ?, ?, 0)",
                &json!([id, schedule, serde_json::to_string(&target).unwrap_or_default(), overlap, now, next]),
            )
            .await
            .map_err(internal_while("store the cron job"))?;
        arm(&call.host, &id, next).await?;
        reply(&json!({ "id": id }))
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobInfo {
    id: String,
    schedule: String,
    action: Value,
    overlap: String,
    last_run: Option<i64>,
    next_run: Option<i64>,
    run_count: i64,
    running: bool,
    last_error: Option<String>,
}

fn list_cron_jobs(call: Call) -> Reply {
    async move {
        let rows = call
            .host
            .db_query(
                "SELECT id, schedule, target, overlap, last_run_ms, next_run_ms, run_count, last_error
                 FROM agentos_cron_jobs ORDER BY created_at_ms, id",
                &json!([]),
            )
            .await
            .map_err(internal_while("read cron jobs"))?;
        let runs = call.slot.cron_runs();
        let jobs: Vec<JobInfo> = rows
            .iter()
            .map(|row| {
                let text = |k: &str| row.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                let id = text("id");
                JobInfo {
                    running: runs.is_running(&id),
                    schedule: text("schedule"),
                    action: serde_json::from_str(&text("target")).unwrap_or(Value::Null),
                    overlap: text("overlap"),
                    last_run: row.get("last_run_ms").and_then(Value::as_i64),
                    next_run: row.get("next_run_ms").and_then(Value::as_i64),
                    run_count: row.get("run_count").and_then(Value::as_i64).unwrap_or(0),
                    last_error: row.get("last_error").and_then(Value::as_str).map(str::to_owned),
                    id,
                }
            })
            .collect();
        reply(&jobs)
    }
    .boxed()
}

fn cancel_cron_job(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let rows = call
            .host
            .db_query("SELECT id FROM agentos_cron_jobs WHERE id = ?", &json!([id]))
            .await
            .map_err(internal_while("read the cron job"))?;
        if rows.is_empty() {
            return Err(ActorError::new(code::NOT_FOUND, format!("no cron job `{id}`")).with_field("id", id.as_str()));
        }
        call.host
            .db_run("DELETE FROM agentos_cron_jobs WHERE id = ?", &json!([id]))
            .await
            .map_err(internal_while("delete the cron job"))?;
        reply_null()
    }
    .boxed()
}

/// Runs in progress, per job, for the overlap policy.
#[derive(Default)]
pub struct CronRuns {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl CronRuns {
    fn lock_of(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        crate::live::lock(&self.locks).entry(id.to_owned()).or_default().clone()
    }

    fn is_running(&self, id: &str) -> bool {
        crate::live::lock(&self.locks).get(id).is_some_and(|l| l.try_lock().is_err())
    }
}

fn cron_event(host: &HostCtx, event: Value) {
    broadcast_event(host, "cronEvent", &json!({ "event": event }));
}

fn cron_tick(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let due = call.args.uint(1)? as i64;
        let rows = call
            .host
            .db_query("SELECT schedule, target, overlap, next_run_ms FROM agentos_cron_jobs WHERE id = ?", &json!([id]))
            .await
            .map_err(internal_while("read the cron job"))?;
        // Cancelled, rescheduled, or not due: a stale alarm does nothing.
        let Some(row) = rows.first() else { return reply_null() };
        if row.get("next_run_ms").and_then(Value::as_i64) != Some(due) {
            return reply_null();
        }
        // An alarm that came early (another clock ahead of ours) is set again.
        if due > now_ms() {
            arm(&call.host, &id, due).await?;
            return reply_null();
        }
        let schedule = row.get("schedule").and_then(Value::as_str).unwrap_or_default().to_owned();
        let overlap = row.get("overlap").and_then(Value::as_str).unwrap_or("allow").to_owned();
        let target: Target = serde_json::from_str(row.get("target").and_then(Value::as_str).unwrap_or_default())
            .map_err(|e| ActorError::internal(format!("stored cron target of `{id}` is unreadable: {e}")))?;

        // The next alarm is set before the run, so a crash mid-run loses
        // no later runs.
        let fired = now_ms();
        let next = next_run(&schedule, fired.max(due)).unwrap_or(None);
        call.host
            .db_run(
                "UPDATE agentos_cron_jobs SET next_run_ms = ?, last_run_ms = ?, run_count = run_count + 1 WHERE id = ?",
                &json!([next, fired, id]),
            )
            .await
            .map_err(internal_while("update the cron job"))?;
        if let Some(next) = next {
            arm(&call.host, &id, next).await?;
        }

        let lock = call.slot.cron_runs().lock_of(&id);
        let _running = match overlap.as_str() {
            "skip" => match lock.try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => return reply_null(),
            },
            "queue" => lock.lock_owned().await,
            // `allow`: runs may overlap; the first one shows as running.
            _ => match lock.try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => Arc::new(tokio::sync::Mutex::new(())).lock_owned().await,
            },
        };

        let session = target.session_of(&id, fired);
        let with_session = |mut event: Value| {
            if let Some(session) = &session {
                event["sessionId"] = json!(session);
            }
            event
        };
        cron_event(&call.host, with_session(json!({ "type": "cron:fire", "jobId": id, "time": fired })));
        let outcome = run_target(&call, target, session.as_deref()).await;
        let ended = now_ms();
        let error = outcome.as_ref().err();
        call.host
            .db_run("UPDATE agentos_cron_jobs SET last_error = ? WHERE id = ?", &json!([error, id]))
            .await
            .map_err(internal_while("update the cron job"))?;
        let event = match outcome {
            Ok(details) => {
                let mut event = json!({ "type": "cron:complete", "jobId": id, "time": ended, "durationMs": ended - fired });
                if let (Some(event), Value::Object(details)) = (event.as_object_mut(), details) {
                    event.extend(details);
                }
                event
            }
            Err(error) => with_session(json!({ "type": "cron:error", "jobId": id, "time": ended, "error": error })),
        };
        cron_event(&call.host, event);
        reply_null()
    }
    .boxed()
}

/// Runs a job's target; replies with what `cron:complete` adds (an object,
/// or null).
async fn run_target(call: &Call, target: Target, session: Option<&str>) -> Result<Value, String> {
    match target {
        Target::Exec { command, args, cwd, env } => {
            let vm = call.vm().await.map_err(|e| e.message)?;
            let defaults = ExecOptions::default();
            let options = ExecOptions { env: env.unwrap_or_default(), cwd: cwd.or(defaults.cwd.clone()), ..defaults };
            let result = match args {
                Some(args) => vm.exec_argv_process(&command, &args, options).await,
                None => vm.exec_process(&command, options).await,
            }
            .map_err(|e| ActorError::from_vm(e).message)?;
            if result.exit_code != 0 {
                let tail: String = result.stderr.chars().rev().take(500).collect::<Vec<_>>().into_iter().rev().collect();
                return Err(format!("`{command}` exited with {}: {tail}", result.exit_code));
            }
            Ok(Value::Null)
        }
        Target::Action { name, args } => {
            let spec = crate::contract::find(&name).ok_or_else(|| format!("no action named `{name}`"))?;
            let raw = cbor_args(&args).map_err(|e| e.message)?;
            let args = crate::args::decode(spec.params, &raw).map_err(|e| e.message)?;
            let inner = Call { name: spec.name, slot: call.slot.clone(), settings: call.settings.clone(), host: call.host.clone(), args };
            (spec.handler)(inner).await.map(|_| Value::Null).map_err(|e| format!("{}: {}", e.code, e.message))
        }
        Target::Session { .. } => {
            let job = serde_json::to_value(&target)
                .map_err(|e| e.to_string())
                .and_then(|value| SessionJob::check(&value).map_err(|e| format!("stored session target: {e}")))?;
            job.run(call, session.unwrap_or_default()).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_runs_of_cron_and_one_shot_schedules() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:30Z").unwrap().timestamp_millis();
        let minute = next_run("* * * * *", t0).unwrap().unwrap();
        assert_eq!(minute - t0, 30_000);
        let five_s = next_run("*/5 * * * * *", t0).unwrap().unwrap();
        assert_eq!(five_s - t0, 5_000);
        assert_eq!(next_run("2026-01-01T00:01:00Z", t0).unwrap(), Some(t0 + 30_000));
        assert_eq!(next_run("2025-01-01T00:00:00Z", t0).unwrap(), None);
        assert!(next_run("every tuesday", t0).unwrap_err().contains("every tuesday"));
    }

    #[test]
    fn targets_are_checked_when_scheduled() {
        let ok = Target::parse(json!({ "type": "exec", "command": "echo", "args": ["hi"] })).unwrap();
        assert!(matches!(ok, Target::Exec { .. }));
        Target::parse(json!({ "type": "action", "name": "writeFile", "args": ["/a", "b"] })).unwrap();
        let e = Target::parse(json!({ "type": "action", "name": "nope" })).unwrap_err();
        assert!(e.message.contains("`options.action.name`"), "{}", e.message);
        let e = Target::parse(json!({ "type": "action", "name": "writeFile", "args": [1] })).unwrap_err();
        assert!(e.message.contains("`options.action.args`") && e.message.contains("`path`"), "{}", e.message);
        let e = Target::parse(json!({ "type": "shell", "command": "x" })).unwrap_err();
        assert!(e.message.contains("`options.action`"), "{}", e.message);
        let e = Target::parse(json!({ "type": "exec", "command": "x", "extra": 1 })).unwrap_err();
        assert!(e.message.contains("extra"), "{}", e.message);
    }

    #[test]
    fn session_targets_keep_upstream_shape_and_add_a_session_and_options() {
        let upstream = Target::parse(json!({ "type": "session", "agentType": "pi", "prompt": "Tidy up." })).unwrap();
        assert_eq!(upstream.session_of("job", 42).as_deref(), Some("cron-job-42"));
        let full = json!({
            "type": "session", "agentType": "pi", "sessionId": "daily",
            "prompt": [{ "type": "text", "text": "Report." }],
            "options": { "cwd": "/home/agentos", "env": { "K": "v" }, "permissionPolicy": "reject_all", "skipOsInstructions": true },
        });
        let target = Target::parse(full.clone()).unwrap();
        assert_eq!(target.session_of("job", 42).as_deref(), Some("daily"));
        // Stored and listed as given.
        let stored = serde_json::to_value(&target).unwrap();
        assert_eq!(stored, full);
        assert_eq!(serde_json::from_value::<Target>(stored).unwrap(), target);
        assert_eq!(Target::parse(json!({ "type": "exec", "command": "true" })).unwrap().session_of("job", 1), None);
    }

    #[test]
    fn bad_session_targets_name_the_field() {
        let base = json!({ "type": "session", "agentType": "pi", "prompt": "hi" });
        let with = |key: &str, value: Value| {
            let mut target = base.clone();
            target[key] = value;
            target
        };
        let without = |key: &str| {
            let mut target = base.clone();
            target.as_object_mut().unwrap().remove(key);
            target
        };
        let cases = [
            (without("agentType"), "`options.action.agentType`"),
            (with("agentType", json!(1)), "`options.action.agentType`"),
            (with("agentType", json!(" ")), "`options.action.agentType`"),
            (without("prompt"), "`options.action.prompt`"),
            (with("prompt", json!("")), "`options.action.prompt`"),
            (with("prompt", json!(5)), "`options.action.prompt`"),
            (with("prompt", json!([])), "`options.action.prompt`"),
            (with("prompt", json!([{ "type": "nonsense" }])), "`options.action.prompt`"),
            (with("sessionId", json!("")), "`options.action.sessionId`"),
            (with("sessionId", json!(7)), "`options.action.sessionId`"),
            (with("options", json!("fast")), "`options.action.options`"),
            (with("options", json!({ "permissionPolicy": "sometimes" })), "`options.action.options.permissionPolicy`"),
            (with("options", json!({ "env": { "A": 1 } })), "`options.action.options.env.A`"),
            (with("options", json!({ "mcpServers": [{ "bogus": true }] })), "`options.action.options.mcpServers`"),
            (with("options", json!({ "additionalDirectories": "/tmp" })), "`options.action.options.additionalDirectories`"),
            (with("options", json!({ "sessionId": "x" })), "`options.action.options.sessionId`"),
            (with("colour", json!("red")), "`options.action.colour`"),
        ];
        for (target, needle) in cases {
            let e = Target::parse(target.clone()).expect_err(&target.to_string());
            assert_eq!(e.code, "invalid_argument", "{target}: {e}");
            assert!(e.message.contains(needle), "{target}: {} lacks {needle}", e.message);
        }
    }
}
