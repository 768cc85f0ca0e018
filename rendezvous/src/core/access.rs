//! Who may use the service (sans IO): the access mode, enrollment tokens and enrolled keys.
//!
//! - `open` (the default): any key registers and looks codes up.
//! - `enrolled`: a host registers only with an enrolled key; any controller may look a code up
//!   (the host's password still decides who gets in).
//! - `closed`: controllers need an enrolled key too.
//!
//! An operator issues an enrollment token in the console (`qde_<id>_<secret>`, a number of
//! uses, an expiry); a peer presents it once (`ClientMsg::Enroll`, from `peer join` with an
//! invite that carries it) and its key is enrolled under the account that issued the token.
//! Only the SHA-256 of a token's secret is kept. Enrolling counts against the registration
//! limits of the key and of its source, so tokens cannot be guessed at speed (and a secret has
//! 256 bits). Relayed sessions are capped per account ([`Core::set_account_relay_cap`]).

use std::collections::HashMap;

use certs::Fingerprint;
use proto::limits::Prefix;
use proto::rendezvous::{Refusal, ServerMsg};
use sha2::Digest;
use tracing::{info, warn};

use super::{Core, Now, Refused, StoreOp, Why};

/// Who may use the service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AccessMode {
    #[default]
    Open,
    Enrolled,
    Closed,
}

impl std::str::FromStr for AccessMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "open" => Ok(Self::Open),
            "enrolled" => Ok(Self::Enrolled),
            "closed" => Ok(Self::Closed),
            _ => Err(format!("{s:?}: access is open, enrolled or closed")),
        }
    }
}

impl std::fmt::Display for AccessMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Open => "open",
            Self::Enrolled => "enrolled",
            Self::Closed => "closed",
        })
    }
}

/// An enrollment token as the server keeps it (never its secret; serialized for the console
/// without its hash too).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Token {
    pub id: String,
    #[serde(skip)]
    pub secret_sha256: [u8; 32],
    /// The console user who issued it; keys enrolled with it belong to this account.
    pub account: String,
    pub label: String,
    pub uses_left: u32,
    /// Unix seconds.
    pub expires: u64,
    pub created: u64,
    pub revoked: bool,
}

/// An enrolled key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    pub key: Fingerprint,
    pub account: String,
    pub token_id: String,
    pub at: u64,
}

/// A new token: what to keep, and the token itself (`qde_<id>_<secret>`, shown once).
pub fn new_token(
    account: &str,
    label: &str,
    uses: u32,
    expires: u64,
    created: u64,
) -> (Token, String) {
    let id: String = rand::random::<[u8; 6]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let secret: String = rand::random::<[u8; 32]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let token = Token {
        secret_sha256: sha2::Sha256::digest(secret.as_bytes()).into(),
        id: id.clone(),
        account: account.to_owned(),
        label: label.to_owned(),
        uses_left: uses,
        expires,
        created,
        revoked: false,
    };
    (token, format!("qde_{id}_{secret}"))
}

/// The per-account state the core keeps.
#[derive(Debug, Default)]
pub(super) struct Access {
    pub(super) mode: AccessMode,
    pub(super) tokens: HashMap<String, Token>,
    pub(super) enrolled: HashMap<Fingerprint, Enrollment>,
    /// Most relayed sessions an account's keys may hold at once (`None`: no cap).
    pub(super) relay_cap: Option<usize>,
}

fn not_enrolled(message: &str) -> Refused {
    Refused::new(Why::NotEnrolled, Refusal::NotEnrolled, message)
}

impl Core {
    pub fn set_access(&mut self, mode: AccessMode) {
        self.access.mode = mode;
    }

    pub fn access_mode(&self) -> AccessMode {
        self.access.mode
    }

    /// Most relayed sessions one account's keys may hold at once.
    pub fn set_account_relay_cap(&mut self, cap: Option<usize>) {
        self.access.relay_cap = cap;
    }

    /// Loads the tokens and enrollments the store holds.
    pub fn extend_access(&mut self, tokens: Vec<Token>, enrolled: Vec<Enrollment>) {
        self.access
            .tokens
            .extend(tokens.into_iter().map(|t| (t.id.clone(), t)));
        self.access
            .enrolled
            .extend(enrolled.into_iter().map(|e| (e.key, e)));
    }

    /// A token the operator issued.
    pub fn add_token(&mut self, token: Token) {
        self.store.push_back(StoreOp::Token(token.clone()));
        self.access.tokens.insert(token.id.clone(), token);
    }

