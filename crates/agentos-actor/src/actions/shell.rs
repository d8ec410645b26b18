//! Interactive shells (PTY).
//!
//! A shell outlives the client that opened it: its output is kept in a
//! bounded sequence-numbered log, so any client (a new connection too) can
//! list the shells, read what it missed with `readShellOutput` and keep
//! typing. The actor answers the shell's cursor queries itself
//! ([`cursor`]), so a shell with nobody attached keeps running.

mod cursor;
mod state;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::{reply, reply_null};
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, EventSpec, Section};
use crate::error::{ActorError, code};
use crate::live::{Live, lock};
pub use state::ShellState;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// No shell of that id runs (or ran recently) in the actor's VM.
pub const SHELL_NOT_FOUND: &str = "shell_not_found";
/// The shell exited or was closed and takes no more input.
pub const SHELL_EXITED: &str = "shell_exited";

const OPEN_OPTIONS: &[Field] = &[
    opt("command", ArgType::Str, "Program to run (default `sh`)."),
    opt("args", ArgType::StrList, "Its arguments."),
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory."),
    opt("cols", ArgType::U16, "Terminal width (default 80)."),
    opt("rows", ArgType::U16, "Terminal height (default 24)."),
];

const SHELL_ID: Field = req("shellId", ArgType::Str, "The id `openShell` returned.");

/// The shell area of the contract.
pub static SECTION: Section = Section {
    area: "Shells",
    actions: &[
        ActionSpec {
            name: "openShell",
            summary: "Open an interactive shell on a terminal (PTY); its output arrives as `shellData` events and stays readable with `readShellOutput`.",
            params: &[opt("options", ArgType::Object(OPEN_OPTIONS), "What to run and the terminal size.")],
            returns: "{ shellId: string }",
            handler: open_shell,
            detached: false,
        },
        ActionSpec {
            name: "writeShell",
            summary: "Type into a shell; writes reach it in the order they were sent. Resolves once the VM took the input.",
            params: &[SHELL_ID, req("data", ArgType::Bytes, "Input bytes (text is sent as UTF-8).")],
            returns: "null",
            handler: write_shell,
            detached: false,
        },
        ActionSpec {
            name: "resizeShell",
            summary: "Change a shell's terminal size.",
            params: &[
                SHELL_ID,
                req("cols", ArgType::U16, "Terminal width in columns."),
                req("rows", ArgType::U16, "Terminal height in rows."),
            ],
            returns: "null",
            handler: resize_shell,
            detached: false,
        },
        ActionSpec {
            name: "closeShell",
            summary: "End a shell (SIGTERM); its output and exit code stay readable.",
            params: &[SHELL_ID],
            returns: "null",
            handler: close_shell,
            detached: false,
        },
        ActionSpec {
            name: "waitShell",
            summary: "Wait for a shell to exit and return its exit code (other actions run meanwhile).",
            params: &[SHELL_ID],
            returns: "number",
            handler: wait_shell,
            detached: true,
        },
        ActionSpec {
            name: "listShells",
            summary: "The shells of the running VM, open order, including recently exited ones.",
            params: &[],
            returns: "ShellInfo[]",
            handler: list_shells,
            detached: false,
        },
        ActionSpec {
            name: "readShellOutput",
            summary: "A shell's output after sequence number `after` (default 0: all that is kept, the newest 1 MiB). Re-attach by reading what you missed, then follow `shellData` events with a larger `seq`.",
            params: &[SHELL_ID, opt("after", ArgType::U64, "Last sequence number already seen.")],
            returns: "Replay",
            handler: read_shell_output,
            detached: false,
        },
    ],
    events: &[
        EventSpec {
            name: "shellData",
            summary: "Terminal output of a shell, in order (stdout and stderr as the PTY produced them). `seq` numbers chunks in the shell's output log.",
            payload: "{ shellId: string; seq: number; data: Uint8Array }",
        },
        EventSpec {
            name: "shellStderr",
            summary: "A copy of a shell's stderr-only output, for diagnostics (already contained in `shellData`; do not render both).",
            payload: "{ shellId: string; seq: number; data: Uint8Array }",
        },
        EventSpec {
            name: "shellExit",
            summary: "A shell exited, after its last `shellData`.",
            payload: "{ shellId: string; exitCode: number }",
        },
    ],
    types: &[
        (
            "ShellInfo",
            "{ shellId: string; command: string; args: string[]; cols: number; rows: number; running: boolean; exitCode: number | null; lastSeq: number }",
        ),
    ],
};

fn not_found(id: &str) -> ActorError {
    ActorError::new(SHELL_NOT_FOUND, format!("no shell `{id}` in this actor's VM (listShells shows the open ones)"))
        .with_metadata(serde_json::json!({ "shellId": id }))
}

