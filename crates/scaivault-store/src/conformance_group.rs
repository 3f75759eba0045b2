//! Helpers for the backends' tests of the group-commit writer on a real connection, and the
//! PostgreSQL test database's URL.

use std::sync::Arc;

use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use crate::StoreError;
use crate::group::GroupWriter;

/// The PostgreSQL test database's URL (`SCAIVAULT_TEST_POSTGRES_URL`). Outside CI, when it is not
/// set, `None` with a notice naming `what` is skipped; under `CI=true` it must be set.
pub fn postgres_test_url(what: &str) -> Option<String> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let url = std::env::var("SCAIVAULT_TEST_POSTGRES_URL").ok();
    assert!(url.is_some() || !ci, "SCAIVAULT_TEST_POSTGRES_URL must be set under CI");
    if url.is_none() {
        eprintln!("notice: SCAIVAULT_TEST_POSTGRES_URL is not set; skipping the PostgreSQL {what}");
    }
    url
}

/// Runs `sql` as a secret write in `writer`'s open group, `bare` (without its prefix, so without a
/// savepoint) or not, and returns the task that waits for the group's outcome (the group commits
/// only when the test settles it or the nudges reach a committer).
pub async fn group_write<C>(
    writer: &Arc<Mutex<GroupWriter<C>>>,
    options: &C::Options,
    nudges: &mpsc::Sender<()>,
    sql: &str,
    bare: bool,
) -> JoinHandle<Result<(), String>>
where
    C: Connection + 'static,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    let mut guard = GroupWriter::lock_for_write(writer, nudges).await;
    let job = guard.start(options).await.expect("start");
    // Set only when asked, so a test that mixes both sees `start` reset it.
    if bare {
        *job.bare = true;
    }
    *job.sent = true;
    let sql = if bare { sql.to_owned() } else { format!("{}{sql}", job.prefix) };
    let written =
        job.conn.execute(sql.as_str()).await.map(drop).map_err(|e| StoreError::Backend(e.to_string()));
    let nudges = nudges.clone();
    let waiting = tokio::spawn(async move {
        GroupWriter::conclude(guard, written, &nudges).await.map_err(|e| e.to_string())
    });
    tokio::task::yield_now().await;
    waiting
}
