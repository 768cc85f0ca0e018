//! The relay: forwards the peers' opaque QUIC packets between the two peers of one session when
//! they cannot reach each other directly.
//!
//! ```text
//!  controller ──[0x80 | token C | QUIC]──► relay ──[0x80 | token H | QUIC]──► host
//!             ◄─[0x80 | token C | QUIC]───       ◄─[0x80 | token H | QUIC]───
//! ```
//!
//! Frames, one per UDP datagram (or GSO/GRO segment):
//! - `0x80 | token | payload`: data, a QUIC packet the relay forwards without reading;
//! - `0x81 | token`: bind, "the holder of this token is at this address" (also a keep-alive);
//! - `0x82 | token`: bound, the relay's answer to a bind, to the binder only.
//!
//! The first byte `10xxxxxx` is never STUN (`00`) and never QUIC with greasing off (its fixed bit
//! `0x40` is always set), so one peer socket tells the three apart by that byte.
//!
//! The rendezvous issues each peer of a session its own random token over that peer's
//! authenticated signaling connection ([`Relay::allocate`]). The relay learns each side's address
//! from the frames bearing its token and forwards a data frame only to the address of the other
//! side of the same session, with the *receiver's* token in the header so a peer with several
//! relayed sessions can tell them apart. It answers nothing to an unknown token, and its one
//! answer (bound) is no larger than the bind that asked for it, so it cannot be used to reflect
//! or amplify traffic. It never holds a key of the peers' QUIC connection: the payload is
//! ciphertext end to end.
//!
//! [`Relay`] is the sans-IO state (`now` passed in); [`serve`] is its tokio driver.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tracing::{debug, info, warn};

use crate::responder::Bucket;

/// Length of a session token.
pub const TOKEN_LEN: usize = 16;
/// Bytes the relay header adds to every packet.
pub const HEADER_LEN: usize = 1 + TOKEN_LEN;

const DATA: u8 = 0x80;
const BIND: u8 = 0x81;
const BOUND: u8 = 0x82;
/// Datagrams held for a side that has not bound yet (the other side may start first).
const PENDING_MAX: usize = 8;
const PENDING_MAX_BYTES: usize = 16 * 1024;
/// How often the relay logs its counters (when they changed).
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Largest datagram the relay reads.
const MAX_DATAGRAM: usize = 2048;

/// A secret that authorizes one side of one relayed session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl Token {
    pub fn random() -> Self {
        let mut t = [0u8; TOKEN_LEN];
        rand::Rng::fill(&mut rand::rng(), &mut t);
        Self(t)
    }
}

impl std::fmt::Debug for Token {
    // A token is a credential: logs show only enough of it to tell two apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token({:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

/// What the rendezvous tells a peer about the relay: its port (on the rendezvous's IP) and the
/// peer's token for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOffer {
    pub port: u16,
    pub token: Token,
}

/// One relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data { token: Token, payload: &'a [u8] },
    Bind { token: Token },
    Bound { token: Token },
}

/// Why a datagram is not a relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("not a relay frame")]
    NotRelay,
    #[error("relay frame shorter than its {HEADER_LEN}-byte header")]
    Short,
    #[error("unknown relay frame kind {0:#04x}")]
    Kind(u8),
}

/// Whether a datagram's first byte marks it as a relay frame (see the module docs).
pub fn is_relay(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0xC0 == 0x80)
}

/// Reads a relay frame.
pub fn parse(datagram: &[u8]) -> Result<Frame<'_>, FrameError> {
    if !is_relay(datagram) {
        return Err(FrameError::NotRelay);
    }
    if datagram.len() < HEADER_LEN {
        return Err(FrameError::Short);
    }
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(&datagram[1..HEADER_LEN]);
    let token = Token(t);
    match datagram[0] {
        DATA => Ok(Frame::Data {
            token,
            payload: &datagram[HEADER_LEN..],
        }),
        BIND if datagram.len() == HEADER_LEN => Ok(Frame::Bind { token }),
        BOUND if datagram.len() == HEADER_LEN => Ok(Frame::Bound { token }),
        BIND | BOUND => Err(FrameError::Kind(datagram[0])),
        k => Err(FrameError::Kind(k)),
    }
}

fn header(kind: u8, token: Token) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[1..].copy_from_slice(&token.0);
    h
}

/// The header to put before a QUIC packet sent through the relay.
pub fn data_header(token: Token) -> [u8; HEADER_LEN] {
    header(DATA, token)
}

