//! One agent driven by hand: who may answer what, the relay's rebind, the held move to a
//! direct path, and the pool's life.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pathagent::wire::{self, BindKey, Ticket, Token};
use pathagent::{
    Agent, Config, Event, Input, Mapping, PREDICT_AFTER, Path, Reason, SendPath, Transmit, Via,
};

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const TICKET: Ticket = Ticket {
    token: Token([1; 16]),
    key: BindKey([2; 32]),
};

fn drain(agent: &mut Agent) -> (Vec<Transmit>, Vec<Event>) {
    let t = std::iter::from_fn(|| agent.poll_transmit()).collect();
    let e = std::iter::from_fn(|| agent.poll_event()).collect();
    (t, e)
}

/// An agent on the relay, punching towards one peer candidate.
fn punching(cfg: Config, now: Instant) -> Agent {
    let mut a = Agent::new(cfg, now);
    a.set_relay(now, addr("198.51.100.1:7702"), TICKET, 10);
    a.set_remote_candidates(now, &[addr("198.51.100.12:40000")], Mapping::Unknown);
    a.start_punching(now);
    a
}

#[test]
fn only_the_address_asked_answers_a_probe() {
    let t0 = Instant::now();
    let mut a = punching(Config::default(), t0);
    let (sent, _) = drain(&mut a);
    let probe = sent
        .iter()
        .find(|t| t.to == addr("198.51.100.12:40000"))
        .expect("a probe to the candidate");
    let answer = wire::binding_answer(&probe.bytes, addr("198.51.100.11:5000"))
        .unwrap()
        .unwrap();
    // From elsewhere, or on another socket: not this agent's.
    let stranger = addr("203.0.113.5:40000");
    assert_eq!(
        a.handle_datagram(t0, stranger, Via::Main, &answer),
        Input::NotMine
    );
    let pool = Via::Pool(3);
    let peer = addr("198.51.100.12:40000");
    assert_eq!(a.handle_datagram(t0, peer, pool, &answer), Input::NotMine);
    assert!(matches!(a.path(), Path::Relay(_)));
    // From the address asked: the path is proven and taken.
    assert_eq!(
        a.handle_datagram(t0, peer, Via::Main, &answer),
        Input::Consumed
    );
    assert_eq!(
        a.path(),
        Path::Direct {
            to: peer,
            via: Via::Main
        }
    );
    assert_eq!(
        a.send_path(t0),
        SendPath::Direct {
            via: Via::Main,
            to: peer
        }
    );
}

#[test]
fn a_held_move_waits_for_release() {
    let t0 = Instant::now();
    let cfg = Config {
        hold_direct: true,
        ..Config::default()
    };
    let mut a = punching(cfg, t0);
    let (sent, _) = drain(&mut a);
    let peer = addr("198.51.100.12:40000");
    let probe = sent.iter().find(|t| t.to == peer).unwrap();
    let answer = wire::binding_answer(&probe.bytes, addr("198.51.100.11:5000"))
        .unwrap()
        .unwrap();
    a.handle_datagram(t0, peer, Via::Main, &answer);
    assert!(matches!(a.path(), Path::Relay(_)), "moved while held");
    a.release_direct(t0 + Duration::from_millis(5));
    let (_, events) = drain(&mut a);
    assert!(events.contains(&Event::PathChanged {
        from: Path::Relay(addr("198.51.100.1:7702")),
        to: Path::Direct {
            to: peer,
            via: Via::Main
        },
        reason: Reason::Released,
    }));
}

