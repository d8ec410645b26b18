//! The durable POSIX root filesystem of an actor's VM, stored in the actor's
//! SQLite.
//!
//! The VM's root is the sidecar's native plugin mount `js_bridge`: the
//! sidecar sends every filesystem operation as `(operation, args JSON)` to
//! a host callback; [`handle`] answers it from an [`Fs`]. The wire protocol
//! as observed against `agentos-sidecar` 0.2.21 is described in [`wire`].
//!
//! Storage (schema migration 2): real filesystem structures, no whole-file
//! rows and no base64 at rest.
//! - `fs_inodes`: one row per file, directory or symlink (type, full
//!   `st_mode`, owner, size, link count, times in ns, symlink target).
//! - `fs_dirents(parent, name, ino)`: directory entries; hard links are
//!   several entries naming one inode.
//! - `fs_chunks(ino, idx, data)`: file content in chunks of a fixed size
//!   recorded in `agentos_actor_meta.fs_chunk_size` (see [`content`]).
//!
//! Every change is one SQL transaction sent as one batch; all operations of
//! one filesystem are serialized by an async mutex (the plugin is the only
//! writer of these tables), and the metadata cache ([`meta`]) is updated only
//! after a commit. A `writeFile` whose SQL would exceed the batch limit is
//! staged copy-on-write across several transactions and switched in by a
//! final small one ([`Fs::recover`] removes what a crash left staged).

mod check;
mod content;
mod error;
mod meta;
mod ops;
mod path;
pub(crate) mod sql;
mod txn;
pub mod wire;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};

pub use check::{Problem, Report, check};
pub use error::{Errno, FsError};
pub use meta::{Ino, Inode, Kind, ROOT};
pub use ops::{MAX_FILE_SIZE, MAX_READ, Owner};
pub use sql::{Row, SqlExec, transaction};
pub use wire::{OPERATIONS, Op, handle, js_bridge_callback};

use meta::{Changes, Meta};

/// Tuning of an [`Fs`].
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Largest SQL batch (bytes of SQL text) sent in one `exec`. Bigger
    /// `writeFile`s are staged copy-on-write; bigger `pwrite`s are split.
    pub max_batch_bytes: usize,
}

/// Default [`FsOptions::max_batch_bytes`]: 8 MiB of SQL text.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 << 20;

impl Default for FsOptions {
    fn default() -> Self {
        Self { max_batch_bytes: DEFAULT_MAX_BATCH_BYTES }
    }
}

/// A directory entry with its type, as listed by `readDirWithTypes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub is_directory: bool,
    pub is_symbolic_link: bool,
}

/// The durable filesystem over one SQL connection.
pub struct Fs<S> {
    sql: S,
    state: Mutex<State>,
    chunk_size: u64,
    max_batch_bytes: usize,
}

