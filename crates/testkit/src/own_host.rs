//! A test's own `agentos serve` (with its own engine, or reusing one on the
//! same port), for tests that must crash or restart the host, the sidecar or
//! the engine and so cannot use the shared one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use rivetkit_client::{Client, ClientConfig};

use crate::{ChildGuard, kill_pid, pid_alive};

/// A running `agentos serve` the test started; stopped (by pid) on drop.
pub struct OwnHost {
    guard: ChildGuard,
    port: u16,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl OwnHost {
    /// Starts `binary serve --port PORT --data-dir DATA EXTRA...` and waits
    /// (at most 90 s) for its ready line.
    pub fn start(binary: &Path, port: u16, data_dir: &Path, extra: &[&str]) -> OwnHost {
        let mut child = Command::new(binary)
            .args(["serve", "--port", &port.to_string(), "--data-dir"])
            .arg(data_dir)
            .args(extra)
            // The host must not pick up an endpoint meant for `agentos call`.
            .env_remove("AGENTOS_ENGINE_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentos serve");
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("agentos: ready") {
                    let _ = ready_tx.send(());
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().expect("piped");
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
            }
        });
        let guard = ChildGuard::new(child);
        let host = OwnHost { guard, port, stderr };
        if ready_rx.recv_timeout(Duration::from_secs(90)).is_err() {
            panic!("agentos serve did not become ready within 90 s; stderr:\n{}", host.stderr_text());
        }
        host
    }

    pub fn pid(&self) -> u32 {
        self.guard.pid()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The official Rust client on this host's engine.
    pub fn client(&self) -> Client {
        Client::new(ClientConfig::new(self.endpoint()).pool_name("default"))
    }

    /// Everything the host wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).join("\n")
    }

    /// The pid of the engine this host started (None when it reused one).
    pub fn started_engine_pid(&self) -> Option<u32> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = self.stderr_text();
            if let Some(pid) = text.lines().find_map(|l| l.rsplit_once("engine pid ").and_then(|(_, p)| p.trim().parse().ok())) {
                return Some(pid);
            }
            if text.contains("reusing the engine") || Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of the `agentos-sidecar` processes this host started.
    pub fn sidecar_pids(&self) -> Vec<u32> {
        children_named(self.pid(), "agentos-sidecar")
    }

    /// SIGKILLs the host now, as a crash would.
    pub fn kill_hard(&mut self) {
        self.guard.kill_hard();
    }

    /// SIGTERM, then SIGKILL after `grace`; whether it exited on its own.
    pub fn stop(&mut self, grace: Duration) -> bool {
        self.guard.stop(grace)
    }
}

/// Kills a process by pid when dropped, if it still runs: an engine a test
/// started must not outlive the test, even when the test fails.
pub struct Reaper(pub u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        if pid_alive(self.0) {
            kill_pid(self.0);
        }
    }
}

/// Live children of `parent` whose command line starts with a path ending in
/// `name` (from `/proc`).
pub fn children_named(parent: u32, name: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // Fields after the `(comm)`: state, ppid, ...
            let mut rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("").split(' ');
            let state = rest.next().unwrap_or("");
            let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let exe = cmd.split(|b| *b == 0).next().map(|a| String::from_utf8_lossy(a).into_owned()).unwrap_or_default();
            ppid == parent && state != "Z" && PathBuf::from(exe).file_name().is_some_and(|f| f.to_string_lossy().starts_with(name))
        })
        .collect()
}

/// A test's own host with its own engine and data directory: for tests
/// that crash, restart or put to sleep what the shared host must keep.
/// Everything is stopped (by pid) and the data removed on drop.
pub struct OwnStack {
    pub port: u16,
    pub data: PathBuf,
    pub host: OwnHost,
    pub engine: Reaper,
    binary: PathBuf,
    extra: Vec<String>,
}

impl OwnStack {
    /// Starts `binary serve` on free ports with `extra` arguments.
    pub fn start(binary: &Path, name: &str, extra: &[&str]) -> OwnStack {
        let port = crate::free_port_base();
        let data = std::env::temp_dir().join(crate::unique_key(name));
        let host = OwnHost::start(binary, port, &data, extra);
        let engine = Reaper(host.started_engine_pid().expect("the host starts its own engine"));
        OwnStack {
            port,
            data,
            host,
            engine,
            binary: binary.to_owned(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Starts the host again with the same arguments (the old one must be
    /// stopped or killed first).
    pub fn restart_host(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.host = OwnHost::start(&self.binary, self.port, &self.data, &extra);
        // A host that found no engine running (the old host stopped its
        // own) started a new one: that one must be stopped too.
        if let Some(pid) = self.host.started_engine_pid() {
            if pid != self.engine.0 {
                self.engine = Reaper(pid);
            }
        }
    }

    /// The agentOS actor with `key` on this stack.
    pub fn actor(&self, key: &str) -> rivetkit_client::handle::ActorHandle {
        self.host
            .client()
            .get_or_create("agentOS", vec![key.into()], rivetkit_client::GetOrCreateOptions::default())
            .expect("get_or_create")
    }

    /// Whether the engine reports the actor asleep (`GET /actors?actor_ids=`,
    /// which never wakes it); `None` while the engine does not answer (a
    /// host still starting), so a caller never takes that for a wake.
    pub async fn asleep(&self, actor_id: &str) -> Option<bool> {
        let url = format!("{}/actors?namespace=default&actor_ids={actor_id}", self.host.endpoint());
        let response = reqwest::Client::new().get(url).bearer_auth("dev").send().await.ok()?;
        let body = response.error_for_status().ok()?.json::<serde_json::Value>().await.ok()?;
        let actor = body["actors"].as_array()?.iter().find(|a| a["actor_id"] == actor_id)?;
        Some(!actor["sleep_ts"].is_null())
    }

    /// Waits until the engine reports the actor awake at or after `due_ms`
    /// (Unix ms): what an alarm due then does to a sleeping actor. Polls
    /// only from `due_ms` on, for at most 90 s, so a wake before it (the
    /// engine settling after a host restart) does not count.
    pub async fn wait_awake_after(&self, actor_id: &str, due_ms: i64) {
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
        tokio::time::sleep(Duration::from_millis(due_ms.saturating_sub(now_ms).max(0) as u64)).await;
        let what = format!("the alarm due at {due_ms} to wake actor {actor_id}");
        crate::eventually(Duration::from_secs(90), &what, || async { (self.asleep(actor_id).await == Some(false)).then_some(()) })
            .await;
    }

    /// Waits (at most 60 s) until the engine reports the actor asleep.
    pub async fn wait_asleep(&self, actor: &rivetkit_client::handle::ActorHandle) {
        let id = actor.resolve().await.expect("resolve the actor id");
        crate::eventually(Duration::from_secs(60), "the engine reports the actor asleep", || {
            let id = id.clone();
            async move { (self.asleep(&id).await == Some(true)).then_some(()) }
        })
        .await;
    }
}

impl Drop for OwnStack {
    fn drop(&mut self) {
        self.host.stop(Duration::from_secs(30));
        kill_pid(self.engine.0);
        let _ = std::fs::remove_dir_all(&self.data);
    }
}
