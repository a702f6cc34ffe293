use simplyload_state::SqliteStore;

#[tokio::test]
async fn sqlite_store_passes_the_checkpoint_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("state.db");
    simplyload_testkit::checkpoint_suite::run(|| SqliteStore::open(&path).unwrap()).await;
}

#[test]
fn migrations_are_versioned_and_newer_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 4);
    drop(store);
    // Reopening an up-to-date file migrates nothing and keeps the version.
    assert_eq!(SqliteStore::open(&path).unwrap().schema_version().unwrap(), 4);
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let e = SqliteStore::open(&path).unwrap_err();
    assert!(e.to_string().contains("schema version 99, newer than this SimplyLoad knows (4)"), "{e}");
}

#[test]
fn missing_state_file_is_not_created_by_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    assert!(SqliteStore::open_existing(&path).unwrap().is_none());
    assert!(!path.exists());
}
