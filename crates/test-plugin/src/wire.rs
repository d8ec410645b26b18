//! Pure helpers: argument decoding, CBOR <-> JSON conversion, JSON-compat byte
//! revival, event-log keys and the HTTP / queue / preflight reply builders.
//!
//! Nothing in here touches the host, so all of it is unit-tested directly.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ciborium::Value;
use rivet_actor_plugin_abi::codec::{JSON_COMPAT_UINT8_ARRAY, decode_positional};
use rivet_actor_plugin_abi::portable::Event;
use serde::{Deserialize, Serialize};
use serde_json::{Map as JsonMap, Number, Value as Json};

// ---------------------------------------------------------------------------
// KV key layout
// ---------------------------------------------------------------------------

/// Prefix of the persisted event log (`tp/ev/<12-digit counter>`).
pub const EVENT_LOG_PREFIX: &[u8] = b"tp/ev/";
/// Written on Sleep / Destroy with the value `sleep` / `destroy`.
pub const LAST_SHUTDOWN_KEY: &[u8] = b"tp/last-shutdown";
/// Written (`1`) by the `waitAbortThenMark` watcher once the abort signal fires.
pub const ABORTED_SEEN_KEY: &[u8] = b"tp/aborted-seen";
/// Prefix of the tags recorded by `recordScheduled`.
pub const SCHEDULED_PREFIX: &[u8] = b"tp/scheduled/";
/// Scratch prefix used by `kvRoundTrip`.
pub const KV_SCRATCH_PREFIX: &[u8] = b"tp/kv/";

/// Width of the zero-padded event counter, so keys sort in arrival order.
const EVENT_INDEX_WIDTH: usize = 12;

/// True if `key` is safe to use in the actor's raw KV keyspace: RivetKit keeps
/// its own records under keys whose first byte is 0x01..=0x07.
pub fn key_is_plugin_safe(key: &[u8]) -> bool {
    !matches!(key.first(), Some(0x01..=0x07))
}

/// `tp/ev/` followed by `index` zero-padded to 12 digits.
pub fn event_log_key(index: u64) -> Vec<u8> {
    let mut key = EVENT_LOG_PREFIX.to_vec();
    key.extend_from_slice(format!("{index:0width$}", width = EVENT_INDEX_WIDTH).as_bytes());
    key
}

/// Inverse of [`event_log_key`]; `None` for anything that is not one.
pub fn parse_event_log_key(key: &[u8]) -> Option<u64> {
    let digits = key.strip_prefix(EVENT_LOG_PREFIX)?;
    if digits.len() != EVENT_INDEX_WIDTH || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The exclusive end of the key range covering every key that starts with
/// `prefix` (the prefix with its last non-0xff byte incremented).
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last != 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): there is no finite upper bound; use a long run of
    // 0xff, which is larger than any key the plugin writes.
    vec![0xff; prefix.len() + 1]
}

// ---------------------------------------------------------------------------
// Actor state
// ---------------------------------------------------------------------------

/// The persisted actor state: CBOR map `{"count": n}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedState {
    pub count: i64,
}

pub fn encode_state(count: i64) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(&PersistedState { count }, &mut out)
        .expect("encoding a one-field struct into a Vec cannot fail");
    out
}

/// Empty bytes (a fresh actor) mean count 0.
pub fn decode_state(bytes: &[u8]) -> Result<i64> {
    if bytes.is_empty() {
        return Ok(0);
    }
    let state: PersistedState =
        ciborium::from_reader(bytes).context("decode persisted state {count}")?;
    Ok(state.count)
}

// ---------------------------------------------------------------------------
// CBOR <-> JSON
// ---------------------------------------------------------------------------

