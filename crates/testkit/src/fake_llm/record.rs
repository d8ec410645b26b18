//! What the fake recorded of a request, and the conversation inside it.

use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Header names lowercased, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON; `Value::Null` when empty or not JSON.
    pub body: Value,
    pub raw_body: Vec<u8>,
}

/// One part of a message's content, flattened across both APIs.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
    /// A tool's output sent back to the model (`content` flattened to text).
    ToolResult { tool_use_id: String, text: String, is_error: bool },
    /// Anything else (images, thinking blocks, ...), as sent.
    Other(Value),
}

/// One message of the conversation a request carried.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationMessage {
    /// `user` / `assistant` (Anthropic); OpenAI adds `system` and `tool`.
    pub role: String,
    pub parts: Vec<Part>,
}

impl ConversationMessage {
    /// The message's text parts and tool results, joined by newlines.
    pub fn text(&self) -> String {
        let texts: Vec<&str> = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                Part::ToolResult { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        texts.join("\n")
    }

    pub fn tool_results(&self) -> impl Iterator<Item = (&str, &str, bool)> {
        self.parts.iter().filter_map(|p| match p {
            Part::ToolResult { tool_use_id, text, is_error } => Some((tool_use_id.as_str(), text.as_str(), *is_error)),
            _ => None,
        })
    }
}

impl RecordedRequest {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn path_only(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    pub fn is_anthropic(&self) -> bool {
        self.path_only().ends_with("/messages")
    }

    pub fn is_openai(&self) -> bool {
        self.path_only().ends_with("/chat/completions")
    }

    pub fn is_model_call(&self) -> bool {
        self.method == "POST" && (self.is_anthropic() || self.is_openai())
    }

    pub fn is_stream(&self) -> bool {
        self.body.get("stream").and_then(Value::as_bool).unwrap_or(false)
    }

    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// The system prompt as text (Anthropic `system` string or blocks, or
    /// OpenAI `system`/`developer` messages).
    pub fn system_text(&self) -> String {
        match self.body.get("system") {
            Some(system) => content_parts(system).iter().filter_map(text_of).collect::<Vec<_>>().join("\n"),
            None => self
                .conversation()
                .into_iter()
                .filter(|m| m.role == "system" || m.role == "developer")
                .map(|m| m.text())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// Names of the tools the request offered.
    pub fn tool_names(&self) -> Vec<String> {
        let tools = self.body.get("tools").and_then(Value::as_array).cloned().unwrap_or_default();
        tools
            .iter()
            .filter_map(|t| t.get("name").or_else(|| t.pointer("/function/name")).and_then(Value::as_str))
            .map(str::to_owned)
            .collect()
    }

    /// Every message's [`ConversationMessage::text`], one per line: for
    /// "does the model see X" checks that should not depend on how the
    /// history was packed (a reopened Pi session replays earlier turns as
    /// text inside one user message).
    pub fn conversation_text(&self) -> String {
        self.conversation().iter().map(ConversationMessage::text).collect::<Vec<_>>().join("\n")
    }

    /// Every tool result the request carried back to the model, in order:
    /// (tool call id, text, is_error).
    pub fn tool_results(&self) -> Vec<(String, String, bool)> {
        self.conversation()
            .iter()
            .flat_map(|m| m.tool_results().map(|(id, text, error)| (id.to_owned(), text.to_owned(), error)).collect::<Vec<_>>())
            .collect()
    }

    /// The `messages` the request carried, in order (Anthropic or OpenAI).
    pub fn conversation(&self) -> Vec<ConversationMessage> {
        let messages = self.body.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
        messages.iter().map(message_of).collect()
    }
}

fn message_of(message: &Value) -> ConversationMessage {
    let role = message.get("role").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut parts = message.get("content").map(content_parts).unwrap_or_default();
    // OpenAI: the assistant's calls and the tool's answer live beside `content`.
    for call in message.get("tool_calls").and_then(Value::as_array).into_iter().flatten() {
        let arguments = call.pointer("/function/arguments").and_then(Value::as_str).unwrap_or("{}");
        parts.push(Part::ToolUse {
            id: str_at(call, "/id"),
            name: str_at(call, "/function/name"),
            input: serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned())),
        });
    }
    if role == "tool" {
        let text = parts.iter().filter_map(text_of).collect::<Vec<_>>().join("\n");
        parts = vec![Part::ToolResult { tool_use_id: str_at(message, "/tool_call_id"), text, is_error: false }];
    }
    ConversationMessage { role, parts }
}

/// Content as parts: a plain string is one text part.
fn content_parts(content: &Value) -> Vec<Part> {
    match content {
        Value::String(s) => vec![Part::Text(s.clone())],
        Value::Array(blocks) => blocks.iter().map(block_part).collect(),
        Value::Null => Vec::new(),
        other => vec![Part::Other(other.clone())],
    }
}

fn block_part(block: &Value) -> Part {
    match block.get("type").and_then(Value::as_str) {
        Some("text") => Part::Text(str_at(block, "/text")),
        Some("tool_use") => Part::ToolUse {
            id: str_at(block, "/id"),
            name: str_at(block, "/name"),
            input: block.get("input").cloned().unwrap_or(Value::Null),
        },
        Some("tool_result") => Part::ToolResult {
            tool_use_id: str_at(block, "/tool_use_id"),
            text: block
                .get("content")
                .map(|c| content_parts(c).iter().filter_map(text_of).collect::<Vec<_>>().join("\n"))
                .unwrap_or_default(),
            is_error: block.get("is_error").and_then(Value::as_bool).unwrap_or(false),
        },
        _ => Part::Other(block.clone()),
    }
}

fn text_of(part: &Part) -> Option<String> {
    match part {
        Part::Text(t) => Some(t.clone()),
        _ => None,
    }
}

fn str_at(value: &Value, pointer: &str) -> String {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_owned()
}
