//! The real viewer window: `peer connect` (the binary) opens its window on one private Xvfb
//! while an in-process host shares another; the test looks at the window with a screenshot and
//! drives it with xdotool as a user would.

#![cfg(all(unix, not(target_os = "macos")))]

use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use capture::xvfb::{VirtualDisplay, XevWindow};

mod common;
use common::desktop::{BLUE, RED, enigo, paint_halves, screen_host, xvfb};
use common::{LOCAL, start_host, start_rendezvous};

const PASSWORD: &str = "viewer pass 246810";

/// The viewer process, killed if the test fails.
struct Viewer(Child);

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn xdotool(d: &VirtualDisplay, args: &[&str]) {
    let out = d.command("xdotool").args(args).output().expect("xdotool");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_window_shows_the_host_and_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let host_d = xvfb(1280, 720);
    paint_halves(&host_d, dir.path(), 1280, 720);
    // A window on the host that records keys and clicks, in the blue half's lower part.
    let xev = XevWindow::start(&host_d, "400x250+700+420").expect("xev (cargo xtask setup)");
    let view_d = xvfb(1600, 1000);

    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let host = start_host(screen_host(
        &rv,
        &dir.path().join("host"),
        &host_d,
        PASSWORD,
        enigo(&host_d),
    ))
    .await;

    let stats = dir.path().join("stats.json");
    let mut child = view_d
        .command(env!("CARGO_BIN_EXE_peer"))
        .args([
            "connect",
            &host.status().code.expect("registered").to_string(),
        ])
        .args(["--password-stdin", "--rendezvous", &rv.addr.to_string()])
        .args(["--rendezvous-fingerprint", &rv.fingerprint.to_string()])
        .arg("--data-dir")
        .arg(dir.path().join("ctl"))
        .args(["--duration", "60", "--stats-json"])
        .arg(&stats)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start peer connect");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "{PASSWORD}").unwrap();
    }
    let viewer = Viewer(child);

    // The window appears and shows the host's screen: red left, blue right.
    let window = view_d
        .wait_window("^quicdesk", Duration::from_secs(30))
        .expect("the viewer window opens");
    // Where host pixel (x, y) is on the viewer's display (fit-scaled, letterboxed), for the
    // window's current geometry.
    let on_view = |x: f64, y: f64| {
        let (wx, wy, ww, wh) = view_d.window_geometry(&window).unwrap();
        let scale = (f64::from(ww) / 1280.0).min(f64::from(wh) / 720.0);
        let ox = f64::from(wx) + (f64::from(ww) - 1280.0 * scale) / 2.0;
        let oy = f64::from(wy) + (f64::from(wh) - 720.0 * scale) / 2.0;
        (
            (ox + x * scale).round() as i64,
            (oy + y * scale).round() as i64,
        )
    };
    let shows_host = || -> Result<(), String> {
        let (w, _, rgb) = view_d.screenshot_rgb().map_err(|e| e.to_string())?;
        let px = |(x, y): (i64, i64)| {
            let at = (y as usize * w as usize + x as usize) * 3;
            [rgb[at], rgb[at + 1], rgb[at + 2]]
        };
        let got = [px(on_view(300.0, 200.0)), px(on_view(1000.0, 150.0))];
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 16);
        if close(got[0], RED) && close(got[1], BLUE) {
            Ok(())
        } else {
            Err(format!("window shows {got:?}, expected {:?}", [RED, BLUE]))
        }
    };
    for (step, what) in [
        (0, "the window should show the host's screen"),
        // Resized to another shape, it still shows the whole screen, letterboxed.
        (1, "after a resize to 700x600"),
    ] {
        if step == 1 {
            xdotool(&view_d, &["windowsize", "--sync", &window, "700", "600"]);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = shows_host() {
            assert!(Instant::now() < deadline, "{what}: {e}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Pointer and keyboard through the window reach the host's X server.
    xdotool(&view_d, &["windowfocus", "--sync", &window]);
    let (vx, vy) = on_view(900.0, 540.0);
    xdotool(&view_d, &["mousemove", &vx.to_string(), &vy.to_string()]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (px, py) = host_d.pointer().unwrap();
        if px.abs_diff(900) <= 3 && py.abs_diff(540) <= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the host's pointer is at {px},{py}, not near 900,540"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    xdotool(&view_d, &["click", "1"]);
    xdotool(&view_d, &["type", "--delay", "30", "Hello, quicdesk"]);
    xdotool(&view_d, &["key", "Return"]);
    // Blocking: off the runtime's worker, which the host in this process needs.
    tokio::task::block_in_place(|| {
        xev.wait_for("the click and the typing", Duration::from_secs(15), |l| {
            l.count("ButtonRelease") >= 1
                && l.typed().starts_with("Hello, quicdesk")
                && l.0.contains("Return)")
                && l.count("KeyPress") == l.count("KeyRelease")
        })
    })
    .unwrap_or_else(|e| panic!("{e}"));

    // Ctrl-C/SIGTERM ends the session cleanly: exit 0 and a stats file.
    let mut viewer = viewer;
    let pid = viewer.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = viewer.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "viewer exit status {status}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("stats written at exit")).unwrap();
    assert!(report["frames_decoded"].as_u64().unwrap() >= 1, "{report}");

    let log = tokio::task::block_in_place(|| xev.finish()).unwrap();
    assert_eq!(log.count("ButtonPress"), 1, "one click:\n{}", log.0);
    assert!(
        log.typed().starts_with("Hello, quicdesk"),
        "xev on the host saw {:?}:\n{}",
        log.typed(),
        log.0
    );
    assert_eq!(log.count("KeyPress"), log.count("KeyRelease"), "{}", log.0);
    host.shutdown().await;
}
