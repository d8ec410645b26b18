//! Filesystem actions.
//!
//! On the durable root they are served straight from the actor's SQLite
//! (`crate::fs`), the same store the VM's kernel uses through the sidecar's
//! `js_bridge` root: no VM boot, no sidecar round trips, no protocol frame
//! limit, and the reply is sent only after the transaction committed.
//! Paths the kernel owns (`/proc`, `/dev`, `/sys`, the package projection)
//! and every path on an ephemeral root go through the VM.

use std::sync::Arc;

use agentos_client::VirtualStat;
use agentos_client::fs::{MkdirOptions, RemoveOptions};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::reply;
use super::reply_null;
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, Section};
use crate::error::{ActorError, code};
use crate::fs::{Fs, FsError, Inode, Owner};
use crate::host::HostCtx;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;
pub(super) type Root = Arc<Fs<HostCtx>>;

/// Directories the kernel serves itself, never from the root filesystem.
const KERNEL_DIRS: &[&str] = &["/proc", "/dev", "/sys"];
/// The VM's user (`agentos`, 1000:1000): what clients create belongs to it,
/// so the agent and guest processes can change it.
const VM_USER: Owner = Owner { uid: 1000, gid: 1000 };
/// Where packages are projected when the config does not say.
const DEFAULT_PACKAGES_MOUNT: &str = "/opt/agentos";

const RECURSIVE: &[Field] = &[opt("recursive", ArgType::Bool, "Also create missing parents / remove a whole tree.")];
const WRITE_ENTRY: &[Field] = &[
    req("path", ArgType::Str, "Absolute path in the VM."),
    req("content", ArgType::Bytes, "The new content."),
];
const RECURSIVE_LISTING: &[Field] = &[
    opt("maxDepth", ArgType::U32, "0 lists only the directory's children; absent means unlimited."),
    opt("exclude", ArgType::StrList, "Entry names to skip (with their subtrees) at any depth."),
];

