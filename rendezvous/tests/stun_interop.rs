//! STUN interop with an implementation nobody here wrote (coturn, installed by
//! `cargo xtask setup`): its client queries our responder, and our request/response code talks
//! to its server.

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rendezvous::server::{self, Server};
use rendezvous::stun;

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

/// coturn's STUN server, stopped when dropped.
struct Coturn(Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn our_request_and_parser_work_against_coturn() {
    need("turnserver");
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let _coturn = Coturn(
        Command::new("turnserver")
            .args(["-n", "--stun-only", "--no-cli", "--no-tls", "--no-dtls"])
            .args(["--listening-ip", "127.0.0.1", "--listening-port"])
            .arg(port.to_string())
            .args(["--log-file", "stdout", "--simple-log", "--pidfile"])
            .arg(dir.path().join("turnserver.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnserver"),
    );
    let server: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (id, request) = stun::binding_request().unwrap();
    // Retransmit until the server is up and answers.
    let reply = loop {
        assert!(Instant::now() < deadline, "coturn never answered");
        socket.send_to(&request, server).unwrap();
        let mut buf = [0u8; 1500];
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            assert_eq!(from, server);
            break buf[..n].to_vec();
        }
    };
    assert!(stun::is_stun(&reply));
    assert_eq!(stun::kind(&reply), stun::Kind::BindingResponse);
    let (got_id, mapped) = stun::parse_response(&reply).expect("coturn's answer parses");
    assert_eq!(got_id, id);
    assert_eq!(mapped, socket.local_addr().unwrap());
}
