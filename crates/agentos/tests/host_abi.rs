//! The ABI v13 host, end to end: every `HostVtable` entry and all 11 event
//! tags, proven through the REAL engine and host against the test plugin
//! (`testPlugin`, contract in `crates/test-plugin/src/lib.rs`).
//!
//! Each test uses its own actor key. Waits are bounded polls, never blind
//! sleeps. Sleep / wake is observed through the engine's actor API, which
//! does not touch (and so does not wake) the actor.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use rivetkit_client::connection::ActorConnection;
use rivetkit_client::handle::ActorHandle;
use rivetkit_client::{GetOrCreateOptions, QueueSendStatus, SendAndWaitOpts};
use serde_json::{Value, json};
use testkit::{Gateway, bytes_of, client, endpoint, eventually, uint8array, unique_key};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ACTOR: &str = "testPlugin";
/// Upper bound for anything asynchronous to happen (scheduling, sleep, wake).
const LIMIT: Duration = Duration::from_secs(20);
/// Upper bound for an event to reach a connected client.
const EVENT_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A fresh actor (own key), created through the gateway before the test
/// opens any client connection: two concurrent first `getOrCreate`s of one
/// key can race in the engine (`actor/destroyed_during_creation`).
async fn new_actor(prefix: &str) -> (String, Gateway) {
    let key = unique_key(prefix);
    let gateway = Gateway::new(ACTOR, &key).expect("gateway for the test actor");
    assert_eq!(call(&gateway, "ping", vec![]).await, json!("pong"));
    (key, gateway)
}

async fn call(gateway: &Gateway, action: &str, args: Vec<Value>) -> Value {
    match gateway.action(action, args).await {
        Ok(value) => value,
        Err(error) => panic!("action `{action}` failed: {error:?}"),
    }
}

fn strings(value: Value, what: &str) -> Vec<String> {
    serde_json::from_value(value.clone()).unwrap_or_else(|_| panic!("{what} is not a list of strings: {value}"))
}

async fn event_log(gateway: &Gateway) -> Vec<String> {
    strings(call(gateway, "eventLog", vec![]).await, "eventLog")
}

async fn event_log_memory(gateway: &Gateway) -> Vec<String> {
    strings(call(gateway, "eventLogMemory", vec![]).await, "eventLogMemory")
}

async fn reply_failures(gateway: &Gateway) -> Vec<String> {
    strings(call(gateway, "replyFailures", vec![]).await, "replyFailures")
}

