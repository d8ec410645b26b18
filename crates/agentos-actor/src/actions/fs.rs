//! Filesystem actions over the VM's kernel.

use agentos_client::fs::{MkdirOptions, RemoveOptions};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::{reply, reply_null};
use crate::contract::Call;
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

pub fn read_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let bytes = call.vm.read_file(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply(&serde_bytes::ByteBuf::from(bytes))
    }
    .boxed()
}

pub fn write_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let content = call.args.bytes(1)?;
        call.vm
            .write_file(&path, content)
            .await
            .map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply_null()
    }
    .boxed()
}

pub fn mkdir(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let recursive = call.args.object(1)?.bool("recursive").unwrap_or(true);
        call.vm
            .mkdir(&path, MkdirOptions { recursive })
            .await
            .map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply_null()
    }
    .boxed()
}

pub fn readdir(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let mut names = call.vm.readdir(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        names.retain(|n| n != "." && n != "..");
        reply(&names)
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DirEntry {
    name: String,
    is_directory: bool,
    is_symbolic_link: bool,
}

pub fn readdir_entries(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        match call.vm.readdir_entries(&path).await {
            Ok(entries) => {
                let entries: Vec<DirEntry> = entries
                    .into_iter()
                    .filter(|e| e.name != "." && e.name != "..")
                    .map(|e| DirEntry {
                        name: e.name,
                        is_directory: e.is_directory,
                        is_symbolic_link: e.is_symbolic_link,
                    })
                    .collect();
                reply(&entries)
            }
            Err(error) => {
                // Upstream contract: a missing path or a non-directory is `null`.
                let mapped = ActorError::from_vm_path(error, &path);
                if mapped.code == "ENOENT" || mapped.code == "ENOTDIR" {
                    reply(&Option::<()>::None)
                } else {
                    Err(mapped)
                }
            }
        }
    }
    .boxed()
}

pub fn stat(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let stat = call.vm.stat(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply(&stat)
    }
    .boxed()
}

pub fn exists(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let exists = call.vm.exists(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply(&exists)
    }
    .boxed()
}

pub fn move_path(call: Call) -> Reply {
    async move {
        let from = call.args.str(0)?;
        let to = call.args.str(1)?;
        call.vm
            .move_path(&from, &to)
            .await
            .map_err(|e| ActorError::from_vm_path(e, &from).with_to(&to))?;
        reply_null()
    }
    .boxed()
}

pub fn delete_file(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let recursive = call.args.object(1)?.bool("recursive").unwrap_or(false);
        call.vm
            .remove(&path, RemoveOptions { recursive })
            .await
            .map_err(|e| ActorError::from_vm_path(e, &path))?;
        reply_null()
    }
    .boxed()
}

#[derive(Serialize)]
struct CheckReply {
    clean: bool,
    inodes: usize,
    entries: usize,
    chunks: usize,
    problems: Vec<String>,
}

pub fn check_root(call: Call) -> Reply {
    async move {
        let root = call.root.ok_or_else(|| {
            ActorError::new(
                crate::error::code::UNSUPPORTED,
                "this actor's root filesystem is ephemeral (config `rootFilesystem`); there is nothing stored to check",
            )
        })?;
        let report = root.check().await.map_err(|e| ActorError::internal(format!("check the durable root: {e:#}")))?;
        reply(&CheckReply {
            clean: report.is_clean(),
            inodes: report.inodes,
            entries: report.entries,
            chunks: report.chunks,
            problems: report.problems.iter().map(|p| format!("{p:?}")).collect(),
        })
    }
    .boxed()
}
