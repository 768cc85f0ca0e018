//! The rendezvous as an attacker on the internet sees it: raw UDP sockets and a raw QUIC client
//! that speaks the protocol's frames by hand, doing what a well-behaved peer never does.
//!
//! Each test names the class of issue #11 it guards (liveness, address leaks and squatting,
//! pre-authentication resources, relay and STUN reflection). `cargo xtask attack` runs them
//! with their measurements printed.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use certs::Identity;
use proto::rendezvous::{ALPN, ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg};
use proto::{AccessCode, quic, stun, wire};
use rendezvous::relay::{self, Limits, Ticket};
use rendezvous::server::{self, Server};

mod common;
use common::rss_kib;

struct Running {
    addr: SocketAddr,
    stun: Option<SocketAddr>,
    relay: Option<SocketAddr>,
    fingerprint: certs::Fingerprint,
    counters: Option<server::RelayCounters>,
    stun_counters: std::sync::Arc<rendezvous::responder::Counters>,
    restarts: std::sync::Arc<std::sync::atomic::AtomicU64>,
    closer: server::Closer,
    _dir: tempfile::TempDir,
}

fn start(limits: Limits) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let ip: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = server::Config::new(ip, dir.path().to_path_buf());
    cfg.stun_listen = Some(ip);
    cfg.relay = Some(server::RelayConfig { listen: ip, limits });
    let server = Server::bind(&cfg).unwrap();
    let r = Running {
        addr: server.local_addr().unwrap(),
        stun: server.stun_addr(),
        relay: server.relay_addr(),
        fingerprint: server.fingerprint(),
        counters: server.relay_counters(),
        stun_counters: server.stun_counters(),
        restarts: server.service_restarts(),
        closer: server.closer(),
        _dir: dir,
    };
    tokio::spawn(server.run());
    r
}

/// A hand-driven QUIC client: its own key, the server's key pinned, frames written by hand.
struct Raw {
    _endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

async fn raw_from(rv: &Running, source: &str) -> Raw {
    let id = Identity::ephemeral().unwrap();
    let cfg = quic::client_config(&id, rv.fingerprint, ALPN, quic::Role::RendezvousClient).unwrap();
    let mut endpoint = quinn::Endpoint::client(format!("{source}:0").parse().unwrap()).unwrap();
    endpoint.set_default_client_config(cfg);
    let conn = endpoint
        .connect(rv.addr, "quicdesk.invalid")
        .unwrap()
        .await
        .expect("the handshake completes");
    Raw {
        _endpoint: endpoint,
        conn,
    }
}

async fn raw(rv: &Running) -> Raw {
    raw_from(rv, "127.0.0.1").await
}

impl Raw {
    /// Sends one request on a new stream; returns the first answer and the stream.
    async fn ask(&self, msg: &ClientMsg) -> (ServerMsg, quinn::SendStream, quinn::RecvStream) {
        let (mut send, mut recv) = self.conn.open_bi().await.unwrap();
        send.write_all(&wire::encode(msg, MAX_MSG_LEN).unwrap())
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            wire::read_msg::<ServerMsg, _>(&mut recv, MAX_MSG_LEN),
        )
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
        (answer, send, recv)
    }

    async fn register(&self) -> (AccessCode, quinn::SendStream, quinn::RecvStream) {
        match self
            .ask(&ClientMsg::Register {
                lan_addrs: Vec::new(),
            })
            .await
        {
            (ServerMsg::Registered { code, .. }, s, r) => (code, s, r),
            (other, ..) => panic!("registration refused: {other:?}"),
        }
    }

    async fn resolve(&self, code: AccessCode) -> ServerMsg {
        self.ask(&ClientMsg::Resolve {
            code,
            lan_addrs: vec!["127.0.0.1:9".parse().unwrap()],
            relay_only: false,
        })
        .await
        .0
    }
}

/// Sends `datagram` from `socket` to `to`; returns the bytes of every answer within `wait`.
fn answers(socket: &UdpSocket, to: SocketAddr, datagram: &[u8], wait: Duration) -> Vec<usize> {
    socket.set_read_timeout(Some(wait)).unwrap();
    socket.send_to(datagram, to).unwrap();
    let mut buf = vec![0u8; 65536];
    let mut got = Vec::new();
    while let Ok((n, _)) = socket.recv_from(&mut buf) {
        got.push(n);
    }
    got
}

