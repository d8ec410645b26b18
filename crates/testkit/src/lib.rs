//! Test fixtures shared by the integration tests.
//!
//! `./scripts/test` provisions everything, starts ONE engine and ONE host
//! (serving `agentOS`, its ephemeral-root variant `agentOSEphemeral` and the
//! ABI test plugin `testPlugin`) and exports `AGENTOS_TEST_ENDPOINT`; tests
//! reach them only on 127.0.0.1. A test that needs its own host (fault
//! tests) starts it with [`OwnHost`], which stops it by pid.

mod configured_stack;
pub mod fake_llm;
mod own_host;
pub use configured_stack::{ConfiguredStack, no_category_options, provisioned};
pub use fake_llm::FakeLlm;
pub use own_host::{OwnHost, OwnStack, Reaper, children_named};

use std::process::Child;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use rivetkit_client::{Client, ClientConfig, GetOrCreateOptions};
use serde_json::{Value, json};

/// The engine endpoint of the shared test host. Fails loudly (never skips)
/// when the suite was not started through `./scripts/test`.
pub fn endpoint() -> String {
    match std::env::var("AGENTOS_TEST_ENDPOINT") {
        Ok(endpoint) if endpoint.starts_with("http://127.0.0.1:") => endpoint,
        Ok(other) => panic!("AGENTOS_TEST_ENDPOINT must be a 127.0.0.1 URL, got `{other}`"),
        Err(_) => panic!(
            "AGENTOS_TEST_ENDPOINT is not set: run the suite with ./scripts/test, which starts the real engine and host"
        ),
    }
}

/// A key no other test (or earlier run) uses.
pub fn unique_key(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    format!("{prefix}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The official Rust client, on the shared host's pool.
pub fn client() -> Client {
    Client::new(ClientConfig::new(endpoint()).pool_name("default"))
}

/// A structured error as a client receives it over HTTP (JSON encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionError {
    pub status: u16,
    pub group: String,
    pub code: String,
    pub message: String,
    pub metadata: Option<Value>,
}

/// Calls actions over the gateway's HTTP action route with JSON encoding,
/// returning the structured error body on failure.
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    query: String,
}

