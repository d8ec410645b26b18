//! The ten `extern "C"` exports of ABI v13. Every body runs inside
//! `catch_unwind`: unwinding across `extern "C"` is undefined behaviour.

// The ABI fixes these signatures as safe `extern "C" fn`s taking raw
// handles; their only callers are hosts bound by the ABI's contract on those
// pointers, which each dereference documents in its SAFETY comment.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rivet_actor_plugin_abi::{
    AbiResult, AbiStatus, BorrowedBuf, CompletionFn, HostVtable, OwnedBuf, RIVET_ACTOR_ABI_MAGIC,
    RIVET_ACTOR_ABI_VERSION,
};
use futures::FutureExt;
use tokio::runtime::{Handle, Runtime};
use tokio_util::sync::CancellationToken;

use crate::actor;
use crate::config::ActorConfig;
use crate::host::HostCtx;
use crate::vm::{ShutdownReason, VmSettings, VmSlot};

/// One plugin load: the runtime every actor of this load runs on, and the
/// name of the sidecar pool its VMs share.
pub struct Plugin {
    runtime: Runtime,
    default_pool: String,
}

/// One registered actor type.
pub struct Factory {
    handle: Handle,
    settings: Arc<VmSettings>,
}

/// One running actor instance. `live` is `None` when the start failed (the
/// host still gets a non-null handle to cancel and free).
pub struct Instance {
    live: Option<LiveInstance>,
}

struct LiveInstance {
    handle: Handle,
    cancel: CancellationToken,
    vm: VmSlot,
    host: HostCtx,
}

