//! A benchmark's own host and how it talks to actors.
//!
//! [`Session::start`] runs `agentos serve` on free 127.0.0.1 ports with its
//! own engine and data directory, serving `agentOS` (durable root),
//! `agentOSEphemeral` (the sidecar's default ephemeral root) and `testPlugin`.
//! Dropping the session stops the host, reaps the engine it started and
//! removes the data directory.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rivetkit_client::connection::ActorConnection;
use rivetkit_client::handle::ActorHandle;
use rivetkit_client::{Client, ConnectionStatus, GetOrCreateOptions, SubscriptionHandle};
use serde_json::Value;
use testkit::{OwnHost, Reaper};

pub const DURABLE: &str = "agentOS";
pub const EPHEMERAL: &str = "agentOSEphemeral";
pub const TEST_PLUGIN: &str = "testPlugin";

#[derive(clap::Args, Clone)]
pub struct HostOptions {
    /// The `agentos` binary (default: next to this executable).
    #[arg(long)]
    pub agentos: Option<PathBuf>,
    /// The ABI test plugin (default: `libtest_plugin.so` next to this executable).
    #[arg(long)]
    pub test_plugin: Option<PathBuf>,
    /// The host's idle sleep (`agentos serve --sleep-after-secs`); the wake
    /// bar waits for it.
    #[arg(long, default_value_t = 2)]
    pub sleep_after_secs: u64,
    /// Keep the host's data directory (printed) instead of removing it.
    #[arg(long)]
    pub keep_data: bool,
    /// Write everything the host logged to stderr into this file at the end.
    #[arg(long, value_name = "FILE")]
    pub host_log: Option<PathBuf>,
}

pub struct Session {
    host: Option<OwnHost>,
    engine: Option<Reaper>,
    work: PathBuf,
    keep_data: bool,
    host_log: Option<PathBuf>,
    pub client: Client,
    endpoint: String,
    http: reqwest::Client,
}

