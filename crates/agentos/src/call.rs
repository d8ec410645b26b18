//! `agentos call`: one action on one actor through the official Rust client.

use anyhow::{Context, Result};
use clap::Args;
use rivetkit_client::{Client, ClientConfig, GetOrCreateOptions};

#[derive(Debug, Args)]
pub struct CallArgs {
    /// The actor's key (one actor per key).
    pub key: String,
    /// The action name, e.g. `exec` or `readFile`.
    pub action: String,
    /// Positional arguments, each a JSON value (a bare word is taken as a string).
    pub args: Vec<String>,
    /// Engine endpoint.
    #[arg(long, env = "AGENTOS_ENGINE_ENDPOINT", default_value = "http://127.0.0.1:6420")]
    pub endpoint: String,
    /// Runner pool the actor is served in.
    #[arg(long, env = "AGENTOS_POOL", default_value = "default")]
    pub pool: String,
    /// Actor name.
    #[arg(long, default_value = "agentOS")]
    pub actor_name: String,
}

fn parse_arg(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

pub async fn run(args: CallArgs) -> Result<()> {
    let client = Client::new(ClientConfig::new(&args.endpoint).pool_name(&args.pool));
    let handle = client
        .get_or_create(&args.actor_name, vec![args.key.clone()], GetOrCreateOptions::default())
        .with_context(|| format!("get or create {} `{}`", args.actor_name, args.key))?;
    let values = args.args.iter().map(|a| parse_arg(a)).collect();
    let output = handle.action(&args.action, values).await?;
    let mut text = serde_json::to_string_pretty(&output)?;
    text.push('\n');
    // A reader that stopped early (`| head`) is not an error of the call.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("print the result"),
        _ => Ok(()),
    }
}
