//! `HostCtx`: a safe, cloneable, async wrapper over the host's ABI v13 vtable.
//!
//! Every async vtable entry takes a completion callback that the host fires
//! exactly once on one of its own threads. We box a oneshot sender as the
//! callback's `user_data`, so each call becomes an ordinary `.await` on the
//! plugin's runtime and never blocks a thread.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use anyhow::{Context, Result, anyhow, bail};
use rivet_actor_plugin_abi::{
    AbiResult, AbiStatus, BorrowedBuf, HostVtable, OwnedBuf, ScheduleActionRequest,
    portable::ReplyToken,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::oneshot;

/// One host context reference plus a copy of the vtable. Clone takes another
/// reference (`ctx_clone`), drop releases it (`ctx_release`), so detached tasks
/// can hold the context for as long as they need it.
pub struct HostCtx {
    vt: HostVtable,
    /// Keeps multi-call database work atomic: ordinary `db_*` calls share
    /// it, [`HostCtx::db_atomic`] holds it alone across a batch and the
    /// `ROLLBACK` that follows a failed batch, so no other statement can run
    /// inside a transaction a failed batch left open.
    db_gate: std::sync::Arc<tokio::sync::RwLock<()>>,
}

// SAFETY: the ABI (§1.4) states every vtable entry may be called from any
// thread concurrently; the ctx handle is a refcounted Arc on the host side.
unsafe impl Send for HostCtx {}
// SAFETY: as above; `&HostCtx` only ever calls thread-safe vtable entries.
unsafe impl Sync for HostCtx {}

/// The result of an async host call: status plus the payload bytes, already
/// copied out of the host's buffer and freed with the host's allocator.
pub struct HostReply {
    pub status: AbiStatus,
    pub payload: Vec<u8>,
}

impl HostReply {
    /// Ok payload, or an error carrying the host's message text.
    pub fn into_result(self, op: &str) -> Result<Vec<u8>> {
        match self.status {
            AbiStatus::Ok => Ok(self.payload),
            AbiStatus::Err => bail!("host {op} failed: {}", String::from_utf8_lossy(&self.payload)),
            AbiStatus::Panic => bail!("host {op} panicked"),
            AbiStatus::Cancelled => bail!("host {op} was cancelled"),
            AbiStatus::ChannelClosed => bail!("host {op}: event stream closed"),
        }
    }
}

/// An event pulled with `next_event`: tag, reply token and raw payload.
pub struct RawEvent {
    pub tag: u32,
    pub token: u64,
    pub payload: Vec<u8>,
}

extern "C" fn complete_oneshot(user_data: *mut c_void, result: AbiResult) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user_data` was produced by `Box::into_raw` in `HostCtx::call`
        // and the host fires this completion exactly once, so we reclaim the
        // box exactly once.
        let sender = unsafe { Box::from_raw(user_data.cast::<oneshot::Sender<HostReply>>()) };
        let status = result.status;
        // SAFETY: the completion owns `result.payload`; `into_vec` copies it
        // and frees it with its producer's own `free`, exactly once.
        let payload = unsafe { result.payload.into_vec() };
        let _ = sender.send(HostReply { status, payload });
    }));
}

fn bytes_of<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).context("encode cbor request")?;
    Ok(out)
}

/// Decode a CBOR response of the host's own structs.
pub fn decode_cbor<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    ciborium::from_reader(bytes).with_context(|| format!("decode host {what} response"))
}

impl HostCtx {
    /// Takes a reference of its own on the host ctx.
    ///
    /// # Safety
    /// `vt` must be a vtable the host passed to `rivet_actor_run`, whose `ctx`
    /// is still alive (the host keeps its reference until `done` fires).
    pub unsafe fn from_vtable(vt: &HostVtable) -> Self {
        let vt = *vt;
        (vt.ctx_clone)(vt.ctx);
        Self { vt, db_gate: Default::default() }
    }

    /// Submits one async vtable call now and returns a future of its
    /// completion. Submitting synchronously keeps the input buffers out of
    /// the returned future (they are raw, non-`Send` ABI buffers).
    fn call(
        &self,
        op: &'static str,
        submit: impl FnOnce(&HostVtable, rivet_actor_plugin_abi::CompletionFn, *mut c_void),
    ) -> impl std::future::Future<Output = Result<HostReply>> + Send + 'static {
        let (tx, rx) = oneshot::channel::<HostReply>();
        let user_data = Box::into_raw(Box::new(tx)).cast::<c_void>();
        submit(&self.vt, complete_oneshot, user_data);
        async move { rx.await.map_err(|_| anyhow!("host dropped the completion of {op}")) }
    }

    pub fn sql_is_enabled(&self) -> bool {
        (self.vt.sql_is_enabled)(self.vt.ctx) != 0
    }

    /// Runs a batch of statements without parameters. The reply holds the
    /// rows of the batch's last statement that returned rows.
    pub async fn db_exec(&self, sql: &str) -> Result<Vec<u8>> {
        let _shared = self.db_gate.read().await;
        self.db_exec_ungated(sql).await
    }

    /// Runs a batch that opens and ends its own transaction. If it fails,
    /// `ROLLBACK` follows before any other database call can run, so no
    /// other statement lands in (and is undone with) a transaction the
    /// failed batch left open.
    pub async fn db_atomic(&self, batch: &str) -> Result<Vec<u8>> {
        let _alone = self.db_gate.write().await;
        let result = self.db_exec_ungated(batch).await;
        if result.is_err() {
            let _ = self.db_exec_ungated("ROLLBACK;").await;
        }
        result
    }

    async fn db_exec_ungated(&self, sql: &str) -> Result<Vec<u8>> {
        let sql = OwnedBuf::from_vec(sql.as_bytes().to_vec());
        self.call("db_exec", |vt, done, ud| (vt.db_exec)(vt.ctx, sql, done, ud))
            .await?
            .into_result("db_exec")
    }

    /// Runs one query; `params` is a JSON array bound positionally.
    /// Returns the rows as decoded from the host's rows CBOR.
    pub async fn db_query(&self, sql: &str, params: &serde_json::Value) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
        // The gate first: the raw ABI buffers below must not live across an
        // await (they are not `Send`).
        let _shared = self.db_gate.read().await;
        let sql_buf = OwnedBuf::from_vec(sql.as_bytes().to_vec());
        let params = OwnedBuf::from_vec(bytes_of(params)?);
        let bytes = self
            .call("db_query", |vt, done, ud| (vt.db_query)(vt.ctx, sql_buf, params, done, ud))
            .await?
            .into_result("db_query")?;
        decode_cbor(&bytes, "db_query")
    }

    /// Runs one statement; `params` is a JSON array bound positionally.
    pub async fn db_run(&self, sql: &str, params: &serde_json::Value) -> Result<()> {
        // The gate first: the raw ABI buffers below must not live across an
        // await (they are not `Send`).
        let _shared = self.db_gate.read().await;
        let sql_buf = OwnedBuf::from_vec(sql.as_bytes().to_vec());
        let params = OwnedBuf::from_vec(bytes_of(params)?);
        self.call("db_run", |vt, done, ud| (vt.db_run)(vt.ctx, sql_buf, params, done, ud))
            .await?
            .into_result("db_run")
            .map(drop)
    }

    /// Persists a scheduled action that the host delivers later as an
    /// `Action` event (waking the actor if it sleeps).
    pub async fn schedule_at(&self, timestamp_ms: i64, action_name: &str, args: Vec<u8>) -> Result<()> {
        let request = ScheduleActionRequest {
            delay_ms: None,
            timestamp_ms: Some(timestamp_ms),
            action_name: action_name.to_owned(),
            args,
        };
        let buf = OwnedBuf::from_vec(bytes_of(&request)?);
        self.call("schedule_at", |vt, done, ud| (vt.schedule_at)(vt.ctx, buf, done, ud))
            .await?
            .into_result("schedule_at")
            .map(drop)
    }

    /// Pulls the next event; `None` once the host closed the stream.
    pub async fn next_event(&self) -> Result<Option<RawEvent>> {
        let reply = self
            .call("next_event", |vt, done, ud| (vt.next_event)(vt.ctx, done, ud))
            .await?;
        if reply.status == AbiStatus::ChannelClosed {
            return Ok(None);
        }
        let frame = reply.into_result("next_event")?;
        if frame.len() < 12 {
            bail!("host sent a short event frame ({} bytes)", frame.len());
        }
        let tag = u32::from_le_bytes(frame[0..4].try_into().expect("4 bytes"));
        let token = u64::from_le_bytes(frame[4..12].try_into().expect("8 bytes"));
        Ok(Some(RawEvent { tag, token, payload: frame[12..].to_vec() }))
    }

    /// Answers an event. A second answer to the same token is refused by the
    /// host; we only log that, since the caller can do nothing about it.
    pub fn reply_ok(&self, token: u64, payload: Vec<u8>) {
        let status = (self.vt.reply_ok)(self.vt.ctx, ReplyToken(token).0, OwnedBuf::from_vec(payload));
        if status != AbiStatus::Ok {
            self.log(3, &format!("reply_ok for token {token} refused: {status:?}"));
        }
    }

    /// Fails an event with a UTF-8 message (our structured-error JSON).
    pub fn reply_err(&self, token: u64, message: &str) {
        let buf = OwnedBuf::from_vec(message.as_bytes().to_vec());
        let status = (self.vt.reply_err)(self.vt.ctx, token, buf);
        if status != AbiStatus::Ok {
            self.log(3, &format!("reply_err for token {token} refused: {status:?}"));
        }
    }

    pub fn startup_ready(&self, result: std::result::Result<(), String>) {
        let (ok, msg) = match &result {
            Ok(()) => (1u8, ""),
            Err(message) => (0u8, message.as_str()),
        };
        (self.vt.startup_ready)(self.vt.ctx, ok, BorrowedBuf::from_slice(msg.as_bytes()));
    }

    /// Sends an event to every connection subscribed to `name`. `args` is the
    /// CBOR positional-argument array.
    pub fn broadcast(&self, name: &str, args: Vec<u8>) -> Result<()> {
        let name_buf = OwnedBuf::from_vec(name.as_bytes().to_vec());
        match (self.vt.broadcast)(self.vt.ctx, name_buf, OwnedBuf::from_vec(args)) {
            AbiStatus::Ok => Ok(()),
            status => bail!("host broadcast of `{name}` failed: {status:?}"),
        }
    }

    /// Logs through the host (0 trace, 1 debug, 2 info, 3 warn, 4 error).
    pub fn log(&self, level: i32, message: &str) {
        (self.vt.log)(self.vt.ctx, level, BorrowedBuf::from_slice(message.as_bytes()));
    }
}

impl Clone for HostCtx {
    fn clone(&self) -> Self {
        (self.vt.ctx_clone)(self.vt.ctx);
        Self { vt: self.vt, db_gate: self.db_gate.clone() }
    }
}

impl Drop for HostCtx {
    fn drop(&mut self) {
        (self.vt.ctx_release)(self.vt.ctx);
    }
}
