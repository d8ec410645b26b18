//! HTTP into the VM: `vmFetch`, and signed preview URLs that expose a guest
//! port through the actor's raw HTTP route `/request/preview/<token>/...`.

use std::collections::BTreeMap;

use agentos_client::net::HttpRequest;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::json;

use super::{now_ms, reply, reply_null};
use crate::args::{ArgType, Field, opt, req};
use crate::contract::{ActionSpec, Call, Section};
use crate::error::{ActorError, internal_while};

type Reply = BoxFuture<'static, Result<Vec<u8>, ActorError>>;

/// A preview link lives at most a day; 0 or absent means an hour.
pub const MAX_PREVIEW_TTL_SECONDS: u64 = 24 * 60 * 60;
const DEFAULT_PREVIEW_TTL_SECONDS: u64 = 60 * 60;

const FETCH_OPTIONS: &[Field] = &[
    opt("method", ArgType::Str, "HTTP method (default GET)."),
    opt("headers", ArgType::StrMap, "Request headers."),
    opt("body", ArgType::Bytes, "Request body."),
];

/// The network area of the contract.
pub static SECTION: Section = Section {
    area: "Network and previews",
    actions: &[
        ActionSpec {
            name: "vmFetch",
            summary: "Send an HTTP request to a server listening on `port` inside the VM.",
            params: &[
                req("port", ArgType::U16, "Guest port."),
                req("url", ArgType::Str, "Path with query (`/a?b=1`), or a full URL whose path and query are used."),
                opt("options", ArgType::Object(FETCH_OPTIONS), "Method, headers and body."),
            ],
            returns: "FetchResponse",
            handler: vm_fetch,
            detached: true,
        },
        ActionSpec {
            name: "createSignedPreviewUrl",
            summary: "Create an unguessable URL path that proxies HTTP to a guest port until it expires (`ttlSeconds` at most 86400; 0 or absent: 3600).",
            params: &[
                req("port", ArgType::U16, "Guest port."),
                opt("ttlSeconds", ArgType::UInt { max: MAX_PREVIEW_TTL_SECONDS }, "Lifetime in seconds."),
            ],
            returns: "PreviewUrl",
            handler: create_preview,
            detached: false,
        },
        ActionSpec {
            name: "expireSignedPreviewUrl",
            summary: "Revoke a preview URL now (idempotent).",
            params: &[req("token", ArgType::Str, "The preview's token.")],
            returns: "null",
            handler: expire_preview,
            detached: false,
        },
    ],
    events: &[],
    types: &[
        (
            "FetchResponse",
            "{ status: number; statusText: string; headers: Record<string, string>; body: Uint8Array }",
        ),
        ("PreviewUrl", "{ path: string; token: string; port: number; expiresAt: number }"),
    ],
};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FetchReply {
    status: u16,
    status_text: String,
    headers: BTreeMap<String, String>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
}

/// A request body the engine can carry unchanged. agentos-client 0.2.21
/// hands bodies to the sidecar as text (`String::from_utf8_lossy`), so
/// bytes that are not UTF-8 would arrive altered: refuse them instead.
pub fn text_body(body: Vec<u8>) -> Result<Vec<u8>, String> {
    match std::str::from_utf8(&body) {
        Ok(_) => Ok(body),
        Err(e) => Err(format!(
            "must be UTF-8 (byte {} is not): the engine carries request bodies as text and would alter it",
            e.valid_up_to()
        )),
    }
}

fn vm_fetch(call: Call) -> Reply {
    async move {
        let port = call.args.uint(0)? as u16;
        let url = call.args.str(1)?;
        let options = call.args.object(2)?;
        let path = path_and_query(&url).ok_or_else(|| {
            ActorError::invalid_argument("url", format!("must be a path starting with `/` or an http(s) URL, got `{url}`"))
        })?;
        let request = HttpRequest {
            port,
            path,
            method: options.str("method").unwrap_or_else(|| "GET".into()).to_uppercase(),
            headers: options.str_map("headers"),
            body: options.bytes("body").map(text_body).transpose().map_err(|e| ActorError::invalid_argument("options.body", e))?,
        };
        let response = call.vm().await?.http_request(request).await.map_err(|e| fetch_error(e, port))?;
        reply(&FetchReply {
            status: response.status,
            status_text: response.status_text,
            headers: response.headers,
            body: response.body,
        })
    }
    .boxed()
}

