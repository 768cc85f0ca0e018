//! What the agent puts on the wire and reads from it: STUN Binding messages (punch probes,
//! address discovery, path checks) and relay frames. Both are byte-for-byte today's formats
//! (`rendezvous::stun`, `rendezvous::relay`), so the agent can replace the peer's path logic
//! without changing a packet; they are restated here because this crate may not depend on
//! `rendezvous` (its protocol half is being split out; see the crate docs).
//!
//! Everything here takes untrusted bytes and returns an error instead of panicking.

use std::net::SocketAddr;

use stun_rs::attributes::stun::{Fingerprint, Software, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};

/// The STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// A STUN header's size.
pub const STUN_HEADER_LEN: usize = 20;
/// Largest STUN message read or written; anything longer is not ours.
pub const STUN_MAX_LEN: usize = 548;
/// What every request carries as SOFTWARE: it pads requests to [`REQUEST_LEN`], at least the
/// size of any answer, so responders that never answer with more bytes than they got (the
/// rendezvous's, a peer's) still answer them whole.
const SOFTWARE_PAD: &str = "quicdesk binding request pad";
/// Length of every Binding request [`binding_request`] makes.
pub const REQUEST_LEN: usize = STUN_HEADER_LEN + 4 + SOFTWARE_PAD.len() + 8;

/// A STUN transaction id.
pub type TxId = [u8; 12];

/// Why bytes are not what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("not a stun message")]
    NotStun,
    #[error("malformed stun message")]
    MalformedStun,
    #[error("not a binding success response with an address")]
    NotBindingSuccess,
    #[error("cannot encode a stun message")]
    Encode,
    #[error("not a relay frame")]
    NotRelay,
    #[error("relay frame too short or of the wrong length")]
    RelayLength,
    #[error("unknown relay frame kind {0:#04x}")]
    RelayKind(u8),
}

/// Whether `datagram` is a STUN message, from its header alone: the two top bits are zero, the
/// magic cookie is in place and the length field (a multiple of 4) matches the datagram.
pub fn is_stun(datagram: &[u8]) -> bool {
    if datagram.len() < STUN_HEADER_LEN || datagram.len() > STUN_MAX_LEN || datagram[0] & 0xc0 != 0
    {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    cookie == MAGIC_COOKIE && len % 4 == 0 && STUN_HEADER_LEN + len == datagram.len()
}

/// What a STUN datagram is, as far as the agent cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunKind {
    BindingRequest,
    /// A success or error response to a Binding request.
    BindingResponse,
    /// Anything else (indications, other methods, not STUN).
    Other,
}

/// The class and method of a datagram, read from its header.
pub fn stun_kind(datagram: &[u8]) -> StunKind {
    if !is_stun(datagram) {
        return StunKind::Other;
    }
    // Type: method bits interleaved with class bits C1 (0x0100) and C0 (0x0010).
    let ty = u16::from_be_bytes([datagram[0], datagram[1]]);
    let method = (ty & 0x000f) | ((ty & 0x00e0) >> 1) | ((ty & 0x3e00) >> 2);
    let class = ((ty & 0x0100) >> 7) | ((ty & 0x0010) >> 4);
    match (method, class) {
        (0x001, 0b00) => StunKind::BindingRequest,
        (0x001, 0b10 | 0b11) => StunKind::BindingResponse,
        _ => StunKind::Other,
    }
}

/// The transaction id of a datagram that [`is_stun`].
pub fn transaction_id(datagram: &[u8]) -> Option<TxId> {
    let bytes = datagram
        .get(8..STUN_HEADER_LEN)
        .filter(|_| is_stun(datagram))?;
    let mut id = [0; 12];
    id.copy_from_slice(bytes);
    Some(id)
}

/// A Binding request with transaction id `id`, padded to [`REQUEST_LEN`]: the punch probe,
/// path check and discovery request alike.
pub fn binding_request(id: TxId) -> Result<Vec<u8>, WireError> {
    let pad = Software::new(SOFTWARE_PAD).map_err(|_| WireError::Encode)?;
    let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(TransactionId::from(id))
        .with_attribute(pad)
        .with_attribute(Fingerprint::default())
        .build();
    encode(&msg)
}

