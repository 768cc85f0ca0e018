//! STUN Binding (RFC 8489), sans-IO: telling STUN datagrams from QUIC ones, building requests,
//! answering them, and reading the reflexive address out of a response. The rendezvous answers
//! on its second port; peers ask both that port and standard STUN servers.
//!
//! ```text
//!  peer ── BindingRequest{txid} ──► NAT ──► responder: answer(request, from) → XOR-MAPPED-ADDRESS=from
//!  peer ◄── BindingSuccess{txid, XOR-MAPPED-ADDRESS} ──  parse_response(datagram) → (txid, address)
//! ```
//!
//! Messages are encoded and decoded with stun-rs; [`is_stun`] is a cheap check on the header
//! alone so the peer's one UDP socket can hand STUN to this module and everything else to QUIC
//! (QUIC packets always have the second bit of their first byte set once greasing is off; STUN
//! messages start with two zero bits and carry the magic cookie).

use std::net::SocketAddr;

use stun_rs::attributes::stun::{ErrorCode, Fingerprint, Software, XorMappedAddress};
use stun_rs::methods::BINDING;
use stun_rs::{
    MessageClass, MessageDecoderBuilder, MessageEncoderBuilder, StunMessageBuilder, TransactionId,
};

/// The STUN magic cookie (RFC 8489 §5).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// A STUN header's size.
pub const HEADER_LEN: usize = 20;
/// Largest STUN message this module reads or writes; anything longer is not ours.
pub const MAX_LEN: usize = 548;

/// What went wrong with a STUN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    #[error("not a STUN message")]
    NotStun,
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("not a Binding message")]
    NotBinding,
    #[error("the Binding response has no XOR-MAPPED-ADDRESS")]
    NoAddress,
    #[error("the STUN server answered with error {code}: {reason}")]
    ErrorResponse { code: u16, reason: String },
    #[error("cannot encode a STUN message: {0}")]
    Encode(String),
}

/// A STUN transaction id.
pub type TxId = [u8; 12];

/// Whether `datagram` is a STUN message, from its header alone: the two top bits are zero, the
/// magic cookie is in place and the length field (a multiple of 4) matches the datagram.
pub fn is_stun(datagram: &[u8]) -> bool {
    if datagram.len() < HEADER_LEN || datagram.len() > MAX_LEN || datagram[0] & 0xc0 != 0 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let cookie = u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]]);
    cookie == MAGIC_COOKIE && len % 4 == 0 && HEADER_LEN + len == datagram.len()
}

/// The transaction id of a datagram that [`is_stun`].
pub fn transaction_id(datagram: &[u8]) -> Option<TxId> {
    is_stun(datagram).then(|| {
        let mut id = [0; 12];
        id.copy_from_slice(&datagram[8..HEADER_LEN]);
        id
    })
}

/// What a STUN datagram is, as far as quicdesk cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BindingRequest,
    /// A success or error response to a Binding request.
    BindingResponse,
    /// Anything else (indications, other methods): ignored.
    Other,
}

/// The message class and method of a datagram that [`is_stun`], read from the header.
pub fn kind(datagram: &[u8]) -> Kind {
    if !is_stun(datagram) {
        return Kind::Other;
    }
    // Type: method bits interleaved with class bits C1 (0x0100) and C0 (0x0010).
    let ty = u16::from_be_bytes([datagram[0], datagram[1]]);
    let method = (ty & 0x000f) | ((ty & 0x00e0) >> 1) | ((ty & 0x3e00) >> 2);
    let class = ((ty & 0x0100) >> 7) | ((ty & 0x0010) >> 4);
    match (method, class) {
        (0x001, 0b00) => Kind::BindingRequest,
        (0x001, 0b10 | 0b11) => Kind::BindingResponse,
        _ => Kind::Other,
    }
}

/// What quicdesk's requests carry as SOFTWARE. Its length also pads every request to
/// [`REQUEST_LEN`], at least the size of any answer, so a responder that answers strangers with
/// no more bytes than they sent (as quicdesk's do) still answers quicdesk's peers.
const SOFTWARE_PAD: &str = "quicdesk binding request pad";
/// Length of every Binding request [`binding_request`] makes.
pub const REQUEST_LEN: usize = HEADER_LEN + 4 + SOFTWARE_PAD.len() + 8;
/// The largest answer [`answer`] makes (IPv6 XOR-MAPPED-ADDRESS and FINGERPRINT).
pub const MAX_ANSWER_LEN: usize = HEADER_LEN + 24 + 8;

