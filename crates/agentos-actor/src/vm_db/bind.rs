//! One statement of the sidecar, made ready for the host ABI: its
//! parameters written into the SQL text as literals (the ABI cannot bind a
//! BLOB), and what kind of result it gives.

use agentos_actor_uds_client::SqlValue;

use crate::fs::sql::{push_blob_literal, text_literal};

/// What a statement returns, judged by its first keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `SELECT` / `VALUES`: rows, with columns SQLite names.
    Rows,
    /// `WITH ...`: rows when the statement under the CTEs is a query.
    MaybeRows,
    /// `PRAGMA` / `EXPLAIN`: rows whose column order only the host's row
    /// maps tell (exact for the usual single column).
    Pragma,
    /// Anything else: a change count and the last insert id.
    Write,
}

impl Kind {
    /// Whether the statement can change the database.
    pub fn writes(self) -> bool {
        !matches!(self, Kind::Rows)
    }
}

#[derive(Debug)]
pub struct Bound {
    /// The statement with every parameter as a literal.
    pub sql: String,
    /// The statement with every parameter as `NULL`: same result columns,
    /// usable where parameters are not allowed (a view).
    pub shape: String,
    pub kind: Kind,
}

/// Writes `params` into `sql` (`?` and `?NNN` placeholders). Exactly one
/// statement, and exactly as many parameters as it uses.
pub fn bind(sql: &str, params: &[SqlValue]) -> Result<Bound, String> {
    let literals = params.iter().map(literal).collect::<Result<Vec<_>, _>>()?;
    let mut out = String::with_capacity(sql.len() + 16);
    let mut shape = String::with_capacity(sql.len());
    let mut next_index = 0usize;
    let mut highest = 0usize;
    let bytes = sql.as_bytes();
    let mut i = 0;
    let mut ended = false;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let token_end = match c {
            b'\'' | b'"' | b'`' => quoted_end(bytes, i, c)?,
            b'[' => sql[i..].find(']').map(|at| i + at + 1).ok_or("unterminated [identifier]")?,
            b'-' if bytes.get(i + 1) == Some(&b'-') => sql[i..].find('\n').map_or(bytes.len(), |at| i + at + 1),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                sql[i + 2..].find("*/").map(|at| i + 2 + at + 2).ok_or("unterminated /* comment */")?
            }
            b'?' => {
                let digits = bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
                let index = if digits == 0 {
                    next_index + 1
                } else {
                    sql[i + 1..i + 1 + digits].parse::<usize>().map_err(|_| "parameter number too large")?
                };
                if index == 0 {
                    return Err("parameter ?0 does not exist (they count from 1)".into());
                }
                let literal = literals.get(index - 1).ok_or_else(|| {
                    format!("the statement uses parameter {index} but {} were given", params.len())
                })?;
                if ended {
                    return Err("only one statement per query".into());
                }
                out.push_str(literal);
                shape.push_str("NULL");
                next_index = next_index.max(index);
                highest = highest.max(index);
                i += 1 + digits;
                continue;
            }
            b':' | b'@' | b'$' if bytes.get(i + 1).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
                && (i == 0 || !is_ident(bytes[i - 1])) =>
            {
                return Err(format!("named parameters are not supported (at `{}`)", &sql[i..(i + 16).min(sql.len())]));
            }
            b';' => {
                ended = true;
                i + 1
            }
            c if c.is_ascii_whitespace() => i + 1,
            _ => {
                if ended {
                    return Err("only one statement per query".into());
                }
                // Advance by one whole UTF-8 character.
                i + sql[i..].chars().next().map_or(1, char::len_utf8)
            }
        };
        out.push_str(&sql[start..token_end]);
        shape.push_str(&sql[start..token_end]);
        i = token_end;
    }
    if highest != params.len() {
        return Err(format!("the statement uses {highest} parameters but {} were given", params.len()));
    }
    Ok(Bound { kind: kind_of(sql), sql: out, shape })
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The end of a quoted token starting at `start` (the quote doubled inside
/// stands for itself).
fn quoted_end(bytes: &[u8], start: usize, quote: u8) -> Result<usize, String> {
    let mut i = start + 1;
    while i < bytes.len() {
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return Ok(i + 1);
        }
        i += 1;
    }
    Err(format!("unterminated {} quote", quote as char))
}

