//! Cron jobs that prompt an agent: checked field by field when scheduled,
//! run through the same session code as `createSession` and `sendPrompt`.

use agentos_client::session::ContentBlock;
use serde_json::{Value, json};

use crate::actions::sessions::{self, SESSION_OPTIONS};
use crate::args::{ArgType, Field, Fields, opt, req};
use crate::contract::Call;
use crate::error::ActorError;

/// Where the target sits in `scheduleCron`'s arguments (for errors).
const PATH: &str = "options.action";

const FIELDS: &[Field] = &[
    req("type", ArgType::OneOf(&["session"]), "The kind of target."),
    req("agentType", ArgType::Str, "Agent package id, e.g. `pi`."),
    req("prompt", ArgType::Json, "Text, or ACP content blocks."),
    opt("sessionId", ArgType::Str, "The session every run goes on with."),
    opt("options", ArgType::Object(SESSION_OPTIONS), "`createSession`'s options."),
];

/// The most reply text a `cron:complete` event carries; the whole turn is
/// in the session's history.
const TEXT_MAX: usize = 2000;

/// A checked session target.
pub struct SessionJob {
    agent: String,
    content: Vec<ContentBlock>,
    session_id: Option<String>,
    options: Fields,
}

impl SessionJob {
    /// Checks a `{ type: "session", ... }` target; errors name the field.
    pub fn check(value: &Value) -> Result<SessionJob, ActorError> {
        let fields = crate::args::decode_json(ArgType::Object(FIELDS), value, PATH)?.fields();
        let agent = sessions::agent_type(fields.str("agentType").unwrap_or_default(), &format!("{PATH}.agentType"))?;
        let content = sessions::prompt_content(fields.json("prompt").unwrap_or(Value::Null), &format!("{PATH}.prompt"))?;
        let session_id = fields.str("sessionId");
        if session_id.as_deref().is_some_and(|id| id.trim().is_empty()) {
            return Err(ActorError::invalid_argument(&format!("{PATH}.sessionId"), "must not be empty"));
        }
        let options = fields.object("options").unwrap_or_default();
        // Built once now so options the engine request cannot take fail
        // when scheduled rather than at run time.
        sessions::open_input(agent.clone(), "", &options, &format!("{PATH}.options"))?;
        Ok(SessionJob { agent, content, session_id, options })
    }

    /// Prompts `session_id`: the job's own session (opened, or created if
    /// it does not exist yet), or a new one that is closed after the turn
    /// with its history kept. Replies with the fields `cron:complete` adds.
    pub async fn run(self, call: &Call, session_id: &str) -> Result<Value, String> {
        let input = sessions::open_input(self.agent.clone(), session_id, &self.options, &format!("{PATH}.options"))
            .map_err(|e| e.to_string())?;
        let fresh = self.session_id.is_none();
        let opened = if fresh {
            sessions::ensure_open(call, session_id, Some(input)).await
        } else {
            sessions::open_or_create(call, session_id, input).await
        };
        let vm = opened.map_err(|e| format!("session `{session_id}`: could not open agent `{}`: {e}", self.agent))?;
        let turn = sessions::prompt_turn(call, &vm, session_id, self.content).await;
        if fresh {
            // Its agent process is not needed any more; the history stays.
            if let Err(e) = sessions::close(call, session_id).await {
                tracing::warn!(session_id, "closing a cron run's session failed: {e}");
            }
        }
        let turn = turn.map_err(|e| format!("session `{session_id}`: the prompt failed: {e}"))?;
        let text = turn["text"].as_str().unwrap_or_default();
        Ok(json!({
            "sessionId": session_id,
            "stopReason": turn["stopReason"],
            "text": text.chars().take(TEXT_MAX).collect::<String>(),
            "textTruncated": text.chars().nth(TEXT_MAX).is_some(),
        }))
    }
}
