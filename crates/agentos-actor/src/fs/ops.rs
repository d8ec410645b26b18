//! The filesystem operations. Each one locks the filesystem, resolves paths
//! against the committed cache and, if it changes anything, commits exactly
//! one transaction (a staged `writeFile` or a split huge `pwrite` commit
//! several, see there).
//!
//! Semantics follow POSIX/Linux: `stat`, `exists`, `readFile`, `pread`,
//! `pwrite`, `writeFile`, `truncate`, `chmod`, `utimes`, `readDir` and
//! `realpath` follow symlinks; `lstat`, `readlink`, `removeFile`,
//! `removeDir`, `rename`, `link`, `symlink` and `mkdir` act on the entry
//! itself; `chown` follows unless told not to. Content changes set mtime and
//! ctime, metadata changes set ctime, entry changes set the parent
//! directory's mtime and ctime.

use super::content;
use super::error::{Errno, FsError};
use super::meta::{Ino, Inode, Kind, ROOT, Resolved, S_IFMT};
use super::path::{FsPath, check_new_name, parse};
use super::txn::Txn;
use super::{DirEntry, Fs, SqlExec, State, now_ns};

/// Default permissions of new files and directories (the sidecar sets the
/// real mode with `chmod` right after creating).
const DEFAULT_FILE_PERMISSIONS: u32 = 0o644;
const DEFAULT_DIR_PERMISSIONS: u32 = 0o755;

/// Largest file size, offset or length accepted (keeps `i64` columns and
/// offset arithmetic in range).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64 / 2;

/// Most bytes one `readFile` or `pread` returns. The sidecar's 16 MiB
/// protocol frame could not carry more anyway (as base64); the limit keeps a
/// huge sparse file from being materialized in memory. `pread` returns a
/// short read, `readFile` fails with `EFBIG`.
pub const MAX_READ: u64 = 64 << 20;

type FsResult<T> = Result<T, FsError>;

/// Who owns a newly created entry. The sidecar creates as root and then
/// `chown`s; the actor's own actions create as the VM user directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

impl Owner {
    pub const ROOT: Owner = Owner { uid: 0, gid: 0 };
}

fn new_inode(ino: Ino, kind: Kind, permissions: u32, now: i64, owner: Owner) -> Inode {
    let mut node = Inode::new(ino, kind, permissions, now);
    node.uid = owner.uid;
    node.gid = owner.gid;
    node
}

fn parse_at(op: &str, path: &str) -> FsResult<FsPath> {
    parse(path).map_err(|e| e.at(op, path))
}

impl<S: SqlExec> Fs<S> {
    /// Resolves `path` to an existing inode.
    fn existing(state: &State, op: &str, path: &str, follow: bool) -> FsResult<(Inode, Option<(Ino, String)>)> {
        let parsed = parse_at(op, path)?;
        match state.meta.resolve(&parsed, follow).map_err(|e| e.at(op, path))? {
            Resolved::Found { ino, entry } => {
                Ok((state.meta.inode(ino).map_err(|e| e.at(op, path))?.clone(), entry))
            }
            Resolved::Missing { .. } => Err(Errno::ENOENT.at(op, path)),
        }
    }

    fn alloc_ino(state: &mut State) -> Ino {
        let ino = state.next_ino;
        state.next_ino += 1;
        ino
    }

    // ---- reads ------------------------------------------------------------

    /// Metadata, following symlinks.
    pub async fn stat(&self, path: &str) -> FsResult<Inode> {
        let state = self.state().await?;
        Ok(Self::existing(&state, "stat", path, true)?.0)
    }

    /// Metadata of the entry itself (a symlink is not followed).
    pub async fn lstat(&self, path: &str) -> FsResult<Inode> {
        let state = self.state().await?;
        Ok(Self::existing(&state, "lstat", path, false)?.0)
    }

