//! Runs the sidecar's SQL requests on the actor's database through the
//! host ABI (`db_*` only).
//!
//! Two ABI facts shape this:
//! - A transaction may not stay open across host calls: other parts of the
//!   actor use the same database meanwhile. So a lease (the protocol's
//!   transaction) is kept here as the list of its writes. Each statement in
//!   a lease runs as `BEGIN; <earlier writes>; <statement>; ROLLBACK` to give
//!   its real result, and `COMMIT` runs all writes as one transaction. Only
//!   one lease is open at a time and writes outside it wait for it, so the
//!   commit sees what the statements saw.
//! - Rows come back as maps (column name to value), with no order. The order
//!   of a query's columns is read once from a temporary view of the query
//!   (`PRAGMA table_info`), cached per statement text.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agentos_actor_uds_client::SqlValue;
use agentos_actor_uds_client::protocol as wire;
use serde_json::Value;
use tokio::sync::Notify;

use super::bind::{Bound, Kind, bind};
use crate::fs::sql::{Row, SqlExec};
use crate::live::lock;

/// A lease that is neither committed nor rolled back ends after this long
/// when the client named no timeout (Rivet's default).
const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(60);
const COLUMNS_VIEW: &str = "agentos_vm_db_columns";

struct Lease {
    key: String,
    writes: Vec<String>,
    deadline: Instant,
    timeout_ms: u64,
}

impl Lease {
    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

pub struct VmDb<S> {
    sql: S,
    lease: tokio::sync::Mutex<Option<Lease>>,
    lease_ended: Notify,
    columns: Mutex<HashMap<String, Vec<String>>>,
}

type Reply = wire::ResponsePayload;

impl<S: SqlExec> VmDb<S> {
    pub fn new(sql: S) -> Self {
        VmDb { sql, lease: Default::default(), lease_ended: Notify::new(), columns: Default::default() }
    }

    /// Answers one request.
    pub async fn handle(&self, lease_key: Option<String>, payload: wire::RequestPayload) -> Reply {
        match payload {
            wire::RequestPayload::SqliteBegin(begin) => self.begin(begin.lease_key, begin.timeout_ms).await,
            wire::RequestPayload::SqliteCommit(commit) => self.commit(&commit.lease_key).await,
            wire::RequestPayload::SqliteRollback(rollback) => self.rollback(&rollback.lease_key).await,
            wire::RequestPayload::SqliteQuery(query) => match bind(&query.sql, &query.params) {
                Err(message) => sql_error(format!("{message}: {}", query.sql)),
                Ok(bound) => self.statement(lease_key, Statement::Query(bound)).await,
            },
            wire::RequestPayload::SqliteExec(exec) => self.statement(lease_key, Statement::Script(exec.script)).await,
        }
    }

    async fn begin(&self, key: String, timeout_ms: Option<u64>) -> Reply {
        let timeout = timeout_ms.map_or(DEFAULT_LEASE_TIMEOUT, Duration::from_millis);
        loop {
            let ended = self.lease_ended.notified();
            let wait_until = {
                let mut lease = self.lease.lock().await;
                match lease.as_ref() {
                    Some(open) if open.key == key => {
                        return Reply::InvalidLeaseKey(wire::InvalidLeaseKey {
                            message: format!("lease {key} is already open"),
                        });
                    }
                    Some(open) if !open.expired() => open.deadline,
                    _ => {
                        *lease = Some(Lease {
                            key,
                            writes: Vec::new(),
                            deadline: Instant::now() + timeout,
                            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                        });
                        return Reply::SqliteBeginOk;
                    }
                }
            };
            // Another lease is open: wait for it to end or expire.
            let _ = tokio::time::timeout_at(wait_until.into(), ended).await;
        }
    }

