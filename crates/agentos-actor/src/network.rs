//! The guest network policy every VM boots with: egress denied by default,
//! except to an allowlist of hosts (the LLM providers unless configured).
//!
//! How sidecar 0.2.21 checks guest networking (observed with the real
//! sidecar; README "Guest network policy"):
//! - `http` (operation `network.http`) guards every outbound TCP connection
//!   (`fetch`, `node:http`, `net.connect`) against `tcp://HOST:PORT`, HOST
//!   being the name the guest used, checked *before* any DNS lookup;
//! - `dns` guards name resolution against `dns://NAME` (`localhost` itself
//!   is resolved without it);
//! - `listen` guards guest servers against `tcp://ADDR:PORT`;
//! - patterns are globs: `*` stops at `/`, `**` does not; a denied check
//!   fails the guest call with `EACCES ... blocked by network.<op> policy`.
//!
//! Host loopback has a second, separate gate in the sidecar: a guest reaches
//! 127.0.0.0/8 or ::1 only on a port one of its own servers owns or on a
//! `loopbackExemptPorts` port. So the policy allows loopback connections and
//! leaves the choice of ports to that gate.

use std::net::IpAddr;

use agentos_client::config::{PatternPermissionRule, PatternPermissions, PermissionMode, Permissions, RulePermissions};

/// The LLM provider API hosts guests may reach by default: Anthropic,
/// OpenAI, Gemini, OpenRouter.
pub const DEFAULT_ALLOW_HOSTS: &[&str] =
    &["api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com", "openrouter.ai"];

/// How a guest names host loopback in the sidecar's `tcp://` resources.
const LOOPBACK_HOSTS: &[&str] = &["127.0.0.1", "localhost", "::1"];

/// The VM's permissions: only the network scope is set; the others keep
/// the sidecar's defaults (allowed: they are virtualized inside the VM).
pub fn guest_permissions(allow_hosts: &[String]) -> Permissions {
    // Guest servers live in the VM's own socket table; the sidecar already
    // refuses binds to anything but loopback or the unspecified address.
    let mut rules = vec![allow(&["listen"], vec!["**".to_owned()])];
    rules.push(allow(&["http"], LOOPBACK_HOSTS.iter().map(|h| tcp_any_port(h)).collect()));
    // The sidecar rejects a rule with no patterns, so an empty allowlist
    // adds no rule at all.
    if !allow_hosts.is_empty() {
        rules.push(allow(&["dns"], allow_hosts.iter().map(|h| format!("dns://{h}")).collect()));
        rules.push(allow(&["http"], allow_hosts.iter().map(|h| tcp_any_port(h)).collect()));
    }
    Permissions {
        network: Some(PatternPermissions::Rules(RulePermissions { default: Some(PermissionMode::Deny), rules })),
        ..Permissions::default()
    }
}

fn allow(operations: &[&str], patterns: Vec<String>) -> PatternPermissionRule {
    PatternPermissionRule {
        mode: PermissionMode::Allow,
        operations: Some(operations.iter().map(|s| s.to_string()).collect()),
        patterns: Some(patterns),
    }
}

fn tcp_any_port(host: &str) -> String {
    format!("tcp://{host}:*")
}

