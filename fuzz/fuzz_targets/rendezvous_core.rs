//! The rendezvous server's decisions, driven through its sans-IO service core
//! (`rendezvous::core::Core`) as the QUIC front-end drives it (`server/handlers.rs`), with
//! simulated time and a random number generator the fuzzer controls: request messages decoded
//! from wire frames, registrations, registrations ending, look-ups, connections, sweeps, the
//! relay service going down and up, and datagrams to the relay the core allocates sessions in.
//!
//! Checked against a model kept here:
//! - a key never holds two codes and a code never belongs to two keys;
//! - a key that holds a code gets it again; a forgotten key gets its quarantined code back;
//!   a quarantined code is never given to another key; a fresh code is the first free draw;
//! - a registration replaces the code's previous one, and only the current one's end takes the
//!   host offline; online hosts are never forgotten; a sweep forgets and releases exactly
//!   what is due;
//! - what the core gives the store, applied as the SQLite store applies it, always equals the
//!   registry;
//! - rate limits never let through more than burst + rate × time, per key and per prefix;
//! - connection and relay caps are never exceeded; relay sessions nobody bound close in time;
//! - a look-up of an unreachable code (unknown, forgotten, offline) always gets one answer; a
//!   look-up with a relay reveals no address and pushes exactly the host's ticket to the
//!   host's current registration; a relay that is down or full refuses, never falls back;
//! - the snapshot's counts and rows equal the model's;
//! - every answer the server would write fits the protocol's maximum message size.
//!
//! Size: over 600 lines because a fuzz target is one file (cargo-fuzz's layout) and this one
//! carries its own model of the registry, the limits and the relay to check the core against.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use certs::Fingerprint;
use libfuzzer_sys::fuzz_target;
use proto::AccessCode;
use proto::limits::Prefix;
use proto::rendezvous::{ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg, SourceTag};
use proto::wire;
use quicdesk_fuzz::{FuzzRng, Reader, Writer, check_candidates, framed, write_seeds_if_asked};
use rendezvous::core::{
    Admit, Core, Lookup, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PREFIX, Now, Ports, PushId, Refusals,
    SharedRelay, StoreOp, Why,
};
use rendezvous::registry::{HostRecord, Quarantined, Registry};
use rendezvous::relay::{self, Action, AllocError, Limits, Owner, Relay, Ticket};

const FORGET_AFTER: u64 = 100;
const QUARANTINE: u64 = 1000;
const UNIX0: u64 = 1_700_000_000;
const KEYS: u8 = 6;
const STUN_PORT: u16 = 3479;
const RELAY_PORT: u16 = 3480;

/// The request limits of `rendezvous::core::policy` (its module docs): burst, then rate a
/// second.
const RESOLVE_KEY: (f64, f64) = (10.0, 0.5);
const RESOLVE_PREFIX: (f64, f64) = (30.0, 2.0);
const REGISTER_KEY: (f64, f64) = (5.0, 0.2);
const NEW_CODE_PREFIX: (f64, f64) = (10.0, 1.0 / 60.0);

const RELAY_LIMITS: Limits = Limits {
    session_bytes_per_sec: 8 << 20,
    total_bytes_per_sec: 64 << 20,
    idle: Duration::from_secs(60),
    max_sessions: 5,
    max_sessions_per_key: 2,
    max_sessions_per_prefix: 3,
    unbound_ttl: Duration::from_secs(10),
};

fn key(b: u8) -> Fingerprint {
    Fingerprint::from_bytes([b % KEYS + 1; 32])
}

/// Where requests come from: two IPv4 hosts, two addresses of one IPv6 /64 (one prefix), the
/// first IPv4 host as an IPv4-mapped address, loopback.
fn observed(b: u8) -> SocketAddr {
    let ips: [IpAddr; 6] = [
        Ipv4Addr::new(192, 0, 2, 1).into(),
        Ipv4Addr::new(198, 51, 100, 7).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1).into(),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0xffff, 0, 0, 9).into(),
        Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped().into(),
        Ipv4Addr::LOCALHOST.into(),
    ];
    SocketAddr::new(ips[usize::from(b) % ips.len()], 4000 + u16::from(b % 4))
}

/// Rate-limit bookkeeping: how many requests got through per key since the start.
struct Budget<K>(HashMap<K, f64>);

impl<K> Default for Budget<K> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<K: std::hash::Hash + Eq + std::fmt::Debug> Budget<K> {
    fn charge(&mut self, k: K, (burst, rate): (f64, f64), elapsed: f64, what: &str) {
        let n = self.0.entry(k).or_insert(0.0);
        *n += 1.0;
        assert!(
            *n <= burst + rate * elapsed + 1e-6,
            "{what}: {n} allowed in {elapsed} s (burst {burst}, {rate}/s)"
        );
    }
}

