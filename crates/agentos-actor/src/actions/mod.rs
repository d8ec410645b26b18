//! Action handlers, one module per area. Each handler is named in the
//! contract table (`crate::contract`), which decodes its arguments first.

pub mod cron;
pub mod custom;
pub mod fs;
pub mod fs_batch;
pub mod mounts;
pub mod net;
pub mod process;
pub mod sessions;
pub mod shell;
pub mod snapshot;
pub mod software;
pub mod system;
pub mod tools;

use serde::Serialize;

use crate::error::ActorError;

/// Encodes a reply as JSON-compatible CBOR: byte fields (serde bytes) become
/// `["$Uint8Array", base64]`, which every client encoding can carry.
pub fn reply<T: Serialize>(value: &T) -> Result<Vec<u8>, ActorError> {
    rivet_actor_plugin_abi::codec::encode_json_compat_to_vec(value)
        .map_err(|e| ActorError::internal(format!("encode reply: {e:#}")))
}

/// The reply of an action that returns nothing (`null`).
pub fn reply_null() -> Result<Vec<u8>, ActorError> {
    reply(&())
}

/// Milliseconds since the Unix epoch, now (cron times, preview expiry).
pub fn now_ms() -> i64 {
    crate::fs::now_ns() / 1_000_000
}
