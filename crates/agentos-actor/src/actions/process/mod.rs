//! Process actions: run commands to completion (`exec`, `execArgv`), run
//! code (`executeCode`, `evaluateCode`), and spawn long-running processes
//! whose output streams to clients as events and stays replayable from a
//! bounded log (`spawn`, `readProcessOutput`, ...).
//!
//! Submodules: `run` (to-completion work), `spawn` (spawned processes and
//! their output pumps), `stdin` (ordered stdin delivery), `manage`
//! (inspection and signals).

mod manage;
mod run;
mod spawn;
mod stdin;

use futures::future::BoxFuture;
use serde_json::json;

use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, EventSpec, Section};
use crate::error::{ActorError, code};

pub use spawn::ProcessState;
pub use stdin::StdinLane;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

const PID: Field = req("pid", ArgType::U32, "A pid returned by `spawn`.");

/// Options of `exec` and `execArgv` (ExecOptions of agentos-client 0.2.21).
/// `cpuTimeLimitMs` is deliberately absent: the 0.2.21 client accepts the
/// field but never sends it to the sidecar, so it would be a silent no-op.
const EXEC_OPTIONS: &[Field] = &[
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory (default `/workspace`)."),
    opt("stdin", ArgType::Bytes, "Data the command reads on stdin; stdin is closed after it."),
    opt("timeoutMs", ArgType::U32, "Kill the command (SIGKILL) after this many milliseconds."),
];

const SPAWN_OPTIONS: &[Field] = &[
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory."),
    opt(
        "streamStdin",
        ArgType::Bool,
        "Keep stdin open for `writeProcessStdin` (default true); false closes it after `stdin`.",
    ),
    opt("stdin", ArgType::Bytes, "Initial stdin data, delivered once the process runs."),
];

const LANGUAGES: &[&str] = &["javascript", "typescript"];

const CODE_OPTIONS: &[Field] = &[
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory."),
    opt("stdin", ArgType::Bytes, "Data the code reads on stdin."),
    opt("timeoutMs", ArgType::U32, "Stop the run after this many milliseconds (outcome `timedOut`)."),
];

