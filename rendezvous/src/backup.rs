//! Keeping the registry safe: one server per data directory (a lock), online backups (by hand,
//! `rendezvous backup`, and on a schedule, `--backup-every`), and restoring one (`rendezvous
//! restore`, with the server stopped).
//!
//! ```text
//!  data dir/lock                     held by the running server (and by restore)
//!  data dir/registry.sqlite3         the registry (WAL mode; see `registry::Store`)
//!  data dir/backups/registry-<unix seconds>.sqlite3   scheduled backups, the newest N kept
//! ```
//!
//! A backup is SQLite's `VACUUM INTO` on a read-only connection: a consistent copy taken while
//! the server runs and writes (WAL lets readers and the writer go on together), checked with
//! `PRAGMA integrity_check` before it counts. A restore checks the copy the same way, and its
//! schema version, before it replaces the registry whole (a rename), so a bad file never
//! replaces a good one.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::registry::{Store, StoreError};

/// The registry's file in the data directory.
pub const DB_FILE: &str = "registry.sqlite3";
/// The lock file in the data directory.
pub const LOCK_FILE: &str = "lock";
/// Where scheduled backups go, in the data directory.
pub const BACKUP_DIR: &str = "backups";

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another rendezvous uses {0} (its lock is held): stop it first")]
    Locked(PathBuf),
    #[error("{0} exists already: give a new file")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The data directory's lock, held while it lives.
#[derive(Debug)]
pub struct DirLock(#[allow(dead_code)] std::fs::File);

/// Takes `data_dir`'s lock, or says who holds it.
///
/// # Errors
///
/// [`BackupError::Locked`] if another process holds it; I/O errors.
pub fn lock(data_dir: &Path) -> Result<DirLock, BackupError> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Locked(data_dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&path)(e)),
    }
}

/// Copies the registry in `data_dir` to `to` (a new file), consistently, while a server may be
/// running; the copy is checked before this returns.
///
/// # Errors
///
/// `to` exists; the registry or the copy cannot be read, written or checked.
pub fn backup(data_dir: &Path, to: &Path) -> Result<(), BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(StoreError::from)?;
    let target = to
        .to_str()
        .ok_or_else(|| io(to)(std::io::Error::other("not a UTF-8 path")))?;
    db.execute("VACUUM INTO ?1", [target])
        .map_err(StoreError::from)?;
    drop(db);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).map_err(io(to))?;
    }
    Store::check_file(to)?;
    Ok(())
}

/// Replaces the registry in `data_dir` with the backup `from`, after checking it; the server
/// must be stopped (the directory's lock is taken).
///
/// # Errors
///
/// The lock is held; `from` is not a sound registry of a version this program knows; I/O.
pub fn restore(data_dir: &Path, from: &Path) -> Result<(), BackupError> {
    let _lock = lock(data_dir)?;
    Store::check_file(from)?;
    let db = data_dir.join(DB_FILE);
    let tmp = data_dir.join(format!("{DB_FILE}.restoring"));
    std::fs::copy(from, &tmp).map_err(io(&tmp))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io(&tmp))?;
    }
    // The old WAL belongs to the old database: it must not be replayed into the restored one.
    for side in ["-wal", "-shm"] {
        let p = data_dir.join(format!("{DB_FILE}{side}"));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&p)(e)),
        }
    }
    std::fs::rename(&tmp, &db).map_err(io(&db))
}

/// A scheduled backup into `data_dir/backups`, keeping the newest `keep`; returns its path.
///
/// # Errors
///
/// As [`backup`]; pruning errors.
pub fn scheduled(data_dir: &Path, keep: usize, now: SystemTime) -> Result<PathBuf, BackupError> {
    let dir = data_dir.join(BACKUP_DIR);
    certs::create_private_dir(&dir).map_err(StoreError::from)?;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let to = dir.join(format!("registry-{secs}.sqlite3"));
    backup(data_dir, &to)?;
    let mut all: Vec<(u64, PathBuf)> = std::fs::read_dir(&dir)
        .map_err(io(&dir))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name();
            let secs = name
                .to_str()?
                .strip_prefix("registry-")?
                .strip_suffix(".sqlite3")?
                .parse()
                .ok()?;
            Some((secs, e.path()))
        })
        .collect();
    all.sort();
    let excess = all.len().saturating_sub(keep.max(1));
    for (_, old) in all.into_iter().take(excess) {
        std::fs::remove_file(&old).map_err(io(&old))?;
    }
    Ok(to)
}

#[cfg(test)]
mod tests;
