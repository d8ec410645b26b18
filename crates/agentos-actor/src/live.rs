//! What lives exactly as long as one VM: the processes and shells clients
//! started, each with a bounded, sequence-numbered output log so a client
//! that missed events (or reconnected) can replay them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde::Serialize;

use crate::actions::process::{ProcessState, StdinLane};
use crate::actions::shell::ShellState;

/// Bytes of output kept per process or shell for replay; older chunks are
/// dropped first, and a replay that reaches past them reports how many.
pub const OUTPUT_LOG_BYTES: usize = 1 << 20;

/// The per-VM registries. Dropped with the VM, which drops every output
/// subscription with it.
#[derive(Default)]
pub struct Live {
    pub processes: Mutex<BTreeMap<u32, ProcessState>>,
    pub shells: Mutex<BTreeMap<String, ShellState>>,
    /// The thread that delivers spawned processes' stdin in order.
    pub stdin: StdinLane,
    /// Agent sessions open in this VM, with their event pumps.
    pub sessions: crate::actions::sessions::OpenSessions,
}

/// Locks a registry, surviving a panic of an earlier holder (the maps stay
/// consistent: every update is a single insert or remove).
pub fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One chunk of output, numbered from 1 in arrival order.
#[derive(Debug, Clone, Serialize)]
pub struct Chunk {
    pub seq: u64,
    pub stream: Stream,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// What a client gets back when it asks for output after `seq`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub chunks: Vec<Chunk>,
    /// The newest sequence number so far (0: nothing yet); pass it as
    /// `after` next time.
    pub last_seq: u64,
    /// Chunks after `after` that were dropped from the bounded log before
    /// this read, so the client knows its view has a gap.
    pub missed: u64,
}

/// A bounded, sequence-numbered output log.
#[derive(Debug)]
pub struct OutputLog {
    chunks: VecDeque<Chunk>,
    bytes: usize,
    capacity: usize,
    last_seq: u64,
}

impl Default for OutputLog {
    fn default() -> Self {
        Self::with_capacity(OUTPUT_LOG_BYTES)
    }
}

impl OutputLog {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { chunks: VecDeque::new(), bytes: 0, capacity, last_seq: 0 }
    }

    /// Appends a chunk and returns its sequence number. The newest chunk is
    /// always kept, even when it alone exceeds the capacity.
    pub fn push(&mut self, stream: Stream, data: Vec<u8>) -> u64 {
        self.last_seq += 1;
        self.bytes += data.len();
        self.chunks.push_back(Chunk { seq: self.last_seq, stream, data });
        while self.bytes > self.capacity && self.chunks.len() > 1 {
            let dropped = self.chunks.pop_front().expect("more than one chunk");
            self.bytes -= dropped.data.len();
        }
        self.last_seq
    }

    /// Everything still held after `after`.
    pub fn after(&self, after: u64) -> Replay {
        let oldest = self.chunks.front().map_or(self.last_seq + 1, |c| c.seq);
        let missed = oldest.saturating_sub(after.saturating_add(1));
        Replay {
            chunks: self.chunks.iter().filter(|c| c.seq > after).cloned().collect(),
            last_seq: self.last_seq,
            missed,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_chunks_and_replays_after_a_seq() {
        let mut log = OutputLog::default();
        assert_eq!(log.push(Stream::Stdout, b"a".to_vec()), 1);
        assert_eq!(log.push(Stream::Stderr, b"b".to_vec()), 2);
        assert_eq!(log.push(Stream::Stdout, b"c".to_vec()), 3);
        let replay = log.after(1);
        assert_eq!(replay.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(replay.chunks[0].stream, Stream::Stderr);
        assert_eq!((replay.last_seq, replay.missed), (3, 0));
        assert!(log.after(3).chunks.is_empty());
        assert_eq!(OutputLog::default().after(0).missed, 0);
    }

    #[test]
    fn overflow_drops_the_oldest_and_reports_the_gap() {
        let mut log = OutputLog::with_capacity(10);
        for _ in 0..5 {
            log.push(Stream::Stdout, vec![b'x'; 4]);
        }
        // 20 bytes pushed, 10 kept: chunks 4 and 5.
        let replay = log.after(0);
        assert_eq!(replay.chunks.iter().map(|c| c.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(replay.missed, 3);
        assert_eq!(log.after(2).missed, 1);
        assert_eq!(log.after(4).missed, 0);
        // A chunk larger than the whole log is still kept.
        log.push(Stream::Stdout, vec![b'y'; 50]);
        assert_eq!(log.after(0).chunks.len(), 1);
        assert_eq!(log.after(0).missed, 5);
    }
}
