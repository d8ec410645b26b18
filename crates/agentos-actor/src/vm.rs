//! The VM's lifecycle: booted lazily on the first action that needs it, shut
//! down on sleep, destroy, or a forced deadline.

use std::sync::Arc;

use agentos_client::config::HostFunctionCollections;
use agentos_client::{
    AgentOs, AgentOsConfig, AgentOsLimits, AgentOsSidecarConfig, MountPlugin, ResourceLimits, PackageRef, RootFilesystemConfig, RootFilesystemKind,
};
use parking_lot_like::Slot;
use serde::Serialize;

use crate::config::{ActorConfig, RootFilesystem};
use crate::error::{ActorError, code};
use crate::fs::{Fs, FsOptions, js_bridge_callback};
use crate::host::HostCtx;
use crate::actions::cron::CronRuns;
use crate::actions::tools::{ToolCalls, host_functions};
use crate::actions::mounts::{MountTable, apply_stored};
use crate::live::Live;
use crate::sidecar_gate;
use crate::vm_db::{VmDb, VmDbServer};
use agentos_vm_config::VmSqliteDescriptor;

/// The sidecar's mount plugin that forwards every root operation to us.
const JS_BRIDGE_PLUGIN: &str = "js_bridge";

/// What the factory knows about every VM it boots.
pub struct VmSettings {
    pub config: Arc<ActorConfig>,
    /// Path of the `agentos-sidecar` binary given by the host (may be empty).
    pub sidecar_path: String,
    /// The per-plugin-load sidecar pool used when the config names none.
    pub default_pool: String,
    /// Contract entries of the config's `customActions`.
    pub custom_actions: Vec<&'static crate::contract::ActionSpec>,
}

impl VmSettings {
    /// The client config of a VM whose durable root (if any) is `root`.
    fn client_config(
        &self,
        root: Option<Arc<Fs<HostCtx>>>,
        tools: HostFunctionCollections,
        database: Option<VmSqliteDescriptor>,
    ) -> AgentOsConfig {
        let config = &self.config;
        let pool = self.pool();
        let (root_filesystem, sidecar_js_bridge_callback) = match root {
            Some(fs) => (
                RootFilesystemConfig {
                    kind: RootFilesystemKind::Native,
                    native_plugin: Some(MountPlugin {
                        id: JS_BRIDGE_PLUGIN.to_string(),
                        config: Some(serde_json::json!({ "mountId": "agentos-root" })),
                    }),
                    ..RootFilesystemConfig::default()
                },
                Some(js_bridge_callback(fs)),
            ),
            None => (RootFilesystemConfig::default(), None),
        };
        AgentOsConfig {
            limits: Some(AgentOsLimits {
                resources: Some(ResourceLimits {
                    max_filesystem_bytes: Some(config.max_root_bytes),
                    ..ResourceLimits::default()
                }),
                ..AgentOsLimits::default()
            }),
            root_filesystem,
            sidecar_js_bridge_callback,
            packages: config.packages.iter().map(|p| PackageRef { path: p.package_path.clone() }).collect(),
            packages_mount_at: config.packages_mount_at.clone(),
            loopback_exempt_ports: config.loopback_exempt_ports.clone(),
            allowed_node_builtins: config.allowed_node_builtins.clone(),
            // Without a policy the sidecar denies every outside host; ours
            // adds the configured allowlist.
            permissions: Some(crate::network::guest_permissions(&config.network.allow_hosts)),
            additional_instructions: config.additional_instructions.clone(),
            sidecar: Some(AgentOsSidecarConfig::Shared { pool: Some(pool) }),
            sidecar_binary_path: self.sidecar_binary(),
            host_functions: tools,
            database,
            ..AgentOsConfig::default()
        }
    }

    /// The shared sidecar pool VMs are created in.
    fn pool(&self) -> String {
        self.config.sidecar.as_ref().and_then(|s| s.pool.clone()).unwrap_or_else(|| self.default_pool.clone())
    }

    fn sidecar_binary(&self) -> Option<String> {
        (!self.sidecar_path.is_empty()).then(|| self.sidecar_path.clone())
    }
}

/// Whether a VM failure means the sidecar process hosting it is gone
/// (crashed or killed): agentos-client reports the lost stdio transport
/// only in the error text.
pub fn sidecar_lost(message: &str) -> bool {
    message.contains("sidecar transport disconnected") || message.contains("sidecar transport closed")
}

/// Resolves once the sidecar hosting `vm` is found gone, probing it every
/// two seconds. agentos-client does not fail a process wait when its
/// transport dies, so a long guest command would otherwise hang on a dead
/// sidecar until the action timeout.
pub async fn sidecar_gone(vm: &AgentOs) -> String {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        if let Err(error) = vm.all_processes().await {
            let text = format!("{error:#}");
            if sidecar_lost(&text) {
                return text;
            }
        }
    }
}

