use super::*;

fn store_with(dir: &Path, hosts: u8) -> Store {
    let store = Store::open(&dir.join(DB_FILE)).unwrap();
    for i in 0..hosts {
        let code = proto::AccessCode::from_payload([1, 2, 3, 4, 5, 6, i % 10]).unwrap();
        store
            .upsert(
                &code,
                &crate::registry::HostRecord {
                    fingerprint: certs::Fingerprint::from_bytes([i; 32]),
                    last_seen: 1000 + u64::from(i),
                },
            )
            .unwrap();
    }
    store
}

fn hosts_in(dir: &Path) -> usize {
    Store::open(&dir.join(DB_FILE))
        .unwrap()
        .load()
        .unwrap()
        .0
        .len()
}

#[test]
fn a_backup_taken_while_the_store_is_open_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certs::create_private_dir(&data).unwrap();
    let live = store_with(&data, 5);
    let copy = dir.path().join("copy.sqlite3");
    backup(&data, &copy).unwrap();
    assert!(matches!(backup(&data, &copy), Err(BackupError::Exists(_))));
    drop(live);
    // The registry changes, then the backup comes back.
    std::fs::remove_file(data.join(DB_FILE)).unwrap();
    let _ = std::fs::remove_file(data.join(format!("{DB_FILE}-wal")));
    store_with(&data, 2);
    assert_eq!(hosts_in(&data), 2);
    restore(&data, &copy).unwrap();
    assert_eq!(hosts_in(&data), 5);
}

#[test]
fn a_bad_or_newer_file_never_replaces_the_registry_and_a_running_server_blocks_restore() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certs::create_private_dir(&data).unwrap();
    drop(store_with(&data, 3));
    let junk = dir.path().join("junk.sqlite3");
    std::fs::write(&junk, b"not a database, just bytes that look like nothing").unwrap();
    assert!(restore(&data, &junk).is_err());
    // A database from a newer program.
    let newer = dir.path().join("newer.sqlite3");
    let db = rusqlite::Connection::open(&newer).unwrap();
    db.pragma_update(None, "user_version", crate::registry::SCHEMA_VERSION + 1)
        .unwrap();
    drop(db);
    let err = restore(&data, &newer).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
    assert_eq!(hosts_in(&data), 3, "the registry is untouched");
    // With the lock held (a server running), nothing is restored.
    let copy = dir.path().join("copy.sqlite3");
    backup(&data, &copy).unwrap();
    let held = lock(&data).unwrap();
    assert!(matches!(restore(&data, &copy), Err(BackupError::Locked(_))));
    drop(held);
    restore(&data, &copy).unwrap();
}

#[test]
fn scheduled_backups_keep_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    certs::create_private_dir(&data).unwrap();
    drop(store_with(&data, 1));
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut made = Vec::new();
    for i in 0..5u64 {
        made.push(scheduled(&data, 3, t0 + Duration::from_secs(i * 1800)).unwrap());
    }
    let mut left: Vec<PathBuf> = std::fs::read_dir(data.join(BACKUP_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    left.sort();
    assert_eq!(left, made[2..].to_vec());
    for b in &left {
        Store::check_file(b).unwrap();
    }
}
