//! Wire conversions between rivetkit-core values and the ABI's CBOR shapes,
//! and the structured-error convention for `reply_err`.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, anyhow, bail};
use rivet_actor_plugin_abi::ConnInfo;
use rivet_error::{RivetError, RivetErrorKind};
use rivetkit_core::{ConnHandle, QueueSendResult, QueueSendStatus, Request, Response};
use serde::{Deserialize, Serialize};

pub fn conn_info(conn: &ConnHandle) -> ConnInfo {
    ConnInfo {
        id: conn.id().to_owned(),
        params: conn.params(),
        state: conn.state(),
        is_hibernatable: conn.is_hibernatable(),
    }
}

pub fn to_cbor<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out)?;
    Ok(out)
}

/// The HTTP request map of Http events (ABI §2.10): `body` is a byte string.
#[derive(Serialize)]
struct HttpRequestWire {
    method: String,
    uri: String,
    headers: BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

pub fn http_request(request: &Request) -> Result<Vec<u8>> {
    let (method, uri, headers, body) = request.to_parts();
    to_cbor(&HttpRequestWire { method, uri, headers: headers.into_iter().collect(), body })
}

/// `body` may be a byte string or an array of integers (ABI §2.10).
#[derive(Deserialize)]
struct HttpResponseWire {
    status: u16,
    headers: HashMap<String, String>,
    #[serde(default)]
    body: Option<BytesOrInts>,
}

/// A byte field that accepts both CBOR encodings the ABI allows.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum BytesOrInts {
    Bytes(#[serde(with = "serde_bytes")] Vec<u8>),
    Ints(Vec<u8>),
}

impl BytesOrInts {
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            BytesOrInts::Bytes(b) | BytesOrInts::Ints(b) => b,
        }
    }
}

pub fn http_response(payload: &[u8]) -> Result<Response> {
    let wire: HttpResponseWire =
        ciborium::from_reader(payload).context("plugin Http reply is not a {status, headers, body} CBOR map")?;
    Response::from_parts(wire.status, wire.headers, wire.body.map(BytesOrInts::into_vec).unwrap_or_default())
}

#[derive(Deserialize)]
struct QueueReplyWire {
    status: String,
    #[serde(default)]
    response: Option<BytesOrInts>,
}

pub fn queue_result(payload: &[u8]) -> Result<QueueSendResult> {
    let wire: QueueReplyWire = ciborium::from_reader(payload).context("plugin QueueSend reply is not CBOR")?;
    let status = match wire.status.as_str() {
        "completed" => QueueSendStatus::Completed,
        "timedOut" => QueueSendStatus::TimedOut,
        other => bail!("plugin QueueSend reply has unknown status `{other}`"),
    };
    Ok(QueueSendResult { status, response: wire.response.map(BytesOrInts::into_vec) })
}

/// Our structured-error convention for `reply_err` (design.md §4): a JSON
/// object `{code, message, metadata?}` becomes a public RivetKit error in
/// group `user`; any other text stays a plain (masked) internal error.
pub fn error_from_plugin(text: &str) -> anyhow::Error {
    #[derive(Deserialize)]
    struct Structured {
        code: String,
        message: String,
        #[serde(default)]
        metadata: Option<serde_json::Value>,
    }
    match serde_json::from_str::<Structured>(text) {
        Ok(s) if !s.code.is_empty() => user_error(s.code, s.message, s.metadata),
        _ => anyhow!("plugin error: {text}"),
    }
}

/// A public error in group `user`: RivetKit passes its code, message and
/// metadata through to clients unmasked.
pub fn user_error(code: String, message: String, metadata: Option<serde_json::Value>) -> anyhow::Error {
    let meta = metadata.and_then(|value| serde_json::value::to_raw_value(&value).ok());
    anyhow::Error::new(RivetError {
        kind: RivetErrorKind::Dynamic { group: "user".to_owned(), code, default_message: message.clone() },
        meta,
        message: Some(message),
        actor: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structured_text_becomes_a_user_error() {
        let err = error_from_plugin(r#"{"code":"ENOENT","message":"no such file: /x","metadata":{"path":"/x"}}"#);
        let rivet = RivetError::extract(&err);
        assert_eq!(rivet.group(), "user");
        assert_eq!(rivet.code(), "ENOENT");
        assert_eq!(rivet.message(), "no such file: /x");
        assert!(rivet.metadata().unwrap().to_string().contains("/x"));
    }

    #[test]
    fn plain_text_stays_internal() {
        let err = error_from_plugin("boom");
        assert_eq!(RivetError::extract(&err).group(), "core");
        assert!(err.to_string().contains("boom"));
    }

    #[test]
    fn http_response_accepts_bytes_and_int_arrays() {
        #[derive(Serialize)]
        struct R<'a> {
            status: u16,
            headers: BTreeMap<&'a str, &'a str>,
            #[serde(with = "serde_bytes")]
            body: &'a [u8],
        }
        let a = to_cbor(&R { status: 201, headers: [("x-a", "1")].into(), body: b"hi" }).unwrap();
        let r = http_response(&a).unwrap();
        assert_eq!(r.status().as_u16(), 201);
        assert_eq!(r.body(), b"hi");
        #[derive(Serialize)]
        struct I {
            status: u16,
            headers: BTreeMap<String, String>,
            body: Vec<u8>,
        }
        let b = to_cbor(&I { status: 200, headers: BTreeMap::new(), body: vec![1, 2] }).unwrap();
        assert_eq!(http_response(&b).unwrap().body(), &vec![1u8, 2]);
    }

    #[test]
    fn http_response_without_headers_is_an_error() {
        #[derive(Serialize)]
        struct R {
            status: u16,
        }
        assert!(http_response(&to_cbor(&R { status: 200 }).unwrap()).is_err());
    }

    #[test]
    fn queue_status_is_checked() {
        #[derive(Serialize)]
        struct Q<'a> {
            status: &'a str,
            response: Option<Vec<u8>>,
        }
        let ok = queue_result(&to_cbor(&Q { status: "completed", response: Some(vec![0xf6]) }).unwrap()).unwrap();
        assert_eq!(ok.status, QueueSendStatus::Completed);
        assert_eq!(ok.response, Some(vec![0xf6]));
        assert!(queue_result(&to_cbor(&Q { status: "done", response: None }).unwrap()).is_err());
    }
}
