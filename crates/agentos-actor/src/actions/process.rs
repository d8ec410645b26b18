//! Process actions.

use agentos_client::ExecOptions;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::reply;
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, Section};
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

const EXEC_OPTIONS: &[Field] = &[
    opt("env", ArgType::StrMap, "Extra environment variables."),
    opt("cwd", ArgType::Str, "Working directory (default `/workspace`)."),
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
                opt("options", ArgType::Object(EXEC_OPTIONS), "Environment and working directory."),
            ],
            returns: "ExecResult",
            handler: exec,
            detached: true,
        },
    ],
    events: &[],
    types: &[("ExecResult", "{ exitCode: number; stdout: string; stderr: string }")],
};

/// A process a client spawned, kept while its VM runs.
pub struct ProcessState {
    pub output: crate::live::OutputLog,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecReply {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

pub fn exec(call: Call) -> Reply {
    async move {
        let command = call.args.str(0)?;
        let options = call.args.object(1)?;
        let exec_options = ExecOptions {
            env: options.str_map("env"),
            cwd: options.str("cwd"),
            ..ExecOptions::default()
        };
        let result = call
            .vm()
            .await?
            .exec_process(&command, exec_options)
            .await
            .map_err(|e| ActorError::from_vm(e).with_command(&command))?;
        reply(&ExecReply { exit_code: result.exit_code, stdout: result.stdout, stderr: result.stderr })
    }
    .boxed()
}
