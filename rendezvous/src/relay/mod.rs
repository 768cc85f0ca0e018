//! The relay: forwards the peers' opaque QUIC packets between the two peers of one session when
//! they cannot reach each other directly.
//!
//! ```text
//!  controller ──[0x80 | token C | QUIC]──► relay ──[0x80 | token H | QUIC]──► host
//!             ◄─[0x80 | token C | QUIC]───       ◄─[0x80 | token H | QUIC]───
//! ```
//!
//! The frames (data, bind, bound, rebind) and tickets are `proto::relay`'s; this module is what
//! the relay does with them.
//!
//! The rendezvous issues each peer of a session a [`Ticket`] over that peer's authenticated
//! signaling connection ([`Relay::allocate`]): a random token, which travels in every frame, and
//! a bind key, which never does. A side's address is set only by a bind whose MAC (HMAC-SHA256
//! with the bind key over the token and a counter that must grow) checks out, so a token seen on
//! the wire lets nobody redirect a session, and replayed binds are refused. Data is accepted only
//! from a side's proven address and forwarded only to the other side's proven address, with the
//! *receiver's* token in the header; data for a side that has not bound yet is held (a little)
//! until it does. Every answer the relay sends is no larger than the datagram that caused it
//! (bound 17 bytes for a 41-byte bind, rebind 17 for data of at least 17), so the relay cannot
//! amplify anything. It never holds a key of the peers' QUIC connection: the payload is ciphertext
//! end to end.
//!
//! Sessions are capped in total, per controller key and per source prefix ([`Limits`]); a session
//! whose two sides have not both bound within [`Limits::unbound_ttl`] is closed.
//!
//! [`Relay`] is the sans-IO state (`now` passed in); [`serve`] is its tokio driver.

mod serve;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use certs::Fingerprint;
use proto::limits::{Bucket, Caps, Prefix};
pub use proto::relay::{
    BIND_LEN, BindKey, Frame, FrameError, HEADER_LEN, KEY_LEN, MAC_LEN, RelayOffer, TOKEN_LEN,
    Ticket, Token, bind_frame, data_header, is_relay, parse,
};
use proto::relay::{BOUND, REBIND, verify_bind};
use serde::Serialize;
use tracing::debug;

pub use serve::{Batch, handle_buffer, serve};

/// Datagrams held for a side that has not bound yet (the other side may start first).
const PENDING_MAX: usize = 8;
const PENDING_MAX_BYTES: usize = 16 * 1024;
/// Least time between two rebind notices to one side.
const REBIND_NOTICE_EVERY: Duration = Duration::from_millis(500);

/// The relay's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes a second one session may forward (both directions together).
    pub session_bytes_per_sec: u64,
    /// Bytes a second all sessions together may forward.
    pub total_bytes_per_sec: u64,
    /// A session with no packet for this long is closed, its tickets void.
    pub idle: Duration,
    /// Most sessions at once; further ones get no relay.
    pub max_sessions: usize,
    /// Most sessions one controller key may hold at once.
    pub max_sessions_per_key: usize,
    /// Most sessions controllers from one source prefix may hold at once.
    pub max_sessions_per_prefix: usize,
    /// A session whose two sides have not both bound by then is closed.
    pub unbound_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            // 64 Mbit/s: several times what a busy 1080p desktop needs.
            session_bytes_per_sec: 8 << 20,
            total_bytes_per_sec: 64 << 20,
            idle: Duration::from_secs(60),
            max_sessions: 1000,
            max_sessions_per_key: 4,
            max_sessions_per_prefix: 16,
            unbound_ttl: Duration::from_secs(10),
        }
    }
}

/// Who asked for a session, for the per-key and per-prefix caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub key: Fingerprint,
    pub prefix: Prefix,
}

/// Why [`Relay::allocate`] opened no session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AllocError {
    #[error("the relay is full")]
    Full,
    #[error("this controller key holds as many relayed sessions as it may")]
    KeyCap,
    #[error("this source address holds as many relayed sessions as it may")]
    PrefixCap,
}

/// What the relay has done (a snapshot).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub sessions_active: u64,
    pub sessions_opened: u64,
    pub sessions_refused: u64,
    pub sessions_expired: u64,
    /// Sessions closed because a side never bound in time.
    pub sessions_unbound: u64,
    pub packets_forwarded: u64,
    pub bytes_forwarded: u64,
    pub binds: u64,
    /// Frames with a token no live session has.
    pub dropped_unknown: u64,
    /// Binds that failed their proof (bad MAC, replayed counter) and data from an address not
    /// proven for its token.
    pub dropped_unproven: u64,
    /// Frames over a bandwidth limit.
    pub dropped_limited: u64,
    /// Frames for a side that never bound, beyond what is held for it.
    pub dropped_unbound: u64,
    /// Datagrams that are not relay frames.
    pub dropped_malformed: u64,
    /// Rebind notices sent.
    pub rebind_notices: u64,
}

/// What the driver should do with the datagram it passed to [`Relay::on_datagram`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Nothing (dropped or held).
    Drop,
    /// Send the first `len` bytes of the (rewritten) buffer to `to`.
    Send { to: SocketAddr, len: usize },
}

