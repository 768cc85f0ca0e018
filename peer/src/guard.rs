//! How often the host lets anyone try a password: the host's defence against online guessing,
//! as plain state with `now` passed in.
//!
//! - **Every attempt counts.** An attempt is charged as a failure when the host sends its
//!   challenge, before it could reveal anything about the password; only a proof of the
//!   password takes the charge back. Closing early, timing out or sending garbage all count.
//! - **Per source, back-off that grows.** After `n` charged attempts from a source (a
//!   [`SourceTag`]: the rendezvous's opaque tag of the controller's source prefix for a
//!   relayed connection, [`source_of`] the prefix of a direct one; a prefix is an IPv4 address
//!   or an IPv6 /64), and separately from a controller key, the next
//!   waits `2^(n-1)` seconds (at most [`MAX_BACKOFF`]); a source that stays quiet for
//!   [`FORGET_AFTER`] is forgotten.
//! - **Globally**, attempts are a token bucket ([`GLOBAL_BURST`], then [`GLOBAL_PER_SEC`] a
//!   second), so many sources together get no further.
//! - **Pre-authentication connections** are capped: [`MAX_UNAUTHENTICATED`] at once, and
//!   [`MAX_UNAUTHENTICATED_PER_PREFIX`] from one prefix.
//!
//! Failures never replace the one-time password and never lock the host as a whole: a stranger
//! can slow other strangers but cannot make the host's user read out a new password. (One
//! flooding from many prefixes at once can hold the global bucket empty; that is a denial of
//! service, not a way in, and README's security model says so.)

use std::collections::HashMap;
use std::time::{Duration, Instant};

use certs::Fingerprint;
use proto::limits::{Bucket, Caps, Prefix};
use proto::rendezvous::SourceTag;

/// The source of a connection that came straight from `addr` (not through the relay).
pub fn source_of(addr: std::net::SocketAddr) -> SourceTag {
    SourceTag(Prefix::of(addr.ip()).octets())
}

/// Longest wait imposed on one source.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
/// A source with no attempt for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Attempts a second the host takes from everyone together, after a burst.
pub const GLOBAL_PER_SEC: f64 = 0.5;
pub const GLOBAL_BURST: f64 = 10.0;
/// Connections that have not proven the password, at once.
pub const MAX_UNAUTHENTICATED: usize = 8;
pub const MAX_UNAUTHENTICATED_PER_PREFIX: usize = 2;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    fn wait_until(&self) -> Instant {
        if self.count == 0 {
            return self.last;
        }
        let secs = 1u64 << self.count.saturating_sub(1).min(20);
        self.last + Duration::from_secs(secs).min(MAX_BACKOFF)
    }
}

/// Why an attempt may not go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("too many password attempts from here; try again in {}s", .0.as_secs().max(1))]
    Backoff(Duration),
    #[error("too many password attempts on this host right now; try again shortly")]
    Busy,
}

/// A charged attempt: hand it back with [`GuessGuard::succeeded`] once the password is proven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Attempt {
    key: Fingerprint,
    prefix: SourceTag,
}

/// The host's guessing limits (see the module docs).
#[derive(Debug)]
pub struct GuessGuard {
    by_prefix: HashMap<SourceTag, Failures>,
    by_key: HashMap<Fingerprint, Failures>,
    global: Bucket,
    unauthenticated: Caps<SourceTag>,
    unauthenticated_total: usize,
    /// Attempts charged so far (for logs and benches).
    pub charged: u64,
}

impl GuessGuard {
    pub fn new(now: Instant) -> Self {
        Self {
            by_prefix: HashMap::new(),
            by_key: HashMap::new(),
            global: Bucket::with_burst(GLOBAL_PER_SEC, GLOBAL_BURST, now),
            unauthenticated: Caps::new(MAX_UNAUTHENTICATED_PER_PREFIX),
            unauthenticated_total: 0,
            charged: 0,
        }
    }

    /// Whether a new connection from `prefix` may start authenticating; if so it is counted
    /// until [`Self::authenticated_or_gone`].
    pub fn admit(&mut self, prefix: SourceTag) -> bool {
        if self.unauthenticated_total >= MAX_UNAUTHENTICATED
            || !self.unauthenticated.has_room(&prefix)
        {
            return false;
        }
        self.unauthenticated.acquire(prefix);
        self.unauthenticated_total += 1;
        true
    }

