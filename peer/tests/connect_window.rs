//! `peer connect` without a code: the connect window (`peer ui connect`, a child process) on a
//! private Xvfb lists the hosts connected to before with their names; the test picks one with a
//! click, types the password, presses Enter, and the session goes on in the viewer window as
//! with a code on the command line (frames decoded, the name kept in the known hosts). Escape
//! in the window ends `peer connect` without connecting.

#![cfg(all(unix, not(target_os = "macos")))]

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use capture::xvfb::VirtualDisplay;
use peer::ui::canvas;
use peer::ui::connect::{self, CONNECT};

mod common;
use common::desktop::xvfb;
use common::{LOCAL, start_host, start_rendezvous, synthetic_host};

const PASSWORD: &str = "connect window pass 7531";

/// `peer connect`, killed if the test fails.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Peer {
    async fn exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "peer connect did not exit");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn xdotool(d: &VirtualDisplay, args: &[&str]) {
    let out = d.command("xdotool").args(args).output().expect("xdotool");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
}

/// The connect window, once drawn (its Connect button in its colour): its id and geometry.
async fn connect_window(d: &VirtualDisplay) -> (String, (i32, i32, u32, u32)) {
    let id = tokio::task::block_in_place(|| {
        d.wait_window("^quicdesk: connect", Duration::from_secs(30))
    })
    .expect("the connect window opens");
    let g = d.window_geometry(&id).unwrap();
    assert_eq!((g.2, g.3), connect::SIZE);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (w, _, rgb) = tokio::task::block_in_place(|| d.screenshot_rgb()).unwrap();
        let (x, y) = (g.0 + CONNECT.x + 4, g.1 + CONNECT.y + 4);
        let at = (y as usize * w as usize + x as usize) * 3;
        let got = [rgb[at], rgb[at + 1], rgb[at + 2]];
        if got
            .iter()
            .zip(canvas::PRIMARY)
            .all(|(&a, b)| a.abs_diff(b) <= 24)
        {
            return (id, g);
        }
        assert!(Instant::now() < deadline, "the Connect button is {got:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn_connect(d: &VirtualDisplay, rv: &common::Rv, data: &std::path::Path) -> Peer {
    let stats = data.join("stats.json");
    let child = d
        .command(env!("CARGO_BIN_EXE_peer"))
        .arg("connect")
        .args(["--rendezvous", &rv.addr.to_string()])
        .args(["--rendezvous-fingerprint", &rv.fingerprint.to_string()])
        .arg("--data-dir")
        .arg(data)
        .args(["--duration", "3", "--stats-json"])
        .arg(&stats)
        .env_remove("QUICDESK_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("start peer connect");
    Peer(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connect_window_lists_recent_hosts_and_starts_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let backend = input::RecordingBackend::new();
    let host = start_host(synthetic_host(
        &rv,
        &dir.path().join("host"),
        (320, 240),
        PASSWORD,
        backend,
    ))
    .await;
    let code = host.status().code.expect("registered");
    // This controller connected to the host before and named it "office".
    let data = dir.path().join("ctl");
    std::fs::create_dir_all(&data).unwrap();
    let mut known = peer::controller::known::KnownHosts::load(&data).unwrap();
    known
        .remember(code, host.fingerprint, 1_000, Some("office".into()))
        .unwrap();

    // Escape: nothing happens, peer connect ends.
    let mut peer = spawn_connect(&d, &rv, &data);
    let (id, _) = connect_window(&d).await;
    xdotool(&d, &["windowfocus", "--sync", &id]);
    xdotool(&d, &["key", "Escape"]);
    let status = peer.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");

    // Pick the recent host, type the password, Enter: the viewer shows the session.
    let mut peer = spawn_connect(&d, &rv, &data);
    let (id, g) = connect_window(&d).await;
    let (x, y) = connect::FIRST_ROW.centre();
    let (x, y) = ((g.0 + x).to_string(), (g.1 + y).to_string());
    xdotool(&d, &["mousemove", "--sync", &x, &y, "click", "1"]);
    xdotool(&d, &["windowfocus", "--sync", &id]);
    xdotool(&d, &["type", "--delay", "20", PASSWORD]);
    xdotool(&d, &["key", "Return"]);
    let viewer = tokio::task::block_in_place(|| {
        // The viewer's title is "quicdesk · CODE · …" (xdotool's pattern: the code alone).
        d.wait_window(&code.to_string(), Duration::from_secs(30))
    });
    assert!(viewer.is_ok(), "the viewer window never opened: {viewer:?}");
    let status = peer.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(data.join("stats.json")).expect("stats")).unwrap();
    assert!(report["frames_decoded"].as_u64().unwrap() >= 1, "{report}");
    let known = peer::controller::known::KnownHosts::load(&data).unwrap();
    let recent = known.recent(1);
    assert_eq!(recent[0].code, code.to_string());
    assert_eq!(recent[0].name.as_deref(), Some("office"), "the name stays");
    assert!(recent[0].last > 1_000, "the last connection is remembered");
    host.shutdown().await;
}
