//! Filesystems mounted at runtime (`mountFs` / `unmountFs`): checked against
//! the config's `runtimeMounts`, stored in the actor's SQLite and mounted
//! again whenever the VM boots. The filesystem actions send paths under a
//! mount to the VM, since the mount, not the durable root, holds them.

use std::sync::Mutex;

use agentos_client::AgentOs;
use agentos_client::MountPlugin;
use agentos_client::fs::DynamicMountDescriptor;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use super::fs::{check_path, under};
use super::{reply, reply_null};
use crate::args::{ArgType, Field, opt, req};
use crate::config::RuntimeMounts;
use crate::contract::{ActionSpec, Call, Section};
use crate::error::{ActorError, code, internal_while};
use crate::host::HostCtx;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

const DRIVER: &[Field] = &[
    req("id", ArgType::Str, "Native mount plugin id (`memory`, `host_dir`, ... as allowed by config `runtimeMounts`)."),
    opt("config", ArgType::Json, "The plugin's config, e.g. `{ hostPath }` for `host_dir`."),
];
const MOUNT_OPTIONS: &[Field] = &[opt("readOnly", ArgType::Bool, "Mount read-only (default false).")];

/// The mounts area of the contract.
pub static SECTION: Section = Section {
    area: "Mounts",
    actions: &[
        ActionSpec {
            name: "mountFs",
            summary: "Mount a filesystem at `path` now and at every later VM boot (stored in the actor).",
            params: &[
                req("path", ArgType::Str, "Absolute guest path of the mount point."),
                req("driver", ArgType::Object(DRIVER), "Which native plugin, with its config."),
                opt("options", ArgType::Object(MOUNT_OPTIONS), "Mount options."),
            ],
            returns: "null",
            handler: mount_fs,
            detached: false,
        },
        ActionSpec {
            name: "unmountFs",
            summary: "Remove a mount added with `mountFs` (now and for later boots).",
            params: &[req("path", ArgType::Str, "The mount point.")],
            returns: "null",
            handler: unmount_fs,
            detached: false,
        },
        ActionSpec {
            name: "listMounts",
            summary: "The VM's live mount table; `persisted` marks mounts added with `mountFs`.",
            params: &[],
            returns: "MountEntry[]",
            handler: list_mounts,
            detached: false,
        },
    ],
    events: &[],
    types: &[("MountEntry", "{ path: string; kind: string; readOnly: boolean; persisted: boolean }")],
};

/// One stored mount.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMount {
    pub path: String,
    pub plugin: String,
    pub config: Value,
    pub read_only: bool,
}

impl StoredMount {
    fn descriptor(&self) -> DynamicMountDescriptor {
        DynamicMountDescriptor {
            path: self.path.clone(),
            plugin: MountPlugin { id: self.plugin.clone(), config: Some(self.config.clone()) },
            read_only: self.read_only,
        }
    }
}

/// The stored mount points, read from SQLite once per actor instance and
/// kept in step by `mountFs` / `unmountFs`.
#[derive(Default)]
pub struct MountTable {
    points: tokio::sync::OnceCell<Mutex<Vec<StoredMount>>>,
}

impl MountTable {
    async fn loaded(&self, host: &HostCtx) -> Result<&Mutex<Vec<StoredMount>>, ActorError> {
        self.points
            .get_or_try_init(|| async { load(host).await.map(Mutex::new) })
            .await
    }

    /// Every stored mount.
    pub async fn all(&self, host: &HostCtx) -> Result<Vec<StoredMount>, ActorError> {
        Ok(crate::live::lock(self.loaded(host).await?).clone())
    }

    /// Whether `path` is a stored mount point or below one.
    pub async fn covers(&self, host: &HostCtx, path: &str) -> Result<bool, ActorError> {
        let table = self.loaded(host).await?;
        Ok(crate::live::lock(table).iter().any(|m| under(path, &m.path)))
    }

