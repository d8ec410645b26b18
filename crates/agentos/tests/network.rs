//! The guest network policy (design §7) against the real engine, host and
//! sidecar: egress is denied by default except to allowlisted hosts, host
//! loopback only on exempt ports, guest servers keep working. All traffic
//! stays on 127.0.0.1: outside hosts are refused by policy before any DNS
//! lookup or connection, and the allowlisted test host is `llm.localhost`,
//! which the sidecar's resolver answers locally (RFC 6761).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use rivetkit_client::handle::ActorHandle;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use testkit::{OwnStack, eventually, unique_key};

/// A host HTTP server on 127.0.0.1 answering `PONG` and counting the
/// connections it accepted; it ends with the test's runtime.
async fn host_server() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nPONG").await;
            });
        }
    });
    (port, accepted)
}

/// Runs in the guest: every check, each bounded, printed as one JSON
/// object `{name: {ok, body} | {ok: false, code, message}}`.
const GUEST_CHECKS: &str = r#"
const dns = require('node:dns');
const http = require('node:http');
const { EXEMPT, PLAIN } = process.env;
const within = (p) => Promise.race([p, new Promise((_, no) => setTimeout(() => no(new Error('guest-side timeout')), 20000))]);
const failed = (e) => { const c = e.cause || e; return { ok: false, code: c.code || null, message: String(c.message) }; };
const run = (p) => within(p).then((body) => ({ ok: true, body }), failed);
const get = (url) => run(fetch(url).then((r) => r.text()));
const selfServe = () => new Promise((yes, no) => {
  const server = http.createServer((req, res) => res.end('self'));
  server.on('error', no);
  server.listen(8090, () => fetch('http://127.0.0.1:8090/').then((r) => r.text()).then(
    (t) => { server.close(); yes(t); }, (e) => { server.close(); no(e); }));
});
(async () => {
  const out = {};
  out.exempt = await get(`http://127.0.0.1:${EXEMPT}/`);
  out.plain = await get(`http://127.0.0.1:${PLAIN}/`);
  out.external = await get('http://example.com/');
  out.lookup = await run(dns.promises.lookup('llm.localhost').then((a) => a.address));
  out.named = await get(`http://llm.localhost:${EXEMPT}/`);
  out.namedPlain = await get(`http://llm.localhost:${PLAIN}/`);
  out.self = await run(selfServe());
  console.log(JSON.stringify(out));
  process.exit(0);
})();
"#;