/// The filesystem area of the contract.
pub static SECTION: Section = Section {
    area: "Filesystem",
    actions: &[
        ActionSpec {
            name: "readFile",
            summary: "Read a whole file.",
            params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
            returns: "Uint8Array",
            handler: read_file,
            detached: false,
        },
        ActionSpec {
            name: "writeFile",
            summary: "Create or replace a file with the given content (text is written as UTF-8).",
            params: &[
                req("path", ArgType::Str, "Absolute path in the VM."),
                req("content", ArgType::Bytes, "The new content."),
            ],
            returns: "null",
            handler: write_file,
            detached: false,
        },
        ActionSpec {
            name: "mkdir",
            summary: "Create a directory; parents are created too unless `recursive: false`.",
            params: &[
                req("path", ArgType::Str, "Absolute path in the VM."),
                opt("options", ArgType::Object(RECURSIVE), "`recursive` defaults to true."),
            ],
            returns: "null",
            handler: mkdir,
            detached: false,
        },
        ActionSpec {
            name: "readdir",
            summary: "List the names in a directory (without `.` and `..`).",
            params: &[req("path", ArgType::Str, "Absolute path of a directory.")],
            returns: "string[]",
            handler: readdir,
            detached: false,
        },
        ActionSpec {
            name: "readdirEntries",
            summary: "List a directory with entry types; `null` when the path is missing or not a directory.",
            params: &[req("path", ArgType::Str, "Absolute path of a directory.")],
            returns: "DirEntry[] | null",
            handler: readdir_entries,
            detached: false,
        },
        ActionSpec {
            name: "stat",
            summary: "File metadata, following symlinks.",
            params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
            returns: "VirtualStat",
            handler: stat,
            detached: false,
        },
        ActionSpec {
            name: "exists",
            summary: "Whether the path exists.",
            params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
            returns: "boolean",
            handler: exists,
            detached: false,
        },
        ActionSpec {
            name: "move",
            summary: "Rename or move a file or directory.",
            params: &[
                req("from", ArgType::Str, "Existing absolute path."),
                req("to", ArgType::Str, "New absolute path."),
            ],
            returns: "null",
            handler: move_path,
            detached: false,
        },
        ActionSpec {
            name: "deleteFile",
            summary: "Remove a file, or a directory (a non-empty one only with `recursive: true`).",
            params: &[
                req("path", ArgType::Str, "Absolute path in the VM."),
                opt("options", ArgType::Object(RECURSIVE), "`recursive` defaults to false."),
            ],
            returns: "null",
            handler: delete_file,
            detached: false,
        },
        ActionSpec {
            name: "readFiles",
            summary: "Read many files; each entry has `content` or an `error`, one bad path fails only its entry.",
            params: &[req("paths", ArgType::StrList, "Absolute paths in the VM.")],
            returns: "BatchReadResult[]",
            handler: super::fs_batch::read_files,
            detached: false,
        },
        ActionSpec {
            name: "writeFiles",
            summary: "Create or replace many files (missing parent directories are created); each entry reports `success` or an `error`.",
            params: &[req("entries", ArgType::List(&ArgType::Object(WRITE_ENTRY)), "The files to write.")],
            returns: "BatchWriteResult[]",
            handler: super::fs_batch::write_files,
            detached: false,
        },
        ActionSpec {
            name: "readdirRecursive",
            summary: "List a directory tree (sorted by path; symlinks are listed, not followed).",
            params: &[
                req("path", ArgType::Str, "Absolute path of a directory."),
                opt("options", ArgType::Object(RECURSIVE_LISTING), "Depth limit and names to skip."),
            ],
            returns: "RecursiveEntry[]",
            handler: super::fs_batch::readdir_recursive,
            detached: false,
        },
        ActionSpec {
            name: "checkRootFilesystem",
            summary: "Check the durable root's stored structures (every inode reachable, link counts, chunks) and report any problem; like `fsck -n`.",
            params: &[],
            returns: "FsCheckReport",
            handler: check_root,
            detached: false,
        },
    ],
    events: &[],
    types: &[
        ("DirEntry", "{ name: string; isDirectory: boolean; isSymbolicLink: boolean }"),
        (
            "VirtualStat",
            "{ mode: number; size: number; blocks: number; dev: number; rdev: number; isDirectory: boolean; isSymbolicLink: boolean; atimeMs: number; mtimeMs: number; ctimeMs: number; birthtimeMs: number; ino: number; nlink: number; uid: number; gid: number }",
        ),
        ("BatchReadResult", "{ path: string; content?: Uint8Array; error?: string }"),
        ("BatchWriteResult", "{ path: string; success: boolean; error?: string }"),
        ("RecursiveEntry", "{ path: string; type: \"file\" | \"directory\" | \"symlink\"; size: number }"),
        ("FsCheckReport", "{ clean: boolean; inodes: number; entries: number; chunks: number; problems: string[] }"),
    ],
};

/// Where one filesystem action is served.
pub(super) enum Route {
    Direct(Root),
    Vm(agentos_client::AgentOs),
}

/// Checks `path` as the VM path does (absolute and normalized; writes
/// outside the read-only `/proc` and `/etc/agentos`), so both routes reject
/// the same input with the same error.
pub(super) fn check_path(argument: &str, path: &str, writable: bool) -> Result<(), ActorError> {
    let bad = |message: String| {
        Err(ActorError::new(code::INVALID_ARGUMENT, format!("argument `{argument}`: {message}"))
            .with_metadata(serde_json::json!({ "argument": argument, "path": path })))
    };
    if !path.starts_with('/') {
        return bad(format!("path must be absolute: {path}"));
    }
    let normalized = path.len() == 1
        || (!path.ends_with('/') && path[1..].split('/').all(|c| !c.is_empty() && c != "." && c != ".."));
    if !normalized {
        return bad(format!("path must be normalized (no empty, `.` or `..` components, no trailing `/`): {path}"));
    }
    if writable && ["/proc", "/etc/agentos"].iter().any(|dir| under(path, dir)) {
        return Err(ActorError::new("EROFS", format!("read-only file system: {path}"))
            .with_metadata(serde_json::json!({ "path": path })));
    }
    Ok(())
}

/// Whether `path` is `dir` or lies below it.
pub(super) fn under(path: &str, dir: &str) -> bool {
    path == dir || path.strip_prefix(dir).is_some_and(|rest| rest.starts_with('/'))
}

