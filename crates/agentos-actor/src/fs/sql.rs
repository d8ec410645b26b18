//! The only way the filesystem reaches SQLite: [`SqlExec`], shaped like the
//! host ABI's `db_exec` / `db_query` / `db_run`.
//!
//! ABI facts this module is built around: parameters are JSON scalars (a
//! BLOB cannot be bound), and rows come back as maps column → value with a
//! BLOB as an array of byte-valued integers. So binary data is written as
//! `X'..'` literals inside the SQL text and read back as `hex(data)` text.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use serde_json::Value;

use crate::host::HostCtx;

/// One result row: column name → value.
pub type Row = serde_json::Map<String, Value>;

/// Asynchronous SQL access. `exec` runs a batch of statements without
/// parameters (used for whole transactions), `query` returns rows of one
/// statement, `run` executes one statement with parameters.
pub trait SqlExec: Send + Sync + 'static {
    fn exec(&self, sql: &str) -> impl Future<Output = Result<()>> + Send;
    /// Like `exec`, replying with the rows of the batch's last statement
    /// that returned rows.
    fn exec_rows(&self, sql: &str) -> impl Future<Output = Result<Vec<Row>>> + Send;
    /// A batch that opens and ends its own transaction. A failed batch is
    /// rolled back before any other statement can run on the database.
    fn atomic(&self, batch: &str) -> impl Future<Output = Result<Vec<Row>>> + Send;
    fn query(&self, sql: &str, params: &Value) -> impl Future<Output = Result<Vec<Row>>> + Send;
    fn run(&self, sql: &str, params: &Value) -> impl Future<Output = Result<()>> + Send;
}

impl SqlExec for HostCtx {
    async fn exec(&self, sql: &str) -> Result<()> {
        self.db_exec(sql).await.map(drop)
    }

    async fn exec_rows(&self, sql: &str) -> Result<Vec<Row>> {
        crate::host::decode_cbor(&self.db_exec(sql).await?, "db_exec")
    }

    async fn atomic(&self, batch: &str) -> Result<Vec<Row>> {
        crate::host::decode_cbor(&self.db_atomic(batch).await?, "db_exec")
    }

    fn query(&self, sql: &str, params: &Value) -> impl Future<Output = Result<Vec<Row>>> + Send {
        self.db_query(sql, params)
    }

    fn run(&self, sql: &str, params: &Value) -> impl Future<Output = Result<()>> + Send {
        self.db_run(sql, params)
    }
}

impl<T: SqlExec> SqlExec for Arc<T> {
    fn exec(&self, sql: &str) -> impl Future<Output = Result<()>> + Send {
        (**self).exec(sql)
    }

    fn exec_rows(&self, sql: &str) -> impl Future<Output = Result<Vec<Row>>> + Send {
        (**self).exec_rows(sql)
    }

    fn atomic(&self, batch: &str) -> impl Future<Output = Result<Vec<Row>>> + Send {
        (**self).atomic(batch)
    }

    fn query(&self, sql: &str, params: &Value) -> impl Future<Output = Result<Vec<Row>>> + Send {
        (**self).query(sql, params)
    }

    fn run(&self, sql: &str, params: &Value) -> impl Future<Output = Result<()>> + Send {
        (**self).run(sql, params)
    }
}

/// Runs `body` (SQL statements) as one `BEGIN IMMEDIATE; ...; COMMIT;`
/// batch. If the batch fails, the transaction is rolled back (before any
/// other statement runs) so no half of it stays applied or open.
pub async fn transaction<S: SqlExec>(sql: &S, body: &str) -> Result<()> {
    let mut batch = String::with_capacity(body.len() + 40);
    batch.push_str("BEGIN IMMEDIATE;\n");
    batch.push_str(body);
    if !body.ends_with('\n') {
        batch.push('\n');
    }
    batch.push_str("COMMIT;\n");
    sql.atomic(&batch).await.map(drop)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `X'..'`, the SQL BLOB literal of `bytes`.
pub fn push_blob_literal(out: &mut String, bytes: &[u8]) {
    let mut hex = Vec::with_capacity(bytes.len() * 2 + 3);
    hex.extend_from_slice(b"X'");
    for byte in bytes {
        hex.push(HEX_DIGITS[usize::from(byte >> 4)]);
        hex.push(HEX_DIGITS[usize::from(byte & 0x0f)]);
    }
    hex.push(b'\'');
    out.push_str(&String::from_utf8(hex).expect("hex digits are ASCII"));
}

/// The SQL TEXT literal of `text` (single quotes doubled). Callers reject
/// NUL bytes beforehand: SQL text handed to SQLite ends at the first NUL.
pub fn text_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Decodes hex text (as produced by SQLite's `hex()`).
pub fn decode_hex(text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|e| anyhow!("invalid hex text: {e}"))
}

/// An integer column.
pub fn col_i64(row: &Row, col: &str) -> Result<i64> {
    row.get(col)
        .and_then(Value::as_i64)
        .with_context(|| format!("column `{col}` is not an integer: {:?}", row.get(col)))
}

/// A text column.
pub fn col_text<'a>(row: &'a Row, col: &str) -> Result<&'a str> {
    row.get(col)
        .and_then(Value::as_str)
        .with_context(|| format!("column `{col}` is not text: {:?}", row.get(col)))
}

/// A nullable binary column, read either as `hex(..)` text or as the ABI's
/// array of byte values.
pub fn col_bytes(row: &Row, col: &str) -> Result<Option<Vec<u8>>> {
    match row.get(col) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(hex)) => decode_hex(hex).map(Some).with_context(|| format!("column `{col}`")),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| {
                item.as_u64()
                    .and_then(|b| u8::try_from(b).ok())
                    .with_context(|| format!("column `{col}` holds a non-byte value {item}"))
            })
            .collect::<Result<Vec<u8>>>()
            .map(Some),
        Some(other) => Err(anyhow!("column `{col}` is not binary: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hex_round_trip() {
        let bytes: Vec<u8> = (0..=255).collect();
        let mut lit = String::new();
        push_blob_literal(&mut lit, &bytes);
        assert!(lit.starts_with("X'000102"));
        assert_eq!(decode_hex(&lit[2..lit.len() - 1]).unwrap(), bytes);
        assert_eq!(decode_hex("ff0A").unwrap(), vec![255, 10]);
        assert!(decode_hex("abc").is_err());
        assert!(decode_hex("zz").is_err());
    }

    #[test]
    fn text_literal_escapes_quotes() {
        assert_eq!(text_literal("it's"), "'it''s'");
    }

    #[test]
    fn bytes_columns_accept_hex_and_arrays() {
        let row: Row = serde_json::from_value(json!({"a": "0102", "b": [1, 2], "c": null, "d": [300]})).unwrap();
        assert_eq!(col_bytes(&row, "a").unwrap(), Some(vec![1, 2]));
        assert_eq!(col_bytes(&row, "b").unwrap(), Some(vec![1, 2]));
        assert_eq!(col_bytes(&row, "c").unwrap(), None);
        assert!(col_bytes(&row, "d").is_err());
    }
}
