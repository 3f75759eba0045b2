//! Tampered rows never open (see `scaivault_store::conformance::tampering_is_detected`).

use std::sync::Arc;

use async_trait::async_trait;
use scaivault_store::conformance::{Tamper, tampering_is_detected};
use scaivault_store_sqlite::SqliteStore;
use sqlx::SqlitePool;

struct RawSqlite(SqlitePool);

async fn flip(pool: &SqlitePool, column: &str, tenant: &str, path: &str, version: u64, index: usize) {
    let select =
        format!("SELECT {column} FROM secret_versions WHERE tenant_id = ? AND path = ? AND version = ?");
    let (mut bytes,): (Vec<u8>,) = sqlx::query_as(&select)
        .bind(tenant)
        .bind(path)
        .bind(version as i64)
        .fetch_one(pool)
        .await
        .expect("row");
    bytes[index] ^= 1;
    let update =
        format!("UPDATE secret_versions SET {column} = ? WHERE tenant_id = ? AND path = ? AND version = ?");
    sqlx::query(&update)
        .bind(bytes)
        .bind(tenant)
        .bind(path)
        .bind(version as i64)
        .execute(pool)
        .await
        .expect("update");
}

#[async_trait]
impl Tamper for RawSqlite {
    async fn flip_ciphertext_bit(&self, tenant: &str, path: &str, version: u64, index: usize) {
        flip(&self.0, "ciphertext", tenant, path, version, index).await;
    }

    async fn flip_wrapped_key_bit(&self, tenant: &str, path: &str, version: u64, index: usize) {
        flip(&self.0, "wrapped_dek", tenant, path, version, index).await;
    }

    async fn copy_sealed(&self, tenant: &str, from: (&str, u64), to: (&str, u64)) {
        sqlx::query(
            "UPDATE secret_versions SET (key_version, wrapped_dek, ciphertext) = \
             (SELECT key_version, wrapped_dek, ciphertext FROM secret_versions \
              WHERE tenant_id = ?1 AND path = ?2 AND version = ?3) \
             WHERE tenant_id = ?1 AND path = ?4 AND version = ?5",
        )
        .bind(tenant)
        .bind(from.0)
        .bind(from.1 as i64)
        .bind(to.0)
        .bind(to.1 as i64)
        .execute(&self.0)
        .await
        .expect("copy");
    }
}

#[tokio::test]
async fn tampered_rows_never_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("t.db");
    let store = SqliteStore::open_file(&file).await.expect("store");
    let raw = SqlitePool::connect(&format!("sqlite://{}", file.display())).await.expect("raw pool");
    tampering_is_detected(Arc::new(store), &RawSqlite(raw)).await;
}
