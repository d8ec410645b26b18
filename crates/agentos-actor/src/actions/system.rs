//! What the VM offers and how the actor is doing: software, agents and a
//! health report that never boots the VM.

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;

use super::reply;
use crate::args::{ArgType, req};
use crate::contract::{ActionSpec, Call, Section};
use crate::error::ActorError;

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// The system area of the contract.
pub static SECTION: Section = Section {
    area: "System",
    actions: &[
        ActionSpec {
            name: "listSoftware",
            summary: "The packages projected into the VM and the commands each provides.",
            params: &[],
            returns: "SoftwareEntry[]",
            handler: list_software,
            detached: false,
        },
        ActionSpec {
            name: "linkSoftware",
            summary: "Add a package to the running VM (and to every later boot); only packages the config lists in `linkablePackages` can be linked.",
            params: &[req("name", ArgType::Str, "The package's name in the config's `linkablePackages`.")],
            returns: "SoftwareEntry[]",
            handler: super::software::link_software,
            detached: false,
        },
        ActionSpec {
            name: "listAgents",
            summary: "The agents the VM's packages provide (for sessions).",
            params: &[],
            returns: "AgentEntry[]",
            handler: list_agents,
            detached: false,
        },
        ActionSpec {
            name: "getRuntimeHealth",
            summary: "Whether the VM runs, its sidecar's state, and what runs in it; never boots the VM.",
            params: &[],
            returns: "RuntimeHealth",
            handler: runtime_health,
            detached: false,
        },
    ],
    events: &[],
    types: &[
        ("SoftwareEntry", "{ package: string; commands: string[] }"),
        ("AgentEntry", "{ id: string; installed: boolean }"),
        (
            "RuntimeHealth",
            "{ booted: boolean; sidecar: { id: string; state: string; activeVmCount: number } | null; processes: number; shells: number }",
        ),
    ],
};

#[derive(Serialize)]
pub struct SoftwareEntry {
    package: String,
    commands: Vec<String>,
}

fn list_software(call: Call) -> Reply {
    async move { reply(&software_entries(&call.vm().await?).await?) }.boxed()
}

/// The packages projected into `vm` and their commands.
pub async fn software_entries(vm: &agentos_client::AgentOs) -> Result<Vec<SoftwareEntry>, ActorError> {
    let software = vm.list_software().await.map_err(|e| ActorError::from_vm(e.into()))?;
    Ok(software.into_iter().map(|s| SoftwareEntry { package: s.package_name, commands: s.commands }).collect())
}

#[derive(Serialize)]
struct AgentEntry {
    id: String,
    installed: bool,
}

fn list_agents(call: Call) -> Reply {
    async move {
        let agents = call.vm().await?.list_agents().await.map_err(ActorError::from_vm)?;
        let entries: Vec<AgentEntry> = agents.into_iter().map(|a| AgentEntry { id: a.id, installed: a.installed }).collect();
        reply(&entries)
    }
    .boxed()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    booted: bool,
    sidecar: Option<SidecarHealth>,
    processes: usize,
    shells: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SidecarHealth {
    id: String,
    state: String,
    active_vm_count: u32,
}

fn runtime_health(call: Call) -> Reply {
    async move {
        let health = match call.slot.running() {
            None => Health { booted: false, sidecar: None, processes: 0, shells: 0 },
            Some((vm, live)) => {
                let described = vm.sidecar().describe();
                Health {
                    booted: true,
                    sidecar: Some(SidecarHealth {
                        id: described.sidecar_id,
                        state: described.state.as_str().to_owned(),
                        active_vm_count: described.active_vm_count,
                    }),
                    processes: crate::live::lock(&live.processes).len(),
                    shells: crate::live::lock(&live.shells).len(),
                }
            }
        };
        reply(&health)
    }
    .boxed()
}
