//! What a client gives to start and to prompt a session, checked and turned
//! into engine requests. Shared by `createSession`/`sendPrompt` and by cron
//! jobs that prompt an agent, so both accept and refuse the same things.

use agentos_client::session::{ContentBlock, McpServerConfig, OpenSessionInput, PermissionPolicy};
use serde_json::{Value, json};

use crate::args::{ArgType, Field, Fields, opt};
use crate::error::ActorError;

/// `createSession`'s options. `sessionId` comes first so the rest can be
/// shared on their own.
pub const CREATE_FIELDS: &[Field] = &[
    opt("sessionId", ArgType::Str, "Your own id for the session (default: a new UUID)."),
    opt("cwd", ArgType::Str, "Working directory of the agent (default: the VM user's home)."),
    opt("env", ArgType::StrMap, "Environment of the agent process (e.g. the LLM provider's base URL and key)."),
    opt("mcpServers", ArgType::Json, "ACP MCP server configs (`stdio`, `http`, `sse`) the agent connects to."),
    opt("permissionPolicy", ArgType::OneOf(&["allow_all", "ask", "reject_all"]), "What happens when the agent asks permission (default `allow_all`; `ask` raises `permissionRequest`)."),
    opt("additionalInstructions", ArgType::Str, "Appended to the OS instructions given to the agent."),
    opt("skipOsInstructions", ArgType::Bool, "Do not give the agent the agentOS instructions."),
    opt("additionalDirectories", ArgType::StrList, "More directories the agent may work in."),
];

/// The session options without `sessionId` (a cron session target names
/// its session at its top level).
pub const SESSION_OPTIONS: &[Field] = CREATE_FIELDS.split_at(1).1;

/// An agent type: a non-empty string (`path` names it in errors).
pub fn agent_type(agent: String, path: &str) -> Result<String, ActorError> {
    if agent.trim().is_empty() {
        return Err(ActorError::invalid_argument(path, "must name an agent (e.g. `pi`, see `listAgents`)"));
    }
    Ok(agent)
}

/// The engine's request to open session `session_id` of `agent` with
/// decoded session `options`; `path` names the options in errors.
pub fn open_input(agent: String, session_id: &str, options: &Fields, path: &str) -> Result<OpenSessionInput, ActorError> {
    let get = |name| options.str(name);
    let mcp_servers = options.json("mcpServers").map(|v| mcp_servers(v, &format!("{path}.mcpServers"))).transpose()?;
    let permission_policy = get("permissionPolicy").map(|policy| match policy.as_str() {
        "ask" => PermissionPolicy::Ask,
        "reject_all" => PermissionPolicy::RejectAll,
        _ => PermissionPolicy::AllowAll,
    });
    let env = Some(options.str_map("env")).filter(|env| !env.is_empty());
    Ok(OpenSessionInput {
        session_id: Some(session_id.to_owned()),
        agent,
        cwd: get("cwd"),
        additional_directories: options.str_list("additionalDirectories"),
        env,
        mcp_servers,
        permission_policy,
        skip_os_instructions: options.bool("skipOsInstructions"),
        additional_instructions: get("additionalInstructions"),
    })
}

/// ACP MCP server configs: `{name, command, args, env: [{name, value}]}`
/// (stdio) or `{type: "http" | "sse", name, url, headers: [{name, value}]}`.
pub fn mcp_servers(value: Value, path: &str) -> Result<Vec<McpServerConfig>, ActorError> {
    serde_json::from_value(value).map_err(|e| ActorError::invalid_argument(path, format!("not a list of ACP MCP server configs: {e}")))
}

/// A prompt given as text or as ACP content blocks; `path` names it in
/// errors. Blank text is refused: the agent would get nothing to do.
pub fn prompt_content(prompt: Value, path: &str) -> Result<Vec<ContentBlock>, ActorError> {
    let blocks = match prompt {
        Value::String(text) if text.trim().is_empty() => return Err(ActorError::invalid_argument(path, "must not be empty")),
        Value::String(text) => json!([{ "type": "text", "text": text }]),
        blocks @ Value::Array(_) => blocks,
        other => return Err(ActorError::invalid_argument(path, format!("expected text or content blocks, got {other}"))),
    };
    let content: Vec<ContentBlock> =
        serde_json::from_value(blocks).map_err(|e| ActorError::invalid_argument(path, format!("not ACP content blocks: {e}")))?;
    if content.is_empty() {
        return Err(ActorError::invalid_argument(path, "must not be empty"));
    }
    Ok(content)
}