fn index_of(log: &[String], entry: &str) -> usize {
    log.iter().position(|e| e == entry).unwrap_or_else(|| panic!("event log lacks `{entry}`: {log:?}"))
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

async fn actor_id(gateway: &Gateway) -> String {
    let identity = call(gateway, "identity", vec![]).await;
    let id = identity["actorId"].as_str().unwrap_or_default().to_owned();
    assert!(!id.is_empty(), "identity has no actorId: {identity}");
    id
}

/// The engine's record of an actor (`GET /actors?actor_ids=`); reading it
/// never wakes the actor.
async fn engine_actor(gateway: &Gateway, actor_id: &str) -> Option<Value> {
    let url = format!("{}/actors?namespace=default&actor_ids={actor_id}", endpoint());
    let response = gateway.http().get(url).bearer_auth("dev").send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    let body: Value = serde_json::from_slice(&response.bytes().await.ok()?).ok()?;
    body["actors"].as_array()?.iter().find(|a| a["actor_id"] == actor_id).cloned()
}

/// Waits until the engine reports the actor asleep.
async fn wait_asleep(gateway: &Gateway, actor_id: &str) {
    eventually(LIMIT, "the engine to report the actor asleep", || async {
        engine_actor(gateway, actor_id).await.filter(|a| !a["sleep_ts"].is_null()).map(|_| ())
    })
    .await;
}

/// Calls `action` until it succeeds (the first call after a sleep wakes the
/// actor; a call racing the shutdown may fail and is retried).
async fn call_until_ok(gateway: &Gateway, action: &str) -> Value {
    eventually(LIMIT, &format!("`{action}` to succeed after wake"), || async {
        gateway.action(action, vec![]).await.ok()
    })
    .await
}

/// A Rust-client handle on the actor with these connection params.
fn handle_with_params(key: &str, params: Value) -> ActorHandle {
    client()
        .get_or_create(ACTOR, vec![key.to_owned()], GetOrCreateOptions { params: Some(params), ..Default::default() })
        .expect("client handle")
}

/// Subscribes to `event` and returns a channel of the args it receives.
async fn subscribe(conn: &ActorConnection, event: &str) -> mpsc::UnboundedReceiver<Vec<Value>> {
    let (tx, rx) = mpsc::unbounded_channel();
    let _subscription = conn
        .on_event(event, move |args: &Vec<Value>| {
            let _ = tx.send(args.clone());
        })
        .await;
    rx
}

async fn next_event(rx: &mut mpsc::UnboundedReceiver<Vec<Value>>, what: &str) -> Vec<Value> {
    match tokio::time::timeout(EVENT_LIMIT, rx.recv()).await {
        Ok(Some(args)) => args,
        Ok(None) => panic!("event stream for {what} ended"),
        Err(_) => panic!("no {what} event within {EVENT_LIMIT:?}"),
    }
}

/// Waits until the plugin has accepted (logged) a subscription to `event`.
async fn wait_subscribed(gateway: &Gateway, event: &str) {
    let entry = format!("Subscribe:{event}");
    eventually(LIMIT, &format!("`{entry}` in the event log"), || async {
        event_log(gateway).await.contains(&entry).then_some(())
    })
    .await;
}

/// The id of the live connection whose params equal `params`.
async fn conn_id_with_params(gateway: &Gateway, params: &Value) -> String {
    eventually(LIMIT, "the connection to be listed by `conns`", || async {
        let conns = call(gateway, "conns", vec![]).await;
        conns
            .as_array()?
            .iter()
            .find(|c| &c["params"] == params)
            .map(|c| c["id"].as_str().unwrap_or_default().to_owned())
    })
    .await
}

/// A raw `/connect` WebSocket (JSON encoding) through the gateway.
async fn raw_connect(gateway: &Gateway, params: Option<&Value>) -> rivetkit_client::RawWebSocket {
    let url = gateway.url("/connect").replacen("http://", "ws://", 1);
    let mut protocols = vec!["rivet".to_owned(), "rivet_encoding.json".to_owned()];
    if let Some(params) = params {
        let text = params.to_string();
        let encoded: String = text
            .bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect();
        protocols.push(format!("rivet_conn_params.{encoded}"));
    }
    let mut request = url.into_client_request().expect("ws request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.join(", ").parse().expect("header value"));
    let (ws, _) = tokio_tungstenite::connect_async(request).await.expect("WebSocket upgrade through the gateway");
    ws
}

/// What a raw `/connect` socket received until it closed.
#[derive(Debug, Default)]
struct RawOutcome {
    frames: Vec<Value>,
    close: Option<(CloseCode, String)>,
}

async fn read_until_close(ws: &mut rivetkit_client::RawWebSocket, stop_after_init: bool) -> RawOutcome {
    let mut outcome = RawOutcome::default();
    let read = async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Text(text)) => {
                    let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                    let is_init = frame["body"]["tag"] == "Init";
                    outcome.frames.push(frame);
                    if is_init && stop_after_init {
                        return;
                    }
                }
                Ok(Message::Close(frame)) => {
                    outcome.close = frame.map(|f| (f.code, f.reason.to_string()));
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(EVENT_LIMIT, read).await.expect("raw socket answered in time");
    outcome
}

// ---------------------------------------------------------------------------
// State, save cycles, sleep and wake
// ---------------------------------------------------------------------------

/// Action + reply_ok, state_set / request_save / state_save /
/// request_save_and_wait / SerializeState, sleep, and state_get in a new
/// instance after the wake.
#[tokio::test]
async fn state_is_saved_and_survives_sleep() {
    let (_key, gw) = new_actor("hostabi-state").await;
    assert_eq!(call(&gw, "ping", vec![]).await, json!("pong"));
    assert_eq!(call(&gw, "getCount", vec![]).await, json!(0));
    assert_eq!(call(&gw, "stateFromHost", vec![]).await, Value::Null, "a fresh actor has empty state");

    assert_eq!(call(&gw, "increment", vec![]).await, json!(1));
    assert_eq!(call(&gw, "increment", vec![json!(4)]).await, json!(5));
    assert_eq!(call(&gw, "getCount", vec![]).await, json!(5));
    assert_eq!(call(&gw, "stateFromHost", vec![]).await, json!({"count": 5}));

    assert_eq!(call(&gw, "requestSaveAndWait", vec![]).await, Value::Null);
    let log = event_log(&gw).await;
    let wait_at = index_of(&log, "Action:requestSaveAndWait");
    assert!(
        log[wait_at..].iter().any(|e| e == "SerializeState"),
        "request_save_and_wait completed without a SerializeState: {log:?}"
    );
    assert_eq!(call(&gw, "saveState", vec![]).await, Value::Null);
    assert_eq!(call(&gw, "increment", vec![json!(2)]).await, json!(7));

    let id = actor_id(&gw).await;
    assert_eq!(call(&gw, "goToSleep", vec![]).await, json!({"status": "Ok", "message": ""}));
    wait_asleep(&gw, &id).await;

    // The next call wakes a new instance, which loads the count via state_get.
    assert_eq!(call_until_ok(&gw, "getCount").await, json!(7));
    assert_eq!(call(&gw, "stateFromHost", vec![]).await, json!({"count": 7}));
    let memory = event_log_memory(&gw).await;
    assert!(
        !memory.iter().any(|e| e == "Action:goToSleep" || e == "Action:increment"),
        "the wake should be a new instance: {memory:?}"
    );
    assert_eq!(call(&gw, "lastShutdown", vec![]).await, json!("sleep"));
    assert!(reply_failures(&gw).await.is_empty());
}

/// actor_aborted, wait_actor_abort, and the Sleep + final SerializeState
/// events of a graceful sleep.
#[tokio::test]
async fn abort_signal_fires_on_sleep() {
    let (_key, gw) = new_actor("hostabi-abort").await;
    assert_eq!(call(&gw, "aborted", vec![]).await, json!(false));
    assert_eq!(call(&gw, "waitAbortThenMark", vec![]).await, Value::Null);
    assert_eq!(call(&gw, "abortedSeen", vec![]).await, json!(false));
    assert_eq!(call(&gw, "lastShutdown", vec![]).await, Value::Null);

    let id = actor_id(&gw).await;
    assert_eq!(call(&gw, "goToSleep", vec![]).await, json!({"status": "Ok", "message": ""}));
    wait_asleep(&gw, &id).await;

    assert_eq!(call_until_ok(&gw, "abortedSeen").await, json!(true));
    assert_eq!(call(&gw, "lastShutdown", vec![]).await, json!("sleep"));
    assert_eq!(call(&gw, "aborted", vec![]).await, json!(false), "a new instance starts un-aborted");
    let log = event_log(&gw).await;
    let sleep_at = index_of(&log, "Sleep");
    assert!(sleep_at > index_of(&log, "Action:goToSleep"));
    assert!(log[sleep_at..].iter().any(|e| e == "SerializeState"), "no final SerializeState after Sleep: {log:?}");
}

// ---------------------------------------------------------------------------
// Identity, SQLite, KV
// ---------------------------------------------------------------------------

/// actor_identity, factory config, sql_is_enabled, db_exec / db_run /
/// db_query and the db_exec error path.
#[tokio::test]
async fn identity_and_sqlite() {
    let (key, gw) = new_actor("hostabi-sql").await;
    let identity = call(&gw, "identity", vec![]).await;
    assert!(!identity["actorId"].as_str().unwrap_or_default().is_empty(), "{identity}");
    assert_eq!(identity["name"], json!(ACTOR));
    assert_eq!(identity["key"], json!(key));
    assert_eq!(identity["input"], Value::Null);
    assert_eq!(identity["hasState"], json!(false));
    assert!(identity["region"].is_string(), "{identity}");
    assert_eq!(call(&gw, "config", vec![]).await, json!({"config": {}, "sidecarPath": ""}));

    assert_eq!(call(&gw, "sqlEnabled", vec![]).await, json!(true));
    let rows_of = |rows: Value| -> Vec<BTreeMap<String, Value>> {
        serde_json::from_value(rows.clone()).unwrap_or_else(|_| panic!("rows are not objects: {rows}"))
    };
    let row = |id: i64, label: &str| -> BTreeMap<String, Value> {
        serde_json::from_value(json!({"id": id, "label": label, "n": 42, "f": 1.5, "nothing": null})).unwrap()
    };
    let first = format!("first-{}", uuid::Uuid::new_v4());
    let second = format!("second-{}", uuid::Uuid::new_v4());
    assert_eq!(rows_of(call(&gw, "sqlRoundTrip", vec![json!(first)]).await), vec![row(1, &first)]);
    assert_eq!(rows_of(call(&gw, "sqlRoundTrip", vec![json!(second)]).await), vec![row(2, &second)]);

    let error = call(&gw, "sqlError", vec![]).await;
    let error = error.as_str().unwrap_or_else(|| panic!("sqlError returns text, got {error}"));
    assert!(error.contains("syntax error") && error.contains("THIS"), "not SQLite's error text: {error}");
}

/// What a `db_exec` batch replies, which the VM database (the sidecar's
/// SQL socket) relies on: the rows of the last statement that returned
/// rows, `changes()` read in the same batch, a batch that opens and rolls
/// back its own transaction, and a temporary view's ordered columns.
#[tokio::test]
async fn sql_exec_batches() {
    let (_key, gw) = new_actor("hostabi-sqlexec").await;
    let rows = |sql: &'static str| {
        let gw = &gw;
        async move { call(gw, "sqlExec", vec![json!(sql)]).await }
    };
    assert_eq!(rows("SELECT 1 AS a; SELECT 2 AS b").await, json!({"rows": [{"b": 2}]}));
    assert_eq!(
        rows("CREATE TABLE t (x); INSERT INTO t VALUES (1); SELECT changes() AS c, last_insert_rowid() AS r").await,
        json!({"rows": [{"c": 1, "r": 1}]})
    );
    assert_eq!(rows("SELECT 9 AS z; INSERT INTO t VALUES (2)").await, json!({"rows": [{"z": 9}]}));
    assert_eq!(
        rows("BEGIN; INSERT INTO t VALUES (4); SELECT count(*) AS n FROM t; ROLLBACK").await,
        json!({"rows": [{"n": 3}]})
    );
    assert_eq!(rows("SELECT count(*) AS n FROM t").await, json!({"rows": [{"n": 2}]}));
    let info = rows("BEGIN; CREATE TEMP VIEW v AS SELECT 2 AS b, 1 AS a, 3 AS a; PRAGMA temp.table_info(v); ROLLBACK").await;
    let mut names: Vec<(i64, String)> = info["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows: {info}"))
        .iter()
        .map(|row| (row["cid"].as_i64().unwrap(), row["name"].as_str().unwrap().to_owned()))
        .collect();
    names.sort();
    assert_eq!(names, [(0, "b".to_owned()), (1, "a".to_owned()), (2, "a:1".to_owned())]);
    let error = rows("SELECT * FROM v").await;
    assert!(error["error"].as_str().is_some_and(|e| e.contains("no such table: v")), "the view was rolled back: {error}");
}

