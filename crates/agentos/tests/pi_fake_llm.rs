//! ENGINE-LEVEL CHECK: the real Pi agent (`.aospkg`) in a real agentOS VM
//! (agentos-client 0.2.21 straight to the sidecar, no actor, no engine)
//! against `testkit::FakeLlm` on 127.0.0.1. It pins down what the actor's
//! session actions build on: Pi's requests reach the fake through the
//! actor's own deny-by-default network policy plus `loopback_exempt_ports`,
//! scripted text comes back as the prompt result, a scripted `bash` tool
//! call really runs in the VM and its output goes back to the model, a
//! prompt held mid-stream can be cancelled, and a reopened session replays
//! its history to the model. If this fails, session tests through the actor
//! cannot pass either. Runs in ~12 s (5 s of it the VM teardown deadline
//! the sidecar hits with Pi's process still open).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use agentos_client::{
    AgentOs, AgentOsConfig, AgentOsSidecarConfig, CancelPromptStatus, ContentBlock, MkdirOptions, OpenSessionInput,
    PackageRef, PromptInput, PromptResult, StopReason,
};
use agentos_vm_config::VmSqliteDescriptor;
use provision::Component;
use serde_json::json;
use testkit::FakeLlm;
use testkit::fake_llm::HoldState;

const WORKSPACE: &str = "/home/agentos/workspace";
const STEP: Duration = Duration::from_secs(60);

fn text_block(text: &str) -> ContentBlock {
    serde_json::from_value(json!({"type": "text", "text": text})).expect("an ACP text block")
}

/// The assistant text of a prompt result.
fn reply_text(result: &PromptResult) -> String {
    let message = result.message.as_ref().expect("the prompt result carries the assistant message");
    message
        .content
        .iter()
        .filter_map(|block| serde_json::to_value(block).ok()?.get("text")?.as_str().map(str::to_owned))
        .collect()
}

async fn prompt(vm: &AgentOs, text: &str) -> PromptResult {
    let input = PromptInput { session_id: Some("main".into()), idempotency_key: None, content: vec![text_block(text)] };
    tokio::time::timeout(STEP, vm.prompt(input)).await.expect("prompt within the step limit").expect("prompt")
}

