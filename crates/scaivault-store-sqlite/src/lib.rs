//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL`, foreign keys on, and the
//! migrations in `migrations/` embedded in the binary.
//!
//! All SQL for SQLite lives here. Writes are serialised by an in-process lock, so version numbers
//! are assigned without gaps or races. Secret writes and audit batches run on the writer's own
//! connection, and concurrent secret writes share one commit (group commit, see
//! `scaivault_store::group`); the rarer writes (tokens, policies, webhooks, keys) run as
//! `BEGIN IMMEDIATE` transactions on a pooled connection after the open group has committed. This
//! crate never sees plaintext and never decides access.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaivault_crypto::{SealedSecret, StoredMasterKey, TokenHash};
use scaivault_domain::SecretMetadata;
use scaivault_store::group::{AuditHeads, GroupWriter, Job, committer};
use scaivault_store::{
    AuditFilter, AuditHead, AuditOrder, AuditRow, AuditStore, ChainFn, ChainHead, ChainedRow, ChangeFeed,
    DestroyEventsFn, HeadMacFn, KeyStatus, KeyStore, NewAuditEntry, NewEvent, NewToken, RewrapItem,
    SUMMARY_COLUMNS, SealFn, SecretHead, SecretListQuery, SecretStore, SecretSummary, SecretVersionRow,
    Store, StoreError, StoredSecret, TokenRecord, TokenStore, WriteEffects, WriteOutcome, WritePlan,
    WriteSecret, chain_entries, deliveries_of, fit_one_insert, list_json, oldest_kept, to_micros,
    violates_constraint,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::{Mutex, mpsc};

/// The writer of this store: its connection, the open group and the chain heads.
type Writer = GroupWriter<SqliteConnection>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A ScaiVault store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One writer at a time inside this process; SQLite would serialise them anyway, but queueing here
    /// avoids busy-wait retries under contention. It guards the writer's own connection, its open
    /// group commit and the audit chain heads this process knows (only writers move a head, and only
    /// while holding it).
    write_lock: Arc<Mutex<Writer>>,
    /// Nudges the committer task to commit the writer's open group.
    commits: mpsc::Sender<()>,
    /// How connections are opened, for the writer's own connection.
    options: SqliteConnectOptions,
    /// The exclusive lock on `<file>.lock`, held while the store is open: the chain heads and caches
    /// above assume this process is the file's only writer (`None` for an in-memory database).
    _exclusive: Option<std::fs::File>,
}

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(ref d) if d.is_unique_violation() => StoreError::AlreadyExists,
        other => StoreError::Backend(other.to_string()),
    }
}

const HEAD_COLUMNS: &str =
    "path, secret_type, metadata, current_version, max_versions, created_at, updated_at, deleted_at";
const TOKEN_COLUMNS: &str = "t.id, t.tenant_id, t.name, t.identity_type, t.identity_id, t.scopes, \
     t.groups_json, t.is_root, t.created_by, t.created_at, t.expires_at, t.revoked_at, t.roles_json, \
     n.partner_id, n.policy_epoch";
/// Tokens joined with their tenant, whose policy epoch every authentication needs.
const TOKEN_FROM: &str = "tokens t JOIN tenants n ON n.id = t.tenant_id";

scaivault_store::row_decoders!(SqliteRow);
scaivault_store::audit_values!(Sqlite);
scaivault_store::version_sql!(Sqlite);
scaivault_store::audit_query!(Sqlite);
scaivault_store::tenant_store_impl!(SqliteStore);
scaivault_store::policy_store_impl!(SqliteStore, Sqlite);
scaivault_store::rotation_store_impl!(SqliteStore, Sqlite, SqliteRow);
scaivault_store::federation_store_impl!(SqliteStore, Sqlite, SqliteRow, share = "");
scaivault_store::event_store_impl!(SqliteStore, Sqlite, SqliteRow, lock = "");

fn metadata_json(metadata: &SecretMetadata) -> Result<String, StoreError> {
    serde_json::to_string(metadata).map_err(|e| StoreError::Backend(e.to_string()))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend("number out of range".into()))
}

/// Whether `file` names a file on disk rather than an in-memory database.
fn on_disk(file: &Path) -> bool {
    !(file.as_os_str().is_empty() || file.as_os_str() == ":memory:")
}

