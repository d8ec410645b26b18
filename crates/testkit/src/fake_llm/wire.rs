//! Response bodies in the providers' exact shapes: Anthropic Messages (SSE
//! events and the JSON message) and OpenAI chat completions (chunks and the
//! JSON completion).

use serde_json::{Value, json};

/// What the model "said": one text or one tool call.
pub(crate) enum Said<'a> {
    Text(&'a str),
    ToolUse { id: &'a str, name: &'a str, input: &'a Value },
}

/// A streamed body: SSE frames, and where a held reply pauses (after
/// `frames[..pause_after]` went out).
pub(crate) struct Stream {
    pub frames: Vec<String>,
    pub pause_after: Option<usize>,
}

const INPUT_TOKENS: u64 = 12;

/// Splits into a few deltas so clients exercise their concatenation.
fn pieces(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return vec![String::new()];
    }
    chars.chunks(16).map(|c| c.iter().collect()).collect()
}

fn sse(event: &str, data: &Value) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

fn usage(output_tokens: u64) -> Value {
    json!({
        "input_tokens": INPUT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    })
}

fn anthropic_stop(said: &Said) -> &'static str {
    match said {
        Said::Text(_) => "end_turn",
        Said::ToolUse { .. } => "tool_use",
    }
}

/// The Anthropic SSE stream; `hold` pauses after the first content delta.
pub(crate) fn anthropic_stream(message_id: &str, model: &str, said: &Said, hold: bool) -> Stream {
    let mut frames = vec![sse(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id, "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage(1),
        }}),
    )];
    let (block, deltas) = match said {
        Said::Text(text) => (
            json!({"type": "text", "text": ""}),
            pieces(text).into_iter().map(|t| json!({"type": "text_delta", "text": t})).collect::<Vec<_>>(),
        ),
        Said::ToolUse { id, name, input } => (
            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
            pieces(&input.to_string())
                .into_iter()
                .map(|t| json!({"type": "input_json_delta", "partial_json": t}))
                .collect(),
        ),
    };
    frames.push(sse("content_block_start", &json!({"type": "content_block_start", "index": 0, "content_block": block})));
    frames.push(sse("ping", &json!({"type": "ping"})));
    let output_tokens = deltas.len() as u64;
    for delta in deltas {
        frames.push(sse("content_block_delta", &json!({"type": "content_block_delta", "index": 0, "delta": delta})));
    }
    let pause_after = hold.then_some(4);
    frames.push(sse("content_block_stop", &json!({"type": "content_block_stop", "index": 0})));
    frames.push(sse(
        "message_delta",
        &json!({"type": "message_delta",
            "delta": {"stop_reason": anthropic_stop(said), "stop_sequence": null},
            "usage": usage(output_tokens)}),
    ));
    frames.push(sse("message_stop", &json!({"type": "message_stop"})));
    Stream { frames, pause_after }
}

/// The non-streaming Anthropic message.
pub(crate) fn anthropic_message(message_id: &str, model: &str, said: &Said) -> Value {
    let content = match said {
        Said::Text(text) => json!([{"type": "text", "text": text}]),
        Said::ToolUse { id, name, input } => json!([{"type": "tool_use", "id": id, "name": name, "input": input}]),
    };
    json!({
        "id": message_id, "type": "message", "role": "assistant", "model": model,
        "content": content, "stop_reason": anthropic_stop(said), "stop_sequence": null,
        "usage": usage(1),
    })
}

pub(crate) fn anthropic_error(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

fn openai_finish(said: &Said) -> &'static str {
    match said {
        Said::Text(_) => "stop",
        Said::ToolUse { .. } => "tool_calls",
    }
}

fn openai_usage() -> Value {
    json!({"prompt_tokens": INPUT_TOKENS, "completion_tokens": 1, "total_tokens": INPUT_TOKENS + 1})
}

fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The OpenAI chunk stream (`data: ...` frames ending in `[DONE]`); a usage
/// chunk is added when the request asked for one.
pub(crate) fn openai_stream(id: &str, model: &str, said: &Said, hold: bool, with_usage: bool) -> Stream {
    let created = now_secs();
    let chunk = |delta: Value, finish: Value| {
        let body = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {body}\n\n")
    };
    let mut frames = Vec::new();
    match said {
        Said::Text(text) => {
            frames.push(chunk(json!({"role": "assistant", "content": ""}), Value::Null));
            for piece in pieces(text) {
                frames.push(chunk(json!({"content": piece}), Value::Null));
            }
        }
        Said::ToolUse { id: call_id, name, input } => {
            frames.push(chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0, "id": call_id,
                    "type": "function", "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            for piece in pieces(&input.to_string()) {
                frames.push(chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}), Value::Null));
            }
        }
    }
    let pause_after = hold.then_some(2);
    frames.push(chunk(json!({}), json!(openai_finish(said))));
    if with_usage {
        let body = json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [], "usage": openai_usage()});
        frames.push(format!("data: {body}\n\n"));
    }
    frames.push("data: [DONE]\n\n".to_owned());
    Stream { frames, pause_after }
}

pub(crate) fn openai_completion(id: &str, model: &str, said: &Said) -> Value {
    let message = match said {
        Said::Text(text) => json!({"role": "assistant", "content": text}),
        Said::ToolUse { id: call_id, name, input } => json!({"role": "assistant", "content": null,
            "tool_calls": [{"id": call_id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()}}]}),
    };
    json!({"id": id, "object": "chat.completion", "created": now_secs(), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": openai_finish(said)}],
        "usage": openai_usage()})
}

pub(crate) fn openai_error(kind: &str, message: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}
