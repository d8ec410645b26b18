//! MCP servers given at `createSession` reach a real agent: OpenCode
//! (`@agentos-software/opencode` 0.2.7) in the VM against the fake LLM on
//! 127.0.0.1 (reached only through `loopbackExemptPorts`; every other
//! egress is denied). The MCP servers are `fixtures/mcp_server.mjs` run in
//! the VM; each logs every message it receives.
//!
//! OpenCode's ACP adapter hands ACP stdio servers (no `type`) to OpenCode as
//! `local` servers it spawns, and `http`/`sse` ones as `remote` servers
//! (tried as streamable HTTP first, then as SSE). Claude Code 0.2.7's
//! adapter cannot start stdio servers (`session_permissions.rs` proves HTTP
//! MCP with Claude Code).
//!
//! A server reaches the agent when its tool is among the tools the agent
//! offers the model (OpenCode names MCP tools `<server>_<tool>`) and a call
//! of it brings the server's answer (a secret only the server knows) back
//! to the model as that call's tool result.

use std::path::Path;
use std::time::Duration;

use rivetkit_client::connection::ActorConnection;
use serde_json::{Value, json};
use testkit::fake_llm::FakeLlm;
use testkit::{ConfiguredStack, eventually, unique_key};

const WORKSPACE: &str = "/home/agentos/workspace";
/// The MCP server script, written into the VM by the test.
const MCP_SERVER: &str = include_str!("fixtures/mcp_server.mjs");
const MCP_SECRET: &str = "MCP-SECRET-7F3A";
/// The one model OpenCode is told to use (the fake answers any id).
const MODEL: &str = "claude-sonnet-4-20250514";

/// What OpenCode needs to talk to the fake and to nothing else: its
/// `anthropic` provider pointed at the fake (the AI SDK appends `/messages`
/// to `baseURL`), no models.dev fetch, no default plugins (npm installs),
/// no LSP downloads, and no title agent, whose extra model call would race
/// the test's scripted replies.
fn opencode_env(llm: &FakeLlm) -> Value {
    let config = json!({
        "model": format!("anthropic/{MODEL}"),
        "provider": { "anthropic": { "options": { "baseURL": format!("{}/v1", llm.base_url()), "apiKey": "test-key" } } },
        "agent": { "title": { "disable": true } },
    });
    json!({
        "HOME": "/home/agentos",
        "OPENCODE_CONFIG_CONTENT": config.to_string(),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        "OPENCODE_DISABLE_AUTOCOMPACT": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    })
}

/// The guest reaches the fake LLM's port on host loopback and nothing else.
fn start_stack(llm: &FakeLlm, name: &str) -> ConfiguredStack {
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    ConfiguredStack::with_agent(binary, name, "openCodePackage", llm.port(), json!({ "network": { "allowHosts": [] } }), &[])
}

/// Writes the MCP server script into the VM and returns its path.
async fn write_server(conn: &ActorConnection) -> String {
    conn.action("mkdir", vec![json!(WORKSPACE), json!({ "recursive": true })]).await.unwrap();
    let script = format!("{WORKSPACE}/mcp_server.mjs");
    conn.action("writeFile", vec![json!(script), json!(MCP_SERVER)]).await.unwrap();
    script
}

/// Starts the script in the VM as a network server (`--http` or `--sse`)
/// on guest loopback `port`, logging to `log`, and waits until it listens.
async fn spawn_server(conn: &ActorConnection, script: &str, transport: &str, port: u16, log: &str) {
    let spawn_options = json!({ "env": { "MCP_LOG": log }, "streamStdin": false });
    let args = json!([script, format!("--{transport}"), port.to_string()]);
    conn.action("spawn", vec![json!("node"), args, spawn_options]).await.unwrap();
    let listening = format!("start {transport} {port}");
    eventually(Duration::from_secs(60), "the MCP server listens in the VM", || async {
        read_log(conn, log).await.contains(&listening).then_some(())
    })
    .await;
}

/// What the server logged so far: one line per message it received.
async fn read_log(conn: &ActorConnection, log: &str) -> String {
    match conn.action("readFile", vec![json!(log)]).await {
        Ok(bytes) => String::from_utf8_lossy(&testkit::bytes_of(&bytes)).into_owned(),
        Err(_) => String::new(),
    }
}

/// Opens OpenCode session `session` with `servers`.
async fn create_session(stack: &ConfiguredStack, conn: &ActorConnection, llm: &FakeLlm, session: &str, servers: Value) {
    let options = json!({
        "sessionId": session, "cwd": WORKSPACE, "skipOsInstructions": true,
        "env": opencode_env(llm), "mcpServers": servers,
    });
    let created = conn.action("createSession", vec![json!("opencode"), options]).await;
    let created = created.unwrap_or_else(|e| panic!("createSession opencode: {e}\nhost stderr:\n{}", stack.stack.host.stderr_text()));
    assert_eq!(created, json!(session));
}

/// One turn in which the model calls MCP tool `tool`: the call's result,
/// sent back to the model, carries the server's secret.
async fn call_tool(conn: &ActorConnection, llm: &FakeLlm, session: &str, tool: &str) {
    let call_id = llm.push_tool_use(tool, json!({}));
    llm.push_text("DONE-MCP");
    let reply = conn.action("sendPrompt", vec![json!(session), json!("Look up the secret.")]).await.unwrap();
    assert_eq!(reply["text"], json!("DONE-MCP"), "{reply}");
    let results = llm.model_requests().pop().expect("a model request").tool_results();
    assert!(results.iter().any(|(id, text, error)| id == &call_id && text.contains(MCP_SECRET) && !error), "{tool}: {results:?}");
}