/// The bulk-file benchmark's plain-SQL baseline: bytes stored in rows and
/// read back whole (several rows, a short last row, every byte value), then
/// replaced by a shorter value and by nothing.
#[tokio::test]
async fn blob_rows_round_trip() {
    let (_key, gw) = new_actor("hostabi-blob").await;
    assert_eq!(bytes_of(&call(&gw, "blobGet", vec![]).await), Vec::<u8>::new());
    let bytes: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 256) as u8).collect();
    assert_eq!(call(&gw, "blobPut", vec![uint8array(&bytes), json!(1000)]).await, json!(3));
    assert_eq!(bytes_of(&call(&gw, "blobGet", vec![]).await), bytes);
    assert_eq!(call(&gw, "blobPut", vec![uint8array(b"short")]).await, json!(1));
    assert_eq!(bytes_of(&call(&gw, "blobGet", vec![]).await), b"short");
    assert_eq!(call(&gw, "blobPut", vec![uint8array(b"")]).await, json!(0));
    assert_eq!(bytes_of(&call(&gw, "blobGet", vec![]).await), Vec::<u8>::new());
}

/// All nine kv_* entries (the plugin's documented round trip).
#[tokio::test]
async fn kv_round_trip() {
    let (_key, gw) = new_actor("hostabi-kv").await;
    let expected = json!({
        "get": "1",
        "getMissing": null,
        "batchGet": ["1", "2", null, "4"],
        "listPrefix": [["tp/kv/a", "1"], ["tp/kv/b", "2"], ["tp/kv/c", "3"], ["tp/kv/d", "4"]],
        "listPrefixReverseLimit2": [["tp/kv/d", "4"], ["tp/kv/c", "3"]],
        "listRange": [["tp/kv/b", "2"], ["tp/kv/c", "3"]],
        "listRangeReverseLimit1": [["tp/kv/d", "4"]],
        "getAfterDelete": null,
        "afterBatchDelete": [["tp/kv/d", "4"]],
        "afterDeleteRange": [["tp/kv/d", "4"], ["tp/kv/g", "7"]],
        "afterCleanup": [],
    });
    assert_eq!(call(&gw, "kvRoundTrip", vec![]).await, expected);
    // Twice: the scratch area is cleared and reused.
    assert_eq!(call(&gw, "kvRoundTrip", vec![]).await, expected);
}

