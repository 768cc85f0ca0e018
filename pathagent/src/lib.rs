//! The sans-IO path agent: how one peer reaches the other peer of a session, decided from
//! datagrams and instants passed in, and told back as datagrams to send, events and the next
//! instant to be woken at.
//!
//! ```text
//!   driver (owns the UDP sockets, the clock, quinn)                 Agent (this crate)
//!   ─────────────────────────────────────────────────               ───────────────────────────────
//!   datagram in (from, via) ────── handle_datagram(now, ..) ──────► STUN: answer / match a request
//!                     ◄── Input::PeerData{offset} / Consumed / NotMine   relay frame: bound, rebind, data
//!   timer fired ────────────────── handle_timeout(now) ───────────► retransmit, punch phases, checks
//!   rendezvous / peer said ─────── discover, add_local_candidates, set_relay,
//!                                  set_remote_candidates, start_punching, release_direct ─►
//!   quinn wants to send ────────── send_path(now) ────────────────► Direct{via,to} | Relay{to,header}
//!                                                                     | Each(candidates) | Nowhere
//!   UDP out ◄───────────────────── poll_transmit() ◄─────────────── probes, answers, binds, checks
//!   control msg / log / pool ◄──── poll_event() ◄────────────────── path changed, candidates, mapping,
//!                                                                     open/close pool sockets
//!   sleep until ◄───────────────── poll_timeout() ◄──────────────── earliest timer
//! ```
//!
//! Order of use, as with quinn-proto: call a `handle_*` or input method with `now`, then drain
//! [`Agent::poll_transmit`] and [`Agent::poll_event`], then sleep until [`Agent::poll_timeout`]
//! (or the next datagram) and call [`Agent::handle_timeout`].
//!
//! What it does, for one session (one remote peer):
//! - **Candidates**: LAN addresses it is given, its reflexive address (as the rendezvous
//!   observed it, or a STUN server answers it), the NAT's [`Mapping`] from comparing them; it
//!   reports [`Event::LocalCandidates`] for the driver to send to the peer, again whenever they
//!   change (a NAT that lost its mappings hands out new ports).
//! - **Requests until answered**: STUN Binding requests to STUN servers, punch probes, path
//!   checks and relay binds share one retransmission implementation (`tx`).
//! - **Punching**: probes to every remote candidate and to peer-reflexive addresses it learns;
//!   after 500 ms without an answer, port prediction (±16 around the peer's first candidate)
//!   and birthday punching (pool sockets on the endpoint-dependent side, a random-port spray on
//!   the other); a probe answered proves a path both ways.
//! - **Route choice**: relay first, then the direct path a probe proved, without a reconnect
//!   (the driver keeps giving quinn the same virtual address); a controller may hold the move
//!   until its handshake is done ([`Config::hold_direct`]).
//! - **Keepalives and dead paths**: a direct path that goes unanswered is checked at once and
//!   declared dead after [`DEAD_AFTER`]; the route falls back to the relay and punches again
//!   (after rediscovering its own reflexive address), so a NAT that lost its mappings on either
//!   side costs about a second, and the direct path comes back if it can be punched again.
//!   The relay session is refreshed every 20 s and re-bound when the relay asks.
//!
//! What it does **not** do: no I/O (no sockets, no clock: `now` is always passed in), no
//! randomness but a [`StdRng`](rand::rngs::StdRng) seeded from [`Config::seed`], no QUIC
//! (payloads are opaque; the driver hands [`Input::PeerData`] to quinn), no cryptography beyond
//! the relay bind's HMAC (it never sees a session key), no signalling (candidates travel in the
//! driver's control messages), and no STUN service for strangers beyond answering Binding
//! requests it is given, rate-limited.
//!
//! Wire formats are today's, unchanged, and encoded by `proto` (without its `quic` feature,
//! so the agent links no QUIC, TLS or runtime; [`wire`] adapts them): punch probes and checks are the peer's
//! padded Binding requests (60 bytes, SOFTWARE pad and FINGERPRINT), answers are never longer
//! than the request, relay frames are `0x80 data | 0x81 bind | 0x82 bound | 0x83 rebind` with
//! the same HMAC-SHA256 bind proof. Nothing on the wire had to change. What changed when it
//! replaced the path code of `peer::net`/`peer::nat` (its driver now), in behaviour only:
//! - a birthday pool socket repeats one transaction (same id) at 0, 1 and 2 s, where today it
//!   sends three fresh ones (one retransmission implementation for everything);
//! - the relay bind counter starts where the driver says ([`Agent::set_relay`]; today's
//!   driver passes its clock-based value) and then grows by one per bind;
//! - a path moves to direct only when a probe is answered (proven both ways); today a datagram
//!   from a candidate also moved it, so data from a candidate here triggers a probe instead;
//! - a silent direct path gets checks of its own (Binding requests) and is dead after
//!   [`DEAD_AFTER`] (1 s, today 1.5 s); after a fallback the agent punches again (at once the
//!   first two times, then backing off up to a minute) instead of never going direct again in
//!   that session: only a probe answer readopts a path, so an asymmetric path cannot flap;
//! - a candidate list that changes mid-session (the peer's NAT moved it) is punched towards
//!   at once; today a second `Candidates` message was ignored.
//!
//! `peer::net` drives one agent per route; `INTEGRATION.md` records how the old socket code
//! mapped onto it.
#![forbid(unsafe_code)]

