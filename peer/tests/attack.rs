//! The host and the controller as an attacker sees them: a raw QUIC client that speaks the
//! session's frames by hand (a hostile controller), a raw QUIC server (a hostile host), and a
//! proxy in the middle. Each test names the class of issue #11 it guards; `cargo xtask attack`
//! runs them with what they measure printed.

use std::time::Duration;

use certs::Identity;
use input::{InputEvent, RecordingBackend};
use peer::controller::{self, Hooks};
use proto::session::{ALPN, ControlMsg, StreamKind};
use proto::{AccessCode, quic};

mod common;
/// Strangers against a host whose user accepts each controller (`--approve prompt`).
#[path = "attack/prompt.rs"]
mod prompt;
use common::raw::{Attacker, hello, host_endpoint, input_frame, prove, read, read_video, send};
use common::rss::rss_kib;
use common::{
    LOCAL, Rv, connect_config, direct_target, start_host, start_rendezvous_without_relay,
    synthetic_host,
};

const PASSWORD: &str = "attack test pass 8642";

/// A rendezvous without a relay (so the host's address is handed out at look-up and a raw
/// client can dial it) and a host on it recording the input it performs.
async fn setup(dir: &std::path::Path) -> (Rv, peer::host::HostHandle, RecordingBackend) {
    let rv = start_rendezvous_without_relay(dir);
    let backend = RecordingBackend::new();
    let host = start_host(synthetic_host(
        &rv,
        &dir.join("host"),
        (320, 240),
        PASSWORD,
        backend.clone(),
    ))
    .await;
    (rv, host, backend)
}

/// A hostile controller on `source` that looked the host up (so the host expects its key) and
/// dialled it.
async fn announced(
    rv: &Rv,
    host: &peer::host::HostHandle,
    source: &str,
) -> (Attacker, quinn::Connection) {
    let code = host.status().code.expect("registered");
    let attacker = Attacker::new(source);
    let conn = attacker
        .reach((rv.addr, rv.fingerprint), code)
        .await
        .unwrap();
    (attacker, conn)
}

/// Proves the right password on `conn` and checks the host let it in; the control stream, kept
/// open for the session's life.
async fn proven(conn: &quinn::Connection) -> (quinn::SendStream, quinn::RecvStream) {
    let (ctl, r, verdict) = prove(conn, PASSWORD).await;
    assert!(
        matches!(verdict, Some(ControlMsg::Welcome { .. })),
        "{verdict:?}"
    );
    (ctl, r)
}

/// Class 2: a key the rendezvous did not announce gets no handshake, so no password step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_refuses_keys_nobody_announced_before_any_password_step() {
    let dir = tempfile::tempdir().unwrap();
    let (_rv, host, _) = setup(dir.path()).await;
    let stranger = Attacker::new("127.0.0.1");
    let cfg =
        quic::client_config(&stranger.id, host.fingerprint, ALPN, quic::Role::Controller).unwrap();
    let result = stranger
        .endpoint
        .connect_with(cfg, host.local_addr, "quicdesk.invalid")
        .unwrap()
        .await;
    let err = match result {
        Err(e) => e,
        Ok(conn) => tokio::time::timeout(Duration::from_secs(5), conn.closed())
            .await
            .expect("closed at once"),
    };
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(host.status().password_attempts, 0);
    host.shutdown().await;
}

/// Class 2: hanging up right after the challenge (before the host could reveal anything)
/// still costs the attempt; the next one from that source waits; the one-time password does
/// not change; the rightful user, from elsewhere, still gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_counts_and_a_guesser_locks_out_nobody_else() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, _) = setup(dir.path()).await;
    let code = host.status().code.expect("registered");
    let password_before = host.status().password.clone();
    let attacker = Attacker::new("127.0.0.2");
    let conn = attacker
        .reach((rv.addr, rv.fingerprint), code)
        .await
        .unwrap();
    let (_s, mut r) = hello(&conn).await.unwrap();
    let got = read(&mut r).await;
    assert!(
        matches!(got, Some(ControlMsg::Challenge { .. })),
        "{got:?}, connection: {:?}",
        conn.close_reason()
    );
    conn.close(0u32.into(), b"bye"); // learned nothing, hung up
    assert_eq!(
        host.status().password_attempts,
        1,
        "the attempt was charged"
    );

    // Straight back: announced again, but over the back-off.
    let conn = attacker
        .reach((rv.addr, rv.fingerprint), code)
        .await
        .unwrap();
    let (_s, mut r) = hello(&conn).await.unwrap();
    match read(&mut r).await {
        Some(ControlMsg::Denied { reason }) => {
            assert!(reason.contains("try again in"), "{reason}")
        }
        other => panic!("a second attempt within the back-off got {other:?}"),
    }
    assert_eq!(host.status().password_attempts, 1);
    assert_eq!(
        host.status().password,
        password_before,
        "no forced rotation"
    );

    // The rightful controller, from another address, is not locked out.
    let mut cfg = connect_config(&rv, code, PASSWORD, &dir.path().join("user"));
    cfg.bind = "127.0.0.3:0".parse().unwrap();
    cfg.duration = Some(Duration::from_millis(500));
    let report = controller::run(cfg, Hooks::default()).await.unwrap();
    assert!(report.frames_decoded > 0);
    host.shutdown().await;
}