    async fn insert(&self, host: &HostCtx, mount: StoredMount) -> Result<(), ActorError> {
        host.db_run(
            "INSERT OR REPLACE INTO agentos_mounts (path, plugin, config, read_only) VALUES (?, ?, ?, ?)",
            &json!([mount.path, mount.plugin, mount.config.to_string(), mount.read_only as i64]),
        )
        .await
        .map_err(internal_while("store mount"))?;
        let mut table = crate::live::lock(self.loaded(host).await?);
        table.retain(|m| m.path != mount.path);
        table.push(mount);
        Ok(())
    }

    async fn remove(&self, host: &HostCtx, path: &str) -> Result<(), ActorError> {
        host.db_run("DELETE FROM agentos_mounts WHERE path = ?", &json!([path]))
            .await
            .map_err(internal_while("delete mount"))?;
        crate::live::lock(self.loaded(host).await?).retain(|m| m.path != path);
        Ok(())
    }
}

async fn load(host: &HostCtx) -> Result<Vec<StoredMount>, ActorError> {
    let rows = host
        .db_query("SELECT path, plugin, config, read_only FROM agentos_mounts ORDER BY path", &json!([]))
        .await
        .map_err(internal_while("read mounts"))?;
    Ok(rows
        .iter()
        .map(|row| StoredMount {
            path: row.get("path").and_then(Value::as_str).unwrap_or_default().to_owned(),
            plugin: row.get("plugin").and_then(Value::as_str).unwrap_or_default().to_owned(),
            config: row
                .get("config")
                .and_then(Value::as_str)
                .and_then(|c| serde_json::from_str(c).ok())
                .unwrap_or(Value::Null),
            read_only: row.get("read_only").and_then(Value::as_i64).unwrap_or(0) != 0,
        })
        .collect())
}

/// Mounts every stored mount into a freshly booted VM. A mount that fails
/// (its host directory is gone, say) is logged and skipped: the VM still
/// boots and the mount stays stored until it is unmounted.
pub async fn apply_stored(vm: &AgentOs, table: &MountTable, host: &HostCtx) {
    let mounts = match table.all(host).await {
        Ok(mounts) => mounts,
        Err(e) => return host.log(4, &format!("agentOS: stored mounts unreadable: {e}")),
    };
    for mount in mounts {
        if let Err(e) = vm.mount_fs(mount.descriptor()).await {
            host.log(3, &format!("agentOS: stored mount {} ({}) failed at boot: {e:#}", mount.path, mount.plugin));
        }
    }
}

/// Refuses mounts the config does not allow, and `host_dir` paths outside
/// the configured roots (symlinks resolved, so none can escape).
fn check_allowed(policy: &RuntimeMounts, plugin: &str, config: &Value) -> Result<(), ActorError> {
    if !policy.plugins.iter().any(|p| p == plugin) {
        return Err(ActorError::new(
            code::INVALID_ARGUMENT,
            format!(
                "argument `driver.id`: mount plugin `{plugin}` is not allowed here (config `runtimeMounts.plugins`: {})",
                policy.plugins.join(", ")
            ),
        )
        .with_metadata(json!({ "argument": "driver.id", "plugin": plugin })));
    }
    if plugin != "host_dir" {
        return Ok(());
    }
    let host_path = config.get("hostPath").and_then(Value::as_str).ok_or_else(|| {
        ActorError::invalid_argument("driver.config.hostPath", "is required for `host_dir` (a host directory)")
    })?;
    let real = std::fs::canonicalize(host_path).map_err(|e| {
        ActorError::invalid_argument("driver.config.hostPath", format!("`{host_path}` cannot be resolved: {e}"))
    })?;
    let allowed = policy
        .host_dir_roots
        .iter()
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .any(|root| real.starts_with(&root));
    if !allowed {
        return Err(ActorError::invalid_argument(
            "driver.config.hostPath",
            format!("`{host_path}` is outside the allowed host directories (config `runtimeMounts.hostDirRoots`)"),
        ));
    }
    Ok(())
}

