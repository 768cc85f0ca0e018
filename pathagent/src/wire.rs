//! What the agent puts on the wire and reads from it: STUN Binding messages (punch probes,
//! address discovery, path checks) and relay frames, in the agent's terms over `proto`'s
//! encoders (`proto::stun`, `proto::relay`), so what the agent sends is byte for byte what the
//! rest of quicdesk sends and parses.
//!
//! Everything here takes untrusted bytes and returns an error instead of panicking.

use std::net::SocketAddr;

pub use proto::relay::{
    BIND_LEN, BindKey, Frame as RelayFrame, HEADER_LEN as RELAY_HEADER_LEN, KEY_LEN, MAC_LEN,
    TOKEN_LEN, Ticket, Token, bind_frame, data_header, is_relay,
};
use proto::relay::{BOUND, FrameError, REBIND, header};
pub use proto::stun::{
    HEADER_LEN as STUN_HEADER_LEN, MAX_LEN as STUN_MAX_LEN, REQUEST_LEN, TxId, is_stun,
    transaction_id,
};

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
    match proto::stun::kind(datagram) {
        proto::stun::Kind::BindingRequest => StunKind::BindingRequest,
        proto::stun::Kind::BindingResponse => StunKind::BindingResponse,
        _ => StunKind::Other,
    }
}

/// A Binding request with transaction id `id`, padded to [`REQUEST_LEN`]: the punch probe,
/// path check and discovery request alike.
pub fn binding_request(id: TxId) -> Result<Vec<u8>, WireError> {
    proto::stun::binding_request_with(id).map_err(|_| WireError::Encode)
}

/// The answer to a Binding request from `from`: a success response carrying `from` as
/// XOR-MAPPED-ADDRESS, never longer than the request (its source is not proven), FINGERPRINT
/// left out when only that fits. `Ok(None)` when nothing can get an answer.
pub fn binding_answer(request: &[u8], from: SocketAddr) -> Result<Option<Vec<u8>>, WireError> {
    if stun_kind(request) != StunKind::BindingRequest {
        return Err(WireError::NotStun);
    }
    proto::stun::answer(request, from, Some(request.len())).map_err(|_| WireError::MalformedStun)
}

/// Reads a Binding success response: its transaction id and the reflexive address.
pub fn parse_binding_response(datagram: &[u8]) -> Result<(TxId, SocketAddr), WireError> {
    proto::stun::parse_response(datagram).map_err(|e| match e {
        proto::stun::StunError::NotStun => WireError::NotStun,
        proto::stun::StunError::Malformed(_) => WireError::MalformedStun,
        _ => WireError::NotBindingSuccess,
    })
}

/// Reads a relay frame.
pub fn parse_relay(datagram: &[u8]) -> Result<RelayFrame<'_>, WireError> {
    proto::relay::parse(datagram).map_err(|e| match e {
        FrameError::NotRelay => WireError::NotRelay,
        FrameError::Kind(k) => WireError::RelayKind(k),
        _ => WireError::RelayLength,
    })
}

/// The relay's answer to a proven bind.
pub fn bound_frame(token: Token) -> [u8; RELAY_HEADER_LEN] {
    header(BOUND, token)
}

/// The relay's request to bind again.
pub fn rebind_frame(token: Token) -> [u8; RELAY_HEADER_LEN] {
    header(REBIND, token)
}

/// Whether a bind's MAC proves `ticket` for `counter` (constant time).
pub fn bind_proven(ticket: &Ticket, counter: u64, mac: &[u8; MAC_LEN]) -> bool {
    proto::relay::verify_bind(ticket, counter, mac)
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
            key: BindKey([9; KEY_LEN]),
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
