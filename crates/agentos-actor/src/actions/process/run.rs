//! Work that runs to completion: commands (`exec`, `execArgv`) and code
//! (`executeCode`, `evaluateCode`). All are detached actions: later actions of
//! the actor run while they do.

use agentos_client::{
    CodeExecutionResult, ExecOptions, JavaScriptExecutionOptions, LanguageExecutionOptions, StdinInput,
    language_execution::{ExecutionOutputOptions, OutputCapture, TypeScriptExecutionOptions},
};
use futures::FutureExt;
use serde::Serialize;
use serde_json::Value;

use super::Reply;
use crate::actions::reply;
use crate::args::Fields;
use crate::contract::Call;
use crate::error::ActorError;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecReply {
    exit_code: i32,
    stdout: String,
    stderr: String,
}

fn exec_options(options: &Fields) -> ExecOptions {
    let mut exec = ExecOptions { env: options.str_map("env"), ..ExecOptions::default() };
    if let Some(cwd) = options.str("cwd") {
        exec.cwd = Some(cwd);
    }
    exec.stdin = options.bytes("stdin").map(StdinInput::Bytes);
    exec.timeout = options.uint("timeoutMs").map(|ms| ms as f64);
    exec
}

pub fn exec(call: Call) -> Reply {
    async move {
        let command = call.args.str(0)?;
        let options = exec_options(&call.args.object(1)?);
        let result = call
            .vm()
            .await?
            .exec_process(&command, options)
            .await
            .map_err(|e| ActorError::from_vm(e).with_command(&command))?;
        reply(&ExecReply { exit_code: result.exit_code, stdout: result.stdout, stderr: result.stderr })
    }
    .boxed()
}

pub fn exec_argv(call: Call) -> Reply {
    async move {
        let command = call.args.str(0)?;
        let args = call.args.str_list(1)?;
        let options = exec_options(&call.args.object(2)?);
        let result = call
            .vm()
            .await?
            .exec_argv_process(&command, &args, options)
            .await
            .map_err(|e| ActorError::from_vm(e).with_command(&command))?;
        reply(&ExecReply { exit_code: result.exit_code, stdout: result.stdout, stderr: result.stderr })
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CodeError {
    code: String,
    name: String,
    message: String,
    stack: Option<String>,
}

/// A finished code run. A program that throws is a result with outcome
/// `failed` and `error`, not a failed action: the action failed only when
/// the engine could not run it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CodeReply {
    outcome: String,
    exit_code: Option<i32>,
    stdout: String,
    stderr: String,
    stdout_truncated: bool,
    stderr_truncated: bool,
    error: Option<CodeError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

/// The engine's outcome enum as the contract's lower-camel string.
fn outcome_name(result: &CodeExecutionResult) -> String {
    match serde_json::to_value(&result.outcome) {
        Ok(Value::String(name)) => {
            let mut chars = name.chars();
            chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
        }
        _ => format!("{:?}", result.outcome),
    }
}

fn code_reply(result: CodeExecutionResult, value: Option<Value>) -> CodeReply {
    let text = |bytes: &Option<Vec<u8>>| String::from_utf8_lossy(bytes.as_deref().unwrap_or_default()).into_owned();
    CodeReply {
        outcome: outcome_name(&result),
        exit_code: result.exit_code,
        stdout: text(&result.stdout),
        stderr: text(&result.stderr),
        stdout_truncated: result.stdout_truncated.unwrap_or(false),
        stderr_truncated: result.stderr_truncated.unwrap_or(false),
        error: result.error.map(|e| CodeError { code: e.code, name: e.name, message: e.message, stack: e.stack }),
        value,
    }
}

fn language_options(options: &Fields) -> LanguageExecutionOptions {
    LanguageExecutionOptions {
        cwd: options.str("cwd"),
        env: options.str_map("env").into_iter().collect(),
        stdin: options.bytes("stdin"),
        timeout_ms: options.uint("timeoutMs"),
        output: ExecutionOutputOptions { capture: OutputCapture::All, retain_events: false },
        ..LanguageExecutionOptions::default()
    }
}

/// Runs or evaluates code; `evaluate` adds the expression's JSON value.
async fn run_code(call: Call, evaluate: bool) -> Result<Vec<u8>, ActorError> {
    let language = call.args.str(0)?;
    let source = call.args.str(1)?;
    let process = language_options(&call.args.object(2)?);
    let vm = call.vm().await?;
    let failed = |e: agentos_client::ClientError| {
        ActorError::from_vm(e.into()).with_field("language", language.as_str())
    };
    let result = match (language.as_str(), evaluate) {
        ("javascript", false) => {
            let options = JavaScriptExecutionOptions { inline: inline(process), ..Default::default() };
            code_reply(vm.execute_javascript(source, options).await.map_err(failed)?, None)
        }
        ("javascript", true) => {
            let options = JavaScriptExecutionOptions { inline: inline(process), ..Default::default() };
            let evaluated = vm.evaluate_javascript(source, options).await.map_err(failed)?;
            code_reply(evaluated.result, Some(evaluated.value.unwrap_or(Value::Null)))
        }
        ("typescript", false) => {
            let options = TypeScriptExecutionOptions { inline: inline(process), ..Default::default() };
            code_reply(vm.execute_typescript(source, options).await.map_err(failed)?, None)
        }
        ("typescript", true) => {
            let options = TypeScriptExecutionOptions { inline: inline(process), ..Default::default() };
            let evaluated = vm.evaluate_typescript(source, options).await.map_err(failed)?;
            code_reply(evaluated.result, Some(evaluated.value.unwrap_or(Value::Null)))
        }
        (other, _) => return Err(ActorError::invalid_argument("language", format!("`{other}` is not supported"))),
    };
    reply(&result)
}

fn inline(process: LanguageExecutionOptions) -> agentos_client::InlineExecutionOptions {
    agentos_client::InlineExecutionOptions { process, inputs: None }
}

pub fn execute_code(call: Call) -> Reply {
    run_code(call, false).boxed()
}

pub fn evaluate_code(call: Call) -> Reply {
    run_code(call, true).boxed()
}
