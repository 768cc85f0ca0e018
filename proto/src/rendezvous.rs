//! Messages between peers and the rendezvous server, carried in [`crate::wire`] frames.
//!
//! A peer opens one bidirectional stream per request. The first message names the request:
//! - `Register`: a host asks for its code; the server assigns one to the host's key (the same one
//!   every time while the key is known) and the stream then stays open while the server pushes
//!   `ConnectRequest`s down it.
//! - `Resolve`: a controller asks for a host; the server answers once and closes.
//!
//! A look-up of a code that is unknown, forgotten or offline gets the same answer
//! ([`Refusal::Unavailable`]), so looking codes up tells a stranger nothing about which exist.

use std::net::{IpAddr, SocketAddr};

use certs::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::code::AccessCode;
use crate::relay::RelayOffer;

/// ALPN of the peer ↔ rendezvous protocol.
pub const ALPN: &[u8] = b"quicdesk-rv/2";
/// Largest message either side accepts.
pub const MAX_MSG_LEN: usize = 16 * 1024;
/// Most candidate addresses a peer may announce or be given.
pub const MAX_CANDIDATES: usize = 16;

/// A peer's candidate list: its reflexive address (if known) first, then its LAN addresses
/// that pass [`sane_candidates`], without repeats and at most [`MAX_CANDIDATES`].
pub fn candidates(observed: Option<SocketAddr>, lan: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut all: Vec<SocketAddr> = observed.into_iter().collect();
    all.extend_from_slice(lan);
    sane_candidates(&all, observed, &[])
}

/// The addresses of `addrs` a peer may be asked to send to, whoever supplied them: no port 0,
/// no unspecified, multicast, broadcast or link-local address, none of the receiver's `own`
/// addresses, and loopback only when the receiver itself is seen on loopback (`seen_as`: a
/// deployment on one machine). IPv4-mapped addresses are unmapped; at most
/// [`MAX_CANDIDATES`], without repeats.
pub fn sane_candidates(
    addrs: &[SocketAddr],
    seen_as: Option<SocketAddr>,
    own: &[SocketAddr],
) -> Vec<SocketAddr> {
    let local_only = seen_as.is_some_and(|a| a.ip().to_canonical().is_loopback());
    let own: Vec<SocketAddr> = own.iter().map(|a| canonical(*a)).collect();
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in addrs.iter().map(|a| canonical(*a)) {
        let ip = a.ip();
        let link_local = match ip {
            IpAddr::V4(v4) => v4.is_link_local(),
            IpAddr::V6(v6) => v6.is_unicast_link_local(),
        };
        let ok = a.port() != 0
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && ip != IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
            && !link_local
            && (local_only || !ip.is_loopback())
            && !own.contains(&a);
        if ok && !out.contains(&a) && out.len() < MAX_CANDIDATES {
            out.push(a);
        }
    }
    out
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// From a peer to the rendezvous. Not `non_exhaustive`: the server answers every request, and a
/// new one must not compile until it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientMsg {
    /// A host asks for the code of the key it connected with.
    Register { lan_addrs: Vec<SocketAddr> },
    /// A controller asks how to reach `code`. With `relay_only` the host is given no
    /// candidates to punch towards, so the session stays on the relay.
    Resolve {
        code: AccessCode,
        lan_addrs: Vec<SocketAddr>,
        relay_only: bool,
    },
    /// A peer presents an enrollment token (from its invite) for the key it connected with;
    /// on a rendezvous that admits enrolled keys only, an enrolled key may register (and, if
    /// it is closed to strangers, look codes up). Answered `Enrolled` or `Refused`.
    Enroll { token: String },
    /// A registered host says what it runs and how its NAT maps ports (once it knows, after
    /// its STUN discovery), for the operator's console. Answered `Noted`.
    Report {
        version: String,
        mapping: crate::session::Mapping,
    },
}

/// Longest version string a host may report.
pub const MAX_VERSION_LEN: usize = 32;

