//! The group-commit writer on a real PostgreSQL connection, where a failed statement aborts the
//! whole transaction: a write without a savepoint (bare) that fails fails its group, nothing of the
//! group is kept, and the writer's next group works.

use std::str::FromStr;
use std::sync::Arc;

use scaivault_store::conformance::{group_write, postgres_test_url};
use scaivault_store::group::GroupWriter;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc};

type Writer = GroupWriter<PgConnection>;

#[tokio::test]
async fn a_bare_write_that_fails_fails_its_whole_group_on_postgres() {
    let Some(url) = postgres_test_url("group test") else { return };
    let schema = format!("group_bare_{}", std::process::id());
    let base = PgConnectOptions::from_str(&url).expect("url");
    let mut setup = PgConnection::connect_with(&base).await.expect("connect");
    setup
        .execute(format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}").as_str())
        .await
        .expect("schema");
    let options = base.options([("search_path", schema.as_str())]);
    let mut conn = PgConnection::connect_with(&options).await.expect("connect");
    conn.execute("CREATE TABLE t (x BIGINT NOT NULL)").await.expect("create");
    let writer = Arc::new(Mutex::new(Writer::new("BEGIN", "COMMIT", false)));
    let (nudges, _ignored) = mpsc::channel(16);

    let first = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (1)", false).await;
    let kept = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (2)", true).await;
    // Aborts the transaction: nothing of the group can commit now.
    let failing = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (NULL)", true).await;
    let next = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (4)", false).await;
    writer.lock().await.settle().await;
    assert!(first.await.expect("task").is_err(), "a write of the failed group answered success");
    assert!(kept.await.expect("task").is_err(), "a write of the failed group answered success");
    let refused = failing.await.expect("task").expect_err("the failed bare write answered success");
    assert!(refused.starts_with("storage unavailable: the write transaction was rolled back"), "{refused}");
    assert_eq!(next.await.expect("task"), Ok(()), "the next group is not affected");
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT x FROM t ORDER BY x").fetch_all(&mut conn).await.expect("rows");
    assert_eq!(rows, vec![4]);
    setup.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.expect("drop");
}