/// The process area of the contract.
pub static SECTION: Section = Section {
    area: "Processes",
    actions: &[
        ActionSpec {
            name: "exec",
            summary: "Run a command line (shell syntax allowed) to completion and return its output.",
            params: &[
                req("command", ArgType::Str, "The command line."),
                opt("options", ArgType::Object(EXEC_OPTIONS), "Environment, working directory, stdin, timeout."),
            ],
            returns: "ExecResult",
            handler: run::exec,
            detached: true,
        },
        ActionSpec {
            name: "execArgv",
            summary: "Run a command with an exact argument vector (no shell parsing) to completion.",
            params: &[
                req("command", ArgType::Str, "The program."),
                req("args", ArgType::StrList, "Its arguments, passed verbatim."),
                opt("options", ArgType::Object(EXEC_OPTIONS), "Environment, working directory, stdin, timeout."),
            ],
            returns: "ExecResult",
            handler: run::exec_argv,
            detached: true,
        },
        ActionSpec {
            name: "executeCode",
            summary: "Run a JavaScript or TypeScript program in the VM's V8 (Node 22 API) and return its output. One action with a `language` argument mirrors the engine's per-language execute calls; Python is absent because engine 0.2.21 ships no Python runtime.",
            params: &[
                req("language", ArgType::OneOf(LANGUAGES), "The source language."),
                req("code", ArgType::Str, "The program source (an ES module)."),
                opt("options", ArgType::Object(CODE_OPTIONS), "Environment, working directory, stdin, timeout."),
            ],
            returns: "CodeResult",
            handler: run::execute_code,
            detached: true,
        },
        ActionSpec {
            name: "evaluateCode",
            summary: "Evaluate a JavaScript or TypeScript expression and return its JSON value with the run's output.",
            params: &[
                req("language", ArgType::OneOf(LANGUAGES), "The source language."),
                req("expression", ArgType::Str, "The expression to evaluate."),
                opt("options", ArgType::Object(CODE_OPTIONS), "Environment, working directory, stdin, timeout."),
            ],
            returns: "EvaluationResult",
            handler: run::evaluate_code,
            detached: true,
        },
        ActionSpec {
            name: "spawn",
            summary: "Start a process; its output arrives as `processOutput` events (also kept for `readProcessOutput`) and its end as `processExit`. No PTY: engine 0.2.21 spawns processes on pipes only (use a shell for a terminal).",
            params: &[
                req("command", ArgType::Str, "The program."),
                req("args", ArgType::StrList, "Its arguments."),
                opt("options", ArgType::Object(SPAWN_OPTIONS), "Environment, working directory, stdin."),
            ],
            returns: "{ pid: number }",
            handler: spawn::spawn,
            detached: false,
        },
        ActionSpec {
            name: "waitProcess",
            summary: "Wait for a spawned process to exit and return its exit code (after its last `processOutput`).",
            params: &[PID],
            returns: "number",
            handler: manage::wait_process,
            detached: true,
        },
        ActionSpec {
            name: "killProcess",
            summary: "Send SIGKILL to a spawned process, once it runs and after its earlier stdin operations (no-op once it exited).",
            params: &[PID],
            returns: "null",
            handler: manage::kill_process,
            detached: false,
        },
        ActionSpec {
            name: "stopProcess",
            summary: "Send SIGTERM to a spawned process, once it runs and after its earlier stdin operations (no-op once it exited).",
            params: &[PID],
            returns: "null",
            handler: manage::stop_process,
            detached: false,
        },
        ActionSpec {
            name: "getProcess",
            summary: "Describe one spawned process.",
            params: &[PID],
            returns: "SpawnedProcessInfo",
            handler: manage::get_process,
            detached: false,
        },
        ActionSpec {
            name: "listProcesses",
            summary: "List the processes clients spawned in the running VM (none while it is not booted).",
            params: &[],
            returns: "SpawnedProcessInfo[]",
            handler: manage::list_processes,
            detached: false,
        },
        ActionSpec {
            name: "allProcesses",
            summary: "List the VM kernel's whole process table (none while the VM is not booted).",
            params: &[],
            returns: "ProcessInfo[]",
            handler: manage::all_processes,
            detached: false,
        },
        ActionSpec {
            name: "processTree",
            summary: "The kernel process table as a forest linked by parent pid.",
            params: &[],
            returns: "ProcessTreeNode[]",
            handler: manage::process_tree,
            detached: false,
        },
        ActionSpec {
            name: "writeProcessStdin",
            summary: "Write to a spawned process's stdin. Writes are delivered in order and only once the process runs; the reply comes when the data was handed to the VM.",
            params: &[PID, req("data", ArgType::Bytes, "The bytes (text is sent as UTF-8).")],
            returns: "null",
            handler: stdin::write_process_stdin,
            detached: false,
        },
        ActionSpec {
            name: "closeProcessStdin",
            summary: "Close a spawned process's stdin (after every earlier write), so it reads end of file.",
            params: &[PID],
            returns: "null",
            handler: stdin::close_process_stdin,
            detached: false,
        },
        ActionSpec {
            name: "readProcessOutput",
            summary: "Replay a spawned process's output after sequence number `after` (default 0: all that is kept). The log keeps the newest 1 MiB; `missed` counts chunks dropped before they could be replayed.",
            params: &[PID, opt("after", ArgType::U64, "The last `seq` the client already has.")],
            returns: "Replay",
            handler: manage::read_process_output,
            detached: false,
        },
    ],
    events: &[
        EventSpec {
            name: "processOutput",
            summary: "A chunk of a spawned process's output; `seq` numbers the process's chunks from 1 (the `readProcessOutput` cursor).",
            payload: "{ pid: number; seq: number; stream: \"stdout\" | \"stderr\"; data: Uint8Array }",
        },
        EventSpec {
            name: "processExit",
            summary: "A spawned process exited; sent after its last `processOutput`.",
            payload: "{ pid: number; exitCode: number }",
        },
    ],
    types: &[
        ("ExecResult", "{ exitCode: number; stdout: string; stderr: string }"),
        (
            "CodeResult",
            "{ outcome: \"succeeded\" | \"failed\" | \"cancelled\" | \"timedOut\"; exitCode: number | null; stdout: string; stderr: string; stdoutTruncated: boolean; stderrTruncated: boolean; error: { code: string; name: string; message: string; stack: string | null } | null }",
        ),
        ("EvaluationResult", "CodeResult & { value: unknown }"),
        (
            "SpawnedProcessInfo",
            "{ pid: number; command: string; args: string[]; running: boolean; exitCode: number | null; startedAt: number }",
        ),
        (
            "ProcessInfo",
            "{ pid: number; ppid: number; pgid: number; sid: number; driver: string; command: string; args: string[]; cwd: string; status: \"running\" | \"exited\"; exitCode: number | null; startTime: number; exitTime: number | null }",
        ),
        ("ProcessTreeNode", "ProcessInfo & { children: ProcessTreeNode[] }"),
        ("OutputChunk", "{ seq: number; stream: \"stdout\" | \"stderr\"; data: Uint8Array }"),
        ("Replay", "{ chunks: OutputChunk[]; lastSeq: number; missed: number }"),
    ],
};

/// The error for a pid no spawned process has (in the running VM).
pub(crate) fn process_not_found(pid: u32) -> ActorError {
    ActorError::new(code::NOT_FOUND, format!("no spawned process with pid {pid} in this actor's VM"))
        .with_metadata(json!({ "pid": pid }))
}

/// The error for stdin work on a process that already ended.
pub(crate) fn process_exited(pid: u32) -> ActorError {
    ActorError::new(code::PROCESS_EXITED, format!("process {pid} has already exited"))
        .with_metadata(json!({ "pid": pid }))
}

/// Maps a client failure about one pid: an unknown pid is `not_found`.
pub(crate) fn pid_error(pid: u32, error: agentos_client::ClientError) -> ActorError {
    match error {
        agentos_client::ClientError::ProcessNotFound(_) => process_not_found(pid),
        other => ActorError::from_vm(other.into()).with_field("pid", pid),
    }
}

/// The pid argument (the contract bounds it to u32).
fn pid_arg(call: &crate::contract::Call) -> Result<u32, ActorError> {
    let pid = call.args.uint(0)?;
    u32::try_from(pid).map_err(|_| ActorError::invalid_argument("pid", "is out of range"))
}

#[cfg(test)]
mod tests;