    async fn commit(&self, key: &str) -> Reply {
        let mut lease = self.lease.lock().await;
        let open = match take_lease(&mut lease, key) {
            Ok(open) => open,
            Err(reply) => return reply,
        };
        drop(lease);
        self.lease_ended.notify_waiters();
        if open.writes.is_empty() {
            return Reply::SqliteCommitOk;
        }
        let mut batch = String::from("BEGIN IMMEDIATE;\n");
        for write in &open.writes {
            push_statement(&mut batch, write);
        }
        batch.push_str("COMMIT;\n");
        if open.writes.iter().any(|write| is_ddl(write)) {
            lock(&self.columns).clear();
        }
        match self.sql.atomic(&batch).await {
            Ok(_) => Reply::SqliteCommitOk,
            Err(error) => sql_error(format!("commit of lease {key} failed: {error:#}")),
        }
    }

    async fn rollback(&self, key: &str) -> Reply {
        let mut lease = self.lease.lock().await;
        if lease.as_ref().is_some_and(|open| open.key == key) {
            *lease = None;
            drop(lease);
            self.lease_ended.notify_waiters();
        }
        // Rolling back a lease that already ended (expired, or failed at
        // commit) leaves nothing to undo.
        Reply::SqliteRollbackOk
    }

    async fn statement(&self, lease_key: Option<String>, statement: Statement) -> Reply {
        let Some(key) = lease_key else {
            return self.autocommit(statement).await;
        };
        // The lease stays locked while its statement runs: its statements
        // come one at a time anyway, and its commit must not overtake one.
        let mut lease = self.lease.lock().await;
        let open = match lease.as_mut() {
            Some(open) if open.key == key && open.expired() => {
                let timeout_ms = open.timeout_ms;
                *lease = None;
                self.lease_ended.notify_waiters();
                return Reply::LeaseExpired(wire::LeaseExpired {
                    timeout_ms,
                    message: format!("lease {key} expired before this statement"),
                });
            }
            Some(open) if open.key == key => open,
            _ => {
                return Reply::InvalidLeaseKey(wire::InvalidLeaseKey { message: format!("no open lease {key}") });
            }
        };
        let (reply, write) = self.run(Some(&open.writes), statement).await;
        if let Some(write) = write {
            open.writes.push(write);
        }
        reply
    }

    /// A statement outside any lease. Writes wait until no lease is open, so
    /// a lease's commit replays its statements on the state they saw.
    async fn autocommit(&self, statement: Statement) -> Reply {
        if statement.writes() {
            loop {
                let ended = self.lease_ended.notified();
                let wait_until = match self.lease.lock().await.as_ref() {
                    Some(open) if !open.expired() => open.deadline,
                    _ => break,
                };
                let _ = tokio::time::timeout_at(wait_until.into(), ended).await;
            }
        }
        let ddl = statement.ddl();
        let (reply, _) = self.run(None, statement).await;
        if ddl {
            lock(&self.columns).clear();
        }
        reply
    }

    /// Runs `statement`, in a lease after its earlier writes (`Some`), or
    /// on its own (`None`). Returns the reply and, when it is a write that
    /// succeeded, the SQL to keep for the lease's commit.
    async fn run(&self, earlier: Option<&[String]>, statement: Statement) -> (Reply, Option<String>) {
        let bound = match statement {
            Statement::Script(script) => {
                let reply = match self.preview(earlier, &script, None).await {
                    Ok(_) => Reply::SqliteExecOk,
                    Err(error) => sql_error(error),
                };
                let keep = matches!(reply, Reply::SqliteExecOk).then_some(script);
                return (reply, keep);
            }
            Statement::Query(bound) => bound,
        };
        let kind = match bound.kind {
            Kind::MaybeRows => match self.columns(earlier, &bound).await {
                Ok(_) => Kind::Rows,
                Err(_) => Kind::Write,
            },
            kind => kind,
        };
        let result = match kind {
            Kind::Rows | Kind::MaybeRows => self.rows(earlier, &bound).await,
            Kind::Pragma => self.pragma(earlier, &bound).await,
            Kind::Write => self.write(earlier, &bound).await,
        };
        match result {
            Ok(result) => {
                let keep = kind.writes().then_some(bound.sql);
                (Reply::SqliteQueryOk(result), keep)
            }
            Err(error) => (sql_error(error), None),
        }
    }

