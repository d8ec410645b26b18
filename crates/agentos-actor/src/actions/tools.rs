//! Host tools ("toolkits"): functions a guest calls as
//! `agentos-<toolkit> <tool> --flag value` (the engine's host functions),
//! answered by a connected client. A call becomes a `toolCall` event with a
//! call id; a client answers with `respondToolCall`; the guest gets the
//! result, the client's error, or a timeout error.
//!
//! Toolkits come from the config and from `registerToolKit` (stored in the
//! actor, applied when the VM next boots).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentos_client::config::{HostFunction, HostFunctionCollections};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{reply, reply_null};
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, EventSpec, Section};
use crate::error::{ActorError, code, internal_while};
use crate::host::HostCtx;
use crate::vm::broadcast_event;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// How long a guest waits for a client's answer unless the tool says.
pub const DEFAULT_TOOL_TIMEOUT_MS: u64 = 60_000;

/// One toolkit, as in the config's `toolKits` and `registerToolKit`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolKit {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub tools: Vec<Tool>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of the input (flags of the guest CLI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

impl ToolKit {
    pub fn check(&self) -> Result<(), String> {
        let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !word(&self.name) {
            return Err(format!("toolkit name `{}` must be letters, digits, `-` or `_`", self.name));
        }
        if self.tools.is_empty() {
            return Err(format!("toolkit `{}` has no tools", self.name));
        }
        for tool in &self.tools {
            if !word(&tool.name) {
                return Err(format!("tool name `{}` must be letters, digits, `-` or `_`", tool.name));
            }
        }
        Ok(())
    }
}

const TOOL_FIELDS: &[Field] = &[
    req("name", ArgType::Str, "Tool name (the CLI subcommand)."),
    opt("description", ArgType::Str, "What it does."),
    opt("inputSchema", ArgType::Json, "JSON Schema of the input."),
    opt("timeoutMs", ArgType::U32, "How long the guest waits for an answer (default 60000)."),
];
const TOOLKIT_FIELDS: &[Field] = &[
    req("name", ArgType::Str, "Toolkit name: the guest runs `agentos-<name>`."),
    opt("description", ArgType::Str, "What the toolkit is for."),
    req("tools", ArgType::List(&ArgType::Object(TOOL_FIELDS)), "Its tools."),
];

/// The host tools area of the contract.
pub static SECTION: Section = Section {
    area: "Host tools",
    actions: &[
        ActionSpec {
            name: "registerToolKit",
            summary: "Store a toolkit (replacing one of the same name); the VM offers it from its next boot.",
            params: &[req("toolkit", ArgType::Object(TOOLKIT_FIELDS), "The toolkit.")],
            returns: "null",
            handler: register_toolkit,
            detached: false,
        },
        ActionSpec {
            name: "removeToolKit",
            summary: "Remove a registered toolkit (from the next VM boot on).",
            params: &[req("name", ArgType::Str, "Toolkit name.")],
            returns: "null",
            handler: remove_toolkit,
            detached: false,
        },
        ActionSpec {
            name: "listToolKits",
            summary: "The toolkits of config and registry; `live` marks those the running VM offers.",
            params: &[],
            returns: "ToolKitEntry[]",
            handler: list_toolkits,
            detached: false,
        },
        ActionSpec {
            name: "respondToolCall",
            summary: "Answer a `toolCall` event: the guest gets `result`, or fails with `error`.",
            params: &[
                req("callId", ArgType::Str, "The event's call id."),
                req("response", ArgType::Object(RESPONSE_FIELDS), "`{ result }` or `{ error }`."),
            ],
            returns: "null",
            handler: respond_tool_call,
            detached: false,
        },
    ],
    events: &[EventSpec {
        name: "toolCall",
        summary: "A guest called a host tool; answer with `respondToolCall` before its timeout.",
        payload: "{ callId: string; toolkit: string; tool: string; input: unknown; timeoutMs: number }",
    }],
    types: &[(
        "ToolKitEntry",
        "{ name: string; description?: string; tools: { name: string; description?: string; inputSchema?: unknown; timeoutMs?: number }[]; source: \"config\" | \"registered\"; live: boolean }",
    )],
};

