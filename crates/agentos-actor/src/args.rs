//! Structural decoding of action arguments against the contract table.
//!
//! Clients send a positional CBOR array whose exact bytes depend on the client
//! encoding (abi reference §6.6): JSON-compat wrappers such as
//! `["$Uint8Array", b64]` and `["$Undefined", 0]` arrive as plain 2-element
//! arrays, integers may arrive as floats, byte strings may arrive raw. We
//! revive those wrappers first, then check each value against its declared
//! [`ArgType`], so every bad argument gets an `invalid_argument` error that
//! names it.

use std::collections::BTreeMap;

use base64::Engine as _;
use ciborium::Value;

use crate::error::ActorError;

/// The type of one action parameter or option field.
#[derive(Debug, Clone, Copy)]
pub enum ArgType {
    Str,
    /// `string | Uint8Array`: text is taken as its UTF-8 bytes.
    Bytes,
    Bool,
    /// An unsigned integer no larger than the given maximum.
    UInt { max: u64 },
    StrList,
    StrMap,
    /// An object with exactly these (all optional or required) fields; unknown
    /// fields are rejected.
    Object(&'static [Field]),
    /// An array whose items all have this type.
    List(&'static ArgType),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// Any JSON value (plugin configs passed through to the engine).
    Json,
}

impl ArgType {
    pub const U16: ArgType = ArgType::UInt { max: u16::MAX as u64 };
    pub const U32: ArgType = ArgType::UInt { max: u32::MAX as u64 };
    pub const U64: ArgType = ArgType::UInt { max: 9_007_199_254_740_991 }; // JS safe integer

    /// What the type looks like in TypeScript (for the generated typings).
    pub fn ts(&self) -> String {
        match self {
            ArgType::Str => "string".into(),
            ArgType::Bytes => "string | Uint8Array".into(),
            ArgType::Bool => "boolean".into(),
            ArgType::UInt { .. } => "number".into(),
            ArgType::StrList => "string[]".into(),
            ArgType::StrMap => "Record<string, string>".into(),
            ArgType::Object(fields) => {
                let body: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{}{}: {}", f.name, if f.required { "" } else { "?" }, f.ty.ts()))
                    .collect();
                format!("{{ {} }}", body.join("; "))
            }
            ArgType::List(item) => match item {
                ArgType::Bytes | ArgType::OneOf(_) => format!("({})[]", item.ts()),
                _ => format!("{}[]", item.ts()),
            },
            ArgType::OneOf(choices) => {
                choices.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" | ")
            }
            ArgType::Json => "unknown".into(),
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            ArgType::Str => "a string",
            ArgType::Bytes => "a string or Uint8Array",
            ArgType::Bool => "a boolean",
            ArgType::UInt { .. } => "a non-negative integer",
            ArgType::StrList => "an array of strings",
            ArgType::StrMap => "an object of string values",
            ArgType::Object(_) => "an object",
            ArgType::List(_) => "an array",
            ArgType::OneOf(_) => "one of the listed strings",
            ArgType::Json => "a JSON value",
        }
    }
}

/// A positional parameter (or an object field).
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub ty: ArgType,
    pub required: bool,
    pub doc: &'static str,
}

pub const fn req(name: &'static str, ty: ArgType, doc: &'static str) -> Field {
    Field { name, ty, required: true, doc }
}

pub const fn opt(name: &'static str, ty: ArgType, doc: &'static str) -> Field {
    Field { name, ty, required: false, doc }
}

/// A decoded, type-checked value.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    Absent,
    Str(String),
    Bytes(Vec<u8>),
    Bool(bool),
    UInt(u64),
    StrList(Vec<String>),
    StrMap(BTreeMap<String, String>),
    Object(BTreeMap<&'static str, Arg>),
    List(Vec<Arg>),
    Json(serde_json::Value),
}

impl Arg {
    /// The fields of an object value (empty for anything else).
    pub fn fields(&self) -> Fields {
        match self {
            Arg::Object(map) => Fields(map.clone()),
            _ => Fields::default(),
        }
    }
}