struct Side {
    ticket: Ticket,
    /// The address of the side's last proven bind.
    addr: Option<SocketAddr>,
    /// The counter of that bind; a bind must carry a larger one.
    counter: u64,
    last_notice: Option<Instant>,
}

struct Session {
    sides: [Side; 2],
    owner: Owner,
    bucket: Bucket,
    created: Instant,
    last: Instant,
    /// Data frames waiting for their receiver to bind: (receiver side, frame).
    pending: Vec<(usize, Vec<u8>)>,
    pending_bytes: usize,
    /// Bytes forwarded for this session.
    bytes: u64,
}

/// A live session as the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionView {
    pub id: u64,
    /// The controller that asked for it.
    pub controller: Fingerprint,
    pub created: Instant,
    /// When a packet last came for it.
    pub last: Instant,
    pub bytes: u64,
    /// Whether the host's and the controller's sides have bound.
    pub bound: [bool; 2],
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseWhy {
    /// No packet for the idle limit.
    Idle,
    /// A side never bound in time.
    Unbound,
    /// The operator ended it.
    Ended,
}

/// A session that closed (for the operator's record of past sessions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    pub id: u64,
    pub bytes: u64,
    pub last: Instant,
    pub why: CloseWhy,
}

/// Closed sessions kept for [`Relay::take_closed`] at most (the oldest go first).
const MAX_CLOSED: usize = 10_000;

/// The relay's sessions (sans-IO).
pub struct Relay {
    limits: Limits,
    sessions: HashMap<u64, Session>,
    tokens: HashMap<Token, (u64, usize)>,
    per_key: Caps<Fingerprint>,
    per_prefix: Caps<Prefix>,
    total: Bucket,
    next_id: u64,
    counters: Counters,
    queued: Vec<(SocketAddr, Vec<u8>)>,
    closed: std::collections::VecDeque<Closed>,
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
            per_key: Caps::new(limits.max_sessions_per_key),
            per_prefix: Caps::new(limits.max_sessions_per_prefix),
            total: byte_bucket(limits.total_bytes_per_sec, now),
            next_id: 0,
            counters: Counters::default(),
            queued: Vec::new(),
            closed: std::collections::VecDeque::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Opens a session for `owner`: one ticket for each side (host, controller).
    pub fn allocate(&mut self, now: Instant, owner: Owner) -> Result<[Ticket; 2], AllocError> {
        let refused = if self.sessions.len() >= self.limits.max_sessions {
            Some(AllocError::Full)
        } else if !self.per_key.has_room(&owner.key) {
            Some(AllocError::KeyCap)
        } else if !self.per_prefix.has_room(&owner.prefix) {
            Some(AllocError::PrefixCap)
        } else {
            None
        };
        if let Some(e) = refused {
            self.counters.sessions_refused += 1;
            return Err(e);
        }
        let tickets = [Ticket::random(), Ticket::random()];
        let id = self.next_id;
        self.next_id += 1;
        for (side, t) in tickets.iter().enumerate() {
            self.tokens.insert(t.token, (id, side));
        }
        let side = |ticket| Side {
            ticket,
            addr: None,
            counter: 0,
            last_notice: None,
        };
        self.sessions.insert(
            id,
            Session {
                sides: tickets.map(side),
                owner,
                bucket: byte_bucket(self.limits.session_bytes_per_sec, now),
                created: now,
                last: now,
                pending: Vec::new(),
                pending_bytes: 0,
                bytes: 0,
            },
        );
        self.per_key.acquire(owner.key);
        self.per_prefix.acquire(owner.prefix);
        self.counters.sessions_opened += 1;
        Ok(tickets)
    }

