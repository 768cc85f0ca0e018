//! STUN interop with an implementation nobody here wrote (coturn, installed by
//! `cargo xtask setup`): its client queries our responder. (The other way, the peer's STUN
//! client against coturn's server, is tested in `peer/tests/stun.rs`.)
//!
//! coturn's client sends a bare 20-byte request. The responder answers a source that holds no
//! authenticated connection with no more bytes than it got, which for such a request is
//! nothing; with a QUIC connection from the same IP (as every quicdesk peer has) it answers in
//! full.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use rendezvous::server::{self, Server};

fn need(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs `{tool}` from Debian's coturn package: run `cargo xtask setup`"
    );
}

async fn stunclient(stun_addr: SocketAddr) -> (bool, String) {
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(["10", "turnutils_stunclient", "-p"])
            .arg(stun_addr.port().to_string())
            .args(["-L", "127.0.0.1", "127.0.0.1"])
            .output()
    })
    .await
    .unwrap()
    .expect("run turnutils_stunclient");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.success() && text.contains("UDP reflexive addr: "),
        text,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_client_gets_its_address_from_our_responder() {
    need("turnutils_stunclient");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server::Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    cfg.stun_listen = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::bind(&cfg).unwrap();
    let rv_addr = server.local_addr().unwrap();
    let rv_fp = server.fingerprint();
    let stun_addr = server.stun_addr().expect("a STUN responder");
    let counters = server.stun_counters();
    let closer = server.closer();
    let task = tokio::spawn(server.run());

    // A stranger's bare request: no answer (the smallest answer, 32 bytes, is larger).
    let (answered, text) = stunclient(stun_addr).await;
    assert!(
        !answered,
        "an unproven 20-byte request was answered: {text}"
    );
    assert!(counters.too_small.load(Ordering::Relaxed) >= 1);
    assert_eq!(counters.answered.load(Ordering::Relaxed), 0);

    // Once 127.0.0.1 holds an authenticated connection, the same client is answered.
    let id = certs::Identity::ephemeral().unwrap();
    let client = proto::quic::client_config(
        &id,
        rv_fp,
        proto::rendezvous::ALPN,
        proto::quic::Role::RendezvousClient,
    )
    .unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(client);
    let conn = endpoint
        .connect(rv_addr, "quicdesk.invalid")
        .unwrap()
        .await
        .unwrap();
    // turnutils_stunclient cannot be told its port: check the address and that the port is a
    // real one, and that our responder answered.
    let (answered, text) = stunclient(stun_addr).await;
    assert!(answered, "turnutils_stunclient failed: {text}");
    let reflexive: SocketAddr = text
        .lines()
        .find_map(|l| l.split("UDP reflexive addr: ").nth(1))
        .unwrap_or_else(|| panic!("no reflexive address in: {text}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("bad reflexive address ({e}) in: {text}"));
    assert_eq!(reflexive.ip().to_string(), "127.0.0.1", "{text}");
    assert_ne!(reflexive.port(), 0, "{text}");
    assert_ne!(reflexive.port(), stun_addr.port(), "{text}");
    assert!(counters.answered.load(Ordering::Relaxed) >= 1);
    conn.close(0u32.into(), b"done");
    closer.close();
    task.await.unwrap();
}
