//! The peer's one UDP socket and the QUIC endpoint on it.
//!
//! Every peer owns exactly one UDP socket. The rendezvous connection, the peer-to-peer QUIC
//! connection and STUN all share it, so the NAT mapping the rendezvous and its STUN port observe
//! is the one the other peer is told to use.
//!
//! ```text
//!            ┌─────────────────────── PeerSocket (quinn::AsyncUdpSocket) ──────────────────────┐
//!  UDP in ──►│ stun::is_stun? ── Binding response ──► the waiting stun_binding() call          │
//!            │        │        └ Binding request ───► answered at once (XOR-MAPPED-ADDRESS)     │
//!            │        └── everything else ─────────► quinn (rendezvous and peer connections)   │
//!            └─────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! QUIC-bit greasing is off on every endpoint ([`rendezvous::quic::endpoint_config`]), so a QUIC
//! packet always has the 0x40 bit of its first byte set and never looks like STUN, whose first
//! two bits are zero and which carries the magic cookie.

use std::collections::HashMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use rendezvous::responder::Bucket;
use rendezvous::stun::{self, TxId};
use tokio::sync::oneshot;
use tracing::debug;

/// Retransmission times of a STUN request, from the first send (RFC 8489 doubles from its RTO;
/// these start lower because a peer waits on the answer before it can offer its candidates).
const STUN_RETRIES_MS: [u64; 6] = [0, 100, 300, 700, 1500, 3100];
/// Binding requests answered per second at most (punch checks need a few dozen): an answer is
/// about twice its request's size, so this bounds what forged requests can reflect off a peer.
pub const STUN_ANSWERS_PER_SEC: u32 = 200;

/// Errors of a STUN Binding transaction.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StunClientError {
    #[error("no STUN answer from {server} within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("STUN server {server}: {source}")]
    Stun {
        server: SocketAddr,
        #[source]
        source: stun::StunError,
    },
    #[error("sending to STUN server {server}: {source}")]
    Io {
        server: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// What the socket has seen, for logs and tests.
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub stun_requests_answered: AtomicU64,
    /// Binding requests left unanswered by the rate limit.
    pub stun_requests_limited: AtomicU64,
    pub stun_responses: AtomicU64,
    pub stun_stray: AtomicU64,
}

type Waiters = HashMap<
    TxId,
    (
        SocketAddr,
        oneshot::Sender<Result<SocketAddr, stun::StunError>>,
    ),
>;

/// The peer's UDP socket: QUIC for quinn, STUN for this module (see the module docs).
pub struct PeerSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    waiters: Mutex<Waiters>,
    answers: Mutex<Bucket>,
    counters: SocketCounters,
}

