//! `kill -9` at any moment loses nothing committed: rounds of the real server, each killed
//! (SIGKILL, no clean-up of any kind) at a random moment while hosts register, then started
//! again on the same data directory. Every registration the server acknowledged must be in the
//! registry afterwards with its key, and each restart must find the database sound (the server
//! checks its integrity at start and refuses a damaged one).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::{AccessCode, client, quic};
use rand::Rng;

const ROUNDS: usize = 8;
const HOSTS_PER_ROUND: usize = 6;

/// Starts the server; its address and fingerprint.
fn start(
    dir: &std::path::Path,
) -> (
    std::process::Child,
    std::net::SocketAddr,
    certs::Fingerprint,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-stun",
            "--no-relay",
            "--data-dir",
        ])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut addr, mut fp) = (None, None);
    for line in std::io::BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(a) = line.strip_prefix("rendezvous listening on ") {
            addr = Some(a.parse().unwrap());
        } else if let Some(f) = line.strip_prefix("fingerprint: ") {
            fp = Some(f.parse().unwrap());
            break;
        }
    }
    (
        child,
        addr.expect("the server said where it listens (did it refuse its database?)"),
        fp.unwrap(),
    )
}

/// Registers a fresh key; its fingerprint and code, once the server has answered.
async fn register(
    addr: std::net::SocketAddr,
    fp: certs::Fingerprint,
) -> Option<(certs::Fingerprint, AccessCode)> {
    let id = certs::Identity::ephemeral().ok()?;
    let cfg = quic::client_config(
        &id,
        fp,
        proto::rendezvous::ALPN,
        quic::Role::RendezvousClient,
    )
    .ok()?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).ok()?;
    let conn = endpoint
        .connect_with(cfg, addr, "quicdesk.invalid")
        .ok()?
        .await
        .ok()?;
    let reg = client::register(&conn, Vec::new()).await.ok()?;
    Some((id.fingerprint(), reg.code))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_no_acknowledged_registration() {
    let dir = tempfile::tempdir().unwrap();
    let acknowledged: Arc<Mutex<Vec<(certs::Fingerprint, AccessCode)>>> = Arc::default();
    let mut rng = rand::rng();
    for _ in 0..ROUNDS {
        let (mut child, addr, fp) = start(dir.path());
        let tasks: Vec<_> = (0..HOSTS_PER_ROUND)
            .map(|_| {
                let acknowledged = acknowledged.clone();
                // Registering fresh keys one after another until the server is gone (or its
                // limit on new codes answers): the kill lands while some are in flight.
                tokio::spawn(async move {
                    let attempt =
                        || tokio::time::timeout(Duration::from_secs(1), register(addr, fp));
                    while let Ok(Some(done)) = attempt().await {
                        acknowledged.lock().unwrap().push(done);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(2..40))).await;
        // SIGKILL: no handler runs, nothing is flushed.
        child.kill().unwrap();
        child.wait().unwrap();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
        }
    }
    // One more start proves the last kill left a sound database.
    let (mut child, _, _) = start(dir.path());
    child.kill().unwrap();
    child.wait().unwrap();
    let store =
        rendezvous::registry::Store::open(&dir.path().join(rendezvous::backup::DB_FILE)).unwrap();
    let (hosts, _) = store.load().unwrap();
    let acknowledged = acknowledged.lock().unwrap();
    eprintln!(
        "{} registrations acknowledged over {ROUNDS} killed rounds",
        acknowledged.len()
    );
    assert!(
        !acknowledged.is_empty(),
        "no registration got through: the test tested nothing"
    );
    for (key, code) in acknowledged.iter() {
        let kept = hosts.iter().find(|(c, _)| c == code);
        assert!(
            kept.is_some_and(|(_, rec)| rec.fingerprint == *key),
            "registration {code} for {key} was acknowledged, then lost"
        );
    }
}
