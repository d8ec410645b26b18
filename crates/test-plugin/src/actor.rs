//! The actor: one event-loop thread per `run`, plus a serial action worker.
//!
//! The event loop pulls events with a cancellable `next_event`, records each
//! one, and answers every non-Action event inline. Actions go to a single
//! worker thread so that an action waiting on the host (for example
//! `requestSaveAndWait`, which needs a `SerializeState` reply) never stalls the
//! loop.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use rivet_actor_plugin_abi::codec::encode_json_compat_to_vec;
use rivet_actor_plugin_abi::portable::{Event, KvListOpts, ReplyToken};
use rivet_actor_plugin_abi::{AbiStatus, DylibBackend, PortableActorCtx, decode_event_frame};

use crate::FactoryConfig;
use crate::actions;
use crate::host::{LoopMsg, RawHost, status_name};
use crate::wire;

/// How long Sleep / Destroy wait for `waitAbortThenMark` watchers to write.
const WATCHER_WAIT_ON_SHUTDOWN: Duration = Duration::from_secs(5);
/// How long the loop waits for the action worker after the channel closes.
const WORKER_WAIT_ON_EXIT: Duration = Duration::from_secs(30);

/// The event broadcast on Sleep / Destroy (args `["sleep"]` / `["destroy"]`).
pub const LIFECYCLE_EVENT: &str = "lifecycle";

pub const LOG_INFO: i32 = 2;
pub const LOG_WARN: i32 = 3;
pub const LOG_ERROR: i32 = 4;

/// Lock a mutex, ignoring poisoning (a panicking action must not wedge the
/// actor; the data is simple enough to stay consistent).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Per-instance control block shared with the exported `cancel` /
/// `grace_deadline` functions.
pub struct Control {
    pub tx: Sender<LoopMsg>,
    cancelled: AtomicBool,
    grace: AtomicBool,
}

impl Control {
    pub fn new(tx: Sender<LoopMsg>) -> Self {
        Self {
            tx,
            cancelled: AtomicBool::new(false),
            grace: AtomicBool::new(false),
        }
    }

    /// Idempotent and non-blocking: the first call posts one message.
    pub fn cancel(&self) {
        if !self.cancelled.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(LoopMsg::Cancel);
        }
    }

    /// Idempotent and non-blocking: the first call posts one message.
    pub fn grace_deadline(&self) {
        if !self.grace.swap(true, Ordering::SeqCst) {
            let _ = self.tx.send(LoopMsg::GraceDeadline);
        }
    }
}

/// How the actor loop ended.
pub enum Exit {
    /// `next_event` reported ChannelClosed: a clean exit, `done(Ok)`.
    Closed,
    /// `cancel` or `grace_deadline` arrived first.
    TornDown(&'static str),
    /// The host broke the protocol (for example `next_event` returned Err).
    Failed(String),
}

/// In-memory event log plus the next persisted index.
#[derive(Default)]
pub struct EventLog {
    pub next_index: u64,
    pub entries: Vec<String>,
}

/// Everything the loop, the worker and the abort watchers share.
pub struct Shared {
    pub ctx: PortableActorCtx,
    pub raw: RawHost,
    pub factory: Arc<FactoryConfig>,
    pub count: Mutex<i64>,
    pub events: Mutex<EventLog>,
    pub watchers: Mutex<Vec<JoinHandle<()>>>,
    pub reply_failures: Mutex<Vec<String>>,
    pub double_reply_status: Mutex<Option<String>>,
}

impl Shared {
    pub fn log(&self, level: i32, message: &str) {
        self.raw.log(level, message);
    }

    pub fn state_bytes(&self) -> Vec<u8> {
        wire::encode_state(*lock(&self.count))
    }

    /// `reply_ok`, recording a non-Ok status for `replyFailures`.
    pub fn reply_ok(&self, what: &str, token: ReplyToken, payload: Vec<u8>) -> AbiStatus {
        let status = self.raw.reply_ok(token.0, payload);
        self.note_reply(what, "reply_ok", status);
        status
    }

    /// `reply_err`, recording a non-Ok status for `replyFailures`.
    pub fn reply_err(&self, what: &str, token: ReplyToken, message: String) -> AbiStatus {
        let status = self.raw.reply_err(token.0, message);
        self.note_reply(what, "reply_err", status);
        status
    }

    fn note_reply(&self, what: &str, op: &str, status: AbiStatus) {
        if status != AbiStatus::Ok {
            let entry = format!("{what}:{op}:{}", status_name(status));
            self.log(LOG_WARN, &format!("test plugin: {entry}"));
            lock(&self.reply_failures).push(entry);
        }
    }

    /// Appends one entry to the in-memory log and to KV `tp/ev/<index>`.
    fn record_event(&self, entry: String) {
        let index = {
            let mut log = lock(&self.events);
            let index = log.next_index;
            log.next_index += 1;
            log.entries.push(entry.clone());
            index
        };
        if let Err(error) = block_on(
            self.ctx
                .kv_put(wire::event_log_key(index), entry.clone().into_bytes()),
        ) {
            self.log(
                LOG_ERROR,
                &format!("test plugin: persisting event `{entry}` failed: {error:#}"),
            );
        }
    }

