//! What the simulated drivers tell each other over the session (the candidates control
//! message), and what the real lab found.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pathagent::Mapping;

use crate::sim::nat::Kind;

fn mapping_byte(m: Mapping) -> u8 {
    match m {
        Mapping::EndpointIndependent => 1,
        Mapping::EndpointDependent => 2,
        Mapping::Unknown => 0,
    }
}

/// A control message: `0x42 | seq | mapping | n | n × (IPv4, port)`.
pub fn encode_candidates(seq: u8, addrs: &[SocketAddr], mapping: Mapping) -> Vec<u8> {
    let mut out = vec![0x42, seq, mapping_byte(mapping), 0];
    for a in addrs {
        if let IpAddr::V4(v4) = a.ip() {
            out.extend_from_slice(&v4.octets());
            out.extend_from_slice(&a.port().to_be_bytes());
            out[3] += 1;
        }
    }
    out
}

pub fn decode_candidates(b: &[u8]) -> Option<(u8, Vec<SocketAddr>, Mapping)> {
    let (&[_, seq, m, n], rest) = b.split_first_chunk::<4>()?;
    let mapping = match m {
        1 => Mapping::EndpointIndependent,
        2 => Mapping::EndpointDependent,
        _ => Mapping::Unknown,
    };
    let addrs = rest
        .chunks_exact(6)
        .take(usize::from(n))
        .map(|c| {
            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([c[4], c[5]]))
        })
        .collect();
    Some((seq, addrs, mapping))
}

/// Whether the real lab (README's matrix) ends the pair (host, controller) on a direct path.
pub fn lab_expects_direct(host: Kind, ctl: Kind) -> bool {
    let hard = |k: Kind| matches!(k, Kind::Symmetric | Kind::SymmetricSeq);
    !(host == Kind::Blocked || ctl == Kind::Blocked || (hard(host) && hard(ctl)))
}
