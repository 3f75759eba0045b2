//! The group-commit writer's savepoints, driven on a real SQLite connection: a write cut off before
//! its first statement reached the database must never undo the write before it; a group never
//! holds more than `GROUP_WRITES` writes; a write without a savepoint (bare) that fails fails its
//! whole group, and one that succeeds leaves the savepoints of the others working; a group left
//! alone takes no other write; a request dropped while it has the open group committed cannot cut
//! that commit off.

use std::sync::Arc;

use scaivault_store::conformance::group_write;
use scaivault_store::group::{GROUP_WRITES, GroupWriter};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc};

type Writer = GroupWriter<SqliteConnection>;

async fn rows(options: &SqliteConnectOptions) -> Vec<i64> {
    let mut conn = SqliteConnection::connect_with(options).await.expect("connect");
    sqlx::query_scalar("SELECT x FROM t ORDER BY x").fetch_all(&mut conn).await.expect("select")
}

/// Writes `x` in the open group and waits for the group's outcome (in a task, since the group
/// commits only when the test settles it).
async fn write(
    writer: &Arc<Mutex<Writer>>,
    options: &SqliteConnectOptions,
    nudges: &mpsc::Sender<()>,
    x: i64,
) -> tokio::task::JoinHandle<Result<(), String>> {
    group_write(writer, options, nudges, &format!("INSERT INTO t VALUES ({x})"), false).await
}

/// Starts a write of `x` while the open group takes no more, checks that it asks the committer
/// (`nudged`) for that group's commit instead of joining it, and then commits the group (had the
/// write joined, the commit would hold it too). Returns the write's task.
async fn write_kept_out(
    writer: &Arc<Mutex<Writer>>,
    options: &SqliteConnectOptions,
    nudges: &mpsc::Sender<()>,
    nudged: &mut mpsc::Receiver<()>,
    x: i64,
) -> tokio::task::JoinHandle<Result<(), String>> {
    while nudged.try_recv().is_ok() {}
    let next = {
        let (writer, options, nudges) = (writer.clone(), options.clone(), nudges.clone());
        tokio::spawn(async move { write(&writer, &options, &nudges, x).await.await.expect("task") })
    };
    let asked = tokio::time::timeout(std::time::Duration::from_secs(10), nudged.recv()).await;
    assert!(matches!(asked, Ok(Some(()))), "the next write did not ask for the open group's commit");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    writer.lock().await.settle().await;
    next
}

