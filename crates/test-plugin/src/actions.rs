//! The action table. See the crate docs for the contract of each action.

use std::sync::Arc;

use futures::executor::block_on;
use rivet_actor_plugin_abi::codec::encode_json_compat_to_vec;
use rivet_actor_plugin_abi::portable::{
    ActorIdentity, ConnSendRequest, KeepAwakeToken, KvEntry, KvListOpts, RequestSaveOpts,
};
use serde_json::{Value as Json, json};

use crate::actor::{Job, LOG_INFO, Shared, lock};
use crate::host::status_name;
use crate::wire::{self, Args, ByteReply};

/// A failed action: `reply_err` with the JSON text `{code, message[, metadata]}`.
#[derive(Debug)]
pub struct ActionError {
    pub code: String,
    pub message: String,
    pub metadata: Option<Json>,
}

impl ActionError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            metadata: None,
        }
    }

    pub fn to_json(&self) -> String {
        wire::error_json(&self.code, &self.message, self.metadata.clone())
    }
}

type ActionResult = Result<Vec<u8>, ActionError>;

fn invalid_args(error: anyhow::Error) -> ActionError {
    ActionError::new("invalid_args", format!("{error:#}"))
}

fn host_error(what: &str, error: anyhow::Error) -> ActionError {
    ActionError::new("host_error", format!("{what}: {error:#}"))
}

