//! `handle_datagram` over arbitrary bytes, from anyone, on any socket, at any time: never a
//! panic, never a datagram larger than a STUN message, never a stall. (A fuzz-friendly shape:
//! the same loop can run under cargo-fuzz with the bytes from the fuzzer.)

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pathagent::wire::{self, BindKey, Ticket, Token};
use pathagent::{Agent, Config, Mapping, Via};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RELAY: &str = "198.51.100.1:7702";
const STUN: &str = "198.51.100.1:7701";
const PEER: &str = "198.51.100.12:40000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Feeds one agent `rounds` datagrams built by `rng` (random bytes, and mutations of what the
/// agent itself sent and what answers look like), checking every output.
fn feed(seed: u64, rounds: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let t0 = Instant::now();
    let mut now = t0;
    let ticket = Ticket {
        token: Token([5; 16]),
        key: BindKey([6; 32]),
    };
    let mut agent = Agent::new(
        Config {
            seed,
            ..Config::default()
        },
        now,
    );
    agent.discover(now, Some(addr("198.51.100.11:5000")), &[addr(STUN)]);
    agent.set_relay(now, addr(RELAY), ticket, 1);
    agent.set_remote_candidates(
        now,
        &[addr(PEER), addr("10.2.0.2:5000")],
        Mapping::EndpointDependent,
    );
    agent.start_punching(now);
    let froms = [
        addr(RELAY),
        addr(STUN),
        addr(PEER),
        addr("198.51.100.12:40001"),
        addr("203.0.113.9:1"),
    ];
    let mut sent: Vec<Vec<u8>> = Vec::new();
    let mut pools: Vec<u32> = Vec::new();
    for _ in 0..rounds {
        let bytes: Vec<u8> = match rng.random_range(0..6) {
            0 => {
                let len = rng.random_range(0..600);
                (0..len).map(|_| rng.random()).collect()
            }
            // Something the agent sent, mutated (requests, binds), or answered as if by a server.
            1 | 2 if !sent.is_empty() => {
                let mut b = sent[rng.random_range(0..sent.len())].clone();
                if wire::stun_kind(&b) == wire::StunKind::BindingRequest && rng.random_bool(0.5) {
                    b = wire::binding_answer(&b, froms[rng.random_range(0..froms.len())])
                        .ok()
                        .flatten()
                        .unwrap_or(b);
                }
                for _ in 0..rng.random_range(0..3) {
                    if !b.is_empty() {
                        let i = rng.random_range(0..b.len());
                        b[i] ^= rng.random::<u8>();
                    }
                }
                if rng.random_bool(0.2) {
                    b.truncate(rng.random_range(0..=b.len()));
                }
                b
            }
            3 => {
                let mut b = match rng.random_range(0..3) {
                    0 => wire::bound_frame(ticket.token).to_vec(),
                    1 => wire::rebind_frame(ticket.token).to_vec(),
                    _ => wire::data_header(ticket.token).to_vec(),
                };
                b.extend((0..rng.random_range(0..40)).map(|_| rng.random::<u8>()));
                b
            }
            4 => {
                let mut id = [0u8; 12];
                rng.fill(&mut id);
                wire::binding_request(id).unwrap()
            }
            _ => {
                let mut b = vec![0x40 | rng.random::<u8>() & 0x3f];
                b.extend((0..rng.random_range(0..1300)).map(|_| rng.random::<u8>()));
                b
            }
        };
        let from = froms[rng.random_range(0..froms.len())];
        let via = match (pools.is_empty(), rng.random_range(0..4)) {
            (false, 0) => Via::Pool(pools[rng.random_range(0..pools.len())]),
            (_, 1) => Via::Pool(rng.random()),
            _ => Via::Main,
        };
        if rng.random_bool(0.3) {
            now += Duration::from_millis(rng.random_range(0..400));
        }
        let _ = agent.handle_datagram(now, from, via, &bytes);
        if agent.poll_timeout().is_some_and(|t| t <= now) {
            agent.handle_timeout(now);
        }
        if rng.random_bool(0.05) {
            let _ = agent.send_path(now);
        }
        while let Some(t) = agent.poll_transmit() {
            assert!(
                t.bytes.len() <= wire::STUN_MAX_LEN,
                "{} bytes",
                t.bytes.len()
            );
            if sent.len() < 64 {
                sent.push(t.bytes);
            } else {
                let i = rng.random_range(0..sent.len());
                sent[i] = t.bytes;
            }
        }
        while let Some(e) = agent.poll_event() {
            if let pathagent::Event::OpenPool { ids } = e {
                pools.extend(ids.into_iter().take(4));
            }
        }
        // The next timeout is never in the past after handling it.
        if let Some(t) = agent.poll_timeout()
            && t <= now
        {
            agent.handle_timeout(now);
            assert!(
                agent.poll_timeout().is_none_or(|t| t > now),
                "a timer stays due"
            );
        }
    }
}

#[test]
fn arbitrary_datagrams_never_panic_or_stall() {
    for seed in 0..8 {
        feed(seed, 2500);
    }
}