/// Commits groups until `write` has finished, and gives its outcome.
async fn settle_until_done(
    writer: &Arc<Mutex<Writer>>,
    write: tokio::task::JoinHandle<Result<(), String>>,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !write.is_finished() {
        assert!(std::time::Instant::now() < deadline, "the write never finished");
        writer.lock().await.settle().await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    write.await.expect("task")
}

/// A fresh file with one table, and a writer on it.
async fn fresh() -> (tempfile::TempDir, SqliteConnectOptions, Arc<Mutex<Writer>>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = SqliteConnectOptions::new().filename(dir.path().join("g.db")).create_if_missing(true);
    let mut setup = SqliteConnection::connect_with(&options).await.expect("connect");
    setup.execute("CREATE TABLE t (x INTEGER NOT NULL)").await.expect("create");
    drop(setup);
    let writer = Arc::new(Mutex::new(Writer::new("BEGIN IMMEDIATE", "COMMIT", true)));
    (dir, options, writer)
}

#[tokio::test]
async fn a_write_cut_off_before_its_first_statement_never_undoes_the_one_before() {
    let (_dir, options, writer) = fresh().await;
    // Nudges go nowhere: the test decides when the group commits.
    let (nudges, _ignored) = mpsc::channel(16);
    let first = write(&writer, &options, &nudges, 1).await;
    {
        // The second write claims to have sent its first statement but never did (its future was
        // dropped in between): the database holds the first write's savepoint, not its own.
        let mut guard = writer.lock().await;
        let job = guard.start(&options).await.expect("start");
        *job.sent = true;
    }
    writer.lock().await.settle().await;
    let first = first.await.expect("task");
    let kept = rows(&options).await;
    match first {
        Ok(()) => assert_eq!(kept, vec![1], "the first write answered success, so it must be there"),
        Err(_) => assert!(kept.is_empty(), "the first write answered failure, so it must be gone"),
    }
}

#[tokio::test]
async fn a_write_that_sent_nothing_leaves_its_group_alone() {
    let (_dir, options, writer) = fresh().await;
    let (nudges, _ignored) = mpsc::channel(16);
    let first = write(&writer, &options, &nudges, 1).await;
    {
        // Refused before any statement (a CAS mismatch on a head the group knows).
        let mut guard = writer.lock().await;
        let job = guard.start(&options).await.expect("start");
        assert!(!*job.sent);
    }
    let third = write(&writer, &options, &nudges, 3).await;
    writer.lock().await.settle().await;
    assert_eq!(first.await.expect("task"), Ok(()));
    assert_eq!(third.await.expect("task"), Ok(()));
    assert_eq!(rows(&options).await, vec![1, 3]);
}

#[tokio::test]
async fn a_full_group_is_committed_before_the_next_write_joins() {
    let (_dir, options, writer) = fresh().await;
    // The test is the committer: groups commit only when it settles them.
    let (nudges, mut nudged) = mpsc::channel(4 * GROUP_WRITES);
    let mut waiting = Vec::new();
    for x in 0..GROUP_WRITES as i64 {
        waiting.push(write(&writer, &options, &nudges, x).await);
    }
    assert!(rows(&options).await.is_empty(), "a group committed before it was full");
    let next = write_kept_out(&writer, &options, &nudges, &mut nudged, GROUP_WRITES as i64).await;
    assert_eq!(rows(&options).await.len(), GROUP_WRITES, "the next write joined the full group");
    for w in waiting {
        assert_eq!(w.await.expect("task"), Ok(()));
    }
    assert_eq!(settle_until_done(&writer, next).await, Ok(()));
    assert_eq!(rows(&options).await.len(), GROUP_WRITES + 1);
}

#[tokio::test]
async fn a_bare_write_that_fails_fails_its_whole_group() {
    let (_dir, options, writer) = fresh().await;
    let (nudges, _ignored) = mpsc::channel(16);
    let first = write(&writer, &options, &nudges, 1).await;
    // Its first statement lands, its second fails: with no savepoint, only the group can go.
    let bare = group_write(
        &writer,
        &options,
        &nudges,
        "INSERT INTO t VALUES (2); INSERT INTO t VALUES (NULL)",
        true,
    )
    .await;
    let third = write(&writer, &options, &nudges, 3).await;
    writer.lock().await.settle().await;
    assert!(first.await.expect("task").is_err(), "the write before the failed bare one answered success");
    let refused = bare.await.expect("task").expect_err("the failed bare write answered success");
    // It answers as its group does (503), not as a refusal of its own request.
    assert!(refused.starts_with("storage unavailable: the write transaction was rolled back"), "{refused}");
    assert_eq!(third.await.expect("task"), Ok(()), "the next group is not affected");
    assert_eq!(rows(&options).await, vec![3]);
}

#[tokio::test]
async fn a_bare_write_leaves_the_savepoints_around_it_working() {
    let (_dir, options, writer) = fresh().await;
    let (nudges, _ignored) = mpsc::channel(16);
    let first = write(&writer, &options, &nudges, 1).await;
    let bare = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (2)", true).await;
    // A failing write with a savepoint after the bare one is undone alone.
    let failing = group_write(
        &writer,
        &options,
        &nudges,
        "INSERT INTO t VALUES (3); INSERT INTO t VALUES (NULL)",
        false,
    )
    .await;
    let bare_again = group_write(&writer, &options, &nudges, "INSERT INTO t VALUES (4)", true).await;
    let last = write(&writer, &options, &nudges, 5).await;
    writer.lock().await.settle().await;
    assert_eq!(first.await.expect("task"), Ok(()));
    assert_eq!(bare.await.expect("task"), Ok(()));
    assert!(failing.await.expect("task").is_err());
    assert_eq!(bare_again.await.expect("task"), Ok(()));
    assert_eq!(last.await.expect("task"), Ok(()));
    assert_eq!(rows(&options).await, vec![1, 2, 4, 5]);
}

#[tokio::test]
async fn a_group_left_alone_takes_no_other_write() {
    let (_dir, options, writer) = fresh().await;
    let (nudges, mut nudged) = mpsc::channel(16);
    let first = write(&writer, &options, &nudges, 1).await;
    writer.lock().await.alone();
    let next = write_kept_out(&writer, &options, &nudges, &mut nudged, 2).await;
    assert_eq!(rows(&options).await, vec![1], "the next write joined the group left alone");
    assert_eq!(first.await.expect("task"), Ok(()));
    assert_eq!(settle_until_done(&writer, next).await, Ok(()));
    assert_eq!(rows(&options).await, vec![1, 2]);
}

#[tokio::test]
async fn a_request_dropped_while_the_group_commits_leaves_the_commit_whole() {
    let (_dir, options, writer) = fresh().await;
    let (nudges, _ignored) = mpsc::channel(16);
    for (x, yields) in (1..=6).zip([1, 1, 2, 3, 5, 8]) {
        let waiting = write(&writer, &options, &nudges, x).await;
        // A request (a pooled write, say) wants the writer settled, and its client goes away
        // while the group's COMMIT is under way: the test runs on one thread, so the request gets
        // as far as sending it before it is dropped.
        let held = writer.clone();
        let request = tokio::spawn(async move {
            let _guard = GroupWriter::lock_settled(&held).await;
            std::future::pending::<()>().await;
        });
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        request.abort();
        let _ = request.await;
        let answered = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
            .await
            .expect("the group's write never learned how its commit went")
            .expect("task");
        let kept = rows(&options).await.contains(&x);
        assert_eq!(answered.is_ok(), kept, "write {x} answered {answered:?} but kept = {kept}");
        assert!(kept, "write {x}: the commit was cut off");
    }
    // The writer is free again and commits later groups as before.
    let last = write(&writer, &options, &nudges, 7).await;
    writer.lock().await.settle().await;
    assert_eq!(last.await.expect("task"), Ok(()));
    assert_eq!(rows(&options).await, (1..=7).collect::<Vec<_>>());
}
