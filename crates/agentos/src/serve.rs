//! `agentos serve`: provision, start (or reuse) the engine, load the plugin,
//! serve until interrupted, then stop what was started.

use std::path::PathBuf;
use std::time::Duration;

use abi_host::serve::{ActorLimits, EngineTarget, PluginActor};
use anyhow::{Context, Result, bail};
use clap::Args;
use provision::Component;
use rivetkit_core::CoreRegistry;
use tokio_util::sync::CancellationToken;

use crate::engine::{self, EnginePorts, LocalEngine};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where the local engine keeps its data (the actors' SQLite lives here)
    /// and where logs go.
    #[arg(long, env = "AGENTOS_DATA_DIR", default_value_os_t = engine::default_data_dir())]
    pub data_dir: PathBuf,
    /// Guard port of the local engine on 127.0.0.1 (api-peer and metrics use
    /// the next two ports). A healthy engine already there is reused.
    #[arg(long, env = "AGENTOS_ENGINE_PORT", default_value_t = 6420)]
    pub port: u16,
    /// Serve against an existing engine (e.g. a Rivet Engine cluster) instead
    /// of starting a local one. A non-loopback engine needs the pool's runner
    /// config created beforehand.
    #[arg(long, env = "AGENTOS_ENGINE_ENDPOINT", conflicts_with = "port")]
    pub engine_endpoint: Option<String>,
    /// Engine namespace.
    #[arg(long, env = "AGENTOS_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Runner pool to register in; clients must use the same pool name.
    #[arg(long, env = "AGENTOS_POOL", default_value = "default")]
    pub pool: String,
    /// Engine token (an engine without auth accepts any).
    #[arg(long, env = "AGENTOS_ENGINE_TOKEN")]
    pub token: Option<String>,
    /// Actor name clients use for the agentOS actor.
    #[arg(long, default_value = "agentOS")]
    pub actor_name: String,
    /// The agentOS plugin library. Default: `libagentos_actor.so` next to
    /// this binary.
    #[arg(long, env = "AGENTOS_PLUGIN")]
    pub plugin: Option<PathBuf>,
    /// Also serve another ABI v13 plugin, as `NAME=PATH` (repeatable).
    #[arg(long = "extra-plugin", value_name = "NAME=PATH")]
    pub extra_plugins: Vec<String>,
    /// Also serve the agentOS actor under another name with its own config
    /// file, as `NAME=FILE` (repeatable); e.g. an ephemeral-root variant
    /// beside the durable one for comparisons.
    #[arg(long = "variant", value_name = "NAME=FILE")]
    pub variants: Vec<String>,
    /// A host loopback port the guest VMs may reach (repeatable); all others
    /// are blocked.
    #[arg(long = "loopback-exempt-port", value_name = "PORT")]
    pub loopback_exempt_ports: Vec<u16>,
    /// A JSON file with the agentOS actor's configuration (see the README);
    /// unknown fields are rejected. `packages` defaults to the WASM command set.
    #[arg(long, value_name = "FILE")]
    pub actor_config: Option<PathBuf>,
    /// Seconds an idle actor stays awake before it sleeps.
    #[arg(long, default_value_t = 30)]
    pub sleep_after_secs: u64,
    /// Where pinned downloads are cached.
    #[arg(long, env = "AGENTOS_CACHE_DIR", default_value_os_t = provision::cache_dir())]
    pub cache_dir: PathBuf,
}

fn default_plugin_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate this binary")?;
    let dir = exe.parent().context("binary has no directory")?;
    let path = dir.join("libagentos_actor.so");
    if !path.exists() {
        bail!(
            "the agentOS plugin was not found at {}; build it with `cargo build -p agentos-actor` (same profile) or pass --plugin",
            path.display()
        );
    }
    Ok(path)
}

