//! Which sessions the running VM has open, and the pumps that turn each
//! one's engine streams into actor events.
//!
//! The engine keeps every session (catalog and history) in the VM database,
//! which is the actor's SQLite. A fresh VM (after sleep or a restart) has
//! none open: the first action on a session opens it again from there, so
//! its conversation goes on.

use std::collections::BTreeMap;
use std::sync::Mutex;

use agentos_client::AgentOs;
use agentos_client::session::{DurableSessionEvent, OpenSessionInput, SessionStreamEntry};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::contract::Call;
use crate::error::{ActorError, code, internal_while};
use crate::host::HostCtx;
use crate::live::lock;
use crate::vm::broadcast_event;

/// Per VM: the sessions open in it.
#[derive(Default)]
pub struct OpenSessions {
    sessions: Mutex<BTreeMap<String, OpenSession>>,
    /// One open at a time, so a session never gets two sets of pumps.
    opening: tokio::sync::Mutex<()>,
}

struct OpenSession {
    agent: String,
    pumps: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        for pump in &self.pumps {
            pump.abort();
        }
    }
}

impl OpenSessions {
    /// `(sessionId, agentType)` of every open session.
    pub fn list(&self) -> Vec<(String, String)> {
        lock(&self.sessions).iter().map(|(id, open)| (id.clone(), open.agent.clone())).collect()
    }

    pub fn forget(&self, session_id: &str) {
        lock(&self.sessions).remove(session_id);
    }
}

/// Opens (or restores) a session in the running VM and starts its pumps.
/// `input` is the full creation request; without it the session must
/// already exist in the actor's storage.
pub async fn ensure_open(call: &Call, session_id: &str, input: Option<OpenSessionInput>) -> Result<AgentOs, ActorError> {
    let (vm, live) = call.live().await?;
    let open = &live.sessions;
    if input.is_none() && lock(&open.sessions).contains_key(session_id) {
        return Ok(vm);
    }
    let _one = open.opening.lock().await;
    if input.is_none() && lock(&open.sessions).contains_key(session_id) {
        return Ok(vm);
    }
    let input = match input {
        Some(input) => {
            remember(&call.host, session_id, &input).await?;
            input
        }
        None => recall(&call.host, &vm, session_id).await?,
    };
    let agent = input.agent.clone();
    vm.open_session(input).await.map_err(ActorError::from_vm)?;
    if !lock(&open.sessions).contains_key(session_id) {
        let pumps = vec![
            tokio::spawn(pump_events(vm.clone(), call.host.clone(), session_id.to_owned())),
            tokio::spawn(pump_exits(vm.clone(), call.host.clone(), session_id.to_owned(), live.clone())),
        ];
        lock(&open.sessions).insert(session_id.to_owned(), OpenSession { agent, pumps });
    }
    Ok(vm)
}

/// Opens session `session_id` if the actor has it (with the options it was
/// created with), else creates it from `input`.
pub async fn open_or_create(call: &Call, session_id: &str, input: OpenSessionInput) -> Result<AgentOs, ActorError> {
    match ensure_open(call, session_id, None).await {
        Err(e) if e.code == code::NOT_FOUND => ensure_open(call, session_id, Some(input)).await,
        opened => opened,
    }
}

/// Stops the session's agent; its history stays and a later action on the
/// session opens it again.
pub async fn close(call: &Call, session_id: &str) -> Result<(), ActorError> {
    let (vm, live) = call.live().await?;
    vm.unload_session(Some(session_id)).await.map_err(|e| not_found(session_id, e))?;
    live.sessions.forget(session_id);
    Ok(())
}

/// Stores how a session was created (before the engine opens it, so a
/// session the engine has always has its options here).
async fn remember(host: &HostCtx, session_id: &str, input: &OpenSessionInput) -> Result<(), ActorError> {
    let input = serde_json::to_string(input).map_err(|e| ActorError::internal(format!("encode session options: {e}")))?;
    host.db_run(
        "INSERT INTO agentos_sessions (session_id, input) VALUES (?, ?) \
         ON CONFLICT (session_id) DO UPDATE SET input = excluded.input",
        &json!([session_id, input]),
    )
    .await
    .map_err(internal_while("store the session's options"))
}

/// The creation options of a stored session. A session the engine has but
/// we have no options for (created before they were kept) is reopened with
/// its agent and directory.
async fn recall(host: &HostCtx, vm: &AgentOs, session_id: &str) -> Result<OpenSessionInput, ActorError> {
    let rows = host
        .db_query("SELECT input FROM agentos_sessions WHERE session_id = ?", &json!([session_id]))
        .await
        .map_err(internal_while("read the session's options"))?;
    if let Some(input) = rows.first().and_then(|row| row.get("input")).and_then(Value::as_str) {
        return serde_json::from_str(input).map_err(|e| ActorError::internal(format!("stored options of session `{session_id}`: {e}")));
    }
    let info = vm.get_session(Some(session_id)).await.map_err(|e| not_found(session_id, e))?;
    Ok(OpenSessionInput {
        session_id: Some(session_id.to_owned()),
        agent: info.agent,
        cwd: Some(info.cwd),
        additional_directories: Some(info.additional_directories),
        env: None,
        mcp_servers: None,
        permission_policy: None,
        skip_os_instructions: None,
        additional_instructions: None,
    })
}

