//! Filesystem actions over many paths: batch reads and writes (one reply,
//! per-entry results, never a top-level error for one bad entry) and the
//! recursive listing.

use agentos_client::fs::{DirEntryType, ReaddirRecursiveOptions};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::fs::{Root, Route, check_path, fs_error, mkdir_one, read_one, write_one};
use super::reply;
use crate::contract::Call;
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReadResult {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<serde_bytes::ByteBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn read_files(call: Call) -> Reply {
    async move {
        let paths = call.args.str_list(0)?;
        let mut results = Vec::with_capacity(paths.len());
        for (index, path) in paths.into_iter().enumerate() {
            let outcome = read_one(&call, &format!("paths[{index}]"), &path).await;
            results.push(match outcome {
                Ok(bytes) => ReadResult { path, content: Some(serde_bytes::ByteBuf::from(bytes)), error: None },
                Err(error) => ReadResult { path, content: None, error: Some(error.brief()) },
            });
        }
        reply(&results)
    }
    .boxed()
}

#[derive(Serialize)]
struct WriteResult {
    path: String,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn write_files(call: Call) -> Reply {
    async move {
        let entries = call.args.list(0)?;
        let mut results = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let fields = entry.fields();
            let path = fields.str("path").unwrap_or_default();
            let content = fields.bytes("content").unwrap_or_default();
            let argument = format!("entries[{index}].path");
            let outcome = async {
                // Like the VM client: missing parent directories are created.
                if let Some(parent) = path.rfind('/').map(|at| &path[..at]).filter(|p| !p.is_empty()) {
                    check_path(&argument, &path, true)?;
                    mkdir_one(&call, &argument, parent, true).await?;
                }
                write_one(&call, &argument, &path, content).await
            }
            .await;
            results.push(match outcome {
                Ok(()) => WriteResult { path, success: true, error: None },
                Err(error) => WriteResult { path, success: false, error: Some(error.brief()) },
            });
        }
        reply(&results)
    }
    .boxed()
}

#[derive(Serialize)]
struct Listed {
    path: String,
    #[serde(rename = "type")]
    kind: DirEntryType,
    size: u64,
}

pub fn readdir_recursive(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        let options = call.args.object(1)?;
        check_path("path", &path, false)?;
        let max_depth = options.uint("maxDepth").map(|d| d as u32);
        let exclude = options.str_list("exclude").unwrap_or_default();
        let listed = match call.route(&[&path]).await? {
            Route::Direct(root) => walk(&call, &root, &path, max_depth, &exclude).await?,
            Route::Vm(vm) => from_vm(&vm, &path, max_depth, &exclude).await?,
        };
        reply(&listed)
    }
    .boxed()
}

async fn from_vm(
    vm: &agentos_client::AgentOs,
    path: &str,
    max_depth: Option<u32>,
    exclude: &[String],
) -> Result<Vec<Listed>, ActorError> {
    let options = ReaddirRecursiveOptions { max_depth, exclude: exclude.to_vec() };
    let entries = vm.readdir_recursive(path, options).await.map_err(|e| ActorError::from_vm_path(e, path))?;
    Ok(entries.into_iter().map(|e| Listed { path: e.path, kind: e.entry_type, size: e.size }).collect())
}

/// Lists the durable root, sorted by path. A subtree the VM holds (a
/// `mountFs` mount, `/proc`, the packages) is listed by the VM.
async fn walk(
    call: &Call,
    root: &Root,
    top: &str,
    max_depth: Option<u32>,
    exclude: &[String],
) -> Result<Vec<Listed>, ActorError> {
    let mut out = Vec::new();
    // (directory, its depth: 0 for the children of `top`)
    let mut stack = vec![(top.to_owned(), 0u32)];
    while let Some((dir, depth)) = stack.pop() {
        let mut entries = root.read_dir_with_types(&dir).await.map_err(|e| fs_error(e, &dir))?;
        entries.retain(|e| e.name != "." && e.name != ".." && !exclude.contains(&e.name));
        for entry in entries {
            let path = format!("{}/{}", dir.trim_end_matches('/'), entry.name);
            let node = root.lstat(&path).await.map_err(|e| fs_error(e, &path))?;
            let kind = if node.is_symlink() {
                DirEntryType::Symlink
            } else if node.is_dir() {
                DirEntryType::Directory
            } else {
                DirEntryType::File
            };
            let descend = kind == DirEntryType::Directory && max_depth.is_none_or(|max| depth < max);
            out.push(Listed { path: path.clone(), kind, size: node.reported_size() });
            if !descend {
                continue;
            }
            if call.vm_owned(&path).await? {
                let below = max_depth.map(|max| max - depth - 1);
                let vm = call.vm().await?;
                out.extend(from_vm(&vm, &path, below, exclude).await?);
            } else {
                stack.push((path, depth + 1));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
