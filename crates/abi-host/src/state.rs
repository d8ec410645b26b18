//! Per-instance host state: the actor context, the queue of events for
//! `next_event`, the slab of replies the plugin still owes, and the
//! keep-awake regions it holds. The vtable's `ctx` is an `Arc<HostState>`
//! turned into a raw pointer; `ctx_clone` / `ctx_release` move its refcount.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rivetkit_core::{
    ActorContext, ActorHttpResponse, KeepAwakeRegion, QueueSendResult, Reply, StateDelta,
};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

/// A reply the plugin owes, keyed by its token.
pub enum Pending {
    Action(Reply<Vec<u8>>),
    Http(Reply<ActorHttpResponse>),
    Unit(Reply<()>),
    Queue(Reply<QueueSendResult>),
    Serialize(Reply<Vec<StateDelta>>),
    /// Sleep / Destroy: answering it releases the held-back grace disconnects.
    Cleanup(Reply<()>),
}

/// One event frame ready for `next_event`.
pub struct Frame {
    pub tag: u32,
    pub token: u64,
    pub payload: Vec<u8>,
}

pub struct HostState {
    pub ctx: ActorContext,
    /// The host runtime: async vtable work is spawned here, never on the
    /// plugin's own runtime.
    pub runtime: Handle,
    pub events: tokio::sync::Mutex<mpsc::UnboundedReceiver<Frame>>,
    pending: Mutex<HashMap<u64, Pending>>,
    next_token: AtomicU64,
    pub startup: Mutex<Option<oneshot::Sender<anyhow::Result<()>>>>,
    keep_awake: Mutex<HashMap<u64, KeepAwakeRegion>>,
    next_keep_awake: AtomicU64,
    /// Grace-time `DisconnectConn`s, held back until the plugin has answered
    /// Sleep / Destroy so that it can still reach its clients while cleaning up.
    deferred_disconnects: Mutex<Vec<(String, Reply<()>)>>,
}

impl HostState {
    pub fn new(
        ctx: ActorContext,
        runtime: Handle,
        events: mpsc::UnboundedReceiver<Frame>,
        startup: Option<oneshot::Sender<anyhow::Result<()>>>,
    ) -> Self {
        Self {
            ctx,
            runtime,
            events: tokio::sync::Mutex::new(events),
            pending: Mutex::new(HashMap::new()),
            next_token: AtomicU64::new(1),
            startup: Mutex::new(startup),
            keep_awake: Mutex::new(HashMap::new()),
            next_keep_awake: AtomicU64::new(1),
            deferred_disconnects: Mutex::new(Vec::new()),
        }
    }

    /// Stores a reply and returns its token (non-zero, increasing from 1).
    pub fn park(&self, reply: Pending) -> u64 {
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.pending.lock().insert(token, reply);
        token
    }

    /// Takes the reply owed for `token`, if it is still pending.
    pub fn unpark(&self, token: u64) -> Option<Pending> {
        self.pending.lock().remove(&token)
    }

    /// Drops every reply still owed; each resolves as `actor.dropped_reply`.
    pub fn drain_pending(&self) -> usize {
        let drained: Vec<Pending> = self.pending.lock().drain().map(|(_, p)| p).collect();
        drained.len()
    }

    /// Completes actor start once; later calls are ignored.
    pub fn signal_startup(&self, result: anyhow::Result<()>) -> bool {
        match self.startup.lock().take() {
            Some(sender) => {
                let _ = sender.send(result);
                true
            }
            None => false,
        }
    }

    pub fn keep_awake_enter(&self) -> u64 {
        let region = self.ctx.keep_awake_region();
        let token = self.next_keep_awake.fetch_add(1, Ordering::Relaxed);
        self.keep_awake.lock().insert(token, region);
        token
    }

    /// Closes a region; false for an unknown token.
    pub fn keep_awake_exit(&self, token: u64) -> bool {
        self.keep_awake.lock().remove(&token).is_some()
    }

    /// Holds a grace-time disconnect until [`Self::run_deferred_disconnects`].
    pub fn defer_disconnect(&self, conn_id: String, reply: Reply<()>) {
        self.deferred_disconnects.lock().push((conn_id, reply));
    }

    /// Disconnects the held-back conns and answers their requests; called once
    /// the plugin answered Sleep / Destroy, and at instance end.
    pub fn run_deferred_disconnects(&self) {
        let deferred = std::mem::take(&mut *self.deferred_disconnects.lock());
        if deferred.is_empty() {
            return;
        }
        let ctx = self.ctx.clone();
        self.runtime.spawn(async move {
            for (conn_id, reply) in deferred {
                reply.send(ctx.disconnect_conn(conn_id).await);
            }
        });
    }

    /// Releases every region the plugin left open (at instance end).
    pub fn release_keep_awake(&self) {
        self.keep_awake.lock().clear();
    }
}