    /// Continue the persisted log after the highest index already stored.
    fn init_event_index(&self) {
        let opts = KvListOpts {
            reverse: true,
            limit: Some(1),
        };
        match block_on(
            self.ctx
                .kv_list_prefix(wire::EVENT_LOG_PREFIX.to_vec(), opts),
        ) {
            Ok(entries) => {
                let next = entries
                    .first()
                    .and_then(|entry| wire::parse_event_log_key(&entry.key))
                    .map_or(0, |last| last + 1);
                lock(&self.events).next_index = next;
            }
            Err(error) => {
                self.log(
                    LOG_ERROR,
                    &format!("test plugin: reading the event log index failed: {error:#}"),
                );
            }
        }
    }

    /// Waits (bounded) for abort watchers to finish writing their marker.
    pub fn wait_watchers(&self, budget: Duration) {
        let handles = std::mem::take(&mut *lock(&self.watchers));
        let deadline = Instant::now() + budget;
        let mut unfinished = Vec::new();
        for handle in handles {
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                unfinished.push(handle);
            }
        }
        lock(&self.watchers).extend(unfinished);
    }

    fn on_shutdown(&self, kind: &str) {
        self.announce_shutdown(kind);
        if let Err(error) = block_on(
            self.ctx
                .kv_put(wire::LAST_SHUTDOWN_KEY.to_vec(), kind.as_bytes().to_vec()),
        ) {
            self.log(
                LOG_ERROR,
                &format!("test plugin: writing last-shutdown failed: {error:#}"),
            );
        }
        self.wait_watchers(WATCHER_WAIT_ON_SHUTDOWN);
    }

    /// `broadcast("lifecycle", [kind])`, so subscribed connections learn that
    /// the actor is going to sleep or being destroyed.
    fn announce_shutdown(&self, kind: &str) {
        let sent = encode_json_compat_to_vec(&[kind])
            .and_then(|payload| self.ctx.broadcast(LIFECYCLE_EVENT.to_owned(), payload));
        if let Err(error) = sent {
            self.log(
                LOG_ERROR,
                &format!("test plugin: broadcasting `{LIFECYCLE_EVENT}` failed: {error:#}"),
            );
        }
    }
}

/// One Action handed to the worker.
pub struct Job {
    pub name: String,
    pub args: Vec<u8>,
    pub token: ReplyToken,
}

/// The body of the actor thread. Returns how the loop ended; every host
/// reference it created is released before it returns.
pub fn actor_main(
    raw: RawHost,
    control: Arc<Control>,
    rx: Receiver<LoopMsg>,
    factory: Arc<FactoryConfig>,
) -> Exit {
    // SAFETY: `raw` holds its own ctx reference on a vtable copied during
    // `rivet_actor_run`, so the vtable and ctx are valid for this call;
    // `from_host_vtable` takes a further reference of its own.
    let backend = unsafe { DylibBackend::from_host_vtable(raw.vtable()) };
    let ctx = PortableActorCtx::new_dylib(backend);
    if let Err(error) = ctx.startup_ready(Ok(())) {
        return Exit::Failed(format!("startup_ready failed: {error:#}"));
    }

    let state_bytes = raw.state_get();
    let count = wire::decode_state(&state_bytes).unwrap_or_else(|error| {
        raw.log(
            LOG_WARN,
            &format!("test plugin: ignoring undecodable state: {error:#}"),
        );
        0
    });

    let shared = Arc::new(Shared {
        ctx,
        raw,
        factory,
        count: Mutex::new(count),
        events: Mutex::new(EventLog::default()),
        watchers: Mutex::new(Vec::new()),
        reply_failures: Mutex::new(Vec::new()),
        double_reply_status: Mutex::new(None),
    });
    shared.init_event_index();
    shared.log(
        LOG_INFO,
        &format!("test plugin: actor started (count = {count})"),
    );

    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let worker = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("test-plugin-actions".into())
            .spawn(move || worker_main(&shared, &job_rx))
    };
    let worker = match worker {
        Ok(handle) => handle,
        Err(error) => return Exit::Failed(format!("spawning the action worker failed: {error}")),
    };

    let exit = loop {
        shared.raw.submit_next_event(control.tx.clone());
        let message = match rx.recv() {
            Ok(message) => message,
            // Unreachable while `control` holds a sender, but be explicit.
            Err(_) => break Exit::Failed("actor loop channel closed unexpectedly".into()),
        };
        match message {
            LoopMsg::Cancel => break Exit::TornDown("cancelled by host"),
            LoopMsg::GraceDeadline => break Exit::TornDown("grace deadline reached"),
            LoopMsg::Event(result) => {
                let outcome = result.into_outcome();
                match outcome.status {
                    AbiStatus::Ok => handle_frame(&shared, &outcome.payload, &job_tx),
                    AbiStatus::ChannelClosed => break Exit::Closed,
                    other => {
                        break Exit::Failed(format!(
                            "next_event failed with {}: {}",
                            status_name(other),
                            outcome.message()
                        ));
                    }
                }
            }
        }
    };

    // Let the worker finish its current action, then stop it.
    drop(job_tx);
    let deadline = Instant::now() + WORKER_WAIT_ON_EXIT;
    while !worker.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if worker.is_finished() {
        let _ = worker.join();
    } else {
        shared.log(
            LOG_WARN,
            "test plugin: action worker still busy at exit; detaching it",
        );
    }
    if matches!(exit, Exit::Closed) {
        shared.wait_watchers(Duration::from_millis(500));
    }
    shared.log(LOG_INFO, "test plugin: actor loop finished");
    drop(shared);
    exit
}

