//! The audit writer's batch is all or nothing: a row SQLite refuses undoes the rows before it in
//! the same batch (the insert says `OR ROLLBACK`; an `OR IGNORE` or `OR REPLACE` would leave a
//! silent gap or overwrite a record), and the chain goes on from where it was once the cause is gone.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use scaivault_crypto::{AuditKey, chain_hash};
use scaivault_store::conformance::{audit_test_key, check_chain};
use scaivault_store::{AuditStore, NewAuditEntry, Store};
use scaivault_store_sqlite::SqliteStore;
use sqlx::SqlitePool;

const TENANT: &str = "tnt_default";

fn entry(n: u64) -> NewAuditEntry {
    NewAuditEntry {
        tenant: TENANT.into(),
        id: format!("aud_{n}"),
        timestamp: Utc.timestamp_opt(1_700_000_000 + n as i64, 0).single().expect("time"),
        identity_id: "tok_reader".into(),
        action: "secret.read".into(),
        secret_path: Some("app/db".into()),
        outcome: "success".into(),
        body: format!(r#"{{"n":{n}}}"#),
    }
}

async fn append(store: &SqliteStore, key: &AuditKey, entries: &[NewAuditEntry]) -> bool {
    let sign = |t: &str, seq: u64, h: &[u8; 32]| key.sign_head(t, seq, h);
    store.append_audit(entries, &chain_hash, &sign).await.is_ok()
}

#[tokio::test]
async fn a_batch_with_a_refused_row_writes_none_of_its_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("a.db");
    let store = SqliteStore::open_file(&file).await.expect("store");
    let raw = SqlitePool::connect(&format!("sqlite://{}", file.display())).await.expect("raw pool");
    let key = audit_test_key();

    assert!(append(&store, &key, &[entry(1), entry(2)]).await);
    // A squatter where the next batch's second row goes.
    sqlx::query(
        "INSERT INTO audit_log (tenant_id, seq, id, ts, identity_id, action, secret_path, outcome, body, \
         prev_hash, hash) VALUES (?, 4, 'aud_squatter', 0, 'x', 'x', NULL, 'x', '{}', x'00', x'00')",
    )
    .bind(TENANT)
    .execute(&raw)
    .await
    .expect("squatter");

    assert!(!append(&store, &key, &[entry(3), entry(4), entry(5)]).await, "the batch was accepted");
    let ids: Vec<(i64, String)> =
        sqlx::query_as("SELECT seq, id FROM audit_log ORDER BY seq").fetch_all(&raw).await.expect("rows");
    assert_eq!(
        ids,
        [(1, "aud_1".to_owned()), (2, "aud_2".to_owned()), (4, "aud_squatter".to_owned())],
        "the refused batch left rows behind or moved the squatter"
    );
    let (head_seq,): (i64,) = sqlx::query_as("SELECT seq FROM audit_heads WHERE tenant_id = ?")
        .bind(TENANT)
        .fetch_one(&raw)
        .await
        .expect("head");
    assert_eq!(head_seq, 2, "the refused batch moved the head");

    // The cause gone, the same records go in after the last good one and the chain is whole.
    sqlx::query("DELETE FROM audit_log WHERE id = 'aud_squatter'").execute(&raw).await.expect("delete");
    assert!(append(&store, &key, &[entry(3), entry(4), entry(5)]).await);
    assert!(append(&store, &key, &[entry(6)]).await);
    let store: Arc<dyn Store> = Arc::new(store);
    assert_eq!(check_chain(&store, TENANT).await, 6, "the chain is not 1 to 6, whole and signed");
}
