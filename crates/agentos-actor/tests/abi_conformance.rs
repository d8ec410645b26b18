//! ABI v13 conformance of the agentOS plugin, driven through its real
//! `extern "C"` exports exactly as a host drives the loaded `cdylib`:
//! `plugin_init`, `factory_new`, `run` with a host vtable and a `done`
//! completion, then events.
//!
//! The host is a mock written here. Every vtable entry exists. The SQLite
//! entries run for real against an in-memory `rusqlite` database and speak the
//! ABI's CBOR contract (params: CBOR of a JSON array, object or null; rows: a
//! CBOR array of column→value maps, BLOB as an array of ints). Events come from
//! a queue the test feeds; replies, broadcasts, logs and `startup_ready` are
//! recorded in order.
//!
//! Ownership is checked as the tests run:
//! - every non-empty buffer the mock hands the plugin is registered until the
//!   plugin frees it through the buffer's own `free` (a double or foreign free
//!   is counted, never performed);
//! - every buffer the plugin hands the mock is freed once, with its own `free`;
//! - `ctx_clone` / `ctx_release` are counted per host;
//! - the vtable pointer given to `run` is poisoned as soon as `run` returns
//!   (the ABI lets the plugin use it only during the call).
//!
//! Every wait is a bounded wait on a condition; nothing sleeps and hopes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ffi::c_void;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant};

use agentos_actor::ffi;
use agentos_actor::schema::MIGRATIONS;
use ciborium::Value as Cbor;
use rivet_actor_plugin_abi::{
    AbiEventTag, AbiResult, AbiStatus, ActorIdentity, BorrowedBuf, CompletionFn, ConnDisconnectRequest, ConnInfo,
    ConnListResponse, ConnSendRequest, HostVtable, KeepAwakeToken, KvEntriesRequest, KvEntry, KvGetResponse,
    KvKeyRequest, KvKeysRequest, KvListOpts, KvListPrefixRequest, KvListRangeRequest, KvListResponse, KvRangeRequest,
    KvValuesResponse, OwnedBuf, RIVET_ACTOR_ABI_MAGIC, RIVET_ACTOR_ABI_VERSION, ScheduleActionRequest,
    ScheduleAlarmRequest, ScheduledEvent, ScheduledEventsResponse, encode_conn_closed_payload,
    encode_conn_open_payload, encode_conn_preflight_payload, encode_queue_send_payload, encode_subscribe_payload,
    encode_ws_open_payload,
};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Batch, Connection, Statement};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value as Json, json};

/// Bound for anything that needs no VM.
const WAIT: Duration = Duration::from_secs(10);
/// Bound for anything that boots or uses a real VM.
const VM_WAIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------
// Process-wide bookkeeping
// ---------------------------------------------------------------------------

/// Frees of a buffer the mock does not own (double free, foreign pointer).
static BAD_FREES: AtomicUsize = AtomicUsize::new(0);
/// Panics caught inside the mock's `extern "C"` functions.
static MOCK_PANICS: AtomicUsize = AtomicUsize::new(0);
/// Calls through the vtable pointer `run` got, made after `run` returned.
static STALE_VTABLE_USES: AtomicUsize = AtomicUsize::new(0);
/// Calls with a ctx / user_data the mock never handed out.
static UNKNOWN_CTX: AtomicUsize = AtomicUsize::new(0);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The mock host's own executor: async vtable entries complete on its
/// threads, as the reference host's spawned tasks do.
fn host_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mock-host")
            .enable_all()
            .build()
            .expect("build the mock host runtime")
    })
}

/// Address → owning host id of every non-empty buffer the mock handed the
/// plugin that the plugin has not freed yet.
fn live_buffers() -> &'static Mutex<HashMap<usize, u64>> {
    static LIVE: OnceLock<Mutex<HashMap<usize, u64>>> = OnceLock::new();
    LIVE.get_or_init(Default::default)
}

fn outstanding_buffers(owner: u64) -> usize {
    lock(live_buffers()).values().filter(|o| **o == owner).count()
}

/// Addresses of every mock host ever created (they are leaked, never freed).
fn known_hosts() -> &'static Mutex<HashSet<usize>> {
    static HOSTS: OnceLock<Mutex<HashSet<usize>>> = OnceLock::new();
    HOSTS.get_or_init(Default::default)
}

/// A buffer the mock hands the plugin. Non-empty ones are tracked until the
/// plugin frees them; empty ones follow the ABI rule (dangling pointer,
/// `cap = 0`, a no-op `free`).
fn host_buf(owner: u64, bytes: Vec<u8>) -> OwnedBuf {
    if bytes.is_empty() {
        return OwnedBuf { ptr: NonNull::dangling().as_ptr(), len: 0, cap: 0, free: host_free_empty };
    }
    let boxed = bytes.into_boxed_slice();
    let len = boxed.len();
    let ptr = Box::into_raw(boxed).cast::<u8>();
    lock(live_buffers()).insert(ptr as usize, owner);
    OwnedBuf { ptr, len, cap: len, free: host_free }
}

extern "C" fn host_free(ptr: *mut u8, len: usize, cap: usize) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let known = lock(live_buffers()).remove(&(ptr as usize)).is_some();
        if !known || cap != len {
            // A double free or a buffer that is not ours: never touch it.
            BAD_FREES.fetch_add(1, Ordering::SeqCst);
            return;
        }
        // SAFETY: `ptr`/`len` came from `Box::<[u8]>::into_raw` in `host_buf`,
        // and the registry entry just removed proves it was not freed before.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
    }));
    if outcome.is_err() {
        MOCK_PANICS.fetch_add(1, Ordering::SeqCst);
    }
}

extern "C" fn host_free_empty(_ptr: *mut u8, _len: usize, _cap: usize) {}

/// Copies a buffer the plugin handed over and frees it once, with its own
/// `free`. Returns a complaint about its shape, if any.
fn take_plugin_buf(buf: OwnedBuf) -> (Vec<u8>, Option<String>) {
    if buf.ptr.is_null() {
        // Nothing can be read or freed safely.
        return (Vec::new(), Some("the plugin handed over a buffer with a null pointer".into()));
    }
    let complaint = (buf.cap < buf.len).then(|| format!("buffer with cap {} < len {}", buf.cap, buf.len));
    // SAFETY: the plugin transferred a valid buffer of `len` initialized bytes
    // (ptr checked non-null above); it is read before being freed.
    let bytes = unsafe { buf.as_slice() }.to_vec();
    (buf.free)(buf.ptr, buf.len, buf.cap);
    (bytes, complaint)
}

// ---------------------------------------------------------------------------
// The mock host
// ---------------------------------------------------------------------------

type Db = Arc<Mutex<Connection>>;

fn memory_db() -> Db {
    Arc::new(Mutex::new(Connection::open_in_memory().expect("open in-memory SQLite")))
}

#[derive(Clone, Copy)]
struct SendPtr(*mut c_void);
// SAFETY: the pointer is the plugin's opaque completion token; the ABI lets a
// completion fire from any thread, and the mock never dereferences it.
unsafe impl Send for SendPtr {}

/// A completion the plugin handed to an async vtable entry.
struct Completion {
    done: CompletionFn,
    user_data: SendPtr,
}

impl Completion {
    fn new(done: CompletionFn, user_data: *mut c_void) -> Self {
        Self { done, user_data: SendPtr(user_data) }
    }

    /// Fires on this thread; the plugin now owns the payload buffer.
    fn complete(self, owner: u64, status: AbiStatus, payload: Vec<u8>) {
        let result = AbiResult { status, payload: host_buf(owner, payload) };
        (self.done)(self.user_data.0, result);
    }

    /// Fires later on a host runtime thread.
    fn complete_later(self, owner: u64, status: AbiStatus, payload: Vec<u8>) {
        host_runtime().spawn(async move { self.complete(owner, status, payload) });
    }
}

#[derive(Debug, Clone, PartialEq)]
struct DbSnapshot {
    /// Rows of `agentos_schema_version`, `None` if the table does not exist.
    versions: Option<Vec<i64>>,
    /// Rows of `agentos_actor_meta`, `None` if the table does not exist.
    meta: Option<Vec<(String, String)>>,
}

#[derive(Debug, Clone)]
enum Record {
    StartupReady { ok: bool, message: String, db: Option<DbSnapshot> },
    ReplyOk { token: u64, payload: Vec<u8> },
    ReplyErr { token: u64, message: String },
    Broadcast { name: String, payload: Vec<u8> },
    Log { level: i32, message: String },
    /// The plugin's `done` completion fired (kept here too, for ordering).
    Done { status: AbiStatus },
}

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Ok(Vec<u8>),
    Err(String),
}

#[derive(Default)]
struct HostState {
    frames: VecDeque<Vec<u8>>,
    /// `next_event` calls waiting for a frame.
    waiters: VecDeque<Completion>,
    closed: bool,
    last_token: u64,
    /// Tokens of delivered reply-bearing events not answered yet.
    pending: BTreeSet<u64>,
    records: Vec<Record>,
    done: Vec<(AbiStatus, Vec<u8>)>,
    clones: usize,
    releases: usize,
    violations: Vec<String>,
    calls: BTreeMap<&'static str, usize>,
    plugin_buffers_freed: usize,
    kv: BTreeMap<Vec<u8>, Vec<u8>>,
    actor_state: Vec<u8>,
    keep_awake: BTreeSet<u64>,
    last_keep_awake: u64,
    scheduled: Vec<ScheduledEvent>,
    alarm: Option<i64>,
    abort_waiters: Vec<Completion>,
}

fn hex(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(48).map(|b| format!("{b:02x}")).collect();
    let more = if bytes.len() > 48 { format!(" …(+{})", bytes.len() - 48) } else { String::new() };
    format!("{}{more}", shown.join(" "))
}

