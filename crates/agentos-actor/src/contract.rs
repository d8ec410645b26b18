//! The action and event contract: one table that drives dispatch, argument
//! decoding, the README's action reference and the generated TypeScript
//! typing (`typings/agentos-actor.d.ts`). Add an action here and everything
//! else follows; tests fail when the checked-in renderings drift.

use futures::future::BoxFuture;

use crate::actions::{cron, fs, mounts, net, process, sessions, shell, snapshot, system, tools};
use crate::args::{Args, Field};
use crate::error::ActorError;
use crate::host::HostCtx;

/// Everything a handler gets: the actor's VM slot (the VM boots on first
/// use), the host, its decoded arguments.
pub struct Call {
    /// The action's name (custom actions share one handler).
    pub name: &'static str,
    pub slot: crate::vm::VmSlot,
    pub settings: std::sync::Arc<crate::vm::VmSettings>,
    pub host: HostCtx,
    pub args: Args,
}

impl Call {
    /// The running VM, booted now if needed.
    pub async fn vm(&self) -> Result<agentos_client::AgentOs, ActorError> {
        self.slot.ensure(&self.settings, &self.host).await
    }

    /// The running VM (booted now if needed) with the processes and shells
    /// clients started in it.
    pub async fn live(&self) -> Result<(agentos_client::AgentOs, std::sync::Arc<crate::live::Live>), ActorError> {
        self.slot.ensure_live(&self.settings, &self.host).await
    }

    /// The durable root filesystem; None when the config chose an
    /// ephemeral root.
    pub async fn root(&self) -> Result<Option<std::sync::Arc<crate::fs::Fs<HostCtx>>>, ActorError> {
        self.slot.root(&self.settings, &self.host).await
    }
}

/// A handler returns the CBOR reply bytes (JSON-compat encoded).
pub type Handler = fn(Call) -> BoxFuture<'static, Result<Vec<u8>, ActorError>>;

pub struct ActionSpec {
    pub name: &'static str,
    pub summary: &'static str,
    pub params: &'static [Field],
    /// The reply's TypeScript type.
    pub returns: &'static str,
    pub handler: Handler,
    /// Long-running guest work: the worker starts it in order (booting the
    /// VM first) but does not wait for it, so later actions of the actor
    /// run meanwhile; its reply comes when it ends.
    pub detached: bool,
}

impl std::fmt::Debug for ActionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionSpec").field("name", &self.name).finish_non_exhaustive()
    }
}

pub struct EventSpec {
    pub name: &'static str,
    pub summary: &'static str,
    /// The single argument's TypeScript type.
    pub payload: &'static str,
}

/// One area's slice of the contract: its actions, events and named reply
/// types. The sections together are the table.
pub struct Section {
    pub area: &'static str,
    pub actions: &'static [ActionSpec],
    pub events: &'static [EventSpec],
    pub types: &'static [(&'static str, &'static str)],
}

/// The whole contract, area by area.
pub static SECTIONS: &[&Section] = &[&fs::SECTION, &snapshot::SECTION, &mounts::SECTION, &process::SECTION, &shell::SECTION, &net::SECTION, &cron::SECTION, &sessions::SECTION, &tools::SECTION, &system::SECTION, &LIFECYCLE];

/// Events about the VM itself.
static LIFECYCLE: Section = Section {
    area: "VM lifecycle",
    actions: &[],
    events: &[
        EventSpec { name: "vmBooted", summary: "The actor's VM finished booting.", payload: "{}" },
        EventSpec {
            name: "vmShutdown",
            summary: "The actor's VM stopped (`crashed`: its sidecar process died; the next action boots a new VM on the same durable root).",
            payload: "{ reason: \"sleep\" | \"destroy\" | \"stopped\" | \"deadline\" | \"crashed\" }",
        },
    ],
    types: &[],
};

/// Every action, in table order.
pub fn actions() -> impl Iterator<Item = &'static ActionSpec> {
    SECTIONS.iter().flat_map(|s| s.actions.iter())
}