const RESPONSE_FIELDS: &[Field] = &[
    opt("result", ArgType::Json, "The tool's result."),
    opt("error", ArgType::Str, "Why the tool failed."),
];

/// Calls waiting for a client's answer, by call id.
#[derive(Default)]
pub struct ToolCalls {
    pending: Mutex<HashMap<String, oneshot::Sender<Result<Value, String>>>>,
    /// Toolkit names the running VM was booted with.
    live: Mutex<Vec<String>>,
}

/// Config toolkits first, then registered ones (a registered toolkit
/// cannot replace a config one), each with where it came from.
async fn merged(config_kits: &[ToolKit], host: &HostCtx) -> Result<Vec<(ToolKit, &'static str)>, ActorError> {
    let mut kits: Vec<(ToolKit, &'static str)> = config_kits.iter().cloned().map(|k| (k, "config")).collect();
    for kit in stored(host).await? {
        if !kits.iter().any(|(k, _)| k.name == kit.name) {
            kits.push((kit, "registered"));
        }
    }
    Ok(kits)
}

async fn stored(host: &HostCtx) -> Result<Vec<ToolKit>, ActorError> {
    let rows = host
        .db_query("SELECT definition FROM agentos_toolkits ORDER BY name", &json!([]))
        .await
        .map_err(internal_while("read toolkits"))?;
    Ok(rows
        .iter()
        .filter_map(|row| row.get("definition").and_then(Value::as_str))
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect())
}

/// The host functions of a VM about to boot: every toolkit, each tool
/// routed to connected clients through `toolCall` events.
pub async fn host_functions(
    config_kits: &[ToolKit],
    host: &HostCtx,
    calls: &Arc<ToolCalls>,
) -> HostFunctionCollections {
    let kits: Vec<ToolKit> = match merged(config_kits, host).await {
        Ok(kits) => kits.into_iter().map(|(kit, _)| kit).collect(),
        Err(e) => {
            host.log(4, &format!("agentOS: registered toolkits unreadable: {e}"));
            config_kits.to_vec()
        }
    };
    *crate::live::lock(&calls.live) = kits.iter().map(|k| k.name.clone()).collect();
    let mut collections = HostFunctionCollections::new();
    for kit in kits {
        let mut functions = BTreeMap::new();
        for tool in kit.tools {
            let timeout_ms = tool.timeout_ms.unwrap_or(DEFAULT_TOOL_TIMEOUT_MS);
            let mut schema = tool.input_schema.clone().unwrap_or_else(|| json!({ "type": "object" }));
            if let (Some(description), Some(map)) = (&tool.description, schema.as_object_mut()) {
                map.entry("description").or_insert_with(|| json!(description));
            }
            let (host, calls, toolkit, name) = (host.clone(), calls.clone(), kit.name.clone(), tool.name.clone());
            let execute: agentos_client::config::HostFunctionCallback = Arc::new(move |input: Value| {
                let (host, calls, toolkit, name) = (host.clone(), calls.clone(), toolkit.clone(), name.clone());
                async move { ask_clients(&host, &calls, &toolkit, &name, input, timeout_ms).await }.boxed()
            });
            // The engine's own deadline is a little later than ours, so the
            // guest sees our clearer timeout error.
            functions.insert(tool.name, HostFunction { input_schema: schema, timeout_ms: Some(timeout_ms + 5_000), execute });
        }
        collections.insert(kit.name, functions);
    }
    collections
}

async fn ask_clients(
    host: &HostCtx,
    calls: &ToolCalls,
    toolkit: &str,
    tool: &str,
    input: Value,
    timeout_ms: u64,
) -> Result<Value, String> {
    let call_id = uuid::Uuid::new_v4().to_string();
    let (answer, answered) = oneshot::channel();
    crate::live::lock(&calls.pending).insert(call_id.clone(), answer);
    broadcast_event(
        host,
        "toolCall",
        &json!({ "callId": call_id, "toolkit": toolkit, "tool": tool, "input": input, "timeoutMs": timeout_ms }),
    );
    let outcome = tokio::time::timeout(Duration::from_millis(timeout_ms), answered).await;
    crate::live::lock(&calls.pending).remove(&call_id);
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(format!("tool {toolkit}:{tool}: the actor stopped before a client answered")),
        Err(_) => Err(format!(
            "tool {toolkit}:{tool}: no client answered within {timeout_ms} ms (a connected client must call respondToolCall)"
        )),
    }
}