impl HostState {
    fn reply(&self, token: u64) -> Option<(usize, Reply)> {
        self.records.iter().enumerate().find_map(|(index, record)| match record {
            Record::ReplyOk { token: t, payload } if *t == token => Some((index, Reply::Ok(payload.clone()))),
            Record::ReplyErr { token: t, message } if *t == token => Some((index, Reply::Err(message.clone()))),
            _ => None,
        })
    }

    fn replies(&self) -> usize {
        self.records.iter().filter(|r| matches!(r, Record::ReplyOk { .. } | Record::ReplyErr { .. })).count()
    }

    fn startup(&self) -> Option<(bool, String, Option<DbSnapshot>)> {
        self.records.iter().find_map(|record| match record {
            Record::StartupReady { ok, message, db } => Some((*ok, message.clone(), db.clone())),
            _ => None,
        })
    }

    fn broadcasts(&self) -> Vec<(usize, String, Vec<u8>)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(index, record)| match record {
                Record::Broadcast { name, payload } => Some((index, name.clone(), payload.clone())),
                _ => None,
            })
            .collect()
    }

    fn error_logs(&self) -> Vec<String> {
        self.records
            .iter()
            .filter_map(|record| match record {
                Record::Log { level, message } if *level >= 4 => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for (index, record) in self.records.iter().enumerate() {
            let line = match record {
                Record::StartupReady { ok, message, db } => format!("startup_ready ok={ok} msg={message:?} db={db:?}"),
                Record::ReplyOk { token, payload } => format!("reply_ok #{token} [{}]", hex(payload)),
                Record::ReplyErr { token, message } => format!("reply_err #{token} {message}"),
                Record::Broadcast { name, payload } => format!("broadcast {name} [{}]", hex(payload)),
                Record::Log { level, message } => format!("log {level} {message}"),
                Record::Done { status } => format!("done {status:?}"),
            };
            let _ = writeln!(out, "  {index:3}: {line}");
        }
        let _ = writeln!(
            out,
            "  done={:?} clones={} releases={} pending={:?} waiters={} queued={} closed={} violations={:?} calls={:?}",
            self.done.iter().map(|(s, p)| (s, String::from_utf8_lossy(p).into_owned())).collect::<Vec<_>>(),
            self.clones,
            self.releases,
            self.pending,
            self.waiters.len(),
            self.frames.len(),
            self.closed,
            self.violations,
            self.calls,
        );
        out
    }
}

struct MockHost {
    id: u64,
    /// `None`: `sql_is_enabled` reports 0.
    db: Option<Db>,
    /// The host a vtable is pointed at once `run` returned; any use of it is
    /// a use of a pointer the plugin no longer owns.
    stale: bool,
    state: Mutex<HostState>,
    changed: Condvar,
}

impl MockHost {
    /// A new host, leaked so that late plugin calls can never touch freed memory.
    fn new(db: Option<Db>) -> &'static MockHost {
        Self::create(db, false)
    }

    fn create(db: Option<Db>, stale: bool) -> &'static MockHost {
        let host: &'static MockHost = Box::leak(Box::new(MockHost {
            id: NEXT_ID.fetch_add(1, Ordering::SeqCst),
            db,
            stale,
            state: Mutex::new(HostState::default()),
            changed: Condvar::new(),
        }));
        lock(known_hosts()).insert(host as *const MockHost as usize);
        host
    }

    fn stale_host() -> &'static MockHost {
        static STALE: OnceLock<&'static MockHost> = OnceLock::new();
        STALE.get_or_init(|| MockHost::create(None, true))
    }

    fn ctx(&'static self) -> *const c_void {
        (self as *const MockHost).cast()
    }

    fn update<T>(&self, change: impl FnOnce(&mut HostState) -> T) -> T {
        let value = change(&mut lock(&self.state));
        self.changed.notify_all();
        value
    }

    /// Copies and frees (once, with its own `free`) a buffer the plugin handed over.
    fn take(&self, buf: OwnedBuf) -> Vec<u8> {
        let (bytes, complaint) = take_plugin_buf(buf);
        self.update(|s| {
            s.plugin_buffers_freed += 1;
            if let Some(complaint) = complaint {
                s.violations.push(complaint);
            }
        });
        bytes
    }

    /// Waits (bounded) until `check` yields a value. Conditions outside the
    /// host state (buffer registry) are re-checked every few milliseconds.
    fn wait<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&HostState) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.state);
        loop {
            if let Some(value) = check(&state) {
                return value;
            }
            let now = Instant::now();
            if now >= deadline {
                let seen = state.describe();
                drop(state);
                panic!("timed out after {timeout:?} waiting for {what}; the host saw:\n{seen}");
            }
            let slice = (deadline - now).min(Duration::from_millis(20));
            state = self.changed.wait_timeout(state, slice).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn wait_reply(&self, token: u64, timeout: Duration) -> Reply {
        self.wait(&format!("the reply to token {token}"), timeout, |s| s.reply(token).map(|(_, r)| r))
    }

    fn wait_startup(&self) -> (bool, String, Option<DbSnapshot>) {
        self.wait("startup_ready", WAIT, HostState::startup)
    }

    /// Waits until the plugin's loop is parked in `next_event` with nothing queued.
    fn wait_parked(&self) {
        self.wait("the plugin to wait in next_event", WAIT, |s| {
            (!s.waiters.is_empty() && s.frames.is_empty()).then_some(())
        })
    }

    /// Queues an event that expects a reply; returns its fresh non-zero token.
    fn send(&self, tag: AbiEventTag, payload: &[u8]) -> u64 {
        self.send_tag(tag as u32, payload)
    }

    fn send_tag(&self, tag: u32, payload: &[u8]) -> u64 {
        let token = self.update(|s| {
            s.last_token += 1;
            s.pending.insert(s.last_token);
            s.last_token
        });
        self.deliver(frame(tag, token, payload));
        token
    }

    /// Queues an event with reply token 0 (no reply expected).
    fn send_no_reply(&self, tag: u32, payload: &[u8]) {
        self.deliver(frame(tag, 0, payload));
    }

    fn deliver(&self, frame: Vec<u8>) {
        let ready = self.update(|s| {
            if s.closed {
                s.violations.push("test bug: event sent after the stream was closed".into());
                return None;
            }
            match s.waiters.pop_front() {
                Some(waiter) => Some((waiter, frame)),
                None => {
                    s.frames.push_back(frame);
                    None
                }
            }
        });
        if let Some((waiter, frame)) = ready {
            waiter.complete_later(self.id, AbiStatus::Ok, frame);
        }
    }

    /// Closes the event stream: waiting and later `next_event` calls complete
    /// with `ChannelClosed` once the queued frames are drained.
    fn close(&self) {
        let (waiters, aborts) = self.update(|s| {
            s.closed = true;
            let waiters = if s.frames.is_empty() { std::mem::take(&mut s.waiters) } else { VecDeque::new() };
            (waiters, std::mem::take(&mut s.abort_waiters))
        });
        for waiter in waiters {
            waiter.complete_later(self.id, AbiStatus::ChannelClosed, Vec::new());
        }
        for waiter in aborts {
            waiter.complete_later(self.id, AbiStatus::Ok, Vec::new());
        }
    }

    fn vtable(&'static self) -> HostVtable {
        HostVtable {
            abi_version: RIVET_ACTOR_ABI_VERSION,
            ctx: self.ctx(),
            ctx_clone: h_ctx_clone,
            ctx_release: h_ctx_release,
            db_exec: h_db_exec,
            db_query: h_db_query,
            db_run: h_db_run,
            sql_is_enabled: h_sql_is_enabled,
            state_get: h_state_get,
            state_set: h_state_set,
            actor_identity: h_actor_identity,
            state_save: h_state_save,
            request_save: h_request_save,
            request_save_and_wait: h_request_save_and_wait,
            sleep: h_sleep,
            actor_aborted: h_actor_aborted,
            wait_actor_abort: h_wait_actor_abort,
            keep_awake_enter: h_keep_awake_enter,
            keep_awake_exit: h_keep_awake_exit,
            keep_awake_count: h_keep_awake_count,
            kv_get: h_kv_get,
            kv_put: h_kv_put,
            kv_delete: h_kv_delete,
            kv_batch_get: h_kv_batch_get,
            kv_batch_put: h_kv_batch_put,
            kv_batch_delete: h_kv_batch_delete,
            kv_delete_range: h_kv_delete_range,
            kv_list_prefix: h_kv_list_prefix,
            kv_list_range: h_kv_list_range,
            schedule_after: h_schedule_after,
            schedule_at: h_schedule_at,
            set_alarm: h_set_alarm,
            scheduled_events: h_scheduled_events,
            conn_list: h_conn_list,
            conn_disconnect: h_conn_disconnect,
            hibernatable_ws_ack: h_hibernatable_ws_ack,
            conn_send: h_conn_send,
            next_event: h_next_event,
            reply_ok: h_reply_ok,
            reply_err: h_reply_err,
            startup_ready: h_startup_ready,
            broadcast: h_broadcast,
            log: h_log,
        }
    }
}

/// The mock host behind a ctx pointer, if it is one the mock handed out.
fn host_of(ctx: *const c_void) -> Option<&'static MockHost> {
    if !lock(known_hosts()).contains(&(ctx as usize)) {
        UNKNOWN_CTX.fetch_add(1, Ordering::SeqCst);
        return None;
    }
    // SAFETY: the address is in the registry of mock hosts, which are leaked
    // (`Box::leak`) and so valid for the rest of the process.
    let host = unsafe { &*ctx.cast::<MockHost>() };
    if host.stale {
        STALE_VTABLE_USES.fetch_add(1, Ordering::SeqCst);
    }
    Some(host)
}

/// The body of every vtable entry: resolves the ctx, counts the call and
/// catches panics (unwinding across `extern "C"` is UB).
fn entry<T>(
    ctx: *const c_void,
    name: &'static str,
    fallback: impl FnOnce() -> T,
    body: impl FnOnce(&'static MockHost) -> T,
) -> T {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let host = host_of(ctx)?;
        host.update(|s| *s.calls.entry(name).or_default() += 1);
        Some(body(host))
    }));
    match outcome {
        Ok(Some(value)) => value,
        Ok(None) => fallback(),
        Err(_) => {
            MOCK_PANICS.fetch_add(1, Ordering::SeqCst);
            fallback()
        }
    }
}

