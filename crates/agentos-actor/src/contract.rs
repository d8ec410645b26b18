//! The action and event contract: one table that drives dispatch, argument
//! decoding, the README's action reference and the generated TypeScript
//! typing (`typings/agentos-actor.d.ts`). Add an action here and everything
//! else follows; tests fail when the checked-in renderings drift.

use futures::future::BoxFuture;

use crate::actions::{fs, process};
use crate::args::{ArgType, Args, Field, opt, req};
use crate::error::ActorError;
use crate::host::HostCtx;

/// Everything a handler gets: the actor's VM slot (the VM boots on first
/// use), the host, its decoded arguments.
pub struct Call {
    pub slot: crate::vm::VmSlot,
    pub settings: std::sync::Arc<crate::vm::VmSettings>,
    pub host: HostCtx,
    pub args: Args,
}

impl Call {
    /// The running VM, booted now if needed.
    pub async fn vm(&self) -> Result<agentos_client::AgentOs, ActorError> {
        self.slot.ensure(&self.settings, &self.host).await
    }

    /// The durable root filesystem; None when the config chose an
    /// ephemeral root.
    pub async fn root(&self) -> Result<Option<std::sync::Arc<crate::fs::Fs<HostCtx>>>, ActorError> {
        self.slot.root(&self.settings, &self.host).await
    }
}

/// A handler returns the CBOR reply bytes (JSON-compat encoded).
pub type Handler = fn(Call) -> BoxFuture<'static, Result<Vec<u8>, ActorError>>;

pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: &'static [Field],
    /// The reply's TypeScript type.
    pub returns: &'static str,
    pub handler: Handler,
    /// Long-running guest work: the worker starts it in order (booting the
    /// VM first) but does not wait for it, so later actions of the actor
    /// run meanwhile; its reply comes when it ends.
    pub detached: bool,
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSpec").field("name", &self.name).finish_non_exhaustive()
    }
}

pub struct EventSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// The single argument's TypeScript type.
    pub payload: &'static str,
}

const RECURSIVE: &[Field] = &[opt("recursive", ArgType::Bool, "Also create missing parents / remove a whole tree.")];
const EXEC_OPTIONS: &[Field] = &[
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory (default `/workspace`)."),
];

pub static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "readFile",
        summary: "Read a whole file.",
        params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
        returns: "Uint8Array",
        handler: fs::read_file,
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
        handler: fs::write_file,
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
        handler: fs::mkdir,
        detached: false,
    },
    ActionSpec {
        name: "readdir",
        summary: "List the names in a directory (without `.` and `..`).",
        params: &[req("path", ArgType::Str, "Absolute path of a directory.")],
        returns: "string[]",
        handler: fs::readdir,
        detached: false,
    },
    ActionSpec {
        name: "readdirEntries",
        summary: "List a directory with entry types; `null` when the path is missing or not a directory.",
        params: &[req("path", ArgType::Str, "Absolute path of a directory.")],
        returns: "DirEntry[] | null",
        handler: fs::readdir_entries,
        detached: false,
    },
    ActionSpec {
        name: "stat",
        summary: "File metadata, following symlinks.",
        params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
        returns: "VirtualStat",
        handler: fs::stat,
        detached: false,
    },
    ActionSpec {
        name: "exists",
        summary: "Whether the path exists.",
        params: &[req("path", ArgType::Str, "Absolute path in the VM.")],
        returns: "boolean",
        handler: fs::exists,
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
        handler: fs::move_path,
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
        handler: fs::delete_file,
        detached: false,
    },
    ActionSpec {
        name: "checkRootFilesystem",
        summary: "Check the durable root's stored structures (every inode reachable, link counts, chunks) and report any problem; like `fsck -n`.",
        params: &[],
        returns: "FsCheckReport",
        handler: fs::check_root,
        detached: false,
    },
    ActionSpec {
        name: "exec",
        summary: "Run a command line (shell syntax allowed) to completion and return its output.",
        params: &[
            req("command", ArgType::Str, "The command line."),
            opt("options", ArgType::Object(EXEC_OPTIONS), "Environment and working directory."),
        ],
        returns: "ExecResult",
        handler: process::exec,
        detached: true,
    },
];

