//! The rendezvous service core: every decision the server makes about connections,
//! registrations and look-ups, as one sans-IO type ([`Core`]) with time (and randomness where a
//! code is drawn) passed in.
//!
//! ```text
//!   front-end (server/)                       Core
//!   ───────────────────                       ────
//!   new connection ─────── connection() ───►  caps per prefix and in total → Admit
//!   Register ───────────── register() ─────►  limits → Registry → online table
//!                      ◄── Registered{answer, push id, replaced} / Refused
//!   Resolve ────────────── resolve() ──────►  limits → registry + online → Relay::allocate
//!                      ◄── answer for the controller, Push{to: push id, ConnectRequest}
//!   registration ends ──── disconnected() ─►  offline (if still the current registration)
//!   every few seconds ──── sweep() ────────►  forget quiet buckets, touch online, expire
//!   after each call ────── poll_store() ───►  records to write to SQLite, in order
//!   metrics, admin ─────── snapshot() ─────►  counts and one row per known host
//! ```
//!
//! What it owns: the [`Registry`] (codes, keys, quarantine), the online table (which code is
//! connected, from where, and the opaque [`PushId`] of the registration serving it), the
//! request limits and connection caps ([`policy`]), the key of the source tags, and the
//! decision to open a relay session for a look-up (through [`Relay::allocate`]).
//!
//! What it does **not** do: no socket, task, clock, file or channel. It does not write to the
//! SQLite store (it queues [`StoreOp`]s for the caller), does not deliver pushes (it names the
//! registration to push to; the front-end keeps the channels), does not know whether the
//! STUN responder or the relay task is running (the caller says which [`Ports`] it may
//! advertise now), and does not touch relay packets: the relay's hot path
//! ([`crate::relay::serve`]) keeps its own lock on the [`Relay`] (see [`SharedRelay`]).

mod access;
mod admin;
mod policy;
mod resolve;
mod sessions;
mod snapshot;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use certs::Fingerprint;
use proto::AccessCode;
use proto::limits::Prefix;
use proto::rendezvous::{self as msg, Refusal, ServerMsg, SourceTag};
use tracing::{info, warn};

use crate::registry::{self, Expired, HostRecord, Registry};
use crate::relay::{AllocError, Relay};
use policy::Policy;

pub use access::{AccessMode, Enrollment, Token, new_token};
pub use admin::{
    AdminError, Event, HostMeta, HostPage, HostQuery, HostView, MAX_NAME, MAX_PAGE, parse_name,
};
pub use policy::{Admit, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PREFIX};
pub use sessions::SessionRecord;
pub use snapshot::{HostRow, Refusals, Snapshot};

/// The relay's session table, shared by the core (which opens sessions) and the relay's packet
/// loop ([`crate::relay::serve`], which forwards every datagram under this lock).
///
/// It has its own lock rather than living inside the core because the packet path must never
/// wait for the core: the front-end holds the core's lock while it writes registrations to
/// SQLite, and a relayed session's packets would stall behind every such write. Lock order:
/// the core's lock, then this one; the packet loop takes only this one.
pub type SharedRelay = Arc<Mutex<Relay>>;

/// Locks a mutex; a poisoned lock only means another task panicked mid-update of plain data,
/// which stays usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The time of a call: a monotonic instant for the limits and the relay, Unix seconds for the
/// registry's records (which outlive the process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub instant: Instant,
    pub unix: u64,
}

impl Now {
    /// The system's clocks (for the front-end; tests make their own).
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }
}

/// The ports the front-end may advertise right now (`None`: no such service, or its task is
/// down at this moment).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub stun: Option<u16>,
    pub relay: Option<u16>,
}

/// The opaque name of one registration's push channel. The core hands out a new one at every
/// successful registration; the front-end maps it to whatever carries pushes to that host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PushId(u64);

