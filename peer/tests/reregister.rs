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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_registers_again_within_5_s_of_a_crashed_rendezvous_coming_back() {
    show_logs_on_failure();
    let dir = tempfile::tempdir().unwrap();
    let rv_dir = dir.path().join("rv");
    let rv = Crashable::start(&rv_dir, LOCAL);
    let listen = rv.addr;
    let input: peer::host::InputFactory = std::sync::Arc::new(|_: &peer::host::ScreenArea| {
        Ok(Box::new(input::RecordingBackend::default()) as Box<dyn input::InputBackend>)
    });
    let cfg = peer::host::HostConfig {
        rendezvous: rv.addr,
        rendezvous_fingerprint: rv.fingerprint,
        data_dir: dir.path().join("host"),
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
    };
    let host = peer::host::start(cfg).await.unwrap();
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
