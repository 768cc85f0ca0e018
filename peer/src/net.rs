//! The peer's one UDP socket, the QUIC endpoint on it, and the driver of the path agents.
//!
//! Every peer owns exactly one UDP socket. The rendezvous connection, the peer-to-peer QUIC
//! connection and STUN all share it, so the NAT mapping the rendezvous and its STUN port observe
//! is the one the other peer is told to use. The one exception is a birthday pool: extra
//! sockets a path agent asks for ([`pathagent::Event::OpenPool`]), read alongside the main one.
//!
//! This module is I/O only: every decision about paths (which candidate, relay or direct,
//! retransmissions, punching, dead paths) is a [`pathagent::Agent`]'s, one per route. The
//! driver hands it datagrams and instants and does what it says.
//!
//! ```text
//!            ┌──────────────────────── PeerSocket (quinn::AsyncUdpSocket) ─────────────────────┐
//!  UDP in ──►│ relay frame ──► its token's agent ──► data: header off ─► quinn, virtual addr     │
//!            │ STUN response ─► the agent whose transaction it is (else dropped)               │
//!            │ STUN request ──► the agent of the sender's IP, else answered here (rate-limited)│
//!            │ QUIC from an address an agent knows ─► that agent ─► quinn, from virtual addr    │
//!            │        └── everything else ─────────────────────────► quinn as is (rendezvous)   │
//!  quinn ───►│ to a virtual address ─► agent.send_path(): direct | relay+header | each | none │
//!  timers ──►│ one task: sleeps until the earliest agent timeout, calls handle_timeout        │
//!            └────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A remote peer is known to quinn by a stable *virtual* address (in 240.0.0.0/4, reserved and
//! never routed) that the socket maps to the agent's current path ([`PeerSocket::add_route`]):
//! the relay first (each packet behind a [`relay`](proto::relay) header), then the peer's own
//! address once the agent proved it with an answered probe. quinn sees one address throughout,
//! so a session moves between the relay and the direct path, either way and as often as the
//! network needs, without a reconnect and without quinn knowing (the way iroh's magicsock mapped
//! peers before multipath QUIC).
//!
//! QUIC-bit greasing is off on every endpoint ([`proto::quic::endpoint_config`]), so a QUIC
//! packet always has the 0x40 bit of its first byte set and never looks like STUN (first two
//! bits zero, magic cookie) or a relay frame (0x80..=0x83).

mod pool;
mod recv;
mod route;

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Instant;

use proto::limits::Bucket;
use quinn::AsyncUdpSocket;
use quinn::udp::Transmit;
use std::sync::atomic::AtomicU64;
use tokio::sync::Notify;

use crate::lock;

pub use pathagent::{Config as RouteConfig, Mapping, Via};
pub use route::{RouteHandle, RouteState, RouteView, bind_counter, relay_bound, view_changed};

/// Binding requests no route claims answered per second at most: an answer is about twice its
/// request's size, so this bounds what forged requests can reflect off a peer.
pub const STUN_ANSWERS_PER_SEC: u32 = pathagent::STUN_ANSWERS_PER_SEC;

/// What the socket has seen, for logs and tests.
#[derive(Debug, Default)]
pub struct SocketCounters {
    /// Binding requests no route claimed, answered by the socket.
    pub stun_requests_answered: AtomicU64,
    /// Binding requests left unanswered by the rate limit.
    pub stun_requests_limited: AtomicU64,
    /// Binding responses a route's agent took.
    pub stun_responses: AtomicU64,
    /// STUN messages nobody asked for (responses to no transaction, indications, ...).
    pub stun_stray: AtomicU64,
    /// Relay frames dropped: unknown token, not from the route's relay, malformed.
    pub relay_stray: AtomicU64,
}

/// A received datagram kept for the next read: source, bytes, ECN.
type Stashed = (SocketAddr, Vec<u8>, Option<quinn::udp::EcnCodepoint>);

/// The peer's UDP socket: QUIC for quinn, paths for the agents (see the module docs).
pub struct PeerSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    runtime: Arc<dyn quinn::Runtime>,
    /// Whether quinn sees IPv6 addresses (an IPv6 socket), so IPv4 ones are shown mapped.
    ipv6: bool,
    sessions: Mutex<route::Sessions>,
    pool: pool::Pool,
    /// Wakes the timer task (an agent's timeout moved earlier, or the socket goes).
    timer: Arc<Notify>,
    /// The waker of the last read that found nothing, woken when pool sockets open.
    recv_waker: Mutex<Option<Waker>>,
    /// Scratch space for packets wrapped for the relay (reused: one send at a time).
    relay_buf: Mutex<Vec<u8>>,
    /// Received datagrams that did not fit the buffers of the call that read them.
    stash: Mutex<VecDeque<Stashed>>,
    /// Answers to Binding requests no route claimed.
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

impl Drop for PeerSocket {
    fn drop(&mut self) {
        // The timer task holds only a weak reference: let it notice and end.
        self.timer.notify_one();
    }
}

/// Binds the peer's UDP socket and puts a quinn endpoint on it. `server` is set on hosts, which
/// accept the controller's connection on the same socket they use to reach the rendezvous.
/// Needs a tokio runtime (the agents' timer task runs on it).
pub fn bind(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<(quinn::Endpoint, Arc<PeerSocket>)> {
    let runtime: Arc<dyn quinn::Runtime> =
        quinn::default_runtime().ok_or_else(|| io::Error::other("no tokio runtime is running"))?;
    let inner = runtime.wrap_udp_socket(std::net::UdpSocket::bind(bind)?)?;
    let timer = Arc::new(Notify::new());
    let socket = Arc::new(PeerSocket {
        ipv6: inner.local_addr()?.is_ipv6(),
        inner,
        runtime: runtime.clone(),
        sessions: Mutex::default(),
        pool: pool::Pool::default(),
        timer: timer.clone(),
        recv_waker: Mutex::default(),
        relay_buf: Mutex::default(),
        stash: Mutex::default(),
        answers: Mutex::new(Bucket::new(STUN_ANSWERS_PER_SEC, Instant::now())),
        counters: SocketCounters::default(),
    });
    tokio::spawn(route::run_timers(Arc::downgrade(&socket), timer));
    let endpoint = quinn::Endpoint::new_with_abstract_socket(
        proto::quic::endpoint_config(),
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

    /// How quinn and the kernel see an address: as is, or IPv4-mapped on an IPv6 socket.
    fn present(&self, addr: SocketAddr) -> SocketAddr {
        match addr {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }

    /// Wakes a read asleep on the main socket alone, so that it polls new pool sockets too.
    fn wake_reader(&self) {
        if let Some(waker) = lock(&self.recv_waker).take() {
            waker.wake();
        }
    }
}

/// The canonical form of an address (IPv4-mapped IPv6 → IPv4), as agents and routes see it.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether an address is one of the socket's virtual addresses (240.0.0.0/4).
pub fn is_virtual(addr: SocketAddr) -> bool {
    matches!(canonical(addr).ip(), IpAddr::V4(v4) if v4.octets()[0] >= 240 && v4.octets()[0] < 255)
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

/// The TLS exporter of a connection, for binding the password proof to it.
pub fn exporter(conn: &quinn::Connection) -> Result<[u8; crate::auth::EXPORTER_LEN], crate::Error> {
    let mut out = [0u8; crate::auth::EXPORTER_LEN];
    conn.export_keying_material(&mut out, crate::auth::EXPORTER_LABEL, b"")
        .map_err(|_| crate::Error::Exporter)?;
    Ok(out)
}
