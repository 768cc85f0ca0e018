//! Routes: one [`pathagent::Agent`] per remote peer behind a virtual address, what quinn sends
//! to it (along the agent's path), what the agents ask for (datagrams, pool sockets, views for
//! the session code), and the one timer task that wakes them.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use pathagent::{Agent, Event, Mapping, Path, SendPath, Transmit as AgentTransmit, Via};
use proto::relay::Token;
use quinn::udp::Transmit;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

use super::{PeerSocket, canonical};
use crate::lock;
use crate::stats::PathKind;

/// The port of every virtual address.
const VIRTUAL_PORT: u16 = 4433;

/// What a route's session code sees of its agent, updated as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteView {
    pub path: PathKind,
    /// How often the route moved between the relay and a direct path.
    pub path_changes: u32,
    /// When it first went direct.
    pub direct_since: Option<Instant>,
    /// How often the relay accepted a bind.
    pub relay_binds: u32,
    /// This side's candidates and NAT mapping, once discovery is over; replaced when they
    /// change (a NAT that lost its mappings hands out new ports): send them to the peer.
    pub local: Option<(Vec<SocketAddr>, Mapping)>,
}

impl Default for RouteView {
    fn default() -> Self {
        Self {
            path: PathKind::Direct,
            path_changes: 0,
            direct_since: None,
            relay_binds: 0,
            local: None,
        }
    }
}

/// Returns when `view` changes; never while it is `None`, and it becomes `None` once its route
/// is gone (so a loop that waits on it alongside other things does not spin).
pub async fn view_changed(view: &mut Option<watch::Receiver<RouteView>>) {
    if let Some(v) = view.as_mut() {
        if v.changed().await.is_ok() {
            return;
        }
        *view = None;
    }
    std::future::pending().await
}

/// Waits until the route of `view` had a bind accepted by the relay, at most `timeout`
/// (also for a route whose handle is held elsewhere); whether it did.
pub async fn relay_bound(mut view: watch::Receiver<RouteView>, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, view.wait_for(|v| v.relay_binds > 0)).await,
        Ok(Ok(_))
    )
}

/// Where a route's packets go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteState {
    pub path: PathKind,
    pub path_changes: u32,
    pub direct_since: Option<Instant>,
}

pub(super) struct Session {
    pub agent: Agent,
    /// Whether QUIC from the peer's own addresses is given to quinn from the virtual address
    /// (`false`: as is, and quinn's migration follows the peer; see [`PeerSocket::add_route`]).
    pub claims_quic: bool,
    view: watch::Sender<RouteView>,
    /// The path fields last put in the view (compared per packet without the view's lock).
    shown: (PathKind, u32, Option<Instant>),
}

#[derive(Default)]
pub(super) struct Sessions {
    pub by_virtual: HashMap<SocketAddr, Session>,
    pub by_token: HashMap<Token, SocketAddr>,
    next: u32,
    /// When the timer task wakes next.
    armed: Option<Instant>,
}

/// What agents asked for, done once the sessions' lock is released.
#[derive(Default)]
pub(super) struct Outputs {
    /// Datagrams: the route they are for (`None`: the socket's own answers) and what to send.
    pub transmits: Vec<(Option<SocketAddr>, AgentTransmit)>,
    open_pool: Vec<(SocketAddr, Vec<u32>)>,
    close_pool: Vec<(SocketAddr, Vec<u32>)>,
    wake_timer: bool,
}

impl Outputs {
    fn is_empty(&self) -> bool {
        self.transmits.is_empty()
            && self.open_pool.is_empty()
            && self.close_pool.is_empty()
            && !self.wake_timer
    }
}

fn kind(path: Path) -> PathKind {
    match path {
        Path::Relay(_) => PathKind::Relay,
        _ => PathKind::Direct,
    }
}

