//! Software, agents, runtime health and config-declared custom actions,
//! against the real engine, host and sidecar.

use std::path::Path;

use rivetkit_client::GetOrCreateOptions;
use serde_json::{Value, json};
use testkit::{ConfiguredStack, unique_key};

#[tokio::test]
async fn software_agents_and_health() {
    let os = testkit::client()
        .get_or_create("agentOS", vec![unique_key("system")], GetOrCreateOptions::default())
        .unwrap();
    // Health never boots the VM.
    let health = os.action("getRuntimeHealth", vec![]).await.unwrap();
    assert_eq!(health, json!({ "booted": false, "sidecar": null, "processes": 0, "shells": 0 }));

    let software = os.action("listSoftware", vec![]).await.unwrap();
    let commands: Vec<&str> = software
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["commands"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()))
        .collect();
    assert!(commands.contains(&"ls") && commands.contains(&"tar"), "{software}");
    assert!(software.as_array().unwrap().iter().all(|p| p["package"].is_string()), "{software}");

    let agents = os.action("listAgents", vec![]).await.unwrap();
    assert!(agents.as_array().unwrap().iter().all(|a| a["id"].is_string() && a["installed"].is_boolean()), "{agents}");

    let health = os.action("getRuntimeHealth", vec![]).await.unwrap();
    assert_eq!(health["booted"], json!(true), "{health}");
    assert_eq!(health["sidecar"]["state"], json!("ready"), "{health}");
    assert!(health["sidecar"]["activeVmCount"].as_u64().unwrap() >= 1, "{health}");

    let e = os.action("getRuntimeHealth", vec![json!(1)]).await.unwrap_err();
    assert!(format!("{e:#}").contains("too many arguments"), "{e:#}");
}

/// An own host whose config declares the custom actions `greet` (node
/// reading its JSON input), `fails` (exits 4), `plain` (prints text) and
/// `whereAmI` (cwd /tmp).
fn custom_actions_stack() -> ConfiguredStack {
    let greet = "let d = ''; process.stdin.on('data', c => d += c).on('end', () => { const i = JSON.parse(d); \
                 console.log(JSON.stringify({ hello: i.name, action: process.env.AGENTOS_ACTION, same: process.env.AGENTOS_ACTION_INPUT === d })); });";
    let config = json!({ "customActions": [
        { "name": "greet", "command": "node", "args": ["-e", greet], "description": "Says hello." },
        { "name": "fails", "command": "sh", "args": ["-c", "echo nope >&2; exit 4"] },
        { "name": "plain", "command": "echo", "args": ["just text"] },
        { "name": "whereAmI", "command": "node", "args": ["-e", "console.log(process.cwd())"], "cwd": "/tmp" },
    ] });
    ConfiguredStack::start(Path::new(env!("CARGO_BIN_EXE_agentos")), "custom", &config, &[])
}

#[tokio::test]
async fn custom_actions_run_their_command_with_the_input() {
    let configured = custom_actions_stack();
    let os = configured.stack.actor(&unique_key("custom"));

    let hello = os.action("greet", vec![json!({ "name": "ada" })]).await.unwrap();
    assert_eq!(hello, json!({ "hello": "ada", "action": "greet", "same": true }));
    assert_eq!(os.action("plain", vec![]).await.unwrap(), json!("just text\n"));
    assert_eq!(os.action("whereAmI", vec![]).await.unwrap(), json!("/tmp\n"));
    let e = format!("{:#}", os.action("fails", vec![]).await.unwrap_err());
    assert!(e.contains("exited with 4") && e.contains("nope"), "{e}");
    let e = format!("{:#}", os.action("greet", vec![json!(1), json!(2)]).await.unwrap_err());
    assert!(e.contains("too many arguments"), "{e}");
    // Built-ins are untouched.
    assert_eq!(os.action("exists", vec![json!("/tmp")]).await.unwrap(), Value::Bool(true));
}

#[test]
fn typescript_client_calls_custom_actions() {
    let configured = custom_actions_stack();
    testkit::run_ts_suite_on(&configured.stack.host.endpoint(), "custom-actions.test.mjs", 1, &[]);
}

/// Whether `tar` packs and lists a file in the actor's VM.
async fn tar_runs(os: &rivetkit_client::handle::ActorHandle) -> bool {
    let script = "echo hi > /tmp/a.txt && tar -cf /tmp/a.tar -C /tmp a.txt && tar -tf /tmp/a.tar";
    match os.action("exec", vec![json!(script)]).await {
        Ok(out) => out["exitCode"] == json!(0) && out["stdout"] == json!("a.txt\n"),
        Err(_) => false,
    }
}

/// `linkSoftware` adds a package the config allows to the running VM, and
/// it is there again after the actor sleeps (linked at boot); a name the
/// config does not list is refused. The test's VM leaves `tar` out of its
/// packages and offers it for linking instead.
#[tokio::test]
async fn link_software_adds_an_allowed_package_for_good() {
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let done = testkit::provisioned(binary);
    let (tar, rest): (Vec<&Value>, Vec<&Value>) = done["commandPackages"]
        .as_array()
        .unwrap()
        .iter()
        .partition(|p| p.as_str().unwrap().contains("agentos-software_tar@"));
    assert_eq!(tar.len(), 1, "{done}");
    let packages: Vec<Value> = rest.iter().map(|p| json!({ "packagePath": p })).collect();
    let config = json!({ "packages": packages, "linkablePackages": { "tar": tar[0] } });
    let configured = ConfiguredStack::start(binary, "link", &config, &["--sleep-after-secs", "3"]);
    let stack = &configured.stack;
    let os = stack.actor(&unique_key("link"));
    assert!(!tar_runs(&os).await, "tar is not in the VM before it is linked");

    let e = os.action("linkSoftware", vec![json!("../tar")]).await.unwrap_err().to_string();
    assert!(e.contains("not a linkable package") && e.contains("`name`") && e.contains("tar"), "{e}");
    let e = os.action("linkSoftware", vec![json!(7)]).await.unwrap_err().to_string();
    assert!(e.contains("invalid_argument") && e.contains("`name`"), "{e}");
    let e = os.action("linkSoftware", vec![]).await.unwrap_err().to_string();
    assert!(e.contains("invalid_argument") && e.contains("`name`"), "{e}");

    let software = os.action("linkSoftware", vec![json!("tar")]).await.unwrap();
    let has_tar = |software: &Value| {
        software.as_array().unwrap().iter().any(|p| p["commands"].as_array().unwrap().iter().any(|c| c == "tar"))
    };
    assert!(has_tar(&software), "{software}");
    assert!(tar_runs(&os).await, "tar runs once linked");
    // Linking again changes nothing.
    let again = os.action("linkSoftware", vec![json!("tar")]).await.unwrap();
    assert!(has_tar(&again), "{again}");

    // A VM booted later (after sleep) has it too.
    stack.wait_asleep(&os).await;
    assert!(tar_runs(&os).await, "tar runs after sleep and wake");
    assert!(has_tar(&os.action("listSoftware", vec![]).await.unwrap()));
}