/// The SQL literal of one value.
fn literal(value: &SqlValue) -> Result<String, String> {
    Ok(match value {
        SqlValue::SqlNull => "NULL".to_owned(),
        SqlValue::SqlInteger(n) => n.to_string(),
        SqlValue::SqlReal(f) if f.is_finite() => {
            // Debug prints the shortest text that reads back as the same f64,
            // and always with a `.` or an exponent, so SQLite sees a REAL.
            format!("{f:?}")
        }
        SqlValue::SqlReal(f) => return Err(format!("a REAL parameter must be finite, got {f}")),
        SqlValue::SqlText(text) if text.contains('\0') => {
            let mut blob = String::new();
            push_blob_literal(&mut blob, text.as_bytes());
            format!("CAST({blob} AS TEXT)")
        }
        SqlValue::SqlText(text) => text_literal(text),
        SqlValue::SqlBlob(bytes) => {
            let mut blob = String::with_capacity(bytes.len() * 2 + 3);
            push_blob_literal(&mut blob, bytes);
            blob
        }
    })
}

fn kind_of(sql: &str) -> Kind {
    let keyword: String = strip_leading_comments(sql)
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect::<String>()
        .to_ascii_uppercase();
    match keyword.as_str() {
        "SELECT" | "VALUES" => Kind::Rows,
        "WITH" => Kind::MaybeRows,
        "PRAGMA" | "EXPLAIN" => Kind::Pragma,
        _ => Kind::Write,
    }
}

fn strip_leading_comments(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.find('\n').map_or("", |at| &rest[at + 1..]);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.find("*/").map_or("", |at| &rest[at + 2..]);
        } else {
            return sql;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SqlValue::*;

    #[test]
    fn parameters_become_literals_of_their_type() {
        let bound = bind(
            "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?)",
            &[SqlNull, SqlInteger(-7), SqlReal(1.0), SqlText("it's".into()), SqlBlob(vec![0, 255]), SqlReal(1e-7)],
        )
        .unwrap();
        assert_eq!(bound.sql, "INSERT INTO t VALUES (NULL, -7, 1.0, 'it''s', X'00FF', 1e-7)");
        assert_eq!(bound.shape, "INSERT INTO t VALUES (NULL, NULL, NULL, NULL, NULL, NULL)");
        assert_eq!(bound.kind, Kind::Write);
    }

    #[test]
    fn question_marks_in_strings_identifiers_and_comments_are_not_parameters() {
        let sql = "SELECT '?', \"a?\", [b?], `c?` -- ?\n /* ? */ FROM t WHERE x = ?";
        let bound = bind(sql, &[SqlInteger(1)]).unwrap();
        assert!(bound.sql.ends_with("WHERE x = 1"), "{}", bound.sql);
        assert!(bound.sql.starts_with("SELECT '?', \"a?\", [b?], `c?` -- ?\n /* ? */"), "{}", bound.sql);
        assert_eq!(bound.kind, Kind::Rows);
    }

    #[test]
    fn numbered_parameters_repeat_and_plain_ones_continue_after_the_highest() {
        let bound = bind("SELECT ?2, ?1, ?2, ?", &[SqlInteger(1), SqlInteger(2), SqlInteger(3)]).unwrap();
        assert_eq!(bound.sql, "SELECT 2, 1, 2, 3");
    }

    #[test]
    fn wrong_parameter_counts_and_shapes_are_named() {
        assert!(bind("SELECT ?", &[]).unwrap_err().contains("uses parameter 1 but 0 were given"));
        assert!(bind("SELECT ?", &[SqlNull, SqlNull]).unwrap_err().contains("uses 1 parameters but 2"));
        assert!(bind("SELECT :name", &[]).unwrap_err().contains("named parameters"));
        assert!(bind("SELECT 1; SELECT 2", &[]).unwrap_err().contains("one statement"));
        assert!(bind("SELECT 'open", &[]).unwrap_err().contains("unterminated"));
        assert!(bind("SELECT ?", &[SqlReal(f64::NAN)]).unwrap_err().contains("finite"));
        // A trailing semicolon and comment are fine.
        assert_eq!(bind("SELECT 1; -- done", &[]).unwrap().sql, "SELECT 1; -- done");
    }

    #[test]
    fn text_with_nul_travels_as_a_cast_blob() {
        assert_eq!(bind("SELECT ?", &[SqlText("a\0b".into())]).unwrap().sql, "SELECT CAST(X'610062' AS TEXT)");
    }

    #[test]
    fn kinds_follow_the_first_keyword() {
        for (sql, kind) in [
            ("  select 1", Kind::Rows),
            ("/* c */ VALUES (1)", Kind::Rows),
            ("-- c\nWITH x AS (SELECT 1) SELECT * FROM x", Kind::MaybeRows),
            ("PRAGMA foreign_keys", Kind::Pragma),
            ("UPDATE t SET a = 1", Kind::Write),
            ("CREATE TABLE t (a)", Kind::Write),
        ] {
            assert_eq!(bind(sql, &[]).unwrap().kind, kind, "{sql}");
        }
    }
}