    /// Whether the path resolves (following symlinks). Only storage
    /// failures are errors.
    pub async fn exists(&self, path: &str) -> FsResult<bool> {
        let state = self.state().await?;
        let Ok(parsed) = parse(path) else { return Ok(false) };
        match state.meta.resolve(&parsed, true) {
            Ok(Resolved::Found { .. }) => Ok(true),
            Ok(Resolved::Missing { .. }) => Ok(false),
            Err(Errno::EIO) => Err(Errno::EIO.at("exists", path)),
            Err(_) => Ok(false),
        }
    }

    /// The canonical absolute path: every symlink resolved, no `.`/`..`.
    pub async fn realpath(&self, path: &str) -> FsResult<String> {
        let state = self.state().await?;
        let (node, entry) = Self::existing(&state, "realpath", path, true)?;
        Ok(match entry {
            Some((parent, name)) if !node.is_dir() => {
                let dir = state.meta.dir_path(parent);
                if dir == "/" { format!("/{name}") } else { format!("{dir}/{name}") }
            }
            _ => state.meta.dir_path(node.ino),
        })
    }

    /// Names in a directory, in byte order (without `.` and `..`).
    pub async fn read_dir(&self, path: &str) -> FsResult<Vec<String>> {
        Ok(self.read_dir_with_types(path).await?.into_iter().map(|e| e.name).collect())
    }

    /// Entries of a directory with their types.
    pub async fn read_dir_with_types(&self, path: &str) -> FsResult<Vec<DirEntry>> {
        let state = self.state().await?;
        let (node, _) = Self::existing(&state, "scandir", path, true)?;
        if !node.is_dir() {
            return Err(Errno::ENOTDIR.at("scandir", path));
        }
        state
            .meta
            .children(node.ino)
            .map(|(name, ino)| {
                let child = state.meta.inode(ino).map_err(|e| e.at("scandir", path))?;
                Ok(DirEntry {
                    name: name.clone(),
                    is_directory: child.is_dir(),
                    is_symbolic_link: child.is_symlink(),
                })
            })
            .collect()
    }

    /// A whole file (`EFBIG` past [`MAX_READ`]).
    pub async fn read_file(&self, path: &str) -> FsResult<Vec<u8>> {
        self.read_file_up_to(path, MAX_READ).await
    }

    /// A whole file of at most `max` bytes (`EFBIG` past it, before any
    /// content is read).
    pub async fn read_file_up_to(&self, path: &str, max: u64) -> FsResult<Vec<u8>> {
        let state = self.state().await?;
        let (node, _) = Self::existing(&state, "open", path, true)?;
        if node.is_dir() {
            return Err(Errno::EISDIR.at("read", path));
        }
        if node.size > max.min(MAX_READ) {
            return Err(Errno::EFBIG.at("read", path));
        }
        content::read_range(&self.sql, node.ino, self.chunk_size, node.size, 0, node.size)
            .await
            .map_err(|e| FsError::storage("read", &e))
    }

    /// Up to `len` bytes at `offset` (fewer at the end of the file, and at
    /// most [`MAX_READ`]).
    pub async fn pread(&self, path: &str, offset: u64, len: u64) -> FsResult<Vec<u8>> {
        let state = self.state().await?;
        let (node, _) = Self::existing(&state, "open", path, true)?;
        if node.is_dir() {
            return Err(Errno::EISDIR.at("read", path));
        }
        content::read_range(&self.sql, node.ino, self.chunk_size, node.size, offset, len.min(MAX_READ))
            .await
            .map_err(|e| FsError::storage("read", &e))
    }

    /// A symlink's target. `EINVAL` if the entry is not a symlink.
    pub async fn read_link(&self, path: &str) -> FsResult<String> {
        let state = self.state().await?;
        let (node, _) = Self::existing(&state, "readlink", path, false)?;
        if !node.is_symlink() {
            return Err(Errno::EINVAL.at("readlink", path));
        }
        Ok(String::from_utf8_lossy(node.target.as_deref().unwrap_or_default()).into_owned())
    }

    // ---- creating entries ---------------------------------------------------

