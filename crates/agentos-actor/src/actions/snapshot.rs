//! Whole-root snapshots of the durable root: export every entry with its
//! bytes, modes, owners, times, symlink targets and hard links, and restore
//! such a snapshot into an actor whose VM is not running (a new actor,
//! before anything else, is the way to start an actor from a snapshot).

use std::collections::HashMap;

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::fs::{Root, fs_error};
use super::reply;
use crate::args::{ArgType, Field, req};
use crate::contract::{ActionSpec, Call, Section};
use crate::error::{ActorError, code};
use crate::fs::{Kind, Owner};

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

pub const FORMAT: &str = "agentos-root-v1";
/// File bytes one snapshot may carry: replies travel base64-encoded
/// inside the 32 MiB message limit.
pub const MAX_SNAPSHOT_BYTES: u64 = 20 << 20;

const SNAPSHOT_FIELDS: &[Field] = &[
    req("format", ArgType::Str, "`agentos-root-v1`."),
    req("entries", ArgType::Json, "The entries, parents before children."),
];

/// The snapshot area of the contract.
pub static SECTION: Section = Section {
    area: "Snapshots",
    actions: &[
        ActionSpec {
            name: "snapshotRootFilesystem",
            summary: "Export the whole durable root: every entry with its bytes, mode, owner, mtime, symlink target and hard links (at most 20 MiB of file content).",
            params: &[],
            returns: "RootSnapshot",
            handler: snapshot_root,
            detached: false,
        },
        ActionSpec {
            name: "restoreRootFilesystem",
            summary: "Write a snapshot into this actor's durable root; the VM must not be running (call it first on a new actor to start that actor from the snapshot).",
            params: &[req("snapshot", ArgType::Object(SNAPSHOT_FIELDS), "A `snapshotRootFilesystem` result.")],
            returns: "{ entries: number; bytes: number }",
            handler: restore_root,
            detached: false,
        },
    ],
    events: &[],
    types: &[
        (
            "SnapshotEntry",
            "{ path: string; type: \"directory\" | \"file\" | \"symlink\" | \"hardlink\"; mode: number; uid: number; gid: number; mtimeMs: number; content?: Uint8Array; target?: string; linkTo?: string }",
        ),
        ("RootSnapshot", "{ format: \"agentos-root-v1\"; entries: SnapshotEntry[] }"),
    ],
};

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    path: String,
    #[serde(rename = "type")]
    kind: EntryKind,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ms: f64,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_bytes")]
    content: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    link_to: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum EntryKind {
    Directory,
    File,
    Symlink,
    Hardlink,
}

/// Bytes as serde bytes on the way out (clients get a Uint8Array); on the
/// way back they arrive as the JSON-compat `["$Uint8Array", base64]` pair.
mod opt_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => s.serialize_bytes(bytes),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Wrapped(String, String),
            Text(String),
        }
        match Option::<Wire>::deserialize(d)? {
            None => Ok(None),
            Some(Wire::Wrapped(tag, b64)) if tag == "$Uint8Array" => base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map(Some)
                .map_err(serde::de::Error::custom),
            Some(Wire::Wrapped(tag, _)) => Err(serde::de::Error::custom(format!("unexpected wrapper `{tag}`"))),
            Some(Wire::Text(text)) => Ok(Some(text.into_bytes())),
        }
    }
}

#[derive(Serialize)]
struct Snapshot {
    format: &'static str,
    entries: Vec<Entry>,
}

async fn durable_root(call: &Call) -> Result<Root, ActorError> {
    call.root().await?.ok_or_else(|| {
        ActorError::new(code::UNSUPPORTED, "this actor's root filesystem is ephemeral (config `rootFilesystem`); snapshots cover the durable root")
    })
}