    /// Handles one datagram from `from`, rewriting `buf` in place when it is to be sent on.
    pub fn on_datagram(&mut self, now: Instant, from: SocketAddr, buf: &mut [u8]) -> Action {
        let (token, bind) = match parse(buf) {
            Ok(Frame::Data { token, .. }) => (token, None),
            Ok(Frame::Bind {
                token,
                counter,
                mac,
            }) => (token, Some((counter, mac))),
            Ok(Frame::Bound { .. } | Frame::Rebind { .. }) | Err(_) => {
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
        if let Some((counter, mac)) = bind {
            let me = &mut session.sides[side];
            let proven = counter > me.counter && verify_bind(&me.ticket, counter, &mac);
            if !proven {
                self.counters.dropped_unproven += 1;
                return Action::Drop;
            }
            me.counter = counter;
            if me.addr != Some(from) {
                debug!(session = id, side, %from, "relay: side bound to a new address");
                me.addr = Some(from);
            }
            session.last = now;
            self.counters.binds += 1;
            // Data held for this side can go now, to the address just proven.
            let token = me.ticket.token;
            let (ready, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut session.pending)
                .into_iter()
                .partition(|(to, _)| *to == side);
            session.pending = kept;
            for (_, mut frame) in ready {
                session.pending_bytes -= frame.len();
                session.bytes += frame.len() as u64;
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
        let me = &mut session.sides[side];
        if me.addr != Some(from) {
            // Not where this token's holder proved to be: a NAT that moved it, or a stranger
            // who saw the token. Either way the data goes nowhere; the holder is told (with
            // fewer bytes than it sent) to bind again from where it is.
            self.counters.dropped_unproven += 1;
            if me
                .last_notice
                .is_none_or(|t| now.saturating_duration_since(t) >= REBIND_NOTICE_EVERY)
            {
                me.last_notice = Some(now);
                self.counters.rebind_notices += 1;
                buf[0] = REBIND;
                return Action::Send {
                    to: from,
                    len: HEADER_LEN,
                };
            }
            return Action::Drop;
        }
        session.last = now;
        let len = buf.len();
        if !session.bucket.take_n(now, len as f64) || !self.total.take_n(now, len as f64) {
            self.counters.dropped_limited += 1;
            return Action::Drop;
        }
        let other = &session.sides[1 - side];
        let Some(to) = other.addr else {
            if session.pending.len() < PENDING_MAX
                && session.pending_bytes + len <= PENDING_MAX_BYTES
            {
                session.pending_bytes += len;
                session.pending.push((1 - side, buf.to_vec()));
            } else {
                self.counters.dropped_unbound += 1;
            }
            return Action::Drop;
        };
        buf[1..HEADER_LEN].copy_from_slice(&other.ticket.token.0);
        session.bytes += len as u64;
        self.counters.packets_forwarded += 1;
        self.counters.bytes_forwarded += len as u64;
        Action::Send { to, len }
    }

    /// Datagrams to send besides the [`Action`]s (held data released by a bind).
    pub fn take_queued(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.queued)
    }

    /// Whether datagrams are waiting in [`Self::take_queued`].
    pub fn has_queued(&self) -> bool {
        !self.queued.is_empty()
    }

    /// Closes the sessions idle for longer than the limit, and those not bound by both sides
    /// within [`Limits::unbound_ttl`]; returns how many.
    pub fn sweep(&mut self, now: Instant) -> usize {
        let Limits {
            idle, unbound_ttl, ..
        } = self.limits;
        let expired: Vec<(u64, CloseWhy)> = self
            .sessions
            .iter()
            .filter_map(|(id, s)| {
                let is_unbound = s.sides.iter().any(|side| side.addr.is_none())
                    && now.saturating_duration_since(s.created) > unbound_ttl;
                if is_unbound {
                    Some((*id, CloseWhy::Unbound))
                } else {
                    (now.saturating_duration_since(s.last) > idle).then_some((*id, CloseWhy::Idle))
                }
            })
            .collect();
        for &(id, why) in &expired {
            self.remove(id, why);
        }
        let unbound = expired
            .iter()
            .filter(|(_, w)| *w == CloseWhy::Unbound)
            .count();
        self.counters.sessions_unbound += unbound as u64;
        self.counters.sessions_expired += expired.len() as u64;
        expired.len()
    }

    fn remove(&mut self, id: u64, why: CloseWhy) -> bool {
        let Some(s) = self.sessions.remove(&id) else {
            return false;
        };
        for side in &s.sides {
            self.tokens.remove(&side.ticket.token);
        }
        self.per_key.release(&s.owner.key);
        self.per_prefix.release(&s.owner.prefix);
        if self.closed.len() >= MAX_CLOSED {
            self.closed.pop_front();
        }
        self.closed.push_back(Closed {
            id,
            bytes: s.bytes,
            last: s.last,
            why,
        });
        true
    }

    /// Ends session `id` now (the operator's choice): its tokens stop working at once, so its
    /// peers' packets are dropped from the next one on. Returns whether it was live.
    pub fn end(&mut self, id: u64) -> bool {
        self.remove(id, CloseWhy::Ended)
    }

    /// The session a ticket's token belongs to.
    pub fn session_of(&self, token: &Token) -> Option<u64> {
        self.tokens.get(token).map(|&(id, _)| id)
    }

    /// The live sessions.
    pub fn sessions(&self) -> Vec<SessionView> {
        self.sessions
            .iter()
            .map(|(&id, s)| SessionView {
                id,
                controller: s.owner.key,
                created: s.created,
                last: s.last,
                bytes: s.bytes,
                bound: [s.sides[0].addr.is_some(), s.sides[1].addr.is_some()],
            })
            .collect()
    }

    /// The sessions closed since the last call.
    pub fn take_closed(&mut self) -> Vec<Closed> {
        self.closed.drain(..).collect()
    }

    pub fn counters(&self) -> Counters {
        Counters {
            sessions_active: self.sessions.len() as u64,
            ..self.counters
        }
    }

    /// Counts a datagram the driver dropped before it reached [`Self::on_datagram`].
    pub fn count_malformed(&mut self) {
        self.counters.dropped_malformed += 1;
    }

    /// Bandwidth-limit drops so far (the driver warns when they grow).
    pub fn dropped_limited(&self) -> u64 {
        self.counters.dropped_limited
    }
}

#[cfg(test)]
mod tests;
