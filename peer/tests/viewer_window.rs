//! The viewer window on its own, fed through its sink as the controller's threads feed it: it
//! shows whole frames fit-scaled and letterboxed (up, 1:1 and down), forwards pointer, buttons,
//! wheel and keys mapped through the letterbox, releases what it holds when it closes, and ends
//! both ways (window closed → `stop` fires; session ended → `run` returns).
//!
//! winit takes the display from `DISPLAY`, and setting environment variables is `unsafe` in
//! edition 2024, so each test runs the window in a child process: the test binary itself, run
//! again for the same test with `DISPLAY` pointing at a private Xvfb and [`CHILD_ENV`] marking
//! its role. The child takes commands on stdin (`frame W H`, `stream W H N`, `ended`) and reports
//! on stdout, one line each prefixed with [`OUT`]: every input event the window forwards,
//! `stop` when the stop signal fired, `returned …` when `run` returned. The parent looks at the
//! window with screenshots, drives it with xdotool as a user would, and reads those lines.
//!
//! Size: over 600 lines because one real window on Xvfb is set up once and driven through every
//! check in order (screenshots, xdotool), with the helpers that read it.

#![cfg(all(unix, not(target_os = "macos")))]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use capture::xvfb::VirtualDisplay;
use input::InputEvent;
use peer::viewer::{Viewer, ViewerOptions, ViewerSink};

/// Set in the child's environment; its value is the test the child runs.
const CHILD_ENV: &str = "QUICDESK_VIEWER_WINDOW_CHILD";
/// Prefix of the child's report lines (libtest prints its own lines around them).
const OUT: &str = "viewer-child: ";
const CODE: &str = "ISR-1234567-8";

const RED: [u8; 3] = [255, 0, 0];
const BLUE: [u8; 3] = [0, 0, 255];
const GREEN: [u8; 3] = [0, 255, 0];
const WHITE: [u8; 3] = [255, 255, 255];
const BLACK: [u8; 3] = [0, 0, 0];
/// The test picture's quadrants: top-left, top-right, bottom-left, bottom-right. A cropped
/// picture (one that is not scaled down to fit) shows fewer than four.
const QUADRANTS: [[u8; 3]; 4] = [RED, BLUE, GREEN, WHITE];

