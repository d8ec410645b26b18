//! Agent sessions (ACP): a coding agent such as Pi working in the VM. The
//! engine keeps each session's catalog and full event history in the VM
//! database (the actor's SQLite, see `vm_db`), so a session outlives the VM:
//! after sleep or a host restart the same session id goes on with the same
//! conversation.
//!
//! Raw ACP (`rawSessionSend`) is not offered: agentos-client 0.2.21 exposes
//! typed session operations only ("not a second raw JSON-RPC session API",
//! its module docs), and every typed operation is here.

mod input;
mod open;
mod transcript;

use agentos_client::AgentOs;
use agentos_client::session::{
    CancelPromptStatus, ContentBlock, PermissionResponseStatus, PromptInput, SessionConfigValue, SessionState,
};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::{Value, json};

use input::CREATE_FIELDS;
pub use input::{SESSION_OPTIONS, agent_type, open_input, prompt_content};
pub use open::{OpenSessions, close, ensure_open, open_or_create};
use open::{not_found, session_failure};

use super::reply;
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, EventSpec, Section};
use crate::error::{ActorError, code};

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// Events per `getSessionEvents` page unless the caller asks otherwise.
const DEFAULT_PAGE: u64 = 100;
const MAX_PAGE: u64 = 1000;

const SESSION_ID: Field = req("sessionId", ArgType::Str, "The session id.");

const PAGE_FIELDS: &[Field] = &[
    opt("after", ArgType::U64, "Only events after this sequence number (default 0: from the start)."),
    opt("limit", ArgType::UInt { max: MAX_PAGE }, "At most this many events (default 100)."),
];

