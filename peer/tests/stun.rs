//! STUN on the peer's one UDP socket: a route's agent discovering its address from a standard
//! STUN server (coturn, installed by `cargo xtask setup`) and from the rendezvous's responder,
//! the socket answering other peers, while the same socket carries QUIC. (Birthday pools are
//! exercised by the path agent's simulated network and by the NAT lab's symmetric pairs.)

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use peer::net::{self, PeerSocket};

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

/// Asks `server` where `socket` is, the way a session does it: a route's agent discovers its
/// reflexive address. `None` if nothing answered within `wait`.
async fn ask(
    socket: &std::sync::Arc<PeerSocket>,
    server: SocketAddr,
    wait: Duration,
) -> Option<SocketAddr> {
    let cfg = net::RouteConfig {
        direct: false,
        ..Default::default()
    };
    let route = socket.add_route(cfg, false);
    route.with(|agent, now| agent.discover(now, None, &[server]));
    let mut view = route.view();
    let local = tokio::time::timeout(wait, view.wait_for(|v| v.local.is_some()))
        .await
        .ok()?
        .ok()?
        .local
        .clone()?;
    local.0.first().copied()
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
        match ask(&socket, coturn.addr, Duration::from_secs(4)).await {
            Some(addr) => break addr,
            None if Instant::now() < deadline => eprintln!("retrying"),
            None => panic!("coturn never answered"),
        }
    };
    assert_eq!(mapped, socket.local_addr().unwrap());
    assert!(socket.counters().stun_responses.load(Ordering::Relaxed) >= 1);
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
    let timeout = Duration::from_secs(4);
    assert_eq!(ask(&socket, stun_addr, timeout).await, Some(me));

    // Another peer's socket answers Binding requests too (the basis of punch probes).
    let (_other_endpoint, other) = net::bind(LOCAL, None).unwrap();
    let other_addr = other.local_addr().unwrap();
    assert_eq!(ask(&socket, other_addr, timeout).await, Some(me));
    assert_eq!(
        other
            .counters()
            .stun_requests_answered
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(ask(&other, me, timeout).await, Some(other_addr));

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
        async move { ask(&socket, silent_addr, Duration::from_millis(1500)).await }
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
    assert_eq!(result, None, "a stranger's forged answer was taken");
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert!(socket.counters().stun_stray.load(Ordering::Relaxed) >= 1);
}