#[test]
fn window_fits_frames_forwards_input_and_closes_cleanly() {
    if child_role("window_fits_frames_forwards_input_and_closes_cleanly") {
        return;
    }
    let display = xvfb();
    let mut child = ViewerChild::spawn(
        &display,
        "window_fits_frames_forwards_input_and_closes_cleanly",
    );

    // 1:1 — a 640x360 frame fits in 80% of the 1280x720 monitor, so the window takes its size.
    child.send("frame 640 360");
    let id = display
        .wait_window("^quicdesk", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the viewer window never appeared: {e}\n{}", child.log()));
    let title = window_name(&display, &id);
    assert!(
        title.starts_with(&format!("quicdesk · {CODE}")),
        "title {title:?}"
    );
    wait_for(&mut child, "the 640x360 frame shown 1:1", || {
        let geometry = display.window_geometry(&id).map_err(|e| e.to_string())?;
        if (geometry.2, geometry.3) != (640, 360) {
            return Err(format!(
                "window is {}x{}, not 640x360",
                geometry.2, geometry.3
            ));
        }
        shows(&display, &id, (640, 360))
    });

    // Down — the host switches to 1920x1080: the buffer follows and the whole screen is shown
    // shrunk into the 640x360 window, not its top-left corner.
    child.send("frame 1920 1080");
    wait_for(&mut child, "the 1920x1080 frame scaled down", || {
        shows(&display, &id, (1920, 1080))
    });

    // Letterbox — a window of another shape keeps the aspect ratio, with black bars.
    xdotool(&display, &["windowsize", "--sync", &id, "800", "300"]);
    wait_for(&mut child, "the frame pillarboxed in 800x300", || {
        let (_, _, w, h) = display.window_geometry(&id).map_err(|e| e.to_string())?;
        if (w, h) != (800, 300) {
            return Err(format!("window is {w}x{h}, not 800x300"));
        }
        shows(&display, &id, (1920, 1080))
    });
    xdotool(&display, &["windowsize", "--sync", &id, "600", "500"]);
    wait_for(&mut child, "the frame letterboxed in 600x500", || {
        shows(&display, &id, (1920, 1080))
    });

    // A stream faster than the renderer: frames are coalesced, and the last one is shown.
    let cpu_before = cpu_time(&child.process);
    let started = Instant::now();
    child.send("stream 1920 1080 60");
    // ...while the window changes size under it, as when a user drags its edge: drawing never
    // waits for the surface to catch up (pixels' render loop would spin here for ever).
    for (w, h) in [(700, 400), (500, 600), (900, 300), (640, 480), (600, 500)] {
        xdotool(
            &display,
            &["windowsize", &id, &w.to_string(), &h.to_string()],
        );
        std::thread::sleep(Duration::from_millis(60));
    }
    child.expect_line("streamed", Duration::from_secs(30));
    let cpu = cpu_time(&child.process).saturating_sub(cpu_before);
    eprintln!(
        "viewer: 60 frames of 1920x1080 in {:?} (window ~600x500, resized meanwhile): {:.1} ms CPU per frame",
        started.elapsed(),
        cpu.as_secs_f64() * 1000.0 / 60.0
    );
    wait_for(&mut child, "the last streamed frame", || {
        shows(&display, &id, (1920, 1080))
    });
    let want = format!("quicdesk · {CODE} · connected · direct · 60.0 fps · 23 ms");
    wait_for(&mut child, "the stats in the title", || {
        let title = window_name(&display, &id);
        (title == want).then_some(()).ok_or(title)
    });

    // Input. The window is 600x500; the 1920x1080 picture is 600x337.5 at y 81.25.
    xdotool(&display, &["windowfocus", "--sync", &id]);
    let (wx, wy, ww, wh) = display.window_geometry(&id).unwrap();
    let fit = Fit::new((ww, wh), (1920, 1080));
    let at = |fx: f64, fy: f64| {
        let (x, y) = fit.to_window(fx, fy);
        (
            (f64::from(wx) + x).round().to_string(),
            (f64::from(wy) + y).round().to_string(),
        )
    };
    let (x, y) = at(1440.0, 270.0);
    xdotool(&display, &["mousemove", "--sync", &x, &y]);
    child.expect_move((0.75, 0.25), "pointer over frame pixel (1440, 270)");
    // In the top bar, above the picture: clamped to its top edge.
    let (x, _) = at(480.0, 0.0);
    let top = (f64::from(wy) + 10.0).to_string();
    xdotool(&display, &["mousemove", "--sync", &x, &top]);
    child.expect_move((0.25, 0.0), "pointer in the bar above the picture");

    xdotool(&display, &["click", "1"]);
    child.expect_line("event button Left true", Duration::from_secs(10));
    child.expect_line("event button Left false", Duration::from_secs(10));
    xdotool(&display, &["click", "5"]); // wheel down, one notch
    child.expect_line("event wheel 0 1", Duration::from_secs(10));
    xdotool(&display, &["type", "--delay", "30", "hi!"]);
    for t in ["h", "i", "!"] {
        child.expect_line(&format!("event text {t:?}"), Duration::from_secs(10));
    }
    // Ctrl+C goes as keys (xdotool releases Ctrl first); keys without text go as keys.
    xdotool(&display, &["key", "ctrl+c"]);
    child.expect_line("event key ControlLeft true", Duration::from_secs(10));
    child.expect_line("event key KeyC true", Duration::from_secs(10));
    child.expect_lines(&["event key ControlLeft false", "event key KeyC false"]);
    xdotool(&display, &["key", "Return", "Left", "F5", "Tab"]);
    for key in ["Enter", "ArrowLeft", "F5", "Tab"] {
        child.expect_line(&format!("event key {key} true"), Duration::from_secs(10));
        child.expect_line(&format!("event key {key} false"), Duration::from_secs(10));
    }

    // Hold Shift and the left button, then close the window: both are released, in reverse
    // order, then the session is told to stop and run returns Ok.
    xdotool(&display, &["keydown", "shift"]);
    child.expect_line("event key ShiftLeft true", Duration::from_secs(10));
    xdotool(&display, &["mousedown", "1"]);
    child.expect_line("event button Left true", Duration::from_secs(10));
    close_window(&display, &id);
    for line in [
        "event button Left false",
        "event key ShiftLeft false",
        "stop",
        "returned Ok(())",
    ] {
        child.expect_line(line, Duration::from_secs(10));
    }
    child.expect_success(Duration::from_secs(10));
    // Whatever xdotool still holds on the display is its own business; the display goes away.
}

#[test]
fn window_closes_when_the_session_ends() {
    if child_role("window_closes_when_the_session_ends") {
        return;
    }
    let display = xvfb();
    let mut child = ViewerChild::spawn(&display, "window_closes_when_the_session_ends");
    child.send("frame 640 360");
    let id = display
        .wait_window("^quicdesk", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("the viewer window never appeared: {e}\n{}", child.log()));
    wait_for(&mut child, "the frame shown", || {
        shows(&display, &id, (640, 360))
    });
    child.send("ended");
    child.expect_line("returned Ok(())", Duration::from_secs(10));
    child.expect_success(Duration::from_secs(10));
    let gone = display.wait_window("^quicdesk", Duration::from_millis(200));
    assert!(
        gone.is_err(),
        "the window is still there after the session ended"
    );
}

#[test]
fn without_a_display_the_viewer_says_so() {
    if child_role("without_a_display_the_viewer_says_so") {
        return;
    }
    // A display nobody serves: X11 is chosen (DISPLAY is set) and cannot connect.
    let mut child = ViewerChild::spawn_on(":65000", "without_a_display_the_viewer_says_so");
    let error = child.expect_line("error", Duration::from_secs(30));
    assert!(
        error.contains("cannot open a window: no X display")
            && error.contains("set DISPLAY, or use --headless"),
        "{error}"
    );
    child.expect_success(Duration::from_secs(10));
}

#[test]
fn without_a_gpu_adapter_the_viewer_says_so() {
    if child_role("without_a_gpu_adapter_the_viewer_says_so") {
        return;
    }
    let display = xvfb();
    // wgpu limited to a backend Linux does not have: no adapter can draw in the window.
    let mut child = ViewerChild::spawn_with(
        display.name(),
        "without_a_gpu_adapter_the_viewer_says_so",
        &[("WGPU_BACKEND", "dx12")],
    );
    child.expect_line("stop", Duration::from_secs(30));
    let error = child.expect_line("returned", Duration::from_secs(10));
    assert!(
        error.contains("cannot draw in the window: no usable GPU adapter")
            && error.contains("install mesa-vulkan-drivers (cargo xtask setup)"),
        "{error}"
    );
    child.expect_success(Duration::from_secs(10));
}

fn xvfb() -> VirtualDisplay {
    VirtualDisplay::start(1280, 720).unwrap_or_else(|e| {
        panic!("this test needs Xvfb to open a real window (run `cargo xtask setup`): {e}")
    })
}

// ---------------------------------------------------------------------------------------------
// The child: the window itself.

/// In the child process (marked by [`CHILD_ENV`] naming `test`), runs the window and returns
/// true; in the parent returns false.
fn child_role(test: &str) -> bool {
    if std::env::var(CHILD_ENV).ok().as_deref() != Some(test) {
        return false;
    }
    let made = Viewer::new(ViewerOptions {
        title: CODE.into(),
        any_thread: true, // libtest runs each test on a thread of its own
    });
    let (viewer, sink) = match made {
        Ok(made) => made,
        Err(e) => {
            report(&format!("error {e}"));
            return true;
        }
    };
    sink.state("connected");
    let (input_tx, mut input_rx) = tokio::sync::mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // One thread reports both, events first: the window queues its releases before it fires
    // `stop`, so they must be reported before "stop".
    let reporter = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        rt.block_on(async move {
            let mut stop_rx = stop_rx;
            let mut stop_seen = false;
            loop {
                tokio::select! {
                    biased;
                    event = input_rx.recv() => match event {
                        Some(event) => report(&format!("event {}", describe(&event))),
                        None => {
                            // The window is gone; its stop may not have been polled yet.
                            if !stop_seen && stop_rx.try_recv().is_ok() {
                                report("stop");
                            }
                            break;
                        }
                    },
                    stopped = &mut stop_rx, if !stop_seen => {
                        stop_seen = true;
                        if stopped.is_ok() {
                            report("stop");
                        }
                    }
                }
            }
        });
    });
    std::thread::spawn(move || obey(&sink));
    let result = viewer.run(input_tx, stop_tx);
    // The window's input sender is gone now: the reporter finishes.
    let _ = reporter.join();
    match result {
        Ok(()) => report("returned Ok(())"),
        Err(e) => report(&format!("returned error: {e}")),
    }
    true
}

fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{OUT}{line}");
    let _ = out.flush();
}

/// Follows the parent's commands on stdin until it closes.
fn obey(sink: &ViewerSink) {
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { return };
        let words: Vec<&str> = line.split_whitespace().collect();
        let num = |i: usize| -> u32 { words[i].parse().expect("a number") };
        match words.first().copied() {
            Some("frame") => sink.frame(&pattern(num(1), num(2))),
            Some("stream") => {
                let frame = pattern(num(1), num(2));
                let every = Duration::from_secs(1) / 60;
                let start = Instant::now();
                for i in 0..num(3) {
                    sink.frame(&frame);
                    sink.tick(&peer::stats::Tick {
                        fps: 60.0,
                        mbps: 5.0,
                        latency_ms_p50: Some(23.4),
                        latency_ms_p95: Some(40.0),
                        frames_decoded: u64::from(i),
                        path: peer::stats::PathKind::Direct,
                    });
                    std::thread::sleep(
                        (start + every * (i + 1)).saturating_duration_since(Instant::now()),
                    );
                }
                report("streamed");
            }
            Some("ended") => sink.ended(Some("the test is over".into())),
            _ => panic!("unknown command {line:?}"),
        }
    }
}

/// A `width` x `height` frame in four [`QUADRANTS`].
fn pattern(width: u32, height: u32) -> codec::DecodedFrame {
    let mut rgba = Vec::with_capacity(width as usize * height as usize * 4);
    for y in 0..height {
        for x in 0..width {
            let q = usize::from(y >= height / 2) * 2 + usize::from(x >= width / 2);
            rgba.extend_from_slice(&QUADRANTS[q]);
            rgba.push(255);
        }
    }
    codec::DecodedFrame {
        width,
        height,
        rgba,
    }
}

