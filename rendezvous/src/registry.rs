//! The code registry: which key owns which code, and when each host was last seen.
//!
//! Codes are assigned by the server, one per host key: a key that registers again gets the
//! code it had. A host offline for longer than `forget_after` is forgotten, and its code is
//! quarantined for `quarantine`: during that time it goes to no other key (whoever was told
//! the old code cannot be led to a stranger's machine), only back to the key that held it.
//!
//! [`Registry`] is pure state (time and randomness passed in); [`Store`] persists it in SQLite
//! under the data directory so registrations survive a restart.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use certs::Fingerprint;

use proto::code::AccessCode;

/// What the registry knows of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRecord {
    pub fingerprint: Fingerprint,
    /// Unix seconds when the host was last connected.
    pub last_seen: u64,
}

/// A forgotten host's code, kept from other keys until `until` (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarantined {
    pub fingerprint: Fingerprint,
    pub until: u64,
}

/// What [`Registry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registered {
    pub code: AccessCode,
    pub record: HostRecord,
    /// Whether the key got a code it did not hold a moment ago (first registration, or its
    /// quarantined code given back).
    pub new: bool,
}

/// Why a registration failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    #[error("no free code found (the registry is nearly full)")]
    NoFreeCode,
}

/// Code → owning key (and back), with expiry and quarantine.
#[derive(Debug)]
pub struct Registry {
    hosts: HashMap<AccessCode, HostRecord>,
    by_key: HashMap<Fingerprint, AccessCode>,
    quarantine: HashMap<AccessCode, Quarantined>,
    forget_after: Duration,
    quarantine_for: Duration,
}

impl Registry {
    pub fn new(forget_after: Duration, quarantine_for: Duration) -> Self {
        Self {
            hosts: HashMap::new(),
            by_key: HashMap::new(),
            quarantine: HashMap::new(),
            forget_after,
            quarantine_for,
        }
    }

    /// Loads records (e.g. from a [`Store`]). A key that appears with two codes keeps the
    /// first; the other code is quarantined for it.
    pub fn extend(
        &mut self,
        hosts: impl IntoIterator<Item = (AccessCode, HostRecord)>,
        quarantine: impl IntoIterator<Item = (AccessCode, Quarantined)>,
    ) {
        for (code, rec) in hosts {
            if self.by_key.contains_key(&rec.fingerprint) {
                continue;
            }
            self.by_key.insert(rec.fingerprint, code);
            self.hosts.insert(code, rec);
        }
        self.quarantine.extend(quarantine);
    }

    /// Gives `fingerprint` its code: the one it holds, else its quarantined one, else a fresh
    /// random code that nobody holds and that is not quarantined.
    pub fn register<R: rand::Rng + ?Sized>(
        &mut self,
        fingerprint: Fingerprint,
        now: u64,
        rng: &mut R,
    ) -> Result<Registered, RegistryError> {
        if let Some(&code) = self.by_key.get(&fingerprint)
            && let Some(rec) = self.hosts.get_mut(&code)
        {
            rec.last_seen = rec.last_seen.max(now);
            return Ok(Registered {
                code,
                record: *rec,
                new: false,
            });
        }
        let returning = self
            .quarantine
            .iter()
            .find(|(_, q)| q.fingerprint == fingerprint)
            .map(|(c, _)| *c);
        let code = match returning {
            Some(code) => {
                self.quarantine.remove(&code);
                code
            }
            None => (0..64)
                .map(|_| AccessCode::random(rng))
                .find(|c| !self.hosts.contains_key(c) && !self.quarantine.contains_key(c))
                .ok_or(RegistryError::NoFreeCode)?,
        };
        let record = HostRecord {
            fingerprint,
            last_seen: now,
        };
        self.hosts.insert(code, record);
        self.by_key.insert(fingerprint, code);
        Ok(Registered {
            code,
            record,
            new: true,
        })
    }

