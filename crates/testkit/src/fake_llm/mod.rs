//! A scripted fake LLM provider on 127.0.0.1, so agent tests run without a
//! real model: it speaks the Anthropic Messages API (`POST /v1/messages`,
//! SSE and JSON, the event shapes the Anthropic JS SDK parses) and OpenAI
//! chat completions (`POST /v1/chat/completions`), answers each request with
//! the next reply a test queued (or a default text), and records every
//! request so tests can assert on what the agent sent.
//!
//! Hand-rolled HTTP/1.1 on a tokio listener (keep-alive, Content-Length and
//! chunked request bodies, chunked SSE responses): hyper's server features
//! are not enabled in this tree, and turning them on would rebuild every
//! crate above hyper.

mod http;
mod record;
mod wire;

pub use record::{ConversationMessage, Part, RecordedRequest};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// The text answered when a test queued no reply.
pub const DEFAULT_REPLY: &str = "ok";

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// An assistant text, stop reason `end_turn` (`stop` for OpenAI).
    Text(String),
    /// A tool call (stop reason `tool_use` / `tool_calls`) with this id.
    ToolUse { id: String, name: String, input: Value },
    /// Streams `text` as a first delta, then waits for [`Hold::release`]
    /// before ending the message; a non-streaming request waits, then gets
    /// `text`. For tests that cancel a prompt mid-turn.
    Hold { text: String, gate: Hold },
    /// An HTTP error with the provider's error body (`type` e.g.
    /// `overloaded_error`). The Anthropic SDK retries 408/409/429/5xx.
    Error { status: u16, kind: String, message: String },
}

/// What a held reply is doing; see [`Hold`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldState {
    /// No request has taken the reply yet.
    Queued,
    /// A request took it; the first delta was sent and it waits for release.
    Holding,
    /// Released by the test; the message was (or is being) finished.
    Released,
    /// The client closed the connection while the reply was held.
    ClientGone,
}

/// The test's handle on a held reply (cheap to clone).
#[derive(Debug, Clone)]
pub struct Hold {
    release: Arc<watch::Sender<bool>>,
    state: Arc<watch::Sender<HoldState>>,
}

impl Hold {
    fn new() -> Self {
        Self { release: Arc::new(watch::channel(false).0), state: Arc::new(watch::channel(HoldState::Queued).0) }
    }

    /// Lets the held reply finish.
    pub fn release(&self) {
        self.release.send_replace(true);
    }

    pub fn state(&self) -> HoldState {
        *self.state.borrow()
    }

    /// Waits (at most `limit`) until the reply reaches `want`, e.g.
    /// `Holding` (the agent is mid-turn) or `ClientGone` (it hung up).
    pub async fn wait_for(&self, want: HoldState, limit: Duration) -> Result<(), String> {
        let mut rx = self.state.subscribe();
        match tokio::time::timeout(limit, rx.wait_for(|s| *s == want)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(format!("held reply did not reach {want:?} within {limit:?}; it is {:?}", self.state())),
        }
    }

    pub(crate) fn set(&self, state: HoldState) {
        self.state.send_replace(state);
    }

    pub(crate) async fn released(&self) {
        let mut rx = self.release.subscribe();
        let _ = rx.wait_for(|r| *r).await;
    }
}

#[derive(Default)]
struct State {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
    next_id: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl State {
    fn next_id(&self, prefix: &str) -> String {
        let mut n = lock(&self.next_id);
        *n += 1;
        format!("{prefix}_fake{:04}", *n)
    }

    fn pop_reply(&self) -> Reply {
        lock(&self.replies).pop_front().unwrap_or_else(|| Reply::Text(DEFAULT_REPLY.to_owned()))
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
        self.arrived.notify_waiters();
    }
}

/// A running fake provider; stops (listener and open connections) on drop.
pub struct FakeLlm {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

impl FakeLlm {
    /// Binds 127.0.0.1 on a free port and serves until dropped. Must run
    /// inside a tokio runtime.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State::default());
        let task = tokio::spawn(http::serve(listener, state.clone()));
        Ok(Self { port, state, task })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the value for `ANTHROPIC_BASE_URL` (the SDK
    /// appends `/v1/messages`). OpenAI clients want `{base_url}/v1`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Queues a text reply.
    pub fn push_text(&self, text: impl Into<String>) {
        self.push(Reply::Text(text.into()));
    }

    /// Queues a tool call and returns its id (`toolu_fake0001`-style), which
    /// the agent's next request should carry back in its `tool_result`.
    pub fn push_tool_use(&self, name: impl Into<String>, input: Value) -> String {
        let id = self.state.next_id("toolu");
        self.push(Reply::ToolUse { id: id.clone(), name: name.into(), input });
        id
    }

    /// Queues a reply that streams `first_text` and then waits for
    /// [`Hold::release`].
    pub fn push_hold(&self, first_text: impl Into<String>) -> Hold {
        let gate = Hold::new();
        self.push(Reply::Hold { text: first_text.into(), gate: gate.clone() });
        gate
    }

    /// Queues a provider error response.
    pub fn push_error(&self, status: u16, kind: impl Into<String>, message: impl Into<String>) {
        self.push(Reply::Error { status, kind: kind.into(), message: message.into() });
    }

    pub fn push(&self, reply: Reply) {
        lock(&self.state.replies).push_back(reply);
    }

    /// How many queued replies no request has taken yet.
    pub fn pending_replies(&self) -> usize {
        lock(&self.state.replies).len()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state.requests).clone()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.state.requests).last().cloned()
    }

    /// Only the model calls (`/v1/messages`, `/v1/chat/completions`).
    pub fn model_requests(&self) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(RecordedRequest::is_model_call).collect()
    }

    /// Waits (at most `limit`) until at least `count` requests arrived.
    pub async fn wait_for_requests(&self, count: usize, limit: Duration) -> Result<Vec<RecordedRequest>, String> {
        let deadline = Instant::now() + limit;
        loop {
            let notified = self.state.arrived.notified();
            let seen = self.requests();
            if seen.len() >= count {
                return Ok(seen);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                return Err(format!("fake LLM got {} of {count} requests within {limit:?}", self.requests().len()));
            }
        }
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet), so this
        // also closes open connections.
        self.task.abort();
    }
}

#[cfg(test)]
mod tests;
