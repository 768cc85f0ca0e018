//! Every datagram a peer's socket receives from anyone reaches a path agent
//! (`pathagent::Agent::handle_datagram`): STUN from strangers, forged relay frames, answers to
//! requests nobody sent, QUIC from unknown addresses, on the main socket or a pool socket. This
//! target drives one agent (relay, STUN discovery, remote candidates, punching) with a fuzzed
//! sequence of datagrams (raw, or mutations of what the agent itself sent and of answers to
//! it), time steps, sends, candidate changes and hold releases, and checks:
//!
//! - no panic, and no timer left due after `handle_timeout(now)` (no stall, no busy loop);
//! - every datagram it sends fits a STUN message (or a relay bind) and goes only to the relay,
//!   the STUN server, an IP of the peer's candidates (probes, predicted ports, spray, pool
//!   sockets), or back to an address that sent it a Binding request: nobody can make an agent
//!   send to a third party;
//! - an answer to a Binding request is never longer than a request from that address (no
//!   amplification towards an unproven source);
//! - a direct path is only ever to an IP of the peer's candidates.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use pathagent::wire::{self, BindKey, StunKind, Ticket, Token};
use pathagent::{Agent, Config, Event, Mapping, Path, Via};
use quicdesk_fuzz::{Reader, Writer, write_seeds_if_asked};

const RELAY: &str = "198.51.100.1:7702";
const STUN: &str = "198.51.100.1:7701";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Where datagrams come from: the servers, the peer's addresses, a stranger, IPv6.
fn froms() -> [SocketAddr; 7] {
    [
        addr(RELAY),
        addr(STUN),
        addr("198.51.100.12:40000"),
        addr("198.51.100.12:40007"),
        addr("10.2.0.2:5000"),
        addr("203.0.113.9:1"),
        addr("[2001:db8::9]:4242"),
    ]
}

/// Candidate lists the peer may announce (fuzz-picked).
fn candidate_sets() -> [Vec<SocketAddr>; 3] {
    [
        vec![addr("198.51.100.12:40000"), addr("10.2.0.2:5000")],
        vec![addr("198.51.100.12:41000")],
        vec![addr("192.0.2.44:6000"), addr("[2001:db8::12]:6000")],
    ]
}

const MAPPINGS: [Mapping; 3] = [
    Mapping::EndpointIndependent,
    Mapping::EndpointDependent,
    Mapping::Unknown,
];

struct Model {
    peer_ips: HashSet<IpAddr>,
    /// Longest Binding request seen from each address.
    requested: HashMap<SocketAddr, usize>,
}

fn ticket() -> Ticket {
    Ticket {
        token: Token([5; wire::TOKEN_LEN]),
        key: BindKey([6; wire::KEY_LEN]),
    }
}

fn run(data: &[u8]) {
    let mut r = Reader::new(data);
    let t0 = Instant::now();
    let mut now = t0;
    let mut agent = Agent::new(
        Config {
            seed: r.u64(),
            direct: true,
            hold_direct: r.bool(),
            birthday: true,
        },
        now,
    );
    let first = candidate_sets()[0].clone();
    let mut model = Model {
        peer_ips: first.iter().map(|a| a.ip()).collect(),
        requested: HashMap::new(),
    };
    agent.add_local_candidates(now, &[addr("10.1.0.2:5000")]);
    agent.discover(now, Some(addr("198.51.100.11:5000")), &[addr(STUN)]);
    agent.set_relay(now, addr(RELAY), ticket(), 1);
    agent.set_remote_candidates(now, &first, MAPPINGS[usize::from(r.u8()) % 3]);
    agent.start_punching(now);
    let mut sent: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
    let mut pools: Vec<u32> = Vec::new();
    check(&mut agent, &mut model, &mut sent, &mut pools, now);
    let froms = froms();
    let mut steps = 0;
    while !r.is_empty() && steps < 512 {
        steps += 1;
        match r.u8() % 8 {
            // A datagram: raw bytes from one of the senders, on the main or a pool socket.
            0 | 1 => {
                let from = froms[usize::from(r.u8()) % froms.len()];
                let via = pick_via(&mut r, &pools);
                let bytes = r.blob16().to_vec();
                deliver(&mut agent, &mut model, now, from, via, &bytes);
            }
            // Something the agent sent, mutated, coming back from where it went (or elsewhere);
            // a request is turned into its answer first if asked.
            2 | 3 if !sent.is_empty() => {
                let (to, mut b) = sent[usize::from(r.u16()) % sent.len()].clone();
                if r.bool() && wire::stun_kind(&b) == StunKind::BindingRequest {
                    let seen = froms[usize::from(r.u8()) % froms.len()];
                    if let Ok(Some(answer)) = wire::binding_answer(&b, seen) {
                        b = answer;
                    }
                }
                for _ in 0..r.u8() % 4 {
                    if !b.is_empty() {
                        let i = usize::from(r.u16()) % b.len();
                        b[i] ^= r.u8();
                    }
                }
                if r.bool() {
                    let keep = usize::from(r.u16()) % (b.len() + 1);
                    b.truncate(keep);
                }
                let from = if r.bool() {
                    to
                } else {
                    froms[usize::from(r.u8()) % froms.len()]
                };
                let via = pick_via(&mut r, &pools);
                deliver(&mut agent, &mut model, now, from, via, &b);
            }
            // A relay frame with our token (forged or not).
            4 => {
                let mut b = match r.u8() % 3 {
                    0 => wire::bound_frame(ticket().token).to_vec(),
                    1 => wire::rebind_frame(ticket().token).to_vec(),
                    _ => wire::data_header(ticket().token).to_vec(),
                };
                b.extend_from_slice(r.blob8());
                let from = froms[usize::from(r.u8()) % 2];
                deliver(&mut agent, &mut model, now, from, Via::Main, &b);
            }
            // Time passes.
            5 => now += Duration::from_millis(u64::from(r.u16()) % 8000),
            // The peer announces candidates again (its NAT moved it, or it lies).
            6 => {
                let sets = candidate_sets();
                let set = &sets[usize::from(r.u8()) % sets.len()];
                model.peer_ips.extend(set.iter().map(|a| a.ip()));
                agent.set_remote_candidates(now, set, MAPPINGS[usize::from(r.u8()) % 3]);
            }
            // The session's own packets, the handshake's end, punching off and on, a failed pool.
            _ => match r.u8() % 5 {
                0 => {
                    let _ = agent.send_path(now);
                }
                1 => agent.release_direct(now),
                2 => agent.stop_punching(now),
                3 => agent.start_punching(now),
                _ => agent.pool_unavailable(now, &pools),
            },
        }
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        check(&mut agent, &mut model, &mut sent, &mut pools, now);
    }
}

