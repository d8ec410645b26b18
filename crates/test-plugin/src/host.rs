//! A thin, strict wrapper over the raw `HostVtable` for the calls whose exact
//! status or payload the tests want to see (the SDK's `DylibBackend` folds
//! those into generic error text), plus the cancellable `next_event` pump and
//! the `run` completion.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::Sender;

use rivet_actor_plugin_abi::{
    AbiResult, AbiStatus, BorrowedBuf, CompletionFn, HostVtable, OwnedBuf,
};

/// A status plus the (already copied and freed) payload of a host `AbiResult`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostOutcome {
    pub status: AbiStatus,
    pub payload: Vec<u8>,
}

impl HostOutcome {
    pub fn message(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

pub fn status_name(status: AbiStatus) -> &'static str {
    match status {
        AbiStatus::Ok => "Ok",
        AbiStatus::Err => "Err",
        AbiStatus::Panic => "Panic",
        AbiStatus::Cancelled => "Cancelled",
        AbiStatus::ChannelClosed => "ChannelClosed",
    }
}

/// Takes ownership of a host-produced `AbiResult` and frees its payload.
fn adopt_result(result: AbiResult) -> HostOutcome {
    let status = result.status;
    // SAFETY: the host handed us this result by value, so we own its payload
    // and nobody else frees it. `into_vec` copies the bytes out and calls the
    // buffer's own `free` exactly once (or adopts it if it is one of ours).
    let payload = unsafe { result.payload.into_vec() };
    HostOutcome { status, payload }
}

/// An owned `AbiResult` in flight between threads. Dropping it frees the
/// payload, so a result that nobody reads is still released exactly once.
pub struct OwnedResult {
    status: AbiStatus,
    payload: Option<OwnedBuf>,
}

// SAFETY: the payload is uniquely owned by this value, and the ABI (§1.4/§1.5)
// lets completions — and therefore the buffers they carry — move to and be
// freed on any thread; `free` is a plain function with no thread affinity.
unsafe impl Send for OwnedResult {}

impl OwnedResult {
    fn adopt(result: AbiResult) -> Self {
        Self {
            status: result.status,
            payload: Some(result.payload),
        }
    }

    pub fn into_outcome(mut self) -> HostOutcome {
        let status = self.status;
        let payload = match self.payload.take() {
            // SAFETY: taken out of the Option, so this is the only free of the
            // buffer; Drop sees None afterwards.
            Some(buf) => unsafe { buf.into_vec() },
            None => Vec::new(),
        };
        HostOutcome { status, payload }
    }
}

impl Drop for OwnedResult {
    fn drop(&mut self) {
        if let Some(buf) = self.payload.take() {
            // SAFETY: we own the buffer and take it out of the Option, so it is
            // freed exactly once, through its own `free`.
            unsafe { buf.free_self() };
        }
    }
}

/// What the actor loop's channel carries: a `next_event` completion, or a
/// teardown request from `rivet_actor_cancel` / `rivet_actor_grace_deadline`.
pub enum LoopMsg {
    Event(OwnedResult),
    Cancel,
    GraceDeadline,
}

/// Completion for `next_event`: forwards the result into the actor loop.
extern "C" fn next_event_done(user_data: *mut c_void, result: AbiResult) {
    let result = OwnedResult::adopt(result);
    let _ = catch_unwind(AssertUnwindSafe(move || {
        if user_data.is_null() {
            return; // `result` drops here and frees the payload.
        }
        // SAFETY: `user_data` is the `Box<Sender<LoopMsg>>` leaked by
        // `RawHost::submit_next_event`; the host fires this completion exactly
        // once, so the box is reclaimed exactly once.
        let tx = unsafe { Box::from_raw(user_data.cast::<Sender<LoopMsg>>()) };
        // If the loop is gone the message (and with it the payload) is
        // dropped, which frees the buffer.
        let _ = tx.send(LoopMsg::Event(result));
    }));
}

/// One owned host-context reference plus a copy of the vtable.
pub struct RawHost {
    vt: HostVtable,
}

// SAFETY: ABI §1.4 — every vtable entry may be called from any thread, and
// the ctx handle is an opaque refcounted pointer owned (one reference) by us.
unsafe impl Send for RawHost {}
// SAFETY: as above; `&RawHost` only calls thread-safe vtable entries.
unsafe impl Sync for RawHost {}

impl RawHost {
    /// Copies the vtable and takes a ctx reference (released on drop).
    ///
    /// # Safety
    /// `vt` must be a v13 vtable received from `rivet_actor_run` whose ctx is
    /// still alive (the host's own reference is held until `done`).
    pub unsafe fn adopt(vt: HostVtable) -> Self {
        let _same = (vt.ctx_clone)(vt.ctx);
        Self { vt }
    }

