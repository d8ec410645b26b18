//! Inspecting and signalling spawned processes, and replaying their output.
//! Nothing here boots a VM: with no VM running there is no process.

use futures::FutureExt;

use super::stdin::{OpKind, submit};
use super::{Reply, pid_arg, pid_error, process_not_found};
use crate::actions::{reply, reply_null};
use crate::contract::Call;
use crate::error::ActorError;
use crate::live::lock;

pub fn wait_process(call: Call) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        let (vm, live) = call.slot.running().ok_or_else(|| process_not_found(pid))?;
        // Ours: wait for `processExit` to have gone out, so the output log
        // is complete when the client hears the exit code.
        let exit = lock(&live.processes).get(&pid).map(|state| state.exit.clone());
        let code = match exit {
            Some(mut exit) => {
                let code = exit.wait_for(Option::is_some).await.map_err(|_| vm_gone())?;
                code.expect("waited for Some")
            }
            None => vm.wait_process(pid).await.map_err(|e| pid_error(pid, e))?,
        };
        reply(&code)
    }
    .boxed()
}

fn vm_gone() -> ActorError {
    ActorError::new(crate::error::code::VM_UNAVAILABLE, "the VM stopped before the process exited")
}

pub fn kill_process(call: Call) -> Reply {
    signal(call, true)
}

pub fn stop_process(call: Call) -> Reply {
    signal(call, false)
}

fn signal(call: Call, kill: bool) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        // Ours go through the process's ordered queue (see `stdin`), so a
        // signal sent right after `spawn` is not lost.
        if let Some(result) = submit(&call, pid, OpKind::Signal { kill }).await {
            result?;
            return reply_null();
        }
        let (vm, _) = call.slot.running().ok_or_else(|| process_not_found(pid))?;
        if kill { vm.kill_process(pid) } else { vm.stop_process(pid) }.map_err(|e| pid_error(pid, e))?;
        reply_null()
    }
    .boxed()
}

pub fn get_process(call: Call) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        let (vm, _) = call.slot.running().ok_or_else(|| process_not_found(pid))?;
        reply(&vm.get_process(pid).map_err(|e| pid_error(pid, e))?)
    }
    .boxed()
}

pub fn list_processes(call: Call) -> Reply {
    async move {
        let mut list = call.slot.running().map(|(vm, _)| vm.list_processes()).unwrap_or_default();
        list.sort_by_key(|p| p.pid);
        reply(&list)
    }
    .boxed()
}

pub fn all_processes(call: Call) -> Reply {
    async move {
        let Some((vm, _)) = call.slot.running() else { return reply(&Vec::<()>::new()) };
        reply(&vm.all_processes().await.map_err(ActorError::from_vm)?)
    }
    .boxed()
}

pub fn process_tree(call: Call) -> Reply {
    async move {
        let Some((vm, _)) = call.slot.running() else { return reply(&Vec::<()>::new()) };
        reply(&vm.process_tree().await.map_err(ActorError::from_vm)?)
    }
    .boxed()
}

pub fn read_process_output(call: Call) -> Reply {
    async move {
        let pid = pid_arg(&call)?;
        let after = call.args.opt_uint(1)?.unwrap_or(0);
        let (_, live) = call.slot.running().ok_or_else(|| process_not_found(pid))?;
        let replay = lock(&live.processes).get(&pid).map(|state| state.output.after(after));
        reply(&replay.ok_or_else(|| process_not_found(pid))?)
    }
    .boxed()
}