/// The agent sessions area of the contract.
pub static SECTION: Section = Section {
    area: "Agent sessions",
    actions: &[
        ActionSpec {
            name: "createSession",
            summary: "Start an agent session (or reopen one with the same `sessionId`); replies with its id.",
            params: &[req("agentType", ArgType::Str, "Agent package id, e.g. `pi` (see `listAgents`)."), opt("options", ArgType::Object(CREATE_FIELDS), "Session options.")],
            returns: "string",
            handler: create_session,
            detached: true,
        },
        ActionSpec {
            name: "sendPrompt",
            summary: "Prompt the agent and wait for the turn to end; progress streams as `sessionEvent`.",
            params: &[SESSION_ID, req("prompt", ArgType::Json, "Text, or ACP content blocks.")],
            returns: "{ text: string; stopReason: string; message: unknown | null }",
            handler: send_prompt,
            detached: true,
        },
        ActionSpec {
            name: "cancelPrompt",
            summary: "Cancel the session's running turn.",
            params: &[SESSION_ID],
            returns: "{ status: \"cancelled\" | \"no_active_prompt\" }",
            handler: cancel_prompt,
            detached: false,
        },
        ActionSpec {
            name: "respondPermission",
            summary: "Answer a `permissionRequest`: `once`, `always`, `reject`, or one of the request's option ids.",
            params: &[SESSION_ID, req("permissionId", ArgType::Str, "The request's id."), req("reply", ArgType::Str, "`once`, `always`, `reject` or an option id.")],
            returns: "{ status: \"accepted\" | \"not_pending\"; reason?: string }",
            handler: respond_permission,
            detached: false,
        },
        ActionSpec {
            name: "listPendingPermissions",
            summary: "Permission requests of open sessions still waiting for an answer.",
            params: &[],
            returns: "PendingPermission[]",
            handler: list_pending_permissions,
            detached: false,
        },
        ActionSpec {
            name: "getSessionConfigOptions",
            summary: "The agent's ACP config options for the session (modes, models, ...).",
            params: &[SESSION_ID],
            returns: "{ revision: number; options: unknown[] }",
            handler: get_config_options,
            detached: false,
        },
        ActionSpec {
            name: "setSessionConfigOption",
            summary: "Set one of the agent's config options.",
            params: &[SESSION_ID, req("configId", ArgType::Str, "The option's id."), req("value", ArgType::Json, "A string or a boolean.")],
            returns: "{ revision: number; options: unknown[] }",
            handler: set_config_option,
            detached: false,
        },
        ActionSpec {
            name: "setSessionMode",
            summary: "Set the agent's mode option (fails with `unsupported` when the agent has none).",
            params: &[SESSION_ID, req("modeId", ArgType::Str, "One of the mode option's values.")],
            returns: "{ revision: number; options: unknown[] }",
            handler: set_mode,
            detached: false,
        },
        ActionSpec {
            name: "setSessionModel",
            summary: "Set the agent's model option (fails with `unsupported` when the agent has none).",
            params: &[SESSION_ID, req("modelId", ArgType::Str, "One of the model option's values.")],
            returns: "{ revision: number; options: unknown[] }",
            handler: set_model,
            detached: false,
        },
        ActionSpec {
            name: "setSessionThoughtLevel",
            summary: "Set the agent's thought-level option (fails with `unsupported` when the agent has none).",
            params: &[SESSION_ID, req("level", ArgType::Str, "One of the option's values.")],
            returns: "{ revision: number; options: unknown[] }",
            handler: set_thought_level,
            detached: false,
        },
        ActionSpec {
            name: "getSessionCapabilities",
            summary: "What the agent said it can do (ACP capabilities), or null.",
            params: &[SESSION_ID],
            returns: "unknown | null",
            handler: get_capabilities,
            detached: false,
        },
        ActionSpec {
            name: "getSessionAgentInfo",
            summary: "The agent's name and version (ACP implementation info), or null.",
            params: &[SESSION_ID],
            returns: "{ name: string; version: string; title?: string } | null",
            handler: get_agent_info,
            detached: false,
        },
        ActionSpec {
            name: "listSessions",
            summary: "Sessions open in the running VM (none while it sleeps; this never boots it).",
            params: &[],
            returns: "{ sessionId: string; agentType: string }[]",
            handler: list_sessions,
            detached: false,
        },
        ActionSpec {
            name: "listPersistedSessions",
            summary: "Every stored session, open or not.",
            params: &[],
            returns: "PersistedSession[]",
            handler: list_persisted_sessions,
            detached: false,
        },
        ActionSpec {
            name: "getSessionEvents",
            summary: "Stored events of a session in sequence order, a page at a time (a reconnecting client reads what it missed).",
            params: &[SESSION_ID, opt("options", ArgType::Object(PAGE_FIELDS), "Paging.")],
            returns: "SessionEventEntry[]",
            handler: get_session_events,
            detached: false,
        },
        ActionSpec {
            name: "getSessionTranscript",
            summary: "The session's conversation as Markdown.",
            params: &[SESSION_ID],
            returns: "string",
            handler: get_transcript,
            detached: false,
        },
        ActionSpec {
            name: "closeSession",
            summary: "Stop the session's agent; its history stays (a later prompt reopens it).",
            params: &[SESSION_ID],
            returns: "null",
            handler: close_session,
            detached: false,
        },
        ActionSpec {
            name: "deleteSession",
            summary: "Stop the session's agent and delete the session with its history.",
            params: &[SESSION_ID],
            returns: "null",
            handler: delete_session,
            detached: false,
        },
    ],
    events: &[
        EventSpec {
            name: "sessionEvent",
            summary: "A session update: stored ones carry `seq` (page with `getSessionEvents`); streaming deltas have `ephemeral: true`.",
            payload: "{ sessionId: string; seq: number | null; timestamp?: string; afterSeq?: number; ephemeral?: true; event: { type: string; [key: string]: unknown } }",
        },
        EventSpec {
            name: "permissionRequest",
            summary: "The agent asks permission (policy `ask`); answer with `respondPermission`.",
            payload: "{ sessionId: string; permissionId: string; options: { optionId: string; name: string; kind: string }[]; toolCall: unknown }",
        },
        EventSpec {
            name: "permissionResolved",
            summary: "A permission request was answered or ended.",
            payload: "{ sessionId: string; permissionId: string; outcome: unknown; status: \"accepted\" | \"not_pending\"; reason: string | null }",
        },
        EventSpec {
            name: "agentCrashed",
            summary: "A session's agent process exited on its own; the next action on the session starts it again.",
            payload: "{ sessionId: string; event: { sessionId: string; agentType: string; processId: string; pid: number | null; exitCode: number | null; restart: string; restartCount: number; maxRestarts: number } }",
        },
        EventSpec {
            name: "streamError",
            summary: "An event stream fell behind; read what was missed with the matching replay action.",
            payload: "{ scope: \"session\"; id: string; code: \"event_stream_lagged\"; message: string }",
        },
    ],
    types: &[
        ("PendingPermission", "{ sessionId: string; permissionId: string; options: { optionId: string; name: string; kind: string }[]; toolCall: unknown }"),
        ("PersistedSession", "{ sessionId: string; agentType: string; cwd: string; status: \"idle\" | \"running\" | \"waiting\" | \"failed\"; open: boolean; latestSeq: number; title?: string; createdAt: string; updatedAt: string }"),
        ("SessionEventEntry", "{ sessionId: string; seq: number; event: { type: string; [key: string]: unknown }; createdAt: string }"),
    ],
};

