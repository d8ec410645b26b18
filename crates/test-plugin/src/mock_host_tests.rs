//! End-to-end tests of the exported symbols against an in-process mock host
//! vtable: events in, replies out, `done` exactly once, refcounts balanced.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use rivet_actor_plugin_abi::portable::{
    ActorIdentity, ConnInfo, ConnListResponse, KeepAwakeToken, KvEntriesRequest, KvEntry,
    KvGetResponse, KvKeyRequest, KvKeysRequest, KvListPrefixRequest, KvListRangeRequest,
    KvListResponse, KvRangeRequest, KvValuesResponse, ReplyToken, ScheduledEventsResponse,
};
use rivet_actor_plugin_abi::{
    AbiResult, AbiStatus, BorrowedBuf, CompletionFn, HostVtable, OwnedBuf, encode_action_payload,
    encode_conn_open_payload, encode_conn_preflight_payload, encode_event_frame,
    encode_subscribe_payload,
};
use serde_json::{Value as Json, json};

use crate::wire::{self, decode_cbor_json, json_to_cbor};

struct SendPtr(*mut c_void);
// SAFETY: test-only; the pointer is an opaque completion cookie handed back to
// the plugin's own completion function, which is callable from any thread.
unsafe impl Send for SendPtr {}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Vec<u8>>,
    closed: bool,
    waiter: Option<(CompletionFn, SendPtr)>,
}

#[derive(Default)]
struct Mock {
    refs: AtomicI64,
    queue: Mutex<Queue>,
    pending: Mutex<Vec<u64>>,
    replies: Mutex<HashMap<u64, (bool, Vec<u8>)>>,
    replies_cv: Condvar,
    kv: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    state: Mutex<Vec<u8>>,
    startup: Mutex<Option<bool>>,
    logs: Mutex<Vec<(i32, String)>>,
    keep_awake: Mutex<(u64, Vec<u64>)>,
    broadcasts: Mutex<Vec<(String, Vec<u8>)>>,
    saves: AtomicI64,
}

fn mock(ctx: *const c_void) -> &'static Mock {
    // SAFETY: test-only; `ctx` is `Arc::as_ptr` of a `Mock` the test keeps
    // alive (leaked) for the whole process.
    unsafe { &*ctx.cast::<Mock>() }
}

fn take(buf: OwnedBuf) -> Vec<u8> {
    // SAFETY: the plugin transferred ownership of this buffer to the host.
    unsafe { buf.into_vec() }
}

fn cbor<T: serde::Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).unwrap();
    out
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> T {
    ciborium::from_reader(bytes).unwrap()
}

fn complete(done: CompletionFn, user_data: *mut c_void, status: AbiStatus, payload: Vec<u8>) {
    let cookie = SendPtr(user_data);
    std::thread::spawn(move || {
        let cookie = cookie;
        done(
            cookie.0,
            AbiResult {
                status,
                payload: OwnedBuf::from_vec(payload),
            },
        );
    });
}