/// What decides a relay session's life: when it opened, its last sign of life (a proven bind,
/// or data from a proven address), and each side's ticket, proven address and bind counter.
struct RelaySession {
    owner: Owner,
    created: Instant,
    last: Instant,
    sides: [(Ticket, Option<SocketAddr>, u64); 2],
    alive: bool,
}

fn encodes(msg: &ServerMsg, what: &str) {
    if let Err(e) = wire::encode(msg, MAX_MSG_LEN) {
        panic!("{what} does not fit a frame: {e}");
    }
}

struct Sim {
    core: Core,
    relay: SharedRelay,
    relay_up: bool,
    t0: Instant,
    now: Instant,
    // The model.
    hosts: HashMap<AccessCode, (Fingerprint, u64)>,
    by_key: HashMap<Fingerprint, AccessCode>,
    quarantine: HashMap<AccessCode, Quarantined>,
    /// Online hosts: code → the registration serving it.
    online: HashMap<AccessCode, PushId>,
    /// Registrations still open: (code, id).
    registrations: Vec<(AccessCode, PushId)>,
    /// What the store holds after every change the core handed out.
    persisted: HashMap<AccessCode, HostRecord>,
    persisted_quarantine: HashMap<AccessCode, Quarantined>,
    resolve_key: Budget<Fingerprint>,
    resolve_prefix: Budget<Prefix>,
    register_key: Budget<Fingerprint>,
    new_code_prefix: Budget<Prefix>,
    /// Connections open now, by their source address.
    connections: Vec<SocketAddr>,
    relay_sessions: Vec<RelaySession>,
    /// The answer to an unreachable code, with the code taken out: the same for all.
    unavailable: Option<(Refusal, String)>,
    /// Source tags handed to hosts, by the controller's prefix.
    tags: HashMap<Prefix, SourceTag>,
    refusals: Refusals,
    registered: u64,
    resolved: u64,
    restarts: u64,
}

impl Sim {
    fn new() -> Self {
        let t0 = Instant::now();
        let relay: SharedRelay = Arc::new(Mutex::new(Relay::new(RELAY_LIMITS, t0)));
        let registry = Registry::new(
            Duration::from_secs(FORGET_AFTER),
            Duration::from_secs(QUARANTINE),
        );
        Self {
            core: Core::new(registry, Some(relay.clone()), [0x5a; 32]),
            relay,
            relay_up: true,
            t0,
            now: t0,
            hosts: HashMap::new(),
            by_key: HashMap::new(),
            quarantine: HashMap::new(),
            online: HashMap::new(),
            registrations: Vec::new(),
            persisted: HashMap::new(),
            persisted_quarantine: HashMap::new(),
            resolve_key: Budget::default(),
            resolve_prefix: Budget::default(),
            register_key: Budget::default(),
            new_code_prefix: Budget::default(),
            connections: Vec::new(),
            relay_sessions: Vec::new(),
            unavailable: None,
            tags: HashMap::new(),
            refusals: Refusals::default(),
            registered: 0,
            resolved: 0,
            restarts: 0,
        }
    }

    fn unix(&self) -> u64 {
        UNIX0 + (self.now - self.t0).as_secs()
    }

    fn at(&self) -> Now {
        Now {
            instant: self.now,
            unix: self.unix(),
        }
    }

    fn elapsed(&self) -> f64 {
        (self.now - self.t0).as_secs_f64()
    }

    fn ports(&self) -> Ports {
        Ports {
            stun: Some(STUN_PORT),
            relay: self.relay_up.then_some(RELAY_PORT),
        }
    }