/// Class 2 and 4: before the password is proven a controller can open one control stream and
/// nothing else, and cannot push more than a small window; input it sends is never performed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_before_the_password_proof_reaches_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, backend) = setup(dir.path()).await;
    let (_attacker, conn) = announced(&rv, &host, "127.0.0.4").await;
    let (mut ctl, _r) = hello(&conn).await.unwrap();
    // No input stream, no second control stream.
    // (Blocked on stream credit is right; opened is the hole; an error means the host closed
    // the connection, which this test must not mistake for either.)
    match tokio::time::timeout(Duration::from_millis(500), conn.open_uni()).await {
        Err(_) => {}
        Ok(Ok(_)) => panic!("an input stream opened before the proof"),
        Ok(Err(e)) => panic!("the host closed the connection early: {e}"),
    }
    match tokio::time::timeout(Duration::from_millis(500), conn.open_bi()).await {
        Err(_) => {}
        Ok(Ok(_)) => panic!("a second bidirectional stream opened before the proof"),
        Ok(Err(e)) => panic!("the host closed the connection early: {e}"),
    }
    // Input frames pushed down the control stream: the window stops them early, and none is
    // performed.
    let frame = input_frame(&InputEvent::Text {
        text: input::BoundedText::new("rm -rf ~").unwrap(),
    });
    let mut pushed = 0usize;
    let pushing = async {
        loop {
            ctl.write_all(&frame).await?;
            pushed += frame.len();
        }
        #[allow(unreachable_code)]
        Ok::<(), quinn::WriteError>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), pushing).await;
    eprintln!("pre-auth: the host took {pushed} bytes on its control stream before blocking");
    assert!(
        pushed <= 128 * 1024,
        "{pushed} bytes accepted before the proof"
    );
    assert!(
        backend.events().is_empty(),
        "input performed before the proof"
    );
    host.shutdown().await;
}

/// Class 2: a controller that proved the password but sends a malformed input frame loses that
/// stream only; the session and a new input stream go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_closes_only_its_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, backend) = setup(dir.path()).await;
    let (_attacker, conn) = announced(&rv, &host, "127.0.0.5").await;
    let _control = proven(&conn).await;
    let press = |key| InputEvent::Key { key, pressed: true };
    let frame = input_frame;
    let mut bad = conn.open_uni().await.unwrap();
    bad.write_all(&[StreamKind::Input as u8]).await.unwrap();
    bad.write_all(&frame(&press(input::Key::KeyA)))
        .await
        .unwrap();
    // A valid length prefix around bytes that are no event: the decoder sees them.
    bad.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff])
        .await
        .unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(5), bad.stopped())
        .await
        .expect("the host stops the bad stream");
    assert!(stopped.is_ok(), "{stopped:?}");
    let mut good = conn.open_uni().await.unwrap();
    good.write_all(&[StreamKind::Input as u8]).await.unwrap();
    good.write_all(&frame(&press(input::Key::KeyB)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while backend.events().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        backend.events()[..2],
        [press(input::Key::KeyA), press(input::Key::KeyB)]
    );
    assert!(conn.close_reason().is_none(), "the session survived");
    host.shutdown().await;
}

