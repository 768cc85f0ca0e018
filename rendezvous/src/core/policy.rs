//! What the rendezvous allows whom, and how often: the request limits, as plain state with
//! `now` passed in (tested on simulated time below).
//!
//! | request | limited per | burst, then rate |
//! |---|---|---|
//! | resolve | controller key | 10, then 1 per 2 s |
//! | resolve | source prefix | 30, then 2 a second |
//! | register (any) | host key | 5, then 1 per 5 s |
//! | register that creates a code | source prefix | 10, then 1 a minute |
//! | connections open at once | source prefix | 64 |
//!
//! Every new connection first proves its address with a QUIC Retry (a packet smaller than the
//! Initial that asked for it): the server sends nothing bigger to an address it has not heard
//! back from, so it amplifies nothing, and spoofed handshakes fill no quota.
//!
//! Keys cost nothing to make, hence limits by source prefix ([`Prefix`]) beside those by key.

use std::time::Instant;

use certs::Fingerprint;

use proto::limits::{Caps, KeyedBuckets, Prefix};

/// Most connections one source prefix may hold open at once.
pub const MAX_CONNECTIONS_PER_PREFIX: usize = 64;
/// Most connections at once in total.
pub const MAX_CONNECTIONS: usize = 20_000;

/// The request limits (see the module docs).
#[derive(Debug)]
pub struct Policy {
    resolve_key: KeyedBuckets<Fingerprint>,
    resolve_prefix: KeyedBuckets<Prefix>,
    register_key: KeyedBuckets<Fingerprint>,
    new_code_prefix: KeyedBuckets<Prefix>,
    connections: Caps<Prefix>,
    total_connections: usize,
}

/// Whether to take a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// Ask the client to prove its address first (a QUIC Retry).
    Retry,
    Refuse,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            resolve_key: KeyedBuckets::new(0.5, 10.0),
            resolve_prefix: KeyedBuckets::new(2.0, 30.0),
            register_key: KeyedBuckets::new(0.2, 5.0),
            new_code_prefix: KeyedBuckets::new(1.0 / 60.0, 10.0),
            connections: Caps::new(MAX_CONNECTIONS_PER_PREFIX),
            total_connections: 0,
        }
    }
}

impl Policy {
    /// A resolve by `key` from `prefix`: both budgets must have room, and only then are both
    /// charged.
    pub fn allow_resolve(&mut self, key: Fingerprint, prefix: Prefix, now: Instant) -> bool {
        if !self.resolve_key.has(&key, now) || !self.resolve_prefix.has(&prefix, now) {
            return false;
        }
        self.resolve_key.take(key, now);
        self.resolve_prefix.take(prefix, now);
        true
    }

    /// A registration by `key` from `prefix`; `new_code` when the key holds no code yet.
    pub fn allow_register(
        &mut self,
        key: Fingerprint,
        prefix: Prefix,
        new_code: bool,
        now: Instant,
    ) -> bool {
        if new_code && !self.new_code_prefix.has(&prefix, now) {
            return false;
        }
        if !self.register_key.take(key, now) {
            return false;
        }
        if new_code {
            self.new_code_prefix.take(prefix, now);
        }
        true
    }

    /// Whether to take a connection from `prefix` (`validated`: its address is proven).
    pub fn admit(&self, prefix: Prefix, validated: bool) -> Admit {
        if !validated {
            Admit::Retry
        } else if self.total_connections >= MAX_CONNECTIONS || !self.connections.has_room(&prefix) {
            Admit::Refuse
        } else {
            Admit::Accept
        }
    }

    /// Counts a connection taken (until [`Self::close`]).
    pub fn open(&mut self, prefix: Prefix) {
        self.connections.acquire(prefix);
        self.total_connections += 1;
    }

    pub fn close(&mut self, prefix: &Prefix) {
        self.connections.release(prefix);
        self.total_connections = self.total_connections.saturating_sub(1);
    }

    /// Connections open now.
    pub fn connections(&self) -> usize {
        self.total_connections
    }

    /// Forgets the buckets of quiet keys and prefixes.
    pub fn sweep(&mut self, now: Instant) {
        self.resolve_key.sweep(now);
        self.resolve_prefix.sweep(now);
        self.register_key.sweep(now);
        self.new_code_prefix.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(n: u8) -> Fingerprint {
        Fingerprint::from_bytes([n; 32])
    }

    fn prefix(n: u8) -> Prefix {
        Prefix::of(std::net::IpAddr::from([203, 0, 113, n]))
    }

    #[test]
    fn resolves_are_limited_per_key_and_per_prefix() {
        let t0 = Instant::now();
        let mut p = Policy::default();
        let ok = (0..50)
            .filter(|_| p.allow_resolve(key(1), prefix(1), t0))
            .count();
        assert_eq!(ok, 10, "one key: the burst");
        // Fresh keys from the same prefix: the prefix's burst (30, 10 of it spent) caps them.
        let ok = (2..60u8)
            .filter(|&k| p.allow_resolve(key(k), prefix(1), t0))
            .count();
        assert_eq!(ok, 20);
        // Two seconds later: one more for the key, four for the prefix (a refused attempt is
        // charged to nobody).
        let t1 = t0 + Duration::from_secs(2);
        assert!(p.allow_resolve(key(1), prefix(1), t1));
        assert!(!p.allow_resolve(key(1), prefix(1), t1));
        let ok = (100..120u8)
            .filter(|&k| p.allow_resolve(key(k), prefix(1), t1))
            .count();
        assert_eq!(ok, 3);
        assert!(p.allow_resolve(key(1), prefix(2), t1 + Duration::from_secs(2)));
    }

    #[test]
    fn new_codes_are_limited_per_prefix_and_registrations_per_key() {
        let t0 = Instant::now();
        let mut p = Policy::default();
        let made = (0..200u8)
            .filter(|&k| p.allow_register(key(k), prefix(1), true, t0))
            .count();
        assert_eq!(made, 10, "a burst of new codes per prefix");
        // A minute later one more.
        let t1 = t0 + Duration::from_secs(61);
        assert!(p.allow_register(key(201), prefix(1), true, t1));
        assert!(!p.allow_register(key(202), prefix(1), true, t1));
        // Known keys re-registering are limited by key only.
        let again = (0..20)
            .filter(|_| p.allow_register(key(1), prefix(1), false, t1))
            .count();
        assert_eq!(again, 5);
        assert!(p.allow_register(key(2), prefix(1), false, t1));
    }

    #[test]
    fn connections_are_capped_per_prefix_and_strangers_retried() {
        let mut p = Policy::default();
        assert_eq!(p.admit(prefix(1), false), Admit::Retry);
        for _ in 0..MAX_CONNECTIONS_PER_PREFIX {
            assert_eq!(p.admit(prefix(1), true), Admit::Accept);
            p.open(prefix(1));
        }
        assert_eq!(p.admit(prefix(1), true), Admit::Refuse);
        assert_eq!(p.admit(prefix(2), false), Admit::Retry);
        assert_eq!(p.admit(prefix(2), true), Admit::Accept);
        p.close(&prefix(1));
        assert_eq!(p.admit(prefix(1), true), Admit::Accept);
    }
}