extern "C" fn ctx_clone(ctx: *const c_void) -> *const c_void {
    mock(ctx).refs.fetch_add(1, Ordering::SeqCst);
    ctx
}
extern "C" fn ctx_release(ctx: *const c_void) {
    mock(ctx).refs.fetch_sub(1, Ordering::SeqCst);
}
extern "C" fn db_exec(_ctx: *const c_void, sql: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let sql = String::from_utf8(take(sql)).unwrap();
    if sql.starts_with("CREATE") {
        complete(done, ud, AbiStatus::Ok, vec![0x80]);
    } else {
        complete(
            done,
            ud,
            AbiStatus::Err,
            b"near \"THIS\": syntax error".to_vec(),
        );
    }
}
extern "C" fn db_query(
    _ctx: *const c_void,
    sql: OwnedBuf,
    params: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let _ = take(sql);
    let params = decode_cbor_json(&take(params)).unwrap();
    let rows = json!([{"f": 1.5, "id": 1, "label": params[0], "n": 42, "nothing": null}]);
    complete(done, ud, AbiStatus::Ok, json_to_cbor(&rows));
}
extern "C" fn db_run(
    _ctx: *const c_void,
    sql: OwnedBuf,
    params: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let _ = take(sql);
    let params = decode_cbor_json(&take(params)).unwrap();
    assert_eq!(params[1], json!(42));
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn sql_is_enabled(_ctx: *const c_void) -> u8 {
    1
}
extern "C" fn state_get(ctx: *const c_void) -> OwnedBuf {
    OwnedBuf::from_vec(mock(ctx).state.lock().unwrap().clone())
}
extern "C" fn state_set(ctx: *const c_void, state: OwnedBuf) -> AbiStatus {
    *mock(ctx).state.lock().unwrap() = take(state);
    AbiStatus::Ok
}
extern "C" fn actor_identity(_ctx: *const c_void) -> OwnedBuf {
    OwnedBuf::from_vec(cbor(&ActorIdentity {
        actor_id: "actor-1".into(),
        name: "tp".into(),
        key: "k1".into(),
        region: "local".into(),
        input: Some(json_to_cbor(&json!({"hello": "world"}))),
        has_state: false,
    }))
}
extern "C" fn state_save(ctx: *const c_void, state: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    *mock(ctx).state.lock().unwrap() = take(state);
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn request_save(ctx: *const c_void, _immediate: u8, _has: u8, _ms: u32) -> AbiStatus {
    mock(ctx).saves.fetch_add(1, Ordering::SeqCst);
    AbiStatus::Ok
}
extern "C" fn request_save_and_wait(
    _ctx: *const c_void,
    _i: u8,
    _h: u8,
    _m: u32,
    done: CompletionFn,
    ud: *mut c_void,
) {
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn sleep(_ctx: *const c_void) -> AbiResult {
    AbiResult::ok(OwnedBuf::empty())
}
extern "C" fn actor_aborted(_ctx: *const c_void) -> u8 {
    0
}
extern "C" fn wait_actor_abort(_ctx: *const c_void, done: CompletionFn, ud: *mut c_void) {
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn keep_awake_enter(ctx: *const c_void) -> AbiResult {
    let mut guard = mock(ctx).keep_awake.lock().unwrap();
    guard.0 += 1;
    let token = guard.0;
    guard.1.push(token);
    AbiResult::ok(OwnedBuf::from_vec(cbor(&KeepAwakeToken { token })))
}
extern "C" fn keep_awake_exit(ctx: *const c_void, token: u64) -> AbiStatus {
    let mut guard = mock(ctx).keep_awake.lock().unwrap();
    match guard.1.iter().position(|t| *t == token) {
        Some(index) => {
            guard.1.remove(index);
            AbiStatus::Ok
        }
        None => AbiStatus::Err,
    }
}
extern "C" fn keep_awake_count(ctx: *const c_void) -> u64 {
    mock(ctx).keep_awake.lock().unwrap().1.len() as u64
}

fn list(
    kv: &BTreeMap<Vec<u8>, Vec<u8>>,
    start: &[u8],
    end: &[u8],
    reverse: bool,
    limit: Option<u32>,
) -> Vec<KvEntry> {
    let mut entries: Vec<KvEntry> = kv
        .range(start.to_vec()..end.to_vec())
        .map(|(key, value)| KvEntry {
            key: key.clone(),
            value: value.clone(),
        })
        .collect();
    if reverse {
        entries.reverse();
    }
    if let Some(limit) = limit {
        entries.truncate(limit as usize);
    }
    entries
}

extern "C" fn kv_get(ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let req: KvKeyRequest = decode(&take(req));
    let value = mock(ctx).kv.lock().unwrap().get(&req.key).cloned();
    complete(done, ud, AbiStatus::Ok, cbor(&KvGetResponse { value }));
}
extern "C" fn kv_put(ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let req: KvEntriesRequest = decode(&take(req));
    let mut kv = mock(ctx).kv.lock().unwrap();
    for entry in req.entries {
        assert!(wire::key_is_plugin_safe(&entry.key));
        kv.insert(entry.key, entry.value);
    }
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn kv_delete(ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let req: KvKeysRequest = decode(&take(req));
    let mut kv = mock(ctx).kv.lock().unwrap();
    for key in req.keys {
        kv.remove(&key);
    }
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn kv_batch_get(ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let req: KvKeysRequest = decode(&take(req));
    let kv = mock(ctx).kv.lock().unwrap();
    let values = req.keys.iter().map(|key| kv.get(key).cloned()).collect();
    complete(done, ud, AbiStatus::Ok, cbor(&KvValuesResponse { values }));
}
extern "C" fn kv_delete_range(
    ctx: *const c_void,
    req: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let req: KvRangeRequest = decode(&take(req));
    let mut kv = mock(ctx).kv.lock().unwrap();
    let doomed: Vec<Vec<u8>> = kv
        .range(req.start..req.end)
        .map(|(key, _)| key.clone())
        .collect();
    for key in doomed {
        kv.remove(&key);
    }
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn kv_list_prefix(
    ctx: *const c_void,
    req: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let req: KvListPrefixRequest = decode(&take(req));
    let end = wire::prefix_range_end(&req.prefix);
    let entries = list(
        &mock(ctx).kv.lock().unwrap(),
        &req.prefix,
        &end,
        req.opts.reverse,
        req.opts.limit,
    );
    complete(done, ud, AbiStatus::Ok, cbor(&KvListResponse { entries }));
}
extern "C" fn kv_list_range(
    ctx: *const c_void,
    req: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let req: KvListRangeRequest = decode(&take(req));
    let entries = list(
        &mock(ctx).kv.lock().unwrap(),
        &req.start,
        &req.end,
        req.opts.reverse,
        req.opts.limit,
    );
    complete(done, ud, AbiStatus::Ok, cbor(&KvListResponse { entries }));
}
extern "C" fn ok_op(_ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let _ = take(req);
    complete(done, ud, AbiStatus::Ok, Vec::new());
}
extern "C" fn scheduled_events(
    _ctx: *const c_void,
    req: OwnedBuf,
    done: CompletionFn,
    ud: *mut c_void,
) {
    let _ = take(req);
    complete(
        done,
        ud,
        AbiStatus::Ok,
        cbor(&ScheduledEventsResponse { events: Vec::new() }),
    );
}
extern "C" fn conn_list(_ctx: *const c_void, req: OwnedBuf, done: CompletionFn, ud: *mut c_void) {
    let _ = take(req);
    let conns = vec![ConnInfo {
        id: "c1".into(),
        params: json_to_cbor(&json!({"user": "u"})),
        state: Vec::new(),
        is_hibernatable: false,
    }];
    complete(done, ud, AbiStatus::Ok, cbor(&ConnListResponse { conns }));
}
extern "C" fn hibernatable_ws_ack(
    _ctx: *const c_void,
    g: OwnedBuf,
    r: OwnedBuf,
    _i: u16,
) -> AbiResult {
    let _ = (take(g), take(r));
    AbiResult::err(OwnedBuf::from_vec(b"invalid gateway id".to_vec()))
}
extern "C" fn conn_send(_ctx: *const c_void, req: OwnedBuf) -> AbiResult {
    let _ = take(req);
    AbiResult::err(OwnedBuf::from_vec(
        b"connection `tp-no-such-conn` not found".to_vec(),
    ))
}
extern "C" fn next_event(ctx: *const c_void, done: CompletionFn, ud: *mut c_void) {
    let mut queue = mock(ctx).queue.lock().unwrap();
    if let Some(frame) = queue.frames.pop_front() {
        complete(done, ud, AbiStatus::Ok, frame);
    } else if queue.closed {
        complete(done, ud, AbiStatus::ChannelClosed, Vec::new());
    } else {
        queue.waiter = Some((done, SendPtr(ud)));
    }
}
fn reply(ctx: *const c_void, token: u64, ok: bool, payload: OwnedBuf) -> AbiStatus {
    let m = mock(ctx);
    let payload = take(payload);
    let mut pending = m.pending.lock().unwrap();
    let Some(index) = pending.iter().position(|t| *t == token) else {
        return AbiStatus::Err;
    };
    pending.remove(index);
    m.replies.lock().unwrap().insert(token, (ok, payload));
    m.replies_cv.notify_all();
    AbiStatus::Ok
}
extern "C" fn reply_ok(ctx: *const c_void, token: u64, payload: OwnedBuf) -> AbiStatus {
    reply(ctx, token, true, payload)
}
extern "C" fn reply_err(ctx: *const c_void, token: u64, payload: OwnedBuf) -> AbiStatus {
    reply(ctx, token, false, payload)
}
extern "C" fn startup_ready(ctx: *const c_void, ok: u8, _msg: BorrowedBuf) {
    mock(ctx).startup.lock().unwrap().get_or_insert(ok != 0);
}
extern "C" fn broadcast(ctx: *const c_void, name: OwnedBuf, payload: OwnedBuf) -> AbiStatus {
    let name = String::from_utf8(take(name)).unwrap();
    mock(ctx)
        .broadcasts
        .lock()
        .unwrap()
        .push((name, take(payload)));
    AbiStatus::Ok
}
extern "C" fn log(ctx: *const c_void, level: i32, msg: BorrowedBuf) {
    // SAFETY: the plugin keeps the message alive for this synchronous call.
    let text = String::from_utf8_lossy(unsafe { msg.as_slice() }).into_owned();
    mock(ctx).logs.lock().unwrap().push((level, text));
}

fn vtable(ctx: *const c_void) -> HostVtable {
    HostVtable {
        abi_version: 13,
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
        schedule_after: ok_op,
        schedule_at: ok_op,
        set_alarm: ok_op,
        scheduled_events,
        conn_list,
        conn_disconnect: ok_op,
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

struct Harness {
    mock: &'static Mock,
    next_token: u64,
    done_rx: mpsc::Receiver<(AbiStatus, Vec<u8>)>,
    instance: *mut c_void,
    factory: *mut c_void,
    plugin: *mut c_void,
}

extern "C" fn run_done(user_data: *mut c_void, result: AbiResult) {
    // SAFETY: `user_data` is the boxed sender leaked by `Harness::start`;
    // `done` fires exactly once.
    let tx = unsafe { Box::from_raw(user_data.cast::<mpsc::Sender<(AbiStatus, Vec<u8>)>>()) };
    let _ = tx.send((result.status, take(result.payload)));
}

impl Harness {
    fn start(initial_state: Vec<u8>) -> Self {
        Self::start_with(initial_state, BTreeMap::new())
    }

    fn start_with(initial_state: Vec<u8>, kv: BTreeMap<Vec<u8>, Vec<u8>>) -> Self {
        let mock: &'static Mock = Box::leak(Box::default());
        mock.refs.store(1, Ordering::SeqCst); // the host's own reference
        *mock.state.lock().unwrap() = initial_state;
        *mock.kv.lock().unwrap() = kv;
        let ctx = std::ptr::from_ref(mock).cast::<c_void>();
        let mut err = OwnedBuf::empty();
        let plugin = crate::rivet_actor_plugin_init(&mut err);
        let factory = crate::rivet_actor_factory_new(
            plugin,
            BorrowedBuf::from_slice(b"{\"mode\":\"test\"}"),
            BorrowedBuf::from_slice(b"/opt/sidecar"),
            &mut err,
        );
        assert!(!factory.is_null());
        let (tx, done_rx) = mpsc::channel();
        let user_data = Box::into_raw(Box::new(tx)).cast::<c_void>();
        let vt = vtable(ctx);
        let instance = crate::rivet_actor_run(factory, &vt, run_done, user_data);
        // `vt` goes out of scope at the end of this function: the plugin must
        // have copied it.
        assert!(!instance.is_null());
        Self {
            mock,
            next_token: 1,
            done_rx,
            instance,
            factory,
            plugin,
        }
    }

    fn push(&self, frame: Vec<u8>) {
        let mut queue = self.mock.queue.lock().unwrap();
        if let Some((done, ud)) = queue.waiter.take() {
            complete(done, ud.0, AbiStatus::Ok, frame);
        } else {
            queue.frames.push_back(frame);
        }
    }

    fn close(&self) {
        let mut queue = self.mock.queue.lock().unwrap();
        queue.closed = true;
        if let Some((done, ud)) = queue.waiter.take() {
            complete(done, ud.0, AbiStatus::ChannelClosed, Vec::new());
        }
    }

    fn event(&mut self, tag: u32, payload: &[u8]) -> (bool, Vec<u8>) {
        let token = self.next_token;
        self.next_token += 1;
        self.mock.pending.lock().unwrap().push(token);
        self.push(encode_event_frame(tag, ReplyToken(token), payload));
        let mut replies = self.mock.replies.lock().unwrap();
        loop {
            if let Some(reply) = replies.get(&token) {
                return reply.clone();
            }
            let (guard, timeout) = self
                .mock
                .replies_cv
                .wait_timeout(replies, Duration::from_secs(10))
                .unwrap();
            replies = guard;
            assert!(!timeout.timed_out(), "no reply for event tag {tag}");
        }
    }

    fn action(&mut self, name: &str, args: Json) -> Result<Json, Json> {
        let (ok, payload) = self.event(0, &encode_action_payload(name, &json_to_cbor(&args)));
        if ok {
            Ok(decode_cbor_json(&payload).unwrap())
        } else {
            Err(serde_json::from_slice(&payload).unwrap())
        }
    }

    fn finish(self) -> (AbiStatus, String) {
        let (status, payload) = self
            .done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("done fired");
        crate::rivet_actor_instance_free(self.instance);
        assert!(self.done_rx.try_recv().is_err(), "done fired twice");
        crate::rivet_actor_factory_free(self.factory);
        crate::rivet_actor_plugin_shutdown(self.plugin);
        (status, String::from_utf8(payload).unwrap())
    }
}

fn conn(id: &str, params: &Json) -> ConnInfo {
    ConnInfo {
        id: id.into(),
        params: json_to_cbor(params),
        state: Vec::new(),
        is_hibernatable: false,
    }
}

#[test]
fn full_lifecycle_against_mock_host() {
    let mut h = Harness::start(wire::encode_state(10));

    // Preflight reject / accept, open, subscribe.
    let rejecting = conn("c0", &json!({"reject": true}));
    let (ok, msg) = h.event(
        10,
        &encode_conn_preflight_payload(&rejecting, &rejecting.params).unwrap(),
    );
    assert!(!ok);
    assert_eq!(msg, b"rejected by test plugin");
    let c1 = conn("c1", &json!({"user": "u"}));
    assert!(
        h.event(10, &encode_conn_preflight_payload(&c1, &c1.params).unwrap())
            .0
    );
    assert!(h.event(3, &encode_conn_open_payload(&c1).unwrap()).0);
    assert!(
        !h.event(2, &encode_subscribe_payload(&c1, "forbidden").unwrap())
            .0
    );
    assert!(
        h.event(2, &encode_subscribe_payload(&c1, "news").unwrap())
            .0
    );

    // Actions.
    assert_eq!(h.action("ping", json!([])), Ok(json!("pong")));
    assert_eq!(h.action("getCount", json!([])), Ok(json!(10)));
    assert_eq!(h.action("increment", json!([5])), Ok(json!(15)));
    assert_eq!(h.action("increment", json!([])), Ok(json!(16)));
    assert!(h.mock.saves.load(Ordering::SeqCst) >= 2);
    assert_eq!(
        h.action("stateFromHost", json!([])),
        Ok(json!({"count": 16}))
    );
    let (ok, state) = h.event(7, &[]);
    assert!(ok);
    assert_eq!(wire::decode_state(&state).unwrap(), 16);
    assert_eq!(h.action("saveState", json!([])), Ok(Json::Null));
    assert_eq!(h.action("requestSaveAndWait", json!([])), Ok(Json::Null));
    assert_eq!(
        h.action("identity", json!([])),
        Ok(
            json!({"actorId": "actor-1", "name": "tp", "key": "k1", "region": "local", "hasState": false, "input": {"hello": "world"}})
        )
    );
    assert_eq!(
        h.action("config", json!([])),
        Ok(json!({"config": {"mode": "test"}, "sidecarPath": "/opt/sidecar"}))
    );
    assert_eq!(h.action("sqlEnabled", json!([])), Ok(json!(true)));
    assert_eq!(
        h.action("sqlRoundTrip", json!(["hello"])),
        Ok(json!([{"f": 1.5, "id": 1, "label": "hello", "n": 42, "nothing": null}]))
    );
    assert_eq!(
        h.action("sqlError", json!([])),
        Ok(json!("near \"THIS\": syntax error"))
    );
    assert_eq!(
        h.action("kvRoundTrip", json!([])),
        Ok(json!({
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
        }))
    );
    assert_eq!(
        h.action("keepAwake", json!([])),
        Ok(
            json!({"token": 1, "countInside": 1, "exitStatus": "Ok", "countAfter": 0, "exitUnknownStatus": "Err"})
        )
    );
    assert_eq!(
        h.action("connSendUnknown", json!([])),
        Ok(json!("Err: connection `tp-no-such-conn` not found"))
    );
    assert_eq!(
        h.action("hibernatableAckInvalid", json!([])),
        Ok(json!({"status": "Err", "message": "invalid gateway id"}))
    );
    assert_eq!(
        h.action("goToSleep", json!([])),
        Ok(json!({"status": "Ok", "message": ""}))
    );
    assert_eq!(
        h.action("conns", json!([])),
        Ok(json!([{"id": "c1", "params": {"user": "u"}, "isHibernatable": false}]))
    );
    assert_eq!(
        h.action("broadcast", json!(["news", {"n": 1}])),
        Ok(Json::Null)
    );
    {
        let broadcasts = h.mock.broadcasts.lock().unwrap();
        assert_eq!(broadcasts.len(), 1);
        assert_eq!(broadcasts[0].0, "news");
        assert_eq!(
            decode_cbor_json(&broadcasts[0].1).unwrap(),
            json!([{"n": 1}])
        );
    }
    assert_eq!(
        h.action("echoBytes", json!([["$Uint8Array", "AQID"]])),
        Ok(json!(["$Uint8Array", "AQID"]))
    );
    assert_eq!(h.action("log", json!([3, "hello log"])), Ok(Json::Null));
    assert!(
        h.mock
            .logs
            .lock()
            .unwrap()
            .contains(&(3, "hello log".to_owned()))
    );
    assert_eq!(
        h.action("fail", json!(["my_code", "boom"])),
        Err(json!({"code": "my_code", "message": "boom", "metadata": {"from": "test-plugin"}}))
    );
    assert_eq!(
        h.action("nope", json!([])),
        Err(json!({"code": "action_not_found", "message": "unknown action `nope`"}))
    );
    assert_eq!(
        h.action("increment", json!(["x"])).unwrap_err()["code"],
        json!("invalid_args")
    );
    assert_eq!(h.action("recordScheduled", json!(["t1"])), Ok(Json::Null));
    assert_eq!(h.action("scheduledFired", json!([])), Ok(json!(["t1"])));
    assert_eq!(
        h.action("scheduleAfter", json!([10, "recordScheduled", ["t2"]])),
        Ok(Json::Null)
    );
    assert_eq!(h.action("scheduledEvents", json!([])), Ok(json!([])));
    assert_eq!(h.action("waitAbortThenMark", json!([])), Ok(Json::Null));
    assert_eq!(h.action("doubleReply", json!([])), Ok(json!("first")));
    assert_eq!(h.action("doubleReplyStatus", json!([])), Ok(json!("Err")));

    // Http and queue.
    let request = ciborium::Value::Map(vec![
        (
            ciborium::Value::Text("method".into()),
            ciborium::Value::Text("PUT".into()),
        ),
        (
            ciborium::Value::Text("uri".into()),
            ciborium::Value::Text("/status/201?q=1".into()),
        ),
        (
            ciborium::Value::Text("headers".into()),
            ciborium::Value::Map(Vec::new()),
        ),
        (
            ciborium::Value::Text("body".into()),
            ciborium::Value::Bytes(b"{}".to_vec()),
        ),
    ]);
    let (ok, response) = h.event(1, &cbor(&request));
    assert!(ok);
    let response: ciborium::Value = decode(&response);
    assert_eq!(crate::wire::cbor_to_json(&response)["status"], json!(201));

    let queue = rivet_actor_plugin_abi::encode_queue_send_payload(
        "jobs",
        &json_to_cbor(&json!({"job": 1})),
        &c1,
        &[],
        true,
        Some(1000),
    )
    .unwrap();
    let (ok, response) = h.event(5, &queue);
    assert!(ok);
    let response: rivet_actor_plugin_abi::QueueSendResponse = decode(&response);
    assert_eq!(response.status, "completed");
    assert_eq!(
        decode_cbor_json(&response.response.unwrap()).unwrap(),
        json!({"queue": "jobs", "received": {"job": 1}})
    );

    // ConnClosed needs no reply; push it with token 0.
    h.push(encode_event_frame(
        4,
        ReplyToken(0),
        &rivet_actor_plugin_abi::encode_conn_closed_payload(&c1).unwrap(),
    ));

    // Shutdown: Sleep, then SerializeState, then close.
    assert!(h.event(8, &[]).0);
    {
        // Sleep is announced to subscribers before it is answered.
        let broadcasts = h.mock.broadcasts.lock().unwrap();
        let (name, payload) = broadcasts.last().expect("a lifecycle broadcast");
        assert_eq!(name, "lifecycle");
        assert_eq!(decode_cbor_json(payload).unwrap(), json!(["sleep"]));
    }
    assert_eq!(
        h.mock
            .kv
            .lock()
            .unwrap()
            .get(wire::LAST_SHUTDOWN_KEY)
            .cloned(),
        Some(b"sleep".to_vec())
    );
    assert_eq!(
        h.mock
            .kv
            .lock()
            .unwrap()
            .get(wire::ABORTED_SEEN_KEY)
            .cloned(),
        Some(b"1".to_vec())
    );
    let log = h.action("eventLog", json!([])).unwrap();
    let log: Vec<String> = serde_json::from_value(log).unwrap();
    assert_eq!(log[0], "ConnPreflight:c0");
    assert_eq!(log[2], "ConnOpen:c1");
    assert_eq!(log[3], "Subscribe:forbidden");
    assert!(log.contains(&"Action:ping".to_owned()));
    assert!(log.contains(&"Http:PUT /status/201?q=1".to_owned()));
    assert!(log.contains(&"QueueSend:jobs".to_owned()));
    assert!(log.contains(&"ConnClosed:c1".to_owned()));
    assert_eq!(log.last().map(String::as_str), Some("Action:eventLog"));
    assert_eq!(log[log.len() - 2], "Sleep");
    assert_eq!(h.action("replyFailures", json!([])), Ok(json!([])));
    assert!(h.event(7, &[]).0);
    h.close();

    let mock = h.mock;
    let (status, message) = h.finish();
    assert_eq!(status, AbiStatus::Ok, "{message}");
    assert_eq!(mock.startup.lock().unwrap().as_ref(), Some(&true));
    assert_eq!(
        mock.refs.load(Ordering::SeqCst),
        1,
        "plugin released every ctx reference"
    );
}

#[test]
fn event_log_survives_a_restart() {
    let mut h = Harness::start(Vec::new());
    assert_eq!(h.action("ping", json!([])), Ok(json!("pong")));
    h.close();
    let mock = h.mock;
    assert_eq!(h.finish().0, AbiStatus::Ok);
    let kv = mock.kv.lock().unwrap().clone();

    // A second instance over the same KV continues the numbering instead of
    // overwriting entry 0.
    let mut h2 = Harness::start_with(Vec::new(), kv);
    assert_eq!(
        h2.action("eventLog", json!([])),
        Ok(json!(["Action:ping", "Action:eventLog"]))
    );
    assert_eq!(
        h2.action("eventLogMemory", json!([])),
        Ok(json!(["Action:eventLog", "Action:eventLogMemory"]))
    );
    h2.close();
    assert_eq!(h2.finish().0, AbiStatus::Ok);
}

fn wait_for_parked_next_event(mock: &Mock) {
    for _ in 0..5000 {
        if mock.queue.lock().unwrap().waiter.is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("the plugin never parked a next_event");
}

#[test]
fn cancel_while_next_event_is_pending() {
    let mut h = Harness::start(Vec::new());
    assert_eq!(h.action("ping", json!([])), Ok(json!("pong")));
    wait_for_parked_next_event(h.mock);
    crate::rivet_actor_grace_deadline(h.instance);
    crate::rivet_actor_cancel(h.instance);
    crate::rivet_actor_cancel(h.instance);
    let (status, payload) = h.done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(status, AbiStatus::Cancelled);
    assert_eq!(payload, b"grace deadline reached");
    // The late next_event completion must be absorbed (and freed) safely.
    h.close();
    std::thread::sleep(Duration::from_millis(50));
    crate::rivet_actor_instance_free(h.instance);
    assert_eq!(h.mock.refs.load(Ordering::SeqCst), 1);
}

#[test]
fn next_event_error_fails_the_run() {
    let h = Harness::start(Vec::new());
    wait_for_parked_next_event(h.mock);
    let (done, ud) = h
        .mock
        .queue
        .lock()
        .unwrap()
        .waiter
        .take()
        .expect("parked next_event");
    complete(done, ud.0, AbiStatus::Err, b"boom".to_vec());
    let mock = h.mock;
    let (status, message) = h.finish();
    assert_eq!(status, AbiStatus::Err);
    assert!(
        message.contains("next_event failed with Err: boom"),
        "{message}"
    );
    assert_eq!(mock.refs.load(Ordering::SeqCst), 1);
}
