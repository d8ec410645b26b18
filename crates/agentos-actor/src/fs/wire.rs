//! The `js_bridge` wire protocol: operation names, argument shapes and
//! result shapes, as observed against `agentos-sidecar` 0.2.21 by booting a
//! VM on a logging root (see `/work/notes/js-bridge-wire.md`).
//!
//! Every call is `(operation, args)` with `args` a JSON object; the answer
//! is `Ok(None)` (JSON null), `Ok(Some(value))`, or `Err(text)`: the errno
//! code and its description, nothing else (see [`FsError::wire_text`]). Byte content travels as standard base64 in
//! both directions. Stat times are integer milliseconds (the sidecar
//! rejects fractional ones) plus the nanoseconds within the second.
//!
//! | operation | args | result |
//! |---|---|---|
//! | `stat`, `lstat` | `{path}` | stat object (below) |
//! | `exists` | `{path}` | bool |
//! | `realpath` | `{path}` | string |
//! | `readDir` | `{path}` | `[name]` |
//! | `readDirWithTypes` | `{path}` | `[{name, isDirectory, isSymbolicLink}]` |
//! | `readFile` | `{path}` | base64 string |
//! | `pread` | `{path, offset, length}` | base64 string (shorter at EOF) |
//! | `readlink` | `{path}` | string |
//! | `writeFile` | `{path, content: base64, mode?}` | null |
//! | `pwrite` | `{path, offset, content: base64}` | null |
//! | `truncate` | `{path, length}` | null |
//! | `mkdir` | `{path, recursive?, mode?}` | null |
//! | `createDir` | `{path, mode?}` | null |
//! | `symlink` | `{target, linkPath}` | null |
//! | `link` | `{oldPath, newPath}` | null |
//! | `rename` | `{oldPath, newPath}` | null |
//! | `removeFile`, `removeDir` | `{path}` | null |
//! | `chmod` | `{path, mode}` | null |
//! | `chown` | `{path, uid, gid, followSymlinks?}` | null |
//! | `utimes` | `{path, atimeMs, mtimeMs}` | null |
//!
//! Stat object: `{dev, ino, mode, nlink, uid, gid, rdev, size, blocks,
//! atimeMs, atimeNsec, mtimeMs, mtimeNsec, ctimeMs, ctimeNsec, birthtimeMs,
//! isDirectory, isSymbolicLink}`, all numbers unsigned integers.

use std::sync::Arc;

use agentos_client::{SidecarJsBridgeCall, SidecarJsBridgeCallback};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::error::{Errno, FsError};
use super::meta::Inode;
use super::{Fs, SqlExec};

/// Every operation of the durable root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Chmod,
    Chown,
    CreateDir,
    Exists,
    Link,
    Lstat,
    Mkdir,
    Pread,
    Pwrite,
    ReadDir,
    ReadDirWithTypes,
    ReadFile,
    Readlink,
    Realpath,
    RemoveDir,
    RemoveFile,
    Rename,
    Stat,
    Symlink,
    Truncate,
    Utimes,
    WriteFile,
}

/// The supported operations by wire name: the one table dispatch uses.
pub const OPERATIONS: &[(&str, Op)] = &[
    ("chmod", Op::Chmod),
    ("chown", Op::Chown),
    ("createDir", Op::CreateDir),
    ("exists", Op::Exists),
    ("link", Op::Link),
    ("lstat", Op::Lstat),
    ("mkdir", Op::Mkdir),
    ("pread", Op::Pread),
    ("pwrite", Op::Pwrite),
    ("readDir", Op::ReadDir),
    ("readDirWithTypes", Op::ReadDirWithTypes),
    ("readFile", Op::ReadFile),
    ("readlink", Op::Readlink),
    ("realpath", Op::Realpath),
    ("removeDir", Op::RemoveDir),
    ("removeFile", Op::RemoveFile),
    ("rename", Op::Rename),
    ("stat", Op::Stat),
    ("symlink", Op::Symlink),
    ("truncate", Op::Truncate),
    ("utimes", Op::Utimes),
    ("writeFile", Op::WriteFile),
];

impl Op {
    pub fn from_name(name: &str) -> Option<Op> {
        OPERATIONS.iter().find(|(n, _)| *n == name).map(|(_, op)| *op)
    }