impl Call {
    pub(super) fn kernel_owned(&self, path: &str) -> bool {
        let packages = self.settings.config.packages_mount_at.as_deref().unwrap_or(DEFAULT_PACKAGES_MOUNT);
        KERNEL_DIRS.iter().any(|dir| under(path, dir)) || under(path, packages)
    }

    /// Whether the VM, not the durable root, holds `path`: a kernel
    /// directory, the packages, or a `mountFs` mount.
    pub(super) async fn vm_owned(&self, path: &str) -> Result<bool, ActorError> {
        if self.kernel_owned(path) {
            return Ok(true);
        }
        if !self.host.sql_is_enabled() {
            return Ok(false);
        }
        self.slot.mounts().covers(&self.host, path).await
    }

    /// Chooses the route for an action on `paths` (already checked).
    pub(super) async fn route(&self, paths: &[&str]) -> Result<Route, ActorError> {
        let Some(root) = self.root().await? else { return Ok(Route::Vm(self.vm().await?)) };
        // A root the sidecar has never laid out (a new actor) gets its VM
        // first, so `/workspace`, `/tmp` and the rest exist as in any VM.
        if root.is_empty().await.unwrap_or(true) {
            self.vm().await?;
        }
        for path in paths {
            let resolved = resolved_prefix(&root, path).await;
            if self.vm_owned(path).await? || self.vm_owned(&resolved).await? {
                return Ok(Route::Vm(self.vm().await?));
            }
        }
        Ok(Route::Direct(root))
    }
}

/// Where `path` really is: the real path of its deepest existing ancestor
/// (or itself) with the rest appended, so a symlink into a kernel-owned
/// directory is routed to the VM.
async fn resolved_prefix(root: &Root, path: &str) -> String {
    let mut prefix = path.to_owned();
    let mut rest = String::new();
    loop {
        if let Ok(real) = root.realpath(&prefix).await {
            return if real == "/" && !rest.is_empty() { rest } else { format!("{real}{rest}") };
        }
        match prefix.rfind('/') {
            Some(0) | None => return path.to_owned(),
            Some(at) => {
                rest = format!("{}{rest}", &prefix[at..]);
                prefix.truncate(at);
            }
        }
    }
}

/// Maps a durable-root failure of an operation on `path`: the errno is the
/// code, the path is in the message and metadata.
pub(super) fn fs_error(error: FsError, path: &str) -> ActorError {
    let mut message = error.to_string();
    if !message.contains(path) {
        message = format!("{message}: {path}");
    }
    ActorError::new(error.errno.code(), message).with_field("path", path)
}

fn virtual_stat(node: &Inode) -> VirtualStat {
    let ms = |ns: i64| ns as f64 / 1e6;
    let size = node.reported_size();
    VirtualStat {
        mode: node.mode,
        size,
        blocks: size.div_ceil(512),
        dev: 0,
        rdev: 0,
        is_directory: node.is_dir(),
        is_symbolic_link: node.is_symlink(),
        atime_ms: ms(node.atime_ns),
        mtime_ms: ms(node.mtime_ns),
        ctime_ms: ms(node.ctime_ns),
        birthtime_ms: ms(node.birthtime_ns),
        ino: node.ino as u64,
        nlink: u64::from(node.nlink),
        uid: node.uid,
        gid: node.gid,
    }
}

pub fn read_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let bytes = read_one(&call, "path", &path).await?;
        reply(&serde_bytes::ByteBuf::from(bytes))
    }
    .boxed()
}

pub fn write_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let content = call.args.bytes(1)?;
        write_one(&call, "path", &path, content).await?;
        reply_null()
    }
    .boxed()
}

/// Reads one whole file by either route; `argument` names the path in errors.
pub(super) async fn read_one(call: &Call, argument: &str, path: &str) -> Result<Vec<u8>, ActorError> {
    check_path(argument, path, false)?;
    match call.route(&[path]).await? {
        Route::Direct(root) => root.read_file(path).await.map_err(|e| fs_error(e, path)),
        Route::Vm(vm) => vm.read_file(path).await.map_err(|e| ActorError::from_vm_path(e, path)),
    }
}

