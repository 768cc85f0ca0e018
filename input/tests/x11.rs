//! The enigo backend against a real X server: a private Xvfb started here, checked with
//! `xdotool` (pointer position) and `xev` (what a window receives).

#![cfg(all(feature = "enigo", unix, not(target_os = "macos")))]

use capture::xvfb::{VirtualDisplay, XevWindow};
use input::{
    BoundedText, EnigoBackend, InputBackend, InputEvent, Key, MouseButton, NormalizedPoint,
    ScreenSize,
};

fn xvfb(w: u32, h: u32) -> VirtualDisplay {
    VirtualDisplay::start(w, h)
        .unwrap_or_else(|e| panic!("this test needs Xvfb (run `cargo xtask setup`): {e}"))
}

fn pointer(d: &VirtualDisplay) -> (u32, u32) {
    d.pointer()
        .expect("xdotool getmouselocation (run `cargo xtask setup`)")
}

fn backend(d: &VirtualDisplay, w: u32, h: u32) -> EnigoBackend {
    let mut b = EnigoBackend::new(Some(d.name())).expect("connect to Xvfb");
    b.set_screen_size(ScreenSize::new(w, h).unwrap());
    b
}

fn key(key: Key, pressed: bool) -> InputEvent {
    InputEvent::Key { key, pressed }
}

fn at(x: u16, y: u16) -> InputEvent {
    InputEvent::MouseMove {
        pos: NormalizedPoint::new(x, y),
    }
}

#[test]
fn pointer_lands_where_the_controller_points() {
    let d = xvfb(1280, 720);
    let mut b = backend(&d, 1280, 720);
    for (pos, want) in [
        ((0, 0), (0, 0)),
        ((65535, 65535), (1279, 719)),
        ((32768, 32768), (640, 360)),
        ((16384, 49151), (320, 539)),
    ] {
        b.inject(&at(pos.0, pos.1)).unwrap();
        assert_eq!(pointer(&d), want, "normalised {pos:?}");
    }
    // A monitor's origin shifts every position.
    b.set_origin(100, 50);
    b.set_screen_size(ScreenSize::new(640, 360).unwrap());
    b.inject(&at(0, 0)).unwrap();
    assert_eq!(pointer(&d), (100, 50));
}

#[test]
fn moves_before_the_screen_size_are_refused() {
    let d = xvfb(640, 480);
    let mut b = EnigoBackend::new(Some(d.name())).unwrap();
    assert!(b.inject(&at(1, 1)).is_err());
}

#[test]
fn a_missing_display_is_a_clear_error() {
    let err = EnigoBackend::new(Some(":4998")).unwrap_err();
    assert!(err.to_string().contains(":4998"), "{err}");
}

fn xev(d: &VirtualDisplay) -> XevWindow {
    XevWindow::start(d, "400x300+0+0").expect("xev (run `cargo xtask setup`, package x11-utils)")
}

#[test]
fn clicks_keys_and_text_reach_the_focused_window() {
    let d = xvfb(800, 600);
    let xev = xev(&d);
    let mut b = backend(&d, 800, 600);
    // Into xev's window (keyboard focus follows the pointer without a window manager).
    b.inject(&at(10000, 10000)).unwrap();
    let events = [
        InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed: true,
        },
        InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed: false,
        },
        key(Key::ShiftLeft, true),
        key(Key::KeyH, true),
        key(Key::KeyH, false),
        key(Key::ShiftLeft, false),
        key(Key::KeyI, true),
        key(Key::KeyI, false),
        // Shift held while text is typed must not change the text.
        key(Key::ShiftLeft, true),
        InputEvent::Text {
            text: BoundedText::new("Hé!?").unwrap(),
        },
        key(Key::ShiftLeft, false),
        key(Key::Digit1, true),
        key(Key::Digit1, false),
    ];
    for e in &events {
        b.inject(e).unwrap();
    }
    let log = xev.finish().unwrap();
    assert!(
        log.count("ButtonPress") == 1 && log.0.contains("button 1,"),
        "no left click seen:\n{}",
        log.0
    );
    assert_eq!(log.typed(), "HiHé!?1", "xev saw:\n{}", log.0);
}

#[test]
fn release_all_lets_go_of_everything() {
    let d = xvfb(800, 600);
    let xev = xev(&d);
    let mut b = backend(&d, 800, 600);
    b.inject(&at(10000, 10000)).unwrap();
    b.inject(&key(Key::ShiftLeft, true)).unwrap();
    b.inject(&InputEvent::MouseButton {
        button: MouseButton::Left,
        pressed: true,
    })
    .unwrap();
    b.release_all().unwrap();
    b.release_all().unwrap(); // nothing held any more: no effect
    let log = xev.finish().unwrap();
    let out = &log.0;
    assert_eq!(log.count("KeyPress"), 1, "{out}");
    assert_eq!(log.count("KeyRelease"), 1, "shift released once:\n{out}");
    assert_eq!(log.count("ButtonPress"), 1, "{out}");
    assert_eq!(
        log.count("ButtonRelease"),
        1,
        "button released once:\n{out}"
    );
}
