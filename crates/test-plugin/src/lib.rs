//! # `test-plugin` — a strict RivetKit native actor plugin (C ABI v13)
//!
//! Built as a `cdylib` (`target/<profile>/libtest_plugin.so`) and loaded by
//! the host's integration tests. It exists to prove that **every** `HostVtable`
//! entry and **every** event tag works through a real engine and real clients.
//! This doc is the plugin's contract: the host tests are written against it.
//!
//! ## ABI behaviour
//!
//! * Exports all ten v13 symbols; every body runs inside `catch_unwind`.
//! * `rivet_actor_plugin_init` returns a plugin handle (never fails).
//! * `rivet_actor_factory_new` copies `config_json` and `sidecar_path`.
//!   `config_json` must be UTF-8 JSON (empty means `{}`); otherwise it returns
//!   null and writes the reason into `*out_err`. Both are echoed by `config`.
//! * `rivet_actor_run` checks `abi_version == 13`, copies the vtable, takes a
//!   ctx reference, spawns one std thread and returns at once. `done` fires
//!   exactly once: `Ok` after `next_event` reports ChannelClosed; `Cancelled`
//!   (message "cancelled by host" / "grace deadline reached") after
//!   `rivet_actor_cancel` / `rivet_actor_grace_deadline`; `Err` if the host
//!   breaks the protocol (bad vtable version, `next_event` returning
//!   Err/Panic/Cancelled, ...); `Panic` if the actor thread panicked.
//! * `rivet_actor_cancel` and `rivet_actor_grace_deadline` are idempotent and
//!   non-blocking: they post a message that wakes the actor loop even while a
//!   `next_event` is outstanding (its late completion is freed safely).
//! * `rivet_actor_instance_free` joins the actor thread.
//! * Every ctx reference the plugin takes (`ctx_clone`) is released
//!   (`ctx_release`) before `done` fires, except those held by an abort
//!   watcher or action that is still waiting on the host.
//!
//! ## Actor loop
//!
//! 1. `startup_ready(ok)` first, then `state_get` (CBOR `{"count": n}`, empty
//!    = 0), then `kv_list_prefix("tp/ev/", reverse, limit 1)` to continue the
//!    persisted event log.
//! 2. Loop on `next_event` until ChannelClosed. Each event is appended to an
//!    in-memory log and to KV `tp/ev/<12-digit index>` **before** it is
//!    answered. Actions run one at a time, in arrival order, on a separate
//!    worker thread; every other event is answered inline by the loop, so an
//!    action waiting on the host never blocks `SerializeState` etc.
//!
//! ### Event log entries (`eventLog`, `eventLogMemory`)
//!
//! | Event | Entry | Reply |
//! |---|---|---|
//! | Action | `Action:<name>` | see actions |
//! | Http | `Http:<METHOD> <uri>` | `{status, headers, body}` (below) |
//! | Subscribe | `Subscribe:<event_name>` | ok; `reply_err` when the name is `forbidden` |
//! | ConnPreflight | `ConnPreflight:<conn id>` | `reply_err("rejected by test plugin")` when the params are an object with `"reject": true`, else ok |
//! | ConnOpen | `ConnOpen:<conn id>` | ok (empty) |
//! | ConnClosed | `ConnClosed:<conn id>` | none |
//! | QueueSend | `QueueSend:<queue name>` | `{status: "completed", response: CBOR {"queue": name, "received": <body as JSON>}}` |
//! | WsOpen | `WsOpen:<conn id>` | ok (empty) |
//! | SerializeState | `SerializeState` | CBOR `{"count": n}` |
//! | Sleep | `Sleep` | `broadcast("lifecycle", ["sleep"])`, writes KV `tp/last-shutdown` = `sleep`, waits ≤5 s for abort watchers, then ok |
//! | Destroy | `Destroy` | same with `destroy` (broadcast args `["destroy"]`) |
//! | (undecodable frame) | `Undecodable:<tag>` | `reply_err` if the token is non-zero |
//!
//! Http reply: status 200, or `<n>` when the uri's path starts with
//! `/status/<n>`; headers `{"content-type": "application/json",
//! "x-test-plugin": "1"}`; body is a CBOR byte string holding the JSON text
//! `{"method", "uri", "body" (request body as lossy UTF-8), "headers"}`.
//!
//! Note: the `Action:<name>` entry of the call that reads the log is already
//! in it (it is recorded before the action runs). `SerializeState` entries
//! appear for every save cycle, so tests should filter or use `contains`.
//!
//! ## Actions
//!
//! Arguments are the positional CBOR array (`codec::decode_positional`);
//! results are JSON-compat CBOR (`codec::encode_json_compat_to_vec`). Errors
//! are `reply_err` with the JSON text `{"code", "message"[, "metadata"]}`
//! (clients only see RivetKit's masked internal error). Codes:
//! `invalid_args`, `host_error` (message = `"<op>: <host error text>"`),
//! `unexpected_ok`, `action_not_found`, `panic`, plus the caller's code for
//! `fail`. Missing trailing arguments count as null.
//!
//! | Action (args) | Result | Exercises |
//! |---|---|---|
//! | `ping()` | `"pong"` | Action event, reply_ok |
//! | `increment(n = 1)` | new count (int) | state_set + request_save(immediate) |
//! | `getCount()` | count (int) | in-memory state loaded from state_get |
//! | `saveState()` | `null` | state_save of `{"count": n}` |
//! | `requestSaveAndWait()` | `null` (after the save completed) | request_save_and_wait (immediate) + SerializeState |
//! | `stateFromHost()` | `state_get` decoded, e.g. `{"count": 3}`, or `null` when empty | state_get |
//! | `identity()` | `{actorId, name, key, region, hasState, input}`; `input` = the input bytes decoded CBOR→JSON, or `null` | actor_identity |
//! | `config()` | `{config: <factory config JSON>, sidecarPath: string}` | factory_new copies |
//! | `sqlEnabled()` | bool | sql_is_enabled |
//! | `sqlRoundTrip(text)` | rows array, e.g. `[{"f": 1.5, "id": 1, "label": text, "n": 42, "nothing": null}]` | db_exec (CREATE TABLE IF NOT EXISTS `tp_items`), db_run (INSERT with params `[text, 42, 1.5, null]`), db_query (SELECT … WHERE label = ? with `[text]`) |
//! | `blobPut(bytes, rowBytes = 1048576)` | rows written (int) | the bulk-file benchmark's plain-SQL baseline: db_exec (CREATE TABLE IF NOT EXISTS `tp_blob (idx, data)`), db_run (DELETE, then one autocommitted `INSERT … VALUES (?, X'<hex>')` per `rowBytes` slice: params cannot bind a BLOB and the engine caps bound params at 128 KiB) |
//! | `blobGet()` | the stored bytes as `["$Uint8Array", base64]` (empty when none) | db_query (`SELECT hex(data) … WHERE idx = ?` per row, until a row is missing) |
//! | `sqlError()` | string: the host's error text for invalid SQL | db_exec Err path (action fails with `unexpected_ok` if the host says Ok) |
//! | `kvRoundTrip()` | object, see below | all nine kv_* entries |
//! | `eventLog()` | `["ConnOpen:<id>", "Action:ping", …]` from KV (survives sleep) | kv_list_prefix |
//! | `eventLogMemory()` | same, this instance only | — |
//! | `lastShutdown()` | `"sleep"` / `"destroy"` / `null` | kv_get |
//! | `scheduleAfter(delayMs, actionName, args = [])` | `null` | schedule_after; args = CBOR of the JSON array |
//! | `scheduleAt(timestampMs, actionName, args = [])` | `null` | schedule_at |
//! | `scheduledEvents()` | `[{eventId, timestampMs, actionName, args (decoded JSON or null)}]` | scheduled_events |
//! | `setAlarm(timestampMs \| null)` | `null` | set_alarm |
//! | `recordScheduled(tag)` | `null`; writes KV `tp/scheduled/<tag>` = `1` | the target for scheduled actions |
//! | `scheduledFired()` | tags recorded so far, sorted by tag | kv_list_prefix |
//! | `conns()` | `[{id, params (decoded JSON, null if none), isHibernatable}]` | conn_list |
//! | `connSend(connId, eventName, value)` | `null` | conn_send, payload = CBOR `[value]` (JSON-compat) |
//! | `connSendUnknown()` | string `"Err: <host text>"` for conn id `tp-no-such-conn` | conn_send Err path |
//! | `disconnect(connId)` | `null` | conn_disconnect |
//! | `broadcast(eventName, value)` | `null` | broadcast, payload = CBOR `[value]` |
//! | `keepAwake()` | `{token, countInside, exitStatus, countAfter, exitUnknownStatus}`; statuses are `"Ok"`/`"Err"`/…; unknown token = `u64::MAX` (expect `"Err"`) | keep_awake_enter/exit/count |
//! | `aborted()` | bool | actor_aborted |
//! | `waitAbortThenMark()` | `null` at once; a watcher thread waits on wait_actor_abort, then writes KV `tp/aborted-seen` = `1` | wait_actor_abort |
//! | `abortedSeen()` | bool | kv_get |
//! | `log(level = 2, msg)` | `null` | log |
//! | `hibernatableAckInvalid()` | `{status, message}` of hibernatable_ws_ack with garbage ids (expect `"Err"`) | hibernatable_ws_ack |
//! | `goToSleep()` | `{status, message}` of sleep (expect `"Ok"`, `""`) | sleep |
//! | `echoBytes(bytes)` | the bytes as `["$Uint8Array", base64]` | JSON-compat bytes; accepts `["$Uint8Array", b64]`, a CBOR byte string or an int array |
//! | `fail(code, message)` | `reply_err` `{"code": code, "message": message, "metadata": {"from": "test-plugin"}}` | reply_err |
//! | `replyFailures()` | `["<Tag>:<reply_ok\|reply_err>:<status>", …]` for every reply the host did not accept | reply bookkeeping |
//! | `doubleReply()` | `"first"`; then the plugin replies to the same token again | reply_ok on an answered token |
//! | `doubleReplyStatus()` | status name of that second reply (expect `"Err"`) or `null` | — |
//! | anything else | `reply_err` ``{"code": "action_not_found", "message": "unknown action `<name>`"}`` | — |
//!
//! `kvRoundTrip` works under `tp/kv/` (cleared first) and returns, with keys
//! and values as strings, entries as `[key, value]` pairs:
//!
//! ```text
//! { "get": "1", "getMissing": null,
//!   "batchGet": ["1", "2", null, "4"],
//!   "listPrefix": [["tp/kv/a","1"],["tp/kv/b","2"],["tp/kv/c","3"],["tp/kv/d","4"]],
//!   "listPrefixReverseLimit2": [["tp/kv/d","4"],["tp/kv/c","3"]],
//!   "listRange": [["tp/kv/b","2"],["tp/kv/c","3"]],            // [b, d)
//!   "listRangeReverseLimit1": [["tp/kv/d","4"]],               // [a, z) reversed, limit 1
//!   "getAfterDelete": null,                                    // kv_delete(a)
//!   "afterBatchDelete": [["tp/kv/d","4"]],                     // kv_batch_delete([b, c])
//!   "afterDeleteRange": [["tp/kv/d","4"],["tp/kv/g","7"]],     // put e,f,g; delete_range [e, g)
//!   "afterCleanup": [] }
//! ```
//!
//! ## KV keys used (none starts with a byte in 0x01..=0x07)
//!
//! `tp/ev/<index>`, `tp/last-shutdown`, `tp/aborted-seen`, `tp/scheduled/<tag>`,
//! `tp/kv/*` (scratch).

