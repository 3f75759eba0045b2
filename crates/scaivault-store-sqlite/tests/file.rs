//! The SQLite file is private to its owner and opened with the durability settings we promise.

use std::os::unix::fs::PermissionsExt;

use scaivault_store::Store;
use scaivault_store_sqlite::SqliteStore;

#[tokio::test]
async fn file_is_private_and_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault.db");
    let store = SqliteStore::connect(&format!("sqlite://{}", file.display())).await.expect("open");
    store.ping().await.expect("ping");
    assert_eq!(std::fs::metadata(&file).expect("file").permissions().mode() & 0o777, 0o600);
    let pragmas = store.pragmas().await.expect("pragmas");
    assert_eq!(pragmas, ("wal".to_owned(), 2, 1), "journal_mode, synchronous (2 = FULL), foreign_keys");
    drop(store);
    // Reopening runs no migration twice and keeps the file.
    SqliteStore::open_file(&file).await.expect("reopen").ping().await.expect("ping");
}

/// The workspace builds SQLite without its memory statistics (`.cargo/config.toml`): with them, every
/// allocation inside SQLite takes one process-wide lock.
#[tokio::test]
async fn sqlite_is_built_without_memory_statistics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_file(&dir.path().join("vault.db")).await.expect("open");
    let options = store.compile_options().await.expect("compile options");
    assert!(options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"), "{options:?}");
}
