//! Registering plugin actors and serving them on a Rivet Engine.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use rivetkit_core::{ActorConfig, CoreRegistry, EngineSpawnMode, ServeConfig};
use tokio_util::sync::CancellationToken;

/// One actor type to serve from a plugin library.
#[derive(Debug, Clone)]
pub struct PluginActor {
    /// The actor name clients use (`client.<name>.getOrCreate(...)`).
    pub name: String,
    pub library: PathBuf,
    /// Passed to `rivet_actor_factory_new` unchanged.
    pub config_json: String,
    /// Passed to `rivet_actor_factory_new` unchanged (may be empty).
    pub sidecar_path: String,
    pub limits: ActorLimits,
}

/// Per-actor-type runtime knobs applied by the host.
#[derive(Debug, Clone)]
pub struct ActorLimits {
    pub max_incoming_message_bytes: u32,
    pub max_outgoing_message_bytes: u32,
    pub action_timeout: Duration,
    pub sleep_timeout: Duration,
    pub sleep_grace_period: Duration,
}

impl Default for ActorLimits {
    fn default() -> Self {
        Self {
            max_incoming_message_bytes: 32 * 1024 * 1024,
            max_outgoing_message_bytes: 32 * 1024 * 1024,
            action_timeout: Duration::from_secs(300),
            sleep_timeout: Duration::from_secs(30),
            sleep_grace_period: Duration::from_secs(15),
        }
    }
}

impl PluginActor {
    fn actor_config(&self) -> ActorConfig {
        let limits = &self.limits;
        ActorConfig {
            name: Some(self.name.clone()),
            has_database: true,
            // Without the sqlite-local feature, rivetkit-core runs SQL in the
            // engine; a raw factory must ask for that explicitly.
            remote_sqlite: true,
            max_incoming_message_size: limits.max_incoming_message_bytes,
            max_outgoing_message_size: limits.max_outgoing_message_bytes,
            action_timeout: limits.action_timeout,
            sleep_timeout: limits.sleep_timeout,
            sleep_grace_period: limits.sleep_grace_period,
            sleep_grace_period_overridden: true,
            ..ActorConfig::default()
        }
    }

    /// Loads the plugin, builds its factory and registers it.
    pub fn register(&self, registry: &mut CoreRegistry) -> Result<()> {
        let plugin = crate::loader::load(&self.library)?;
        let factory = plugin
            .factory(&self.config_json, &self.sidecar_path)
            .with_context(|| format!("build actor type `{}`", self.name))?;
        registry.register(&self.name, crate::instance::actor_factory(factory, self.actor_config()));
        Ok(())
    }
}

/// Where and as what this host registers with the engine.
#[derive(Debug, Clone)]
pub struct EngineTarget {
    pub endpoint: String,
    pub namespace: String,
    pub pool: String,
    pub token: Option<String>,
}

/// Serves the registry until `shutdown` fires, then drains gracefully.
/// For a loopback endpoint rivetkit-core also upserts the pool's runner config.
pub async fn serve(registry: CoreRegistry, target: &EngineTarget, shutdown: CancellationToken) -> Result<()> {
    serve_announcing(registry, target, shutdown, || {}).await
}

/// Like [`serve`], calling `on_ready` once this host is registered with the
/// engine and actors can start on it.
///
/// Shutdown is bounded: rivet-envoy-client 2.3.19 latches "stopped" with a
/// `watch::Sender::send` that is dropped when nobody is subscribed yet, so
/// when the envoy stops quickly (e.g. with no actors) rivetkit-core's own
/// wait can miss it and sleep for the engine's `actor_stop_threshold`
/// (30 min). Once every actor has drained (their state is persisted by
/// then) we give the envoy [`ENVOY_STOP_WINDOW`] to report, then return.
pub async fn serve_announcing(
    registry: CoreRegistry,
    target: &EngineTarget,
    shutdown: CancellationToken,
    on_ready: impl FnOnce() + Send + 'static,
) -> Result<()> {
    let config = ServeConfig {
        version: 1,
        endpoint: target.endpoint.clone(),
        token: Some(target.token.clone().unwrap_or_else(|| "dev".into())),
        namespace: target.namespace.clone(),
        pool_name: target.pool.clone(),
        engine_spawn: EngineSpawnMode::Never,
        serverless_package_version: "2.3.19".into(),
        ..ServeConfig::default()
    };
    let (handle_tx, handle_rx) = tokio::sync::oneshot::channel();
    let served = registry.serve_with_config_and_handle_observer(config, shutdown.clone(), move |handle| {
        let _ = handle_tx.send(handle.clone());
        tokio::spawn(async move {
            if handle.started().await.is_ok() {
                on_ready();
            }
        });
    });
    tokio::pin!(served);
    // Direct IP endpoints only: for a DNS name (a cluster) we cannot know the
    // peer address from here, and Nagle stays on there.
    let nodelay = crate::nodelay::endpoint_addr(&target.endpoint).map(|engine| {
        tokio::spawn(async move {
            loop {
                crate::nodelay::set_on_sockets_to(engine);
                tokio::time::sleep(crate::nodelay::SCAN_INTERVAL).await;
            }
        })
    });
    let _stop_nodelay = AbortOnDrop(nodelay);
    tokio::select! {
        result = &mut served => return result,
        _ = shutdown.cancelled() => {}
    }
    let drained = async {
        // An error means shutdown came before the envoy started: nothing runs here.
        if let Ok(handle) = handle_rx.await {
            handle.wait_actors_drained().await;
        }
    };
    tokio::select! {
        result = &mut served => return result,
        _ = drained => {}
    }
    match tokio::time::timeout(ENVOY_STOP_WINDOW, &mut served).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("actors drained but the envoy did not report stopping within {ENVOY_STOP_WINDOW:?}; exiting anyway");
            Ok(())
        }
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// How long to wait for the envoy after every actor has drained.
pub const ENVOY_STOP_WINDOW: Duration = Duration::from_secs(5);
