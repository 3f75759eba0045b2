//! Group commit for secret writes, shared by the backends: one connection of the writer's own,
//! outside the pool, and one open transaction that many concurrent writes join.
//!
//! A secret write runs its statements inside the writer's open transaction, under a savepoint of its
//! own, and then waits for that transaction to commit. The committer task commits it as soon as it
//! gets the write lock; the lock is fair, so every write already queued for it joins the same
//! commit first (up to [`GROUP_WRITES`] of them). Many concurrent writes thus share one `fsync`, and
//! each still answers only once its own change is durable. A write that fails rolls back to its
//! savepoint and leaves the others of its group alone; a commit that fails fails every write of the
//! group, and none of them is kept. A write whose rows the group holds already may go bare, without
//! a savepoint (see [`Job`]); should it fail once sent, the group fails as if its commit had.
//!
//! A finished write keeps its savepoint until the next write's first statement releases it (or the
//! commit does): on SQLite that statement goes with the write's own first one, on PostgreSQL it is
//! one simple query. A bare write releases nothing: the savepoint before it stays the held one. While a group is open it holds
//! the rows it wrote (on PostgreSQL, locked against every replica), so the writer remembers their
//! heads and the next write of the same secret in the group does not read them again.
//!
//! Everything else that takes the write lock (the pooled write transactions, SQLite's audit
//! batches) first has the open group committed, so one transaction of this process at a time
//! writes. On a request's path the commit runs in a task of its own
//! ([`GroupWriter::lock_settled`]), so a dropped request cannot cut it off.
//!
//! The writer's own upkeep (undoing a cut-off write, committing, rolling back) runs on request
//! paths, whose futures may be dropped at any `.await`. So a write's savepoint counts as undone only
//! once its rollback answered, the caches are cleared before a commit or rollback is sent, and a
//! commit or rollback cut off before its answer leaves the writer `unsure`: its next user rolls back
//! whatever may be open and reads every head again.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, watch};

use crate::{ChainHead, SecretHead, StoreError};

/// Each tenant's last audit record `(seq, hash)` as the writer knows it. A tenant missing here is
/// read (and, on PostgreSQL, locked) from the database when next needed.
pub type AuditHeads = HashMap<String, ChainHead>;

/// The heads of the secrets the open group wrote, by `(tenant, path)`.
pub type SecretHeads = HashMap<(String, String), SecretHead>;

/// How long opening the writer's connection may take.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Writes one group holds at most; the next write waits for the committer to commit it (see
/// [`GroupWriter::lock_for_write`]). On PostgreSQL each write's savepoint is a subtransaction with an
/// id of its own until the group commits, and a backend with more than 64 of them makes every other
/// session's snapshots slower (the subtransaction cache overflows), so a group stays below that.
pub const GROUP_WRITES: usize = 50;

/// How a group's commit went: `None` while it is still open.
type Outcome = Option<Result<(), String>>;

/// What the write lock guards.
#[derive(Debug)]
pub struct GroupWriter<C> {
    /// The chain heads as this process has written them, including the open group's (cleared
    /// whenever a group fails, so they are read again).
    pub heads: AuditHeads,
    /// Whether `heads` stay true after a commit: on SQLite this process is the only writer; on
    /// PostgreSQL a head is known only while the open group holds its row lock.
    heads_outlive_group: bool,
    /// The statement that opens a group.
    begin: &'static str,
    /// The statements that commit it.
    commit: &'static str,
    /// The heads of the secrets the open group wrote (it holds their rows until it ends).
    pub secrets: SecretHeads,
    /// The writer's own connection, outside the pool: a pooled connection costs a round trip on
    /// every release (sqlx tests it). Opened on first use, and dropped (closed) after a failure it
    /// could not roll back.
    conn: Option<C>,
    /// The open transaction's group: the writes done in it, waiting for its commit.
    group: Option<watch::Sender<Outcome>>,
    /// A write started on `conn` and did not finish (its future was dropped, or it failed): its
    /// savepoint must be rolled back before anything else runs there.
    cut: Option<u64>,
    /// Whether the started write has sent its first statement (with the prefix).
    sent: bool,
    /// The savepoint the started write's prefix releases, held again if the prefix is never sent.
    releases: Option<u64>,
    /// Whether the started write's prefix opens the group.
    opens: bool,
    /// Whether the started write sent its statements without its prefix (and so has no savepoint).
    bare: bool,
    /// The savepoint of the open group's last finished write, not released yet.
    held: Option<u64>,
    /// A commit or rollback was sent and its answer not seen (its future was dropped).
    unsure: bool,
    /// Writes started in the open group.
    writes: usize,
}

