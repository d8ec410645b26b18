//! Versioned schema migrations of the actor's SQLite, each applied in one
//! transaction together with its version bump.

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::host::HostCtx;

/// (version, SQL) in ascending order. Never edit a shipped entry: add one.
pub static MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE agentos_actor_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    INSERT INTO agentos_actor_meta (key, value)
        VALUES ('created_at_ms', CAST(CAST(unixepoch('subsec') * 1000 AS INTEGER) AS TEXT));",
    ),
    // The durable root filesystem (`crate::fs`): inodes, directory entries
    // and file content in chunks of `fs_chunk_size` bytes; inode 1 is `/`.
    (
        2,
        "CREATE TABLE fs_inodes (
        ino INTEGER PRIMARY KEY,
        kind INTEGER NOT NULL,
        mode INTEGER NOT NULL,
        uid INTEGER NOT NULL,
        gid INTEGER NOT NULL,
        size INTEGER NOT NULL,
        nlink INTEGER NOT NULL,
        atime_ns INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        ctime_ns INTEGER NOT NULL,
        birthtime_ns INTEGER NOT NULL,
        target BLOB
    ) STRICT;
    CREATE TABLE fs_dirents (
        parent INTEGER NOT NULL,
        name TEXT NOT NULL,
        ino INTEGER NOT NULL,
        PRIMARY KEY (parent, name)
    ) WITHOUT ROWID, STRICT;
    CREATE INDEX fs_dirents_ino ON fs_dirents (ino);
    CREATE TABLE fs_chunks (
        ino INTEGER NOT NULL,
        idx INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (ino, idx)
    ) WITHOUT ROWID, STRICT;
    INSERT INTO fs_inodes (ino, kind, mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns, birthtime_ns, target)
        SELECT 1, 2, 16877, 0, 0, 0, 2, now, now, now, now, NULL
        FROM (SELECT CAST(unixepoch('subsec') * 1000 AS INTEGER) * 1000000 AS now);
    INSERT INTO agentos_actor_meta (key, value) VALUES ('fs_chunk_size', '16384');",
    ),
    // Signed preview URLs, and the mounts added at runtime (re-applied at
    // every VM boot).
    (
        3,
        "CREATE TABLE agentos_preview_tokens (
        token TEXT PRIMARY KEY,
        port INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE agentos_mounts (
        path TEXT PRIMARY KEY,
        plugin TEXT NOT NULL,
        config TEXT NOT NULL,
        read_only INTEGER NOT NULL
    ) STRICT;",
    ),
    // Cron jobs: each fires through a host alarm (`schedule_at`), so a due
    // job wakes a sleeping actor.
    (
        4,
        "CREATE TABLE agentos_cron_jobs (
        id TEXT PRIMARY KEY,
        schedule TEXT NOT NULL,
        target TEXT NOT NULL,
        overlap TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        next_run_ms INTEGER,
        last_run_ms INTEGER,
        run_count INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    ) STRICT;",
    ),
    // Toolkits registered by `registerToolKit`, offered from the next boot.
    (
        5,
        "CREATE TABLE agentos_toolkits (
        name TEXT PRIMARY KEY,
        definition TEXT NOT NULL
    ) STRICT;",
    ),
    // How each agent session was created: the engine reopens a session
    // only with the very same creation options, after sleep or a restart.
    (
        6,
        "CREATE TABLE agentos_sessions (
        session_id TEXT PRIMARY KEY,
        input TEXT NOT NULL
    ) STRICT;",
    ),
    // Packages added with `linkSoftware`, linked again at every boot.
    (
        7,
        "CREATE TABLE agentos_linked_software (
        name TEXT PRIMARY KEY
    ) STRICT;",
    ),
];

/// Brings the schema to the latest version. Returns the version reached.
pub async fn migrate(host: &HostCtx) -> Result<i64> {
    host.db_exec("CREATE TABLE IF NOT EXISTS agentos_schema_version (version INTEGER NOT NULL) STRICT;")
        .await
        .context("create agentos_schema_version")?;
    let rows = host
        .db_query("SELECT COALESCE(MAX(version), 0) AS version FROM agentos_schema_version", &json!([]))
        .await
        .context("read schema version")?;
    let mut current = rows
        .first()
        .and_then(|row| row.get("version"))
        .and_then(|v| v.as_i64())
        .unwrap_or(0);
    let latest = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0);
    if current > latest {
        bail!("actor database has schema version {current}, newer than this plugin's {latest}; refusing to run an older plugin on it");
    }
    let pending: Vec<&(i64, &str)> = MIGRATIONS.iter().filter(|(v, _)| *v > current).collect();
    for (version, sql) in pending {
        let body = format!(
            "{sql}\nDELETE FROM agentos_schema_version;\nINSERT INTO agentos_schema_version (version) VALUES ({version});"
        );
        crate::fs::transaction(host, &body)
            .await
            .with_context(|| format!("apply schema migration {version}"))?;
        current = *version;
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_strictly_ascending() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(versions.first(), Some(&1));
    }
}