    /// Creates a directory. Without `recursive`: `EEXIST` if the entry
    /// exists, `ENOENT` if the parent does not. With it: creates missing
    /// ancestors and succeeds if the directory exists.
    pub async fn mkdir(&self, path: &str, recursive: bool, mode: Option<u32>) -> FsResult<()> {
        self.mkdir_as(path, recursive, mode, Owner::ROOT).await
    }

    /// [`Fs::mkdir`] creating the directories owned by `owner`.
    pub async fn mkdir_as(&self, path: &str, recursive: bool, mode: Option<u32>, owner: Owner) -> FsResult<()> {
        let permissions = mode.unwrap_or(DEFAULT_DIR_PERMISSIONS);
        let mut state = self.state().await?;
        let parsed = parse_at("mkdir", path)?;
        if !recursive {
            let (parent, name) = state.meta.resolve_new(&parsed, true).map_err(|e| e.at("mkdir", path))?;
            let ino = Self::alloc_ino(&mut state);
            let mut txn = Txn::new(&state.meta, now_ns());
            let dir = new_inode(ino, Kind::Dir, permissions, txn.now, owner);
            txn.create(parent, &name, dir).map_err(|e| e.at("mkdir", path))?;
            let (body, changes) = txn.finish();
            return self.commit(&mut state, "mkdir", body, changes).await;
        }

        // Recursive: walk the existing prefix, then create the rest.
        let mut cur = ROOT;
        let mut walked: Vec<String> = Vec::new();
        let mut created: Vec<(Ino, Ino)> = Vec::new(); // (new dir, its parent)
        let mut to_create: Vec<(Ino, String, Ino)> = Vec::new(); // (parent, name, ino)
        let count = parsed.comps.len();
        for (i, name) in parsed.comps.iter().enumerate() {
            let last = i + 1 == count;
            walked.push(name.clone());
            if name == ".." {
                cur = created
                    .iter()
                    .find(|(dir, _)| *dir == cur)
                    .map(|(_, parent)| *parent)
                    .unwrap_or_else(|| state.meta.parent_of_dir(cur));
                continue;
            }
            let existing = if created.iter().any(|(dir, _)| *dir == cur) { None } else { state.meta.child(cur, name) };
            if let Some(ino) = existing {
                let mut node = state.meta.inode(ino).map_err(|e| e.at("mkdir", path))?;
                if node.is_symlink() {
                    let prefix = FsPath { comps: walked.clone(), trailing_slash: false };
                    node = match state.meta.resolve(&prefix, true).map_err(|e| e.at("mkdir", path))? {
                        Resolved::Found { ino, .. } => state.meta.inode(ino).map_err(|e| e.at("mkdir", path))?,
                        Resolved::Missing { .. } => return Err(Errno::EEXIST.at("mkdir", path)),
                    };
                }
                if !node.is_dir() {
                    return Err(if last { Errno::EEXIST } else { Errno::ENOTDIR }.at("mkdir", path));
                }
                cur = node.ino;
                continue;
            }
            check_new_name(name).map_err(|e| e.at("mkdir", path))?;
            let ino = Self::alloc_ino(&mut state);
            to_create.push((cur, name.clone(), ino));
            created.push((ino, cur));
            cur = ino;
        }
        if to_create.is_empty() {
            return Ok(());
        }
        let mut txn = Txn::new(&state.meta, now_ns());
        for (parent, name, ino) in &to_create {
            let dir = new_inode(*ino, Kind::Dir, permissions, txn.now, owner);
            txn.create(*parent, name, dir).map_err(|e| e.at("mkdir", path))?;
        }
        let (body, changes) = txn.finish();
        self.commit(&mut state, "mkdir", body, changes).await
    }