    pub fn name(self) -> &'static str {
        OPERATIONS.iter().find(|(_, op)| *op == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

/// Answers one `js_bridge` call. Unknown operations are `ENOSYS`.
///
/// A failure is answered as [`FsError::wire_text`] (code and description
/// only); the full error, with its paths, goes to the log.
pub async fn handle<S: SqlExec>(fs: &Fs<S>, operation: &str, args: &Value) -> Result<Option<Value>, String> {
    let Some(op) = Op::from_name(operation) else {
        tracing::warn!(target: "agentos_actor::root", operation, "unsupported js_bridge operation");
        return Err(Errno::ENOSYS.with("").wire_text());
    };
    let result = dispatch(fs, op, args).await;
    // Paths only: content can be megabytes.
    let path = args.get("path").or_else(|| args.get("oldPath")).or_else(|| args.get("target"));
    let to = args.get("newPath").or_else(|| args.get("linkPath"));
    let error = result.as_ref().err();
    tracing::trace!(target: "agentos_actor::root", operation, ?path, ?to, error = error.map(tracing::field::display));
    if let Some(error) = error.filter(|e| e.errno == Errno::EIO) {
        tracing::warn!(target: "agentos_actor::root", operation, %error);
    }
    result.map_err(|e| e.wire_text())
}

/// The sidecar callback serving every `js_bridge` call from `fs`.
pub fn js_bridge_callback<S: SqlExec>(fs: Arc<Fs<S>>) -> SidecarJsBridgeCallback {
    Arc::new(move |call: SidecarJsBridgeCall| {
        let fs = fs.clone();
        Box::pin(async move { handle(&fs, &call.operation, &call.args).await })
    })
}

/// Largest file one `readFile` answer can carry: the sidecar's protocol
/// frame is 16 MiB and holds the content as base64, with room left for the
/// frame's envelope. A bigger answer never arrives (the guest waited 30 s,
/// then got EIO); refusing it at once gives the guest its error straight
/// away. Client actions read through `Fs` directly and are not limited.
pub const SIDECAR_READ_MAX: u64 = ((16 << 20) - (64 << 10)) / 4 * 3;

async fn dispatch<S: SqlExec>(fs: &Fs<S>, op: Op, args: &Value) -> Result<Option<Value>, FsError> {
    let a = Args { op, args };
    Ok(match op {
        Op::Stat => Some(stat_json(&fs.stat(a.str("path")?).await?)),
        Op::Lstat => Some(stat_json(&fs.lstat(a.str("path")?).await?)),
        Op::Exists => Some(json!(fs.exists(a.str("path")?).await?)),
        Op::Realpath => Some(json!(fs.realpath(a.str("path")?).await?)),
        Op::ReadDir => Some(json!(fs.read_dir(a.str("path")?).await?)),
        Op::ReadDirWithTypes => {
            let entries = fs.read_dir_with_types(a.str("path")?).await?;
            Some(Value::Array(
                entries
                    .into_iter()
                    .map(|e| json!({"name": e.name, "isDirectory": e.is_directory, "isSymbolicLink": e.is_symbolic_link}))
                    .collect(),
            ))
        }
        Op::ReadFile => Some(json!(BASE64.encode(fs.read_file_up_to(a.str("path")?, SIDECAR_READ_MAX).await?))),
        Op::Pread => {
            let length = match a.opt_u64("length")? {
                Some(length) => length,
                None => a.u64("len")?,
            };
            Some(json!(BASE64.encode(fs.pread(a.str("path")?, a.u64("offset")?, length).await?)))
        }
        Op::Readlink => Some(json!(fs.read_link(a.str("path")?).await?)),
        Op::WriteFile => {
            fs.write_file(a.str("path")?, &a.bytes("content")?, a.opt_mode("mode")?).await?;
            None
        }
        Op::Pwrite => {
            fs.pwrite(a.str("path")?, a.u64("offset")?, &a.bytes("content")?).await?;
            None
        }
        Op::Truncate => {
            let length = match a.opt_u64("length")? {
                Some(length) => length,
                None => a.u64("len")?,
            };
            fs.truncate(a.str("path")?, length).await?;
            None
        }
        Op::Mkdir => {
            fs.mkdir(a.str("path")?, a.opt_bool("recursive")?.unwrap_or(false), a.opt_mode("mode")?).await?;
            None
        }
        Op::CreateDir => {
            fs.mkdir(a.str("path")?, false, a.opt_mode("mode")?).await?;
            None
        }
        Op::Symlink => {
            fs.symlink(a.str("target")?, a.str("linkPath")?).await?;
            None
        }
        Op::Link => {
            fs.link(a.str("oldPath")?, a.str("newPath")?).await?;
            None
        }
        Op::Rename => {
            fs.rename(a.str("oldPath")?, a.str("newPath")?).await?;
            None
        }
        Op::RemoveFile => {
            fs.remove_file(a.str("path")?).await?;
            None
        }
        Op::RemoveDir => {
            fs.remove_dir(a.str("path")?).await?;
            None
        }
        Op::Chmod => {
            let Some(mode) = a.opt_mode("mode")? else { return Err(a.missing("mode", "an integer")) };
            fs.chmod(a.str("path")?, mode).await?;
            None
        }
        Op::Chown => {
            let follow = a.opt_bool("followSymlinks")?.unwrap_or(true);
            fs.chown(a.str("path")?, a.owner("uid")?, a.owner("gid")?, follow).await?;
            None
        }
        Op::Utimes => {
            fs.utimes(a.str("path")?, a.ms_as_ns("atimeMs")?, a.ms_as_ns("mtimeMs")?).await?;
            None
        }
    })
}

/// The stat object the sidecar's `JsBridgeVirtualStat` reads. Directories
/// report size 4096 like common disk filesystems; times before the epoch
/// are reported as 0 (the fields are unsigned on the wire).
pub fn stat_json(node: &Inode) -> Value {
    let size = node.reported_size();
    let ms = |ns: i64| ns.max(0) / 1_000_000;
    let nsec = |ns: i64| ns.max(0) % 1_000_000_000;
    json!({
        "dev": 0,
        "ino": node.ino,
        "mode": node.mode,
        "nlink": node.nlink,
        "uid": node.uid,
        "gid": node.gid,
        "rdev": 0,
        "size": size,
        "blocks": size.div_ceil(512),
        "atimeMs": ms(node.atime_ns),
        "atimeNsec": nsec(node.atime_ns),
        "mtimeMs": ms(node.mtime_ns),
        "mtimeNsec": nsec(node.mtime_ns),
        "ctimeMs": ms(node.ctime_ns),
        "ctimeNsec": nsec(node.ctime_ns),
        "birthtimeMs": ms(node.birthtime_ns),
        "isDirectory": node.is_dir(),
        "isSymbolicLink": node.is_symlink(),
    })
}

/// Typed access to a call's arguments; failures are `EINVAL`.
struct Args<'a> {
    op: Op,
    args: &'a Value,
}

impl<'a> Args<'a> {
    fn missing(&self, key: &str, what: &str) -> FsError {
        Errno::EINVAL.with(format!("{}: argument `{key}` must be {what}", self.op.name()))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.args.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Result<&'a str, FsError> {
        self.get(key).and_then(Value::as_str).ok_or_else(|| self.missing(key, "a string"))
    }