#[test]
fn relay_rebind_sends_fresh_binds_at_most_every_200_ms() {
    let t0 = Instant::now();
    let relay = addr("198.51.100.1:7702");
    let mut a = punching(Config::default(), t0);
    drain(&mut a);
    let counter = |t: &Transmit| match wire::parse_relay(&t.bytes) {
        Ok(wire::RelayFrame::Bind { counter, mac, .. }) => {
            assert!(wire::bind_proven(&TICKET, counter, &mac));
            Some(counter)
        }
        _ => None,
    };
    let rebind = wire::rebind_frame(TICKET.token);
    assert_eq!(
        a.handle_datagram(t0, relay, Via::Main, &rebind),
        Input::Consumed
    );
    let (sent, _) = drain(&mut a);
    let first: Vec<u64> = sent.iter().filter_map(counter).collect();
    assert_eq!(first.len(), 1, "{sent:?}");
    assert!(first[0] > 10, "the counter grows past the first bind's");
    // A second notice within 200 ms changes nothing; one after does.
    a.handle_datagram(t0 + Duration::from_millis(50), relay, Via::Main, &rebind);
    assert!(drain(&mut a).0.iter().filter_map(counter).next().is_none());
    a.handle_datagram(t0 + Duration::from_millis(250), relay, Via::Main, &rebind);
    let again: Vec<u64> = drain(&mut a).0.iter().filter_map(counter).collect();
    assert!(again.len() == 1 && again[0] > first[0], "{again:?}");
    // Frames with another token, or from another address, are not ours.
    let other = wire::rebind_frame(Token([9; 16]));
    assert_eq!(
        a.handle_datagram(t0, relay, Via::Main, &other),
        Input::NotMine
    );
    let elsewhere = addr("198.51.100.1:9999");
    assert_eq!(
        a.handle_datagram(t0, elsewhere, Via::Main, &rebind),
        Input::NotMine
    );
    let mut data = wire::data_header(TICKET.token).to_vec();
    data.extend_from_slice(b"\x40quic");
    assert_eq!(
        a.handle_datagram(t0, relay, Via::Main, &data),
        Input::PeerData {
            offset: wire::RELAY_HEADER_LEN
        }
    );
}

/// An agent whose NAT maps endpoint-dependently, punching towards an endpoint-independent
/// peer, with its birthday pool just opened: the agent, the pool's ids and what it sent.
fn with_pool(t0: Instant) -> (Agent, Vec<u32>, Vec<Transmit>) {
    let mut a = Agent::new(Config::default(), t0);
    // This side maps endpoint-dependently (two servers saw two ports).
    a.discover(
        t0,
        Some(addr("198.51.100.11:20000")),
        &[addr("198.51.100.1:7701")],
    );
    let (sent, _) = drain(&mut a);
    let ask = &sent[0];
    let answer = wire::binding_answer(&ask.bytes, addr("198.51.100.11:20001"))
        .unwrap()
        .unwrap();
    a.handle_datagram(t0, ask.to, Via::Main, &answer);
    let (_, events) = drain(&mut a);
    assert!(
        events.contains(&Event::Mapping(Mapping::EndpointDependent)),
        "{events:?}"
    );
    a.set_relay(t0, addr("198.51.100.1:7702"), TICKET, 1);
    a.set_remote_candidates(
        t0,
        &[addr("198.51.100.12:40000")],
        Mapping::EndpointIndependent,
    );
    a.start_punching(t0);
    drain(&mut a);
    a.handle_timeout(t0 + PREDICT_AFTER);
    let (sent, events) = drain(&mut a);
    let ids = events
        .iter()
        .find_map(|e| match e {
            Event::OpenPool { ids } => Some(ids.clone()),
            _ => None,
        })
        .expect("a pool opens");
    (a, ids, sent)
}

