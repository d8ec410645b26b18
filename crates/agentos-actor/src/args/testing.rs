//! Test helpers for the contract's argument decoding: positional arguments
//! encoded as a client sends them, and how an action's table entry takes
//! them.

use ciborium::Value;

use super::{Args, decode};
use crate::contract::find;

/// The CBOR of a positional argument list.
pub fn cbor(args: Vec<Value>) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&Value::Array(args), &mut out).unwrap();
    out
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn int(n: i64) -> Value {
    Value::Integer(n.into())
}

pub fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (text(k), v)).collect())
}

/// `args` decode for `action`; the decoded arguments.
pub fn ok(action: &str, args: Vec<Value>) -> Args {
    let spec = find(action).unwrap_or_else(|| panic!("no action {action}"));
    decode(spec.params, &cbor(args.clone())).unwrap_or_else(|e| panic!("{action} {args:?}: {e}"))
}

/// `args` are refused for `action` with `invalid_argument` mentioning `needle`.
pub fn bad(action: &str, args: Vec<Value>, needle: &str) {
    let spec = find(action).unwrap_or_else(|| panic!("no action {action}"));
    let e = decode(spec.params, &cbor(args.clone())).expect_err(&format!("{action} {args:?} decoded"));
    assert_eq!(e.code, "invalid_argument", "{action} {args:?}: {e}");
    assert!(e.message.contains(needle), "{action} {args:?}: {:?} lacks {needle}", e.message);
}