/// A new Binding request with a random transaction id, padded to [`REQUEST_LEN`].
pub fn binding_request() -> Result<(TxId, Vec<u8>), StunError> {
    let id: TxId = rand::random();
    Ok((id, binding_request_with(id)?))
}

/// A Binding request with this transaction id (a caller with its own, seeded, randomness),
/// padded to [`REQUEST_LEN`].
pub fn binding_request_with(id: TxId) -> Result<Vec<u8>, StunError> {
    let pad = Software::new(SOFTWARE_PAD).map_err(|e| StunError::Encode(e.to_string()))?;
    let msg = StunMessageBuilder::new(BINDING, MessageClass::Request)
        .with_transaction_id(TransactionId::from(id))
        .with_attribute(pad)
        .with_attribute(Fingerprint::default())
        .build();
    encode(&msg)
}

/// The answer to a Binding request that came from `from`: a success response carrying `from` as
/// XOR-MAPPED-ADDRESS. `Ok(None)` for STUN messages that need no answer (responses,
/// indications, other methods), and when the answer cannot be made to fit `max_len` bytes.
///
/// A responder passes the request's own length as `max_len` for a source it has not seen
/// proven, so a forged source address gains an attacker nothing: the FINGERPRINT is left out
/// when only that fits (32 bytes for IPv4, 44 for IPv6), and a request too small for even that
/// gets no answer. quicdesk's own requests are padded ([`REQUEST_LEN`]) so they are always
/// answered whole.
pub fn answer(
    request: &[u8],
    from: SocketAddr,
    max_len: Option<usize>,
) -> Result<Option<Vec<u8>>, StunError> {
    if !is_stun(request) {
        return Err(StunError::NotStun);
    }
    if kind(request) != Kind::BindingRequest {
        return Ok(None);
    }
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(request)
        .map_err(|e| StunError::Malformed(e.to_string()))?;
    let address_len = if from.is_ipv4() { 12 } else { 24 };
    let max_len = max_len.unwrap_or(MAX_LEN);
    let with_fingerprint = HEADER_LEN + address_len + 8 <= max_len;
    if HEADER_LEN + address_len > max_len {
        return Ok(None);
    }
    let mut response = StunMessageBuilder::new(BINDING, MessageClass::SuccessResponse)
        .with_transaction_id(*msg.transaction_id())
        .with_attribute(XorMappedAddress::from(from));
    if with_fingerprint {
        response = response.with_attribute(Fingerprint::default());
    }
    let out = encode(&response.build())?;
    Ok((out.len() <= max_len).then_some(out))
}

/// Reads a Binding response: its transaction id and the reflexive address it reports.
///
/// # Errors
///
/// [`StunError::ErrorResponse`] for an error response; other variants for anything that is not
/// a well-formed Binding success response with an XOR-MAPPED-ADDRESS.
pub fn parse_response(datagram: &[u8]) -> Result<(TxId, SocketAddr), StunError> {
    if !is_stun(datagram) {
        return Err(StunError::NotStun);
    }
    let (msg, _) = MessageDecoderBuilder::default()
        .build()
        .decode(datagram)
        .map_err(|e| StunError::Malformed(e.to_string()))?;
    if msg.method() != BINDING {
        return Err(StunError::NotBinding);
    }
    let mut id = [0; 12];
    id.copy_from_slice(msg.transaction_id().as_bytes());
    match msg.class() {
        MessageClass::SuccessResponse => {}
        MessageClass::ErrorResponse => {
            let (code, reason) = msg
                .get::<ErrorCode>()
                .and_then(|a| a.as_error_code().ok())
                .map_or((0, String::new()), |e| {
                    (
                        e.error_code().error_code(),
                        e.error_code().reason().to_owned(),
                    )
                });
            return Err(StunError::ErrorResponse { code, reason });
        }
        _ => return Err(StunError::NotBinding),
    }
    let addr = msg
        .get::<XorMappedAddress>()
        .and_then(|a| a.as_xor_mapped_address().ok())
        .map(|a| *a.socket_address())
        .ok_or(StunError::NoAddress)?;
    Ok((id, addr))
}