/// Decoded arguments of one call, in parameter order.
#[derive(Debug, Clone)]
pub struct Args {
    values: Vec<Arg>,
}

/// Accessors are used by handlers on arguments that the contract already
/// checked, so a mismatch is a bug in the table, reported as `internal`.
macro_rules! accessor {
    ($get:ident, $opt:ident, $variant:ident, $ty:ty) => {
        pub fn $get(&self, index: usize) -> Result<$ty, ActorError> {
            self.$opt(index)?.ok_or_else(|| mismatch(index, stringify!($variant)))
        }
        pub fn $opt(&self, index: usize) -> Result<Option<$ty>, ActorError> {
            match self.values.get(index) {
                Some(Arg::$variant(v)) => Ok(Some(v.clone())),
                Some(Arg::Absent) | None => Ok(None),
                Some(_) => Err(mismatch(index, stringify!($variant))),
            }
        }
    };
}

fn mismatch(index: usize, want: &str) -> ActorError {
    ActorError::internal(format!("contract bug: argument {index} is not {want}"))
}

impl Args {
    accessor!(str, opt_str, Str, String);
    accessor!(bytes, opt_bytes, Bytes, Vec<u8>);
    accessor!(uint, opt_uint, UInt, u64);
    accessor!(str_list, opt_str_list, StrList, Vec<String>);
    accessor!(list, opt_list, List, Vec<Arg>);
    accessor!(json, opt_json, Json, serde_json::Value);

    /// The fields of an optional object argument (empty when omitted).
    pub fn object(&self, index: usize) -> Result<Fields, ActorError> {
        match self.values.get(index) {
            Some(Arg::Object(map)) => Ok(Fields(map.clone())),
            Some(Arg::Absent) | None => Ok(Fields(BTreeMap::new())),
            Some(_) => Err(mismatch(index, "Object")),
        }
    }
}

/// The fields of a decoded object argument.
#[derive(Debug, Clone, Default)]
pub struct Fields(BTreeMap<&'static str, Arg>);

impl Fields {
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(Arg::Bool(b)) => Some(*b),
            _ => None,
        }
    }
    pub fn str(&self, name: &str) -> Option<String> {
        match self.0.get(name) {
            Some(Arg::Str(s)) => Some(s.clone()),
            _ => None,
        }
    }
    pub fn uint(&self, name: &str) -> Option<u64> {
        match self.0.get(name) {
            Some(Arg::UInt(n)) => Some(*n),
            _ => None,
        }
    }
    pub fn bytes(&self, name: &str) -> Option<Vec<u8>> {
        match self.0.get(name) {
            Some(Arg::Bytes(b)) => Some(b.clone()),
            _ => None,
        }
    }
    pub fn str_map(&self, name: &str) -> BTreeMap<String, String> {
        match self.0.get(name) {
            Some(Arg::StrMap(m)) => m.clone(),
            _ => BTreeMap::new(),
        }
    }
    pub fn str_list(&self, name: &str) -> Option<Vec<String>> {
        match self.0.get(name) {
            Some(Arg::StrList(l)) => Some(l.clone()),
            _ => None,
        }
    }
    pub fn object(&self, name: &str) -> Option<Fields> {
        match self.0.get(name) {
            Some(Arg::Object(map)) => Some(Fields(map.clone())),
            _ => None,
        }
    }
    pub fn list(&self, name: &str) -> Option<Vec<Arg>> {
        match self.0.get(name) {
            Some(Arg::List(l)) => Some(l.clone()),
            _ => None,
        }
    }
    pub fn json(&self, name: &str) -> Option<serde_json::Value> {
        match self.0.get(name) {
            Some(Arg::Json(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

/// Decodes the raw CBOR args of an action against its parameter list.
pub fn decode(params: &[Field], raw: &[u8]) -> Result<Args, ActorError> {
    let positional = positional_values(raw)?;
    if positional.len() > params.len() {
        // Trailing `undefined`s are what JS sends for omitted optionals.
        let extra_defined = positional[params.len()..].iter().any(|v| !is_undefined(v));
        if extra_defined {
            return Err(ActorError::new(
                crate::error::code::INVALID_ARGUMENT,
                format!(
                    "too many arguments: expected at most {}, got {}",
                    params.len(),
                    positional.len()
                ),
            )
            .with_metadata(serde_json::json!({ "expected": params.len(), "got": positional.len() })));
        }
    }
    let mut values = Vec::with_capacity(params.len());
    for (index, param) in params.iter().enumerate() {
        let value = positional.get(index).cloned().unwrap_or(Value::Null);
        values.push(check(param, value, param.name)?);
    }
    Ok(Args { values })
}

/// Checks a JSON value nested in an argument (e.g. a stored job's target)
/// against `ty`, with errors naming `path`.
pub fn decode_json(ty: ArgType, value: &serde_json::Value, path: &str) -> Result<Arg, ActorError> {
    let value = Value::serialized(value).map_err(|e| ActorError::invalid_argument(path, format!("is not JSON: {e}")))?;
    check(&Field { name: "", ty, required: true, doc: "" }, value, path)
}

fn positional_values(raw: &[u8]) -> Result<Vec<Value>, ActorError> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let value: Value = ciborium::from_reader(raw).map_err(|e| {
        ActorError::new(crate::error::code::INVALID_ARGUMENT, format!("arguments are not valid CBOR: {e}"))
    })?;
    Ok(match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items,
        single => vec![single],
    })
}

fn is_undefined(value: &Value) -> bool {
    matches!(value, Value::Null) || wrapper(value, "$Undefined").is_some()
}

/// Returns the payload of a JSON-compat `["$tag", payload]` wrapper.
fn wrapper<'a>(value: &'a Value, tag: &str) -> Option<&'a Value> {
    match value {
        Value::Array(items) if items.len() == 2 => match &items[0] {
            Value::Text(t) if t == tag => Some(&items[1]),
            _ => None,
        },
        _ => None,
    }
}