/// A registered host and a controller's look-up: both relay tickets.
async fn relayed_session(rv: &Running) -> (Raw, Ticket, Ticket) {
    let host = raw(rv).await;
    let (code, _send, mut pushes) = host.register().await;
    let controller = raw(rv).await;
    let ServerMsg::Resolved {
        relay: Some(c),
        candidates,
        ..
    } = controller.resolve(code).await
    else {
        panic!("no relay offered");
    };
    assert!(candidates.is_empty(), "a look-up revealed addresses");
    let push = wire::read_msg::<ServerMsg, _>(&mut pushes, MAX_MSG_LEN)
        .await
        .unwrap()
        .unwrap();
    let ServerMsg::ConnectRequest {
        relay: Some(h),
        candidates,
        ..
    } = push
    else {
        panic!("no connect request: {push:?}");
    };
    assert!(candidates.is_empty());
    // Keep the host's registration stream open (the host stays online).
    std::mem::forget((_send, pushes));
    (host, h.ticket, c.ticket)
}

/// Binds `ticket` from `socket`; whether the relay answered `bound`.
fn bind(socket: &UdpSocket, relay: SocketAddr, ticket: &Ticket, counter: u64) -> bool {
    let frame = relay::bind_frame(ticket, counter);
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    for _ in 0..3 {
        socket.send_to(&frame, relay).unwrap();
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = socket.recv_from(&mut buf) {
            return matches!(relay::parse(&buf[..n]), Ok(relay::Frame::Bound { .. }));
        }
    }
    false
}

fn local_udp() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

/// Class 1, liveness: no datagram of any shape stops the relay (an empty one used to kill its
/// task for good, while look-ups went on handing out its tokens).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_datagram_stops_the_relay_or_the_other_services() {
    let rv = start(Limits::default());
    let relay = rv.relay.unwrap();
    let junk = local_udp();
    let mut shapes: Vec<Vec<u8>> = vec![Vec::new(), vec![0x80], vec![0x81; 17], vec![0x81; 41]];
    shapes.push(vec![0x80; 17]);
    shapes.push(vec![0xff; 1500]);
    shapes.push(vec![0x80; 65_000]);
    for n in 0..200u32 {
        let len = (n as usize * 37) % 1400;
        shapes.push(
            (0..len)
                .map(|i| (i as u32 ^ n.wrapping_mul(2_654_435_761)) as u8)
                .collect(),
        );
    }
    for s in &shapes {
        for to in [relay, rv.stun.unwrap(), rv.addr] {
            let _ = junk.send_to(s, to);
        }
    }
    // Every service still does its job: a session binds and relays, STUN answers, QUIC accepts.
    let (_host, h, c) = relayed_session(&rv).await;
    let (hs, cs) = (local_udp(), local_udp());
    assert!(
        bind(&hs, relay, &h, 1),
        "the relay answers a bind after the junk"
    );
    assert!(bind(&cs, relay, &c, 1));
    let data = [&relay::data_header(c.token)[..], b"still relaying"].concat();
    cs.send_to(&data, relay).unwrap();
    let mut buf = [0u8; 128];
    hs.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, _) = hs.recv_from(&mut buf).expect("data relayed after the junk");
    assert_eq!(&buf[relay::HEADER_LEN..n], b"still relaying");
    let counters = rv.counters.as_ref().unwrap().get();
    assert!(counters.dropped_malformed > 0, "{counters:?}");
    // Not one service died on the way (the supervisor would have hidden it from the checks
    // above by starting it again).
    assert_eq!(
        rv.restarts.load(Ordering::Relaxed),
        0,
        "a service task died"
    );
    let (_, req) = stun::binding_request().unwrap();
    assert!(!answers(&local_udp(), rv.stun.unwrap(), &req, Duration::from_secs(1)).is_empty());
    eprintln!(
        "liveness: {} junk datagrams to each of relay, STUN and QUIC ports; relay dropped {} \
         malformed and kept serving",
        shapes.len(),
        counters.dropped_malformed
    );
    rv.closer.close();
}

