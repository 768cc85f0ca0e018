//! Rate limits and caps shared by the rendezvous's services and the peers: token buckets, the
//! "source prefix" that limits are counted by, and per-key counters with a ceiling.
//!
//! Everything here is plain state with `now` passed in, so limits are tested on simulated time.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` stored (starts full).
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// `rate` a second with a burst of one second's worth.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self::with_burst(f64::from(rate), f64::from(rate), now)
    }

    pub fn with_burst(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(now, 1.0)
    }

    /// Whether the bucket has refilled completely by `now`.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes `n` tokens (e.g. bytes) if there are that many.
    pub fn take_n(&mut self, now: Instant, n: f64) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// The unit limits are counted by: one IPv4 address, or one IPv6 /64 (what one subscriber
/// usually holds, so rotating through a /64 gains an attacker nothing). IPv4-mapped IPv6
/// addresses count as their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(IpAddr);

impl Prefix {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    Self(IpAddr::V6(Ipv6Addr::new(
                        s[0], s[1], s[2], s[3], 0, 0, 0, 0,
                    )))
                }
            },
        }
    }
}

impl Prefix {
    /// The prefix as 16 bytes (IPv4 in the IPv4-mapped form), e.g. to key a table or a MAC.
    pub fn octets(&self) -> [u8; 16] {
        match self.0 {
            IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
            IpAddr::V6(a) => a.octets(),
        }
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// One token bucket per key (made full on first use), forgotten once refilled, so the table
/// holds only keys that were busy lately.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    rate: f64,
    burst: f64,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq> KeyedBuckets<K> {
    /// `rate` tokens a second per key after a burst of `burst`.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            buckets: HashMap::new(),
        }
    }

    /// Takes a token from `key`'s bucket if it has one.
    pub fn take(&mut self, key: K, now: Instant) -> bool {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .entry(key)
            .or_insert_with(|| Bucket::with_burst(rate, burst, now))
            .take(now)
    }

    /// Whether `key` has a token now, without taking it.
    pub fn has(&self, key: &K, now: Instant) -> bool {
        self.buckets.get(key).is_none_or(|b| {
            let mut b = b.clone();
            b.take(now)
        })
    }

    /// Forgets the buckets that have refilled (their owners are quiet).
    pub fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

/// How many of something each key holds now, with a ceiling per key.
#[derive(Debug)]
pub struct Caps<K> {
    max: usize,
    held: HashMap<K, usize>,
}

impl<K: Hash + Eq> Caps<K> {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: HashMap::new(),
        }
    }

    /// Whether `key` may take one more.
    pub fn has_room(&self, key: &K) -> bool {
        self.held.get(key).copied().unwrap_or(0) < self.max
    }

    /// Counts one more for `key` (call after [`Self::has_room`]).
    pub fn acquire(&mut self, key: K) {
        *self.held.entry(key).or_insert(0) += 1;
    }

    /// Gives one back.
    pub fn release(&mut self, key: &K) {
        if let Some(n) = self.held.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(key);
            }
        }
    }

    pub fn held(&self, key: &K) -> usize {
        self.held.get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_limits_the_rate_and_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10, t0);
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        assert!(!b.take(t0));
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| b.take(t1)).count(), 5);
        // Refill never exceeds one second's worth.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(t2)).count(), 10);
    }

    #[test]
    fn prefixes_group_an_ipv6_64_and_unmap_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Prefix::of(a), Prefix::of(b));
        assert_ne!(Prefix::of(a), Prefix::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(Prefix::of(mapped), Prefix::of(v4));
        assert_ne!(Prefix::of(v4), Prefix::of("192.0.2.8".parse().unwrap()));
        assert_eq!(Prefix::of(a).to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn keyed_buckets_limit_each_key_and_forget_quiet_ones() {
        let t0 = Instant::now();
        let mut k = KeyedBuckets::new(1.0, 3.0);
        assert_eq!((0..10).filter(|_| k.take("a", t0)).count(), 3);
        assert!(k.take("b", t0), "another key has its own bucket");
        assert!(!k.has(&"a", t0));
        assert!(k.has(&"c", t0));
        k.sweep(t0 + Duration::from_secs(10));
        assert!(k.is_empty());
    }

    #[test]
    fn caps_count_and_release() {
        let mut c = Caps::new(2);
        for _ in 0..2 {
            assert!(c.has_room(&1));
            c.acquire(1);
        }
        assert!(!c.has_room(&1));
        assert!(c.has_room(&2));
        c.release(&1);
        assert!(c.has_room(&1));
        assert_eq!(c.held(&1), 1);
    }
}
