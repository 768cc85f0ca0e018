//! Birthday pool sockets: the extra UDP sockets a route's agent asks for
//! ([`pathagent::Event::OpenPool`]), each with its own NAT mapping towards the peer, and the
//! write poller that waits for whichever of them last refused a send.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use quinn::udp::Transmit;
use quinn::{AsyncUdpSocket, UdpPoller};

use super::PeerSocket;
use crate::lock;

/// No pool socket has refused a send (see [`Pool::blocked`]).
const NONE_BLOCKED: u64 = u64::MAX;

/// One pool socket: the route (virtual address) it belongs to and its id in that route's agent.
#[derive(Clone)]
pub(super) struct PoolSocket {
    pub socket: Arc<dyn AsyncUdpSocket>,
    /// The same socket for the agent's own datagrams: a plain non-blocking `sendto`. (quinn's
    /// `try_send` on a socket the reactor has not seen writable yet fails at once, which lost
    /// every pool socket's first probe.)
    raw: Arc<std::net::UdpSocket>,
    pub route: SocketAddr,
    pub id: u32,
}

#[derive(Default)]
struct Inner {
    /// By socket-wide id.
    sockets: HashMap<u32, PoolSocket>,
    /// (route, agent's id) → socket-wide id.
    by_route: HashMap<(SocketAddr, u32), u32>,
    next: u32,
}

pub(super) struct Pool {
    inner: Mutex<Inner>,
    /// How many are open (0: the common case, no pool lock on the hot paths).
    open: AtomicUsize,
    /// The socket-wide id of the pool socket that last refused a send (would block), for the
    /// write poller to wait on; [`NONE_BLOCKED`] if none.
    blocked: AtomicU64,
}

impl Default for Pool {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            open: AtomicUsize::new(0),
            blocked: AtomicU64::new(NONE_BLOCKED),
        }
    }
}

impl Pool {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Relaxed) > 0
    }

    /// Opens one socket per id on `ip` (each on a port of its own) for `route`'s agent.
    pub fn open(
        &self,
        runtime: &Arc<dyn quinn::Runtime>,
        ip: std::net::IpAddr,
        route: SocketAddr,
        ids: &[u32],
    ) -> io::Result<()> {
        let mut opened = Vec::with_capacity(ids.len());
        for &id in ids {
            let std_socket = std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?;
            let raw = Arc::new(std_socket.try_clone()?);
            opened.push((id, runtime.wrap_udp_socket(std_socket)?, raw));
        }
        let mut inner = lock(&self.inner);
        for (id, socket, raw) in opened {
            let gid = inner.next;
            inner.next = inner.next.wrapping_add(1);
            inner.sockets.insert(
                gid,
                PoolSocket {
                    socket,
                    raw,
                    route,
                    id,
                },
            );
            inner.by_route.insert((route, id), gid);
        }
        self.open.store(inner.sockets.len(), Ordering::Relaxed);
        Ok(())
    }

    /// Closes `route`'s sockets of these ids (all of them with `None`).
    pub fn close(&self, route: SocketAddr, ids: Option<&[u32]>) {
        let mut inner = lock(&self.inner);
        let Inner {
            sockets, by_route, ..
        } = &mut *inner;
        by_route.retain(|(r, id), gid| {
            let close = *r == route && ids.is_none_or(|ids| ids.contains(id));
            if close {
                sockets.remove(gid);
            }
            !close
        });
        self.open.store(sockets.len(), Ordering::Relaxed);
    }

    /// The socket `route`'s agent calls `id`, and its socket-wide id.
    pub fn socket(&self, route: SocketAddr, id: u32) -> Option<(u32, Arc<dyn AsyncUdpSocket>)> {
        let inner = lock(&self.inner);
        let gid = *inner.by_route.get(&(route, id))?;
        Some((gid, inner.sockets.get(&gid)?.socket.clone()))
    }

    /// Sends one of the agent's datagrams out of `route`'s pool socket `id` (a closed one, or
    /// a full buffer, is like a lost packet: the agent retransmits what matters).
    pub fn send_raw(
        &self,
        route: SocketAddr,
        id: u32,
        to: SocketAddr,
        bytes: &[u8],
    ) -> io::Result<()> {
        let raw = {
            let inner = lock(&self.inner);
            let Some(gid) = inner.by_route.get(&(route, id)) else {
                return Ok(());
            };
            inner.sockets.get(gid).map(|s| s.raw.clone())
        };
        match raw {
            Some(raw) => raw.send_to(bytes, to).map(|_| ()),
            None => Ok(()),
        }
    }

    fn by_gid(&self, gid: u32) -> Option<Arc<dyn AsyncUdpSocket>> {
        lock(&self.inner)
            .sockets
            .get(&gid)
            .map(|s| s.socket.clone())
    }

    /// Every open pool socket.
    pub fn all(&self) -> Vec<PoolSocket> {
        lock(&self.inner).sockets.values().cloned().collect()
    }

    /// Sends out of `route`'s pool socket `id`; one that would block is noted, so quinn's
    /// write poller waits for it. A closed one is like a lost packet.
    pub fn send(&self, route: SocketAddr, id: u32, t: &Transmit<'_>) -> io::Result<()> {
        let Some((gid, socket)) = self.socket(route, id) else {
            return Ok(());
        };
        let sent = socket.try_send(t);
        if matches!(&sent, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
            self.blocked.store(u64::from(gid), Ordering::Relaxed);
        }
        sent
    }
}

/// Waits until the main socket has room to send, and the pool socket that last refused a
/// send too (quinn asks before every send, so this must stay cheap: one atomic load unless a
/// pool socket was full).
pub(super) struct PeerPoller {
    pub socket: Arc<PeerSocket>,
    pub inner: Pin<Box<dyn UdpPoller>>,
    pub blocked: Option<(u32, Pin<Box<dyn UdpPoller>>)>,
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
        let pool = &this.socket.pool;
        let blocked = pool.blocked.load(Ordering::Relaxed);
        let Ok(gid) = u32::try_from(blocked) else {
            this.blocked = None;
            return Poll::Ready(Ok(()));
        };
        if this.blocked.as_ref().is_none_or(|(b, _)| *b != gid) {
            this.blocked = pool.by_gid(gid).map(|s| (gid, s.create_io_poller()));
        }
        if let Some((_, poller)) = this.blocked.as_mut() {
            ready!(poller.as_mut().poll_writable(cx))?;
        }
        // Writable again (or closed): nothing to wait for. The poller holds its socket
        // open, so it goes too.
        this.blocked = None;
        let _ = pool.blocked.compare_exchange(
            blocked,
            NONE_BLOCKED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        Poll::Ready(Ok(()))
    }
}
