//! The fake against plain HTTP clients (reqwest, raw sockets), 127.0.0.1.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

const LIMIT: Duration = Duration::from_secs(10);

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(LIMIT).build().unwrap()
}

async fn post(fake: &FakeLlm, path: &str, body: Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", fake.base_url()))
        .header("x-api-key", "test")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn anthropic_body(stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "stream": stream,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [{"role": "user", "content": "hello"}]})
}

/// `(event name, data)` pairs of an SSE body.
fn sse_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .map(|frame| {
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_owned();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (event, serde_json::from_str(&data).unwrap_or(Value::String(data)))
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(e, _)| e.as_str()).collect()
}

#[tokio::test]
async fn streams_a_scripted_text_as_anthropic_sse() {
    let fake = FakeLlm::start().await.unwrap();
    let text = "a reply long enough to need several deltas";
    fake.push_text(text);
    let response = post(&fake, "/v1/messages", anthropic_body(true)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = sse_events(&response.text().await.unwrap());
    let kinds = names(&events);
    assert_eq!(kinds[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(kinds[kinds.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    // Every event's data names its own type, as the SDK's parser expects.
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start = &events[0].1["message"];
    assert_eq!((start["role"].as_str(), start["model"].as_str()), (Some("assistant"), Some("claude-test")));
    assert_eq!(start["content"], json!([]));
    assert_eq!(events[1].1["content_block"], json!({"type": "text", "text": ""}));
    let deltas: Vec<&Value> = events.iter().filter(|(e, _)| e == "content_block_delta").map(|(_, d)| d).collect();
    assert!(deltas.len() > 1, "text is split into several deltas");
    let joined: String = deltas.iter().map(|d| d["delta"]["text"].as_str().unwrap()).collect();
    assert_eq!(joined, text);
    assert!(deltas.iter().all(|d| d["delta"]["type"] == "text_delta" && d["index"] == 0));
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn streams_a_scripted_tool_use_with_its_id() {
    let fake = FakeLlm::start().await.unwrap();
    let input = json!({"command": "echo hi > /tmp/t.txt", "timeout": 30});
    let id = fake.push_tool_use("bash", input.clone());
    assert!(id.starts_with("toolu_"), "{id}");
    let events = sse_events(&post(&fake, "/v1/messages", anthropic_body(true)).await.text().await.unwrap());
    let block = &events[1].1["content_block"];
    assert_eq!(block, &json!({"type": "tool_use", "id": id, "name": "bash", "input": {}}));
    let partial: String = events
        .iter()
        .filter(|(e, _)| e == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(d["delta"]["type"], "input_json_delta");
            d["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(serde_json::from_str::<Value>(&partial).unwrap(), input);
    assert_eq!(events[events.len() - 2].1["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn answers_non_streaming_requests_with_a_message() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_text("plain");
    let id = fake.push_tool_use("read", json!({"path": "a"}));
    let first: Value = post(&fake, "/v1/messages", anthropic_body(false)).await.json().await.unwrap();
    assert_eq!(first["type"], "message");
    assert_eq!(first["content"], json!([{"type": "text", "text": "plain"}]));
    assert_eq!(first["stop_reason"], "end_turn");
    let second: Value = post(&fake, "/v1/messages", anthropic_body(false)).await.json().await.unwrap();
    assert_eq!(second["content"], json!([{"type": "tool_use", "id": id, "name": "read", "input": {"path": "a"}}]));
    assert_eq!(second["stop_reason"], "tool_use");
}

#[tokio::test]
async fn answers_the_default_text_once_the_queue_is_empty() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_text("scripted");
    assert_eq!(fake.pending_replies(), 1);
    let texts = [
        post(&fake, "/v1/messages", anthropic_body(false)).await.json::<Value>().await.unwrap(),
        post(&fake, "/v1/messages", anthropic_body(false)).await.json::<Value>().await.unwrap(),
    ];
    assert_eq!(texts.map(|m| m["content"][0]["text"].clone()), [json!("scripted"), json!(DEFAULT_REPLY)]);
    assert_eq!(fake.pending_replies(), 0);
}

#[tokio::test]
async fn records_requests_and_their_conversation() {
    let fake = FakeLlm::start().await.unwrap();
    let body = json!({"model": "m", "stream": false, "system": "sys prompt",
        "tools": [{"name": "bash", "input_schema": {}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "run it"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "sure"},
                {"type": "tool_use", "id": "toolu_1", "name": "bash", "input": {"command": "ls"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                "content": [{"type": "text", "text": "a.txt"}], "is_error": false}]},
        ]});
    post(&fake, "/v1/messages?beta=true", body.clone()).await;
    let request = fake.last_request().unwrap();
    assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/v1/messages?beta=true"));
    assert_eq!(request.header("X-API-Key"), Some("test"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.body, body);
    assert!(request.is_model_call() && request.is_anthropic() && !request.is_stream());
    assert_eq!(request.system_text(), "sys prompt");
    assert_eq!(request.tool_names(), ["bash"]);
    let conversation = request.conversation();
    let roles: Vec<&str> = conversation.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(conversation[0].text(), "run it");
    assert_eq!(conversation[1].text(), "sure");
    assert_eq!(
        conversation[1].parts[1],
        Part::ToolUse { id: "toolu_1".into(), name: "bash".into(), input: json!({"command": "ls"}) }
    );
    assert_eq!(conversation[2].tool_results().collect::<Vec<_>>(), [("toolu_1", "a.txt", false)]);
    assert_eq!(request.conversation_text(), "run it\nsure\na.txt");
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn speaks_openai_chat_completions() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_text("hello from openai");
    let id = fake.push_tool_use("bash", json!({"command": "ls"}));
    let request = |stream: bool| {
        json!({"model": "gpt-test", "stream": stream, "stream_options": {"include_usage": true},
            "messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
                    "function": {"name": "bash", "arguments": "{\"command\":\"ls\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "out"}]})
    };
    let body = post(&fake, "/v1/chat/completions", request(true)).await.text().await.unwrap();
    let chunks: Vec<&str> = body.split("\n\n").filter(|c| !c.is_empty()).collect();
    assert_eq!(chunks.last(), Some(&"data: [DONE]"));
    let parsed: Vec<Value> =
        chunks[..chunks.len() - 1].iter().map(|c| serde_json::from_str(c.strip_prefix("data: ").unwrap()).unwrap()).collect();
    let text: String = parsed.iter().filter_map(|c| c.pointer("/choices/0/delta/content")?.as_str()).collect();
    assert_eq!(text, "hello from openai");
    assert!(parsed.iter().any(|c| c.pointer("/choices/0/finish_reason") == Some(&json!("stop"))));
    assert_eq!(parsed.last().unwrap()["usage"]["prompt_tokens"], 12);
    let completion: Value = post(&fake, "/v1/chat/completions", request(false)).await.json().await.unwrap();
    assert_eq!(completion["choices"][0]["finish_reason"], "tool_calls");
    let call = &completion["choices"][0]["message"]["tool_calls"][0];
    assert_eq!((call["id"].as_str(), call["function"]["name"].as_str()), (Some(id.as_str()), Some("bash")));
    let recorded = fake.last_request().unwrap();
    assert!(recorded.is_openai());
    assert_eq!(recorded.system_text(), "sys");
    let conversation = recorded.conversation();
    assert_eq!(conversation[2].parts[0], Part::ToolUse { id: "call_1".into(), name: "bash".into(), input: json!({"command": "ls"}) });
    assert_eq!(conversation[3].tool_results().collect::<Vec<_>>(), [("call_1", "out", false)]);
}

#[tokio::test]
async fn a_held_reply_streams_its_first_delta_then_waits_for_release() {
    let fake = FakeLlm::start().await.unwrap();
    let hold = fake.push_hold("thinking");
    assert_eq!(hold.state(), HoldState::Queued);
    let mut response = post(&fake, "/v1/messages", anthropic_body(true)).await;
    hold.wait_for(HoldState::Holding, LIMIT).await.unwrap();
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        let chunk = tokio::time::timeout(LIMIT, response.chunk()).await.unwrap().unwrap().expect("stream still open");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(!seen.contains("message_stop"), "held before the end: {seen}");
    hold.release();
    while let Some(chunk) = tokio::time::timeout(LIMIT, response.chunk()).await.unwrap().unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert_eq!(hold.state(), HoldState::Released);
    let events = sse_events(&seen);
    assert_eq!(names(&events).last(), Some(&"message_stop"));
    assert_eq!(events[3].1["delta"]["text"], "thinking");
}

#[tokio::test]
async fn a_held_reply_notices_the_client_hanging_up() {
    let fake = FakeLlm::start().await.unwrap();
    let hold = fake.push_hold("partial");
    let response = post(&fake, "/v1/messages", anthropic_body(true)).await;
    hold.wait_for(HoldState::Holding, LIMIT).await.unwrap();
    drop(response);
    hold.wait_for(HoldState::ClientGone, LIMIT).await.unwrap();
    // A held non-streaming request is released like a streaming one.
    let hold = fake.push_hold("late");
    let pending = tokio::spawn({
        let url = format!("{}/v1/messages", fake.base_url());
        async move { http().post(url).json(&anthropic_body(false)).send().await.unwrap().json::<Value>().await.unwrap() }
    });
    hold.wait_for(HoldState::Holding, LIMIT).await.unwrap();
    hold.release();
    let message = tokio::time::timeout(LIMIT, pending).await.unwrap().unwrap();
    assert_eq!(message["content"][0]["text"], "late");
}

#[tokio::test]
async fn scripted_errors_use_the_provider_error_shape() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_error(529, "overloaded_error", "busy");
    let response = post(&fake, "/v1/messages", anthropic_body(true)).await;
    assert_eq!(response.status(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}));
}

#[tokio::test]
async fn rejects_unknown_routes_and_non_json_bodies_without_taking_a_reply() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_text("kept");
    let missing = http().get(format!("{}/v1/models", fake.base_url())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let bad = http().post(format!("{}/v1/messages", fake.base_url())).body("not json").send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
    assert_eq!(fake.pending_replies(), 1);
    assert_eq!(fake.requests().len(), 2, "bad requests are recorded too");
    assert!(fake.model_requests().len() == 1 && fake.model_requests()[0].body.is_null());
}

/// Reads one Content-Length response off a raw socket.
async fn read_response(stream: &mut TcpStream) -> (String, Value) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "connection closed early");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(|v| v.trim().parse().unwrap()))
        .unwrap();
    let mut body = vec![0; length];
    stream.read_exact(&mut body).await.unwrap();
    (head, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn takes_chunked_bodies_and_keeps_the_connection_alive() {
    let fake = FakeLlm::start().await.unwrap();
    fake.push_text("one");
    fake.push_text("two");
    let mut stream = TcpStream::connect(("127.0.0.1", fake.port())).await.unwrap();
    let body = anthropic_body(false).to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let chunked = format!(
        "POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n{:x};ext=1\r\n{a}\r\n{:X}\r\n{b}\r\n0\r\nX-Trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    stream.write_all(chunked.as_bytes()).await.unwrap();
    let mut continue_line = [0u8; 25];
    stream.read_exact(&mut continue_line).await.unwrap();
    assert_eq!(&continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
    let (head, message) = tokio::time::timeout(LIMIT, read_response(&mut stream)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(message["content"][0]["text"], "one");
    let plain = format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(plain.as_bytes()).await.unwrap();
    let (_, message) = tokio::time::timeout(LIMIT, read_response(&mut stream)).await.unwrap();
    assert_eq!(message["content"][0]["text"], "two");
    let recorded = fake.requests();
    assert_eq!(recorded.len(), 2);
    assert!(recorded.iter().all(|r| r.body == anthropic_body(false)));
}

#[tokio::test]
async fn malformed_requests_get_400_and_a_closed_connection() {
    let fake = FakeLlm::start().await.unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", fake.port())).await.unwrap();
    stream.write_all(b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await.unwrap();
    let (head, body) = tokio::time::timeout(LIMIT, read_response(&mut stream)).await.unwrap();
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert!(body["error"].as_str().unwrap().contains("bad chunk size"), "{body}");
    let mut rest = Vec::new();
    tokio::time::timeout(LIMIT, stream.read_to_end(&mut rest)).await.unwrap().unwrap();
    assert!(rest.is_empty());
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn waits_for_requests_within_a_limit() {
    let fake = FakeLlm::start().await.unwrap();
    let err = fake.wait_for_requests(1, Duration::from_millis(200)).await.unwrap_err();
    assert!(err.contains("0 of 1"), "{err}");
    let url = format!("{}/v1/messages", fake.base_url());
    tokio::spawn(async move { http().post(url).json(&anthropic_body(false)).send().await });
    let seen = fake.wait_for_requests(1, LIMIT).await.unwrap();
    assert_eq!(seen[0].model(), Some("claude-test"));
}

#[tokio::test]
async fn stops_serving_when_dropped() {
    let fake = FakeLlm::start().await.unwrap();
    let port = fake.port();
    let idle = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    drop(fake);
    // Abort is asynchronous: poll (bounded) until the listener is gone.
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still accepting after drop");
    let mut idle = idle;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(LIMIT, idle.read(&mut buf)).await.unwrap();
    assert!(matches!(read, Ok(0) | Err(_)), "open connections are closed too");
}
