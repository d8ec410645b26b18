//! `spawn` and the output pumps of spawned processes.
//!
//! Each chunk a process writes is pushed into its bounded [`OutputLog`]
//! first, then broadcast as `processOutput` with that log's `seq`, so a
//! client that missed events replays exactly what the events carried.

use std::sync::{Arc, Weak};
use std::time::Duration;

use agentos_client::{ProcessOutput, ProcessStream, SpawnOptions, Subscription};
use futures::FutureExt;
use serde::Serialize;
use tokio::sync::watch;

use super::stdin::{StdinQueue, queue_initial};
use super::{Reply, pid_error};
use crate::actions::reply;
use crate::contract::Call;
use crate::error::ActorError;
use crate::host::HostCtx;
use crate::live::{Live, OutputLog, Stream, lock};

/// Exited processes whose output logs we keep for replay; older ones go
/// first (running processes are always kept).
const EXITED_KEPT: usize = 64;

/// How long the exit pump waits for the output pump to go idle, and the
/// bound on that wait. The client delivers a process's output and its exit
/// on two separate tasks with no end-of-output marker, so this is how
/// `processExit` (and `waitProcess`) come after the last `processOutput`.
const OUTPUT_IDLE: Duration = Duration::from_millis(20);
const OUTPUT_IDLE_BOUND: Duration = Duration::from_secs(2);

/// A process a client spawned, kept while its VM runs.
pub struct ProcessState {
    pub output: OutputLog,
    /// Ordered stdin delivery (see `stdin`).
    pub(crate) stdin: StdinQueue,
    /// The exit code, set once `processExit` was broadcast.
    pub(crate) exit: watch::Receiver<Option<i32>>,
    /// Dropping these (with the VM's registries) ends the pumps.
    pumps: Vec<Subscription>,
}

#[derive(Serialize)]
struct OutputEvent<'a> {
    pid: u32,
    seq: u64,
    stream: Stream,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExitEvent {
    pid: u32,
    exit_code: i32,
}

#[derive(Serialize)]
struct Spawned {
    pid: u32,
}

pub fn spawn(call: Call) -> Reply {
    async move {
        let command = call.args.str(0)?;
        let args = call.args.str_list(1)?;
        let options = call.args.object(2)?;
        let (vm, live) = call.live().await?;
        let spawn_options =
            SpawnOptions { env: options.str_map("env"), cwd: options.str("cwd"), ..SpawnOptions::default() };
        let pid = vm
            .spawn_process(&command, args, spawn_options)
            .map_err(|e| ActorError::from_vm(e).with_command(&command))?
            .pid;
        // Register the state, then subscribe, with no await in between: the
        // client fans output out only to subscribers present when it
        // arrives, and the first output needs a sidecar round trip first.
        let (exit_tx, exit_rx) = watch::channel(None);
        let stdin = live.stdin.open(vm.clone(), pid)?;
        queue_initial(&stdin, options.bytes("stdin"), options.bool("streamStdin") == Some(false));
        {
            let mut processes = lock(&live.processes);
            let state = ProcessState { output: OutputLog::default(), stdin, exit: exit_rx, pumps: Vec::new() };
            processes.insert(pid, state);
            prune_exited(&mut processes);
        }
        let pumps = [
            vm.on_process_output(pid, output_pump(Arc::downgrade(&live), call.host.clone(), pid)),
            vm.on_process_exit(pid, exit_pump(Arc::downgrade(&live), call.host.clone(), exit_tx)),
        ];
        let mut processes = lock(&live.processes);
        for pump in pumps {
            let pump = pump.map_err(|e| pid_error(pid, e))?;
            if let Some(state) = processes.get_mut(&pid) {
                state.pumps.push(pump);
            }
        }
        drop(processes);
        reply(&Spawned { pid })
    }
    .boxed()
}

/// Keeps at most `EXITED_KEPT` exited processes, dropping the lowest pids
/// (the oldest: pids only grow).
fn prune_exited(processes: &mut std::collections::BTreeMap<u32, ProcessState>) {
    let exited: Vec<u32> = processes.iter().filter(|(_, s)| s.exit.borrow().is_some()).map(|(pid, _)| *pid).collect();
    for pid in exited.iter().take(exited.len().saturating_sub(EXITED_KEPT)) {
        processes.remove(pid);
    }
}

/// Logs then broadcasts each output chunk.
fn output_pump(live: Weak<Live>, host: HostCtx, pid: u32) -> impl FnMut(ProcessOutput) + Send + 'static {
    move |chunk: ProcessOutput| {
        let Some(live) = live.upgrade() else { return };
        let mut processes = lock(&live.processes);
        let Some(state) = processes.get_mut(&pid) else { return };
        let stream = match chunk.stream {
            ProcessStream::Stdout => Stream::Stdout,
            ProcessStream::Stderr => Stream::Stderr,
        };
        let seq = state.output.push(stream, chunk.data.clone());
        // Broadcast under the lock so events leave in `seq` order.
        crate::vm::broadcast_event(&host, "processOutput", &OutputEvent { pid, seq, stream, data: &chunk.data });
    }
}

/// Broadcasts `processExit` once the output pump has gone idle.
fn exit_pump(
    live: Weak<Live>,
    host: HostCtx,
    exit_tx: watch::Sender<Option<i32>>,
) -> impl FnOnce(agentos_client::ProcessExit) + Send + 'static {
    move |exit| {
        tokio::spawn(async move {
            wait_output_idle(&live, exit.pid).await;
            crate::vm::broadcast_event(&host, "processExit", &ExitEvent { pid: exit.pid, exit_code: exit.exit_code });
            exit_tx.send_replace(Some(exit.exit_code));
        });
    }
}

async fn wait_output_idle(live: &Weak<Live>, pid: u32) {
    let last_seq = || {
        live.upgrade().and_then(|live| lock(&live.processes).get(&pid).map(|s| s.output.last_seq()))
    };
    let deadline = tokio::time::Instant::now() + OUTPUT_IDLE_BOUND;
    let mut seen = last_seq();
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(OUTPUT_IDLE).await;
        let now = last_seq();
        if now == seen && now.is_some() {
            return;
        }
        seen = now;
    }
}