/// Creates the database file readable by its owner only (SQLite gives its -wal and -shm files the
/// same mode). An existing file is left as it is.
fn create_private(file: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !on_disk(file) {
        return Ok(());
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!("cannot create {}: {e}", file.display()))),
    }
}

/// Takes the exclusive lock on `<file>.lock`, so a second process (or a second store in this one)
/// cannot open the same database: its chain heads and caches would go stale behind the first's
/// writes (a revoked token still accepted, audit batches colliding). Released when the store drops,
/// or when the process dies.
fn lock_exclusive(file: &Path) -> Result<Option<std::fs::File>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if !on_disk(file) {
        return Ok(None);
    }
    let mut name = file.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    let lock = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another ScaiVault server (it holds {})",
            file.display(),
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Unavailable(format!("cannot lock {}: {e}", path.display())))
        }
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` (`sqlite://path`) and runs the migrations.
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad sqlite url: {e}")))?;
        Self::open(options).await
    }

    /// Opens the database file at `path`, creating it if missing.
    pub async fn open_file(path: &Path) -> Result<SqliteStore, StoreError> {
        Self::open(SqliteConnectOptions::new().filename(path)).await
    }

    async fn open(options: SqliteConnectOptions) -> Result<SqliteStore, StoreError> {
        create_private(options.get_filename())?;
        let exclusive = lock_exclusive(options.get_filename())?;
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // Rows cross from the connection's thread in a bounded channel; a full one makes the
            // thread wait for the runtime (two context switches). A page of 1,000 heads fits.
            .row_buffer_size(1024)
            // Savepoints (one per write of a group commit) journal in memory, not in a temporary file.
            .pragma("temp_store", "memory");
        // A connection to a local file does not go stale: no health-check round trip per acquire.
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        let write_lock = Arc::new(Mutex::new(Writer::new("BEGIN IMMEDIATE", "COMMIT", true)));
        let commits = committer(write_lock.clone());
        Ok(SqliteStore { pool, write_lock, commits, options, _exclusive: exclusive })
    }

    /// `(journal_mode, synchronous, foreign_keys)` as the connection sees them, for checks.
    pub async fn pragmas(&self) -> Result<(String, i64, i64), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        let (journal,): (String,) =
            sqlx::query_as("PRAGMA journal_mode").fetch_one(&mut *conn).await.map_err(db_err)?;
        let (sync,): (i64,) =
            sqlx::query_as("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(db_err)?;
        let (fk,): (i64,) =
            sqlx::query_as("PRAGMA foreign_keys").fetch_one(&mut *conn).await.map_err(db_err)?;
        Ok((journal, sync, fk))
    }

    /// The options the linked SQLite was compiled with (`PRAGMA compile_options`), for checks.
    pub async fn compile_options(&self) -> Result<Vec<String>, StoreError> {
        let rows: Vec<(String,)> =
            sqlx::query_as("PRAGMA compile_options").fetch_all(&self.pool).await.map_err(db_err)?;
        Ok(rows.into_iter().map(|(option,)| option).collect())
    }

    /// The plan SQLite chooses for the rotation scheduler's query (for the benchmark's report).
    pub async fn due_query_plan(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let sql = format!("EXPLAIN QUERY PLAN {}", due_assignments_sql());
        let rows = sqlx::query(&sql)
            .bind(to_micros(now))
            .bind(1000i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>("detail").map_err(db_err)).collect()
    }

    async fn begin_write(
        &self,
    ) -> Result<(tokio::sync::OwnedMutexGuard<Writer>, Transaction<'static, Sqlite>), StoreError> {
        let guard = Writer::lock_settled(&self.write_lock).await?;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(db_err)?;
        Ok((guard, tx))
    }

    async fn head_in(
        tx: &mut Transaction<'static, Sqlite>,
        tenant: &str,
        path: &str,
    ) -> Result<Option<SecretHead>, StoreError> {
        let sql = format!("SELECT {HEAD_COLUMNS} FROM secrets WHERE tenant_id = ? AND path = ?");
        let row =
            sqlx::query(&sql).bind(tenant).bind(path).fetch_optional(&mut **tx).await.map_err(db_err)?;
        row.as_ref().map(head_from_row).transpose()
    }

    async fn live_head_in(
        tx: &mut Transaction<'static, Sqlite>,
        tenant: &str,
        path: &str,
    ) -> Result<SecretHead, StoreError> {
        match Self::head_in(tx, tenant, path).await? {
            Some(h) if h.deleted_at.is_none() => Ok(h),
            _ => Err(StoreError::SecretNotFound),
        }
    }

    async fn prune(
        tx: &mut Transaction<'static, Sqlite>,
        tenant: &str,
        path: &str,
        current: u64,
        max_versions: u32,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM secret_versions WHERE tenant_id = ? AND path = ? AND version < ?")
            .bind(tenant)
            .bind(path)
            .bind(to_i64(oldest_kept(current, max_versions))?)
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}

