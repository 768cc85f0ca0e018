//! End-to-end sessions on 127.0.0.1 with real QUIC, real keys, real H.264: an in-process
//! rendezvous, host and controller on ephemeral ports.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use input::{InputEvent, RecordingBackend};
use peer::controller::{self, FrameMeta, Hooks};
use peer::host::{self, HostConfig};
use peer::stats::PathKind;
use rendezvous::server::{self, Server};

mod common;
use common::{
    LOCAL, Rv, connect_config, direct_target, start_host, start_rendezvous, synthetic_host,
};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;

fn host_config(rv: &Rv, dir: &Path, backend: Option<RecordingBackend>) -> HostConfig {
    synthetic_host(
        rv,
        dir,
        (WIDTH, HEIGHT),
        "session pass 424242",
        backend.unwrap_or_default(),
    )
}

/// The scripted input: moves, clicks, wheel, keys and text, in a known order.
fn script() -> Vec<InputEvent> {
    let mut v = Vec::new();
    for i in 0..20u16 {
        v.push(InputEvent::MouseMove {
            pos: input::NormalizedPoint::new(i * 3000, 65535 - i * 3000),
        });
    }
    v.push(InputEvent::MouseButton {
        button: input::MouseButton::Left,
        pressed: true,
    });
    v.push(InputEvent::MouseButton {
        button: input::MouseButton::Left,
        pressed: false,
    });
    v.push(InputEvent::Wheel { dx: 0, dy: -3 });
    v.push(InputEvent::Key {
        key: input::Key::KeyA,
        pressed: true,
    });
    v.push(InputEvent::Key {
        key: input::Key::KeyA,
        pressed: false,
    });
    v.push(InputEvent::Text {
        text: input::BoundedText::new("héllo wörld").unwrap(),
    });
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_match_the_source_and_input_arrives_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let recording = RecordingBackend::new();
    let host = start_host(host_config(
        &rv,
        &dir.path().join("host"),
        Some(recording.clone()),
    ))
    .await;
    let code = host.status().code.expect("registered");

    #[derive(Default)]
    struct Seen {
        checked: u32,
        worst_diff: f64,
        marker_mismatches: Vec<(u64, Option<capture::Marker>)>,
        latencies: u32,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let on_frame = {
        let seen = seen.clone();
        move |meta: &FrameMeta, frame: &codec::DecodedFrame| {
            let mut s = seen.lock().unwrap();
            assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
            let marker = capture::read_marker(
                &frame.rgba,
                frame.width,
                frame.height,
                frame.width as usize * 4,
                capture::PixelLayout::Rgba,
            );
            if marker.map(|m| (m.frame_no, m.captured_at_us))
                != Some((meta.frame_no, meta.captured_at_us))
            {
                s.marker_mismatches.push((meta.frame_no, marker));
            }
            let expected =
                capture::render_synthetic(WIDTH, HEIGHT, meta.frame_no, meta.captured_at_us);
            let diff = capture::mean_abs_diff(&frame.rgba, frame.width, frame.height, &expected)
                .expect("same size");
            s.worst_diff = s.worst_diff.max(diff);
            s.checked += 1;
            s.latencies += u32::from(meta.latency_us.is_some());
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let events = script();
    let to_send = events.clone();
    // Queued until the session's input stream is up.
    tokio::spawn(async move {
        for ev in to_send {
            tx.send(ev).await.unwrap();
        }
    });
    let hooks = Hooks {
        on_frame: Some(Box::new(on_frame)),
        input: Some(rx),
        ..Default::default()
    };
    let report = controller::run(
        connect_config(&rv, code, "session pass 424242", &dir.path().join("ctl")),
        hooks,
    )
    .await
    .expect("session runs");

    let s = std::mem::take(&mut *seen.lock().unwrap());
    assert!(report.frames_decoded >= 30, "too few frames: {report:?}");
    assert_eq!(s.checked as u64, report.frames_decoded);
    assert!(
        s.marker_mismatches.is_empty(),
        "markers read back wrong: {:?}",
        &s.marker_mismatches[..s.marker_mismatches.len().min(5)]
    );
    assert!(
        s.worst_diff < 6.0,
        "decoded frames differ too much: {}",
        s.worst_diff
    );
    assert!(s.latencies > 0, "latency never known");
    assert_eq!(report.path, PathKind::Direct);
    assert!(report.latency_ms_p50.is_some() && report.time_to_first_frame_ms.is_some());
    assert_eq!(report.input_events_sent, events.len() as u64);

    // The host saw every event, in order; the session's end released nothing extra because
    // nothing was left held.
    let got = recording.events();
    assert_eq!(
        &got[..events.len()],
        &events[..],
        "input arrived out of order or changed"
    );
    host.shutdown().await;
    rv.closer.close();
    rv.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_learns_its_nat_mapping_from_the_rendezvous() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(host_config(&rv, &dir.path().join("host"), None)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s = host.status();
        if s.mapping.is_some() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "no discovery: {s:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // No NAT on loopback: the QUIC port and the STUN port see the same address.
    assert_eq!(
        status.mapping,
        Some(peer::nat::Mapping::EndpointIndependent)
    );
    assert_eq!(status.observed, Some(host.local_addr));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(host_config(&rv, &dir.path().join("host"), None)).await;
    let code = host.status().code.expect("registered");
    let err = controller::run(
        connect_config(&rv, code, "session pass 000000", &dir.path().join("ctl")),
        Hooks::default(),
    )
    .await
    .expect_err("wrong password must be refused");
    assert!(
        matches!(err, peer::Error::Auth(peer::auth::AuthError::WrongPassword)),
        "unexpected error: {err}"
    );
    assert!(!host.status().in_session);
    // The failure counted: an attempt right away from the same source waits its turn...
    let mut cfg = connect_config(&rv, code, "session pass 424242", &dir.path().join("ctl"));
    cfg.duration = Some(Duration::from_millis(800));
    let err = controller::run(cfg.clone(), Hooks::default())
        .await
        .expect_err("an attempt within the back-off is refused");
    let peer::Error::Denied(why) = &err else {
        panic!("unexpected error: {err}");
    };
    assert!(why.contains("try again in 1s"), "{why}");
    // ...and after it, the right password works: a stranger's failures lock nobody out.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let report = controller::run(cfg, Hooks::default()).await.unwrap();
    assert!(report.frames_decoded > 0);
    host.shutdown().await;

    // The host's audit log has each of the three, in order, with the controller's key.
    let ctl_key = certs::Identity::load_or_create(&dir.path().join("ctl"), "controller")
        .unwrap()
        .fingerprint()
        .to_string();
    // Each line is written as its connection ends, which the host may see after the controller
    // has returned.
    let path = dir.path().join("host").join(host::audit::FILE_NAME);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = std::fs::read_to_string(&path).unwrap_or_default();
        if log.lines().count() >= 3 || std::time::Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{log}");
    assert!(
        lines.iter().all(|l| l["controller"] == ctl_key.as_str()),
        "{log}"
    );
    let ended: Vec<&str> = lines.iter().map(|l| l["ended"].as_str().unwrap()).collect();
    assert!(ended[0].contains("password"), "{log}");
    assert!(ended[1].contains("try again"), "{log}");
    assert_eq!(
        lines
            .iter()
            .map(|l| l["authenticated"].as_bool().unwrap())
            .collect::<Vec<_>>(),
        [false, false, true],
        "{log}"
    );
    assert!(lines[2]["seconds"].as_f64().unwrap() > 0.5, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_password_rotates_after_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let mut cfg = host_config(&rv, &dir.path().join("host"), None);
    cfg.password = host::HostPassword::OneTime {
        lifetime: Duration::from_secs(600),
    };
    let host = start_host(cfg).await;
    let first = host.status().password;
    let shown = first.clone().expect("a one-time password");
    assert!(shown.len() == 9 && &shown[4..5] == "-", "{shown}");
    // Typed as people type: upper case, no dash.
    let typed = shown.replace('-', "").to_uppercase();
    let mut c = connect_config(
        &rv,
        host.status().code.expect("registered"),
        &typed,
        &dir.path().join("ctl"),
    );
    c.duration = Some(Duration::from_millis(500));
    controller::run(c.clone(), Hooks::default()).await.unwrap();
    let mut w = host.watch();
    tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| s.password != first))
        .await
        .expect("password rotates")
        .unwrap();
    let err = controller::run(c, Hooks::default()).await.unwrap_err();
    assert!(matches!(err, peer::Error::Auth(_)), "{err}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_passwords_expire() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let mut cfg = host_config(&rv, &dir.path().join("host"), None);
    cfg.password = host::HostPassword::OneTime {
        lifetime: Duration::from_millis(700),
    };
    let host = start_host(cfg).await;
    let first = host.status().password;
    let mut w = host.watch();
    let second = tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| s.password != first))
        .await
        .expect("the password expires and is replaced")
        .unwrap()
        .password
        .clone();
    // It keeps being replaced while unused.
    tokio::time::timeout(Duration::from_secs(5), w.wait_for(|s| s.password != second))
        .await
        .expect("replaced again")
        .unwrap();
    let mut c = connect_config(
        &rv,
        host.status().code.expect("registered"),
        &first.unwrap(),
        &dir.path().join("ctl"),
    );
    c.duration = Some(Duration::from_millis(300));
    let err = controller::run(c, Hooks::default()).await.unwrap_err();
    assert!(
        matches!(err, peer::Error::Auth(peer::auth::AuthError::WrongPassword)),
        "an expired password is refused: {err}"
    );
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_fingerprint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(host_config(&rv, &dir.path().join("host"), None)).await;
    let impostor = certs::Identity::ephemeral().unwrap().fingerprint();
    let err = controller::run_to(
        connect_config(
            &rv,
            host.status().code.expect("registered"),
            "session pass 424242",
            &dir.path().join("ctl"),
        ),
        direct_target(impostor, host.local_addr),
        Hooks::default(),
    )
    .await
    .expect_err("a host with another key must be refused");
    assert!(
        err.to_string().contains("certificate"),
        "unexpected error: {err}"
    );
    assert!(!host.status().in_session);
    host.shutdown().await;
}

/// A rendezvous that hands out another host's key for a code this controller knows (as a hostile
/// or fooled one would) is caught before anything reaches that host; the user can accept the
/// new key, which is then remembered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_code_with_another_key_is_refused_before_any_password_is_tried() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let real = start_host(host_config(&rv, &dir.path().join("real"), None)).await;
    let other = start_host(host_config(&rv, &dir.path().join("other"), None)).await;
    let code = real.status().code.expect("registered");
    let ctl = dir.path().join("ctl");
    let mut cfg = connect_config(&rv, code, "session pass 424242", &ctl);
    cfg.duration = Some(Duration::from_millis(500));
    controller::run(cfg.clone(), Hooks::default())
        .await
        .unwrap();
    let known = controller::known::KnownHosts::load(&ctl).unwrap();
    assert_eq!(
        known.seen(code, real.fingerprint),
        controller::known::Seen::Same
    );

    // The same code, now with the other host's key and address.
    let swapped = direct_target(other.fingerprint, other.local_addr);
    let err = controller::run_to(cfg.clone(), swapped.clone(), Hooks::default())
        .await
        .expect_err("another key for a known code must be refused");
    assert!(
        matches!(err, peer::Error::HostKeyChanged { .. }),
        "unexpected error: {err}"
    );
    assert!(err.to_string().contains("--accept-new-key"), "{err}");
    // Refused before anything was sent: the other host saw no attempt.
    assert_eq!(other.status().password_attempts, 0);

    // Accepted on purpose, the controller goes ahead (here the other host refuses it, since no
    // rendezvous announced it): the new key is remembered only once a session is authenticated.
    cfg.accept_new_key = true;
    let err = controller::run_to(cfg, swapped, Hooks::default())
        .await
        .expect_err("the other host was not told of this controller");
    assert!(
        !matches!(err, peer::Error::HostKeyChanged { .. }),
        "unexpected error: {err}"
    );
    let known = controller::known::KnownHosts::load(&ctl).unwrap();
    assert_eq!(
        known.seen(code, real.fingerprint),
        controller::known::Seen::Same
    );
    real.shutdown().await;
    other.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rendezvous_assigns_one_code_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let first = start_host(host_config(&rv, &dir.path().join("a"), None)).await;
    let second = start_host(host_config(&rv, &dir.path().join("b"), None)).await;
    let (a, b) = (
        first.status().code.expect("registered"),
        second.status().code.expect("registered"),
    );
    assert_ne!(a, b, "two keys, two codes");
    // The same key (same data directory) gets the same code again, online or not.
    first.shutdown().await;
    let again = start_host(host_config(&rv, &dir.path().join("a"), None)).await;
    assert_eq!(again.status().code.expect("registered"), a);
    again.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forgotten_codes_are_quarantined_for_their_owner() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(1));
    let first = start_host(host_config(&rv, &dir.path().join("a"), None)).await;
    let code = first.status().code.expect("registered");
    first.shutdown().await;
    // Forgotten after a second offline (swept every 250 ms).
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let second = start_host(host_config(&rv, &dir.path().join("b"), None)).await;
    assert_ne!(second.status().code.expect("registered"), code);
    let back = start_host(host_config(&rv, &dir.path().join("a"), None)).await;
    assert_eq!(
        back.status().code.expect("registered"),
        code,
        "its owner gets it back"
    );
    back.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_re_registers_after_rendezvous_restart_and_keeps_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let rv_dir = dir.path().join("rv");
    let rv = start_rendezvous(&rv_dir, LOCAL, Duration::from_secs(3600));
    let host_dir = dir.path().join("host");
    let host = start_host(host_config(&rv, &host_dir, None)).await;
    let code = host.status().code.expect("registered");
    let addr = rv.addr;

    rv.closer.close();
    rv.task.await.unwrap();
    // Same port, same data dir: a restarted server process.
    let rv = {
        let mut tries = 0;
        loop {
            match Server::bind(&server::Config::new(addr, rv_dir.clone())) {
                Ok(s) => {
                    break Rv {
                        addr,
                        stun: None,
                        relay: None,
                        relay_counters: None,
                        fingerprint: s.fingerprint(),
                        closer: s.closer(),
                        task: tokio::spawn(s.run()),
                    };
                }
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("rebinding: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot rebind the rendezvous: {e}"),
            }
        }
    };
    host.wait_registered(2, Duration::from_secs(20))
        .await
        .expect("host registers again");
    assert_eq!(host.status().code.expect("registered"), code);
    let mut c = connect_config(&rv, code, "session pass 424242", &dir.path().join("ctl"));
    c.duration = Some(Duration::from_millis(500));
    let report = controller::run(c, Hooks::default()).await.unwrap();
    assert!(report.frames_decoded > 0);
    host.shutdown().await;

    // A restarted host keeps its identity and code.
    let again = start_host(host_config(&rv, &host_dir, None)).await;
    assert_eq!(again.status().code.expect("registered"), code);
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_the_recording() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(host_config(&rv, &dir.path().join("host"), None)).await;
    let path = dir.path().join("rec.h264");
    let mut c = connect_config(
        &rv,
        host.status().code.expect("registered"),
        "session pass 424242",
        &dir.path().join("ctl"),
    );
    c.duration = Some(Duration::from_secs(2));
    c.record = Some(path.clone());
    let report = controller::run(c, Hooks::default()).await.unwrap();
    host.shutdown().await;
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-of",
            "json",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe is missing: run `cargo xtask setup` (installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    assert_eq!(s["codec_name"], "h264");
    assert_eq!(s["width"], WIDTH);
    assert_eq!(s["height"], HEIGHT);
    let frames: u64 = s["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        frames, report.frames_decoded,
        "ffprobe counts the frames we decoded"
    );
}