    /// Revokes a token (keys enrolled with it stay enrolled); whether it was live.
    pub fn revoke_token(&mut self, id: &str) -> bool {
        let Some(t) = self.access.tokens.get_mut(id) else {
            return false;
        };
        if t.revoked {
            return false;
        }
        t.revoked = true;
        self.store.push_back(StoreOp::Token(t.clone()));
        true
    }

    /// Every token, newest first.
    pub fn tokens(&self) -> Vec<Token> {
        let mut v: Vec<Token> = self.access.tokens.values().cloned().collect();
        v.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
        v
    }

    /// The account a key is enrolled under.
    pub fn account_of(&self, key: &Fingerprint) -> Option<&str> {
        self.access.enrolled.get(key).map(|e| e.account.as_str())
    }

    /// Whether `key` may register now.
    pub(super) fn may_register(&self, key: &Fingerprint) -> Result<(), Refused> {
        if self.access.mode == AccessMode::Open || self.access.enrolled.contains_key(key) {
            return Ok(());
        }
        Err(not_enrolled(
            "this rendezvous admits enrolled hosts only: join with an invite that carries an \
             enrollment token (ask its operator)",
        ))
    }

    /// Whether `key` may look codes up now.
    pub(super) fn may_resolve(&self, key: &Fingerprint) -> Result<(), Refused> {
        if self.access.mode != AccessMode::Closed || self.access.enrolled.contains_key(key) {
            return Ok(());
        }
        Err(not_enrolled(
            "this rendezvous admits enrolled controllers only: join with an invite that carries \
             an enrollment token (ask its operator)",
        ))
    }

    /// The account whose relay cap a session between `host` and `controller` counts against:
    /// the controller's on a closed rendezvous, the host's on an enrolled one.
    pub(super) fn relay_account(
        &self,
        host: &Fingerprint,
        controller: &Fingerprint,
    ) -> Option<String> {
        let key = match self.access.mode {
            AccessMode::Open => return None,
            AccessMode::Enrolled => host,
            AccessMode::Closed => controller,
        };
        self.account_of(key).map(str::to_owned)
    }

    /// A peer presents an enrollment token for `key`.
    pub fn enroll(
        &mut self,
        now: Now,
        key: Fingerprint,
        source: std::net::SocketAddr,
        token: &str,
    ) -> ServerMsg {
        match self.try_enroll(now, key, source, token) {
            Ok(()) => ServerMsg::Enrolled,
            Err(refused) => {
                warn!(peer = %key, %source, "refused an enrollment: {}", refused.message);
                self.counts.refusals.count(refused.why);
                refused.to_msg()
            }
        }
    }

    fn try_enroll(
        &mut self,
        now: Now,
        key: Fingerprint,
        source: std::net::SocketAddr,
        token: &str,
    ) -> Result<(), Refused> {
        if self.access.enrolled.contains_key(&key) {
            return Ok(());
        }
        // Guessing tokens costs what registering new codes costs.
        if !self
            .policy
            .allow_register(key, Prefix::of(source.ip()), true, now.instant)
        {
            return Err(Refused::new(
                Why::RegisterRateLimited,
                Refusal::RateLimited,
                "too many attempts from this key or address; wait a little",
            ));
        }
        let bad = || {
            not_enrolled(
                "this enrollment token is not valid (used up, expired, revoked or mistyped)",
            )
        };
        let (id, secret) = token
            .strip_prefix("qde_")
            .and_then(|t| t.split_once('_'))
            .ok_or_else(bad)?;
        let t = self.access.tokens.get_mut(id).ok_or_else(bad)?;
        let hash: [u8; 32] = sha2::Sha256::digest(secret.as_bytes()).into();
        let matches: bool = subtle::ConstantTimeEq::ct_eq(&hash[..], &t.secret_sha256[..]).into();
        if !matches || t.revoked || t.uses_left == 0 || now.unix >= t.expires {
            return Err(bad());
        }
        t.uses_left -= 1;
        let t = t.clone();
        let e = Enrollment {
            key,
            account: t.account.clone(),
            token_id: t.id.clone(),
            at: now.unix,
        };
        info!(peer = %key, account = %e.account, token = %t.id, "key enrolled");
        self.store.push_back(StoreOp::Token(t));
        self.store.push_back(StoreOp::Enrolled(e.clone()));
        self.access.enrolled.insert(key, e);
        Ok(())
    }
}
