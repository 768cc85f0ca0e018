use super::*;
use proto::relay::header;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn data(token: Token, payload: &[u8]) -> Vec<u8> {
    [&data_header(token)[..], payload].concat()
}

fn owner(n: u8) -> Owner {
    Owner {
        key: Fingerprint::from_bytes([n; 32]),
        prefix: Prefix::of(std::net::IpAddr::from([192, 0, 2, n])),
    }
}

/// A bound or rebind notice back to `to`: a header only, no larger than what it answers.
fn notice(to: SocketAddr) -> Action {
    Action::Send {
        to,
        len: HEADER_LEN,
    }
}

/// Binds `ticket` from `from` with a fresh counter; returns the relay's action.
fn bind(r: &mut Relay, now: Instant, from: SocketAddr, ticket: &Ticket, counter: u64) -> Action {
    r.on_datagram(now, from, &mut bind_frame(ticket, counter))
}

#[test]
fn frames_are_told_apart_from_stun_and_quic() {
    let t = Ticket::random();
    let b = bind_frame(&t, 7);
    assert_eq!(b.len(), BIND_LEN);
    assert!(
        matches!(parse(&b), Ok(Frame::Bind { token, counter: 7, .. }) if token == t.token),
        "{:?}",
        parse(&b)
    );
    let d = data(t.token, b"xy");
    assert_eq!(
        parse(&d),
        Ok(Frame::Data {
            token: t.token,
            payload: b"xy"
        })
    );
    // QUIC (fixed bit set), STUN (00), empty, short and unknown frames.
    assert_eq!(parse(&[]), Err(FrameError::NotRelay));
    assert_eq!(parse(&[0xc3; 40]), Err(FrameError::NotRelay));
    assert_eq!(parse(&[0x43; 40]), Err(FrameError::NotRelay));
    assert_eq!(parse(&[0x00; 40]), Err(FrameError::NotRelay));
    assert_eq!(parse(&[0x80]), Err(FrameError::Short));
    assert_eq!(parse(&[0x80; 5]), Err(FrameError::Short));
    assert_eq!(parse(&[0x8f; 20]), Err(FrameError::Kind(0x8f)));
    assert_eq!(parse(&[0x81; 20]), Err(FrameError::Length(0x81)));
    assert_eq!(parse(&[0x82; 18]), Err(FrameError::Length(0x82)));
    assert!(format!("{t:?}").len() < 60, "a ticket is not logged whole");
    assert!(!format!("{t:?}").contains(&format!("{}", t.key.0[0])) || t.key.0[0] < 10);
}

#[test]
fn every_shape_of_datagram_is_handled_without_panic_or_answer() {
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let [a, _] = r.allocate(t0, owner(1)).unwrap();
    let from = addr("203.0.113.9:9");
    let mut shapes: Vec<Vec<u8>> = vec![vec![], vec![0x80], vec![0x81], vec![0x83; 17]];
    for len in [1, 16, 17, 18, 40, 41, 42, 1500] {
        for first in [0x80, 0x81, 0x82, 0x83, 0xbf, 0x00, 0xff] {
            let mut v = vec![0u8; len];
            v[0] = first;
            shapes.push(v);
        }
    }
    for mut s in shapes {
        let len = s.len();
        match r.on_datagram(t0, from, &mut s) {
            Action::Drop => {}
            Action::Send { len: out, .. } => assert!(out <= len, "answer larger than request"),
        }
    }
    // A bind with the right token but no key: refused, silently.
    let mut forged = bind_frame(&Ticket::random(), 1);
    forged[1..HEADER_LEN].copy_from_slice(&a.token.0);
    assert_eq!(r.on_datagram(t0, from, &mut forged), Action::Drop);
    assert!(r.counters().dropped_unproven >= 1);
}