    async fn rows(&self, earlier: Option<&[String]>, bound: &Bound) -> Result<wire::SqliteQueryOk, String> {
        let columns = self.columns(earlier, bound).await?;
        // SQLite renames repeated column names in a view (`a`, `a:1`); the
        // query's own row maps would merge them, so read it through a
        // subquery, which renames them the same way.
        let renamed = columns.iter().any(|name| name.rsplit_once(':').is_some_and(|(_, n)| n.parse::<u32>().is_ok()));
        let sql = if renamed { format!("SELECT * FROM (\n{}\n)", bound.sql.trim_end().trim_end_matches(';')) } else { bound.sql.clone() };
        query_ok(columns, &self.preview(earlier, &sql, None).await?)
    }

    async fn pragma(&self, earlier: Option<&[String]>, bound: &Bound) -> Result<wire::SqliteQueryOk, String> {
        let rows = self.preview(earlier, &bound.sql, None).await?;
        let columns: Vec<String> = rows.first().map(|row| row.keys().cloned().collect()).unwrap_or_default();
        query_ok(columns, &rows)
    }

    async fn write(&self, earlier: Option<&[String]>, bound: &Bound) -> Result<wire::SqliteQueryOk, String> {
        let counts = "SELECT changes() AS agentos_changes, last_insert_rowid() AS agentos_rowid";
        let rows = self.preview(earlier, &bound.sql, Some(counts)).await?;
        let row = rows.first().ok_or("the change count query returned no row")?;
        let number = |name: &str| row.get(name).and_then(Value::as_i64).ok_or(format!("`{name}` is not an integer: {row:?}"));
        Ok(wire::SqliteQueryOk {
            columns: Vec::new(),
            rows: Vec::new(),
            changes: number("agentos_changes")?,
            last_insert_row_id: Some(number("agentos_rowid")?),
        })
    }

    /// The result column names of a query, in order.
    async fn columns(&self, earlier: Option<&[String]>, bound: &Bound) -> Result<Vec<String>, String> {
        if let Some(columns) = lock(&self.columns).get(&bound.shape) {
            return Ok(columns.clone());
        }
        let shape = bound.shape.trim_end().trim_end_matches(';');
        let mut batch = String::from("BEGIN;\n");
        for write in earlier.unwrap_or_default() {
            push_statement(&mut batch, write);
        }
        batch.push_str(&format!("DROP VIEW IF EXISTS temp.{COLUMNS_VIEW};\nCREATE TEMP VIEW {COLUMNS_VIEW} AS\n{shape}\n;\n"));
        batch.push_str(&format!("PRAGMA temp.table_info({COLUMNS_VIEW});\nROLLBACK;\n"));
        let rows = self.sql.atomic(&batch).await.map_err(|e| format!("{e:#}"))?;
        let mut named: Vec<(i64, String)> = rows
            .iter()
            .map(|row| {
                let cid = row.get("cid").and_then(Value::as_i64);
                let name = row.get("name").and_then(Value::as_str);
                cid.zip(name.map(str::to_owned)).ok_or(format!("unexpected table_info row {row:?}"))
            })
            .collect::<Result<_, _>>()?;
        named.sort_by_key(|(cid, _)| *cid);
        let columns: Vec<String> = named.into_iter().map(|(_, name)| name).collect();
        lock(&self.columns).insert(bound.shape.clone(), columns.clone());
        Ok(columns)
    }

