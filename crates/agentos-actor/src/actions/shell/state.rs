//! A live shell: its output log, its ordered writer and the pumps that turn
//! the VM's shell streams into events.
//!
//! Pumps hold only a weak reference to the VM's registries, so dropping the
//! VM's [`Live`] drops every shell, which drops its subscriptions (ending the
//! pumps) and its writer queue (ending the writer).

use std::sync::{Arc, Weak};
use std::time::Duration;

use agentos_client::{AgentOs, OpenShellOptions, StdinInput, Subscription};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::cursor::CursorTracker;
use crate::error::ActorError;
use crate::host::HostCtx;
use crate::live::{Live, OutputLog, Stream, lock};
use crate::vm::broadcast_event;

/// Exited shells kept (for their output and exit code) per VM; the oldest
/// beyond this are forgotten.
pub const EXITED_SHELLS_KEPT: usize = 16;

/// How long an exited shell's output pumps get to deliver what the shell
/// printed before `shellExit` is sent anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// A shell a client opened, kept while its VM runs (and for a while after it
/// exits, so a client that reconnects can read its end).
pub struct ShellState {
    pub output: OutputLog,
    /// Open order, for listing and for forgetting the oldest exited shells.
    pub order: u64,
    pub command: String,
    pub args: Vec<String>,
    pub cols: u16,
    pub rows: u16,
    pub exit_code: Option<i32>,
    /// `closeShell` was called: it takes no more input.
    pub closed: bool,
    /// Answers the shell's cursor queries from its output.
    cursor: CursorTracker,
    /// Answers seen echoed back (lost), to replace at the next query.
    lost_answers: usize,
    /// The shell asked for the cursor position at least once.
    queried: bool,
    writer: mpsc::UnboundedSender<Write>,
    exit: watch::Sender<Option<i32>>,
    _subscriptions: Vec<Subscription>,
}

/// One write to the shell's input, answered (if anyone waits) once the VM
/// took it.
struct Write {
    data: Vec<u8>,
    done: Option<oneshot::Sender<Result<(), ActorError>>>,
}

impl ShellState {
    /// Queues `data` behind every earlier write (and cursor answer) and
    /// returns when the VM took it.
    pub fn write(&self, data: Vec<u8>) -> oneshot::Receiver<Result<(), ActorError>> {
        let (done, taken) = oneshot::channel();
        // A closed queue drops `done`, which the caller reports.
        let _ = self.writer.send(Write { data, done: Some(done) });
        taken
    }

    /// Resizes the PTY and tells the cursor tracker.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.cols = cols;
        self.rows = rows;
        self.cursor.resize(cols, rows);
    }

    /// Resolves with the exit code; `None` when the VM stopped first.
    pub fn exited(&self) -> watch::Receiver<Option<i32>> {
        self.exit.subscribe()
    }
}

/// What `openShell` asked for.
pub struct OpenRequest {
    pub command: Option<String>,
    pub args: Vec<String>,
    pub env: std::collections::BTreeMap<String, String>,
    pub cwd: Option<String>,
    pub cols: Option<u16>,
    pub rows: Option<u16>,
}