/// Why the core refused something (finer than the wire's [`Refusal`], for counts and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Why {
    /// A registration over its key's or its prefix's limit.
    RegisterRateLimited,
    /// No free code could be drawn.
    NoFreeCode,
    /// A look-up over its key's or its prefix's limit.
    ResolveRateLimited,
    /// A look-up of a code that is unknown, forgotten or offline (one answer for all three).
    Unavailable,
    /// The relay could not open a session (full, or the controller's key or prefix at its cap).
    Relay(AllocError),
    /// The relay's task is not running.
    RelayDown,
    /// A connection over its prefix's cap or the total cap.
    ConnectionCap,
    /// A request that could not be read.
    BadRequest,
    /// A registration from a key the operator banned.
    Banned,
    /// A registration or look-up from a key that is not enrolled (or a bad enrollment token).
    NotEnrolled,
    /// A look-up whose account holds as many relayed sessions as it may.
    AccountCap,
}

/// A refused request: the reason, and the answer to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub why: Why,
    pub reason: Refusal,
    pub message: String,
}

impl Refused {
    fn new(why: Why, reason: Refusal, message: impl Into<String>) -> Self {
        Self {
            why,
            reason,
            message: message.into(),
        }
    }

    /// The answer on the wire.
    pub fn to_msg(&self) -> ServerMsg {
        ServerMsg::Refused {
            reason: self.reason,
            message: self.message.clone(),
        }
    }
}

/// A registration the core took: the host is online under `push` from now on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    pub code: AccessCode,
    /// Whether the key got a code it did not hold a moment ago.
    pub new: bool,
    /// The registration's push channel, to pass to [`Core::disconnected`] when it ends.
    pub push: PushId,
    /// The registration this one replaced (the same code's previous one): its channel is to be
    /// closed, which ends it.
    pub replaced: Option<PushId>,
    /// The answer to write (`ServerMsg::Registered`).
    pub answer: ServerMsg,
}

/// A message for a registered host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    pub to: PushId,
    pub msg: ServerMsg,
}

/// A controller's look-up, as it comes off the wire: who asks (`key`, connected from
/// `source`), for which `code`, with which LAN addresses, and whether it wants the relay only.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    pub key: Fingerprint,
    pub source: SocketAddr,
    pub code: AccessCode,
    pub lan_addrs: &'a [SocketAddr],
    pub relay_only: bool,
}

/// What a look-up gives: the controller's answer and, when it succeeded, the host's push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub answer: ServerMsg,
    pub push: Option<Push>,
}

/// A change for the persistent store, in the order the registry made them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Insert or update a host's record (and end any quarantine of its code).
    Upsert(AccessCode, HostRecord),
    /// What a sweep (or the operator) forgot and released.
    Expired(Expired),
    /// What the operator said about a host key.
    Meta(Fingerprint, HostMeta),
    /// A brokered session began or ended (insert or replace by its id).
    Session(SessionRecord),
    /// An enrollment token was issued or changed (used, revoked).
    Token(Token),
    /// A key was enrolled.
    Enrolled(Enrollment),
}

/// An online host: the registration serving it and where it is.
#[derive(Debug, Clone)]
struct Online {
    push: PushId,
    source: SocketAddr,
    candidates: Vec<SocketAddr>,
    since: u64,
    /// What the host reported of itself (`ClientMsg::Report`), for the console.
    version: Option<String>,
    mapping: Option<proto::session::Mapping>,
}

/// What the core has done since it started (see [`Snapshot`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    registrations: u64,
    resolves: u64,
    refusals: Refusals,
    service_restarts: u64,
}

