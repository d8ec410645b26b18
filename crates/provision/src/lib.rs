//! Provisioning is code, not a manual step: this crate downloads the pinned
//! external pieces (Rivet engine, agentOS sidecar, WASM command set, Pi,
//! Claude Code and OpenCode agents) straight from the npm registry, checks their sha512 integrity
//! before extracting anything, and installs them into a shared cache once.
//!
//! A warm cache is recognised by a stamp file per artifact, so repeated calls
//! (every test, every run) cost a couple of file reads and no network I/O.
//! Installs are serialised across processes with a lock file and appear by
//! atomic rename, so parallel test processes cannot corrupt the cache.

mod artifacts;
mod fetch;
mod install;
mod integrity;
mod progress;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};

pub use artifacts::Artifact;
pub use progress::{ProgressEvent, no_progress, stderr_progress};

/// The progress sink used internally; `Send + Sync` so the provisioning
/// future can be spawned.
pub(crate) type Progress<'a> = dyn Fn(ProgressEvent) + Send + Sync + 'a;

/// A selectable group of pinned artifacts, so callers download only what
/// they use (most tests need the engine, few need the 131 MB Pi package).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Component {
    /// The Rivet engine binary (`rivet-engine`).
    Engine,
    /// The agentOS sidecar binary (`agentos-sidecar`).
    Sidecar,
    /// The eight WASM command packages behind `@agentos-software/common`.
    Commands,
    /// The Pi coding agent package.
    Pi,
    /// The Claude Code agent package (an agent that asks permission and
    /// speaks MCP, which Pi does not).
    ClaudeCode,
    /// The OpenCode agent package (hands stdio MCP servers to the agent).
    OpenCode,
}

impl Component {
    /// Every component, for "provision everything".
    pub const ALL: [Component; 6] = [
        Component::Engine,
        Component::Sidecar,
        Component::Commands,
        Component::Pi,
        Component::ClaudeCode,
        Component::OpenCode,
    ];
}

/// Paths of the provisioned files. Components that were not asked for are
/// `None` / empty rather than silently downloaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provisioned {
    /// The engine executable (mode 0o755).
    pub engine: Option<PathBuf>,
    /// The sidecar executable (mode 0o755).
    pub sidecar: Option<PathBuf>,
    /// The command packages' `package.aospkg` files, in the pinned order.
    pub command_packages: Vec<PathBuf>,
    /// The Pi agent's `package.aospkg`.
    pub pi_package: Option<PathBuf>,
    /// The Claude Code agent's `package.aospkg`.
    pub claude_code_package: Option<PathBuf>,
    /// The OpenCode agent's `package.aospkg`.
    pub open_code_package: Option<PathBuf>,
}

/// The pinned artifact table, e.g. to print what would be downloaded.
pub fn artifacts() -> &'static [Artifact] {
    artifacts::ARTIFACTS
}

/// Where the shared cache lives: `$AGENTOS_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/agentos-actor`, else `~/.cache/agentos-actor`. Shared
/// (not per-test) so a download happens once per machine, not per run.
pub fn cache_dir() -> PathBuf {
    cache_dir_from(|k| std::env::var_os(k))
}

fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> PathBuf {
    let set = |k: &str| var(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = set("AGENTOS_CACHE_DIR") {
        return dir;
    }
    // The XDG spec says relative values are invalid and must be ignored.
    if let Some(xdg) = set("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return xdg.join("agentos-actor");
    }
    match set("HOME") {
        Some(home) => home.join(".cache").join("agentos-actor"),
        None => std::env::temp_dir().join("agentos-actor-cache"),
    }
}

/// How many artifacts download at once: enough to overlap the small command
/// packages with the big ones, few enough to be polite to the registry.
const PARALLEL: usize = 4;

/// Ensures the selected components are installed under `cache` and returns
/// their paths. Idempotent: a warm cache does no network I/O and reports
/// only [`ProgressEvent::Cached`]. Errors name the artifact (and, for an
/// integrity mismatch, the expected and actual hashes) and leave no partial
/// install behind.
pub async fn provision(
    cache: &Path,
    which: &[Component],
    progress: &(dyn Fn(ProgressEvent) + Send + Sync),
) -> Result<Provisioned> {
    provision_with(cache, which, &fetch::HttpFetcher::default(), progress).await
}

async fn provision_with(
    cache: &Path,
    which: &[Component],
    fetcher: &impl fetch::Fetch,
    progress: &Progress<'_>,
) -> Result<Provisioned> {
    let selected: Vec<&'static Artifact> = artifacts::ARTIFACTS
        .iter()
        .filter(|a| which.contains(&a.component))
        .collect();
    // Built eagerly into a Vec (futures are lazy, nothing runs yet): a
    // `Map` adaptor with a closure here would make the future !Send.
    let installs: Vec<_> = selected
        .iter()
        .map(|&a| install::ensure(cache, a, fetcher, progress))
        .collect();
    // `buffered` keeps table order, so command packages come back in order.
    let paths: Vec<PathBuf> = futures::stream::iter(installs)
        .buffered(PARALLEL)
        .try_collect()
        .await?;

    let mut out = Provisioned::default();
    for (artifact, path) in selected.into_iter().zip(paths) {
        match artifact.component {
            Component::Engine => out.engine = Some(path),
            Component::Sidecar => out.sidecar = Some(path),
            Component::Commands => out.command_packages.push(path),
            Component::Pi => out.pi_package = Some(path),
            Component::ClaudeCode => out.claude_code_package = Some(path),
            Component::OpenCode => out.open_code_package = Some(path),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
