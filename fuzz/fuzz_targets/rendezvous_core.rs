//! The rendezvous server's decisions, driven as its handlers drive them (`server/handlers.rs`)
//! but sans IO, with simulated time and a random number generator the fuzzer controls: request
//! messages decoded from wire frames, registrations (`Policy::allow_register`, then
//! `Registry::register`), hosts going offline (`Registry::touch`), resolves
//! (`Policy::allow_resolve`, then `Relay::allocate` for an online host), connections
//! (`Policy::admit`/`open`/`close`), expiry (`Registry::expire`) and sweeps.
//!
//! Checked against a model kept here:
//! - a key never holds two codes and a code never belongs to two keys;
//! - a key that holds a code gets it again; a forgotten key gets its quarantined code back;
//!   a quarantined code is never given to another key; a fresh code is the first free draw;
//! - online hosts are never forgotten; expiry forgets and releases exactly what is due;
//! - rate limits never let through more than burst + rate × time, per key and per prefix;
//! - connection and relay caps are never exceeded; relay sessions nobody bound close in time;
//! - every answer the server would write fits the protocol's maximum message size.
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use certs::Fingerprint;
use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::{FuzzRng, Reader, Writer, check_candidates, framed, write_seeds_if_asked};
use proto::AccessCode;
use proto::limits::Prefix;
use proto::rendezvous::{self, ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg};
use rendezvous::registry::{HostRecord, Quarantined, Registry};
use rendezvous::relay::{self, Action, AllocError, Limits, Owner, Relay, Ticket};
use rendezvous::server::{Admit, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PREFIX, Policy};
use proto::wire;

const FORGET_AFTER: u64 = 100;
const QUARANTINE: u64 = 1000;
const UNIX0: u64 = 1_700_000_000;
const KEYS: u8 = 6;

/// The request limits of `server::policy` (its module docs): burst, then rate a second.
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

struct Core {
    registry: Registry,
    policy: Policy,
    relay: Relay,
    t0: Instant,
    now: Instant,
    // The model.
    hosts: HashMap<AccessCode, (Fingerprint, u64)>,
    by_key: HashMap<Fingerprint, AccessCode>,
    quarantine: HashMap<AccessCode, Quarantined>,
    /// Online hosts: code → id of the registration that is serving it.
    online: HashMap<AccessCode, u32>,
    /// Registrations still open: (code, id).
    registrations: Vec<(AccessCode, u32)>,
    next_id: u32,
    resolve_key: Budget<Fingerprint>,
    resolve_prefix: Budget<Prefix>,
    register_key: Budget<Fingerprint>,
    new_code_prefix: Budget<Prefix>,
    connections: HashMap<Prefix, usize>,
    relay_sessions: Vec<RelaySession>,
}

impl Core {
    fn new() -> Self {
        let t0 = Instant::now();
        Self {
            registry: Registry::new(
                Duration::from_secs(FORGET_AFTER),
                Duration::from_secs(QUARANTINE),
            ),
            policy: Policy::default(),
            relay: Relay::new(RELAY_LIMITS, t0),
            t0,
            now: t0,
            hosts: HashMap::new(),
            by_key: HashMap::new(),
            quarantine: HashMap::new(),
            online: HashMap::new(),
            registrations: Vec::new(),
            next_id: 0,
            resolve_key: Budget::default(),
            resolve_prefix: Budget::default(),
            register_key: Budget::default(),
            new_code_prefix: Budget::default(),
            connections: HashMap::new(),
            relay_sessions: Vec::new(),
        }
    }

    fn unix(&self) -> u64 {
        UNIX0 + (self.now - self.t0).as_secs()
    }

