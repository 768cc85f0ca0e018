//! Attended access with the real windows: a host in `--approve prompt|both` mode (in-process,
//! sharing a synthetic screen, recording the input it performs) starts its accept/deny window
//! and its session indicator as `peer ui …` processes on a private Xvfb; the test looks at
//! them with screenshots and drives them with xdotool as the host's user would, while an
//! in-process controller connects through a rendezvous with relay. Checked: accepting (Enter)
//! lets input in; ending from the indicator ends the session on both sides within 1 s
//! (measured); denying (click) and accepting view-only (untick, click), where a killed
//! indicator leaves the session running; no answer, Escape and a killed prompt process deny.

#![cfg(all(unix, not(target_os = "macos")))]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture::xvfb::VirtualDisplay;
use input::{InputEvent, RecordingBackend};
use peer::approve::Approval;
use peer::controller::{self, Hooks, HostNotice};
use peer::host::{self, Attended, HostHandle, UiCommand};
use peer::ui::canvas::{self, Rect};
use peer::ui::{indicator, prompt};
use tokio::sync::mpsc;

mod common;
use common::desktop::xvfb;
use common::{LOCAL, Rv, connect_config, start_host, start_rendezvous, synthetic_host};

const PASSWORD: &str = "attended pass 864209";

/// A rendezvous and a host asking its user (in `mode`, within `timeout`) on `display`.
async fn setup(
    dir: &Path,
    display: &VirtualDisplay,
    mode: Approval,
    timeout: Duration,
) -> (Rv, HostHandle, RecordingBackend) {
    common::show_logs_on_failure();
    let rv = start_rendezvous(&dir.join("rv"), LOCAL, Duration::from_secs(3600));
    let backend = RecordingBackend::new();
    let mut cfg = synthetic_host(
        &rv,
        &dir.join("host"),
        (320, 240),
        PASSWORD,
        backend.clone(),
    );
    cfg.attended = Attended {
        mode,
        timeout,
        ui: Some(UiCommand {
            program: env!("CARGO_BIN_EXE_peer").into(),
            args: vec!["ui".into()],
            display: Some(display.name().to_owned()),
        }),
        indicator: true,
    };
    let host = start_host(cfg).await;
    (rv, host, backend)
}

/// A controller session in the background: its result, the notices it printed, and where to
/// send input.
struct Controller {
    task: tokio::task::JoinHandle<Result<peer::stats::Report, peer::Error>>,
    notices: Arc<Mutex<Vec<String>>>,
    input: mpsc::Sender<InputEvent>,
}

/// A controller with its own key (data directory `dir`/ctl-`n`) on its own address
/// (127.0.0.`n`): a denial backs off its key and its address (the guessing limits), not the
/// next attempt's.
fn connect(
    rv: &Rv,
    host: &HostHandle,
    (dir, n): (&Path, u8),
    password: Option<&str>,
    duration: Option<Duration>,
) -> Controller {
    let code = host.status().code.expect("registered");
    let mut cfg = connect_config(rv, code, "", &dir.join(format!("ctl-{n}")));
    cfg.bind = format!("127.0.0.{n}:0").parse().unwrap();
    cfg.password = password.map(str::to_owned);
    cfg.name = "ann@test".into();
    cfg.duration = duration;
    let notices = Arc::new(Mutex::new(Vec::new()));
    let (input, input_rx) = mpsc::channel(64);
    let hooks = Hooks {
        on_notice: Some({
            let notices = notices.clone();
            Box::new(move |n: &HostNotice| notices.lock().unwrap().push(n.to_string()))
        }),
        input: Some(input_rx),
        ..Default::default()
    };
    Controller {
        task: tokio::spawn(controller::run(cfg, hooks)),
        notices,
        input,
    }
}

