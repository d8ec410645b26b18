//! Process actions and events against the real engine, host, sidecar and
//! WASM command set: spawned output as events with sequence numbers and
//! replay, ordered stdin, signals, listings, exec options, code execution,
//! and bad arguments. The TypeScript client suite runs from here too.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivetkit_client::GetOrCreateOptions;
use rivetkit_client::connection::ActorConnection;
use serde_json::{Value, json};
use testkit::{ActionError, Gateway, bytes_of, uint8array, unique_key};

const ACTOR: &str = "agentOS";
const WAIT: Duration = Duration::from_secs(120);

/// `processOutput` / `processExit` payloads in arrival order.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<(String, Value)>>>);

impl Events {
    async fn subscribe(conn: &ActorConnection) -> (Self, Vec<rivetkit_client::connection::SubscriptionHandle>) {
        let events = Self::default();
        let mut subs = Vec::new();
        for name in ["processOutput", "processExit"] {
            let sink = events.0.clone();
            subs.push(
                conn.on_event(name, move |args: &Vec<Value>| {
                    sink.lock().unwrap().push((name.to_owned(), args.first().cloned().unwrap_or(Value::Null)))
                })
                .await,
            );
        }
        (events, subs)
    }

    fn of(&self, pid: u64) -> Vec<(String, Value)> {
        self.0.lock().unwrap().iter().filter(|(_, p)| p["pid"] == json!(pid)).cloned().collect()
    }

    /// Waits for the process's `processExit` and returns its events.
    async fn until_exit(&self, pid: u64) -> Vec<(String, Value)> {
        testkit::eventually(WAIT, &format!("processExit of {pid}"), || {
            let events = self.of(pid);
            async move { events.iter().any(|(name, _)| name == "processExit").then_some(events) }
        })
        .await
    }
}

fn connect(prefix: &str) -> ActorConnection {
    let client = testkit::client();
    let handle = client.get_or_create(ACTOR, vec![unique_key(prefix)], GetOrCreateOptions::default()).unwrap();
    handle.connect()
}

async fn call(conn: &ActorConnection, action: &str, args: Vec<Value>) -> Value {
    conn.action(action, args.clone()).await.unwrap_or_else(|e| panic!("{action} {args:?}: {e:#}"))
}

/// The bytes of an event or replay `data` field.
fn data(value: &Value) -> Vec<u8> {
    match value {
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            items.iter().map(|b| b.as_u64().unwrap() as u8).collect()
        }
        other => bytes_of(other),
    }
}

/// Concatenated output of one stream, from events or replay chunks.
fn joined<'a>(chunks: impl Iterator<Item = &'a Value>, stream: &str) -> String {
    let bytes: Vec<u8> = chunks.filter(|c| c["stream"] == json!(stream)).flat_map(|c| data(&c["data"])).collect();
    String::from_utf8(bytes).unwrap()
}

fn assert_error(err: &ActionError, code: &str, needle: &str) {
    assert_eq!((err.group.as_str(), err.code.as_str()), ("user", code), "{err:?}");
    assert!(err.message.contains(needle), "{err:?} lacks {needle}");
}