#[test]
fn the_pool_opens_for_an_endpoint_independent_peer_and_closes_when_punching_stops() {
    let t0 = Instant::now();
    let (mut a, ids, sent) = with_pool(t0);
    assert_eq!(ids.len(), pathagent::POOL_SIZE as usize);
    let from_pool = sent
        .iter()
        .filter(|t| matches!(t.via, Via::Pool(_)))
        .count();
    assert_eq!(
        from_pool,
        ids.len(),
        "each pool socket probes the peer once at first"
    );
    a.stop_punching(t0 + PREDICT_AFTER + Duration::from_millis(10));
    let (_, events) = drain(&mut a);
    let closed: usize = events
        .iter()
        .map(|e| match e {
            Event::ClosePool { ids } => ids.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(closed, ids.len());
}

/// The peer's spray reaching a pool socket means the peer's NAT now lets packets from that
/// port in: the socket probes back at once (not at its next scheduled send, up to a second
/// later: the lab measured 1.6-2.6 s to direct instead of ~1 s before this), and the answer
/// makes that socket the direct path.
#[test]
fn a_spray_probe_reaching_a_pool_socket_is_answered_and_probed_back_at_once() {
    let t0 = Instant::now();
    let (mut a, ids, _) = with_pool(t0);
    let hit = Via::Pool(ids[17]);
    let peer = addr("198.51.100.12:40000");
    let at = t0 + PREDICT_AFTER + Duration::from_millis(300);
    let spray = wire::binding_request([9; 12]).unwrap();
    assert_eq!(a.handle_datagram(at, peer, hit, &spray), Input::Consumed);
    let (sent, _) = drain(&mut a);
    let answer = sent
        .iter()
        .find(|t| t.via == hit && wire::stun_kind(&t.bytes) == wire::StunKind::BindingResponse)
        .expect("the spray probe is answered out of the socket it reached");
    assert_eq!(answer.to, peer);
    let probe = sent
        .iter()
        .find(|t| t.via == hit && wire::stun_kind(&t.bytes) == wire::StunKind::BindingRequest)
        .expect("the pool socket probes the peer back at once");
    assert_eq!(probe.to, peer);
    let back = wire::binding_answer(&probe.bytes, addr("198.51.100.11:31000"))
        .unwrap()
        .unwrap();
    a.handle_datagram(at, peer, hit, &back);
    assert_eq!(a.path(), Path::Direct { to: peer, via: hit });
}

/// A birthday pool on the other side probes from many ports at once, more than the agent
/// learns as candidates; the other side adopts whichever socket's probe was answered first.
/// Having answered a probe, the agent takes the peer's packets from that address (and probes it
/// to go direct itself); once, the host went direct out of a pool socket whose address the
/// controller had not kept, and its video was dropped for the rest of the session.
#[test]
fn packets_from_any_address_whose_probe_was_answered_reach_the_session() {
    let t0 = Instant::now();
    let mut a = punching(Config::default(), t0);
    drain(&mut a);
    let port = |i: u16| addr(&format!("198.51.100.12:{}", 30000 + i));
    for i in 0..40u16 {
        let probe = wire::binding_request([i as u8; 12]).unwrap();
        assert_eq!(
            a.handle_datagram(t0, port(i), Via::Main, &probe),
            Input::Consumed
        );
    }
    let (sent, _) = drain(&mut a);
    let answered: Vec<SocketAddr> = sent
        .iter()
        .filter(|t| wire::stun_kind(&t.bytes) == wire::StunKind::BindingResponse)
        .map(|t| t.to)
        .collect();
    assert_eq!(answered.len(), 40, "every probe answered");
    // QUIC from the 40th (far past the learnt candidates) is the peer's.
    let quic = [0x40u8, 1, 2, 3, 4, 5, 6, 7];
    assert_eq!(
        a.handle_datagram(t0, port(39), Via::Main, &quic),
        Input::PeerData { offset: 0 }
    );
    assert!(a.knows(port(39)));
    // A stranger on another IP is not.
    let stranger = addr("203.0.113.7:30039");
    assert_eq!(
        a.handle_datagram(t0, stranger, Via::Main, &quic),
        Input::NotMine
    );
}

/// Before the peer's candidates arrive (they travel over the relay, the peer's probes straight),
/// a probe the driver gives this agent is answered and its sender's packets are taken: the
/// peer adopts the path on that answer. Once the host went direct on an answer from the
/// controller's socket, whose agent did not know the host yet: every packet of the host was
/// dropped, its candidates too, for the whole session.
#[test]
fn a_probe_answered_before_the_peers_candidates_arrive_opens_its_path_both_ways() {
    let t0 = Instant::now();
    let mut a = Agent::new(Config::default(), t0);
    a.set_relay(t0, addr("198.51.100.1:7702"), TICKET, 10);
    a.start_punching(t0);
    drain(&mut a);
    let host = addr("198.51.100.11:5000");
    let probe = wire::binding_request([4; 12]).unwrap();
    assert_eq!(
        a.handle_datagram(t0, host, Via::Main, &probe),
        Input::Consumed
    );
    let (sent, _) = drain(&mut a);
    assert!(
        sent.iter()
            .any(|t| t.to == host && wire::stun_kind(&t.bytes) == wire::StunKind::BindingResponse),
        "answered"
    );
    let quic = [0x40u8, 9, 9, 9];
    assert_eq!(
        a.handle_datagram(t0, host, Via::Main, &quic),
        Input::PeerData { offset: 0 }
    );
}
