//! Structured, public errors (design.md §4).
//!
//! ABI v13's `reply_err` carries only UTF-8 text, so the plugin sends a JSON
//! object `{code, message, metadata?}`. Our host turns it into a public
//! RivetKit error in group `user`; a host that does not know the convention
//! still logs readable text.

use agentos_client::ClientError;
use serde::Serialize;
use serde_json::{Value, json};

/// Stable error codes clients can match on, besides errno codes (`ENOENT`, ...)
/// that pass through from the VM's kernel unchanged.
pub mod code {
    /// An action argument was missing, extra or of the wrong type.
    pub const INVALID_ARGUMENT: &str = "invalid_argument";
    /// No action of that name exists in the contract.
    pub const ACTION_NOT_FOUND: &str = "action_not_found";
    /// The VM could not be booted or is shutting down.
    pub const VM_UNAVAILABLE: &str = "vm_unavailable";
    /// Stdin work on a spawned process that already exited.
    pub const PROCESS_EXITED: &str = "process_exited";
    /// A VM resource limit refused the operation.
    pub const RESOURCE_LIMIT: &str = "resource_limit";
    /// The event kind is not offered by this actor (raw WebSockets, queues).
    pub const UNSUPPORTED: &str = "unsupported";
    /// The VM reported a failure that carries no errno.
    pub const VM_ERROR: &str = "vm_error";
    /// The named thing (process, shell, preview token, mount) does not exist.
    pub const NOT_FOUND: &str = "not_found";
    /// A session's agent process exited; the next action on the session
    /// starts it again with the session's history.
    pub const AGENT_EXITED: &str = "agent_exited";
    /// A bug or an unexpected host failure inside the plugin.
    pub const INTERNAL: &str = "internal";
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActorError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl ActorError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { code: code.into(), message: message.into(), metadata: None }
    }

    pub fn with_metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    pub fn invalid_argument(argument: &str, message: impl std::fmt::Display) -> Self {
        Self::new(code::INVALID_ARGUMENT, format!("argument `{argument}`: {message}"))
            .with_metadata(json!({ "argument": argument }))
    }

    pub fn action_not_found(name: &str) -> Self {
        Self::new(code::ACTION_NOT_FOUND, format!("no action named `{name}` on the agentOS actor"))
            .with_metadata(json!({ "action": name }))
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(code::INTERNAL, message.to_string())
    }

    /// Adds one metadata field, keeping any already there.
    pub fn with_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        let mut metadata = match self.metadata.take() {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        metadata.insert(key.to_owned(), value.into());
        self.metadata = Some(Value::Object(metadata));
        self
    }

    /// Records the destination of a two-path operation (`move`).
    pub fn with_to(self, to: &str) -> Self {
        self.with_field("to", to)
    }

    /// Records the command line of a failed `exec`.
    pub fn with_command(self, command: &str) -> Self {
        self.with_field("command", command)
    }

    /// Maps a VM (agentos-client) failure of an operation on `path`. Errno
    /// codes pass through, and the path goes into the message and metadata.
    pub fn from_vm_path(error: anyhow::Error, path: &str) -> Self {
        let mut mapped = Self::from_vm(error);
        if !mapped.message.contains(path) {
            mapped.message = format!("{}: {path}", mapped.message);
        }
        mapped.with_field("path", path)
    }

    /// Maps a VM (agentos-client) failure without a path.
    pub fn from_vm(error: anyhow::Error) -> Self {
        match error.downcast_ref::<ClientError>() {
            Some(ClientError::Kernel { code, message }) => {
                let errno = errno_of(code, message).unwrap_or(code::VM_ERROR);
                Self::new(errno, message.clone())
            }
            Some(ClientError::ResourceLimit { code: limit_code, message, details }) => {
                Self::new(code::RESOURCE_LIMIT, message.clone()).with_metadata(json!({
                    "limit": details.limit_name,
                    "wireCode": limit_code,
                }))
            }
            Some(ClientError::PathNotAbsolute(path)) | Some(ClientError::PathNotNormalized(path)) => {
                Self::new(code::INVALID_ARGUMENT, error.to_string())
                    .with_metadata(json!({ "argument": "path", "path": path }))
            }
            Some(ClientError::PathReadOnly(path)) => {
                Self::new("EROFS", error.to_string()).with_metadata(json!({ "path": path }))
            }
            Some(other) => Self::new(code::VM_ERROR, other.to_string()),
            None => Self::new(code::VM_ERROR, format!("{error:#}")),
        }
    }

    /// The text sent through `reply_err`.
    /// One line for a per-entry result: the code, then the message.
    pub fn brief(&self) -> String {
        if self.message.starts_with(&self.code) {
            self.message.clone()
        } else {
            format!("{}: {}", self.code, self.message)
        }
    }

    pub fn to_wire(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.message.clone())
    }
}

