//! The VM's database: the sidecar keeps agent sessions (catalog, history,
//! prompts, permissions) in SQLite, which it reaches over a Unix socket
//! speaking the actor-SQLite protocol (`VmSqliteDescriptor::ActorUds`). We
//! serve that socket and run every request on the actor's own SQLite through
//! the host ABI, so sessions live and die with the actor, not with the VM
//! or the machine.
//!
//! The socket lives in a fresh directory only this user can enter, for as
//! long as the actor instance runs. The protocol (v1) has no token: the
//! directory's mode is what keeps other users out.

mod bind;
mod exec;
mod server;

pub use exec::VmDb;
pub use server::VmDbServer;

#[cfg(test)]
mod tests;