    /// Creates a new symlink at `link_path` pointing to `target` (stored
    /// as given; it may be relative or dangling).
    pub async fn symlink(&self, target: &str, link_path: &str) -> FsResult<()> {
        let err = |e: Errno| e.at2("symlink", target, link_path);
        if target.is_empty() {
            return Err(err(Errno::ENOENT));
        }
        if target.contains('\0') {
            return Err(err(Errno::EINVAL));
        }
        if target.len() >= super::path::PATH_MAX {
            return Err(err(Errno::ENAMETOOLONG));
        }
        let mut state = self.state().await?;
        let parsed = parse(link_path).map_err(err)?;
        let (parent, name) = state.meta.resolve_new(&parsed, false).map_err(err)?;
        let ino = Self::alloc_ino(&mut state);
        let mut txn = Txn::new(&state.meta, now_ns());
        let mut link = Inode::new(ino, Kind::Symlink, 0o777, txn.now);
        link.size = target.len() as u64;
        link.target = Some(target.as_bytes().to_vec());
        txn.create(parent, &name, link).map_err(err)?;
        let (body, changes) = txn.finish();
        self.commit(&mut state, "symlink", body, changes).await
    }

    /// A new hard link `new_path` to the inode of `old_path` (a symlink
    /// itself is linked, not its target). Directories: `EPERM`.
    pub async fn link(&self, old_path: &str, new_path: &str) -> FsResult<()> {
        let err = |e: Errno| e.at2("link", old_path, new_path);
        let mut state = self.state().await?;
        let old = parse(old_path).map_err(err)?;
        let ino = match state.meta.resolve(&old, false).map_err(err)? {
            Resolved::Found { ino, .. } => ino,
            Resolved::Missing { .. } => return Err(err(Errno::ENOENT)),
        };
        if state.meta.inode(ino).map_err(err)?.is_dir() {
            return Err(err(Errno::EPERM));
        }
        let new = parse(new_path).map_err(err)?;
        let (parent, name) = state.meta.resolve_new(&new, false).map_err(err)?;
        let mut txn = Txn::new(&state.meta, now_ns());
        let mut node = txn.add_nlink(ino, 1).map_err(err)?;
        node.ctime_ns = txn.now;
        txn.put(node);
        txn.link(parent, &name, ino);
        txn.touch_dir(parent).map_err(err)?;
        let (body, changes) = txn.finish();
        self.commit(&mut state, "link", body, changes).await
    }

    // ---- file content -------------------------------------------------------

    /// Creates or replaces a file's content (following symlinks; a dangling
    /// one creates its target). An existing file keeps its inode, so hard
    /// links see the new content. `mode` applies only to a new file.
    pub async fn write_file(&self, path: &str, data: &[u8], mode: Option<u32>) -> FsResult<()> {
        self.write_file_as(path, data, mode, Owner::ROOT).await
    }

    /// [`Fs::write_file`] creating a new file owned by `owner`.
    pub async fn write_file_as(&self, path: &str, data: &[u8], mode: Option<u32>, owner: Owner) -> FsResult<()> {
        if data.len() as u64 > MAX_FILE_SIZE {
            return Err(Errno::EINVAL.at("write", path));
        }
        let mut state = self.state().await?;
        let parsed = parse_at("open", path)?;
        let target = match state.meta.resolve(&parsed, true).map_err(|e| e.at("open", path))? {
            Resolved::Found { ino, .. } => {
                let node = state.meta.inode(ino).map_err(|e| e.at("open", path))?;
                if node.is_dir() {
                    return Err(Errno::EISDIR.at("open", path));
                }
                WriteTarget::Existing(ino)
            }
            Resolved::Missing { parent, name } => {
                if parsed.trailing_slash {
                    return Err(Errno::EISDIR.at("open", path));
                }
                check_new_name(&name).map_err(|e| e.at("open", path))?;
                WriteTarget::New { parent, name }
            }
        };
        let permissions = mode.unwrap_or(DEFAULT_FILE_PERMISSIONS);
        let chunks = content::nonzero_chunks(data, self.chunk_size);
        let per_batch = content::chunks_per_batch(self.chunk_size, self.max_batch_bytes) as usize;
        if chunks.len() > per_batch {
            return self
                .write_file_staged(&mut state, path, target, data.len() as u64, &chunks, (permissions, owner))
                .await;
        }
        let ino = match &target {
            WriteTarget::Existing(ino) => *ino,
            WriteTarget::New { .. } => Self::alloc_ino(&mut state),
        };
        let mut txn = Txn::new(&state.meta, now_ns());
        let mut node = match &target {
            WriteTarget::Existing(_) => {
                content::push_delete_all(txn.chunk_sql(), ino);
                txn.get(ino).map_err(|e| e.at("write", path))?
            }
            WriteTarget::New { .. } => new_inode(ino, Kind::File, permissions, txn.now, owner),
        };
        content::push_insert_chunks(txn.chunk_sql(), node.ino, &chunks);
        node.size = data.len() as u64;
        node.mtime_ns = txn.now;
        node.ctime_ns = txn.now;
        match target {
            WriteTarget::Existing(_) => txn.put(node),
            WriteTarget::New { parent, name } => txn.create(parent, &name, node).map_err(|e| e.at("write", path))?,
        }
        let (body, changes) = txn.finish();
        self.commit(&mut state, "writeFile", body, changes).await
    }

