//! The real desktop: a host sharing a private Xvfb display, a controller on loopback; switching
//! between two RandR monitors mid-session.

#![cfg(all(unix, not(target_os = "macos")))]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capture::xvfb::{VirtualDisplay, XevWindow};
use input::{BoundedText, InputEvent, Key, MouseButton, NormalizedPoint};
use peer::controller::{self, ConnectConfig, FrameMeta, Hooks, HostNotice, Request};
use peer::host::{HostHandle, InputFactory, Source};

mod common;
use common::desktop::{BLUE, RED, discard, enigo, hex, paint_halves, screen_host, xvfb};
use common::{LOCAL, Rv, connect_config, show_logs_on_failure, start_host, start_rendezvous};

const PASSWORD: &str = "desktop pass 135790";
const GREEN: [u8; 3] = [40, 200, 60];

/// Runs an X client to completion on `d`; panics with its output if it fails.
fn x_run(d: &VirtualDisplay, program: &str, args: &[&str]) -> String {
    let out = d
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is missing (run `cargo xtask setup`): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// RGB of the decoded pixel at (x, y).
fn rgb(f: &codec::DecodedFrame, x: u32, y: u32) -> [u8; 3] {
    let at = (y as usize * f.width as usize + x as usize) * 4;
    [f.rgba[at], f.rgba[at + 1], f.rgba[at + 2]]
}

/// A rendezvous in `dir` and a host on it sharing `d` (the whole screen, or one `monitor` of
/// it) with [`PASSWORD`], performing the input it gets with `input`; and the settings of a
/// controller of that host, its data in `dir`/ctl.
async fn share(
    dir: &Path,
    d: &VirtualDisplay,
    monitor: Option<usize>,
    input: InputFactory,
) -> (Rv, HostHandle, ConnectConfig) {
    let rv = start_rendezvous(&dir.join("rv"), LOCAL, Duration::from_secs(3600));
    let mut cfg = screen_host(&rv, &dir.join("host"), d, PASSWORD, input);
    if let Source::Screen(screen) = &mut cfg.source {
        screen.monitor = monitor;
    }
    let host = start_host(cfg).await;
    let code = host.status().code.expect("registered");
    let ctl = connect_config(&rv, code, PASSWORD, &dir.join("ctl"));
    (rv, host, ctl)
}

fn close(a: [u8; 3], b: [u8; 3]) -> bool {
    a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_sees_the_x_screen_and_a_still_screen_costs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    paint_halves(&d, dir.path(), 1280, 720);
    let (_rv, host, mut cfg) = share(dir.path(), &d, None, discard()).await;

    /// Frame number, left sample, right sample.
    type Seen = (u64, [u8; 3], [u8; 3]);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let on_frame = {
        let seen = seen.clone();
        move |meta: &FrameMeta, f: &codec::DecodedFrame| {
            assert_eq!((f.width, f.height), (1280, 720));
            seen.lock()
                .unwrap()
                .push((meta.frame_no, rgb(f, 300, 500), rgb(f, 1000, 500)));
        }
    };
    cfg.duration = Some(Duration::from_secs(4));
    let session = tokio::spawn(controller::run(
        cfg,
        Hooks {
            on_frame: Some(Box::new(on_frame)),
            ..Default::default()
        },
    ));
    // The first frame, then two seconds of a still screen (a measuring window, not a wait for
    // something to happen), then a change.
    until("a decoded frame", Duration::from_secs(10), || {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still_frames = seen.lock().unwrap().len();
    x_run(&d, "xsetroot", &["-solid", &hex(GREEN)]);
    let report = session.await.unwrap().expect("session runs");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let (_, left, right) = seen.first().copied().expect("no frame decoded");
    assert!(
        close(left, RED),
        "left half should be red, decoded {left:?}"
    );
    assert!(
        close(right, BLUE),
        "right half should be blue, decoded {right:?}"
    );
    assert!(
        (1..=3).contains(&still_frames),
        "a still screen should send (almost) no frames; sent {still_frames} in 2 s"
    );
    let (_, left, right) = seen.last().copied().unwrap();
    assert!(
        close(left, GREEN) && close(right, GREEN),
        "the change should arrive: decoded {left:?} {right:?}"
    );
    assert_eq!(report.frames_decoded as usize, seen.len());
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_pointer_clicks_and_typing_reach_the_x_server() {
    show_logs_on_failure();
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    let xev = XevWindow::start(&d, "600x400+0+0").expect("xev (cargo xtask setup, x11-utils)");
    let (_rv, host, mut cfg) = share(dir.path(), &d, None, enigo(&d)).await;

    let (tx, rx) = tokio::sync::mpsc::channel(64);
    cfg.duration = Some(Duration::from_secs(10));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let session = tokio::spawn(controller::run(
        cfg,
        Hooks {
            input: Some(rx),
            stop: Some(stop_rx),
            ..Default::default()
        },
    ));
    let send = |e: InputEvent| {
        let tx = tx.clone();
        async move { tx.send(e).await.unwrap() }
    };
    // A quarter across, half down: pixel (320, 360) of the 1280x720 screen.
    send(InputEvent::MouseMove {
        pos: NormalizedPoint::from_frame(320.0, 360.0, 1280, 720),
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while d.pointer().unwrap() != (320, 360) {
        assert!(
            std::time::Instant::now() < deadline,
            "the pointer never reached 320,360: at {:?}",
            d.pointer()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Into xev's window, click, type with physical keys and as text.
    send(InputEvent::MouseMove {
        pos: NormalizedPoint::from_frame(200.0, 150.0, 1280, 720),
    })
    .await;
    for pressed in [true, false] {
        send(InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed,
        })
        .await;
    }
    for k in [Key::KeyO, Key::KeyK] {
        send(InputEvent::Key {
            key: k,
            pressed: true,
        })
        .await;
        send(InputEvent::Key {
            key: k,
            pressed: false,
        })
        .await;
    }
    send(InputEvent::Text {
        text: BoundedText::new(" grüße, quicdesk!").unwrap(),
    })
    .await;
    // Leave Shift held: the session's end must release it.
    send(InputEvent::Key {
        key: Key::ShiftLeft,
        pressed: true,
    })
    .await;
    let wait = |what: &'static str, done: fn(&capture::xvfb::XevLog) -> bool| {
        // Blocking: off the runtime's worker, which the host in this process needs.
        tokio::task::block_in_place(|| xev.wait_for(what, Duration::from_secs(10), done))
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let keymap = || d.keymap().expect("xmodmap");
    tokio::task::block_in_place(|| {
        xev.wait_for("the typing and Shift held", Duration::from_secs(10), |l| {
            // The cheap check first: the server's keymap (an xmodmap process) is read only
            // once every key but the held Shift came back up.
            l.count("KeyPress") == l.count("KeyRelease") + 1
                && l.typed_on(&keymap()) == "ok grüße, quicdesk!"
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));
    stop_tx.send(()).unwrap();
    let report = session.await.unwrap().expect("session runs");
    assert_eq!(report.input_events_sent, 10);
    wait("Shift released at the session's end", |l| {
        l.count("KeyPress") == l.count("KeyRelease")
    });

    let log = tokio::task::block_in_place(|| xev.finish()).unwrap();
    assert_eq!(log.count("ButtonPress"), 1, "one click:\n{}", log.0);
    assert_eq!(
        log.typed_on(&keymap()),
        "ok grüße, quicdesk!",
        "xev saw:\n{}",
        log.0
    );
    assert_eq!(
        log.count("KeyPress"),
        log.count("KeyRelease"),
        "every key released at the end:\n{}",
        log.0
    );
    host.shutdown().await;
}

/// Waits until `done` holds, polling; panics with `what` after `within`.
async fn until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_switches_monitors_and_video_and_input_follow() {
    show_logs_on_failure();
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    // Two RandR monitors of different sizes side by side.
    let (all, [big, small]) = d
        .set_monitors(VirtualDisplay::TWO_MONITORS)
        .unwrap_or_else(|e| panic!("xrandr (run `cargo xtask setup`): {e}"));
    let (big, small) = (big.index, small.index);
    let (_rv, host, cfg) = share(dir.path(), &d, Some(big), enigo(&d)).await;

    // Size and key flag of each decoded frame, in order.
    let frames: Arc<Mutex<Vec<(u32, u32, bool)>>> = Arc::default();
    let notices: Arc<Mutex<Vec<HostNotice>>> = Arc::default();
    let (requests, requests_rx) = tokio::sync::mpsc::channel(4);
    let (input, input_rx) = tokio::sync::mpsc::channel(4);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel();
    let hooks = {
        let (frames, notices) = (frames.clone(), notices.clone());
        Hooks {
            on_frame: Some(Box::new(
                move |meta: &FrameMeta, f: &codec::DecodedFrame| {
                    frames
                        .lock()
                        .unwrap()
                        .push((f.width, f.height, meta.key_frame));
                },
            )),
            on_notice: Some(Box::new(move |n: &HostNotice| {
                notices.lock().unwrap().push(n.clone());
            })),
            requests: Some(requests_rx),
            input: Some(input_rx),
            stop: Some(stop_rx),
            ..Default::default()
        }
    };
    let session = tokio::spawn(controller::run(cfg, hooks));
    let seen = |w, h| frames.lock().unwrap().iter().any(|f| (f.0, f.1) == (w, h));
    until(
        "a frame of the big monitor",
        Duration::from_secs(10),
        || seen(800, 600),
    )
    .await;

    requests
        .send(Request::SwitchMonitor(small as u32))
        .await
        .unwrap();
    until(
        "a frame of the small monitor",
        Duration::from_secs(10),
        || seen(480, 360),
    )
    .await;
    let want = HostNotice::Screen(proto::session::Screen {
        width: 480,
        height: 360,
        monitor: small as u32,
        monitors: all.len() as u32,
    });
    until("the host's notice", Duration::from_secs(5), || {
        notices.lock().unwrap().contains(&want)
    })
    .await;
    {
        let frames = frames.lock().unwrap();
        let first_small = frames
            .iter()
            .position(|f| (f.0, f.1) == (480, 360))
            .unwrap();
        assert!(
            frames[first_small].2,
            "the new monitor starts with a key frame"
        );
        assert!(
            frames[first_small..]
                .iter()
                .all(|f| (f.0, f.1) == (480, 360)),
            "{frames:?}"
        );
    }
    // Input follows: the middle of the small monitor's picture is its middle on the desktop.
    input
        .send(InputEvent::MouseMove {
            pos: NormalizedPoint::from_frame(240.0, 180.0, 480, 360),
        })
        .await
        .unwrap();
    until(
        "the pointer at the small monitor's middle",
        Duration::from_secs(8),
        || d.pointer().unwrap() == (800 + 240, 180),
    )
    .await;

    // An index the host does not have: an error for the user, and the stream goes on.
    let bad = all.len() as u32;
    requests.send(Request::SwitchMonitor(bad)).await.unwrap();
    until("the refusal", Duration::from_secs(5), || {
        notices.lock().unwrap().iter().any(|n| {
            matches!(n, HostNotice::SwitchFailed { index, reason }
                if *index == bad && reason.contains(&format!("no monitor {bad}")))
        })
    })
    .await;
    let before = frames.lock().unwrap().len();
    x_run(&d, "xsetroot", &["-solid", &hex(GREEN)]);
    until("a frame after the refusal", Duration::from_secs(5), || {
        frames.lock().unwrap().len() > before
    })
    .await;
    assert_eq!(
        frames.lock().unwrap().last().map(|f| (f.0, f.1)),
        Some((480, 360)),
        "still the small monitor"
    );
    stop_tx.send(()).unwrap();
    let report = session.await.unwrap().expect("session runs");
    assert_eq!(report.decode_errors, 0, "{report:?}");
    host.shutdown().await;
}
