//! STUN on the peer's one UDP socket: against a standard STUN server (coturn, installed by
//! `cargo xtask setup`), against the rendezvous's responder, and between two peers, while the
//! same socket carries QUIC.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use peer::net::{self, StunClientError, Via};

mod common;
use common::{LOCAL, start_rendezvous};

/// coturn's STUN server on 127.0.0.1, stopped when dropped.
struct Coturn {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Coturn {
    fn start() -> Self {
        common::need("turnserver", "coturn");
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("turnserver")
            .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-ip", "127.0.0.1", "--listening-port"])
            .arg(port.to_string())
            .args(["--log-file", "stdout", "--simple-log", "--pidfile"])
            .arg(dir.path().join("turnserver.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver");
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        }
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peer_socket_learns_its_address_from_coturn() {
    let coturn = Coturn::start();
    let (_endpoint, socket) = net::bind(LOCAL, None).unwrap();
    // coturn takes a moment to listen; a lost request is retransmitted, a late start is retried.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mapped = loop {
        match socket
            .stun_binding(coturn.addr, Duration::from_secs(2))
            .await
        {
            Ok(addr) => break addr,
            Err(e) if Instant::now() < deadline => eprintln!("retrying: {e}"),
            Err(e) => panic!("coturn never answered: {e}"),
        }
    };
    assert_eq!(mapped, socket.local_addr().unwrap());
    assert_eq!(socket.counters().stun_responses.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendezvous_responder_and_other_peers_answer_while_quic_runs() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(dir.path(), LOCAL, Duration::from_secs(60));
    let (endpoint, socket) = net::bind(LOCAL, None).unwrap();
    let me = socket.local_addr().unwrap();

    // QUIC to the rendezvous on the same socket, before and after STUN.
    let rv_cfg = proto::quic::client_config(
        &certs::Identity::load_or_create(dir.path(), "ctl").unwrap(),
        rv.fingerprint,
        proto::rendezvous::ALPN,
        proto::quic::Role::RendezvousClient,
    )
    .unwrap();
    let conn = endpoint
        .connect_with(rv_cfg, rv.addr, "quicdesk.invalid")
        .unwrap()
        .await
        .expect("QUIC to the rendezvous");
    let stun_addr = rv.stun.expect("the test rendezvous runs a STUN responder");
    let timeout = Duration::from_secs(3);
    assert_eq!(socket.stun_binding(stun_addr, timeout).await.unwrap(), me);

    // Another peer's socket answers Binding requests too (the basis of punch probes).
    let (_other_endpoint, other) = net::bind(LOCAL, None).unwrap();
    let other_addr = other.local_addr().unwrap();
    assert_eq!(socket.stun_binding(other_addr, timeout).await.unwrap(), me);
    assert_eq!(
        other
            .counters()
            .stun_requests_answered
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(other.stun_binding(me, timeout).await.unwrap(), other_addr);

    // A flood of requests gets at most a rate-limited number of answers.
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_, request) = proto::stun::binding_request().unwrap();
    for i in 0..1000 {
        flood.send_to(&request, other_addr).unwrap();
        if i % 25 == 24 {
            // Paced a little so the socket buffer keeps most of it.
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let c = other.counters();
    let total = || {
        c.stun_requests_answered.load(Ordering::Relaxed)
            + c.stun_requests_limited.load(Ordering::Relaxed)
    };
    // Some of the flood may be dropped by the socket buffer; most arrives.
    while total() < 250 {
        assert!(
            Instant::now() < deadline,
            "only {} requests arrived",
            total()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered = c.stun_requests_answered.load(Ordering::Relaxed);
    assert!(
        c.stun_requests_limited.load(Ordering::Relaxed) > 0
            && answered <= u64::from(peer::net::STUN_ANSWERS_PER_SEC) * 2 + 1,
        "answered {answered}, limited {}",
        c.stun_requests_limited.load(Ordering::Relaxed)
    );

    // The QUIC connection is still fine: it carries a stream after all that STUN.
    let (mut send, _recv) = conn.open_bi().await.expect("a stream on the same socket");
    send.write_all(b"x").await.unwrap();
    assert!(conn.close_reason().is_none());
    conn.close(0u32.into(), b"done");
    rv.closer.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_is_a_timeout_and_strangers_cannot_answer() {
    let (_endpoint, socket) = net::bind(LOCAL, None).unwrap();
    // A bound socket that never answers.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let asking = tokio::spawn({
        let socket = socket.clone();
        async move {
            socket
                .stun_binding(silent_addr, Duration::from_millis(800))
                .await
        }
    });
    // The request arrives (retransmitted); a third party answers it with a forged address.
    silent
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = silent.recv_from(&mut buf).expect("the request arrives");
    assert!(proto::stun::is_stun(&buf[..n]));
    let forged = proto::stun::answer(&buf[..n], "203.0.113.66:6666".parse().unwrap(), None)
        .unwrap()
        .unwrap();
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(&forged, from).unwrap();
    let result = asking.await.unwrap();
    assert!(
        matches!(result, Err(StunClientError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(socket.counters().stun_stray.load(Ordering::Relaxed) >= 1);
}

/// A birthday pool: its sockets answer the peer's STUN (and nobody else's) out of their own
/// ports, note who reached them, probe out of the socket asked for, and carry quinn's answers
/// to a peer whose packets came in on one (a QUIC handshake to a pool socket's port completes,
/// and quinn's client drops packets from any other address than the one it dialled); the
/// sockets the peer reached are kept, the others close and answer nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_birthday_pool_answers_and_carries_quic_from_its_own_ports() {
    let dir = tempfile::tempdir().unwrap();
    let host_id = certs::Identity::load_or_create(dir.path(), "host").unwrap();
    let ctl_id = certs::Identity::load_or_create(dir.path(), "ctl").unwrap();
    const ALPN: &[u8] = b"quicdesk-pool-test";
    let server = proto::quic::server_config(&host_id, &[ALPN], proto::quic::Role::Host).unwrap();
    let (host_endpoint, host) = net::bind(LOCAL, Some(server)).unwrap();
    let (client_endpoint, client) = net::bind(LOCAL, None).unwrap();
    let me = client.local_addr().unwrap();
    let t = Duration::from_secs(3);

    let mut pool = host.open_pool(8, me.ip()).unwrap();
    let addrs = pool.local_addrs();
    assert_eq!(addrs.len(), 8);
    let main_port = host.local_addr().unwrap().port();
    assert!(addrs.iter().all(|(_, a)| a.port() != main_port));
    let (id, pool_addr) = addrs[3];

    // Another IP gets no answer from a pool socket.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    let (_, request) = proto::stun::binding_request().unwrap();
    stranger.send_to(&request, pool_addr).unwrap();
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(stranger.recv_from(&mut [0u8; 1500]).is_err());
    // The peer's probe to one pool socket is answered from its port and noted as a hit.
    assert_eq!(client.stun_binding(pool_addr, t).await.unwrap(), me);
    assert_eq!(pool.take_hits(), vec![(id, me)]);
    assert!(pool.take_hits().is_empty());
    // The pool socket probes back from its own port.
    let seen = host
        .stun_binding_via(Via::Pool(id), me, &net::STUN_RETRIES_MS, t)
        .await
        .unwrap();
    assert_eq!(seen, pool_addr);

    // QUIC dialled to the pool socket's port: the host's answers leave by that socket.
    let accept = tokio::spawn({
        // The endpoint must outlive the task: its driver reads the pool too.
        let host_endpoint = host_endpoint.clone();
        async move {
            let conn = host_endpoint.accept().await.unwrap().await.unwrap();
            let (mut send, mut recv) = conn.accept_bi().await.unwrap();
            let got = recv.read_to_end(64).await.unwrap();
            send.write_all(&got).await.unwrap();
            send.finish().unwrap();
            let _ = conn.closed().await;
            conn.remote_address()
        }
    });
    let cfg = proto::quic::client_config(
        &ctl_id,
        host_id.fingerprint(),
        ALPN,
        proto::quic::Role::Controller,
    )
    .unwrap();
    let conn = tokio::time::timeout(
        t,
        client_endpoint
            .connect_with(cfg, pool_addr, "quicdesk.invalid")
            .unwrap(),
    )
    .await
    .expect("handshake through the pool socket in time")
    .expect("handshake through the pool socket");
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(b"through the pool").await.unwrap();
    send.finish().unwrap();
    assert_eq!(recv.read_to_end(64).await.unwrap(), b"through the pool");
    conn.close(0u32.into(), b"done");
    assert_eq!(net::canonical(accept.await.unwrap()), me);

    // A socket the peer reached but whose hit was not taken yet is kept with those named;
    // the rest close. Dropping the pool closes what is left.
    let (other, other_addr) = addrs[0];
    let (last, last_addr) = addrs[7];
    assert_eq!(client.stun_binding(last_addr, t).await.unwrap(), me);
    let mut reached = vec![other];
    assert!(pool.keep_reached(&mut reached));
    assert_eq!(reached, vec![other, last]);
    assert_eq!(pool.ids(), &[other, last]);
    let short = Duration::from_millis(400);
    let timed_out =
        |r: Result<SocketAddr, StunClientError>| matches!(r, Err(StunClientError::Timeout { .. }));
    assert!(timed_out(client.stun_binding(pool_addr, short).await));
    assert_eq!(client.stun_binding(other_addr, t).await.unwrap(), me);
    drop(pool);
    assert!(timed_out(client.stun_binding(other_addr, short).await));
}