// ---------------------------------------------------------------------------
// Scheduling and alarms
// ---------------------------------------------------------------------------

async fn wait_fired(gateway: &Gateway, tag: &str) {
    eventually(LIMIT, &format!("scheduled tag `{tag}` to fire"), || async {
        let fired = strings(call(gateway, "scheduledFired", vec![]).await, "scheduledFired");
        fired.iter().any(|t| t == tag).then_some(())
    })
    .await;
}

async fn scheduled(gateway: &Gateway) -> Vec<Value> {
    call(gateway, "scheduledEvents", vec![]).await.as_array().cloned().expect("scheduledEvents is a list")
}

fn listed<'a>(events: &'a [Value], tag: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["args"] == json!([tag]))
}

/// schedule_after, schedule_at, scheduled_events, set_alarm, and scheduled
/// actions arriving as Action events.
#[tokio::test]
async fn schedules_fire_and_alarms_set() {
    let (_key, gw) = new_actor("hostabi-sched").await;
    let tag = || format!("t-{}", uuid::Uuid::new_v4());
    let (soon, at_tag, later) = (tag(), tag(), tag());

    let before = now_ms();
    let record = json!("recordScheduled");
    assert_eq!(call(&gw, "scheduleAfter", vec![json!(300), record.clone(), json!([soon])]).await, Value::Null);
    let when = now_ms() + 500;
    assert_eq!(call(&gw, "scheduleAt", vec![json!(when), record.clone(), json!([at_tag])]).await, Value::Null);
    assert_eq!(call(&gw, "scheduleAfter", vec![json!(4000), record.clone(), json!([later])]).await, Value::Null);
    let after = now_ms();
    let events = scheduled(&gw).await;
    let listed_by = now_ms();

    // The 4 s entry is certainly still pending: every field is checked.
    let event = listed(&events, &later).unwrap_or_else(|| panic!("scheduledEvents lacks the 4 s entry: {events:?}"));
    assert_eq!(event["actionName"], record);
    assert!(!event["eventId"].as_str().unwrap_or_default().is_empty(), "{event}");
    let at = event["timestampMs"].as_i64().expect("timestampMs");
    assert!(at >= before + 4000 && at <= after + 4000, "timestamp {at} is not schedule time + 4000 ms");
    // The short ones are listed too, unless the listing finished after they
    // were due (a loaded machine): then they must have fired instead, which
    // is checked below either way.
    match listed(&events, &soon) {
        Some(event) => {
            assert_eq!(event["actionName"], record);
            let at = event["timestampMs"].as_i64().expect("timestampMs");
            assert!(at >= before + 300 && at <= after + 300, "timestamp {at} is not schedule time + 300 ms");
        }
        None => assert!(listed_by >= before + 300, "the 300 ms entry is missing before it was due: {events:?}"),
    }
    match listed(&events, &at_tag) {
        Some(event) => {
            assert_eq!(event["timestampMs"], json!(when));
            assert_eq!(event["actionName"], record);
        }
        None => assert!(listed_by >= when, "the scheduleAt entry is missing before it was due: {events:?}"),
    }
    let ids: Vec<&str> = events.iter().filter_map(|e| e["eventId"].as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "event ids are not unique: {events:?}");

    for tag in [&soon, &at_tag, &later] {
        wait_fired(&gw, tag).await;
    }
    let mut expected = vec![soon.clone(), at_tag.clone(), later.clone()];
    expected.sort();
    assert_eq!(strings(call(&gw, "scheduledFired", vec![]).await, "scheduledFired"), expected);
    let remaining = scheduled(&gw).await;
    assert!(remaining.is_empty(), "fired events are still listed: {remaining:?}");
    // Scheduled actions arrive as plain Action events.
    let log = event_log(&gw).await;
    assert_eq!(log.iter().filter(|e| *e == "Action:recordScheduled").count(), 3, "{log:?}");

    assert_eq!(call(&gw, "setAlarm", vec![json!(now_ms() + 3_600_000)]).await, Value::Null);
    assert_eq!(call(&gw, "setAlarm", vec![Value::Null]).await, Value::Null);
    assert!(reply_failures(&gw).await.is_empty());
}

