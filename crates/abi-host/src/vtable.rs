//! Every HostVtable entry of ABI v13, implemented over rivetkit-core's
//! `ActorContext`.
//!
//! Rules kept by every function here:
//! - the body runs inside `catch_unwind` (unwinding across `extern "C"` is UB);
//! - every `OwnedBuf` input is consumed (freed with its own `free`) on every path;
//! - an async entry completes its `done` exactly once, on a host runtime
//!   thread, even if the work panics, is cancelled, or its prologue panics.

use std::ffi::c_void;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use futures::FutureExt;
use rivet_actor_plugin_abi::{
    AbiResult, AbiStatus, ActorIdentity, BorrowedBuf, CompletionFn, ConnDisconnectRequest, ConnListResponse,
    ConnSendRequest, HostVtable, KeepAwakeToken, KvEntriesRequest, KvEntry, KvGetResponse, KvKeyRequest,
    KvKeysRequest, KvListPrefixRequest, KvListRangeRequest, KvListResponse, KvRangeRequest, KvValuesResponse,
    OwnedBuf, RIVET_ACTOR_ABI_VERSION, ScheduleActionRequest, ScheduleAlarmRequest, ScheduledEvent,
    ScheduledEventsResponse,
};
use rivetkit_core::{ActorHttpResponse, ListOpts, RequestSaveOpts, StateDelta};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::state::{HostState, Pending};
use crate::wire;

/// Builds the vtable handed to `rivet_actor_run`; `ctx` is one reference of
/// an `Arc<HostState>` turned into a raw pointer.
pub fn build(ctx: *const c_void) -> HostVtable {
    HostVtable {
        abi_version: RIVET_ACTOR_ABI_VERSION,
        ctx,
        ctx_clone,
        ctx_release,
        db_exec,
        db_query,
        db_run,
        sql_is_enabled,
        state_get,
        state_set,
        actor_identity,
        state_save,
        request_save,
        request_save_and_wait,
        sleep,
        actor_aborted,
        wait_actor_abort,
        keep_awake_enter,
        keep_awake_exit,
        keep_awake_count,
        kv_get,
        kv_put,
        kv_delete,
        kv_batch_get,
        kv_batch_put: kv_put,
        kv_batch_delete: kv_delete,
        kv_delete_range,
        kv_list_prefix,
        kv_list_range,
        schedule_after,
        schedule_at,
        set_alarm,
        scheduled_events,
        conn_list,
        conn_disconnect,
        hibernatable_ws_ack,
        conn_send,
        next_event,
        reply_ok,
        reply_err,
        startup_ready,
        broadcast,
        log,
    }
}

// ---------------------------------------------------------------------------
// Plumbing
// ---------------------------------------------------------------------------

/// Borrows the state behind `ctx`.
///
/// # Safety
/// `ctx` must be a pointer made by `Arc::into_raw(Arc<HostState>)` on which the
/// caller holds a reference for the duration of the borrow. The ABI requires
/// the plugin to hold one (it only calls through a ctx it cloned or was given).
unsafe fn state<'a>(ctx: *const c_void) -> &'a HostState {
    // SAFETY: guaranteed by this function's contract.
    unsafe { &*ctx.cast::<HostState>() }
}

/// Takes an owned `Arc` (one extra reference) for work that outlives the call.
///
/// # Safety
/// As for [`state`].
unsafe fn state_arc(ctx: *const c_void) -> Arc<HostState> {
    let ptr = ctx.cast::<HostState>();
    // SAFETY: guaranteed by this function's contract; the increment makes
    // the reference `from_raw` adopts our own.
    unsafe {
        Arc::increment_strong_count(ptr);
        Arc::from_raw(ptr)
    }
}

/// Consumes an input buffer.
///
/// # Safety
/// `buf` must be a valid, not yet freed buffer handed to us by the plugin.
unsafe fn take(buf: OwnedBuf) -> Vec<u8> {
    // SAFETY: guaranteed by this function's contract.
    unsafe { buf.into_vec() }
}

fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(bytes).with_context(|| format!("decode {what} request CBOR"))
}

fn ok_buf(bytes: Vec<u8>) -> AbiResult {
    AbiResult::ok(OwnedBuf::from_vec(bytes))
}

fn err_result(message: impl std::fmt::Display) -> AbiResult {
    AbiResult::err(OwnedBuf::from_vec(message.to_string().into_bytes()))
}

fn panic_result() -> AbiResult {
    AbiResult { status: AbiStatus::Panic, payload: OwnedBuf::from_vec(b"host operation panicked".to_vec()) }
}

struct SendPtr(*mut c_void);
// SAFETY: `user_data` is the plugin's opaque token for its completion, which
// the ABI allows us to invoke from any thread.
unsafe impl Send for SendPtr {}

/// Fires a plugin completion exactly once; `Cancelled` if dropped unfired.
struct Completion {
    done: CompletionFn,
    user_data: SendPtr,
    fired: bool,
}

impl Completion {
    fn new(done: CompletionFn, user_data: *mut c_void) -> Self {
        Self { done, user_data: SendPtr(user_data), fired: false }
    }

    fn finish(mut self, result: AbiResult) {
        self.fired = true;
        (self.done)(self.user_data.0, result);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.fired {
            self.fired = true;
            (self.done)(self.user_data.0, AbiResult::status_only(AbiStatus::Cancelled));
        }
    }
}

/// Marks the end of the event stream inside `submit`.
#[derive(Debug)]
struct StreamClosed;
impl std::fmt::Display for StreamClosed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("event stream closed")
    }
}
impl std::error::Error for StreamClosed {}

/// Runs one async entry on the host runtime and completes `done` with its
/// outcome. `make` builds the work from an owned state reference.
fn submit<Fut>(
    ctx: *const c_void,
    done: CompletionFn,
    user_data: *mut c_void,
    make: impl FnOnce(Arc<HostState>) -> Fut,
) where
    Fut: Future<Output = Result<Vec<u8>>> + Send + 'static,
{
    let completion = Completion::new(done, user_data);
    let prologue = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let state = unsafe { state_arc(ctx) };
        let runtime = state.runtime.clone();
        (runtime, make(state))
    }));
    match prologue {
        Ok((runtime, work)) => {
            runtime.spawn(async move {
                let result = match AssertUnwindSafe(work).catch_unwind().await {
                    Ok(Ok(bytes)) => ok_buf(bytes),
                    Ok(Err(e)) if e.is::<StreamClosed>() => AbiResult::channel_closed(),
                    Ok(Err(e)) => err_result(format!("{e:#}")),
                    Err(_) => panic_result(),
                };
                completion.finish(result);
            });
        }
        Err(_) => completion.finish(panic_result()),
    }
}

fn cbor<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    wire::to_cbor(value)
}

// ---------------------------------------------------------------------------
// Context refcount
// ---------------------------------------------------------------------------

extern "C" fn ctx_clone(ctx: *const c_void) -> *const c_void {
    let _ = catch_unwind(|| {
        // SAFETY: `ctx` is a live `Arc<HostState>` pointer the caller holds.
        unsafe { Arc::increment_strong_count(ctx.cast::<HostState>()) };
    });
    ctx
}

extern "C" fn ctx_release(ctx: *const c_void) {
    let _ = catch_unwind(|| {
        // SAFETY: releases one reference the plugin took with `ctx_clone`
        // (or was given with the vtable); the ABI requires balance.
        unsafe { Arc::decrement_strong_count(ctx.cast::<HostState>()) };
    });
}

// ---------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------

fn sql_text(bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| anyhow!("sql is not valid UTF-8"))
}