struct State {
    meta: Meta,
    /// The cache may differ from SQLite (a batch failed): reload before use.
    stale: bool,
    /// Next inode number to hand out; never reused within a process.
    next_ino: Ino,
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl<S: SqlExec> Fs<S> {
    /// Opens the filesystem of a migrated database: removes leftovers of
    /// interrupted staged writes ([`Fs::recover`]) and loads the metadata.
    pub async fn open(sql: S, options: FsOptions) -> Result<Self> {
        let rows = sql
            .query("SELECT value FROM agentos_actor_meta WHERE key = 'fs_chunk_size'", &json!([]))
            .await
            .context("read fs_chunk_size")?;
        let Some(value) = rows.first().and_then(|row| row.get("value")).and_then(|v| v.as_str()) else {
            bail!("agentos_actor_meta has no fs_chunk_size; is schema migration 2 applied?");
        };
        let chunk_size: u64 = value.parse().with_context(|| format!("fs_chunk_size `{value}`"))?;
        if chunk_size == 0 {
            bail!("fs_chunk_size must be positive");
        }
        let removed = recover_staged(&sql).await?;
        if removed > 0 {
            tracing::info!(removed, "durable root: removed staged inodes left by an interrupted write");
        }
        let meta = Meta::load(&sql).await.context("load durable root metadata")?;
        let next_ino = Meta::max_ino(&sql).await? + 1;
        Ok(Self {
            sql,
            state: Mutex::new(State { meta, stale: false, next_ino }),
            chunk_size,
            max_batch_bytes: options.max_batch_bytes,
        })
    }

    /// Removes staged inodes (`nlink = 0`) and their chunks: content of a
    /// copy-on-write `writeFile` that never got its final transaction.
    /// Returns how many were removed. [`Fs::open`] runs it.
    pub async fn recover(&self) -> Result<u64> {
        let _state = self.state.lock().await;
        recover_staged(&self.sql).await
    }

    /// The chunk size of file content, in bytes.
    pub fn chunk_size(&self) -> u64 {
        self.chunk_size
    }

    /// Whether the root directory has no entries (a root the sidecar never
    /// laid out). Answered from the cache.
    pub async fn is_empty(&self) -> Result<bool, FsError> {
        Ok(!self.state().await?.meta.has_children(ROOT))
    }

    /// Bytes of all file content now.
    pub async fn used_bytes(&self) -> Result<u64, FsError> {
        Ok(self.state().await?.meta.file_bytes())
    }

    /// The SQL connection.
    pub fn sql(&self) -> &S {
        &self.sql
    }

    /// Checks the stored filesystem ([`check()`]) and that the metadata cache
    /// equals what is stored.
    pub async fn check(&self) -> Result<Report> {
        let state = self.state.lock().await;
        let mut report = check(&self.sql).await?;
        if !state.stale {
            let stored = Meta::load(&self.sql).await?;
            if stored != state.meta {
                report.problems.push(Problem::CacheMismatch);
            }
        }
        Ok(report)
    }

    /// Locks the state, reloading the cache first if a failed batch made it
    /// unreliable.
    async fn state(&self) -> Result<MutexGuard<'_, State>, FsError> {
        let mut state = self.state.lock().await;
        if state.stale {
            state.meta = Meta::load(&self.sql).await.map_err(|e| FsError::storage("reload", &e))?;
            state.next_ino = state.next_ino.max(
                Meta::max_ino(&self.sql).await.map_err(|e| FsError::storage("reload", &e))? + 1,
            );
            state.stale = false;
        }
        Ok(state)
    }

    /// Runs `BEGIN IMMEDIATE; body COMMIT;` as one batch and applies the
    /// changes to the cache once it has committed. On failure the
    /// transaction is rolled back and the cache is reloaded before next use.
    async fn commit(&self, state: &mut State, what: &str, body: String, changes: Changes) -> Result<(), FsError> {
        self.exec_tx(state, what, &body).await?;
        state.meta.apply(changes);
        Ok(())
    }

    /// Runs one transaction without cache changes.
    async fn exec_tx(&self, state: &mut State, what: &str, body: &str) -> Result<(), FsError> {
        if let Err(error) = transaction(&self.sql, body).await {
            state.stale = true;
            return Err(FsError::storage(what, &error));
        }
        Ok(())
    }
}

async fn recover_staged<S: SqlExec>(sql: &S) -> Result<u64> {
    let rows = sql
        .query("SELECT COUNT(*) AS n FROM fs_inodes WHERE nlink = 0", &json!([]))
        .await
        .context("count staged inodes")?;
    let count = rows.first().and_then(|row| row.get("n")).and_then(|v| v.as_u64()).unwrap_or(0);
    if count == 0 {
        return Ok(0);
    }
    let body = "DELETE FROM fs_chunks WHERE ino IN (SELECT ino FROM fs_inodes WHERE nlink = 0);\n\
        DELETE FROM fs_inodes WHERE nlink = 0;\n";
    transaction(sql, body).await.context("remove staged inodes")?;
    Ok(count)
}