/// Convert a CBOR value to JSON. Byte strings become the JSON-compat
/// `["$Uint8Array", base64]` pair, tags are unwrapped, non-text map keys are
/// rendered as JSON text, and non-finite floats become null.
pub fn cbor_to_json(value: &Value) -> Json {
    match value {
        Value::Integer(int) => {
            let wide = i128::from(*int);
            if let Ok(small) = i64::try_from(wide) {
                Json::from(small)
            } else if let Ok(big) = u64::try_from(wide) {
                Json::from(big)
            } else {
                Number::from_f64(wide as f64).map_or(Json::Null, Json::Number)
            }
        }
        Value::Float(float) => Number::from_f64(*float).map_or(Json::Null, Json::Number),
        Value::Bytes(bytes) => json_compat_bytes(bytes),
        Value::Text(text) => Json::String(text.clone()),
        Value::Bool(flag) => Json::Bool(*flag),
        Value::Null => Json::Null,
        Value::Tag(_, inner) => cbor_to_json(inner),
        Value::Array(items) => Json::Array(items.iter().map(cbor_to_json).collect()),
        Value::Map(entries) => {
            let mut map = JsonMap::new();
            for (key, item) in entries {
                let key = match key {
                    Value::Text(text) => text.clone(),
                    other => cbor_to_json(other).to_string(),
                };
                map.insert(key, cbor_to_json(item));
            }
            Json::Object(map)
        }
        _ => Json::Null,
    }
}

/// `["$Uint8Array", base64]`, the JSON-compat spelling of a byte array.
pub fn json_compat_bytes(bytes: &[u8]) -> Json {
    Json::Array(vec![
        Json::String(JSON_COMPAT_UINT8_ARRAY.to_owned()),
        Json::String(B64.encode(bytes)),
    ])
}

/// Decode CBOR bytes into JSON. Empty input is `null`.
pub fn decode_cbor_json(bytes: &[u8]) -> Result<Json> {
    if bytes.is_empty() {
        return Ok(Json::Null);
    }
    let value: Value = ciborium::from_reader(bytes).context("decode CBOR value")?;
    Ok(cbor_to_json(&value))
}

/// Plain ciborium CBOR of a JSON value (JSON holds no byte strings, so this is
/// already JSON-compatible).
pub fn json_to_cbor(value: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("encoding JSON into a Vec cannot fail");
    out
}

/// Revive bytes from an argument: a CBOR byte string, the JSON-compat pair
/// `["$Uint8Array", base64]`, or an array of integers 0..=255.
pub fn revive_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Some(bytes.clone()),
        Value::Tag(_, inner) => revive_bytes(inner),
        Value::Array(items) => {
            if let [Value::Text(tag), Value::Text(b64)] = items.as_slice()
                && tag == JSON_COMPAT_UINT8_ARRAY
            {
                return B64.decode(b64).ok();
            }
            items
                .iter()
                .map(|item| match item {
                    Value::Integer(int) => u8::try_from(i128::from(*int)).ok(),
                    _ => None,
                })
                .collect()
        }
        _ => None,
    }
}