/// A scheduled action wakes a sleeping actor through the engine alarm: no
/// client traffic reaches the actor between the sleep and the wake.
#[tokio::test]
async fn scheduled_action_wakes_a_sleeping_actor() {
    let (_key, gw) = new_actor("hostabi-alarm").await;
    let id = actor_id(&gw).await;
    let awake_since = engine_actor(&gw, &id).await.expect("engine knows the actor")["connectable_ts"].clone();
    assert!(!awake_since.is_null(), "the actor is awake");
    let tag = format!("t-{}", uuid::Uuid::new_v4());
    assert_eq!(
        call(&gw, "scheduleAfter", vec![json!(5000), json!("recordScheduled"), json!([tag])]).await,
        Value::Null
    );
    assert_eq!(call(&gw, "goToSleep", vec![]).await, json!({"status": "Ok", "message": ""}));
    // From here until the wake only the engine is asked: a new connectable
    // time means a new instance, started by nobody but the alarm.
    eventually(LIMIT, "the engine alarm to wake the actor again", || async {
        engine_actor(&gw, &id)
            .await
            .filter(|a| a["sleep_ts"].is_null() && !a["connectable_ts"].is_null() && a["connectable_ts"] != awake_since)
            .map(|_| ())
    })
    .await;

    wait_fired(&gw, &tag).await;
    assert_eq!(call(&gw, "lastShutdown", vec![]).await, json!("sleep"));
    let log = event_log(&gw).await;
    let sleep_at = index_of(&log, "Sleep");
    let first_action_after_wake = log[sleep_at..].iter().find(|e| e.starts_with("Action:"));
    assert_eq!(
        first_action_after_wake.map(String::as_str),
        Some("Action:recordScheduled"),
        "the wake was not caused by the scheduled action: {log:?}"
    );
}

// ---------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------