/// Class 5, relay reflection: a token seen on the wire neither redirects a session nor turns
/// the relay into a reflector; a recorded bind cannot be replayed from elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_token_redirects_nothing_and_reflects_no_more_than_it_sent() {
    let rv = start(Limits::default());
    let relay = rv.relay.unwrap();
    let (_host, h, c) = relayed_session(&rv).await;
    let (hs, cs, attacker) = (local_udp(), local_udp(), local_udp());
    let recorded_bind = relay::bind_frame(&c, 7);
    assert!(bind(&hs, relay, &h, 1));
    cs.send_to(&recorded_bind, relay).unwrap();
    cs.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 2048];
    cs.recv_from(&mut buf).expect("bound");

    // The attacker saw both tokens and the controller's bind on the wire.
    for datagram in [
        [&relay::data_header(c.token)[..], &[0x55; 1200][..]].concat(),
        [&relay::data_header(h.token)[..], b"x"].concat(),
        recorded_bind.to_vec(),
        relay::bind_frame(
            &Ticket {
                token: c.token,
                key: relay::BindKey([0; 32]),
            },
            99,
        )
        .to_vec(),
    ] {
        for n in answers(&attacker, relay, &datagram, Duration::from_millis(300)) {
            assert!(n <= datagram.len(), "{n} bytes back for {}", datagram.len());
            assert!(n <= relay::HEADER_LEN, "only a rebind notice, never data");
        }
    }
    // Data from the host still reaches the controller where it proved to be, and nothing
    // reached the attacker.
    hs.send_to(
        &[&relay::data_header(h.token)[..], b"to the controller"].concat(),
        relay,
    )
    .unwrap();
    let (n, _) = cs
        .recv_from(&mut buf)
        .expect("the controller still gets data");
    assert_eq!(&buf[relay::HEADER_LEN..n], b"to the controller");
    attacker
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(
        attacker.recv_from(&mut buf).is_err(),
        "data leaked to the attacker"
    );
    let counters = rv.counters.as_ref().unwrap().get();
    assert!(counters.dropped_unproven >= 3, "{counters:?}");
    rv.closer.close();
}

/// Captures the Initial a real QUIC client sends (to a tap socket), for replay from elsewhere.
async fn a_quic_initial(server: certs::Fingerprint) -> Vec<u8> {
    let tap = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let to = tap.local_addr().unwrap();
    let id = Identity::ephemeral().unwrap();
    let cfg = quic::client_config(&id, server, ALPN, quic::Role::RendezvousClient).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(cfg);
    let _connecting = endpoint.connect(to, "quicdesk.invalid").unwrap();
    let mut buf = vec![0u8; 2048];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), tap.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    buf.truncate(n);
    buf
}

/// Class 5, reflection: every UDP service answers a source that has proven nothing with at most
/// as many bytes as it received (QUIC with a Retry, STUN with a trimmed answer or none, the
/// relay with nothing or a rebind notice).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_udp_service_amplifies_towards_an_unproven_source() {
    let rv = start(Limits::default());
    // An address with no authenticated connection to this rendezvous (127.0.0.1 has some).
    let spoofed = UdpSocket::bind("127.0.0.9:0").unwrap();
    let wait = Duration::from_millis(400);
    let initial = a_quic_initial(rv.fingerprint).await;
    let (_, stun_padded) = stun::binding_request().unwrap();
    let mut stun_bare = stun_padded.clone();
    stun_bare.truncate(stun::HEADER_LEN);
    stun_bare[2..4].copy_from_slice(&[0, 0]);
    let (_host, _h, c) = relayed_session(&rv).await;
    let cases: Vec<(&str, SocketAddr, Vec<u8>)> = vec![
        ("QUIC Initial", rv.addr, initial),
        ("QUIC short header", rv.addr, vec![0x40; 60]),
        ("STUN bare request", rv.stun.unwrap(), stun_bare),
        ("STUN padded request", rv.stun.unwrap(), stun_padded),
        (
            "relay data with a live token",
            rv.relay.unwrap(),
            [&relay::data_header(c.token)[..], b"!"].concat(),
        ),
        (
            "relay bind, no key",
            rv.relay.unwrap(),
            vec![0x81; relay::BIND_LEN],
        ),
    ];
    for (what, to, datagram) in cases {
        let got = answers(&spoofed, to, &datagram, wait);
        let total: usize = got.iter().sum();
        eprintln!(
            "amplification: {what}: {} bytes in, {total} bytes back ({:.2}x)",
            datagram.len(),
            total as f64 / datagram.len() as f64
        );
        assert!(
            total <= datagram.len(),
            "{what}: {total} bytes back for {}",
            datagram.len()
        );
    }
    assert!(rv.stun_counters.too_small.load(Ordering::Relaxed) >= 1);
    rv.closer.close();
}