impl fmt::Debug for PeerSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerSocket")
            .field("local_addr", &self.inner.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// Binds the peer's UDP socket and puts a quinn endpoint on it. `server` is set on hosts, which
/// accept the controller's connection on the same socket they use to reach the rendezvous.
pub fn bind(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<(quinn::Endpoint, Arc<PeerSocket>)> {
    let runtime: Arc<dyn quinn::Runtime> =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no tokio runtime is running"))?;
    let inner = runtime.wrap_udp_socket(std::net::UdpSocket::bind(bind)?)?;
    let socket = Arc::new(PeerSocket {
        inner,
        waiters: Mutex::default(),
        answers: Mutex::new(Bucket::new(STUN_ANSWERS_PER_SEC, Instant::now())),
        counters: SocketCounters::default(),
    });
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        rendezvous::quic::endpoint_config(),
        server,
        socket.clone(),
        runtime,
    )?;
    Ok((endpoint, socket))
}

/// [`bind`] for callers that need only the endpoint.
pub fn endpoint(
    bind_addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    bind(bind_addr, server).map(|(endpoint, _)| endpoint)
}

impl PeerSocket {
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    pub fn counters(&self) -> &SocketCounters {
        &self.counters
    }

    /// Asks a STUN server which address this socket's packets come from (its reflexive address
    /// as that server sees it), retransmitting until `timeout`.
    pub async fn stun_binding(
        &self,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, StunClientError> {
        let (id, request) =
            stun::binding_request().map_err(|source| StunClientError::Stun { server, source })?;
        let (tx, rx) = oneshot::channel();
        self.lock_waiters().insert(id, (server, tx));
        let _cleanup = RemoveWaiter(self, id);
        let retransmit = async {
            let start = tokio::time::Instant::now();
            for at in STUN_RETRIES_MS {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                self.send_raw(server, &request)
                    .await
                    .map_err(|source| StunClientError::Io { server, source })?;
            }
            std::future::pending::<Result<SocketAddr, StunClientError>>().await
        };
        let answered = async {
            match rx.await {
                Ok(Ok(addr)) => Ok(addr),
                Ok(Err(source)) => Err(StunClientError::Stun { server, source }),
                Err(_) => Err(StunClientError::Timeout { server, timeout }),
            }
        };
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                r = answered => r,
                r = retransmit => r,
            }
        })
        .await;
        outcome.unwrap_or(Err(StunClientError::Timeout { server, timeout }))
    }

    /// Sends one datagram outside QUIC (STUN, punch probes), waiting for room in the socket.
    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let mut poller = self.inner.clone().create_io_poller();
        loop {
            std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?;
            match self.inner.try_send(&transmit(to, bytes)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Handles one STUN datagram from `from`.
    fn on_stun(&self, datagram: &[u8], from: SocketAddr) {
        match stun::kind(datagram) {
            stun::Kind::BindingRequest => match stun::answer(datagram, from) {
                Ok(Some(_)) if !self.take_answer() => {
                    self.counters
                        .stun_requests_limited
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(Some(reply)) => {
                    // Best effort, never blocking the receive path: a lost answer is retried
                    // by the asker.
                    if self.inner.try_send(&transmit(from, &reply)).is_ok() {
                        self.counters
                            .stun_requests_answered
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok(None) | Err(_) => self.stray(from),
            },
            stun::Kind::BindingResponse => {
                let Some(id) = stun::transaction_id(datagram) else {
                    return self.stray(from);
                };
                let mut waiters = self.lock_waiters();
                // Only the server asked may answer a transaction.
                match waiters.get(&id) {
                    Some((server, _)) if *server == from => {}
                    _ => {
                        drop(waiters);
                        return self.stray(from);
                    }
                }
                let Some((_, tx)) = waiters.remove(&id) else {
                    return;
                };
                drop(waiters);
                self.counters.stun_responses.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(stun::parse_response(datagram).map(|(_, addr)| addr));
            }
            stun::Kind::Other => self.stray(from),
        }
    }

    fn take_answer(&self) -> bool {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take(Instant::now())
    }

    fn stray(&self, from: SocketAddr) {
        self.counters.stun_stray.fetch_add(1, Ordering::Relaxed);
        debug!(%from, "ignoring a STUN message");
    }
}

/// Takes the STUN datagrams out of one received buffer of `len` bytes holding segments of
/// `stride` bytes (GRO; 0 means one segment), handing each to `on_stun`; returns the length of
/// what is left for quinn, the other segments moved together in their order.
fn split_stun(buf: &mut [u8], len: usize, stride: usize, mut on_stun: impl FnMut(&[u8])) -> usize {
    let stride = if stride == 0 { len } else { stride };
    let mut kept = 0;
    let mut at = 0;
    while at < len {
        let end = (at + stride).min(len);
        if stun::is_stun(&buf[at..end]) {
            on_stun(&buf[at..end]);
        } else {
            if kept != at {
                buf.copy_within(at..end, kept);
            }
            kept += end - at;
        }
        at = end;
    }
    kept
}

struct RemoveWaiter<'a>(&'a PeerSocket, TxId);

impl Drop for RemoveWaiter<'_> {
    fn drop(&mut self) {
        self.0.lock_waiters().remove(&self.1);
    }
}

fn transmit(to: SocketAddr, bytes: &[u8]) -> Transmit<'_> {
    Transmit {
        destination: to,
        ecn: None,
        contents: bytes,
        segment_size: None,
        src_ip: None,
    }
}

impl AsyncUdpSocket for PeerSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            let n = ready!(self.inner.poll_recv(cx, bufs, meta))?;
            let mut kept = 0;
            for i in 0..n {
                let m = meta[i];
                let len = split_stun(&mut bufs[i], m.len, m.stride, |d| self.on_stun(d, m.addr));
                if len == 0 {
                    continue;
                }
                meta[i].len = len;
                if kept != i {
                    let (left, right) = bufs.split_at_mut(i);
                    left[kept][..len].copy_from_slice(&right[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
            if kept > 0 {
                return Poll::Ready(Ok(kept));
            }
            // Everything was STUN: wait for more (the inner poll registers the waker).
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }
}

/// The TLS exporter of a connection, for binding the password proof to it.
pub fn exporter(conn: &quinn::Connection) -> Result<[u8; crate::auth::EXPORTER_LEN], crate::Error> {
    let mut out = [0u8; crate::auth::EXPORTER_LEN];
    conn.export_keying_material(&mut out, crate::auth::EXPORTER_LABEL, b"")
        .map_err(|_| crate::Error::Protocol("tls exporter unavailable"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stun_segments_are_taken_out_of_a_gro_buffer() {
        let (_, req) = stun::binding_request().unwrap();
        let stride = req.len();
        // QUIC-looking segments (fixed bit set) of the same size, and a short last one.
        let quic = |tag: u8| {
            let mut p = vec![0x40 | (tag & 0x3f); stride];
            p[1] = tag;
            p
        };
        let mut buf = [
            quic(1),
            req.clone(),
            quic(2),
            req.clone(),
            quic(3)[..7].to_vec(),
        ]
        .concat();
        let len = buf.len();
        let mut seen = 0;
        let kept = split_stun(&mut buf, len, stride, |d| {
            assert_eq!(d, &req[..]);
            seen += 1;
        });
        assert_eq!(seen, 2);
        assert_eq!(kept, 2 * stride + 7);
        assert_eq!(&buf[..stride], &quic(1)[..]);
        assert_eq!(&buf[stride..2 * stride], &quic(2)[..]);
        assert_eq!(&buf[2 * stride..kept], &quic(3)[..7]);

        // One datagram, no GRO: all STUN, or none.
        let mut one = req.clone();
        assert_eq!(split_stun(&mut one, req.len(), 0, |_| {}), 0);
        let mut q = quic(4);
        assert_eq!(
            split_stun(&mut q, stride, 0, |_| panic!("not STUN")),
            stride
        );
    }
}