extern "C" fn db_exec(ctx: *const c_void, sql: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `sql` to us.
    let sql = unsafe { take(sql) };
    submit(ctx, done, user_data, |s| async move { s.ctx.db_exec(&sql_text(sql)?).await });
}

extern "C" fn db_query(
    ctx: *const c_void,
    sql: OwnedBuf,
    params: OwnedBuf,
    done: CompletionFn,
    user_data: *mut c_void,
) {
    // SAFETY: the plugin transfers ownership of both buffers to us.
    let (sql, params) = unsafe { (take(sql), take(params)) };
    submit(ctx, done, user_data, |s| async move {
        let params = (!params.is_empty()).then_some(params);
        s.ctx.db_query(&sql_text(sql)?, params.as_deref()).await
    });
}

extern "C" fn db_run(ctx: *const c_void, sql: OwnedBuf, params: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of both buffers to us.
    let (sql, params) = unsafe { (take(sql), take(params)) };
    submit(ctx, done, user_data, |s| async move {
        let params = (!params.is_empty()).then_some(params);
        s.ctx.db_run(&sql_text(sql)?, params.as_deref()).await?;
        Ok(Vec::new())
    });
}

extern "C" fn sql_is_enabled(ctx: *const c_void) -> u8 {
    // SAFETY: the plugin calls through a ctx it holds a reference on.
    catch_unwind(|| unsafe { state(ctx) }.ctx.sql().is_enabled() as u8).unwrap_or(0)
}

// ---------------------------------------------------------------------------
// State and identity
// ---------------------------------------------------------------------------

extern "C" fn state_get(ctx: *const c_void) -> OwnedBuf {
    // SAFETY: the plugin calls through a ctx it holds a reference on.
    catch_unwind(|| OwnedBuf::from_vec(unsafe { state(ctx) }.ctx.state())).unwrap_or_else(|_| OwnedBuf::empty())
}

extern "C" fn state_set(ctx: *const c_void, bytes: OwnedBuf) -> AbiStatus {
    // SAFETY: the plugin transfers ownership of `bytes` to us.
    let bytes = unsafe { take(bytes) };
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        unsafe { state(ctx) }.ctx.set_state_initial(bytes);
        AbiStatus::Ok
    }))
    .unwrap_or(AbiStatus::Panic)
}

extern "C" fn actor_identity(ctx: *const c_void) -> OwnedBuf {
    catch_unwind(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let c = &unsafe { state(ctx) }.ctx;
        let identity = ActorIdentity {
            actor_id: c.actor_id().to_owned(),
            name: c.name().to_owned(),
            key: rivetkit_core::format_actor_key(c.key()),
            region: c.region().to_owned(),
            input: c.input(),
            has_state: c.has_state(),
        };
        OwnedBuf::from_vec(cbor(&identity).unwrap_or_default())
    })
    .unwrap_or_else(|_| OwnedBuf::empty())
}

extern "C" fn state_save(ctx: *const c_void, bytes: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `bytes` to us.
    let bytes = unsafe { take(bytes) };
    submit(ctx, done, user_data, |s| async move {
        s.ctx.save_state(vec![StateDelta::ActorState(bytes)]).await?;
        Ok(Vec::new())
    });
}

fn save_opts(immediate: u8, has_max_wait: u8, max_wait_ms: u32) -> RequestSaveOpts {
    RequestSaveOpts { immediate: immediate != 0, max_wait_ms: (has_max_wait != 0).then_some(max_wait_ms) }
}

extern "C" fn request_save(ctx: *const c_void, immediate: u8, has_max_wait: u8, max_wait_ms: u32) -> AbiStatus {
    catch_unwind(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        unsafe { state(ctx) }.ctx.request_save(save_opts(immediate, has_max_wait, max_wait_ms));
        AbiStatus::Ok
    })
    .unwrap_or(AbiStatus::Panic)
}

