//! Consistency checker of the stored filesystem. It reads the tables
//! directly (never the cache) and reports every violated invariant:
//! - the root (inode 1) exists and is a directory, with no entry naming it;
//! - every entry names an existing inode, lives in a directory, has a valid
//!   name; every directory has exactly one entry (no directory hard links);
//! - every inode is reachable from the root;
//! - `nlink` equals the number of entries (directories: 2 + subdirectories);
//! - the type bits of `mode` match `kind`; symlinks (only they) have a
//!   target and their size is its length; directories have size 0;
//! - chunks belong to files, are non-empty, at most one chunk long and end
//!   at or before the file size (see [`super::content`] for holes).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use anyhow::{Context, Result};
use serde_json::json;

use super::meta::{INODE_COLUMNS, Ino, Inode, Kind, ROOT, S_IFMT};
use super::path::NAME_MAX;
use super::sql::{SqlExec, col_i64, col_text};

/// One violated invariant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    MissingRoot,
    RootNotDirectory,
    /// An entry names the root.
    RootHasEntry { parent: Ino, name: String },
    /// A row of `fs_inodes` could not be read (bad kind, negative size...).
    UnreadableInode { ino: Ino, error: String },
    /// An entry names an inode that does not exist.
    DanglingEntry { parent: Ino, name: String, ino: Ino },
    /// An entry's parent is missing or not a directory.
    EntryOutsideDirectory { parent: Ino, name: String },
    BadName { parent: Ino, name: String },
    /// A directory has more than one entry.
    DirectoryLinkedTwice { ino: Ino, entries: usize },
    /// Not reachable from the root (staged inodes left by a crash show up
    /// here until `recover` runs).
    Unreachable { ino: Ino },
    WrongNlink { ino: Ino, stored: i64, expected: i64 },
    ModeKindMismatch { ino: Ino, mode: u32, kind: Kind },
    BadSymlink { ino: Ino },
    TargetOnNonSymlink { ino: Ino },
    DirectoryWithSize { ino: Ino, size: u64 },
    /// A chunk of a missing inode or of a non-file.
    OrphanChunk { ino: Ino, idx: i64 },
    /// A chunk that is empty or longer than the chunk size.
    BadChunkLength { ino: Ino, idx: i64, len: i64 },
    /// A chunk ending after the file's size.
    ChunkBeyondSize { ino: Ino, idx: i64, len: i64, size: u64 },
    /// The metadata cache differs from the stored metadata (`Fs::check`).
    CacheMismatch,
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub inodes: usize,
    pub entries: usize,
    pub chunks: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the stored filesystem.