    fn relay(&self) -> MutexGuard<'_, Relay> {
        // A panic while it is held ends the run, so it is never poisoned.
        self.relay.lock().expect("the relay lock is not poisoned")
    }

    /// Takes every change the core handed to the store and applies it as `Store` does; returns
    /// the registry's changes (session records, which every relayed look-up writes, are not
    /// the registry's; an operator's changes never happen here).
    fn drain_store(&mut self) -> Vec<StoreOp> {
        let ops: Vec<StoreOp> = std::iter::from_fn(|| self.core.poll_store())
            .filter(|op| !matches!(op, StoreOp::Session(_)))
            .collect();
        for op in &ops {
            match op {
                StoreOp::Upsert(code, rec) => {
                    self.persisted.insert(*code, *rec);
                    self.persisted_quarantine.remove(code);
                }
                StoreOp::Expired(expired) => {
                    for (code, q) in &expired.quarantined {
                        self.persisted.remove(code);
                        self.persisted_quarantine.insert(*code, *q);
                    }
                    for code in &expired.released {
                        self.persisted_quarantine.remove(code);
                    }
                }
                other => panic!("no operator acts here, yet the core wrote {other:?}"),
            }
        }
        ops
    }

    /// A request from `from` on a connection authenticated with `key`, as the server's stream
    /// handler reads it.
    fn message(&mut self, key: Fingerprint, from: SocketAddr, body: &[u8], rng: &[u8]) {
        let frame = framed(body);
        let msg = match wire::decode::<ClientMsg>(&frame, MAX_MSG_LEN) {
            Ok(Some((msg, used))) => {
                assert_eq!(used, frame.len());
                msg
            }
            Ok(None) => panic!("a whole frame reported as incomplete"),
            Err(e) => {
                let answer = self.core.bad_request(&e.to_string());
                assert!(matches!(
                    answer,
                    ServerMsg::Refused {
                        reason: Refusal::BadRequest,
                        ..
                    }
                ));
                self.refusals.bad_request += 1;
                encodes(&answer, "a refusal");
                return;
            }
        };
        match msg {
            ClientMsg::Register { lan_addrs } => self.register(key, from, &lan_addrs, rng),
            ClientMsg::Resolve {
                code,
                lan_addrs,
                relay_only,
            } => self.resolve(key, from, code, &lan_addrs, relay_only),
            ClientMsg::Enroll { token } => self.enroll(key, from, &token),
            // Kept in memory for the console only: nothing for the store, no answer to check.
            ClientMsg::Report { version, mapping } => {
                self.core.report(&key, &version, mapping);
                assert!(self.drain_store().is_empty(), "a report changed the store");
            }
        }
    }

    /// No token was ever issued here, so every enrollment is refused; one that the limits let
    /// through is charged to the same budgets as a registration of a new code.
    fn enroll(&mut self, key: Fingerprint, from: SocketAddr, token: &str) {
        let answer = self.core.enroll(self.at(), key, from, token);
        encodes(&answer, "an enrollment answer");
        assert!(self.drain_store().is_empty(), "a refused enrollment changed the store");
        let ServerMsg::Refused { reason, .. } = answer else {
            panic!("an enrollment without any token issued was taken: {answer:?}");
        };
        if reason == Refusal::RateLimited {
            self.refusals.register_rate_limited += 1;
            return;
        }
        assert_eq!(reason, Refusal::NotEnrolled);
        self.refusals.not_enrolled += 1;
        let elapsed = self.elapsed();
        self.register_key
            .charge(key, REGISTER_KEY, elapsed, "registrations per key");
        self.new_code_prefix.charge(
            Prefix::of(from.ip()),
            NEW_CODE_PREFIX,
            elapsed,
            "new codes per prefix",
        );
    }

    fn register(&mut self, key: Fingerprint, from: SocketAddr, lan: &[SocketAddr], rng: &[u8]) {
        let prefix = Prefix::of(from.ip());
        let new_code = !self.by_key.contains_key(&key);
        assert_eq!(self.core.registry().code_of(&key).is_none(), new_code);
        let now = self.unix();
        let ports = self.ports();
        let got = self
            .core
            .register(self.at(), key, from, lan, ports, &mut FuzzRng::new(rng));
        if let Err(refused) = &got
            && refused.why == Why::RegisterRateLimited
        {
            assert_eq!(refused.reason, Refusal::RateLimited);
            self.refusals.register_rate_limited += 1;
            encodes(&refused.to_msg(), "a refusal");
            assert!(self.drain_store().is_empty(), "a refusal changed the store");
            return;
        }
        // The limits let it through.
        let elapsed = self.elapsed();
        self.register_key
            .charge(key, REGISTER_KEY, elapsed, "registrations per key");
        if new_code {
            self.new_code_prefix
                .charge(prefix, NEW_CODE_PREFIX, elapsed, "new codes per prefix");
        }
        // What it must be: the code the key holds, else its quarantined one, else the first
        // of 64 draws that nobody holds and that is not quarantined.
        let want = if let Some(&code) = self.by_key.get(&key) {
            let last = self.hosts[&code].1.max(now);
            Some((code, last, false))
        } else if let Some((&code, _)) = self.quarantine.iter().find(|(_, q)| q.fingerprint == key)
        {
            Some((code, now, true))
        } else {
            let mut draws = FuzzRng::new(rng);
            (0..64)
                .map(|_| AccessCode::random(&mut draws))
                .find(|c| !self.hosts.contains_key(c) && !self.quarantine.contains_key(c))
                .map(|c| (c, now, true))
        };
        let (reg, last_seen) = match (got, want) {
            (Ok(reg), Some((code, last_seen, new))) => {
                assert_eq!((reg.code, reg.new), (code, new), "registration");
                assert_eq!(
                    self.core.registry().get(&code),
                    Some(&HostRecord {
                        fingerprint: key,
                        last_seen
                    }),
                    "registered record"
                );
                (reg, last_seen)
            }
            (Err(refused), None) => {
                assert_eq!(
                    (refused.why, refused.reason),
                    (Why::NoFreeCode, Refusal::Busy)
                );
                self.refusals.no_free_code += 1;
                encodes(&refused.to_msg(), "a refusal");
                return;
            }
            (got, want) => panic!("registration gave {got:?}, expected {want:?}"),
        };
        if let Some(q) = self.quarantine.remove(&reg.code) {
            assert_eq!(q.fingerprint, key, "a quarantined code went to another key");
        }
        self.hosts.insert(reg.code, (key, last_seen));
        self.by_key.insert(key, reg.code);
        assert!(
            !self.registrations.iter().any(|(_, id)| *id == reg.push),
            "a push id handed out twice"
        );
        let replaced = self.online.insert(reg.code, reg.push);
        assert_eq!(reg.replaced, replaced, "the registration replaced");
        self.registrations.push((reg.code, reg.push));
        self.registered += 1;
        assert_eq!(
            self.drain_store(),
            [StoreOp::Upsert(
                reg.code,
                HostRecord {
                    fingerprint: key,
                    last_seen
                }
            )]
        );
        let candidates = proto::rendezvous::candidates(Some(from), lan);
        let given: Vec<SocketAddr> = std::iter::once(from).chain(lan.iter().copied()).collect();
        check_candidates(&candidates, &given, Some(from), &[]);
        assert_eq!(
            reg.answer,
            ServerMsg::Registered {
                code: reg.code,
                observed: from,
                stun_port: Some(STUN_PORT),
            }
        );
        encodes(&reg.answer, "Registered");
    }

    /// A registration's stream ends: the host goes offline unless a newer one replaced it.
    fn disconnect(&mut self, pick: u8) {
        if self.registrations.is_empty() {
            return;
        }
        let (code, id) = self
            .registrations
            .remove(usize::from(pick) % self.registrations.len());
        let current = self.online.get(&code) == Some(&id);
        assert_eq!(self.core.disconnected(self.at(), code, id), current);
        let ops = self.drain_store();
        if !current {
            assert!(
                ops.is_empty(),
                "an old registration's end changed the store"
            );
            return;
        }
        self.online.remove(&code);
        let now = self.unix();
        let (key, last) = self.hosts.get_mut(&code).expect("model knows it");
        *last = (*last).max(now);
        let rec = HostRecord {
            fingerprint: *key,
            last_seen: *last,
        };
        assert_eq!(ops, [StoreOp::Upsert(code, rec)]);
    }

    fn resolve(
        &mut self,
        controller: Fingerprint,
        from: SocketAddr,
        code: AccessCode,
        lan: &[SocketAddr],
        relay_only: bool,
    ) {
        let prefix = Prefix::of(from.ip());
        let ports = self.ports();
        // What the relay must say, known before the core asks it.
        let alive = || self.relay_sessions.iter().filter(|s| s.alive);
        let want_alloc = if alive().count() >= RELAY_LIMITS.max_sessions {
            Err(AllocError::Full)
        } else if alive().filter(|s| s.owner.key == controller).count()
            >= RELAY_LIMITS.max_sessions_per_key
        {
            Err(AllocError::KeyCap)
        } else if alive().filter(|s| s.owner.prefix == prefix).count()
            >= RELAY_LIMITS.max_sessions_per_prefix
        {
            Err(AllocError::PrefixCap)
        } else {
            Ok(())
        };
        let lookup = Lookup {
            key: controller,
            source: from,
            code,
            lan_addrs: lan,
            relay_only,
        };
        let r = self.core.resolve(self.at(), lookup, ports);
        encodes(&r.answer, "a look-up's answer");
        assert!(self.drain_store().is_empty(), "a look-up changed the store");
        let refused = match &r.answer {
            ServerMsg::Refused { reason, message } => Some((*reason, message.clone())),
            _ => None,
        };
        if refused.is_some() {
            assert!(r.push.is_none(), "a refused look-up pushed");
        }
        if let Some((Refusal::RateLimited, _)) = refused {
            self.refusals.resolve_rate_limited += 1;
            return;
        }
        let elapsed = self.elapsed();
        self.resolve_key
            .charge(controller, RESOLVE_KEY, elapsed, "resolves per key");
        self.resolve_prefix
            .charge(prefix, RESOLVE_PREFIX, elapsed, "resolves per prefix");
        let rec = self.core.registry().get(&code).copied();
        assert_eq!(
            rec.map(|r| (r.fingerprint, r.last_seen)),
            self.hosts.get(&code).copied()
        );
        let (Some(rec), Some(&host_push)) = (rec, self.online.get(&code)) else {
            // Unknown, forgotten and offline codes answer alike.
            let (reason, message) = refused.expect("an unreachable code was resolved");
            let answer = (reason, message.replace(&code.to_string(), "CODE"));
            assert_eq!(answer.0, Refusal::Unavailable);
            match &self.unavailable {
                Some(first) => assert_eq!(*first, answer, "unreachable codes answered apart"),
                None => self.unavailable = Some(answer),
            }
            self.refusals.unavailable += 1;
            return;
        };
        if !self.relay_up {
            let (reason, _) = refused.expect("a look-up past a relay that is down");
            assert_eq!(reason, Refusal::Busy);
            self.refusals.relay_down += 1;
            return;
        }
        if let Err(e) = want_alloc {
            let (reason, _) = refused.unwrap_or_else(|| panic!("a look-up past {e:?}"));
            assert_eq!(reason, Refusal::Busy);
            match e {
                AllocError::Full => self.refusals.relay_full += 1,
                AllocError::KeyCap => self.refusals.relay_key_cap += 1,
                AllocError::PrefixCap => self.refusals.relay_prefix_cap += 1,
                _ => panic!("an allocation error the model does not know: {e:?}"),
            }
            return;
        }
        let ServerMsg::Resolved {
            host,
            candidates,
            observed,
            stun_port,
            relay: Some(mine),
        } = r.answer
        else {
            panic!("a look-up of an online host gave {:?}", r.answer);
        };
        assert_eq!(
            (host, observed, stun_port, mine.port),
            (rec.fingerprint, from, Some(STUN_PORT), RELAY_PORT)
        );
        assert!(
            candidates.is_empty(),
            "a look-up with a relay revealed addresses"
        );
        let push = r.push.expect("the host is told");
        assert_eq!(push.to, host_push, "pushed to another registration");
        encodes(&push.msg, "ConnectRequest");
        let ServerMsg::ConnectRequest {
            controller: who,
            candidates,
            relay: Some(theirs),
            source,
        } = push.msg
        else {
            panic!("pushed {:?}", push.msg);
        };
        assert_eq!((who, theirs.port), (controller, RELAY_PORT));
        assert!(
            candidates.is_empty(),
            "a push with a relay revealed addresses"
        );
        assert_ne!(theirs.ticket.token, mine.ticket.token);
        let tag = *self.tags.entry(prefix).or_insert(source);
        assert_eq!(tag, source, "one prefix, two source tags");
        assert!(
            !self.tags.iter().any(|(p, t)| *p != prefix && *t == source),
            "two prefixes, one source tag"
        );
        self.resolved += 1;
        self.relay_sessions.push(RelaySession {
            owner: Owner {
                key: controller,
                prefix,
            },
            created: self.now,
            last: self.now,
            sides: [(theirs.ticket, None, 0), (mine.ticket, None, 0)],
            alive: true,
        });
        let candidates = proto::rendezvous::candidates(Some(from), lan);
        let given: Vec<SocketAddr> = std::iter::once(from).chain(lan.iter().copied()).collect();
        check_candidates(&candidates, &given, Some(from), &[]);
    }

    /// The core's sweep: online hosts are seen now, then expiry forgets and releases.
    fn sweep(&mut self) {
        let now = self.unix();
        self.core.sweep(self.at());
        let mut touched: Vec<StoreOp> = Vec::new();
        let mut online: Vec<AccessCode> = self.online.keys().copied().collect();
        online.sort();
        for code in online {
            let (key, last) = self.hosts.get_mut(&code).expect("an online host is known");
            *last = (*last).max(now);
            touched.push(StoreOp::Upsert(
                code,
                HostRecord {
                    fingerprint: *key,
                    last_seen: *last,
                },
            ));
        }
        let mut quarantined: Vec<(AccessCode, Quarantined)> = Vec::new();
        let forgotten: Vec<AccessCode> = self
            .hosts
            .iter()
            .filter(|(c, (_, last))| {
                now.saturating_sub(*last) > FORGET_AFTER && !self.online.contains_key(*c)
            })
            .map(|(c, _)| *c)
            .collect();
        for code in forgotten {
            let (key, _) = self.hosts.remove(&code).expect("listed above");
            self.by_key.remove(&key);
            let q = Quarantined {
                fingerprint: key,
                until: now + QUARANTINE,
            };
            self.quarantine.insert(code, q);
            quarantined.push((code, q));
        }
        let mut released: Vec<AccessCode> = self
            .quarantine
            .iter()
            .filter(|(_, q)| q.until <= now)
            .map(|(c, _)| *c)
            .collect();
        self.quarantine.retain(|_, q| q.until > now);
        quarantined.sort_by_key(|(c, _)| *c);
        released.sort();
        let mut ops = self.drain_store();
        let expired = match ops.last() {
            Some(StoreOp::Expired(_)) => match ops.pop() {
                Some(StoreOp::Expired(e)) => Some(e),
                _ => None,
            },
            _ => None,
        };
        assert_eq!(ops, touched, "online hosts marked seen");
        let (mut got_q, mut got_r) = match expired {
            Some(e) => {
                assert!(
                    !e.quarantined.is_empty() || !e.released.is_empty(),
                    "an empty expiry was written"
                );
                (e.quarantined, e.released)
            }
            None => (Vec::new(), Vec::new()),
        };
        got_q.sort_by_key(|(c, _)| *c);
        got_r.sort();
        assert_eq!(got_q, quarantined, "codes quarantined");
        assert_eq!(got_r, released, "codes released");
        for (c, _) in &got_q {
            assert!(!self.online.contains_key(c), "an online host was forgotten");
        }
    }

    fn connection(&mut self, from: SocketAddr, validated: bool) {
        let prefix = Prefix::of(from.ip());
        let held = self
            .connections
            .iter()
            .filter(|a| Prefix::of(a.ip()) == prefix)
            .count();
        let at_cap =
            held >= MAX_CONNECTIONS_PER_PREFIX || self.connections.len() >= MAX_CONNECTIONS;
        match self.core.connection(from, validated) {
            Admit::Accept => {
                assert!(validated, "an unproven address was accepted");
                assert!(!at_cap, "a connection over the cap was accepted");
                self.connections.push(from);
            }
            Admit::Refuse => {
                assert!(
                    validated && at_cap,
                    "a connection under the cap was refused"
                );
                self.refusals.connection_cap += 1;
            }
            Admit::Retry => assert!(!validated, "a validated address was asked to retry"),
        }
    }

    fn close(&mut self, pick: u8) {
        if self.connections.is_empty() {
            return;
        }
        let from = self
            .connections
            .remove(usize::from(pick) % self.connections.len());
        self.core.connection_closed(from);
    }

    fn relay_sweep(&mut self) {
        let mut want = 0;
        for s in self.relay_sessions.iter_mut().filter(|s| s.alive) {
            let unbound = s.sides.iter().any(|side| side.1.is_none())
                && self.now.saturating_duration_since(s.created) > RELAY_LIMITS.unbound_ttl;
            if unbound || self.now.saturating_duration_since(s.last) > RELAY_LIMITS.idle {
                s.alive = false;
                want += 1;
            }
        }
        let now = self.now;
        assert_eq!(self.relay().sweep(now), want, "relay sessions closed");
    }

    /// A datagram to the relay port: a proven bind or data under a session's ticket, or raw
    /// bytes. Every answer is at most the datagram's size and goes back to its sender, unless
    /// it is data from a proven address.
    fn relay_datagram(&mut self, from: SocketAddr, r: &mut Reader) {
        let kind = r.u8() % 3;
        let pick = usize::from(r.u8());
        let side = usize::from(r.bool());
        let n = self.relay_sessions.len();
        let mut buf = match (kind, n) {
            (0, 1..) => {
                let (ticket, _, counter) = self.relay_sessions[pick % n].sides[side];
                relay::bind_frame(&ticket, counter + u64::from(r.u8() % 3)).to_vec()
            }
            (1, 1..) => {
                let (ticket, _, _) = self.relay_sessions[pick % n].sides[side];
                let mut d = relay::data_header(ticket.token).to_vec();
                d.extend_from_slice(r.blob16());
                d
            }
            _ => r.blob16().to_vec(),
        };
        let len = buf.len();
        let now = self.now;
        let action = self.relay().on_datagram(now, from, &mut buf);
        if let Action::Send { to, len: sent } = action {
            assert!(sent <= len, "the relay answered {len} bytes with {sent}");
            assert!(to == from || buf[0] == 0x80, "a notice to someone else");
        }
        // The model of liveness: a proven bind, or data from the side's proven address.
        if n == 0 || kind == 2 {
            return;
        }
        let s = &mut self.relay_sessions[pick % n];
        if !s.alive {
            assert_eq!(action, Action::Drop, "a closed session answered");
            return;
        }
        if kind == 0 {
            let counter = u64::from_be_bytes(buf[17..25].try_into().expect("8 bytes"));
            let proven = counter > s.sides[side].2;
            assert_eq!(
                action,
                if proven {
                    Action::Send { to: from, len: 17 }
                } else {
                    Action::Drop
                },
                "bind"
            );
            if proven {
                s.sides[side].1 = Some(from);
                s.sides[side].2 = counter;
                s.last = now;
            }
        } else if s.sides[side].1 == Some(from) {
            s.last = now;
            if let Some(to) = s.sides[1 - side].1 {
                assert!(
                    matches!(action, Action::Send { to: t, .. } if t == to)
                        || action == Action::Drop,
                    "data went elsewhere than the other side"
                );
            }
        } else {
            assert!(matches!(
                action,
                Action::Drop | Action::Send { len: 17, .. }
            ));
        }
    }

    /// The core as seen through its interface (registry, online table, store, snapshot)
    /// equals the model.
    fn check(&mut self) {
        assert!(self.core.poll_store().is_none(), "a change left unwritten");
        let registry = self.core.registry();
        assert_eq!(registry.len(), self.hosts.len());
        assert_eq!(self.by_key.len(), self.hosts.len());
        for k in 0..KEYS {
            let key = key(k);
            assert_eq!(registry.code_of(&key), self.by_key.get(&key).copied());
        }
        for (code, (key, last)) in &self.hosts {
            assert_eq!(self.by_key.get(key), Some(code), "a key with two codes");
            let rec = HostRecord {
                fingerprint: *key,
                last_seen: *last,
            };
            assert_eq!(registry.get(code), Some(&rec));
            assert_eq!(self.persisted.get(code), Some(&rec), "the store lags");
            assert!(!self.quarantine.contains_key(code));
            assert_eq!(self.core.online(code), self.online.get(code).copied());
        }
        assert_eq!(
            self.persisted.len(),
            self.hosts.len(),
            "the store holds more"
        );
        assert_eq!(
            self.persisted_quarantine, self.quarantine,
            "the store's quarantine"
        );
        let alive = self.relay_sessions.iter().filter(|s| s.alive).count() as u64;
        assert_eq!(self.relay().counters().sessions_active, alive);
        let s = self.core.snapshot();
        assert_eq!(
            (s.hosts_known, s.hosts_online, s.codes_quarantined),
            (self.hosts.len(), self.online.len(), self.quarantine.len())
        );
        assert_eq!(s.connections, self.connections.len());
        assert_eq!(
            (s.registrations, s.resolves, s.service_restarts),
            (self.registered, self.resolved, self.restarts)
        );
        assert_eq!(s.refusals, self.refusals, "refusals by reason");
        assert_eq!(s.relay.map(|c| c.sessions_active), Some(alive));
        assert_eq!(s.hosts.len(), self.hosts.len());
        for row in &s.hosts {
            assert_eq!(self.hosts.get(&row.code).map(|h| h.0), Some(row.key));
            assert_eq!(row.online.is_some(), self.online.contains_key(&row.code));
        }
    }

    /// A code to look up: one the registry knows or knew, or any.
    fn pick_code(&self, r: &mut Reader) -> AccessCode {
        let pick = r.u8();
        let mut known: Vec<AccessCode> = self
            .hosts
            .keys()
            .chain(self.quarantine.keys())
            .copied()
            .collect();
        known.sort();
        match known.get(usize::from(pick)) {
            Some(c) => *c,
            None => AccessCode::random(&mut FuzzRng::new(r.bytes(8))),
        }
    }
}