    /// Copy-on-write path of a big `writeFile`: the content goes into a
    /// fresh inode with `nlink = 0` over several transactions, then one small
    /// transaction switches it in: a new file gets an entry to it; an
    /// existing one drops its old chunks and takes over the staged chunks
    /// (keeping its inode number and hard links). Until then nothing
    /// reachable changed, and `recover` deletes what a crash left staged.
    async fn write_file_staged(
        &self,
        state: &mut State,
        path: &str,
        target: WriteTarget,
        size: u64,
        chunks: &[(u64, &[u8])],
        (permissions, owner): (u32, Owner),
    ) -> FsResult<()> {
        let staged = Self::alloc_ino(state);
        let per_batch = content::chunks_per_batch(self.chunk_size, self.max_batch_bytes) as usize;
        let mut staged_inode = new_inode(staged, Kind::File, permissions, now_ns(), owner);
        staged_inode.nlink = 0;
        staged_inode.size = size;
        for (i, batch) in chunks.chunks(per_batch).enumerate() {
            let mut body = String::new();
            if i == 0 {
                super::txn::push_inode_upsert(&mut body, &staged_inode);
            }
            content::push_insert_chunks(&mut body, staged, batch);
            if let Err(error) = self.exec_tx(state, "writeFile (staging)", &body).await {
                self.discard_staged(staged).await;
                return Err(error);
            }
        }
        let mut txn = Txn::new(&state.meta, now_ns());
        match target {
            WriteTarget::Existing(ino) => {
                let sql = txn.chunk_sql();
                content::push_delete_all(sql, ino);
                sql.push_str(&format!("UPDATE fs_chunks SET ino = {ino} WHERE ino = {staged};\n"));
                sql.push_str(&format!("DELETE FROM fs_inodes WHERE ino = {staged};\n"));
                let mut node = txn.get(ino).map_err(|e| e.at("write", path))?;
                node.size = size;
                node.mtime_ns = txn.now;
                node.ctime_ns = txn.now;
                txn.put(node);
            }
            WriteTarget::New { parent, name } => {
                let mut node = staged_inode;
                node.nlink = 1;
                node.mtime_ns = txn.now;
                node.ctime_ns = txn.now;
                txn.create(parent, &name, node).map_err(|e| e.at("write", path))?;
            }
        }
        let (body, changes) = txn.finish();
        let result = self.commit(state, "writeFile (switch)", body, changes).await;
        if result.is_err() {
            self.discard_staged(staged).await;
        }
        result
    }

    /// Best-effort removal of a staged inode after a failure (`recover`
    /// catches it otherwise).
    async fn discard_staged(&self, staged: Ino) {
        let body = format!(
            "DELETE FROM fs_chunks WHERE ino = {staged};\n\
             DELETE FROM fs_inodes WHERE ino = {staged} AND nlink = 0;\n"
        );
        let _ = super::transaction(&self.sql, &body).await;
    }