/// An async entry: inputs are taken (and freed) now; `op` runs on the host
/// runtime and its outcome completes the plugin's completion exactly once.
fn async_entry(
    ctx: *const c_void,
    name: &'static str,
    inputs: Vec<OwnedBuf>,
    completion: Completion,
    op: impl FnOnce(&'static MockHost, Vec<Vec<u8>>) -> Result<Vec<u8>, String> + Send + 'static,
) {
    entry(ctx, name, || (), move |host| {
        let inputs: Vec<Vec<u8>> = inputs.into_iter().map(|buf| host.take(buf)).collect();
        host_runtime().spawn(async move {
            let outcome = catch_unwind(AssertUnwindSafe(|| op(host, inputs))).unwrap_or_else(|_| {
                MOCK_PANICS.fetch_add(1, Ordering::SeqCst);
                Err(format!("mock host {name} panicked"))
            });
            match outcome {
                Ok(payload) => completion.complete(host.id, AbiStatus::Ok, payload),
                Err(message) => completion.complete(host.id, AbiStatus::Err, message.into_bytes()),
            }
        });
    });
}

fn cbor<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("encode CBOR");
    out
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| format!("decode {what}: {e}"))
}

// --- ctx refcount ----------------------------------------------------------

extern "C" fn h_ctx_clone(ctx: *const c_void) -> *const c_void {
    entry(ctx, "ctx_clone", || ctx, |host| {
        host.update(|s| s.clones += 1);
        ctx
    })
}

extern "C" fn h_ctx_release(ctx: *const c_void) {
    entry(ctx, "ctx_release", || (), |host| {
        host.update(|s| {
            s.releases += 1;
            if s.releases > s.clones {
                s.violations.push(format!("ctx_release #{} without a matching ctx_clone", s.releases));
            }
        })
    })
}

// --- SQLite ----------------------------------------------------------------

fn sql_text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|e| format!("sql is not UTF-8: {e}"))
}

fn db_of(host: &MockHost) -> Result<&Db, String> {
    host.db.as_ref().ok_or_else(|| "sql is not enabled on this actor".to_string())
}

/// A JSON parameter as an SQLite value (the ABI's mapping).
fn sql_value(value: &Json) -> Result<SqlValue, String> {
    Ok(match value {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => match n.as_i64() {
            Some(i) => SqlValue::Integer(i),
            None if n.is_u64() => return Err(format!("integer {n} is out of range")),
            None => SqlValue::Real(n.as_f64().ok_or_else(|| format!("number {n} is not representable"))?),
        },
        Json::String(s) => SqlValue::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => return Err(format!("unsupported parameter type: {value}")),
    })
}

/// Binds CBOR params (JSON array: positional; object: by name; null or
/// empty: none).
fn bind(stmt: &mut Statement<'_>, params: &[u8]) -> Result<(), String> {
    if params.is_empty() {
        return Ok(());
    }
    let value: Json = decode(params, "params")?;
    let count = stmt.parameter_count();
    // Values in parameter order (1-based index = position + 1).
    let mut values: Vec<SqlValue> = Vec::new();
    match &value {
        Json::Null => return Ok(()),
        Json::Array(items) => {
            if items.len() != count {
                return Err(format!("the statement has {count} parameters, params has {}", items.len()));
            }
            for item in items {
                values.push(sql_value(item)?);
            }
        }
        Json::Object(map) => {
            let names: Vec<Option<String>> = (1..=count).map(|i| stmt.parameter_name(i).map(str::to_owned)).collect();
            if names.iter().any(Option::is_some) {
                for (index, name) in names.iter().enumerate() {
                    let token = name.as_ref().ok_or_else(|| format!("parameter {} is positional", index + 1))?;
                    let bare = &token[1..];
                    let candidates =
                        [token.clone(), bare.to_owned(), format!(":{bare}"), format!("@{bare}"), format!("${bare}")];
                    let item = candidates
                        .iter()
                        .find_map(|key| map.get(key))
                        .ok_or_else(|| format!("missing named parameter `{token}`"))?;
                    values.push(sql_value(item)?);
                }
            } else {
                let sorted: BTreeMap<&String, &Json> = map.iter().collect();
                if sorted.len() != count {
                    return Err(format!("the statement has {count} parameters, params has {}", sorted.len()));
                }
                for item in sorted.values() {
                    values.push(sql_value(item)?);
                }
            }
        }
        other => return Err(format!("params must be an array, an object or null, got {other}")),
    }
    for (index, value) in values.into_iter().enumerate() {
        stmt.raw_bind_parameter(index + 1, value).map_err(|e| format!("bind parameter {}: {e}", index + 1))?;
    }
    Ok(())
}

/// Steps a statement to the end, returning its rows as column→value maps.
fn rows_of(stmt: &mut Statement<'_>) -> Result<Vec<BTreeMap<String, Cbor>>, String> {
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| e.to_string())? {
        let mut map = BTreeMap::new();
        for (index, name) in names.iter().enumerate() {
            let value = match row.get_ref(index).map_err(|e| e.to_string())? {
                ValueRef::Null => Cbor::Null,
                ValueRef::Integer(i) => Cbor::Integer(i.into()),
                ValueRef::Real(f) => Cbor::Float(f),
                ValueRef::Text(t) => Cbor::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Cbor::Array(b.iter().map(|byte| Cbor::Integer((*byte).into())).collect()),
            };
            map.insert(name.clone(), value);
        }
        out.push(map);
    }
    Ok(out)
}

/// Rows CBOR: an array with one map per row, keys sorted by column name.
fn encode_rows(rows: Vec<BTreeMap<String, Cbor>>) -> Vec<u8> {
    let rows = rows
        .into_iter()
        .map(|row| Cbor::Map(row.into_iter().map(|(k, v)| (Cbor::Text(k), v)).collect()))
        .collect();
    cbor(&Cbor::Array(rows))
}

fn run_exec(host: &MockHost, sql: &[u8]) -> Result<Vec<u8>, String> {
    let sql = sql_text(sql)?;
    let conn = lock(db_of(host)?);
    let mut batch = Batch::new(&conn, &sql);
    let mut last = Vec::new();
    while let Some(mut stmt) = batch.next().map_err(|e| e.to_string())? {
        let rows = rows_of(&mut stmt)?;
        if stmt.column_count() > 0 {
            last = rows;
        }
    }
    Ok(encode_rows(last))
}

fn run_statement(host: &MockHost, sql: &[u8], params: &[u8]) -> Result<Vec<BTreeMap<String, Cbor>>, String> {
    let sql = sql_text(sql)?;
    let conn = lock(db_of(host)?);
    let mut stmt = conn.prepare(&sql).map_err(|e| e.to_string())?;
    bind(&mut stmt, params)?;
    rows_of(&mut stmt)
}

extern "C" fn h_db_exec(ctx: *const c_void, sql: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "db_exec", vec![sql], Completion::new(done, user_data), |host, inputs| run_exec(host, &inputs[0]));
}

extern "C" fn h_db_query(
    ctx: *const c_void,
    sql: OwnedBuf,
    params: OwnedBuf,
    done: CompletionFn,
    user_data: *mut c_void,
) {
    async_entry(ctx, "db_query", vec![sql, params], Completion::new(done, user_data), |host, inputs| {
        run_statement(host, &inputs[0], &inputs[1]).map(encode_rows)
    });
}

extern "C" fn h_db_run(
    ctx: *const c_void,
    sql: OwnedBuf,
    params: OwnedBuf,
    done: CompletionFn,
    user_data: *mut c_void,
) {
    async_entry(ctx, "db_run", vec![sql, params], Completion::new(done, user_data), |host, inputs| {
        run_statement(host, &inputs[0], &inputs[1]).map(|_| Vec::new())
    });
}

extern "C" fn h_sql_is_enabled(ctx: *const c_void) -> u8 {
    entry(ctx, "sql_is_enabled", || 0, |host| u8::from(host.db.is_some()))
}

fn snapshot(db: &Db) -> DbSnapshot {
    fn versions(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
        let mut stmt = conn.prepare("SELECT version FROM agentos_schema_version ORDER BY rowid")?;
        stmt.query_map([], |row| row.get(0))?.collect()
    }
    fn meta(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
        let mut stmt = conn.prepare("SELECT key, value FROM agentos_actor_meta ORDER BY key")?;
        stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect()
    }
    let conn = lock(db);
    DbSnapshot { versions: versions(&conn).ok(), meta: meta(&conn).ok() }
}

// --- state, identity, lifecycle --------------------------------------------

extern "C" fn h_state_get(ctx: *const c_void) -> OwnedBuf {
    entry(ctx, "state_get", || host_buf(0, Vec::new()), |host| {
        let bytes = host.update(|s| s.actor_state.clone());
        host_buf(host.id, bytes)
    })
}

extern "C" fn h_state_set(ctx: *const c_void, state: OwnedBuf) -> AbiStatus {
    entry(ctx, "state_set", || AbiStatus::Panic, |host| {
        let bytes = host.take(state);
        host.update(|s| s.actor_state = bytes);
        AbiStatus::Ok
    })
}

extern "C" fn h_actor_identity(ctx: *const c_void) -> OwnedBuf {
    entry(ctx, "actor_identity", || host_buf(0, Vec::new()), |host| {
        let identity = ActorIdentity {
            actor_id: format!("mock-actor-{}", host.id),
            name: "agentos".into(),
            key: "conformance".into(),
            region: "local".into(),
            input: None,
            has_state: false,
        };
        host_buf(host.id, cbor(&identity))
    })
}

extern "C" fn h_state_save(ctx: *const c_void, state: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "state_save", vec![state], Completion::new(done, user_data), |host, mut inputs| {
        let bytes = inputs.remove(0);
        host.update(|s| s.actor_state = bytes);
        Ok(Vec::new())
    });
}