/// A bind frame.
pub fn bind_frame(token: Token) -> [u8; HEADER_LEN] {
    header(BIND, token)
}

/// The relay's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes a second one session may forward (both directions together).
    pub session_bytes_per_sec: u64,
    /// Bytes a second all sessions together may forward.
    pub total_bytes_per_sec: u64,
    /// A session with no packet for this long is closed, its tokens void.
    pub idle: Duration,
    /// Most sessions at once; further ones get no relay.
    pub max_sessions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // 64 Mbit/s: several times what a busy 1080p desktop needs.
            session_bytes_per_sec: 8 << 20,
            total_bytes_per_sec: 64 << 20,
            idle: Duration::from_secs(60),
            max_sessions: 1000,
        }
    }
}

/// What the relay has done (a snapshot).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub sessions_active: u64,
    pub sessions_opened: u64,
    pub sessions_refused: u64,
    pub sessions_expired: u64,
    pub packets_forwarded: u64,
    pub bytes_forwarded: u64,
    pub binds: u64,
    /// Frames with a token no live session has.
    pub dropped_unknown: u64,
    /// Frames over a bandwidth limit.
    pub dropped_limited: u64,
    /// Frames for a side that never bound, beyond what is held for it.
    pub dropped_unbound: u64,
    /// Datagrams that are not relay frames.
    pub dropped_malformed: u64,
}

/// What the driver should do with the datagram it passed to [`Relay::on_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (dropped or held).
    Drop,
    /// Send the first `len` bytes of the (rewritten) buffer to `to`.
    Send { to: SocketAddr, len: usize },
}

struct Session {
    tokens: [Token; 2],
    addrs: [Option<SocketAddr>; 2],
    bucket: Bucket,
    last: Instant,
    /// Data frames waiting for their receiver to bind: (receiver side, frame).
    pending: Vec<(usize, Vec<u8>)>,
    pending_bytes: usize,
}

/// The relay's sessions (sans-IO).
pub struct Relay {
    limits: Limits,
    sessions: HashMap<u64, Session>,
    tokens: HashMap<Token, (u64, usize)>,
    total: Bucket,
    next_id: u64,
    counters: Counters,
    queued: Vec<(SocketAddr, Vec<u8>)>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("limits", &self.limits)
            .field("sessions", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

fn byte_bucket(rate: u64, now: Instant) -> Bucket {
    // A quarter second of burst, at least a few full-size packets.
    let rate = rate as f64;
    Bucket::with_burst(rate, (rate / 4.0).max(64.0 * 1024.0), now)
}

impl Relay {
    pub fn new(limits: Limits, now: Instant) -> Self {
        Self {
            limits,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            total: byte_bucket(limits.total_bytes_per_sec, now),
            next_id: 0,
            counters: Counters::default(),
            queued: Vec::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Opens a session: one token for each side. `None` when the relay is full.
    pub fn allocate(&mut self, now: Instant) -> Option<[Token; 2]> {
        if self.sessions.len() >= self.limits.max_sessions {
            self.counters.sessions_refused += 1;
            return None;
        }
        let tokens = [Token::random(), Token::random()];
        let id = self.next_id;
        self.next_id += 1;
        for (side, t) in tokens.iter().enumerate() {
            self.tokens.insert(*t, (id, side));
        }
        self.sessions.insert(
            id,
            Session {
                tokens,
                addrs: [None, None],
                bucket: byte_bucket(self.limits.session_bytes_per_sec, now),
                last: now,
                pending: Vec::new(),
                pending_bytes: 0,
            },
        );
        self.counters.sessions_opened += 1;
        Some(tokens)
    }

    /// Handles one datagram from `from`, rewriting `buf` in place when it is to be sent on.
    pub fn on_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) -> Action {
        let (token, is_data) = match parse(buf) {
            Ok(Frame::Data { token, .. }) => (token, true),
            Ok(Frame::Bind { token }) => (token, false),
            Ok(Frame::Bound { .. }) | Err(_) => {
                self.counters.dropped_malformed += 1;
                return Action::Drop;
            }
        };
        let Some(&(id, side)) = self.tokens.get(&token) else {
            self.counters.dropped_unknown += 1;
            return Action::Drop;
        };
        let Some(session) = self.sessions.get_mut(&id) else {
            self.counters.dropped_unknown += 1;
            return Action::Drop;
        };
        session.last = now;
        if session.addrs[side] != Some(from) {
            debug!(session = id, side, %from, "relay: side bound to a new address");
            session.addrs[side] = Some(from);
        }
        if !is_data {
            self.counters.binds += 1;
            // Data held for this side can go now.
            let token = session.tokens[side];
            let (ready, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut session.pending)
                .into_iter()
                .partition(|(to, _)| *to == side);
            session.pending = kept;
            for (_, mut frame) in ready {
                session.pending_bytes -= frame.len();
                frame[1..HEADER_LEN].copy_from_slice(&token.0);
                self.counters.packets_forwarded += 1;
                self.counters.bytes_forwarded += frame.len() as u64;
                self.queued.push((from, frame));
            }
            buf[0] = BOUND;
            return Action::Send {
                to: from,
                len: HEADER_LEN,
            };
        }
        let len = buf.len();
        if !session.bucket.take_n(now, len as f64) || !self.total.take_n(now, len as f64) {
            self.counters.dropped_limited += 1;
            return Action::Drop;
        }
        let other = 1 - side;
        let Some(to) = session.addrs[other] else {
            if session.pending.len() < PENDING_MAX
                && session.pending_bytes + len <= PENDING_MAX_BYTES
            {
                session.pending_bytes += len;
                session.pending.push((other, buf.to_vec()));
            } else {
                self.counters.dropped_unbound += 1;
            }
            return Action::Drop;
        };
        buf[1..HEADER_LEN].copy_from_slice(&session.tokens[other].0);
        self.counters.packets_forwarded += 1;
        self.counters.bytes_forwarded += len as u64;
        Action::Send { to, len }
    }

    /// Datagrams to send besides the [`Action`]s (held data released by a bind).
    pub fn take_queued(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.queued)
    }

    /// Closes the sessions idle for longer than the limit; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let idle = self.limits.idle;
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last) > idle)
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            if let Some(s) = self.sessions.remove(id) {
                for t in s.tokens {
                    self.tokens.remove(&t);
                }
            }
        }
        self.counters.sessions_expired += expired.len() as u64;
        expired.len()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            sessions_active: self.sessions.len() as u64,
            ..self.counters
        }
    }
}