fn exited(id: &str, shell: &ShellState) -> ActorError {
    let why = match shell.exit_code {
        Some(code) => format!("exited with code {code}"),
        None => "was closed".to_owned(),
    };
    ActorError::new(SHELL_EXITED, format!("shell `{id}` {why} and takes no more input"))
        .with_metadata(serde_json::json!({ "shellId": id, "exitCode": shell.exit_code }))
}

/// The running VM with its registries. Shells live only in a running VM,
/// so without one every shell id is unknown (and no VM is booted for it).
fn running(call: &Call, id: &str) -> Result<(agentos_client::AgentOs, Arc<Live>), ActorError> {
    call.slot.running().ok_or_else(|| not_found(id))
}

/// Runs `f` on the shell `id` of the running VM.
fn with_shell<T>(call: &Call, id: &str, f: impl FnOnce(&mut ShellState) -> Result<T, ActorError>) -> Result<T, ActorError> {
    let (_, live) = running(call, id)?;
    let mut shells = lock(&live.shells);
    let shell = shells.get_mut(id).ok_or_else(|| not_found(id))?;
    f(shell)
}

/// Fails unless the shell still takes input.
fn accepting(id: &str, shell: &ShellState) -> Result<(), ActorError> {
    if shell.exit_code.is_some() || shell.closed { Err(exited(id, shell)) } else { Ok(()) }
}

fn u16_arg(value: u64) -> u16 {
    // The contract range-checked it.
    u16::try_from(value).unwrap_or(u16::MAX)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Opened {
    shell_id: String,
}

fn open_shell(call: Call) -> Reply {
    async move {
        let options = call.args.object(0)?;
        let request = state::OpenRequest {
            command: options.str("command"),
            args: options.str_list("args").unwrap_or_default(),
            env: options.str_map("env"),
            cwd: options.str("cwd"),
            cols: options.uint("cols").map(u16_arg),
            rows: options.uint("rows").map(u16_arg),
        };
        for (name, value) in [("cols", request.cols), ("rows", request.rows)] {
            if value == Some(0) {
                return Err(ActorError::invalid_argument(&format!("options.{name}"), "must be at least 1"));
            }
        }
        let (vm, live) = call.live().await?;
        let shell_id = state::open(&vm, &live, &call.host, request)?;
        reply(&Opened { shell_id })
    }
    .boxed()
}

fn write_shell(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let data = call.args.bytes(1)?;
        let taken = with_shell(&call, &id, |shell| {
            accepting(&id, shell)?;
            Ok(shell.write(data))
        })?;
        match taken.await {
            Ok(result) => result?,
            Err(_) => return Err(ActorError::new(code::VM_UNAVAILABLE, format!("the VM stopped before shell `{id}` took the input"))),
        }
        reply_null()
    }
    .boxed()
}

fn resize_shell(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let (cols, rows) = (u16_arg(call.args.uint(1)?), u16_arg(call.args.uint(2)?));
        for (name, value) in [("cols", cols), ("rows", rows)] {
            if value == 0 {
                return Err(ActorError::invalid_argument(name, "must be at least 1"));
            }
        }
        let (vm, live) = running(&call, &id)?;
        let mut shells = lock(&live.shells);
        let shell = shells.get_mut(&id).ok_or_else(|| not_found(&id))?;
        accepting(&id, shell)?;
        vm.resize_shell(&id, cols, rows).map_err(|e| ActorError::from_vm(e.into()))?;
        shell.resize(cols, rows);
        drop(shells);
        reply_null()
    }
    .boxed()
}

fn close_shell(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let (vm, live) = running(&call, &id)?;
        let mut shells = lock(&live.shells);
        let shell = shells.get_mut(&id).ok_or_else(|| not_found(&id))?;
        // Closing an ended shell changes nothing: the call is idempotent.
        if shell.exit_code.is_some() || shell.closed {
            return reply_null();
        }
        vm.close_shell(&id).map_err(|e| ActorError::from_vm(e.into()))?;
        shell.closed = true;
        drop(shells);
        reply_null()
    }
    .boxed()
}