/// Bytes of a wire field that is either a CBOR byte string or an array of
/// small ints (the ABI emits the latter; accept both).
pub fn wire_bytes(value: &Value) -> Option<Vec<u8>> {
    match value {
        Value::Bytes(bytes) => Some(bytes.clone()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Integer(int) => u8::try_from(i128::from(*int)).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// Lowercase hex text of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Bytes of hex text (either case, as SQLite's `hex()` writes uppercase);
/// `None` when it is not hex.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// Serializes as a byte string, so `encode_json_compat_to_vec` emits it as
/// `["$Uint8Array", base64]`.
pub struct ByteReply<'a>(pub &'a [u8]);

impl Serialize for ByteReply<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

// ---------------------------------------------------------------------------
// Action arguments
// ---------------------------------------------------------------------------

/// Positional action arguments, decoded with `codec::decode_positional`.
#[derive(Debug, Clone, PartialEq)]
pub struct Args(pub Vec<Value>);

impl Args {
    /// Empty input and CBOR null are `[]`; anything but an array is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        decode_positional::<Vec<Value>>(bytes).map(Args)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The argument at `index`, treating a missing one as absent.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.0.get(index)
    }

    /// Present and not null.
    fn given(&self, index: usize) -> Option<&Value> {
        self.get(index).filter(|value| !value.is_null())
    }

    pub fn string(&self, index: usize, name: &str) -> Result<String> {
        match self.given(index) {
            Some(Value::Text(text)) => Ok(text.clone()),
            Some(other) => bail!("argument {index} (`{name}`) must be a string, got {other:?}"),
            None => bail!("argument {index} (`{name}`) is required"),
        }
    }

    pub fn opt_i64(&self, index: usize, name: &str) -> Result<Option<i64>> {
        self.given(index)
            .map(|value| {
                value_to_i64(value).ok_or_else(|| {
                    anyhow!("argument {index} (`{name}`) must be an integer, got {value:?}")
                })
            })
            .transpose()
    }

    pub fn i64(&self, index: usize, name: &str) -> Result<i64> {
        self.opt_i64(index, name)?
            .ok_or_else(|| anyhow!("argument {index} (`{name}`) is required"))
    }

    pub fn u64(&self, index: usize, name: &str) -> Result<u64> {
        let value = self.i64(index, name)?;
        u64::try_from(value).map_err(|_| anyhow!("argument {index} (`{name}`) must be >= 0"))
    }

    /// The argument as JSON (bytes in JSON-compat form); missing is null.
    pub fn json(&self, index: usize) -> Json {
        self.get(index).map_or(Json::Null, cbor_to_json)
    }

    /// A JSON array argument; missing or null is `[]`.
    pub fn json_array(&self, index: usize, name: &str) -> Result<Json> {
        match self.json(index) {
            Json::Null => Ok(Json::Array(Vec::new())),
            array @ Json::Array(_) => Ok(array),
            other => bail!("argument {index} (`{name}`) must be an array, got {other}"),
        }
    }

    pub fn bytes(&self, index: usize, name: &str) -> Result<Vec<u8>> {
        let value = self
            .given(index)
            .ok_or_else(|| anyhow!("argument {index} (`{name}`) is required"))?;
        revive_bytes(value).ok_or_else(|| {
            anyhow!("argument {index} (`{name}`) must be bytes (a byte string or [\"$Uint8Array\", base64]), got {value:?}")
        })
    }
}

/// Integers, and floats with no fractional part (cbor-x / JS numbers).
fn value_to_i64(value: &Value) -> Option<i64> {
    match value {
        Value::Integer(int) => i64::try_from(i128::from(*int)).ok(),
        Value::Float(float)
            if float.is_finite()
                && float.fract() == 0.0
                && float.abs() < 9.007_199_254_740_992e15 =>
        {
            Some(*float as i64)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Event log entries
// ---------------------------------------------------------------------------

/// `Tag:summary` for the event log (see the crate docs for the exact shapes).
pub fn event_log_entry(event: &Event) -> String {
    match event {
        Event::Action { name, .. } => format!("Action:{name}"),
        Event::Http { request, .. } => match HttpRequest::decode(request) {
            Ok(request) => format!("Http:{} {}", request.method, request.uri),
            Err(_) => "Http:<undecodable>".to_owned(),
        },
        Event::Subscribe { event_name, .. } => format!("Subscribe:{event_name}"),
        Event::QueueSend { name, .. } => format!("QueueSend:{name}"),
        Event::WebSocketOpen { conn, .. } => format!("WsOpen:{}", conn.id),
        Event::ConnPreflight { conn, .. } => format!("ConnPreflight:{}", conn.id),
        Event::ConnOpen { conn, .. } => format!("ConnOpen:{}", conn.id),
        Event::ConnClosed { conn } => format!("ConnClosed:{}", conn.id),
        Event::SerializeState { .. } => "SerializeState".to_owned(),
        Event::Sleep { .. } => "Sleep".to_owned(),
        Event::Destroy { .. } => "Destroy".to_owned(),
    }
}

/// The tag name of an event, for reply bookkeeping.
pub fn event_tag_name(event: &Event) -> &'static str {
    match event {
        Event::Action { .. } => "Action",
        Event::Http { .. } => "Http",
        Event::Subscribe { .. } => "Subscribe",
        Event::QueueSend { .. } => "QueueSend",
        Event::WebSocketOpen { .. } => "WsOpen",
        Event::ConnPreflight { .. } => "ConnPreflight",
        Event::ConnOpen { .. } => "ConnOpen",
        Event::ConnClosed { .. } => "ConnClosed",
        Event::SerializeState { .. } => "SerializeState",
        Event::Sleep { .. } => "Sleep",
        Event::Destroy { .. } => "Destroy",
    }
}

// ---------------------------------------------------------------------------
// Connection preflight
// ---------------------------------------------------------------------------

/// True when the params (CBOR of the client's JSON params) are an object whose
/// `reject` field is exactly `true`.
pub fn preflight_rejects(params: &[u8]) -> bool {
    matches!(
        decode_cbor_json(params),
        Ok(Json::Object(map)) if map.get("reject") == Some(&Json::Bool(true))
    )
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// The ABI's HTTP request map `{method, uri, headers, body}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub uri: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let value: Value = ciborium::from_reader(bytes).context("decode HTTP request CBOR")?;
        let Value::Map(entries) = value else {
            bail!("HTTP request is not a CBOR map");
        };
        let field = |name: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_text() == Some(name))
                .map(|(_, value)| value)
        };
        let text = |name: &str| -> Result<String> {
            field(name)
                .and_then(Value::as_text)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("HTTP request `{name}` missing or not text"))
        };
        let method = text("method")?;
        let uri = text("uri")?;
        let mut headers = BTreeMap::new();
        match field("headers") {
            Some(Value::Map(pairs)) => {
                for (key, value) in pairs {
                    match (key, value) {
                        (Value::Text(key), Value::Text(value)) => {
                            headers.insert(key.clone(), value.clone());
                        }
                        _ => bail!("HTTP request header is not text -> text"),
                    }
                }
            }
            Some(Value::Null) | None => {}
            Some(_) => bail!("HTTP request `headers` is not a map"),
        }
        let body = match field("body") {
            Some(value) => {
                wire_bytes(value).ok_or_else(|| anyhow!("HTTP request `body` is not bytes"))?
            }
            None => Vec::new(),
        };
        Ok(Self {
            method,
            uri,
            headers,
            body,
        })
    }
}

