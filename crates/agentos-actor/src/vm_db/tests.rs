//! The VM database end to end over its socket, driven by the sidecar's own
//! client crate, on a real SQLite shaped like the host ABI.

use std::sync::Arc;
use std::time::Duration;

use agentos_actor_uds_client::{ActorUdsClient, ActorUdsError, SqlValue};

use super::{VmDb, VmDbServer};
use crate::fs::testing::MemSql;
use SqlValue::*;

fn serve() -> (Arc<MemSql>, VmDbServer, ActorUdsClient) {
    let sql = MemSql::migrated();
    let server = VmDbServer::start(Arc::new(VmDb::new(sql.clone()))).expect("start server");
    let client = ActorUdsClient::with_request_timeout(server.socket(), Duration::from_secs(10));
    (sql, server, client)
}

async fn setup(client: &ActorUdsClient) {
    client
        .exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL, data BLOB) STRICT")
        .await
        .expect("create table");
}

#[tokio::test]
async fn queries_keep_types_and_column_order() {
    let (_sql, _server, client) = serve();
    client.query("PRAGMA foreign_keys = ON", vec![]).await.unwrap();
    assert_eq!(client.query("PRAGMA foreign_keys", vec![]).await.unwrap().rows, vec![vec![SqlInteger(1)]]);
    setup(&client).await;
    let insert = client
        .query(
            "INSERT INTO t (name, score, data) VALUES (?, ?, ?)",
            vec![SqlText("it's ?".into()), SqlReal(2.5), SqlBlob(vec![0, 1, 255])],
        )
        .await
        .unwrap();
    assert_eq!((insert.changes, insert.last_insert_row_id), (1, Some(1)));
    client.query("INSERT INTO t (name) VALUES (?)", vec![SqlText("b".into())]).await.unwrap();
    let rows = client.query("SELECT score, data, name, id FROM t ORDER BY id", vec![]).await.unwrap();
    assert_eq!(rows.columns, ["score", "data", "name", "id"]);
    assert_eq!(
        rows.rows,
        vec![
            vec![SqlReal(2.5), SqlBlob(vec![0, 1, 255]), SqlText("it's ?".into()), SqlInteger(1)],
            vec![SqlNull, SqlNull, SqlText("b".into()), SqlInteger(2)],
        ]
    );
    let updated = client.query("UPDATE t SET score = ?1 + ?1", vec![SqlReal(1.0)]).await.unwrap();
    assert_eq!(updated.changes, 2);
    let repeated = client.query("SELECT 1 AS a, 2 AS a, 'x' AS b", vec![]).await.unwrap();
    assert_eq!(repeated.columns, ["a", "a:1", "b"]);
    assert_eq!(repeated.rows, vec![vec![SqlInteger(1), SqlInteger(2), SqlText("x".into())]]);
    let none = client.query("SELECT id FROM t WHERE id > ?", vec![SqlInteger(99)]).await.unwrap();
    assert_eq!((none.columns, none.rows.len()), (vec!["id".to_owned()], 0));
}

#[tokio::test]
async fn sql_errors_and_bad_statements_are_named() {
    let (_sql, _server, client) = serve();
    setup(&client).await;
    let error = client.query("INSERT INTO t (name, score) VALUES ('a', ?)", vec![SqlText("x".into())]).await.unwrap_err();
    assert!(matches!(&error, ActorUdsError::Sql { message, .. } if message.contains("cannot store TEXT")), "{error}");
    let error = client.query("SELECT * FROM missing", vec![]).await.unwrap_err();
    assert!(error.to_string().contains("no such table: missing"), "{error}");
    let error = client.query("SELECT ?", vec![]).await.unwrap_err();
    assert!(error.to_string().contains("uses parameter 1 but 0 were given"), "{error}");
    let error = client.query("INSERT INTO t (id, name) VALUES (1, 'a'), (1, 'b')", vec![]).await.unwrap_err();
    assert!(matches!(&error, ActorUdsError::Sql { code: 19, .. }), "{error}");
}

