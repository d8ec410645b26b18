//! Inodes, directory entries and the in-memory cache of committed metadata.
//!
//! The cache holds every inode and directory entry (not file content). It is
//! loaded from SQLite and changed only by [`Meta::apply`] after the
//! transaction that made the same change has committed, so it never shows a
//! state that is not durable. Path lookups (the bulk of the sidecar's calls)
//! are answered from it without SQL.

use std::collections::{BTreeMap, HashMap, VecDeque};

use anyhow::{Result, bail};
use serde_json::json;

use super::error::Errno;
use super::path::{FsPath, check_new_name, parse_target};
use super::sql::{Row, SqlExec, col_bytes, col_i64, col_text};

pub type Ino = i64;

/// The root directory's inode, created by the schema migration.
pub const ROOT: Ino = 1;
/// Symlinks followed in one resolution before `ELOOP` (Linux's limit).
pub const MAX_SYMLINKS: u32 = 40;

pub const S_IFMT: u32 = 0o170_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFLNK: u32 = 0o120_000;

/// The stored `kind` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    File = 1,
    Dir = 2,
    Symlink = 3,
}

impl Kind {
    pub fn from_i64(value: i64) -> Option<Kind> {
        match value {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            3 => Some(Kind::Symlink),
            _ => None,
        }
    }

    /// The `st_mode` file-type bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            Kind::File => S_IFREG,
            Kind::Dir => S_IFDIR,
            Kind::Symlink => S_IFLNK,
        }
    }
}

/// One inode row. Times are nanoseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub ino: Ino,
    pub kind: Kind,
    /// Full `st_mode`, type bits included.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Bytes of a file, bytes of a symlink's target, 0 for a directory.
    pub size: u64,
    pub nlink: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub birthtime_ns: i64,
    /// A symlink's target; `None` for other kinds.
    pub target: Option<Vec<u8>>,
}

impl Inode {
    /// A fresh inode owned by root with all times `now`.
    pub fn new(ino: Ino, kind: Kind, permissions: u32, now: i64) -> Inode {
        Inode {
            ino,
            kind,
            mode: kind.type_bits() | (permissions & 0o7777),
            uid: 0,
            gid: 0,
            size: 0,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
            birthtime_ns: now,
            target: None,
        }
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }

    pub fn is_file(&self) -> bool {
        self.kind == Kind::File
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == Kind::Symlink
    }

    /// `st_size` as reported: directories show 4096 like common disk
    /// filesystems.
    pub fn reported_size(&self) -> u64 {
        if self.is_dir() { 4096 } else { self.size }
    }

    /// The row as read by [`INODE_COLUMNS`].
    pub fn from_row(row: &Row) -> Result<Inode> {
        let kind_raw = col_i64(row, "kind")?;
        let Some(kind) = Kind::from_i64(kind_raw) else { bail!("inode has unknown kind {kind_raw}") };
        let u32_col = |col: &str| -> Result<u32> {
            let v = col_i64(row, col)?;
            u32::try_from(v).map_err(|_| anyhow::anyhow!("column `{col}` out of range: {v}"))
        };
        Ok(Inode {
            ino: col_i64(row, "ino")?,
            kind,
            mode: u32_col("mode")?,
            uid: u32_col("uid")?,
            gid: u32_col("gid")?,
            size: u64::try_from(col_i64(row, "size")?).map_err(|_| anyhow::anyhow!("negative size"))?,
            nlink: u32_col("nlink")?,
            atime_ns: col_i64(row, "atime_ns")?,
            mtime_ns: col_i64(row, "mtime_ns")?,
            ctime_ns: col_i64(row, "ctime_ns")?,
            birthtime_ns: col_i64(row, "birthtime_ns")?,
            target: col_bytes(row, "target")?,
        })
    }
}

/// Columns selecting an inode row for [`Inode::from_row`].
pub const INODE_COLUMNS: &str = "ino, kind, mode, uid, gid, size, nlink, atime_ns, mtime_ns, ctime_ns, \
     birthtime_ns, CASE WHEN target IS NULL THEN NULL ELSE hex(target) END AS target";