extern "C" fn h_request_save(ctx: *const c_void, _immediate: u8, _has_max_wait: u8, _max_wait_ms: u32) -> AbiStatus {
    entry(ctx, "request_save", || AbiStatus::Panic, |_| AbiStatus::Ok)
}

extern "C" fn h_request_save_and_wait(
    ctx: *const c_void,
    _immediate: u8,
    _has_max_wait: u8,
    _max_wait_ms: u32,
    done: CompletionFn,
    user_data: *mut c_void,
) {
    async_entry(ctx, "request_save_and_wait", Vec::new(), Completion::new(done, user_data), |_, _| Ok(Vec::new()));
}

extern "C" fn h_sleep(ctx: *const c_void) -> AbiResult {
    entry(ctx, "sleep", || AbiResult { status: AbiStatus::Panic, payload: host_buf(0, Vec::new()) }, |host| {
        AbiResult { status: AbiStatus::Ok, payload: host_buf(host.id, Vec::new()) }
    })
}

extern "C" fn h_actor_aborted(ctx: *const c_void) -> u8 {
    entry(ctx, "actor_aborted", || 1, |host| u8::from(host.update(|s| s.closed)))
}

extern "C" fn h_wait_actor_abort(ctx: *const c_void, done: CompletionFn, user_data: *mut c_void) {
    let completion = Completion::new(done, user_data);
    entry(ctx, "wait_actor_abort", || (), move |host| {
        let fire_now = host.update(|s| {
            if s.closed {
                Some(completion)
            } else {
                s.abort_waiters.push(completion);
                None
            }
        });
        if let Some(completion) = fire_now {
            completion.complete_later(host.id, AbiStatus::Ok, Vec::new());
        }
    });
}

extern "C" fn h_keep_awake_enter(ctx: *const c_void) -> AbiResult {
    entry(ctx, "keep_awake_enter", || AbiResult { status: AbiStatus::Panic, payload: host_buf(0, Vec::new()) }, |host| {
        let token = host.update(|s| {
            s.last_keep_awake += 1;
            s.keep_awake.insert(s.last_keep_awake);
            s.last_keep_awake
        });
        AbiResult { status: AbiStatus::Ok, payload: host_buf(host.id, cbor(&KeepAwakeToken { token })) }
    })
}

extern "C" fn h_keep_awake_exit(ctx: *const c_void, token: u64) -> AbiStatus {
    entry(ctx, "keep_awake_exit", || AbiStatus::Panic, |host| {
        if host.update(|s| s.keep_awake.remove(&token)) { AbiStatus::Ok } else { AbiStatus::Err }
    })
}

extern "C" fn h_keep_awake_count(ctx: *const c_void) -> u64 {
    entry(ctx, "keep_awake_count", || 0, |host| host.update(|s| s.keep_awake.len() as u64))
}

// --- KV --------------------------------------------------------------------

#[derive(Clone, Copy)]
enum KvOp {
    Get,
    Put,
    Delete,
    BatchGet,
    DeleteRange,
    ListPrefix,
    ListRange,
}

fn listed(entries: impl Iterator<Item = (Vec<u8>, Vec<u8>)>, opts: KvListOpts) -> Vec<u8> {
    let mut entries: Vec<KvEntry> = entries.map(|(key, value)| KvEntry { key, value }).collect();
    if opts.reverse {
        entries.reverse();
    }
    if let Some(limit) = opts.limit {
        entries.truncate(limit as usize);
    }
    cbor(&KvListResponse { entries })
}

fn kv_op(host: &MockHost, op: KvOp, request: &[u8]) -> Result<Vec<u8>, String> {
    let mut state = lock(&host.state);
    let kv = &mut state.kv;
    let out = match op {
        KvOp::Get => {
            let request: KvKeyRequest = decode(request, "kv_get request")?;
            cbor(&KvGetResponse { value: kv.get(&request.key).cloned() })
        }
        KvOp::Put => {
            let request: KvEntriesRequest = decode(request, "kv_put request")?;
            for entry in request.entries {
                kv.insert(entry.key, entry.value);
            }
            Vec::new()
        }
        KvOp::Delete => {
            let request: KvKeysRequest = decode(request, "kv_delete request")?;
            for key in request.keys {
                kv.remove(&key);
            }
            Vec::new()
        }
        KvOp::BatchGet => {
            let request: KvKeysRequest = decode(request, "kv_batch_get request")?;
            cbor(&KvValuesResponse { values: request.keys.iter().map(|k| kv.get(k).cloned()).collect() })
        }
        KvOp::DeleteRange => {
            let request: KvRangeRequest = decode(request, "kv_delete_range request")?;
            let (start, end) = (request.start.as_slice(), request.end.as_slice());
            kv.retain(|key, _| !(key.as_slice() >= start && key.as_slice() < end));
            Vec::new()
        }
        KvOp::ListPrefix => {
            let request: KvListPrefixRequest = decode(request, "kv_list_prefix request")?;
            let found = kv.iter().filter(|(k, _)| k.starts_with(&request.prefix)).map(|(k, v)| (k.clone(), v.clone()));
            listed(found, request.opts)
        }
        KvOp::ListRange => {
            let request: KvListRangeRequest = decode(request, "kv_list_range request")?;
            let found = kv
                .iter()
                .filter(|(k, _)| k.as_slice() >= request.start.as_slice() && k.as_slice() < request.end.as_slice())
                .map(|(k, v)| (k.clone(), v.clone()));
            listed(found, request.opts)
        }
    };
    drop(state);
    host.changed.notify_all();
    Ok(out)
}

macro_rules! kv_entry {
    ($fn_name:ident, $name:literal, $op:expr) => {
        extern "C" fn $fn_name(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
            async_entry(ctx, $name, vec![request], Completion::new(done, user_data), |host, inputs| {
                kv_op(host, $op, &inputs[0])
            });
        }
    };
}

kv_entry!(h_kv_get, "kv_get", KvOp::Get);
kv_entry!(h_kv_put, "kv_put", KvOp::Put);
kv_entry!(h_kv_delete, "kv_delete", KvOp::Delete);
kv_entry!(h_kv_batch_get, "kv_batch_get", KvOp::BatchGet);
kv_entry!(h_kv_batch_put, "kv_batch_put", KvOp::Put);
kv_entry!(h_kv_batch_delete, "kv_batch_delete", KvOp::Delete);
kv_entry!(h_kv_delete_range, "kv_delete_range", KvOp::DeleteRange);
kv_entry!(h_kv_list_prefix, "kv_list_prefix", KvOp::ListPrefix);
kv_entry!(h_kv_list_range, "kv_list_range", KvOp::ListRange);

// --- scheduling and connections --------------------------------------------

fn schedule(host: &MockHost, request: &[u8], relative: bool) -> Result<Vec<u8>, String> {
    let request: ScheduleActionRequest = decode(request, "schedule request")?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default();
    let timestamp_ms = if relative {
        now_ms + request.delay_ms.ok_or("schedule_after missing delay_ms")? as i64
    } else {
        request.timestamp_ms.ok_or("schedule_at missing timestamp_ms")?
    };
    host.update(|s| {
        let event_id = format!("event-{}", s.scheduled.len() + 1);
        s.scheduled.push(ScheduledEvent {
            event_id,
            timestamp_ms,
            action_name: request.action_name,
            args: Some(request.args),
        });
    });
    Ok(Vec::new())
}

extern "C" fn h_schedule_after(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "schedule_after", vec![request], Completion::new(done, user_data), |host, inputs| {
        schedule(host, &inputs[0], true)
    });
}

extern "C" fn h_schedule_at(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "schedule_at", vec![request], Completion::new(done, user_data), |host, inputs| {
        schedule(host, &inputs[0], false)
    });
}

extern "C" fn h_set_alarm(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "set_alarm", vec![request], Completion::new(done, user_data), |host, inputs| {
        let request: ScheduleAlarmRequest = decode(&inputs[0], "set_alarm request")?;
        host.update(|s| s.alarm = request.timestamp_ms);
        Ok(Vec::new())
    });
}

extern "C" fn h_scheduled_events(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "scheduled_events", vec![request], Completion::new(done, user_data), |host, _| {
        let events = host.update(|s| s.scheduled.clone());
        Ok(cbor(&ScheduledEventsResponse { events }))
    });
}

extern "C" fn h_conn_list(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "conn_list", vec![request], Completion::new(done, user_data), |_, _| {
        Ok(cbor(&ConnListResponse { conns: Vec::new() }))
    });
}

extern "C" fn h_conn_disconnect(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    async_entry(ctx, "conn_disconnect", vec![request], Completion::new(done, user_data), |_, inputs| {
        let _: ConnDisconnectRequest = decode(&inputs[0], "conn_disconnect request")?;
        Ok(Vec::new())
    });
}

extern "C" fn h_hibernatable_ws_ack(
    ctx: *const c_void,
    gateway_id: OwnedBuf,
    request_id: OwnedBuf,
    _server_message_index: u16,
) -> AbiResult {
    let panicked = || AbiResult { status: AbiStatus::Panic, payload: host_buf(0, Vec::new()) };
    entry(ctx, "hibernatable_ws_ack", panicked, |host| {
        host.take(gateway_id);
        host.take(request_id);
        let message = b"the mock host has no hibernatable websockets".to_vec();
        AbiResult { status: AbiStatus::Err, payload: host_buf(host.id, message) }
    })
}

extern "C" fn h_conn_send(ctx: *const c_void, request: OwnedBuf) -> AbiResult {
    entry(ctx, "conn_send", || AbiResult { status: AbiStatus::Panic, payload: host_buf(0, Vec::new()) }, |host| {
        let bytes = host.take(request);
        let message = match decode::<ConnSendRequest>(&bytes, "conn_send request") {
            Ok(request) => format!("connection `{}` not found", request.conn_id),
            Err(message) => message,
        };
        AbiResult { status: AbiStatus::Err, payload: host_buf(host.id, message.into_bytes()) }
    })
}