fn lock(relay: &Mutex<Relay>) -> std::sync::MutexGuard<'_, Relay> {
    relay.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the relay on `socket` until the task is dropped. Reads with GRO and forwards a batch
/// of one session's packets with one GSO send where the platform has them.
pub async fn serve(socket: tokio::net::UdpSocket, relay: Arc<Mutex<Relay>>) {
    let state = match UdpSocketState::new((&socket).into()) {
        Ok(s) => s,
        Err(e) => {
            warn!("relay socket: {e}; the relay is off");
            return;
        }
    };
    let batch = quinn::udp::BATCH_SIZE.max(1);
    let segments = state.gro_segments().max(1);
    let mut storage = vec![0u8; batch * segments * MAX_DATAGRAM];
    let mut meta = vec![RecvMeta::default(); batch];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut last_limit_warn: Option<Instant> = None;
    let mut actions = Vec::new();
    let mut report = Instant::now();
    let mut last_report = Counters::default();
    loop {
        tokio::select! {
            r = socket.readable() => if let Err(e) = r {
                warn!("relay socket: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            },
            _ = sweep.tick() => {
                let (closed, c) = {
                    let mut relay = lock(&relay);
                    (relay.sweep(Instant::now()), relay.counters())
                };
                if closed > 0 {
                    info!(closed, "relay sessions closed after idling");
                }
                // A summary for the operator once a minute while anything moves.
                if report.elapsed() >= REPORT_EVERY && c != last_report {
                    report = Instant::now();
                    last_report = c;
                    info!(
                        active = c.sessions_active,
                        opened = c.sessions_opened,
                        refused = c.sessions_refused,
                        mib_forwarded = c.bytes_forwarded >> 20,
                        dropped_limited = c.dropped_limited,
                        dropped_unknown = c.dropped_unknown,
                        "relay"
                    );
                }
                continue;
            }
        }
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage
                .chunks_mut(segments * MAX_DATAGRAM)
                .map(IoSliceMut::new)
                .collect();
            match socket.try_io(Interest::READABLE, || {
                state.recv((&socket).into(), &mut bufs, &mut meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving.
                    debug!("relay recv: {e}");
                    continue;
                }
            }
        };
        for (m, chunk) in meta[..n]
            .iter()
            .zip(storage.chunks_mut(segments * MAX_DATAGRAM))
        {
            let limited = forward(
                &socket,
                &state,
                &relay,
                m,
                &mut chunk[..m.len],
                &mut actions,
            )
            .await;
            if limited {
                let now = Instant::now();
                if last_limit_warn.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                    last_limit_warn = Some(now);
                    warn!("relay: packets over a bandwidth limit are dropped");
                }
            }
        }
    }
}

/// Handles one received buffer (several segments of `meta.stride` bytes under GRO); returns
/// whether a bandwidth limit dropped some of it.
async fn forward(
    socket: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    relay: &Mutex<Relay>,
    meta: &RecvMeta,
    buf: &mut [u8],
    actions: &mut Vec<Action>,
) -> bool {
    let stride = if meta.stride == 0 {
        buf.len()
    } else {
        meta.stride
    };
    actions.clear();
    let (queued, limited) = {
        let mut relay = lock(relay);
        let before = relay.counters.dropped_limited;
        let now = Instant::now();
        actions.extend(
            buf.chunks_mut(stride)
                .map(|seg| relay.on_datagram(now, meta.addr, seg)),
        );
        let queued = if relay.queued.is_empty() {
            Vec::new()
        } else {
            relay.take_queued()
        };
        (queued, relay.counters.dropped_limited > before)
    };
    for (to, frame) in queued {
        send(socket, state, to, &frame, None).await;
    }
    // One session's batch, rewritten in place and unchanged in length: one GSO send.
    let whole = match actions.first() {
        Some(&Action::Send { to, .. }) if actions.len() > 1 => actions
            .iter()
            .enumerate()
            .all(|(i, a)| {
                let seg_len = stride.min(buf.len() - i * stride);
                *a == Action::Send { to, len: seg_len }
            })
            .then_some(to),
        _ => None,
    };
    match whole {
        Some(to) if actions.len() <= state.max_gso_segments() => {
            send(socket, state, to, buf, Some(stride)).await;
        }
        _ => {
            for (a, seg) in actions.iter().zip(buf.chunks(stride)) {
                if let Action::Send { to, len } = *a {
                    send(socket, state, to, &seg[..len], None).await;
                }
            }
        }
    }
    limited
}

async fn send(
    socket: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    to: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    loop {
        match socket.try_io(Interest::WRITABLE, || {
            state.send((socket).into(), &transmit)
        }) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(%to, "relay send: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn data(token: Token, payload: &[u8]) -> Vec<u8> {
        [&data_header(token)[..], payload].concat()
    }

    #[test]
    fn frames_are_told_apart_from_stun_and_quic() {
        let t = Token::random();
        assert!(matches!(parse(&bind_frame(t)), Ok(Frame::Bind { token }) if token == t));
        let d = data(t, b"xy");
        assert_eq!(
            parse(&d),
            Ok(Frame::Data {
                token: t,
                payload: b"xy"
            })
        );
        // QUIC (fixed bit set), STUN (00), short and unknown frames.
        assert_eq!(parse(&[0xc3; 40]), Err(FrameError::NotRelay));
        assert_eq!(parse(&[0x43; 40]), Err(FrameError::NotRelay));
        assert_eq!(parse(&[0x00; 40]), Err(FrameError::NotRelay));
        assert_eq!(parse(&[0x80; 5]), Err(FrameError::Short));
        assert_eq!(parse(&[0x8f; 20]), Err(FrameError::Kind(0x8f)));
        assert_eq!(parse(&[0x81; 20]), Err(FrameError::Kind(0x81)));
        assert!(format!("{t:?}").len() < 20, "a token is not logged whole");
    }

    #[test]
    fn forwards_between_the_two_sides_only_with_the_receivers_token() {
        let t0 = Instant::now();
        let mut r = Relay::new(Limits::default(), t0);
        let [a, b] = r.allocate(t0).unwrap();
        let (pa, pb) = (addr("192.0.2.1:1000"), addr("198.51.100.7:2000"));

        // A sends before B bound: held, then released to B with B's token when B binds.
        let mut first = data(a, b"hello");
        assert_eq!(r.on_datagram(t0, pa, &mut first), Action::Drop);
        let mut bind = bind_frame(b);
        assert_eq!(
            r.on_datagram(t0, pb, &mut bind),
            Action::Send {
                to: pb,
                len: HEADER_LEN
            }
        );
        assert_eq!(parse(&bind), Ok(Frame::Bound { token: b }));
        let queued = r.take_queued();
        assert_eq!(queued, vec![(pb, data(b, b"hello"))]);

        // Both ways now, each frame rewritten to carry the receiver's token.
        for (from, token, to, theirs, payload) in [(pa, a, pb, b, b"abc"), (pb, b, pa, a, b"xyz")] {
            let mut d = data(token, payload);
            let len = d.len();
            assert_eq!(r.on_datagram(t0, from, &mut d), Action::Send { to, len });
            assert_eq!(d, data(theirs, payload));
        }

        // A stranger's token goes nowhere and gets no answer.
        let mut d = data(Token::random(), b"spoof");
        assert_eq!(
            r.on_datagram(t0, addr("203.0.113.9:9"), &mut d),
            Action::Drop
        );
        let mut bind = bind_frame(Token::random());
        assert_eq!(
            r.on_datagram(t0, addr("203.0.113.9:9"), &mut bind),
            Action::Drop
        );
        // Junk, and a bound sent to the relay.
        let mut junk = vec![0x42; 30];
        assert_eq!(r.on_datagram(t0, pa, &mut junk), Action::Drop);
        let mut bound = bind_frame(a);
        bound[0] = BOUND;
        assert_eq!(r.on_datagram(t0, pa, &mut bound), Action::Drop);

        let c = r.counters();
        assert_eq!(c.packets_forwarded, 3);
        assert_eq!(c.bytes_forwarded as usize, 3 * HEADER_LEN + 5 + 3 + 3);
        assert_eq!((c.dropped_unknown, c.dropped_malformed), (2, 2));
        assert_eq!(c.sessions_active, 1);
    }

    #[test]
    fn a_side_that_moves_is_followed() {
        let t0 = Instant::now();
        let mut r = Relay::new(Limits::default(), t0);
        let [a, b] = r.allocate(t0).unwrap();
        let (pa, pb, pb2) = (
            addr("192.0.2.1:1"),
            addr("192.0.2.2:2"),
            addr("192.0.2.2:3"),
        );
        r.on_datagram(t0, pa, &mut bind_frame(a));
        r.on_datagram(t0, pb, &mut bind_frame(b));
        // B's NAT rebinds: its next frame comes from a new port, and A's data follows it.
        let mut d = data(b, b"1");
        assert_eq!(
            r.on_datagram(t0, pb2, &mut d),
            Action::Send {
                to: pa,
                len: d.len()
            }
        );
        let mut d = data(a, b"2");
        assert_eq!(
            r.on_datagram(t0, pa, &mut d),
            Action::Send {
                to: pb2,
                len: d.len()
            }
        );
    }

    #[test]
    fn bandwidth_limits_session_count_and_idle_timeout() {
        let t0 = Instant::now();
        let limits = Limits {
            session_bytes_per_sec: 100_000,
            total_bytes_per_sec: 1 << 30,
            idle: Duration::from_secs(5),
            max_sessions: 2,
        };
        let mut r = Relay::new(limits, t0);
        let [a, b] = r.allocate(t0).unwrap();
        r.allocate(t0).unwrap();
        assert!(r.allocate(t0).is_none(), "third session over the limit");
        assert_eq!(r.counters().sessions_refused, 1);
        let (pa, pb) = (addr("192.0.2.1:1"), addr("192.0.2.2:2"));
        r.on_datagram(t0, pa, &mut bind_frame(a));
        r.on_datagram(t0, pb, &mut bind_frame(b));

        // The burst (64 KiB) passes, then a second's worth of rate refills.
        let payload = vec![0u8; 1000 - HEADER_LEN];
        let forwarded_of_200 = |r: &mut Relay, t, from, token| {
            (0..200)
                .filter(|_| {
                    matches!(
                        r.on_datagram(t, from, &mut data(token, &payload)),
                        Action::Send { .. }
                    )
                })
                .count()
        };
        assert_eq!(forwarded_of_200(&mut r, t0, pa, a), 65);
        // A second later the bucket is full again (the burst, not the whole second's rate).
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(forwarded_of_200(&mut r, t1, pb, b), 65);
        assert_eq!(r.counters().dropped_limited, 2 * (200 - 65));

        // Idle sessions close and their tokens stop working; the busy one is kept.
        assert_eq!(
            r.sweep(t1 + Duration::from_millis(4500)),
            1,
            "the unused session"
        );
        assert_eq!(r.sweep(t1 + Duration::from_secs(6)), 1);
        assert_eq!(
            r.on_datagram(t1 + Duration::from_secs(6), pa, &mut data(a, b"late")),
            Action::Drop
        );
        let c = r.counters();
        assert_eq!((c.sessions_active, c.sessions_expired), (0, 2));
        assert!(r.allocate(t1).is_some(), "room again");
    }
}