impl Sessions {
    /// Takes what route `v`'s agent has for the driver: datagrams and pool requests into
    /// `out`, everything else into its view and the log; arms the timer earlier if needed.
    pub fn drain(&mut self, v: SocketAddr, out: &mut Outputs) {
        let Some(s) = self.by_virtual.get_mut(&v) else {
            return;
        };
        while let Some(t) = s.agent.poll_transmit() {
            out.transmits.push((Some(v), t));
        }
        while let Some(event) = s.agent.poll_event() {
            match event {
                Event::PathChanged { from, to, reason } => {
                    info!(route = %v, ?from, ?to, ?reason, "path changed");
                }
                Event::LocalCandidates { addrs, mapping } => {
                    debug!(route = %v, ?addrs, ?mapping, "this side's candidates");
                    s.view
                        .send_modify(|view| view.local = Some((addrs, mapping)));
                }
                Event::RelayBound => s.view.send_modify(|view| view.relay_binds += 1),
                Event::OpenPool { ids } => out.open_pool.push((v, ids)),
                Event::ClosePool { ids } => out.close_pool.push((v, ids)),
                Event::Mapping(m) => debug!(route = %v, ?m, "this side's NAT mapping"),
                Event::ReflexiveAddress { server, addr } => {
                    debug!(route = %v, %server, %addr, "reflexive address");
                }
                Event::CandidateLearned(a) => debug!(route = %v, %a, "peer-reflexive candidate"),
            }
        }
        let now_shown = (
            kind(s.agent.path()),
            s.agent.path_changes(),
            s.agent.direct_since(),
        );
        if now_shown != s.shown {
            s.shown = now_shown;
            s.view.send_modify(|view| {
                (view.path, view.path_changes, view.direct_since) = now_shown;
            });
        }
        if let Some(t) = s.agent.poll_timeout()
            && self.armed.is_none_or(|armed| t < armed)
        {
            self.armed = Some(t);
            out.wake_timer = true;
        }
    }
}

/// A route, removed from the socket when dropped.
#[derive(Debug)]
pub struct RouteHandle {
    socket: Arc<PeerSocket>,
    virtual_addr: SocketAddr,
    view: watch::Receiver<RouteView>,
}

impl RouteHandle {
    /// The address quinn knows the peer by.
    pub fn addr(&self) -> SocketAddr {
        self.virtual_addr
    }

    /// Calls `f` with the route's agent and the time now, then does what the agent asks.
    pub fn with<R>(&self, f: impl FnOnce(&mut Agent, Instant) -> R) -> R {
        self.socket
            .with_route(self.virtual_addr, f)
            .expect("a route lives as long as its handle")
    }

    /// What the session code sees of the agent (changes can be awaited).
    pub fn view(&self) -> watch::Receiver<RouteView> {
        self.view.clone()
    }

    pub fn state(&self) -> RouteState {
        let v = self.view.borrow();
        RouteState {
            path: v.path,
            path_changes: v.path_changes,
            direct_since: v.direct_since,
        }
    }

    /// Waits until the relay accepted a bind, at most `timeout`; whether it did.
    pub async fn relay_bound(&self, timeout: Duration) -> bool {
        relay_bound(self.view(), timeout).await
    }
}

impl Drop for RouteHandle {
    fn drop(&mut self) {
        self.socket.remove_route(self.virtual_addr);
    }
}