mod agent;
mod discovery;
mod path;
mod punch;
mod tx;
pub mod wire;

use std::net::SocketAddr;
use std::time::Duration;

pub use agent::{Agent, Config};
pub use punch::{Birthday, predicted};
pub use wire::{Ticket, Token};

/// Retransmission times of a STUN request, from the first send (ms).
pub const STUN_RETRIES_MS: [u64; 6] = [0, 100, 300, 700, 1500, 3100];
/// Retransmission times of a relay bind (ms).
pub const BIND_RETRIES_MS: [u64; 7] = [0, 100, 300, 700, 1500, 3100, 6300];
/// How long a STUN server may take to answer discovery.
pub const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one punch round probes.
pub const PUNCH_FOR: Duration = Duration::from_secs(5);
/// When nothing answered this long into a round, probe predicted ports and punch birthday-style.
pub const PREDICT_AFTER: Duration = Duration::from_millis(500);
/// Ports tried on each side of the peer's first candidate's port.
pub const PREDICT_SPAN: u16 = 16;
/// Sockets the endpoint-dependent side opens for birthday punching.
pub const POOL_SIZE: u32 = 256;
/// When each pool socket sends its probe to the peer (ms after the pool opens).
pub const POOL_SENDS_MS: [u64; 3] = [0, 1000, 2000];
/// Most random ports the endpoint-independent side probes in one round.
pub const SPRAY_MAX: usize = 2048;
/// Spray probes per [`SPRAY_TICK`].
pub const SPRAY_BATCH: usize = 16;
pub const SPRAY_TICK: Duration = Duration::from_millis(16);
/// The spray starts this long into a round (200 ms after the other side's pool opens).
pub const SPRAY_AFTER: Duration = Duration::from_millis(700);
/// A direct path sent on without an answer this long gets a check (a probe of its own).
pub const CHECK_AFTER: Duration = Duration::from_millis(250);
/// A direct path sent on without an answer this long is dead (today's socket: 1.5 s; shorter
/// here so that a session resumes within 2 s of a NAT losing its mappings).
pub const DEAD_AFTER: Duration = Duration::from_millis(1000);
/// A direct path with nothing sent on it this long gets a check, keeping NAT mappings open.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// How often the relay session is refreshed with a bind.
pub const RELAY_REFRESH: Duration = Duration::from_secs(20);
/// Least time between two binds sent because the relay asked.
pub const REBIND_EVERY: Duration = Duration::from_millis(200);
/// Least time between two rediscoveries of this side's reflexive address.
pub const REDISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Binding requests answered per second at most (bounds what forged requests reflect).
pub const STUN_ANSWERS_PER_SEC: u32 = 200;
/// Peer-reflexive candidates kept.
pub const MAX_LEARNED: usize = 8;
/// Addresses at the peer's IPs whose Binding requests were answered, kept so that the peer's
/// packets from them are taken (as many as a birthday pool has sockets).
pub const MAX_REQUESTERS: usize = POOL_SIZE as usize;
/// Remote candidates kept (the rendezvous's limit).
pub const MAX_CANDIDATES: usize = 16;
/// Local LAN candidates offered.
pub const MAX_LAN_CANDIDATES: usize = 8;