/// Parses `NAME=PATH` given to `--{flag}`.
fn parse_named_path(flag: &str, spec: &str) -> Result<(String, PathBuf)> {
    let (name, path) = spec.split_once('=').with_context(|| format!("--{flag} `{spec}` must be NAME=PATH"))?;
    if name.is_empty() || path.is_empty() {
        bail!("--{flag} `{spec}` must be NAME=PATH with both parts non-empty");
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// The plugin's config_json: the user's config (if any), with the
/// provisioned command set as the default `packages` and the CLI's loopback
/// exemptions added.
fn agentos_config_json(user: Option<&PathBuf>, packages: &[PathBuf], loopback_exempt_ports: &[u16]) -> Result<String> {
    let mut config = match user {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
            let value: serde_json::Value =
                serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
            match value {
                serde_json::Value::Object(map) => map,
                _ => bail!("{} must hold a JSON object", path.display()),
            }
        }
        None => serde_json::Map::new(),
    };
    if !config.contains_key("packages") {
        let packages: Vec<_> =
            packages.iter().map(|p| serde_json::json!({ "packagePath": p.to_string_lossy() })).collect();
        config.insert("packages".into(), packages.into());
    }
    if !loopback_exempt_ports.is_empty() {
        let ports = config.entry("loopbackExemptPorts").or_insert_with(|| serde_json::json!([]));
        let Some(list) = ports.as_array_mut() else { bail!("loopbackExemptPorts must be an array") };
        list.extend(loopback_exempt_ports.iter().map(|p| serde_json::json!(p)));
    }
    Ok(serde_json::Value::Object(config).to_string())
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let plugin_path = match &args.plugin {
        Some(path) => path.clone(),
        None => default_plugin_path()?,
    };
    let extras =
        args.extra_plugins.iter().map(|s| parse_named_path("extra-plugin", s)).collect::<Result<Vec<_>>>()?;
    let variants = args.variants.iter().map(|s| parse_named_path("variant", s)).collect::<Result<Vec<_>>>()?;

    let components: &[Component] = if args.engine_endpoint.is_some() {
        &[Component::Sidecar, Component::Commands]
    } else {
        &[Component::Engine, Component::Sidecar, Component::Commands]
    };
    let provisioned = provision::provision(&args.cache_dir, components, &provision::stderr_progress)
        .await
        .context("provision the pinned engine, sidecar and command set")?;

    let limits = ActorLimits { sleep_timeout: Duration::from_secs(args.sleep_after_secs), ..ActorLimits::default() };
    let sidecar = provisioned.sidecar.clone().context("sidecar was not provisioned")?;
    let agentos_actor = |name: &str, config: Option<&PathBuf>| -> Result<PluginActor> {
        Ok(PluginActor {
            name: name.to_owned(),
            library: plugin_path.clone(),
            config_json: agentos_config_json(config, &provisioned.command_packages, &args.loopback_exempt_ports)?,
            sidecar_path: sidecar.to_string_lossy().into_owned(),
            limits: limits.clone(),
        })
    };
    let mut actors = vec![agentos_actor(&args.actor_name, args.actor_config.as_ref())?];
    for (name, config) in &variants {
        actors.push(agentos_actor(name, Some(config))?);
    }
    for (name, library) in extras {
        actors.push(PluginActor { name, library, config_json: "{}".into(), sidecar_path: String::new(), limits: limits.clone() });
    }
    // Plugins load (and reject bad config) before anything is started.
    let mut registry = CoreRegistry::new();
    for actor in &actors {
        actor.register(&mut registry).with_context(|| format!("load plugin {}", actor.library.display()))?;
    }

    let (mut engine, endpoint) = match &args.engine_endpoint {
        Some(endpoint) => (None, endpoint.trim_end_matches('/').to_owned()),
        None => {
            let binary = provisioned.engine.clone().context("engine was not provisioned")?;
            std::fs::create_dir_all(&args.data_dir)
                .with_context(|| format!("create data dir {}", args.data_dir.display()))?;
            let local = LocalEngine::start_or_reuse(&binary, &args.data_dir, EnginePorts::from_guard(args.port)).await?;
            let endpoint = local.endpoint.clone();
            (Some(local), endpoint)
        }
    };

    let target = EngineTarget {
        endpoint: endpoint.clone(),
        namespace: args.namespace.clone(),
        pool: args.pool.clone(),
        token: args.token.clone(),
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    let names: Vec<&str> = actors.iter().map(|a| a.name.as_str()).collect();
    eprintln!(
        "agentos: serving {} at {endpoint} (namespace {}, pool {}){}",
        names.join(", "),
        args.namespace,
        args.pool,
        engine.as_ref().and_then(LocalEngine::pid).map(|pid| format!(", engine pid {pid}")).unwrap_or_default()
    );
    let served = abi_host::serve::serve_announcing(registry, &target, shutdown, || {
        // A line scripts can wait for: the envoy is registered and actors can start.
        println!("agentos: ready");
    })
    .await;
    if let Some(engine) = engine.as_mut() {
        eprintln!("agentos: host drained; stopping the engine we started");
        engine.stop().await;
    }
    eprintln!("agentos: stopped");
    served
}

async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    eprintln!("agentos: shutting down (actors get their sleep grace to finish)");
    shutdown.cancel();
}