    /// Marks a host as seen now. Returns the updated record if it exists.
    pub fn touch(&mut self, code: &AccessCode, now: u64) -> Option<HostRecord> {
        let rec = self.hosts.get_mut(code)?;
        rec.last_seen = rec.last_seen.max(now);
        Some(*rec)
    }

    pub fn get(&self, code: &AccessCode) -> Option<&HostRecord> {
        self.hosts.get(code)
    }

    /// The code `fingerprint` holds, if any.
    pub fn code_of(&self, fingerprint: &Fingerprint) -> Option<AccessCode> {
        self.by_key.get(fingerprint).copied()
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Every known host, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&AccessCode, &HostRecord)> {
        self.hosts.iter()
    }

    /// Every quarantined code, in no particular order.
    pub fn quarantined(&self) -> impl Iterator<Item = (&AccessCode, &Quarantined)> {
        self.quarantine.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Forgets host `code` now (the operator's choice), quarantining its code as
    /// [`Self::expire`] would. Returns the change for the store, `None` for an unknown code.
    pub fn forget(&mut self, code: &AccessCode, now: u64) -> Option<Expired> {
        let rec = self.hosts.remove(code)?;
        self.by_key.remove(&rec.fingerprint);
        let q = Quarantined {
            fingerprint: rec.fingerprint,
            until: now.saturating_add(self.quarantine_for.as_secs()),
        };
        self.quarantine.insert(*code, q);
        Some(Expired {
            quarantined: vec![(*code, q)],
            released: Vec::new(),
        })
    }

    /// Forgets hosts not seen for longer than `forget_after` and not online now, quarantining
    /// their codes; ends quarantines that ran out. Returns what changed, for the store.
    pub fn expire(&mut self, now: u64, is_online: impl Fn(&AccessCode) -> bool) -> Expired {
        let limit = self.forget_after.as_secs();
        let forgotten: Vec<AccessCode> = self
            .hosts
            .iter()
            .filter(|(code, rec)| now.saturating_sub(rec.last_seen) > limit && !is_online(code))
            .map(|(code, _)| *code)
            .collect();
        let mut out = Expired::default();
        for code in forgotten {
            if let Some(rec) = self.hosts.remove(&code) {
                self.by_key.remove(&rec.fingerprint);
                let q = Quarantined {
                    fingerprint: rec.fingerprint,
                    until: now.saturating_add(self.quarantine_for.as_secs()),
                };
                self.quarantine.insert(code, q);
                out.quarantined.push((code, q));
            }
        }
        self.quarantine.retain(|code, q| {
            let keep = q.until > now;
            if !keep {
                out.released.push(*code);
            }
            keep
        });
        out
    }
}

/// Codes [`Registry::expire`] moved into quarantine and codes it released from it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    pub quarantined: Vec<(AccessCode, Quarantined)>,
    pub released: Vec<AccessCode>,
}

/// Errors of the persistent store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("registry database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("registry database holds a bad row for {code:?}: {why}")]
    BadRow { code: String, why: String },
    #[error(transparent)]
    File(#[from] certs::Error),
    #[error("registry database is damaged ({0}): restore a backup (`rendezvous restore`)")]
    Corrupt(String),
    #[error(
        "registry database is of schema version {found}, newer than this program's {known}: \
         run the newer rendezvous, or restore a backup made by this one"
    )]
    Newer { found: i64, known: i64 },
}

pub use crate::schema::SCHEMA_VERSION;
use crate::schema::{MIGRATIONS, check};

mod operator;

/// SQLite persistence of the registry (`registry.sqlite3` in the data directory).
///
/// The database and its WAL and shared-memory files are created mode 0600 (SQLite gives the
/// side files the database file's mode), never through a symbolic link.
#[derive(Debug)]
pub struct Store {
    db: rusqlite::Connection,
}