fn encode(msg: &stun_rs::StunMessage) -> Result<Vec<u8>, StunError> {
    let mut buf = [0u8; MAX_LEN];
    let n = MessageEncoderBuilder::default()
        .build()
        .encode(&mut buf, msg)
        .map_err(|e| StunError::Encode(e.to_string()))?;
    Ok(buf[..n].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_answer_response_round_trip() {
        let (id, req) = binding_request().unwrap();
        assert!(is_stun(&req));
        assert_eq!(kind(&req), Kind::BindingRequest);
        assert_eq!(transaction_id(&req), Some(id));
        for from in ["203.0.113.7:40123", "[2001:db8::1]:9"] {
            let from: SocketAddr = from.parse().unwrap();
            let resp = answer(&req, from, None)
                .unwrap()
                .expect("a request is answered");
            assert_eq!(kind(&resp), Kind::BindingResponse);
            assert_eq!(parse_response(&resp).unwrap(), (id, from));
            // Responses are not answered.
            assert_eq!(answer(&resp, from, None).unwrap(), None);
            // Our padded request is answered whole even under the no-amplification rule.
            assert_eq!(req.len(), REQUEST_LEN);
            let capped = answer(&req, from, Some(req.len())).unwrap().unwrap();
            assert!(capped.len() <= req.len() && capped.len() <= MAX_ANSWER_LEN);
            assert_eq!(parse_response(&capped).unwrap(), (id, from));
        }
    }

    #[test]
    fn answers_to_unproven_sources_are_never_larger_than_the_request() {
        // A bare 20-byte request (what many standard clients send) and one with FINGERPRINT.
        let bare = encode(
            &StunMessageBuilder::new(BINDING, MessageClass::Request)
                .with_transaction_id(TransactionId::from([7u8; 12]))
                .build(),
        )
        .unwrap();
        let fp = encode(
            &StunMessageBuilder::new(BINDING, MessageClass::Request)
                .with_transaction_id(TransactionId::from([8u8; 12]))
                .with_attribute(Fingerprint::default())
                .build(),
        )
        .unwrap();
        assert_eq!((bare.len(), fp.len()), (20, 28));
        for from in ["203.0.113.7:40123", "[2001:db8::1]:9"] {
            let from: SocketAddr = from.parse().unwrap();
            for req in [&bare, &fp] {
                if let Some(a) = answer(req, from, Some(req.len())).unwrap() {
                    assert!(a.len() <= req.len(), "{} > {}", a.len(), req.len());
                }
                // Unbounded (a proven source), it is answered.
                assert!(answer(req, from, None).unwrap().is_some());
            }
        }
    }

    #[test]
    fn rfc5769_sample_response_is_read() {
        // RFC 5769 §2.2, IPv4 response (MESSAGE-INTEGRITY not checked: no credentials here).
        let sample: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        let (id, addr) = parse_response(&sample).unwrap();
        assert_eq!(id[..4], [0xb7, 0xe7, 0xa7, 0x01]);
        assert_eq!(addr, "192.0.2.1:32853".parse().unwrap());
    }

    #[test]
    fn quic_packets_and_junk_are_not_stun() {
        let (_, req) = binding_request().unwrap();
        // A QUIC long header (fixed bit set) with the cookie in the right place.
        let mut quic = req.clone();
        quic[0] = 0xc0;
        assert!(!is_stun(&quic));
        let mut short = req.clone();
        short[0] = 0x40;
        assert!(!is_stun(&short));
        // Length field that does not match, truncated, wrong cookie, empty.
        let mut bad_len = req.clone();
        bad_len[3] = bad_len[3].wrapping_add(4);
        assert!(!is_stun(&bad_len));
        assert!(!is_stun(&req[..req.len() - 4]));
        let mut cookie = req.clone();
        cookie[4] ^= 1;
        assert!(!is_stun(&cookie));
        assert!(!is_stun(&[]));
        assert!(matches!(
            parse_response(&req),
            Err(StunError::NotBinding) | Err(StunError::Malformed(_))
        ));
        assert_eq!(
            answer(&[0u8; 3], "127.0.0.1:1".parse().unwrap(), None),
            Err(StunError::NotStun)
        );
    }

    #[test]
    fn any_bytes_with_a_stun_header_never_panic() {
        let (_, req) = binding_request().unwrap();
        let mut rng_state = 0x1234_5678u32;
        for _ in 0..2000 {
            let mut m = req.clone();
            m.resize(HEADER_LEN + 32, 0);
            for b in &mut m[HEADER_LEN..] {
                rng_state ^= rng_state << 13;
                rng_state ^= rng_state >> 17;
                rng_state ^= rng_state << 5;
                *b = rng_state as u8;
            }
            m[2..4].copy_from_slice(&32u16.to_be_bytes());
            let _ = answer(&m, "127.0.0.1:1".parse().unwrap(), Some(m.len()));
            let _ = parse_response(&m);
        }
    }
}
