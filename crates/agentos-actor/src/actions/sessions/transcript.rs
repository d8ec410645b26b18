//! A session's stored history as event entries and as a Markdown
//! transcript.

use agentos_client::AgentOs;
use agentos_client::session::{DurableSessionEvent, HistoryPage, ReadHistoryInput};
use serde_json::{Value, json};

use super::MAX_PAGE;
use super::open::not_found;
use crate::error::ActorError;

/// Up to `limit` stored events after sequence `after`, oldest first.
pub async fn events_after(vm: &AgentOs, session_id: &str, after: u64, limit: u64) -> Result<Vec<Value>, ActorError> {
    let page = history_page(vm, session_id, after, limit).await?;
    Ok(page
        .events
        .into_iter()
        .map(|entry| {
            json!({
                "sessionId": entry.session_id, "seq": entry.sequence,
                "event": serde_json::to_value(&entry.event).unwrap_or(Value::Null), "createdAt": entry.timestamp,
            })
        })
        .collect())
}

/// The conversation as Markdown: a heading per speaker turn, tool calls as
/// lines under the assistant's turn.
pub async fn markdown(vm: &AgentOs, session_id: &str) -> Result<String, ActorError> {
    let mut out = format!("# Session transcript: {session_id}\n");
    let mut speaker = "";
    let mut after = 0;
    // Bounded: at most 1,000 pages of 1,000 events.
    for _ in 0..1000 {
        let page = history_page(vm, session_id, after, MAX_PAGE).await?;
        let Some(last) = page.events.last() else { break };
        after = last.sequence;
        for entry in &page.events {
            let (heading, text) = match &entry.event {
                DurableSessionEvent::UserMessageChunk(chunk) => ("User", block_text(&chunk.content)),
                DurableSessionEvent::AgentMessageChunk(chunk) => ("Assistant", block_text(&chunk.content)),
                DurableSessionEvent::AgentThoughtChunk(chunk) => ("Assistant (thinking)", block_text(&chunk.content)),
                DurableSessionEvent::ToolCall(call) => {
                    let call = serde_json::to_value(call).unwrap_or(Value::Null);
                    ("Assistant", format!("\n- tool call `{}`: {}\n", call["kind"].as_str().unwrap_or("tool"), call["title"].as_str().unwrap_or("")))
                }
                _ => continue,
            };
            if heading != speaker {
                out.push_str(&format!("\n## {heading}\n\n"));
                speaker = heading;
            }
            out.push_str(&text);
        }
        if !page.has_more_after {
            break;
        }
    }
    Ok(out)
}

fn block_text<T: serde::Serialize>(block: &T) -> String {
    let block = serde_json::to_value(block).unwrap_or(Value::Null);
    match block["type"].as_str() {
        Some("text") => block["text"].as_str().unwrap_or_default().to_owned(),
        Some(other) => format!("[{other}]"),
        None => String::new(),
    }
}

/// Reads a session's stored history a page at a time.
async fn history_page(
    vm: &AgentOs,
    session_id: &str,
    after: u64,
    limit: u64,
) -> Result<HistoryPage, ActorError> {
    let limit = u32::try_from(limit.min(MAX_PAGE)).unwrap_or(1000);
    vm.read_history(ReadHistoryInput { session_id: Some(session_id.to_owned()), before: None, after: Some(after), limit: Some(limit) })
        .await
        .map_err(|e| not_found(session_id, e))
}
