//! Turns rivetkit-core `ActorEvent`s into ABI event frames for `next_event`.
//! Events that need a reply are parked in the slab under a fresh token; the
//! few that the ABI does not carry are answered here.

use std::sync::Arc;

use anyhow::Result;
use rivet_actor_plugin_abi::{
    AbiEventTag, encode_action_payload, encode_conn_closed_payload, encode_conn_open_payload,
    encode_conn_preflight_payload, encode_queue_send_payload, encode_subscribe_payload, encode_ws_open_payload,
};
use rivetkit_core::error::ActorRuntime;
use rivetkit_core::{ActorEvent, ActorEvents, Reply, ShutdownKind};
use tokio::sync::mpsc;

use crate::state::{Frame, HostState, Pending};
use crate::wire::{self, conn_info};

/// Forwards events until the core closes the stream; dropping `frames`
/// then makes `next_event` report `ChannelClosed` once the queue is drained.
pub async fn pump(mut events: ActorEvents, state: Arc<HostState>, frames: mpsc::UnboundedSender<Frame>) {
    while let Some(event) = events.recv().await {
        forward(&state, &frames, event);
    }
}

fn push(state: &HostState, frames: &mpsc::UnboundedSender<Frame>, tag: AbiEventTag, pending: Pending, payload: Vec<u8>) {
    let token = state.park(pending);
    // If the plugin stopped reading, the parked reply is dropped at instance
    // end and resolves as `actor.dropped_reply`.
    let _ = frames.send(Frame { tag: tag as u32, token, payload });
}

/// Sends an encoding failure back to whoever waits on the reply.
fn fail<T>(reply: Reply<T>, error: anyhow::Error) {
    reply.send(Err(error));
}

fn forward(state: &Arc<HostState>, frames: &mpsc::UnboundedSender<Frame>, event: ActorEvent) {
    match event {
        ActorEvent::Action { name, args, reply, .. } => {
            push(state, frames, AbiEventTag::Action, Pending::Action(reply), encode_action_payload(&name, &args))
        }
        ActorEvent::HttpRequest { request, reply, .. } => match wire::http_request(&request) {
            Ok(payload) => push(state, frames, AbiEventTag::Http, Pending::Http(reply), payload),
            Err(e) => fail(reply, e),
        },
        ActorEvent::QueueSend { name, body, conn, request, wait, timeout_ms, reply, .. } => {
            let payload = wire::http_request(&request).and_then(|request| {
                encode_queue_send_payload(&name, &body, &conn_info(&conn), &request, wait, timeout_ms)
            });
            match payload {
                Ok(payload) => push(state, frames, AbiEventTag::QueueSend, Pending::Queue(reply), payload),
                Err(e) => fail(reply, e),
            }
        }
        ActorEvent::WebSocketOpen { conn, ws, request, reply } => {
            // ABI v13 cannot carry frames of a raw WebSocket: the plugin may
            // accept or refuse it, nothing more.
            drop(ws);
            let payload: Result<Vec<u8>> = request
                .as_ref()
                .map(wire::http_request)
                .transpose()
                .and_then(|request| encode_ws_open_payload(&conn_info(&conn), request.as_deref()));
            match payload {
                Ok(payload) => push(state, frames, AbiEventTag::WsOpen, Pending::Unit(reply), payload),
                Err(e) => fail(reply, e),
            }
        }
        ActorEvent::ConnectionPreflight { conn, params, reply, .. } => {
            match encode_conn_preflight_payload(&conn_info(&conn), &params) {
                Ok(payload) => push(state, frames, AbiEventTag::ConnPreflight, Pending::Unit(reply), payload),
                Err(e) => fail(reply, e),
            }
        }
        ActorEvent::ConnectionOpen { conn, reply, .. } => match encode_conn_open_payload(&conn_info(&conn)) {
            Ok(payload) => push(state, frames, AbiEventTag::ConnOpen, Pending::Unit(reply), payload),
            Err(e) => fail(reply, e),
        },
        ActorEvent::ConnectionClosed { conn } => {
            if let Ok(payload) = encode_conn_closed_payload(&conn_info(&conn)) {
                let _ = frames.send(Frame { tag: AbiEventTag::ConnClosed as u32, token: 0, payload });
            }
        }
        ActorEvent::SubscribeRequest { conn, event_name, reply } => {
            match encode_subscribe_payload(&conn_info(&conn), &event_name) {
                Ok(payload) => push(state, frames, AbiEventTag::Subscribe, Pending::Unit(reply), payload),
                Err(e) => fail(reply, e),
            }
        }
        ActorEvent::SerializeState { reply, .. } => {
            push(state, frames, AbiEventTag::SerializeState, Pending::Serialize(reply), Vec::new())
        }
        ActorEvent::RunGracefulCleanup { reason, reply } => {
            let tag = match reason {
                ShutdownKind::Sleep => AbiEventTag::Sleep,
                ShutdownKind::Destroy => AbiEventTag::Destroy,
            };
            push(state, frames, tag, Pending::Cleanup(reply), Vec::new())
        }
        ActorEvent::DisconnectConn { conn_id, reply } => {
            // Not an ABI event: disconnect as the core asks, as rivetkit's own
            // typed layer does, but only once the plugin has answered the
            // Sleep / Destroy that follows (the core sends these first), so its
            // cleanup still sees and reaches its connections (ABI §3).
            state.defer_disconnect(conn_id, reply);
        }
        ActorEvent::WorkflowHistoryRequested { reply } => {
            reply.send(Err(ActorRuntime::NotConfigured { component: "workflow history".into() }.build()))
        }
        ActorEvent::WorkflowReplayRequested { reply, .. } => {
            reply.send(Err(ActorRuntime::NotConfigured { component: "workflow replay".into() }.build()))
        }
        // Only raised for run deadlines set by a typed runtime; nothing to do.
        ActorEvent::RunWake { reply, .. } => reply.send(Ok(())),
    }
}