/// What a path resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// The path names `ino`. `entry` is the directory entry it was reached
    /// through; `None` for the root or a path ending in `..`.
    Found { ino: Ino, entry: Option<(Ino, String)> },
    /// Everything up to the last component exists; the last does not.
    /// `parent` is a directory.
    Missing { parent: Ino, name: String },
}

/// A change to one directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirentChange {
    Insert { parent: Ino, name: String, ino: Ino },
    Delete { parent: Ino, name: String },
}

/// The cache changes of one committed transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub dirents: Vec<DirentChange>,
    /// `Some` = the inode's new row, `None` = the inode was deleted.
    pub inodes: Vec<(Ino, Option<Inode>)>,
}

/// Every inode and directory entry as committed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Meta {
    inodes: HashMap<Ino, Inode>,
    /// Entries of each directory, in byte order of the name.
    children: HashMap<Ino, BTreeMap<String, Ino>>,
    /// The entry (parent, name) of every directory but the root.
    dir_entry: HashMap<Ino, (Ino, String)>,
}

impl Meta {
    /// Loads the committed metadata. Staged inodes (`nlink = 0`, see
    /// `Fs::recover`) are not part of the filesystem and are skipped.
    pub async fn load<S: SqlExec>(sql: &S) -> Result<Meta> {
        let mut meta = Meta::default();
        let rows = sql
            .query(&format!("SELECT {INODE_COLUMNS} FROM fs_inodes WHERE nlink > 0"), &json!([]))
            .await?;
        for row in &rows {
            let inode = Inode::from_row(row)?;
            if inode.is_dir() {
                meta.children.insert(inode.ino, BTreeMap::new());
            }
            meta.inodes.insert(inode.ino, inode);
        }
        if !meta.inodes.get(&ROOT).is_some_and(Inode::is_dir) {
            bail!("the durable root has no root directory (inode {ROOT}); is the schema migrated?");
        }
        let rows = sql.query("SELECT parent, name, ino FROM fs_dirents", &json!([])).await?;
        for row in &rows {
            let parent = col_i64(row, "parent")?;
            let name = col_text(row, "name")?.to_owned();
            let ino = col_i64(row, "ino")?;
            meta.insert_dirent(parent, name, ino);
        }
        Ok(meta)
    }

    /// The highest inode number in SQLite, staged ones included.
    pub async fn max_ino<S: SqlExec>(sql: &S) -> Result<Ino> {
        let rows = sql.query("SELECT COALESCE(MAX(ino), 0) AS ino FROM fs_inodes", &json!([])).await?;
        rows.first().map(|row| col_i64(row, "ino")).unwrap_or(Ok(0))
    }

    fn insert_dirent(&mut self, parent: Ino, name: String, ino: Ino) {
        if self.inodes.get(&ino).is_some_and(Inode::is_dir) {
            self.dir_entry.insert(ino, (parent, name.clone()));
        }
        self.children.entry(parent).or_default().insert(name, ino);
    }

    /// Applies the changes of a committed transaction: new inode rows first,
    /// then entry changes in order, then deletions.
    pub fn apply(&mut self, changes: Changes) {
        let mut dropped = Vec::new();
        for (ino, inode) in changes.inodes {
            match inode {
                Some(inode) => {
                    if inode.is_dir() {
                        self.children.entry(ino).or_default();
                    }
                    self.inodes.insert(ino, inode);
                }
                None => dropped.push(ino),
            }
        }
        for change in changes.dirents {
            match change {
                DirentChange::Insert { parent, name, ino } => self.insert_dirent(parent, name, ino),
                DirentChange::Delete { parent, name } => {
                    let removed = self.children.get_mut(&parent).and_then(|c| c.remove(&name));
                    if let Some(ino) = removed
                        && self.dir_entry.get(&ino).is_some_and(|(p, n)| *p == parent && *n == name)
                    {
                        self.dir_entry.remove(&ino);
                    }
                }
            }
        }
        for ino in dropped {
            self.inodes.remove(&ino);
            self.children.remove(&ino);
            self.dir_entry.remove(&ino);
        }
    }

    /// Bytes of all file content (what a capacity limit counts).
    pub fn file_bytes(&self) -> u64 {
        self.inodes.values().filter(|node| node.is_file()).map(|node| node.size).sum()
    }