/// Class 2 and liveness: a monitor switch is a request the host checks, never obeys blindly.
/// Before the proof it ends the connection; after it, an impossible index and a flood of
/// switches each get a refusal, and the session (control and video) goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_switches_are_refused_before_the_proof_and_checked_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, _backend) = setup(dir.path()).await;
    let (_early, conn) = announced(&rv, &host, "127.0.0.9").await;
    let (mut ctl, mut r) = hello(&conn).await.unwrap();
    assert!(matches!(
        read(&mut r).await,
        Some(ControlMsg::Challenge { .. })
    ));
    send(&mut ctl, &ControlMsg::SwitchMonitor { index: 0 }).await;
    assert_eq!(read(&mut r).await, None, "no answer but the end");
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the host closes a connection that asks before the proof");

    let (_attacker, conn) = announced(&rv, &host, "127.0.0.10").await;
    let (mut ctl, mut r) = proven(&conn).await;
    // Take and read the video as a controller would, so that only the switches could hold
    // anything up.
    quic::widen_after_auth(&conn, quic::Role::Controller);
    let (frames, _video) = read_video(&conn);
    const FLOOD: u32 = 40;
    send(&mut ctl, &ControlMsg::SwitchMonitor { index: u32::MAX }).await;
    for _ in 0..FLOOD {
        send(&mut ctl, &ControlMsg::SwitchMonitor { index: 1 }).await;
    }
    let mut refusals = Vec::new();
    while refusals.len() < FLOOD as usize + 1 {
        match read(&mut r).await {
            Some(ControlMsg::SwitchFailed { index, reason }) => refusals.push((index, reason)),
            Some(ControlMsg::Candidates { .. }) => {}
            other => panic!("after {} refusals: {other:?}", refusals.len()),
        }
    }
    assert_eq!(refusals[0].0, u32::MAX);
    assert!(refusals[0].1.contains("no monitor"), "{:?}", refusals[0]);
    // A synthetic host has no monitors; those asked while one was under way were refused at
    // once: either way, one answer each.
    assert!(refusals[1..].iter().all(|(i, _)| *i == 1), "{refusals:?}");
    send(&mut ctl, &ControlMsg::Ping { sent_us: 7 }).await;
    assert!(matches!(
        read(&mut r).await,
        Some(ControlMsg::Pong { sent_us: 7, .. })
    ));
    // Video still flows: frames captured after the last refusal arrive.
    let after = peer::session::now_us();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !frames
        .lock()
        .unwrap()
        .iter()
        .any(|h| h.captured_at_us > after)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no frame captured after the flood within 5 s: {:?}",
            frames.lock().unwrap().last().copied()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        frames
            .lock()
            .unwrap()
            .iter()
            .all(|h| (h.width, h.height) == (320, 240))
    );
    assert!(conn.close_reason().is_none(), "the session survived");
    host.shutdown().await;
}

/// Liveness after the proof: a stream that never sends its kind byte (opened implicitly by a
/// later one) is refused after a short wait instead of holding up the streams behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_its_kind_does_not_hold_up_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, backend) = setup(dir.path()).await;
    let (_attacker, conn) = announced(&rv, &host, "127.0.0.9").await;
    let _control = proven(&conn).await;
    // Opened but silent: the host learns of it when the next stream arrives.
    let silent = conn.open_uni().await.unwrap();
    let mut good = conn.open_uni().await.unwrap();
    let press = InputEvent::Key {
        key: input::Key::KeyC,
        pressed: true,
    };
    good.write_all(&[StreamKind::Input as u8]).await.unwrap();
    good.write_all(&input_frame(&press)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while backend.events().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        backend.events(),
        [press],
        "the input stream behind it was never read"
    );
    assert!(conn.close_reason().is_none(), "the session survived");
    drop(silent);
    host.shutdown().await;
}

/// The man in the middle: a proxy with its own key, which the controller was told to pin (a
/// lying rendezvous), relays the password exchange byte for byte to the real host, whose
/// password the controller knows. The TLS sessions differ, so both ends refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_man_in_the_middle_relaying_the_exchange_is_refused_by_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (rv, host, backend) = setup(dir.path()).await;
    let code = host.status().code.expect("registered");

    // The proxy: a QUIC server with its own key, and a client towards the real host.
    let proxy_id = Identity::ephemeral().unwrap();
    let proxy_server = host_endpoint(&proxy_id);
    let proxy_addr = proxy_server.local_addr().unwrap();
    let upstream = Attacker {
        id: proxy_id,
        endpoint: quinn::Endpoint::client(LOCAL).unwrap(),
    };
    let (host_fp, host_addr) = upstream
        .look_up((rv.addr, rv.fingerprint), code)
        .await
        .unwrap();
    let proxy_fp = upstream.id.fingerprint();
    let proxying = tokio::spawn(async move {
        let down = proxy_server.accept().await.unwrap().await.unwrap();
        let up = upstream.dial(host_fp, host_addr).await.unwrap();
        let (mut ds, mut dr) = down.accept_bi().await.unwrap();
        let (mut us, mut ur) = up.open_bi().await.unwrap();
        // Verbatim, both ways, until either side ends.
        let a = async {
            let _ = tokio::io::copy(&mut dr, &mut us).await;
        };
        let b = async {
            let _ = tokio::io::copy(&mut ur, &mut ds).await;
        };
        tokio::join!(a, b);
    });
    let mut cfg = connect_config(&rv, code, PASSWORD, &dir.path().join("victim"));
    cfg.duration = Some(Duration::from_secs(1));
    let err = controller::run_to(cfg, direct_target(proxy_fp, proxy_addr), Hooks::default())
        .await
        .expect_err("the controller must refuse");
    // The host refused the proof (the exporters differ) and said so; the controller reports
    // exactly that.
    assert!(
        matches!(err, peer::Error::Auth(peer::auth::AuthError::WrongPassword)),
        "{err}"
    );
    assert_eq!(host.status().password_attempts, 1);
    assert!(!host.status().in_session, "the host let the proxy in");
    assert!(backend.events().is_empty());
    proxying.abort();
    host.shutdown().await;
}