/// What a secret write inside the group needs: the connection, the heads and the statements to run
/// before its own (opening the group, or releasing the previous write's savepoint, then its own
/// savepoint), which the write sends with its first statement, setting `sent` just before. A write
/// that fails before sending anything leaves the group as it found it.
///
/// A write that cannot fail for reasons of its own may instead set `bare` and leave the prefix out:
/// it takes no savepoint (on PostgreSQL, one round trip less), and should it fail after all once it
/// sent something, the whole group is rolled back and every write in it fails (none had answered).
#[derive(Debug)]
pub struct Job<'w, C> {
    pub conn: &'w mut C,
    pub heads: &'w mut AuditHeads,
    pub secrets: &'w mut SecretHeads,
    pub prefix: String,
    pub sent: &'w mut bool,
    pub bare: &'w mut bool,
}

impl<C> GroupWriter<C>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    /// A writer whose groups open with `begin` (`BEGIN` or `BEGIN IMMEDIATE`) and end with `commit`.
    pub fn new(begin: &'static str, commit: &'static str, heads_outlive_group: bool) -> Self {
        GroupWriter {
            heads: AuditHeads::new(),
            heads_outlive_group,
            begin,
            commit,
            secrets: SecretHeads::new(),
            conn: None,
            group: None,
            cut: None,
            sent: false,
            releases: None,
            opens: false,
            bare: false,
            held: None,
            unsure: false,
            writes: 0,
        }
    }

    /// The writer's connection (opened if needed) and the heads.
    pub async fn parts(&mut self, options: &C::Options) -> Result<(&mut C, &mut AuditHeads), StoreError> {
        if self.conn.is_none() {
            // Bounded, since the write lock is held meanwhile (as the pools bound their acquires).
            let conn = tokio::time::timeout(CONNECT_TIMEOUT, C::connect_with(options))
                .await
                .map_err(|_| StoreError::Unavailable("timed out connecting the writer".into()))?
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            self.conn = Some(conn);
        }
        let GroupWriter { heads, conn: Some(conn), .. } = self else { unreachable!("opened above") };
        Ok((conn, heads))
    }

    /// Leaves the writer's connection with no transaction open: a write cut off mid-way is undone,
    /// and the open group is committed (its writes learn the outcome).
    pub async fn settle(&mut self) {
        self.recover().await;
        self.undo_cut().await;
        let Some(group) = self.group.take() else { return };
        // What the group wrote is known only while it is open, however it ends.
        self.held = None;
        self.secrets.clear();
        if !self.heads_outlive_group {
            self.heads.clear();
        }
        self.unsure = true;
        let outcome = match &mut self.conn {
            Some(conn) => conn.execute(self.commit).await.map(drop).map_err(|e| e.to_string()),
            None => Err("the writer's connection was lost".to_owned()),
        };
        self.unsure = false;
        if outcome.is_err() {
            self.roll_back_all().await;
        }
        let _ = group.send(Some(outcome));
    }

    /// After a commit or rollback whose answer was never seen: rolls back whatever may still be
    /// open and forgets every head, so they are read again from what the database holds.
    async fn recover(&mut self) {
        if self.unsure {
            self.roll_back_all().await;
        }
    }

    /// The write lock, for a secret write. A full group is not joined: it is left to the committer
    /// task (so no request's future can cut its commit off), and the write joins the next group.
    pub async fn lock_for_write(
        lock: &Arc<Mutex<Self>>,
        commits: &mpsc::Sender<()>,
    ) -> OwnedMutexGuard<Self> {
        loop {
            let writer = lock.clone().lock_owned().await;
            let full = writer.writes >= GROUP_WRITES;
            let Some(group) = writer.group.as_ref().filter(|_| full) else { return writer };
            let mut done = group.subscribe();
            drop(writer);
            // A nudge already pending is as good as this one.
            let _ = commits.try_send(());
            let _ = done.wait_for(Option::is_some).await;
        }
    }

    /// The write lock with no group open, for anything but a secret write (a pooled write
    /// transaction, a write that waits for its rows without a lock timeout). The open group is
    /// committed by a task of its own that holds the lock meanwhile and hands it back: the caller
    /// runs on a request's future, which may be dropped at any `.await`, and a commit cut off there
    /// would tell the group's writes they failed when they may have been kept. The caller keeps its
    /// place in the lock's queue.
    pub async fn lock_settled(lock: &Arc<Mutex<Self>>) -> Result<OwnedMutexGuard<Self>, StoreError>
    where
        C: Send + 'static,
    {
        let mut writer = lock.clone().lock_owned().await;
        if writer.group.is_none() {
            // Upkeep that is safe to cut off: whatever it leaves undone, the next user redoes.
            writer.recover().await;
            return Ok(writer);
        }
        tokio::spawn(async move {
            writer.settle().await;
            writer
        })
        .await
        .map_err(|_| StoreError::Unavailable("the writer stopped while committing".into()))
    }

    /// Starts a secret write: undoes a cut-off one, opens the group if there is none, and marks
    /// this one as started (until [`GroupWriter::conclude`]).
    pub async fn start(&mut self, options: &C::Options) -> Result<Job<'_, C>, StoreError> {
        self.recover().await;
        self.undo_cut().await;
        self.parts(options).await?;
        let mut prefix = String::new();
        self.opens = self.group.is_none();
        self.releases = self.held.take();
        if self.opens {
            self.writes = 0;
            self.group = Some(watch::channel(None).0);
            prefix.push_str(self.begin);
            prefix.push_str("; ");
        } else if let Some(held) = self.releases {
            let _ = write!(prefix, "RELEASE w{held}; ");
        }
        // Savepoints alternate between two names, so a write's is never the one its prefix releases:
        // rolling back to a savepoint whose statement never ran fails (and the group is rolled
        // back) instead of undoing the previous write. Two names, not one per write, keep the
        // statements' text the same, so their prepared forms are reused.
        let name = self.releases.map_or(0, |held| 1 - held);
        let _ = write!(prefix, "SAVEPOINT w{name}; ");
        self.writes += 1;
        self.cut = Some(name);
        self.sent = false;
        self.bare = false;
        let GroupWriter { heads, secrets, conn: Some(conn), sent, bare, .. } = self else {
            unreachable!("opened above")
        };
        Ok(Job { conn, heads, secrets, prefix, sent, bare })
    }

    /// Lets no other write join the open group: the next one waits for its commit and opens a new
    /// group (as after a full one). For a write that had to run on its own terms, such as one that
    /// waited for its rows without a lock timeout, so a later write never runs bare without one.
    pub fn alone(&mut self) {
        self.writes = self.writes.max(GROUP_WRITES);
    }

    /// Ends a write begun with [`GroupWriter::start`] whose statements gave `written`: lets the write
    /// lock go, nudges the committer, and answers once the group holding the write has committed. A
    /// failed write is undone alone.
    pub async fn conclude<T>(
        mut writer: OwnedMutexGuard<Self>,
        written: Result<T, StoreError>,
        commits: &mpsc::Sender<()>,
    ) -> Result<T, StoreError> {
        let written = match written {
            Ok(outcome) => {
                // A bare write made no savepoint: the one before it is still the one held.
                debug_assert!(!(writer.bare && writer.opens), "a bare write cannot open a group");
                let cut = writer.cut.take();
                writer.held = if writer.bare { writer.releases.take() } else { cut };
                Ok((outcome, GroupCommit(writer.group.as_ref().map(watch::Sender::subscribe))))
            }
            Err(e) => {
                // Sent without a savepoint, a failed write takes its group with it, and answers as
                // the group's other writes do: the transaction failed, not the write's own request.
                let lost = writer.bare && writer.sent;
                writer.undo_cut().await;
                Err(if lost {
                    StoreError::Unavailable(format!("the write transaction was rolled back: {e}"))
                } else {
                    e
                })
            }
        };
        drop(writer);
        // The group commits once the writers already queued have joined it.
        let _ = commits.try_send(());
        let (outcome, commit) = written?;
        commit.wait().await?;
        Ok(outcome)
    }

    async fn undo_cut(&mut self) {
        let Some(job) = self.cut else { return };
        if !self.sent {
            self.cut = None;
            // Nothing of this write reached the database: the previous write's savepoint is still
            // there, and a group this write was to open never began.
            self.held = self.releases.take();
            if self.opens {
                self.group = None;
            }
            return;
        }
        if self.bare {
            // Sent without a savepoint: nothing undoes this write alone.
            self.roll_back_all().await;
            return;
        }
        let undo = format!("ROLLBACK TO w{job}; RELEASE w{job}");
        let undone = match &mut self.conn {
            Some(conn) => conn.execute(undo.as_str()).await.is_ok(),
            None => false,
        };
        // Only now: had this been cut off, the next user would roll back again (and, finding the
        // savepoint gone, the whole group).
        self.cut = None;
        if !undone {
            // The savepoint is not there (the transaction did not open, or the database rolled it
            // back itself): nothing of the group can be trusted to commit.
            self.roll_back_all().await;
        }
    }

    /// Rolls the whole transaction back (closing the connection if even that fails), fails the open
    /// group's writes, and forgets the heads, which may have moved inside it.
    pub async fn roll_back_all(&mut self) {
        if let Some(group) = self.group.take() {
            let _ = group.send(Some(Err("the write transaction was rolled back".to_owned())));
        }
        self.heads.clear();
        self.secrets.clear();
        self.held = None;
        self.cut = None;
        self.unsure = true;
        if let Some(conn) = &mut self.conn
            && let Err(e) = conn.execute("ROLLBACK").await
            && !e.to_string().contains("no transaction")
        {
            self.conn = None;
        }
        self.unsure = false;
    }
}

/// A finished write waiting for its group to commit.
#[must_use]
struct GroupCommit(Option<watch::Receiver<Outcome>>);

impl GroupCommit {
    async fn wait(self) -> Result<(), StoreError> {
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
pub fn committer<C>(writer: Arc<Mutex<GroupWriter<C>>>) -> mpsc::Sender<()>
where
    C: Connection + 'static,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    let (nudge, mut nudged) = mpsc::channel::<()>(1);
    tokio::spawn(async move {
        while nudged.recv().await.is_some() {
            writer.lock().await.settle().await;
        }
    });
    nudge
}