/// Class 3, address leaks: a full relay refuses the look-up; it never falls back to handing
/// out the host's addresses. Sessions are capped per controller key too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_relay_refuses_look_ups_instead_of_revealing_addresses() {
    let rv = start(Limits {
        max_sessions: 2,
        max_sessions_per_key: 1,
        ..Limits::default()
    });
    let host = raw(&rv).await;
    let (code, _s, _r) = host.register().await;
    let greedy = raw(&rv).await;
    assert!(matches!(
        greedy.resolve(code).await,
        ServerMsg::Resolved { .. }
    ));
    // The same key again: over its cap.
    match greedy.resolve(code).await {
        ServerMsg::Refused { reason, .. } => assert_eq!(reason, Refusal::Busy),
        other => panic!("a second session for one key: {other:?}"),
    }
    let other = raw_from(&rv, "127.0.0.2").await;
    assert!(matches!(
        other.resolve(code).await,
        ServerMsg::Resolved { .. }
    ));
    // The relay is full now: a third controller is refused, and learns no address.
    let third = raw_from(&rv, "127.0.0.3").await;
    match third.resolve(code).await {
        ServerMsg::Refused { reason, message } => {
            assert_eq!(reason, Refusal::Busy);
            assert!(!message.contains("127.0.0.1"), "{message}");
        }
        other => panic!("a look-up past a full relay answered {other:?}"),
    }
    rv.closer.close();
}