#[tokio::test]
async fn spawned_output_streams_as_numbered_events_and_replays_the_same() {
    let conn = connect("proc-stream");
    let (events, _subs) = Events::subscribe(&conn).await;
    let script = "for i in 1 2 3 4 5; do echo out$i; echo err$i >&2; done; exit 3";
    let spawned = call(&conn, "spawn", vec![json!("sh"), json!(["-c", script])]).await;
    let pid = spawned["pid"].as_u64().expect("spawn replies {pid}");

    let seen = events.until_exit(pid).await;
    // The exit comes after every output event.
    let (last, outputs) = seen.split_last().unwrap();
    assert_eq!(last.0, "processExit", "{seen:?}");
    assert_eq!(last.1, json!({ "pid": pid, "exitCode": 3 }));
    assert!(outputs.iter().all(|(name, _)| name == "processOutput"), "{seen:?}");
    let chunks: Vec<Value> = outputs.iter().map(|(_, p)| p.clone()).collect();
    let seqs: Vec<u64> = chunks.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seq counts chunks from 1 in order");
    assert_eq!(joined(chunks.iter(), "stdout"), "out1\nout2\nout3\nout4\nout5\n");
    assert_eq!(joined(chunks.iter(), "stderr"), "err1\nerr2\nerr3\nerr4\nerr5\n");

    // Replay from the start equals what the events delivered.
    let replay = call(&conn, "readProcessOutput", vec![json!(pid)]).await;
    assert_eq!(replay["lastSeq"], json!(seqs.len()));
    assert_eq!(replay["missed"], json!(0));
    let replayed = replay["chunks"].as_array().unwrap();
    assert_eq!(replayed.len(), chunks.len());
    for (r, e) in replayed.iter().zip(&chunks) {
        assert_eq!((&r["seq"], &r["stream"]), (&e["seq"], &e["stream"]));
        assert_eq!(data(&r["data"]), data(&e["data"]));
    }
    // Replay after a seq the client has gives exactly the rest.
    let after = seqs.len() as u64 / 2;
    let rest = call(&conn, "readProcessOutput", vec![json!(pid), json!(after)]).await;
    let rest_seqs: Vec<u64> = rest["chunks"].as_array().unwrap().iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(rest_seqs, seqs[after as usize..].to_vec());
    let none = call(&conn, "readProcessOutput", vec![json!(pid), json!(seqs.len())]).await;
    assert_eq!(none["chunks"], json!([]));

    assert_eq!(call(&conn, "waitProcess", vec![json!(pid)]).await, json!(3));
    let info = call(&conn, "getProcess", vec![json!(pid)]).await;
    assert_eq!((&info["running"], &info["exitCode"]), (&json!(false), &json!(3)));
    conn.disconnect().await;
}

#[tokio::test]
async fn stdin_is_delivered_in_order_from_the_first_write_and_close_ends_cat() {
    let conn = connect("proc-stdin");
    let (events, _subs) = Events::subscribe(&conn).await;
    // Initial stdin plus writes issued right after spawn, before the process
    // runs: none may be lost or reordered.
    let spawned = call(&conn, "spawn", vec![json!("cat"), json!([]), json!({ "stdin": "first\n" })]).await;
    let pid = spawned["pid"].as_u64().unwrap();
    let mut expected = String::from("first\n");
    for i in 0..20 {
        let line = format!("line-{i:02}\n");
        let arg = if i % 2 == 0 { json!(line) } else { uint8array(line.as_bytes()) };
        assert_eq!(call(&conn, "writeProcessStdin", vec![json!(pid), arg]).await, Value::Null);
        expected.push_str(&line);
    }
    let info = call(&conn, "getProcess", vec![json!(pid)]).await;
    assert_eq!(info["running"], json!(true), "cat waits for more input: {info}");
    assert_eq!(call(&conn, "closeProcessStdin", vec![json!(pid)]).await, Value::Null);
    assert_eq!(call(&conn, "waitProcess", vec![json!(pid)]).await, json!(0));

    let seen = events.until_exit(pid).await;
    let chunks: Vec<Value> = seen.iter().filter(|(n, _)| n == "processOutput").map(|(_, p)| p.clone()).collect();
    assert_eq!(joined(chunks.iter(), "stdout"), expected);
    let replay = call(&conn, "readProcessOutput", vec![json!(pid)]).await;
    assert_eq!(joined(replay["chunks"].as_array().unwrap().iter(), "stdout"), expected);

    // After the exit: writing is refused, closing again is a no-op.
    let gateway_err = conn.action("writeProcessStdin", vec![json!(pid), json!("late")]).await.unwrap_err();
    assert!(format!("{gateway_err:#}").contains("process_exited") || format!("{gateway_err:#}").contains("exited"), "{gateway_err:#}");
    assert_eq!(call(&conn, "closeProcessStdin", vec![json!(pid)]).await, Value::Null);

    // streamStdin: false closes stdin after the initial data.
    let spawned = call(
        &conn,
        "spawn",
        vec![json!("cat"), json!([]), json!({ "stdin": uint8array(&[0, 1, 2, 0xff]), "streamStdin": false })],
    )
    .await;
    let pid = spawned["pid"].as_u64().unwrap();
    assert_eq!(call(&conn, "waitProcess", vec![json!(pid)]).await, json!(0));
    let replay = call(&conn, "readProcessOutput", vec![json!(pid)]).await;
    let bytes: Vec<u8> = replay["chunks"].as_array().unwrap().iter().flat_map(|c| data(&c["data"])).collect();
    assert_eq!(bytes, vec![0, 1, 2, 0xff]);
    conn.disconnect().await;
}