fn describe(event: &InputEvent) -> String {
    match event {
        InputEvent::MouseMove { pos } => format!("move {} {}", pos.x(), pos.y()),
        InputEvent::MouseButton { button, pressed } => format!("button {button:?} {pressed}"),
        InputEvent::Wheel { dx, dy } => format!("wheel {dx} {dy}"),
        InputEvent::Key { key, pressed } => format!("key {key} {pressed}"),
        InputEvent::Text { text } => format!("text {:?}", text.as_str()),
        other => format!("other {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: looks at the window and drives it.

/// The child process, killed if the test fails.
struct ViewerChild {
    process: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// Every report line read so far, for failure messages.
    seen: Vec<String>,
}

impl ViewerChild {
    fn spawn(display: &VirtualDisplay, test: &str) -> Self {
        Self::spawn_on(display.name(), test)
    }

    fn spawn_on(display: &str, test: &str) -> Self {
        Self::spawn_with(display, test, &[])
    }

    /// Runs `test`'s child role with `DISPLAY=display` and `env` set.
    fn spawn_with(display: &str, test: &str, env: &[(&str, &str)]) -> Self {
        let exe = std::env::current_exe().expect("the test binary's path");
        let mut process = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .envs(env.iter().copied())
            .env("DISPLAY", display)
            .env(CHILD_ENV, test)
            .env_remove("WAYLAND_DISPLAY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run the test binary again as the window's process");
        let stdout = process.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                // libtest's "test NAME ... " has no line break: a report may follow it.
                if let Some((_, report)) = line.split_once(OUT) {
                    if tx.send(report.to_owned()).is_err() {
                        return;
                    }
                } else if !line.trim().is_empty() {
                    eprintln!("child: {line}");
                }
            }
        });
        Self {
            stdin: process.stdin.take(),
            process,
            lines,
            seen: Vec::new(),
        }
    }

    fn send(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("the viewer process is gone ({e})\n{}", self.log()));
    }

    /// Reads report lines until one starts with `prefix`; fails after `within`.
    fn expect_line(&mut self, prefix: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!("no {prefix:?} from the viewer ({e})\n{}", self.log()),
            }
        }
    }

    /// Waits for the child to exit, successfully.
    fn expect_success(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            match self.process.try_wait().expect("child status") {
                Some(status) => {
                    assert!(
                        status.success(),
                        "viewer exited with {status}\n{}",
                        self.log()
                    );
                    return;
                }
                None if Instant::now() > deadline => {
                    panic!("the viewer did not exit within {within:?}\n{}", self.log())
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// Reads report lines until it has seen all of `lines`, in any order.
    fn expect_lines(&mut self, lines: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut missing: Vec<&str> = lines.to_vec();
        while !missing.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    missing.retain(|&m| m != line);
                    self.seen.push(line);
                }
                Err(e) => panic!("no {missing:?} from the viewer ({e})\n{}", self.log()),
            }
        }
    }

    /// Reads report lines until a pointer move to about `want` (fractions of the frame).
    fn expect_move(&mut self, want: (f64, f64), what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let near = |got: u16, want: f64| (f64::from(got) - want * 65535.0).abs() < 300.0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.expect_line("event move", left);
            let (x, y) = parse_move(&line);
            if near(x, want.0) && near(y, want.1) {
                return;
            }
            if Instant::now() > deadline {
                panic!("{what}: sent {line:?}, expected about {want:?} of the frame");
            }
        }
    }

    fn log(&mut self) -> String {
        self.seen.extend(self.lines.try_iter());
        format!("viewer reported:\n  {}", self.seen.join("\n  "))
    }
}