/// Class 6: text from a hostile host (a denial reason) reaches the user without terminal
/// escapes or direction overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_hosts_text_is_made_printable() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous_without_relay(dir.path());
    let evil = Identity::ephemeral().unwrap();
    let evil_fp = evil.fingerprint();
    let server = host_endpoint(&evil);
    let evil_addr = server.local_addr().unwrap();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (mut s, mut r) = conn.accept_bi().await.unwrap();
        let _hello = read(&mut r).await;
        let reason = "go away\x1b]0;owned\x07\x1b[2J\r\n$ sudo \u{9b}1m\u{202e}fdp.exe".to_string();
        send(&mut s, &ControlMsg::Denied { reason }).await;
        let _ = s.finish();
        conn.closed().await;
    });
    let cfg = connect_config(
        &rv,
        AccessCode::from_payload([1, 2, 3, 4, 5, 6, 7]).unwrap(),
        PASSWORD,
        &dir.path().join("ctl"),
    );
    let err = controller::run_to(cfg, direct_target(evil_fp, evil_addr), Hooks::default())
        .await
        .expect_err("denied");
    let text = err.to_string();
    assert!(text.contains("go away"), "{text}");
    assert!(
        !text.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "raw control characters reach the user: {text:?}"
    );
}

/// Class 4, as a process: a `peer host` flooded with announced but unauthenticated controllers,
/// from many addresses, each opening every stream it may and pushing until flow control stops
/// it, stays under a stated memory bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_auth_flood_keeps_the_host_process_small() {
    use std::io::BufRead;
    const ATTACKERS: usize = 48;
    const BOUND_KIB: u64 = 24 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous_without_relay(dir.path());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--source", "synthetic", "--size", "320x240"])
        .args([
            "--bind",
            "127.0.0.1:0",
            "--rendezvous",
            &rv.addr.to_string(),
        ])
        .args(["--rendezvous-fingerprint", &rv.fingerprint.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("host"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut child = Kill(child);
    let pid = child.0.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(code) = line.strip_prefix("code: ") {
                let _ = tx.send(code.trim().to_owned());
            }
        }
    });
    let code: AccessCode = tokio::task::block_in_place(|| rx.recv_timeout(Duration::from_secs(20)))
        .expect("the host prints its code within 20 s")
        .parse()
        .unwrap();
    let before = rss_kib(pid);

    let mut held = Vec::new();
    let (mut admitted, mut challenged, mut refused, mut pushed_total) = (0usize, 0, 0, 0usize);
    for i in 0..ATTACKERS {
        let attacker = Attacker::new(&format!("127.0.{}.{}", 1 + i / 200, 10 + i % 200));
        let Ok(conn) = attacker.reach((rv.addr, rv.fingerprint), code).await else {
            refused += 1;
            continue;
        };
        let Ok((mut ctl, mut r)) = hello(&conn).await else {
            refused += 1;
            continue;
        };
        match tokio::time::timeout(Duration::from_secs(2), read(&mut r)).await {
            Ok(Some(ControlMsg::Challenge { .. })) => challenged += 1,
            _ => refused += 1,
        }
        admitted += 1;
        // Whatever it may: every extra stream, and bytes on the control stream until blocked.
        let uni = tokio::time::timeout(Duration::from_millis(50), conn.open_uni()).await;
        let chunk = vec![0x41u8; 16 * 1024];
        let mut pushed = 0usize;
        let pushing = async {
            while ctl.write_all(&chunk).await.is_ok() {
                pushed += chunk.len();
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(200), pushing).await;
        pushed_total += pushed;
        held.push((attacker, conn, ctl, r, uni));
    }
    let after = rss_kib(pid);
    eprintln!(
        "pre-auth flood: {ATTACKERS} announced controllers, {admitted} connected, {challenged} got \
         to the password step, {refused} were refused; {} KiB pushed in all; `peer host` RSS \
         {before} KiB before, {after} KiB after (bound: +{BOUND_KIB} KiB)",
        pushed_total / 1024
    );
    assert!(
        challenged >= 2,
        "the flood did not reach the host's password step"
    );
    assert!(
        after.saturating_sub(before) <= BOUND_KIB,
        "the host grew by {} KiB",
        after.saturating_sub(before)
    );
    assert!(
        child.0.try_wait().unwrap().is_none(),
        "the host process died under the flood"
    );
    drop(held);
}
