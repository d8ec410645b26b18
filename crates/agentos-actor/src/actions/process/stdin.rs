//! Ordered, never-lost stdin delivery (and signals) to spawned processes.
//!
//! agentos-client 0.2.21 has two stdin pitfalls (agentos-engine.md, pitfall
//! 2): a write sent before the sidecar has started the process is dropped,
//! and `write_process_stdin` / `close_process_stdin` each `tokio::spawn` their
//! own wire request, so on a multi-threaded runtime two calls can reach the
//! wire in either order. We fix both:
//!
//! - one task per process applies its writes, close and signals in the order
//!   they were queued, and holds the first one back until the process runs
//!   in the kernel table (see `wait_started`);
//! - those tasks run on a per-VM single-threaded runtime (the "lane"), so the
//!   requests the client spawns are first polled in spawn order, and each one
//!   queues its frame on the sidecar's one FIFO request channel on that first
//!   poll. Frames therefore reach the sidecar in write order.

use std::sync::OnceLock;
use std::time::Duration;

use agentos_client::{AgentOs, ProcessStatus, StdinInput};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};

use super::{Reply, pid_arg, pid_error, process_exited, process_not_found};
use crate::actions::reply_null;
use crate::contract::Call;
use crate::error::{ActorError, code};
use crate::live::lock;

/// How long the first stdin operation waits for a spawned process to start.
/// A cold first WASM command can take seconds on a loaded machine.
const START_WAIT: Duration = Duration::from_secs(60);

/// One queued stdin operation and where to report its outcome.
pub(crate) struct StdinOp {
    kind: OpKind,
    done: Option<oneshot::Sender<Result<(), ActorError>>>,
}

pub(crate) enum OpKind {
    Write(Vec<u8>),
    Close,
    /// SIGKILL (true) or SIGTERM (false). Signals share the queue: the
    /// client sends them fire-and-forget too, and one sent before the
    /// process runs is lost the same way.
    Signal { kill: bool },
}

/// The sending end of one process's stdin queue.
pub(crate) type StdinQueue = mpsc::UnboundedSender<StdinOp>;

/// The per-VM single-threaded runtime that stdin tasks run on. Started on
/// first use; its thread ends when the VM's registries are dropped.
#[derive(Default)]
pub struct StdinLane {
    runtime: OnceLock<Result<LaneRuntime, String>>,
}

struct LaneRuntime {
    handle: tokio::runtime::Handle,
    /// Dropping this ends the lane thread (and cancels its tasks).
    _stop: oneshot::Sender<()>,
}

impl StdinLane {
    fn handle(&self) -> Result<tokio::runtime::Handle, ActorError> {
        let lane = self.runtime.get_or_init(|| {
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            let (stop, stopped) = oneshot::channel::<()>();
            std::thread::Builder::new()
                .name("agentos-stdin".into())
                .spawn(move || {
                    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                        Ok(runtime) => runtime,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(runtime.handle().clone()));
                    let _ = runtime.block_on(stopped);
                })
                .map_err(|e| e.to_string())?;
            let handle = handle_rx.recv().map_err(|e| e.to_string())??;
            Ok(LaneRuntime { handle, _stop: stop })
        });
        match lane {
            Ok(lane) => Ok(lane.handle.clone()),
            Err(e) => Err(ActorError::internal(format!("stdin lane failed to start: {e}"))),
        }
    }

    /// Starts the stdin task of a freshly spawned process and returns its
    /// queue.
    pub(crate) fn open(&self, vm: AgentOs, pid: u32) -> Result<StdinQueue, ActorError> {
        let (queue, ops) = mpsc::unbounded_channel();
        self.handle()?.spawn(deliver(vm, pid, ops));
        Ok(queue)
    }
}

/// Applies one process's stdin operations in order.
async fn deliver(vm: AgentOs, pid: u32, mut ops: mpsc::UnboundedReceiver<StdinOp>) {
    let mut started = false;
    while let Some(op) = ops.recv().await {
        let idempotent = matches!(op.kind, OpKind::Close | OpKind::Signal { .. });
        let mut result = if started { Ok(()) } else { wait_started(&vm, pid).await };
        started = result.is_ok();
        if started {
            result = apply(&vm, pid, op.kind);
        }
        // Closing the stdin of (or signalling) a process that already ended
        // is a no-op.
        if idempotent && matches!(&result, Err(e) if e.code == code::PROCESS_EXITED) {
            result = Ok(());
        }
        match op.done {
            Some(done) => {
                let _ = done.send(result);
            }
            None => {
                if let Err(e) = result {
                    tracing::warn!(pid, "initial stdin of a spawned process was not delivered: {e}");
                }
            }
        }
    }
}