fn pick_via(r: &mut Reader<'_>, pools: &[u32]) -> Via {
    match r.u8() % 4 {
        0 if !pools.is_empty() => Via::Pool(pools[usize::from(r.u8()) % pools.len()]),
        1 => Via::Pool(u32::from(r.u8())),
        _ => Via::Main,
    }
}

fn deliver(
    agent: &mut Agent,
    model: &mut Model,
    now: Instant,
    from: SocketAddr,
    via: Via,
    bytes: &[u8],
) {
    if wire::stun_kind(bytes) == StunKind::BindingRequest {
        let longest = model.requested.entry(from).or_default();
        *longest = (*longest).max(bytes.len());
    }
    let _ = agent.handle_datagram(now, from, via, bytes);
}

fn check(
    agent: &mut Agent,
    model: &mut Model,
    sent: &mut Vec<(SocketAddr, Vec<u8>)>,
    pools: &mut Vec<u32>,
    now: Instant,
) {
    let (relay, stun) = (addr(RELAY), addr(STUN));
    while let Some(t) = agent.poll_transmit() {
        assert!(t.bytes.len() <= wire::STUN_MAX_LEN, "{} bytes", t.bytes.len());
        let answer = wire::stun_kind(&t.bytes) == StunKind::BindingResponse;
        if answer {
            let asked = model.requested.get(&t.to);
            assert!(asked.is_some(), "an answer to {} that asked nothing", t.to);
            assert!(
                asked.is_some_and(|&n| t.bytes.len() <= n),
                "an answer of {} bytes to {} is longer than its request",
                t.bytes.len(),
                t.to
            );
        } else {
            assert!(
                t.to == relay || t.to == stun || model.peer_ips.contains(&t.to.ip()),
                "sent to a third party: {}",
                t.to
            );
        }
        if sent.len() < 64 {
            sent.push((t.to, t.bytes));
        } else {
            let i = t.bytes.len() % sent.len();
            sent[i] = (t.to, t.bytes);
        }
    }
    while let Some(e) = agent.poll_event() {
        match e {
            Event::OpenPool { ids } => pools.extend(ids.into_iter().take(4)),
            Event::ClosePool { ids } => pools.retain(|p| !ids.contains(p)),
            _ => {}
        }
    }
    if let Path::Direct { to, .. } = agent.path() {
        assert!(model.peer_ips.contains(&to.ip()), "direct to a stranger: {to}");
    }
    if agent.poll_timeout().is_some_and(|t| t <= now) {
        agent.handle_timeout(now);
        assert!(agent.poll_timeout().is_none_or(|t| t > now), "a timer stays due");
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    // Time passing through a punch round, with sends.
    let mut w = Writer::new();
    w.u64(7).u8(0).u8(1);
    for _ in 0..20 {
        w.u8(5).u16(300).u8(7).u8(0);
    }
    out.push(w.0);
    // The agent's own requests answered by where they went, then candidates changing.
    let mut w = Writer::new();
    w.u64(9).u8(1).u8(0);
    for i in 0..16u16 {
        w.u8(2).u16(i).u8(1).u8(2).u8(0).u8(0).u8(1).u8(2);
        w.u8(5).u16(120);
    }
    w.u8(6).u8(1).u8(1).u8(5).u16(2000).u8(7).u8(1);
    out.push(w.0);
    // Relay frames and a stranger's datagram.
    let mut w = Writer::new();
    w.u64(3).u8(0).u8(2);
    w.u8(4).u8(0).u8(0).u8(0).u8(4).u8(2).u8(4).u8(0);
    w.u8(0).u8(5).u8(2).u16(4).u8(0x40).u8(1).u8(2).u8(3);
    out.push(w.0);
    out
}

fuzz_target!(
    init: write_seeds_if_asked("path_agent", seeds),
    |data: &[u8]| run(data)
);
