//! STUN interop with an implementation nobody here wrote (coturn, installed by
//! `cargo xtask setup`): its client queries our responder. (The other way, the peer's STUN
//! client against coturn's server, is tested in `peer/tests/stun.rs`.)

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_client_gets_its_address_from_our_responder() {
    need("turnutils_stunclient");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(&server::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        stun_listen: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.path().to_path_buf(),
        forget_after: Duration::from_secs(60),
        relay: None,
    })
    .unwrap();
    let stun_addr = server.stun_addr().expect("a STUN responder");
    let counters = server.stun_counters();
    let closer = server.closer();
    let task = tokio::spawn(server.run());

    // turnutils_stunclient cannot be told its port: check the address and that the port is a
    // real one, and that our responder answered.
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
    assert!(out.status.success(), "turnutils_stunclient failed: {text}");
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
    closer.close();
    task.await.unwrap();
}