impl Drop for ViewerChild {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Retries `check` for up to 20 s.
fn wait_for(child: &mut ViewerChild, what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match check() {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                panic!("never saw {what}: {e}\n{}", child.log())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Where a frame sits in a window when scaled to fit, aspect kept, centred.
#[derive(Debug, Clone, Copy)]
struct Fit {
    scale: f64,
    left: f64,
    top: f64,
}

impl Fit {
    fn new((ww, wh): (u32, u32), (fw, fh): (u32, u32)) -> Self {
        let (ww, wh, fw, fh) = (f64::from(ww), f64::from(wh), f64::from(fw), f64::from(fh));
        let scale = (ww / fw).min(wh / fh);
        Self {
            scale,
            left: (ww - fw * scale) / 2.0,
            top: (wh - fh * scale) / 2.0,
        }
    }

    fn to_window(self, x: f64, y: f64) -> (f64, f64) {
        (self.left + x * self.scale, self.top + y * self.scale)
    }
}

/// Whether window `id` shows a `frame`-sized [`pattern`] fit-scaled: each quadrant's centre
/// has its colour, and the bars (if there are any) are black.
fn shows(display: &VirtualDisplay, id: &str, frame: (u32, u32)) -> Result<(), String> {
    let (wx, wy, ww, wh) = display.window_geometry(id).map_err(|e| e.to_string())?;
    let fit = Fit::new((ww, wh), frame);
    let (sw, sh, rgb) = display.screenshot_rgb().map_err(|e| e.to_string())?;
    let pixel = |(x, y): (f64, f64)| -> Result<[u8; 3], String> {
        let (x, y) = (f64::from(wx) + x, f64::from(wy) + y);
        if x < 0.0 || y < 0.0 || x >= f64::from(sw) || y >= f64::from(sh) {
            return Err(format!("({x}, {y}) is off the screen"));
        }
        let at = (y as usize * sw as usize + x as usize) * 3;
        Ok([rgb[at], rgb[at + 1], rgb[at + 2]])
    };
    let close = |a: [u8; 3], b: [u8; 3]| a.iter().zip(b).all(|(&x, y)| x.abs_diff(y) <= 24);
    let (fw, fh) = (f64::from(frame.0), f64::from(frame.1));
    let mut wrong = Vec::new();
    for (q, want) in QUADRANTS.iter().enumerate() {
        let fx = if q % 2 == 0 { 0.25 } else { 0.75 } * fw;
        let fy = if q < 2 { 0.25 } else { 0.75 } * fh;
        let got = pixel(fit.to_window(fx, fy))?;
        if !close(got, *want) {
            wrong.push(format!("frame ({fx}, {fy}) shows {got:?}, not {want:?}"));
        }
    }
    // The middle of each bar, where the bars are wide enough to have one.
    let bars = [
        (fit.left >= 4.0).then(|| (fit.left / 2.0, f64::from(wh) / 2.0)),
        (fit.top >= 4.0).then(|| (f64::from(ww) / 2.0, fit.top / 2.0)),
        (fit.top >= 4.0).then(|| (f64::from(ww) / 2.0, f64::from(wh) - fit.top / 2.0)),
    ];
    for at in bars.into_iter().flatten() {
        let got = pixel(at)?;
        if !close(got, BLACK) {
            wrong.push(format!("the bar at window {at:?} shows {got:?}, not black"));
        }
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{ww}x{wh} window showing {}x{}: {}",
            frame.0,
            frame.1,
            wrong.join("; ")
        ))
    }
}

fn xdotool(display: &VirtualDisplay, args: &[&str]) {
    let out = display
        .command("xdotool")
        .args(args)
        .output()
        .expect("xdotool is missing (run `cargo xtask setup`)");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
}

fn window_name(display: &VirtualDisplay, id: &str) -> String {
    let out = display
        .command("xdotool")
        .args(["getwindowname", id])
        .output()
        .expect("xdotool is missing (run `cargo xtask setup`)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// What a window manager does when the user clicks the close button: a `WM_DELETE_WINDOW`
/// client message (there is no window manager on the Xvfb).
fn close_window(display: &VirtualDisplay, id: &str) {
    use x11rb::protocol::xproto::{ClientMessageEvent, ConnectionExt, EventMask};

    let window: u32 = id.parse().expect("xdotool gives decimal window ids");
    let (conn, _) = x11rb::connect(Some(display.name())).expect("connect to the Xvfb");
    let atom = |name: &[u8]| {
        conn.intern_atom(false, name)
            .expect("intern_atom")
            .reply()
            .expect("intern_atom reply")
            .atom
    };
    let (protocols, delete) = (atom(b"WM_PROTOCOLS"), atom(b"WM_DELETE_WINDOW"));
    let event = ClientMessageEvent::new(32, window, protocols, [delete, 0, 0, 0, 0]);
    conn.send_event(false, window, EventMask::NO_EVENT, event)
        .expect("send WM_DELETE_WINDOW");
    // A round trip, so the server has handled the event before this connection goes away.
    conn.get_input_focus()
        .expect("get_input_focus")
        .reply()
        .expect("the server handled WM_DELETE_WINDOW");
}

/// User + system CPU time the process used so far (`/proc/PID/stat`, in USER_HZ = 100 ticks).
fn cpu_time(process: &Child) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.id())).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of proc_pid_stat(5): indices 11 and 12 here.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn parse_move(line: &str) -> (u16, u16) {
    let mut words = line.split_whitespace().skip(2);
    let mut next = || -> u16 {
        words
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("not a move: {line:?}"))
    };
    (next(), next())
}