fn snapshot_root(call: Call) -> Reply {
    async move {
        let root = durable_root(&call).await?;
        if root.is_empty().await.unwrap_or(true) {
            call.vm().await?; // lay the root out first, as any VM sees it
        }
        let mut entries = Vec::new();
        let mut first_path: HashMap<i64, String> = HashMap::new();
        let mut bytes = 0u64;
        let mut queue = vec!["/".to_owned()];
        while let Some(dir) = queue.pop() {
            let mut names = root.read_dir(&dir).await.map_err(|e| fs_error(e, &dir))?;
            names.retain(|n| n != "." && n != "..");
            names.sort();
            for name in names.into_iter().rev() {
                let path = format!("{}/{name}", dir.trim_end_matches('/'));
                let node = root.lstat(&path).await.map_err(|e| fs_error(e, &path))?;
                let mut entry = Entry {
                    path: path.clone(),
                    kind: EntryKind::Directory,
                    mode: node.mode & 0o7777,
                    uid: node.uid,
                    gid: node.gid,
                    mtime_ms: node.mtime_ns as f64 / 1e6,
                    content: None,
                    target: None,
                    link_to: None,
                };
                match node.kind {
                    Kind::Dir => queue.push(path.clone()),
                    Kind::Symlink => {
                        entry.kind = EntryKind::Symlink;
                        entry.target = Some(root.read_link(&path).await.map_err(|e| fs_error(e, &path))?);
                    }
                    _ => {
                        if let Some(first) = first_path.get(&node.ino).filter(|_| node.nlink > 1) {
                            entry.kind = EntryKind::Hardlink;
                            entry.link_to = Some(first.clone());
                        } else {
                            bytes += node.size;
                            if bytes > MAX_SNAPSHOT_BYTES {
                                return Err(ActorError::new(
                                    code::RESOURCE_LIMIT,
                                    format!("the root holds more than {MAX_SNAPSHOT_BYTES} bytes of files; a snapshot reply cannot carry it"),
                                ));
                            }
                            entry.kind = EntryKind::File;
                            entry.content = Some(root.read_file(&path).await.map_err(|e| fs_error(e, &path))?);
                            first_path.insert(node.ino, path.clone());
                        }
                    }
                }
                entries.push(entry);
            }
        }
        // Parents before children, whatever order the walk produced.
        entries.sort_by(|a, b| a.path.split('/').count().cmp(&b.path.split('/').count()).then(a.path.cmp(&b.path)));
        // Hard links after every file they may point to.
        entries.sort_by_key(|e| e.kind == EntryKind::Hardlink);
        reply(&Snapshot { format: FORMAT, entries })
    }
    .boxed()
}

fn restore_root(call: Call) -> Reply {
    async move {
        let snapshot = call.args.object(0)?;
        let format = snapshot.str("format").unwrap_or_default();
        if format != FORMAT {
            return Err(ActorError::invalid_argument("snapshot.format", format!("must be `{FORMAT}`, got `{format}`")));
        }
        let entries: Vec<Entry> = serde_json::from_value(snapshot.json("entries").unwrap_or_default())
            .map_err(|e| ActorError::invalid_argument("snapshot.entries", e))?;
        if call.slot.is_booted() {
            return Err(ActorError::new(
                "vm_running",
                "restoreRootFilesystem needs a stopped VM: call it on a new actor before other actions, or after the actor slept",
            ));
        }
        let root = durable_root(&call).await?;
        let (mut bytes, mut written) = (0u64, 0usize);
        let mut directories = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let argument = format!("snapshot.entries[{index}].path");
            // Read-only system directories (`/proc`, `/etc/agentos`) and
            // kernel-owned ones are laid out by the VM itself.
            match super::fs::check_path(&argument, &entry.path, true) {
                Err(error) if error.code == "EROFS" => continue,
                Err(error) => return Err(error),
                Ok(()) if call.kernel_owned(&entry.path) => continue,
                Ok(()) => {}
            }
            restore_entry(&root, entry).await.map_err(|e| fs_error(e, &entry.path))?;
            bytes += entry.content.as_ref().map_or(0, |c| c.len() as u64);
            written += 1;
            if entry.kind == EntryKind::Directory {
                directories.push(entry);
            }
        }
        // Directory times last, deepest first: creating children changed them.
        for entry in directories.into_iter().rev() {
            let ns = (entry.mtime_ms * 1e6) as i64;
            root.utimes(&entry.path, ns, ns).await.map_err(|e| fs_error(e, &entry.path))?;
        }
        reply(&serde_json::json!({ "entries": written, "bytes": bytes }))
    }
    .boxed()
}

async fn restore_entry(root: &Root, entry: &Entry) -> Result<(), crate::fs::FsError> {
    let path = entry.path.as_str();
    let owner = Owner { uid: entry.uid, gid: entry.gid };
    let existing = root.lstat(path).await.ok();
    match entry.kind {
        EntryKind::Directory => {
            if existing.as_ref().is_some_and(|n| !n.is_dir()) {
                root.remove_file(path).await?;
            }
            if existing.as_ref().is_none_or(|n| !n.is_dir()) {
                root.mkdir_as(path, false, Some(entry.mode), owner).await?;
            }
        }
        EntryKind::File => {
            if existing.as_ref().is_some_and(|n| n.is_symlink()) {
                root.remove_file(path).await?;
            }
            root.write_file_as(path, entry.content.as_deref().unwrap_or_default(), Some(entry.mode), owner).await?;
        }
        EntryKind::Symlink | EntryKind::Hardlink => {
            if existing.is_some() {
                root.remove_file(path).await?;
            }
            match entry.kind {
                EntryKind::Symlink => root.symlink(entry.target.as_deref().unwrap_or_default(), path).await?,
                _ => root.link(entry.link_to.as_deref().unwrap_or_default(), path).await?,
            }
            if entry.kind == EntryKind::Hardlink {
                return Ok(());
            }
        }
    }
    if entry.kind != EntryKind::Symlink {
        root.chmod(path, entry.mode).await?;
    }
    root.chown(path, Some(entry.uid), Some(entry.gid), false).await?;
    let ns = (entry.mtime_ms * 1e6) as i64;
    if entry.kind == EntryKind::File {
        root.utimes(path, ns, ns).await?;
    }
    Ok(())
}