    /// Writes `data` at `offset` of an existing file, extending it (with a
    /// hole read as zeros) if the write ends past the end. Touches only the
    /// chunks of the written range. A write too big for one batch is split
    /// into several transactions at chunk boundaries.
    pub async fn pwrite(&self, path: &str, offset: u64, data: &[u8]) -> FsResult<()> {
        let end = offset.checked_add(data.len() as u64).filter(|end| *end <= MAX_FILE_SIZE);
        let Some(_) = end else { return Err(Errno::EINVAL.at("write", path)) };
        let mut state = self.state().await?;
        let (node, _) = Self::existing(&state, "open", path, true)?;
        if node.is_dir() {
            return Err(Errno::EISDIR.at("write", path));
        }
        if data.is_empty() {
            return Ok(());
        }
        let ino = node.ino;
        let chunk = self.chunk_size;
        let per_batch = content::chunks_per_batch(chunk, self.max_batch_bytes);
        let mut pos = 0usize;
        while pos < data.len() {
            let at = offset + pos as u64;
            // Up to `per_batch` chunks, ending on a chunk boundary.
            let limit = (at / chunk + per_batch) * chunk;
            let take = ((limit - at) as usize).min(data.len() - pos);
            let mut txn = Txn::new(&state.meta, now_ns());
            content::push_pwrite(txn.chunk_sql(), ino, chunk, at, &data[pos..pos + take]);
            let mut node = txn.get(ino).map_err(|e| e.at("write", path))?;
            node.size = node.size.max(at + take as u64);
            node.mtime_ns = txn.now;
            node.ctime_ns = txn.now;
            txn.put(node);
            let (body, changes) = txn.finish();
            self.commit(&mut state, "pwrite", body, changes).await?;
            pos += take;
        }
        Ok(())
    }

    /// Sets a file's size: cuts the content or extends it with zeros.
    pub async fn truncate(&self, path: &str, len: u64) -> FsResult<()> {
        if len > MAX_FILE_SIZE {
            return Err(Errno::EINVAL.at("truncate", path));
        }
        let mut state = self.state().await?;
        let (node, _) = Self::existing(&state, "open", path, true)?;
        if node.is_dir() {
            return Err(Errno::EISDIR.at("truncate", path));
        }
        let mut txn = Txn::new(&state.meta, now_ns());
        content::push_truncate(txn.chunk_sql(), node.ino, self.chunk_size, node.size, len);
        let mut node = node;
        node.size = len;
        node.mtime_ns = txn.now;
        node.ctime_ns = txn.now;
        txn.put(node);
        let (body, changes) = txn.finish();
        self.commit(&mut state, "truncate", body, changes).await
    }

    // ---- removing and moving --------------------------------------------------

    /// Removes a non-directory entry; its inode and content go with the last
    /// link.
    pub async fn remove_file(&self, path: &str) -> FsResult<()> {
        let mut state = self.state().await?;
        let (node, entry) = Self::existing(&state, "unlink", path, false)?;
        if node.is_dir() {
            return Err(Errno::EISDIR.at("unlink", path));
        }
        let Some((parent, name)) = entry else { return Err(Errno::EISDIR.at("unlink", path)) };
        let mut txn = Txn::new(&state.meta, now_ns());
        txn.unlink(parent, &name);
        txn.drop_link(node.ino).map_err(|e| e.at("unlink", path))?;
        txn.touch_dir(parent).map_err(|e| e.at("unlink", path))?;
        let (body, changes) = txn.finish();
        self.commit(&mut state, "removeFile", body, changes).await
    }

    /// Removes an empty directory (the root: `EBUSY`).
    pub async fn remove_dir(&self, path: &str) -> FsResult<()> {
        let mut state = self.state().await?;
        let (node, entry) = Self::existing(&state, "rmdir", path, false)?;
        if !node.is_dir() {
            return Err(Errno::ENOTDIR.at("rmdir", path));
        }
        let Some((parent, name)) = entry else {
            return Err(if node.ino == ROOT { Errno::EBUSY } else { Errno::EINVAL }.at("rmdir", path));
        };
        if state.meta.has_children(node.ino) {
            return Err(Errno::ENOTEMPTY.at("rmdir", path));
        }
        let mut txn = Txn::new(&state.meta, now_ns());
        txn.unlink(parent, &name);
        txn.delete_inode(node.ino);
        txn.add_nlink(parent, -1).map_err(|e| e.at("rmdir", path))?;
        txn.touch_dir(parent).map_err(|e| e.at("rmdir", path))?;
        let (body, changes) = txn.finish();
        self.commit(&mut state, "removeDir", body, changes).await
    }

