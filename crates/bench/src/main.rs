//! `agentos-bench`: the performance bars of design.md §6, measured side by
//! side in one process run against their baselines, reported as ratios.
//!
//! `agentos-bench storage` starts its own `agentos serve` (own engine, own
//! data directory, free 127.0.0.1 ports) serving the durable `agentOS`, its
//! ephemeral-root variant `agentOSEphemeral` and the ABI test plugin
//! `testPlugin`, measures the three storage bars (see [`storage`]) and stops
//! everything it started. `agentos-bench root-ops` counts the durable root's
//! `js_bridge` calls of the small-files workload (host trace log).
//!
//! Run it in release through `./scripts/bench`. Benchmarks are not tests:
//! nothing here asserts on time.

mod rawconn;
mod report;
mod session;
mod storage;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "agentos-bench", about = "Benchmarks of the agentOS actor (design.md §6)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The three storage bars: small files, bulk file, wake.
    Storage(storage::Options),
    /// One small-files run on the durable root with the root's trace log on:
    /// how many `js_bridge` calls each guest file costs, by operation.
    RootOps(session::HostOptions),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Storage(options) => storage::run(options),
        Command::RootOps(options) => storage::root_ops(options),
    }
}

/// The directory of this executable: `agentos` and `libtest_plugin.so` of
/// the same build live next to it.
fn build_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locate agentos-bench")?;
    Ok(exe.parent().context("agentos-bench has no parent directory")?.to_path_buf())
}