fn wait_shell(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let mut exited = with_shell(&call, &id, |shell| Ok(shell.exited()))?;
        // Nothing of the VM is held while waiting, so a VM shutdown drops the
        // shell and ends this wait.
        drop(call);
        let code = exited.wait_for(Option::is_some).await.map(|code| *code);
        match code {
            Ok(Some(code)) => reply(&code),
            _ => Err(ActorError::new(code::VM_UNAVAILABLE, format!("the VM stopped before shell `{id}` exited"))),
        }
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ShellInfo {
    shell_id: String,
    command: String,
    args: Vec<String>,
    cols: u16,
    rows: u16,
    running: bool,
    exit_code: Option<i32>,
    last_seq: u64,
}

fn list(live: &Arc<Live>) -> Vec<ShellInfo> {
    let shells = lock(&live.shells);
    let mut list: Vec<(u64, ShellInfo)> = shells
        .iter()
        .map(|(id, s)| {
            let info = ShellInfo {
                shell_id: id.clone(),
                command: s.command.clone(),
                args: s.args.clone(),
                cols: s.cols,
                rows: s.rows,
                running: s.exit_code.is_none(),
                exit_code: s.exit_code,
                last_seq: s.output.last_seq(),
            };
            (s.order, info)
        })
        .collect();
    list.sort_by_key(|(order, _)| *order);
    list.into_iter().map(|(_, info)| info).collect()
}

fn list_shells(call: Call) -> Reply {
    async move {
        // Shells live only in a running VM: do not boot one to list none.
        let shells = match call.slot.running() {
            Some((_, live)) => list(&live),
            None => Vec::new(),
        };
        reply(&shells)
    }
    .boxed()
}

fn read_shell_output(call: Call) -> Reply {
    async move {
        let id = call.args.str(0)?;
        let after = call.args.opt_uint(1)?.unwrap_or(0);
        let (_, live) = running(&call, &id)?;
        let replay = lock(&live.shells).get(&id).map(|s| s.output.after(after)).ok_or_else(|| not_found(&id))?;
        reply(&replay)
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::testing::{bad as rejects, int, ok, text};
    use ciborium::Value;

    #[test]
    fn open_shell_arguments() {
        let opts = Value::Map(vec![
            (text("command"), text("bash")),
            (text("args"), Value::Array(vec![text("-i")])),
            (text("env"), Value::Map(vec![(text("A"), text("1"))])),
            (text("cwd"), text("/tmp")),
            (text("cols"), int(120)),
            (text("rows"), int(40)),
        ]);
        let args = ok("openShell", vec![opts]);
        let o = args.object(0).unwrap();
        assert_eq!((o.str("command").as_deref(), o.uint("cols"), o.uint("rows")), (Some("bash"), Some(120), Some(40)));
        ok("openShell", vec![]);
        let map = |k: &str, v: Value| vec![Value::Map(vec![(text(k), v)])];
        rejects("openShell", vec![text("sh")], "`options`");
        rejects("openShell", map("command", int(1)), "`options.command`");
        rejects("openShell", map("args", text("-i")), "`options.args`");
        rejects("openShell", map("env", Value::Map(vec![(text("A"), int(1))])), "`options.env.A`");
        rejects("openShell", map("cols", int(70000)), "`options.cols`");
        rejects("openShell", map("rows", int(-1)), "`options.rows`");
        rejects("openShell", map("shell", text("sh")), "`options.shell`");
        rejects("openShell", vec![Value::Map(vec![]), text("extra")], "too many arguments");
    }

    #[test]
    fn write_shell_arguments() {
        let args = ok("writeShell", vec![text("shell-1"), text("ls\n")]);
        assert_eq!(args.bytes(1).unwrap(), b"ls\n");
        rejects("writeShell", vec![], "`shellId`");
        rejects("writeShell", vec![text("shell-1")], "`data`");
        rejects("writeShell", vec![int(1), text("x")], "`shellId`");
        rejects("writeShell", vec![text("shell-1"), int(5)], "`data`");
        rejects("writeShell", vec![text("shell-1"), text("x"), text("y")], "too many arguments");
    }

    #[test]
    fn resize_shell_arguments() {
        ok("resizeShell", vec![text("shell-1"), int(100), int(30)]);
        rejects("resizeShell", vec![text("shell-1"), int(100)], "`rows`");
        rejects("resizeShell", vec![text("shell-1"), text("100"), int(30)], "`cols`");
        rejects("resizeShell", vec![text("shell-1"), int(100), int(65536)], "`rows`");
        rejects("resizeShell", vec![text("shell-1"), int(1), int(1), int(1)], "too many arguments");
    }

    #[test]
    fn id_only_and_list_arguments() {
        for action in ["closeShell", "waitShell"] {
            ok(action, vec![text("shell-1")]);
            rejects(action, vec![], "`shellId`");
            rejects(action, vec![Value::Bool(true)], "`shellId`");
            rejects(action, vec![text("shell-1"), text("x")], "too many arguments");
        }
        ok("listShells", vec![]);
        rejects("listShells", vec![text("x")], "too many arguments");
        let args = ok("readShellOutput", vec![text("shell-1"), int(7)]);
        assert_eq!(args.opt_uint(1).unwrap(), Some(7));
        rejects("readShellOutput", vec![], "`shellId`");
        rejects("readShellOutput", vec![text("shell-1"), text("7")], "`after`");
        rejects("readShellOutput", vec![text("shell-1"), int(-7)], "`after`");
        rejects("readShellOutput", vec![text("shell-1"), int(1), int(2)], "too many arguments");
    }

    #[test]
    fn wait_shell_is_detached_and_the_rest_are_not() {
        for action in SECTION.actions {
            assert_eq!(action.detached, action.name == "waitShell", "{}", action.name);
        }
    }
}