    /// Moves an entry, atomically replacing an existing target: a
    /// non-directory replaces a non-directory, a directory replaces an empty
    /// directory. A directory cannot move into its own subtree (`EINVAL`);
    /// the root cannot move or be replaced (`EBUSY`). Renaming onto another
    /// link of the same inode does nothing.
    pub async fn rename(&self, old_path: &str, new_path: &str) -> FsResult<()> {
        let err = |e: Errno| e.at2("rename", old_path, new_path);
        let mut state = self.state().await?;
        let old = parse(old_path).map_err(err)?;
        let new = parse(new_path).map_err(err)?;
        let (ino, (old_parent, old_name)) = match state.meta.resolve(&old, false).map_err(err)? {
            Resolved::Found { ino, entry: Some(entry) } => (ino, entry),
            Resolved::Found { ino, entry: None } => {
                return Err(err(if ino == ROOT { Errno::EBUSY } else { Errno::EINVAL }));
            }
            Resolved::Missing { .. } => return Err(err(Errno::ENOENT)),
        };
        let (new_parent, new_name, replaced) = match state.meta.resolve(&new, false) {
            Ok(Resolved::Found { ino, entry: Some((parent, name)) }) => (parent, name, Some(ino)),
            Ok(Resolved::Found { ino, entry: None }) => {
                return Err(err(if ino == ROOT { Errno::EBUSY } else { Errno::EINVAL }));
            }
            Ok(Resolved::Missing { parent, name }) => (parent, name, None),
            // A trailing slash on a missing or non-directory target is judged
            // below against the source's type.
            Err(Errno::ENOTDIR) if new.trailing_slash => {
                let plain = FsPath { comps: new.comps.clone(), trailing_slash: false };
                match state.meta.resolve(&plain, false).map_err(err)? {
                    Resolved::Found { ino, entry: Some((parent, name)) } => (parent, name, Some(ino)),
                    _ => return Err(err(Errno::ENOTDIR)),
                }
            }
            Err(e) => return Err(err(e)),
        };
        check_new_name(&new_name).map_err(err)?;
        let node = state.meta.inode(ino).map_err(err)?.clone();
        if replaced == Some(ino) {
            return Ok(());
        }
        if !node.is_dir() && (old.trailing_slash || new.trailing_slash) {
            return Err(err(Errno::ENOTDIR));
        }
        if node.is_dir() && state.meta.is_within(new_parent, ino) {
            return Err(err(Errno::EINVAL));
        }
        let replaced = match replaced {
            Some(target) => {
                let target = state.meta.inode(target).map_err(err)?.clone();
                if node.is_dir() {
                    if !target.is_dir() {
                        return Err(err(Errno::ENOTDIR));
                    }
                    if state.meta.has_children(target.ino) {
                        return Err(err(Errno::ENOTEMPTY));
                    }
                } else if target.is_dir() {
                    return Err(err(Errno::EISDIR));
                }
                Some(target)
            }
            None => None,
        };

        let mut txn = Txn::new(&state.meta, now_ns());
        if let Some(target) = &replaced {
            txn.unlink(new_parent, &new_name);
            if target.is_dir() {
                txn.delete_inode(target.ino);
                txn.add_nlink(new_parent, -1).map_err(err)?;
            } else {
                txn.drop_link(target.ino).map_err(err)?;
            }
        }
        txn.unlink(old_parent, &old_name);
        txn.link(new_parent, &new_name, ino);
        if node.is_dir() && old_parent != new_parent {
            txn.add_nlink(old_parent, -1).map_err(err)?;
            txn.add_nlink(new_parent, 1).map_err(err)?;
        }
        let mut moved = txn.get(ino).map_err(err)?;
        moved.ctime_ns = txn.now;
        txn.put(moved);
        txn.touch_dir(old_parent).map_err(err)?;
        txn.touch_dir(new_parent).map_err(err)?;
        let (body, changes) = txn.finish();
        self.commit(&mut state, "rename", body, changes).await
    }