fn run(data: &[u8]) {
    let mut sim = Sim::new();
    let mut r = Reader::new(data);
    let mut ops = 0;
    while !r.is_empty() && ops < 300 {
        ops += 1;
        match r.u8() % 12 {
            0 => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let rng = r.blob8();
                sim.register(k, from, &[], rng);
            }
            1 => sim.disconnect(r.u8()),
            2 => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let code = sim.pick_code(&mut r);
                sim.resolve(k, from, code, &[], r.bool());
            }
            3 => sim.sweep(),
            4 => {
                let v = r.u16();
                sim.now += if v < 0x8000 {
                    Duration::from_millis(u64::from(v))
                } else {
                    Duration::from_secs(u64::from(v - 0x8000))
                };
            }
            5 => {
                let (from, validated) = (observed(r.u8()), r.bool());
                sim.connection(from, validated);
            }
            6 => sim.close(r.u8()),
            7 => {
                sim.core.service_restarted();
                sim.restarts += 1;
            }
            8 => sim.relay_sweep(),
            9 => sim.relay_up = !sim.relay_up,
            11 => {
                let from = observed(r.u8());
                sim.relay_datagram(from, &mut r);
            }
            _ => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let body = r.blob16();
                let rng = r.blob8();
                sim.message(k, from, body, rng);
            }
        }
        sim.check();
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut w = Writer::new();
    let mut out = Vec::new();
    let rng_a = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let rng_b = [9u8, 9, 9, 9, 9, 9, 9, 9];
    // Two hosts register and a controller resolves one; the host leaves, is forgotten, its
    // code is quarantined from a key drawing the same numbers and given back to its owner.
    w.u8(0).u8(0).u8(0).blob8(&rng_a);
    w.u8(0).u8(1).u8(1).blob8(&rng_b);
    w.u8(2).u8(2).u8(2).u8(0).bool(false);
    // Both sides bind at the relay, data goes across, a replayed bind and a stranger's data.
    w.u8(11).u8(2).u8(0).u8(0).bool(false).u8(1);
    w.u8(11).u8(0).u8(0).u8(0).bool(true).u8(2);
    w.u8(11)
        .u8(2)
        .u8(1)
        .u8(0)
        .bool(false)
        .blob16(b"quic packet");
    w.u8(11).u8(1).u8(0).u8(0).bool(true).u8(0);
    w.u8(11)
        .u8(1)
        .u8(1)
        .u8(0)
        .bool(true)
        .blob16(b"not from here");
    w.u8(11).u8(3).u8(2).u8(0).bool(false).blob16(&[0x81; 41]);
    w.u8(1).u8(0);
    w.u8(4).u16(0x8000 + 200);
    w.u8(3);
    w.u8(0).u8(3).u8(3).blob8(&rng_a);
    w.u8(0).u8(0).u8(0).blob8(&rng_b);
    w.u8(4).u16(0x8000 + 2000).u8(3);
    out.push(w.finish());
    // The same through request messages in wire frames.
    let code = AccessCode::random(&mut FuzzRng::new(&rng_a));
    let lan: Vec<SocketAddr> = vec![
        "10.0.0.5:4000".parse().expect("address"),
        "[fe80::1]:4000".parse().expect("address"),
        "127.0.0.1:4000".parse().expect("address"),
    ];
    let register = wire::encode(
        &ClientMsg::Register {
            lan_addrs: lan.clone(),
        },
        MAX_MSG_LEN,
    )
    .expect("encodes");
    let resolve = wire::encode(
        &ClientMsg::Resolve {
            code,
            lan_addrs: lan,
            relay_only: true,
        },
        MAX_MSG_LEN,
    )
    .expect("encodes");
    w.u8(10).u8(0).u8(0).blob16(&register[4..]).blob8(&rng_a);
    for k in 1..5 {
        w.u8(10).u8(k).u8(k).blob16(&resolve[4..]).blob8(&[]);
    }
    w.u8(4).u16(0x8000 + 11).u8(8);
    w.u8(10).u8(1).u8(1).blob16(&resolve[4..]).blob8(&[]);
    out.push(w.finish());
    // Rate limits: many resolves from one key and prefix, registrations from one prefix.
    w.u8(0).u8(0).u8(0).blob8(&rng_a);
    for _ in 0..14 {
        w.u8(2).u8(1).u8(1).u8(0).bool(true);
    }
    for k in 0..6 {
        w.u8(0).u8(k).u8(2).blob8(&[k; 8]);
    }
    w.u8(7);
    out.push(w.finish());
    // Connections: validated and not, closes.
    for i in 0..10 {
        w.u8(5).u8(i % 3).bool(i % 2 == 0);
    }
    w.u8(6).u8(0).u8(6).u8(1);
    out.push(w.finish());
    // A draw that collides with a held code, and a generator stuck on one code; the key
    // registers again from elsewhere (the first registration is replaced, its end changes
    // nothing), and a look-up while the relay is down is refused.
    w.u8(0).u8(0).u8(0).blob8(&[0; 8]);
    w.u8(0).u8(1).u8(0).blob8(&[0; 8]);
    w.u8(0).u8(0).u8(1).blob8(&[0; 8]);
    w.u8(1).u8(0);
    w.u8(9);
    w.u8(2).u8(2).u8(2).u8(0).bool(false);
    w.u8(9);
    w.u8(2).u8(2).u8(2).u8(0).bool(false);
    out.push(w.finish());
    out
}

fuzz_target!(
    init: write_seeds_if_asked("rendezvous_core", seeds),
    |data: &[u8]| run(data)
);