fn reply_json(value: &Json) -> ActionResult {
    encode_json_compat_to_vec(value)
        .map_err(|error| ActionError::new("encode_failed", format!("{error:#}")))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn entries_json(entries: &[KvEntry]) -> Json {
    Json::Array(
        entries
            .iter()
            .map(|entry| json!([lossy(&entry.key), lossy(&entry.value)]))
            .collect(),
    )
}

fn opt_bytes_json(value: Option<&[u8]>) -> Json {
    value.map_or(Json::Null, |bytes| Json::String(lossy(bytes)))
}

/// Runs one action and returns the reply payload (JSON-compat CBOR).
pub fn run(shared: &Arc<Shared>, job: &Job) -> ActionResult {
    let args = Args::decode(&job.args).map_err(invalid_args)?;
    let sh = shared.as_ref();
    match job.name.as_str() {
        "ping" => reply_json(&json!("pong")),
        "increment" => increment(sh, &args),
        "getCount" => reply_json(&json!(*lock(&sh.count))),
        "saveState" => {
            block_on(sh.ctx.save_state(sh.state_bytes()))
                .map_err(|e| host_error("state_save", e))?;
            reply_json(&Json::Null)
        }
        "requestSaveAndWait" => {
            let opts = RequestSaveOpts {
                immediate: true,
                max_wait_ms: None,
            };
            block_on(sh.ctx.request_save_and_wait(opts))
                .map_err(|e| host_error("request_save_and_wait", e))?;
            reply_json(&Json::Null)
        }
        "stateFromHost" => {
            let bytes = sh.raw.state_get();
            let value = wire::decode_cbor_json(&bytes)
                .map_err(|e| ActionError::new("bad_state", format!("{e:#}")))?;
            reply_json(&value)
        }
        "identity" => identity(sh),
        "config" => reply_json(&json!({
            "config": sh.factory.config,
            "sidecarPath": sh.factory.sidecar_path,
        })),
        "sqlEnabled" => reply_json(&json!(sh.ctx.sql_is_enabled())),
        "sqlRoundTrip" => sql_round_trip(sh, &args),
        "blobPut" => blob_put(sh, &args),
        "blobGet" => blob_get(sh),
        "sqlExec" => sql_exec(sh, &args),
        "sqlError" => match block_on(sh.ctx.db_exec("THIS IS NOT SQL AT ALL;")) {
            Err(error) => reply_json(&json!(format!("{error:#}"))),
            Ok(_) => Err(ActionError::new(
                "unexpected_ok",
                "db_exec of invalid SQL succeeded",
            )),
        },
        "kvRoundTrip" => kv_round_trip(sh),
        "eventLog" => {
            let entries = block_on(
                sh.ctx
                    .kv_list_prefix(wire::EVENT_LOG_PREFIX.to_vec(), KvListOpts::default()),
            )
            .map_err(|e| host_error("kv_list_prefix", e))?;
            let log: Vec<String> = entries.iter().map(|entry| lossy(&entry.value)).collect();
            reply_json(&json!(log))
        }
        "eventLogMemory" => reply_json(&json!(lock(&sh.events).entries)),
        "lastShutdown" => {
            let value = block_on(sh.ctx.kv_get(wire::LAST_SHUTDOWN_KEY.to_vec()))
                .map_err(|e| host_error("kv_get", e))?;
            reply_json(&opt_bytes_json(value.as_deref()))
        }
        "scheduleAfter" => {
            let delay = args.u64(0, "delayMs").map_err(invalid_args)?;
            let action = args.string(1, "actionName").map_err(invalid_args)?;
            let call_args = args.json_array(2, "args").map_err(invalid_args)?;
            block_on(
                sh.ctx
                    .schedule_after_ms(delay, action, wire::json_to_cbor(&call_args)),
            )
            .map_err(|e| host_error("schedule_after", e))?;
            reply_json(&Json::Null)
        }
        "scheduleAt" => {
            let at = args.i64(0, "timestampMs").map_err(invalid_args)?;
            let action = args.string(1, "actionName").map_err(invalid_args)?;
            let call_args = args.json_array(2, "args").map_err(invalid_args)?;
            block_on(
                sh.ctx
                    .schedule_at_ms(at, action, wire::json_to_cbor(&call_args)),
            )
            .map_err(|e| host_error("schedule_at", e))?;
            reply_json(&Json::Null)
        }
        "scheduledEvents" => {
            let events = block_on(sh.ctx.scheduled_events())
                .map_err(|e| host_error("scheduled_events", e))?;
            let list: Vec<Json> = events
                .iter()
                .map(|event| {
                    json!({
                        "eventId": event.event_id,
                        "timestampMs": event.timestamp_ms,
                        "actionName": event.action_name,
                        "args": event
                            .args
                            .as_deref()
                            .map_or(Json::Null, |bytes| wire::decode_cbor_json(bytes).unwrap_or(Json::Null)),
                    })
                })
                .collect();
            reply_json(&Json::Array(list))
        }
        "setAlarm" => {
            let at = args.opt_i64(0, "timestampMs").map_err(invalid_args)?;
            block_on(sh.ctx.set_alarm(at)).map_err(|e| host_error("set_alarm", e))?;
            reply_json(&Json::Null)
        }
        "recordScheduled" => {
            let tag = args.string(0, "tag").map_err(invalid_args)?;
            let mut key = wire::SCHEDULED_PREFIX.to_vec();
            key.extend_from_slice(tag.as_bytes());
            block_on(sh.ctx.kv_put(key, b"1".to_vec())).map_err(|e| host_error("kv_put", e))?;
            reply_json(&Json::Null)
        }
        "scheduledFired" => {
            let entries = block_on(
                sh.ctx
                    .kv_list_prefix(wire::SCHEDULED_PREFIX.to_vec(), KvListOpts::default()),
            )
            .map_err(|e| host_error("kv_list_prefix", e))?;
            let tags: Vec<String> = entries
                .iter()
                .map(|entry| {
                    lossy(
                        entry
                            .key
                            .strip_prefix(wire::SCHEDULED_PREFIX)
                            .unwrap_or(&entry.key),
                    )
                })
                .collect();
            reply_json(&json!(tags))
        }
        "conns" => {
            let conns = block_on(sh.ctx.conn_list()).map_err(|e| host_error("conn_list", e))?;
            let list: Vec<Json> = conns
                .iter()
                .map(|conn| {
                    json!({
                        "id": conn.id,
                        "params": wire::decode_cbor_json(&conn.params).unwrap_or(Json::Null),
                        "isHibernatable": conn.is_hibernatable,
                    })
                })
                .collect();
            reply_json(&Json::Array(list))
        }
        "connSend" => {
            let conn_id = args.string(0, "connId").map_err(invalid_args)?;
            let event_name = args.string(1, "eventName").map_err(invalid_args)?;
            let payload = event_payload(&args.json(2))?;
            conn_send(sh, conn_id, event_name, payload)
                .map_err(|message| ActionError::new("host_error", message))?;
            reply_json(&Json::Null)
        }
        "connSendUnknown" => {
            let payload = event_payload(&Json::Null)?;
            match conn_send(sh, "tp-no-such-conn".into(), "never".into(), payload) {
                Err(message) => reply_json(&json!(message)),
                Ok(()) => Err(ActionError::new(
                    "unexpected_ok",
                    "conn_send to an unknown conn succeeded",
                )),
            }
        }
        "disconnect" => {
            let conn_id = args.string(0, "connId").map_err(invalid_args)?;
            block_on(sh.ctx.disconnect_conn(conn_id))
                .map_err(|e| host_error("conn_disconnect", e))?;
            reply_json(&Json::Null)
        }
        "broadcast" => {
            let event_name = args.string(0, "eventName").map_err(invalid_args)?;
            let payload = event_payload(&args.json(1))?;
            sh.ctx
                .broadcast(event_name, payload)
                .map_err(|e| host_error("broadcast", e))?;
            reply_json(&Json::Null)
        }
        "keepAwake" => keep_awake(sh),
        "aborted" => reply_json(&json!(sh.raw.actor_aborted())),
        "waitAbortThenMark" => {
            spawn_abort_watcher(shared)?;
            reply_json(&Json::Null)
        }
        "abortedSeen" => {
            let value = block_on(sh.ctx.kv_get(wire::ABORTED_SEEN_KEY.to_vec()))
                .map_err(|e| host_error("kv_get", e))?;
            reply_json(&json!(value.as_deref() == Some(b"1".as_slice())))
        }
        "log" => {
            let level = args
                .opt_i64(0, "level")
                .map_err(invalid_args)?
                .unwrap_or(i64::from(LOG_INFO));
            let level = i32::try_from(level)
                .map_err(|_| ActionError::new("invalid_args", "level out of range"))?;
            let message = args.string(1, "msg").map_err(invalid_args)?;
            sh.raw.log(level, &message);
            reply_json(&Json::Null)
        }
        "hibernatableAckInvalid" => {
            let outcome = sh
                .raw
                .hibernatable_ws_ack(vec![0xde, 0xad], vec![0xbe, 0xef, 0x01], 7);
            reply_json(
                &json!({"status": status_name(outcome.status), "message": outcome.message()}),
            )
        }
        "goToSleep" => {
            let outcome = sh.raw.sleep();
            reply_json(
                &json!({"status": status_name(outcome.status), "message": outcome.message()}),
            )
        }
        "echoBytes" => {
            let bytes = args.bytes(0, "bytes").map_err(invalid_args)?;
            encode_json_compat_to_vec(&ByteReply(&bytes))
                .map_err(|e| ActionError::new("encode_failed", format!("{e:#}")))
        }
        "fail" => {
            let code = args.string(0, "code").map_err(invalid_args)?;
            let message = args.string(1, "message").map_err(invalid_args)?;
            Err(ActionError {
                code,
                message,
                metadata: Some(json!({"from": "test-plugin"})),
            })
        }
        "replyFailures" => reply_json(&json!(*lock(&sh.reply_failures))),
        "doubleReply" => reply_json(&json!("first")),
        "doubleReplyStatus" => reply_json(&json!(*lock(&sh.double_reply_status))),
        other => Err(ActionError::new(
            "action_not_found",
            format!("unknown action `{other}`"),
        )),
    }
}

fn increment(sh: &Shared, args: &Args) -> ActionResult {
    let by = args.opt_i64(0, "n").map_err(invalid_args)?.unwrap_or(1);
    let count = {
        let mut count = lock(&sh.count);
        *count = count
            .checked_add(by)
            .ok_or_else(|| ActionError::new("overflow", "count overflow"))?;
        *count
    };
    sh.ctx
        .set_state(wire::encode_state(count))
        .map_err(|e| host_error("state_set", e))?;
    sh.ctx
        .request_save(RequestSaveOpts {
            immediate: true,
            max_wait_ms: None,
        })
        .map_err(|e| host_error("request_save", e))?;
    reply_json(&json!(count))
}

fn identity(sh: &Shared) -> ActionResult {
    let bytes = sh.raw.actor_identity();
    let identity: ActorIdentity = ciborium::from_reader(bytes.as_slice()).map_err(|e| {
        ActionError::new(
            "bad_identity",
            format!("actor_identity is not valid CBOR: {e}"),
        )
    })?;
    let input = identity.input.as_deref().map_or(Json::Null, |bytes| {
        wire::decode_cbor_json(bytes).unwrap_or(Json::Null)
    });
    reply_json(&json!({
        "actorId": identity.actor_id,
        "name": identity.name,
        "key": identity.key,
        "region": identity.region,
        "hasState": identity.has_state,
        "input": input,
    }))
}

// `nothing` is an SQLite keyword (`ON CONFLICT DO NOTHING`) that SQLite does
// not accept as a bare column name in CREATE TABLE, so it is always quoted.
const SQL_CREATE: &str = "CREATE TABLE IF NOT EXISTS tp_items (\
    id INTEGER PRIMARY KEY AUTOINCREMENT, label TEXT NOT NULL, n INTEGER, f REAL, \"nothing\" TEXT)";
const SQL_INSERT: &str = "INSERT INTO tp_items (label, n, f, \"nothing\") VALUES (?, ?, ?, ?)";
const SQL_SELECT: &str =
    "SELECT id, label, n, f, \"nothing\" FROM tp_items WHERE label = ? ORDER BY id";

/// Runs a statement batch with `db_exec` and replies with its rows, or with
/// the error text: the tests pin down what a batch returns.
fn sql_exec(sh: &Shared, args: &Args) -> ActionResult {
    let sql = args.string(0, "sql").map_err(invalid_args)?;
    match block_on(sh.ctx.db_exec(&sql)) {
        Ok(rows) => reply_json(&json!({"rows": wire::decode_cbor_json(&rows)
            .map_err(|e| ActionError::new("bad_rows", format!("db_exec result: {e:#}")))?})),
        Err(e) => reply_json(&json!({"error": format!("{e:#}")})),
    }
}

fn sql_round_trip(sh: &Shared, args: &Args) -> ActionResult {
    let text = args.string(0, "text").map_err(invalid_args)?;
    let exec = block_on(sh.ctx.db_exec(SQL_CREATE)).map_err(|e| host_error("db_exec", e))?;
    wire::decode_cbor_json(&exec)
        .map_err(|e| ActionError::new("bad_rows", format!("db_exec result: {e:#}")))?;
    let insert_params = wire::json_to_cbor(&json!([text, 42, 1.5, null]));
    block_on(sh.ctx.db_run(SQL_INSERT, Some(insert_params)))
        .map_err(|e| host_error("db_run", e))?;
    let rows = block_on(
        sh.ctx
            .db_query(SQL_SELECT, Some(wire::json_to_cbor(&json!([text])))),
    )
    .map_err(|e| host_error("db_query", e))?;
    let rows = wire::decode_cbor_json(&rows)
        .map_err(|e| ActionError::new("bad_rows", format!("db_query result: {e:#}")))?;
    reply_json(&rows)
}

// The plain-SQL baseline of the bulk-file benchmark (crates/bench): bytes
// in rows of `rowBytes`, one autocommitted `db_run` per row. A BLOB cannot be
// bound as a parameter and the engine's remote SQLite caps bound parameters
// at 128 KiB, so each row's bytes travel as an `X'..'` literal in the
// statement text and come back as `hex(data)` (as the agentOS filesystem
// stores its chunks).
const BLOB_CREATE: &str =
    "CREATE TABLE IF NOT EXISTS tp_blob (idx INTEGER PRIMARY KEY, data BLOB NOT NULL)";
const BLOB_SELECT: &str = "SELECT hex(data) AS data FROM tp_blob WHERE idx = ?";
const BLOB_DEFAULT_ROW: u64 = 1 << 20;

fn blob_put(sh: &Shared, args: &Args) -> ActionResult {
    let bytes = args.bytes(0, "bytes").map_err(invalid_args)?;
    let row = args
        .opt_i64(1, "rowBytes")
        .map_err(invalid_args)?
        .map_or(Ok(BLOB_DEFAULT_ROW), u64::try_from)
        .ok()
        .filter(|row| *row > 0)
        .ok_or_else(|| ActionError::new("invalid_args", "`rowBytes` must be positive"))?;
    block_on(sh.ctx.db_exec(BLOB_CREATE)).map_err(|e| host_error("db_exec", e))?;
    block_on(sh.ctx.db_run("DELETE FROM tp_blob", None)).map_err(|e| host_error("db_run", e))?;
    let mut rows = 0u64;
    for (idx, part) in bytes.chunks(row as usize).enumerate() {
        let sql = format!(
            "INSERT INTO tp_blob (idx, data) VALUES (?, X'{}')",
            wire::hex_encode(part)
        );
        let params = wire::json_to_cbor(&json!([idx]));
        block_on(sh.ctx.db_run(&sql, Some(params))).map_err(|e| host_error("db_run", e))?;
        rows += 1;
    }
    reply_json(&json!(rows))
}

fn blob_get(sh: &Shared) -> ActionResult {
    block_on(sh.ctx.db_exec(BLOB_CREATE)).map_err(|e| host_error("db_exec", e))?;
    let mut bytes = Vec::new();
    for idx in 0u64.. {
        let params = wire::json_to_cbor(&json!([idx]));
        let rows = block_on(sh.ctx.db_query(BLOB_SELECT, Some(params)))
            .map_err(|e| host_error("db_query", e))?;
        let rows = wire::decode_cbor_json(&rows)
            .map_err(|e| ActionError::new("bad_rows", format!("db_query result: {e:#}")))?;
        let Some(hex) = rows.get(0).and_then(|row| row["data"].as_str()) else {
            break;
        };
        let part = wire::hex_decode(hex)
            .ok_or_else(|| ActionError::new("bad_rows", format!("row {idx} is not hex")))?;
        bytes.extend_from_slice(&part);
    }
    encode_json_compat_to_vec(&ByteReply(&bytes))
        .map_err(|e| ActionError::new("encode_failed", format!("{e:#}")))
}

fn kv_round_trip(sh: &Shared) -> ActionResult {
    let key = |suffix: &str| {
        let mut key = wire::KV_SCRATCH_PREFIX.to_vec();
        key.extend_from_slice(suffix.as_bytes());
        key
    };
    let entry = |suffix: &str, value: &str| KvEntry {
        key: key(suffix),
        value: value.as_bytes().to_vec(),
    };
    let all = wire::KV_SCRATCH_PREFIX.to_vec();
    let all_end = wire::prefix_range_end(wire::KV_SCRATCH_PREFIX);
    let list_all = || {
        block_on(sh.ctx.kv_list_prefix(all.clone(), KvListOpts::default()))
            .map(|entries| entries_json(&entries))
            .map_err(|e| host_error("kv_list_prefix", e))
    };
    let ctx = &sh.ctx;

    // Start from a clean scratch area.
    block_on(ctx.kv_delete_range(all.clone(), all_end.clone()))
        .map_err(|e| host_error("kv_delete_range", e))?;

    block_on(ctx.kv_put(key("a"), b"1".to_vec())).map_err(|e| host_error("kv_put", e))?;
    let get = block_on(ctx.kv_get(key("a"))).map_err(|e| host_error("kv_get", e))?;
    let get_missing = block_on(ctx.kv_get(key("missing"))).map_err(|e| host_error("kv_get", e))?;

    block_on(ctx.kv_batch_put(vec![entry("b", "2"), entry("c", "3"), entry("d", "4")]))
        .map_err(|e| host_error("kv_batch_put", e))?;
    let batch_get = block_on(ctx.kv_batch_get(vec![key("a"), key("b"), key("missing"), key("d")]))
        .map_err(|e| host_error("kv_batch_get", e))?;

    let list_prefix = list_all()?;
    let reverse_two = KvListOpts {
        reverse: true,
        limit: Some(2),
    };
    let list_prefix_reverse = block_on(ctx.kv_list_prefix(all.clone(), reverse_two))
        .map_err(|e| host_error("kv_list_prefix", e))?;
    let list_range = block_on(ctx.kv_list_range(key("b"), key("d"), KvListOpts::default()))
        .map_err(|e| host_error("kv_list_range", e))?;
    let reverse_one = KvListOpts {
        reverse: true,
        limit: Some(1),
    };
    let list_range_reverse = block_on(ctx.kv_list_range(key("a"), key("z"), reverse_one))
        .map_err(|e| host_error("kv_list_range", e))?;

    block_on(ctx.kv_delete(key("a"))).map_err(|e| host_error("kv_delete", e))?;
    let get_after_delete = block_on(ctx.kv_get(key("a"))).map_err(|e| host_error("kv_get", e))?;

    block_on(ctx.kv_batch_delete(vec![key("b"), key("c")]))
        .map_err(|e| host_error("kv_batch_delete", e))?;
    let after_batch_delete = list_all()?;

    block_on(ctx.kv_batch_put(vec![entry("e", "5"), entry("f", "6"), entry("g", "7")]))
        .map_err(|e| host_error("kv_batch_put", e))?;
    block_on(ctx.kv_delete_range(key("e"), key("g")))
        .map_err(|e| host_error("kv_delete_range", e))?;
    let after_delete_range = list_all()?;

    block_on(ctx.kv_delete_range(all.clone(), all_end))
        .map_err(|e| host_error("kv_delete_range", e))?;
    let after_cleanup = list_all()?;

    let batch_get: Vec<Json> = batch_get
        .iter()
        .map(|value| opt_bytes_json(value.as_deref()))
        .collect();
    reply_json(&json!({
        "get": opt_bytes_json(get.as_deref()),
        "getMissing": opt_bytes_json(get_missing.as_deref()),
        "batchGet": batch_get,
        "listPrefix": list_prefix,
        "listPrefixReverseLimit2": entries_json(&list_prefix_reverse),
        "listRange": entries_json(&list_range),
        "listRangeReverseLimit1": entries_json(&list_range_reverse),
        "getAfterDelete": opt_bytes_json(get_after_delete.as_deref()),
        "afterBatchDelete": after_batch_delete,
        "afterDeleteRange": after_delete_range,
        "afterCleanup": after_cleanup,
    }))
}

/// Event args for `conn_send` / `broadcast`: the positional array `[value]`.
fn event_payload(value: &Json) -> Result<Vec<u8>, ActionError> {
    encode_json_compat_to_vec(&[value])
        .map_err(|e| ActionError::new("encode_failed", format!("{e:#}")))
}

/// `conn_send` through the raw vtable so the host's own error text comes back.
fn conn_send(sh: &Shared, conn_id: String, name: String, payload: Vec<u8>) -> Result<(), String> {
    let mut request = Vec::new();
    ciborium::into_writer(
        &ConnSendRequest {
            conn_id,
            name,
            payload,
        },
        &mut request,
    )
    .map_err(|e| format!("encode conn_send request: {e}"))?;
    let outcome = sh.raw.conn_send(request);
    match outcome.status {
        rivet_actor_plugin_abi::AbiStatus::Ok => Ok(()),
        status => Err(format!("{}: {}", status_name(status), outcome.message())),
    }
}

fn keep_awake(sh: &Shared) -> ActionResult {
    let enter = sh.raw.keep_awake_enter();
    if enter.status != rivet_actor_plugin_abi::AbiStatus::Ok {
        return Err(ActionError::new(
            "host_error",
            format!(
                "keep_awake_enter: {}: {}",
                status_name(enter.status),
                enter.message()
            ),
        ));
    }
    let token: KeepAwakeToken = ciborium::from_reader(enter.payload.as_slice())
        .map_err(|e| ActionError::new("bad_token", format!("keep_awake_enter payload: {e}")))?;
    let count_inside = sh.raw.keep_awake_count();
    let exit_status = sh.raw.keep_awake_exit(token.token);
    let count_after = sh.raw.keep_awake_count();
    let exit_unknown_status = sh.raw.keep_awake_exit(u64::MAX);
    reply_json(&json!({
        "token": token.token,
        "countInside": count_inside,
        "exitStatus": status_name(exit_status),
        "countAfter": count_after,
        "exitUnknownStatus": status_name(exit_unknown_status),
    }))
}

fn spawn_abort_watcher(shared: &Arc<Shared>) -> Result<(), ActionError> {
    let watcher_shared = Arc::clone(shared);
    let handle = std::thread::Builder::new()
        .name("test-plugin-abort-watch".into())
        .spawn(move || {
            let sh = watcher_shared.as_ref();
            match block_on(sh.ctx.wait_for_actor_abort()) {
                Ok(()) => {
                    if let Err(error) = block_on(
                        sh.ctx
                            .kv_put(wire::ABORTED_SEEN_KEY.to_vec(), b"1".to_vec()),
                    ) {
                        sh.log(
                            crate::actor::LOG_ERROR,
                            &format!("test plugin: writing aborted-seen failed: {error:#}"),
                        );
                    }
                }
                Err(error) => sh.log(
                    crate::actor::LOG_WARN,
                    &format!("test plugin: wait_actor_abort ended with an error: {error:#}"),
                ),
            }
        })
        .map_err(|e| ActionError::new("spawn_failed", e.to_string()))?;
    lock(&shared.watchers).push(handle);
    Ok(())
}