fn parse_row(
    code: &str,
    fp: Vec<u8>,
    time: i64,
) -> Result<(AccessCode, Fingerprint, u64), StoreError> {
    let bad = |why: &str| StoreError::BadRow {
        code: code.to_string(),
        why: why.to_string(),
    };
    let parsed: AccessCode = code.parse().map_err(|_| bad("invalid code"))?;
    let fp: [u8; 32] = fp.try_into().map_err(|_| bad("fingerprint length"))?;
    let time = u64::try_from(time).map_err(|_| bad("negative time"))?;
    Ok((parsed, Fingerprint::from_bytes(fp), time))
}

fn to_sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// A read-write connection to the database file at `path`, never through a link (the store's
/// and the console's).
pub(crate) fn open_db(path: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

impl Store {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        certs::ensure_private_file(path)?;
        for side in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(side);
            let p = std::path::PathBuf::from(p);
            if p.exists() || std::fs::symlink_metadata(&p).is_ok() {
                certs::check_private_file(&p)?;
            }
        }
        let db = open_db(path)?;
        // WAL: a commit is in the log before it returns, so a killed process loses nothing
        // committed (NORMAL syncs at checkpoints: a power cut may lose the last commits).
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;",
        )?;
        let mut version = check(&db)?;
        for step in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
            let tx = db.unchecked_transaction()?;
            tx.execute_batch(step)?;
            version += 1;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()?;
        }
        Ok(Self { db })
    }

    /// Whether the database file at `path` is sound and of a version this program reads
    /// (opened read-only; nothing is changed).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`], [`StoreError::Newer`], or SQLite's error for a file that is
    /// not a database.
    pub fn check_file(path: &Path) -> Result<(), StoreError> {
        let db = rusqlite::Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW,
        )?;
        check(&db).map(|_| ())
    }

    #[allow(clippy::type_complexity)]
    pub fn load(
        &self,
    ) -> Result<
        (
            Vec<(AccessCode, HostRecord)>,
            Vec<(AccessCode, Quarantined)>,
        ),
        StoreError,
    > {
        let rows = |table: &str, time: &str| -> Result<Vec<_>, StoreError> {
            let mut stmt = self
                .db
                .prepare(&format!("SELECT code, fingerprint, {time} FROM {table}"))?;
            let rows = stmt.query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, i64>(2)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (code, fp, t) = row?;
                out.push(parse_row(&code, fp, t)?);
            }
            Ok(out)
        };
        let hosts = rows("hosts", "last_seen")?
            .into_iter()
            .map(|(c, fingerprint, last_seen)| {
                (
                    c,
                    HostRecord {
                        fingerprint,
                        last_seen,
                    },
                )
            })
            .collect();
        let quarantine = rows("quarantine", "until")?
            .into_iter()
            .map(|(c, fingerprint, until)| (c, Quarantined { fingerprint, until }))
            .collect();
        Ok((hosts, quarantine))
    }

    pub fn upsert(&self, code: &AccessCode, rec: &HostRecord) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT INTO hosts (code, fingerprint, last_seen) VALUES (?1, ?2, ?3)
             ON CONFLICT(code) DO UPDATE SET fingerprint = excluded.fingerprint,
                                             last_seen = excluded.last_seen",
            rusqlite::params![
                code.to_string(),
                rec.fingerprint.as_bytes().as_slice(),
                to_sql_time(rec.last_seen)
            ],
        )?;
        self.db
            .execute("DELETE FROM quarantine WHERE code = ?1", [code.to_string()])?;
        Ok(())
    }

    /// Writes what [`Registry::expire`] changed, in one transaction.
    pub fn apply(&mut self, expired: &Expired) -> Result<(), StoreError> {
        let tx = self.db.transaction()?;
        for (code, q) in &expired.quarantined {
            tx.execute("DELETE FROM hosts WHERE code = ?1", [code.to_string()])?;
            tx.execute(
                "INSERT OR REPLACE INTO quarantine (code, fingerprint, until) VALUES (?1, ?2, ?3)",
                rusqlite::params![
                    code.to_string(),
                    q.fingerprint.as_bytes().as_slice(),
                    to_sql_time(q.until)
                ],
            )?;
        }
        for code in &expired.released {
            tx.execute("DELETE FROM quarantine WHERE code = ?1", [code.to_string()])?;
        }
        tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn fp(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 32])
    }

    const DAY: u64 = 86_400;

    fn registry() -> Registry {
        Registry::new(Duration::from_secs(100), Duration::from_secs(30 * DAY))
    }

    #[test]
    fn a_key_gets_one_code_and_keeps_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut r = registry();
        let a = r.register(fp(1), 10, &mut rng).unwrap();
        assert!(a.new);
        let again = r.register(fp(1), 20, &mut rng).unwrap();
        assert_eq!(
            (again.code, again.new, again.record.last_seen),
            (a.code, false, 20)
        );
        let b = r.register(fp(2), 20, &mut rng).unwrap();
        assert_ne!(a.code, b.code);
        assert_eq!(r.len(), 2);
        assert_eq!(r.code_of(&fp(1)), Some(a.code));
    }

    #[test]
    fn forgotten_codes_are_quarantined_from_other_keys_and_given_back_to_their_owner() {
        let mut r = registry();
        let code = r
            .register(fp(1), 0, &mut rand::rngs::StdRng::seed_from_u64(7))
            .unwrap()
            .code;
        let online = r
            .register(fp(2), 0, &mut rand::rngs::StdRng::seed_from_u64(8))
            .unwrap()
            .code;
        let expired = r.expire(200, |c| *c == online);
        assert_eq!(expired.quarantined.len(), 1);
        assert_eq!(expired.quarantined[0].0, code);
        assert!(r.get(&code).is_none() && r.get(&online).is_some());
        // Another key drawing the same random numbers does not get the quarantined code.
        let other = r
            .register(fp(3), 300, &mut rand::rngs::StdRng::seed_from_u64(7))
            .unwrap();
        assert_ne!(other.code, code);
        // The owner comes back within the quarantine: its old code.
        let back = r
            .register(fp(1), 400, &mut rand::rngs::StdRng::seed_from_u64(99))
            .unwrap();
        assert_eq!((back.code, back.new), (code, true));
        // After the quarantine a forgotten code is free again.
        r.expire(10_000, |_| false);
        let late = r.expire(10_000 + 31 * DAY, |_| false);
        assert_eq!(late.released.len(), 3);
    }

    #[test]
    fn store_round_trip_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sqlite3");
        let rec = HostRecord {
            fingerprint: fp(7),
            last_seen: 42,
        };
        let code = |n| AccessCode::from_payload([1, 2, 3, 4, 5, 6, n]).unwrap();
        let q = Quarantined {
            fingerprint: fp(8),
            until: 99,
        };
        {
            let mut s = Store::open(&path).unwrap();
            s.upsert(&code(1), &rec).unwrap();
            s.upsert(&code(2), &rec).unwrap();
            s.apply(&Expired {
                quarantined: vec![(code(2), q)],
                released: vec![],
            })
            .unwrap();
            let banned = crate::core::HostMeta {
                name: Some("desk".into()),
                banned: true,
            };
            s.set_meta(&fp(7), &banned).unwrap();
            s.set_meta(&fp(9), &banned).unwrap();
            // Nothing said of a key any more: its row goes.
            s.set_meta(&fp(9), &crate::core::HostMeta::default())
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(
            s.load().unwrap(),
            (vec![(code(1), rec)], vec![(code(2), q)])
        );
        assert_eq!(
            s.load_meta().unwrap(),
            vec![(
                fp(7),
                crate::core::HostMeta {
                    name: Some("desk".into()),
                    banned: true
                }
            )]
        );
        #[cfg(unix)]
        for suffix in ["", "-wal", "-shm"] {
            use std::os::unix::fs::PermissionsExt;
            let p = dir.path().join(format!("r.sqlite3{suffix}"));
            if let Ok(m) = std::fs::metadata(&p) {
                assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display());
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_database_path_that_is_a_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"").unwrap();
        let path = dir.path().join("r.sqlite3");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::File(_))));
    }
}