/// Opens a shell in `vm`, registers it in `live` and starts its writer and
/// pumps. Returns the shell id.
pub fn open(vm: &AgentOs, live: &Arc<Live>, host: &HostCtx, request: OpenRequest) -> Result<String, ActorError> {
    let cols = request.cols.unwrap_or(super::cursor::DEFAULT_COLS);
    let rows = request.rows.unwrap_or(super::cursor::DEFAULT_ROWS);
    let command = request.command.clone().unwrap_or_else(|| "sh".to_owned());
    // Holding the registry while the pumps subscribe means no output can
    // be logged before the shell is registered.
    let mut shells = lock(&live.shells);
    let handle = vm
        .open_shell(OpenShellOptions {
            command: Some(command.clone()),
            args: request.args.clone(),
            env: request.env,
            cwd: request.cwd,
            cols: Some(cols),
            rows: Some(rows),
        })
        .map_err(ActorError::from_vm)?;
    let id = handle.shell_id;

    let (writer, queue) = mpsc::unbounded_channel();
    let cursor = CursorTracker::new(cols, rows);
    if runs_line_editor(&command, &request.args) {
        // Answers ahead, see `runs_line_editor`.
        let (row, col) = cursor.position();
        let mut ahead = format!("\x1b[{row};{col}R").repeat(ANSWERS_AHEAD).into_bytes();
        ahead.push(b'\r');
        let _ = writer.send(Write { data: ahead, done: None });
    }
    tokio::spawn(write_in_order(vm.clone(), host.clone(), id.clone(), queue));

    // Every pump holds a clone of `drained`; the exit waiter sees the channel
    // close once the data and stderr streams ended and their pumps are gone.
    let (drained, drain_wait) = mpsc::channel::<()>(1);
    let (exit_code_tx, exit_code_rx) = oneshot::channel();
    let subscriptions = vec![
        data_pump(vm, live, host, &id, Stream::Stdout, drained.clone())?,
        data_pump(vm, live, host, &id, Stream::Stderr, drained)?,
        vm.on_shell_exit(&id, move |exit| {
            let _ = exit_code_tx.send(exit.exit_code);
        })
        .map_err(|e| ActorError::from_vm(e.into()))?,
    ];
    tokio::spawn(finish_on_exit(Arc::downgrade(live), host.clone(), id.clone(), exit_code_rx, drain_wait));

    let order = shells.values().map(|s| s.order + 1).max().unwrap_or(1);
    shells.insert(
        id.clone(),
        ShellState {
            output: OutputLog::default(),
            order,
            command,
            args: request.args,
            cols,
            rows,
            exit_code: None,
            closed: false,
            cursor,
            lost_answers: 0,
            queried: false,
            writer,
            exit: watch::channel(None).0,
            _subscriptions: subscriptions,
        },
    );
    Ok(id)
}

/// Largest single write to the VM when queued writes are joined.
const MAX_WRITE_BYTES: usize = 64 * 1024;

/// Cursor answers kept queued ahead of the line editor's queries.
const ANSWERS_AHEAD: usize = 2;

/// Whether `command` is the guest's interactive shell (brush), whose line
/// editor asks for the cursor position at every prompt and gives up after
/// two seconds without an answer.
///
/// The VM cannot deliver input to a guest that is blocked waiting for it
/// (the write lands only when that wait times out), so an answer sent after
/// the query always comes too late. The actor therefore keeps the shell
/// [`ANSWERS_AHEAD`] answers ahead: it sends them when the shell opens, and
/// the answer to each query is what the line editor reads at a later query
/// (it keeps unread reports queued in its own memory). The first answers
/// reach the terminal before the editor switched it to raw mode; the VM's
/// terminal keeps such input in its line buffer until a line ends, so they
/// go out with a carriage return: the editor reads the answers, then an
/// empty line (one blank prompt at the start), instead of waiting for
/// answers stuck in the buffer until it gives up. An answer that
/// arrives just after the editor handed a command line to the shell is
/// echoed and lost; the actor sees the echo and sends a replacement with
/// its next answer, when the editor reads again. The cost: the editor
/// learns each position a query or two late, so its redraws may land on a
/// stale row.
fn runs_line_editor(command: &str, args: &[String]) -> bool {
    let name = command.rsplit('/').next().unwrap_or(command);
    matches!(name, "sh" | "bash" | "brush")
        && args.iter().all(|a| a.starts_with('-') && a != "-c")
}

