//! Test support: an in-memory rusqlite database behind [`SqlExec`], shaped
//! like the host ABI (BLOBs come back as arrays of byte values), with a log
//! of statements, failure injection and an audit of chunk-row writes.

use std::future::{Future, ready};
use std::sync::{Arc, Mutex};

use anyhow::{Result, anyhow};
use rusqlite::types::{Value as SqlValue, ValueRef};
use rusqlite::{Connection, params_from_iter};
use serde_json::{Value, json};

use super::sql::{Row, SqlExec};
use super::{Fs, FsOptions, Report};
use crate::schema::MIGRATIONS;

type FailPredicate = Box<dyn FnMut(&str) -> bool + Send>;

/// An in-memory SQLite database.
pub struct MemSql {
    conn: Mutex<Connection>,
    /// Every `exec` batch, in order.
    pub execs: Mutex<Vec<String>>,
    /// Every `query`: SQL, params, number of rows returned.
    pub queries: Mutex<Vec<(String, Value, usize)>>,
    fail: Mutex<Option<FailPredicate>>,
}

impl MemSql {
    /// A fresh database with every schema migration applied.
    pub fn migrated() -> Arc<MemSql> {
        let conn = Connection::open_in_memory().expect("open sqlite");
        for (_, sql) in MIGRATIONS {
            conn.execute_batch(sql).expect("apply migration");
        }
        Arc::new(MemSql {
            conn: Mutex::new(conn),
            execs: Mutex::default(),
            queries: Mutex::default(),
            fail: Mutex::default(),
        })
    }

    /// Runs SQL directly (test setup and corruption injection).
    pub fn raw(&self, sql: &str) {
        self.conn.lock().unwrap().execute_batch(sql).unwrap_or_else(|e| panic!("{e}: {sql}"));
    }

    /// One integer from a query (test assertions).
    pub fn scalar(&self, sql: &str) -> i64 {
        self.conn.lock().unwrap().query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{e}: {sql}"))
    }

    /// One blob from a query.
    pub fn blob(&self, sql: &str) -> Vec<u8> {
        self.conn.lock().unwrap().query_row(sql, [], |row| row.get(0)).unwrap_or_else(|e| panic!("{e}: {sql}"))
    }

    /// From now on, an `exec` whose SQL matches fails: everything but its
    /// final `COMMIT` runs, leaving an open transaction (like a host that
    /// fails mid-batch), and an error is returned.
    pub fn fail_when(&self, predicate: impl FnMut(&str) -> bool + Send + 'static) {
        *self.fail.lock().unwrap() = Some(Box::new(predicate));
    }

    pub fn stop_failing(&self) {
        *self.fail.lock().unwrap() = None;
    }

    /// Records every insert, update and delete of `fs_chunks` rows into the
    /// temp table `chunk_audit(op, ino, idx)`.
    pub fn audit_chunks(&self) {
        self.raw(
            "CREATE TEMP TABLE chunk_audit (op TEXT NOT NULL, ino INTEGER NOT NULL, idx INTEGER NOT NULL);
             CREATE TEMP TRIGGER chunk_audit_insert AFTER INSERT ON fs_chunks
                 BEGIN INSERT INTO chunk_audit VALUES ('insert', NEW.ino, NEW.idx); END;
             CREATE TEMP TRIGGER chunk_audit_update AFTER UPDATE ON fs_chunks
                 BEGIN INSERT INTO chunk_audit VALUES ('update', NEW.ino, NEW.idx); END;
             CREATE TEMP TRIGGER chunk_audit_delete AFTER DELETE ON fs_chunks
                 BEGIN INSERT INTO chunk_audit VALUES ('delete', OLD.ino, OLD.idx); END;",
        );
    }