/// Creates or replaces one file by either route.
pub(super) async fn write_one(call: &Call, argument: &str, path: &str, content: Vec<u8>) -> Result<(), ActorError> {
    check_path(argument, path, true)?;
    match call.route(&[path]).await? {
        Route::Direct(root) => {
            check_capacity(call, &root, path, content.len() as u64).await?;
            root.write_file_as(path, &content, None, VM_USER).await.map_err(|e| fs_error(e, path))
        }
        Route::Vm(vm) => vm.write_file(path, content).await.map_err(|e| ActorError::from_vm_path(e, path)),
    }
}

/// Creates a directory (and, when `recursive`, its parents) by either route.
pub(super) async fn mkdir_one(call: &Call, argument: &str, path: &str, recursive: bool) -> Result<(), ActorError> {
    check_path(argument, path, true)?;
    match call.route(&[path]).await? {
        Route::Direct(root) => root.mkdir_as(path, recursive, None, VM_USER).await.map_err(|e| fs_error(e, path)),
        Route::Vm(vm) => vm
            .mkdir(path, MkdirOptions { recursive })
            .await
            .map_err(|e| ActorError::from_vm_path(e, path)),
    }
}

/// Refuses a write that would take the root past its capacity
/// (`maxRootBytes`), the limit the VM's kernel applies to guest writes.
async fn check_capacity(call: &Call, root: &Root, path: &str, new_size: u64) -> Result<(), ActorError> {
    let limit = call.settings.config.max_root_bytes;
    let used = root.used_bytes().await.map_err(|e| fs_error(e, path))?;
    let replaced = match root.stat(path).await {
        Ok(node) if node.is_file() => node.size,
        _ => 0,
    };
    if used.saturating_sub(replaced).saturating_add(new_size) > limit {
        return Err(ActorError::new(
            "ENOSPC",
            format!("no space left on device: writing {new_size} bytes to {path} would exceed the root's capacity of {limit} bytes (config `maxRootBytes`)"),
        )
        .with_metadata(serde_json::json!({ "path": path, "limit": limit, "used": used })));
    }
    Ok(())
}

pub fn mkdir(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let recursive = call.args.object(1)?.bool("recursive").unwrap_or(true);
        mkdir_one(&call, "path", &path, recursive).await?;
        reply_null()
    }
    .boxed()
}

pub fn readdir(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, false)?;
        let mut names = match call.route(&[&path]).await? {
            Route::Direct(root) => root.read_dir(&path).await.map_err(|e| fs_error(e, &path))?,
            Route::Vm(vm) => vm.readdir(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?,
        };
        names.retain(|n| n != "." && n != "..");
        reply(&names)
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DirEntry {
    name: String,
    is_directory: bool,
    is_symbolic_link: bool,
}

impl DirEntry {
    fn new(name: String, is_directory: bool, is_symbolic_link: bool) -> Self {
        Self { name, is_directory, is_symbolic_link }
    }
}

pub fn readdir_entries(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, false)?;
        let listed: Result<Vec<DirEntry>, ActorError> = match call.route(&[&path]).await? {
            Route::Direct(root) => root
                .read_dir_with_types(&path)
                .await
                .map(|entries| entries.into_iter().map(|e| DirEntry::new(e.name, e.is_directory, e.is_symbolic_link)).collect())
                .map_err(|e| fs_error(e, &path)),
            Route::Vm(vm) => vm
                .readdir_entries(&path)
                .await
                .map(|entries| entries.into_iter().map(|e| DirEntry::new(e.name, e.is_directory, e.is_symbolic_link)).collect())
                .map_err(|e| ActorError::from_vm_path(e, &path)),
        };
        match listed {
            Ok(mut entries) => {
                entries.retain(|e| e.name != "." && e.name != "..");
                reply(&entries)
            }
            // Upstream contract: a missing path or a non-directory is `null`.
            Err(error) if error.code == "ENOENT" || error.code == "ENOTDIR" => reply(&Option::<()>::None),
            Err(error) => Err(error),
        }
    }
    .boxed()
}

pub fn stat(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, false)?;
        let stat = match call.route(&[&path]).await? {
            Route::Direct(root) => virtual_stat(&root.stat(&path).await.map_err(|e| fs_error(e, &path))?),
            Route::Vm(vm) => vm.stat(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?,
        };
        reply(&stat)
    }
    .boxed()
}

