//! A test's own stack serving the agentOS actor with a config of the
//! test's own: a plain one, or one that can run a coding agent (the
//! provisioned command set plus one agent package, reaching the fake LLM's
//! port on host loopback and nothing else outside).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{OwnStack, unique_key};

/// An [`OwnStack`] and the actor config file it serves (removed on drop).
pub struct ConfiguredStack {
    pub stack: OwnStack,
    config: PathBuf,
}

impl ConfiguredStack {
    /// Serves the actor with `config` (written to a temporary file);
    /// `extra_args` go to `serve`.
    pub fn start(binary: &Path, name: &str, config: &Value, extra_args: &[&str]) -> ConfiguredStack {
        let path = std::env::temp_dir().join(format!("{}.json", unique_key(name)));
        std::fs::write(&path, config.to_string()).unwrap();
        let config_arg = path.to_string_lossy().into_owned();
        let mut args = extra_args.to_vec();
        args.extend(["--actor-config", &config_arg]);
        ConfiguredStack { stack: OwnStack::start(binary, name, &args), config: path }
    }

    /// Serves an actor that can run a coding agent. `agent_package` names
    /// the package in `agentos provision --json` (`piPackage`,
    /// `claudeCodePackage`, `openCodePackage`); `extra_config` fields are
    /// added to the actor config.
    pub fn with_agent(
        binary: &Path,
        name: &str,
        agent_package: &str,
        llm_port: u16,
        extra_config: Value,
        extra_args: &[&str],
    ) -> ConfiguredStack {
        let done = provisioned(binary);
        let mut packages: Vec<Value> =
            done["commandPackages"].as_array().expect("commandPackages").iter().map(|p| json!({ "packagePath": p })).collect();
        let agent = done[agent_package].as_str().unwrap_or_else(|| panic!("provision --json names no {agent_package}"));
        packages.push(json!({ "packagePath": agent }));
        let mut config = json!({ "packages": packages, "loopbackExemptPorts": [llm_port] });
        if let (Some(config), Some(extra)) = (config.as_object_mut(), extra_config.as_object()) {
            config.extend(extra.clone());
        }
        ConfiguredStack::start(binary, name, &config, extra_args)
    }
}

impl Drop for ConfiguredStack {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config);
    }
}

/// What `agentos provision --json` reports (the cache is warm in tests).
pub fn provisioned(binary: &Path) -> Value {
    let out = std::process::Command::new(binary).args(["provision", "--json"]).output().expect("run agentos provision");
    assert!(out.status.success(), "provision failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("provision --json prints JSON")
}

/// For an agent that advertises no session config options: the options
/// list is empty and `setSessionMode`, `setSessionModel` and
/// `setSessionThoughtLevel` each answer `unsupported`, naming the agent.
pub async fn no_category_options(conn: &rivetkit_client::connection::ActorConnection, session: &str, agent: &str) {
    let config = conn.action("getSessionConfigOptions", vec![json!(session)]).await.unwrap();
    assert_eq!(config["options"], json!([]), "{config}");
    for (action, what) in [("setSessionMode", "mode"), ("setSessionModel", "model"), ("setSessionThoughtLevel", "thought-level")] {
        let error = conn.action(action, vec![json!(session), json!("plan")]).await.unwrap_err().to_string();
        assert!(error.contains("unsupported") && error.contains(&format!("agent `{agent}` offers no {what} option")), "{action}: {error}");
    }
}