#[async_trait]
impl SecretStore for SqliteStore {
    /// Runs in the writer's open group (see `scaivault_store::group`) and answers once the group
    /// has committed.
    async fn write_secret(
        &self,
        w: WriteSecret<'_>,
        seal: &SealFn<'_>,
        effects: WriteEffects<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let mut writer = Writer::lock_for_write(&self.write_lock, &self.commits).await;
        let job = writer.start(&self.options).await?;
        let written = write_in(job, w, seal, effects).await;
        Writer::conclude(writer, written, &self.commits).await
    }

    async fn read_secret(
        &self,
        tenant: &str,
        path: &str,
        version: Option<u64>,
    ) -> Result<StoredSecret, StoreError> {
        // One round trip: the head and the wanted version row, joined.
        let row = sqlx::query(
            "SELECT s.path, s.secret_type, s.metadata, s.current_version, s.max_versions, s.created_at, \
             s.updated_at, s.deleted_at, v.version AS v_version, v.created_at AS v_created_at, \
             v.created_by AS v_created_by, v.expires_at AS v_expires_at, v.destroyed_at AS v_destroyed_at, \
             v.key_version AS v_key_version, v.wrapped_dek AS v_wrapped_dek, v.ciphertext AS v_ciphertext \
             FROM secrets s LEFT JOIN secret_versions v ON v.tenant_id = s.tenant_id AND v.path = s.path \
             AND v.version = COALESCE(?3, s.current_version) WHERE s.tenant_id = ?1 AND s.path = ?2",
        )
        .bind(tenant)
        .bind(path)
        .bind(version.map(to_i64).transpose()?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::SecretNotFound)?;
        let head = head_from_row(&row)?;
        if head.deleted_at.is_some() {
            return Err(StoreError::SecretNotFound);
        }
        let found: Option<i64> = row.try_get("v_version").map_err(db_err)?;
        if found.is_none() {
            return Err(StoreError::VersionNotFound(version.unwrap_or(head.current_version)));
        }
        let version = version_from_prefixed(&row, "v_")?;
        Ok(StoredSecret { head, version })
    }

