//! Minimal HTTP/1.1 server side: keep-alive connections, request bodies by
//! Content-Length or chunked encoding, `Expect: 100-continue`, JSON replies
//! with Content-Length and SSE replies with chunked encoding.

use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use super::wire::{self, Said};
use super::{Hold, HoldState, RecordedRequest, Reply, State};

const MAX_HEAD: usize = 64 * 1024;
const MAX_BODY: usize = 32 * 1024 * 1024;

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    // Owned here so aborting this task aborts every connection too.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => { connections.spawn(connection(stream, state.clone())); }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    keep_alive: bool,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

async fn connection(stream: TcpStream, state: Arc<State>) {
    let _ = stream.set_nodelay(true);
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let head = match read_head(&mut read).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(message) => {
                let _ = send_json(&mut write, 400, &serde_json::json!({"error": message}), false).await;
                return;
            }
        };
        if head.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
            && write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                return;
            }
        let body = match read_body(&mut read, &head).await {
            Ok(body) => body,
            Err(message) => {
                let _ = send_json(&mut write, 400, &serde_json::json!({"error": message}), false).await;
                return;
            }
        };
        let request = RecordedRequest {
            method: head.method.clone(),
            path: head.target.clone(),
            headers: head.headers.clone(),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            raw_body: body,
        };
        state.record(request.clone());
        let alive = respond(&request, &state, &mut read, &mut write, head.keep_alive).await;
        if !alive || !head.keep_alive {
            return;
        }
    }
}

/// Reads one line (CRLF or LF), bounded by what is left of `budget`.
async fn read_line(read: &mut (impl AsyncBufRead + Unpin), budget: &mut usize) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let n = (&mut *read).take(*budget as u64 + 1).read_until(b'\n', &mut line).await.map_err(|e| e.to_string())?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget || !line.ends_with(b"\n") {
        return Err("request head too large or truncated".into());
    }
    *budget -= n;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line).map(Some).map_err(|_| "request head is not UTF-8".into())
}

