//! Relay frames: what a peer and the rendezvous's relay put in each UDP datagram.
//!
//! ```text
//!  controller ──[0x80 | token C | QUIC]──► relay ──[0x80 | token H | QUIC]──► host
//!             ◄─[0x80 | token C | QUIC]───       ◄─[0x80 | token H | QUIC]───
//! ```
//!
//! Frames, one per UDP datagram (or GSO/GRO segment):
//! - `0x80 | token | payload`: data, a QUIC packet the relay forwards without reading;
//! - `0x81 | token | counter (u64) | mac (16)`: bind, "the holder of this token is at this
//!   address", proven with the side's bind key (also the keep-alive);
//! - `0x82 | token`: bound, the relay's answer to a proven bind;
//! - `0x83 | token`: rebind, the relay's answer to data from an address it has not seen proven
//!   for that token (a NAT that moved the peer): "bind again from where you are".
//!
//! The first byte `10xxxxxx` is never STUN (`00`) and never QUIC with greasing off (its fixed bit
//! `0x40` is always set), so one peer socket tells the three apart by that byte.
//!
//! The rendezvous issues each peer of a session a [`Ticket`]: a random token, which travels in
//! every frame, and a bind key, which never does; a bind carries an HMAC-SHA256 with the bind key
//! over the token and a counter that must grow. What the relay does with frames is in the
//! `rendezvous` crate's `relay` module.

use serde::{Deserialize, Serialize};

/// Length of a session token.
pub const TOKEN_LEN: usize = 16;
/// Length of a bind key.
pub const KEY_LEN: usize = 32;
/// Length of a bind frame's MAC.
pub const MAC_LEN: usize = 16;
/// Bytes the relay header adds to every packet.
pub const HEADER_LEN: usize = 1 + TOKEN_LEN;
/// Length of a bind frame.
pub const BIND_LEN: usize = HEADER_LEN + 8 + MAC_LEN;

/// Frame kinds, the first byte of a frame.
pub const DATA: u8 = 0x80;
pub const BIND: u8 = 0x81;
pub const BOUND: u8 = 0x82;
pub const REBIND: u8 = 0x83;
const MAC_LABEL: &[u8] = b"quicdesk relay bind v1";

/// A random token that names one side of one relayed session in every frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Token(pub [u8; TOKEN_LEN]);

impl Token {
    pub fn random() -> Self {
        Self(rand::random())
    }
}

impl std::fmt::Debug for Token {
    // Logs show only enough of a token to tell two apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token({:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2]
        )
    }
}

/// The secret that proves a bind for one side of a session. It never travels in a frame.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindKey(pub [u8; KEY_LEN]);

impl std::fmt::Debug for BindKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BindKey(…)")
    }
}

/// What one side of a relayed session holds: its token and its bind key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub token: Token,
    pub key: BindKey,
}

impl Ticket {
    pub fn random() -> Self {
        Self {
            token: Token::random(),
            key: BindKey(rand::random()),
        }
    }
}

/// What the rendezvous tells a peer about the relay: its port (on the rendezvous's IP) and the
/// peer's ticket for this session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayOffer {
    pub port: u16,
    pub ticket: Ticket,
}

/// One relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        token: Token,
        payload: &'a [u8],
    },
    Bind {
        token: Token,
        counter: u64,
        mac: [u8; MAC_LEN],
    },
    Bound {
        token: Token,
    },
    Rebind {
        token: Token,
    },
}

/// Why a datagram is not a relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("not a relay frame")]
    NotRelay,
    #[error("relay frame shorter than its {HEADER_LEN}-byte header")]
    Short,
    #[error("relay frame of kind {0:#04x} has the wrong length")]
    Length(u8),
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
    let (Some(head), Some(rest)) = (datagram.get(1..HEADER_LEN), datagram.get(HEADER_LEN..)) else {
        return Err(FrameError::Short);
    };
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(head);
    let token = Token(t);
    let kind = datagram[0];
    match kind {
        DATA => Ok(Frame::Data {
            token,
            payload: rest,
        }),
        BIND if rest.len() == 8 + MAC_LEN => {
            let mut c = [0u8; 8];
            c.copy_from_slice(&rest[..8]);
            let mut mac = [0u8; MAC_LEN];
            mac.copy_from_slice(&rest[8..]);
            Ok(Frame::Bind {
                token,
                counter: u64::from_be_bytes(c),
                mac,
            })
        }
        BOUND if rest.is_empty() => Ok(Frame::Bound { token }),
        REBIND if rest.is_empty() => Ok(Frame::Rebind { token }),
        BIND | BOUND | REBIND => Err(FrameError::Length(kind)),
        k => Err(FrameError::Kind(k)),
    }
}

/// A frame header: `kind` (one of [`DATA`], [`BIND`], [`BOUND`], [`REBIND`]) and the token.
pub fn header(kind: u8, token: Token) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0] = kind;
    h[1..].copy_from_slice(&token.0);
    h
}

/// The header to put before a QUIC packet sent through the relay.
pub fn data_header(token: Token) -> [u8; HEADER_LEN] {
    header(DATA, token)
}

fn bind_mac(key: &BindKey, token: Token, counter: u64) -> [u8; MAC_LEN] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key.0);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(MAC_LABEL);
    ctx.update(&token.0);
    ctx.update(&counter.to_be_bytes());
    let tag = ctx.sign();
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    mac
}

/// A bind frame for `ticket`. `counter` must grow from one bind to the next (the relay refuses
/// a counter it has seen, so a recorded bind cannot be replayed from elsewhere).
pub fn bind_frame(ticket: &Ticket, counter: u64) -> [u8; BIND_LEN] {
    let mut f = [0u8; BIND_LEN];
    f[..HEADER_LEN].copy_from_slice(&header(BIND, ticket.token));
    f[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&counter.to_be_bytes());
    f[HEADER_LEN + 8..].copy_from_slice(&bind_mac(&ticket.key, ticket.token, counter));
    f
}

/// Constant-time equality of two MACs.
fn mac_eq(a: &[u8; MAC_LEN], b: &[u8; MAC_LEN]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a bind's MAC was made with `ticket`'s key for this counter (constant time). Whether
/// the counter grew is the relay's to check.
pub fn verify_bind(ticket: &Ticket, counter: u64, mac: &[u8; MAC_LEN]) -> bool {
    mac_eq(mac, &bind_mac(&ticket.key, ticket.token, counter))
}
