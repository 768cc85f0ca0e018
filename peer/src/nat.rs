//! What a peer knows of its own network before a path agent takes over: the LAN addresses it
//! can offer, the NAT mapping of its socket (discovered by an agent of its own), and the
//! conversions between the agent's [`pathagent::Mapping`] and the one on the wire.
//!
//! ```text
//!  socket ──QUIC──► rendezvous:P     sees A1 (reported as `observed`)
//!  socket ──STUN──► rendezvous:P+1   sees A2 (XOR-MAPPED-ADDRESS)
//!  A1 == A2 ⇒ endpoint-independent mapping: A1 works from anywhere the NAT's filter lets in
//!  A1 != A2 ⇒ endpoint-dependent ("symmetric"): each destination gets its own port
//! ```
//!
//! Candidates offered to the other peer: the reflexive address, then the LAN addresses of the
//! machine's interfaces with the socket's port (so two peers behind the same NAT, or on one
//! LAN, reach each other without hairpinning). Punching itself, prediction and birthday
//! punching are the agent's (`pathagent`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tracing::warn;

use crate::net::PeerSocket;

/// Most LAN addresses offered (the rendezvous accepts 16 candidates in all).
pub const MAX_LAN_CANDIDATES: usize = pathagent::MAX_LAN_CANDIDATES;

pub use proto::session::Mapping;

/// The wire's mapping for the agent's.
pub fn to_wire(m: pathagent::Mapping) -> Mapping {
    match m {
        pathagent::Mapping::EndpointIndependent => Mapping::EndpointIndependent,
        pathagent::Mapping::EndpointDependent => Mapping::EndpointDependent,
        pathagent::Mapping::Unknown => Mapping::Unknown,
    }
}

/// The agent's mapping for the wire's.
pub fn from_wire(m: Mapping) -> pathagent::Mapping {
    match m {
        Mapping::EndpointIndependent => pathagent::Mapping::EndpointIndependent,
        Mapping::EndpointDependent => pathagent::Mapping::EndpointDependent,
        Mapping::Unknown => pathagent::Mapping::Unknown,
    }
}

/// The STUN servers a peer asks: the rendezvous's STUN port, if it runs one.
pub fn stun_servers(rendezvous: SocketAddr, stun_port: Option<u16>) -> Vec<SocketAddr> {
    stun_port
        .map(|port| SocketAddr::new(rendezvous.ip(), port))
        .into_iter()
        .collect()
}

/// Finds out how this socket's NAT maps ports (for the host's status, between sessions): an
/// agent without a peer asks the rendezvous's STUN port and compares its answer with
/// `observed`. `Unknown` without a STUN port or an answer.
pub async fn discover(
    socket: &Arc<PeerSocket>,
    rendezvous: SocketAddr,
    observed: SocketAddr,
    stun_port: Option<u16>,
) -> Mapping {
    let servers = stun_servers(rendezvous, stun_port);
    if servers.is_empty() {
        return Mapping::Unknown;
    }
    let cfg = pathagent::Config {
        direct: false,
        seed: rand::random(),
        ..Default::default()
    };
    let route = socket.add_route(cfg, false);
    route.with(|agent, now| agent.discover(now, Some(observed), &servers));
    let mut view = route.view();
    let wait = pathagent::DISCOVERY_TIMEOUT + Duration::from_millis(500);
    match tokio::time::timeout(wait, view.wait_for(|v| v.local.is_some())).await {
        Ok(Ok(v)) => v.local.as_ref().map_or(Mapping::Unknown, |l| to_wire(l.1)),
        _ => Mapping::Unknown,
    }
}

/// The addresses of this machine's interfaces that a peer on the same network could reach this
/// socket at: every up, non-loopback, non-link-local interface address with the socket's port
/// when the socket is bound to the unspecified address; just the bound address otherwise.
/// Loopback addresses are offered only when bound to one (tests on one machine).
pub fn lan_candidates(local: SocketAddr) -> Vec<SocketAddr> {
    if !local.ip().is_unspecified() {
        return vec![local];
    }
    let interfaces = match if_addrs::get_if_addrs() {
        Ok(i) => i,
        Err(e) => {
            warn!("cannot list network interfaces: {e}");
            return Vec::new();
        }
    };
    lan_from(
        local,
        interfaces
            .iter()
            .filter(|i| !i.is_loopback() && !i.is_link_local())
            .map(if_addrs::Interface::ip),
    )
}

fn lan_from(local: SocketAddr, ips: impl Iterator<Item = IpAddr>) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for ip in ips {
        // An IPv4 socket cannot use IPv6 addresses and the other way round.
        if ip.is_ipv4() != local.is_ipv4() {
            continue;
        }
        let addr = SocketAddr::new(ip, local.port());
        if !out.contains(&addr) && out.len() < MAX_LAN_CANDIDATES {
            out.push(addr);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_convert_both_ways() {
        for m in [
            Mapping::EndpointIndependent,
            Mapping::EndpointDependent,
            Mapping::Unknown,
        ] {
            assert_eq!(to_wire(from_wire(m)), m);
        }
    }

    #[test]
    fn lan_candidates_keep_the_family_and_port_and_are_bounded() {
        let local: SocketAddr = "0.0.0.0:5000".parse().unwrap();
        let ips = [
            "10.1.0.2",
            "2001:db8::2",
            "192.168.1.9",
            "10.1.0.2",
            "172.16.0.1",
        ]
        .map(|s| s.parse::<IpAddr>().unwrap());
        assert_eq!(
            lan_from(local, ips.into_iter()),
            ["10.1.0.2:5000", "192.168.1.9:5000", "172.16.0.1:5000"]
                .map(|s| s.parse::<SocketAddr>().unwrap())
        );
        let many = (0..50u8).map(|i| IpAddr::from([10, 0, 0, i]));
        assert_eq!(lan_from(local, many).len(), MAX_LAN_CANDIDATES);
        // Bound to one address: that address only.
        let bound: SocketAddr = "127.0.0.1:7".parse().unwrap();
        assert_eq!(lan_candidates(bound), vec![bound]);
    }
}