// --- events, replies, broadcast, log ---------------------------------------

fn frame(tag: u32, token: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + payload.len());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&token.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

extern "C" fn h_next_event(ctx: *const c_void, done: CompletionFn, user_data: *mut c_void) {
    let completion = Completion::new(done, user_data);
    entry(ctx, "next_event", || (), move |host| {
        enum Next {
            Frame(Completion, Vec<u8>),
            Closed(Completion),
            Parked,
        }
        let next = host.update(|s| match s.frames.pop_front() {
            Some(frame) => Next::Frame(completion, frame),
            None if s.closed => Next::Closed(completion),
            None => {
                s.waiters.push_back(completion);
                Next::Parked
            }
        });
        match next {
            Next::Frame(completion, frame) => completion.complete_later(host.id, AbiStatus::Ok, frame),
            Next::Closed(completion) => completion.complete_later(host.id, AbiStatus::ChannelClosed, Vec::new()),
            Next::Parked => {}
        }
    });
}

fn reply(ctx: *const c_void, name: &'static str, token: u64, payload: OwnedBuf, ok: bool) -> AbiStatus {
    entry(ctx, name, || AbiStatus::Panic, |host| {
        let bytes = host.take(payload);
        host.update(|s| {
            if !s.pending.remove(&token) {
                s.violations.push(format!("{name} for token {token}, which is not pending"));
                return AbiStatus::Err;
            }
            let record = if ok {
                Record::ReplyOk { token, payload: bytes }
            } else {
                let message = String::from_utf8(bytes).unwrap_or_else(|e| {
                    s.violations.push(format!("reply_err text for token {token} is not UTF-8"));
                    String::from_utf8_lossy(e.as_bytes()).into_owned()
                });
                Record::ReplyErr { token, message }
            };
            s.records.push(record);
            AbiStatus::Ok
        })
    })
}

extern "C" fn h_reply_ok(ctx: *const c_void, token: u64, payload: OwnedBuf) -> AbiStatus {
    reply(ctx, "reply_ok", token, payload, true)
}

extern "C" fn h_reply_err(ctx: *const c_void, token: u64, payload: OwnedBuf) -> AbiStatus {
    reply(ctx, "reply_err", token, payload, false)
}

extern "C" fn h_startup_ready(ctx: *const c_void, ok: u8, err_msg: BorrowedBuf) {
    entry(ctx, "startup_ready", || (), |host| {
        // SAFETY: the message is borrowed for this synchronous call only and
        // copied before returning.
        let message = String::from_utf8_lossy(unsafe { err_msg.as_slice() }).into_owned();
        // What the database holds at the very moment the plugin says it is ready.
        let db = host.db.as_ref().map(snapshot);
        host.update(|s| {
            if s.startup().is_some() {
                s.violations.push("startup_ready called more than once".into());
            }
            s.records.push(Record::StartupReady { ok: ok != 0, message, db });
        });
    })
}

extern "C" fn h_broadcast(ctx: *const c_void, name: OwnedBuf, payload: OwnedBuf) -> AbiStatus {
    entry(ctx, "broadcast", || AbiStatus::Panic, |host| {
        let name = host.take(name);
        let payload = host.take(payload);
        let Ok(name) = String::from_utf8(name) else {
            return AbiStatus::Err;
        };
        host.update(|s| s.records.push(Record::Broadcast { name, payload }));
        AbiStatus::Ok
    })
}

extern "C" fn h_log(ctx: *const c_void, level: i32, msg: BorrowedBuf) {
    entry(ctx, "log", || (), |host| {
        // SAFETY: the message is borrowed for this synchronous call only and
        // copied before returning.
        let message = String::from_utf8_lossy(unsafe { msg.as_slice() }).into_owned();
        host.update(|s| s.records.push(Record::Log { level, message }));
    })
}