/// The answer to a Binding request from `from`: a success response carrying `from` as
/// XOR-MAPPED-ADDRESS, never longer than the request (its source is not proven), FINGERPRINT
/// left out when only that fits. `Ok(None)` when nothing needs or can get an answer.
pub fn binding_answer(request: &[u8], from: SocketAddr) -> Result<Option<Vec<u8>>, WireError> {
    if stun_kind(request) != StunKind::BindingRequest {
        return Err(WireError::NotStun);
    }
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(request)
        .map_err(|_| WireError::MalformedStun)?;
    let max_len = request.len();
    let address_len = if from.is_ipv4() { 12 } else { 24 };
    if STUN_HEADER_LEN + address_len > max_len {
        return Ok(None);
    }
    let mut response = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*msg.transaction_id())
        .with_attribute(XorMappedAddress::from(from));
    if STUN_HEADER_LEN + address_len + 8 <= max_len {
        response = response.with_attribute(Fingerprint::default());
    }
    let out = encode(&response.build())?;
    Ok((out.len() <= max_len).then_some(out))
}

/// Reads a Binding success response: its transaction id and the reflexive address.
pub fn parse_binding_response(datagram: &[u8]) -> Result<(TxId, SocketAddr), WireError> {
    if !is_stun(datagram) {
        return Err(WireError::NotStun);
    }
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(datagram)
        .map_err(|_| WireError::MalformedStun)?;
    if msg.method() != BINDING || msg.class() != MessageClass::SuccessResponse {
        return Err(WireError::NotBindingSuccess);
    }
    let mut id = [0; 12];
    id.copy_from_slice(msg.transaction_id().as_bytes());
    let addr = msg
        .get::<XorMappedAddress>()
        .and_then(|a| a.as_xor_mapped_address().ok())
        .map(|a| *a.socket_address())
        .ok_or(WireError::NotBindingSuccess)?;
    Ok((id, addr))
}

fn encode(msg: &stun_rs::StunMessage) -> Result<Vec<u8>, WireError> {
    let mut buf = [0u8; STUN_MAX_LEN];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, msg)
        .map_err(|_| WireError::Encode)?;
    Ok(buf[..n].to_vec())
}

/// Length of a relay session token.
pub const TOKEN_LEN: usize = 16;
/// Length of a relay bind key.
pub const KEY_LEN: usize = 32;
/// Length of a bind frame's MAC.
pub const MAC_LEN: usize = 16;
/// Bytes the relay header adds to every packet.
pub const RELAY_HEADER_LEN: usize = 1 + TOKEN_LEN;
/// Length of a bind frame.
pub const BIND_LEN: usize = RELAY_HEADER_LEN + 8 + MAC_LEN;
const DATA: u8 = 0x80;
const BIND: u8 = 0x81;
const BOUND: u8 = 0x82;
const REBIND: u8 = 0x83;
const MAC_LABEL: &[u8] = b"quicdesk relay bind v1";

/// The token that names one side of one relayed session in every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub [u8; TOKEN_LEN]);

/// One side's relay ticket: its token and the key that proves its binds (never sent).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub token: Token,
    pub key: [u8; KEY_LEN],
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// One relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayFrame<'a> {
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

/// Whether a datagram's first byte marks it as a relay frame (`10xxxxxx`: never STUN, never
/// QUIC with greasing off).
pub fn is_relay(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0xC0 == 0x80)
}

/// Reads a relay frame.
pub fn parse_relay(datagram: &[u8]) -> Result<RelayFrame<'_>, WireError> {
    let Some((&kind, rest)) = datagram.split_first().filter(|_| is_relay(datagram)) else {
        return Err(WireError::NotRelay);
    };
    let (Some(head), Some(rest)) = (rest.get(..TOKEN_LEN), rest.get(TOKEN_LEN..)) else {
        return Err(WireError::RelayLength);
    };
    let mut t = [0u8; TOKEN_LEN];
    t.copy_from_slice(head);
    let token = Token(t);
    match kind {
        DATA => Ok(RelayFrame::Data {
            token,
            payload: rest,
        }),
        BIND if rest.len() == 8 + MAC_LEN => {
            let mut c = [0u8; 8];
            c.copy_from_slice(&rest[..8]);
            let mut mac = [0u8; MAC_LEN];
            mac.copy_from_slice(&rest[8..]);
            Ok(RelayFrame::Bind {
                token,
                counter: u64::from_be_bytes(c),
                mac,
            })
        }
        BOUND if rest.is_empty() => Ok(RelayFrame::Bound { token }),
        REBIND if rest.is_empty() => Ok(RelayFrame::Rebind { token }),
        BIND | BOUND | REBIND => Err(WireError::RelayLength),
        k => Err(WireError::RelayKind(k)),
    }
}

