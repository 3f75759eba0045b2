//! The shared storage conformance suite, run against a fresh SQLite file per case.

use std::sync::Arc;

use scaivault_store::Store;
use scaivault_store_sqlite::SqliteStore;

async fn fresh() -> Option<Arc<dyn Store>> {
    // The directory must outlive the store; leaking it keeps the file for the rest of the test.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    let store = SqliteStore::open_file(&dir.join("scaivault.db")).await.expect("open sqlite");
    Some(Arc::new(store))
}

scaivault_store::conformance_suite!(fresh());

/// One process writes an SQLite file: its concurrent backend creates come through one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_nest_mounts() {
    let store = fresh().await.expect("store");
    scaivault_store::conformance::replicas_never_nest_mounts(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_stop_at_the_backend_limit() {
    let store = fresh().await.expect("store");
    scaivault_store::conformance::replicas_stop_at_the_backend_limit(store.clone(), store).await;
}