extern "C" fn request_save_and_wait(
    ctx: *const c_void,
    immediate: u8,
    has_max_wait: u8,
    max_wait_ms: u32,
    done: CompletionFn,
    user_data: *mut c_void,
) {
    submit(ctx, done, user_data, move |s| async move {
        s.ctx.request_save_and_wait(save_opts(immediate, has_max_wait, max_wait_ms)).await?;
        Ok(Vec::new())
    });
}

// ---------------------------------------------------------------------------
// Lifecycle
// ---------------------------------------------------------------------------

extern "C" fn sleep(ctx: *const c_void) -> AbiResult {
    // SAFETY: the plugin calls through a ctx it holds a reference on.
    catch_unwind(|| match unsafe { state(ctx) }.ctx.sleep() {
        Ok(()) => AbiResult::ok(OwnedBuf::empty()),
        Err(e) => err_result(format!("{e:#}")),
    })
    .unwrap_or_else(|_| panic_result())
}

extern "C" fn actor_aborted(ctx: *const c_void) -> u8 {
    // SAFETY: the plugin calls through a ctx it holds a reference on.
    catch_unwind(|| unsafe { state(ctx) }.ctx.actor_aborted() as u8).unwrap_or(1)
}

extern "C" fn wait_actor_abort(ctx: *const c_void, done: CompletionFn, user_data: *mut c_void) {
    submit(ctx, done, user_data, |s| async move {
        s.ctx.actor_abort_signal().cancelled().await;
        Ok(Vec::new())
    });
}

extern "C" fn keep_awake_enter(ctx: *const c_void) -> AbiResult {
    catch_unwind(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let token = unsafe { state(ctx) }.keep_awake_enter();
        match cbor(&KeepAwakeToken { token }) {
            Ok(bytes) => ok_buf(bytes),
            Err(e) => err_result(e),
        }
    })
    .unwrap_or_else(|_| panic_result())
}

extern "C" fn keep_awake_exit(ctx: *const c_void, token: u64) -> AbiStatus {
    catch_unwind(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        if unsafe { state(ctx) }.keep_awake_exit(token) { AbiStatus::Ok } else { AbiStatus::Err }
    })
    .unwrap_or(AbiStatus::Panic)
}

extern "C" fn keep_awake_count(ctx: *const c_void) -> u64 {
    // SAFETY: the plugin calls through a ctx it holds a reference on.
    catch_unwind(|| unsafe { state(ctx) }.ctx.keep_awake_count() as u64).unwrap_or(0)
}

extern "C" fn startup_ready(ctx: *const c_void, ok: u8, message: BorrowedBuf) {
    let _ = catch_unwind(|| {
        // SAFETY: `message` is borrowed for this synchronous call; we copy it.
        let text = String::from_utf8_lossy(unsafe { message.as_slice() }).into_owned();
        let result = if ok != 0 { Ok(()) } else { Err(wire::error_from_plugin(&text)) };
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        unsafe { state(ctx) }.signal_startup(result);
    });
}

extern "C" fn log(_ctx: *const c_void, level: i32, message: BorrowedBuf) {
    let _ = catch_unwind(|| {
        // SAFETY: `message` is borrowed for this synchronous call.
        let text = String::from_utf8_lossy(unsafe { message.as_slice() });
        match level {
            0 => tracing::trace!(target: "native_plugin", "{text}"),
            1 => tracing::debug!(target: "native_plugin", "{text}"),
            2 => tracing::info!(target: "native_plugin", "{text}"),
            3 => tracing::warn!(target: "native_plugin", "{text}"),
            _ => tracing::error!(target: "native_plugin", "{text}"),
        }
    });
}

// ---------------------------------------------------------------------------
// KV
// ---------------------------------------------------------------------------

fn list_opts(opts: rivet_actor_plugin_abi::KvListOpts) -> ListOpts {
    ListOpts { reverse: opts.reverse, limit: opts.limit }
}