impl Controller {
    async fn wait_notice(&self, part: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self
                .notices
                .lock()
                .unwrap()
                .iter()
                .any(|n| n.contains(part))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no notice with {part:?}: {:?}",
                self.notices.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn result(self) -> Result<peer::stats::Report, peer::Error> {
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the controller ends")
            .expect("the controller's task")
    }
}

/// The search pattern (xdotool's regular expression) for a window title.
fn pattern(title: &str) -> String {
    format!("^{}", title.trim_end_matches('?'))
}

/// A window of the display by title: its id and geometry.
async fn window(d: &VirtualDisplay, title: &str) -> (String, (i32, i32, u32, u32)) {
    let id =
        tokio::task::block_in_place(|| d.wait_window(&pattern(title), Duration::from_secs(30)))
            .unwrap_or_else(|e| panic!("{e}"));
    let geometry = d.window_geometry(&id).expect("the window's geometry");
    (id, geometry)
}

/// Whether the window at `geometry` shows `want` at its point `r` (a few pixels in).
fn shows_colour(
    d: &VirtualDisplay,
    geometry: (i32, i32, u32, u32),
    r: Rect,
    want: [u8; 3],
) -> Result<(), String> {
    let (w, _, rgb) = d.screenshot_rgb().map_err(|e| e.to_string())?;
    let (x, y) = (geometry.0 + r.x + 4, geometry.1 + r.y + 4);
    let at = (y as usize * w as usize + x as usize) * 3;
    let got = [rgb[at], rgb[at + 1], rgb[at + 2]];
    if got.iter().zip(want).all(|(&g, w)| g.abs_diff(w) <= 24) {
        Ok(())
    } else {
        Err(format!(
            "window pixel ({}, {}) is {got:?}, not {want:?}",
            r.x + 4,
            r.y + 4
        ))
    }
}

/// Retries `check` for up to 20 s (a window is mapped before it is drawn).
async fn eventually(what: &str, mut check: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match tokio::task::block_in_place(&mut check) {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => panic!("never saw {what}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Pixels of the window inside `r` much darker than its background (drawn text).
fn inked(d: &VirtualDisplay, geometry: (i32, i32, u32, u32), r: Rect) -> usize {
    let (w, _, rgb) = d.screenshot_rgb().expect("a screenshot (imagemagick)");
    let mut n = 0;
    for y in r.y..r.y + r.h as i32 {
        for x in r.x..r.x + r.w as i32 {
            let at = ((geometry.1 + y) as usize * w as usize + (geometry.0 + x) as usize) * 3;
            if rgb[at..at + 3].iter().all(|&c| c < 0x80) {
                n += 1;
            }
        }
    }
    n
}

/// The prompt is drawn: both buttons in their colours, the key's fingerprint not blank.
async fn prompt_is_drawn(d: &VirtualDisplay, geometry: (i32, i32, u32, u32)) {
    assert_eq!((geometry.2, geometry.3), prompt::SIZE, "the prompt's size");
    eventually("the prompt drawn", || {
        shows_colour(d, geometry, prompt::ACCEPT, canvas::ACCEPT)?;
        shows_colour(d, geometry, prompt::DENY, canvas::DENY)?;
        let ink = inked(d, geometry, prompt::KEY_TEXT);
        if ink > 100 {
            Ok(())
        } else {
            Err(format!(
                "the fingerprint's place is blank ({ink} dark pixels)"
            ))
        }
    })
    .await;
}

fn xdotool(d: &VirtualDisplay, args: &[&str]) {
    let out = d
        .command("xdotool")
        .args(args)
        .output()
        .expect("xdotool is missing (run `cargo xtask setup`)");
    assert!(out.status.success(), "xdotool {args:?}: {out:?}");
}

/// Clicks the middle of `r` in the window at `geometry`.
fn click(d: &VirtualDisplay, geometry: (i32, i32, u32, u32), r: Rect) {
    let (x, y) = r.centre();
    let (x, y) = ((geometry.0 + x).to_string(), (geometry.1 + y).to_string());
    xdotool(d, &["mousemove", "--sync", &x, &y, "click", "1"]);
}

/// Presses `key` in window `id`, once the prompt takes keys (`prompt::KEY_GRACE` after it
/// opened; the window was found when it opened).
fn key(d: &VirtualDisplay, id: &str, key: &str) {
    std::thread::sleep(prompt::KEY_GRACE);
    xdotool(d, &["windowfocus", "--sync", id]);
    xdotool(d, &["key", key]);
}

/// Waits until no window has `title`.
async fn gone(d: &VirtualDisplay, title: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while d
        .wait_window(&pattern(title), Duration::from_millis(1))
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the window {title:?} stays open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the process that owns window `id` (its `_NET_WM_PID`, which winit sets).
fn kill_window_process(d: &VirtualDisplay, id: &str) {
    let pid = d
        .command("xdotool")
        .args(["getwindowpid", id])
        .output()
        .expect("xdotool");
    let pid = String::from_utf8_lossy(&pid.stdout).trim().to_owned();
    assert!(!pid.is_empty(), "the window names its process");
    let status = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The audit log's last line.
fn last_audit(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("host").join(host::audit::FILE_NAME))
        .expect("the audit log");
    serde_json::from_str(text.lines().last().expect("a line")).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_lets_input_in_and_ending_from_the_indicator_ends_both_sides_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    let (rv, host, backend) =
        setup(dir.path(), &d, Approval::Prompt, Duration::from_secs(60)).await;
    let ctl = connect(&rv, &host, (dir.path(), 2), None, None);
    ctl.wait_notice("waiting for the host's user").await;
    let (id, geometry) = window(&d, prompt::TITLE_TEXT).await;
    prompt_is_drawn(&d, geometry).await;
    key(&d, &id, "Return");
    ctl.wait_notice("the host allows view, input").await;
    gone(&d, prompt::TITLE_TEXT).await;

    // Input goes through.
    let moved = InputEvent::MouseMove {
        pos: input::NormalizedPoint::new(100, 200),
    };
    ctl.input.send(moved.clone()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !backend.events().contains(&moved) {
        assert!(Instant::now() < deadline, "the input never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The indicator shows who and how, with its button.
    let (_, ind) = window(&d, indicator::TITLE_TEXT).await;
    assert_eq!((ind.2, ind.3), indicator::SIZE);
    eventually("the indicator drawn", || {
        shows_colour(&d, ind, indicator::END, canvas::DENY)?;
        let ink = inked(&d, ind, Rect::new(12, 10, 200, 16));
        (ink > 50)
            .then_some(())
            .ok_or(format!("no name drawn ({ink})"))
    })
    .await;
    assert!(host.status().in_session);

    // End session: both sides are over within a second of the click.
    let mut status = host.watch();
    let host_ended = tokio::spawn(async move {
        let _ = status.wait_for(|s| !s.in_session).await;
        Instant::now()
    });
    let clicked = Instant::now();
    click(&d, ind, indicator::END);
    let report = ctl.result().await.expect("the session ends cleanly");
    let controller_over = clicked.elapsed();
    let host_over = host_ended.await.unwrap().duration_since(clicked);
    eprintln!(
        "end from the indicator: controller over after {controller_over:?}, host after \
         {host_over:?}"
    );
    assert_eq!(
        report.ended_by_host.as_deref(),
        Some("ended by the host's user")
    );
    assert!(
        controller_over < Duration::from_secs(1),
        "{controller_over:?}"
    );
    assert!(host_over < Duration::from_secs(1), "{host_over:?}");
    gone(&d, indicator::TITLE_TEXT).await;
    let audit = last_audit(dir.path());
    assert_eq!(audit["approval"], "prompt");
    assert_eq!(audit["asked"], "accepted (view, input)");
    assert_eq!(audit["name"], "ann@test");
    assert_eq!(audit["ended"], "ended by the host's user");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denying_and_accepting_view_only_in_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    let (rv, host, backend) = setup(dir.path(), &d, Approval::Both, Duration::from_secs(60)).await;

    // The password, then the window: Deny.
    let ctl = connect(&rv, &host, (dir.path(), 3), Some(PASSWORD), None);
    ctl.wait_notice("then asks its user").await;
    let (_, geometry) = window(&d, prompt::TITLE_TEXT).await;
    prompt_is_drawn(&d, geometry).await;
    click(&d, geometry, prompt::DENY);
    let err = ctl.result().await.expect_err("denied");
    assert!(
        err.to_string().contains("the host's user declined"),
        "{err}"
    );
    gone(&d, prompt::TITLE_TEXT).await;
    let audit = last_audit(dir.path());
    assert_eq!(audit["approval"], "both");
    assert_eq!(audit["asked"], "denied: the host's user declined");
    assert_eq!(audit["authenticated"], false);

    // Again: untick input, Accept. The session is view-only: input is dropped on both sides.
    let ctl = connect(
        &rv,
        &host,
        (dir.path(), 4),
        Some(PASSWORD),
        Some(Duration::from_secs(3)),
    );
    let (_, geometry) = window(&d, prompt::TITLE_TEXT).await;
    click(&d, geometry, prompt::INPUT);
    click(&d, geometry, prompt::ACCEPT);
    ctl.wait_notice("your input is not sent (view only)").await;
    // The indicator's process dies: logged, and the session goes on to its end.
    let (id, _) = window(&d, indicator::TITLE_TEXT).await;
    kill_window_process(&d, &id);
    for x in 0..20 {
        let _ = ctl
            .input
            .send(InputEvent::MouseMove {
                pos: input::NormalizedPoint::new(x, x),
            })
            .await;
    }
    let report = ctl.result().await.expect("a view-only session");
    assert_eq!(
        report.permissions,
        Some(peer::approve::Permissions::VIEW_ONLY)
    );
    assert!(report.frames_decoded > 0, "the screen was shown");
    assert_eq!(report.input_events_sent, 0);
    assert!(
        backend.events().is_empty(),
        "input performed: {:?}",
        backend.events()
    );
    assert_eq!(
        report.ended_by_host, None,
        "the session outlived its indicator"
    );
    assert!(report.duration_s >= 2.9, "{}", report.duration_s);
    let audit = last_audit(dir.path());
    assert_eq!(audit["asked"], "accepted (view only)");
    assert_eq!(audit["permissions"]["input"], false);
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answer_escape_and_a_killed_window_all_deny() {
    let dir = tempfile::tempdir().unwrap();
    let d = xvfb(1280, 720);
    let (rv, host, _backend) =
        setup(dir.path(), &d, Approval::Prompt, Duration::from_secs(3)).await;

    // Nobody answers: denied when the time is up, and the window closes.
    let started = Instant::now();
    let ctl = connect(&rv, &host, (dir.path(), 5), None, None);
    let (_, geometry) = window(&d, prompt::TITLE_TEXT).await;
    prompt_is_drawn(&d, geometry).await;
    let err = ctl.result().await.expect_err("denied");
    let waited = started.elapsed();
    assert!(err.to_string().contains("did not answer in time"), "{err}");
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
    gone(&d, prompt::TITLE_TEXT).await;

    // Escape.
    let ctl = connect(&rv, &host, (dir.path(), 6), None, None);
    let (id, _) = window(&d, prompt::TITLE_TEXT).await;
    key(&d, &id, "Escape");
    let err = ctl.result().await.expect_err("denied");
    assert!(
        err.to_string().contains("the host's user declined"),
        "{err}"
    );
    gone(&d, prompt::TITLE_TEXT).await;

    // The window's process is killed: a denial, at once.
    let ctl = connect(&rv, &host, (dir.path(), 7), None, None);
    let (id, _) = window(&d, prompt::TITLE_TEXT).await;
    let killed = Instant::now();
    kill_window_process(&d, &id);
    let err = ctl.result().await.expect_err("denied");
    assert!(err.to_string().contains("could not ask its user"), "{err}");
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    assert_eq!(host.status().prompts, 3);
    host.shutdown().await;
}