fn register_toolkit(call: Call) -> Reply {
    async move {
        let fields = call.args.object(0)?;
        let tools = fields
            .list("tools")
            .unwrap_or_default()
            .iter()
            .map(|t| {
                let t = t.fields();
                Tool {
                    name: t.str("name").unwrap_or_default(),
                    description: t.str("description"),
                    input_schema: t.json("inputSchema"),
                    timeout_ms: t.uint("timeoutMs"),
                }
            })
            .collect();
        let kit = ToolKit { name: fields.str("name").unwrap_or_default(), description: fields.str("description"), tools };
        kit.check().map_err(|e| ActorError::invalid_argument("toolkit", e))?;
        if call.settings.config.tool_kits.iter().any(|k| k.name == kit.name) {
            return Err(ActorError::invalid_argument("toolkit.name", format!("`{}` is a toolkit of the config", kit.name)));
        }
        call.host
            .db_run(
                "INSERT OR REPLACE INTO agentos_toolkits (name, definition) VALUES (?, ?)",
                &json!([kit.name, serde_json::to_string(&kit).unwrap_or_default()]),
            )
            .await
            .map_err(internal_while("store toolkit"))?;
        reply_null()
    }
    .boxed()
}

fn remove_toolkit(call: Call) -> Reply {
    async move {
        let name = call.args.str(0)?;
        if !stored(&call.host).await?.iter().any(|k| k.name == name) {
            return Err(ActorError::new(code::NOT_FOUND, format!("no registered toolkit `{name}`")).with_field("name", name.as_str()));
        }
        call.host
            .db_run("DELETE FROM agentos_toolkits WHERE name = ?", &json!([name]))
            .await
            .map_err(internal_while("delete toolkit"))?;
        reply_null()
    }
    .boxed()
}

fn list_toolkits(call: Call) -> Reply {
    async move {
        let live: Vec<String> =
            if call.slot.is_booted() { crate::live::lock(&call.slot.tool_calls().live).clone() } else { Vec::new() };
        let entries: Vec<Value> = merged(&call.settings.config.tool_kits, &call.host)
            .await?
            .into_iter()
            .map(|(kit, source)| {
                let mut entry = serde_json::to_value(&kit).unwrap_or(Value::Null);
                entry["source"] = json!(source);
                entry["live"] = json!(live.contains(&kit.name));
                entry
            })
            .collect();
        reply(&entries)
    }
    .boxed()
}

fn respond_tool_call(call: Call) -> Reply {
    async move {
        let call_id = call.args.str(0)?;
        let response = call.args.object(1)?;
        let answer = match (response.json("result"), response.str("error")) {
            (Some(_), Some(_)) => {
                return Err(ActorError::invalid_argument("response", "give `result` or `error`, not both"));
            }
            (_, Some(error)) => Err(error),
            (result, None) => Ok(result.unwrap_or(Value::Null)),
        };
        let waiting = crate::live::lock(&call.slot.tool_calls().pending).remove(&call_id);
        let Some(waiting) = waiting else {
            return Err(ActorError::new(
                code::NOT_FOUND,
                format!("no tool call `{call_id}` is waiting (answered already, timed out, or never made)"),
            )
            .with_field("callId", call_id.as_str()));
        };
        let _ = waiting.send(answer);
        reply_null()
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toolkit_names_are_checked() {
        let tool = Tool { name: "add".into(), description: None, input_schema: None, timeout_ms: None };
        let kit = |name: &str, tools: Vec<Tool>| ToolKit { name: name.into(), description: None, tools };
        kit("math", vec![tool.clone()]).check().unwrap();
        assert!(kit("bad name", vec![tool.clone()]).check().unwrap_err().contains("`bad name`"));
        assert!(kit("empty", vec![]).check().unwrap_err().contains("no tools"));
        let odd = Tool { name: "a/b".into(), ..tool };
        assert!(kit("math", vec![odd]).check().unwrap_err().contains("`a/b`"));
    }
}