/// The shell's single writer: client writes and cursor answers reach the
/// VM in the order they were queued (the client's own `write_shell` spawns
/// a task per write and so may reorder them).
///
/// The VM takes input only when the guest next reads, which at an idle
/// prompt can be seconds away; writes queued meanwhile go out together as
/// one, so a burst of keystrokes costs one such wait, not one each.
async fn write_in_order(vm: AgentOs, host: HostCtx, id: String, mut queue: mpsc::UnboundedReceiver<Write>) {
    while let Some(first) = queue.recv().await {
        let mut data = first.data;
        let mut waiting: Vec<_> = first.done.into_iter().collect();
        let mut answers_only = waiting.is_empty();
        while data.len() < MAX_WRITE_BYTES {
            let Ok(next) = queue.try_recv() else { break };
            data.extend_from_slice(&next.data);
            answers_only &= next.done.is_none();
            waiting.extend(next.done);
        }
        let result = vm.write_shell_awaited(&id, StdinInput::Bytes(data)).await.map_err(|e| ActorError::from_vm(e.into()));
        if let (Err(error), true) = (&result, answers_only) {
            host.log(3, &format!("shell {id}: answering a cursor query failed: {error}"));
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DataEvent<'a> {
    shell_id: &'a str,
    seq: u64,
    #[serde(with = "serde_bytes")]
    data: &'a [u8],
}

/// Subscribes to the shell's ordered terminal output (`Stdout`: every byte
/// the PTY produced) or its stderr-only tap (`Stderr`), logging each chunk
/// and broadcasting it as `shellData` / `shellStderr`.
fn data_pump(
    vm: &AgentOs,
    live: &Arc<Live>,
    host: &HostCtx,
    id: &str,
    stream: Stream,
    drained: mpsc::Sender<()>,
) -> Result<Subscription, ActorError> {
    let (live, host) = (Arc::downgrade(live), host.clone());
    let handler = move |chunk: agentos_client::ShellData| {
        let _drained = &drained;
        let Some(live) = live.upgrade() else { return };
        let mut shells = lock(&live.shells);
        let Some(shell) = shells.get_mut(&chunk.shell_id) else { return };
        let seq = shell.output.push(stream, chunk.data.clone());
        let event = match stream {
            Stream::Stdout => {
                // Cursor queries are answered from the full terminal stream,
                // whether or not a client is attached.
                for report in shell.cursor.feed(&chunk.data) {
                    shell.queried = true;
                    // Replace answers lost since the last query.
                    for _ in 0..=std::mem::take(&mut shell.lost_answers) {
                        let _ = shell.writer.send(Write { data: report.clone(), done: None });
                    }
                }
                // Echoes before the first query are the answers sent ahead,
                // still waiting for the editor: not lost.
                let echoed = shell.cursor.take_echoed();
                if shell.queried {
                    shell.lost_answers = (shell.lost_answers + echoed).min(ANSWERS_AHEAD);
                }
                "shellData"
            }
            Stream::Stderr => "shellStderr",
        };
        // Broadcast under the registry lock so events leave in seq order.
        broadcast_event(&host, event, &DataEvent { shell_id: &chunk.shell_id, seq, data: &chunk.data });
    };
    match stream {
        Stream::Stdout => vm.on_shell_data(id, handler),
        Stream::Stderr => vm.on_shell_stderr(id, handler),
    }
    .map_err(|e| ActorError::from_vm(e.into()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExitEvent<'a> {
    shell_id: &'a str,
    exit_code: i32,
}

/// Records the exit code and sends `shellExit`, after the output pumps
/// logged everything the shell printed (bounded by [`DRAIN_LIMIT`]).
async fn finish_on_exit(
    live: Weak<Live>,
    host: HostCtx,
    id: String,
    exit_code: oneshot::Receiver<i32>,
    mut drained: mpsc::Receiver<()>,
) {
    // An error: the VM (and with it the subscription) went away first.
    let Ok(exit_code) = exit_code.await else { return };
    let _ = tokio::time::timeout(DRAIN_LIMIT, drained.recv()).await;
    let Some(live) = live.upgrade() else { return };
    let mut shells = lock(&live.shells);
    let Some(shell) = shells.get_mut(&id) else { return };
    shell.exit_code = Some(exit_code);
    shell.exit.send_replace(Some(exit_code));
    broadcast_event(&host, "shellExit", &ExitEvent { shell_id: &id, exit_code });
    forget_oldest_exited(&mut shells);
}

fn forget_oldest_exited(shells: &mut std::collections::BTreeMap<String, ShellState>) {
    let mut exited: Vec<(u64, String)> =
        shells.iter().filter(|(_, s)| s.exit_code.is_some()).map(|(id, s)| (s.order, id.clone())).collect();
    if exited.len() <= EXITED_SHELLS_KEPT {
        return;
    }
    exited.sort();
    for (_, id) in &exited[..exited.len() - EXITED_SHELLS_KEPT] {
        shells.remove(id);
    }
}