fn apply(vm: &AgentOs, pid: u32, kind: OpKind) -> Result<(), ActorError> {
    let info = vm.get_process(pid).map_err(|e| pid_error(pid, e))?;
    if !info.running {
        return Err(process_exited(pid));
    }
    // Both calls spawn their wire request on this (single-threaded) runtime;
    // see the module comment for why that keeps them in order.
    match kind {
        OpKind::Write(data) => vm.write_process_stdin(pid, StdinInput::Bytes(data)),
        OpKind::Close => vm.close_process_stdin(pid),
        OpKind::Signal { kill: true } => vm.kill_process(pid),
        OpKind::Signal { kill: false } => vm.stop_process(pid),
    }
    .map_err(|e| pid_error(pid, e))
}

/// Waits until the sidecar has started the process, or it ended.
///
/// The 0.2.21 sidecar answers a spawn without the kernel pid, so the client
/// never links its spawn pid to the kernel table entry (that entry shows up
/// under the kernel pid, our command and args, and a driver). We count: once
/// the kernel runs at least as many processes with this command and args as
/// clients spawned up to and including this pid, this one runs. (A
/// concurrent `exec` of the very same argv could be counted in its place;
/// that is the one imprecision.)
async fn wait_started(vm: &AgentOs, pid: u32) -> Result<(), ActorError> {
    let deadline = tokio::time::Instant::now() + START_WAIT;
    let mut pause = Duration::from_millis(2);
    loop {
        let me = vm.get_process(pid).map_err(|e| pid_error(pid, e))?;
        if !me.running {
            return Err(process_exited(pid));
        }
        let table = vm.all_processes().await.map_err(ActorError::from_vm)?;
        let same = |command: &str, args: &[String]| command == me.command && args == me.args.as_slice();
        let spawned =
            vm.list_processes().iter().filter(|p| p.running && p.pid <= pid && same(&p.command, &p.args)).count();
        let running = table
            .iter()
            .filter(|p| !p.driver.is_empty() && p.status == ProcessStatus::Running && same(&p.command, &p.args))
            .count();
        if running >= spawned {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ActorError::new(
                code::VM_ERROR,
                format!("process {pid} did not start within {} s", START_WAIT.as_secs()),
            )
            .with_field("pid", pid));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Queues initial stdin (and the close when not streaming) at spawn time;
/// nobody waits for these, failures are logged.
pub(crate) fn queue_initial(queue: &StdinQueue, data: Option<Vec<u8>>, close: bool) {
    if let Some(data) = data {
        let _ = queue.send(StdinOp { kind: OpKind::Write(data), done: None });
    }
    if close {
        let _ = queue.send(StdinOp { kind: OpKind::Close, done: None });
    }
}

/// Queues one operation on a process this VM's clients spawned and waits
/// until it was handed to the VM. `None`: not one of ours (or no VM).
pub(crate) async fn submit(call: &Call, pid: u32, kind: OpKind) -> Option<Result<(), ActorError>> {
    let (_, live) = call.slot.running()?;
    let (done, outcome) = oneshot::channel();
    {
        let processes = lock(&live.processes);
        let state = processes.get(&pid)?;
        if state.stdin.send(StdinOp { kind, done: Some(done) }).is_err() {
            return Some(Err(process_exited(pid)));
        }
    }
    Some(outcome.await.unwrap_or_else(|_| {
        Err(ActorError::new(code::VM_UNAVAILABLE, "the VM stopped before the operation was delivered"))
    }))
}

pub fn write_process_stdin(call: Call) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        let data = call.args.bytes(1)?;
        submit(&call, pid, OpKind::Write(data)).await.unwrap_or_else(|| Err(process_not_found(pid)))?;
        reply_null()
    }
    .boxed()
}

pub fn close_process_stdin(call: Call) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        submit(&call, pid, OpKind::Close).await.unwrap_or_else(|| Err(process_not_found(pid)))?;
        reply_null()
    }
    .boxed()
}