/// The rendezvous's state and decisions (see the module docs).
pub struct Core {
    registry: Registry,
    online: HashMap<AccessCode, Online>,
    policy: Policy,
    relay: Option<SharedRelay>,
    /// Keys the source tags of connect requests.
    tag_key: ring::hmac::Key,
    next_push: u64,
    store: VecDeque<StoreOp>,
    /// What the operator said about host keys (names, bans).
    meta: HashMap<Fingerprint, HostMeta>,
    /// Changes open consoles should see ([`Core::poll_event`]).
    events: VecDeque<Event>,
    /// The live relayed sessions, for the operator.
    sessions: sessions::Live,
    /// The access mode, tokens and enrolled keys.
    access: access::Access,
    counts: Counts,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("hosts", &self.registry.len())
            .field("online", &self.online.len())
            .field("relay", &self.relay.is_some())
            .finish_non_exhaustive()
    }
}

impl Core {
    /// A core over `registry` (as loaded from the store), with the relay whose sessions it may
    /// open (`None`: a rendezvous without a relay, which hands out addresses instead) and the
    /// secret that keys source tags (random at every start in the server).
    pub fn new(registry: Registry, relay: Option<SharedRelay>, tag_key: [u8; 32]) -> Self {
        Self {
            registry,
            online: HashMap::new(),
            policy: Policy::default(),
            relay,
            tag_key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &tag_key),
            next_push: 0,
            store: VecDeque::new(),
            meta: HashMap::new(),
            events: VecDeque::new(),
            sessions: sessions::Live::new(rand::random()),
            access: access::Access::default(),
            counts: Counts::default(),
        }
    }

    /// A new connection from `source` (`validated`: QUIC proved the address). An accepted one
    /// is counted until [`Self::connection_closed`].
    pub fn connection(&mut self, source: SocketAddr, validated: bool) -> Admit {
        let prefix = Prefix::of(source.ip());
        let verdict = self.policy.admit(prefix, validated);
        match verdict {
            Admit::Accept => self.policy.open(prefix),
            Admit::Refuse => self.counts.refusals.count(Why::ConnectionCap),
            Admit::Retry => {}
        }
        verdict
    }

    /// An accepted connection from `source` ended.
    pub fn connection_closed(&mut self, source: SocketAddr) {
        self.policy.close(&Prefix::of(source.ip()));
    }

    /// A request that could not be read: counted, and the answer to write.
    pub fn bad_request(&mut self, error: &str) -> ServerMsg {
        let refused = Refused::new(Why::BadRequest, Refusal::BadRequest, error);
        self.counts.refusals.count(refused.why);
        refused.to_msg()
    }

    /// A host with `key`, connected from `source`, registers with its LAN addresses: it gets
    /// its code (the one it holds, else its quarantined one, else a fresh draw from `rng`) and
    /// is online from now on, replacing any earlier registration of the same code.
    pub fn register<R: rand::Rng + ?Sized>(
        &mut self,
        now: Now,
        key: Fingerprint,
        source: SocketAddr,
        lan_addrs: &[SocketAddr],
        ports: Ports,
        rng: &mut R,
    ) -> Result<Registered, Refused> {
        let new_code = self.registry.code_of(&key).is_none();
        let prefix = Prefix::of(source.ip());
        let outcome = if let Err(refused) = self.may_register(&key) {
            Err(refused)
        } else if self.is_banned(&key) {
            Err(Refused::new(
                Why::Banned,
                Refusal::Unavailable,
                "this host's key is banned on this server (ask its operator)",
            ))
        } else if !self
            .policy
            .allow_register(key, prefix, new_code, now.instant)
        {
            Err(Refused::new(
                Why::RegisterRateLimited,
                Refusal::RateLimited,
                "too many registrations from this key or address; wait a little",
            ))
        } else {
            self.registry.register(key, now.unix, rng).map_err(|e| {
                let why = match e {
                    registry::RegistryError::NoFreeCode => Why::NoFreeCode,
                };
                Refused::new(why, Refusal::Busy, e.to_string())
            })
        };
        let reg = match outcome {
            Ok(reg) => reg,
            Err(refused) => {
                warn!(peer = %key, %source, "refused a registration: {}", refused.message);
                self.counts.refusals.count(refused.why);
                return Err(refused);
            }
        };
        self.store.push_back(StoreOp::Upsert(reg.code, reg.record));
        let push = PushId(self.next_push);
        self.next_push += 1;
        let replaced = self
            .online
            .insert(
                reg.code,
                Online {
                    push,
                    source,
                    candidates: msg::candidates(Some(source), lan_addrs),
                    since: now.unix,
                    version: None,
                    mapping: None,
                },
            )
            .map(|old| old.push);
        self.counts.registrations += 1;
        self.events.push_back(Event::Host(reg.code));
        info!(code = %reg.code, host = %key, %source, new = reg.new, "host registered");
        Ok(Registered {
            code: reg.code,
            new: reg.new,
            push,
            replaced,
            answer: ServerMsg::Registered {
                code: reg.code,
                observed: source,
                stun_port: ports.stun,
            },
        })
    }

    /// The registration `push` of `code` now comes from `source` (its connection migrated):
    /// the host's reflexive address and candidates follow. The address it had, if it changed.
    pub fn moved(
        &mut self,
        code: AccessCode,
        push: PushId,
        source: SocketAddr,
    ) -> Option<SocketAddr> {
        let h = self
            .online
            .get_mut(&code)
            .filter(|h| h.push == push && h.source != source)?;
        let old = h.source;
        h.source = source;
        if let Some(c) = h.candidates.iter_mut().find(|c| **c == old) {
            *c = source;
        }
        self.events.push_back(Event::Host(code));
        Some(old)
    }

    /// The registration `push` of `code` ended (the host left, stopped reading, or a newer
    /// registration replaced it). Returns whether the host went offline: only when `push` is
    /// still the code's current registration.
    pub fn disconnected(&mut self, now: Now, code: AccessCode, push: PushId) -> bool {
        if self.online.get(&code).is_none_or(|h| h.push != push) {
            return false;
        }
        self.online.remove(&code);
        self.events.push_back(Event::Host(code));
        if let Some(rec) = self.registry.touch(&code, now.unix) {
            self.store.push_back(StoreOp::Upsert(code, rec));
        }
        info!(%code, "host went offline");
        true
    }

    /// Housekeeping: forgets the limit buckets of quiet keys and prefixes, marks every online
    /// host as seen now, forgets hosts offline for too long (quarantining their codes) and
    /// releases quarantines that ran out. Relay sessions are swept by the relay's own loop.
    pub fn sweep(&mut self, now: Now) {
        self.policy.sweep(now.instant);
        self.collect_closed_sessions(now);
        let mut online: Vec<AccessCode> = self.online.keys().copied().collect();
        online.sort();
        for code in online {
            if let Some(rec) = self.registry.touch(&code, now.unix) {
                self.store.push_back(StoreOp::Upsert(code, rec));
            }
        }
        let expired = self
            .registry
            .expire(now.unix, |c| self.online.contains_key(c));
        for (code, _) in &expired.quarantined {
            info!(%code, "forgetting a host not seen for too long; its code is quarantined");
        }
        if expired != Expired::default() {
            self.store.push_back(StoreOp::Expired(expired));
        }
    }

    /// The next change to write to the store; call until `None` after every other call.
    pub fn poll_store(&mut self) -> Option<StoreOp> {
        self.store.pop_front()
    }

    /// Counts a background service (STUN responder, relay, sweeper) started again after it
    /// ended or panicked.
    pub fn service_restarted(&mut self) {
        self.counts.service_restarts += 1;
    }

    /// The registry, read-only.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The registration serving `code` now, if the host is online.
    pub fn online(&self, code: &AccessCode) -> Option<PushId> {
        self.online.get(code).map(|h| h.push)
    }

    /// The tag a host is given for a controller's source prefix: an HMAC under the core's
    /// key, so it groups a prefix's attempts without saying where the controller is.
    fn source_tag(&self, prefix: Prefix) -> SourceTag {
        let tag = ring::hmac::sign(&self.tag_key, &prefix.octets());
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        SourceTag(out)
    }
}

#[cfg(test)]
mod tests;
