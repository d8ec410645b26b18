//! Agent sessions with an agent that asks permission and speaks MCP: the
//! real Claude Code agent (`@agentos-software/claude-code`) in the VM
//! against the fake LLM on 127.0.0.1 (reached only through
//! `loopbackExemptPorts`; every other egress is denied).
//!
//! (a) The permission round trip: policy `ask`, the model asks for an
//! `Edit` that creates a file; the client gets `permissionRequest`, sees it in
//! `listPendingPermissions`, answers it, and the tool runs (or not).
//! (b) MCP servers reach the agent: an MCP server given at `createSession`
//! shows up among the tools the agent offers the model, and calling it
//! brings the server's answer back to the model.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use testkit::fake_llm::FakeLlm;
use testkit::{ConfiguredStack, eventually, record_events, unique_key};

const WORKSPACE: &str = "/home/agentos/workspace";
/// The MCP server script, written into the VM by the test.
const MCP_SERVER: &str = include_str!("fixtures/mcp_server.mjs");
const MCP_SECRET: &str = "MCP-SECRET-7F3A";
/// Where the MCP server listens inside the VM (guest loopback only).
const MCP_PORT: u16 = 7701;

/// The guest reaches the fake LLM's port on host loopback and nothing else:
/// no provider host is allowed, so a request that bypassed the fake would
/// fail.
fn no_provider_hosts() -> Value {
    json!({ "network": { "allowHosts": [] } })
}

/// What Claude Code needs to talk to the fake: the provider endpoint and a
/// key, a home, and no background traffic (update checks, telemetry,
/// error reports) that would only fail against a denied network.
fn claude_env(llm: &FakeLlm) -> Value {
    json!({
        "ANTHROPIC_BASE_URL": llm.base_url(),
        "ANTHROPIC_API_KEY": "test-key",
        "HOME": "/home/agentos",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
    })
}

/// Waits for a `permissionRequest` of `session` not in `seen` yet.
async fn next_request(requests: &Arc<Mutex<Vec<Value>>>, session: &str, seen: usize) -> Value {
    eventually(Duration::from_secs(120), "a permissionRequest from the agent", || async {
        let all: Vec<Value> = requests.lock().unwrap().iter().filter(|r| r["sessionId"] == json!(session)).cloned().collect();
        all.get(seen).cloned()
    })
    .await
}

/// Starts `sendPrompt` on its own connection; the turn waits on the
/// permission answer, so it cannot be awaited inline.
fn prompt_in_background(
    os: &rivetkit_client::handle::ActorHandle,
    session: &str,
    text: &str,
) -> tokio::task::JoinHandle<Value> {
    let conn = os.connect();
    let (session, text) = (session.to_owned(), text.to_owned());
    tokio::spawn(async move {
        let reply = conn.action("sendPrompt", vec![json!(session), json!(text)]).await;
        conn.disconnect().await;
        reply.unwrap_or_else(|e| panic!("sendPrompt {text}: {e}"))
    })
}

async fn turn_end(turn: tokio::task::JoinHandle<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(180), turn).await.expect("the turn ends").expect("the prompt task")
}

/// Claude Code `Edit` input that creates `path` with `content`.
fn create_file(path: &str, content: &str) -> Value {
    json!({ "file_path": path, "old_string": "", "new_string": content })
}

