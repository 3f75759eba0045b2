//! The PostgreSQL backend, for several replicas on one database. Migrations in `migrations/` are
//! embedded and run under sqlx's advisory lock, so replicas may start together.
//!
//! All SQL for PostgreSQL lives here. A write locks its secret's row (`SELECT … FOR UPDATE`), so
//! concurrent writers from any replica get consecutive versions; this crate never sees plaintext and
//! never decides access.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scaivault_crypto::{SealedSecret, StoredMasterKey, TokenHash};
use scaivault_domain::SecretMetadata;
use scaivault_store::group::{GroupWriter, Job, committer};
use scaivault_store::{
    AuditFilter, AuditHead, AuditOrder, AuditRow, AuditStore, ChainFn, ChainHead, ChangeFeed, ChangeNotice,
    DEFAULT_MAX_VERSIONS, DestroyEventsFn, HeadMacFn, KeyStatus, KeyStore, NewAuditEntry, NewEvent, NewToken,
    RewrapItem, SUMMARY_COLUMNS, SealFn, SecretHead, SecretListQuery, SecretStore, SecretSummary,
    SecretVersionRow, Store, StoreError, StoredSecret, TokenRecord, TokenStore, WriteEffects, WriteOutcome,
    WritePlan, WriteSecret, chain_entries, deliveries_of, fit_one_insert, list_json, oldest_kept, to_micros,
    violates_constraint,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Executor, Postgres, Row, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};

/// The writer of this store: its connection, the open group and the chain heads it holds locked.
type Writer = GroupWriter<PgConnection>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A ScaiVault store in a PostgreSQL database (or one schema of it).
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    /// What only the audit writer uses; see [`PostgresStore::append_audit_after`].
    audit_writer: Mutex<AuditWriter>,
    /// One writer at a time inside this process: secret writes join its open group (see
    /// `scaivault_store::group`), and the pooled write transactions first commit that group.
    write_lock: Arc<Mutex<Writer>>,
    /// Nudges the committer task to commit the writer's open group.
    commits: mpsc::Sender<()>,
    /// How often this process announces itself on the change channel, and how long the change
    /// feed may hear nothing (not even an announcement) before it takes its connection for dead.
    feed_timing: FeedTiming,
}

#[derive(Debug, Clone, Copy)]
struct FeedTiming {
    heartbeat: Duration,
    silence: Duration,
}

impl Default for FeedTiming {
    fn default() -> Self {
        FeedTiming { heartbeat: Duration::from_secs(10), silence: Duration::from_secs(35) }
    }
}

#[derive(Debug, Default)]
struct AuditWriter {
    /// The chain heads this process last committed, per tenant: a guess (other replicas and
    /// secret writes append too) that lets a batch go as one statement.
    heads: std::collections::HashMap<String, ChainHead>,
    /// The connection for that statement, outside the pool: sqlx tests a pooled connection with a
    /// round trip on every release, which would double the batch's cost. Opened on first use;
    /// dropped after any error.
    conn: Option<PgConnection>,
}

/// Serialises first-start bootstrap across replicas.
const BOOTSTRAP_LOCK: i64 = 0x5ca1_7a17;

/// A write whose audit record could not be appended fails as such, unless a row was only locked
/// (then the write is retried, see `write_secret`).
fn audit_err(e: StoreError) -> StoreError {
    match e {
        StoreError::RowLocked => StoreError::RowLocked,
        other => StoreError::AuditUnavailable(other.to_string()),
    }
}

/// How many times a secret write is tried; the last waits for its rows inside the writer.
const WRITE_ATTEMPTS: u32 = 4;

