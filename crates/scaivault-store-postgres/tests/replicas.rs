//! Two stores on one schema, as two replicas on one PostgreSQL (see
//! `scaivault_store::conformance::replicas_share_one_history`).

use std::sync::Arc;

use scaivault_store::conformance::replicas_share_one_history;
use scaivault_store_postgres::PostgresStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_history_on_postgres() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let Ok(url) = std::env::var("SCAIVAULT_TEST_POSTGRES_URL") else {
        assert!(!ci, "SCAIVAULT_TEST_POSTGRES_URL must be set under CI");
        eprintln!("notice: SCAIVAULT_TEST_POSTGRES_URL is not set; skipping the PostgreSQL replicas test");
        return;
    };
    let schema = format!("conf_replicas_{}", std::process::id());
    let a = PostgresStore::connect_in_schema(&url, &schema).await.expect("first store");
    let b = PostgresStore::connect_in_schema(&url, &schema).await.expect("second store");
    replicas_share_one_history(Arc::new(a), Arc::new(b)).await;
}
