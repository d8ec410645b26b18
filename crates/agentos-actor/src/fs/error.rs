//! POSIX error codes of the durable root and their wire text.
//!
//! The sidecar's `js_bridge` expects a failure as text that starts with the
//! errno code (`ENOENT: no such file or directory`); [`FsError::wire_text`]
//! is that text, [`FsError`]'s `Display` adds the detail for logs.

use std::fmt;

/// The errno codes this filesystem produces.
#[allow(clippy::upper_case_acronyms)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Errno {
    ENOENT,
    ENOTDIR,
    EISDIR,
    EEXIST,
    ENOTEMPTY,
    EINVAL,
    ELOOP,
    ENAMETOOLONG,
    EPERM,
    EBUSY,
    ENOSYS,
    EFBIG,
    /// Storage (SQL) failures and internal inconsistencies.
    EIO,
}

impl Errno {
    pub fn code(self) -> &'static str {
        match self {
            Errno::ENOENT => "ENOENT",
            Errno::ENOTDIR => "ENOTDIR",
            Errno::EISDIR => "EISDIR",
            Errno::EEXIST => "EEXIST",
            Errno::ENOTEMPTY => "ENOTEMPTY",
            Errno::EINVAL => "EINVAL",
            Errno::ELOOP => "ELOOP",
            Errno::ENAMETOOLONG => "ENAMETOOLONG",
            Errno::EPERM => "EPERM",
            Errno::EBUSY => "EBUSY",
            Errno::ENOSYS => "ENOSYS",
            Errno::EFBIG => "EFBIG",
            Errno::EIO => "EIO",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Errno::ENOENT => "no such file or directory",
            Errno::ENOTDIR => "not a directory",
            Errno::EISDIR => "illegal operation on a directory",
            Errno::EEXIST => "file already exists",
            Errno::ENOTEMPTY => "directory not empty",
            Errno::EINVAL => "invalid argument",
            Errno::ELOOP => "too many symbolic links encountered",
            Errno::ENAMETOOLONG => "name too long",
            Errno::EPERM => "operation not permitted",
            Errno::EBUSY => "resource busy or locked",
            Errno::ENOSYS => "function not implemented",
            Errno::EFBIG => "file too large",
            Errno::EIO => "i/o error",
        }
    }

    /// The error of `op` on `path`: `CODE: description, op 'path'`.
    pub fn at(self, op: &str, path: &str) -> FsError {
        FsError { errno: self, detail: format!("{op} '{path}'") }
    }

    /// The error of a two-path operation: `CODE: description, op 'from' -> 'to'`.
    pub fn at2(self, op: &str, from: &str, to: &str) -> FsError {
        FsError { errno: self, detail: format!("{op} '{from}' -> '{to}'") }
    }

    /// The error with free-form detail text.
    pub fn with(self, detail: impl Into<String>) -> FsError {
        FsError { errno: self, detail: detail.into() }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A failed filesystem operation: an errno plus what was being done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    pub errno: Errno,
    pub detail: String,
}

impl FsError {
    /// A storage failure (SQL error) while doing `what`.
    pub fn storage(what: &str, error: &anyhow::Error) -> Self {
        Errno::EIO.with(format!("durable root storage failed during {what}: {error:#}"))
    }

    /// The error as answered to the sidecar: `CODE: description`, without
    /// the detail.
    ///
    /// Why: `agentos-sidecar` 0.2.21 picks the guest's errno by searching
    /// the whole lower-cased text for `enoent`, `not found`, `no such file`
    /// (ENOENT), `eacces`, `eperm`, `permission denied` (EACCES), `eexist`,
    /// `already exists` (EEXIST), in that order, else EIO. A path in the
    /// detail could match (`/w/preexisting` holds `eexist`, a directory
    /// named `not found` turned EEXIST into ENOENT). The sidecar adds the
    /// operation and path to the guest's message itself.
    pub fn wire_text(&self) -> String {
        format!("{}: {}", self.errno.code(), self.errno.description())
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.detail.is_empty() {
            write!(f, "{}: {}", self.errno.code(), self.errno.description())
        } else {
            write!(f, "{}: {}, {}", self.errno.code(), self.errno.description(), self.detail)
        }
    }
}

impl std::error::Error for FsError {}