#[tokio::test]
async fn a_lease_sees_its_writes_others_see_them_after_commit() {
    let (sql, _server, client) = serve();
    setup(&client).await;
    let other = ActorUdsClient::new(_server.socket());
    client.begin("k1", None).await.unwrap();
    let insert = client
        .query_with_lease("INSERT INTO t (name) VALUES (?)", vec![SqlText("a".into())], Some("k1"))
        .await
        .unwrap();
    assert_eq!(insert.changes, 1);
    let inside = client.query_with_lease("SELECT count(*) AS n FROM t", vec![], Some("k1")).await.unwrap();
    assert_eq!(inside.rows, vec![vec![SqlInteger(1)]]);
    let update = client.query_with_lease("UPDATE t SET score = 1.5", vec![], Some("k1")).await.unwrap();
    assert_eq!(update.changes, 1, "the update sees the lease's insert");
    // Outside the lease nothing is visible yet, and nothing is stored.
    let outside = other.query("SELECT count(*) AS n FROM t", vec![]).await.unwrap();
    assert_eq!(outside.rows, vec![vec![SqlInteger(0)]]);
    assert_eq!(sql.scalar("SELECT count(*) FROM t"), 0);
    client.commit("k1").await.unwrap();
    assert_eq!(sql.scalar("SELECT count(*) FROM t WHERE score = 1.5"), 1);

    client.begin("k2", None).await.unwrap();
    client.query_with_lease("DELETE FROM t", vec![], Some("k2")).await.unwrap();
    client.rollback("k2").await.unwrap();
    assert_eq!(sql.scalar("SELECT count(*) FROM t"), 1);
    let error = client.query_with_lease("SELECT 1", vec![], Some("k2")).await.unwrap_err();
    assert!(matches!(error, ActorUdsError::InvalidLeaseKey { .. }), "{error}");
    assert_eq!(sql.scalar("SELECT count(*) FROM sqlite_temp_master"), 0, "no view or table left behind");
}

#[tokio::test]
async fn a_lease_failing_at_a_statement_writes_nothing_and_a_ddl_lease_commits() {
    let (sql, _server, client) = serve();
    client.begin("m", None).await.unwrap();
    client.query_with_lease("CREATE TABLE m (a INTEGER NOT NULL)", vec![], Some("m")).await.unwrap();
    client.query_with_lease("INSERT INTO m VALUES (?)", vec![SqlInteger(1)], Some("m")).await.unwrap();
    let rows = client.query_with_lease("SELECT a FROM m", vec![], Some("m")).await.unwrap();
    assert_eq!(rows.rows, vec![vec![SqlInteger(1)]]);
    client.commit("m").await.unwrap();
    assert_eq!(sql.scalar("SELECT a FROM m"), 1);

    client.begin("bad", None).await.unwrap();
    client.query_with_lease("INSERT INTO m VALUES (2)", vec![], Some("bad")).await.unwrap();
    let error = client.query_with_lease("INSERT INTO m VALUES (NULL)", vec![], Some("bad")).await.unwrap_err();
    assert!(error.to_string().contains("NOT NULL"), "{error}");
    client.rollback("bad").await.unwrap();
    assert_eq!(sql.scalar("SELECT count(*) FROM m"), 1);
}

#[tokio::test]
async fn an_abandoned_lease_expires_and_frees_the_database() {
    let (sql, server, client) = serve();
    setup(&client).await;
    client.begin("slow", Some(100)).await.unwrap();
    client.query_with_lease("INSERT INTO t (name) VALUES ('lost')", vec![], Some("slow")).await.unwrap();
    // A write outside the lease waits for it; the lease expires and the
    // write goes ahead.
    let other = ActorUdsClient::new(server.socket());
    other.query("INSERT INTO t (name) VALUES ('kept')", vec![]).await.unwrap();
    let error = client.commit("slow").await.unwrap_err();
    assert!(matches!(error, ActorUdsError::LeaseExpired { timeout_ms: 100, .. }), "{error}");
    assert_eq!(sql.scalar("SELECT count(*) FROM t WHERE name = 'lost'"), 0);
    assert_eq!(sql.scalar("SELECT count(*) FROM t WHERE name = 'kept'"), 1);
}

#[tokio::test]
async fn a_write_outside_a_lease_waits_for_its_commit() {
    let (sql, server, client) = serve();
    setup(&client).await;
    client.begin("first", None).await.unwrap();
    client.query_with_lease("INSERT INTO t (id, name) VALUES (1, 'lease')", vec![], Some("first")).await.unwrap();
    let other = ActorUdsClient::new(server.socket());
    let waiting = tokio::spawn(async move {
        other.query("UPDATE t SET name = 'after' WHERE id = 1", vec![]).await.map(|r| r.changes)
    });
    // The waiting write cannot finish before the commit: it would change
    // nothing (the row is not committed yet).
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    client.commit("first").await.unwrap();
    assert_eq!(waiting.await.unwrap().unwrap(), 1, "the write ran after the commit");
    assert_eq!(sql.scalar("SELECT count(*) FROM t WHERE name = 'after'"), 1);
}

#[tokio::test]
async fn the_socket_lives_in_a_private_directory_removed_on_drop() {
    use std::os::unix::fs::PermissionsExt;
    let (_sql, server, _client) = serve();
    let dir = server.socket().parent().unwrap().to_owned();
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    drop(server);
    assert!(!dir.exists());
}