    /// Runs `sql` (then `then`, whose rows are the reply if given). In a
    /// lease it runs after the lease's earlier writes and is rolled back
    /// with them; on its own it simply runs (autocommit).
    async fn preview(&self, earlier: Option<&[String]>, sql: &str, then: Option<&str>) -> Result<Vec<Row>, String> {
        let mut batch = String::new();
        if let Some(earlier) = earlier {
            batch.push_str("BEGIN;\n");
            for write in earlier {
                push_statement(&mut batch, write);
            }
        }
        push_statement(&mut batch, sql);
        if let Some(then) = then {
            push_statement(&mut batch, then);
        }
        let result = if earlier.is_some() {
            batch.push_str("ROLLBACK;\n");
            self.sql.atomic(&batch).await
        } else {
            self.sql.exec_rows(&batch).await
        };
        result.map_err(|e| format!("{e:#}"))
    }
}

enum Statement {
    Query(Bound),
    Script(String),
}

impl Statement {
    fn writes(&self) -> bool {
        match self {
            Statement::Query(bound) => bound.kind.writes(),
            Statement::Script(_) => true,
        }
    }

    fn ddl(&self) -> bool {
        match self {
            Statement::Query(bound) => is_ddl(&bound.sql),
            Statement::Script(_) => true,
        }
    }
}

/// Whether a statement may change the schema (and so cached column lists).
fn is_ddl(sql: &str) -> bool {
    let upper = sql.trim_start().get(..6).unwrap_or_default().to_ascii_uppercase();
    upper.starts_with("CREATE") || upper.starts_with("DROP") || upper.starts_with("ALTER")
}

/// Appends one statement, ended so that a trailing `--` comment cannot
/// swallow what follows.
fn push_statement(batch: &mut String, sql: &str) {
    batch.push_str(sql.trim_end().trim_end_matches(';'));
    batch.push_str("\n;\n");
}

fn take_lease(lease: &mut Option<Lease>, key: &str) -> Result<Lease, Reply> {
    match lease.take() {
        Some(open) if open.key == key && open.expired() => Err(Reply::LeaseExpired(wire::LeaseExpired {
            timeout_ms: open.timeout_ms,
            message: format!("lease {key} expired before commit; nothing was written"),
        })),
        Some(open) if open.key == key => Ok(open),
        other => {
            *lease = other;
            Err(Reply::InvalidLeaseKey(wire::InvalidLeaseKey { message: format!("no open lease {key}") }))
        }
    }
}

/// A query's reply: the host's rows laid out in `columns` order.
fn query_ok(columns: Vec<String>, rows: &[Row]) -> Result<wire::SqliteQueryOk, String> {
    let rows = rows
        .iter()
        .map(|row| columns.iter().map(|name| value_of(row, name)).collect::<Result<Vec<_>, _>>())
        .collect::<Result<Vec<_>, _>>()?;
    Ok(wire::SqliteQueryOk { columns, rows, changes: 0, last_insert_row_id: None })
}

/// One value of a host row, back in SQLite's types.
fn value_of(row: &Row, column: &str) -> Result<SqlValue, String> {
    match row.get(column) {
        None => Err(format!("column `{column}` is missing from the host's row")),
        Some(Value::Null) => Ok(SqlValue::SqlNull),
        Some(Value::String(text)) => Ok(SqlValue::SqlText(text.clone())),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(int) if !n.is_f64() => Ok(SqlValue::SqlInteger(int)),
            _ => n.as_f64().map(SqlValue::SqlReal).ok_or(format!("column `{column}`: number {n} out of range")),
        },
        Some(Value::Array(bytes)) => bytes
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .map(SqlValue::SqlBlob)
            .ok_or(format!("column `{column}`: a BLOB must be byte values")),
        Some(other) => Err(format!("column `{column}`: unexpected value {other}")),
    }
}

/// SQLite's message as the protocol's error. The ABI gives no result code,
/// so a constraint failure is recognised by its text.
fn sql_error(message: String) -> Reply {
    let code = if message.contains("constraint failed") { 19 } else { 1 };
    Reply::SqlError(wire::SqlError { code, statement_index: 0, message })
}
