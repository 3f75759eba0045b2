//! The shared storage conformance suite, run against PostgreSQL with a fresh schema per case.
//!
//! Needs `SCAIVAULT_TEST_POSTGRES_URL`. Outside CI, without it, each case prints a notice and passes
//! vacuously; under `CI=true` a missing or unreachable database fails the case.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use scaivault_store::Store;
use scaivault_store_postgres::PostgresStore;

async fn fresh() -> Option<Arc<dyn Store>> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let url = scaivault_store::conformance::postgres_test_url("conformance case")?;
    let schema = format!(
        "conf_{}_{}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
            % 1_000_000
    );
    let store = PostgresStore::connect_in_schema(&url, &schema).await.expect("PostgreSQL reachable");
    Some(Arc::new(store))
}

scaivault_store::conformance_suite!(fresh());