/// Every event, in table order.
pub fn events() -> impl Iterator<Item = &'static EventSpec> {
    SECTIONS.iter().flat_map(|s| s.events.iter())
}

/// Looks up an action by its exact name.
pub fn find(name: &str) -> Option<&'static ActionSpec> {
    actions().find(|a| a.name == name)
}

fn ts_params(params: &[Field]) -> String {
    params
        .iter()
        .map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, p.ty.ts()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The TypeScript declaration of the actor's actions and events.
pub fn render_typescript() -> String {
    let mut out = String::from(
        "// Generated from crates/agentos-actor/src/contract.rs by `cargo run -p agentos-actor --bin agentos-typings -- --write`. Do not edit.\n\n",
    );
    for (name, body) in SECTIONS.iter().flat_map(|s| s.types.iter()) {
        out.push_str(&format!("export type {name} = {body};\n"));
    }
    out.push_str("\nexport interface AgentOsActions {\n");
    for action in actions() {
        out.push_str(&format!("  /** {} */\n", action.summary));
        out.push_str(&format!(
            "  {}({}): Promise<{}>;\n",
            action.name,
            ts_params(action.params),
            action.returns
        ));
    }
    out.push_str("}\n\nexport interface AgentOsEvents {\n");
    for event in events() {
        out.push_str(&format!("  /** {} */\n", event.summary));
        out.push_str(&format!("  {}: (payload: {}) => void;\n", event.name, event.payload));
    }
    out.push_str("}\n");
    out
}

/// The Markdown action reference embedded in the README, one part per area.
pub fn render_markdown() -> String {
    let mut out = String::new();
    for section in SECTIONS {
        out.push_str(&format!("#### {}\n\n", section.area));
        if !section.actions.is_empty() {
            out.push_str("| action | arguments | returns | what it does |\n|---|---|---|---|\n");
        }
        for action in section.actions {
            let params = if action.params.is_empty() {
                "—".to_owned()
            } else {
                format!("`{}`", ts_params(action.params).replace('|', "\\|"))
            };
            out.push_str(&format!(
                "| `{}` | {} | `{}` | {} |\n",
                action.name,
                params,
                action.returns.replace('|', "\\|"),
                action.summary
            ));
        }
        if !section.events.is_empty() {
            if !section.actions.is_empty() {
                out.push('\n');
            }
            out.push_str("| event | payload | when |\n|---|---|---|\n");
        }
        for event in section.events {
            out.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                event.name,
                event.payload.replace('|', "\\|"),
                event.summary
            ));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn action_names_are_unique_and_camel_case() {
        let mut seen = std::collections::BTreeSet::new();
        for a in actions() {
            assert!(seen.insert(a.name), "duplicate action {}", a.name);
            assert!(a.name.chars().next().unwrap().is_ascii_lowercase(), "{}", a.name);
            assert!(a.name.chars().all(|c| c.is_ascii_alphanumeric()), "{}", a.name);
        }
    }

    #[test]
    fn required_params_come_before_optional_ones() {
        for a in actions() {
            let first_optional = a.params.iter().position(|p| !p.required).unwrap_or(a.params.len());
            assert!(a.params[first_optional..].iter().all(|p| !p.required), "{}", a.name);
        }
    }

    #[test]
    fn event_and_type_names_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for e in events() {
            assert!(seen.insert(e.name), "duplicate event {}", e.name);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in SECTIONS.iter().flat_map(|s| s.types.iter()) {
            assert!(seen.insert(*name), "duplicate type {name}");
        }
    }

    #[test]
    fn checked_in_typescript_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../typings/agentos-actor.d.ts");
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == render_typescript(),
            "typings/agentos-actor.d.ts is stale: run `cargo run -p agentos-actor --bin agentos-typings -- --write`"
        );
    }

    #[test]
    fn readme_action_reference_matches_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
        let readme = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            readme.contains(&render_markdown()),
            "README.md action reference is stale: run `cargo run -p agentos-actor --bin agentos-typings -- --write`"
        );
    }
}
