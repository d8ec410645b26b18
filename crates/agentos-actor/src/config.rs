//! The plugin's `config_json` (given to `rivet_actor_factory_new`).
//!
//! Every field is optional; unknown fields are rejected so a typo or an option
//! we do not support fails loudly at load time instead of being ignored.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActorConfig {
    /// `.aospkg` packages projected into every VM (the WASM command set, agents).
    #[serde(default)]
    pub packages: Vec<PackageConfig>,
    /// Packages clients may add to a running VM with `linkSoftware`, by
    /// name (name → `.aospkg` path). Nothing else can be linked.
    #[serde(default)]
    pub linkable_packages: std::collections::BTreeMap<String, String>,
    /// Guest mount point of the package projection (default `/opt/agentos`).
    pub packages_mount_at: Option<String>,
    /// Host loopback ports the guest may reach (all others are blocked).
    #[serde(default)]
    pub loopback_exempt_ports: Vec<u16>,
    /// Node builtins the guest may load (default: the sidecar's hardened set).
    pub allowed_node_builtins: Option<Vec<String>>,
    /// Extra OS instructions appended to agent sessions.
    pub additional_instructions: Option<String>,
    /// Which sidecar process hosts the VMs.
    pub sidecar: Option<SidecarConfig>,
    /// Where the VM's root filesystem lives (default: durable, in actor SQLite).
    #[serde(default)]
    pub root_filesystem: RootFilesystem,
    /// Capacity of the root filesystem in bytes of file content, enforced
    /// by the VM's kernel and by the filesystem actions (`ENOSPC`).
    #[serde(default = "default_max_root_bytes")]
    pub max_root_bytes: u64,
    /// Which filesystems clients may mount at runtime (`mountFs`).
    #[serde(default)]
    pub runtime_mounts: RuntimeMounts,
    /// Actions of this deployment that run a command in the VM.
    #[serde(default)]
    pub custom_actions: Vec<crate::actions::custom::CustomAction>,
    /// Host tools the guest can call (`agentos-<toolkit> <tool>`), answered
    /// by connected clients.
    #[serde(default)]
    pub tool_kits: Vec<crate::actions::tools::ToolKit>,
    /// Where guests may connect to (see `crate::network`).
    #[serde(default)]
    pub network: NetworkConfig,
}

/// The guest's network egress: denied except to these hosts (and to host
/// loopback on `loopbackExemptPorts`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkConfig {
    /// Hosts guests may resolve and connect to, on any port: names, IP
    /// addresses or globs (`*.example.com`; `*` is any host). Giving the
    /// field replaces the default, the LLM provider APIs
    /// ([`crate::network::DEFAULT_ALLOW_HOSTS`]); `[]` allows none.
    #[serde(default = "default_allow_hosts")]
    pub allow_hosts: Vec<String>,
}

fn default_allow_hosts() -> Vec<String> {
    crate::network::DEFAULT_ALLOW_HOSTS.iter().map(|h| h.to_string()).collect()
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self { allow_hosts: default_allow_hosts() }
    }
}

impl NetworkConfig {
    /// Normalizes every host; the error names the offending entry.
    fn normalize(&mut self) -> Result<(), String> {
        for (i, host) in self.allow_hosts.iter_mut().enumerate() {
            *host = crate::network::normalize_host(host).map_err(|e| format!("`network.allowHosts[{i}]`: {e}"))?;
        }
        Ok(())
    }
}

/// What `mountFs` may mount. A mount plugin reaches outside the VM (a host
/// directory, a bucket), so each one is opt-in.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeMounts {
    /// Mount plugin ids clients may use (default: only `memory`, a
    /// scratch filesystem that touches nothing outside the VM).
    #[serde(default = "default_mount_plugins")]
    pub plugins: Vec<String>,
    /// Host directories under which `host_dir` mounts may point (their
    /// real paths, after resolving symlinks). Empty: no `host_dir` mounts.
    #[serde(default)]
    pub host_dir_roots: Vec<String>,
}

fn default_mount_plugins() -> Vec<String> {
    vec!["memory".to_owned()]
}

impl Default for RuntimeMounts {
    fn default() -> Self {
        Self { plugins: default_mount_plugins(), host_dir_roots: Vec::new() }
    }
}

/// 1 GiB: room for a real project with its dependencies (the sidecar's own
/// default, 64 MiB, is too small for `node_modules`).
pub const DEFAULT_MAX_ROOT_BYTES: u64 = 1 << 30;

fn default_max_root_bytes() -> u64 {
    DEFAULT_MAX_ROOT_BYTES
}