fn entries(pairs: Vec<(Vec<u8>, Vec<u8>)>) -> KvListResponse {
    KvListResponse { entries: pairs.into_iter().map(|(key, value)| KvEntry { key, value }).collect() }
}

macro_rules! kv_entry {
    ($name:ident, $req:ty, |$s:ident, $r:ident| $body:expr) => {
        extern "C" fn $name(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
            // SAFETY: the plugin transfers ownership of `request` to us.
            let bytes = unsafe { take(request) };
            submit(ctx, done, user_data, |$s| async move {
                let $r: $req = decode(&bytes, stringify!($name))?;
                #[allow(deprecated)]
                let result = $body;
                result
            });
        }
    };
}

kv_entry!(kv_get, KvKeyRequest, |s, r| {
    let value = s.ctx.kv().get(&r.key).await?;
    cbor(&KvGetResponse { value })
});
kv_entry!(kv_put, KvEntriesRequest, |s, r| {
    let pairs: Vec<(&[u8], &[u8])> = r.entries.iter().map(|e| (e.key.as_slice(), e.value.as_slice())).collect();
    s.ctx.kv().batch_put(&pairs).await?;
    Ok(Vec::new())
});
kv_entry!(kv_delete, KvKeysRequest, |s, r| {
    let keys: Vec<&[u8]> = r.keys.iter().map(Vec::as_slice).collect();
    s.ctx.kv().batch_delete(&keys).await?;
    Ok(Vec::new())
});
kv_entry!(kv_batch_get, KvKeysRequest, |s, r| {
    let keys: Vec<&[u8]> = r.keys.iter().map(Vec::as_slice).collect();
    let values = s.ctx.kv().batch_get(&keys).await?;
    cbor(&KvValuesResponse { values })
});
kv_entry!(kv_delete_range, KvRangeRequest, |s, r| {
    s.ctx.kv().delete_range(&r.start, &r.end).await?;
    Ok(Vec::new())
});
kv_entry!(kv_list_prefix, KvListPrefixRequest, |s, r| {
    let pairs = s.ctx.kv().list_prefix(&r.prefix, list_opts(r.opts)).await?;
    cbor(&entries(pairs))
});
kv_entry!(kv_list_range, KvListRangeRequest, |s, r| {
    let pairs = s.ctx.kv().list_range(&r.start, &r.end, list_opts(r.opts)).await?;
    cbor(&entries(pairs))
});

// ---------------------------------------------------------------------------
// Scheduling
// ---------------------------------------------------------------------------

extern "C" fn schedule_after(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `request` to us.
    let bytes = unsafe { take(request) };
    submit(ctx, done, user_data, |s| async move {
        let r: ScheduleActionRequest = decode(&bytes, "schedule_after")?;
        let delay = r.delay_ms.context("schedule_after missing delay_ms")?;
        s.ctx.after(Duration::from_millis(delay), &r.action_name, &r.args).await?;
        Ok(Vec::new())
    });
}

extern "C" fn schedule_at(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `request` to us.
    let bytes = unsafe { take(request) };
    submit(ctx, done, user_data, |s| async move {
        let r: ScheduleActionRequest = decode(&bytes, "schedule_at")?;
        let at = r.timestamp_ms.context("schedule_at missing timestamp_ms")?;
        s.ctx.at(at, &r.action_name, &r.args).await?;
        Ok(Vec::new())
    });
}

extern "C" fn set_alarm(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `request` to us.
    let bytes = unsafe { take(request) };
    submit(ctx, done, user_data, |s| async move {
        let r: ScheduleAlarmRequest = decode(&bytes, "set_alarm")?;
        s.ctx.set_alarm(r.timestamp_ms)?;
        Ok(Vec::new())
    });
}

