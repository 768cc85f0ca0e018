//! The rendezvous's STUN port: answers Binding requests (RFC 8489) with the address each came
//! from, so a peer can compare it with the address the QUIC port saw and tell an
//! endpoint-independent NAT mapping from an endpoint-dependent one. Standard STUN clients work
//! against it too.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{debug, warn};

use crate::stun;

/// Answers per second across all sources; the burst is one second's worth. A Binding answer is
/// at most twice its request's size, so this caps what forged requests can reflect.
pub const ANSWERS_PER_SEC: u32 = 2000;

/// What the responder did, for logs and tests.
#[derive(Debug, Default)]
pub struct Counters {
    pub answered: AtomicU64,
    pub ignored: AtomicU64,
    pub limited: AtomicU64,
}

/// A token bucket: `rate` tokens a second, at most `burst` stored (starts full).
#[derive(Debug)]
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

/// Serves STUN on `socket` until the task is dropped.
pub async fn serve(socket: UdpSocket, counters: Arc<Counters>) {
    let mut buf = [0u8; 1500];
    let mut bucket = Bucket::new(ANSWERS_PER_SEC, Instant::now());
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
        let reply = match stun::answer(&buf[..n], from) {
            Ok(Some(reply)) => reply,
            Ok(None) | Err(_) => {
                counters.ignored.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let now = Instant::now();
        if !bucket.take(now) {
            counters.limited.fetch_add(1, Ordering::Relaxed);
            if last_warn.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                last_warn = Some(now);
                warn!(
                    limit = ANSWERS_PER_SEC,
                    "STUN requests above the rate limit are dropped"
                );
            }
            continue;
        }
        send(&socket, &reply, from).await;
        counters.answered.fetch_add(1, Ordering::Relaxed);
    }
}

async fn send(socket: &UdpSocket, reply: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(reply, to).await {
        debug!(%to, "stun send: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