fn got(value: &Value) -> &'static str {
    match value {
        Value::Integer(_) => "a number",
        Value::Float(_) => "a number",
        Value::Bytes(_) => "bytes",
        Value::Text(_) => "a string",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Array(_) => "an array",
        Value::Map(_) => "an object",
        Value::Tag(_, _) => "a tagged value",
        _ => "an unsupported value",
    }
}

fn check(field: &Field, value: Value, path: &str) -> Result<Arg, ActorError> {
    if is_undefined(&value) {
        if field.required {
            return Err(ActorError::invalid_argument(path, format!("is required ({})", field.ty.describe())));
        }
        return Ok(Arg::Absent);
    }
    let wrong = |value: &Value| {
        ActorError::invalid_argument(path, format!("must be {}, got {}", field.ty.describe(), got(value)))
    };
    match field.ty {
        ArgType::Str => match value {
            Value::Text(s) => Ok(Arg::Str(s)),
            other => Err(wrong(&other)),
        },
        ArgType::Bytes => match value {
            Value::Text(s) => Ok(Arg::Bytes(s.into_bytes())),
            Value::Bytes(b) => Ok(Arg::Bytes(b)),
            other => match wrapper(&other, "$Uint8Array") {
                Some(Value::Text(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map(Arg::Bytes)
                    .map_err(|e| ActorError::invalid_argument(path, format!("has invalid base64 in $Uint8Array: {e}"))),
                _ => Err(wrong(&other)),
            },
        },
        ArgType::Bool => match value {
            Value::Bool(b) => Ok(Arg::Bool(b)),
            other => Err(wrong(&other)),
        },
        ArgType::UInt { max } => {
            let n = match &value {
                Value::Integer(i) => u64::try_from(i128::from(*i)).ok(),
                // JSON clients send whole numbers; cbor-x may send them as floats.
                Value::Float(f) if f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64 => Some(*f as u64),
                _ => match wrapper(&value, "$BigInt") {
                    Some(Value::Text(t)) => t.parse::<u64>().ok(),
                    _ => None,
                },
            };
            match n {
                Some(n) if n <= max => Ok(Arg::UInt(n)),
                Some(n) => Err(ActorError::invalid_argument(path, format!("is out of range: {n} > {max}"))),
                None => Err(wrong(&value)),
            }
        }
        ArgType::StrList => match value {
            Value::Array(items) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::Text(s) => Ok(s),
                    other => Err(ActorError::invalid_argument(
                        &format!("{path}[{i}]"),
                        format!("must be a string, got {}", got(&other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Arg::StrList),
            other => Err(wrong(&other)),
        },
        ArgType::StrMap => match value {
            Value::Map(entries) => {
                let mut map = BTreeMap::new();
                for (key, item) in entries {
                    let Value::Text(key) = key else {
                        return Err(ActorError::invalid_argument(path, "has a non-string key"));
                    };
                    match item {
                        Value::Text(s) => {
                            map.insert(key, s);
                        }
                        other if is_undefined(&other) => {}
                        other => {
                            return Err(ActorError::invalid_argument(
                                &format!("{path}.{key}"),
                                format!("must be a string, got {}", got(&other)),
                            ));
                        }
                    }
                }
                Ok(Arg::StrMap(map))
            }
            other => Err(wrong(&other)),
        },
        ArgType::Object(fields) => match value {
            Value::Map(entries) => {
                let mut given: BTreeMap<String, Value> = BTreeMap::new();
                for (key, item) in entries {
                    let Value::Text(key) = key else {
                        return Err(ActorError::invalid_argument(path, "has a non-string key"));
                    };
                    given.insert(key, item);
                }
                if let Some(unknown) = given.keys().find(|k| !fields.iter().any(|f| f.name == k.as_str())) {
                    let known: Vec<&str> = fields.iter().map(|f| f.name).collect();
                    return Err(ActorError::invalid_argument(
                        &format!("{path}.{unknown}"),
                        format!("is not a known field (known: {})", known.join(", ")),
                    ));
                }
                let mut out = BTreeMap::new();
                for f in fields {
                    let item = given.remove(f.name).unwrap_or(Value::Null);
                    let decoded = check(f, item, &format!("{path}.{}", f.name))?;
                    if decoded != Arg::Absent {
                        out.insert(f.name, decoded);
                    }
                }
                Ok(Arg::Object(out))
            }
            other => Err(wrong(&other)),
        },
        ArgType::List(item_type) => match value {
            Value::Array(items) => {
                let item_field = Field { name: field.name, ty: *item_type, required: true, doc: "" };
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| check(&item_field, item, &format!("{path}[{i}]")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Arg::List)
            }
            other => Err(wrong(&other)),
        },
        ArgType::OneOf(choices) => match value {
            Value::Text(s) if choices.contains(&s.as_str()) => Ok(Arg::Str(s)),
            Value::Text(s) => Err(ActorError::invalid_argument(
                path,
                format!("must be one of {}, got \"{s}\"", choices.join(", ")),
            )),
            other => Err(wrong(&other)),
        },
        ArgType::Json => json_of(value, path).map(Arg::Json),
    }
}

/// A CBOR value as JSON: byte strings and `$Uint8Array` wrappers are not
/// JSON, so they are refused rather than silently changed.
fn json_of(value: Value, path: &str) -> Result<serde_json::Value, ActorError> {
    use serde_json::Value as J;
    Ok(match value {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(b),
        Value::Text(s) => J::String(s),
        Value::Integer(i) => {
            let n = i128::from(i);
            if let Ok(u) = u64::try_from(n) {
                J::from(u)
            } else if let Ok(s) = i64::try_from(n) {
                J::from(s)
            } else {
                return Err(ActorError::invalid_argument(path, "has an integer out of range"));
            }
        }
        Value::Float(f) => serde_json::Number::from_f64(f)
            .map(J::Number)
            .ok_or_else(|| ActorError::invalid_argument(path, "has a non-finite number"))?,
        Value::Array(items) => J::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| json_of(v, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            let mut map = serde_json::Map::new();
            for (key, item) in entries {
                let Value::Text(key) = key else {
                    return Err(ActorError::invalid_argument(path, "has a non-string key"));
                };
                if is_undefined(&item) {
                    continue;
                }
                let item = json_of(item, &format!("{path}.{key}"))?;
                map.insert(key, item);
            }
            J::Object(map)
        }
        other => return Err(ActorError::invalid_argument(path, format!("must be JSON, got {}", got(&other)))),
    })
}

#[cfg(test)]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).unwrap();
        out
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    const OPTS: &[Field] = &[opt("recursive", ArgType::Bool, "")];
    const PARAMS: &[Field] = &[
        req("path", ArgType::Str, ""),
        opt("content", ArgType::Bytes, ""),
        opt("options", ArgType::Object(OPTS), ""),
    ];

    #[test]
    fn decodes_positional_with_omitted_optionals() {
        let args = decode(PARAMS, &cbor(&Value::Array(vec![text("/a")]))).unwrap();
        assert_eq!(args.str(0).unwrap(), "/a");
        assert_eq!(args.opt_bytes(1).unwrap(), None);
        assert_eq!(args.object(2).unwrap().bool("recursive"), None);
    }

    #[test]
    fn a_single_non_array_value_is_one_argument() {
        let args = decode(PARAMS, &cbor(&text("/a"))).unwrap();
        assert_eq!(args.str(0).unwrap(), "/a");
    }

    #[test]
    fn revives_uint8array_and_undefined_wrappers() {
        let raw = cbor(&Value::Array(vec![
            text("/a"),
            Value::Array(vec![text("$Uint8Array"), text("AQID")]),
            Value::Array(vec![text("$Undefined"), Value::Integer(0.into())]),
        ]));
        let args = decode(PARAMS, &raw).unwrap();
        assert_eq!(args.bytes(1).unwrap(), vec![1, 2, 3]);
        assert!(args.object(2).unwrap().bool("recursive").is_none());
    }

    #[test]
    fn text_and_raw_bytes_are_accepted_for_bytes() {
        let a = decode(PARAMS, &cbor(&Value::Array(vec![text("/a"), text("hi")]))).unwrap();
        assert_eq!(a.bytes(1).unwrap(), b"hi");
        let b = decode(PARAMS, &cbor(&Value::Array(vec![text("/a"), Value::Bytes(vec![9])]))).unwrap();
        assert_eq!(b.bytes(1).unwrap(), vec![9]);
    }

    fn err_of(raw: Value) -> ActorError {
        decode(PARAMS, &cbor(&raw)).unwrap_err()
    }

    #[test]
    fn missing_required_names_the_argument() {
        let e = err_of(Value::Array(vec![]));
        assert_eq!(e.code, "invalid_argument");
        assert!(e.message.contains("`path`") && e.message.contains("required"), "{}", e.message);
    }

    #[test]
    fn wrong_type_names_the_argument() {
        let e = err_of(Value::Array(vec![Value::Integer(5.into())]));
        assert!(e.message.contains("`path`") && e.message.contains("got a number"), "{}", e.message);
        let e = err_of(Value::Array(vec![text("/a"), Value::Bool(true)]));
        assert!(e.message.contains("`content`"), "{}", e.message);
    }

    #[test]
    fn extra_arguments_are_rejected() {
        let e = err_of(Value::Array(vec![text("/a"), text("x"), Value::Map(vec![]), text("extra")]));
        assert!(e.message.contains("too many arguments"), "{}", e.message);
    }

    #[test]
    fn unknown_and_mistyped_object_fields_name_the_field() {
        let e = err_of(Value::Array(vec![
            text("/a"),
            Value::Null,
            Value::Map(vec![(text("recurse"), Value::Bool(true))]),
        ]));
        assert!(e.message.contains("`options.recurse`") && e.message.contains("not a known field"), "{}", e.message);
        let e = err_of(Value::Array(vec![
            text("/a"),
            Value::Null,
            Value::Map(vec![(text("recursive"), text("yes"))]),
        ]));
        assert!(e.message.contains("`options.recursive`"), "{}", e.message);
    }

    #[test]
    fn integers_are_range_checked_and_floats_accepted_when_whole() {
        const P: &[Field] = &[req("port", ArgType::U16, "")];
        let ok = decode(P, &cbor(&Value::Array(vec![Value::Float(8080.0)]))).unwrap();
        assert_eq!(ok.uint(0).unwrap(), 8080);
        let e = decode(P, &cbor(&Value::Array(vec![Value::Integer(70000.into())]))).unwrap_err();
        assert!(e.message.contains("out of range"), "{}", e.message);
        let e = decode(P, &cbor(&Value::Array(vec![Value::Float(1.5)]))).unwrap_err();
        assert!(e.message.contains("`port`"), "{}", e.message);
        let e = decode(P, &cbor(&Value::Array(vec![Value::Integer((-1).into())]))).unwrap_err();
        assert!(e.message.contains("`port`"), "{}", e.message);
    }

    #[test]
    fn non_cbor_bytes_are_invalid_argument() {
        let e = decode(PARAMS, &[0xff, 0x00]).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
    }

    #[test]
    fn lists_enums_and_json_are_checked_per_item() {
        const ITEM: &[Field] = &[req("path", ArgType::Str, "")];
        const P: &[Field] = &[
            req("entries", ArgType::List(&ArgType::Object(ITEM)), ""),
            opt("reply", ArgType::OneOf(&["once", "always"]), ""),
            opt("config", ArgType::Json, ""),
        ];
        let raw = Value::Array(vec![
            Value::Array(vec![Value::Map(vec![(text("path"), text("/a"))])]),
            text("once"),
            Value::Map(vec![(text("n"), Value::Integer(3.into()))]),
        ]);
        let args = decode(P, &cbor(&raw)).unwrap();
        assert_eq!(args.list(0).unwrap()[0].fields().str("path").as_deref(), Some("/a"));
        assert_eq!(args.str(1).unwrap(), "once");
        assert_eq!(args.json(2).unwrap(), serde_json::json!({ "n": 3 }));
        let bad_item = Value::Array(vec![Value::Array(vec![Value::Map(vec![(text("path"), Value::Bool(true))])])]);
        let e = decode(P, &cbor(&bad_item)).unwrap_err();
        assert!(e.message.contains("`entries[0].path`"), "{}", e.message);
        let bad_enum = Value::Array(vec![Value::Array(vec![]), text("never")]);
        let e = decode(P, &cbor(&bad_enum)).unwrap_err();
        assert!(e.message.contains("`reply`") && e.message.contains("once, always"), "{}", e.message);
        let bytes_in_json = Value::Array(vec![Value::Array(vec![]), Value::Null, Value::Bytes(vec![1])]);
        let e = decode(P, &cbor(&bytes_in_json)).unwrap_err();
        assert!(e.message.contains("`config`"), "{}", e.message);
        assert_eq!(ArgType::List(&ArgType::Object(ITEM)).ts(), "{ path: string }[]");
        assert_eq!(ArgType::OneOf(&["a", "b"]).ts(), "\"a\" | \"b\"");
    }

    #[test]
    fn nested_json_is_checked_with_its_path() {
        const FIELDS: &[Field] = &[req("name", ArgType::Str, ""), opt("n", ArgType::U16, "")];
        let ok = decode_json(ArgType::Object(FIELDS), &serde_json::json!({ "name": "a", "n": 3 }), "job").unwrap();
        assert_eq!((ok.fields().str("name"), ok.fields().uint("n")), (Some("a".into()), Some(3)));
        for (value, needle) in [
            (serde_json::json!({ "n": 3 }), "`job.name`"),
            (serde_json::json!({ "name": "a", "n": 70000 }), "`job.n`"),
            (serde_json::json!({ "name": "a", "m": 1 }), "`job.m`"),
            (serde_json::json!("a"), "`job`"),
        ] {
            let e = decode_json(ArgType::Object(FIELDS), &value, "job").unwrap_err();
            assert!(e.message.contains(needle), "{value}: {}", e.message);
        }
    }

    #[test]
    fn ts_rendering_of_types() {
        assert_eq!(ArgType::Object(OPTS).ts(), "{ recursive?: boolean }");
        assert_eq!(ArgType::Bytes.ts(), "string | Uint8Array");
    }
}