#[test]
fn forwards_between_the_two_proven_sides_only_with_the_receivers_token() {
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let [a, b] = r.allocate(t0, owner(1)).unwrap();
    let (pa, pb) = (addr("192.0.2.1:1000"), addr("198.51.100.7:2000"));

    // A binds and sends before B bound: held, then released to B with B's token when B binds.
    assert_eq!(bind(&mut r, t0, pa, &a, 1), notice(pa));
    let mut first = data(a.token, b"hello");
    assert_eq!(r.on_datagram(t0, pa, &mut first), Action::Drop);
    let mut bf = bind_frame(&b, 1);
    assert_eq!(r.on_datagram(t0, pb, &mut bf), notice(pb));
    assert_eq!(
        parse(&bf[..HEADER_LEN]),
        Ok(Frame::Bound { token: b.token })
    );
    assert_eq!(r.take_queued(), vec![(pb, data(b.token, b"hello"))]);

    // Both ways now, each frame rewritten to carry the receiver's token.
    for (from, token, to, theirs, payload) in [
        (pa, a.token, pb, b.token, b"abc"),
        (pb, b.token, pa, a.token, b"xyz"),
    ] {
        let mut d = data(token, payload);
        let len = d.len();
        assert_eq!(r.on_datagram(t0, from, &mut d), Action::Send { to, len });
        assert_eq!(d, data(theirs, payload));
    }

    // A stranger's token goes nowhere and gets no answer.
    let mut d = data(Token::random(), b"spoof");
    assert_eq!(
        r.on_datagram(t0, addr("203.0.113.9:9"), &mut d),
        Action::Drop
    );
    assert_eq!(
        bind(&mut r, t0, addr("203.0.113.9:9"), &Ticket::random(), 5),
        Action::Drop
    );
    // Junk, and a bound sent to the relay.
    let mut junk = vec![0x42; 30];
    assert_eq!(r.on_datagram(t0, pa, &mut junk), Action::Drop);
    let mut bound = header(BOUND, a.token);
    assert_eq!(r.on_datagram(t0, pa, &mut bound), Action::Drop);

    let c = r.counters();
    assert_eq!(c.packets_forwarded, 3);
    assert_eq!(c.bytes_forwarded as usize, 3 * HEADER_LEN + 5 + 3 + 3);
    assert_eq!((c.dropped_unknown, c.dropped_malformed), (2, 2));
    assert_eq!(c.sessions_active, 1);
}

#[test]
fn only_a_proven_bind_moves_a_side_and_replays_are_refused() {
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let [a, b] = r.allocate(t0, owner(1)).unwrap();
    let (pa, pb, pb2, evil) = (
        addr("192.0.2.1:1"),
        addr("192.0.2.2:2"),
        addr("192.0.2.2:3"),
        addr("203.0.113.66:666"),
    );
    bind(&mut r, t0, pa, &a, 1);
    let recorded = bind_frame(&b, 10);
    r.on_datagram(t0, pb, &mut recorded.clone());

    // Data bearing B's token from elsewhere (a NAT rebinding, or an attacker who saw the
    // token) is not forwarded and does not move B: the sender is told to bind again, with no
    // more bytes than it sent, at most once per interval.
    let mut d = data(b.token, b"1");
    let len = d.len();
    assert_eq!(r.on_datagram(t0, evil, &mut d), notice(evil));
    assert!(HEADER_LEN <= len);
    assert_eq!(
        parse(&d[..HEADER_LEN]),
        Ok(Frame::Rebind { token: b.token })
    );
    assert_eq!(
        r.on_datagram(t0, evil, &mut data(b.token, b"1")),
        Action::Drop
    );
    // A's data still goes to B's proven address.
    let mut d = data(a.token, b"2");
    assert_eq!(
        r.on_datagram(t0, pa, &mut d),
        Action::Send {
            to: pb,
            len: d.len()
        }
    );
    // A recorded bind replayed from elsewhere is refused (its counter is spent)...
    assert_eq!(r.on_datagram(t0, evil, &mut recorded.clone()), Action::Drop);
    // ...as is an old one.
    assert_eq!(bind(&mut r, t0, evil, &b, 9), Action::Drop);
    let mut d = data(a.token, b"3");
    assert!(matches!(r.on_datagram(t0, pa, &mut d), Action::Send { to, .. } if to == pb));

    // B's NAT really moved it: B binds from the new port with a fresh counter, and A's data
    // follows.
    assert_eq!(bind(&mut r, t0, pb2, &b, 11), notice(pb2));
    let mut d = data(a.token, b"4");
    assert!(matches!(r.on_datagram(t0, pa, &mut d), Action::Send { to, .. } if to == pb2));
}

