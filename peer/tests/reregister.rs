//! A host whose rendezvous crashes (no close is ever sent: its process is gone) registers again
//! within 5 s of the rendezvous being back, whether it comes back at once (its stateless reset
//! answers the host's next keep-alive) or after a while (the host notices the silence and dials
//! again).
//!
//! The rendezvous runs on a tokio runtime of its own, so that it can crash the way a killed
//! process does: the runtime is shut down with its tasks dropped, never polled again, so not
//! one more packet leaves (no CONNECTION_CLOSE). Then a new rendezvous starts on the same port
//! with the same data directory (its key and stateless-reset secret), as systemd would restart it.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use rendezvous::server::{self, Server};

/// A rendezvous on a runtime of its own.
struct Crashable {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    fingerprint: certs::Fingerprint,
}

impl Crashable {
    /// Starts a rendezvous in `dir` on `listen`; binding again while the crashed one's socket
    /// is being let go may take a few tries.
    fn start(dir: &Path, listen: SocketAddr) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut cfg = server::Config::new(listen, dir.to_path_buf());
        cfg.stun_listen = None;
        cfg.relay = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        let server = loop {
            let _in = runtime.enter();
            match Server::bind(&cfg) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("binding {listen} again: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("the rendezvous cannot bind {listen} again: {e}"),
            }
        };
        let (addr, fingerprint) = (server.local_addr().unwrap(), server.fingerprint());
        runtime.spawn(server.run());
        Self {
            runtime,
            addr,
            fingerprint,
        }
    }

    /// Gone, as a killed process is: nothing more is sent.
    fn crash(self) {
        self.runtime.shutdown_background();
    }
}

/// A host sharing a synthetic screen, with a fixed password, registered with `rendezvous`.
fn host_config(
    rendezvous: SocketAddr,
    fingerprint: certs::Fingerprint,
    dir: &Path,
) -> peer::host::HostConfig {
    let input: peer::host::InputFactory = std::sync::Arc::new(|_: &peer::host::ScreenArea| {
        Ok(Box::new(input::RecordingBackend::default()) as Box<dyn input::InputBackend>)
    });
    peer::host::HostConfig {
        rendezvous,
        rendezvous_fingerprint: fingerprint,
        data_dir: dir.join("host"),
        bind: LOCAL,
        source: peer::host::Source::Synthetic {
            width: 320,
            height: 240,
        },
        password: fixed("correct horse battery staple"),
        fps: 30,
        bitrate_bps: 1_000_000,
        content: None,
        input,
        attended: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_registers_again_within_5_s_of_a_crashed_rendezvous_coming_back() {
    show_logs_on_failure();
    let dir = tempfile::tempdir().unwrap();
    let rv_dir = dir.path().join("rv");
    let rv = Crashable::start(&rv_dir, LOCAL);
    let listen = rv.addr;
    let host = peer::host::start(host_config(rv.addr, rv.fingerprint, dir.path()))
        .await
        .unwrap();
    let code = host
        .wait_registered(1, Duration::from_secs(10))
        .await
        .expect("the host registers")
        .code;
    let mut rv = Some(rv);
    // Back at once (the restart beats the next keep-alive), and after 12 s (the host's keep-alives
    // and their retransmissions went unanswered meanwhile).
    for (n, downtime) in [
        (2, Duration::from_millis(300)),
        (3, Duration::from_secs(12)),
    ] {
        rv.take().unwrap().crash();
        tokio::time::sleep(downtime).await;
        let again = Crashable::start(&rv_dir, listen);
        let back = Instant::now();
        if let Err(e) = host.wait_registered(n, Duration::from_secs(20)).await {
            panic!(
                "not registered again 20 s after a rendezvous down for {downtime:?} came back: {e}"
            );
        }
        let took = back.elapsed();
        eprintln!("down {downtime:?}: registered again {took:?} after the rendezvous was back");
        assert!(
            took <= Duration::from_secs(5),
            "down {downtime:?}: registered again only {took:?} after the rendezvous was back"
        );
        // The same code, from the same data directory.
        assert_eq!(host.status().code, code);
        rv = Some(again);
    }
    host.shutdown().await;
    rv.take().unwrap().crash();
}

/// A UDP relay in front of the rendezvous that stands for the host's network: everything the
/// host sends leaves from one socket, until `change` makes it leave from another (a new
/// address, as after a network change or a NAT that lost its mapping), after a blackout.
struct Network {
    change: tokio::sync::mpsc::Sender<Duration>,
    addr: SocketAddr,
}

async fn network(to: SocketAddr) -> Network {
    let front = std::sync::Arc::new(tokio::net::UdpSocket::bind(LOCAL).await.unwrap());
    let addr = front.local_addr().unwrap();
    let (change, mut changes) = tokio::sync::mpsc::channel::<Duration>(4);
    tokio::spawn(async move {
        let mut host: Option<SocketAddr> = None;
        let mut back = std::sync::Arc::new(tokio::net::UdpSocket::bind(LOCAL).await.unwrap());
        let mut dark_until = tokio::time::Instant::now();
        let (mut a, mut b) = (vec![0u8; 65536], vec![0u8; 65536]);
        loop {
            tokio::select! {
                Some(blackout) = changes.recv() => {
                    back = std::sync::Arc::new(tokio::net::UdpSocket::bind(LOCAL).await.unwrap());
                    dark_until = tokio::time::Instant::now() + blackout;
                }
                Ok((n, from)) = front.recv_from(&mut a) => {
                    host = Some(from);
                    if tokio::time::Instant::now() >= dark_until {
                        let _ = back.send_to(&a[..n], to).await;
                    }
                }
                Ok((n, _)) = back.recv_from(&mut b) => {
                    if let (Some(h), true) = (host, tokio::time::Instant::now() >= dark_until) {
                        let _ = front.send_to(&b[..n], h).await;
                    }
                }
            }
        }
    });
    Network { change, addr }
}

/// After a network change (the host's packets reach the rendezvous from a new address, after
/// two seconds of nothing) the rendezvous knows the host at its new address within 5 s of the
/// network working again: the host's connection migrates (QUIC), and the rendezvous follows
/// it (before, it kept the old address for as long as the registration lived).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_is_registered_again_after_its_network_changes() {
    show_logs_on_failure();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server::Config::new(LOCAL, dir.path().join("rv"));
    cfg.relay = None;
    let server = Server::bind(&cfg).unwrap();
    let (rv_addr, fp, admin) = (
        server.local_addr().unwrap(),
        server.fingerprint(),
        server.admin(),
    );
    tokio::spawn(server.run());
    let net = network(rv_addr).await;
    let host = peer::host::start(host_config(net.addr, fp, dir.path()))
        .await
        .unwrap();
    let code = host
        .wait_registered(1, Duration::from_secs(10))
        .await
        .expect("the host registers")
        .code
        .expect("a code");
    let before = admin.host(&code).and_then(|h| h.online).expect("online").0;
    let blackout = Duration::from_secs(2);
    net.change.send(blackout).await.unwrap();
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(15);
    let after = loop {
        let now = admin.host(&code).and_then(|h| h.online).map(|o| o.0);
        if let Some(a) = now.filter(|a| *a != before) {
            break a;
        }
        assert!(
            Instant::now() < deadline,
            "the rendezvous still knows the host at {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let took = changed.elapsed().saturating_sub(blackout);
    eprintln!(
        "network changed: the rendezvous knew the host at {after} {took:?} after it worked again"
    );
    assert!(took <= Duration::from_secs(5), "{took:?}");
    assert_eq!(host.status().code, Some(code), "the same code");
    host.shutdown().await;
}
