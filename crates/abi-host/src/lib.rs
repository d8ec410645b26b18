//! A host for RivetKit actor-plugin ABI v13 cdylibs on rivetkit-core 2.3.19.
//!
//! Generic: it knows nothing of agentOS. [`loader::load`] opens a plugin,
//! [`loader::LoadedPlugin::factory`] builds an actor type from it, and
//! [`instance::actor_factory`] turns that into a rivetkit-core `ActorFactory`
//! to register in a `CoreRegistry`. Every HostVtable entry is implemented in
//! [`vtable`] over the actor's `ActorContext`.
//!
//! Errors: a plugin that answers `reply_err` with a JSON object
//! `{code, message, metadata?}` gets a public RivetKit error in group `user`
//! (see [`wire::error_from_plugin`]); other text stays an internal error.

pub mod adapter;
pub mod instance;
pub mod loader;
pub mod nodelay;
pub mod serve;
pub mod state;
pub mod vtable;
pub mod wire;

pub use instance::actor_factory;
pub use loader::{LoadedPlugin, PluginFactory, load};