fn db_err(e: sqlx::Error) -> StoreError {
    match e {
        // lock_not_available, which only the group writer's lock timeout raises. A lock timeout that
        // fires just as the lock is granted is reported as query_canceled ("due to user request"),
        // so that counts too: the writer retries either (and a real cancel fails the last try).
        sqlx::Error::Database(ref d) if matches!(d.code().as_deref(), Some("55P03" | "57014")) => {
            StoreError::RowLocked
        }
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

scaivault_store::row_decoders!(PgRow);
scaivault_store::audit_values!(Postgres);
scaivault_store::version_sql!(Postgres);
scaivault_store::audit_query!(Postgres);
scaivault_store::tenant_store_impl!(PostgresStore);
scaivault_store::policy_store_impl!(PostgresStore, Postgres);
scaivault_store::rotation_store_impl!(PostgresStore, Postgres, PgRow);
scaivault_store::federation_store_impl!(PostgresStore, Postgres, PgRow, share = "FOR SHARE");
scaivault_store::event_store_impl!(PostgresStore, Postgres, PgRow, lock = "FOR UPDATE OF d SKIP LOCKED");

fn metadata_json(metadata: &SecretMetadata) -> Result<String, StoreError> {
    serde_json::to_string(metadata).map_err(|e| StoreError::Backend(e.to_string()))
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Backend("number out of range".into()))
}

impl PostgresStore {
    /// Connects to `url` and runs the migrations.
    pub async fn connect(url: &str) -> Result<PostgresStore, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad postgres url: {e}")))?;
        Self::open(options).await
    }

    /// Connects with every table in `schema` (created if missing): one database can hold many
    /// independent stores, which is how the tests isolate themselves.
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        if !schema.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            return Err(StoreError::Backend("schema names are [a-z0-9_]".into()));
        }
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad postgres url: {e}")))?;
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        sqlx::query(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .execute(&admin)
            .await
            .map_err(db_err)?;
        admin.close().await;
        Self::open(options.options([("search_path", schema)])).await
    }

    async fn open(options: PgConnectOptions) -> Result<PostgresStore, StoreError> {
        // One direct connection first, so an unreachable server fails fast with its real cause
        // ("connection refused") instead of a pool timeout.
        let probe = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".into()))?
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let _ = probe.close().await;
        // No health-check query before every use (a round trip each time): a connection the
        // server dropped fails its next statement, which answers 503 and is not returned to the pool.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        // A chain head is known only while the open group holds its row locked: other replicas
        // append once it commits. The commit may wait (PostgreSQL serialises the commits of
        // transactions that notify), so the joining writes' lock timeout is lifted first.
        let write_lock =
            Arc::new(Mutex::new(Writer::new("BEGIN", "SET LOCAL lock_timeout = 0; COMMIT", false)));
        let commits = committer(write_lock.clone());
        Ok(PostgresStore {
            pool,
            audit_writer: Mutex::default(),
            write_lock,
            commits,
            feed_timing: FeedTiming::default(),
        })
    }

    /// The plan PostgreSQL chooses for the rotation scheduler's query (for the benchmark's report).
    pub async fn due_query_plan(&self, now: DateTime<Utc>) -> Result<Vec<String>, StoreError> {
        let sql = format!("EXPLAIN {}", due_assignments_sql());
        let rows = sqlx::query(&sql)
            .bind(to_micros(now))
            .bind(1000i64)
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(|r| r.try_get::<String, _>(0).map_err(db_err)).collect()
    }

    /// A pooled write transaction, after the writer's open group has committed (so it never waits
    /// for a row that group holds while the group waits for it).
    async fn begin_write(
        &self,
    ) -> Result<(OwnedMutexGuard<Writer>, Transaction<'static, Postgres>), StoreError> {
        let guard = Writer::lock_settled(&self.write_lock).await?;
        let tx = self.pool.begin().await.map_err(db_err)?;
        Ok((guard, tx))
    }

    async fn head_in(
        conn: &mut PgConnection,
        tenant: &str,
        path: &str,
        for_update: bool,
    ) -> Result<Option<SecretHead>, StoreError> {
        let lock = if for_update { " FOR UPDATE" } else { "" };
        let sql = format!("SELECT {HEAD_COLUMNS} FROM secrets WHERE tenant_id = $1 AND path = $2{lock}");
        let row =
            sqlx::query(&sql).bind(tenant).bind(path).fetch_optional(&mut *conn).await.map_err(db_err)?;
        row.as_ref().map(head_from_row).transpose()
    }

    async fn live_head_in(
        tx: &mut Transaction<'static, Postgres>,
        tenant: &str,
        path: &str,
        for_update: bool,
    ) -> Result<SecretHead, StoreError> {
        match Self::head_in(tx, tenant, path, for_update).await? {
            Some(h) if h.deleted_at.is_none() && h.current_version > 0 => Ok(h),
            _ => Err(StoreError::SecretNotFound),
        }
    }

    /// Waits, on a pooled connection and holding nothing else, until the secret's row and its
    /// tenant's chain head are free (locks them, then lets them go).
    async fn wait_for_rows(&self, tenant: &str, path: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        Self::head_in(&mut tx, tenant, path, true).await?;
        sqlx::query("SELECT 1 FROM audit_heads WHERE tenant_id = $1 FOR UPDATE")
            .bind(tenant)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.rollback().await.map_err(db_err)
    }

    async fn prune(
        tx: &mut Transaction<'static, Postgres>,
        tenant: &str,
        path: &str,
        current: u64,
        max_versions: u32,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM secret_versions WHERE tenant_id = $1 AND path = $2 AND version < $3")
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
impl SecretStore for PostgresStore {
    async fn write_secret(
        &self,
        w: WriteSecret<'_>,
        seal: &SealFn<'_>,
        effects: WriteEffects<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let options = self.pool.connect_options();
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The last attempt waits for its rows inside the writer, in a group of its own.
            let patient = attempt == WRITE_ATTEMPTS;
            let mut writer = if patient {
                Writer::lock_settled(&self.write_lock).await?
            } else {
                Writer::lock_for_write(&self.write_lock, &self.commits).await
            };
            let job = writer.start(&options).await?;
            let written = write_in(job, w.clone(), seal, effects, patient).await;
            if patient {
                // Its group ran without a lock timeout: no later write joins it (and runs bare).
                writer.alone();
            }
            if !patient && matches!(written, Err(StoreError::RowLocked)) {
                // A row this write needs is locked elsewhere. Waiting here would hold up every
                // write of this process, and could close a cycle with whoever holds it (another
                // replica's group waiting for a row this group holds). So: undo this write alone,
                // let the writer go with the committer nudged (the group's other writes commit and
                // answer, and its row locks go), wait for the secret's rows on a connection of the
                // pool, and write again. The patient attempt waited without a lock timeout, so a
                // `RowLocked` there is a real cancel: it fails.
                let _ = Writer::conclude(writer, written, &self.commits).await;
                self.wait_for_rows(w.tenant, w.path.as_str()).await?;
                continue;
            }
            return Writer::conclude(writer, written, &self.commits).await;
        }
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
             AND v.version = COALESCE($3::BIGINT, s.current_version) WHERE s.tenant_id = $1 AND s.path = $2",
        )
        .bind(tenant)
        .bind(path)
        .bind(version.map(to_i64).transpose()?)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::SecretNotFound)?;
        let head = head_from_row(&row)?;
        if head.deleted_at.is_some() || head.current_version == 0 {
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
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        // A first writer's placeholder row (no version yet) is no secret.
        Ok(Self::head_in(&mut conn, tenant, path, false).await?.filter(|h| h.current_version > 0))
    }

    async fn list_versions(
        &self,
        tenant: &str,
        path: &str,
    ) -> Result<(SecretHead, Vec<SecretVersionRow>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let head = Self::live_head_in(&mut tx, tenant, path, false).await?;
        let sql = "SELECT version, created_at, created_by, expires_at, destroyed_at, NULL AS key_version, \
             NULL AS wrapped_dek, NULL AS ciphertext FROM secret_versions WHERE tenant_id = $1 AND path = $2 \
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
        let head = Self::live_head_in(&mut tx, tenant, path, true).await?;
        let metadata = metadata.unwrap_or(head.metadata);
        let max_versions = max_versions.unwrap_or(head.max_versions);
        sqlx::query("UPDATE secrets SET metadata = $1, max_versions = $2, updated_at = $3 WHERE tenant_id = $4 AND path = $5")
            .bind(metadata_json(&metadata)?)
            .bind(i64::from(max_versions))
            .bind(to_micros(now))
            .bind(tenant)
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        Self::prune(&mut tx, tenant, path, head.current_version, max_versions).await?;
        let head = Self::live_head_in(&mut tx, tenant, path, true).await?;
        insert_events_in(&mut tx, events).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(head)
    }

    async fn list_secrets(
        &self,
        tenant: &str,
        q: SecretListQuery<'_>,
    ) -> Result<Vec<SecretSummary>, StoreError> {
        // A prefix becomes a plain range on the path index, so a list reads its page and no more.
        let range = q.prefix_range();
        let seek = if range.is_some() { "AND path >= $6 AND path < $7" } else { "" };
        let sql = format!(
            "SELECT {SUMMARY_COLUMNS} FROM secrets WHERE tenant_id = $1 AND deleted_at IS NULL \
             AND current_version > 0 \
             AND ($2::text IS NULL OR left(path, length($2)) = $2) \
             AND ($3::text IS NULL OR path > $3) \
             AND ($4::text IS NULL OR (metadata::jsonb -> 'tags') ? $4) \
             {seek} ORDER BY path LIMIT $5"
        );
        let mut query =
            sqlx::query(&sql).bind(tenant).bind(q.prefix).bind(q.after).bind(q.tag).bind(i64::from(q.limit));
        if let Some((low, high)) = &range {
            query = query.bind(*low).bind(high.as_str());
        }
        let rows = query.fetch_all(&self.pool).await.map_err(db_err)?;
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
            "UPDATE secrets SET deleted_at = $1, updated_at = $2 WHERE tenant_id = $3 AND path = $4 AND deleted_at IS NULL",
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
        let head = Self::head_in(&mut tx, tenant, path, true).await?.ok_or(StoreError::SecretNotFound)?;
        if head.deleted_at.is_some() {
            sqlx::query(
                "UPDATE secrets SET deleted_at = NULL, updated_at = $1 WHERE tenant_id = $2 AND path = $3",
            )
            .bind(to_micros(now))
            .bind(tenant)
            .bind(path)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        let restored = head.deleted_at.is_some();
        let head = Self::live_head_in(&mut tx, tenant, path, true).await?;
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
        Self::head_in(&mut tx, tenant, path, true).await?.ok_or(StoreError::SecretNotFound)?;
        let rows = sqlx::query(
            "SELECT version FROM secret_versions WHERE tenant_id = $1 AND path = $2 AND destroyed_at IS NULL ORDER BY version",
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
                 destroyed_at = $1 WHERE tenant_id = $2 AND path = $3 AND version = $4",
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

async fn insert_token(tx: &mut Transaction<'static, Postgres>, t: &NewToken) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tokens (id, tenant_id, token_hash, name, identity_type, identity_id, scopes, groups_json, \
         is_root, created_by, created_at, expires_at, roles_json, parent_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
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
impl TokenStore for PostgresStore {
    async fn bootstrap(&self, tenant: &str, root_token: NewToken) -> Result<bool, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let any: Option<(String,)> = sqlx::query_as("SELECT id FROM tenants LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if any.is_some() {
            return Ok(false);
        }
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
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
            // The share lock waits for a revocation in progress (which updates this row) and then
            // sees it; a revocation that starts later waits for this insert and then finds it.
            let live: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM tokens WHERE id = $1 AND revoked_at IS NULL FOR SHARE")
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
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.token_hash = $1");
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
            "SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.tenant_id = $1 AND ($2::text IS NULL OR t.id > $2) ORDER BY t.id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn get_token(&self, tenant: &str, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM {TOKEN_FROM} WHERE t.tenant_id = $1 AND t.id = $2");
        let row = sqlx::query(&sql).bind(tenant).bind(id).fetch_optional(&self.pool).await.map_err(db_err)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn revoke_token(&self, tenant: &str, id: &str, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let (_guard, mut tx) = self.begin_write().await?;
        let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM tokens WHERE tenant_id = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        // Each pass starts a fresh snapshot: a child whose insert held a share lock on a token this
        // pass revoked has committed by the time the pass ends, and the next pass finds it. Once a
        // pass revokes nothing, every token of the tree is revoked or locked by this transaction,
        // so no further child can appear (its insert waits, then sees the revocation).
        let mut revoked = 0;
        loop {
            let done = sqlx::query(
                "WITH RECURSIVE tree(id) AS (SELECT id FROM tokens WHERE id = $1 \
                 UNION SELECT t.id FROM tokens t JOIN tree ON t.parent_id = tree.id) \
                 UPDATE tokens SET revoked_at = $2 WHERE revoked_at IS NULL AND id IN (SELECT id FROM tree)",
            )
            .bind(id)
            .bind(to_micros(now))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if done.rows_affected() == 0 {
                break;
            }
            revoked += done.rows_affected();
        }
        tx.commit().await.map_err(db_err)?;
        Ok(revoked)
    }
}

#[async_trait]
impl KeyStore for PostgresStore {
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
        sqlx::query("INSERT INTO master_keys (version, wrapped, wraps, created_at) VALUES ($1, $2, 0, $3)")
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
            sqlx::query_as("UPDATE master_keys SET wraps = wraps + $1 WHERE version = $2 RETURNING wraps")
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
             WHERE key_version IS NOT NULL AND key_version <> $1 ORDER BY tenant_id, path, version LIMIT $2",
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
        // The secret's row first, as every write takes it: a version row is then never held by this
        // transaction while a group that holds the secret prunes it (a write without a savepoint
        // that waited there would fail its whole group).
        sqlx::query("SELECT 1 FROM secrets WHERE tenant_id = $1 AND path = $2 FOR UPDATE")
            .bind(&item.tenant)
            .bind(&item.path)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let done = sqlx::query(
            "UPDATE secret_versions SET key_version = $1, wrapped_dek = $2 \
             WHERE tenant_id = $3 AND path = $4 AND version = $5 AND key_version = $6",
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

/// A secret write inside the writer's open group: its savepoint (and the release of the previous
/// write's), the secret's row locked and read and the chain head locked, each unless the group holds
/// them already, then one statement for the head, the version, the pruning, the events and their
/// deliveries, the audit record and the chain head; where a rotation completes, it and then the
/// events follow.
async fn write_in(
    job: Job<'_, PgConnection>,
    w: WriteSecret<'_>,
    seal: &SealFn<'_>,
    effects: WriteEffects<'_>,
    patient: bool,
) -> Result<WriteOutcome, StoreError> {
    let Job { conn, heads, secrets, mut prefix, sent, bare } = job;
    if !patient {
        // This write does not wait long for a row another transaction holds: it gives up after 10 ms
        // (`RowLocked`) and the caller waits outside the writer. Undone with the savepoint if the
        // write fails, else kept until the group ends (its commit lifts it).
        prefix.push_str("SET LOCAL lock_timeout = '10ms'");
    }
    let mut unsent = Some(prefix);
    let path = w.path.as_str();
    let now = to_micros(w.now);
    let key = (w.tenant.to_owned(), path.to_owned());
    // A repeat write: the group wrote (and locked) this secret already.
    let repeat = secrets.contains_key(&key);
    let mut existing = match secrets.get(&key) {
        Some(head) => Some(head.clone()),
        None => {
            send_prefix(conn, &mut unsent, sent).await?;
            PostgresStore::head_in(conn, w.tenant, path, true).await?
        }
    };
    if existing.is_none() {
        // The placeholder row (version 0) gives concurrent first writers on other replicas one row
        // to queue on.
        sqlx::query(
            "INSERT INTO secrets (tenant_id, path, secret_type, metadata, max_versions, current_version, \
             created_at, updated_at) VALUES ($1, $2, 'json', '{}', $3, 0, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(w.tenant)
        .bind(path)
        .bind(i64::from(DEFAULT_MAX_VERSIONS))
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
        existing = PostgresStore::head_in(conn, w.tenant, path, true).await?;
    }
    let existing = existing.filter(|h| h.current_version > 0);
    let plan = WritePlan::new(&w, existing.as_ref())?;
    let (current, version, max_versions) = (plan.current, plan.version, plan.max_versions);
    let meta = metadata_json(&plan.metadata)?;
    let sealed = seal(version)?;
    let entry = effects.audit.map(|audit| (audit, (audit.build)(version, current == 0)));
    // With the secret's row and the chain head's already the group's (an earlier write of this
    // secret locked them), no rotation to complete and text PostgreSQL takes, the one statement
    // left can fail only with the database: it goes without a savepoint (one round trip less), and
    // should it fail, the group does (see `Job`).
    let owned = repeat
        && !patient
        && effects.rotation.is_none()
        && !w.created_by.contains('\0')
        && entry.as_ref().is_none_or(|(_, e)| {
            heads.contains_key(&e.tenant) && !e.identity_id.contains('\0') && !e.body.contains('\0')
        });
    if owned {
        *bare = true;
    } else {
        send_prefix(conn, &mut unsent, sent).await?;
    }
    let chained = match &entry {
        Some((audit, entry)) => {
            let head = match heads.get(&entry.tenant) {
                Some(head) => *head,
                None => lock_audit_head(conn, &entry.tenant).await.map_err(audit_err)?,
            };
            let mut next = std::collections::BTreeMap::from([(entry.tenant.as_str(), head)]);
            let rows = chain_entries(std::slice::from_ref(entry), &mut next, audit.chain)?;
            Some((rows, next[entry.tenant.as_str()], *audit))
        }
        None => None,
    };
    // Without a rotation to complete, the events are known now and go in the same statement (one
    // round trip less per write); a completed rotation changes them, so they follow it.
    let early = match effects.rotation {
        None => effects.events_of(version, current == 0, false)?,
        Some(_) => Vec::new(),
    };
    let deliveries = deliveries_of(&early);
    let inline = fit_one_insert(&early, &deliveries);
    let mut q = sqlx::QueryBuilder::<Postgres>::new("WITH up AS (");
    push_head_update(&mut q, (w.tenant, path), &plan, &meta, now)?;
    q.push(format!(" RETURNING {HEAD_COLUMNS}), added AS ("));
    push_version_row(&mut q, (w.tenant, path), to_i64(version)?, &sealed, now, w.created_by);
    q.push("), pruned AS (");
    push_prune(&mut q, (w.tenant, path), to_i64(oldest_kept(version, max_versions))?);
    q.push(")");
    if inline && !early.is_empty() {
        q.push(", noted AS (");
        push_event_rows(&mut q, &early);
        q.push(")");
        if !deliveries.is_empty() {
            q.push(", queued AS (");
            push_delivery_rows(&mut q, &deliveries);
            q.push(")");
        }
    }
    if let Some((rows, (seq, hash), audit)) = &chained {
        q.push(
            ", logged AS (INSERT INTO audit_log (tenant_id, seq, id, ts, identity_id, action, secret_path, \
             outcome, body, prev_hash, hash) ",
        );
        push_audit_values(&mut q, rows);
        let tenant = rows[0].0.tenant.as_str();
        q.push("), moved AS (UPDATE audit_heads SET seq = ")
            .push_bind(*seq as i64)
            .push(", hash = ")
            .push_bind(hash.to_vec())
            .push(", mac = ")
            .push_bind((audit.sign)(tenant, *seq, hash))
            .push(" WHERE tenant_id = ")
            .push_bind(tenant)
            .push(")");
    }
    q.push(format!(" SELECT {HEAD_COLUMNS} FROM up"));
    *sent = true;
    let head = match q.build().fetch_optional(&mut *conn).await {
        Ok(found) => found.as_ref().map(head_from_row).transpose()?.ok_or(StoreError::SecretNotFound)?,
        // Unless a row was refused for its content, the record could not be appended: the whole
        // write rolls back with it.
        Err(e) if chained.is_some() && !violates_constraint(&e) => return Err(audit_err(db_err(e))),
        Err(e) => return Err(db_err(e)),
    };
    let rotated = match effects.rotation {
        Some(completion) => complete_rotation_in(conn, completion, version).await?,
        None => false,
    };
    if effects.rotation.is_some() {
        insert_events_in(conn, &effects.events_of(version, current == 0, rotated)?).await?;
    } else if !inline {
        insert_events_in(conn, &early).await?;
    }
    if let Some((rows, moved, _)) = chained {
        heads.insert(rows[0].0.tenant.clone(), moved);
    }
    secrets.insert(key, head.clone());
    Ok(WriteOutcome { created_at: head.updated_at, head, version, created: current == 0 })
}

/// Sends the write's prefix (its savepoint and what goes before it) unless it went already.
async fn send_prefix(
    conn: &mut PgConnection,
    unsent: &mut Option<String>,
    sent: &mut bool,
) -> Result<(), StoreError> {
    if let Some(prefix) = unsent.take() {
        *sent = true;
        conn.execute(prefix.as_str()).await.map_err(db_err)?;
    }
    Ok(())
}

/// The tenant's chain head, created if missing and locked (an upsert locks the row it returns)
/// until the writer's group ends, so appenders on every replica queue behind it.
async fn lock_audit_head(conn: &mut PgConnection, tenant: &str) -> Result<ChainHead, StoreError> {
    let (seq, hash): (i64, Vec<u8>) = sqlx::query_as(
        "INSERT INTO audit_heads (tenant_id, seq, hash, mac) VALUES ($1, 0, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id RETURNING seq, hash",
    )
    .bind(tenant)
    .bind(&scaivault_crypto::GENESIS_HASH[..])
    .bind(&[][..] as &[u8])
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(if seq > 0 { (seq as u64, hash_array(&hash)?) } else { (0, scaivault_crypto::GENESIS_HASH) })
}

/// Rows per multi-row insert: 11 parameters each stays far below every parameter limit.
const AUDIT_ROWS_PER_INSERT: usize = 500;

fn hash_array(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes.try_into().map_err(|_| StoreError::Corrupt("audit hash length".into()))
}

/// Appends to the tenants' chains inside `tx`, so a change and its audit record commit together.
async fn append_audit_in(
    tx: &mut Transaction<'static, Postgres>,
    entries: &[NewAuditEntry],
    chain: &ChainFn<'_>,
    sign: &HeadMacFn<'_>,
) -> Result<Vec<(String, ChainHead)>, StoreError> {
    // Lock every touched chain head in a fixed order, creating missing ones, in one statement
    // per tenant (an upsert locks the row it returns), so concurrent appenders on any replica
    // queue per tenant and never deadlock.
    let mut tenants: Vec<&str> = entries.iter().map(|e| e.tenant.as_str()).collect();
    tenants.sort_unstable();
    tenants.dedup();
    let mut heads = std::collections::BTreeMap::new();
    for tenant in tenants {
        heads.insert(tenant, lock_audit_head(tx, tenant).await?);
    }
    let rows = chain_entries(entries, &mut heads, chain)?;
    // One multi-row insert per batch: a round trip per record would cost more than the commit.
    for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(
            "INSERT INTO audit_log (tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, \
                 prev_hash, hash) ",
        );
        push_audit_values(&mut q, chunk);
        q.build().execute(&mut **tx).await.map_err(db_err)?;
    }
    let mut moved = Vec::with_capacity(heads.len());
    for (tenant, (seq, hash)) in heads {
        sqlx::query(
                "INSERT INTO audit_heads (tenant_id, seq, hash, mac) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (tenant_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac",
            )
            .bind(tenant)
            .bind(seq as i64)
            .bind(&hash[..])
            .bind(sign(tenant, seq, &hash))
            .execute(&mut **tx)
            .await
            .map_err(db_err)?;
        moved.push((tenant.to_owned(), (seq, hash)));
    }
    Ok(moved)
}

impl PostgresStore {
    /// The audit writer's batch for one tenant whose head this process believes is `head`, as one
    /// statement (so one round trip, committed on its own): the head moves only if it is still
    /// exactly there, and the rows are inserted only if it moved. Another replica or a secret write
    /// that appended meanwhile makes it a no-op: `Ok(None)`, and the caller appends the slow way.
    async fn append_audit_after(
        &self,
        slot: &mut Option<PgConnection>,
        tenant: &str,
        head: ChainHead,
        entries: &[NewAuditEntry],
        chain: &ChainFn<'_>,
        sign: &HeadMacFn<'_>,
    ) -> Result<Option<ChainHead>, StoreError> {
        let mut next = std::collections::BTreeMap::from([(tenant, head)]);
        let rows = chain_entries(entries, &mut next, chain)?;
        let last = next[tenant];
        let mut q = sqlx::QueryBuilder::<Postgres>::new("WITH moved AS (UPDATE audit_heads SET seq = ");
        q.push_bind(last.0 as i64)
            .push(", hash = ")
            .push_bind(last.1.to_vec())
            .push(", mac = ")
            .push_bind(sign(tenant, last.0, &last.1))
            .push(" WHERE tenant_id = ")
            .push_bind(tenant)
            .push(" AND seq = ")
            .push_bind(head.0 as i64)
            .push(" AND hash = ")
            .push_bind(head.1.to_vec())
            .push(
                " RETURNING 1) INSERT INTO audit_log (tenant_id, seq, id, ts, identity_id, action, \
                 secret_path, outcome, body, prev_hash, hash) SELECT v.* FROM (",
            );
        push_audit_values(&mut q, &rows);
        q.push(
            ") AS v (tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, prev_hash, \
             hash) WHERE EXISTS (SELECT 1 FROM moved)",
        );
        let conn = match slot {
            Some(conn) => conn,
            None => {
                slot.insert(PgConnection::connect_with(&self.pool.connect_options()).await.map_err(db_err)?)
            }
        };
        let done = match q.build().execute(&mut *conn).await {
            Ok(done) => done,
            Err(e) => {
                *slot = None;
                return Err(db_err(e));
            }
        };
        Ok((done.rows_affected() == rows.len() as u64).then_some(last))
    }
}

#[async_trait]
impl AuditStore for PostgresStore {
    async fn append_audit(
        &self,
        entries: &[NewAuditEntry],
        chain: &ChainFn<'_>,
        sign: &HeadMacFn<'_>,
    ) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut writer = self.audit_writer.lock().await;
        let AuditWriter { heads, conn } = &mut *writer;
        let tenant = entries[0].tenant.as_str();
        let single = entries.len() <= AUDIT_ROWS_PER_INSERT && entries.iter().all(|e| e.tenant == tenant);
        if let (true, Some(head)) = (single, heads.get(tenant).copied())
            && let Some(moved) = self.append_audit_after(conn, tenant, head, entries, chain, sign).await?
        {
            heads.insert(tenant.to_owned(), moved);
            return Ok(());
        }
        // The slow way: lock the heads, read them, append, and remember where they are now.
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let moved = append_audit_in(&mut tx, entries, chain, sign).await?;
        tx.commit().await.map_err(db_err)?;
        heads.extend(moved);
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
            sqlx::query_as("SELECT seq, hash, mac FROM audit_heads WHERE tenant_id = $1 AND seq > 0")
                .bind(tenant)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(head.map(|(seq, hash, mac)| AuditHead { seq: seq as u64, hash, mac }))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_err)?;
        Ok(())
    }

    fn change_feed(&self) -> ChangeFeed {
        let (tx, rx) = tokio::sync::mpsc::channel(CHANGE_QUEUE);
        tokio::spawn(listen_for_changes(self.pool.clone(), tx, self.feed_timing));
        ChangeFeed::Shared(rx)
    }
}

impl PostgresStore {
    /// Sets how often the change feed's heartbeat is sent and how long a silent feed connection is
    /// trusted (defaults: 10 s and 35 s). For tests of the feed; a feed already open keeps its own.
    pub fn with_change_feed_timing(mut self, heartbeat: Duration, silence: Duration) -> Self {
        self.feed_timing = FeedTiming { heartbeat, silence };
        self
    }
}

/// The channel the `0008_change_notify` triggers announce changes on.
const CHANGE_CHANNEL: &str = "scaivault_changes";
/// Notices waiting for the application; when it falls behind, the feed waits (never drops one).
const CHANGE_QUEUE: usize = 1024;

/// Forwards the change announcements of every replica until the receiver is dropped (then it
/// lets its connection and the pool go at once, announcements or not). A lost connection is
/// reported (`Lost`), then retried every second until subscribed again (`Connected`), since
/// announcements made meanwhile are gone.
///
/// A connection can also die without a word (an idle timeout in a NAT or load balancer, a
/// failover): the socket looks open and nothing ever arrives. So every process also announces a
/// heartbeat on the channel, and a feed that hears nothing at all for `silence` takes its
/// connection for lost.
async fn listen_for_changes(pool: PgPool, tx: tokio::sync::mpsc::Sender<ChangeNotice>, timing: FeedTiming) {
    let done = tx.clone();
    tokio::select! {
        () = done.closed() => {}
        () = forward_changes(pool.clone(), tx, timing.silence) => {}
        () = heartbeat(pool, timing.heartbeat) => {}
    }
}

/// The payload of a heartbeat: no change, only proof that the channel carries announcements.
/// Spelled as a webhook change in no tenant (tenant ids are never empty), which a replica of an
/// earlier version, reading it during a rolling upgrade, takes for a change of nothing rather than
/// for an unknown announcement (which would empty all its caches every time).
const HEARTBEAT: &str = r#"{"k":"w","t":""}"#;

async fn heartbeat(pool: PgPool, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        // Bounded: a pooled connection that died silently must not hold the next beats back.
        let send =
            sqlx::query("SELECT pg_notify($1, $2)").bind(CHANGE_CHANNEL).bind(HEARTBEAT).execute(&pool);
        match tokio::time::timeout(every, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "the change feed heartbeat was not sent"),
            Err(_) => tracing::debug!("the change feed heartbeat timed out"),
        }
    }
}

async fn forward_changes(pool: PgPool, tx: tokio::sync::mpsc::Sender<ChangeNotice>, silence: Duration) {
    loop {
        let subscribed = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANGE_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match subscribed {
            Ok(mut listener) => {
                if tx.send(ChangeNotice::Connected).await.is_err() {
                    return;
                }
                // `try_recv` answers `None` when the connection is lost (instead of reconnecting
                // silently, as `recv` would), so the loss is always reported. Silence past the
                // limit counts as a loss too; the listener is then dropped, never read again.
                while let Ok(Ok(Some(notification))) =
                    tokio::time::timeout(silence, listener.try_recv()).await
                {
                    if notification.payload() == HEARTBEAT {
                        continue;
                    }
                    // An announcement this version cannot read could be about anything: everything
                    // is dropped, as after a reconnection.
                    let notices = match ChangeNotice::parse(notification.payload()) {
                        Some(notice) => vec![notice],
                        None => vec![ChangeNotice::Lost, ChangeNotice::Connected],
                    };
                    for notice in notices {
                        if tx.send(notice).await.is_err() {
                            return;
                        }
                    }
                }
                tracing::warn!("lost the change notification connection; caches are off until it is back");
                if tx.send(ChangeNotice::Lost).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to change notifications; retrying"),
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