#[tokio::test]
async fn kill_and_stop_end_processes_and_report_the_exit() {
    let conn = connect("proc-signal");
    let (events, _subs) = Events::subscribe(&conn).await;
    let killed = call(&conn, "spawn", vec![json!("sleep"), json!(["300"])]).await["pid"].as_u64().unwrap();
    let stopped = call(&conn, "spawn", vec![json!("sleep"), json!(["300"])]).await["pid"].as_u64().unwrap();
    assert_eq!(call(&conn, "getProcess", vec![json!(killed)]).await["running"], json!(true));

    assert_eq!(call(&conn, "killProcess", vec![json!(killed)]).await, Value::Null);
    assert_eq!(call(&conn, "stopProcess", vec![json!(stopped)]).await, Value::Null);
    for pid in [killed, stopped] {
        let code = call(&conn, "waitProcess", vec![json!(pid)]).await;
        assert_ne!(code, json!(0), "a signalled sleep does not succeed");
        let seen = events.until_exit(pid).await;
        assert_eq!(seen.last().unwrap().1, json!({ "pid": pid, "exitCode": code }));
        let info = call(&conn, "getProcess", vec![json!(pid)]).await;
        assert_eq!((&info["running"], &info["exitCode"]), (&json!(false), &code));
    }
    // Signalling an exited process is a no-op.
    assert_eq!(call(&conn, "killProcess", vec![json!(killed)]).await, Value::Null);
    conn.disconnect().await;
}

#[tokio::test]
async fn listings_have_the_upstream_shapes() {
    let key = unique_key("proc-list");
    let gateway = Gateway::new(ACTOR, &key).unwrap();
    // Before any VM exists there is no process, and nothing boots a VM.
    for action in ["listProcesses", "allProcesses", "processTree"] {
        assert_eq!(gateway.action(action, vec![]).await.unwrap(), json!([]), "{action}");
    }
    for action in ["getProcess", "readProcessOutput", "killProcess", "writeProcessStdin"] {
        let args = if action == "writeProcessStdin" { vec![json!(77), json!("x")] } else { vec![json!(77)] };
        let err = gateway.action(action, args).await.unwrap_err();
        assert_error(&err, "not_found", "77");
        assert_eq!(err.metadata.as_ref().unwrap()["pid"], json!(77), "{action}");
    }

    let pid = gateway.action("spawn", vec![json!("sleep"), json!(["300"])]).await.unwrap()["pid"].as_u64().unwrap();
    let list = gateway.action("listProcesses", vec![]).await.unwrap();
    let entry = list.as_array().unwrap().iter().find(|p| p["pid"] == json!(pid)).expect("spawned pid listed").clone();
    assert_eq!((&entry["command"], &entry["args"]), (&json!("sleep"), &json!(["300"])));
    assert_eq!((&entry["running"], &entry["exitCode"]), (&json!(true), &Value::Null));
    assert!(entry["startedAt"].as_f64().unwrap() > 1.0e12, "epoch ms: {entry}");
    assert_eq!(gateway.action("getProcess", vec![json!(pid)]).await.unwrap(), entry);

    // The kernel table: the engine (0.2.21) lists the spawned process under
    // its kernel pid with a driver once it runs, and keeps a row for the
    // spawn pid (without driver) because the sidecar never reports which
    // kernel pid that is.
    let (table, kernel) = testkit::eventually(WAIT, "spawned sleep in the kernel table", || async {
        let all = gateway.action("allProcesses", vec![]).await.unwrap();
        let found = all
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["command"] == json!("sleep") && p["args"] == json!(["300"]) && p["driver"] != json!(""))
            .cloned();
        found.map(|p| (all, p))
    })
    .await;
    for field in ["pid", "ppid", "pgid", "sid", "startTime"] {
        assert!(kernel[field].is_number(), "{field} in {kernel}");
    }
    assert_eq!(
        (&kernel["status"], &kernel["exitCode"], &kernel["exitTime"], &kernel["cwd"]),
        (&json!("running"), &Value::Null, &Value::Null, &json!("/workspace"))
    );
    let spawn_row = table.as_array().unwrap().iter().find(|p| p["pid"] == json!(pid)).expect("spawn pid row").clone();
    assert_eq!((&spawn_row["command"], &spawn_row["status"]), (&json!("sleep"), &json!("running")));

    let tree = gateway.action("processTree", vec![]).await.unwrap();
    fn count(nodes: &Value, pid: u64) -> (usize, bool) {
        nodes.as_array().unwrap().iter().fold((0, false), |(n, found), node| {
            assert!(node["children"].is_array(), "{node}");
            let (below, found_below) = count(&node["children"], pid);
            (n + 1 + below, found || found_below || node["pid"] == json!(pid))
        })
    }
    let (nodes, found) = count(&tree, pid);
    assert!(found, "spawned pid in the tree: {tree}");
    assert_eq!(nodes, table.as_array().unwrap().len(), "the forest holds every process once");

    gateway.action("killProcess", vec![json!(pid)]).await.unwrap();
    assert_ne!(gateway.action("waitProcess", vec![json!(pid)]).await.unwrap(), json!(0));
    let err = gateway.action("getProcess", vec![json!(123)]).await.unwrap_err();
    assert_error(&err, "not_found", "123");
}