/// Maps an unexpected storage or host failure to `internal`, prefixed by
/// what was being done: `.map_err(internal_while("store the job"))`.
pub fn internal_while(what: &str) -> impl Fn(anyhow::Error) -> ActorError + '_ {
    move |e| ActorError::internal(format!("{what}: {e:#}"))
}

impl std::fmt::Display for ActorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ActorError {}

/// The errno of a kernel failure: the sidecar puts it either in the code or
/// at the head of the message (`ENOENT: no such file: /x`). Anything else is
/// not an errno, so clients keep a stable vocabulary.
///
/// The sidecar (0.2.21) passes only ENOENT, EEXIST and EACCES from the
/// durable root through; any other errno reaches us as
/// `EIO: ENOTEMPTY: directory not empty, ...`. The inner errno is the exact
/// one, so clients get it.
fn errno_of<'a>(code: &'a str, message: &'a str) -> Option<&'a str> {
    let is_errno = |word: &str| {
        word.len() > 1
            && word.starts_with('E')
            && word.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    let head_of = |text: &'a str| text.split([':', ' ']).next().unwrap_or_default();
    let outer = if is_errno(code) {
        code
    } else {
        let head = head_of(message);
        if !is_errno(head) {
            return None;
        }
        head
    };
    if outer == "EIO" {
        let rest = message.strip_prefix("EIO: ").unwrap_or(message);
        let rest = rest.strip_prefix("EIO: ").unwrap_or(rest);
        let inner = head_of(rest);
        if is_errno(inner) && rest[inner.len()..].starts_with(':') {
            return Some(inner);
        }
    }
    Some(outer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_errno_passes_through_with_path() {
        let err = anyhow::Error::new(ClientError::Kernel {
            code: "ENOENT".into(),
            message: "no such file or directory".into(),
        });
        let mapped = ActorError::from_vm_path(err, "/missing.txt");
        assert_eq!(mapped.code, "ENOENT");
        assert!(mapped.message.contains("/missing.txt"), "{}", mapped.message);
        assert_eq!(mapped.metadata, Some(json!({ "path": "/missing.txt" })));
    }

    #[test]
    fn errno_at_the_head_of_the_message_is_used() {
        let err = anyhow::Error::new(ClientError::Kernel {
            code: "kernel_error".into(),
            message: "ENOENT: no such file: /missing.txt".into(),
        });
        let mapped = ActorError::from_vm_path(err, "/missing.txt");
        assert_eq!(mapped.code, "ENOENT");
        assert_eq!(mapped.message, "ENOENT: no such file: /missing.txt");
    }

    #[test]
    fn errno_wrapped_in_eio_by_the_sidecar_is_unwrapped() {
        for (code, message) in [
            ("EIO", "ENOTEMPTY: directory not empty, rmdir '/t'"),
            ("kernel_error", "EIO: ENOTEMPTY: directory not empty, rmdir '/t'"),
        ] {
            let err = anyhow::Error::new(ClientError::Kernel { code: code.into(), message: message.into() });
            assert_eq!(ActorError::from_vm(err).code, "ENOTEMPTY", "{code} / {message}");
        }
        let plain = anyhow::Error::new(ClientError::Kernel { code: "EIO".into(), message: "EIO: disk on fire".into() });
        assert_eq!(ActorError::from_vm(plain).code, "EIO");
    }

    #[test]
    fn non_errno_kernel_code_becomes_vm_error() {
        let err = anyhow::Error::new(ClientError::Kernel {
            code: "invalid_state".into(),
            message: "command not found".into(),
        });
        assert_eq!(ActorError::from_vm(err).code, code::VM_ERROR);
    }

    #[test]
    fn wire_form_is_json_with_optional_metadata() {
        let plain = ActorError::new("x", "y").to_wire();
        assert_eq!(plain, r#"{"code":"x","message":"y"}"#);
        let with = ActorError::invalid_argument("path", "must be a string").to_wire();
        let parsed: Value = serde_json::from_str(&with).unwrap();
        assert_eq!(parsed["code"], "invalid_argument");
        assert_eq!(parsed["metadata"]["argument"], "path");
        assert!(parsed["message"].as_str().unwrap().contains("`path`"));
    }
}