    fn opt_u64(&self, key: &str) -> Result<Option<u64>, FsError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < 2f64.powi(63)).map(|f| f as u64))
                .map(Some)
                .ok_or_else(|| self.missing(key, "a non-negative integer")),
        }
    }

    fn u64(&self, key: &str) -> Result<u64, FsError> {
        self.opt_u64(key)?.ok_or_else(|| self.missing(key, "a non-negative integer"))
    }

    fn opt_bool(&self, key: &str) -> Result<Option<bool>, FsError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_bool().map(Some).ok_or_else(|| self.missing(key, "a boolean")),
        }
    }

    fn opt_mode(&self, key: &str) -> Result<Option<u32>, FsError> {
        Ok(self.opt_u64(key)?.map(|mode| (mode & 0o7777) as u32))
    }

    /// A uid/gid; `-1` (or absent) keeps the current one, as in chown(2).
    fn owner(&self, key: &str) -> Result<Option<u32>, FsError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) if v.as_i64() == Some(-1) || v.as_u64() == Some(u64::from(u32::MAX)) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .map(Some)
                .ok_or_else(|| self.missing(key, "a uid/gid")),
        }
    }

    /// Milliseconds since the epoch (integer or fractional) as nanoseconds.
    fn ms_as_ns(&self, key: &str) -> Result<i64, FsError> {
        let value = self.get(key).ok_or_else(|| self.missing(key, "a number"))?;
        let out_of_range = || self.missing(key, "a time in range");
        if let Some(ms) = value.as_i64() {
            return ms.checked_mul(1_000_000).ok_or_else(out_of_range);
        }
        let ms = value.as_f64().ok_or_else(|| self.missing(key, "a number"))?;
        if !ms.is_finite() || ms.abs() >= 9.2e12 {
            return Err(out_of_range());
        }
        // Whole milliseconds exactly, the fraction rounded to nanoseconds
        // (multiplying the whole f64 would lose low digits).
        let whole = ms.trunc();
        let fraction_ns = ((ms - whole) * 1_000_000.0).round() as i64;
        Ok(whole as i64 * 1_000_000 + fraction_ns)
    }

    fn bytes(&self, key: &str) -> Result<Vec<u8>, FsError> {
        let text = self.str(key)?;
        BASE64.decode(text).map_err(|_| self.missing(key, "base64 text"))
    }
}