    pub fn inode(&self, ino: Ino) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::EIO)
    }

    pub fn child(&self, dir: Ino, name: &str) -> Option<Ino> {
        self.children.get(&dir).and_then(|c| c.get(name)).copied()
    }

    /// Entries of a directory in name order (empty for non-directories).
    pub fn children(&self, dir: Ino) -> impl Iterator<Item = (&String, Ino)> {
        self.children.get(&dir).into_iter().flat_map(|c| c.iter().map(|(n, i)| (n, *i)))
    }

    pub fn has_children(&self, dir: Ino) -> bool {
        self.children.get(&dir).is_some_and(|c| !c.is_empty())
    }

    /// The parent of a directory (the root is its own parent).
    pub fn parent_of_dir(&self, dir: Ino) -> Ino {
        self.dir_entry.get(&dir).map(|(p, _)| *p).unwrap_or(ROOT)
    }

    /// Whether `dir` is `ancestor` or lies below it.
    pub fn is_within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        // Bounded by the number of directories, in case the cache held a cycle.
        for _ in 0..=self.dir_entry.len() {
            if dir == ancestor {
                return true;
            }
            if dir == ROOT {
                return false;
            }
            dir = self.parent_of_dir(dir);
        }
        false
    }

    /// The absolute path of a directory.
    pub fn dir_path(&self, mut dir: Ino) -> String {
        let mut names = Vec::new();
        for _ in 0..=self.dir_entry.len() {
            match self.dir_entry.get(&dir) {
                Some((parent, name)) => {
                    names.push(name.as_str());
                    dir = *parent;
                }
                None => break,
            }
        }
        if names.is_empty() {
            return "/".to_owned();
        }
        names.iter().rev().fold(String::new(), |mut path, name| {
            path.push('/');
            path.push_str(name);
            path
        })
    }

    /// Resolves a path. Intermediate symlinks are always followed; the final
    /// one only with `follow_last` (or a trailing slash). `..` goes to the
    /// parent of the directory reached so far.
    /// Where a new entry named by `path` goes: `(parent, name)` when the
    /// last component does not exist yet (`EEXIST` when it does). A trailing
    /// slash is only allowed for a new directory (`ENOTDIR` otherwise), and
    /// the name must be a valid new name.
    pub fn resolve_new(&self, path: &FsPath, is_dir: bool) -> Result<(Ino, String), Errno> {
        let (parent, name) = match self.resolve(path, false)? {
            Resolved::Found { .. } => return Err(Errno::EEXIST),
            Resolved::Missing { parent, name } => (parent, name),
        };
        if path.trailing_slash && !is_dir {
            return Err(Errno::ENOTDIR);
        }
        check_new_name(&name)?;
        Ok((parent, name))
    }

    pub fn resolve(&self, path: &FsPath, follow_last: bool) -> Result<Resolved, Errno> {
        let mut pending: VecDeque<String> = path.comps.iter().cloned().collect();
        let mut must_be_dir = path.trailing_slash;
        let follow_last = follow_last || path.trailing_slash;
        let mut cur = ROOT;
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            let last = pending.is_empty();
            if name == ".." {
                cur = self.parent_of_dir(cur);
                continue;
            }
            let Some(ino) = self.child(cur, &name) else {
                return if last { Ok(Resolved::Missing { parent: cur, name }) } else { Err(Errno::ENOENT) };
            };
            let node = self.inode(ino)?;
            if node.is_symlink() && (!last || follow_last) {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(Errno::ELOOP);
                }
                let target = String::from_utf8_lossy(node.target.as_deref().unwrap_or_default()).into_owned();
                let (target, absolute) = parse_target(&target)?;
                if absolute {
                    cur = ROOT;
                }
                if last && target.trailing_slash {
                    must_be_dir = true;
                }
                for comp in target.comps.into_iter().rev() {
                    pending.push_front(comp);
                }
                continue;
            }
            if last {
                if must_be_dir && !node.is_dir() {
                    return Err(Errno::ENOTDIR);
                }
                return Ok(Resolved::Found { ino, entry: Some((cur, name)) });
            }
            if !node.is_dir() {
                return Err(Errno::ENOTDIR);
            }
            cur = ino;
        }
        Ok(Resolved::Found { ino: cur, entry: None })
    }
}