    fn elapsed(&self) -> f64 {
        (self.now - self.t0).as_secs_f64()
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
                let refused = ServerMsg::Refused {
                    reason: Refusal::BadRequest,
                    message: e.to_string(),
                };
                wire::encode(&refused, MAX_MSG_LEN).expect("a refusal fits");
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
            _ => {}
        }
    }

    fn register(&mut self, key: Fingerprint, from: SocketAddr, lan: &[SocketAddr], rng: &[u8]) {
        let prefix = Prefix::of(from.ip());
        let new_code = self.registry.code_of(&key).is_none();
        assert_eq!(new_code, !self.by_key.contains_key(&key));
        if !self.policy.allow_register(key, prefix, new_code, self.now) {
            return;
        }
        let elapsed = self.elapsed();
        self.register_key
            .charge(key, REGISTER_KEY, elapsed, "registrations per key");
        if new_code {
            self.new_code_prefix
                .charge(prefix, NEW_CODE_PREFIX, elapsed, "new codes per prefix");
        }
        let now = self.unix();
        let got = self.registry.register(key, now, &mut FuzzRng::new(rng));
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
        let reg = match (got, want) {
            (Ok(reg), Some((code, last_seen, new))) => {
                assert_eq!(
                    (
                        reg.code,
                        reg.record.fingerprint,
                        reg.record.last_seen,
                        reg.new
                    ),
                    (code, key, last_seen, new),
                    "registration"
                );
                reg
            }
            (Err(_), None) => return,
            (got, want) => panic!("registration gave {got:?}, expected {want:?}"),
        };
        if let Some(q) = self.quarantine.remove(&reg.code) {
            assert_eq!(q.fingerprint, key, "a quarantined code went to another key");
        }
        self.hosts.insert(reg.code, (key, reg.record.last_seen));
        self.by_key.insert(key, reg.code);
        let id = self.next_id;
        self.next_id += 1;
        self.online.insert(reg.code, id);
        self.registrations.push((reg.code, id));
        let candidates = proto::candidates(Some(from), lan);
        let given: Vec<SocketAddr> = std::iter::once(from).chain(lan.iter().copied()).collect();
        check_candidates(&candidates, &given, Some(from), &[]);
        let welcome = ServerMsg::Registered {
            code: reg.code,
            observed: from,
            stun_port: Some(3479),
        };
        wire::encode(&welcome, MAX_MSG_LEN).expect("Registered fits");
    }

    /// A registration's stream ends: the host goes offline unless a newer one replaced it.
    fn disconnect(&mut self, pick: u8) {
        if self.registrations.is_empty() {
            return;
        }
        let (code, id) = self
            .registrations
            .remove(usize::from(pick) % self.registrations.len());
        if self.online.get(&code) != Some(&id) {
            return;
        }
        self.online.remove(&code);
        let now = self.unix();
        let rec = self
            .registry
            .touch(&code, now)
            .expect("an online host is known");
        let (key, last) = self.hosts.get_mut(&code).expect("model knows it");
        *last = (*last).max(now);
        assert_eq!(
            rec,
            HostRecord {
                fingerprint: *key,
                last_seen: *last
            }
        );
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
        if !self.policy.allow_resolve(controller, prefix, self.now) {
            return;
        }
        let elapsed = self.elapsed();
        self.resolve_key
            .charge(controller, RESOLVE_KEY, elapsed, "resolves per key");
        self.resolve_prefix
            .charge(prefix, RESOLVE_PREFIX, elapsed, "resolves per prefix");
        let rec = self.registry.get(&code).copied();
        assert_eq!(
            rec.map(|r| (r.fingerprint, r.last_seen)),
            self.hosts.get(&code).copied()
        );
        let (Some(rec), true) = (rec, self.online.contains_key(&code)) else {
            return;
        };
        let owner = Owner {
            key: controller,
            prefix,
        };
        let alive = || self.relay_sessions.iter().filter(|s| s.alive);
        let want = if alive().count() >= RELAY_LIMITS.max_sessions {
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
        let got = self.relay.allocate(self.now, owner);
        assert_eq!(got.map(|_| ()), want, "relay allocation");
        let Ok(tickets) = got else {
            return;
        };
        let ticket = tickets[1];
        self.relay_sessions.push(RelaySession {
            owner,
            created: self.now,
            last: self.now,
            sides: tickets.map(|t| (t, None, 0)),
            alive: true,
        });
        let candidates = proto::candidates(Some(from), lan);
        let given: Vec<SocketAddr> = std::iter::once(from).chain(lan.iter().copied()).collect();
        check_candidates(&candidates, &given, Some(from), &[]);
        let answer = ServerMsg::Resolved {
            host: rec.fingerprint,
            candidates: if relay_only { Vec::new() } else { candidates },
            observed: from,
            stun_port: Some(3479),
            relay: Some(relay::RelayOffer { port: 3480, ticket }),
        };
        wire::encode(&answer, MAX_MSG_LEN).expect("Resolved fits");
    }

    fn expire(&mut self) {
        let now = self.unix();
        let online = self.online.clone();
        let mut got = self.registry.expire(now, |c| online.contains_key(c));
        let mut quarantined: Vec<(AccessCode, Quarantined)> = Vec::new();
        let forgotten: Vec<AccessCode> = self
            .hosts
            .iter()
            .filter(|(c, (_, last))| {
                now.saturating_sub(*last) > FORGET_AFTER && !online.contains_key(*c)
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
        got.quarantined.sort_by_key(|(c, _)| *c);
        got.released.sort();
        assert_eq!(got.quarantined, quarantined, "codes quarantined");
        assert_eq!(got.released, released, "codes released");
        for (c, _) in &got.quarantined {
            assert!(!online.contains_key(c), "an online host was forgotten");
        }
    }

    fn connection(&mut self, prefix: Prefix, validated: bool) {
        let held = self.connections.get(&prefix).copied().unwrap_or(0);
        let total: usize = self.connections.values().sum();
        let at_cap = held >= MAX_CONNECTIONS_PER_PREFIX || total >= MAX_CONNECTIONS;
        match self.policy.admit(prefix, validated) {
            Admit::Accept => {
                assert!(!at_cap, "a connection over the cap was accepted");
                self.policy.open(prefix);
                *self.connections.entry(prefix).or_insert(0) += 1;
            }
            Admit::Refuse => assert!(at_cap, "a connection under the cap was refused"),
            Admit::Retry => assert!(!validated, "a validated address was asked to retry"),
        }
    }

    fn close(&mut self, pick: u8) {
        let mut open: Vec<Prefix> = self
            .connections
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(p, _)| *p)
            .collect();
        if open.is_empty() {
            return;
        }
        open.sort();
        let p = open[usize::from(pick) % open.len()];
        self.policy.close(&p);
        *self.connections.get_mut(&p).expect("listed") -= 1;
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
        assert_eq!(self.relay.sweep(self.now), want, "relay sessions closed");
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
        let action = self.relay.on_datagram(self.now, from, &mut buf);
        if let Action::Send { to, len: sent } = action {
            assert!(sent <= len, "the relay answered {len} bytes with {sent}");
            assert!(to == from || buf[0] == 0x80, "a notice to someone else");
        }
        // The model of liveness: a proven bind, or data from the side's proven address.
        if n == 0 || kind == 2 {
            return;
        }
        let now = self.now;
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

    /// The registry as seen through its interface equals the model.
    fn check(&self) {
        assert_eq!(self.registry.len(), self.hosts.len());
        assert_eq!(self.by_key.len(), self.hosts.len());
        for k in 0..KEYS {
            let key = key(k);
            assert_eq!(self.registry.code_of(&key), self.by_key.get(&key).copied());
        }
        for (code, (key, last)) in &self.hosts {
            assert_eq!(self.by_key.get(key), Some(code), "a key with two codes");
            assert_eq!(
                self.registry.get(code),
                Some(&HostRecord {
                    fingerprint: *key,
                    last_seen: *last
                })
            );
            assert!(!self.quarantine.contains_key(code));
        }
        assert_eq!(
            self.relay.counters().sessions_active,
            self.relay_sessions.iter().filter(|s| s.alive).count() as u64
        );
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
    let mut core = Core::new();
    let mut r = Reader::new(data);
    let mut ops = 0;
    while !r.is_empty() && ops < 300 {
        ops += 1;
        match r.u8() % 12 {
            0 => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let rng = r.blob8();
                core.register(k, from, &[], rng);
            }
            1 => core.disconnect(r.u8()),
            2 => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let code = core.pick_code(&mut r);
                core.resolve(k, from, code, &[], r.bool());
            }
            3 => core.expire(),
            4 => {
                let v = r.u16();
                core.now += if v < 0x8000 {
                    Duration::from_millis(u64::from(v))
                } else {
                    Duration::from_secs(u64::from(v - 0x8000))
                };
            }
            5 => {
                let (from, validated) = (observed(r.u8()), r.bool());
                core.connection(Prefix::of(from.ip()), validated);
            }
            6 => core.close(r.u8()),
            7 => core.policy.sweep(core.now),
            8 => core.relay_sweep(),
            11 => {
                let from = observed(r.u8());
                core.relay_datagram(from, &mut r);
            }
            9 => {
                let code = core.pick_code(&mut r);
                let now = core.unix();
                let got = core.registry.touch(&code, now);
                match core.hosts.get_mut(&code) {
                    Some((key, last)) => {
                        *last = (*last).max(now);
                        assert_eq!(
                            got,
                            Some(HostRecord {
                                fingerprint: *key,
                                last_seen: *last
                            })
                        );
                    }
                    None => assert_eq!(got, None),
                }
            }
            _ => {
                let (k, from) = (key(r.u8()), observed(r.u8()));
                let body = r.blob16();
                let rng = r.blob8();
                core.message(k, from, body, rng);
            }
        }
        core.check();
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
    // A draw that collides with a held code, and a generator stuck on one code.
    w.u8(0).u8(0).u8(0).blob8(&[0; 8]);
    w.u8(0).u8(1).u8(0).blob8(&[0; 8]);
    w.u8(9).u8(0);
    out.push(w.finish());
    out
}

fuzz_target!(
    init: write_seeds_if_asked("rendezvous_core", seeds),
    |data: &[u8]| run(data)
);
