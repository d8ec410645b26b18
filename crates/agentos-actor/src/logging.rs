//! Optional diagnostics of the plugin's own crates (agentos-client logs via
//! `tracing`): set `AGENTOS_PLUGIN_LOG` to an env-filter such as `info`.

pub fn init_from_env() {
    if let Ok(filter) = std::env::var("AGENTOS_PLUGIN_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
