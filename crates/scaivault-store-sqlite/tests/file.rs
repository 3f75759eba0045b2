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

/// One database file has one store: a second open (another server, or this process again) is
/// refused with a reason while the first is open, and succeeds once it is dropped.
#[tokio::test]
async fn a_file_in_use_is_not_opened_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("vault.db");
    let first = SqliteStore::open_file(&file).await.expect("open");
    let refused =
        SqliteStore::connect(&format!("sqlite://{}", file.display())).await.expect_err("second open");
    let reason = refused.to_string();
    assert!(reason.contains("in use by another ScaiVault server"), "{reason}");
    assert!(reason.contains("vault.db.lock"), "{reason}");
    first.ping().await.expect("the first store still works");
    drop(first);
    SqliteStore::open_file(&file).await.expect("reopen after the first closed").ping().await.expect("ping");
}
