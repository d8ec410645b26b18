//! Starting (or reusing) a local `rivet-engine` on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// - On a 2-core machine the engine's default load-shedding curve starves its
///   workflow workers while anything else (cargo, the sidecar) uses the CPU,
///   and actor creation times out. This curve keeps the workers at full
///   capacity.
/// - The message limits match the host's actor limits (32 MiB messages) plus
///   encoding overhead, so a 16 MiB `writeFile`/`readFile` passes the
///   gateway and the envoy tunnel.
const ENGINE_CONFIG: &str = r#"{
  "runtime": {"worker_load_shedding_curve": [[0, 1000], [1000, 999]]},
  "pegboard": {"envoy_max_response_payload_size": 67108864, "gateway_http_max_request_body_size": 67108864},
  "guard": {"http_max_request_body_size": 67108864, "websocket_max_message_size": 67108864, "websocket_max_frame_size": 67108864}
}"#;

/// The ports one local engine listens on, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct EnginePorts {
    pub guard: u16,
    pub api_peer: u16,
    pub metrics: u16,
}

impl EnginePorts {
    /// The guard port plus the two next ports (api-peer, metrics).
    pub fn from_guard(guard: u16) -> Self {
        Self { guard, api_peer: guard + 1, metrics: guard + 2 }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.guard)
    }
}

/// An engine this process started; stopped (by pid) when dropped or stopped.
pub struct LocalEngine {
    child: Option<Child>,
    pub endpoint: String,
}

/// Whether an engine answers `/health` at `endpoint`.
pub async fn is_healthy(endpoint: &str) -> bool {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http client");
    match client.get(format!("{endpoint}/health")).send().await {
        Ok(response) if response.status().is_success() => {
            response.text().await.map(|body| body.contains("\"status\":\"ok\"")).unwrap_or(false)
        }
        _ => false,
    }
}

impl LocalEngine {
    /// Starts `binary` with its data under `data_dir`, or reuses a healthy
    /// engine already listening on the guard port (then nothing is stopped
    /// at exit).
    pub async fn start_or_reuse(binary: &Path, data_dir: &Path, ports: EnginePorts) -> Result<Self> {
        let endpoint = ports.endpoint();
        if is_healthy(&endpoint).await {
            eprintln!("agentos: reusing the engine already running at {endpoint}");
            return Ok(Self { child: None, endpoint });
        }
        let db_dir = data_dir.join("engine");
        let log_dir = data_dir.join("logs");
        std::fs::create_dir_all(&db_dir).with_context(|| format!("create {}", db_dir.display()))?;
        std::fs::create_dir_all(&log_dir).with_context(|| format!("create {}", log_dir.display()))?;
        let config_path = data_dir.join("engine-config.json");
        std::fs::write(&config_path, ENGINE_CONFIG).with_context(|| format!("write {}", config_path.display()))?;
        let log_path = log_dir.join("engine.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("open {}", log_path.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("start")
            .arg("--config")
            .arg(&config_path)
            .env("RIVET__GUARD__HOST", "127.0.0.1")
            .env("RIVET__GUARD__PORT", ports.guard.to_string())
            .env("RIVET__API_PEER__HOST", "127.0.0.1")
            .env("RIVET__API_PEER__PORT", ports.api_peer.to_string())
            .env("RIVET__METRICS__HOST", "127.0.0.1")
            .env("RIVET__METRICS__PORT", ports.metrics.to_string())
            .env("RIVET__FILE_SYSTEM__PATH", &db_dir)
            .env("RIVET__TELEMETRY__ENABLED", "false")
            // Development timings: fast reschedule after a host dies.
            .env("RIVET__PEGBOARD__ENVOY_ELIGIBLE_THRESHOLD", "5000")
            .env("RIVET__PEGBOARD__ENVOY_LOST_THRESHOLD", "7000")
            .env("RIVET__PEGBOARD__RETRY_RESET_DURATION", "100")
            .env("RIVET__PEGBOARD__BASE_RETRY_TIMEOUT", "100")
            .env("RIVET__PEGBOARD__RESCHEDULE_BACKOFF_MAX_EXPONENT", "1")
            .env("RIVET__PEGBOARD__MIN_METADATA_POLL_INTERVAL", "1000")
            .env("RIVET__RUNTIME__WORKER_SHUTDOWN_DURATION", "1")
            .env("RIVET__RUNTIME__GUARD_SHUTDOWN_DURATION", "1")
            .env("RIVET__RUNTIME__FORCE_SHUTDOWN_DURATION", "2")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("start {}", binary.display()))?;
        let mut engine = Self { child: Some(child), endpoint };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if is_healthy(&engine.endpoint).await {
                return Ok(engine);
            }
            if let Some(child) = engine.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("rivet-engine exited with {status} before it was healthy; see {}", log_path.display());
            }
            if Instant::now() > deadline {
                engine.stop().await;
                bail!("rivet-engine was not healthy within 60 s; see {}", log_path.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The engine's pid, when this process started it.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Stops an engine we started: SIGTERM, then SIGKILL after 10 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            // SAFETY: sending a signal to a pid we spawned and still own.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }
}

/// Default data directory: `$AGENTOS_DATA_DIR`, else `./.agentos-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("AGENTOS_DATA_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".agentos-data"))
}
