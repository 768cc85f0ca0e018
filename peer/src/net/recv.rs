//! The receive side of the peer socket: each datagram (each GRO segment) goes to the agent it
//! belongs to, to quinn (from a route's virtual address or as is), or nowhere; and the
//! `quinn::AsyncUdpSocket` implementation that ties sending and receiving together.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use pathagent::{Input, Transmit as AgentTransmit, Via};
use proto::{relay, stun};
use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tracing::debug;

use super::pool::PeerPoller;
use super::route::{Outputs, Sessions};
use super::{PeerSocket, canonical, is_virtual};
use crate::lock;

/// Which socket a datagram came in on.
#[derive(Debug, Clone, Copy)]
enum From {
    Main,
    /// A pool socket of this route, by the agent's id for it.
    Pool {
        route: SocketAddr,
        id: u32,
    },
}

/// Where one received segment goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    /// To quinn, from this address, without the first `offset` bytes.
    Quinn {
        from: SocketAddr,
        offset: usize,
    },
    Nowhere,
}

/// The one session that claims QUIC, if there is exactly one.
fn only_claiming(sessions: &Sessions) -> Option<SocketAddr> {
    let mut claiming = sessions.by_virtual.iter().filter(|(_, s)| s.claims_quic);
    match (claiming.next(), claiming.next()) {
        (Some((v, _)), None) => Some(*v),
        _ => None,
    }
}

impl PeerSocket {
    /// Decides where one segment from `from` goes, handing it to the agent it belongs to.
    fn dest(
        &self,
        sessions: &mut Sessions,
        out: &mut Outputs,
        now: Instant,
        via: From,
        from: SocketAddr,
        seg: &[u8],
    ) -> Dest {
        let raw = Dest::Quinn { from, offset: 0 };
        let peer = canonical(from);
        if let From::Pool { route, id } = via {
            let Some(s) = sessions.by_virtual.get_mut(&route) else {
                return Dest::Nowhere;
            };
            let input = s.agent.handle_datagram(now, peer, Via::Pool(id), seg);
            let claims = s.claims_quic;
            sessions.drain(route, out);
            return match input {
                Input::PeerData { offset } if claims => Dest::Quinn {
                    from: self.present(route),
                    offset,
                },
                Input::PeerData { offset } => Dest::Quinn { from, offset },
                Input::Consumed | Input::NotMine => Dest::Nowhere,
            };
        }
        if relay::is_relay(seg) {
            let token = match relay::parse(seg) {
                Ok(
                    relay::Frame::Data { token, .. }
                    | relay::Frame::Bound { token }
                    | relay::Frame::Rebind { token },
                ) => Some(token),
                _ => None,
            };
            let route = token.and_then(|token| sessions.by_token.get(&token).copied());
            let input = route.and_then(|route| {
                let s = sessions.by_virtual.get_mut(&route)?;
                let input = s.agent.handle_datagram(now, peer, Via::Main, seg);
                sessions.drain(route, out);
                Some((route, input))
            });
            return match input {
                Some((route, Input::PeerData { offset })) => Dest::Quinn {
                    from: self.present(route),
                    offset,
                },
                Some((_, Input::Consumed)) => Dest::Nowhere,
                _ => {
                    self.counters.relay_stray.fetch_add(1, Ordering::Relaxed);
                    Dest::Nowhere
                }
            };
        }
        if stun::is_stun(seg) {
            match stun::kind(seg) {
                stun::Kind::BindingResponse => {
                    // The agent whose transaction it is takes it (each checks id and source).
                    let routes: Vec<SocketAddr> = sessions.by_virtual.keys().copied().collect();
                    for route in routes {
                        let Some(s) = sessions.by_virtual.get_mut(&route) else {
                            continue;
                        };
                        if s.agent.handle_datagram(now, peer, Via::Main, seg) != Input::NotMine {
                            sessions.drain(route, out);
                            self.counters.stun_responses.fetch_add(1, Ordering::Relaxed);
                            return Dest::Nowhere;
                        }
                    }
                    self.stray(from);
                }
                stun::Kind::BindingRequest => {
                    // The session of the sender's address, else of its IP, answers (and may
                    // learn a peer-reflexive candidate); else the socket does.
                    // With a single session the request is its peer's even from an address it
                    // was not told yet (the peer's candidates may still be on their way over
                    // the relay): its agent answers and takes that address's packets, so the
                    // peer never adopts a path whose packets this side would drop.
                    let claim = sessions
                        .by_virtual
                        .iter()
                        .find(|(_, s)| s.agent.knows(peer))
                        .or_else(|| {
                            sessions
                                .by_virtual
                                .iter()
                                .find(|(_, s)| s.agent.is_peer_ip(peer.ip()))
                        })
                        .map(|(v, _)| *v)
                        .or_else(|| only_claiming(sessions));
                    match claim.and_then(|v| Some((v, sessions.by_virtual.get_mut(&v)?))) {
                        Some((v, s)) => {
                            s.agent.handle_datagram(now, peer, Via::Main, seg);
                            sessions.drain(v, out);
                        }
                        None => self.answer(out, now, from, seg),
                    }
                }
                stun::Kind::Other => self.stray(from),
            }
            return Dest::Nowhere;
        }
        // QUIC (or noise): a route's peer, from an address its agent knows; else quinn's as is
        // (the rendezvous connection, or a connection quinn follows by migration).
        let claim = sessions
            .by_virtual
            .iter()
            .find(|(_, s)| s.claims_quic && s.agent.knows(peer))
            .map(|(v, _)| *v);
        let Some(route) = claim else {
            return raw;
        };
        let Some(s) = sessions.by_virtual.get_mut(&route) else {
            return raw;
        };
        let input = s.agent.handle_datagram(now, peer, Via::Main, seg);
        sessions.drain(route, out);
        match input {
            Input::PeerData { offset } => Dest::Quinn {
                from: self.present(route),
                offset,
            },
            Input::Consumed => Dest::Nowhere,
            Input::NotMine => raw,
        }
    }