async fn step<T>(what: &str, started: Instant, future: impl std::future::Future<Output = T>) -> T {
    let begin = Instant::now();
    let out = tokio::time::timeout(STEP, future).await.unwrap_or_else(|_| panic!("{what}: no answer within {STEP:?}"));
    eprintln!("timing: {what}: {:?} (at {:?})", begin.elapsed(), started.elapsed());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pi_runs_against_the_fake_llm_in_a_real_vm() {
    let started = Instant::now();
    let pieces = provision::provision(
        &provision::cache_dir(),
        &[Component::Sidecar, Component::Commands, Component::Pi],
        &provision::no_progress,
    )
    .await
    .expect("provision sidecar, commands and Pi (warm cache: no network)");
    let fake = FakeLlm::start().await.expect("start the fake LLM");
    let data = std::env::temp_dir().join(testkit::unique_key("pi-fake-llm"));
    std::fs::create_dir_all(&data).unwrap();
    let _cleanup = RemoveOnDrop(data.clone());

    let mut packages: Vec<PackageRef> =
        pieces.command_packages.iter().map(|p| PackageRef { path: p.display().to_string() }).collect();
    packages.push(PackageRef { path: pieces.pi_package.as_ref().unwrap().display().to_string() });
    let config = AgentOsConfig {
        database: Some(VmSqliteDescriptor::SqliteFile { path: data.join("s.db").display().to_string() }),
        packages,
        loopback_exempt_ports: vec![fake.port()],
        // The actor's own policy: egress denied but for loopback (and no
        // provider hosts here), so this also checks it lets Pi reach the fake.
        permissions: Some(agentos_actor::network::guest_permissions(&[])),
        // A pool of its own: this test's sidecar dies with its VM.
        sidecar: Some(AgentOsSidecarConfig::Shared { pool: Some(testkit::unique_key("pi-pool")) }),
        sidecar_binary_path: Some(pieces.sidecar.as_ref().unwrap().display().to_string()),
        ..AgentOsConfig::default()
    };
    let vm = step("create VM", started, AgentOs::create(config)).await.expect("create VM");
    let result = run(&vm, &fake, started).await;
    let _ = tokio::time::timeout(Duration::from_secs(30), vm.shutdown()).await;
    eprintln!("timing: total {:?}", started.elapsed());
    result.unwrap();
}

async fn run(vm: &AgentOs, fake: &FakeLlm, started: Instant) -> anyhow::Result<()> {
    vm.mkdir(WORKSPACE, MkdirOptions { recursive: true }).await?;
    let env = BTreeMap::from([
        ("ANTHROPIC_BASE_URL".to_owned(), fake.base_url()),
        ("ANTHROPIC_API_KEY".to_owned(), "test".to_owned()),
        ("HOME".to_owned(), "/home/agentos".to_owned()),
        ("PI_SKIP_VERSION_CHECK".to_owned(), "1".to_owned()),
    ]);
    let open = OpenSessionInput {
        session_id: Some("main".into()),
        agent: "pi".into(),
        cwd: Some(WORKSPACE.into()),
        env: Some(env),
        skip_os_instructions: Some(true),
        additional_directories: None,
        mcp_servers: None,
        permission_policy: None,
        additional_instructions: None,
    };
    step("open_session", started, vm.open_session(open.clone())).await?;

    // (1) A plain prompt answers with the scripted text.
    fake.push_text("PONG from the fake");
    let first = step("prompt (text)", started, prompt(vm, "say pong")).await;
    assert_eq!(first.stop_reason, StopReason::EndTurn);
    assert_eq!(reply_text(&first), "PONG from the fake");
    let request = fake.last_request().expect("Pi called the fake");
    assert_eq!(request.path_only(), "/v1/messages");
    assert!(request.is_stream(), "Pi streams");
    assert_eq!(request.header("x-api-key"), Some("test"));
    assert!(request.tool_names().contains(&"bash".to_owned()), "tools: {:?}", request.tool_names());
    let conversation = request.conversation();
    assert_eq!(conversation.last().map(|m| (m.role.as_str(), m.text())), Some(("user", "say pong".to_owned())));

    // (2) A scripted bash call runs in the VM; its output goes back.
    let calls_before = fake.model_requests().len();
    let tool_id = fake.push_tool_use("bash", json!({"command": format!("echo hi > {WORKSPACE}/t.txt && echo wrote-it")}));
    fake.push_text("the file is written");
    let second = step("prompt (bash tool round trip)", started, prompt(vm, "write the file")).await;
    assert_eq!(reply_text(&second), "the file is written");
    assert_eq!(vm.read_file(&format!("{WORKSPACE}/t.txt")).await?, b"hi\n");
    let calls = fake.model_requests();
    assert_eq!(calls.len(), calls_before + 2, "one call for the tool use, one with its result");
    let follow_up = calls.last().unwrap().conversation();
    let results: Vec<(String, String, bool)> = follow_up
        .iter()
        .flat_map(|m| m.tool_results().map(|(id, text, err)| (id.to_owned(), text.to_owned(), err)))
        .collect();
    assert!(
        results.iter().any(|(id, text, err)| id == &tool_id && text.contains("wrote-it") && !err),
        "the follow-up request carries the bash output as tool_result: {results:?}"
    );
    // The earlier turn is still in the conversation Pi sends.
    let texts: Vec<String> = follow_up.iter().map(|m| m.text()).collect();
    assert!(texts.iter().any(|t| t == "say pong") && texts.iter().any(|t| t == "PONG from the fake"), "{texts:?}");

    // (3) A prompt held mid-stream is cancelled; Pi hangs up on the fake.
    let hold = fake.push_hold("half a");
    let pending = tokio::spawn({
        let vm = vm.clone();
        async move { prompt(&vm, "take your time").await }
    });
    hold.wait_for(HoldState::Holding, STEP).await.map_err(anyhow::Error::msg)?;
    let cancel = step("cancel_prompt", started, vm.cancel_prompt(Some("main"))).await?;
    assert_eq!(cancel, CancelPromptStatus::Cancelled);
    let cancelled = step("cancelled prompt returns", started, pending).await?;
    assert_eq!(cancelled.stop_reason, StopReason::Cancelled);
    hold.wait_for(HoldState::ClientGone, STEP).await.map_err(anyhow::Error::msg)?;

    // The session still works after the cancel.
    fake.push_text("still here");
    let after = step("prompt after cancel", started, prompt(vm, "again")).await;
    assert_eq!(reply_text(&after), "still here");

    // (4) Unload (kills the adapter, keeps the durable history), reopen,
    // prompt. Pi cannot load a session natively (`loadSession: false`), so
    // the sidecar replays the recent ACP updates as text in ONE user message
    // ahead of the new prompt: earlier turns are not separate messages.
    step("unload_session", started, vm.unload_session(Some("main"))).await?;
    step("reopen session", started, vm.open_session(open)).await?;
    fake.push_text("after reopen");
    let reopened = step("prompt after reopen", started, prompt(vm, "remember?")).await;
    assert_eq!(reply_text(&reopened), "after reopen");
    let replayed = fake.last_request().unwrap().conversation();
    let [only] = replayed.as_slice() else { panic!("one replay message expected: {replayed:?}") };
    let text = only.text();
    assert_eq!(only.role, "user");
    assert!(text.contains("could not restore native context"), "{text}");
    for earlier in ["say pong", "PONG from the fake", "wrote-it", "the file is written", "still here"] {
        assert!(text.contains(earlier), "the replay carries `{earlier}`: {text}");
    }
    assert!(text.ends_with("remember?"), "the new prompt comes last: {text}");
    Ok(())
}

struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