fn fetch_error(error: anyhow::Error, port: u16) -> ActorError {
    let mapped = ActorError::from_vm(error);
    ActorError::new(mapped.code, format!("HTTP request to guest port {port} failed: {}", mapped.message))
        .with_field("port", port)
}

/// The path and query of `url`: itself when it is a path, the part after
/// the authority for an absolute http(s) URL.
pub fn path_and_query(url: &str) -> Option<String> {
    if url.starts_with('/') {
        return Some(url.to_owned());
    }
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let start = rest.find(['/', '?']).unwrap_or(rest.len());
    let tail = &rest[start..];
    Some(if tail.starts_with('/') { tail.to_owned() } else { format!("/{tail}") })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PreviewReply {
    path: String,
    token: String,
    port: u16,
    expires_at: i64,
}

fn create_preview(call: Call) -> Reply {
    async move {
        let port = call.args.uint(0)? as u16;
        let ttl = match call.args.opt_uint(1)? {
            None | Some(0) => DEFAULT_PREVIEW_TTL_SECONDS,
            Some(ttl) => ttl,
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        let expires_at = now_ms() + (ttl as i64) * 1000;
        call.host
            .db_run(
                "INSERT INTO agentos_preview_tokens (token, port, expires_at_ms) VALUES (?, ?, ?)",
                &json!([token, port, expires_at]),
            )
            .await
            .map_err(internal_while("store preview token"))?;
        reply(&PreviewReply { path: format!("/request/preview/{token}"), token, port, expires_at })
    }
    .boxed()
}

fn expire_preview(call: Call) -> Reply {
    async move {
        let token = call.args.str(0)?;
        call.host
            .db_run("DELETE FROM agentos_preview_tokens WHERE token = ?", &json!([token]))
            .await
            .map_err(internal_while("delete preview token"))?;
        reply_null()
    }
    .boxed()
}

/// The guest port of a live preview token; expired tokens are deleted.
pub async fn preview_port(host: &crate::host::HostCtx, token: &str) -> Result<Option<u16>, ActorError> {
    let rows = host
        .db_query("SELECT port, expires_at_ms FROM agentos_preview_tokens WHERE token = ?", &json!([token]))
        .await
        .map_err(internal_while("read preview token"))?;
    let Some(row) = rows.first() else { return Ok(None) };
    let port = row.get("port").and_then(|v| v.as_u64()).unwrap_or(0) as u16;
    let expires_at = row.get("expires_at_ms").and_then(|v| v.as_i64()).unwrap_or(0);
    if expires_at <= now_ms() {
        let _ = host.db_run("DELETE FROM agentos_preview_tokens WHERE token = ?", &json!([token])).await;
        return Ok(None);
    }
    Ok(Some(port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utf8_bodies_pass_unchanged() {
        assert_eq!(text_body("héllo\0".as_bytes().to_vec()).unwrap(), "héllo\0".as_bytes());
        let error = text_body(vec![b'a', 0x80, 0xfe]).unwrap_err();
        assert!(error.contains("byte 1 is not"), "{error}");
    }

    #[test]
    fn path_and_query_of_paths_and_urls() {
        assert_eq!(path_and_query("/a?b=1").as_deref(), Some("/a?b=1"));
        assert_eq!(path_and_query("http://localhost:3000/x/y?q=2").as_deref(), Some("/x/y?q=2"));
        assert_eq!(path_and_query("https://h").as_deref(), Some("/"));
        assert_eq!(path_and_query("http://h?x=1").as_deref(), Some("/?x=1"));
        assert_eq!(path_and_query("relative"), None);
        assert_eq!(path_and_query("ftp://h/x"), None);
    }
}