/// ConnPreflight / ConnOpen / Subscribe / ConnClosed, conn_list, conn_send,
/// broadcast and conn_disconnect, over a real WebSocket connection.
#[tokio::test]
async fn websocket_connection_lifecycle() {
    let (key, gw) = new_actor("hostabi-conn").await;
    let params = json!({"tag": uuid::Uuid::new_v4().to_string()});
    let handle = handle_with_params(&key, params.clone());
    let (conn, closes) = connect_counting_closes(&handle).await;
    let mut direct = subscribe(&conn, "direct").await;
    let mut news = subscribe(&conn, "news").await;

    let id = conn_id_with_params(&gw, &params).await;
    let conns = call(&gw, "conns", vec![]).await;
    let listed = conns.as_array().unwrap().iter().find(|c| c["id"] == json!(id)).cloned().unwrap();
    assert_eq!(listed["params"], params, "{listed}");
    // Gateway WebSockets are hibernatable on this engine; either way it is a bool.
    assert!(listed["isHibernatable"].is_boolean(), "{listed}");
    wait_subscribed(&gw, "news").await;
    wait_subscribed(&gw, "direct").await;

    let direct_value = json!({"hello": id, "n": [1, 2.5, null, true]});
    assert_eq!(call(&gw, "connSend", vec![json!(id), json!("direct"), direct_value.clone()]).await, Value::Null);
    assert_eq!(next_event(&mut direct, "direct").await, vec![direct_value]);

    let news_value = json!({"headline": "abi", "at": 7});
    assert_eq!(call(&gw, "broadcast", vec![json!("news"), news_value.clone()]).await, Value::Null);
    assert_eq!(next_event(&mut news, "news").await, vec![news_value]);

    let unknown = call(&gw, "connSendUnknown", vec![]).await;
    let unknown = unknown.as_str().unwrap_or_default().to_owned();
    assert!(unknown.starts_with("Err:") && unknown.contains("tp-no-such-conn"), "{unknown}");

    // The same connection answers actions too.
    assert_eq!(conn.action("ping", vec![]).await.expect("ping over the connection"), json!("pong"));

    assert_eq!(call(&gw, "disconnect", vec![json!(id)]).await, Value::Null);
    eventually(LIMIT, "the client to see its connection closed", || async {
        (closes.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    assert_connection_lifecycle(&gw, &id, "Subscribe:news").await;
    let conns = call(&gw, "conns", vec![]).await;
    assert!(!conns.as_array().unwrap().iter().any(|c| c["id"] == json!(id)), "{id} still listed: {conns}");
    conn.disconnect().await;
}

/// Connects and counts how often the client sees its socket close.
async fn connect_counting_closes(
    handle: &rivetkit_client::handle::ActorHandle,
) -> (rivetkit_client::connection::ActorConnection, Arc<AtomicUsize>) {
    let conn = handle.connect();
    let closes = Arc::new(AtomicUsize::new(0));
    let counter = closes.clone();
    conn.on_close(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    })
    .await;
    (conn, closes)
}

/// Waits for the connection's `ConnClosed`, then checks the plugin saw its
/// events in protocol order (Preflight, Open, the subscription, Closed) and
/// refused no reply.
async fn assert_connection_lifecycle(gw: &Gateway, id: &str, subscribe_entry: &str) {
    let closed = format!("ConnClosed:{id}");
    eventually(LIMIT, "ConnClosed in the event log", || async { event_log(gw).await.contains(&closed).then_some(()) })
        .await;
    let log = event_log(gw).await;
    let preflight = index_of(&log, &format!("ConnPreflight:{id}"));
    let open = index_of(&log, &format!("ConnOpen:{id}"));
    let subscribe = index_of(&log, subscribe_entry);
    let closed = index_of(&log, &closed);
    assert!(preflight < open && open < subscribe && subscribe < closed, "{log:?}");
    assert!(reply_failures(gw).await.is_empty());
}

/// ConnPreflight rejected by the plugin: the connection never opens, over
/// the official client, the raw `/connect` protocol and an HTTP action.
#[tokio::test]
async fn preflight_rejection_refuses_the_connection() {
    let (key, gw) = new_actor("hostabi-reject").await;
    let params = json!({"reject": true});

    // Raw protocol: an Error frame (not tied to an action), then close 1011.
    let mut ws = raw_connect(&gw, Some(&params)).await;
    let outcome = read_until_close(&mut ws, false).await;
    let [frame] = outcome.frames.as_slice() else { panic!("expected one Error frame: {outcome:?}") };
    assert_eq!(frame["body"]["tag"], json!("Error"), "{frame}");
    assert_eq!(frame["body"]["val"]["group"], json!("core"), "{frame}");
    assert_eq!(frame["body"]["val"]["code"], json!("internal_error"), "{frame}");
    assert_eq!(frame["body"]["val"]["actionId"], Value::Null, "{frame}");
    assert_eq!(outcome.close, Some((CloseCode::Error, "core.internal_error".to_owned())), "{outcome:?}");

    // HTTP actions make an ephemeral connection, which is refused the same way.
    let rejected = gw
        .http()
        .post(gw.url("/action/ping"))
        .header("x-rivet-encoding", "json")
        .header("x-rivet-conn-params", params.to_string())
        .body(json!({"args": []}).to_string())
        .send()
        .await
        .expect("POST /action/ping");
    let status = rejected.status().as_u16();
    let body: Value = serde_json::from_slice(&rejected.bytes().await.unwrap()).expect("JSON error body");
    assert_eq!((status, &body["group"], &body["code"]), (500, &json!("core"), &json!("internal_error")), "{body}");

    // The official client: its first action gets no answer, the connection
    // reports the (masked) error and never reaches Connected.
    let handle = handle_with_params(&key, params.clone());
    let conn = handle.connect();
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = errors.clone();
    conn.on_error(move |message| sink.lock().unwrap().push(message.to_owned())).await;
    let first_action = {
        let conn = conn.clone();
        tokio::spawn(async move { conn.action("ping", vec![]).await })
    };
    eventually(LIMIT, "the client to report the refused connection", || async {
        errors.lock().unwrap().iter().any(|m| m == "An internal error occurred").then_some(())
    })
    .await;
    assert_ne!(conn.conn_status(), rivetkit_client::ConnectionStatus::Connected);
    if first_action.is_finished() {
        let result = first_action.await.expect("action task");
        assert!(result.is_err(), "an action on a refused connection succeeded: {result:?}");
    } else {
        first_action.abort();
    }
    conn.disconnect().await;

    // The plugin saw the preflights and opened none of them.
    let log = event_log(&gw).await;
    let refused: Vec<&str> = log
        .iter()
        .filter_map(|e| e.strip_prefix("ConnPreflight:"))
        .filter(|id| !log.contains(&format!("ConnOpen:{id}")))
        .collect();
    assert!(refused.len() >= 3, "expected refused preflights (raw, HTTP, client): {log:?}");
    assert!(reply_failures(&gw).await.is_empty());
}

/// A Subscribe the plugin rejects closes the socket with 1011.
#[tokio::test]
async fn rejected_subscription_closes_the_socket() {
    let (_key, gw) = new_actor("hostabi-forbidden").await;
    let mut ws = raw_connect(&gw, None).await;
    let opened = read_until_close(&mut ws, true).await;
    let init = opened.frames.last().unwrap_or_else(|| panic!("no Init frame: {opened:?}"));
    assert_eq!(init["body"]["tag"], json!("Init"), "{init}");
    let id = init["body"]["val"]["connectionId"].as_str().expect("connectionId").to_owned();

    let request = json!({"body": {"tag": "SubscriptionRequest", "val": {"eventName": "forbidden", "subscribe": true}}});
    ws.send(Message::Text(request.to_string().into())).await.expect("send subscription request");
    let outcome = read_until_close(&mut ws, false).await;
    assert_eq!(outcome.close, Some((CloseCode::Error, "core.internal_error".to_owned())), "{outcome:?}");

    assert_connection_lifecycle(&gw, &id, "Subscribe:forbidden").await;
}

// ---------------------------------------------------------------------------
// Http, QueueSend, WsOpen
// ---------------------------------------------------------------------------

/// Http events: the `/request` prefix is stripped, the query kept, and the
/// plugin's status, headers and body reach the client.
#[tokio::test]
async fn http_requests_reach_the_plugin() {
    let (_key, gw) = new_actor("hostabi-http").await;
    let tag = uuid::Uuid::new_v4().to_string();

    let response = gw.http().get(gw.url("/request/echo?x=1")).header("x-hostabi", &tag).send().await.expect("GET");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-test-plugin"], "1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body");
    assert_eq!(body["method"], json!("GET"));
    assert_eq!(body["uri"], json!("/echo?x=1"));
    assert_eq!(body["body"], json!(""));
    assert_eq!(body["headers"]["x-hostabi"], json!(tag));

    let payload = format!("payload-{tag}");
    let response = gw.http().post(gw.url("/request/echo?x=1")).body(payload.clone()).send().await.expect("POST");
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["x-test-plugin"], "1");
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body");
    assert_eq!(body["method"], json!("POST"));
    assert_eq!(body["uri"], json!("/echo?x=1"));
    assert_eq!(body["body"], json!(payload));

    let response = gw.http().get(gw.url("/request/status/418")).send().await.expect("GET 418");
    assert_eq!(response.status().as_u16(), 418);
    assert_eq!(response.headers()["x-test-plugin"], "1");

    let log = event_log(&gw).await;
    for entry in ["Http:GET /echo?x=1", "Http:POST /echo?x=1", "Http:GET /status/418"] {
        assert!(log.iter().any(|e| e == entry), "event log lacks `{entry}`: {log:?}");
    }
    assert!(reply_failures(&gw).await.is_empty());
}

/// QueueSend events over `/queue/{name}`, from raw HTTP (JSON) and from the
/// official client (BARE).
#[tokio::test]
async fn queue_send_is_answered_by_the_plugin() {
    let (key, gw) = new_actor("hostabi-queue").await;
    let response = gw
        .http()
        .post(gw.url("/queue/jobs"))
        .header("x-rivet-encoding", "json")
        .header("content-type", "application/json")
        .body(json!({"body": {"a": 1}, "wait": true, "timeout": 5000}).to_string())
        .send()
        .await
        .expect("queue POST");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).expect("JSON body");
    assert_eq!(body, json!({"status": "completed", "response": {"queue": "jobs", "received": {"a": 1}}}));

    let handle = client().get_or_create(ACTOR, vec![key.clone()], GetOrCreateOptions::default()).expect("handle");
    let result = handle
        .send_and_wait("mail", json!({"b": [2, "x"]}), SendAndWaitOpts { timeout: Some(Duration::from_secs(5)) })
        .await
        .expect("send_and_wait");
    assert_eq!(result.status, QueueSendStatus::Completed);
    assert_eq!(result.response, Some(json!({"queue": "mail", "received": {"b": [2, "x"]}})));

    let log = event_log(&gw).await;
    for entry in ["QueueSend:jobs", "QueueSend:mail"] {
        assert!(log.iter().any(|e| e == entry), "event log lacks `{entry}`: {log:?}");
    }
    assert!(reply_failures(&gw).await.is_empty());
}