extern "C" fn scheduled_events(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the request is ignored (ABI §2.8) but still ours to free.
    drop(unsafe { take(request) });
    submit(ctx, done, user_data, |s| async move {
        let events = s
            .ctx
            .list_scheduled_events()
            .await?
            .into_iter()
            .map(|e| ScheduledEvent { event_id: e.id, timestamp_ms: e.run_at, action_name: e.action, args: Some(e.args) })
            .collect();
        cbor(&ScheduledEventsResponse { events })
    });
}

// ---------------------------------------------------------------------------
// Connections and events
// ---------------------------------------------------------------------------

extern "C" fn conn_list(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the request is ignored (ABI §2.8) but still ours to free.
    drop(unsafe { take(request) });
    submit(ctx, done, user_data, |s| async move {
        // Collected at once: the iterator holds a lock that must not cross an await.
        let conns = s.ctx.conns().map(|c| wire::conn_info(&c)).collect();
        cbor(&ConnListResponse { conns })
    });
}

extern "C" fn conn_disconnect(ctx: *const c_void, request: OwnedBuf, done: CompletionFn, user_data: *mut c_void) {
    // SAFETY: the plugin transfers ownership of `request` to us.
    let bytes = unsafe { take(request) };
    submit(ctx, done, user_data, |s| async move {
        let r: ConnDisconnectRequest = decode(&bytes, "conn_disconnect")?;
        // `ConnHandle::disconnect` closes the transport and then removes the
        // conn through the managed path, which emits `ConnectionClosed`: the
        // plugin gets its ConnClosed events (ABI §2.8). The context's
        // `disconnect_conns` is transport-only and removes conns silently.
        // Collected first: the iterator holds a lock that must not cross an await.
        let conns: Vec<_> = s.ctx.conns().filter(|c| r.conn_ids.iter().any(|id| id == c.id())).collect();
        let mut failures = Vec::new();
        for conn in conns {
            if let Err(e) = conn.disconnect(None).await {
                failures.push(format!("{}: {e:#}", conn.id()));
            }
        }
        if !failures.is_empty() {
            bail!("disconnecting {} connection(s) failed: {}", failures.len(), failures.join("; "));
        }
        Ok(Vec::new())
    });
}

extern "C" fn conn_send(ctx: *const c_void, request: OwnedBuf) -> AbiResult {
    // SAFETY: the plugin transfers ownership of `request` to us.
    let bytes = unsafe { take(request) };
    catch_unwind(AssertUnwindSafe(|| {
        let run = || -> Result<()> {
            let r: ConnSendRequest = decode(&bytes, "conn_send")?;
            // SAFETY: the plugin calls through a ctx it holds a reference on.
            let s = unsafe { state(ctx) };
            let conn = s
                .ctx
                .conns()
                .find(|c| c.id() == r.conn_id)
                .with_context(|| format!("connection `{}` not found", r.conn_id))?;
            conn.send(&r.name, &r.payload);
            Ok(())
        };
        match run() {
            Ok(()) => AbiResult::ok(OwnedBuf::empty()),
            Err(e) => err_result(format!("{e:#}")),
        }
    }))
    .unwrap_or_else(|_| panic_result())
}

extern "C" fn hibernatable_ws_ack(
    ctx: *const c_void,
    gateway_id: OwnedBuf,
    request_id: OwnedBuf,
    server_message_index: u16,
) -> AbiResult {
    // SAFETY: the plugin transfers ownership of both buffers to us.
    let (gateway_id, request_id) = unsafe { (take(gateway_id), take(request_id)) };
    catch_unwind(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let s = unsafe { state(ctx) };
        match s.ctx.ack_hibernatable_websocket_message(&gateway_id, &request_id, server_message_index) {
            Ok(()) => AbiResult::ok(OwnedBuf::empty()),
            Err(e) => err_result(format!("{e:#}")),
        }
    })
    .unwrap_or_else(|_| panic_result())
}