fn mount_fs(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, true)?;
        if path == "/" || call.kernel_owned(&path) {
            return Err(ActorError::invalid_argument("path", format!("`{path}` cannot be a mount point (the root or a kernel directory)")));
        }
        let driver = call.args.object(1)?;
        let plugin = driver.str("id").unwrap_or_default();
        let config = driver.json("config").unwrap_or_else(|| json!({}));
        check_allowed(&call.settings.config.runtime_mounts, &plugin, &config)?;
        let read_only = call.args.object(2)?.bool("readOnly").unwrap_or(false);
        let mount = StoredMount { path: path.clone(), plugin, config, read_only };
        let vm = call.vm().await?;
        // The mount point must exist in the guest, like `mount(8)`'s target.
        if !vm.exists(&path).await.unwrap_or(false) {
            vm.mkdir(&path, agentos_client::fs::MkdirOptions { recursive: true })
                .await
                .map_err(|e| ActorError::from_vm_path(e, &path))?;
        }
        vm.mount_fs(mount.descriptor()).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        // Stored only once it worked, so a failed mount leaves nothing behind.
        call.slot.mounts().insert(&call.host, mount).await?;
        reply_null()
    }
    .boxed()
}

fn unmount_fs(call: Call) -> Reply {
    async move {
        let path = call.args.str(0)?;
        check_path("path", &path, true)?;
        let stored = call.slot.mounts().all(&call.host).await?;
        if !stored.iter().any(|m| m.path == path) {
            return Err(ActorError::new(code::NOT_FOUND, format!("no mount added with mountFs at {path}"))
                .with_field("path", path.as_str()));
        }
        if let Some((vm, _)) = call.slot.running() {
            vm.unmount_fs(&path).await.map_err(|e| ActorError::from_vm_path(e, &path))?;
        }
        call.slot.mounts().remove(&call.host, &path).await?;
        reply_null()
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MountEntry {
    path: String,
    kind: String,
    read_only: bool,
    persisted: bool,
}

fn list_mounts(call: Call) -> Reply {
    async move {
        let vm = call.vm().await?;
        let stored = call.slot.mounts().all(&call.host).await?;
        let live = vm.list_mounts().await.map_err(ActorError::from_vm)?;
        let entries: Vec<MountEntry> = live
            .into_iter()
            .map(|m| MountEntry {
                persisted: stored.iter().any(|s| s.path == m.path),
                path: m.path,
                kind: m.kind,
                read_only: m.read_only,
            })
            .collect();
        reply(&entries)
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_plugins_and_host_dirs_are_allowed() {
        let dir = std::env::temp_dir().join(format!("agentos-mounts-{}", std::process::id()));
        let inside = dir.join("allowed/data");
        std::fs::create_dir_all(&inside).unwrap();
        let policy = RuntimeMounts {
            plugins: vec!["memory".into(), "host_dir".into()],
            host_dir_roots: vec![dir.join("allowed").display().to_string()],
        };
        check_allowed(&policy, "memory", &json!({})).unwrap();
        check_allowed(&policy, "host_dir", &json!({ "hostPath": inside.display().to_string() })).unwrap();
        let e = check_allowed(&policy, "s3", &json!({})).unwrap_err();
        assert!(e.message.contains("`driver.id`") && e.message.contains("s3"), "{}", e.message);
        let escape = format!("{}/../..", inside.display());
        let e = check_allowed(&policy, "host_dir", &json!({ "hostPath": escape })).unwrap_err();
        assert!(e.message.contains("outside"), "{}", e.message);
        let e = check_allowed(&policy, "host_dir", &json!({})).unwrap_err();
        assert!(e.message.contains("hostPath"), "{}", e.message);
        let e = check_allowed(&RuntimeMounts::default(), "host_dir", &json!({ "hostPath": "/" })).unwrap_err();
        assert!(e.message.contains("not allowed"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