fn create_session(call: Call) -> Reply {
    async move {
        let agent = input::agent_type(call.args.str(0)?, "agentType")?;
        let options = call.args.object(1)?;
        let session_id = options.str("sessionId").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let input = open_input(agent, &session_id, &options, "options")?;
        ensure_open(&call, &session_id, Some(input)).await?;
        reply(&session_id)
    }
    .boxed()
}

fn send_prompt(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let content = prompt_content(call.args.json(1)?, "prompt")?;
        let vm = ensure_open(&call, &session_id, None).await?;
        reply(&prompt_turn(&call, &vm, &session_id, content).await?)
    }
    .boxed()
}

/// One turn of an open session: `{ text, stopReason, message }` of the
/// agent's reply.
pub async fn prompt_turn(call: &Call, vm: &AgentOs, session_id: &str, content: Vec<ContentBlock>) -> Result<Value, ActorError> {
    let result = vm
        .prompt(PromptInput { session_id: Some(session_id.to_owned()), idempotency_key: None, content })
        .await
        .map_err(|e| session_failure(call, session_id, e))?;
    let message = serde_json::to_value(&result.message).unwrap_or(Value::Null);
    let text: String = message["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|block| block["text"].as_str())
        .collect();
    Ok(json!({ "text": text, "stopReason": result.stop_reason, "message": message }))
}

fn cancel_prompt(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        // A sleeping VM runs no turn: nothing to cancel, nothing to boot.
        let Some((vm, _)) = call.slot.running() else {
            return reply(&json!({ "status": "no_active_prompt" }));
        };
        let status = match vm.cancel_prompt(Some(&session_id)).await.map_err(|e| session_failure(&call, &session_id, e))? {
            CancelPromptStatus::Cancelled => "cancelled",
            CancelPromptStatus::NoActivePrompt => "no_active_prompt",
        };
        reply(&json!({ "status": status }))
    }
    .boxed()
}

fn respond_permission(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let permission_id = call.args.str(1)?;
        let answer = call.args.str(2)?;
        let vm = ensure_open(&call, &session_id, None).await?;
        let info = vm.get_session(Some(&session_id)).await.map_err(|e| not_found(&session_id, e))?;
        let SessionState::Waiting { requests, .. } = info.state else {
            return Err(ActorError::new(code::NOT_FOUND, format!("session `{session_id}` has no pending permission request")));
        };
        let request = requests.iter().find(|r| r.request_id == permission_id).ok_or_else(|| {
            ActorError::new(code::NOT_FOUND, format!("no pending permission request `{permission_id}` in session `{session_id}`"))
        })?;
        let options = serde_json::to_value(&request.options).unwrap_or(Value::Null);
        let options = options.as_array().cloned().unwrap_or_default();
        let of_kind = |kinds: &[&str]| {
            kinds.iter().find_map(|kind| options.iter().find(|o| o["kind"] == *kind)).and_then(|o| o["optionId"].as_str()).map(str::to_owned)
        };
        let option_id = match answer.as_str() {
            "once" => of_kind(&["allow_once", "allow_always"]),
            "always" => of_kind(&["allow_always"]),
            "reject" => of_kind(&["reject_once", "reject_always"]),
            id => options.iter().any(|o| o["optionId"] == id).then(|| id.to_owned()),
        }
        .ok_or_else(|| {
            let offered: Vec<&str> = options.iter().filter_map(|o| o["optionId"].as_str()).collect();
            ActorError::invalid_argument("reply", format!("`{answer}` matches none of the request's options {offered:?}"))
        })?;
        let status = vm.respond_permission(&session_id, &permission_id, &option_id).await.map_err(|e| session_failure(&call, &session_id, e))?;
        reply(&match status {
            PermissionResponseStatus::Accepted => json!({ "status": "accepted" }),
            PermissionResponseStatus::NotPending(reason) => json!({ "status": "not_pending", "reason": reason }),
        })
    }
    .boxed()
}

