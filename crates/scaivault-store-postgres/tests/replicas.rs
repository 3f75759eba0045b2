//! Two stores on one schema, as two replicas on one PostgreSQL (see
//! `scaivault_store::conformance::replicas_share_one_history`), and a row held by another
//! transaction (`a_locked_row_delays_only_its_own_write`), and a write whose every try is cancelled
//! (`a_write_cancelled_every_time_gives_up`).

use std::str::FromStr;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use scaivault_store::conformance::{
    CancelWrites, RowLock, a_locked_row_delays_only_its_own_write, a_write_cancelled_every_time_gives_up,
    postgres_test_url, replicas_never_nest_mounts, replicas_share_one_history,
    replicas_stop_at_the_backend_limit,
};
use scaivault_store::{FederationBackendRecord, FederationStore, SyncPathRecord};
use scaivault_store_postgres::PostgresStore;
use sqlx::Connection;

/// Two stores on one schema of this test process's own, as two replicas on one PostgreSQL.
async fn two_replicas(prefix: &str) -> Option<(Arc<PostgresStore>, Arc<PostgresStore>)> {
    let url = postgres_test_url("replicas test")?;
    let schema = format!("{prefix}_{}", std::process::id());
    let a = PostgresStore::connect_in_schema(&url, &schema).await.expect("first store");
    let b = PostgresStore::connect_in_schema(&url, &schema).await.expect("second store");
    Some((Arc::new(a), Arc::new(b)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_history_on_postgres() {
    let Some((a, b)) = two_replicas("conf_replicas").await else { return };
    replicas_share_one_history(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_never_nest_mounts_on_postgres() {
    let Some((a, b)) = two_replicas("conf_nest").await else { return };
    replicas_never_nest_mounts(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_stop_at_the_backend_limit_on_postgres() {
    let Some((a, b)) = two_replicas("conf_limit").await else { return };
    replicas_stop_at_the_backend_limit(a, b).await;
}

/// A store in a schema of this test process's own, and a session of its own on the same schema
/// (another replica's transaction, an operator).
async fn store_and_session(url: &str, prefix: &str) -> (Arc<PostgresStore>, sqlx::PgConnection) {
    let schema = format!("{prefix}_{}", std::process::id());
    let store = PostgresStore::connect_in_schema(url, &schema).await.expect("store");
    let options =
        sqlx::postgres::PgConnectOptions::from_str(url).expect("url").options([("search_path", &schema)]);
    let conn = sqlx::PgConnection::connect_with(&options).await.expect("session");
    (Arc::new(store), conn)
}

/// A sync on one replica storing what it learnt of a path while another replica's change of the
/// backend's mapping (which forgets the old mapping's states) is under way: the state is about the
/// old mapping, so it must not be stored once that change commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_state_never_outlives_a_backend_change_made_meanwhile() {
    let Some(url) = postgres_test_url("replicas test") else { return };
    let (store, mut other) = store_and_session(&url, "conf_syncstate").await;
    let read_at = Utc.timestamp_opt(1_700_000_000, 0).single().expect("time");
    let backend = FederationBackendRecord {
        tenant: "tnt_a".into(),
        id: "fed_s".into(),
        name: "vault".into(),
        backend_type: "hashicorp_vault".into(),
        mode: "sync".into(),
        mount: "external/sync".into(),
        config: "{}".into(),
        syncs: true,
        created_at: read_at,
        updated_at: read_at,
    };
    store.create_federation_backend(&backend, 10).await.expect("create");
    // The other replica's change, as `update_federation_backend(.., SyncPaths::Forget)` makes it,
    // held open.
    sqlx::query("BEGIN").execute(&mut other).await.expect("begin");
    sqlx::query("UPDATE federation_backends SET mount = 'external/moved', updated_at = updated_at + 1 WHERE id = 'fed_s'")
        .execute(&mut other)
        .await
        .expect("update");
    sqlx::query("DELETE FROM federation_sync_paths WHERE backend_id = 'fed_s'")
        .execute(&mut other)
        .await
        .expect("forget");
    let state = SyncPathRecord {
        tenant: "tnt_a".into(),
        backend_id: "fed_s".into(),
        path: "external/sync/db".into(),
        remote_version: "1".into(),
        local_version: 1,
        conflict: false,
        remote_at: None,
        local_at: None,
        updated_at: read_at,
    };
    let putting = {
        let store = store.clone();
        tokio::spawn(async move { store.put_sync_path(&state, read_at).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!putting.is_finished(), "the state went in beside a backend change under way");
    sqlx::query("COMMIT").execute(&mut other).await.expect("commit");
    putting.await.expect("join").expect("put");
    assert!(store.list_sync_paths("tnt_a", "fed_s").await.expect("list").is_empty());
}

/// A transaction of its own on the store's schema that holds a secret's row.
struct PgRowLock(tokio::sync::Mutex<sqlx::PgConnection>);

#[async_trait::async_trait]
impl RowLock for PgRowLock {
    async fn hold(&self, path: &str) {
        let mut conn = self.0.lock().await;
        sqlx::query("BEGIN").execute(&mut *conn).await.expect("begin");
        sqlx::query("SELECT 1 FROM secrets WHERE tenant_id = $1 AND path = $2 FOR UPDATE")
            .bind(scaivault_store::DEFAULT_TENANT)
            .bind(path)
            .execute(&mut *conn)
            .await
            .expect("lock");
    }

    async fn release(&self) {
        sqlx::query("ROLLBACK").execute(&mut *self.0.lock().await).await.expect("rollback");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_row_delays_only_its_own_write_on_postgres() {
    let Some(url) = postgres_test_url("row-lock test") else { return };
    let (store, conn) = store_and_session(&url, "conf_rowlock").await;
    a_locked_row_delays_only_its_own_write(store, &PgRowLock(tokio::sync::Mutex::new(conn))).await;
}

/// A trigger on the store's schema that cancels every change of one secret's row.
struct PgCancel(tokio::sync::Mutex<sqlx::PgConnection>);

#[async_trait::async_trait]
impl CancelWrites for PgCancel {
    async fn cancel_every_write(&self, path: &str) {
        let mut conn = self.0.lock().await;
        let function = format!(
            "CREATE FUNCTION cancel_writes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.path = '{path}' THEN RAISE EXCEPTION 'cancelled' USING ERRCODE = 'query_canceled'; END IF; \
             RETURN NEW; END $$"
        );
        sqlx::query(&function).execute(&mut *conn).await.expect("function");
        sqlx::query("CREATE TRIGGER cancel_writes BEFORE UPDATE ON secrets FOR EACH ROW EXECUTE FUNCTION cancel_writes()")
            .execute(&mut *conn)
            .await
            .expect("trigger");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_cancelled_every_time_gives_up_on_postgres() {
    let Some(url) = postgres_test_url("cancelled-write test") else { return };
    let (store, conn) = store_and_session(&url, "conf_cancel").await;
    a_write_cancelled_every_time_gives_up(store, &PgCancel(tokio::sync::Mutex::new(conn))).await;
}
