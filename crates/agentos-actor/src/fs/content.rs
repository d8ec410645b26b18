//! File content in fixed-size chunks: `fs_chunks(ino, idx, data)` holds the
//! bytes `[idx * chunk, idx * chunk + len(data))` of a file.
//!
//! Files are sparse: a missing chunk, or the part of a chunk past its stored
//! length, reads as zeros. Invariant (checked by `check`): a stored chunk is
//! non-empty, at most `chunk` bytes long and ends at or before the file size.
//! So extending a file (truncate up, pwrite past the end) writes no zeros,
//! and shrinking it deletes or cuts exactly the chunks past the new end.
//!
//! All writes are generated as SQL text with `X'..'` literals (BLOBs cannot
//! be bound through the host ABI). A partial chunk write splices the new
//! bytes into the stored chunk inside SQLite, so the old chunk never travels
//! over the ABI.

use std::fmt::Write as _;

use anyhow::Result;
use serde_json::json;

use super::meta::Ino;
use super::sql::{SqlExec, col_bytes, col_i64, push_blob_literal};

/// SQL text per chunk statement besides the hex of its data.
const PER_CHUNK_SQL: usize = 400;

/// How many chunks of `chunk` bytes fit into one batch of `max_batch` bytes
/// of SQL text (hex doubles the data). At least one.
pub fn chunks_per_batch(chunk: u64, max_batch: usize) -> u64 {
    let per_chunk = (chunk as usize).saturating_mul(2) + PER_CHUNK_SQL;
    (max_batch.saturating_sub(4096) / per_chunk).max(1) as u64
}

/// The chunks of `data` (a file's whole content) that hold a non-zero byte,
/// as (idx, bytes). All-zero chunks are left out: they read back as zeros.
pub fn nonzero_chunks(data: &[u8], chunk: u64) -> Vec<(u64, &[u8])> {
    data.chunks(chunk as usize)
        .enumerate()
        .filter(|(_, part)| part.iter().any(|b| *b != 0))
        .map(|(idx, part)| (idx as u64, part))
        .collect()
}

/// Inserts chunks of a file that has none.
pub fn push_insert_chunks(sql: &mut String, ino: Ino, chunks: &[(u64, &[u8])]) {
    for (idx, part) in chunks {
        let _ = write!(sql, "INSERT INTO fs_chunks (ino, idx, data) VALUES ({ino}, {idx}, ");
        push_blob_literal(sql, part);
        sql.push_str(");\n");
    }
}

/// Deletes every chunk of a file.
pub fn push_delete_all(sql: &mut String, ino: Ino) {
    let _ = writeln!(sql, "DELETE FROM fs_chunks WHERE ino = {ino};");
}

/// Writes `data` at `offset`. Touches exactly the chunks the range covers.
/// Each chunk is created if missing (zeros before the data inside it) or
/// spliced: stored bytes before the range, zeros up to the range if the
/// chunk was shorter, the data, then stored bytes after the range.
pub fn push_pwrite(sql: &mut String, ino: Ino, chunk: u64, offset: u64, data: &[u8]) {
    let mut pos = 0usize;
    while pos < data.len() {
        let abs = offset + pos as u64;
        let idx = abs / chunk;
        let start = abs % chunk; // in-chunk start
        let take = ((chunk - start) as usize).min(data.len() - pos);
        let part = &data[pos..pos + take];
        let end = start + take as u64; // in-chunk end
        let _ = write!(sql, "INSERT INTO fs_chunks (ino, idx, data) VALUES ({ino}, {idx}, ");
        if start == 0 {
            push_blob_literal(sql, part);
        } else {
            let _ = write!(sql, "CAST(zeroblob({start}) || ");
            push_blob_literal(sql, part);
            sql.push_str(" AS BLOB)");
        }
        let _ = writeln!(
            sql,
            ") ON CONFLICT (ino, idx) DO UPDATE SET data = CAST(substr(data, 1, {start}) || \
             zeroblob(max(0, {start} - length(data))) || substr(excluded.data, {from}) || \
             substr(data, {after}) AS BLOB);",
            from = start + 1,
            after = end + 1,
        );
        pos += take;
    }
}

/// Changes the size from `old` to `new`: shrinking deletes the chunks past
/// the new end and cuts the one it falls in; growing writes nothing.
pub fn push_truncate(sql: &mut String, ino: Ino, chunk: u64, old: u64, new: u64) {
    if new >= old {
        return;
    }
    let first_gone = new.div_ceil(chunk);
    let _ = writeln!(sql, "DELETE FROM fs_chunks WHERE ino = {ino} AND idx >= {first_gone};");
    let keep = new % chunk;
    if keep != 0 {
        let idx = new / chunk;
        let _ = writeln!(
            sql,
            "UPDATE fs_chunks SET data = substr(data, 1, {keep}) WHERE ino = {ino} AND idx = {idx} AND length(data) > {keep};"
        );
    }
}

/// Reads `len` bytes at `offset` of a file of `size` bytes (clamped to the
/// size). Fetches only the chunks of that range; holes read as zeros.
pub async fn read_range<S: SqlExec>(sql: &S, ino: Ino, chunk: u64, size: u64, offset: u64, len: u64) -> Result<Vec<u8>> {
    if offset >= size || len == 0 {
        return Ok(Vec::new());
    }
    let len = len.min(size - offset);
    let mut out = vec![0u8; len as usize];
    let first = offset / chunk;
    let last = (offset + len - 1) / chunk;
    let rows = sql
        .query(
            "SELECT idx, hex(data) AS data FROM fs_chunks WHERE ino = ? AND idx BETWEEN ? AND ? ORDER BY idx",
            &json!([ino, first, last]),
        )
        .await?;
    for row in &rows {
        let idx = u64::try_from(col_i64(row, "idx")?)?;
        let data = col_bytes(row, "data")?.unwrap_or_default();
        let chunk_start = idx * chunk;
        // Overlap of [chunk_start, chunk_start + data.len()) with [offset, offset + len).
        let from = chunk_start.max(offset);
        let to = (chunk_start + data.len() as u64).min(offset + len);
        if from < to {
            let src = &data[(from - chunk_start) as usize..(to - chunk_start) as usize];
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
    }
    Ok(out)
}