pub fn exists(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, false)?;
        let exists = match call.route(&[&path]).await? {
            Route::Direct(root) => root.exists(&path).await.map_err(|e| fs_error(e, &path))?,
            Route::Vm(vm) => vm.exists(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?,
        };
        reply(&exists)
    }
    .boxed()
}

pub fn move_path(call: Call) -> Reply {
    async move {
        let from = call.args.str(0)?;
        let to = call.args.str(1)?;
        check_path("from", &from, true)?;
        check_path("to", &to, true)?;
        match call.route(&[&from, &to]).await? {
            Route::Direct(root) => root.rename(&from, &to).await.map_err(|e| fs_error(e, &from).with_to(&to))?,
            Route::Vm(vm) => vm
                .move_path(&from, &to)
                .await
                .map_err(|e| ActorError::from_vm_path(e, &from).with_to(&to))?,
        }
        reply_null()
    }
    .boxed()
}

pub fn delete_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, true)?;
        let recursive = call.args.object(1)?.bool("recursive").unwrap_or(false);
        if path == "/" {
            return Err(ActorError::new("EBUSY", "refusing to remove the root directory `/`")
                .with_metadata(serde_json::json!({ "path": path })));
        }
        match call.route(&[&path]).await? {
            Route::Direct(root) => remove(&root, &path, recursive).await.map_err(|e| fs_error(e, &path))?,
            Route::Vm(vm) => vm
                .remove(&path, RemoveOptions { recursive })
                .await
                .map_err(|e| ActorError::from_vm_path(e, &path))?,
        }
        reply_null()
    }
    .boxed()
}

/// Removes a file, symlink or directory; a non-empty directory only when
/// `recursive` (children first, each removal its own transaction, like
/// `rm -r`).
async fn remove(root: &Root, path: &str, recursive: bool) -> Result<(), FsError> {
    if !root.lstat(path).await?.is_dir() {
        return root.remove_file(path).await;
    }
    if recursive {
        // Depth-first without recursion: directories are removed once empty.
        let mut stack = vec![(path.to_owned(), false)];
        while let Some((dir, listed)) = stack.pop() {
            if listed {
                root.remove_dir(&dir).await?;
                continue;
            }
            stack.push((dir.clone(), true));
            for entry in root.read_dir_with_types(&dir).await? {
                if entry.name == "." || entry.name == ".." {
                    continue;
                }
                let child = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
                if entry.is_directory && !entry.is_symbolic_link {
                    stack.push((child, false));
                } else {
                    root.remove_file(&child).await?;
                }
            }
        }
        return Ok(());
    }
    root.remove_dir(path).await
}

#[derive(Serialize)]
struct CheckReply {
    clean: bool,
    inodes: usize,
    entries: usize,
    chunks: usize,
    problems: Vec<String>,
}

pub fn check_root(call: Call) -> Reply {
    async move {
        let root = call.root().await?.ok_or_else(|| {
            ActorError::new(
                code::UNSUPPORTED,
                "this actor's root filesystem is ephemeral (config `rootFilesystem`); there is nothing stored to check",
            )
        })?;
        let report = root.check().await.map_err(|e| ActorError::internal(format!("check the durable root: {e:#}")))?;
        reply(&CheckReply {
            clean: report.is_clean(),
            inodes: report.inodes,
            entries: report.entries,
            chunks: report.chunks,
            problems: report.problems.iter().map(|p| format!("{p:?}")).collect(),
        })
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked_like_the_vm_client() {
        for ok in ["/", "/a", "/a/b.txt", "/a/.hidden", "/a/..b"] {
            check_path("path", ok, true).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["a", "", "/a/", "//a", "/a//b", "/a/./b", "/a/../b", "/.."] {
            let error = check_path("path", bad, false).unwrap_err();
            assert_eq!(error.code, "invalid_argument", "{bad}");
            assert!(error.message.contains("`path`"), "{}", error.message);
        }
        assert_eq!(check_path("to", "/proc/x", true).unwrap_err().code, "EROFS");
        assert_eq!(check_path("path", "/etc/agentos/a", true).unwrap_err().code, "EROFS");
        check_path("path", "/etc/agentos/a", false).unwrap();
        check_path("path", "/etc/agentosx", true).unwrap();
    }
}