extern "C" fn broadcast(ctx: *const c_void, name: OwnedBuf, payload: OwnedBuf) -> AbiStatus {
    // SAFETY: the plugin transfers ownership of both buffers to us.
    let (name, payload) = unsafe { (take(name), take(payload)) };
    catch_unwind(AssertUnwindSafe(|| {
        let Ok(name) = String::from_utf8(name) else { return AbiStatus::Err };
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        unsafe { state(ctx) }.ctx.broadcast(&name, &payload);
        AbiStatus::Ok
    }))
    .unwrap_or(AbiStatus::Panic)
}

extern "C" fn next_event(ctx: *const c_void, done: CompletionFn, user_data: *mut c_void) {
    submit(ctx, done, user_data, |s| async move {
        // Concurrent pulls serialise here, so each event is delivered once, in order.
        let mut events = s.events.lock().await;
        match events.recv().await {
            Some(frame) => Ok(rivet_actor_plugin_abi::encode_event_frame(
                frame.tag,
                rivet_actor_plugin_abi::ReplyToken(frame.token),
                &frame.payload,
            )),
            None => Err(StreamClosed.into()),
        }
    });
}

fn answer(s: &HostState, pending: Pending, payload: Vec<u8>) -> Result<()> {
    match pending {
        Pending::Action(reply) => reply.send(Ok(payload)),
        Pending::Unit(reply) => reply.send(Ok(())),
        Pending::Cleanup(reply) => {
            reply.send(Ok(()));
            s.run_deferred_disconnects();
        }
        Pending::Serialize(reply) => {
            // Empty means "no change": the persisted state is kept.
            let deltas = if payload.is_empty() { Vec::new() } else { vec![StateDelta::ActorState(payload)] };
            reply.send(Ok(deltas));
        }
        Pending::Http(reply) => match wire::http_response(&payload) {
            Ok(response) => reply.send(Ok(ActorHttpResponse::Buffered(response))),
            Err(e) => {
                let message = format!("{e:#}");
                reply.send(Err(e));
                bail!(message);
            }
        },
        Pending::Queue(reply) => match wire::queue_result(&payload) {
            Ok(result) => reply.send(Ok(result)),
            Err(e) => {
                let message = format!("{e:#}");
                reply.send(Err(e));
                bail!(message);
            }
        },
    }
    Ok(())
}

extern "C" fn reply_ok(ctx: *const c_void, token: u64, payload: OwnedBuf) -> AbiStatus {
    // SAFETY: the plugin transfers ownership of `payload` to us.
    let payload = unsafe { take(payload) };
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let s = unsafe { state(ctx) };
        let Some(pending) = s.unpark(token) else { return AbiStatus::Err };
        match answer(s, pending, payload) {
            Ok(()) => AbiStatus::Ok,
            Err(e) => {
                tracing::warn!(target: "native_plugin", token, "plugin reply rejected: {e:#}");
                AbiStatus::Err
            }
        }
    }))
    .unwrap_or(AbiStatus::Panic)
}

extern "C" fn reply_err(ctx: *const c_void, token: u64, message: OwnedBuf) -> AbiStatus {
    // SAFETY: the plugin transfers ownership of `message` to us.
    let message = unsafe { take(message) };
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the plugin calls through a ctx it holds a reference on.
        let s = unsafe { state(ctx) };
        let Some(pending) = s.unpark(token) else { return AbiStatus::Err };
        let error = wire::error_from_plugin(&String::from_utf8_lossy(&message));
        match pending {
            Pending::Action(r) => r.send(Err(error)),
            Pending::Http(r) => r.send(Err(error)),
            Pending::Unit(r) => r.send(Err(error)),
            Pending::Queue(r) => r.send(Err(error)),
            Pending::Serialize(r) => r.send(Err(error)),
            Pending::Cleanup(r) => {
                r.send(Err(error));
                s.run_deferred_disconnects();
            }
        }
        AbiStatus::Ok
    }))
    .unwrap_or(AbiStatus::Panic)
}
