//! The X11 source against a real X server: a private Xvfb started here.

#![cfg(all(unix, not(target_os = "macos")))]

use std::time::{Duration, Instant};

use capture::ScreenSpec;
use capture::x11::{X11Capturer, list_monitors};
use capture::xvfb::VirtualDisplay;
use capture::{Capturer, Frame};

fn xvfb(w: u32, h: u32) -> VirtualDisplay {
    VirtualDisplay::start(w, h)
        .unwrap_or_else(|e| panic!("this test needs Xvfb (run `cargo xtask setup`): {e}"))
}

fn run(display: &VirtualDisplay, program: &str, args: &[&str]) {
    let out = display
        .command(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} is missing (run `cargo xtask setup`): {e}"));
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
}

fn opts(display: &VirtualDisplay, cursor: bool) -> ScreenSpec {
    ScreenSpec {
        display: Some(display.name().to_owned()),
        monitor: None,
        cursor,
    }
}

/// Blue, green, red at (x, y) (the fourth byte has no promised value).
fn pixel(f: &Frame, x: usize, y: usize) -> [u8; 3] {
    let at = y * f.stride + x * 4;
    f.data[at..at + 3].try_into().unwrap()
}

/// Captures until a frame comes (damage can take a moment to arrive), at most 5 s.
fn next_frame(c: &mut X11Capturer) -> Frame {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(f) = c.capture().expect("capture") {
            return f;
        }
        assert!(Instant::now() < deadline, "no frame within 5 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn captures_what_is_on_screen_and_nothing_when_it_is_still() {
    let d = xvfb(1280, 720);
    run(&d, "xsetroot", &["-solid", "#ff0000"]);
    let mut c = X11Capturer::open(&opts(&d, false)).expect("open");
    assert_eq!(c.size(), (1280, 720));
    assert!(c.uses_shm(), "a local Xvfb offers MIT-SHM");
    let f = next_frame(&mut c);
    assert_eq!((f.width, f.height, f.stride), (1280, 720, 1280 * 4));
    for (x, y) in [(0, 0), (640, 360), (1279, 719)] {
        assert_eq!(pixel(&f, x, y), [0, 0, 255], "red at {x},{y}");
    }
    // The red frame is kept while the next ones are captured: frames never share memory.
    let red = f;

    // Nothing changes: no frame, repeatedly.
    for _ in 0..5 {
        std::thread::sleep(Duration::from_millis(20));
        assert!(
            c.capture().unwrap().is_none(),
            "a still screen gives no frames"
        );
    }
    // A change is seen.
    run(&d, "xsetroot", &["-solid", "#0000ff"]);
    let f = next_frame(&mut c);
    assert_eq!(pixel(&f, 100, 100), [255, 0, 0], "blue after the change");
    assert_eq!(
        pixel(&red, 640, 360),
        [0, 0, 255],
        "a held frame keeps its pixels"
    );
    drop(red);
    assert!(f.frame_no >= 1);
    // A refresh gives a frame without a change (for key frame requests).
    c.refresh();
    assert!(c.capture().unwrap().is_some());
}

#[test]
fn draws_the_pointer_and_follows_it() {
    let d = xvfb(640, 480);
    run(&d, "xsetroot", &["-solid", "#000000"]);
    run(&d, "xdotool", &["mousemove", "100", "100"]);
    let mut c = X11Capturer::open(&opts(&d, true)).expect("open");
    let f = next_frame(&mut c);
    let lit = |f: &Frame, cx: usize, cy: usize| {
        (cx.saturating_sub(12)..cx + 12)
            .flat_map(|x| (cy.saturating_sub(12)..cy + 12).map(move |y| (x, y)))
            .filter(|&(x, y)| pixel(f, x, y)[..3] != [0, 0, 0])
            .count()
    };
    assert!(lit(&f, 100, 100) > 10, "the pointer is drawn at 100,100");
    assert_eq!(lit(&f, 400, 300), 0);
    drop(f);
    assert!(
        c.capture().unwrap().is_none(),
        "still pointer, still screen"
    );
    run(&d, "xdotool", &["mousemove", "400", "300"]);
    let f = next_frame(&mut c);
    assert!(lit(&f, 400, 300) > 10, "the pointer moved to 400,300");
    assert_eq!(lit(&f, 100, 100), 0, "and is gone from 100,100");
}

#[test]
fn lists_and_captures_one_monitor() {
    let d = xvfb(1280, 720);
    // Split the screen into two RandR monitors: red left, blue right.
    run(
        &d,
        "xrandr",
        &["--setmonitor", "left", "640/170x720/190+0+0", "none"],
    );
    run(
        &d,
        "xrandr",
        &["--setmonitor", "right", "640/170x720/190+640+0", "none"],
    );
    run(&d, "xsetroot", &["-solid", "#00ff00"]);
    let all = list_monitors(Some(d.name())).expect("list");
    let right = all
        .iter()
        .find(|m| m.name == "right")
        .unwrap_or_else(|| panic!("no 'right' monitor in {all:?}"));
    assert_eq!(
        (right.x, right.y, right.width, right.height),
        (640, 0, 640, 720)
    );

    let mut c = X11Capturer::open(&ScreenSpec {
        monitor: Some(right.index),
        ..opts(&d, false)
    })
    .expect("open the right monitor");
    assert_eq!(c.size(), (640, 720));
    let f = next_frame(&mut c);
    assert_eq!(pixel(&f, 0, 0), [0, 255, 0]);

    let err = X11Capturer::open(&ScreenSpec {
        monitor: Some(all.len()),
        ..opts(&d, false)
    })
    .unwrap_err();
    assert!(err.to_string().contains("--list-monitors"), "{err}");
}

#[test]
fn a_missing_display_is_a_clear_error() {
    let err = X11Capturer::open(&ScreenSpec {
        display: Some(":4999".into()),
        ..ScreenSpec::default()
    })
    .unwrap_err();
    assert!(err.to_string().contains(":4999"), "{err}");
}
