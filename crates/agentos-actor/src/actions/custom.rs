//! Custom actions declared in the config (`customActions`): each runs a
//! command in the VM with the call's input and replies with its output.
//!
//! The command gets the input as JSON on stdin and in `AGENTOS_ACTION_INPUT`
//! (absent input is `null`). A zero exit replies with stdout parsed as JSON,
//! or as text when it is not JSON; any other exit fails the call with
//! `command_failed`, carrying the exit code and stderr.

use agentos_client::ExecOptions;
use agentos_client::process::StdinInput;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::reply;
use crate::args::{ArgType, Field, opt};
use crate::contract::{ActionSpec, Call};
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// One `customActions` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomAction {
    /// The action name clients call (camelCase; must not shadow a built-in).
    pub name: String,
    /// The program to run (looked up on the VM's `PATH`).
    pub command: String,
    /// Arguments given before anything else.
    #[serde(default)]
    pub args: Vec<String>,
    /// Working directory (default `/workspace`).
    pub cwd: Option<String>,
    /// What the action does, for its callers.
    pub description: Option<String>,
    /// Kill the command after this many milliseconds.
    pub timeout_ms: Option<u64>,
}

const PARAMS: &[Field] = &[opt("input", ArgType::Json, "Any JSON value, given to the command on stdin.")];

/// Checks the declared actions (names unique, well formed, not built-in)
/// and turns each into a contract entry. The entries live as long as the
/// plugin: a config declares a handful, once per load.
pub fn specs(actions: &[CustomAction]) -> Result<Vec<&'static ActionSpec>, String> {
    let mut specs: Vec<&'static ActionSpec> = Vec::new();
    for action in actions {
        let name = action.name.as_str();
        let well_formed = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if !well_formed {
            return Err(format!("customActions: `{name}` must be camelCase letters and digits"));
        }
        if crate::contract::find(name).is_some() || name == crate::actions::cron::CRON_TICK.name {
            return Err(format!("customActions: `{name}` is a built-in action"));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(format!("customActions: `{name}` is declared twice"));
        }
        let summary = action.description.clone().unwrap_or_else(|| format!("Runs `{}` in the VM.", action.command));
        specs.push(Box::leak(Box::new(ActionSpec {
            name: Box::leak(name.to_owned().into_boxed_str()),
            summary: Box::leak(summary.into_boxed_str()),
            params: PARAMS,
            returns: "unknown",
            handler: run,
            detached: true,
        })));
    }
    Ok(specs)
}

fn run(call: Call) -> Reply {
    async move {
        let action = call
            .settings
            .config
            .custom_actions
            .iter()
            .find(|a| a.name == call.name)
            .cloned()
            .ok_or_else(|| ActorError::internal(format!("custom action `{}` vanished from the config", call.name)))?;
        let input = call.args.opt_json(0)?.unwrap_or(Value::Null).to_string();
        let defaults = ExecOptions::default();
        let options = ExecOptions {
            env: [("AGENTOS_ACTION".to_owned(), action.name.clone()), ("AGENTOS_ACTION_INPUT".to_owned(), input.clone())].into(),
            cwd: action.cwd.clone().or(defaults.cwd.clone()),
            stdin: Some(StdinInput::Text(input)),
            timeout: action.timeout_ms.map(|ms| ms as f64),
            ..defaults
        };
        let result = call
            .vm()
            .await?
            .exec_argv_process(&action.command, &action.args, options)
            .await
            .map_err(|e| ActorError::from_vm(e).with_command(&action.command))?;
        if result.exit_code != 0 {
            return Err(ActorError::new(
                "command_failed",
                format!("custom action `{}`: `{}` exited with {}: {}", action.name, action.command, result.exit_code, result.stderr.trim_end()),
            )
            .with_metadata(json!({ "exitCode": result.exit_code, "stderr": result.stderr, "stdout": result.stdout })));
        }
        let output = serde_json::from_str::<Value>(&result.stdout).unwrap_or(Value::String(result.stdout));
        reply(&output)
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(name: &str) -> CustomAction {
        CustomAction { name: name.into(), command: "echo".into(), args: vec![], cwd: None, description: None, timeout_ms: None }
    }

    #[test]
    fn declared_actions_become_contract_entries() {
        let specs = specs(&[action("deployPreview"), action("runTests")]).unwrap();
        assert_eq!(specs.iter().map(|s| s.name).collect::<Vec<_>>(), vec!["deployPreview", "runTests"]);
        assert!(specs[0].detached);
        assert!(specs[0].summary.contains("echo"));
    }

    #[test]
    fn bad_names_are_refused_with_the_name() {
        assert!(specs(&[action("readFile")]).unwrap_err().contains("`readFile` is a built-in"));
        assert!(specs(&[action("Run-it")]).unwrap_err().contains("`Run-it`"));
        assert!(specs(&[action("a"), action("a")]).unwrap_err().contains("declared twice"));
        assert!(specs(&[action("")]).unwrap_err().contains("camelCase"));
    }
}
