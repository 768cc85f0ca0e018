//! The real viewer window: `peer connect` (the binary) opens its window on one private Xvfb
//! while an in-process host shares another; the test looks at the window with a screenshot and
//! drives it with xdotool as a user would.

#![cfg(all(unix, not(target_os = "macos")))]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use capture::x11::X11Options;
use capture::xvfb::{VirtualDisplay, XevWindow};
use peer::host::{self, HostConfig, Source};

mod common;
use common::{LOCAL, start_host, start_rendezvous};

const PASSWORD: &str = "246810";
const RED: [u8; 3] = [208, 48, 32];
const BLUE: [u8; 3] = [32, 96, 208];

fn xvfb(w: u32, h: u32) -> VirtualDisplay {
    VirtualDisplay::start(w, h)
        .unwrap_or_else(|e| panic!("this test needs Xvfb (run `cargo xtask setup`): {e}"))
}

/// Left half red, right half blue, as the root window's background.
fn paint_halves(d: &VirtualDisplay, png: &std::path::Path) {
    let png = png.to_str().unwrap();
    let out = Command::new("convert")
        .args(["-size", "1280x720", "xc:#d03020", "-fill", "#2060d0"])
        .args(["-draw", "rectangle 640,0 1279,719", png])
        .output()
        .expect("ImageMagick's convert is missing (run `cargo xtask setup`)");
    assert!(out.status.success(), "convert: {out:?}");
    // Exits with status 1 even when it worked; the screenshot is the check.
    d.command("display")
        .args(["-window", "root", png])
        .status()
        .expect("ImageMagick's display is missing (run `cargo xtask setup`)");
}

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
    paint_halves(&host_d, &dir.path().join("halves.png"));
    // A window on the host that records keys and clicks, in the blue half's lower part.
    let xev = XevWindow::start(&host_d, "400x250+700+420").expect("xev (cargo xtask setup)");
    let view_d = xvfb(1600, 1000);

    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let name = host_d.name().to_owned();
    let host = start_host(HostConfig {
        rendezvous: rv.addr,
        rendezvous_fingerprint: rv.fingerprint,
        data_dir: dir.path().join("host"),
        bind: LOCAL,
        source: Source::Screen(X11Options {
            display: Some(name.clone()),
            monitor: None,
            cursor: true,
        }),
        password: Some(PASSWORD.into()),
        code: None,
        fps: 30,
        bitrate_bps: 3_000_000,
        content: None,
        input: Arc::new(move |area: &host::ScreenArea| {
            let mut b = input::EnigoBackend::new(Some(&name))?;
            b.set_origin(area.x, area.y);
            Ok(Box::new(b) as Box<dyn input::InputBackend>)
        }),
    })
    .await;

    let stats = dir.path().join("stats.json");
    let viewer = Viewer(
        view_d
            .command(env!("CARGO_BIN_EXE_peer"))
            .args(["connect", &host.status().code.to_string()])
            .args(["--password", PASSWORD, "--rendezvous", &rv.addr.to_string()])
            .args(["--rendezvous-fingerprint", &rv.fingerprint.to_string()])
            .arg("--data-dir")
            .arg(dir.path().join("ctl"))
            .args(["--duration", "60", "--stats-json"])
            .arg(&stats)
            .stdout(Stdio::null())
            .spawn()
            .expect("start peer connect"),
    );

    // The window appears and shows the host's screen: red left, blue right.
    let window = view_d
        .wait_window("^quicdesk", Duration::from_secs(30))
        .expect("the viewer window opens");
    let (wx, wy, ww, wh) = view_d.window_geometry(&window).unwrap();
    // Where host pixel (x, y) is on the viewer's display (fit-scaled, letterboxed).
    let scale = (f64::from(ww) / 1280.0).min(f64::from(wh) / 720.0);
    let (ox, oy) = (
        (f64::from(ww) - 1280.0 * scale) / 2.0,
        (f64::from(wh) - 720.0 * scale) / 2.0,
    );
    let on_view = |x: f64, y: f64| {
        (
            (f64::from(wx) + ox + x * scale).round() as i64,
            (f64::from(wy) + oy + y * scale).round() as i64,
        )
    };
    let shows = |want: [[u8; 3]; 2]| -> Result<(), String> {
        let (w, _, rgb) = view_d.screenshot_rgb().map_err(|e| e.to_string())?;
        let px = |(x, y): (i64, i64)| {
            let at = (y as usize * w as usize + x as usize) * 3;
            [rgb[at], rgb[at + 1], rgb[at + 2]]
        };
        let got = [px(on_view(300.0, 200.0)), px(on_view(1000.0, 150.0))];
        let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 16);
        if close(got[0], want[0]) && close(got[1], want[1]) {
            Ok(())
        } else {
            Err(format!("window shows {got:?}, expected {want:?}"))
        }
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Err(e) = shows([RED, BLUE]) {
        assert!(Instant::now() < deadline, "{e}");
        tokio::time::sleep(Duration::from_millis(250)).await;
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
    tokio::time::sleep(Duration::from_millis(800)).await;

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

    let log = xev.finish().unwrap();
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