/// Why a VM stopped; sent to clients in `vmShutdown`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ShutdownReason {
    Sleep,
    Destroy,
    /// The actor's event stream ended without a sleep or destroy.
    Stopped,
    /// The host's grace deadline passed; the VM was torn down by force.
    Deadline,
    /// The sidecar process hosting the VM died; the next action boots a
    /// new VM on the same durable root.
    Crashed,
}

/// A running VM and what lives exactly as long as it.
#[derive(Clone)]
struct Booted {
    vm: AgentOs,
    live: Arc<Live>,
    /// The sidecar pool the VM runs on (see [`sidecar_gate`]).
    pool: String,
}

/// The VM slot of one actor instance. Shared between the worker (which boots
/// and uses the VM) and the instance handle (which can force a shutdown when
/// the host's grace deadline passes).
#[derive(Clone)]
pub struct VmSlot {
    inner: Arc<Slot<Booted>>,
    /// The durable root, opened on first use (by an action or a VM boot) and
    /// kept for the instance's life: actions read and write it without a VM.
    root: Arc<tokio::sync::OnceCell<Arc<Fs<HostCtx>>>>,
    /// Serializes teardowns: a caller that finds the VM already taken still
    /// returns only once the teardown in flight has finished, so the actor's
    /// `done` never fires while a forced (grace-deadline) teardown runs.
    teardown: Arc<tokio::sync::Mutex<()>>,
    /// Mounts added with `mountFs`, re-applied at every boot.
    mounts: Arc<MountTable>,
    /// Cron runs in progress (for the overlap policy).
    cron_runs: Arc<CronRuns>,
    /// Host-tool calls waiting for a client's answer.
    tool_calls: Arc<ToolCalls>,
    /// The socket the sidecar keeps sessions through (in actor SQLite),
    /// started at the first boot and kept for the instance's life.
    vm_db: Arc<std::sync::OnceLock<VmDbServer>>,
}

impl Default for VmSlot {
    fn default() -> Self {
        Self {
            inner: Arc::new(Slot::default()),
            root: Arc::new(tokio::sync::OnceCell::new()),
            teardown: Arc::new(tokio::sync::Mutex::new(())),
            mounts: Arc::new(MountTable::default()),
            cron_runs: Arc::new(CronRuns::default()),
            tool_calls: Arc::new(ToolCalls::default()),
            vm_db: Arc::default(),
        }
    }
}

impl VmSlot {
    /// The durable root filesystem (None when the config chose an ephemeral
    /// root), opened on first use.
    pub async fn root(&self, settings: &VmSettings, host: &HostCtx) -> Result<Option<Arc<Fs<HostCtx>>>, ActorError> {
        if settings.config.root_filesystem == RootFilesystem::Ephemeral {
            return Ok(None);
        }
        let fs = self
            .root
            .get_or_try_init(|| async {
                Fs::open(host.clone(), FsOptions::default()).await.map(Arc::new).map_err(|e| {
                    ActorError::new(code::VM_UNAVAILABLE, format!("durable root filesystem failed to open: {e:#}"))
                })
            })
            .await?;
        Ok(Some(fs.clone()))
    }

    /// The running VM, booting it first if there is none.
    pub async fn ensure(&self, settings: &VmSettings, host: &HostCtx) -> Result<AgentOs, ActorError> {
        Ok(self.ensure_live(settings, host).await?.0)
    }

    /// The running VM (booted first if needed) with its live registries.
    pub async fn ensure_live(&self, settings: &VmSettings, host: &HostCtx) -> Result<(AgentOs, Arc<Live>), ActorError> {
        if let Some(booted) = self.inner.get() {
            return Ok((booted.vm, booted.live));
        }
        let root = self.root(settings, host).await?;
        let tools = if host.sql_is_enabled() {
            host_functions(&settings.config.tool_kits, host, &self.tool_calls).await
        } else {
            Default::default()
        };
        let database = self.vm_db(host)?;
        let pool = settings.pool();
        let booting = sidecar_gate::boot(&pool).await;
        let vm = match AgentOs::create(settings.client_config(root.clone(), tools.clone(), database.clone())).await {
            Ok(vm) => vm,
            // The pool's cached sidecar died (another actor's VM may have
            // noticed first, or nobody has): drop it and start a new one.
            Err(e) if sidecar_lost(&e.to_string()) => {
                host.log(3, &format!("agentOS sidecar lost ({e}); starting a new one"));
                if let Ok(sidecar) = AgentOs::get_shared_sidecar(Some(pool.clone()), settings.sidecar_binary()).await {
                    let _ = sidecar.dispose().await;
                }
                AgentOs::create(settings.client_config(root, tools, database)).await.map_err(|e| {
                    ActorError::new(code::VM_UNAVAILABLE, format!("agentOS VM failed to boot: {e}"))
                })?
            }
            Err(e) => return Err(ActorError::new(code::VM_UNAVAILABLE, format!("agentOS VM failed to boot: {e}"))),
        };
        // Counted on its sidecar now: shutdowns may go ahead.
        drop(booting);
        if host.sql_is_enabled() {
            apply_stored(&vm, &self.mounts, host).await;
            crate::actions::software::relink_stored(&vm, &settings.config.linkable_packages, host).await;
        }
        let live = Arc::new(Live::default());
        self.inner.set(Some(Booted { vm: vm.clone(), live: live.clone(), pool }));
        host.log(2, "agentOS VM booted");
        broadcast_event(host, "vmBooted", &serde_json::json!({}));
        Ok((vm, live))
    }

