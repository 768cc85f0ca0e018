//! The peer's one UDP socket and the QUIC endpoint on it.
//!
//! Every peer owns exactly one UDP socket. The rendezvous connection, the peer-to-peer QUIC
//! connection and STUN all share it, so the NAT mapping the rendezvous and its STUN port observe
//! is the one the other peer is told to use. The one exception is a birthday pool
//! ([`PeerSocket::open_pool`], see [`crate::nat::Birthday`]): extra sockets read alongside the
//! main one, of which those the peer reached carry its direct path.
//!
//! ```text
//!            ┌─────────────────────── PeerSocket (quinn::AsyncUdpSocket) ──────────────────────┐
//!  UDP in ──►│ stun::is_stun? ── Binding response ──► the waiting stun_binding() call          │
//!            │        │        └ Binding request ───► answered at once (XOR-MAPPED-ADDRESS)     │
//!            │ relay frame from a route's relay ─ header off ─► quinn, from the virtual address │
//!            │ from a route's peer address ───────────────────► quinn, from the virtual address │
//!            │        └── everything else ─────────► quinn (rendezvous and peer connections)   │
//!  quinn ───►│ to a virtual address ─► direct path if known, else relay, else every candidate  │
//!            └─────────────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! A remote peer is known to quinn by a stable *virtual* address (in 240.0.0.0/4, reserved and
//! never routed) that the socket maps to the path in use ([`PeerSocket::add_route`]): the relay
//! first (each packet behind a [`relay`](rendezvous::relay) header), then the peer's own address
//! as soon as a punch probe to it is answered or a packet comes from it. quinn sees one address
//! throughout, so a session moves from the relay to the direct path without a reconnect and
//! without quinn knowing (the way iroh's magicsock mapped peers before multipath QUIC).
//!
//! QUIC-bit greasing is off on every endpoint ([`proto::quic::endpoint_config`]), so a QUIC
//! packet always has the 0x40 bit of its first byte set and never looks like STUN, whose first
//! two bits are zero and which carries the magic cookie.
//!
//! Size: over 1500 lines because routes, relay framing, STUN waiters, the responder, the
//! direct-path switch and the birthday pool still live here; issue #12 replaces them with the
//! sans-IO `pathagent` (see `pathagent/INTEGRATION.md`), leaving the socket driver.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use proto::limits::Bucket;
use proto::relay::{self, Ticket, Token};
use proto::stun::{self, TxId};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, info};

use crate::lock;
use crate::stats::PathKind;

/// Retransmission times of a STUN request, from the first send (RFC 8489 doubles from its RTO;
/// these start lower because a peer waits on the answer before it can offer its candidates).
pub const STUN_RETRIES_MS: [u64; 6] = [0, 100, 300, 700, 1500, 3100];
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

/// Retransmission times of a relay bind, from the first send.
const BIND_RETRIES_MS: [u64; 7] = [0, 100, 300, 700, 1500, 3100, 6300];
/// Datagrams sent on a route before anything came back, kept to replay at once on the direct
/// path when it opens (rather than wait for quinn to retransmit a lost handshake packet).
const EARLY_KEPT: usize = 4;
/// A direct path that has been sent on this long without a packet coming back is dead: the
/// route goes back to the relay (QUIC answers within a round trip; a lone keep-alive is
/// retransmitted at shorter intervals than this until the backoff grows).
const DIRECT_DEAD_AFTER: Duration = Duration::from_millis(1500);
/// How often a direct route refreshes its relay session (the relay forgets idle ones).
const RELAY_REFRESH: Duration = Duration::from_secs(20);
/// Least time between two binds sent because the relay asked for one.
const REBIND_EVERY: Duration = Duration::from_millis(200);

/// What a relay frame to this socket is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FromRelay {
    Data,
    Bound,
    Rebind,
}

/// The counter of the next relay bind: it must grow across every bind this process sends for a
/// ticket (the relay refuses one it has seen), so it starts from the clock and only goes up.
fn bind_counter() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    NEXT.fetch_max(clock, Ordering::Relaxed);
    NEXT.fetch_add(1, Ordering::Relaxed) + 1
}
/// Peer-reflexive candidates kept per route.
const MAX_LEARNED: usize = 8;
/// The port of every virtual address.
const VIRTUAL_PORT: u16 = 4433;
/// Binding requests noted from pool sockets, waiting for the punch to take them.
const MAX_POOL_HITS: usize = 64;
/// Remote addresses remembered as reached through a pool socket.
const MAX_REPLY_VIA: usize = 16;
/// No pool socket has refused a send (see [`PeerSocket::pool_blocked`]).
const NONE_BLOCKED: u64 = u64::MAX;

/// Which socket a packet comes in on or goes out of: the peer's one socket, or one of a
/// birthday pool's (see [`PeerSocket::open_pool`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Via {
    #[default]
    Main,
    Pool(u32),
}

/// The extra sockets of birthday punching, each with its own NAT mapping, and the IP of the
/// peer it is for (a pool socket answers nobody else).
#[derive(Default)]
struct Pool {
    sockets: HashMap<u32, (Arc<dyn AsyncUdpSocket>, IpAddr)>,
    next: u32,
    /// Peer addresses whose packets last came in on a pool socket: what quinn sends to them
    /// (not by a route: a host's migrated connection) goes out of that socket.
    reply_via: HashMap<SocketAddr, u32>,
    /// Binding requests that came in on pool sockets (socket, sender), for the punch.
    hits: Vec<(u32, SocketAddr)>,
}