    pub fn vtable(&self) -> &HostVtable {
        &self.vt
    }

    pub fn state_get(&self) -> Vec<u8> {
        let buf = (self.vt.state_get)(self.vt.ctx);
        // SAFETY: `state_get` transfers ownership of the returned buffer to us;
        // `into_vec` frees it once via its own `free`.
        unsafe { buf.into_vec() }
    }

    pub fn actor_identity(&self) -> Vec<u8> {
        let buf = (self.vt.actor_identity)(self.vt.ctx);
        // SAFETY: `actor_identity` transfers ownership of the buffer to us;
        // `into_vec` frees it once via its own `free`.
        unsafe { buf.into_vec() }
    }

    pub fn sleep(&self) -> HostOutcome {
        adopt_result((self.vt.sleep)(self.vt.ctx))
    }

    pub fn actor_aborted(&self) -> bool {
        (self.vt.actor_aborted)(self.vt.ctx) != 0
    }

    pub fn keep_awake_enter(&self) -> HostOutcome {
        adopt_result((self.vt.keep_awake_enter)(self.vt.ctx))
    }

    pub fn keep_awake_exit(&self, token: u64) -> AbiStatus {
        (self.vt.keep_awake_exit)(self.vt.ctx, token)
    }

    pub fn keep_awake_count(&self) -> u64 {
        (self.vt.keep_awake_count)(self.vt.ctx)
    }

    pub fn hibernatable_ws_ack(
        &self,
        gateway_id: Vec<u8>,
        request_id: Vec<u8>,
        index: u16,
    ) -> HostOutcome {
        adopt_result((self.vt.hibernatable_ws_ack)(
            self.vt.ctx,
            OwnedBuf::from_vec(gateway_id),
            OwnedBuf::from_vec(request_id),
            index,
        ))
    }

    pub fn conn_send(&self, request: Vec<u8>) -> HostOutcome {
        adopt_result((self.vt.conn_send)(
            self.vt.ctx,
            OwnedBuf::from_vec(request),
        ))
    }

    pub fn reply_ok(&self, token: u64, payload: Vec<u8>) -> AbiStatus {
        (self.vt.reply_ok)(self.vt.ctx, token, OwnedBuf::from_vec(payload))
    }

    pub fn reply_err(&self, token: u64, message: String) -> AbiStatus {
        (self.vt.reply_err)(self.vt.ctx, token, OwnedBuf::from_vec(message.into_bytes()))
    }

    pub fn log(&self, level: i32, message: &str) {
        (self.vt.log)(
            self.vt.ctx,
            level,
            BorrowedBuf::from_slice(message.as_bytes()),
        );
    }

    /// Submits one `next_event`; its completion is delivered to `tx` as
    /// [`LoopMsg::Event`].
    pub fn submit_next_event(&self, tx: Sender<LoopMsg>) {
        let user_data = Box::into_raw(Box::new(tx)).cast::<c_void>();
        (self.vt.next_event)(self.vt.ctx, next_event_done, user_data);
    }
}

impl Drop for RawHost {
    fn drop(&mut self) {
        (self.vt.ctx_release)(self.vt.ctx);
    }
}

/// The `done` callback of one `rivet_actor_run`, fired exactly once: either
/// explicitly through [`RunCompletion::complete`] or, if the owner is dropped
/// without completing (a panic or a failed thread spawn), from `Drop`.
pub struct RunCompletion {
    done: CompletionFn,
    user_data: *mut c_void,
    fired: bool,
}

// SAFETY: ABI §1.2 — `done` may be called from any thread, and `user_data` is
// an opaque host pointer that we only hand back to `done`.
unsafe impl Send for RunCompletion {}

impl RunCompletion {
    pub fn new(done: CompletionFn, user_data: *mut c_void) -> Self {
        Self {
            done,
            user_data,
            fired: false,
        }
    }

    pub fn complete(mut self, status: AbiStatus, message: Option<String>) {
        self.fire(status, message);
    }

    fn fire(&mut self, status: AbiStatus, message: Option<String>) {
        if self.fired {
            return;
        }
        self.fired = true;
        let payload = message.map_or_else(OwnedBuf::empty, |text| {
            OwnedBuf::from_vec(text.into_bytes())
        });
        (self.done)(self.user_data, AbiResult { status, payload });
    }
}

impl Drop for RunCompletion {
    fn drop(&mut self) {
        self.fire(
            AbiStatus::Panic,
            Some(
                "test plugin actor ended without completing (panic or thread spawn failure)".into(),
            ),
        );
    }
}
