//! The actor's raw HTTP route (`/request/...` on the gateway, which strips
//! `/request`): `/preview/<token>/<path>?<query>` proxies to the guest port
//! of a live preview token. Everything else is a JSON 404.

use std::collections::BTreeMap;

use agentos_client::net::HttpRequest;
use serde::{Deserialize, Serialize};

use crate::actions::net::preview_port;
use crate::host::HostCtx;
use crate::vm::VmSlot;

/// The host's HTTP request map (ABI reference §2.10).
#[derive(Deserialize)]
struct Request {
    method: String,
    uri: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default, with = "serde_bytes")]
    body: Vec<u8>,
}

/// The reply map the host expects; `headers` must be present.
#[derive(Serialize)]
struct Response {
    status: u16,
    headers: BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

impl Response {
    fn json(status: u16, code: &str, message: &str) -> Self {
        let body = serde_json::json!({ "code": code, "message": message }).to_string().into_bytes();
        Self { status, headers: [("content-type".to_owned(), "application/json".to_owned())].into(), body }
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).expect("an HTTP response map encodes");
        out
    }
}

/// Answers one raw HTTP request. Never boots the VM: a preview of a
/// sleeping actor has no guest server to reach.
pub async fn handle(host: &HostCtx, vm: &VmSlot, payload: &[u8]) -> Vec<u8> {
    let request: Request = match ciborium::from_reader(payload) {
        Ok(request) => request,
        Err(e) => return Response::json(400, "bad_request", &format!("undecodable HTTP request: {e}")).encode(),
    };
    let Some((token, path)) = split_preview(&request.uri) else {
        return Response::json(404, "not_found", "no such route on the agentOS actor").encode();
    };
    let port = match preview_port(host, &token).await {
        Ok(Some(port)) => port,
        Ok(None) => return Response::json(404, "not_found", "no such preview (unknown or expired token)").encode(),
        Err(e) => return Response::json(500, "internal", &e.message).encode(),
    };
    let Some((running, _)) = vm.running() else {
        return Response::json(503, "vm_unavailable", "the actor's VM is not running; call an action to start it")
            .encode();
    };
    // The guest sees its own host; hop-by-hop headers stay with the gateway.
    let mut headers = request.headers;
    for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade", "host", "content-length"] {
        headers.remove(hop);
    }
    let body = match crate::actions::net::text_body(request.body) {
        Ok(body) => (!body.is_empty()).then_some(body),
        Err(e) => return Response::json(400, "invalid_argument", &format!("request body {e}")).encode(),
    };
    let forwarded = HttpRequest { port, path, method: request.method, headers, body };
    match running.http_request(forwarded).await {
        Ok(response) => {
            let mut headers = response.headers;
            headers.remove("transfer-encoding");
            headers.remove("connection");
            Response { status: response.status, headers, body: response.body }.encode()
        }
        Err(e) => Response::json(502, "bad_gateway", &format!("guest port {port} did not answer: {e:#}")).encode(),
    }
}

/// `/preview/<token>[/<rest>][?query]` → (token, `/<rest>?query`).
fn split_preview(uri: &str) -> Option<(String, String)> {
    // The host gives a path with query; tolerate an absolute URI too.
    let uri = crate::actions::net::path_and_query(uri)?;
    let rest = uri.strip_prefix("/preview/")?;
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let token = &rest[..end];
    if token.is_empty() {
        return None;
    }
    let tail = &rest[end..];
    let path = if tail.starts_with('/') { tail.to_owned() } else { format!("/{tail}") };
    Some((token.to_owned(), path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preview_paths_keep_the_query() {
        assert_eq!(split_preview("/preview/abc"), Some(("abc".into(), "/".into())));
        assert_eq!(split_preview("/preview/abc/x/y?q=1&r=2"), Some(("abc".into(), "/x/y?q=1&r=2".into())));
        assert_eq!(split_preview("/preview/abc?q=1"), Some(("abc".into(), "/?q=1".into())));
        assert_eq!(split_preview("/preview/"), None);
        assert_eq!(split_preview("/other/abc"), None);
    }

    #[test]
    fn error_responses_have_headers_and_byte_bodies() {
        let bytes = Response::json(404, "not_found", "x").encode();
        let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
        let map = value.as_map().unwrap();
        let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_text().unwrap()).collect();
        assert_eq!(keys, vec!["status", "headers", "body"]);
        assert!(map[2].1.is_bytes());
    }
}