pub static EVENTS: &[EventSpec] = &[
    EventSpec { name: "vmBooted", summary: "The actor's VM finished booting.", payload: "{}" },
    EventSpec {
        name: "vmShutdown",
        summary: "The actor's VM stopped (`crashed`: its sidecar process died; the next action boots a new VM on the same durable root).",
        payload: "{ reason: \"sleep\" | \"destroy\" | \"stopped\" | \"deadline\" | \"crashed\" }",
    },
];

/// Named reply types used in `returns` and event payloads.
pub static TS_TYPES: &[(&str, &str)] = &[
    ("DirEntry", "{ name: string; isDirectory: boolean; isSymbolicLink: boolean }"),
    (
        "VirtualStat",
        "{ mode: number; size: number; blocks: number; dev: number; rdev: number; isDirectory: boolean; isSymbolicLink: boolean; atimeMs: number; mtimeMs: number; ctimeMs: number; birthtimeMs: number; ino: number; nlink: number; uid: number; gid: number }",
    ),
    ("ExecResult", "{ exitCode: number; stdout: string; stderr: string }"),
    ("FsCheckReport", "{ clean: boolean; inodes: number; entries: number; chunks: number; problems: string[] }"),
];

/// Looks up an action by its exact name.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    ACTIONS.iter().find(|a| a.name == name)
}

fn ts_params(params: &[Field]) -> String {
    params
        .iter()
        .map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, p.ty.ts()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The TypeScript declaration of the actor's actions and events.
pub fn render_typescript() -> String {
    let mut out = String::from(
        "// Generated from crates/agentos-actor/src/contract.rs by `cargo run -p agentos-actor --bin agentos-typings -- --write`. Do not edit.\n\n",
    );
    for (name, body) in TS_TYPES {
        out.push_str(&format!("export type {name} = {body};\n"));
    }
    out.push_str("\nexport interface AgentOsActions {\n");
    for action in ACTIONS {
        out.push_str(&format!("  /** {} */\n", action.summary));
        out.push_str(&format!(
            "  {}({}): Promise<{}>;\n",
            action.name,
            ts_params(action.params),
            action.returns
        ));
    }
    out.push_str("}\n\nexport interface AgentOsEvents {\n");
    for event in EVENTS {
        out.push_str(&format!("  /** {} */\n", event.summary));
        out.push_str(&format!("  {}: (payload: {}) => void;\n", event.name, event.payload));
    }
    out.push_str("}\n");
    out
}

/// The Markdown action reference embedded in the README.
pub fn render_markdown() -> String {
    let mut out = String::from("| action | arguments | returns | what it does |\n|---|---|---|---|\n");
    for action in ACTIONS {
        let params = if action.params.is_empty() {
            "—".to_owned()
        } else {
            format!("`{}`", ts_params(action.params).replace('|', "\\|"))
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            action.name,
            params,
            action.returns.replace('|', "\\|"),
            action.summary
        ));
    }
    out.push_str("\n| event | payload | when |\n|---|---|---|\n");
    for event in EVENTS {
        out.push_str(&format!(
            "| `{}` | `{}` | {} |\n",
            event.name,
            event.payload.replace('|', "\\|"),
            event.summary
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique_and_camel_case() {
        let mut seen = std::collections::BTreeSet::new();
        for a in ACTIONS {
            assert!(seen.insert(a.name), "duplicate action {}", a.name);
            assert!(a.name.chars().next().unwrap().is_ascii_lowercase(), "{}", a.name);
            assert!(a.name.chars().all(|c| c.is_ascii_alphanumeric()), "{}", a.name);
        }
    }

    #[test]
    fn required_params_come_before_optional_ones() {
        for a in ACTIONS {
            let first_optional = a.params.iter().position(|p| !p.required).unwrap_or(a.params.len());
            assert!(a.params[first_optional..].iter().all(|p| !p.required), "{}", a.name);
        }
    }

    #[test]
    fn checked_in_typescript_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../typings/agentos-actor.d.ts");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == render_typescript(),
            "typings/agentos-actor.d.ts is stale: run `cargo run -p agentos-actor --bin agentos-typings -- --write`"
        );
    }

    #[test]
    fn readme_action_reference_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            readme.contains(&render_markdown()),
            "README.md action reference is stale: run `cargo run -p agentos-actor --bin agentos-typings -- --write`"
        );
    }
}