    async fn secret_head(&self, tenant: &str, path: &str) -> Result<Option<SecretHead>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let head = Self::head_in(&mut tx, tenant, path).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(head)
    }

    async fn list_versions(
        &self,
        tenant: &str,
        path: &str,
    ) -> Result<(SecretHead, Vec<SecretVersionRow>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let head = Self::live_head_in(&mut tx, tenant, path).await?;
        let sql = "SELECT version, created_at, created_by, expires_at, destroyed_at, NULL AS key_version, \
             NULL AS wrapped_dek, NULL AS ciphertext FROM secret_versions WHERE tenant_id = ? AND path = ? \
             ORDER BY version DESC";
        let rows = sqlx::query(sql).bind(tenant).bind(path).fetch_all(&mut *tx).await.map_err(db_err)?;
        let versions = rows.iter().map(version_from_row).collect::<Result<_, _>>()?;
        tx.commit().await.map_err(db_err)?;
        Ok((head, versions))
    }

    async fn update_metadata(
        &self,
        tenant: &str,
        path: &str,
        metadata: Option<SecretMetadata>,
        max_versions: Option<u32>,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<SecretHead, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let head = Self::live_head_in(&mut tx, tenant, path).await?;
        let metadata = metadata.unwrap_or(head.metadata);
        let max_versions = max_versions.unwrap_or(head.max_versions);
        sqlx::query("UPDATE secrets SET metadata = ?, max_versions = ?, updated_at = ? WHERE tenant_id = ? AND path = ?")
            .bind(metadata_json(&metadata)?)
            .bind(i64::from(max_versions))
            .bind(to_micros(now))
            .bind(tenant)
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Self::prune(&mut tx, tenant, path, head.current_version, max_versions).await?;
        let head = Self::live_head_in(&mut tx, tenant, path).await?;
        insert_events_in(&mut tx, events).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(head)
    }

    async fn list_secrets(
        &self,
        tenant: &str,
        q: SecretListQuery<'_>,
    ) -> Result<Vec<SecretSummary>, StoreError> {
        // A prefix becomes a plain range on the path index (the planner cannot seek through an
        // `? IS NULL OR …` condition), so a list reads its page and no more.
        let range = q.prefix_range();
        let seek = if range.is_some() { "AND path >= ? AND path < ?" } else { "" };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM secrets WHERE tenant_id = ? AND deleted_at IS NULL {seek} \
             AND (? IS NULL OR substr(path, 1, length(?)) = ?) \
             AND (? IS NULL OR path > ?) \
             AND (? IS NULL OR EXISTS (SELECT 1 FROM json_each(metadata, '$.tags') WHERE value = ?)) \
             ORDER BY path LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(tenant);
        if let Some((low, high)) = &range {
            query = query.bind(*low).bind(high.as_str());
        }
        let rows = query
            .bind(q.prefix)
            .bind(q.prefix)
            .bind(q.prefix)
            .bind(q.after)
            .bind(q.after)
            .bind(q.tag)
            .bind(q.tag)
            .bind(i64::from(q.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(summary_from_row).collect()
    }

    async fn soft_delete(
        &self,
        tenant: &str,
        path: &str,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<(), StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE secrets SET deleted_at = ?, updated_at = ? WHERE tenant_id = ? AND path = ? AND deleted_at IS NULL",
        )
        .bind(to_micros(now))
        .bind(to_micros(now))
        .bind(tenant)
        .bind(path)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::SecretNotFound);
        }
        insert_events_in(&mut tx, events).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn undelete(
        &self,
        tenant: &str,
        path: &str,
        now: DateTime<Utc>,
        events: &[NewEvent],
    ) -> Result<(SecretHead, bool), StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let head = Self::head_in(&mut tx, tenant, path).await?.ok_or(StoreError::SecretNotFound)?;
        if head.deleted_at.is_some() {
            sqlx::query(
                "UPDATE secrets SET deleted_at = NULL, updated_at = ? WHERE tenant_id = ? AND path = ?",
            )
            .bind(to_micros(now))
            .bind(tenant)
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let restored = head.deleted_at.is_some();
        let head = Self::live_head_in(&mut tx, tenant, path).await?;
        if restored {
            insert_events_in(&mut tx, events).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok((head, restored))
    }

    async fn destroy_versions(
        &self,
        tenant: &str,
        path: &str,
        versions: Option<&[u64]>,
        now: DateTime<Utc>,
        events: &DestroyEventsFn<'_>,
    ) -> Result<Vec<u64>, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        Self::head_in(&mut tx, tenant, path).await?.ok_or(StoreError::SecretNotFound)?;
        let rows = sqlx::query(
            "SELECT version FROM secret_versions WHERE tenant_id = ? AND path = ? AND destroyed_at IS NULL ORDER BY version",
        )
        .bind(tenant)
        .bind(path)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        let mut destroyed = Vec::new();
        for row in rows {
            let v: i64 = row.try_get("version").map_err(db_err)?;
            let v = v as u64;
            if versions.is_some_and(|wanted| !wanted.contains(&v)) {
                continue;
            }
            sqlx::query(
                "UPDATE secret_versions SET ciphertext = NULL, wrapped_dek = NULL, key_version = NULL, \
                 destroyed_at = ? WHERE tenant_id = ? AND path = ? AND version = ?",
            )
            .bind(to_micros(now))
            .bind(tenant)
            .bind(path)
            .bind(to_i64(v)?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            destroyed.push(v);
        }
        if !destroyed.is_empty() {
            insert_events_in(&mut tx, &events(&destroyed)?).await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(destroyed)
    }
}

/// A secret write's statements, in the writer's transaction under the job's savepoint: the head's
/// read (skipped when the group wrote this secret already) and, once per writer, the chain head's;
/// then one command for the head, the version, the pruning, the events and their deliveries, the
/// audit record, its chain head and the head read back (split where a rotation completes, since the
/// events depend on it, and where the events or deliveries need statements of their own).
async fn write_in(
    job: Job<'_, SqliteConnection>,
    w: WriteSecret<'_>,
    seal: &SealFn<'_>,
    effects: WriteEffects<'_>,
) -> Result<WriteOutcome, StoreError> {
    let Job { conn, heads, secrets, prefix, sent, .. } = job;
    let path = w.path.as_str();
    let key = (w.tenant.to_owned(), path.to_owned());
    // The savepoint goes with the first statement: the head's read, unless the group wrote this
    // secret already and knows it.
    let (existing, prefix) = match secrets.get(&key) {
        Some(head) => (Some(head.clone()), prefix),
        None => {
            let sql = format!("{prefix}SELECT {HEAD_COLUMNS} FROM secrets WHERE tenant_id = ? AND path = ?");
            *sent = true;
            let rows =
                sqlx::query(&sql).bind(w.tenant).bind(path).fetch_all(&mut *conn).await.map_err(db_err)?;
            (rows.first().map(head_from_row).transpose()?, String::new())
        }
    };
    let plan = WritePlan::new(&w, existing.as_ref())?;
    let (current, version, max_versions) = (plan.current, plan.version, plan.max_versions);
    let now = to_micros(w.now);
    let meta = metadata_json(&plan.metadata)?;
    let sealed = seal(version)?;
    let entry = effects.audit.map(|audit| (audit, (audit.build)(version, current == 0)));
    // The chain head, read once per writer (later batches know it).
    let mut next = match &entry {
        Some((_, entry)) => heads_of(conn, heads, std::slice::from_ref(entry)).await?,
        None => std::collections::BTreeMap::new(),
    };
    // Each command sent on its own is a round trip to the connection's thread, so the head, the
    // version, the pruning, the events, the audit record, its chain head and the head read back go
    // as one command, unless a rotation completes: its events say whether it did.
    let mut q = sqlx::QueryBuilder::<Sqlite>::new(prefix);
    if existing.is_none() {
        q.push(
            "INSERT INTO secrets (tenant_id, path, secret_type, metadata, max_versions, current_version, \
             created_at, updated_at) VALUES (",
        );
        q.separated(", ")
            .push_bind(w.tenant)
            .push_bind(path)
            .push_bind(plan.secret_type.as_str())
            .push_bind(&meta)
            .push_bind(i64::from(max_versions))
            .push_bind(to_i64(version)?)
            .push_bind(now)
            .push_bind(now);
        q.push(")");
    } else {
        push_head_update(&mut q, (w.tenant, path), &plan, &meta, now)?;
    }
    q.push("; ");
    push_version_row(&mut q, (w.tenant, path), to_i64(version)?, &sealed, now, w.created_by);
    q.push("; ");
    push_prune(&mut q, (w.tenant, path), to_i64(oldest_kept(version, max_versions))?);
    q.push("; ");
    *sent = true;
    let rotated = match effects.rotation {
        Some(completion) => {
            q.build().execute(&mut *conn).await.map_err(db_err)?;
            q = sqlx::QueryBuilder::new("");
            complete_rotation_in(conn, completion, version).await?
        }
        None => false,
    };
    let events = effects.events_of(version, current == 0, rotated)?;
    let deliveries = deliveries_of(&events);
    if !fit_one_insert(&events, &deliveries) {
        q.build().execute(&mut *conn).await.map_err(db_err)?;
        insert_events_in(conn, &events).await?;
        q = sqlx::QueryBuilder::new("");
    } else if !events.is_empty() {
        push_event_rows(&mut q, &events);
        q.push("; ");
        if !deliveries.is_empty() {
            push_delivery_rows(&mut q, &deliveries);
            q.push("; ");
        }
    }
    let mut moved = None;
    let rows;
    if let Some((audit, entry)) = &entry {
        rows = chain_entries(std::slice::from_ref(entry), &mut next, audit.chain)?;
        push_audit_rows(&mut q, &rows, OnFailure::Statement);
        q.push("; ");
        push_audit_heads(&mut q, next.iter().map(|(tenant, head)| (*tenant, *head)), audit.sign);
        q.push("; ");
        moved = Some((entry.tenant.clone(), next[entry.tenant.as_str()]));
    }
    q.push(format!("SELECT {HEAD_COLUMNS} FROM secrets WHERE tenant_id = "))
        .push_bind(w.tenant)
        .push(" AND path = ")
        .push_bind(path);
    let head = match q.build().fetch_all(&mut *conn).await {
        Ok(found) => found.first().map(head_from_row).transpose()?.ok_or(StoreError::SecretNotFound)?,
        // Unless a row was refused for its content, the record could not be appended: the whole
        // write rolls back with it.
        Err(e) if moved.is_some() && !violates_constraint(&e) => {
            return Err(StoreError::AuditUnavailable(db_err(e).to_string()));
        }
        Err(e) => return Err(db_err(e)),
    };
    if let Some((tenant, head)) = moved {
        heads.insert(tenant, head);
    }
    secrets.insert(key, head.clone());
    Ok(WriteOutcome { created_at: head.updated_at, head, version, created: current == 0 })
}

async fn insert_token(tx: &mut Transaction<'static, Sqlite>, t: &NewToken) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tokens (id, tenant_id, token_hash, name, identity_type, identity_id, scopes, groups_json, \
         is_root, created_by, created_at, expires_at, roles_json, parent_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.id)
    .bind(&t.tenant)
    .bind(&t.hash.0[..])
    .bind(&t.name)
    .bind(&t.identity_type)
    .bind(&t.identity_id)
    .bind(list_json(&t.scopes))
    .bind(list_json(&t.groups))
    .bind(t.is_root)
    .bind(&t.created_by)
    .bind(to_micros(t.created_at))
    .bind(t.expires_at.map(to_micros))
    .bind(list_json(&t.roles))
    .bind(&t.parent)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn bootstrap(&self, tenant: &str, root_token: NewToken) -> Result<bool, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let any: Option<(String,)> = sqlx::query_as("SELECT id FROM tenants LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if any.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant)
            .bind("default")
            .bind(to_micros(root_token.created_at))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_token(&mut tx, &root_token).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn create_token(&self, token: NewToken) -> Result<(), StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        if let Some(parent) = &token.parent {
            // Writes are serialised: a revocation is either wholly before this check or after the insert.
            let live: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM tokens WHERE id = ? AND revoked_at IS NULL")
                    .bind(parent)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if live.is_none() {
                return Err(StoreError::NotFound);
            }
        }
        insert_token(&mut tx, &token).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn find_token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.token_hash = ?");
        let row = sqlx::query(&sql).bind(&hash.0[..]).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.tenant_id = ? AND (? IS NULL OR t.id > ?) ORDER BY t.id LIMIT ?"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(after)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn get_token(&self, tenant: &str, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.tenant_id = ? AND t.id = ?");
        let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(&self, tenant: &str, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tokens WHERE tenant_id = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        let done = sqlx::query(
            "WITH RECURSIVE tree(id) AS (SELECT id FROM tokens WHERE id = ? \
                 UNION SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id) \
             UPDATE tokens SET revoked_at = ? WHERE revoked_at IS NULL AND id IN (SELECT id FROM tree)",
        )
        .bind(id)
        .bind(to_micros(now))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn master_keys(&self) -> Result<Vec<StoredMasterKey>, StoreError> {
        let rows: Vec<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT version, wrapped FROM master_keys ORDER BY version")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(rows.into_iter().map(|(v, wrapped)| StoredMasterKey { version: v as u32, wrapped }).collect())
    }

    async fn insert_master_key(&self, key: &StoredMasterKey, now: DateTime<Utc>) -> Result<(), StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query("INSERT INTO master_keys (version, wrapped, wraps, created_at) VALUES (?, ?, 0, ?)")
            .bind(i64::from(key.version))
            .bind(&key.wrapped)
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn reserve_wraps(&self, version: u32, wraps: u64) -> Result<u64, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let total: Option<(i64,)> =
            sqlx::query_as("UPDATE master_keys SET wraps = wraps + ? WHERE version = ? RETURNING wraps")
                .bind(to_i64(wraps)?)
                .bind(i64::from(version))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        total.map(|(t,)| t as u64).ok_or(StoreError::NotFound)
    }

    async fn key_status(&self) -> Result<Vec<KeyStatus>, StoreError> {
        let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
            "SELECT k.version, k.created_at, k.wraps, \
             (SELECT COUNT(*) FROM secret_versions v WHERE v.key_version = k.version) \
             + (SELECT COUNT(*) FROM webhooks w WHERE w.secret_key_version = k.version) \
             + (SELECT COUNT(*) FROM webhooks w WHERE w.prev_key_version = k.version) \
             FROM master_keys k ORDER BY k.version",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(version, created_at, wraps, data_keys)| {
                Ok(KeyStatus {
                    version: version as u32,
                    created_at: scaivault_store::from_micros(created_at)?,
                    wraps: wraps as u64,
                    data_keys: data_keys as u64,
                })
            })
            .collect()
    }

    async fn pending_rewraps(&self, current: u32, limit: u32) -> Result<Vec<RewrapItem>, StoreError> {
        let rows = sqlx::query(
            "SELECT tenant_id, path, version, key_version, wrapped_dek, ciphertext FROM secret_versions \
             WHERE key_version IS NOT NULL AND key_version <> ? ORDER BY tenant_id, path, version LIMIT ?",
        )
        .bind(i64::from(current))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let mut items = rows
            .iter()
            .map(|row| {
                let version: i64 = row.try_get("version").map_err(db_err)?;
                let key_version: i64 = row.try_get("key_version").map_err(db_err)?;
                Ok(RewrapItem {
                    tenant: row.try_get("tenant_id").map_err(db_err)?,
                    path: row.try_get("path").map_err(db_err)?,
                    version: version as u64,
                    sealed: SealedSecret::from_stored(
                        key_version as u32,
                        row.try_get("wrapped_dek").map_err(db_err)?,
                        row.try_get("ciphertext").map_err(db_err)?,
                    ),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let left = limit.saturating_sub(items.len() as u32);
        if left > 0 {
            items.extend(pending_webhook_rewraps(&self.pool, current, left).await?);
        }
        Ok(items)
    }

    async fn replace_wrap(&self, item: &RewrapItem, sealed: &SealedSecret) -> Result<bool, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        if item.path.starts_with(scaivault_store::WEBHOOK_SEAL_PREFIX) {
            let done = replace_webhook_wrap(&mut tx, item, sealed).await?;
            tx.commit().await.map_err(db_err)?;
            return Ok(done);
        }
        let done = sqlx::query(
            "UPDATE secret_versions SET key_version = ?, wrapped_dek = ? \
             WHERE tenant_id = ? AND path = ? AND version = ? AND key_version = ?",
        )
        .bind(i64::from(sealed.key_version()))
        .bind(sealed.wrapped_dek())
        .bind(&item.tenant)
        .bind(&item.path)
        .bind(to_i64(item.version)?)
        .bind(i64::from(item.sealed.key_version()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }
}

/// Rows per multi-row insert: 11 parameters each stays far below every parameter limit.
const AUDIT_ROWS_PER_INSERT: usize = 500;

fn hash_array(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("audit hash length".into()))
}

async fn read_audit_head(conn: &mut SqliteConnection, tenant: &str) -> Result<ChainHead, StoreError> {
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, hash FROM audit_heads WHERE tenant_id = ?")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db_err)?;
    match head {
        Some((seq, hash)) => Ok((seq as u64, hash_array(&hash)?)),
        None => Ok((0, scaivault_crypto::GENESIS_HASH)),
    }
}

/// The current head of every chain `entries` touch: as this process knows it (under the write
/// lock), else read.
async fn heads_of<'a>(
    conn: &mut SqliteConnection,
    known: &AuditHeads,
    entries: &'a [NewAuditEntry],
) -> Result<std::collections::BTreeMap<&'a str, ChainHead>, StoreError> {
    let mut heads = std::collections::BTreeMap::new();
    for e in entries {
        if !heads.contains_key(e.tenant.as_str()) {
            let head = match known.get(&e.tenant) {
                Some(head) => *head,
                None => read_audit_head(conn, &e.tenant).await?,
            };
            heads.insert(e.tenant.as_str(), head);
        }
    }
    Ok(heads)
}

/// Moves the chain heads to where the rows just pushed left them, each signed.
fn push_audit_heads<'a>(
    q: &mut sqlx::QueryBuilder<'a, Sqlite>,
    heads: impl IntoIterator<Item = (&'a str, ChainHead)>,
    sign: &HeadMacFn<'_>,
) {
    q.push("INSERT INTO audit_heads (tenant_id, seq, hash, mac) ");
    q.push_values(heads, |mut row, (tenant, (seq, hash))| {
        row.push_bind(tenant)
            .push_bind(seq as i64)
            .push_bind(hash.to_vec())
            .push_bind(sign(tenant, seq, &hash));
    });
    q.push(
        " ON CONFLICT (tenant_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac",
    );
}

/// How an audit insert answers a row it cannot write.
#[derive(Clone, Copy)]
enum OnFailure {
    /// Only the statement is undone: a secret write's record, inside the write's savepoint.
    Statement,
    /// The whole transaction is: the audit writer's batch, which fails whole anyway. A multi-row
    /// insert that may only abort its statement makes SQLite copy every page it touches into a
    /// statement journal first; one that rolls back needs none.
    Transaction,
}

/// One multi-row insert: a round trip per record would cost more than the commit.
fn push_audit_rows<'a>(q: &mut sqlx::QueryBuilder<'a, Sqlite>, rows: &'a [ChainedRow<'a>], on: OnFailure) {
    q.push(match on {
        OnFailure::Statement => "INSERT",
        OnFailure::Transaction => "INSERT OR ROLLBACK",
    });
    q.push(
        " INTO audit_log (tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, \
             prev_hash, hash) ",
    );
    push_audit_values(q, rows);
}