impl Gateway {
    /// The actor `name` with `key` (created on first use).
    pub fn new(name: &str, key: &str) -> Result<Self> {
        let handle = client().get_or_create(name, vec![key.to_owned()], GetOrCreateOptions::default())?;
        let url = handle.gateway_url()?;
        let (base, query) = url.split_once('?').map(|(b, q)| (b.to_owned(), q.to_owned())).unwrap_or((url, String::new()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), query })
    }

    /// The URL of an actor-local `path` (e.g. `/request/x`).
    pub fn url(&self, path: &str) -> String {
        let (path, extra) = path.split_once('?').unwrap_or((path, ""));
        let mut url = format!("{}{path}?{}", self.base, self.query);
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        url
    }

    pub async fn action(&self, action: &str, args: Vec<Value>) -> Result<Value, ActionError> {
        self.action_raw(action, json!({ "args": args })).await
    }

    /// Posts an arbitrary JSON body (to test malformed requests).
    pub async fn action_raw(&self, action: &str, body: Value) -> Result<Value, ActionError> {
        let response = self
            .http
            .post(self.url(&format!("/action/{action}")))
            .header("x-rivet-encoding", "json")
            .json(&body)
            .send()
            .await
            .map_err(|e| transport_error(format!("{e:#}")))?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.map_err(|e| transport_error(format!("decode body: {e:#}")))?;
        if (200..300).contains(&status) {
            return Ok(body.get("output").cloned().unwrap_or(Value::Null));
        }
        Err(ActionError {
            status,
            group: body["group"].as_str().unwrap_or_default().to_owned(),
            code: body["code"].as_str().unwrap_or_default().to_owned(),
            message: body["message"].as_str().unwrap_or_default().to_owned(),
            metadata: body.get("metadata").cloned().filter(|m| !m.is_null()),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

fn transport_error(message: String) -> ActionError {
    ActionError { status: 0, group: "transport".into(), code: "transport".into(), message, metadata: None }
}

/// Collects the payload of every `event` a connection receives (keep the
/// handle: dropping it ends the subscription).
pub async fn record_events(
    conn: &rivetkit_client::connection::ActorConnection,
    event: &str,
) -> (std::sync::Arc<std::sync::Mutex<Vec<Value>>>, rivetkit_client::connection::SubscriptionHandle) {
    let events: std::sync::Arc<std::sync::Mutex<Vec<Value>>> = Default::default();
    let sink = events.clone();
    let subscription = conn.on_event(event, move |args: &Vec<Value>| sink.lock().unwrap().push(args[0].clone())).await;
    (events, subscription)
}

/// Bytes as the JSON-compat wrapper clients send and receive.
pub fn uint8array(bytes: &[u8]) -> Value {
    json!(["$Uint8Array", base64::engine::general_purpose::STANDARD.encode(bytes)])
}

/// Decodes a `["$Uint8Array", b64]` reply.
pub fn bytes_of(value: &Value) -> Vec<u8> {
    match value.as_array().map(Vec::as_slice) {
        Some([tag, Value::String(b64)]) if tag == "$Uint8Array" => {
            base64::engine::general_purpose::STANDARD.decode(b64).expect("valid base64 in $Uint8Array")
        }
        _ => panic!("expected a [\"$Uint8Array\", base64] value, got {value}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A child process a test started; stopped by pid (SIGTERM, then SIGKILL)
/// when dropped.
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    pub fn new(child: Child) -> Self {
        Self { child: Some(child) }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILLs the process now (a crash, for fault tests) and reaps it.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits up to `grace` before SIGKILL. Returns whether it
    /// exited on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else { return true };
        // SAFETY: signalling a child we spawned and have not reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(10));
    }
}

/// Runs a program to completion with a time limit, returning its output.
pub fn run_with_limit(command: &mut std::process::Command, limit: Duration) -> Result<std::process::Output> {
    use std::io::Read;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("spawn")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let status = wait_with_limit(&mut child, limit)?;
    Ok(std::process::Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    })
}

/// Waits for `child` to exit, at most `limit`; past it the child is killed
/// and that is an error.
pub fn wait_with_limit(child: &mut std::process::Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process {} did not finish within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A base port `p` such that `p`, `p+1` and `p+2` are free on 127.0.0.1 now
/// (an engine's guard, api-peer and metrics ports).
pub fn free_port_base() -> u16 {
    use std::net::TcpListener;
    for _ in 0..200 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else { continue };
        let base = first.local_addr().map(|a| a.port()).unwrap_or(0);
        if base == 0 || base > 65000 {
            continue;
        }
        let rest: Vec<_> = (1..3).filter_map(|i| TcpListener::bind(("127.0.0.1", base + i)).ok()).collect();
        if rest.len() == 2 {
            return base;
        }
    }
    panic!("no three consecutive free ports on 127.0.0.1");
}

/// Sends SIGKILL to `pid` (a process the test knows it started).
pub fn kill_pid(pid: u32) {
    // SAFETY: sending a signal has no memory effects; callers pass pids of
    // processes they started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Whether a process with this pid still exists (and is not a zombie we own).
pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    let exists = unsafe { libc::kill(pid as i32, 0) } == 0;
    if !exists {
        return false;
    }
    // A zombie (exited, not yet reaped by its parent) counts as stopped.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).is_some_and(|rest| rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Runs one `node --test` suite from `tests/ts` (the official TypeScript
/// client) against the shared host and fails unless exactly `expected`
/// tests ran and all passed, so a suite that silently runs nothing fails.
pub fn run_ts_suite(file: &str, expected: usize) {
    run_ts_suite_on(&endpoint(), file, expected, &[]);
}

/// [`run_ts_suite`] against `endpoint` (e.g. an [`OwnStack`]'s) with extra
/// environment: a suite run in phases learns its phase and actor key here,
/// while the Rust test changes the stack between phases.
pub fn run_ts_suite_on(endpoint: &str, file: &str, expected: usize, env: &[(&str, &str)]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/ts");
    assert!(
        dir.join("node_modules/rivetkit").exists(),
        "tests/ts/node_modules is missing: ./scripts/test installs it from the lockfile"
    );
    let output = run_with_limit(
        std::process::Command::new("node")
            .arg("--test")
            .arg("--test-reporter=spec")
            .arg(file)
            .current_dir(&dir)
            .env("AGENTOS_TEST_ENDPOINT", endpoint)
            .envs(env.iter().copied()),
        Duration::from_secs(420),
    )
    .expect("run node --test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let phase = env.iter().map(|(k, v)| format!(" {k}={v}")).collect::<String>();
    assert!(output.status.success(), "TypeScript suite {file}{phase} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("pass {expected}\n")) && stdout.contains("fail 0"),
        "TypeScript suite {file}{phase}: expected {expected} passing tests:\n{stdout}"
    );
}