/// The `done` completion given to `run`; `user_data` is the mock host.
extern "C" fn on_done(user_data: *mut c_void, result: AbiResult) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let status = result.status;
        match host_of(user_data.cast_const()) {
            Some(host) => {
                let payload = host.take(result.payload);
                host.update(|s| {
                    s.done.push((status, payload));
                    s.records.push(Record::Done { status });
                });
            }
            // Unknown user_data: still free the payload the plugin gave us.
            None => drop(take_plugin_buf(result.payload)),
        }
    }));
    if outcome.is_err() {
        MOCK_PANICS.fetch_add(1, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Driving the plugin like a host
// ---------------------------------------------------------------------------

/// Reads and frees an `out_err` slot.
fn read_out_err(slot: OwnedBuf) -> String {
    let (bytes, complaint) = take_plugin_buf(slot);
    assert!(complaint.is_none(), "out_err: {complaint:?}");
    String::from_utf8(bytes).expect("out_err is UTF-8")
}

fn plugin_init() -> *mut c_void {
    let mut out_err = host_buf(0, Vec::new());
    let plugin = ffi::rivet_actor_plugin_init(&mut out_err);
    let message = read_out_err(out_err);
    assert!(!plugin.is_null(), "rivet_actor_plugin_init failed: {message}");
    assert!(message.is_empty(), "a successful init wrote out_err: {message}");
    plugin
}

fn factory_new(plugin: *mut c_void, config: &str, sidecar: &str) -> Result<*mut c_void, String> {
    let mut out_err = host_buf(0, Vec::new());
    let factory = ffi::rivet_actor_factory_new(
        plugin,
        BorrowedBuf::from_slice(config.as_bytes()),
        BorrowedBuf::from_slice(sidecar.as_bytes()),
        &mut out_err,
    );
    let message = read_out_err(out_err);
    if factory.is_null() {
        Err(message)
    } else {
        assert!(message.is_empty(), "a successful factory_new wrote out_err: {message}");
        Ok(factory)
    }
}

/// `rivet_actor_run` with the host's vtable. The vtable lives in a heap slot
/// that is overwritten with a poisoned copy (pointing at the stale host) as
/// soon as `run` returns, and then leaked: a plugin that kept the pointer
/// instead of copying the struct is counted, without any UB.
fn run_on_vtable(factory: *mut c_void, host: &'static MockHost, vtable: HostVtable) -> *mut c_void {
    let mut slot = Box::new(vtable);
    let user_data = host.ctx().cast_mut();
    let instance = ffi::rivet_actor_run(factory, &*slot, on_done, user_data);
    *slot = MockHost::stale_host().vtable();
    Box::leak(slot);
    assert!(!instance.is_null(), "rivet_actor_run returned a null instance");
    instance
}

fn run(factory: *mut c_void, host: &'static MockHost) -> *mut c_void {
    run_on_vtable(factory, host, host.vtable())
}

/// Asserts that nothing went wrong at the boundary for `host`.
/// A running actor whose startup the mock host has already seen succeed.
struct Started {
    plugin: *mut c_void,
    factory: *mut c_void,
    host: &'static MockHost,
    instance: *mut c_void,
}

/// Loads the plugin, builds a factory and runs one actor over a fresh
/// in-memory database, waiting for `startup_ready(ok)`.
fn start(config: &str, sidecar: &str) -> Started {
    let plugin = plugin_init();
    let factory = factory_new(plugin, config, sidecar).expect("factory");
    let host = MockHost::new(Some(memory_db()));
    let instance = run(factory, host);
    assert!(host.wait_startup().0, "startup failed");
    Started { plugin, factory, host, instance }
}

fn assert_clean(host: &'static MockHost) {
    host.wait("every buffer the host handed the plugin to be freed", WAIT, |_| {
        (outstanding_buffers(host.id) == 0).then_some(())
    });
    let state = lock(&host.state);
    assert!(state.violations.is_empty(), "ABI violations: {:?}\n{}", state.violations, state.describe());
    assert_eq!(BAD_FREES.load(Ordering::SeqCst), 0, "a host buffer was freed twice or a foreign one was freed");
    assert_eq!(MOCK_PANICS.load(Ordering::SeqCst), 0, "the mock host panicked");
    assert_eq!(STALE_VTABLE_USES.load(Ordering::SeqCst), 0, "the plugin used the vtable pointer after run returned");
    assert_eq!(UNKNOWN_CTX.load(Ordering::SeqCst), 0, "the plugin passed a ctx the host never gave it");
}

/// The normal end of an instance: close the event stream, expect `done`
/// exactly once, free the instance, then every ctx reference released.
fn close_and_free(host: &'static MockHost, instance: *mut c_void) -> (AbiStatus, Vec<u8>) {
    host.close();
    let done = host.wait("done", WAIT, |s| s.done.first().cloned());
    ffi::rivet_actor_instance_free(instance);
    host.wait("every ctx reference to be released", WAIT, |s| (s.clones == s.releases).then_some(()));
    assert_eq!(lock(&host.state).done.len(), 1, "done fired more than once");
    assert_clean(host);
    done
}

fn assert_all_answered(host: &MockHost) {
    let state = lock(&host.state);
    assert!(state.pending.is_empty(), "unanswered tokens {:?}\n{}", state.pending, state.describe());
}

fn shutdown(plugin: *mut c_void, factories: &[*mut c_void]) {
    for factory in factories {
        ffi::rivet_actor_factory_free(*factory);
    }
    ffi::rivet_actor_plugin_shutdown(plugin);
}

fn action(name: &str, args: Json) -> Vec<u8> {
    let mut out = (name.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(&cbor(&args));
    out
}

fn conn() -> ConnInfo {
    ConnInfo { id: "conn-1".into(), params: vec![0xf6], state: Vec::new(), is_hibernatable: false }
}

fn http_request(method: &str, uri: &str) -> Vec<u8> {
    let text = |s: &str| Cbor::Text(s.into());
    cbor(&Cbor::Map(vec![
        (text("method"), text(method)),
        (text("uri"), text(uri)),
        (text("headers"), Cbor::Map(vec![(text("accept"), text("*/*"))])),
        (text("body"), Cbor::Bytes(Vec::new())),
    ]))
}

fn expect_ok(reply: Reply, what: &str) -> Vec<u8> {
    match reply {
        Reply::Ok(payload) => payload,
        Reply::Err(message) => panic!("{what}: expected reply_ok, got reply_err {message}"),
    }
}

/// The structured error JSON of a `reply_err`.
fn expect_err(reply: Reply, what: &str) -> Json {
    match reply {
        Reply::Err(message) => serde_json::from_str(&message)
            .unwrap_or_else(|e| panic!("{what}: reply_err text is not JSON ({e}): {message}")),
        Reply::Ok(payload) => panic!("{what}: expected reply_err, got reply_ok [{}]", hex(&payload)),
    }
}

fn cbor_value(bytes: &[u8], what: &str) -> Cbor {
    ciborium::from_reader(bytes).unwrap_or_else(|e| panic!("{what}: not CBOR ({e}): [{}]", hex(bytes)))
}

fn cbor_json(bytes: &[u8], what: &str) -> Json {
    ciborium::from_reader(bytes).unwrap_or_else(|e| panic!("{what}: not JSON-compatible CBOR ({e}): [{}]", hex(bytes)))
}

/// A stand-in sidecar that records that something tried to start it, then
/// fails. Proves that a path of the plugin never starts a VM.
struct Canary {
    dir: PathBuf,
}

impl Canary {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "agentos-abi-{tag}-{}-{}",
            std::process::id(),
            NEXT_ID.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).expect("create the canary dir");
        let script = dir.join("agentos-sidecar");
        let marker = dir.join("started");
        std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display())).expect("write canary");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod canary");
        Self { dir }
    }

    fn path(&self) -> String {
        self.dir.join("agentos-sidecar").display().to_string()
    }

    fn started(&self) -> bool {
        self.dir.join("started").exists()
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Provisioned {
    sidecar: String,
    packages: Vec<String>,
}

/// Paths of the provisioned sidecar and command packages, from the workspace's
/// own `agentos provision --json`.
fn provisioned() -> Provisioned {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/agentos");
    assert!(
        bin.is_file(),
        "{} is missing: the real-VM conformance tests provision the sidecar and the command packages with it; \
         build it first with `cargo build -p agentos`",
        bin.display()
    );
    let (tx, rx) = mpsc::channel();
    let command = bin.clone();
    std::thread::spawn(move || {
        let _ = tx.send(
            Command::new(command).args(["provision", "--json"]).stdin(Stdio::null()).output(),
        );
    });
    let output = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("`agentos provision --json` did not finish within 120 s")
        .expect("run `agentos provision --json`");
    assert!(
        output.status.success(),
        "`agentos provision --json` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let paths: Json = serde_json::from_slice(&output.stdout).expect("provision --json prints JSON");
    let sidecar = paths["sidecar"].as_str().expect("provision: sidecar path").to_owned();
    let packages: Vec<String> = paths["commandPackages"]
        .as_array()
        .expect("provision: commandPackages")
        .iter()
        .map(|p| p.as_str().expect("a package path").to_owned())
        .collect();
    assert!(Path::new(&sidecar).is_file(), "provisioned sidecar {sidecar} is missing");
    assert!(!packages.is_empty(), "provision returned no command packages");
    Provisioned { sidecar, packages }
}

fn vm_config(provisioned: &Provisioned) -> String {
    let packages: Vec<Json> = provisioned.packages.iter().map(|p| json!({ "packagePath": p })).collect();
    json!({ "packages": packages }).to_string()
}

fn tag(tag: AbiEventTag) -> u32 {
    tag as u32
}

// ---------------------------------------------------------------------------
// 1. Exports, init, factory
// ---------------------------------------------------------------------------

/// Magic and version values, init, config validation in `factory_new`, and
/// the teardown exports (including on null handles).
#[test]
fn exports_init_and_factory_config_validation() {
    assert_eq!(ffi::rivet_actor_abi_magic(), 0x5256_5441_4249_0001);
    assert_eq!(ffi::rivet_actor_abi_magic(), RIVET_ACTOR_ABI_MAGIC);
    assert_eq!(ffi::rivet_actor_abi_version(), 13);
    assert_eq!(ffi::rivet_actor_abi_version(), RIVET_ACTOR_ABI_VERSION);

    let plugin = plugin_init();

    let error = factory_new(plugin, r#"{"bogusField":1}"#, "").expect_err("an unknown config field is refused");
    assert!(error.contains("bogusField"), "out_err does not name the field: {error}");

    let from_empty = factory_new(plugin, "", "").expect("empty config_json means defaults");
    let from_object = factory_new(plugin, "{}", "/nonexistent/agentos-sidecar").expect("`{}` is a valid config");
    assert_ne!(from_empty, from_object);

    let error = factory_new(std::ptr::null_mut(), "{}", "").expect_err("a null plugin is refused");
    assert!(!error.is_empty());

    // Null handles are ignored by every teardown export.
    ffi::rivet_actor_cancel(std::ptr::null_mut());
    ffi::rivet_actor_grace_deadline(std::ptr::null_mut());
    ffi::rivet_actor_instance_free(std::ptr::null_mut());
    ffi::rivet_actor_factory_free(std::ptr::null_mut());
    ffi::rivet_actor_plugin_shutdown(std::ptr::null_mut());

    shutdown(plugin, &[from_empty, from_object]);
    assert_eq!(BAD_FREES.load(Ordering::SeqCst), 0);
}

/// `run` with a vtable of another ABI version fails through `done` (once,
/// non-Ok, with a message), still returns an instance handle, and takes no
/// ctx reference.
#[test]
fn run_refuses_a_vtable_of_another_abi_version() {
    let plugin = plugin_init();
    let factory = factory_new(plugin, "{}", "").expect("factory");
    let host = MockHost::new(Some(memory_db()));
    let mut vtable = host.vtable();
    vtable.abi_version = 12;
    let instance = run_on_vtable(factory, host, vtable);
    let (status, message) = host.wait("done", WAIT, |s| s.done.first().cloned());
    assert_eq!(status, AbiStatus::Err);
    let message = String::from_utf8_lossy(&message).into_owned();
    assert!(message.contains("12") && message.contains("13"), "{message}");
    ffi::rivet_actor_cancel(instance);
    ffi::rivet_actor_grace_deadline(instance);
    ffi::rivet_actor_instance_free(instance);
    let state = lock(&host.state);
    assert_eq!(state.done.len(), 1);
    assert_eq!((state.clones, state.releases), (0, 0));
    assert!(state.startup().is_none(), "startup_ready on a refused vtable");
    drop(state);
    assert_clean(host);
    shutdown(plugin, &[factory]);
}

// ---------------------------------------------------------------------------
// 2. Startup and schema migrations
// ---------------------------------------------------------------------------

/// The schema is migrated in the real SQLite before `startup_ready(ok=1)`;
/// a second instance on the same database changes nothing.
#[test]
fn startup_migrates_before_ready_and_is_idempotent() {
    let plugin = plugin_init();
    let factory = factory_new(plugin, "{}", "").expect("factory");
    let db = memory_db();
    let latest = MIGRATIONS.last().expect("at least one migration").0;

    let first = MockHost::new(Some(db.clone()));
    let instance = run(factory, first);
    let (ok, message, seen) = first.wait_startup();
    assert!(ok, "startup failed: {message}");
    let seen = seen.expect("the mock snapshots the database at startup_ready");
    assert_eq!(seen.versions, Some(vec![latest]), "schema version at the moment startup_ready was called");
    let meta = seen.meta.clone().expect("agentos_actor_meta exists when startup_ready is called");
    let created = &meta.iter().find(|(key, _)| key == "created_at_ms").expect("created_at_ms row").1;
    assert!(created.parse::<i64>().is_ok_and(|ms| ms > 1_600_000_000_000), "created_at_ms = {created}");
    first.wait_parked();
    let (status, _) = close_and_free(first, instance);
    assert_eq!(status, AbiStatus::Ok);
    assert!(lock(&first.state).error_logs().is_empty());

    let second = MockHost::new(Some(db.clone()));
    let instance = run(factory, second);
    let (ok, message, again) = second.wait_startup();
    assert!(ok, "second startup failed: {message}");
    assert_eq!(again, Some(seen.clone()), "a second instance changed the migrated database");
    let (status, _) = close_and_free(second, instance);
    assert_eq!(status, AbiStatus::Ok);
    assert!(lock(&second.state).error_logs().is_empty());
    assert_eq!(snapshot(&db), seen);

    shutdown(plugin, &[factory]);
}

/// A database migrated by a newer plugin is refused: `startup_ready(ok=0)`
/// naming the version, nothing applied, and the run ends by itself.
#[test]
fn startup_refuses_a_newer_schema() {
    let plugin = plugin_init();
    let factory = factory_new(plugin, "{}", "").expect("factory");
    let db = memory_db();
    lock(&db)
        .execute_batch(
            "CREATE TABLE agentos_schema_version (version INTEGER NOT NULL) STRICT;
             INSERT INTO agentos_schema_version (version) VALUES (999);",
        )
        .expect("seed a newer schema version");

    let host = MockHost::new(Some(db.clone()));
    let instance = run(factory, host);
    let (ok, message, seen) = host.wait_startup();
    assert!(!ok, "startup succeeded on a newer schema");
    assert!(message.contains("999"), "the startup error does not name the version: {message}");
    assert_eq!(seen, Some(DbSnapshot { versions: Some(vec![999]), meta: None }));
    // The plugin ends on its own; no event is needed.
    host.wait("done after a failed startup", WAIT, |s| s.done.first().cloned());
    let (status, message) = close_and_free(host, instance);
    assert_eq!(status, AbiStatus::Err, "a failed startup must end with done(Err)");
    assert!(String::from_utf8_lossy(&message).contains("999"), "done carries the reason");
    assert_eq!(lock(&host.state).calls.get("next_event"), None, "events were pulled after a failed startup");
    assert_eq!(snapshot(&db), DbSnapshot { versions: Some(vec![999]), meta: None });

    shutdown(plugin, &[factory]);
}

/// With `sql_is_enabled` = 0 the plugin starts without touching the database.
#[test]
fn startup_without_sql_skips_migrations() {
    let plugin = plugin_init();
    let factory = factory_new(plugin, "{}", "").expect("factory");
    let host = MockHost::new(None);
    let instance = run(factory, host);
    let (ok, message, seen) = host.wait_startup();
    assert!(ok, "{message}");
    assert_eq!(seen, None);
    let (status, _) = close_and_free(host, instance);
    assert_eq!(status, AbiStatus::Ok);
    let calls = lock(&host.state).calls.clone();
    for db_call in ["db_exec", "db_query", "db_run"] {
        assert!(!calls.contains_key(db_call), "{db_call} called with SQL disabled: {calls:?}");
    }
    shutdown(plugin, &[factory]);
}

// ---------------------------------------------------------------------------
// 3. Events answered without a VM
// ---------------------------------------------------------------------------

/// Connection, subscription, state, queue, raw WebSocket, HTTP and unknown
/// events are answered inline, per the contract, without a VM.
#[test]
fn non_action_events_are_answered_without_a_vm() {
    let canary = Canary::new("events");
    let Started { plugin, factory, host, instance } = start("{}", &canary.path());

    let c = conn();
    let preflight = host.send(AbiEventTag::ConnPreflight, &encode_conn_preflight_payload(&c, &[0xf6]).unwrap());
    let open = host.send(AbiEventTag::ConnOpen, &encode_conn_open_payload(&c).unwrap());
    let subscribe = host.send(AbiEventTag::Subscribe, &encode_subscribe_payload(&c, "vmBooted").unwrap());
    let serialize = host.send(AbiEventTag::SerializeState, &[]);
    host.send_no_reply(tag(AbiEventTag::ConnClosed), &encode_conn_closed_payload(&c).unwrap());
    let queue = host.send(
        AbiEventTag::QueueSend,
        &encode_queue_send_payload(
            "jobs",
            &cbor(&json!({ "n": 1 })),
            &c,
            &http_request("POST", "/queue/jobs"),
            true,
            Some(1_000),
        )
        .unwrap(),
    );
    let ws = host.send(AbiEventTag::WsOpen, &encode_ws_open_payload(&c, Some(&http_request("GET", "/ws"))).unwrap());
    let http = host.send(AbiEventTag::Http, &http_request("GET", "/hello?x=1"));
    let unknown = host.send_tag(42, b"opaque");
    host.send_no_reply(43, b"opaque");
    // Events are handled in order: once this one is answered, all before it were.
    let last = host.send(AbiEventTag::SerializeState, &[]);

    let accepted = [
        (preflight, "ConnPreflight"),
        (open, "ConnOpen"),
        (subscribe, "Subscribe"),
        (serialize, "SerializeState"),
        (last, "SerializeState"),
    ];
    for (token, what) in accepted {
        assert_eq!(expect_ok(host.wait_reply(token, WAIT), what), Vec::<u8>::new(), "{what} reply payload");
    }
    for (token, what) in [(queue, "QueueSend"), (ws, "WsOpen")] {
        let error = expect_err(host.wait_reply(token, WAIT), what);
        assert_eq!(error["code"], "unsupported", "{what}: {error}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {error}");
    }

    let response = cbor_value(&expect_ok(host.wait_reply(http, WAIT), "Http"), "Http reply");
    let fields: BTreeMap<String, Cbor> = response
        .into_map()
        .expect("the Http reply is a CBOR map")
        .into_iter()
        .map(|(k, v)| (k.into_text().expect("text keys"), v))
        .collect();
    assert_eq!(fields.get("status"), Some(&Cbor::Integer(404.into())));
    let headers = fields.get("headers").and_then(Cbor::as_map).expect("the Http reply has a headers map");
    assert!(
        headers.iter().any(|(k, v)| k.as_text() == Some("content-type") && v.as_text() == Some("application/json")),
        "headers: {headers:?}"
    );
    let body = fields.get("body").and_then(Cbor::as_bytes).expect("the Http body is a CBOR byte string");
    let body: Json = serde_json::from_slice(body).expect("the 404 body is JSON");
    assert_eq!(body["code"], "not_found");

    let error = expect_err(host.wait_reply(unknown, WAIT), "unknown tag");
    assert_eq!(error["code"], "unsupported");
    assert!(error["message"].as_str().unwrap_or_default().contains("42"), "{error}");

    {
        let state = lock(&host.state);
        assert!(state.reply(0).is_none(), "an event with token 0 was answered");
        assert_eq!(state.replies(), 9, "one reply per reply-bearing event:\n{}", state.describe());
        assert!(state.broadcasts().is_empty(), "broadcasts without a VM: {:?}", state.broadcasts());
    }
    assert_all_answered(host);
    let (status, _) = close_and_free(host, instance);
    assert_eq!(status, AbiStatus::Ok);
    assert!(!canary.started(), "a sidecar was started for non-action events");
    shutdown(plugin, &[factory]);
}

// ---------------------------------------------------------------------------
// 4. Action errors without a VM
// ---------------------------------------------------------------------------

/// Unknown actions, bad arguments and malformed payloads are refused before
/// any VM work; the actor keeps serving afterwards.
#[test]
fn action_errors_are_answered_without_booting_a_vm() {
    let canary = Canary::new("actions");
    let Started { plugin, factory, host, instance } = start("{}", &canary.path());

    let unknown = host.send(AbiEventTag::Action, &action("noSuchAction", json!([])));
    let error = expect_err(host.wait_reply(unknown, WAIT), "unknown action");
    assert_eq!(error["code"], "action_not_found", "{error}");
    assert!(error["message"].as_str().unwrap_or_default().contains("noSuchAction"), "{error}");
    assert_eq!(error["metadata"]["action"], "noSuchAction", "{error}");

    let cases: [(&str, Json, &str); 5] = [
        ("readFile", json!([7]), "`path`"),
        ("readFile", json!([]), "`path`"),
        ("writeFile", json!(["/tmp/a.txt"]), "`content`"),
        ("mkdir", json!(["/tmp/d", { "bogus": true }]), "`options.bogus`"),
        ("exec", json!(["echo hi", { "cwd": 5 }]), "`options.cwd`"),
    ];
    for (name, args, argument) in cases {
        let token = host.send(AbiEventTag::Action, &action(name, args.clone()));
        let error = expect_err(host.wait_reply(token, WAIT), name);
        assert_eq!(error["code"], "invalid_argument", "{name} {args}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(argument), "{name} {args}: the error does not name {argument}: {error}");
        let field = argument.trim_matches('`');
        assert_eq!(error["metadata"]["argument"], field, "{name} {args}: {error}");
    }
    let too_many = host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/a.txt", "extra"])));
    let error = expect_err(host.wait_reply(too_many, WAIT), "too many args");
    assert_eq!(error["code"], "invalid_argument", "{error}");
    assert!(error["message"].as_str().unwrap_or_default().contains("too many arguments"), "{error}");
    assert_eq!(error["metadata"], json!({ "expected": 1, "got": 2 }));

    // Malformed payloads: shorter than the name length, and a name length
    // pointing past the end.
    for payload in [vec![0x05, 0x00], vec![0x10, 0x00, 0x00, 0x00, b'r']] {
        let token = host.send(AbiEventTag::Action, &payload);
        let error = expect_err(host.wait_reply(token, WAIT), "malformed action payload");
        assert!(error["code"].as_str().is_some_and(|c| !c.is_empty()), "{error}");
    }

    // Still serving, in order, after the malformed ones.
    let open = host.send(AbiEventTag::ConnOpen, &encode_conn_open_payload(&conn()).unwrap());
    let again = host.send(AbiEventTag::Action, &action("alsoMissing", json!([])));
    assert_eq!(expect_ok(host.wait_reply(open, WAIT), "ConnOpen"), Vec::<u8>::new());
    assert_eq!(expect_err(host.wait_reply(again, WAIT), "unknown action")["code"], "action_not_found");

    {
        let state = lock(&host.state);
        assert!(state.broadcasts().is_empty(), "broadcast without a VM: {:?}", state.broadcasts());
    }
    assert!(!canary.started(), "a sidecar was started for a refused action");

    // The canary does detect a boot attempt: a valid action tries the sidecar,
    // which fails, and the failure is a structured reply.
    let valid = host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/a.txt"])));
    let error = expect_err(host.wait_reply(valid, VM_WAIT), "readFile with a failing sidecar");
    assert_eq!(error["code"], "vm_unavailable", "{error}");
    assert!(canary.started(), "the canary did not see the boot attempt");
    assert!(lock(&host.state).broadcasts().is_empty(), "vmBooted after a failed boot");

    assert_all_answered(host);
    let (status, _) = close_and_free(host, instance);
    assert_eq!(status, AbiStatus::Ok);
    shutdown(plugin, &[factory]);
}

// ---------------------------------------------------------------------------
// 5. Sleep without a VM, then the end of the stream
// ---------------------------------------------------------------------------

/// Sleep (and Destroy) with no VM is answered at once; the closed stream ends the run with
/// one `done(Ok)`; every ctx reference is released by `instance_free`.
#[test]
fn sleep_without_a_vm_then_channel_closed_ends_cleanly() {
    let canary = Canary::new("sleep");
    let Started { plugin, factory, host, instance } = start("{}", &canary.path());

    let sleep = host.send(AbiEventTag::Sleep, &[]);
    assert_eq!(expect_ok(host.wait_reply(sleep, WAIT), "Sleep"), Vec::<u8>::new());
    let destroy = host.send(AbiEventTag::Destroy, &[]);
    assert_eq!(expect_ok(host.wait_reply(destroy, WAIT), "Destroy"), Vec::<u8>::new());
    let serialize = host.send(AbiEventTag::SerializeState, &[]);
    assert_eq!(expect_ok(host.wait_reply(serialize, WAIT), "SerializeState"), Vec::<u8>::new());
    assert!(lock(&host.state).broadcasts().is_empty(), "vmShutdown without a VM");

    host.close();
    let (status, payload) = host.wait("done", WAIT, |s| s.done.first().cloned());
    assert_eq!(status, AbiStatus::Ok, "done payload: {}", String::from_utf8_lossy(&payload));
    ffi::rivet_actor_instance_free(instance);
    {
        let state = lock(&host.state);
        assert!(state.clones > 0, "the plugin took no ctx reference of its own");
        assert_eq!(state.clones, state.releases, "ctx references still held after instance_free");
        assert_eq!(state.done.len(), 1);
    }
    assert_all_answered(host);
    assert_clean(host);
    assert!(!canary.started());
    shutdown(plugin, &[factory]);
}

// ---------------------------------------------------------------------------
// 6. cancel and grace_deadline while waiting on next_event
// ---------------------------------------------------------------------------

fn ends_once_when(first: extern "C" fn(*mut c_void), second: extern "C" fn(*mut c_void), deliver_after: bool) {
    let canary = Canary::new("cancel");
    let Started { plugin, factory, host, instance } = start("{}", &canary.path());
    host.wait_parked();

    first(instance);
    let (status, payload) = host.wait("done after the stop request", WAIT, |s| s.done.first().cloned());
    assert!(
        matches!(status, AbiStatus::Ok | AbiStatus::Cancelled),
        "done status {status:?}: {}",
        String::from_utf8_lossy(&payload)
    );
    // Harmless when repeated, in either order.
    first(instance);
    second(instance);
    second(instance);

    // The abandoned next_event is still outstanding on the host; complete it.
    if deliver_after {
        // With a real frame: the plugin must still free the buffer.
        host.send(AbiEventTag::SerializeState, &[]);
    }
    host.close();
    host.wait("the abandoned next_event to be completed", WAIT, |s| s.waiters.is_empty().then_some(()));
    ffi::rivet_actor_instance_free(instance);
    host.wait("every ctx reference to be released", WAIT, |s| (s.clones == s.releases).then_some(()));
    assert_eq!(lock(&host.state).done.len(), 1, "done fired more than once");
    assert!(lock(&host.state).broadcasts().is_empty());
    assert_clean(host);
    assert!(!canary.started());
    shutdown(plugin, &[factory]);
}

/// `cancel` while the loop waits on `next_event` ends the instance; `done`
/// fires once; repeating cancel and grace_deadline is harmless.
#[test]
fn cancel_while_waiting_ends_the_instance_once() {
    ends_once_when(ffi::rivet_actor_cancel, ffi::rivet_actor_grace_deadline, true);
}

/// `grace_deadline` while the loop waits on `next_event` ends the instance;
/// `done` fires once; repeating grace_deadline and cancel is harmless.
#[test]
fn grace_deadline_while_waiting_ends_the_instance_once() {
    ends_once_when(ffi::rivet_actor_grace_deadline, ffi::rivet_actor_cancel, false);
}

// ---------------------------------------------------------------------------
// 7, 8. A real VM
// ---------------------------------------------------------------------------

fn boot_writes_hi(host: &MockHost) {
    let write = host.send(AbiEventTag::Action, &action("writeFile", json!(["/tmp/a.txt", "hi"])));
    let payload = expect_ok(host.wait_reply(write, VM_WAIT), "writeFile");
    assert_eq!(cbor_value(&payload, "writeFile reply"), Cbor::Null);
    let state = lock(&host.state);
    let booted: Vec<_> = state.broadcasts().into_iter().filter(|(_, name, _)| name == "vmBooted").collect();
    assert_eq!(booted.len(), 1, "one vmBooted broadcast:\n{}", state.describe());
    assert_eq!(cbor_value(&booted[0].2, "vmBooted args"), Cbor::Array(vec![Cbor::Map(Vec::new())]));
    let (reply_index, _) = state.reply(write).expect("the writeFile reply");
    assert!(booted[0].0 < reply_index, "vmBooted came after the first action's reply");
}

/// Real VM: lazy boot on the first action, file and process actions, errno
/// errors, strict arrival order, and sleep tearing the VM down before its
/// reply.
#[test]
fn real_vm_actions_order_and_sleep() {
    let provisioned = provisioned();
    let Started { plugin, factory, host, instance } = start(&vm_config(&provisioned), &provisioned.sidecar);

    boot_writes_hi(host);

    let read = host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/a.txt"])));
    let payload = expect_ok(host.wait_reply(read, VM_WAIT), "readFile");
    assert_eq!(
        cbor_value(&payload, "readFile reply"),
        Cbor::Array(vec![Cbor::Text("$Uint8Array".into()), Cbor::Text("aGk=".into())])
    );

    let exec = host.send(AbiEventTag::Action, &action("exec", json!(["echo hi"])));
    let payload = expect_ok(host.wait_reply(exec, VM_WAIT), "exec");
    assert_eq!(cbor_json(&payload, "exec reply"), json!({ "exitCode": 0, "stdout": "hi\n", "stderr": "" }));

    let missing = host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/missing.txt"])));
    let error = expect_err(host.wait_reply(missing, VM_WAIT), "readFile of a missing path");
    assert_eq!(error["code"], "ENOENT", "{error}");
    assert_eq!(error["metadata"]["path"], "/tmp/missing.txt", "{error}");

    // Sent back to back without waiting: each read sees the write before it.
    let tokens = [
        host.send(AbiEventTag::Action, &action("writeFile", json!(["/tmp/order.txt", "one"]))),
        host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/order.txt"]))),
        host.send(AbiEventTag::Action, &action("writeFile", json!(["/tmp/order.txt", "two"]))),
        host.send(AbiEventTag::Action, &action("readFile", json!(["/tmp/order.txt"]))),
    ];
    let replies: Vec<Reply> = tokens.iter().map(|t| host.wait_reply(*t, VM_WAIT)).collect();
    let as_text = |reply: &Reply, what: &str| cbor_json(&expect_ok(reply.clone(), what), what);
    assert_eq!(as_text(&replies[0], "write one"), Json::Null);
    assert_eq!(as_text(&replies[1], "read one"), json!(["$Uint8Array", "b25l"]));
    assert_eq!(as_text(&replies[2], "write two"), Json::Null);
    assert_eq!(as_text(&replies[3], "read two"), json!(["$Uint8Array", "dHdv"]));
    {
        let state = lock(&host.state);
        let positions: Vec<usize> = tokens.iter().map(|t| state.reply(*t).expect("reply").0).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "replies out of arrival order: {positions:?}");
    }

    let sleep = host.send(AbiEventTag::Sleep, &[]);
    assert_eq!(expect_ok(host.wait_reply(sleep, VM_WAIT), "Sleep"), Vec::<u8>::new());
    {
        let state = lock(&host.state);
        let shutdowns: Vec<_> = state.broadcasts().into_iter().filter(|(_, name, _)| name == "vmShutdown").collect();
        assert_eq!(shutdowns.len(), 1, "one vmShutdown:\n{}", state.describe());
        assert_eq!(cbor_json(&shutdowns[0].2, "vmShutdown args"), json!([{ "reason": "sleep" }]));
        let (sleep_index, _) = state.reply(sleep).expect("the Sleep reply");
        assert!(shutdowns[0].0 < sleep_index, "vmShutdown came after the Sleep reply");
    }

    assert_all_answered(host);
    let (status, payload) = close_and_free(host, instance);
    assert_eq!(status, AbiStatus::Ok, "done: {}", String::from_utf8_lossy(&payload));
    assert_eq!(lock(&host.state).broadcasts().len(), 2, "only vmBooted and vmShutdown");
    shutdown(plugin, &[factory]);
}

/// Real VM: `grace_deadline` tears the booted VM down with reason
/// "deadline" and ends the run with exactly one `done`.
#[test]
fn grace_deadline_with_a_booted_vm_shuts_it_down_once() {
    let provisioned = provisioned();
    let Started { plugin, factory, host, instance } = start(&vm_config(&provisioned), &provisioned.sidecar);
    boot_writes_hi(host);
    host.wait_parked();

    ffi::rivet_actor_grace_deadline(instance);
    let shutdown_args = host.wait("vmShutdown after grace_deadline", VM_WAIT, |s| {
        s.broadcasts().into_iter().find(|(_, name, _)| name == "vmShutdown").map(|(_, _, payload)| payload)
    });
    assert_eq!(cbor_json(&shutdown_args, "vmShutdown args"), json!([{ "reason": "deadline" }]));
    let (status, payload) = host.wait("done after grace_deadline", WAIT, |s| s.done.first().cloned());
    assert!(
        matches!(status, AbiStatus::Ok | AbiStatus::Cancelled),
        "done status {status:?}: {}",
        String::from_utf8_lossy(&payload)
    );
    ffi::rivet_actor_grace_deadline(instance);
    ffi::rivet_actor_cancel(instance);

    host.close();
    host.wait("the abandoned next_event to be completed", WAIT, |s| s.waiters.is_empty().then_some(()));
    ffi::rivet_actor_instance_free(instance);
    host.wait("every ctx reference to be released", VM_WAIT, |s| (s.clones == s.releases).then_some(()));
    {
        let state = lock(&host.state);
        assert_eq!(state.done.len(), 1, "done fired more than once");
        let shutdowns: Vec<usize> = state
            .broadcasts()
            .into_iter()
            .filter(|(_, name, _)| name == "vmShutdown")
            .map(|(index, _, _)| index)
            .collect();
        assert_eq!(shutdowns.len(), 1, "vmShutdown more than once:\n{}", state.describe());
        // `done` means the actor is over: its VM must be torn down (and the
        // clients told) before it fires, not after.
        let done_at = state.records.iter().position(|r| matches!(r, Record::Done { .. })).expect("done record");
        assert!(shutdowns[0] < done_at, "done fired before the VM teardown finished:\n{}", state.describe());
    }
    assert_all_answered(host);
    assert_clean(host);
    shutdown(plugin, &[factory]);
}