    /// Where the sidecar reaches the actor's SQLite (none when the actor has
    /// no database: sessions are then unavailable, everything else works).
    fn vm_db(&self, host: &HostCtx) -> Result<Option<VmSqliteDescriptor>, ActorError> {
        if !host.sql_is_enabled() {
            return Ok(None);
        }
        let server = match self.vm_db.get() {
            Some(server) => server,
            None => {
                let server = VmDbServer::start(Arc::new(VmDb::new(host.clone()))).map_err(|e| {
                    ActorError::new(code::VM_UNAVAILABLE, format!("the VM database socket failed to start: {e:#}"))
                })?;
                self.vm_db.get_or_init(|| server)
            }
        };
        Ok(Some(VmSqliteDescriptor::ActorUds { path: server.socket().display().to_string() }))
    }

    /// Shuts the VM down if one runs, and tells clients why.
    pub async fn shutdown(&self, reason: ShutdownReason, host: &HostCtx) {
        let _teardown = self.teardown.lock().await;
        let Some(Booted { vm, pool, .. }) = self.inner.take() else { return };
        let exclusive = sidecar_gate::shutdown(&pool).await;
        if exclusive.is_none() {
            host.log(3, "agentOS VM shutdown: VMs booting on the shared sidecar did not finish in time; shutting down anyway");
        }
        if let Err(e) = vm.shutdown().await {
            host.log(3, &format!("agentOS VM shutdown ({reason:?}) failed: {e}"));
        }
        broadcast_event(host, "vmShutdown", &serde_json::json!({ "reason": reason }));
    }

    /// Forgets a VM whose sidecar died (nothing to shut down) and retires
    /// that sidecar from its pool so the next boot starts a fresh one.
    pub async fn discard_lost(&self, host: &HostCtx) {
        let _teardown = self.teardown.lock().await;
        let Some(Booted { vm, .. }) = self.inner.take() else { return };
        let _ = vm.sidecar().dispose().await;
        host.log(3, "agentOS VM lost with its sidecar process; the next action boots a new VM");
        broadcast_event(host, "vmShutdown", &serde_json::json!({ "reason": ShutdownReason::Crashed }));
    }

    pub fn is_booted(&self) -> bool {
        self.inner.get().is_some()
    }

    /// The mounts added with `mountFs`.
    pub fn mounts(&self) -> &MountTable {
        &self.mounts
    }

    /// Host-tool calls waiting for answers.
    pub fn tool_calls(&self) -> &ToolCalls {
        &self.tool_calls
    }

    /// Cron runs in progress.
    pub fn cron_runs(&self) -> &CronRuns {
        &self.cron_runs
    }

    /// The running VM and its registries, without booting one.
    pub fn running(&self) -> Option<(AgentOs, Arc<Live>)> {
        self.inner.get().map(|b| (b.vm, b.live))
    }
}

/// Broadcasts an event whose single argument is `payload` (clients receive
/// it as `conn.on(name, payload => ...)`).
pub fn broadcast_event<T: Serialize>(host: &HostCtx, name: &str, payload: &T) {
    match rivet_actor_plugin_abi::codec::encode_json_compat_to_vec(&(payload,)) {
        Ok(args) => {
            if let Err(e) = host.broadcast(name, args) {
                host.log(3, &format!("{e:#}"));
            }
        }
        Err(e) => host.log(4, &format!("encode event `{name}`: {e:#}")),
    }
}

/// A tiny mutex-protected optional value (std only; never held across await).
mod parking_lot_like {
    use std::sync::Mutex;

    use crate::live::lock;

    pub struct Slot<T>(Mutex<Option<T>>);

    impl<T> Default for Slot<T> {
        fn default() -> Self {
            Self(Mutex::new(None))
        }
    }

    impl<T: Clone> Slot<T> {
        pub fn get(&self) -> Option<T> {
            lock(&self.0).clone()
        }
        pub fn set(&self, value: Option<T>) {
            *lock(&self.0) = value;
        }
        pub fn take(&self) -> Option<T> {
            lock(&self.0).take()
        }
    }
}
