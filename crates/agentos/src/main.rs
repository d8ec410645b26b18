//! `agentos`: serve agentOS actors on a Rivet Engine, and talk to them.

mod call;
mod engine;
mod serve;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "agentos", version, about = "An agent operating system as a durable RivetKit actor.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Provision what is needed, start (or reuse) a local Rivet Engine, load
    /// the agentOS plugin and serve actors until interrupted.
    Serve(serve::ServeArgs),
    /// Download and verify the pinned engine, sidecar, WASM command set and
    /// Pi agent into the cache (idempotent).
    Provision(ProvisionArgs),
    /// Call an action on an agentOS actor and print its JSON result.
    Call(call::CallArgs),
}

#[derive(Debug, clap::Args)]
struct ProvisionArgs {
    /// Where pinned downloads are cached.
    #[arg(long, env = "AGENTOS_CACHE_DIR", default_value_os_t = provision::cache_dir())]
    cache_dir: std::path::PathBuf,
    /// Print the provisioned paths as JSON.
    #[arg(long)]
    json: bool,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AGENTOS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,native_plugin=info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

#[tokio::main]
async fn main() {
    init_logging();
    if let Err(error) = run(Cli::parse()).await {
        eprintln!("agentos: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Provision(args) => {
            let all = provision::Component::ALL;
            let done = provision::provision(&args.cache_dir, &all, &provision::stderr_progress).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({
                        "engine": done.engine,
                        "sidecar": done.sidecar,
                        "commandPackages": done.command_packages,
                        "piPackage": done.pi_package,
                        "claudeCodePackage": done.claude_code_package,
                        "openCodePackage": done.open_code_package,
                    })
                );
            } else {
                eprintln!("agentos: everything is provisioned in {}", args.cache_dir.display());
            }
            Ok(())
        }
        Command::Call(args) => call::run(args).await,
    }
}
