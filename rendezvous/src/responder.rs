//! The rendezvous's STUN port: answers Binding requests (RFC 8489) with the address each came
//! from, so a peer can compare it with the address the QUIC port saw and tell an
//! endpoint-independent NAT mapping from an endpoint-dependent one. Standard STUN clients work
//! against it too.
//!
//! A source address on UDP proves nothing, so the responder is no amplifier: an IP that holds an
//! authenticated QUIC connection to this rendezvous right now ([`LiveIps`]; QUIC validated that
//! address) gets full answers, any other gets an answer no larger than its request (or none).
//! Answers are budgeted per source prefix as well as in total, so one client cannot spend the
//! whole budget.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{debug, warn};

pub use proto::limits::Bucket;
use proto::limits::{KeyedBuckets, Prefix};
use proto::stun;

/// Answers per second across all sources; the burst is one second's worth.
pub const ANSWERS_PER_SEC: u32 = 2000;
/// Answers per second to one source prefix, after a burst of [`ANSWERS_BURST_PER_PREFIX`].
pub const ANSWERS_PER_SEC_PER_PREFIX: f64 = 20.0;
pub const ANSWERS_BURST_PER_PREFIX: f64 = 40.0;

/// What the responder did, for logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub answered: AtomicU64,
    pub ignored: AtomicU64,
    pub limited: AtomicU64,
    /// Requests from unproven sources too small to answer without amplification.
    pub too_small: AtomicU64,
}

/// The IPs that hold an authenticated connection to the rendezvous now, with how many.
#[derive(Debug, Default)]
pub struct LiveIps(Mutex<HashMap<IpAddr, usize>>);

impl LiveIps {
    /// Counts a connection from `ip` for as long as the guard lives.
    pub fn hold(self: &Arc<Self>, ip: IpAddr) -> LiveIpGuard {
        let ip = ip.to_canonical();
        *self.lock().entry(ip).or_insert(0) += 1;
        LiveIpGuard(self.clone(), ip)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.lock().contains_key(&ip.to_canonical())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// See [`LiveIps::hold`].
#[derive(Debug)]
pub struct LiveIpGuard(Arc<LiveIps>, IpAddr);

impl Drop for LiveIpGuard {
    fn drop(&mut self) {
        let mut map = self.0.lock();
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

/// The responder's decisions, sans-IO.
#[derive(Debug)]
pub struct Responder {
    total: Bucket,
    per_prefix: KeyedBuckets<Prefix>,
    last_sweep: Instant,
}

/// What to do with one received datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Answer(Vec<u8>),
    /// Not a Binding request (or malformed).
    Ignore,
    /// Over a budget.
    Limited,
    /// An unproven source whose request is too small to answer without amplification.
    TooSmall,
}

impl Responder {
    pub fn new(now: Instant) -> Self {
        Self {
            total: Bucket::new(ANSWERS_PER_SEC, now),
            per_prefix: KeyedBuckets::new(ANSWERS_PER_SEC_PER_PREFIX, ANSWERS_BURST_PER_PREFIX),
            last_sweep: now,
        }
    }

    pub fn on_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        from: SocketAddr,
        proven: bool,
    ) -> Verdict {
        if now.saturating_duration_since(self.last_sweep) > Duration::from_secs(10) {
            self.per_prefix.sweep(now);
            self.last_sweep = now;
        }
        let max_len = (!proven).then_some(datagram.len());
        let reply = match stun::answer(datagram, from, max_len) {
            Ok(Some(reply)) => reply,
            Ok(None) if !proven && stun::kind(datagram) == stun::Kind::BindingRequest => {
                return Verdict::TooSmall;
            }
            Ok(None) | Err(_) => return Verdict::Ignore,
        };
        let prefix = Prefix::of(from.ip());
        if !self.per_prefix.has(&prefix, now) || !self.total.take(now) {
            return Verdict::Limited;
        }
        self.per_prefix.take(prefix, now);
        Verdict::Answer(reply)
    }
}

/// Serves STUN on `socket` until the task is dropped; `live` says which sources are proven.
pub async fn serve(socket: Arc<UdpSocket>, counters: Arc<Counters>, live: Arc<LiveIps>) {
    let mut buf = [0u8; 1500];
    let mut responder = Responder::new(Instant::now());
    let mut last_warn: Option<Instant> = None;
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors surface here on some systems; keep serving.
                debug!("stun recv: {e}");
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
        };
        let now = Instant::now();
        let proven = live.contains(from.ip());
        match responder.on_datagram(now, &buf[..n], from, proven) {
            Verdict::Answer(reply) => {
                if let Err(e) = socket.send_to(&reply, from).await {
                    debug!(%from, "stun send: {e}");
                }
                counters.answered.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Ignore => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::TooSmall => {
                counters.too_small.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Limited => {
                counters.limited.fetch_add(1, Ordering::Relaxed);
                if last_warn.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                    last_warn = Some(now);
                    warn!("STUN requests above a rate limit (per source or in total) are dropped");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_cannot_spend_the_global_budget() {
        let t0 = Instant::now();
        let mut r = Responder::new(t0);
        let (_, req) = stun::binding_request().unwrap();
        let greedy: SocketAddr = "203.0.113.1:1000".parse().unwrap();
        let answered = (0..5000)
            .filter(|_| matches!(r.on_datagram(t0, &req, greedy, false), Verdict::Answer(_)))
            .count();
        assert_eq!(answered, ANSWERS_BURST_PER_PREFIX as usize);
        // Someone else still gets answers, within the same instant.
        let other: SocketAddr = "198.51.100.2:2000".parse().unwrap();
        assert!(matches!(
            r.on_datagram(t0, &req, other, false),
            Verdict::Answer(_)
        ));
        // Refilled a second later at the per-prefix rate.
        let t1 = t0 + Duration::from_secs(1);
        let later = (0..100)
            .filter(|_| matches!(r.on_datagram(t1, &req, greedy, false), Verdict::Answer(_)))
            .count();
        assert_eq!(later, ANSWERS_PER_SEC_PER_PREFIX as usize);
    }

    #[test]
    fn unproven_sources_get_no_more_bytes_than_they_sent() {
        let t0 = Instant::now();
        let mut r = Responder::new(t0);
        let bare = {
            let (_, mut req) = stun::binding_request().unwrap();
            // Cut to a bare 20-byte header with length 0, as minimal clients send.
            req.truncate(stun::HEADER_LEN);
            req[2] = 0;
            req[3] = 0;
            req
        };
        let v6: SocketAddr = "[2001:db8::7]:5".parse().unwrap();
        assert_eq!(r.on_datagram(t0, &bare, v6, false), Verdict::TooSmall);
        match r.on_datagram(t0, &bare, v6, true) {
            Verdict::Answer(a) => {
                assert!(a.len() > bare.len(), "a proven source is answered whole")
            }
            v => panic!("{v:?}"),
        }
        let (_, padded) = stun::binding_request().unwrap();
        match r.on_datagram(t0, &padded, v6, false) {
            Verdict::Answer(a) => assert!(a.len() <= padded.len()),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn live_ips_count_connections() {
        let live = Arc::new(LiveIps::default());
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = live.hold(ip);
        let b = live.hold("::ffff:192.0.2.1".parse().unwrap());
        assert!(live.contains(ip));
        drop(a);
        assert!(live.contains(ip));
        drop(b);
        assert!(!live.contains(ip));
    }
}