#[tokio::test]
async fn claude_code_asks_permission_and_the_answer_decides_whether_the_tool_runs() {
    let llm = FakeLlm::start().await.unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let agents = ConfiguredStack::with_agent(binary, "session-permissions", "claudeCodePackage", llm.port(), no_provider_hosts(), &[]);
    let stack = &agents.stack;
    let os = stack.actor(&unique_key("session-permissions"));
    let conn = os.connect();
    let (requests, _r) = record_events(&conn, "permissionRequest").await;
    let (resolved, _s) = record_events(&conn, "permissionResolved").await;

    conn.action("mkdir", vec![json!(WORKSPACE), json!({ "recursive": true })]).await.unwrap();
    let options = json!({
        "sessionId": "ask", "cwd": WORKSPACE, "skipOsInstructions": true,
        "permissionPolicy": "ask", "env": claude_env(&llm),
    });
    let created = conn.action("createSession", vec![json!("claude"), options]).await;
    let created = created.unwrap_or_else(|e| panic!("createSession claude: {e}\nhost stderr:\n{}", stack.host.stderr_text()));
    assert_eq!(created, json!("ask"));

    // 1. Allowed once: the agent's edit runs after the answer. (The package
    // runs Claude Code in its "simple" mode, whose tools are Bash, Edit and
    // Read; an Edit with an empty `old_string` creates the file.)
    let allowed = format!("{WORKSPACE}/allowed.txt");
    let write_id = llm.push_tool_use("Edit", create_file(&allowed, "written-after-consent\n"));
    llm.push_text("DONE-ALLOWED");
    let turn = prompt_in_background(&os, "ask", "Create allowed.txt.");
    let request = next_request(&requests, "ask", 0).await;
    let permission_id = request["permissionId"].as_str().expect("a permissionId").to_owned();
    let option_kinds: Vec<&str> = request["options"].as_array().unwrap().iter().filter_map(|o| o["kind"].as_str()).collect();
    assert!(option_kinds.contains(&"allow_once") && option_kinds.iter().any(|k| k.starts_with("reject")), "{request}");
    assert_eq!(request["toolCall"]["toolCallId"], json!(write_id), "{request}");
    // Nothing was written while the question is open.
    assert_eq!(conn.action("exists", vec![json!(allowed)]).await.unwrap(), json!(false));

    let pending = conn.action("listPendingPermissions", vec![]).await.unwrap();
    let listed: Vec<&Value> = pending.as_array().unwrap().iter().filter(|p| p["permissionId"] == json!(permission_id)).collect();
    assert_eq!(listed.len(), 1, "{pending}");
    assert_eq!(listed[0]["sessionId"], json!("ask"));
    assert_eq!(listed[0]["options"], request["options"]);

    // A reply that names no offered option is refused before anything is sent.
    let bad = conn.action("respondPermission", vec![json!("ask"), json!(permission_id), json!("maybe")]).await.unwrap_err();
    assert!(bad.to_string().contains("argument `reply`") && bad.to_string().contains("maybe"), "{bad}");
    let answered = conn.action("respondPermission", vec![json!("ask"), json!(permission_id), json!("once")]).await.unwrap();
    assert_eq!(answered, json!({ "status": "accepted" }));

    let reply = turn_end(turn).await;
    assert_eq!(reply["text"], json!("DONE-ALLOWED"), "{reply}");
    let file = conn.action("readFile", vec![json!(allowed)]).await.unwrap();
    assert_eq!(testkit::bytes_of(&file), b"written-after-consent\n");
    let results = llm.model_requests().pop().expect("a model request").tool_results();
    assert!(results.iter().any(|(id, _, error)| id == &write_id && !error), "{results:?}");
    let done = eventually(Duration::from_secs(10), "permissionResolved for the allowed request", || async {
        resolved.lock().unwrap().iter().find(|r| r["permissionId"] == json!(permission_id)).cloned()
    })
    .await;
    assert_eq!((done["sessionId"].clone(), done["status"].clone()), (json!("ask"), json!("accepted")), "{done}");
    assert_eq!(done["outcome"]["optionId"], json!("allow_once"), "{done}");
    let again = conn.action("respondPermission", vec![json!("ask"), json!(permission_id), json!("once")]).await.unwrap_err();
    assert!(again.to_string().contains("no pending permission request"), "answering twice: {again}");

    // 2. Rejected: the edit never runs and the model hears it was denied.
    let rejected = format!("{WORKSPACE}/rejected.txt");
    let write_id = llm.push_tool_use("Edit", create_file(&rejected, "must-not-exist\n"));
    llm.push_text("DONE-REJECTED");
    let turn = prompt_in_background(&os, "ask", "Create rejected.txt.");
    let request = next_request(&requests, "ask", 1).await;
    let permission_id = request["permissionId"].as_str().unwrap().to_owned();
    let answered = conn.action("respondPermission", vec![json!("ask"), json!(permission_id), json!("reject")]).await.unwrap();
    assert_eq!(answered, json!({ "status": "accepted" }));
    let reply = turn_end(turn).await;
    let results = llm.model_requests().pop().expect("a model request").tool_results();
    assert!(results.iter().any(|(id, _, error)| id == &write_id && *error), "the model hears of the denial: {results:?} ({reply})");
    assert_eq!(conn.action("exists", vec![json!(rejected)]).await.unwrap(), json!(false));
    let done = eventually(Duration::from_secs(10), "permissionResolved for the rejected request", || async {
        resolved.lock().unwrap().iter().find(|r| r["permissionId"] == json!(permission_id)).cloned()
    })
    .await;
    assert_eq!(done["outcome"]["optionId"], json!("reject_once"), "{done}");
    assert_eq!(conn.action("listPendingPermissions", vec![]).await.unwrap(), json!([]));

    // Every model call went to the fake (nothing else was reachable).
    assert!(llm.model_requests().iter().all(|r| r.header("x-api-key") == Some("test-key")));
    conn.disconnect().await;
}