pub async fn check<S: SqlExec>(sql: &S) -> Result<Report> {
    let chunk_size = {
        let rows = sql
            .query("SELECT value FROM agentos_actor_meta WHERE key = 'fs_chunk_size'", &json!([]))
            .await?;
        rows.first()
            .and_then(|row| row.get("value"))
            .and_then(|v| v.as_str())
            .and_then(|v| v.parse::<i64>().ok())
            .context("fs_chunk_size")?
    };
    let mut report = Report::default();
    let mut problems = Vec::new();

    let mut inodes: BTreeMap<Ino, Inode> = BTreeMap::new();
    let mut all_inos: HashSet<Ino> = HashSet::new();
    for row in sql.query(&format!("SELECT {INODE_COLUMNS} FROM fs_inodes"), &json!([])).await? {
        let ino = col_i64(&row, "ino")?;
        all_inos.insert(ino);
        match Inode::from_row(&row) {
            Ok(inode) => {
                inodes.insert(ino, inode);
            }
            Err(error) => problems.push(Problem::UnreadableInode { ino, error: format!("{error:#}") }),
        }
    }
    report.inodes = all_inos.len();

    let mut entries: Vec<(Ino, String, Ino)> = Vec::new();
    for row in sql.query("SELECT parent, name, ino FROM fs_dirents ORDER BY parent, name", &json!([])).await? {
        entries.push((col_i64(&row, "parent")?, col_text(&row, "name")?.to_owned(), col_i64(&row, "ino")?));
    }
    report.entries = entries.len();

    match inodes.get(&ROOT) {
        None if !all_inos.contains(&ROOT) => problems.push(Problem::MissingRoot),
        Some(root) if !root.is_dir() => problems.push(Problem::RootNotDirectory),
        _ => {}
    }

    let mut links: HashMap<Ino, i64> = HashMap::new();
    let mut subdirs: HashMap<Ino, i64> = HashMap::new();
    let mut children: HashMap<Ino, Vec<Ino>> = HashMap::new();
    for (parent, name, ino) in &entries {
        let (parent, ino) = (*parent, *ino);
        if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') || name.len() > NAME_MAX {
            problems.push(Problem::BadName { parent, name: name.clone() });
        }
        if !inodes.get(&parent).is_some_and(Inode::is_dir) {
            problems.push(Problem::EntryOutsideDirectory { parent, name: name.clone() });
        }
        if ino == ROOT {
            problems.push(Problem::RootHasEntry { parent, name: name.clone() });
        }
        if !all_inos.contains(&ino) {
            problems.push(Problem::DanglingEntry { parent, name: name.clone(), ino });
            continue;
        }
        *links.entry(ino).or_default() += 1;
        if inodes.get(&ino).is_some_and(Inode::is_dir) {
            *subdirs.entry(parent).or_default() += 1;
        }
        children.entry(parent).or_default().push(ino);
    }

    // Reachability from the root.
    let mut reached: HashSet<Ino> = HashSet::new();
    if all_inos.contains(&ROOT) {
        let mut queue = VecDeque::from([ROOT]);
        reached.insert(ROOT);
        while let Some(dir) = queue.pop_front() {
            for child in children.get(&dir).into_iter().flatten() {
                if reached.insert(*child) {
                    queue.push_back(*child);
                }
            }
        }
    }
    let mut unreachable: Vec<Ino> = all_inos.iter().copied().filter(|ino| !reached.contains(ino)).collect();
    unreachable.sort_unstable();
    problems.extend(unreachable.into_iter().map(|ino| Problem::Unreachable { ino }));

    for (ino, inode) in &inodes {
        let ino = *ino;
        let entry_count = links.get(&ino).copied().unwrap_or(0);
        let expected = match inode.kind {
            Kind::Dir => {
                if ino != ROOT && entry_count > 1 {
                    problems.push(Problem::DirectoryLinkedTwice { ino, entries: entry_count as usize });
                }
                2 + subdirs.get(&ino).copied().unwrap_or(0)
            }
            Kind::File | Kind::Symlink => entry_count,
        };
        if i64::from(inode.nlink) != expected {
            problems.push(Problem::WrongNlink { ino, stored: i64::from(inode.nlink), expected });
        }
        if inode.mode & S_IFMT != inode.kind.type_bits() {
            problems.push(Problem::ModeKindMismatch { ino, mode: inode.mode, kind: inode.kind });
        }
        match (&inode.target, inode.kind) {
            (Some(target), Kind::Symlink) if !target.is_empty() && target.len() as u64 == inode.size => {}
            (_, Kind::Symlink) => problems.push(Problem::BadSymlink { ino }),
            (Some(_), _) => problems.push(Problem::TargetOnNonSymlink { ino }),
            (None, _) => {}
        }
        if inode.is_dir() && inode.size != 0 {
            problems.push(Problem::DirectoryWithSize { ino, size: inode.size });
        }
    }

    let chunk_rows = sql
        .query("SELECT ino, idx, length(data) AS len FROM fs_chunks ORDER BY ino, idx", &json!([]))
        .await?;
    report.chunks = chunk_rows.len();
    for row in &chunk_rows {
        let (ino, idx, len) = (col_i64(row, "ino")?, col_i64(row, "idx")?, col_i64(row, "len")?);
        let Some(inode) = inodes.get(&ino).filter(|i| i.is_file()) else {
            problems.push(Problem::OrphanChunk { ino, idx });
            continue;
        };
        if len <= 0 || len > chunk_size || idx < 0 {
            problems.push(Problem::BadChunkLength { ino, idx, len });
            continue;
        }
        let end = (idx as i128) * (chunk_size as i128) + len as i128;
        if end > inode.size as i128 {
            problems.push(Problem::ChunkBeyondSize { ino, idx, len, size: inode.size });
        }
    }

    report.problems = problems;
    Ok(report)
}