impl Session {
    /// Starts the host; `env` is added to its environment.
    pub fn start(options: &HostOptions, env: &[(&str, &str)]) -> Result<Session> {
        let dir = crate::build_dir()?;
        let agentos = options.agentos.clone().unwrap_or_else(|| dir.join("agentos"));
        let plugin = options.test_plugin.clone().unwrap_or_else(|| dir.join("libtest_plugin.so"));
        for (what, path) in [("agentos", &agentos), ("the test plugin", &plugin)] {
            if !path.is_file() {
                bail!("{what} not found at {} (build it, e.g. with ./scripts/bench)", path.display());
            }
        }
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let work = std::env::temp_dir().join(format!("agentos-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
        let ephemeral = work.join("ephemeral.json");
        std::fs::write(&ephemeral, r#"{"rootFilesystem":"ephemeral"}"#)?;
        for (key, value) in env {
            // SAFETY: called before this process starts any thread that
            // reads the environment (no runtime exists yet); the host child
            // inherits it.
            unsafe { std::env::set_var(key, value) };
        }
        let extra = [
            "--extra-plugin".to_owned(),
            format!("testPlugin={}", plugin.display()),
            "--variant".to_owned(),
            format!("{EPHEMERAL}={}", ephemeral.display()),
            "--sleep-after-secs".to_owned(),
            options.sleep_after_secs.to_string(),
        ];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let port = testkit::free_port_base();
        eprintln!("bench: starting {} serve on 127.0.0.1:{port} (data in {})", agentos.display(), work.display());
        let host = OwnHost::start(&agentos, port, &work.join("data"), &extra);
        let engine = host.started_engine_pid().map(Reaper);
        let client = host.client();
        let endpoint = host.endpoint();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Session {
            host: Some(host),
            engine,
            work,
            keep_data: options.keep_data,
            host_log: options.host_log.clone(),
            client,
            endpoint,
            http,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Lines the host wrote to stderr so far.
    pub fn host_stderr(&self) -> Vec<String> {
        self.host.as_ref().map(|h| h.stderr_text().lines().map(str::to_owned).collect()).unwrap_or_default()
    }

    pub fn handle(&self, name: &str, key: &str) -> Result<ActorHandle> {
        self.client.get_or_create(name, vec![key.to_owned()], GetOrCreateOptions::default())
    }

    /// A WebSocket connection (bare encoding) to the actor `name`/`key`.
    pub fn connect(&self, name: &str, key: &str) -> Result<ActorConnection> {
        Ok(self.handle(name, key)?.connect())
    }

    /// Whether the engine reports the actor asleep (reading the engine's
    /// record does not wake the actor).
    async fn asleep(&self, actor_id: &str) -> Result<bool> {
        let url = format!("{}/actors?namespace=default&actor_ids={actor_id}", self.endpoint);
        let response = self.http.get(url).bearer_auth("dev").send().await?;
        if !response.status().is_success() {
            bail!("engine actor API answered {}", response.status());
        }
        let body: Value = response.json().await?;
        let actor = body["actors"].as_array().and_then(|a| a.iter().find(|a| a["actor_id"] == actor_id));
        Ok(actor.is_some_and(|a| !a["sleep_ts"].is_null()))
    }

    /// Waits (polling every 100 ms, at most `limit`) until the actor sleeps.
    pub async fn wait_asleep(&self, actor_id: &str, limit: Duration) -> Result<Duration> {
        let start = Instant::now();
        loop {
            if self.asleep(actor_id).await? {
                return Ok(start.elapsed());
            }
            if start.elapsed() > limit {
                bail!("actor {actor_id} did not go to sleep within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut host) = self.host.take() {
            host.stop(Duration::from_secs(20));
            if let Some(path) = &self.host_log {
                match std::fs::write(path, host.stderr_text()) {
                    Ok(()) => eprintln!("bench: host log written to {}", path.display()),
                    Err(error) => eprintln!("bench: cannot write the host log to {}: {error}", path.display()),
                }
            }
        }
        drop(self.engine.take());
        if self.keep_data {
            eprintln!("bench: host data kept in {}", self.work.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

/// Calls an action on a connection, failing after `limit`.
pub async fn call(conn: &ActorConnection, action: &str, args: Vec<Value>, limit: Duration) -> Result<Value> {
    match tokio::time::timeout(limit, conn.action(action, args)).await {
        Ok(result) => result.with_context(|| format!("action `{action}`")),
        Err(_) => bail!("action `{action}` got no reply within {limit:?}"),
    }
}

/// Reports (to stderr) and counts a connection's drops and reconnects, which
/// would otherwise only show as an action that never gets its reply.
pub struct ConnWatch {
    drops: Arc<AtomicUsize>,
    closing: Arc<AtomicBool>,
}

impl ConnWatch {
    pub fn new(conn: &ActorConnection, label: &str) -> ConnWatch {
        let drops = Arc::new(AtomicUsize::new(0));
        let closing = Arc::new(AtomicBool::new(false));
        let (count, done, label) = (drops.clone(), closing.clone(), label.to_owned());
        let mut status = conn.status_receiver();
        tokio::spawn(async move {
            let mut was_connected = false;
            while status.changed().await.is_ok() {
                let now = *status.borrow();
                if done.load(Ordering::SeqCst) {
                    break;
                }
                if now == ConnectionStatus::Connected {
                    if was_connected {
                        eprintln!("bench:   connection {label} reconnected");
                    }
                    was_connected = true;
                } else if was_connected {
                    count.fetch_add(1, Ordering::SeqCst);
                    eprintln!("bench:   connection {label} is {now:?}");
                }
            }
        });
        ConnWatch { drops, closing }
    }

    pub fn drops(&self) -> usize {
        self.drops.load(Ordering::SeqCst)
    }

    /// Call before disconnecting on purpose.
    pub fn closing(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }
}

/// Counts `vmBooted` events on a connection.
pub struct BootWatch {
    seen: Arc<AtomicBool>,
    _subscription: SubscriptionHandle,
}

impl BootWatch {
    pub async fn new(conn: &ActorConnection) -> BootWatch {
        let seen = Arc::new(AtomicBool::new(false));
        let flag = seen.clone();
        let subscription = conn.on_event("vmBooted", move |_| flag.store(true, Ordering::SeqCst)).await;
        BootWatch { seen, _subscription: subscription }
    }

    /// Whether `vmBooted` arrived, waiting at most `grace` for a late one.
    pub async fn booted(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while !self.seen.load(Ordering::SeqCst) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.seen.load(Ordering::SeqCst)
    }
}

/// `exec(command)` that must exit 0; returns its stdout.
pub async fn exec_ok(conn: &ActorConnection, command: &str, limit: Duration) -> Result<String> {
    let out = call(conn, "exec", vec![Value::from(command)], limit).await?;
    if out["exitCode"] != 0 {
        bail!(
            "`{}` exited with {}: stdout {:?}, stderr {:?}",
            shorten(command),
            out["exitCode"],
            out["stdout"],
            out["stderr"]
        );
    }
    Ok(out["stdout"].as_str().unwrap_or_default().to_owned())
}

fn shorten(text: &str) -> String {
    if text.len() <= 120 {
        return text.to_owned();
    }
    let mut end = 120;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}