/// Checks one `allowHosts` entry and returns it normalized (lowercase, IPv6
/// without brackets): a host name, an IP address, or a glob such as
/// `*.example.com` (`*` alone: any host). Every port of the host is allowed.
pub fn normalize_host(entry: &str) -> Result<String, String> {
    let host = entry.trim().to_ascii_lowercase();
    if host.is_empty() {
        return Err("a host must not be empty".into());
    }
    let unbracketed = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(&host);
    if unbracketed.parse::<IpAddr>().is_ok() {
        return Ok(unbracketed.to_owned());
    }
    if host.contains("://") {
        return Err(format!("`{entry}` is a URL; give the host name only"));
    }
    if host.contains('/') {
        return Err(format!("`{entry}` has a path; give the host name only"));
    }
    if host.contains(':') {
        return Err(format!("`{entry}` has a port; give the host name only (every port is allowed)"));
    }
    if let Some(bad) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '*'))) {
        return Err(format!("`{entry}` is not a host name (character `{bad}`)"));
    }
    if host.starts_with('.') || host.ends_with('.') || host.contains("..") {
        return Err(format!("`{entry}` is not a host name (empty label)"));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(p: &Permissions) -> &RulePermissions<PatternPermissionRule> {
        match p.network.as_ref().expect("network scope set") {
            PatternPermissions::Rules(r) => r,
            PatternPermissions::Mode(m) => panic!("expected rules, got {m:?}"),
        }
    }

    fn allowed(p: &Permissions, op: &str) -> Vec<String> {
        rules(p)
            .rules
            .iter()
            .filter(|r| r.mode == PermissionMode::Allow && r.operations.as_ref().unwrap().iter().any(|o| o == op))
            .flat_map(|r| r.patterns.clone().unwrap())
            .collect()
    }

    #[test]
    fn denies_by_default_and_allows_the_llm_hosts() {
        let hosts: Vec<String> = DEFAULT_ALLOW_HOSTS.iter().map(|h| h.to_string()).collect();
        let p = guest_permissions(&hosts);
        assert_eq!(rules(&p).default, Some(PermissionMode::Deny));
        for host in ["api.anthropic.com", "api.openai.com", "generativelanguage.googleapis.com", "openrouter.ai"] {
            assert!(allowed(&p, "dns").contains(&format!("dns://{host}")), "{host}");
            assert!(allowed(&p, "http").contains(&format!("tcp://{host}:*")), "{host}");
        }
        // Nothing else resolves; nothing but loopback and the list connects.
        assert_eq!(allowed(&p, "dns").len(), 4);
        assert_eq!(allowed(&p, "http").len(), 4 + LOOPBACK_HOSTS.len());
        // Only the network scope is set.
        assert_eq!(Permissions { network: None, ..p.clone() }, Permissions::default());
    }

    #[test]
    fn loopback_and_guest_servers_stay_allowed() {
        let p = guest_permissions(&[]);
        assert_eq!(allowed(&p, "listen"), vec!["**"]);
        assert_eq!(allowed(&p, "http"), vec!["tcp://127.0.0.1:*", "tcp://localhost:*", "tcp://::1:*"]);
        // An empty allowlist adds no rule (the sidecar rejects empty patterns).
        assert!(allowed(&p, "dns").is_empty());
        assert!(rules(&p).rules.iter().all(|r| !r.patterns.as_ref().unwrap().is_empty()));
    }

    #[test]
    fn policy_serializes_to_the_sidecar_shape() {
        let p = guest_permissions(&["llm.localhost".to_owned()]);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["network"]["default"], "deny");
        assert_eq!(
            json["network"]["rules"][3],
            serde_json::json!({ "mode": "allow", "operations": ["http"], "patterns": ["tcp://llm.localhost:*"] })
        );
    }

    #[test]
    fn host_entries_are_normalized() {
        assert_eq!(normalize_host(" API.Example.COM ").unwrap(), "api.example.com");
        assert_eq!(normalize_host("*.example.com").unwrap(), "*.example.com");
        assert_eq!(normalize_host("*").unwrap(), "*");
        assert_eq!(normalize_host("10.0.0.1").unwrap(), "10.0.0.1");
        assert_eq!(normalize_host("[2001:DB8::1]").unwrap(), "2001:db8::1");
        assert_eq!(normalize_host("2001:db8::1").unwrap(), "2001:db8::1");
    }

    #[test]
    fn bad_host_entries_say_what_is_wrong() {
        for (entry, says) in [
            ("", "must not be empty"),
            ("https://api.openai.com", "is a URL"),
            ("api.openai.com/v1", "has a path"),
            ("api.openai.com:443", "has a port"),
            ("api openai", "character ` `"),
            ("a..b", "empty label"),
            (".example.com", "empty label"),
        ] {
            let e = normalize_host(entry).unwrap_err();
            assert!(e.contains(says), "{entry:?}: {e}");
        }
    }
}