/// Where the VM's root filesystem lives.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RootFilesystem {
    /// In the actor's SQLite through the host ABI: survives sleep, restarts
    /// and crashes.
    #[default]
    Durable,
    /// The sidecar's in-memory overlay: lost when the VM stops. For
    /// throwaway actors and as the benchmark baseline.
    Ephemeral,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageConfig {
    pub package_path: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarConfig {
    /// A named shared pool. Absent: one sidecar per plugin load.
    pub pool: Option<String>,
}

impl Default for ActorConfig {
    fn default() -> Self {
        Self {
            packages: Vec::new(),
            linkable_packages: Default::default(),
            packages_mount_at: None,
            loopback_exempt_ports: Vec::new(),
            allowed_node_builtins: None,
            additional_instructions: None,
            sidecar: None,
            root_filesystem: RootFilesystem::default(),
            max_root_bytes: DEFAULT_MAX_ROOT_BYTES,
            runtime_mounts: RuntimeMounts::default(),
            custom_actions: Vec::new(),
            tool_kits: Vec::new(),
            network: NetworkConfig::default(),
        }
    }
}

impl ActorConfig {
    /// Parses `config_json`; empty text means all defaults. The error names
    /// the offending field (serde reports `unknown field `x``).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut config: Self = serde_json::from_str(text).map_err(|e| format!("invalid agentOS config_json: {e}"))?;
        config.network.normalize().map_err(|e| format!("invalid agentOS config_json: {e}"))?;
        for kit in &config.tool_kits {
            kit.check().map_err(|e| format!("invalid agentOS config_json: toolKits: {e}"))?;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_means_defaults() {
        assert_eq!(ActorConfig::parse("  ").unwrap(), ActorConfig::default());
        assert_eq!(ActorConfig::parse("{}").unwrap(), ActorConfig::default());
    }

    #[test]
    fn parses_known_fields() {
        let c = ActorConfig::parse(
            r#"{"packages":[{"packagePath":"/p/a.aospkg"}],"loopbackExemptPorts":[8080],"sidecar":{"pool":"x"}}"#,
        )
        .unwrap();
        assert_eq!(c.packages[0].package_path, "/p/a.aospkg");
        assert_eq!(c.loopback_exempt_ports, vec![8080]);
        assert_eq!(c.sidecar.unwrap().pool.as_deref(), Some("x"));
        assert_eq!(c.root_filesystem, RootFilesystem::Durable);
        let c = ActorConfig::parse(r#"{"rootFilesystem":"ephemeral"}"#).unwrap();
        assert_eq!(c.root_filesystem, RootFilesystem::Ephemeral);
        let e = ActorConfig::parse(r#"{"rootFilesystem":"disk"}"#).unwrap_err();
        assert!(e.contains("unknown variant `disk`"), "{e}");
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = ActorConfig::parse(r#"{"toolkits":[]}"#).unwrap_err();
        assert!(e.contains("unknown field `toolkits`"), "{e}");
        let e = ActorConfig::parse(r#"{"toolKits":[{"name":"a b","tools":[{"name":"x"}]}]}"#).unwrap_err();
        assert!(e.contains("`a b`"), "{e}");
        let e = ActorConfig::parse(r#"{"packages":[{"path":"/x"}]}"#).unwrap_err();
        assert!(e.contains("unknown field `path`"), "{e}");
        let e = ActorConfig::parse(r#"{"sidecar":{"kind":"shared"}}"#).unwrap_err();
        assert!(e.contains("unknown field `kind`"), "{e}");
    }

    #[test]
    fn network_allowlist_defaults_to_the_llm_hosts_and_can_be_replaced() {
        let c = ActorConfig::parse("{}").unwrap();
        assert_eq!(c.network.allow_hosts, crate::network::DEFAULT_ALLOW_HOSTS);
        let c = ActorConfig::parse(r#"{"network":{}}"#).unwrap();
        assert_eq!(c.network.allow_hosts, crate::network::DEFAULT_ALLOW_HOSTS);
        let c = ActorConfig::parse(r#"{"network":{"allowHosts":["API.Example.com","*.corp.test"]}}"#).unwrap();
        assert_eq!(c.network.allow_hosts, vec!["api.example.com", "*.corp.test"]);
        let c = ActorConfig::parse(r#"{"network":{"allowHosts":[]}}"#).unwrap();
        assert!(c.network.allow_hosts.is_empty());
    }

    #[test]
    fn bad_network_config_is_named() {
        let e = ActorConfig::parse(r#"{"network":{"allowHosts":["ok.com","https://x.com"]}}"#).unwrap_err();
        assert!(e.contains("`network.allowHosts[1]`") && e.contains("is a URL"), "{e}");
        let e = ActorConfig::parse(r#"{"network":{"allow":["x.com"]}}"#).unwrap_err();
        assert!(e.contains("unknown field `allow`"), "{e}");
        let e = ActorConfig::parse(r#"{"network":{"allowHosts":"x.com"}}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn wrong_types_are_reported() {
        let e = ActorConfig::parse(r#"{"loopbackExemptPorts":["80"]}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }
}