    /// The connection admitted for `prefix` has authenticated or ended.
    pub fn authenticated_or_gone(&mut self, prefix: &SourceTag) {
        self.unauthenticated.release(prefix);
        self.unauthenticated_total = self.unauthenticated_total.saturating_sub(1);
    }

    /// Charges an attempt by `key` from `prefix`, or says how long to wait.
    pub fn begin(
        &mut self,
        key: Fingerprint,
        prefix: SourceTag,
        now: Instant,
    ) -> Result<Attempt, Refused> {
        self.forget_quiet(now);
        let wait = [self.by_prefix.get(&prefix), self.by_key.get(&key)]
            .into_iter()
            .flatten()
            .map(|f| f.wait_until().saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(Refused::Backoff(wait));
        }
        if !self.global.take(now) {
            return Err(Refused::Busy);
        }
        for f in [
            self.by_prefix.entry(prefix).or_insert(Failures {
                count: 0,
                last: now,
            }),
            self.by_key.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            }),
        ] {
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
        self.charged += 1;
        Ok(Attempt { key, prefix })
    }

    /// The attempt proved the password: its source starts afresh.
    pub fn succeeded(&mut self, attempt: Attempt) {
        self.by_prefix.remove(&attempt.prefix);
        self.by_key.remove(&attempt.key);
    }

    fn forget_quiet(&mut self, now: Instant) {
        let quiet = |f: &Failures| now.saturating_duration_since(f.last) > FORGET_AFTER;
        self.by_prefix.retain(|_, f| !quiet(f));
        self.by_key.retain(|_, f| !quiet(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Fingerprint {
        Fingerprint::from_bytes([n; 32])
    }

    fn prefix(n: u8) -> SourceTag {
        source_of(std::net::SocketAddr::from(([198, 51, 100, n], 1000)))
    }

    #[test]
    fn one_source_backs_off_exponentially_with_new_keys_too() {
        let t0 = Instant::now();
        let mut g = GuessGuard::new(t0);
        let _ = g.begin(key(1), prefix(1), t0).unwrap();
        // A fresh key from the same prefix waits as long: keys cost nothing.
        assert_eq!(
            g.begin(key(2), prefix(1), t0),
            Err(Refused::Backoff(Duration::from_secs(1)))
        );
        let mut t = t0;
        for n in 1..8u32 {
            t += Duration::from_secs(1 << (n - 1));
            let _ = g
                .begin(key(n as u8 + 10), prefix(1), t)
                .unwrap_or_else(|e| panic!("attempt {n}: {e}"));
            assert!(matches!(
                g.begin(key(99), prefix(1), t),
                Err(Refused::Backoff(_))
            ));
        }
        // Eight attempts in 127 s from one prefix: the next waits 128 s.
        assert_eq!(
            g.begin(key(50), prefix(1), t + Duration::from_secs(127)),
            Err(Refused::Backoff(Duration::from_secs(1)))
        );
    }

    #[test]
    fn the_global_bucket_caps_many_sources_and_success_clears_a_source() {
        let t0 = Instant::now();
        let mut g = GuessGuard::new(t0);
        let ok = (0..50u8)
            .filter(|&n| g.begin(key(n), prefix(n), t0).is_ok())
            .count();
        assert_eq!(ok, GLOBAL_BURST as usize);
        assert_eq!(g.begin(key(200), prefix(200), t0), Err(Refused::Busy));
        let t1 = t0 + Duration::from_secs(2);
        let a = g.begin(key(201), prefix(201), t1).unwrap();
        g.succeeded(a);
        let t2 = t1 + Duration::from_secs(2);
        assert!(g.begin(key(201), prefix(201), t2).is_ok(), "cleared");
        // Backoff never grows past the cap, and quiet sources are forgotten.
        let t3 = t2 + FORGET_AFTER + Duration::from_secs(1);
        assert!(g.begin(key(0), prefix(0), t3).is_ok());
    }

    #[test]
    fn unauthenticated_connections_are_capped() {
        let mut g = GuessGuard::new(Instant::now());
        assert!(g.admit(prefix(1)) && g.admit(prefix(1)));
        assert!(!g.admit(prefix(1)), "per prefix");
        for n in 2..8 {
            assert!(g.admit(prefix(n)));
        }
        assert!(!g.admit(prefix(9)), "in total");
        g.authenticated_or_gone(&prefix(1));
        assert!(g.admit(prefix(9)));
    }
}
