//! The socket side of the VM database: framing, the hello exchange and one
//! task per connection. Frames are a big-endian u32 length and a vbare
//! body (a u16 protocol version, then BARE).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentos_actor_uds_client::protocol as wire;
use agentos_actor_uds_client::protocol::versioned;
use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use vbare::OwnedVersionedData;

use super::exec::VmDb;
use crate::fs::sql::SqlExec;

const PROTOCOL_VERSION: u16 = 1;
/// The largest frame either side may send (the client's own cap).
const MAX_FRAME_BYTES: u32 = 32 * 1024 * 1024;

/// A running socket server; dropping it stops it and removes the socket.
pub struct VmDbServer {
    dir: PathBuf,
    socket: PathBuf,
    /// Ends the accept loop and every connection (they hold the database).
    stop: CancellationToken,
}

impl VmDbServer {
    /// Binds a socket in a new private directory and serves `db` on it.
    pub fn start<S: SqlExec>(db: Arc<VmDb<S>>) -> Result<VmDbServer> {
        let dir = std::env::temp_dir().join(format!("agentos-vm-db-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restrict {}", dir.display()))?;
        let socket = dir.join("db.sock");
        let listener = UnixListener::bind(&socket).with_context(|| format!("bind {}", socket.display()))?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => return,
                    },
                };
                let (db, stopped) = (db.clone(), stopped.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stopped.cancelled() => {}
                        _ = serve(stream, db) => {}
                    }
                });
            }
        });
        Ok(VmDbServer { dir, socket, stop })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for VmDbServer {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Serves one connection until the client closes it or breaks the protocol.
async fn serve<S: SqlExec>(mut stream: UnixStream, db: Arc<VmDb<S>>) {
    let Ok(Some(hello)) = read_frame(&mut stream).await else { return };
    let reply = match versioned::ClientHello::deserialize_with_embedded_version(&hello) {
        Ok(()) => wire::ServerHello::HelloOk(wire::HelloOk { max_frame_bytes: MAX_FRAME_BYTES }),
        Err(_) => wire::ServerHello::HelloRejectUnsupportedVersion,
    };
    let accepted = matches!(reply, wire::ServerHello::HelloOk(_));
    let Ok(bytes) = versioned::ServerHello::wrap_latest(reply).serialize_with_embedded_version(PROTOCOL_VERSION) else {
        return;
    };
    if write_frame(&mut stream, &bytes).await.is_err() || !accepted {
        return;
    }
    loop {
        let frame = match read_frame(&mut stream).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(FrameError::TooLarge) => return go_away(&mut stream, wire::GoAwayReason::FrameTooLarge).await,
            Err(FrameError::Io) => return,
        };
        let request = match versioned::ClientFrame::deserialize_with_embedded_version(&frame) {
            Ok(wire::ClientFrame::Request(request)) => request,
            Err(_) => return go_away(&mut stream, wire::GoAwayReason::MalformedFrame).await,
        };
        let payload = db.handle(request.lease_key, request.payload).await;
        let mut bytes = encode_response(request.request_id, payload);
        if bytes.len() > MAX_FRAME_BYTES as usize {
            bytes = encode_response(request.request_id, wire::ResponsePayload::ResponseTooLarge);
        }
        if write_frame(&mut stream, &bytes).await.is_err() {
            return;
        }
    }
}

fn encode_response(request_id: u32, payload: wire::ResponsePayload) -> Vec<u8> {
    let frame = wire::ServerFrame::Response(wire::Response { request_id, payload });
    versioned::ServerFrame::wrap_latest(frame)
        .serialize_with_embedded_version(PROTOCOL_VERSION)
        .unwrap_or_default()
}

async fn go_away(stream: &mut UnixStream, reason: wire::GoAwayReason) {
    let frame = wire::ServerFrame::GoAway(wire::GoAway { reason });
    if let Ok(bytes) = versioned::ServerFrame::wrap_latest(frame).serialize_with_embedded_version(PROTOCOL_VERSION) {
        let _ = write_frame(stream, &bytes).await;
    }
}

enum FrameError {
    Io,
    TooLarge,
}

/// The next frame, or `None` when the client closed the connection.
async fn read_frame(stream: &mut UnixStream) -> Result<Option<Vec<u8>>, FrameError> {
    let length = match stream.read_u32().await {
        Ok(length) => length,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(_) => return Err(FrameError::Io),
    };
    if length > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge);
    }
    let mut payload = vec![0; length as usize];
    stream.read_exact(&mut payload).await.map_err(|_| FrameError::Io)?;
    Ok(Some(payload))
}

async fn write_frame(stream: &mut UnixStream, payload: &[u8]) -> std::io::Result<()> {
    let length = u32::try_from(payload.len()).map_err(|_| std::io::Error::other("frame over 4 GiB"))?;
    stream.write_u32(length).await?;
    stream.write_all(payload).await?;
    stream.flush().await
}