/// A raw WebSocket on a non-`/connect` path produces WsOpen after the
/// connection's Preflight and Open, and ConnClosed when the client closes it.
#[tokio::test]
async fn raw_websocket_produces_ws_open() {
    let (key, gw) = new_actor("hostabi-ws").await;
    let handle = client().get_or_create(ACTOR, vec![key], GetOrCreateOptions::default()).expect("handle");
    let ws = handle.web_socket("probe", None).await.expect("raw WebSocket upgrade through the gateway");
    let id = eventually(LIMIT, "WsOpen in the event log", || async {
        event_log(&gw).await.iter().find_map(|e| e.strip_prefix("WsOpen:").map(str::to_owned))
    })
    .await;
    assert!(!id.is_empty());
    let log = event_log(&gw).await;
    let preflight = index_of(&log, &format!("ConnPreflight:{id}"));
    let open = index_of(&log, &format!("ConnOpen:{id}"));
    let ws_open = index_of(&log, &format!("WsOpen:{id}"));
    assert!(preflight < open && open < ws_open, "{log:?}");

    // The plugin cannot exchange frames on it (ABI §3), but closing it from
    // the client ends the connection.
    let mut ws = ws;
    ws.close(None).await.expect("close the raw WebSocket");
    let closed = format!("ConnClosed:{id}");
    eventually(LIMIT, "ConnClosed for the raw WebSocket", || async {
        event_log(&gw).await.contains(&closed).then_some(())
    })
    .await;
    assert!(reply_failures(&gw).await.is_empty());
}

// ---------------------------------------------------------------------------
// Lifecycle broadcasts: Sleep and Destroy
// ---------------------------------------------------------------------------

