//! The group-commit writer on a real PostgreSQL connection, where a failed statement aborts the
//! whole transaction: a write without a savepoint (bare) that fails fails its group, nothing of the
//! group is kept, and the writer's next group works.

use std::str::FromStr;

use scaivault_store::group::GroupWriter;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc};

type Writer = GroupWriter<PgConnection>;

/// The test database's URL; `None` (with a notice) outside CI when it is not set.
fn postgres_url() -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let url = std::env::var("SCAIVAULT_TEST_POSTGRES_URL").ok();
    assert!(url.is_some() || !ci, "SCAIVAULT_TEST_POSTGRES_URL must be set under CI");
    if url.is_none() {
        eprintln!("notice: SCAIVAULT_TEST_POSTGRES_URL is not set; skipping the PostgreSQL group test");
    }
    url
}

/// Runs `sql` as a write in the open group, bare or not, and waits for the group's outcome in a
/// task (the group commits only when the test settles it).
async fn run(
    writer: &'static Mutex<Writer>,
    options: &PgConnectOptions,
    nudges: &mpsc::Sender<()>,
    sql: &str,
    bare: bool,
) -> tokio::task::JoinHandle<Result<(), String>> {
    let mut guard = Writer::lock_for_write(writer, nudges).await;
    let job = guard.start(options).await.expect("start");
    *job.bare = bare;
    *job.sent = true;
    let sql = if bare { sql.to_owned() } else { format!("{}{sql}", job.prefix) };
    let written = job
        .conn
        .execute(sql.as_str())
        .await
        .map(drop)
        .map_err(|e| scaivault_store::StoreError::Backend(e.to_string()));
    let nudges = nudges.clone();
    let waiting =
        tokio::spawn(
            async move { Writer::conclude(guard, written, &nudges).await.map_err(|e| e.to_string()) },
        );
    tokio::task::yield_now().await;
    waiting
}

#[tokio::test]
async fn a_bare_write_that_fails_fails_its_whole_group_on_postgres() {
    let Some(url) = postgres_url() else { return };
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
    let writer: &'static Mutex<Writer> =
        Box::leak(Box::new(Mutex::new(Writer::new("BEGIN", "COMMIT", false))));
    let (nudges, _ignored) = mpsc::channel(16);

    let first = run(writer, &options, &nudges, "INSERT INTO t VALUES (1)", false).await;
    let kept = run(writer, &options, &nudges, "INSERT INTO t VALUES (2)", true).await;
    // Aborts the transaction: nothing of the group can commit now.
    let failing = run(writer, &options, &nudges, "INSERT INTO t VALUES (NULL)", true).await;
    let next = run(writer, &options, &nudges, "INSERT INTO t VALUES (4)", false).await;
    writer.lock().await.settle().await;
    assert!(first.await.expect("task").is_err(), "a write of the failed group answered success");
    assert!(kept.await.expect("task").is_err(), "a write of the failed group answered success");
    assert!(failing.await.expect("task").is_err());
    assert_eq!(next.await.expect("task"), Ok(()), "the next group is not affected");
    let rows: Vec<i64> =
        sqlx::query_scalar("SELECT x FROM t ORDER BY x").fetch_all(&mut conn).await.expect("rows");
    assert_eq!(rows, vec![4]);
    setup.execute(format!("DROP SCHEMA {schema} CASCADE").as_str()).await.expect("drop");
}