/// Writes an error message into the host's `out_err` slot.
///
/// # Safety
/// `out_err` must be null or point to a valid `OwnedBuf` the host pre-set.
unsafe fn write_err(out_err: *mut OwnedBuf, message: &str) {
    if out_err.is_null() {
        return;
    }
    // SAFETY: guaranteed by this function's contract; the old buffer is
    // freed once with its own `free`.
    unsafe {
        let old = std::ptr::replace(out_err, OwnedBuf::from_vec(message.as_bytes().to_vec()));
        old.free_self();
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_abi_magic() -> u64 {
    RIVET_ACTOR_ABI_MAGIC
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_abi_version() -> u64 {
    RIVET_ACTOR_ABI_VERSION
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_plugin_init(out_err: *mut OwnedBuf) -> *mut c_void {
    let result = catch_unwind(|| -> Result<*mut c_void, String> {
        crate::logging::init_from_env();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("agentos-actor")
            .build()
            .map_err(|e| format!("agentOS plugin: build tokio runtime: {e}"))?;
        let default_pool = format!("agentos-actor-{}", uuid::Uuid::new_v4());
        Ok(Box::into_raw(Box::new(Plugin { runtime, default_pool })).cast())
    });
    let message = match result {
        Ok(Ok(plugin)) => return plugin,
        Ok(Err(message)) => message,
        Err(panic) => format!("agentOS plugin init panicked: {}", panic_text(&*panic)),
    };
    // SAFETY: the host passes a valid, pre-set `out_err` slot (ABI §1.2).
    unsafe { write_err(out_err, &message) };
    std::ptr::null_mut()
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_factory_new(
    plugin: *mut c_void,
    config_json: BorrowedBuf,
    sidecar_path: BorrowedBuf,
    out_err: *mut OwnedBuf,
) -> *mut c_void {
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<*mut c_void, String> {
        if plugin.is_null() {
            return Err("agentOS plugin: factory_new got a null plugin".into());
        }
        // SAFETY: non-null `plugin` is the pointer `rivet_actor_plugin_init`
        // returned; the host never frees it while factories exist.
        let plugin = unsafe { &*plugin.cast::<Plugin>() };
        // SAFETY: both buffers are borrowed for this synchronous call only;
        // we copy them before returning.
        let (config_text, sidecar) = unsafe {
            (
                String::from_utf8_lossy(config_json.as_slice()).into_owned(),
                String::from_utf8_lossy(sidecar_path.as_slice()).into_owned(),
            )
        };
        let config = ActorConfig::parse(&config_text)?;
        let custom_actions = crate::actions::custom::specs(&config.custom_actions)?;
        let settings = VmSettings {
            custom_actions,
            config: Arc::new(config),
            sidecar_path: sidecar,
            default_pool: plugin.default_pool.clone(),
        };
        let factory = Factory { handle: plugin.runtime.handle().clone(), settings: Arc::new(settings) };
        Ok(Box::into_raw(Box::new(factory)).cast())
    }));
    let message = match result {
        Ok(Ok(factory)) => return factory,
        Ok(Err(message)) => message,
        Err(panic) => format!("agentOS factory_new panicked: {}", panic_text(&*panic)),
    };
    // SAFETY: the host passes a valid, pre-set `out_err` slot (ABI §1.2).
    unsafe { write_err(out_err, &message) };
    std::ptr::null_mut()
}

/// Fires the host's `done` completion exactly once: explicitly when the
/// actor loop returns, or from `Drop` (status Cancelled) if the task is
/// aborted or panics.
struct DoneGuard {
    done: CompletionFn,
    user_data: SendPtr,
    fired: AtomicBool,
}

struct SendPtr(*mut c_void);
// SAFETY: `user_data` is an opaque token the host gave us to pass back to
// `done`; the ABI allows `done` to be called from any thread.
unsafe impl Send for SendPtr {}

impl DoneGuard {
    fn fire(&self, result: AbiResult) {
        if self.fired.swap(true, Ordering::AcqRel) {
            // SAFETY: the payload is ours and was never handed over; free it once.
            unsafe { result.payload.free_self() };
            return;
        }
        (self.done)(self.user_data.0, result);
    }
}

impl DoneGuard {
    /// Builds the result at the moment of firing, so no raw buffer is ever
    /// held across an await.
    fn fire_with(&self, status: AbiStatus, payload: Vec<u8>) {
        self.fire(AbiResult { status, payload: OwnedBuf::from_vec(payload) });
    }
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        self.fire(AbiResult::status_only(AbiStatus::Cancelled));
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_run(
    factory: *mut c_void,
    host: *const HostVtable,
    done: CompletionFn,
    user_data: *mut c_void,
) -> *mut c_void {
    let guard = DoneGuard { done, user_data: SendPtr(user_data), fired: AtomicBool::new(false) };
    let started = catch_unwind(AssertUnwindSafe(|| start_instance(factory, host)));
    let failure = match started {
        Ok(Ok(live)) => {
            let run = actor::run(live.host.clone(), live.settings, live.vm.clone(), live.cancel.clone());
            live.handle.spawn(async move {
                let outcome = AssertUnwindSafe(run).catch_unwind().await;
                match outcome {
                    Ok(Ok(())) => guard.fire_with(AbiStatus::Ok, Vec::new()),
                    Ok(Err(message)) => guard.fire_with(AbiStatus::Err, message.into_bytes()),
                    Err(panic) => guard.fire_with(
                        AbiStatus::Panic,
                        format!("agentOS actor panicked: {}", panic_text(&*panic)).into_bytes(),
                    ),
                }
            });
            let instance = Instance {
                live: Some(LiveInstance { handle: live.handle, cancel: live.cancel, vm: live.vm, host: live.host }),
            };
            return Box::into_raw(Box::new(instance)).cast();
        }
        Ok(Err(message)) => AbiResult::err(OwnedBuf::from_vec(message.into_bytes())),
        Err(panic) => AbiResult {
            status: AbiStatus::Panic,
            payload: OwnedBuf::from_vec(format!("agentOS run panicked: {}", panic_text(&*panic)).into_bytes()),
        },
    };
    guard.fire(failure);
    Box::into_raw(Box::new(Instance { live: None })).cast()
}

struct Started {
    handle: Handle,
    settings: Arc<VmSettings>,
    cancel: CancellationToken,
    vm: VmSlot,
    host: HostCtx,
}

fn start_instance(factory: *mut c_void, host: *const HostVtable) -> Result<Started, String> {
    if factory.is_null() || host.is_null() {
        return Err("agentOS run: null factory or host vtable".into());
    }
    // SAFETY: non-null `factory` came from `rivet_actor_factory_new`; the host
    // keeps factories alive for the whole process.
    let factory = unsafe { &*factory.cast::<Factory>() };
    // SAFETY: non-null `host` is valid for the duration of this call (ABI §1.2).
    let vtable = unsafe { &*host };
    if vtable.abi_version != rivet_actor_plugin_abi::RIVET_ACTOR_ABI_VERSION {
        return Err(format!("agentOS run: host vtable has ABI version {}, expected 13", vtable.abi_version));
    }
    // SAFETY: `vtable` is the live vtable of this run; `from_vtable` copies it
    // and takes its own ctx reference, released when the HostCtx drops.
    let host = unsafe { HostCtx::from_vtable(vtable) };
    Ok(Started {
        handle: factory.handle.clone(),
        settings: factory.settings.clone(),
        cancel: CancellationToken::new(),
        vm: VmSlot::default(),
        host,
    })
}

/// # Safety (for the three instance entry points)
/// `instance` is null or the pointer `rivet_actor_run` returned, not yet freed.
unsafe fn instance_ref<'a>(instance: *mut c_void) -> Option<&'a Instance> {
    // SAFETY: guaranteed by this function's contract.
    (!instance.is_null()).then(|| unsafe { &*instance.cast::<Instance>() })
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_cancel(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: see `instance_ref`; the host calls this before `instance_free`.
        if let Some(live) = unsafe { instance_ref(instance) }.and_then(|i| i.live.as_ref()) {
            live.cancel.cancel();
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_grace_deadline(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: see `instance_ref`; the host calls this before `instance_free`.
        if let Some(live) = unsafe { instance_ref(instance) }.and_then(|i| i.live.as_ref()) {
            live.cancel.cancel();
            // Non-blocking: the forced VM teardown runs on the plugin runtime.
            let (vm, host) = (live.vm.clone(), live.host.clone());
            live.handle.spawn(async move { vm.shutdown(ShutdownReason::Deadline, &host).await });
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_instance_free(instance: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !instance.is_null() {
            // SAFETY: the host frees each instance once, after `done` fired.
            drop(unsafe { Box::from_raw(instance.cast::<Instance>()) });
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_factory_free(factory: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !factory.is_null() {
            // SAFETY: the host frees each factory once, after its actors ended.
            drop(unsafe { Box::from_raw(factory.cast::<Factory>()) });
        }
    }));
}

#[unsafe(no_mangle)]
pub extern "C" fn rivet_actor_plugin_shutdown(plugin: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if !plugin.is_null() {
            // SAFETY: the host shuts a plugin down once, after its factories.
            let plugin = unsafe { Box::from_raw(plugin.cast::<Plugin>()) };
            // Never block the caller's thread on tasks still running.
            plugin.runtime.shutdown_background();
        }
    }));
}