/// What the socket has seen, for logs and tests.
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub stun_requests_answered: AtomicU64,
    /// Binding requests left unanswered by the rate limit.
    pub stun_requests_limited: AtomicU64,
    pub stun_responses: AtomicU64,
    pub stun_stray: AtomicU64,
    /// Relay frames dropped: unknown token, not from the route's relay, malformed.
    pub relay_stray: AtomicU64,
}

/// A received datagram kept for the next read: source, bytes, ECN.
type Stashed = (SocketAddr, Vec<u8>, Option<quinn::udp::EcnCodepoint>);

/// How to reach one remote peer (see [`PeerSocket::add_route`]).
#[derive(Debug, Clone, Default)]
pub struct RouteSpec {
    /// The peer's candidate addresses (reflexive, LAN) to punch towards.
    pub candidates: Vec<SocketAddr>,
    /// The relay and this side's ticket for the session.
    pub relay: Option<(SocketAddr, Ticket)>,
    /// Whether the route may move to a direct path (`false`: relay only).
    pub direct_allowed: bool,
    /// Hold any move to a direct path until [`PeerSocket::release_direct`]: a QUIC server
    /// drops handshake packets that come from a new address, so a controller stays on its
    /// first path until the handshake is done.
    pub hold_direct: bool,
}

/// Where a route's packets go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteState {
    pub path: PathKind,
    /// How often the route moved from one path to another.
    pub path_changes: u32,
    /// When it first went direct.
    pub direct_since: Option<Instant>,
}

struct Route {
    spec: RouteSpec,
    direct: Option<SocketAddr>,
    /// The socket the direct path goes out of.
    direct_via: Via,
    /// A working direct path found while held.
    pending_direct: Option<(SocketAddr, Via)>,
    direct_since: Option<Instant>,
    path_changes: u32,
    /// The first send on the direct path since its last packet in, if sends kept coming.
    unanswered_since: Option<Instant>,
    last_tx: Option<Instant>,
    /// When a bind last went to the relay (kept alive while the route is direct).
    relay_refreshed: Option<Instant>,
    /// When a bind last answered the relay's request to bind again.
    rebound: Option<Instant>,
    /// Signalled when the relay answers a bind.
    bound: Arc<Notify>,
    /// Something came back on this route.
    heard: bool,
    /// Peer-reflexive candidates: addresses that sent us punch probes from a candidate's IP.
    learned: Vec<SocketAddr>,
    news: Arc<Notify>,
    early: VecDeque<(Vec<u8>, Option<usize>)>,
}

impl Route {
    fn path(&self) -> PathKind {
        if self.direct.is_some() || self.spec.relay.is_none() {
            PathKind::Direct
        } else {
            PathKind::Relay
        }
    }
}

#[derive(Default)]
struct Routes {
    by_virtual: HashMap<SocketAddr, Route>,
    by_token: HashMap<Token, SocketAddr>,
    /// Candidate and direct addresses → virtual address.
    by_peer: HashMap<SocketAddr, SocketAddr>,
    next: u32,
}

/// A route, removed from the socket when dropped.
#[derive(Debug)]
pub struct RouteHandle {
    socket: Arc<PeerSocket>,
    virtual_addr: SocketAddr,
}

impl RouteHandle {
    /// The address quinn knows the peer by.
    pub fn addr(&self) -> SocketAddr {
        self.virtual_addr
    }

    pub fn state(&self) -> Option<RouteState> {
        self.socket.route_state(self.virtual_addr)
    }
}

impl Drop for RouteHandle {
    fn drop(&mut self) {
        self.socket.remove_route(self.virtual_addr);
    }
}

/// Pool sockets of [`PeerSocket::open_pool`], closed when dropped.
#[derive(Debug)]
pub struct PoolGuard {
    socket: Arc<PeerSocket>,
    ids: Vec<u32>,
}

impl PoolGuard {
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Each open socket of the pool and its local address.
    pub fn local_addrs(&self) -> Vec<(u32, SocketAddr)> {
        let pool = self.socket.lock_pool();
        self.ids
            .iter()
            .filter_map(|&id| Some((id, pool.sockets.get(&id)?.0.local_addr().ok()?)))
            .collect()
    }

    /// Takes the binding requests that came in from the peer on this pool's sockets
    /// (socket, sender).
    pub fn take_hits(&self) -> Vec<(u32, SocketAddr)> {
        let mut pool = self.socket.lock_pool();
        let (ours, others) = pool
            .hits
            .drain(..)
            .partition(|(id, _)| self.ids.contains(id));
        pool.hits = others;
        ours
    }

    /// Keeps the sockets a probe from the peer reached (`reached`, plus those of hits not
    /// taken yet, which are added to it) and closes the rest, all under one lock so that no
    /// socket that answered the peer is closed. Returns whether any is left.
    pub fn keep_reached(&mut self, reached: &mut Vec<u32>) -> bool {
        let mut pool = self.socket.lock_pool();
        let ids = &self.ids;
        let mut others = Vec::new();
        for (id, from) in pool.hits.drain(..) {
            if !ids.contains(&id) {
                others.push((id, from));
            } else if !reached.contains(&id) {
                reached.push(id);
            }
        }
        pool.hits = others;
        for id in ids.iter().filter(|id| !reached.contains(id)) {
            pool.sockets.remove(id);
        }
        pool.reply_via
            .retain(|_, id| reached.contains(id) || !ids.contains(id));
        self.socket
            .pool_open
            .store(pool.sockets.len(), Ordering::Relaxed);
        drop(pool);
        self.ids.retain(|id| reached.contains(id));
        !self.ids.is_empty()
    }
}