/// Class 3, enumeration: unknown, forgotten and offline codes answer alike to a stranger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_ups_do_not_tell_unknown_and_offline_codes_apart() {
    let rv = start(Limits::default());
    let host = raw(&rv).await;
    let (offline, _s, _r) = host.register().await;
    host.conn.close(0u32.into(), b"");
    // Wait until the server noticed the host left (its registration stream ends).
    let stranger = raw(&rv).await;
    let mut tries = 0;
    let answer_offline = loop {
        match stranger.resolve(offline).await {
            ServerMsg::Resolved { .. } if tries < 50 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => break other,
        }
    };
    let unknown = (0..)
        .map(|n| AccessCode::from_payload([9, 9, 9, 9, 9, 9, n % 10]).unwrap())
        .find(|c| *c != offline)
        .unwrap();
    let answer_unknown = stranger.resolve(unknown).await;
    let strip = |m: ServerMsg, code: AccessCode| match m {
        ServerMsg::Refused { reason, message } => {
            (reason, message.replace(&code.to_string(), "CODE"))
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(
        strip(answer_offline, offline),
        strip(answer_unknown, unknown),
        "offline and unknown must look the same"
    );
    rv.closer.close();
}

/// Class 3, squatting: a key gets one code, however often it registers, and fresh keys from
/// one address cannot mint codes fast.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_squat_codes() {
    let rv = start(Limits::default());
    let squatter = raw_from(&rv, "127.0.0.4").await;
    let (first, _s, _r) = squatter.register().await;
    let mut streams = Vec::new();
    // A connection takes 4 request streams at once; registrations hold theirs open.
    for _ in 0..3 {
        let (again, s, r) = squatter.register().await;
        assert_eq!(again, first, "one key, one code");
        streams.push((s, r));
    }
    let fifth = tokio::time::timeout(Duration::from_millis(300), squatter.conn.open_bi()).await;
    assert!(
        fifth.is_err(),
        "a fifth concurrent request stream was allowed"
    );
    let mut minted = 1;
    let mut refused = 0;
    for _ in 0..30 {
        let fresh = raw_from(&rv, "127.0.0.4").await;
        match fresh
            .ask(&ClientMsg::Register {
                lan_addrs: Vec::new(),
            })
            .await
            .0
        {
            ServerMsg::Registered { .. } => minted += 1,
            ServerMsg::Refused { reason, .. } => {
                assert_eq!(reason, Refusal::RateLimited);
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    eprintln!("squatting: one address minted {minted} codes, {refused} refused");
    assert!(minted <= 10, "{minted} codes from one address at once");
    rv.closer.close();
}

/// Class 4, pre-authentication resources: connections that open every stream they may and
/// fill its window without ever being read cost the real server process little. Runs the
/// `rendezvous` binary and reads its resident memory from /proc.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unread_streams_stays_under_the_memory_bound() {
    const BOUND_MIB: u64 = 64;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut addr = None;
        let mut fp = None;
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(a) = line.strip_prefix("rendezvous listening on ") {
                addr = Some(a.trim().parse::<SocketAddr>().unwrap());
            }
            if let Some(f) = line.strip_prefix("fingerprint: ") {
                fp = Some(f.trim().parse::<certs::Fingerprint>().unwrap());
                break;
            }
        }
        (addr.unwrap(), fp.unwrap())
    });
    let (addr, fingerprint) = tokio::time::timeout(Duration::from_secs(20), lines)
        .await
        .expect("the rendezvous starts")
        .unwrap();
    let before = rss_kib(pid);
    // 100 connections from each of 3 addresses (the per-address cap is 64), each opening every
    // stream it may and writing as much as flow control lets it, never finishing a message.
    let mut held: Vec<(quinn::Endpoint, quinn::Connection, Vec<quinn::SendStream>)> = Vec::new();
    let mut refused = 0;
    for source in ["127.0.0.5", "127.0.0.6", "127.0.0.7"] {
        for _ in 0..100 {
            let id = Identity::ephemeral().unwrap();
            let cfg =
                quic::client_config(&id, fingerprint, ALPN, quic::Role::RendezvousClient).unwrap();
            let mut endpoint =
                quinn::Endpoint::client(format!("{source}:0").parse().unwrap()).unwrap();
            endpoint.set_default_client_config(cfg);
            let connected = tokio::time::timeout(
                Duration::from_secs(3),
                endpoint.connect(addr, "quicdesk.invalid").unwrap(),
            )
            .await;
            let conn = match connected {
                // A refused connection may look established until the refusal arrives.
                Ok(Ok(c)) if c.close_reason().is_none() => c,
                _ => {
                    refused += 1;
                    continue;
                }
            };
            let mut streams = Vec::new();
            for _ in 0..8 {
                let Ok(Ok(mut send)) =
                    tokio::time::timeout(Duration::from_millis(200), conn.open_bi())
                        .await
                        .map(|r| r.map(|(s, _)| s))
                else {
                    break;
                };
                // A length header promising a large message, then as much as will go.
                let _ = send.write_all(&(MAX_MSG_LEN as u32).to_be_bytes()).await;
                let _ = tokio::time::timeout(
                    Duration::from_millis(100),
                    send.write_all(&vec![0x41; 256 * 1024]),
                )
                .await;
                streams.push(send);
            }
            held.push((endpoint, conn, streams));
        }
    }
    // Refused connections are closed by the server shortly after their handshake.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alive = held
        .iter()
        .filter(|(_, c, _)| c.close_reason().is_none())
        .count();
    let streams: usize = held.iter().map(|(_, _, s)| s.len()).sum();
    let after = rss_kib(pid);
    let _ = child.kill();
    let _ = child.wait();
    eprintln!(
        "pre-auth flood: {alive} connections alive of 300 tried ({refused} refused at once), \
         {streams} streams held with unread data; rendezvous RSS {before} KiB before, {after} KiB \
         after (+{} KiB; bound {BOUND_MIB} MiB)",
        after.saturating_sub(before)
    );
    assert!(alive <= 3 * 64, "the per-address cap let {alive} in");
    assert!(
        after.saturating_sub(before) < BOUND_MIB * 1024,
        "the flood grew the rendezvous by {} KiB",
        after - before
    );
}