/// An MCP server given at `createSession` reaches Claude Code: its tool is
/// among the tools the agent offers the model (Claude Code names MCP tools
/// `mcp__<server>__<tool>`; the package's adapter names servers `mcp-1`,
/// `mcp-2`, ... in the order given), and calling it brings the server's
/// answer back to the model.
///
/// The server runs in the VM and is given as an ACP `http` server: the
/// adapter of `@agentos-software/claude-code` 0.2.7 turns every server
/// without `type: "local"` into an HTTP one, and ACP's stdio servers carry
/// no `type`, so a stdio server reaches Claude Code as HTTP with an empty
/// URL and never starts. `session_mcp.rs` proves stdio MCP with OpenCode.
#[tokio::test]
async fn an_mcp_server_given_at_create_session_reaches_claude_code() {
    let llm = FakeLlm::start().await.unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let agents = ConfiguredStack::with_agent(binary, "session-mcp", "claudeCodePackage", llm.port(), no_provider_hosts(), &[]);
    let stack = &agents.stack;
    let os = stack.actor(&unique_key("session-mcp"));
    let conn = os.connect();

    conn.action("mkdir", vec![json!(WORKSPACE), json!({ "recursive": true })]).await.unwrap();
    let script = format!("{WORKSPACE}/mcp_server.mjs");
    let log = format!("{WORKSPACE}/mcp.log");
    conn.action("writeFile", vec![json!(script), json!(MCP_SERVER)]).await.unwrap();
    let spawn_options = json!({ "env": { "MCP_LOG": log }, "streamStdin": false });
    conn.action("spawn", vec![json!("node"), json!([script, "--http", MCP_PORT.to_string()]), spawn_options]).await.unwrap();
    let read_log = || async {
        let bytes = conn.action("readFile", vec![json!(log)]).await.ok()?;
        Some(String::from_utf8_lossy(&testkit::bytes_of(&bytes)).into_owned())
    };
    eventually(Duration::from_secs(60), "the MCP server listens in the VM", || async {
        read_log().await.filter(|text| text.contains("start http"))
    })
    .await;

    let server = json!({ "type": "http", "name": "secrets", "url": format!("http://127.0.0.1:{MCP_PORT}/mcp"), "headers": [] });
    let options = json!({
        "sessionId": "mcp", "cwd": WORKSPACE, "skipOsInstructions": true,
        "env": claude_env(&llm), "mcpServers": [server],
    });
    let created = conn.action("createSession", vec![json!("claude"), options]).await;
    created.unwrap_or_else(|e| panic!("createSession claude: {e}\nhost stderr:\n{}", stack.host.stderr_text()));

    llm.push_text("HELLO-MCP");
    let reply = conn.action("sendPrompt", vec![json!("mcp"), json!("Which tools do you have?")]).await.unwrap();
    assert_eq!(reply["text"], json!("HELLO-MCP"), "{reply}");
    let tools = llm.model_requests().pop().unwrap().tool_names();
    let server_log = read_log().await.unwrap_or_default();
    let mcp_tool = tools.iter().find(|t| t.starts_with("mcp__") && t.ends_with("__lookup_secret")).cloned();
    // Claude Code 0.2.7 advertises no session config options, so the
    // category setters say the agent has no such option.
    testkit::no_category_options(&conn, "mcp", "claude").await;
    let mcp_tool = mcp_tool.unwrap_or_else(|| panic!("no MCP tool among {tools:?}; server log: {server_log}"));
    assert!(server_log.contains("recv initialize") && server_log.contains("recv tools/list"), "{server_log}");

    let call_id = llm.push_tool_use(&mcp_tool, json!({}));
    llm.push_text("DONE-MCP");
    let reply = conn.action("sendPrompt", vec![json!("mcp"), json!("Look up the secret.")]).await.unwrap();
    assert_eq!(reply["text"], json!("DONE-MCP"), "{reply}");
    let results = llm.model_requests().pop().expect("a model request").tool_results();
    assert!(results.iter().any(|(id, text, error)| id == &call_id && text.contains(MCP_SECRET) && !error), "{results:?}");
    assert!(read_log().await.unwrap_or_default().contains("recv tools/call"));
    conn.disconnect().await;
}