/// From the rendezvous to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerMsg {
    /// Registration accepted: the host's code; `observed` is the host's address as the server
    /// sees it; `stun_port` the server's STUN responder (same IP), if it runs one.
    Registered {
        code: AccessCode,
        observed: SocketAddr,
        stun_port: Option<u16>,
    },
    /// How to reach a host: its key, the relay to meet it on, and its addresses only when
    /// there is no relay (otherwise the peers swap them after the password proof).
    Resolved {
        host: Fingerprint,
        candidates: Vec<SocketAddr>,
        observed: SocketAddr,
        stun_port: Option<u16>,
        relay: Option<RelayOffer>,
    },
    /// Pushed to a host: a controller with this key, seen at these addresses, wants to connect;
    /// `relay` is the host's side of the session's relay. `source` names the controller's
    /// source prefix without revealing it (the same prefix always gives the same tag from one
    /// rendezvous), so the host can limit password attempts per source on relayed sessions too.
    ConnectRequest {
        controller: Fingerprint,
        candidates: Vec<SocketAddr>,
        relay: Option<RelayOffer>,
        source: SourceTag,
    },
    /// The request was refused.
    Refused { reason: Refusal, message: String },
    /// The key is enrolled (under the operator's account that issued the token).
    Enrolled,
    /// A report was taken (or ignored: no registration of this key).
    Noted,
}

/// An opaque name of a source prefix (see [`ServerMsg::ConnectRequest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SourceTag(pub [u8; 16]);

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// No host with this code can be reached now (unknown, forgotten or offline: a look-up does
    /// not say which).
    Unavailable,
    /// The server cannot take this request now (e.g. its relay is full); try again later.
    Busy,
    /// The request did not make sense.
    BadRequest,
    /// Too many requests from this key or address; try again later.
    RateLimited,
    /// This rendezvous admits enrolled keys only (or the enrollment token was not good).
    NotEnrolled,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::Unavailable => "no host with this code is reachable now",
            Refusal::Busy => "the server is busy",
            Refusal::BadRequest => "bad request",
            Refusal::RateLimited => "too many requests",
            Refusal::NotEnrolled => "not enrolled on this rendezvous",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn candidates_a_hostile_peer_supplies_are_filtered() {
        let public = Some(a("198.51.100.7:4000"));
        let own = [a("10.0.0.5:5000")];
        let given = [
            a("127.0.0.1:22"),
            a("[::1]:22"),
            a("0.0.0.0:80"),
            a("[::]:80"),
            a("224.0.0.1:5353"),
            a("255.255.255.255:9"),
            a("169.254.1.1:9"),
            a("[fe80::1]:9"),
            a("192.0.2.1:0"),
            a("10.0.0.5:5000"),
            a("[::ffff:10.0.0.5]:5000"),
            a("192.168.1.20:7000"),
            a("[::ffff:203.0.113.9]:7000"),
            a("192.168.1.20:7000"),
        ];
        assert_eq!(
            sane_candidates(&given, public, &own),
            vec![a("192.168.1.20:7000"), a("203.0.113.9:7000")]
        );
        // A deployment on one machine keeps its loopback addresses.
        let local = Some(a("127.0.0.1:4000"));
        assert_eq!(
            sane_candidates(&[a("127.0.0.1:22"), a("0.0.0.0:1")], local, &[]),
            vec![a("127.0.0.1:22")]
        );
        let many: Vec<SocketAddr> = (1..100).map(|p| a(&format!("192.0.2.1:{p}"))).collect();
        assert_eq!(sane_candidates(&many, public, &[]).len(), MAX_CANDIDATES);
        // The reflexive address comes first, LAN addresses after, filtered the same way.
        assert_eq!(
            candidates(public, &[a("127.0.0.1:1"), a("10.1.1.1:2")]),
            vec![a("198.51.100.7:4000"), a("10.1.1.1:2")]
        );
    }
}
