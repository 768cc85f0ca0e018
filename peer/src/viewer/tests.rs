use super::*;
use crate::stats::PathKind;

#[test]
fn fit_keeps_the_aspect_ratio_larger_or_smaller() {
    // Same size: the whole window.
    assert_eq!(
        Fit::new((640, 360), (640, 360)),
        Fit {
            x: 0,
            y: 0,
            width: 640,
            height: 360
        }
    );
    // A 1920x1080 screen in an 800x600 window: all of it, shrunk, with bars above and below.
    assert_eq!(
        Fit::new((1920, 1080), (800, 600)),
        Fit {
            x: 0,
            y: 75,
            width: 800,
            height: 450
        }
    );
    // Enlarged into a wide window: bars left and right.
    assert_eq!(
        Fit::new((640, 480), (1600, 960)),
        Fit {
            x: 160,
            y: 0,
            width: 1280,
            height: 960
        }
    );
    // Odd sizes stay inside the window; degenerate ones do not divide by zero.
    for (frame, window) in [
        ((1921, 1081), (801, 599)),
        ((3, 1000), (1000, 3)),
        ((1, 1), (7, 5)),
        ((0, 0), (0, 0)),
        ((4096, 2304), (1, 1)),
    ] {
        let f = Fit::new(frame, window);
        assert!(f.width >= 1 && f.height >= 1, "{f:?}");
        assert!(
            f.x + f.width <= window.0.max(1),
            "{frame:?} in {window:?}: {f:?}"
        );
        assert!(
            f.y + f.height <= window.1.max(1),
            "{frame:?} in {window:?}: {f:?}"
        );
    }
}

#[test]
fn window_takes_the_frame_size_up_to_most_of_the_monitor() {
    assert_eq!(
        window_size_for((1280, 720), Some((1920, 1080))),
        (1280, 720)
    );
    assert_eq!(
        window_size_for((1920, 1080), Some((1920, 1080))),
        (1536, 864)
    );
    assert_eq!(window_size_for((3840, 2160), None), START_SIZE);
    assert_eq!(window_size_for((640, 360), None), (640, 360));
    assert_eq!(
        window_size_for((1000, 3000), Some((1920, 1080))),
        (288, 864)
    );
}

#[test]
fn winit_errors_lose_their_source_location() {
    assert_eq!(
        os_reason(&"os error at /x/winit/src/linux/mod.rs:788: Failed to open connection"),
        "Failed to open connection"
    );
    assert_eq!(
        os_reason(&"os error at a.rs:1: neither DISPLAY nor that is set."),
        "neither DISPLAY nor that is set"
    );
    assert_eq!(os_reason(&"something else"), "something else");
}

#[test]
fn title_shows_code_state_path_fps_and_latency() {
    let tick = Tick {
        fps: 29.84,
        mbps: 1.0,
        latency_ms_p50: Some(23.4),
        latency_ms_p95: None,
        frames_decoded: 10,
        path: PathKind::Direct,
    };
    assert_eq!(
        title("ISR-1234567-8", "connected", Some(&tick)),
        "quicdesk · ISR-1234567-8 · connected · direct · 29.8 fps · 23 ms"
    );
    let relay = Tick {
        latency_ms_p50: None,
        path: PathKind::Relay,
        ..tick
    };
    assert_eq!(
        title("ISR-1", "connected", Some(&relay)),
        "quicdesk · ISR-1 · connected · relay · 29.8 fps"
    );
    assert_eq!(
        title("ISR-1", "connecting", None),
        "quicdesk · ISR-1 · connecting"
    );
    assert_eq!(title("ISR-1", "", None), "quicdesk · ISR-1");
}