#[async_trait]
impl AuditStore for SqliteStore {
    /// The batch of the audit writer, in one round trip to SQLite: the chain heads are known in
    /// memory (under the write lock), so the transaction, the inserts, the heads and the commit go
    /// as one multi-statement command.
    async fn append_audit(
        &self,
        entries: &[NewAuditEntry],
        chain: &ChainFn<'_>,
        sign: &HeadMacFn<'_>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut writer = self.write_lock.lock().await;
        writer.settle().await;
        let (conn, heads) = writer.parts(&self.options).await?;
        let mut next = heads_of(conn, heads, entries).await?;
        let rows = chain_entries(entries, &mut next, chain)?;
        let mut q = sqlx::QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
        for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            push_audit_rows(&mut q, chunk, OnFailure::Transaction);
            q.push("; ");
        }
        push_audit_heads(&mut q, next.iter().map(|(tenant, head)| (*tenant, *head)), sign);
        q.push("; COMMIT");
        if let Err(e) = q.build().execute(&mut *conn).await {
            // A statement failed inside the transaction: roll it back, so none stays open.
            writer.roll_back_all().await;
            return Err(db_err(e));
        }
        for (tenant, head) in next {
            writer.heads.insert(tenant.to_owned(), head);
        }
        Ok(())
    }

    async fn audit_page(
        &self,
        tenant: &str,
        filter: &AuditFilter<'_>,
        order: AuditOrder,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<AuditRow>, StoreError> {
        let mut q = audit_query(tenant, filter, order, after, limit);
        let rows = q.build().fetch_all(&self.pool).await.map_err(db_err)?;
        rows.iter().map(audit_from_row).collect()
    }

    async fn audit_head(&self, tenant: &str) -> Result<Option<AuditHead>, StoreError> {
        let head: Option<(i64, Vec<u8>, Vec<u8>)> =
            sqlx::query_as("SELECT seq, hash, mac FROM audit_heads WHERE tenant_id = ?")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(head.map(|(seq, hash, mac)| AuditHead { seq: seq as u64, hash, mac }))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    /// One process owns an embedded database, so its own invalidations are all there are.
    fn change_feed(&self) -> ChangeFeed {
        ChangeFeed::Local
    }
}