/// A stdio server (OpenCode spawns `node mcp_server.mjs` in the VM with the
/// env given in the ACP config and speaks MCP over its stdin/stdout) and an
/// HTTP one (already running in the VM, on guest loopback) in one session.
#[tokio::test]
async fn stdio_and_http_mcp_servers_given_at_create_session_reach_opencode() {
    const HTTP_PORT: u16 = 7703;
    let llm = FakeLlm::start().await.unwrap();
    let stack = start_stack(&llm, "session-mcp");
    let conn = stack.stack.actor(&unique_key("session-mcp")).connect();
    let script = write_server(&conn).await;
    let (stdio_log, http_log) = (format!("{WORKSPACE}/stdio.log"), format!("{WORKSPACE}/http.log"));
    spawn_server(&conn, &script, "http", HTTP_PORT, &http_log).await;

    let stdio = json!({ "name": "secrets", "command": "node", "args": [script], "env": [{ "name": "MCP_LOG", "value": stdio_log }] });
    let http = json!({ "type": "http", "name": "web", "url": format!("http://127.0.0.1:{HTTP_PORT}/mcp"), "headers": [] });
    create_session(&stack, &conn, &llm, "mcp", json!([stdio, http])).await;

    // A plain turn: the configured model answers, and both servers' tools
    // are among the tools offered to it.
    llm.push_text("HELLO-MCP");
    let reply = conn.action("sendPrompt", vec![json!("mcp"), json!("Which tools do you have?")]).await;
    let reply = reply.unwrap_or_else(|e| panic!("sendPrompt: {e}\nhost stderr:\n{}", stack.stack.host.stderr_text()));
    assert_eq!(reply["text"], json!("HELLO-MCP"), "{reply}");
    let first = llm.model_requests().pop().expect("a model request");
    assert_eq!(first.model(), Some(MODEL), "the configured model answered");
    let tools = first.tool_names();
    let logs = format!("stdio server: {}\nhttp server: {}", read_log(&conn, &stdio_log).await, read_log(&conn, &http_log).await);
    for tool in ["secrets_lookup_secret", "web_lookup_secret"] {
        assert!(tools.iter().any(|t| t == tool), "no {tool} among {tools:?}\n{logs}");
    }

    call_tool(&conn, &llm, "mcp", "secrets_lookup_secret").await;
    // The agent started the stdio server (nobody else did) and spoke MCP
    // over its stdin/stdout.
    let stdio_seen = read_log(&conn, &stdio_log).await;
    assert!(stdio_seen.starts_with("start stdio\nrecv initialize\n"), "{stdio_seen}");
    assert!(stdio_seen.contains("recv tools/list") && stdio_seen.contains("recv tools/call"), "{stdio_seen}");

    call_tool(&conn, &llm, "mcp", "web_lookup_secret").await;
    let http_seen = read_log(&conn, &http_log).await;
    assert!(http_seen.contains("recv initialize") && http_seen.contains("recv tools/call"), "{http_seen}");
    // Every model call went to the fake with the configured key.
    assert!(llm.model_requests().iter().all(|r| r.header("x-api-key") == Some("test-key")));
    conn.disconnect().await;
}

/// An SSE server (already running in the VM, on guest loopback) given at
/// `createSession` reaches OpenCode: the agent opens the event stream at
/// the given URL (after trying streamable HTTP there first), and the
/// session works.
///
/// The tool round trip cannot be checked: OpenCode's SSE client (the
/// `eventsource` 3.0.7 package in its bundle) builds a `MessageEvent` for
/// every event it reads, and the agentOS VM's Node runtime has no
/// `MessageEvent` global (it has `Event` and `EventTarget`), so reading the
/// stream's first event throws, the connection fails and the server's tool
/// never reaches the model. Node flags (`NODE_OPTIONS`, `--import`) are not
/// honoured in the VM, so the agent cannot be given a polyfill from outside.
#[tokio::test]
async fn an_sse_mcp_server_given_at_create_session_is_opened_by_opencode() {
    const PORT: u16 = 7702;
    let llm = FakeLlm::start().await.unwrap();
    let stack = start_stack(&llm, "session-mcp-sse");
    let conn = stack.stack.actor(&unique_key("session-mcp-sse")).connect();
    let script = write_server(&conn).await;
    let log = format!("{WORKSPACE}/sse.log");
    spawn_server(&conn, &script, "sse", PORT, &log).await;

    let server = json!({ "type": "sse", "name": "events", "url": format!("http://127.0.0.1:{PORT}/sse"), "headers": [] });
    create_session(&stack, &conn, &llm, "sse", json!([server])).await;
    eventually(Duration::from_secs(60), "OpenCode opens the SSE stream", || async {
        read_log(&conn, &log).await.contains("sse GET /sse accept=text/event-stream").then_some(())
    })
    .await;

    llm.push_text("HELLO-SSE");
    let reply = conn.action("sendPrompt", vec![json!("sse"), json!("Hello.")]).await.unwrap();
    assert_eq!(reply["text"], json!("HELLO-SSE"), "{reply}");
    conn.disconnect().await;
}
