//! The `agentos` binary's user-facing behaviour: its options and errors, and
//! `agentos call` against the shared test host.

use std::process::{Command, Stdio};
use std::time::Duration;

fn agentos() -> Command {
    Command::new(env!("CARGO_BIN_EXE_agentos"))
}

fn run(command: &mut Command) -> (bool, String, String) {
    let out = testkit::run_with_limit(command, Duration::from_secs(120)).expect("run agentos");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn serve_help_explains_every_option() {
    let (ok, help, _) = run(agentos().args(["serve", "--help"]));
    assert!(ok);
    for flag in [
        "--data-dir",
        "--port",
        "--engine-endpoint",
        "--namespace",
        "--pool",
        "--token",
        "--actor-name",
        "--plugin",
        "--extra-plugin",
        "--loopback-exempt-port",
        "--actor-config",
        "--sleep-after-secs",
        "--cache-dir",
    ] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag) || l.contains(&format!(" {flag}")));
        let line = line.unwrap_or_else(|| panic!("`serve --help` does not list {flag}:\n{help}"));
        // Each option is followed by its explanation (same or next line).
        let index = help.find(line).unwrap();
        let explained = help[index..].lines().take(2).collect::<String>();
        assert!(explained.len() > flag.len() + 20, "{flag} has no explanation:\n{help}");
    }
    let (ok, top, _) = run(agentos().arg("--help"));
    assert!(ok);
    for command in ["serve", "provision", "call"] {
        assert!(top.contains(command), "top-level help lacks {command}:\n{top}");
    }
}

#[test]
fn a_bad_actor_config_fails_fast_naming_the_field() {
    let dir = std::env::temp_dir().join(testkit::unique_key("cli-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("actor.json");
    std::fs::write(&config, r#"{"toolkits": [], "loopbackExemptPorts": [1]}"#).unwrap();
    let (ok, stdout, stderr) = run(agentos()
        .args(["serve", "--port", "1", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--actor-config")
        .arg(&config));
    std::fs::remove_dir_all(&dir).ok();
    assert!(!ok, "serve must fail: {stdout}{stderr}");
    assert!(stderr.contains("unknown field `toolkits`"), "{stderr}");
    assert!(!stderr.contains("engine pid"), "nothing may be started before the config is valid: {stderr}");
}

#[test]
fn a_malformed_extra_plugin_spec_is_explained() {
    let (ok, _, stderr) = run(agentos().args(["serve", "--port", "1", "--extra-plugin", "no-equals-sign"]));
    assert!(!ok);
    assert!(stderr.contains("must be NAME=PATH"), "{stderr}");
}

/// `agentos call` against the shared test host: a result is printed as
/// JSON, a failed action exits 1 naming the error, and a reader that stops
/// early (`| head`) is not an error.
#[test]
fn call_prints_results_and_errors() {
    let endpoint = testkit::endpoint();
    let key = testkit::unique_key("cli-call");
    let call = |args: &[&str]| {
        let mut command = agentos();
        command.args(["call", "--endpoint", &endpoint, &key]).args(args);
        command
    };
    let (ok, stdout, stderr) = run(call(&["exec", "echo hi-$((20+22))"]).stdin(Stdio::null()));
    assert!(ok, "{stderr}");
    let out: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!((out["exitCode"].as_i64(), out["stdout"].as_str()), (Some(0), Some("hi-42\n")), "{out}");

    let (ok, _, stderr) = run(call(&["readFile", "/no/such/file"]).stdin(Stdio::null()));
    assert!(!ok && stderr.contains("ENOENT") && stderr.contains("/no/such/file"), "{stderr}");

    // The reading end is closed before the result is printed.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = call(&["exists", "/tmp"]).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).spawn().unwrap();
    let status = testkit::wait_with_limit(&mut child, Duration::from_secs(120)).expect("agentos call ends");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success() && !stderr.contains("panicked"), "{status:?} {stderr}");
}