fn list_pending_permissions(call: Call) -> Reply {
    async move {
        let Some((vm, live)) = call.slot.running() else { return reply(&Vec::<Value>::new()) };
        let mut pending = Vec::new();
        for (session_id, _) in live.sessions.list() {
            let Ok(info) = vm.get_session(Some(&session_id)).await else { continue };
            if let SessionState::Waiting { requests, .. } = info.state {
                for request in requests {
                    pending.push(json!({
                        "sessionId": session_id, "permissionId": request.request_id,
                        "options": request.options, "toolCall": request.tool_call,
                    }));
                }
            }
        }
        reply(&pending)
    }
    .boxed()
}

fn config_reply(config: agentos_client::session::SessionConfig) -> Result<Vec<u8>, ActorError> {
    reply(&json!({ "revision": config.revision, "options": config.options }))
}

fn get_config_options(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let vm = ensure_open(&call, &session_id, None).await?;
        config_reply(vm.get_session_config(Some(&session_id)).await.map_err(ActorError::from_vm)?)
    }
    .boxed()
}

fn set_config_option(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let config_id = call.args.str(1)?;
        let value = match call.args.json(2)? {
            Value::String(text) => SessionConfigValue::String(text),
            Value::Bool(flag) => SessionConfigValue::Boolean(flag),
            other => return Err(ActorError::invalid_argument("value", format!("expected a string or a boolean, got {other}"))),
        };
        let vm = ensure_open(&call, &session_id, None).await?;
        set_option(&call, &vm, &session_id, &config_id, value).await
    }
    .boxed()
}

/// Sets an option of an open session; replies with the new config.
async fn set_option(call: &Call, vm: &AgentOs, session_id: &str, config_id: &str, value: SessionConfigValue) -> Result<Vec<u8>, ActorError> {
    vm.set_session_config_option(Some(session_id), config_id, value).await.map_err(|e| session_failure(call, session_id, e))?;
    config_reply(vm.get_session_config(Some(session_id)).await.map_err(ActorError::from_vm)?)
}

/// Sets the value of the agent's option of one ACP category.
async fn set_by_category(call: Call, category: &'static str, what: &'static str, argument: &'static str) -> Result<Vec<u8>, ActorError> {
    let session_id = call.args.str(0)?;
    let value = call.args.str(1)?;
    let vm = ensure_open(&call, &session_id, None).await?;
    let config = vm.get_session_config(Some(&session_id)).await.map_err(ActorError::from_vm)?;
    let options = serde_json::to_value(&config.options).unwrap_or(Value::Null);
    let Some((config_id, values)) = option_of_category(&options, category) else {
        let agent = vm.get_session(Some(&session_id)).await.map(|i| i.agent).unwrap_or_default();
        return Err(ActorError::new(code::UNSUPPORTED, format!("agent `{agent}` offers no {what} option for session `{session_id}`")));
    };
    if let Some(values) = values.filter(|values| !values.contains(&value)) {
        return Err(ActorError::invalid_argument(argument, format!("`{value}` is not one of the session's {what} values {values:?}")));
    }
    set_option(&call, &vm, &session_id, &config_id, SessionConfigValue::String(value)).await
}