#[test]
fn nothing_is_flushed_to_an_unproven_address() {
    let t0 = Instant::now();
    let mut r = Relay::new(Limits::default(), t0);
    let [a, b] = r.allocate(t0, owner(1)).unwrap();
    let pa = addr("192.0.2.1:1");
    bind(&mut r, t0, pa, &a, 1);
    r.on_datagram(t0, pa, &mut data(a.token, b"held"));
    // A bind with B's token and a wrong MAC: no flush, no answer.
    let mut forged = bind_frame(&b, 2);
    forged[BIND_LEN - 1] ^= 1;
    assert_eq!(
        r.on_datagram(t0, addr("203.0.113.1:1"), &mut forged),
        Action::Drop
    );
    assert!(r.take_queued().is_empty());
}

#[test]
fn bandwidth_limits_session_caps_and_timeouts() {
    let t0 = Instant::now();
    let limits = Limits {
        session_bytes_per_sec: 100_000,
        total_bytes_per_sec: 1 << 30,
        idle: Duration::from_secs(5),
        max_sessions: 3,
        max_sessions_per_key: 2,
        max_sessions_per_prefix: 2,
        unbound_ttl: Duration::from_secs(3),
    };
    let mut r = Relay::new(limits, t0);
    let [a, b] = r.allocate(t0, owner(1)).unwrap();
    r.allocate(t0, owner(1)).unwrap();
    assert_eq!(r.allocate(t0, owner(1)), Err(AllocError::KeyCap));
    // Another key from the same prefix is capped by the prefix.
    let same_prefix = Owner {
        key: Fingerprint::from_bytes([9; 32]),
        ..owner(1)
    };
    assert_eq!(r.allocate(t0, same_prefix), Err(AllocError::PrefixCap));
    r.allocate(t0, owner(2)).unwrap();
    assert_eq!(r.allocate(t0, owner(3)), Err(AllocError::Full));
    assert_eq!(r.counters().sessions_refused, 3);
    let (pa, pb) = (addr("192.0.2.1:1"), addr("192.0.2.2:2"));
    bind(&mut r, t0, pa, &a, 1);
    bind(&mut r, t0, pb, &b, 1);

    // The burst (64 KiB) passes, then a second's worth of rate refills.
    let payload = vec![0u8; 1000 - HEADER_LEN];
    let forwarded_of_200 = |r: &mut Relay, t, from, token| {
        (0..200)
            .filter(|_| {
                matches!(
                    r.on_datagram(t, from, &mut data(token, &payload)),
                    Action::Send { .. }
                )
            })
            .count()
    };
    assert_eq!(forwarded_of_200(&mut r, t0, pa, a.token), 65);
    let t1 = t0 + Duration::from_secs(1);
    assert_eq!(forwarded_of_200(&mut r, t1, pb, b.token), 65);
    assert_eq!(r.counters().dropped_limited, 2 * (200 - 65));

    // The two sessions nobody bound close after the unbound ttl; the bound one lives on.
    assert_eq!(r.sweep(t0 + Duration::from_millis(2900)), 0);
    assert_eq!(r.sweep(t0 + Duration::from_millis(3100)), 2);
    assert_eq!(r.counters().sessions_unbound, 2);
    // Then the busy one idles out and its tokens stop working.
    assert_eq!(r.sweep(t1 + Duration::from_secs(6)), 1);
    assert_eq!(
        r.on_datagram(t1 + Duration::from_secs(6), pa, &mut data(a.token, b"late")),
        Action::Drop
    );
    let c = r.counters();
    assert_eq!((c.sessions_active, c.sessions_expired), (0, 3));
    // Caps are given back with the sessions.
    r.allocate(t1, owner(1)).unwrap();
    r.allocate(t1, owner(1)).unwrap();
}
