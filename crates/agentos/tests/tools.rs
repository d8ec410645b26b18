//! Host tools: a guest's `agentos-<toolkit> <tool>` call becomes a
//! `toolCall` event; a connected client answers with `respondToolCall`.

use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use testkit::unique_key;

fn actor(key: &str) -> rivetkit_client::handle::ActorHandle {
    testkit::client().get_or_create("agentOS", vec![key.to_owned()], GetOrCreateOptions::default()).unwrap()
}

#[tokio::test]
async fn guest_tool_calls_round_trip_through_a_client() {
    let key = unique_key("tools");
    let os = actor(&key);
    let kit = json!({ "name": "math", "description": "Arithmetic.", "tools": [
        { "name": "add", "description": "Adds a and b.", "inputSchema": { "type": "object", "properties": { "a": { "type": "number" }, "b": { "type": "number" } } } },
        { "name": "fail" },
        { "name": "slow", "timeoutMs": 1500 },
    ] });
    // Registered before the VM's first boot, so that boot offers it.
    os.action("registerToolKit", vec![kit]).await.unwrap();

    let conn = os.connect();
    let (events, mut calls) = mpsc::unbounded_channel::<Value>();
    let _subscription = conn
        .on_event("toolCall", move |args: &Vec<Value>| {
            let _ = events.send(args[0].clone());
        })
        .await;

    let guest = tokio::spawn({
        let os = actor(&key);
        async move {
            let mut outputs = Vec::new();
            for command in ["agentos-math add --a 2 --b 40", "agentos-math fail", "agentos-math slow"] {
                outputs.push(os.action("exec", vec![json!(command)]).await.unwrap());
            }
            outputs
        }
    });

    // Answer `add` and `fail`; leave `slow` unanswered.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let call = tokio::time::timeout(Duration::from_secs(60), calls.recv()).await.expect("a toolCall event").unwrap();
        assert_eq!(call["toolkit"], json!("math"), "{call}");
        let id = call["callId"].as_str().unwrap().to_owned();
        match call["tool"].as_str().unwrap() {
            "add" => {
                let sum = call["input"]["a"].as_f64().unwrap() + call["input"]["b"].as_f64().unwrap();
                conn.action("respondToolCall", vec![json!(id), json!({ "result": { "sum": sum } })]).await.unwrap();
                // A second answer finds nobody waiting.
                let e = conn.action("respondToolCall", vec![json!(id), json!({ "result": 1 })]).await.unwrap_err();
                assert!(format!("{e:#}").contains("is waiting"), "{e:#}");
            }
            "fail" => {
                conn.action("respondToolCall", vec![json!(id), json!({ "error": "boom from the client" })]).await.unwrap();
            }
            "slow" => assert_eq!(call["timeoutMs"], json!(1500)),
            other => panic!("unexpected tool {other}"),
        }
        seen.push(call);
    }
    let outputs = tokio::time::timeout(Duration::from_secs(120), guest).await.unwrap().unwrap();
    let text = |o: &Value| format!("{}{}", o["stdout"].as_str().unwrap(), o["stderr"].as_str().unwrap());
    assert_eq!(outputs[0]["exitCode"], json!(0), "{}", outputs[0]);
    assert!(text(&outputs[0]).contains("42"), "{}", outputs[0]);
    assert!(text(&outputs[1]).contains("boom from the client"), "{}", outputs[1]);
    assert_ne!(outputs[1]["exitCode"], json!(0), "{}", outputs[1]);
    assert!(text(&outputs[2]).contains("no client answered within 1500 ms"), "{}", outputs[2]);

    let kits = conn.action("listToolKits", vec![]).await.unwrap();
    assert_eq!(kits[0]["name"], json!("math"), "{kits}");
    assert_eq!(kits[0]["source"], json!("registered"));
    assert_eq!(kits[0]["live"], json!(true));
    assert_eq!(kits[0]["tools"].as_array().unwrap().len(), 3);

    let e = format!("{:#}", conn.action("respondToolCall", vec![json!("nope"), json!({})]).await.unwrap_err());
    assert!(e.contains("`nope`"), "{e}");
    let e = format!("{:#}", conn.action("respondToolCall", vec![json!("x"), json!({ "result": 1, "error": "y" })]).await.unwrap_err());
    assert!(e.contains("not both"), "{e}");
    let e = format!("{:#}", conn.action("registerToolKit", vec![json!({ "name": "k" })]).await.unwrap_err());
    assert!(e.contains("`toolkit.tools`") && e.contains("required"), "{e}");
    let e = format!("{:#}", conn.action("registerToolKit", vec![json!({ "name": "k k", "tools": [{ "name": "t" }] })]).await.unwrap_err());
    assert!(e.contains("`k k`"), "{e}");
    let e = format!("{:#}", conn.action("registerToolKit", vec![json!({ "name": "k", "tools": [{ "name": "t", "timeoutMs": "5" }] })]).await.unwrap_err());
    assert!(e.contains("`toolkit.tools[0].timeoutMs`"), "{e}");

    conn.action("removeToolKit", vec![json!("math")]).await.unwrap();
    assert_eq!(conn.action("listToolKits", vec![]).await.unwrap(), json!([]));
    let e = format!("{:#}", conn.action("removeToolKit", vec![json!("math")]).await.unwrap_err());
    assert!(e.contains("no registered toolkit `math`"), "{e}");
    conn.disconnect().await;
}

#[test]
fn typescript_client_answers_guest_tool_calls() {
    testkit::run_ts_suite("tools.test.mjs", 1);
}