fn handle_frame(shared: &Arc<Shared>, frame: &[u8], jobs: &Sender<Job>) {
    let event = match decode_event_frame(frame) {
        Ok(event) => event,
        Err(error) => {
            // Strict: report it, and fail the reply so the host does not hang.
            let tag = frame
                .get(0..4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            let token = frame
                .get(4..12)
                .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]));
            let entry = format!(
                "Undecodable:{}",
                tag.map_or_else(|| "?".into(), |t| t.to_string())
            );
            shared.log(
                LOG_ERROR,
                &format!("test plugin: cannot decode event frame: {error:#}"),
            );
            shared.record_event(entry);
            if let Some(token) = token.filter(|token| *token != 0) {
                shared.reply_err(
                    "Undecodable",
                    ReplyToken(token),
                    format!("test plugin could not decode event: {error:#}"),
                );
            }
            return;
        }
    };
    shared.record_event(wire::event_log_entry(&event));
    let tag = wire::event_tag_name(&event);
    match event {
        Event::Action { name, args, reply } => {
            if let Err(mpsc::SendError(job)) = jobs.send(Job {
                name,
                args,
                token: reply,
            }) {
                shared.reply_err(
                    tag,
                    job.token,
                    wire::error_json("worker_gone", "the action worker has stopped", None),
                );
            }
        }
        Event::Http { request, reply } => match wire::HttpRequest::decode(&request) {
            Ok(request) => {
                shared.reply_ok(tag, reply, wire::http_response(&request));
            }
            Err(error) => {
                shared.reply_err(tag, reply, format!("invalid http request: {error:#}"));
            }
        },
        Event::Subscribe {
            event_name, reply, ..
        } => {
            if event_name == "forbidden" {
                shared.reply_err(
                    tag,
                    reply,
                    "subscription to `forbidden` rejected by test plugin".into(),
                );
            } else {
                shared.reply_ok(tag, reply, Vec::new());
            }
        }
        Event::ConnPreflight { params, reply, .. } => {
            if wire::preflight_rejects(&params) {
                shared.reply_err(tag, reply, "rejected by test plugin".into());
            } else {
                shared.reply_ok(tag, reply, Vec::new());
            }
        }
        Event::ConnOpen { reply, .. } | Event::WebSocketOpen { reply, .. } => {
            shared.reply_ok(tag, reply, Vec::new());
        }
        Event::ConnClosed { .. } => {}
        Event::QueueSend {
            name, body, reply, ..
        } => match wire::queue_response(&name, &body) {
            Ok(response) => {
                shared.reply_ok(tag, reply, response);
            }
            Err(error) => {
                shared.reply_err(tag, reply, format!("invalid queue body: {error:#}"));
            }
        },
        Event::SerializeState { reply } => {
            shared.reply_ok(tag, reply, shared.state_bytes());
        }
        Event::Sleep { reply } => {
            shared.on_shutdown("sleep");
            shared.reply_ok(tag, reply, Vec::new());
        }
        Event::Destroy { reply } => {
            shared.on_shutdown("destroy");
            shared.reply_ok(tag, reply, Vec::new());
        }
    }
}

fn worker_main(shared: &Arc<Shared>, jobs: &Receiver<Job>) {
    while let Ok(job) = jobs.recv() {
        let outcome = catch_unwind(AssertUnwindSafe(|| actions::run(shared, &job)));
        let reply = match outcome {
            Ok(reply) => reply,
            Err(_) => Err(actions::ActionError::new(
                "panic",
                format!("action `{}` panicked inside the test plugin", job.name),
            )),
        };
        match reply {
            Ok(payload) => {
                shared.reply_ok("Action", job.token, payload);
                if job.name == "doubleReply" {
                    let second = shared.raw.reply_ok(job.token.0, b"\x66second".to_vec());
                    *lock(&shared.double_reply_status) = Some(status_name(second).to_owned());
                }
            }
            Err(error) => {
                shared.reply_err("Action", job.token, error.to_json());
            }
        }
    }
}
