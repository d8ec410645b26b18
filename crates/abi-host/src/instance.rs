//! Runs one actor instance of a plugin inside rivetkit-core (ABI §1.3).

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use anyhow::{Result, anyhow};
use rivet_actor_plugin_abi::{AbiResult, AbiStatus};
use rivetkit_core::{ActorConfig, ActorFactory, ActorStart, RuntimeBoxFuture};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};

use crate::adapter;
use crate::loader::PluginFactory;
use crate::state::HostState;
use crate::vtable;

/// An actor type served by a plugin factory. Start blocks until the plugin
/// calls `startup_ready`.
pub fn actor_factory(factory: Arc<PluginFactory>, config: ActorConfig) -> ActorFactory {
    ActorFactory::new_with_manual_startup_ready(config, move |start: ActorStart| -> RuntimeBoxFuture<Result<()>> {
        Box::pin(run_instance(factory.clone(), start))
    })
}

type DoneSender = oneshot::Sender<(AbiStatus, Vec<u8>)>;

extern "C" fn run_done(user_data: *mut c_void, result: AbiResult) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `user_data` is the box made in `run_instance`; the plugin
        // calls `done` exactly once, so it is reclaimed exactly once.
        let sender = unsafe { Box::from_raw(user_data.cast::<DoneSender>()) };
        let status = result.status;
        // SAFETY: we own the completion payload; `into_vec` frees it once.
        let payload = unsafe { result.payload.into_vec() };
        let _ = sender.send((status, payload));
    }));
}

struct RawPtr(*mut c_void);
// SAFETY: opaque plugin handles, only passed back to the plugin's own
// thread-safe entry points.
unsafe impl Send for RawPtr {}

/// What must be released exactly once when an instance ends.
struct Owned {
    factory: Arc<PluginFactory>,
    instance: RawPtr,
    state: Arc<HostState>,
    host_ref: RawPtr,
}

impl Owned {
    fn release(self) {
        // Sleep / Destroy was never answered: still disconnect what the core asked.
        self.state.run_deferred_disconnects();
        let dropped = self.state.drain_pending();
        if dropped > 0 {
            tracing::warn!(target: "native_plugin", dropped, "plugin ended with unanswered events");
        }
        self.state.release_keep_awake();
        self.state.signal_startup(Err(anyhow!("native actor ended before it was ready")));
        // SAFETY: the host's own reference, made by `Arc::into_raw` in
        // `run_instance`, released exactly once here.
        unsafe { Arc::decrement_strong_count(self.host_ref.0.cast::<HostState>()) };
        (self.factory.plugin.symbols.instance_free)(self.instance.0);
    }
}

/// Owns a running instance. Dropped before `done` fired (rivetkit-core
/// aborts the run at the sleep grace deadline), it forces teardown through
/// `grace_deadline` + `cancel`, and still frees the instance once the plugin
/// reports `done` (the reference host leaked it on that path).
struct RunGuard {
    owned: Option<Owned>,
    pump: tokio::task::JoinHandle<()>,
    done: Option<oneshot::Receiver<(AbiStatus, Vec<u8>)>>,
}

impl RunGuard {
    fn finish(mut self) {
        self.pump.abort();
        self.done = None;
        if let Some(owned) = self.owned.take() {
            owned.release();
        }
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let Some(owned) = self.owned.take() else { return };
        self.pump.abort();
        let symbols = &owned.factory.plugin.symbols;
        (symbols.grace_deadline)(owned.instance.0);
        (symbols.cancel)(owned.instance.0);
        match self.done.take() {
            Some(done) => {
                let runtime = owned.state.runtime.clone();
                runtime.spawn(async move {
                    let _ = done.await;
                    owned.release();
                });
            }
            None => owned.release(),
        }
    }
}

async fn run_instance(factory: Arc<PluginFactory>, start: ActorStart) -> Result<()> {
    let ActorStart { ctx, events, startup_ready, .. } = start;
    let (frames, queue) = mpsc::unbounded_channel();
    let state = Arc::new(HostState::new(ctx, Handle::current(), queue, startup_ready));
    let pump = tokio::spawn(adapter::pump(events, state.clone(), frames));
    let host_ref = Arc::into_raw(state.clone()).cast::<c_void>();
    let vtable = vtable::build(host_ref);
    let (done_tx, done_rx) = oneshot::channel();
    let user_data = Box::into_raw(Box::new(done_tx)).cast::<c_void>();
    // `run` must return promptly (ABI §1.2); the actor lives on the plugin's own threads.
    let instance = (factory.plugin.symbols.run)(factory.as_ptr(), &vtable, run_done, user_data);
    let mut guard = RunGuard {
        owned: Some(Owned { factory, instance: RawPtr(instance), state, host_ref: RawPtr(host_ref as *mut c_void) }),
        pump,
        done: Some(done_rx),
    };
    let outcome = guard.done.as_mut().expect("set above").await;
    guard.finish();
    match outcome {
        Ok((AbiStatus::Ok, _)) => Ok(()),
        Ok((status, payload)) => {
            Err(anyhow!("native actor exited with status {status:?}: {}", String::from_utf8_lossy(&payload)))
        }
        Err(_) => Err(anyhow!("native actor dropped its completion")),
    }
}
