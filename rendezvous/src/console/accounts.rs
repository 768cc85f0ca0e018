//! Console accounts: users with a role and an argon2id password hash, API keys (scoped,
//! revocable, shown once, stored as a SHA-256 of their 256-bit secret), and browser sessions
//! (a random token in a cookie, stored as its SHA-256, with its CSRF token and an expiry).
//!
//! Plain functions on a SQLite connection (the tables are in [`crate::schema`]); the HTTP side
//! ([`super::auth`]) decides who may do what with them.

use std::fmt;
use std::str::FromStr;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::Digest;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read everything; change nothing.
    Auditor,
    /// Hosts and sessions too: rename, ban, forget, end a relayed session.
    Operator,
    /// Everything, users, API keys and settings too.
    Admin,
}

impl Role {
    pub fn may_change_hosts(self) -> bool {
        self >= Role::Operator
    }

    pub fn may_administer(self) -> bool {
        self == Role::Admin
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auditor" => Ok(Role::Auditor),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("{s:?}: a role is admin, operator or auditor")),
        }
    }
}

/// A user as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// Whether logging in also takes a TOTP code.
    pub totp: bool,
    /// Unix seconds.
    pub created: u64,
}

/// Errors of the account functions.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    #[error("a user name is 1 to 32 of a-z, 0-9, '.', '_' and '-', starting with a letter")]
    BadName,
    #[error("password too weak: {0}")]
    Weak(String),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("the last admin cannot be removed or demoted")]
    LastAdmin,
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("{0}")]
    Store(String),
}

/// A user name: 1 to 32 of `a-z0-9._-`, starting with a letter.
pub fn parse_name(name: &str) -> Result<&str, AccountError> {
    let ok = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(AccountError::BadName)
    }
}

/// OWASP's minimum for argon2id: 19 MiB, 2 passes, 1 lane.
fn argon2() -> Argon2<'static> {
    // The parameters are constants within argon2's bounds.
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A PHC-format argon2id hash of `password` (checked for strength first).
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    proto::strength::check(password).map_err(AccountError::Weak)?;
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// A hash of no password anybody has, so that a login with an unknown name costs as much as
/// one with a known name (the timing does not tell which names exist).
fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| {
        let salt = SaltString::encode_b64(&[7u8; 16]).expect("16 bytes encode");
        argon2()
            .hash_password(b"decoy password, never stored", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

pub fn add_user(
    db: &Connection,
    name: &str,
    role: Role,
    password_hash: &str,
    now: u64,
) -> Result<(), AccountError> {
    let name = parse_name(name)?;
    let done = db.execute(
        "INSERT INTO users (name, role, password_hash, created) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(name) DO NOTHING",
        params![name, role.to_string(), password_hash, sql_time(now)],
    )?;
    if done == 0 {
        return Err(AccountError::Exists(name.to_owned()));
    }
    Ok(())
}

/// Sets `name`'s password hash, ending all of its sessions.
pub fn set_password(db: &Connection, name: &str, password_hash: &str) -> Result<(), AccountError> {
    let done = db.execute(
        "UPDATE users SET password_hash = ?2 WHERE name = ?1",
        params![name, password_hash],
    )?;
    if done == 0 {
        return Err(AccountError::NoSuchUser(name.to_owned()));
    }
    db.execute("DELETE FROM web_sessions WHERE user = ?1", [name])?;
    Ok(())
}

/// Removes a user (its sessions and API keys with it); the last admin stays.
pub fn remove_user(db: &Connection, name: &str) -> Result<(), AccountError> {
    let tx = db.unchecked_transaction()?;
    let role: Option<String> = tx
        .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?;
    let Some(role) = role else {
        return Err(AccountError::NoSuchUser(name.to_owned()));
    };
    if role == "admin" && admins(&tx)? <= 1 {
        return Err(AccountError::LastAdmin);
    }
    tx.execute("DELETE FROM web_sessions WHERE user = ?1", [name])?;
    tx.execute("DELETE FROM api_keys WHERE user = ?1", [name])?;
    tx.execute("DELETE FROM users WHERE name = ?1", [name])?;
    tx.commit()?;
    Ok(())
}

fn admins(db: &Connection) -> Result<i64, rusqlite::Error> {
    db.query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| {
        r.get(0)
    })
}

pub fn users(db: &Connection) -> Result<Vec<User>, AccountError> {
    let mut stmt =
        db.prepare("SELECT name, role, totp_secret IS NOT NULL, created FROM users ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, role, totp, created) = row?;
        // A role this program does not know reads as the least one.
        let role = role.parse().unwrap_or(Role::Auditor);
        out.push(User {
            name,
            role,
            totp,
            created: u64::try_from(created).unwrap_or(0),
        });
    }
    Ok(out)
}

/// Whether any user exists (the console asks for `rendezvous user add` until one does).
pub fn any_user(db: &Connection) -> Result<bool, AccountError> {
    Ok(db.query_row("SELECT EXISTS(SELECT 1 FROM users)", [], |r| r.get(0))?)
}

/// A user's stored secrets, read for a login.
#[derive(Debug)]
pub struct Credentials {
    pub role: Role,
    password_hash: String,
    pub totp_secret: Option<Vec<u8>>,
}

pub fn credentials(db: &Connection, name: &str) -> Result<Option<Credentials>, AccountError> {
    Ok(db
        .query_row(
            "SELECT role, password_hash, totp_secret FROM users WHERE name = ?1",
            [name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<Vec<u8>>>(2)?,
                ))
            },
        )
        .optional()?
        .map(|(role, password_hash, totp_secret)| Credentials {
            role: role.parse().unwrap_or(Role::Auditor),
            password_hash,
            totp_secret,
        }))
}