/// The plugin broadcasts `lifecycle` = "sleep" while handling Sleep.
#[tokio::test]
async fn subscribed_client_hears_sleep() {
    let (key, gw) = new_actor("hostabi-sleepcast").await;
    let handle = handle_with_params(&key, json!({"role": "listener"}));
    let conn = handle.connect();
    let mut lifecycle = subscribe(&conn, "lifecycle").await;
    wait_subscribed(&gw, "lifecycle").await;
    assert_eq!(call(&gw, "goToSleep", vec![]).await, json!({"status": "Ok", "message": ""}));
    assert_eq!(next_event(&mut lifecycle, "lifecycle").await, vec![json!("sleep")]);
    conn.disconnect().await;
}

/// Destroy through the engine API: the plugin gets Destroy and broadcasts
/// `lifecycle` = "destroy" to subscribed clients.
#[tokio::test]
async fn subscribed_client_hears_destroy() {
    let (key, gw) = new_actor("hostabi-destroy").await;
    let id = actor_id(&gw).await;
    let handle = handle_with_params(&key, json!({"role": "listener"}));
    let (conn, closes) = connect_counting_closes(&handle).await;
    let mut lifecycle = subscribe(&conn, "lifecycle").await;
    wait_subscribed(&gw, "lifecycle").await;

    let url = format!("{}/actors/{id}?namespace=default", endpoint());
    let response = gw.http().delete(url).bearer_auth("dev").send().await.expect("DELETE actor");
    assert!(response.status().is_success(), "destroy failed: {}", response.status());
    assert_eq!(next_event(&mut lifecycle, "lifecycle").await, vec![json!("destroy")]);
    eventually(LIMIT, "the destroyed actor's connection to close", || async {
        (closes.load(Ordering::SeqCst) > 0).then_some(())
    })
    .await;
    conn.disconnect().await;
    eventually(LIMIT, "the engine to report the actor destroyed", || async {
        engine_actor(&gw, &id).await.filter(|a| !a["destroy_ts"].is_null()).map(|_| ())
    })
    .await;
}

// ---------------------------------------------------------------------------
// Keep-awake, log, replies, bytes, errors
// ---------------------------------------------------------------------------

/// keep_awake_enter / exit / count, log, hibernatable_ws_ack, reply_ok on an
/// answered token, JSON-compat bytes, and structured reply_err.
#[tokio::test]
async fn misc_host_entries_and_errors() {
    let work = std::env::var("AGENTOS_TEST_WORK").unwrap_or_else(|_| {
        panic!("AGENTOS_TEST_WORK is not set: run through ./scripts/test, which exports it (the host log is $AGENTOS_TEST_WORK/host.log)")
    });
    let (_key, gw) = new_actor("hostabi-misc").await;

    let keep = call(&gw, "keepAwake", vec![]).await;
    assert!(keep["countInside"].as_u64().unwrap_or(0) >= 1, "{keep}");
    assert_eq!(keep["exitStatus"], json!("Ok"));
    assert_eq!(keep["exitUnknownStatus"], json!("Err"));
    assert!(keep["countAfter"].as_u64().expect("countAfter") < keep["countInside"].as_u64().unwrap(), "{keep}");

    let line = format!("hostabi log line {}", uuid::Uuid::new_v4());
    assert_eq!(call(&gw, "log", vec![json!(2), json!(line)]).await, Value::Null);
    let host_log = std::path::Path::new(&work).join("host.log");
    eventually(Duration::from_secs(10), "the plugin's log line in host.log", || async {
        let text = std::fs::read_to_string(&host_log).ok()?;
        text.lines().any(|l| l.contains(&line) && l.contains("native_plugin") && l.contains("INFO")).then_some(())
    })
    .await;

    let ack = call(&gw, "hibernatableAckInvalid", vec![]).await;
    assert_eq!(ack["status"], json!("Err"), "{ack}");
    assert!(!ack["message"].as_str().unwrap_or_default().is_empty(), "{ack}");

    assert_eq!(call(&gw, "doubleReply", vec![]).await, json!("first"));
    // Actions run one at a time, so the second reply has happened by now.
    assert_eq!(call(&gw, "doubleReplyStatus", vec![]).await, json!("Err"), "a second reply_ok must be refused");

    let bytes: Vec<u8> = vec![0x00, 0xff, 0xfe, 0x80, 0xc3, 0x28, 0x01, 0x7f];
    assert!(std::str::from_utf8(&bytes).is_err());
    let echoed = call(&gw, "echoBytes", vec![uint8array(&bytes)]).await;
    assert_eq!(bytes_of(&echoed), bytes);

    let error = gw.action("fail", vec![json!("E_TEST"), json!("msg")]).await.expect_err("fail must fail");
    assert_eq!(
        (error.group.as_str(), error.code.as_str(), error.message.as_str()),
        ("user", "E_TEST", "msg"),
        "{error:?}"
    );
    assert_eq!(error.metadata, Some(json!({"from": "test-plugin"})));
    let error = gw.action("noSuchAction", vec![]).await.expect_err("unknown action must fail");
    assert_eq!((error.group.as_str(), error.code.as_str()), ("user", "action_not_found"), "{error:?}");
    assert!(error.message.contains("noSuchAction"), "{error:?}");

    assert!(reply_failures(&gw).await.is_empty());
}