impl PeerSocket {
    pub(super) fn lock_sessions(&self) -> std::sync::MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }

    /// Adds a route to a remote peer, driven by a new agent with `cfg`, and returns the handle
    /// holding the virtual address to give quinn (the route goes when the handle is dropped).
    /// Set the agent up with [`RouteHandle::with`]: relay, candidates, discovery, punching.
    ///
    /// `claims_quic`: whether QUIC from the peer's own addresses reaches quinn from the virtual
    /// address. A controller's routes and a host's relayed ones do. A host without a relay
    /// does not: a controller's first packet may reach it before the rendezvous's
    /// announcement (so before the route exists), and quinn drops handshake packets that then
    /// come from another address; quinn's migration follows the controller instead.
    pub fn add_route(self: &Arc<Self>, cfg: pathagent::Config, claims_quic: bool) -> RouteHandle {
        let (tx, rx) = watch::channel(RouteView::default());
        let mut sessions = self.lock_sessions();
        let n = sessions.next;
        sessions.next = sessions.next.wrapping_add(1);
        let virtual_addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(240, (n >> 16) as u8, (n >> 8) as u8, n as u8)),
            VIRTUAL_PORT,
        );
        sessions.by_virtual.insert(
            virtual_addr,
            Session {
                agent: Agent::new(cfg, Instant::now()),
                claims_quic,
                view: tx,
                shown: (PathKind::Direct, 0, None),
            },
        );
        debug!(%virtual_addr, ?cfg, "route added");
        RouteHandle {
            socket: self.clone(),
            virtual_addr,
            view: rx,
        }
    }

    fn remove_route(&self, virtual_addr: SocketAddr) {
        let mut sessions = self.lock_sessions();
        if sessions.by_virtual.remove(&virtual_addr).is_some() {
            sessions.by_token.retain(|_, v| *v != virtual_addr);
            debug!(%virtual_addr, "route removed");
        }
        drop(sessions);
        self.pool.close(virtual_addr, None);
    }

    /// [`RouteHandle::with`] by virtual address (`None`: no such route).
    pub fn with_route<R>(
        &self,
        virtual_addr: SocketAddr,
        f: impl FnOnce(&mut Agent, Instant) -> R,
    ) -> Option<R> {
        let v = canonical(virtual_addr);
        let mut out = Outputs::default();
        let r = {
            let mut sessions = self.lock_sessions();
            let s = sessions.by_virtual.get_mut(&v)?;
            let r = f(&mut s.agent, Instant::now());
            // The relay may have been set: its frames carry the route's token.
            if let Some(token) = s.agent.relay_token() {
                sessions.by_token.insert(token, v);
            }
            sessions.drain(v, &mut out);
            r
        };
        self.flush(out);
        Some(r)
    }

    /// A route's view by virtual address.
    pub fn route_view(&self, virtual_addr: SocketAddr) -> Option<watch::Receiver<RouteView>> {
        let sessions = self.lock_sessions();
        let s = sessions.by_virtual.get(&canonical(virtual_addr))?;
        Some(s.view.subscribe())
    }

    /// Does what the agents asked: opens pool sockets, sends their datagrams, closes pool
    /// sockets, in that order (a pool's first probes come with the request to open it).
    pub(super) fn flush(&self, mut out: Outputs) {
        while !out.is_empty() {
            for (route, ids) in std::mem::take(&mut out.open_pool) {
                self.open_pool(route, &ids, &mut out);
            }
            for (route, t) in std::mem::take(&mut out.transmits) {
                self.send_agent(route, &t);
            }
            for (route, ids) in out.close_pool.drain(..) {
                self.pool.close(route, Some(&ids));
            }
            if std::mem::take(&mut out.wake_timer) {
                self.timer.notify_one();
            }
        }
    }

    /// Opens the pool sockets a route's agent asked for; tells it when that failed.
    fn open_pool(&self, route: SocketAddr, ids: &[u32], out: &mut Outputs) {
        let opened = self
            .local_addr()
            .and_then(|local| self.pool.open(&self.runtime, local.ip(), route, ids));
        let mut sessions = self.lock_sessions();
        match (opened, sessions.by_virtual.get_mut(&route)) {
            (Ok(()), Some(_)) => {
                debug!(%route, sockets = ids.len(), "birthday pool opened");
                drop(sessions);
                self.wake_reader();
            }
            // The route went meanwhile.
            (Ok(()), None) => {
                drop(sessions);
                self.pool.close(route, Some(ids));
            }
            (Err(e), Some(s)) => {
                warn!(%route, "cannot open a birthday pool: {e}");
                self.pool.close(route, Some(ids));
                s.agent.pool_unavailable(Instant::now(), ids);
                // Its probes for those sockets are dropped (they do not exist): sent as lost.
                sessions.drain(route, out);
            }
            (Err(_), None) => self.pool.close(route, Some(ids)),
        }
    }

    /// Sends one of an agent's datagrams, best effort (a lost one is retransmitted by the
    /// agent if it matters).
    fn send_agent(&self, route: Option<SocketAddr>, t: &AgentTransmit) {
        let to = self.present(t.to);
        let sent = match (t.via, route) {
            (Via::Pool(id), Some(route)) => self.pool.send_raw(route, id, to, &t.bytes),
            _ => self.inner.try_send(&super::transmit(to, &t.bytes)),
        };
        if let Err(e) = sent {
            debug!(%to, via = ?t.via, "send: {e}");
        }
    }

    /// Sends a transmit for a virtual address along its route's current path.
    pub(super) fn send_routed(&self, t: &Transmit<'_>) -> io::Result<()> {
        let dest = canonical(t.destination);
        let mut out = Outputs::default();
        let path = {
            let mut sessions = self.lock_sessions();
            let Some(s) = sessions.by_virtual.get_mut(&dest) else {
                // The route is gone (its session ended): like a packet lost on the way.
                debug!(%dest, "no route: packet dropped");
                return Ok(());
            };
            let path = s.agent.send_path(Instant::now());
            sessions.drain(dest, &mut out);
            path
        };
        if !out.is_empty() {
            self.flush(out);
        }
        match path {
            SendPath::Direct { via: Via::Main, to } => self.inner.try_send(&Transmit {
                destination: self.present(to),
                ..*t
            }),
            SendPath::Direct {
                via: Via::Pool(id),
                to,
            } => self.pool.send(
                dest,
                id,
                &Transmit {
                    destination: self.present(to),
                    ..*t
                },
            ),
            SendPath::Relay { to, header } => self.send_relayed(self.present(to), &header, t),
            SendPath::Each(candidates) => self.send_each(&candidates, t),
            SendPath::Nowhere => Ok(()),
        }
    }

    /// No relay and no proven path yet: to every candidate (duplicates are harmless to QUIC).
    fn send_each(&self, candidates: &[SocketAddr], t: &Transmit<'_>) -> io::Result<()> {
        let mut first_error = None;
        let mut sent = false;
        for (i, c) in candidates.iter().enumerate() {
            match self.inner.try_send(&Transmit {
                destination: self.present(*c),
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

    /// Puts the relay header before every segment of `t` and sends it all to the relay.
    fn send_relayed(&self, relay: SocketAddr, header: &[u8], t: &Transmit<'_>) -> io::Result<()> {
        let seg = t.segment_size.unwrap_or(t.contents.len()).max(1);
        let mut buf = lock(&self.relay_buf);
        buf.clear();
        for chunk in t.contents.chunks(seg) {
            buf.extend_from_slice(header);
            buf.extend_from_slice(chunk);
        }
        self.inner.try_send(&Transmit {
            destination: relay,
            ecn: t.ecn,
            contents: &buf,
            segment_size: t.segment_size.map(|s| s + header.len()),
            src_ip: t.src_ip,
        })
    }

    /// Calls every agent whose timeout has come, does what they ask; returns when to wake next.
    fn on_timers(&self, now: Instant) -> Option<Instant> {
        let mut out = Outputs::default();
        let next = {
            let mut sessions = self.lock_sessions();
            let due: Vec<SocketAddr> = sessions
                .by_virtual
                .iter_mut()
                .filter_map(|(v, s)| {
                    s.agent
                        .poll_timeout()
                        .is_some_and(|t| t <= now)
                        .then_some(*v)
                })
                .collect();
            for v in due {
                if let Some(s) = sessions.by_virtual.get_mut(&v) {
                    s.agent.handle_timeout(now);
                }
                sessions.drain(v, &mut out);
            }
            let next = sessions
                .by_virtual
                .values_mut()
                .filter_map(|s| s.agent.poll_timeout())
                .min();
            sessions.armed = next;
            next
        };
        out.wake_timer = false;
        self.flush(out);
        next
    }
}

/// The timer task of a socket: wakes each agent at its timeout; ends when the socket goes.
pub(super) async fn run_timers(socket: Weak<PeerSocket>, wake: Arc<Notify>) {
    loop {
        let next = match socket.upgrade() {
            Some(socket) => socket.on_timers(Instant::now()),
            None => return,
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = wake.notified() => {}
                }
            }
            None => wake.notified().await,
        }
    }
}

/// The first counter of a relay bind: it must grow across every bind this process sends for a
/// ticket (the relay refuses one it has seen), so it starts from the clock and only goes up;
/// the agent counts on from it.
pub fn bind_counter() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    NEXT.fetch_max(clock, Ordering::Relaxed);
    // Room for the binds the agent counts on from here.
    NEXT.fetch_add(1 << 20, Ordering::Relaxed) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent's first pool probes come in the same batch as its request to open the pool:
    /// they must leave from the new sockets (once they were sent before the sockets existed
    /// and were lost, so a birthday punch waited for the pool's second send, a second later).
    #[tokio::test]
    async fn a_pools_first_probes_leave_from_its_new_sockets() {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (_endpoint, socket) = super::super::bind(local, None).unwrap();
        let route = socket.add_route(pathagent::Config::default(), true);
        let peer = std::net::UdpSocket::bind(local).unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let to = peer.local_addr().unwrap();
        let mut out = Outputs::default();
        out.open_pool.push((route.addr(), vec![0, 1]));
        for id in [0, 1] {
            out.transmits.push((
                Some(route.addr()),
                AgentTransmit {
                    via: Via::Pool(id),
                    to,
                    bytes: vec![id as u8; 20],
                },
            ));
        }
        socket.flush(out);
        let main = socket.local_addr().unwrap().port();
        let mut ports = Vec::new();
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, from) = peer
                .recv_from(&mut buf)
                .expect("each pool socket's probe arrives");
            assert_eq!(n, 20);
            assert_ne!(
                from.port(),
                main,
                "sent from the main socket, not the pool's"
            );
            ports.push(from.port());
        }
        assert_ne!(ports[0], ports[1], "two pool sockets, two ports");
    }
}