/// `Ok(None)`: the client closed the connection between requests.
async fn read_head(read: &mut (impl AsyncBufRead + Unpin)) -> Result<Option<Head>, String> {
    let mut budget = MAX_HEAD;
    let request_line = loop {
        match read_line(read, &mut budget).await? {
            None => return Ok(None),
            // Stray blank lines before a request are allowed (RFC 9112 §2.2).
            Some(line) if line.is_empty() => continue,
            Some(line) => break line,
        }
    };
    let mut words = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version), None) = (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(format!("malformed request line `{request_line}`"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol `{version}`"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(read, &mut budget).await?.ok_or("connection closed inside the request head")?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed header line `{line}`"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let connection = headers.iter().find(|(k, _)| k == "connection").map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(v) if v.contains("close") => false,
        Some(v) if v.contains("keep-alive") => true,
        _ => version == "HTTP/1.1",
    };
    Ok(Some(Head { method: method.to_owned(), target: target.to_owned(), headers, keep_alive }))
}

async fn read_body(read: &mut (impl AsyncBufRead + Unpin), head: &Head) -> Result<Vec<u8>, String> {
    if let Some(encoding) = head.header("transfer-encoding") {
        if !encoding.to_ascii_lowercase().ends_with("chunked") {
            return Err(format!("unsupported transfer-encoding `{encoding}`"));
        }
        return read_chunked(read).await;
    }
    let Some(length) = head.header("content-length") else { return Ok(Vec::new()) };
    let length: usize = length.parse().map_err(|_| format!("bad content-length `{length}`"))?;
    if length > MAX_BODY {
        return Err(format!("body of {length} bytes is over the {MAX_BODY} limit"));
    }
    let mut body = vec![0; length];
    read.read_exact(&mut body).await.map_err(|e| format!("body shorter than content-length: {e}"))?;
    Ok(body)
}

async fn read_chunked(read: &mut (impl AsyncBufRead + Unpin)) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(read, &mut budget).await?.ok_or("connection closed inside a chunked body")?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("bad chunk size `{line}`"))?;
        if size == 0 {
            // Trailer fields, up to the blank line; ignored.
            while !read_line(read, &mut budget).await?.ok_or("connection closed inside chunk trailers")?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(format!("chunked body is over the {MAX_BODY} limit"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        read.read_exact(&mut body[start..]).await.map_err(|e| format!("truncated chunk: {e}"))?;
        let end = read_line(read, &mut budget).await?.ok_or("connection closed after a chunk")?;
        if !end.is_empty() {
            return Err("chunk not followed by CRLF".into());
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        529 => "Overloaded",
        _ => "Status",
    }
}

async fn send_json(write: &mut (impl AsyncWrite + Unpin), status: u16, body: &Value, keep_alive: bool) -> bool {
    let body = body.to_string();
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let response = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: {connection}\r\nrequest-id: req_fake\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    write.write_all(response.as_bytes()).await.is_ok() && write.flush().await.is_ok()
}

#[derive(Clone, Copy)]
enum Api {
    Anthropic,
    OpenAi,
}

/// Answers one request; returns whether the connection can take another.
async fn respond(
    request: &RecordedRequest,
    state: &State,
    read: &mut (impl AsyncBufRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    keep_alive: bool,
) -> bool {
    let api = match (request.method.as_str(), request.is_anthropic(), request.is_openai()) {
        ("POST", true, _) => Api::Anthropic,
        ("POST", _, true) => Api::OpenAi,
        _ => {
            let body = serde_json::json!({"error": format!("fake LLM has no route {} {}", request.method, request.path)});
            return send_json(write, 404, &body, keep_alive).await;
        }
    };
    let error_body = |kind: &str, message: &str| match api {
        Api::Anthropic => wire::anthropic_error(kind, message),
        Api::OpenAi => wire::openai_error(kind, message),
    };
    if !request.body.is_object() {
        let body = error_body("invalid_request_error", "the request body is not a JSON object");
        return send_json(write, 400, &body, keep_alive).await;
    }
    let (said, hold) = match state.pop_reply() {
        Reply::Error { status, kind, message } => {
            return send_json(write, status, &error_body(&kind, &message), keep_alive).await;
        }
        Reply::Text(text) => (Owned::Text(text), None),
        Reply::ToolUse { id, name, input } => (Owned::ToolUse { id, name, input }, None),
        Reply::Hold { text, gate } => (Owned::Text(text), Some(gate)),
    };
    let said = said.borrow();
    let model = request.model().unwrap_or("fake-model");
    let message_id = match api {
        Api::Anthropic => state.next_id("msg"),
        Api::OpenAi => state.next_id("chatcmpl"),
    };
    if !request.is_stream() {
        if let Some(gate) = &hold
            && !hold_until_released(gate, read).await {
                return false;
            }
        let body = match api {
            Api::Anthropic => wire::anthropic_message(&message_id, model, &said),
            Api::OpenAi => wire::openai_completion(&message_id, model, &said),
        };
        return send_json(write, 200, &body, keep_alive).await;
    }
    let stream = match api {
        Api::Anthropic => wire::anthropic_stream(&message_id, model, &said, hold.is_some()),
        Api::OpenAi => {
            let usage = request.body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
            wire::openai_stream(&message_id, model, &said, hold.is_some(), usage)
        }
    };
    let sent = send_stream(&stream, hold.as_ref(), read, write, keep_alive).await;
    if !sent
        && let Some(gate) = &hold
            && gate.state() != HoldState::Released {
                gate.set(HoldState::ClientGone);
            }
    sent
}

/// A reply the handler owns (popped from the queue) as a [`Said`].
enum Owned {
    Text(String),
    ToolUse { id: String, name: String, input: Value },
}

impl Owned {
    fn borrow(&self) -> Said<'_> {
        match self {
            Owned::Text(text) => Said::Text(text),
            Owned::ToolUse { id, name, input } => Said::ToolUse { id, name, input },
        }
    }
}

async fn send_stream(
    stream: &wire::Stream,
    hold: Option<&Hold>,
    read: &mut (impl AsyncBufRead + Unpin),
    write: &mut (impl AsyncWrite + Unpin),
    keep_alive: bool,
) -> bool {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: {connection}\r\nrequest-id: req_fake\r\n\r\n"
    );
    if write.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    for (i, frame) in stream.frames.iter().enumerate() {
        if let (Some(gate), Some(pause)) = (hold, stream.pause_after)
            && i == pause && !hold_until_released(gate, read).await {
                return false;
            }
        let chunk = format!("{:x}\r\n{frame}\r\n", frame.len());
        if write.write_all(chunk.as_bytes()).await.is_err() || write.flush().await.is_err() {
            return false;
        }
    }
    write.write_all(b"0\r\n\r\n").await.is_ok() && write.flush().await.is_ok()
}

/// Waits for the test's release; `false` when the client hung up first.
async fn hold_until_released(gate: &Hold, read: &mut (impl AsyncBufRead + Unpin)) -> bool {
    gate.set(HoldState::Holding);
    tokio::select! {
        _ = gate.released() => { gate.set(HoldState::Released); true }
        _ = client_closed(read) => { gate.set(HoldState::ClientGone); false }
    }
}

/// Resolves when the peer closes its side. Bytes of a pipelined next
/// request are left buffered, and then only the release can end the wait.
async fn client_closed(read: &mut (impl AsyncBufRead + Unpin)) {
    match read.fill_buf().await {
        Ok([]) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}