/// `/status/<n>` (optionally followed by more path or a query) selects the
/// response status; anything else is 200.
pub fn status_for_uri(uri: &str) -> u16 {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    path.strip_prefix("/status/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|digits| digits.parse::<u16>().ok())
        .unwrap_or(200)
}

/// The Http reply: CBOR `{status, headers, body}` where body is a byte string
/// holding the JSON echo `{method, uri, body, headers}`.
pub fn http_response(request: &HttpRequest) -> Vec<u8> {
    let echo = serde_json::json!({
        "method": request.method,
        "uri": request.uri,
        "body": String::from_utf8_lossy(&request.body),
        "headers": request.headers,
    });
    let body = serde_json::to_vec(&echo).expect("serializing a JSON value cannot fail");
    let response = Value::Map(vec![
        (
            Value::Text("status".into()),
            Value::Integer(status_for_uri(&request.uri).into()),
        ),
        (
            Value::Text("headers".into()),
            Value::Map(vec![
                (
                    Value::Text("content-type".into()),
                    Value::Text("application/json".into()),
                ),
                (Value::Text("x-test-plugin".into()), Value::Text("1".into())),
            ]),
        ),
        (Value::Text("body".into()), Value::Bytes(body)),
    ]);
    let mut out = Vec::new();
    ciborium::into_writer(&response, &mut out)
        .expect("encoding a CBOR value into a Vec cannot fail");
    out
}

// ---------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------

/// The QueueSend reply: `{status: "completed", response: <CBOR of
/// {"queue": name, "received": body-as-JSON}>}`.
pub fn queue_response(name: &str, body: &[u8]) -> Result<Vec<u8>> {
    let received = decode_cbor_json(body).context("decode queue body")?;
    let response = rivet_actor_plugin_abi::codec::encode_json_compat_to_vec(&serde_json::json!({
        "queue": name,
        "received": received,
    }))?;
    rivet_actor_plugin_abi::encode_queue_send_response("completed", Some(response))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// The JSON text carried by `reply_err`.
pub fn error_json(code: &str, message: &str, metadata: Option<Json>) -> String {
    let mut map = JsonMap::new();
    map.insert("code".into(), Json::String(code.to_owned()));
    map.insert("message".into(), Json::String(message.to_owned()));
    if let Some(metadata) = metadata {
        map.insert("metadata".into(), metadata);
    }
    Json::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivet_actor_plugin_abi::codec::encode_json_compat_to_vec;
    use rivet_actor_plugin_abi::portable::{ConnInfo, ReplyToken};
    use rivet_actor_plugin_abi::{QueueSendResponse, decode_event_frame, encode_event_frame};

    fn cbor(value: &Json) -> Vec<u8> {
        json_to_cbor(value)
    }

    fn conn(id: &str) -> ConnInfo {
        ConnInfo {
            id: id.into(),
            params: vec![0xf6],
            state: Vec::new(),
            is_hibernatable: false,
        }
    }

    #[test]
    fn event_log_keys_are_padded_ordered_and_safe() {
        assert_eq!(event_log_key(0), b"tp/ev/000000000000".to_vec());
        assert_eq!(event_log_key(42), b"tp/ev/000000000042".to_vec());
        assert!(event_log_key(9) < event_log_key(10));
        assert!(event_log_key(99_999) < event_log_key(100_000));
        for index in [0, 1, 7, 123_456, 999_999_999_999] {
            let key = event_log_key(index);
            assert!(key_is_plugin_safe(&key));
            assert_eq!(parse_event_log_key(&key), Some(index));
        }
        assert_eq!(parse_event_log_key(b"tp/ev/12"), None);
        assert_eq!(parse_event_log_key(b"tp/ev/00000000000x"), None);
        assert_eq!(parse_event_log_key(b"tp/kv/000000000001"), None);
    }

    #[test]
    fn all_fixed_keys_avoid_rivetkit_prefixes() {
        for key in [
            EVENT_LOG_PREFIX,
            LAST_SHUTDOWN_KEY,
            ABORTED_SEEN_KEY,
            SCHEDULED_PREFIX,
            KV_SCRATCH_PREFIX,
        ] {
            assert!(key_is_plugin_safe(key));
        }
        assert!(!key_is_plugin_safe(&[0x01]));
        assert!(!key_is_plugin_safe(&[0x07, b'a']));
        assert!(key_is_plugin_safe(&[0x08]));
        assert!(key_is_plugin_safe(b""));
    }

    #[test]
    fn prefix_range_end_covers_prefix() {
        assert_eq!(prefix_range_end(b"tp/kv/"), b"tp/kv0".to_vec());
        assert_eq!(prefix_range_end(&[b'a', 0xff]), vec![b'b']);
        assert_eq!(prefix_range_end(&[0xff]), vec![0xff, 0xff]);
    }

    #[test]
    fn state_round_trips_and_matches_reference_bytes() {
        // a1 65 "count" 05
        assert_eq!(
            encode_state(5),
            vec![0xa1, 0x65, b'c', b'o', b'u', b'n', b't', 0x05]
        );
        assert_eq!(decode_state(&encode_state(-12)).unwrap(), -12);
        assert_eq!(decode_state(&[]).unwrap(), 0);
        assert!(decode_state(&[0xff, 0x00]).is_err());
    }

    #[test]
    fn args_decode_positional_shapes() {
        let args = Args::decode(&cbor(&serde_json::json!(["a", 3, null, 2.0]))).unwrap();
        assert_eq!(args.len(), 4);
        assert_eq!(args.string(0, "s").unwrap(), "a");
        assert_eq!(args.i64(1, "n").unwrap(), 3);
        assert_eq!(args.opt_i64(2, "n").unwrap(), None);
        assert_eq!(args.opt_i64(9, "n").unwrap(), None);
        assert_eq!(args.i64(3, "n").unwrap(), 2);
        assert!(args.i64(0, "n").is_err());
        assert!(args.string(1, "s").is_err());
        assert!(args.string(5, "s").is_err());
        assert!(args.u64(1, "n").is_ok());

        assert!(Args::decode(&[]).unwrap().is_empty());
        assert!(Args::decode(&[0xf6]).unwrap().is_empty());
        assert!(Args::decode(&[0x80]).unwrap().is_empty());
        let negative = Args::decode(&cbor(&serde_json::json!([-4]))).unwrap();
        assert!(negative.u64(0, "n").is_err());
        assert!(Args::decode(&cbor(&serde_json::json!({"a": 1}))).is_err());
        assert!(Args::decode(&[0xff]).is_err());
    }

    #[test]
    fn args_json_and_arrays() {
        let args = Args::decode(&cbor(&serde_json::json!([{"b": [1, "x"]}, [1, 2], 7]))).unwrap();
        assert_eq!(args.json(0), serde_json::json!({"b": [1, "x"]}));
        assert_eq!(args.json(5), Json::Null);
        assert_eq!(args.json_array(1, "a").unwrap(), serde_json::json!([1, 2]));
        assert_eq!(args.json_array(4, "a").unwrap(), serde_json::json!([]));
        assert!(args.json_array(2, "a").is_err());
    }

    #[test]
    fn json_compat_bytes_are_revived() {
        // ["$Uint8Array", "AQIDBA=="] as sent by a JSON client.
        let wrapped = cbor(&serde_json::json!([["$Uint8Array", "AQIDBA=="]]));
        let args = Args::decode(&wrapped).unwrap();
        assert_eq!(args.bytes(0, "b").unwrap(), vec![1, 2, 3, 4]);

        // A raw CBOR byte string: [h'0102'].
        let args = Args::decode(&[0x81, 0x42, 0x01, 0x02]).unwrap();
        assert_eq!(args.bytes(0, "b").unwrap(), vec![1, 2]);

        // Array of ints.
        let args = Args::decode(&cbor(&serde_json::json!([[9, 255, 0]]))).unwrap();
        assert_eq!(args.bytes(0, "b").unwrap(), vec![9, 255, 0]);

        // Not bytes.
        let args = Args::decode(&cbor(&serde_json::json!([
            "x",
            [256],
            ["$Uint8Array", "!!"]
        ])))
        .unwrap();
        assert!(args.bytes(0, "b").is_err());
        assert!(args.bytes(1, "b").is_err());
        assert!(args.bytes(2, "b").is_err());
        assert!(args.bytes(3, "b").is_err());
    }

    #[test]
    fn hex_round_trips() {
        let bytes: Vec<u8> = (0..=255).collect();
        let text = hex_encode(&bytes);
        assert_eq!(&text[..8], "00010203");
        assert_eq!(hex_decode(&text).unwrap(), bytes);
        assert_eq!(hex_decode("FF0a").unwrap(), vec![255, 10]);
        assert_eq!(hex_decode(""), Some(Vec::new()));
        assert!(hex_decode("abc").is_none());
        assert!(hex_decode("zz").is_none());
    }

    #[test]
    fn byte_reply_encodes_as_json_compat_wrapper() {
        let encoded = encode_json_compat_to_vec(&ByteReply(&[1, 2, 3, 4])).unwrap();
        let mut expected = vec![0x82, 0x6b];
        expected.extend_from_slice(b"$Uint8Array");
        expected.push(0x68);
        expected.extend_from_slice(b"AQIDBA==");
        assert_eq!(encoded, expected);
        assert_eq!(
            decode_cbor_json(&encoded).unwrap(),
            serde_json::json!(["$Uint8Array", "AQIDBA=="])
        );
    }

    #[test]
    fn cbor_to_json_handles_every_kind() {
        let value = Value::Map(vec![
            (Value::Text("b".into()), Value::Bytes(vec![104, 105])),
            (Value::Integer(1.into()), Value::Float(f64::NAN)),
            (
                Value::Text("t".into()),
                Value::Tag(1, Box::new(Value::Integer(7.into()))),
            ),
            (
                Value::Text("a".into()),
                Value::Array(vec![Value::Bool(true), Value::Null, Value::Float(1.5)]),
            ),
            (Value::Text("u".into()), Value::Integer(u64::MAX.into())),
        ]);
        assert_eq!(
            cbor_to_json(&value),
            serde_json::json!({
                "b": ["$Uint8Array", "aGk="],
                "1": null,
                "t": 7,
                "a": [true, null, 1.5],
                "u": u64::MAX,
            })
        );
        assert_eq!(decode_cbor_json(&[]).unwrap(), Json::Null);
    }

    #[test]
    fn preflight_rejects_only_reject_true() {
        assert!(preflight_rejects(&cbor(
            &serde_json::json!({"reject": true})
        )));
        assert!(preflight_rejects(&cbor(
            &serde_json::json!({"reject": true, "x": 1})
        )));
        assert!(!preflight_rejects(&cbor(
            &serde_json::json!({"reject": false})
        )));
        assert!(!preflight_rejects(&cbor(
            &serde_json::json!({"reject": "true"})
        )));
        assert!(!preflight_rejects(&cbor(&serde_json::json!([true]))));
        assert!(!preflight_rejects(&[0xf6]));
        assert!(!preflight_rejects(&[]));
        assert!(!preflight_rejects(&[0xff]));
    }

    fn http_request_bytes(method: &str, uri: &str, body: &[u8]) -> Vec<u8> {
        let value = Value::Map(vec![
            (Value::Text("method".into()), Value::Text(method.into())),
            (Value::Text("uri".into()), Value::Text(uri.into())),
            (
                Value::Text("headers".into()),
                Value::Map(vec![(Value::Text("a".into()), Value::Text("b".into()))]),
            ),
            (Value::Text("body".into()), Value::Bytes(body.to_vec())),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).unwrap();
        out
    }

    #[test]
    fn http_request_decodes_and_response_echoes() {
        let request = HttpRequest::decode(&http_request_bytes("POST", "/x?y=1", b"hi")).unwrap();
        assert_eq!(request.method, "POST");
        assert_eq!(request.uri, "/x?y=1");
        assert_eq!(request.headers.get("a").map(String::as_str), Some("b"));
        assert_eq!(request.body, b"hi");

        let response: Value = ciborium::from_reader(http_response(&request).as_slice()).unwrap();
        let Value::Map(entries) = response else {
            panic!("not a map")
        };
        let keys: Vec<_> = entries
            .iter()
            .map(|(k, _)| k.as_text().unwrap().to_owned())
            .collect();
        assert_eq!(keys, ["status", "headers", "body"]);
        assert_eq!(entries[0].1, Value::Integer(200.into()));
        assert_eq!(
            cbor_to_json(&entries[1].1),
            serde_json::json!({"content-type": "application/json", "x-test-plugin": "1"})
        );
        let Value::Bytes(body) = &entries[2].1 else {
            panic!("body not bytes")
        };
        let echo: Json = serde_json::from_slice(body).unwrap();
        assert_eq!(
            echo,
            serde_json::json!({"method": "POST", "uri": "/x?y=1", "body": "hi", "headers": {"a": "b"}})
        );

        // Body as an int array is accepted too.
        let mut alt = Vec::new();
        ciborium::into_writer(
            &serde_json::json!({"method": "GET", "uri": "/", "headers": {}, "body": [104, 105]}),
            &mut alt,
        )
        .unwrap();
        assert_eq!(HttpRequest::decode(&alt).unwrap().body, b"hi");
        assert!(HttpRequest::decode(&[0xf6]).is_err());
    }

    #[test]
    fn status_route() {
        assert_eq!(status_for_uri("/status/404"), 404);
        assert_eq!(status_for_uri("/status/201?x=1"), 201);
        assert_eq!(status_for_uri("/status/503/more"), 503);
        assert_eq!(status_for_uri("/status/abc"), 200);
        assert_eq!(status_for_uri("/statusx/404"), 200);
        assert_eq!(status_for_uri("/"), 200);
        let request = HttpRequest::decode(&http_request_bytes("GET", "/status/418", b"")).unwrap();
        let response: Value = ciborium::from_reader(http_response(&request).as_slice()).unwrap();
        let Value::Map(entries) = response else {
            panic!("not a map")
        };
        assert_eq!(entries[0].1, Value::Integer(418.into()));
    }

    #[test]
    fn queue_response_shape() {
        let body = cbor(&serde_json::json!({"x": 1}));
        let bytes = queue_response("jobs", &body).unwrap();
        let decoded: QueueSendResponse = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert_eq!(decoded.status, "completed");
        let inner = decode_cbor_json(&decoded.response.unwrap()).unwrap();
        assert_eq!(
            inner,
            serde_json::json!({"queue": "jobs", "received": {"x": 1}})
        );
        // Empty body is received as null.
        let bytes = queue_response("q", &[]).unwrap();
        let decoded: QueueSendResponse = ciborium::from_reader(bytes.as_slice()).unwrap();
        let inner = decode_cbor_json(&decoded.response.unwrap()).unwrap();
        assert_eq!(inner, serde_json::json!({"queue": "q", "received": null}));
    }

    #[test]
    fn event_log_entries() {
        let frame = |tag: u32, payload: &[u8]| {
            decode_event_frame(&encode_event_frame(tag, ReplyToken(1), payload)).unwrap()
        };
        let action = frame(
            0,
            &rivet_actor_plugin_abi::encode_action_payload("ping", &[0x80]),
        );
        assert_eq!(event_log_entry(&action), "Action:ping");
        assert_eq!(event_tag_name(&action), "Action");
        let http = frame(1, &http_request_bytes("GET", "/a?b", b""));
        assert_eq!(event_log_entry(&http), "Http:GET /a?b");
        let sub = frame(
            2,
            &rivet_actor_plugin_abi::encode_subscribe_payload(&conn("c1"), "ev").unwrap(),
        );
        assert_eq!(event_log_entry(&sub), "Subscribe:ev");
        let open = frame(
            3,
            &rivet_actor_plugin_abi::encode_conn_open_payload(&conn("c2")).unwrap(),
        );
        assert_eq!(event_log_entry(&open), "ConnOpen:c2");
        let closed = frame(
            4,
            &rivet_actor_plugin_abi::encode_conn_closed_payload(&conn("c3")).unwrap(),
        );
        assert_eq!(event_log_entry(&closed), "ConnClosed:c3");
        let queue = frame(
            5,
            &rivet_actor_plugin_abi::encode_queue_send_payload(
                "jobs",
                &[0xf6],
                &conn("c4"),
                &[],
                true,
                None,
            )
            .unwrap(),
        );
        assert_eq!(event_log_entry(&queue), "QueueSend:jobs");
        let ws = frame(
            6,
            &rivet_actor_plugin_abi::encode_ws_open_payload(&conn("c5"), None).unwrap(),
        );
        assert_eq!(event_log_entry(&ws), "WsOpen:c5");
        assert_eq!(event_log_entry(&frame(7, &[])), "SerializeState");
        assert_eq!(event_log_entry(&frame(8, &[])), "Sleep");
        assert_eq!(event_log_entry(&frame(9, &[])), "Destroy");
        let pre = frame(
            10,
            &rivet_actor_plugin_abi::encode_conn_preflight_payload(&conn("c6"), &[0xf6]).unwrap(),
        );
        assert_eq!(event_log_entry(&pre), "ConnPreflight:c6");
    }

    #[test]
    fn error_json_shapes() {
        let plain: Json = serde_json::from_str(&error_json("c", "m", None)).unwrap();
        assert_eq!(plain, serde_json::json!({"code": "c", "message": "m"}));
        let with_meta: Json = serde_json::from_str(&error_json(
            "c",
            "m",
            Some(serde_json::json!({"from": "test-plugin"})),
        ))
        .unwrap();
        assert_eq!(
            with_meta,
            serde_json::json!({"code": "c", "message": "m", "metadata": {"from": "test-plugin"}})
        );
    }
}
