//! Argument decoding of the session actions that carry permissions and MCP
//! servers: good arguments pass, and each kind of bad argument is
//! `invalid_argument` naming the argument. Also how `setSessionMode` and
//! friends find the agent's option of their category.

use ciborium::Value;
use serde_json::json;

use crate::args::testing::{bad, map, ok, text};

use super::option_of_category;

#[test]
fn create_session_checks_policy_env_and_mcp_servers() {
    let stdio = map(vec![("name", text("s")), ("command", text("node")), ("args", Value::Array(vec![])), ("env", Value::Array(vec![]))]);
    ok("createSession", vec![text("claude")]);
    ok(
        "createSession",
        vec![
            text("claude"),
            map(vec![
                ("permissionPolicy", text("ask")),
                ("env", map(vec![("ANTHROPIC_API_KEY", text("k"))])),
                ("mcpServers", Value::Array(vec![stdio])),
            ]),
        ],
    );
    bad("createSession", vec![], "`agentType`");
    bad("createSession", vec![Value::Bool(true)], "`agentType`");
    bad("createSession", vec![text("claude"), map(vec![("permissionPolicy", text("sometimes"))])], "permissionPolicy");
    bad("createSession", vec![text("claude"), map(vec![("permissionPolicy", Value::Bool(true))])], "permissionPolicy");
    bad("createSession", vec![text("claude"), map(vec![("env", map(vec![("K", Value::Bool(true))]))])], "env");
    bad("createSession", vec![text("claude"), map(vec![("mcpServer", Value::Array(vec![]))])], "mcpServer");
    bad("createSession", vec![text("claude"), map(vec![]), text("extra")], "too many arguments");
}

#[test]
fn mcp_servers_are_acp_configs() {
    let servers = super::input::mcp_servers(json!([
        { "name": "local", "command": "/usr/bin/node", "args": ["s.mjs"], "env": [{ "name": "K", "value": "v" }] },
        { "type": "http", "name": "remote", "url": "http://127.0.0.1:7701/mcp", "headers": [] },
    ]), "options.mcpServers")
    .unwrap();
    let back = serde_json::to_value(&servers).unwrap();
    assert_eq!(back[0]["command"], json!("/usr/bin/node"), "{back}");
    assert_eq!((back[1]["type"].clone(), back[1]["url"].clone()), (json!("http"), json!("http://127.0.0.1:7701/mcp")), "{back}");
    for wrong in [json!({ "name": "x" }), json!([{ "name": "x" }]), json!([{ "type": "http", "name": "x" }])] {
        let e = super::input::mcp_servers(wrong.clone(), "options.mcpServers").expect_err(&wrong.to_string());
        assert_eq!(e.code, "invalid_argument", "{wrong}: {e}");
        assert!(e.message.contains("options.mcpServers"), "{wrong}: {e}");
    }
}

#[test]
fn respond_permission_needs_session_permission_and_reply() {
    ok("respondPermission", vec![text("s"), text("p"), text("once")]);
    bad("respondPermission", vec![text("s"), text("p")], "`reply`");
    bad("respondPermission", vec![text("s"), Value::Integer(1.into()), text("once")], "`permissionId`");
    bad("respondPermission", vec![Value::Null, text("p"), text("once")], "`sessionId`");
    bad("respondPermission", vec![text("s"), text("p"), text("once"), text("more")], "too many arguments");
}

#[test]
fn list_pending_permissions_takes_nothing() {
    ok("listPendingPermissions", vec![]);
    bad("listPendingPermissions", vec![text("s")], "too many arguments");
}

#[test]
fn a_category_maps_to_its_option_and_values() {
    let options = json!([
        { "id": "effort", "name": "Effort", "category": "thought_level", "type": "select", "currentValue": "low",
          "options": [{ "value": "low", "name": "Low" }, { "value": "high", "name": "High" }] },
        { "id": "agent-mode", "name": "Mode", "category": "mode", "type": "select", "currentValue": "ask",
          "options": [{ "group": "g1", "name": "Safe", "options": [{ "value": "ask", "name": "Ask" }] },
                      { "group": "g2", "name": "Free", "options": [{ "value": "code", "name": "Code" }] }] },
        { "id": "free", "name": "Model", "category": "model", "type": "text" },
    ]);
    let low_high = Some(vec!["low".to_owned(), "high".to_owned()]);
    assert_eq!(option_of_category(&options, "thought_level"), Some(("effort".to_owned(), low_high)));
    let grouped = Some(vec!["ask".to_owned(), "code".to_owned()]);
    assert_eq!(option_of_category(&options, "mode"), Some(("agent-mode".to_owned(), grouped)));
    assert_eq!(option_of_category(&options, "model"), Some(("free".to_owned(), None)));
    assert_eq!(option_of_category(&json!([]), "mode"), None);
    assert_eq!(option_of_category(&json!([{ "category": "mode" }]), "mode"), None, "an option without an id");
}