    /// The audited chunk writes since the last call, as (op, ino, idx).
    pub fn take_chunk_audit(&self) -> Vec<(String, i64, i64)> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare("SELECT op, ino, idx FROM chunk_audit ORDER BY rowid").unwrap();
        let rows = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        drop(stmt);
        conn.execute_batch("DELETE FROM chunk_audit").unwrap();
        rows
    }

    /// Rows returned by queries on `fs_chunks` since the last call.
    pub fn take_chunk_rows_read(&self) -> usize {
        let mut queries = self.queries.lock().unwrap();
        let rows = queries.iter().filter(|(sql, _, _)| sql.contains("FROM fs_chunks WHERE ino = ?")).map(|q| q.2).sum();
        queries.clear();
        rows
    }

    /// Runs a batch like the host: statement by statement, replying with
    /// the rows of the last statement that returned rows.
    fn do_exec(&self, sql: &str) -> Result<Vec<Row>> {
        self.execs.lock().unwrap().push(sql.to_owned());
        let fail = self.fail.lock().unwrap().as_mut().is_some_and(|predicate| predicate(sql));
        let conn = self.conn.lock().unwrap();
        if fail {
            let partial = sql.trim_end().strip_suffix("COMMIT;").unwrap_or(sql);
            let _ = conn.execute_batch(partial);
            return Err(anyhow!("injected failure"));
        }
        let mut last = Vec::new();
        let mut batch = rusqlite::Batch::new(&conn, sql);
        while let Some(mut stmt) = batch.next().map_err(|e| anyhow!("{e}"))? {
            if stmt.column_count() == 0 {
                stmt.raw_execute().map_err(|e| anyhow!("{e}"))?;
                continue;
            }
            let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
            let mut rows = stmt.raw_query();
            last.clear();
            while let Some(row) = rows.next().map_err(|e| anyhow!("{e}"))? {
                last.push(row_map(&names, row)?);
            }
        }
        Ok(last)
    }

    fn do_atomic(&self, batch: &str) -> Result<Vec<Row>> {
        let result = self.do_exec(batch);
        if result.is_err() {
            self.execs.lock().unwrap().push("ROLLBACK;".to_owned());
            let _ = self.conn.lock().unwrap().execute_batch("ROLLBACK");
        }
        result
    }

    fn do_query(&self, sql: &str, params: &Value) -> Result<Vec<Row>> {
        let conn = self.conn.lock().unwrap();
        let mut stmt = conn.prepare(sql)?;
        let binds: Vec<SqlValue> = params
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::Null => SqlValue::Null,
                Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
                Value::Number(n) => n.as_i64().map(SqlValue::Integer).unwrap_or_else(|| SqlValue::Real(n.as_f64().unwrap())),
                Value::String(s) => SqlValue::Text(s.clone()),
                other => panic!("unsupported param {other}"),
            })
            .collect();
        let names: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
        let mut rows = stmt.query(params_from_iter(binds))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(row_map(&names, row)?);
        }
        drop(rows);
        drop(stmt);
        drop(conn);
        self.queries.lock().unwrap().push((sql.to_owned(), params.clone(), out.len()));
        Ok(out)
    }
}

/// One row as the host ABI shapes it: column name to value, a BLOB as an
/// array of byte values.
fn row_map(names: &[String], row: &rusqlite::Row<'_>) -> Result<Row> {
    let mut map = Row::new();
    for (i, name) in names.iter().enumerate() {
        let value = match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => json!(n),
            ValueRef::Real(f) => json!(f),
            ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Array(b.iter().map(|x| json!(x)).collect()),
        };
        map.insert(name.clone(), value);
    }
    Ok(map)
}

impl SqlExec for MemSql {
    fn exec(&self, sql: &str) -> impl Future<Output = Result<()>> + Send {
        ready(self.do_exec(sql).map(drop))
    }

    fn exec_rows(&self, sql: &str) -> impl Future<Output = Result<Vec<Row>>> + Send {
        ready(self.do_exec(sql))
    }

    fn atomic(&self, batch: &str) -> impl Future<Output = Result<Vec<Row>>> + Send {
        ready(self.do_atomic(batch))
    }

    fn query(&self, sql: &str, params: &Value) -> impl Future<Output = Result<Vec<Row>>> + Send {
        ready(self.do_query(sql, params))
    }

    fn run(&self, sql: &str, params: &Value) -> impl Future<Output = Result<()>> + Send {
        ready(self.do_query(sql, params).map(drop))
    }
}

/// A filesystem over a fresh database with the given chunk size.
pub async fn fs_with(chunk_size: u64, options: FsOptions) -> (Arc<MemSql>, Fs<Arc<MemSql>>) {
    let sql = MemSql::migrated();
    sql.raw(&format!("UPDATE agentos_actor_meta SET value = '{chunk_size}' WHERE key = 'fs_chunk_size'"));
    let fs = Fs::open(sql.clone(), options).await.expect("open fs");
    (sql, fs)
}

/// A filesystem with 16-byte chunks (content tests cross chunks quickly).
pub async fn small_fs() -> (Arc<MemSql>, Fs<Arc<MemSql>>) {
    fs_with(16, FsOptions::default()).await
}

/// Asserts the checker finds nothing (including cache vs. storage).
pub async fn assert_clean(fs: &Fs<Arc<MemSql>>) -> Report {
    let report = fs.check().await.expect("check runs");
    assert!(report.is_clean(), "filesystem inconsistent: {:#?}", report.problems);
    report
}