#[tokio::test]
async fn exec_and_exec_argv_take_stdin_cwd_env_and_timeout() {
    let gateway = Gateway::new(ACTOR, &unique_key("proc-exec")).unwrap();
    let out = gateway.action("exec", vec![json!("cat"), json!({ "stdin": "from stdin" })]).await.unwrap();
    assert_eq!(out, json!({ "exitCode": 0, "stdout": "from stdin", "stderr": "" }));
    let out = gateway
        .action("exec", vec![json!("pwd; echo $GREETING"), json!({ "cwd": "/tmp", "env": { "GREETING": "hey" } })])
        .await
        .unwrap();
    assert_eq!(out["stdout"], json!("/tmp\nhey\n"));
    // A timeout kills the command; the reply still comes, with a failing code.
    let out = gateway.action("exec", vec![json!("sleep 60"), json!({ "timeoutMs": 300 })]).await.unwrap();
    assert_ne!(out["exitCode"], json!(0), "{out}");

    // execArgv passes arguments verbatim: no splitting, no expansion.
    let out = gateway.action("execArgv", vec![json!("echo"), json!(["a  b", "$HOME", "*"])]).await.unwrap();
    assert_eq!(out, json!({ "exitCode": 0, "stdout": "a  b $HOME *\n", "stderr": "" }));
    let out = gateway
        .action("execArgv", vec![json!("cat"), json!([]), json!({ "stdin": uint8array(b"bytes in"), "cwd": "/tmp" })])
        .await
        .unwrap();
    assert_eq!(out["stdout"], json!("bytes in"));
    let out = gateway.action("execArgv", vec![json!("sh"), json!(["-c", "exit 4"])]).await.unwrap();
    assert_eq!(out["exitCode"], json!(4));
    let err = gateway.action("execArgv", vec![json!("no-such-command-x"), json!([])]).await.unwrap_err();
    assert_eq!(err.group, "user", "{err:?}");
    assert!(err.message.contains("no-such-command-x"), "{err:?}");
    assert_eq!(err.metadata.as_ref().unwrap()["command"], json!("no-such-command-x"));
}

#[tokio::test]
async fn execute_and_evaluate_javascript_and_typescript() {
    let gateway = Gateway::new(ACTOR, &unique_key("proc-code")).unwrap();
    let out = gateway
        .action(
            "executeCode",
            vec![
                json!("javascript"),
                json!("console.log('hi', process.cwd(), process.env.X); console.error('warn');"),
                json!({ "cwd": "/tmp", "env": { "X": "y" } }),
            ],
        )
        .await
        .unwrap();
    assert_eq!(out["outcome"], json!("succeeded"), "{out}");
    assert_eq!((&out["exitCode"], &out["stdout"], &out["stderr"]), (&json!(0), &json!("hi /tmp y\n"), &json!("warn\n")));
    assert_eq!(out["error"], Value::Null);
    assert!(out.get("value").is_none(), "executeCode has no value: {out}");

    let out = gateway.action("executeCode", vec![json!("javascript"), json!("throw new Error('boom')")]).await.unwrap();
    assert_eq!(out["outcome"], json!("failed"), "{out}");
    let failure = format!("{} {}", out["error"], out["stderr"]);
    assert!(failure.contains("boom"), "{out}");

    let out = gateway
        .action("executeCode", vec![json!("typescript"), json!("const n: number = 40 + 2; console.log(`n=${n}`);")])
        .await
        .unwrap();
    assert_eq!((&out["outcome"], &out["stdout"]), (&json!("succeeded"), &json!("n=42\n")), "{out}");

    let out = gateway.action("evaluateCode", vec![json!("javascript"), json!("({ sum: 1 + 2, list: [1, 'a'] })")]).await.unwrap();
    assert_eq!(out["value"], json!({ "sum": 3, "list": [1, "a"] }), "{out}");
    let out = gateway.action("evaluateCode", vec![json!("typescript"), json!("(5 as number) * 2")]).await.unwrap();
    assert_eq!(out["value"], json!(10), "{out}");

    let out = gateway
        .action("executeCode", vec![json!("javascript"), json!("while (true) {}"), json!({ "timeoutMs": 500 })])
        .await
        .unwrap();
    assert_eq!(out["outcome"], json!("timedOut"), "{out}");
}

