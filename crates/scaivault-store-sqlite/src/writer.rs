//! The writer: one connection of its own, outside the pool, for audit batches and secret writes,
//! and group commit for secret writes.
//!
//! A secret write runs its statements inside the writer's open transaction, under a savepoint of its
//! own, and then waits for that transaction to commit. The committer task commits it as soon as it
//! gets the write lock; the lock is fair, so every write already queued for it joins the same
//! commit first. Many concurrent writes thus share one `fsync`, and each still answers only once its
//! own change is durable. A write that fails rolls back to its savepoint and leaves the others of its
//! group alone; a commit that fails fails every write of the group, and none of them is kept.
//!
//! Everything else that takes the write lock (the pooled write transactions, the audit batches)
//! first settles the writer: it commits the open group, so one transaction at a time holds SQLite's
//! write lock.

use std::sync::Arc;

use scaivault_store::{ChainHead, StoreError};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, mpsc, watch};

/// Each tenant's last audit record `(seq, hash)`, as written by this process. A tenant missing here
/// is read from the database when next needed.
pub(crate) type AuditHeads = std::collections::HashMap<String, ChainHead>;

/// How a group's commit went: `None` while it is still open.
type Outcome = Option<Result<(), String>>;

/// What the write lock guards.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// The chain heads as this process has written them, including the open group's (cleared
    /// whenever a group fails, so they are read again).
    pub(crate) heads: AuditHeads,
    /// The writer's own connection, outside the pool: a pooled connection costs a round trip to its
    /// thread on every release (sqlx tests it), and its page cache goes stale whenever another
    /// connection writes. Opened on first use, and dropped (closed) after a failure it could not roll
    /// back.
    conn: Option<SqliteConnection>,
    /// The open transaction's group: the writes done in it, waiting for its commit.
    group: Option<watch::Sender<Outcome>>,
    /// A write started on `conn` and did not finish (its future was dropped): its savepoint must be
    /// rolled back before anything else runs there.
    cut: bool,
}

/// What a secret write inside the group needs: the connection, the heads and the first statements'
/// prefix (`BEGIN IMMEDIATE` when it opens the group, then its savepoint).
pub(crate) struct Job<'w> {
    pub(crate) conn: &'w mut SqliteConnection,
    pub(crate) heads: &'w mut AuditHeads,
    pub(crate) prefix: &'static str,
}

/// Ends a write's statements when they all succeeded.
pub(crate) const RELEASE: &str = "RELEASE write_job";

impl Writer {
    /// The writer's connection (opened if needed) and the heads.
    pub(crate) async fn parts(
        &mut self,
        options: &SqliteConnectOptions,
    ) -> Result<(&mut SqliteConnection, &mut AuditHeads), StoreError> {
        if self.conn.is_none() {
            self.conn = Some(SqliteConnection::connect_with(options).await.map_err(crate::db_err)?);
        }
        let Writer { heads, conn: Some(conn), .. } = self else { unreachable!("opened above") };
        Ok((conn, heads))
    }

    /// Leaves the writer's connection with no transaction open: a write cut off mid-way is undone,
    /// and the open group is committed (its writes learn the outcome).
    pub(crate) async fn settle(&mut self) {
        self.undo_cut().await;
        let Some(group) = self.group.take() else { return };
        let outcome = match &mut self.conn {
            Some(conn) => conn.execute("COMMIT").await.map(drop).map_err(|e| e.to_string()),
            None => Err("the writer's connection was lost".to_owned()),
        };
        if outcome.is_err() {
            self.roll_back_all().await;
        }
        let _ = group.send(Some(outcome));
    }

    /// Starts a secret write: undoes a cut-off one, opens the group if there is none, and marks
    /// this one as started (until [`Writer::finished`] or [`Writer::failed`]).
    pub(crate) async fn start(&mut self, options: &SqliteConnectOptions) -> Result<Job<'_>, StoreError> {
        self.undo_cut().await;
        self.parts(options).await?;
        let prefix = if self.group.is_some() {
            "SAVEPOINT write_job; "
        } else {
            self.group = Some(watch::channel(None).0);
            "BEGIN IMMEDIATE; SAVEPOINT write_job; "
        };
        self.cut = true;
        let (conn, heads) = self.parts(options).await?;
        Ok(Job { conn, heads, prefix })
    }

    /// The write's statements all ran (the last one ended with [`RELEASE`]): it is part of the group,
    /// and the returned outcome tells when the group commits.
    pub(crate) fn finished(&mut self) -> GroupCommit {
        self.cut = false;
        GroupCommit(self.group.as_ref().map(watch::Sender::subscribe))
    }

    /// The write failed: its own changes are undone and the group goes on without it.
    pub(crate) async fn failed(&mut self) {
        self.undo_cut().await;
    }

    async fn undo_cut(&mut self) {
        if !std::mem::take(&mut self.cut) {
            return;
        }
        let undone = match &mut self.conn {
            Some(conn) => conn.execute("ROLLBACK TO write_job; RELEASE write_job").await.is_ok(),
            None => false,
        };
        if !undone {
            // The savepoint is not there (the transaction did not open, or SQLite rolled it back
            // itself): nothing of the group can be trusted to commit.
            self.roll_back_all().await;
            if let Some(group) = self.group.take() {
                let _ = group.send(Some(Err("the write transaction was rolled back".to_owned())));
            }
        }
    }

    /// Rolls the whole transaction back (closing the connection if even that fails) and forgets the
    /// heads, which may have moved inside it.
    pub(crate) async fn roll_back_all(&mut self) {
        self.heads.clear();
        if let Some(conn) = &mut self.conn
            && let Err(e) = conn.execute("ROLLBACK").await
            && !e.to_string().contains("no transaction")
        {
            self.conn = None;
        }
    }
}

/// A finished write waiting for its group to commit.
#[must_use]
pub(crate) struct GroupCommit(Option<watch::Receiver<Outcome>>);

impl GroupCommit {
    pub(crate) async fn wait(self) -> Result<(), StoreError> {
        let Some(mut rx) = self.0 else {
            return Err(StoreError::Unavailable("the write transaction was lost".into()));
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => match outcome.as_ref() {
                Some(Ok(())) => Ok(()),
                Some(Err(e)) => Err(StoreError::Unavailable(format!("the write did not commit: {e}"))),
                None => unreachable!("waited for an outcome"),
            },
            Err(_) => Err(StoreError::Unavailable("the write transaction was lost".into())),
        }
    }
}

/// Starts the committer task: each nudge makes it take the write lock (behind every writer already
/// waiting for it) and commit the open group. It stops when the returned sender is dropped.
pub(crate) fn committer(writer: Arc<Mutex<Writer>>) -> mpsc::Sender<()> {
    let (nudge, mut nudged) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while nudged.recv().await.is_some() {
            writer.lock().await.settle().await;
        }
    });
    nudge
}
