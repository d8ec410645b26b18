//! Software added to a running VM (`linkSoftware`).
//!
//! A client names a package; only packages the operator listed in the
//! config (`linkablePackages`, name → `.aospkg` path) can be linked, since
//! linking runs the package's files in the VM. Linked names are kept in
//! SQLite, so a VM booted later (after sleep or a restart) has them again.

use std::collections::BTreeMap;

use agentos_client::{AgentOs, PackageDescriptor};
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::reply;
use crate::contract::Call;
use crate::error::{ActorError, code, internal_while};
use crate::host::HostCtx;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// `linkSoftware(name)`: links the configured package into the running VM
/// and replies with the VM's software after it.
pub fn link_software(call: Call) -> Reply {
    async move {
        let name = call.args.str(0)?;
        let path = linkable_path(&call.settings.config.linkable_packages, &name)?;
        let vm = call.vm().await?;
        link(&vm, &name, path).await?;
        call.host
            .db_run("INSERT INTO agentos_linked_software (name) VALUES (?) ON CONFLICT (name) DO NOTHING", &json!([name]))
            .await
            .map_err(internal_while("store the linked package"))?;
        reply(&super::system::software_entries(&vm).await?)
    }
    .boxed()
}

/// The package path the config allows for `name`.
fn linkable_path<'a>(allowed: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, ActorError> {
    allowed.get(name).map(String::as_str).ok_or_else(|| {
        let names: Vec<&str> = allowed.keys().map(String::as_str).collect();
        let listed = if names.is_empty() { "none".to_owned() } else { names.join(", ") };
        ActorError::new(code::NOT_FOUND, format!("argument `name`: `{name}` is not a linkable package (config `linkablePackages`: {listed})"))
            .with_metadata(json!({ "argument": "name", "name": name }))
    })
}

async fn link(vm: &AgentOs, name: &str, path: &str) -> Result<(), ActorError> {
    vm.link_software(PackageDescriptor { path: path.to_owned() })
        .await
        .map_err(|e| ActorError::from_vm(e.into()))
        .map_err(|e| ActorError::new(e.code.clone(), format!("linking package `{name}` failed: {}", e.message)))
}

/// Links the stored packages into a newly booted VM. A failure is logged,
/// not fatal: the VM still serves everything else.
pub async fn relink_stored(vm: &AgentOs, allowed: &BTreeMap<String, String>, host: &HostCtx) {
    let rows = match host.db_query("SELECT name FROM agentos_linked_software ORDER BY rowid", &json!([])).await {
        Ok(rows) => rows,
        Err(e) => return host.log(4, &format!("agentOS: linked packages unreadable: {e:#}")),
    };
    for name in rows.iter().filter_map(|row| row.get("name").and_then(|n| n.as_str())) {
        let result = match linkable_path(allowed, name) {
            Ok(path) => link(vm, name, path).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            host.log(3, &format!("agentOS: linked package `{name}` not linked again at boot: {}", e.message));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_packages_are_linkable() {
        let allowed = BTreeMap::from([("tar".to_owned(), "/pkgs/tar.aospkg".to_owned())]);
        assert_eq!(linkable_path(&allowed, "tar").unwrap(), "/pkgs/tar.aospkg");
        let e = linkable_path(&allowed, "../tar").unwrap_err();
        assert_eq!(e.code, code::NOT_FOUND);
        assert!(e.message.contains("`name`") && e.message.contains("../tar") && e.message.contains("tar"), "{}", e.message);
        let e = linkable_path(&BTreeMap::new(), "tar").unwrap_err();
        assert!(e.message.contains("none"), "{}", e.message);
    }
}
