//! One actor instance: the event loop and its ordered worker.
//!
//! The event loop answers connection, subscription and state events at once,
//! so a slow VM boot never starves connection setup (RivetKit gives a
//! connection a few seconds to open). Everything that touches the VM goes to
//! one worker that runs jobs strictly in arrival order, so a client's
//! `writeFile` is always visible to its next `readFile`.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use rivet_actor_plugin_abi::{AbiEventTag, decode_action_payload};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::args::{self, Args};
use crate::contract::{self, ActionSpec, Call};
use crate::error::{ActorError, code};
use crate::host::{HostCtx, RawEvent};
use crate::schema;
use crate::vm::{ShutdownReason, VmSettings, VmSlot};

enum Job {
    Action { token: u64, spec: &'static ActionSpec, args: Args },
    Http { token: u64, request: Vec<u8> },
    Shutdown { token: u64, reason: ShutdownReason },
}

/// Runs the actor until the host closes the event stream or `cancel` fires.
/// An error means the actor never started (it is reported through `done`).
pub async fn run(host: HostCtx, settings: Arc<VmSettings>, vm: VmSlot, cancel: CancellationToken) -> Result<(), String> {
    if host.sql_is_enabled()
        && let Err(error) = schema::migrate(&host).await
    {
        let message = format!("agentOS actor schema migration failed: {error:#}");
        host.log(4, &message);
        host.startup_ready(Err(message.clone()));
        return Err(message);
    }
    host.startup_ready(Ok(()));

    let (jobs, queue) = mpsc::unbounded_channel();
    let worker = tokio::spawn(worker(host.clone(), settings.clone(), vm.clone(), queue, cancel.clone()));
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => break,
            event = host.next_event() => event,
        };
        match event {
            Ok(Some(event)) => on_event(&host, &settings, &jobs, event),
            Ok(None) => break,
            Err(error) => {
                host.log(4, &format!("agentOS actor: next_event failed: {error:#}"));
                break;
            }
        }
    }
    drop(jobs);
    let _ = worker.await;
    Ok(())
}

fn on_event(host: &HostCtx, settings: &VmSettings, jobs: &mpsc::UnboundedSender<Job>, event: RawEvent) {
    let RawEvent { tag, token, payload } = event;
    let enqueue = |job: Job| {
        if let Err(mpsc::error::SendError(job)) = jobs.send(job) {
            let token = match job {
                Job::Action { token, .. } | Job::Http { token, .. } | Job::Shutdown { token, .. } => token,
            };
            host.reply_err(token, &ActorError::new(code::VM_UNAVAILABLE, "the actor is stopping").to_wire());
        }
    };
    match AbiEventTag::from_u32(tag) {
        Some(AbiEventTag::Action) => match decode_call(&payload, &settings.custom_actions) {
            Ok((spec, args)) => enqueue(Job::Action { token, spec, args }),
            Err(error) => host.reply_err(token, &error.to_wire()),
        },
        Some(AbiEventTag::Sleep) => enqueue(Job::Shutdown { token, reason: ShutdownReason::Sleep }),
        Some(AbiEventTag::Destroy) => enqueue(Job::Shutdown { token, reason: ShutdownReason::Destroy }),
        Some(AbiEventTag::ConnPreflight | AbiEventTag::ConnOpen | AbiEventTag::Subscribe) => {
            host.reply_ok(token, Vec::new())
        }
        // Everything durable lives in SQLite: an empty reply keeps no opaque state.
        Some(AbiEventTag::SerializeState) => host.reply_ok(token, Vec::new()),
        Some(AbiEventTag::ConnClosed) => {}
        Some(AbiEventTag::Http) => enqueue(Job::Http { token, request: payload }),
        Some(AbiEventTag::QueueSend | AbiEventTag::WsOpen) => host.reply_err(
            token,
            &ActorError::new(code::UNSUPPORTED, "the agentOS actor offers no queues or raw WebSockets").to_wire(),
        ),
        None => {
            host.log(3, &format!("agentOS actor: unknown event tag {tag}"));
            if token != 0 {
                host.reply_err(token, &ActorError::new(code::UNSUPPORTED, format!("unknown event tag {tag}")).to_wire());
            }
        }
    }
}

