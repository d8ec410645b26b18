//! The agentOS actor as a RivetKit native actor plugin (ABI v13).
//!
//! Each actor owns one agentOS VM, booted lazily on the first action that
//! needs it. Clients reach it through the actions and events of
//! [`contract`]; everything that must outlive the VM lives in the actor's
//! SQLite through the host ABI.
//!
//! Layout: [`ffi`] holds the ten exports; [`host`] wraps the host vtable;
//! [`actor`] runs the event loop and the ordered worker; [`vm`] owns the VM
//! lifecycle; [`contract`] is the action table, [`args`] decodes arguments
//! against it and [`actions`] implements it; [`error`] shapes public errors;
//! [`fs`] is the durable root filesystem stored in the actor's SQLite.

pub mod actions;
pub mod actor;
pub mod args;
pub mod config;
pub mod contract;
pub mod error;
pub mod ffi;
pub mod fs;
pub mod host;
pub mod http;
pub mod live;
mod logging;
pub mod network;
pub mod schema;
mod sidecar_gate;
pub mod vm;
pub mod vm_db;