fn relay_header(kind: u8, token: Token) -> [u8; RELAY_HEADER_LEN] {
    let mut h = [0u8; RELAY_HEADER_LEN];
    h[0] = kind;
    h[1..].copy_from_slice(&token.0);
    h
}

/// The header before a packet sent through the relay.
pub fn data_header(token: Token) -> [u8; RELAY_HEADER_LEN] {
    relay_header(DATA, token)
}

/// The relay's answer to a proven bind (what a relay sends; for simulations).
pub fn bound_frame(token: Token) -> [u8; RELAY_HEADER_LEN] {
    relay_header(BOUND, token)
}

/// The relay's request to bind again (what a relay sends; for simulations).
pub fn rebind_frame(token: Token) -> [u8; RELAY_HEADER_LEN] {
    relay_header(REBIND, token)
}

/// The MAC of a bind: HMAC-SHA256 with the bind key over a label, the token and the counter,
/// cut to [`MAC_LEN`] bytes.
pub fn bind_mac(ticket: &Ticket, counter: u64) -> [u8; MAC_LEN] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &ticket.key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(MAC_LABEL);
    ctx.update(&ticket.token.0);
    ctx.update(&counter.to_be_bytes());
    let tag = ctx.sign();
    let mut mac = [0u8; MAC_LEN];
    mac.copy_from_slice(&tag.as_ref()[..MAC_LEN]);
    mac
}

/// A bind frame for `ticket` with `counter`, which must grow from one bind to the next.
pub fn bind_frame(ticket: &Ticket, counter: u64) -> [u8; BIND_LEN] {
    let mut f = [0u8; BIND_LEN];
    f[..RELAY_HEADER_LEN].copy_from_slice(&relay_header(BIND, ticket.token));
    f[RELAY_HEADER_LEN..RELAY_HEADER_LEN + 8].copy_from_slice(&counter.to_be_bytes());
    f[RELAY_HEADER_LEN + 8..].copy_from_slice(&bind_mac(ticket, counter));
    f
}

/// Whether `mac` proves a bind with `counter` for `ticket` (constant time).
pub fn bind_proven(ticket: &Ticket, counter: u64, mac: &[u8; MAC_LEN]) -> bool {
    let want = bind_mac(ticket, counter);
    want.iter().zip(mac).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answer_round_trip_keeps_todays_sizes() {
        let req = binding_request([7; 12]).unwrap();
        assert_eq!(req.len(), REQUEST_LEN);
        assert_eq!(REQUEST_LEN, 60);
        assert_eq!(stun_kind(&req), StunKind::BindingRequest);
        assert_eq!(transaction_id(&req), Some([7; 12]));
        for from in ["203.0.113.7:40123", "[2001:db8::1]:9"] {
            let from: SocketAddr = from.parse().unwrap();
            let answer = binding_answer(&req, from).unwrap().unwrap();
            assert!(answer.len() <= req.len());
            assert_eq!(stun_kind(&answer), StunKind::BindingResponse);
            assert_eq!(parse_binding_response(&answer).unwrap(), ([7; 12], from));
        }
    }

    #[test]
    fn relay_frames_round_trip() {
        let ticket = Ticket {
            token: Token([3; TOKEN_LEN]),
            key: [9; KEY_LEN],
        };
        let bind = bind_frame(&ticket, 42);
        match parse_relay(&bind).unwrap() {
            RelayFrame::Bind {
                token,
                counter,
                mac,
            } => {
                assert_eq!((token, counter), (ticket.token, 42));
                assert!(bind_proven(&ticket, 42, &mac));
                assert!(!bind_proven(&ticket, 43, &mac));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_relay(&bound_frame(ticket.token)),
            Ok(RelayFrame::Bound {
                token: ticket.token
            })
        );
        assert_eq!(parse_relay(&[0x80]), Err(WireError::RelayLength));
        assert_eq!(parse_relay(&[0x40; 20]), Err(WireError::NotRelay));
    }
}