/// Decodes an Action payload against the contract, before any VM work, so
/// an unknown action or bad arguments never boot a VM.
fn decode_call(payload: &[u8], custom: &[&'static ActionSpec]) -> Result<(&'static ActionSpec, Args), ActorError> {
    let (name, raw_args) = decode_action_payload(payload)
        .map_err(|e| ActorError::internal(format!("malformed action event: {e:#}")))?;
    // The cron alarm's internal action is not part of the public table.
    let spec = if name == crate::actions::cron::CRON_TICK.name {
        &crate::actions::cron::CRON_TICK
    } else {
        contract::find(&name)
            .or_else(|| custom.iter().copied().find(|spec| spec.name == name))
            .ok_or_else(|| ActorError::action_not_found(&name))?
    };
    let args = args::decode(spec.params, &raw_args)?;
    Ok((spec, args))
}

async fn worker(
    host: HostCtx,
    settings: Arc<VmSettings>,
    vm: VmSlot,
    mut queue: mpsc::UnboundedReceiver<Job>,
    cancel: CancellationToken,
) {
    // Detached actions (long guest work) still running; each replies itself.
    let mut detached = tokio::task::JoinSet::new();
    loop {
        let job = tokio::select! {
            _ = cancel.cancelled() => break,
            job = queue.recv() => match job { Some(job) => job, None => break },
            // Reap finished detached actions as they end.
            Some(_) = detached.join_next(), if !detached.is_empty() => continue,
        };
        match job {
            Job::Action { token, spec, args } if spec.detached => {
                // Started in order: the VM is booted before later jobs run.
                let booted = match vm.ensure(&settings, &host).await {
                    Ok(booted) => booted,
                    Err(error) => {
                        reply_action(&host, token, spec, Err(error));
                        continue;
                    }
                };
                let (host, settings, vm) = (host.clone(), settings.clone(), vm.clone());
                detached.spawn(async move {
                    let result = tokio::select! {
                        result = run_action(&host, &settings, &vm, spec, args) => result,
                        detail = crate::vm::sidecar_gone(&booted) => {
                            vm.discard_lost(&host).await;
                            Err(lost_vm_error(spec, &detail))
                        }
                    };
                    reply_action(&host, token, spec, result);
                });
            }
            Job::Http { token, request } => {
                // A proxied request may take long: it runs beside later jobs.
                let (host, vm) = (host.clone(), vm.clone());
                detached.spawn(async move {
                    let response = crate::http::handle(&host, &vm, &request).await;
                    host.reply_ok(token, response);
                });
            }
            Job::Action { token, spec, args } => {
                let result = run_action(&host, &settings, &vm, spec, args).await;
                reply_action(&host, token, spec, result);
            }
            Job::Shutdown { token, reason } => {
                // Shutting the VM down ends the detached actions (with an
                // error reply each) before the host hears we are done.
                vm.shutdown(reason, &host).await;
                while detached.join_next().await.is_some() {}
                host.reply_ok(token, Vec::new());
            }
        }
    }
    // Answer what is still queued rather than leaving the host to drop it.
    queue.close();
    while let Ok(job) = queue.try_recv() {
        match job {
            Job::Action { token, .. } | Job::Http { token, .. } => host.reply_err(
                token,
                &ActorError::new(code::VM_UNAVAILABLE, "the actor stopped before this action ran").to_wire(),
            ),
            Job::Shutdown { token, .. } => host.reply_ok(token, Vec::new()),
        }
    }
    let reason = if cancel.is_cancelled() { ShutdownReason::Deadline } else { ShutdownReason::Stopped };
    vm.shutdown(reason, &host).await;
    while detached.join_next().await.is_some() {}
}

fn reply_action(host: &HostCtx, token: u64, spec: &ActionSpec, result: Result<Vec<u8>, ActorError>) {
    match result {
        Ok(bytes) => host.reply_ok(token, bytes),
        Err(error) => {
            host.log(1, &format!("action {} failed: {error}", spec.name));
            host.reply_err(token, &error.to_wire());
        }
    }
}

async fn run_action(
    host: &HostCtx,
    settings: &Arc<VmSettings>,
    vm: &VmSlot,
    spec: &'static ActionSpec,
    args: Args,
) -> Result<Vec<u8>, ActorError> {
    let call = Call { name: spec.name, slot: vm.clone(), settings: settings.clone(), host: host.clone(), args };
    // A panic in one handler must fail that call, not the actor.
    let result = match AssertUnwindSafe((spec.handler)(call)).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(ActorError::internal(format!(
            "action `{}` panicked: {}",
            spec.name,
            crate::ffi::panic_text(&*panic)
        ))),
    };
    match result {
        Err(error) if crate::vm::sidecar_lost(&error.message) => {
            vm.discard_lost(host).await;
            Err(lost_vm_error(spec, &error.message))
        }
        other => other,
    }
}

fn lost_vm_error(spec: &ActionSpec, detail: &str) -> ActorError {
    ActorError::new(
        code::VM_UNAVAILABLE,
        format!(
            "the VM's sidecar process exited during `{}` ({detail}); the next action boots a new VM on the same durable root",
            spec.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivet_actor_plugin_abi::encode_action_payload;

    fn cbor(value: &ciborium::Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    #[test]
    fn unknown_action_is_named() {
        let payload = encode_action_payload("nope", &cbor(&ciborium::Value::Array(vec![])));
        let err = decode_call(&payload, &[]).unwrap_err();
        assert_eq!(err.code, "action_not_found");
        assert!(err.message.contains("`nope`"));
    }

    #[test]
    fn bad_arguments_fail_before_the_vm() {
        let payload = encode_action_payload("readFile", &cbor(&ciborium::Value::Array(vec![ciborium::Value::Integer(1.into())])));
        let err = decode_call(&payload, &[]).unwrap_err();
        assert_eq!(err.code, "invalid_argument");
        assert!(err.message.contains("`path`"));
    }
}
