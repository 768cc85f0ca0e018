//! Messages between peers and the rendezvous server, carried in [`crate::wire`] frames.
//!
//! A peer opens one bidirectional stream per request. The first message names the request:
//! - `Register`: a host binds its code to its key; the stream then stays open and the server
//!   pushes `ConnectRequest`s down it.
//! - `Resolve`: a controller asks for a host; the server answers once and closes.

use std::net::SocketAddr;

use certs::Fingerprint;
use serde::{Deserialize, Serialize};

use crate::code::AccessCode;
use crate::relay::RelayOffer;

/// ALPN of the peer ↔ rendezvous protocol.
pub const ALPN: &[u8] = b"quicdesk-rv/1";
/// Largest message either side accepts.
pub const MAX_MSG_LEN: usize = 16 * 1024;
/// Most candidate addresses a peer may announce or be given.
pub const MAX_CANDIDATES: usize = 16;

/// A peer's candidate list: its reflexive address (if known) first, then its LAN addresses,
/// without repeats and at most [`MAX_CANDIDATES`].
pub fn candidates(observed: Option<SocketAddr>, lan: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = observed.into_iter().collect();
    for a in lan {
        if !out.contains(a) && out.len() < MAX_CANDIDATES {
            out.push(*a);
        }
    }
    out
}

/// From a peer to the rendezvous.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientMsg {
    /// A host binds `code` to the key it connected with.
    Register {
        code: AccessCode,
        lan_addrs: Vec<SocketAddr>,
    },
    /// A controller asks how to reach `code`. With `relay_only` the host is given no
    /// candidates to punch towards, so the session stays on the relay.
    Resolve {
        code: AccessCode,
        lan_addrs: Vec<SocketAddr>,
        relay_only: bool,
    },
}

/// From the rendezvous to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerMsg {
    /// Registration accepted; `observed` is the host's address as the server sees it;
    /// `stun_port` the server's STUN responder (same IP), if it runs one.
    Registered {
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
    /// `relay` is the host's side of the session's relay.
    ConnectRequest {
        controller: Fingerprint,
        candidates: Vec<SocketAddr>,
        relay: Option<RelayOffer>,
    },
    /// The request was refused.
    Refused { reason: Refusal, message: String },
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Refusal {
    /// The code is bound to another host key.
    CodeTaken,
    /// No host has registered this code (or it was forgotten).
    UnknownCode,
    /// The host is known but not connected now.
    HostOffline,
    /// The request did not make sense.
    BadRequest,
    /// Too many requests from this key or address; try again later.
    RateLimited,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::CodeTaken => "code is registered to another host key",
            Refusal::UnknownCode => "no host has this code",
            Refusal::HostOffline => "host is offline",
            Refusal::BadRequest => "bad request",
            Refusal::RateLimited => "too many requests",
        })
    }
}
