//! A minimal actor connection (RivetKit client protocol over WebSocket, CBOR
//! encoding) for the bulk-file bar.
//!
//! Why not the official Rust client here: its WebSocket keeps tungstenite's
//! default 16 MiB frame limit, and a 16 MiB `readFile` reply is ~21.3 MiB
//! (bytes come back as `["$Uint8Array", base64]`), so the client drops the
//! socket and the action never completes. This connection raises the limit
//! and otherwise does what the official clients do: `/gateway/<actor id>/connect`
//! with the `rivet` subprotocols, `Init` first, then `ActionRequest` →
//! `ActionResponse` / `Error`. Byte arguments go as the JSON-compat
//! `["$Uint8Array", base64]` pair: rivetkit-core decodes a CBOR-encoded
//! message into JSON values and refuses a CBOR byte string.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ciborium::Value;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Largest frame / message accepted from the gateway.
const MAX_MESSAGE: usize = 256 << 20;

pub struct RawConn {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl RawConn {
    /// Connects to the actor `actor_id` through the engine at `endpoint`
    /// (`http://host:port`) and waits for its `Init` message.
    pub async fn open(endpoint: &str, actor_id: &str, limit: Duration) -> Result<RawConn> {
        let base = endpoint.strip_prefix("http://").context("endpoint must be http://")?;
        let mut request = format!("ws://{base}/gateway/{actor_id}/connect").into_client_request()?;
        let protocols = format!("rivet, rivet_target.actor, rivet_actor.{actor_id}, rivet_encoding.cbor");
        request.headers_mut().insert("Sec-WebSocket-Protocol", protocols.parse()?);
        let config = WebSocketConfig::default().max_frame_size(Some(MAX_MESSAGE)).max_message_size(Some(MAX_MESSAGE));
        let connect = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
        let (ws, _) = tokio::time::timeout(limit, connect).await.map_err(|_| anyhow!("connect timed out"))??;
        let mut conn = RawConn { ws, next_id: 0 };
        loop {
            let (tag, _) = conn.next_message(limit).await?;
            match tag.as_str() {
                "Init" => return Ok(conn),
                "Event" => continue,
                other => bail!("expected Init, got {other}"),
            }
        }
    }

    /// Calls `action` and returns its output.
    pub async fn action(&mut self, name: &str, args: Vec<Value>, limit: Duration) -> Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = map(vec![(
            "body",
            map(vec![
                ("tag", Value::Text("ActionRequest".into())),
                (
                    "val",
                    map(vec![
                        ("id", Value::Integer(id.into())),
                        ("name", Value::Text(name.into())),
                        ("args", Value::Array(args)),
                    ]),
                ),
            ]),
        )]);
        let mut bytes = Vec::new();
        ciborium::into_writer(&request, &mut bytes)?;
        self.ws.send(Message::Binary(bytes.into())).await.context("send action request")?;
        loop {
            let (tag, val) = self.next_message(limit).await.with_context(|| format!("action `{name}`"))?;
            match tag.as_str() {
                "ActionResponse" if field_u64(&val, "id") == Some(id) => {
                    return field(&val, "output").cloned().context("ActionResponse without output");
                }
                "Error" if field_u64(&val, "actionId").is_none_or(|a| a == id) => {
                    let text = |k| field(&val, k).and_then(Value::as_text).unwrap_or("?").to_owned();
                    bail!("action `{name}` failed: {}/{}: {}", text("group"), text("code"), text("message"));
                }
                _ => continue,
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The next protocol message as (tag, val).
    async fn next_message(&mut self, limit: Duration) -> Result<(String, Value)> {
        loop {
            let message = tokio::time::timeout(limit, self.ws.next())
                .await
                .map_err(|_| anyhow!("no message within {limit:?}"))?
                .context("connection closed")?
                .context("WebSocket error")?;
            let payload = match message {
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Close(frame) => bail!("connection closed by the server: {frame:?}"),
                _ => continue,
            };
            let value: Value = ciborium::from_reader(payload.as_slice()).context("decode CBOR message")?;
            let body = field(&value, "body").context("message without body")?;
            let tag = field(body, "tag").and_then(Value::as_text).context("message without tag")?.to_owned();
            let val = field(body, "val").cloned().unwrap_or(Value::Null);
            return Ok((tag, val));
        }
    }
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(entries.into_iter().map(|(k, v)| (Value::Text(k.into()), v)).collect())
}

fn field<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    value.as_map()?.iter().find(|(k, _)| k.as_text() == Some(name)).map(|(_, v)| v)
}

fn field_u64(value: &Value, name: &str) -> Option<u64> {
    match field(value, name)? {
        Value::Integer(int) => u64::try_from(i128::from(*int)).ok(),
        Value::Float(f) if *f >= 0.0 && f.fract() == 0.0 => Some(*f as u64),
        Value::Tag(_, inner) => match inner.as_ref() {
            // A CBOR bignum (tag 2) holding a small id.
            Value::Bytes(b) if b.len() <= 8 => Some(b.iter().fold(0u64, |acc, x| acc << 8 | u64::from(*x))),
            _ => None,
        },
        _ => None,
    }
}

/// The bytes of a `["$Uint8Array", base64]` or CBOR byte-string reply.
pub fn reply_bytes(value: &Value) -> Result<Vec<u8>> {
    use base64::Engine as _;
    match value {
        Value::Bytes(bytes) => Ok(bytes.clone()),
        Value::Array(items) => match items.as_slice() {
            [Value::Text(tag), Value::Text(b64)] if tag == "$Uint8Array" => {
                Ok(base64::engine::general_purpose::STANDARD.decode(b64)?)
            }
            _ => bail!("expected bytes, got an array of {} items", items.len()),
        },
        other => bail!("expected bytes, got {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_ids() {
        let value =
            map(vec![("id", Value::Integer(7.into())), ("big", Value::Tag(2, Box::new(Value::Bytes(vec![1, 0]))))]);
        assert_eq!(field_u64(&value, "id"), Some(7));
        assert_eq!(field_u64(&value, "big"), Some(256));
        assert_eq!(field_u64(&value, "missing"), None);
    }

    #[test]
    fn byte_replies() {
        let wrapped = Value::Array(vec![Value::Text("$Uint8Array".into()), Value::Text("AQID".into())]);
        assert_eq!(reply_bytes(&wrapped).unwrap(), vec![1, 2, 3]);
        assert_eq!(reply_bytes(&Value::Bytes(vec![9])).unwrap(), vec![9]);
        assert!(reply_bytes(&Value::Null).is_err());
    }
}