/// Forgets a deleted session's options.
pub async fn forget_options(host: &HostCtx, session_id: &str) -> Result<(), ActorError> {
    host.db_run("DELETE FROM agentos_sessions WHERE session_id = ?", &json!([session_id]))
        .await
        .map_err(internal_while("delete the session's options"))
}

/// How the engine words a request that found the session's agent gone.
const AGENT_GONE: &str = "ACP adapter exited";

/// The engine's failure of a request on a session. When the agent had
/// exited (the engine notices on the next request and evicts the session),
/// the session is forgotten here too, so the next action opens it again
/// from storage, and the caller gets `agent_exited`.
pub fn session_failure(call: &Call, session_id: &str, error: anyhow::Error) -> ActorError {
    let text = format!("{error:#}");
    if !text.contains(AGENT_GONE) {
        return not_found(session_id, error);
    }
    if let Some((_, live)) = call.slot.running() {
        live.sessions.forget(session_id);
    }
    ActorError::new(
        code::AGENT_EXITED,
        format!("the agent of session `{session_id}` exited ({text}); its history is kept and the next action on the session starts it again"),
    )
}

/// The engine's "no such session" as our `not_found`.
pub fn not_found(session_id: &str, error: anyhow::Error) -> ActorError {
    let text = format!("{error:#}");
    if text.contains("not found") || text.contains("not_found") || text.contains("unknown session") {
        ActorError::new(code::NOT_FOUND, format!("no session `{session_id}`: {text}"))
    } else {
        ActorError::from_vm(error)
    }
}

/// Broadcasts the session's stream: every durable event as `sessionEvent`
/// with its sequence number (the same number `getSessionEvents` pages by),
/// streaming deltas as `sessionEvent` with `ephemeral: true`, and
/// permission requests and answers also as their own events.
async fn pump_events(vm: AgentOs, host: HostCtx, session_id: String) {
    let (mut stream, _subscription) = vm.on_session_event(Some(&session_id));
    while let Some(entry) = stream.next().await {
        match entry {
            Ok(SessionStreamEntry::Durable(entry)) => {
                let event = serde_json::to_value(&entry.event).unwrap_or(Value::Null);
                broadcast_event(&host, "sessionEvent", &json!({
                    "sessionId": session_id, "seq": entry.sequence, "timestamp": entry.timestamp, "event": event,
                }));
                match &entry.event {
                    DurableSessionEvent::PermissionRequest { request_id, options, tool_call, .. } => {
                        broadcast_event(&host, "permissionRequest", &json!({
                            "sessionId": session_id, "permissionId": request_id, "options": options, "toolCall": tool_call,
                        }));
                    }
                    DurableSessionEvent::PermissionResponse { request_id, outcome, status, reason, .. } => {
                        broadcast_event(&host, "permissionResolved", &json!({
                            "sessionId": session_id, "permissionId": request_id, "outcome": outcome, "status": status, "reason": reason,
                        }));
                    }
                    _ => {}
                }
            }
            Ok(SessionStreamEntry::Ephemeral(entry)) => {
                let event = serde_json::to_value(&entry.event).unwrap_or(Value::Null);
                broadcast_event(&host, "sessionEvent", &json!({
                    "sessionId": session_id, "seq": null, "afterSeq": entry.after_sequence, "ephemeral": true, "event": event,
                }));
            }
            Err(lagged) => {
                broadcast_event(&host, "streamError", &json!({
                    "scope": "session", "id": session_id, "code": "event_stream_lagged",
                    "message": format!("{lagged}; read what was missed with getSessionEvents"),
                }));
            }
        }
    }
}

/// Broadcasts `agentCrashed` when the session's agent process exits on its
/// own. The engine does not restart it, so the session counts as closed:
/// the next action on it opens it again from storage.
async fn pump_exits(vm: AgentOs, host: HostCtx, session_id: String, live: std::sync::Arc<crate::live::Live>) {
    let (mut exits, _subscription) = vm.on_agent_exit(Some(&session_id));
    if let Some(exit) = exits.next().await {
        broadcast_event(&host, "agentCrashed", &json!({ "sessionId": session_id, "event": exit }));
        // Ends this pump too (it is aborted with the session's entry).
        live.sessions.forget(&session_id);
    }
}