    // ---- metadata ---------------------------------------------------------------

    /// Sets the permission bits (`mode & 0o7777`); the file type is kept.
    pub async fn chmod(&self, path: &str, mode: u32) -> FsResult<()> {
        self.set_meta("chmod", path, true, |node| node.mode = (node.mode & S_IFMT) | (mode & 0o7777)).await
    }

    /// Sets the owner; `None` keeps that id. `follow = false` changes a
    /// symlink itself (`lchown`).
    pub async fn chown(&self, path: &str, uid: Option<u32>, gid: Option<u32>, follow: bool) -> FsResult<()> {
        self.set_meta("chown", path, follow, |node| {
            if let Some(uid) = uid {
                node.uid = uid;
            }
            if let Some(gid) = gid {
                node.gid = gid;
            }
        })
        .await
    }

    /// Sets access and modification times (ns since the epoch).
    ///
    /// The sidecar implements atime by calling `utimes(path, now, mtime)`
    /// after every read, with times in whole milliseconds. So:
    /// - a time equal to the stored one at millisecond precision keeps the
    ///   stored nanoseconds (a read does not blur mtime);
    /// - an atime-only update leaves ctime alone (reads do not change ctime)
    ///   and follows Linux `relatime`: it is not written when the stored
    ///   atime is already at or after mtime and ctime and the new atime is
    ///   less than a day later, so reading a file does not cost a
    ///   transaction each time;
    /// - any mtime change sets ctime, as utimes(2) does.
    pub async fn utimes(&self, path: &str, atime_ns: i64, mtime_ns: i64) -> FsResult<()> {
        const DAY_NS: i64 = 86_400 * 1_000_000_000;
        let same_ms = |a: i64, b: i64| a.div_euclid(1_000_000) == b.div_euclid(1_000_000);
        let mut state = self.state().await?;
        let (mut node, _) = Self::existing(&state, "utimes", path, true)?;
        let mtime_ns = if same_ms(mtime_ns, node.mtime_ns) { node.mtime_ns } else { mtime_ns };
        let atime_ns = if same_ms(atime_ns, node.atime_ns) { node.atime_ns } else { atime_ns };
        let now = now_ns();
        if mtime_ns == node.mtime_ns {
            let relatime_skip = node.atime_ns >= node.mtime_ns
                && node.atime_ns >= node.ctime_ns
                && atime_ns >= node.atime_ns
                && atime_ns - node.atime_ns < DAY_NS;
            if atime_ns == node.atime_ns || relatime_skip {
                return Ok(());
            }
            node.atime_ns = atime_ns;
        } else {
            node.atime_ns = atime_ns;
            node.mtime_ns = mtime_ns;
            node.ctime_ns = now;
        }
        let mut txn = Txn::new(&state.meta, now);
        txn.put(node);
        let (body, changes) = txn.finish();
        self.commit(&mut state, "utimes", body, changes).await
    }

    /// Changes an inode's metadata and sets its ctime. A call that changes
    /// nothing writes nothing (the sidecar repeats `chown`/`chmod` of its
    /// directories on every boot; skipping saves a transaction each).
    async fn set_meta(&self, op: &str, path: &str, follow: bool, change: impl FnOnce(&mut Inode)) -> FsResult<()> {
        let mut state = self.state().await?;
        let (mut node, _) = Self::existing(&state, op, path, follow)?;
        let before = node.clone();
        change(&mut node);
        if node == before {
            return Ok(());
        }
        let txn_now = now_ns();
        node.ctime_ns = txn_now;
        let mut txn = Txn::new(&state.meta, txn_now);
        txn.put(node);
        let (body, changes) = txn.finish();
        self.commit(&mut state, op, body, changes).await
    }
}

/// Where a `writeFile` lands.
enum WriteTarget {
    Existing(Ino),
    New { parent: Ino, name: String },
}
