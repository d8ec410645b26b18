//! Process actions.

use agentos_client::ExecOptions;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::reply;
use crate::contract::Call;
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

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