    /// Answers a Binding request no route claimed, within the rate limit. Never more bytes
    /// than were received: the source is not proven (quicdesk's probes are padded, so they
    /// are answered whole).
    fn answer(&self, out: &mut Outputs, now: Instant, from: SocketAddr, request: &[u8]) {
        match stun::answer(request, canonical(from), Some(request.len())) {
            Ok(Some(_)) if !lock(&self.answers).take(now) => {
                self.counters
                    .stun_requests_limited
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(Some(reply)) => {
                self.counters
                    .stun_requests_answered
                    .fetch_add(1, Ordering::Relaxed);
                out.transmits.push((
                    None,
                    AgentTransmit {
                        via: Via::Main,
                        to: canonical(from),
                        bytes: reply,
                    },
                ));
            }
            Ok(None) | Err(_) => self.stray(from),
        }
    }

    fn stray(&self, from: SocketAddr) {
        self.counters.stun_stray.fetch_add(1, Ordering::Relaxed);
        debug!(%from, "ignoring a STUN message");
    }

    /// Hands what one read of a socket got (`n` datagrams) to the agents; rewrites what is
    /// left for quinn in place (sources, lengths, strides) and moves it to the front; returns
    /// how many datagrams quinn gets. Segments of one GRO buffer bound elsewhere than its first
    /// kept one are stashed for the next read.
    fn take_in(
        &self,
        via: From,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
        n: usize,
    ) -> usize {
        let now = Instant::now();
        let mut out = Outputs::default();
        let mut stash = Vec::new();
        let mut kept = 0;
        {
            let mut sessions = self.lock_sessions();
            for i in 0..n {
                let m = meta[i];
                let stride = if m.stride == 0 { m.len } else { m.stride };
                let buf = &mut bufs[i];
                let mut group: Option<(SocketAddr, usize)> = None;
                let (mut len, mut at) = (0, 0);
                while at < m.len {
                    let end = (at + stride).min(m.len);
                    let d = self.dest(&mut sessions, &mut out, now, via, m.addr, &buf[at..end]);
                    if let Dest::Quinn { from, offset } = d {
                        let payload = at + offset.min(end - at)..end;
                        match group {
                            Some(g) if g != (from, offset) => {
                                stash.push((from, buf[payload].to_vec(), m.ecn));
                            }
                            _ => {
                                group = Some((from, offset));
                                let size = payload.len();
                                buf.copy_within(payload, len);
                                len += size;
                            }
                        }
                    }
                    at = end;
                }
                let Some((from, offset)) = group else {
                    continue;
                };
                if len == 0 {
                    continue;
                }
                meta[i].addr = from;
                meta[i].len = len;
                meta[i].stride = stride.saturating_sub(offset).max(1).min(len);
                if kept != i {
                    let (left, right) = bufs.split_at_mut(i);
                    left[kept][..len].copy_from_slice(&right[0][..len]);
                    meta[kept] = meta[i];
                }
                kept += 1;
            }
        }
        if !stash.is_empty() {
            lock(&self.stash).extend(stash);
        }
        self.flush(out);
        kept
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

    /// Reads the pool sockets in turn until one has something for quinn (registering the
    /// waker on those with nothing); `Some(kept)` if any had something (possibly nothing for
    /// quinn), `None` if none had anything.
    fn poll_pool(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Option<usize> {
        let mut read = None;
        for p in self.pool.all() {
            match p.socket.poll_recv(cx, bufs, meta) {
                Poll::Ready(Ok(n)) => {
                    let via = From::Pool {
                        route: p.route,
                        id: p.id,
                    };
                    let kept = self.take_in(via, bufs, meta, n);
                    if kept > 0 {
                        return Some(kept);
                    }
                    read = Some(0);
                }
                // E.g. an ICMP error reported late: the pool is best effort.
                Poll::Ready(Err(e)) => debug!(pool_socket = p.id, "pool socket: {e}"),
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
                Poll::Ready(n) => Some(self.take_in(From::Main, bufs, meta, n)),
                Poll::Pending if self.pool.is_open() => {
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
                    if !pool_read && self.pool.is_open() {
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