mod actions;
mod actor;
mod host;
pub mod wire;

#[cfg(test)]
mod mock_host_tests;

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rivet_actor_plugin_abi::{
    AbiStatus, BorrowedBuf, CompletionFn, HostVtable, OwnedBuf, RIVET_ACTOR_ABI_MAGIC,
    RIVET_ACTOR_ABI_VERSION,
};
use serde_json::Value as Json;

use crate::actor::{Control, Exit, lock};
use crate::host::{LoopMsg, RawHost, RunCompletion};

const PLUGIN_TAG: u64 = 0x7470_706c_7567_696e; // "tpplugin"
const FACTORY_TAG: u64 = 0x7470_6661_6374_6f72; // "tpfactor"
const INSTANCE_TAG: u64 = 0x7470_696e_7374_616e; // "tpinstan"

/// What `rivet_actor_factory_new` copied out of its borrowed arguments.
#[derive(Debug)]
pub struct FactoryConfig {
    pub config: Json,
    pub sidecar_path: String,
}

struct Plugin {
    tag: u64,
}

struct Factory {
    tag: u64,
    config: Arc<FactoryConfig>,
}

struct Instance {
    tag: u64,
    control: Arc<Control>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Writes an error message into the host's `out_err` slot.
fn write_out_err(out_err: *mut OwnedBuf, message: &str) {
    if out_err.is_null() {
        return;
    }
    // SAFETY: the host passes a valid, aligned, writable `OwnedBuf` slot that
    // it pre-set to an empty buffer (ABI §1.2). Overwriting an empty buffer
    // leaks nothing, and ownership of the new buffer passes to the host, which
    // frees it through its `free` pointer.
    unsafe { out_err.write(OwnedBuf::from_vec(message.as_bytes().to_vec())) };
}

/// Copies a borrowed buffer, rejecting a null pointer with a non-zero length.
fn copy_borrowed(buf: BorrowedBuf, what: &str) -> Result<Vec<u8>, String> {
    if buf.len == 0 {
        return Ok(Vec::new());
    }
    if buf.ptr.is_null() {
        return Err(format!("{what}: null pointer with length {}", buf.len));
    }
    // SAFETY: the host guarantees `ptr`/`len` describe initialised bytes that
    // stay valid for the duration of this synchronous call (ABI §1.5); we copy
    // them before returning.
    Ok(unsafe { buf.as_slice() }.to_vec())
}

/// Parses the factory config: UTF-8 JSON, empty meaning `{}`.
pub fn parse_factory_config(bytes: &[u8]) -> Result<Json, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("config_json is not UTF-8: {e}"))?;
    if text.trim().is_empty() {
        return Ok(Json::Object(Default::default()));
    }
    serde_json::from_str(text).map_err(|e| format!("config_json is not valid JSON: {e}"))
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_abi_magic() -> u64 {
    catch_unwind(|| RIVET_ACTOR_ABI_MAGIC).unwrap_or(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_abi_version() -> u64 {
    catch_unwind(|| RIVET_ACTOR_ABI_VERSION).unwrap_or(0)
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_plugin_init(out_err: *mut OwnedBuf) -> *mut c_void {
    catch_unwind(AssertUnwindSafe(|| {
        Box::into_raw(Box::new(Plugin { tag: PLUGIN_TAG })).cast::<c_void>()
    }))
    .unwrap_or_else(|_| {
        let _ = catch_unwind(AssertUnwindSafe(|| {
            write_out_err(out_err, "test plugin init panicked")
        }));
        std::ptr::null_mut()
    })
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_factory_new(
    plugin: *mut c_void,
    config_json: BorrowedBuf,
    sidecar_path: BorrowedBuf,
    out_err: *mut OwnedBuf,
) -> *mut c_void {
    let made = catch_unwind(AssertUnwindSafe(|| -> Result<*mut c_void, String> {
        if plugin.is_null() {
            return Err("factory_new: null plugin handle".into());
        }
        // SAFETY: non-null plugin handles come from `rivet_actor_plugin_init`
        // (a live `Box<Plugin>`; plugins are never freed while in use), so
        // reading its tag is a read of our own allocation.
        let tag = unsafe { (*plugin.cast::<Plugin>()).tag };
        if tag != PLUGIN_TAG {
            return Err("factory_new: handle is not a test-plugin plugin".into());
        }
        let config = parse_factory_config(&copy_borrowed(config_json, "config_json")?)?;
        let sidecar = copy_borrowed(sidecar_path, "sidecar_path")?;
        let sidecar_path =
            String::from_utf8(sidecar).map_err(|e| format!("sidecar_path is not UTF-8: {e}"))?;
        let factory = Factory {
            tag: FACTORY_TAG,
            config: Arc::new(FactoryConfig {
                config,
                sidecar_path,
            }),
        };
        Ok(Box::into_raw(Box::new(factory)).cast::<c_void>())
    }));
    let message = match made {
        Ok(Ok(factory)) => return factory,
        Ok(Err(message)) => message,
        Err(_) => "test plugin factory_new panicked".to_owned(),
    };
    let _ = catch_unwind(AssertUnwindSafe(|| write_out_err(out_err, &message)));
    std::ptr::null_mut()
}

fn dead_instance() -> *mut c_void {
    let (tx, _rx) = mpsc::channel::<LoopMsg>();
    let instance = Instance {
        tag: INSTANCE_TAG,
        control: Arc::new(Control::new(tx)),
        thread: Mutex::new(None),
    };
    Box::into_raw(Box::new(instance)).cast::<c_void>()
}

fn run_inner(
    factory: *mut c_void,
    host: *const HostVtable,
    completion: RunCompletion,
) -> *mut c_void {
    if factory.is_null() || host.is_null() {
        completion.complete(
            AbiStatus::Err,
            Some("rivet_actor_run: null factory or host vtable".into()),
        );
        return dead_instance();
    }
    // SAFETY: non-null factory handles come from `rivet_actor_factory_new` (a
    // live `Box<Factory>`; the host never frees a factory it still runs).
    let factory = unsafe { &*factory.cast::<Factory>() };
    if factory.tag != FACTORY_TAG {
        completion.complete(
            AbiStatus::Err,
            Some("rivet_actor_run: handle is not a test-plugin factory".into()),
        );
        return dead_instance();
    }
    // SAFETY: the host guarantees `host` points to a valid vtable for the
    // duration of this call (ABI §1.2); we copy it by value right here.
    let vtable: HostVtable = unsafe { *host };
    if vtable.abi_version != RIVET_ACTOR_ABI_VERSION {
        completion.complete(
            AbiStatus::Err,
            Some(format!(
                "rivet_actor_run: host vtable abi_version {} != {}",
                vtable.abi_version, RIVET_ACTOR_ABI_VERSION
            )),
        );
        return dead_instance();
    }
    // SAFETY: `vtable` is a v13 vtable received in this `run` call; its ctx is
    // alive because the host holds its own reference until `done` fires.
    let raw = unsafe { RawHost::adopt(vtable) };

    let (tx, rx) = mpsc::channel::<LoopMsg>();
    let control = Arc::new(Control::new(tx));
    let thread_control = Arc::clone(&control);
    let config = Arc::clone(&factory.config);
    let spawned = std::thread::Builder::new()
        .name("test-plugin-actor".into())
        .spawn(move || actor_thread(raw, thread_control, rx, config, completion));
    // On a spawn failure the closure is dropped: `raw` releases its ctx
    // reference and `completion` fires `done` from its Drop.
    let thread = spawned.ok();
    let instance = Instance {
        tag: INSTANCE_TAG,
        control,
        thread: Mutex::new(thread),
    };
    Box::into_raw(Box::new(instance)).cast::<c_void>()
}

fn actor_thread(
    raw: RawHost,
    control: Arc<Control>,
    rx: mpsc::Receiver<LoopMsg>,
    config: Arc<FactoryConfig>,
    completion: RunCompletion,
) {
    let exit = catch_unwind(AssertUnwindSafe(move || {
        actor::actor_main(raw, control, rx, config)
    }));
    match exit {
        Ok(Exit::Closed) => completion.complete(AbiStatus::Ok, None),
        Ok(Exit::TornDown(why)) => completion.complete(AbiStatus::Cancelled, Some(why.to_owned())),
        Ok(Exit::Failed(message)) => completion.complete(AbiStatus::Err, Some(message)),
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            completion.complete(
                AbiStatus::Panic,
                Some(format!("test plugin actor panicked: {detail}")),
            );
        }
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_run(
    factory: *mut c_void,
    host: *const HostVtable,
    done: CompletionFn,
    user_data: *mut c_void,
) -> *mut c_void {
    // If `run_inner` panics, the completion is dropped during unwinding and
    // fires `done(Panic)`, so `done` still fires exactly once.
    let completion = RunCompletion::new(done, user_data);
    catch_unwind(AssertUnwindSafe(move || {
        run_inner(factory, host, completion)
    }))
    .unwrap_or(std::ptr::null_mut())
}

/// Borrow a live instance, checking its tag.
fn with_instance(instance: *mut c_void, f: impl FnOnce(&Instance)) {
    if instance.is_null() {
        return;
    }
    // SAFETY: non-null instance handles come from `rivet_actor_run` (a live
    // `Box<Instance>`) and stay valid until `rivet_actor_instance_free`, which
    // the host never calls concurrently with cancel / grace_deadline.
    let instance = unsafe { &*instance.cast::<Instance>() };
    if instance.tag == INSTANCE_TAG {
        f(instance);
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_cancel(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_instance(instance, |i| i.control.cancel())
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_grace_deadline(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        with_instance(instance, |i| i.control.grace_deadline())
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_instance_free(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if instance.is_null() {
            return;
        }
        // SAFETY: the handle came from `Box::into_raw` in `rivet_actor_run`
        // and the host frees each instance exactly once, after `done`.
        let instance = unsafe { Box::from_raw(instance.cast::<Instance>()) };
        if instance.tag != INSTANCE_TAG {
            // Not ours: do not run our destructor on foreign memory.
            std::mem::forget(instance);
            return;
        }
        let handle = lock(&instance.thread).take();
        if let Some(handle) = handle {
            // `done` has fired, so the thread is at its very end. Never join
            // ourselves (a host that frees from inside `done`).
            if handle.thread().id() != std::thread::current().id() {
                let _ = handle.join();
            }
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_factory_free(factory: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if factory.is_null() {
            return;
        }
        // SAFETY: the handle came from `Box::into_raw` in
        // `rivet_actor_factory_new` and is freed at most once by the host.
        let factory = unsafe { Box::from_raw(factory.cast::<Factory>()) };
        if factory.tag != FACTORY_TAG {
            std::mem::forget(factory);
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_plugin_shutdown(plugin: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if plugin.is_null() {
            return;
        }
        // SAFETY: the handle came from `Box::into_raw` in
        // `rivet_actor_plugin_init` and is shut down at most once by the host.
        let plugin = unsafe { Box::from_raw(plugin.cast::<Plugin>()) };
        if plugin.tag != PLUGIN_TAG {
            std::mem::forget(plugin);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_and_version() {
        assert_eq!(rivet_actor_abi_magic(), 0x5256_5441_4249_0001);
        assert_eq!(rivet_actor_abi_version(), 13);
    }

    #[test]
    fn factory_config_parsing() {
        assert_eq!(parse_factory_config(b"").unwrap(), serde_json::json!({}));
        assert_eq!(parse_factory_config(b"  ").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_factory_config(b"{\"a\":1}").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert!(parse_factory_config(b"{").is_err());
        assert!(parse_factory_config(&[0xff]).is_err());
    }

    #[test]
    fn init_factory_and_free_round_trip() {
        let mut err = OwnedBuf::empty();
        let plugin = rivet_actor_plugin_init(&mut err);
        assert!(!plugin.is_null());
        let config = b"{\"x\":true}";
        let factory = rivet_actor_factory_new(
            plugin,
            BorrowedBuf::from_slice(config),
            BorrowedBuf::from_slice(b"/bin/sidecar"),
            &mut err,
        );
        assert!(!factory.is_null());
        assert_eq!(err.len, 0);

        let bad = rivet_actor_factory_new(
            plugin,
            BorrowedBuf::from_slice(b"not json"),
            BorrowedBuf::from_slice(b""),
            &mut err,
        );
        assert!(bad.is_null());
        // SAFETY: `err` was just written by factory_new with a buffer we own.
        let message = unsafe { std::mem::replace(&mut err, OwnedBuf::empty()).into_vec() };
        assert!(
            String::from_utf8(message)
                .unwrap()
                .contains("not valid JSON")
        );

        rivet_actor_factory_free(factory);
        rivet_actor_plugin_shutdown(plugin);
        // Null handles are tolerated everywhere.
        rivet_actor_cancel(std::ptr::null_mut());
        rivet_actor_grace_deadline(std::ptr::null_mut());
        rivet_actor_instance_free(std::ptr::null_mut());
        rivet_actor_factory_free(std::ptr::null_mut());
        rivet_actor_plugin_shutdown(std::ptr::null_mut());
    }

    extern "C" fn record_done(user_data: *mut c_void, result: rivet_actor_plugin_abi::AbiResult) {
        // SAFETY: `user_data` is the `Box<mpsc::Sender<_>>` leaked by the test
        // below; `done` fires exactly once, so it is reclaimed once.
        let tx = unsafe { Box::from_raw(user_data.cast::<mpsc::Sender<(AbiStatus, Vec<u8>)>>()) };
        // SAFETY: we own the completion payload.
        let payload = unsafe { result.payload.into_vec() };
        let _ = tx.send((result.status, payload));
    }

    #[test]
    fn run_with_null_host_completes_with_err_and_frees() {
        let mut err = OwnedBuf::empty();
        let plugin = rivet_actor_plugin_init(&mut err);
        let factory = rivet_actor_factory_new(
            plugin,
            BorrowedBuf::from_slice(b"{}"),
            BorrowedBuf::from_slice(b""),
            &mut err,
        );
        let (tx, rx) = mpsc::channel::<(AbiStatus, Vec<u8>)>();
        let user_data = Box::into_raw(Box::new(tx)).cast::<c_void>();
        let instance = rivet_actor_run(factory, std::ptr::null(), record_done, user_data);
        assert!(!instance.is_null());
        let (status, message) = rx.recv().unwrap();
        assert_eq!(status, AbiStatus::Err);
        assert!(String::from_utf8(message).unwrap().contains("null"));
        assert!(rx.try_recv().is_err(), "done must fire exactly once");
        rivet_actor_cancel(instance);
        rivet_actor_cancel(instance);
        rivet_actor_grace_deadline(instance);
        rivet_actor_instance_free(instance);
        rivet_actor_factory_free(factory);
        rivet_actor_plugin_shutdown(plugin);
    }
}