/// Which socket a datagram came in on or goes out of: the peer's one socket, or a birthday
/// pool socket the driver opened on [`Event::OpenPool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Via {
    #[default]
    Main,
    Pool(u32),
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub via: Via,
    pub to: SocketAddr,
    pub bytes: Vec<u8>,
}

/// How the NAT in front of a socket maps it to public ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mapping {
    /// The same public address for every destination (no NAT, or a cone NAT).
    EndpointIndependent,
    /// A different public port per destination (a symmetric NAT).
    EndpointDependent,
    #[default]
    Unknown,
}

/// Where the session's packets go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// No relay, no direct path, no candidate: nowhere yet.
    Nowhere,
    /// Through the relay at this address.
    Relay(SocketAddr),
    /// Straight to the peer at `to`, out of socket `via`.
    Direct { to: SocketAddr, via: Via },
    /// No relay and no proven path: to every candidate at once.
    Candidates,
}

impl Path {
    pub fn is_direct(&self) -> bool {
        matches!(self, Path::Direct { .. })
    }
}

/// Why the path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A probe to the new path was answered.
    ProbeAnswered,
    /// The held move happened ([`Agent::release_direct`]).
    Released,
    /// The direct path went unanswered for [`DEAD_AFTER`].
    DirectDead,
    /// The relay or candidates were configured.
    Configured,
}

/// What the agent tells its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A STUN server said where this socket's packets come from.
    ReflexiveAddress {
        server: SocketAddr,
        addr: SocketAddr,
    },
    /// How this side's NAT maps ports (reported when it becomes known or changes).
    Mapping(Mapping),
    /// This side's candidates and mapping, to send to the peer (again, when they changed).
    LocalCandidates {
        addrs: Vec<SocketAddr>,
        mapping: Mapping,
    },
    /// A peer-reflexive candidate: the peer probed from an address nobody told us.
    CandidateLearned(SocketAddr),
    /// The relay accepted a bind (first time, and again after a rebind).
    RelayBound,
    PathChanged {
        from: Path,
        to: Path,
        reason: Reason,
    },
    /// Open these pool sockets now (one UDP socket each, on the main socket's IP).
    OpenPool { ids: Vec<u32> },
    /// Close these pool sockets.
    ClosePool { ids: Vec<u32> },
}

/// What a datagram given to [`Agent::handle_datagram`] was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The agent's own (STUN, relay control): nothing for the driver to do.
    Consumed,
    /// A packet from the peer (relayed or direct): give `bytes[offset..]` to quinn as coming
    /// from the session's virtual address.
    PeerData { offset: usize },
    /// Not this agent's: the driver may offer it elsewhere (the rendezvous connection,
    /// another session) or drop it.
    NotMine,
}

/// Where to send a packet of the session now (see [`Agent::send_path`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendPath {
    Direct {
        via: Via,
        to: SocketAddr,
    },
    /// Put `header` before each segment and send it all to `to`.
    Relay {
        to: SocketAddr,
        header: [u8; wire::RELAY_HEADER_LEN],
    },
    /// To each of these (no relay, no proven path yet: duplicates are harmless to QUIC).
    Each(Vec<SocketAddr>),
    /// Nowhere to send (like a lost packet).
    Nowhere,
}
