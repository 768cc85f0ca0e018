//! What the store keeps for the operator's side, beside the registry: host names and bans,
//! brokered sessions (and their starts and ends in the audit log), enrollment tokens and
//! enrolled keys. Written by the core's `StoreOp`s like the registry's own records.

use certs::Fingerprint;

use super::{Store, StoreError, to_sql_time};

impl Store {
    /// What the operator said about host keys (`crate::core::HostMeta`).
    pub fn load_meta(&self) -> Result<Vec<(Fingerprint, crate::core::HostMeta)>, StoreError> {
        let mut stmt = self
            .db
            .prepare("SELECT fingerprint, name, banned FROM host_meta")?;
        let rows = stmt.query_map([], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, bool>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (fp, name, banned) = row?;
            let fp: [u8; 32] = fp.try_into().map_err(|_| StoreError::BadRow {
                code: "host_meta".into(),
                why: "fingerprint length".into(),
            })?;
            out.push((
                Fingerprint::from_bytes(fp),
                crate::core::HostMeta { name, banned },
            ));
        }
        Ok(out)
    }

    /// Saves what the operator said about `key` (a key with nothing said is removed).
    pub fn set_meta(
        &self,
        key: &Fingerprint,
        meta: &crate::core::HostMeta,
    ) -> Result<(), StoreError> {
        if *meta == crate::core::HostMeta::default() {
            self.db.execute(
                "DELETE FROM host_meta WHERE fingerprint = ?1",
                [key.as_bytes().as_slice()],
            )?;
        } else {
            self.db.execute(
                "INSERT INTO host_meta (fingerprint, name, banned) VALUES (?1, ?2, ?3)
                 ON CONFLICT(fingerprint) DO UPDATE SET name = excluded.name,
                                                        banned = excluded.banned",
                rusqlite::params![key.as_bytes().as_slice(), meta.name, meta.banned],
            )?;
        }
        Ok(())
    }

    /// Inserts or replaces an enrollment token.
    pub fn put_token(&self, t: &crate::core::Token) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO enrollment_tokens
             (id, secret_sha256, account, label, uses_left, expires, created, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            rusqlite::params![
                t.id,
                &t.secret_sha256[..],
                t.account,
                t.label,
                t.uses_left,
                to_sql_time(t.expires),
                to_sql_time(t.created),
                t.revoked
            ],
        )?;
        Ok(())
    }

    pub fn put_enrollment(&self, e: &crate::core::Enrollment) -> Result<(), StoreError> {
        self.db.execute(
            "INSERT OR REPLACE INTO enrolled_keys (fingerprint, account, token_id, at)
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                e.key.as_bytes().as_slice(),
                e.account,
                e.token_id,
                to_sql_time(e.at)
            ],
        )?;
        Ok(())
    }

    /// The enrollment tokens and the enrolled keys.
    #[allow(clippy::type_complexity)]
    pub fn load_access(
        &self,
    ) -> Result<(Vec<crate::core::Token>, Vec<crate::core::Enrollment>), StoreError> {
        let bad = |why: &str| StoreError::BadRow {
            code: "enrollment".into(),
            why: why.into(),
        };
        let mut stmt = self.db.prepare(
            "SELECT id, secret_sha256, account, label, uses_left, expires, created, revoked
             FROM enrollment_tokens",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, bool>(7)?,
            ))
        })?;
        let mut tokens = Vec::new();
        for row in rows {
            let (id, hash, account, label, uses_left, expires, created, revoked) = row?;
            tokens.push(crate::core::Token {
                id,
                secret_sha256: hash.try_into().map_err(|_| bad("token hash length"))?,
                account,
                label,
                uses_left,
                expires: u64::try_from(expires).unwrap_or(0),
                created: u64::try_from(created).unwrap_or(0),
                revoked,
            });
        }
        let mut stmt = self
            .db
            .prepare("SELECT fingerprint, account, token_id, at FROM enrolled_keys")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut enrolled = Vec::new();
        for row in rows {
            let (fp, account, token_id, at) = row?;
            let fp: [u8; 32] = fp.try_into().map_err(|_| bad("fingerprint length"))?;
            enrolled.push(crate::core::Enrollment {
                key: Fingerprint::from_bytes(fp),
                account,
                token_id,
                at: u64::try_from(at).unwrap_or(0),
            });
        }
        Ok((tokens, enrolled))
    }

    /// Inserts or replaces a brokered session's record, and notes its start or end in the
    /// audit log (the core writes each record once when it starts and once when it ends).
    pub fn put_session(&self, r: &crate::core::SessionRecord) -> Result<(), StoreError> {
        let (action, detail) = match (r.ended, r.end_reason) {
            (None, _) => (
                "session.started",
                format!(
                    "controller {} from {}, path {}",
                    r.controller, r.controller_addr, r.path
                ),
            ),
            (Some(_), why) => (
                "session.ended",
                format!("{} bytes relayed, {}", r.bytes, why.unwrap_or("ended")),
            ),
        };
        self.db.execute(
            "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            rusqlite::params![
                to_sql_time(r.ended.unwrap_or(r.started)),
                "rendezvous",
                action,
                r.code.to_string(),
                detail
            ],
        )?;
        self.db.execute(
            "INSERT OR REPLACE INTO sessions
             (id, code, host, controller, controller_addr, path, started, ended, bytes, end_reason)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                r.id,
                r.code.to_string(),
                r.host.as_bytes().as_slice(),
                r.controller.as_bytes().as_slice(),
                r.controller_addr.to_string(),
                r.path,
                to_sql_time(r.started),
                r.ended.map(to_sql_time),
                to_sql_time(r.bytes),
                r.end_reason,
            ],
        )?;
        Ok(())
    }

    /// Closes the records of relayed sessions a previous process left open (it stopped, and so
    /// did its relay): they are marked ended at `now`, the restart (at the latest).
    pub fn close_dangling_sessions(&self, now: u64) -> Result<usize, StoreError> {
        Ok(self.db.execute(
            "UPDATE sessions SET ended = MAX(started, ?1), end_reason = 'server restarted'
             WHERE ended IS NULL AND path = 'relay'",
            [to_sql_time(now)],
        )?)
    }
}