impl Drop for PoolGuard {
    fn drop(&mut self) {
        self.socket.close_pool_sockets(&self.ids);
    }
}

/// The canonical form of an address (IPv4-mapped IPv6 → IPv4), as routes are keyed.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// Whether an address is one of the socket's virtual addresses (240.0.0.0/4).
pub fn is_virtual(addr: SocketAddr) -> bool {
    matches!(canonical(addr).ip(), IpAddr::V4(v4) if v4.octets()[0] >= 240 && v4.octets()[0] < 255)
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
    runtime: Arc<dyn quinn::Runtime>,
    pool: Mutex<Pool>,
    /// How many pool sockets are open (0: the common case, no pool lock on the hot paths).
    pool_open: AtomicUsize,
    /// The pool socket that last refused a send (would block), for the write poller to wait
    /// on; [`NONE_BLOCKED`] if none.
    pool_blocked: AtomicU64,
    /// Signalled when a pool socket receives a binding request.
    pool_news: Arc<Notify>,
    /// The waker of the last read that found nothing, woken when pool sockets open.
    recv_waker: Mutex<Option<Waker>>,
    /// Whether quinn sees IPv6 addresses (an IPv6 socket), so virtual ones are shown mapped.
    ipv6: bool,
    routes: Mutex<Routes>,
    /// Scratch space for packets wrapped for the relay (reused: one send at a time).
    relay_buf: Mutex<Vec<u8>>,
    /// Received datagrams that did not fit the buffers of the call that read them.
    stash: Mutex<VecDeque<Stashed>>,
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
        ipv6: inner.local_addr()?.is_ipv6(),
        inner,
        runtime: runtime.clone(),
        pool: Mutex::default(),
        pool_open: AtomicUsize::new(0),
        pool_blocked: AtomicU64::new(NONE_BLOCKED),
        pool_news: Arc::new(Notify::new()),
        recv_waker: Mutex::default(),
        routes: Mutex::default(),
        relay_buf: Mutex::default(),
        stash: Mutex::default(),
        waiters: Mutex::default(),
        answers: Mutex::new(Bucket::new(STUN_ANSWERS_PER_SEC, Instant::now())),
        counters: SocketCounters::default(),
    });
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

    /// Asks a STUN server which address this socket's packets come from (its reflexive address
    /// as that server sees it), retransmitting until `timeout`.
    pub async fn stun_binding(
        &self,
        server: SocketAddr,
        timeout: Duration,
    ) -> Result<SocketAddr, StunClientError> {
        self.stun_binding_via(Via::Main, server, &STUN_RETRIES_MS, timeout)
            .await
    }

    /// [`Self::stun_binding`] out of the socket `via`, sending at the times `schedule` gives
    /// (ms from the first send).
    pub async fn stun_binding_via(
        &self,
        via: Via,
        server: SocketAddr,
        schedule: &[u64],
        timeout: Duration,
    ) -> Result<SocketAddr, StunClientError> {
        let (id, request) =
            stun::binding_request().map_err(|source| StunClientError::Stun { server, source })?;
        let (tx, rx) = oneshot::channel();
        self.lock_waiters().insert(id, (server, tx));
        let _cleanup = RemoveWaiter(self, id);
        let retransmit = async {
            let start = tokio::time::Instant::now();
            for &at in schedule {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                self.send_raw_via(via, server, &request)
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

    fn lock_routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        lock(&self.routes)
    }

    /// How quinn sees a (canonical) virtual address: as is, or IPv4-mapped on an IPv6 socket.
    fn present(&self, virtual_addr: SocketAddr) -> SocketAddr {
        match virtual_addr {
            SocketAddr::V4(v4) if self.ipv6 => {
                SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())
            }
            other => other,
        }
    }

    /// Adds a route to a remote peer and returns the virtual address to give quinn for it
    /// (inside the handle, which removes the route when dropped). Packets to it go by the
    /// relay until a direct path is known ([`Self::set_direct`], or a packet from a candidate),
    /// or to every candidate at once when there is no relay.
    pub fn add_route(self: &Arc<Self>, spec: RouteSpec) -> RouteHandle {
        let mut routes = self.lock_routes();
        let n = routes.next;
        routes.next = routes.next.wrapping_add(1);
        let virtual_addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(240, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
            VIRTUAL_PORT,
        );
        if let Some((_, ticket)) = spec.relay {
            routes.by_token.insert(ticket.token, virtual_addr);
        }
        if spec.direct_allowed {
            for c in &spec.candidates {
                routes.by_peer.insert(canonical(*c), virtual_addr);
            }
        }
        debug!(%virtual_addr, candidates = ?spec.candidates, relay = ?spec.relay.map(|r| r.0), "route added");
        routes.by_virtual.insert(
            virtual_addr,
            Route {
                spec,
                direct: None,
                direct_via: Via::Main,
                pending_direct: None,
                direct_since: None,
                path_changes: 0,
                unanswered_since: None,
                last_tx: None,
                relay_refreshed: None,
                rebound: None,
                bound: Arc::new(Notify::new()),
                heard: false,
                learned: Vec::new(),
                news: Arc::new(Notify::new()),
                early: VecDeque::new(),
            },
        );
        RouteHandle {
            socket: self.clone(),
            virtual_addr,
        }
    }

    fn remove_route(&self, virtual_addr: SocketAddr) {
        let mut routes = self.lock_routes();
        if let Some(route) = routes.by_virtual.remove(&virtual_addr) {
            if let Some((_, ticket)) = route.spec.relay {
                routes.by_token.remove(&ticket.token);
            }
            routes.by_peer.retain(|_, v| *v != virtual_addr);
            debug!(%virtual_addr, "route removed");
        }
    }

    /// Where the route of `virtual_addr` sends now.
    pub fn route_state(&self, virtual_addr: SocketAddr) -> Option<RouteState> {
        let routes = self.lock_routes();
        let r = routes.by_virtual.get(&canonical(virtual_addr))?;
        Some(RouteState {
            path: r.path(),
            path_changes: r.path_changes,
            direct_since: r.direct_since,
        })
    }

    /// Moves a route to the direct path `peer` (a candidate that answered a punch probe), or
    /// notes it for [`Self::release_direct`] while the route is held. Either way it replays
    /// what was sent before anything came back, so a handshake packet the peer's NAT dropped
    /// before its own probes opened it need not wait for quinn's retransmission. Returns
    /// whether the route moved. `via` is the socket the path goes out of.
    pub fn set_direct(&self, virtual_addr: SocketAddr, peer: SocketAddr, via: Via) -> bool {
        let peer = canonical(peer);
        let (moved, replay) = {
            let mut routes = self.lock_routes();
            let Some(route) = routes.by_virtual.get_mut(&canonical(virtual_addr)) else {
                return false;
            };
            if !route.spec.direct_allowed {
                return false;
            }
            let moved = go_direct(route, virtual_addr, peer, via);
            // Once anything came back the handshake got through; nothing needs replaying.
            let replay: Vec<_> = if route.heard {
                Vec::new()
            } else {
                route.early.iter().cloned().collect()
            };
            if moved || route.heard {
                route.early.clear();
            }
            routes.by_peer.insert(peer, virtual_addr);
            (moved, replay)
        };
        for (bytes, segment_size) in replay {
            let _ = self.send_via(
                via,
                &Transmit {
                    destination: peer,
                    ecn: None,
                    contents: &bytes,
                    segment_size,
                    src_ip: None,
                },
            );
        }
        moved
    }

    /// Adds candidate addresses to a route (learnt after it was made, e.g. from the peer over
    /// the authenticated session); at most [`proto::rendezvous::MAX_CANDIDATES`] in all.
    pub fn add_candidates(&self, virtual_addr: SocketAddr, addrs: &[SocketAddr]) {
        let virtual_addr = canonical(virtual_addr);
        let mut routes = self.lock_routes();
        let Routes {
            by_virtual,
            by_peer,
            ..
        } = &mut *routes;
        let Some(route) = by_virtual.get_mut(&virtual_addr) else {
            return;
        };
        for a in addrs.iter().map(|a| canonical(*a)) {
            if route.spec.candidates.len() >= proto::rendezvous::MAX_CANDIDATES
                || route.spec.candidates.contains(&a)
            {
                continue;
            }
            route.spec.candidates.push(a);
            if route.spec.direct_allowed {
                by_peer.insert(a, virtual_addr);
            }
        }
    }

    /// Notes `from`, which sent us a punch probe, as a peer-reflexive candidate of every route
    /// still looking for a direct path whose candidates share its IP: a peer behind an
    /// endpoint-dependent NAT probes from a port nobody could tell us in advance. Only the IP
    /// of a candidate the rendezvous gave is trusted; the address is used once our own probe to
    /// it is answered.
    fn learn_peer_reflexive(&self, from: SocketAddr) {
        let from = canonical(from);
        let mut routes = self.lock_routes();
        if routes.by_peer.contains_key(&from) {
            return;
        }
        for (virtual_addr, route) in routes.by_virtual.iter_mut() {
            let same_ip = route
                .spec
                .candidates
                .iter()
                .any(|c| canonical(*c).ip() == from.ip());
            if route.spec.direct_allowed
                && route.direct.is_none()
                && same_ip
                && !route.learned.contains(&from)
                && route.learned.len() < MAX_LEARNED
            {
                debug!(%from, route = %virtual_addr, "peer-reflexive candidate");
                route.learned.push(from);
                route.news.notify_one();
            }
        }
    }

    /// The peer-reflexive candidates a route learnt so far, and what signals a new one.
    pub fn learned_candidates(
        &self,
        virtual_addr: SocketAddr,
    ) -> Option<(Vec<SocketAddr>, Arc<Notify>)> {
        let routes = self.lock_routes();
        let r = routes.by_virtual.get(&canonical(virtual_addr))?;
        Some((r.learned.clone(), r.news.clone()))
    }

    /// Ends the hold of a route (see [`RouteSpec::hold_direct`]) and moves it to the direct
    /// path found meanwhile, if any. Returns whether it moved.
    pub fn release_direct(&self, virtual_addr: SocketAddr) -> bool {
        let mut routes = self.lock_routes();
        let Some(route) = routes.by_virtual.get_mut(&canonical(virtual_addr)) else {
            return false;
        };
        route.spec.hold_direct = false;
        match route.pending_direct.take() {
            Some((peer, via)) => go_direct(route, virtual_addr, peer, via),
            None => false,
        }
    }

    /// Sends out of the socket `via` (the main one if that pool socket is closed). A pool
    /// socket that would block is noted, so quinn's write poller waits for it.
    fn send_via(&self, via: Via, t: &Transmit<'_>) -> io::Result<()> {
        let Via::Pool(id) = via else {
            return self.inner.try_send(t);
        };
        let Some(socket) = self.socket_for(via) else {
            return self.inner.try_send(t);
        };
        let sent = socket.try_send(t);
        if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.pool_blocked.store(u64::from(id), Ordering::Relaxed);
        }
        sent
    }

    /// The socket a packet goes out of for `via` (`None`: that pool socket is closed).
    fn socket_for(&self, via: Via) -> Option<Arc<dyn AsyncUdpSocket>> {
        match via {
            Via::Main => Some(self.inner.clone()),
            Via::Pool(id) => self.lock_pool().sockets.get(&id).map(|(s, _)| s.clone()),
        }
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        lock(&self.pool)
    }

    /// Opens `n` more UDP sockets for birthday punching towards the peer at `peer` (on the
    /// main socket's IP, each on a port of its own, so an endpoint-dependent NAT gives each
    /// its own mapping towards the peer). What they receive from that IP is read like the
    /// main socket's: STUN is answered out of the socket it came in on, binding requests are
    /// noted for [`PoolGuard::take_hits`], and QUIC goes to quinn; anything from elsewhere is
    /// dropped. They close when the returned guard is dropped.
    pub fn open_pool(self: &Arc<Self>, n: usize, peer: IpAddr) -> io::Result<PoolGuard> {
        let peer = peer.to_canonical();
        let ip = self.inner.local_addr()?.ip();
        let mut opened = Vec::with_capacity(n);
        for _ in 0..n {
            let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
            opened.push(self.runtime.wrap_udp_socket(std_socket)?);
        }
        let ids = {
            let mut pool = self.lock_pool();
            let ids: Vec<u32> = opened
                .into_iter()
                .map(|socket| {
                    let id = pool.next;
                    pool.next = pool.next.wrapping_add(1);
                    pool.sockets.insert(id, (socket, peer));
                    id
                })
                .collect();
            self.pool_open.store(pool.sockets.len(), Ordering::Relaxed);
            ids
        };
        // The reader may be asleep on the main socket alone: let it poll the new ones too.
        if let Some(waker) = lock(&self.recv_waker).take() {
            waker.wake();
        }
        debug!(sockets = n, "birthday pool opened");
        Ok(PoolGuard {
            socket: self.clone(),
            ids,
        })
    }

    fn close_pool_sockets(&self, ids: &[u32]) {
        let mut pool = self.lock_pool();
        for id in ids {
            pool.sockets.remove(id);
        }
        pool.reply_via.retain(|_, id| !ids.contains(id));
        pool.hits.retain(|(id, _)| !ids.contains(id));
        self.pool_open.store(pool.sockets.len(), Ordering::Relaxed);
    }

    /// Signalled when a pool socket receives a binding request.
    pub fn pool_news(&self) -> Arc<Notify> {
        self.pool_news.clone()
    }

    /// Tells the relay this socket holds the route's token, retransmitting until it answers or
    /// `timeout` passes. Returns whether it answered; `Ok(false)` too for a route without relay.
    pub async fn bind_relay(
        &self,
        virtual_addr: SocketAddr,
        timeout: Duration,
    ) -> io::Result<bool> {
        let (relay, ticket, bound) = {
            let routes = self.lock_routes();
            match routes.by_virtual.get(&canonical(virtual_addr)) {
                Some(Route {
                    spec:
                        RouteSpec {
                            relay: Some((relay, ticket)),
                            ..
                        },
                    bound,
                    ..
                }) => (*relay, *ticket, bound.clone()),
                _ => return Ok(false),
            }
        };
        let sending = async {
            let start = tokio::time::Instant::now();
            for at in BIND_RETRIES_MS {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                // A fresh counter each time: the relay takes each proof once.
                let frame = relay::bind_frame(&ticket, bind_counter());
                self.send_raw(relay, &frame).await?;
            }
            std::future::pending::<io::Result<bool>>().await
        };
        let outcome = tokio::time::timeout(timeout, async {
            tokio::select! {
                () = bound.notified() => Ok(true),
                r = sending => r,
            }
        })
        .await;
        outcome.unwrap_or(Ok(false))
    }

    /// Sends a transmit for a virtual address along its route's current path.
    fn send_routed(&self, t: &Transmit<'_>) -> io::Result<()> {
        let dest = canonical(t.destination);
        let mut routes = self.lock_routes();
        let Some(route) = routes.by_virtual.get_mut(&dest) else {
            // The route is gone (its session ended): like a packet lost on the way.
            debug!(%dest, "no route: packet dropped");
            return Ok(());
        };
        let now = Instant::now();
        if let Some(direct) = route.direct {
            if !direct_alive(route, now) {
                info!(
                    peer = %direct,
                    route = %dest,
                    "path: direct → relay (nothing came back on the direct path for {DIRECT_DEAD_AFTER:?})"
                );
                route.direct = None;
                route.path_changes += 1;
                // No flapping: a path that died once is not trusted again in this session.
                route.spec.direct_allowed = false;
            } else {
                let refresh = route.spec.relay.filter(|_| {
                    route
                        .relay_refreshed
                        .is_none_or(|at| now.duration_since(at) >= RELAY_REFRESH)
                });
                if refresh.is_some() {
                    route.relay_refreshed = Some(now);
                }
                let via = route.direct_via;
                drop(routes);
                if let Some((relay, ticket)) = refresh {
                    // Best effort: a lost refresh is retried at the next interval.
                    let frame = relay::bind_frame(&ticket, bind_counter());
                    let _ = self.inner.try_send(&transmit(relay, &frame));
                }
                return self.send_via(
                    via,
                    &Transmit {
                        destination: direct,
                        ..*t
                    },
                );
            }
        }
        if !route.heard {
            if route.early.len() == EARLY_KEPT {
                route.early.pop_front();
            }
            route.early.push_back((t.contents.to_vec(), t.segment_size));
        }
        if let Some((relay, ticket)) = route.spec.relay {
            drop(routes);
            return self.send_relayed(relay, ticket.token, t);
        }
        // No relay and no direct path yet: every candidate (duplicates are harmless to QUIC).
        let candidates = route.spec.candidates.clone();
        drop(routes);
        let mut first_error = None;
        let mut sent = false;
        for (i, c) in candidates.into_iter().enumerate() {
            match self.inner.try_send(&Transmit {
                destination: c,
                ..*t
            }) {
                Ok(()) => sent = true,
                // Nothing went out yet: quinn waits for room and sends it all again.
                Err(e) if i == 0 && e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if !sent => Err(e),
            _ => Ok(()),
        }
    }

    /// Puts a relay header before every segment of `t` and sends it all to the relay.
    fn send_relayed(&self, relay: SocketAddr, token: Token, t: &Transmit<'_>) -> io::Result<()> {
        let header = relay::data_header(token);
        let seg = t.segment_size.unwrap_or(t.contents.len()).max(1);
        let mut buf = lock(&self.relay_buf);
        buf.clear();
        for chunk in t.contents.chunks(seg) {
            buf.extend_from_slice(&header);
            buf.extend_from_slice(chunk);
        }
        self.inner.try_send(&Transmit {
            destination: relay,
            ecn: t.ecn,
            contents: &buf,
            segment_size: t.segment_size.map(|s| s + relay::HEADER_LEN),
            src_ip: t.src_ip,
        })
    }

    /// Rewrites one received buffer that is not STUN: relay frames lose their header and come
    /// from their route's virtual address, a route's peer comes from its virtual address.
    /// Returns the source, length and stride to give quinn, or `None` if nothing is left.
    fn demux(
        &self,
        buf: &mut [u8],
        meta: &RecvMeta,
        via: Via,
    ) -> Option<(SocketAddr, usize, usize)> {
        let from = canonical(meta.addr);
        if relay::is_relay(&buf[..meta.len]) && via == Via::Main {
            return self.on_relay(buf, meta, from);
        }
        let mut routes = self.lock_routes();
        let Some(&virtual_addr) = routes.by_peer.get(&from) else {
            drop(routes);
            // Not a route's: answers go back out of the socket this came in on.
            if self.pool_open.load(Ordering::Relaxed) > 0 {
                let mut pool = self.lock_pool();
                match via {
                    // (The pool's reader let in only the peer's IP.)
                    Via::Pool(id) => {
                        let room = pool.reply_via.len() < MAX_REPLY_VIA;
                        match pool.reply_via.get_mut(&from) {
                            Some(known) => *known = id,
                            None if room => {
                                pool.reply_via.insert(from, id);
                            }
                            None => {}
                        }
                    }
                    Via::Main => {
                        pool.reply_via.remove(&from);
                    }
                }
            }
            return Some((meta.addr, meta.len, meta.stride));
        };
        if let Some(route) = routes.by_virtual.get_mut(&virtual_addr) {
            route.heard = true;
            // Anything straight from the peer shows the direct path is alive, whichever of
            // its addresses it came from (a peer with several may answer from another one
            // than we send to, e.g. loopback against a LAN address).
            if route.direct.is_some() {
                route.unanswered_since = None;
            }
            // The peer sends straight to us, so the path works: answer the same way.
            if route.direct.is_none() && route.spec.direct_allowed {
                go_direct(route, virtual_addr, from, via);
            }
        }
        Some((self.present(virtual_addr), meta.len, meta.stride))
    }

    fn on_relay(
        &self,
        buf: &mut [u8],
        meta: &RecvMeta,
        from: SocketAddr,
    ) -> Option<(SocketAddr, usize, usize)> {
        let len = meta.len;
        let stride = if meta.stride == 0 { len } else { meta.stride };
        let mut routes = self.lock_routes();
        let mut first: Option<SocketAddr> = None;
        let mut stash = Vec::new();
        let (mut kept, mut at) = (0, 0);
        while at < len {
            let end = (at + stride).min(len);
            // Data, the relay's answer to a bind, or its request to bind again; nothing else
            // comes to a peer.
            let frame = match relay::parse(&buf[at..end]) {
                Ok(relay::Frame::Data { token, .. }) => Some((token, FromRelay::Data)),
                Ok(relay::Frame::Bound { token }) => Some((token, FromRelay::Bound)),
                Ok(relay::Frame::Rebind { token }) => Some((token, FromRelay::Rebind)),
                _ => None,
            };
            let route = frame.and_then(|(token, data)| {
                let v = *routes.by_token.get(&token)?;
                let r = routes.by_virtual.get_mut(&v)?;
                let from_its_relay = r
                    .spec
                    .relay
                    .is_some_and(|(relay, _)| canonical(relay) == from);
                from_its_relay.then_some((v, r, data))
            });
            match route {
                Some((v, r, FromRelay::Data)) => {
                    r.heard = true;
                    let payload = at + relay::HEADER_LEN..end;
                    if first.is_none_or(|f| f == v) {
                        first = Some(v);
                        let n = payload.len();
                        buf.copy_within(payload, kept);
                        kept += n;
                    } else {
                        stash.push((self.present(v), buf[payload].to_vec(), meta.ecn));
                    }
                }
                Some((_, r, FromRelay::Bound)) => r.bound.notify_one(),
                // The relay no longer sees this socket where it was bound (our NAT moved us):
                // prove the new address, at most once per interval.
                Some((_, r, FromRelay::Rebind)) => {
                    let now = Instant::now();
                    if r.rebound
                        .is_none_or(|t| now.duration_since(t) >= REBIND_EVERY)
                        && let Some((relay, ticket)) = r.spec.relay
                    {
                        r.rebound = Some(now);
                        debug!(%relay, "relay asks for a new bind");
                        let frame = relay::bind_frame(&ticket, bind_counter());
                        let _ = self.inner.try_send(&transmit(relay, &frame));
                    }
                }
                _ => {
                    self.counters.relay_stray.fetch_add(1, Ordering::Relaxed);
                }
            }
            at = end;
        }
        drop(routes);
        if !stash.is_empty() {
            lock(&self.stash).extend(stash);
        }
        let v = first?;
        (kept > 0).then(|| {
            (
                self.present(v),
                kept,
                stride.saturating_sub(relay::HEADER_LEN).max(1),
            )
        })
    }

    /// Hands out datagrams stashed by an earlier read.
    fn drain_stash(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        let mut stash = lock(&self.stash);
        let mut n = 0;
        while n < bufs.len().min(meta.len()) {
            let Some((addr, bytes, ecn)) = stash.pop_front() else {
                break;
            };
            let len = bytes.len().min(bufs[n].len());
            bufs[n][..len].copy_from_slice(&bytes[..len]);
            meta[n] = RecvMeta {
                addr,
                len,
                stride: len.max(1),
                ecn,
                dst_ip: None,
            };
            n += 1;
        }
        n
    }

    /// Sends one datagram outside QUIC (STUN, punch probes), waiting for room in the socket.
    pub async fn send_raw(&self, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        self.send_raw_via(Via::Main, to, bytes).await
    }

    /// [`Self::send_raw`] out of the socket `via` (an error if that pool socket is closed).
    pub async fn send_raw_via(&self, via: Via, to: SocketAddr, bytes: &[u8]) -> io::Result<()> {
        let socket = self
            .socket_for(via)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotConnected, "pool socket closed"))?;
        let mut poller = socket.clone().create_io_poller();
        loop {
            std::future::poll_fn(|cx| poller.as_mut().poll_writable(cx)).await?;
            match socket.try_send(&transmit(to, bytes)) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
    }

    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        lock(&self.waiters)
    }

    /// Handles one STUN datagram from `from`.
    fn on_stun(&self, datagram: &[u8], from: SocketAddr, via: Via) {
        match stun::kind(datagram) {
            // Never more bytes than were received: the source is not proven (quicdesk's probes
            // are padded, so they are answered whole).
            stun::Kind::BindingRequest => {
                match stun::answer(datagram, from, Some(datagram.len())) {
                    Ok(Some(_)) if !self.take_answer() => {
                        self.counters
                            .stun_requests_limited
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Some(reply)) => {
                        // Best effort, never blocking the receive path: a lost answer is retried
                        // by the asker.
                        let sent = match via {
                            Via::Main => {
                                let sent = self.inner.try_send(&transmit(from, &reply)).is_ok();
                                self.learn_peer_reflexive(from);
                                sent
                            }
                            // Noted and answered under the pool's lock, so a socket that answered
                            // is never closed by a punch that has not seen the hit.
                            Via::Pool(id) => {
                                let mut pool = self.lock_pool();
                                let Some((socket, _)) = pool.sockets.get(&id).cloned() else {
                                    return;
                                };
                                let hit = (id, canonical(from));
                                if pool.hits.len() < MAX_POOL_HITS && !pool.hits.contains(&hit) {
                                    pool.hits.push(hit);
                                    self.pool_news.notify_one();
                                }
                                socket.try_send(&transmit(from, &reply)).is_ok()
                            }
                        };
                        if sent {
                            self.counters
                                .stun_requests_answered
                                .fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(None) | Err(_) => self.stray(from),
                }
            }
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
        lock(&self.answers).take(Instant::now())
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

/// Notes a send on a route's direct path and says whether the path still looks alive: not
/// when sends have kept coming (gaps under [`DIRECT_DEAD_AFTER`]) for longer than that without
/// a packet back. A route without a relay has nowhere to go and stays.
fn direct_alive(route: &mut Route, now: Instant) -> bool {
    let gap_ok = route
        .last_tx
        .is_some_and(|t| now.duration_since(t) < DIRECT_DEAD_AFTER);
    route.last_tx = Some(now);
    let since = match route.unanswered_since {
        Some(since) if gap_ok => since,
        _ => {
            route.unanswered_since = Some(now);
            now
        }
    };
    route.spec.relay.is_none() || now.duration_since(since) < DIRECT_DEAD_AFTER
}

/// Moves a route to the direct path `peer`; `false` if it may not, is held (then `peer` is
/// kept for later) or already has one.
fn go_direct(route: &mut Route, virtual_addr: SocketAddr, peer: SocketAddr, via: Via) -> bool {
    if !route.spec.direct_allowed || route.direct.is_some() {
        return false;
    }
    if route.spec.hold_direct {
        route.pending_direct.get_or_insert((peer, via));
        return false;
    }
    let before = route.path();
    route.direct = Some(peer);
    route.direct_via = via;
    route.direct_since.get_or_insert_with(Instant::now);
    route.unanswered_since = None;
    if before != PathKind::Direct {
        route.path_changes += 1;
        info!(%peer, route = %virtual_addr, ?via, "path: relay → direct");
    } else {
        debug!(%peer, route = %virtual_addr, "path: direct to one candidate");
    }
    true
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

/// Waits until the main socket has room to send, and the pool socket that last refused a
/// send too (quinn asks before every send, so this must stay cheap: one atomic load unless a
/// pool socket was full).
struct PeerPoller {
    socket: Arc<PeerSocket>,
    inner: Pin<Box<dyn UdpPoller>>,
    blocked: Option<(u32, Pin<Box<dyn UdpPoller>>)>,
}

impl fmt::Debug for PeerPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerPoller")
            .field("blocked", &self.blocked.as_ref().map(|(id, _)| id))
            .finish_non_exhaustive()
    }
}

impl UdpPoller for PeerPoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.inner.as_mut().poll_writable(cx))?;
        let blocked = this.socket.pool_blocked.load(Ordering::Relaxed);
        let Ok(id) = u32::try_from(blocked) else {
            this.blocked = None;
            return Poll::Ready(Ok(()));
        };
        if this.blocked.as_ref().is_none_or(|(b, _)| *b != id) {
            this.blocked = this
                .socket
                .socket_for(Via::Pool(id))
                .map(|s| (id, s.create_io_poller()));
        }
        if let Some((_, poller)) = this.blocked.as_mut() {
            ready!(poller.as_mut().poll_writable(cx))?;
        }
        // Writable again (or closed): nothing to wait for. The poller holds its socket
        // open, so it goes too.
        this.blocked = None;
        let _ = this.socket.pool_blocked.compare_exchange(
            blocked,
            NONE_BLOCKED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Poll::Ready(Ok(()))
    }
}

impl PeerSocket {
    /// Hands what one read of socket `via` got (`n` datagrams) to STUN, the relay routes and
    /// the peer routes, dropping any not from `only_from` when given; returns how many
    /// datagrams are left for quinn, moved to the front.
    fn take_in(
        &self,
        via: Via,
        only_from: Option<IpAddr>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
    ) -> usize {
        let mut kept = 0;
        for i in 0..n {
            let mut m = meta[i];
            if only_from.is_some_and(|ip| canonical(m.addr).ip() != ip) {
                continue;
            }
            m.len = split_stun(&mut bufs[i], m.len, m.stride, |d| {
                self.on_stun(d, m.addr, via);
            });
            if m.len == 0 {
                continue;
            }
            let Some((addr, len, stride)) = self.demux(&mut bufs[i], &m, via) else {
                continue;
            };
            (meta[i].addr, meta[i].len, meta[i].stride) = (addr, len, stride);
            if kept != i {
                let (left, right) = bufs.split_at_mut(i);
                left[kept][..len].copy_from_slice(&right[0][..len]);
                meta[kept] = meta[i];
            }
            kept += 1;
        }
        kept
    }

    /// Reads the pool sockets in turn until one has something for quinn (registering the
    /// waker on those with nothing); `Some(kept)` if any had something (possibly nothing for
    /// quinn), `None` if none had anything.
    fn poll_pool(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Option<usize> {
        let sockets: Vec<_> = self
            .lock_pool()
            .sockets
            .iter()
            .map(|(id, (s, peer))| (*id, s.clone(), *peer))
            .collect();
        let mut read = None;
        for (id, s, peer) in sockets {
            match s.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => {
                    // Only the peer may use a pool socket.
                    let kept = self.take_in(Via::Pool(id), Some(peer), bufs, meta, n);
                    if kept > 0 {
                        return Some(kept);
                    }
                    read = Some(0);
                }
                // E.g. an ICMP error reported late: the pool is best effort.
                Poll::Ready(Err(e)) => debug!(pool_socket = id, "pool socket: {e}"),
                Poll::Pending => {}
            }
        }
        read
    }
}

impl AsyncUdpSocket for PeerSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        Box::pin(PeerPoller {
            inner: self.inner.clone().create_io_poller(),
            socket: self,
            blocked: None,
        })
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        if is_virtual(transmit.destination) {
            return self.send_routed(transmit);
        }
        if self.pool_open.load(Ordering::Relaxed) > 0 {
            let pool = self.lock_pool();
            let id = pool
                .reply_via
                .get(&canonical(transmit.destination))
                .copied();
            drop(pool);
            if let Some(id) = id {
                return self.send_via(Via::Pool(id), transmit);
            }
        }
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let stashed = self.drain_stash(bufs, meta);
        if stashed > 0 {
            return Poll::Ready(Ok(stashed));
        }
        loop {
            let mut pool_read = false;
            let got = match self.inner.poll_recv(cx, bufs, meta)? {
                Poll::Ready(n) => Some(self.take_in(Via::Main, None, bufs, meta, n)),
                Poll::Pending if self.pool_open.load(Ordering::Relaxed) > 0 => {
                    pool_read = true;
                    self.poll_pool(cx, bufs, meta)
                }
                Poll::Pending => None,
            };
            match got {
                Some(kept) if kept > 0 => return Poll::Ready(Ok(kept)),
                Some(_) => {
                    let stashed = self.drain_stash(bufs, meta);
                    if stashed > 0 {
                        return Poll::Ready(Ok(stashed));
                    }
                    // Nothing for quinn (STUN, relay binds): read again, so every socket
                    // ends up registering the waker.
                }
                None => {
                    let mut waker = lock(&self.recv_waker);
                    if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                        *waker = Some(cx.waker().clone());
                    }
                    drop(waker);
                    // A pool opened since the check would not have woken this read.
                    if !pool_read && self.pool_open.load(Ordering::Relaxed) > 0 {
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
            }
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
        .map_err(|_| crate::Error::Exporter)?;
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