#[tokio::test]
async fn replay_is_bounded_and_reports_what_it_dropped() {
    let gateway = Gateway::new(ACTOR, &unique_key("proc-overflow")).unwrap();
    // 1.6 MB in 16 writes: more than the 1 MiB log keeps.
    let script = "for (let i = 0; i < 16; i++) process.stdout.write(String(i % 10).repeat(100000));";
    let pid = gateway.action("spawn", vec![json!("node"), json!(["-e", script])]).await.unwrap()["pid"].as_u64().unwrap();
    assert_eq!(gateway.action("waitProcess", vec![json!(pid)]).await.unwrap(), json!(0));
    let replay = gateway.action("readProcessOutput", vec![json!(pid)]).await.unwrap();
    let chunks = replay["chunks"].as_array().unwrap();
    let missed = replay["missed"].as_u64().unwrap();
    assert!(missed > 0, "older chunks were dropped and reported: missed {missed}");
    assert_eq!(chunks[0]["seq"].as_u64().unwrap(), missed + 1, "the kept chunks follow the dropped ones");
    assert_eq!(chunks.last().unwrap()["seq"], replay["lastSeq"]);
    let sizes: Vec<usize> = chunks.iter().map(|c| data(&c["data"]).len()).collect();
    let kept: usize = sizes.iter().sum();
    assert!(kept <= (1 << 20) + sizes.iter().max().unwrap(), "kept {kept} bytes");
    // The newest output is all there: the log ends with the last digit.
    let tail = data(&chunks.last().unwrap()["data"]);
    assert_eq!(*tail.last().unwrap(), b'5');
    // A client further along misses nothing it did not already have.
    let later = gateway.action("readProcessOutput", vec![json!(pid), json!(missed)]).await.unwrap();
    assert_eq!(later["missed"], json!(0));
}

#[tokio::test]
async fn every_process_action_names_its_bad_argument() {
    let gateway = Gateway::new(ACTOR, &unique_key("proc-bad")).unwrap();
    let cases: &[(&str, Vec<Value>, &str)] = &[
        ("exec", vec![json!("x"), json!({ "timeoutMs": -1 })], "`options.timeoutMs`"),
        ("exec", vec![json!("x"), json!({ "cpuTimeLimitMs": 5 })], "`options.cpuTimeLimitMs`"),
        ("execArgv", vec![json!("echo"), json!("a b")], "`args`"),
        ("execArgv", vec![json!("echo"), json!([1])], "`args[0]`"),
        ("executeCode", vec![json!("python"), json!("print(1)")], "`language`"),
        ("evaluateCode", vec![json!("javascript")], "`expression`"),
        ("spawn", vec![json!("cat")], "`args`"),
        ("spawn", vec![json!("cat"), json!([]), json!({ "streamStdin": 1 })], "`options.streamStdin`"),
        ("waitProcess", vec![json!("1")], "`pid`"),
        ("killProcess", vec![], "`pid`"),
        ("stopProcess", vec![json!(-3)], "`pid`"),
        ("getProcess", vec![json!(4294967296u64)], "out of range"),
        ("listProcesses", vec![json!(1)], "too many arguments"),
        ("allProcesses", vec![json!(1)], "too many arguments"),
        ("processTree", vec![json!(1)], "too many arguments"),
        ("writeProcessStdin", vec![json!(1), json!(true)], "`data`"),
        ("closeProcessStdin", vec![json!(1.5)], "`pid`"),
        ("readProcessOutput", vec![json!(1), json!("0")], "`after`"),
    ];
    for (action, args, needle) in cases {
        let err = gateway.action(action, args.clone()).await.unwrap_err();
        assert_error(&err, "invalid_argument", needle);
    }
}

#[test]
fn typescript_client_spawns_streams_and_replays() {
    testkit::run_ts_suite("processes.test.mjs", 2);
}