async fn guest_checks(os: &ActorHandle, exempt: u16, plain: u16) -> Value {
    os.action("writeFile", vec![json!("/tmp/net-checks.js"), json!(GUEST_CHECKS)]).await.unwrap();
    let env = json!({ "env": { "EXEMPT": exempt.to_string(), "PLAIN": plain.to_string() } });
    let out = os.action("exec", vec![json!("node /tmp/net-checks.js"), env]).await.unwrap();
    assert_eq!(out["exitCode"], json!(0), "{out}");
    serde_json::from_str(out["stdout"].as_str().unwrap().trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// A policy denial: EACCES from the sidecar's permission check, raised
/// before any lookup or connection.
fn assert_denied_by_policy(result: &Value, operation: &str, resource: &str) {
    assert_eq!(result["ok"], json!(false), "{result}");
    assert_eq!(result["code"], json!("EACCES"), "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(message.contains(&format!("{resource}: blocked by network.{operation} policy")), "{result}");
}

/// A denial by the sidecar's loopback gate (a host port that is not exempt).
fn assert_loopback_blocked(result: &Value, port: u16) {
    assert_eq!(result["ok"], json!(false), "{result}");
    assert_eq!(result["code"], json!("EACCES"), "{result}");
    let message = result["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("port {port} is not owned by this VM and is not listed in AGENTOS_LOOPBACK_EXEMPT_PORTS")),
        "{result}"
    );
}

fn assert_reached(result: &Value, body: &str) {
    assert_eq!(result, &json!({ "ok": true, "body": body }));
}

#[tokio::test]
async fn guest_egress_is_denied_except_allowlisted_hosts_and_exempt_loopback_ports() {
    let (exempt, exempt_hits) = host_server().await;
    let (plain, plain_hits) = host_server().await;
    let dir = std::env::temp_dir().join(unique_key("net-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let allow = dir.join("allow.json");
    std::fs::write(&allow, json!({ "network": { "allowHosts": ["llm.localhost"] } }).to_string()).unwrap();
    let variant = format!("agentOSAllow={}", allow.display());
    let binary = Path::new(env!("CARGO_BIN_EXE_agentos"));
    let port = exempt.to_string();
    let stack = OwnStack::start(binary, "net-policy", &["--loopback-exempt-port", &port, "--variant", &variant]);

    // The default policy: the LLM provider hosts only.
    let key = unique_key("net-default");
    let os = stack.actor(&key);
    let out = guest_checks(&os, exempt, plain).await;
    assert_reached(&out["exempt"], "PONG");
    assert_loopback_blocked(&out["plain"], plain);
    assert_denied_by_policy(&out["external"], "http", "tcp://example.com:80");
    assert_denied_by_policy(&out["lookup"], "dns", "dns://llm.localhost");
    assert_denied_by_policy(&out["named"], "http", &format!("tcp://llm.localhost:{exempt}"));
    assert_denied_by_policy(&out["namedPlain"], "http", &format!("tcp://llm.localhost:{plain}"));
    assert_reached(&out["self"], "self");

    // `allowHosts` replaced: the listed host resolves and connects (on an
    // exempt port: it is loopback); other hosts stay denied.
    let custom = stack
        .host
        .client()
        .get_or_create("agentOSAllow", vec![unique_key("net-allow")], GetOrCreateOptions::default())
        .unwrap();
    let out = guest_checks(&custom, exempt, plain).await;
    assert_reached(&out["exempt"], "PONG");
    assert_loopback_blocked(&out["plain"], plain);
    assert_denied_by_policy(&out["external"], "http", "tcp://example.com:80");
    assert_eq!(out["lookup"]["ok"], json!(true), "{out}");
    let address = out["lookup"]["body"].as_str().unwrap();
    assert!(address == "127.0.0.1" || address == "::1", "{out}");
    assert_reached(&out["named"], "PONG");
    assert_loopback_blocked(&out["namedPlain"], plain);
    assert_reached(&out["self"], "self");

    // One connection per reached check; the plain port never saw one.
    assert_eq!(exempt_hits.load(Ordering::SeqCst), 3);
    assert_eq!(plain_hits.load(Ordering::SeqCst), 0);

    // A guest server is still reachable from outside through `vmFetch`.
    // It exits shortly after its first request, and within 20 s regardless.
    let server = "require('http').createServer((req, res) => { res.end('served ' + req.url); \
                  setTimeout(() => process.exit(0), 200); }).listen(8080); setTimeout(() => process.exit(0), 20000);";
    os.action("writeFile", vec![json!("/tmp/serve-once.js"), json!(server)]).await.unwrap();
    let runner = stack.actor(&key);
    let task = tokio::spawn(async move { runner.action("exec", vec![json!("node /tmp/serve-once.js")]).await });
    let response = eventually(Duration::from_secs(30), "the guest server answers vmFetch", || async {
        os.action("vmFetch", vec![json!(8080), json!("/hello")]).await.ok().filter(|r| r["status"] == json!(200))
    })
    .await;
    assert_eq!(testkit::bytes_of(&response["body"]), b"served /hello", "{response}");
    let ran = tokio::time::timeout(Duration::from_secs(30), task).await.expect("the guest server exits").unwrap().unwrap();
    assert_eq!(ran["exitCode"], json!(0), "{ran}");

    drop(stack);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_allow_host_fails_the_load_naming_the_entry() {
    let dir = std::env::temp_dir().join(unique_key("net-bad-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("actor.json");
    std::fs::write(&config, r#"{"network": {"allowHosts": ["api.openai.com", "https://api.anthropic.com"]}}"#).unwrap();
    let out = testkit::run_with_limit(
        std::process::Command::new(env!("CARGO_BIN_EXE_agentos"))
            .args(["serve", "--port", "1", "--data-dir"])
            .arg(dir.join("data"))
            .arg("--actor-config")
            .arg(&config),
        Duration::from_secs(120),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must fail: {stderr}");
    assert!(stderr.contains("`network.allowHosts[1]`") && stderr.contains("is a URL"), "{stderr}");
    assert!(!stderr.contains("engine pid"), "nothing may be started before the config is valid: {stderr}");
}