/// Checks `password` against `creds` (or against a decoy when there is no such user, taking
/// the same time). Slow on purpose (argon2id): call it off the async threads.
pub fn verify_password(creds: Option<&Credentials>, password: &str) -> bool {
    let stored = creds.map_or(decoy_hash(), |c| c.password_hash.as_str());
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let ok = argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && creds.is_some()
}

pub fn set_totp(db: &Connection, name: &str, secret: Option<&[u8]>) -> Result<(), AccountError> {
    let done = db.execute(
        "UPDATE users SET totp_secret = ?2 WHERE name = ?1",
        params![name, secret],
    )?;
    if done == 0 {
        return Err(AccountError::NoSuchUser(name.to_owned()));
    }
    Ok(())
}

// ---- Secrets: session tokens and API keys ----

/// 32 random bytes, base64url.
pub fn random_token() -> String {
    B64.encode(rand::random::<[u8; 32]>())
}

fn sha256(s: &str) -> Vec<u8> {
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

fn sql_time(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// How long a browser session lasts from its login.
pub const SESSION_LIFETIME: u64 = 12 * 3600;

/// A browser session: who, with which role, and its CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

/// Opens a session for `user`; returns its token (for the cookie) and its CSRF token.
pub fn open_session(
    db: &Connection,
    user: &str,
    now: u64,
) -> Result<(String, String), AccountError> {
    let (token, csrf) = (random_token(), random_token());
    db.execute(
        "INSERT INTO web_sessions (token_hash, user, csrf, created, expires)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            sha256(&token),
            user,
            csrf.as_bytes(),
            sql_time(now),
            sql_time(now + SESSION_LIFETIME)
        ],
    )?;
    // Expired sessions go whenever a new one opens.
    db.execute(
        "DELETE FROM web_sessions WHERE expires <= ?1",
        [sql_time(now)],
    )?;
    Ok((token, csrf))
}

/// The live session a cookie's token names.
pub fn session(db: &Connection, token: &str, now: u64) -> Result<Option<Session>, AccountError> {
    Ok(db
        .query_row(
            "SELECT s.user, u.role, s.csrf FROM web_sessions s JOIN users u ON u.name = s.user
             WHERE s.token_hash = ?1 AND s.expires > ?2",
            params![sha256(token), sql_time(now)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        )
        .optional()?
        .map(|(user, role, csrf)| Session {
            user,
            role: role.parse().unwrap_or(Role::Auditor),
            csrf: String::from_utf8_lossy(&csrf).into_owned(),
        }))
}

pub fn close_session(db: &Connection, token: &str) -> Result<(), AccountError> {
    db.execute(
        "DELETE FROM web_sessions WHERE token_hash = ?1",
        [sha256(token)],
    )?;
    Ok(())
}

/// What an API key may do: read only, or whatever its user's role may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
}

/// An API key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiKey {
    pub id: String,
    pub user: String,
    pub scope: Scope,
    pub label: String,
    pub created: u64,
    pub revoked: bool,
}

const KEY_PREFIX: &str = "qdk_";

/// Makes an API key for `user`; returns the key itself (`qdk_<id>_<secret>`), which is shown
/// once and stored nowhere.
pub fn create_api_key(
    db: &Connection,
    user: &str,
    scope: Scope,
    label: &str,
    now: u64,
) -> Result<String, AccountError> {
    let id = hex(&rand::random::<[u8; 6]>());
    let secret = random_token();
    let scope_s = match scope {
        Scope::Read => "read",
        Scope::Write => "write",
    };
    db.execute(
        "INSERT INTO api_keys (id, user, secret_hash, scope, label, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id, user, sha256(&secret), scope_s, label, sql_time(now)],
    )?;
    Ok(format!("{KEY_PREFIX}{id}_{secret}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// The user, role and scope an API key stands for (a revoked, unknown or malformed key: none).
pub fn api_key(db: &Connection, key: &str) -> Result<Option<(String, Role, Scope)>, AccountError> {
    let Some((id, secret)) = key.strip_prefix(KEY_PREFIX).and_then(|k| k.split_once('_')) else {
        return Ok(None);
    };
    let row = db
        .query_row(
            "SELECT k.user, u.role, k.scope, k.secret_hash FROM api_keys k
             JOIN users u ON u.name = k.user WHERE k.id = ?1 AND k.revoked IS NULL",
            [id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((user, role, scope, hash)) = row else {
        return Ok(None);
    };
    // Compared in constant time: the hash of a guess must not leak by timing how much matched.
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        hash.as_slice(),
        sha256(secret).as_slice(),
    )) {
        return Ok(None);
    }
    let scope = if scope == "write" {
        Scope::Write
    } else {
        Scope::Read
    };
    Ok(Some((user, role.parse().unwrap_or(Role::Auditor), scope)))
}

pub fn api_keys(db: &Connection) -> Result<Vec<ApiKey>, AccountError> {
    let mut stmt = db.prepare(
        "SELECT id, user, scope, label, created, revoked IS NOT NULL FROM api_keys ORDER BY created, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ApiKey {
            id: r.get(0)?,
            user: r.get(1)?,
            scope: if r.get::<_, String>(2)? == "write" {
                Scope::Write
            } else {
                Scope::Read
            },
            label: r.get(3)?,
            created: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            revoked: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Revokes a key; returns whether it existed and was live.
pub fn revoke_api_key(db: &Connection, id: &str, now: u64) -> Result<bool, AccountError> {
    Ok(db.execute(
        "UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked IS NULL",
        params![id, sql_time(now)],
    )? == 1)
}