/// The id of the agent's config option of ACP category `category`, with
/// the values it takes when it lists them (a select's choices, flattened
/// out of their groups).
fn option_of_category(options: &Value, category: &str) -> Option<(String, Option<Vec<String>>)> {
    let option = options.as_array()?.iter().find(|o| o["category"] == category)?;
    let id = option["id"].as_str()?.to_owned();
    let values = option["options"].as_array().map(|choices| {
        choices
            .iter()
            .flat_map(|choice| match choice["options"].as_array() {
                Some(group) => group.clone(),
                None => vec![choice.clone()],
            })
            .filter_map(|choice| choice["value"].as_str().map(str::to_owned))
            .collect()
    });
    Some((id, values))
}

fn set_mode(call: Call) -> Reply {
    set_by_category(call, "mode", "mode", "modeId").boxed()
}

fn set_model(call: Call) -> Reply {
    set_by_category(call, "model", "model", "modelId").boxed()
}

fn set_thought_level(call: Call) -> Reply {
    set_by_category(call, "thought_level", "thought-level", "level").boxed()
}

fn get_capabilities(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let vm = ensure_open(&call, &session_id, None).await?;
        reply(&vm.get_session_capabilities(Some(&session_id)).await.map_err(ActorError::from_vm)?)
    }
    .boxed()
}

fn get_agent_info(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let vm = ensure_open(&call, &session_id, None).await?;
        reply(&vm.get_session_agent_info(Some(&session_id)).await.map_err(ActorError::from_vm)?)
    }
    .boxed()
}

fn list_sessions(call: Call) -> Reply {
    async move {
        let open = call.slot.running().map(|(_, live)| live.sessions.list()).unwrap_or_default();
        let entries: Vec<Value> = open.into_iter().map(|(id, agent)| json!({ "sessionId": id, "agentType": agent })).collect();
        reply(&entries)
    }
    .boxed()
}

fn list_persisted_sessions(call: Call) -> Reply {
    async move {
        let (vm, live) = call.live().await?;
        let open: Vec<String> = live.sessions.list().into_iter().map(|(id, _)| id).collect();
        let mut entries = Vec::new();
        let mut cursor = None;
        // Bounded: 100 pages of 100 sessions.
        for _ in 0..100 {
            let page = vm
                .list_sessions(agentos_client::session::ListSessionsInput { cursor, limit: Some(100) })
                .await
                .map_err(ActorError::from_vm)?;
            for info in page.sessions {
                let status = match info.state {
                    SessionState::Idle => "idle",
                    SessionState::Running { .. } => "running",
                    SessionState::Waiting { .. } => "waiting",
                    SessionState::Failed { .. } => "failed",
                };
                entries.push(json!({
                    "sessionId": info.session_id, "agentType": info.agent, "cwd": info.cwd, "status": status,
                    "open": open.contains(&info.session_id), "latestSeq": info.latest_sequence, "title": info.title,
                    "createdAt": info.created_at, "updatedAt": info.updated_at,
                }));
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        reply(&entries)
    }
    .boxed()
}

fn get_session_events(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let page = call.args.object(1)?;
        let after = page.uint("after").unwrap_or(0);
        let limit = page.uint("limit").unwrap_or(DEFAULT_PAGE);
        let vm = call.vm().await?;
        let events = transcript::events_after(&vm, &session_id, after, limit).await?;
        reply(&events)
    }
    .boxed()
}

fn get_transcript(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let vm = call.vm().await?;
        reply(&transcript::markdown(&vm, &session_id).await?)
    }
    .boxed()
}

fn close_session(call: Call) -> Reply {
    async move {
        close(&call, &call.args.str(0)?).await?;
        super::reply_null()
    }
    .boxed()
}

fn delete_session(call: Call) -> Reply {
    async move {
        let session_id = call.args.str(0)?;
        let (vm, live) = call.live().await?;
        vm.delete_session(Some(&session_id)).await.map_err(|e| not_found(&session_id, e))?;
        live.sessions.forget(&session_id);
        open::forget_options(&call.host, &session_id).await?;
        super::reply_null()
    }
    .boxed()
}

#[cfg(test)]
mod tests;

