//! Sessions through the rendezvous's relay on 127.0.0.1: relay only, relay first then direct,
//! and never the relay; and a packet capture of the relay's port that must hold no plaintext.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use input::{InputEvent, RecordingBackend};
use peer::controller::{self, Hooks, RelayMode};
use peer::host::HostConfig;
use peer::stats::{PathKind, Report};

mod common;
use common::raw::Attacker;
use common::{
    LOCAL, Rv, connect_config, need, start_host, start_rendezvous, start_rendezvous_without_relay,
    synthetic_host,
};

/// Typed as input during the captured session; must never show on the wire.
const MARKER: &str = "QDMARK-plaintext-7f3a9c";

fn host_config(rv: &Rv, dir: &Path, backend: RecordingBackend) -> HostConfig {
    synthetic_host(rv, dir, (640, 360), "relay pass 135790", backend)
}

fn events() -> Vec<InputEvent> {
    let mut v: Vec<InputEvent> = (0..10u16)
        .map(|i| InputEvent::MouseMove {
            pos: input::NormalizedPoint::new(i * 5000, i * 4000),
        })
        .collect();
    v.push(InputEvent::Text {
        text: input::BoundedText::new(MARKER).unwrap(),
    });
    v
}

/// One session in `mode` with the scripted input; returns its report and what the host got.
async fn session(rv: &Rv, dir: &Path, mode: RelayMode) -> (Report, Vec<InputEvent>) {
    let recording = RecordingBackend::new();
    let host = start_host(host_config(rv, &dir.join("host"), recording.clone())).await;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let sent = events();
    // Queued until the session's input stream is up.
    tokio::spawn(async move {
        for ev in sent {
            tx.send(ev).await.unwrap();
        }
    });
    let mut cfg = connect_config(
        rv,
        host.status().code.expect("registered"),
        "relay pass 135790",
        &dir.join("ctl"),
    );
    cfg.relay = mode;
    cfg.duration = Some(Duration::from_secs(3));
    let hooks = Hooks {
        input: Some(rx),
        ..Default::default()
    };
    let report = controller::run(cfg, hooks).await.expect("session runs");
    host.shutdown().await;
    (report, recording.events())
}

/// tcpdump writing every UDP packet of one port on loopback to a file.
struct Capture {
    child: Child,
    file: std::path::PathBuf,
}

impl Capture {
    fn start(port: u16, file: &Path) -> Self {
        need("tcpdump", "tcpdump");
        let mut child = Command::new("tcpdump")
            .args(["-i", "lo", "-U", "-n", "-s", "0", "-w"])
            .arg(file)
            .args(["udp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        // tcpdump says "listening on lo" once it captures.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut lines = std::io::BufReader::new(stderr).lines();
            let mut said = Vec::new();
            for line in lines.by_ref().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(Ok(()));
                    // keep draining so tcpdump never blocks on a full pipe
                    lines.for_each(drop);
                    return;
                }
                said.push(line);
            }
            let _ = tx.send(Err(said.join("\n")));
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(said)) => {
                panic!("tcpdump could not capture (this test needs root, as CI runs it): {said}")
            }
            Err(_) => panic!("tcpdump did not start capturing within 10 s"),
        }
        Self {
            child,
            file: file.to_path_buf(),
        }
    }

    /// Stops the capture and returns the pcap file's bytes.
    fn finish(mut self) -> Vec<u8> {
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        std::fs::read(&self.file).expect("read the capture")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_relay_carries_the_session_and_the_relay_sees_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let relay = rv.relay.expect("the test rendezvous runs a relay");
    let capture = Capture::start(relay.port(), &dir.path().join("relay.pcap"));

    let (report, got) = session(&rv, dir.path(), RelayMode::Force).await;
    let pcap = capture.finish();

    assert_eq!(report.path, PathKind::Relay, "{report:?}");
    assert_eq!(report.path_changes, 0);
    assert!(report.frames_decoded >= 30, "too few frames: {report:?}");
    assert_eq!(got[..events().len()], events()[..], "input lost or changed");
    let counters = rv.relay_counters.as_ref().unwrap().get();
    assert!(
        counters.bytes_forwarded >= report.bytes_received,
        "the video did not all go through the relay: {counters:?} vs {report:?}"
    );
    assert_eq!(counters.sessions_opened, 1);

    // The capture holds the session (video, input), yet neither the typed marker nor the
    // password appears in it.
    assert!(
        pcap.len() as u64 >= report.bytes_received,
        "capture too small ({} bytes) for {} bytes of video",
        pcap.len(),
        report.bytes_received
    );
    assert!(contains(MARKER.as_bytes(), b"QDMARK"));
    assert!(!contains(&pcap, MARKER.as_bytes()), "typed text in clear");
    assert!(
        !contains(&pcap, b"QDMARK"),
        "part of the typed text in clear"
    );
    assert!(
        !contains(&pcap, b"relay pass 135790"),
        "the password in clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_starts_on_the_relay_and_moves_to_the_direct_path() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let (report, got) = session(&rv, dir.path(), RelayMode::Auto).await;
    assert_eq!(report.path, PathKind::Direct, "{report:?}");
    assert_eq!(report.path_changes, 1, "{report:?}");
    assert!(report.time_to_direct_ms.is_some(), "{report:?}");
    assert!(report.frames_decoded >= 30, "too few frames: {report:?}");
    assert_eq!(got[..events().len()], events()[..], "input lost or changed");
    // The handshake went through the relay; the video mostly did not.
    let counters = rv.relay_counters.as_ref().unwrap().get();
    assert!(counters.packets_forwarded >= 2, "{counters:?}");
    assert!(
        counters.bytes_forwarded < report.bytes_received / 2,
        "the session stayed on the relay: {counters:?} vs {report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_relay_a_look_up_reveals_no_address_and_no_relay_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(host_config(
        &rv,
        &dir.path().join("host"),
        RecordingBackend::new(),
    ))
    .await;
    let code = host.status().code.expect("registered");

    // A controller that knows the code but not the password learns the host's key and a
    // relay token, not where the host is.
    let resolved = Attacker::new("127.0.0.1")
        .resolve((rv.addr, rv.fingerprint), code)
        .await
        .unwrap();
    assert!(resolved.candidates.is_empty(), "{resolved:?}");
    assert!(resolved.relay.is_some());

    // So --no-relay cannot work here, and says why.
    let mut cfg = connect_config(&rv, code, "relay pass 135790", &dir.path().join("ctl"));
    cfg.relay = RelayMode::Off;
    let err = controller::run(cfg, Hooks::default()).await.unwrap_err();
    assert!(err.to_string().contains("--no-relay"), "{err}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_relay_the_session_goes_direct_with_no_relay() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous_without_relay(dir.path());
    assert!(rv.relay.is_none());
    let (report, got) = session(&rv, dir.path(), RelayMode::Off).await;
    assert_eq!(report.path, PathKind::Direct, "{report:?}");
    assert_eq!(report.path_changes, 0);
    assert!(report.frames_decoded >= 30, "too few frames: {report:?}");
    assert_eq!(got[..events().len()], events()[..]);
}
