use super::*;

#[test]
fn the_key_table_covers_every_key_by_its_own_name() {
    let mut mapped: Vec<Key> = MAPPED.iter().filter_map(|&c| key_of(c)).collect();
    assert_eq!(mapped.len(), MAPPED.len());
    for &code in MAPPED {
        let key = key_of(code).unwrap();
        assert_eq!(format!("{code:?}"), key.name(), "{code:?} maps to {key}");
    }
    mapped.sort();
    mapped.dedup();
    assert_eq!(
        mapped,
        Key::ALL,
        "every quicdesk key, each from one winit code"
    );
    for other in [
        KeyCode::MediaPlayPause,
        KeyCode::Fn,
        KeyCode::Power,
        KeyCode::F25,
    ] {
        assert_eq!(key_of(other), None, "{other:?}");
    }
}

#[test]
fn typing_goes_as_text_and_everything_else_as_keys() {
    use KeyAction::{Key as K, Nothing, Text};
    let act = |key, text, shortcut| key_action(Some(key), true, text, false, shortcut, false);
    // Printable text, whatever key made it (an AZERTY "a" is on KeyQ).
    assert_eq!(act(Key::KeyQ, Some("a"), false), Text("a".into()));
    assert_eq!(act(Key::Digit2, Some("é"), false), Text("é".into()));
    assert_eq!(act(Key::Space, Some(" "), false), Text(" ".into()));
    assert_eq!(act(Key::Numpad5, Some("5"), false), Text("5".into()));
    // Shortcuts: keys, even with text.
    assert_eq!(act(Key::KeyC, Some("c"), true), K(Key::KeyC, true));
    assert_eq!(act(Key::KeyC, Some("\u{3}"), true), K(Key::KeyC, true));
    // Keys whose text is a control character, or that have none.
    for (key, text) in [
        (Key::Enter, Some("\r")),
        (Key::Tab, Some("\t")),
        (Key::Backspace, Some("\u{8}")),
        (Key::Escape, Some("\u{1b}")),
        (Key::Delete, Some("\u{7f}")),
        (Key::ArrowLeft, None),
        (Key::F5, None),
        (Key::ShiftLeft, None),
        (Key::SuperLeft, None),
        (Key::Numpad5, None), // NumLock off
    ] {
        assert_eq!(act(key, text, false), K(key, true), "{key}");
    }
    // Text from a key quicdesk has no name for still types; without text it is dropped.
    assert_eq!(
        key_action(None, true, Some("ß"), false, false, false),
        Text("ß".into())
    );
    assert_eq!(key_action(None, true, None, false, false, false), Nothing);
    assert_eq!(
        key_action(None, true, Some("x"), false, true, false),
        Nothing
    );
    // A dead key waits for the character it composes.
    assert_eq!(
        key_action(Some(Key::Quote), true, None, true, false, false),
        Nothing
    );
}

#[test]
fn releases_only_for_keys_sent_as_keys() {
    let release = |held| key_action(Some(Key::KeyA), false, None, false, false, held);
    assert_eq!(release(false), KeyAction::Nothing, "it typed text");
    assert_eq!(release(true), KeyAction::Key(Key::KeyA, false));
    assert_eq!(
        key_action(None, false, Some("a"), false, false, true),
        KeyAction::Nothing
    );
}

#[test]
fn shortcut_modifiers() {
    assert!(!is_shortcut(ModifiersState::empty()));
    assert!(!is_shortcut(ModifiersState::SHIFT));
    for m in [
        ModifiersState::CONTROL,
        ModifiersState::ALT,
        ModifiersState::SUPER,
        ModifiersState::SHIFT | ModifiersState::CONTROL,
    ] {
        assert!(is_shortcut(m), "{m:?}");
    }
}

#[test]
fn text_is_cleaned_and_split() {
    let texts = |s: &str| -> Vec<String> {
        text_chunks(s)
            .into_iter()
            .map(|t| t.as_str().to_owned())
            .collect()
    };
    assert_eq!(texts("日本語"), ["日本語"]);
    assert_eq!(texts("a\r\nb\rc\u{1b}d\te"), ["a\nb\ncd\te"]);
    assert!(texts("\u{7}").is_empty());
    assert!(texts("").is_empty());
    let long = "é".repeat(200); // 400 bytes
    let pieces = texts(&long);
    assert_eq!(pieces.len(), 2);
    assert!(pieces.iter().all(|p| p.len() <= BoundedText::MAX_LEN));
    assert_eq!(pieces.concat(), long);
}

/// Frame pixel `(x, y)` of `frame` → the normalised point, as the host will see it.
fn norm(x: f64, y: f64, frame: (u32, u32)) -> NormalizedPoint {
    NormalizedPoint::from_frame(x, y, frame.0, frame.1)
}

#[test]
fn pointer_maps_through_the_letterbox() {
    // 1:1, window the frame's size.
    let f = (640, 360);
    assert_eq!(
        pointer_on_frame((0.0, 0.0), (640, 360), f),
        norm(0.0, 0.0, f)
    );
    assert_eq!(
        pointer_on_frame((639.0, 359.0), (640, 360), f),
        norm(639.0, 359.0, f)
    );
    assert_eq!(
        pointer_on_frame((100.0, 50.0), (640, 360), f),
        norm(100.0, 50.0, f)
    );

    // A 1920x1080 screen shrunk into 800x600: 800x450 at y 75, 2.4 texels per pixel.
    let f = (1920, 1080);
    let p = pointer_on_frame((400.0, 300.0), (800, 600), f);
    let want = norm(960.7, 540.7, f);
    assert!(
        p.x().abs_diff(want.x()) <= 2 && p.y().abs_diff(want.y()) <= 2,
        "{p:?}"
    );
    // The bars clamp to the nearest edge of the picture.
    assert_eq!(pointer_on_frame((400.0, 10.0), (800, 600), f).y(), 0);
    assert_eq!(
        pointer_on_frame((400.0, 590.0), (800, 600), f).y(),
        u16::MAX
    );
    // The picture's corner pixels are within a window pixel (2.4 texels) of the frame's.
    let near_end = u16::MAX - 100;
    let p = pointer_on_frame((799.0, 524.0), (800, 600), f);
    assert!(p.x() > near_end && p.y() > near_end, "{p:?}");
    let p = pointer_on_frame((0.0, 75.0), (800, 600), f);
    assert!(p.x() < 100 && p.y() < 100, "{p:?}");

    // A frame enlarged into a wide window: pillarboxed.
    let f = (640, 480);
    let p = pointer_on_frame((10.0, 500.0), (1600, 960), f);
    assert_eq!((p.x(), p.y()), (0, norm(0.0, 249.75, f).y()));
    // Outside the window altogether, and silly values, clamp too.
    assert_eq!(
        pointer_on_frame((-50.0, 5000.0), (1600, 960), f),
        norm(0.0, 479.0, f)
    );
    assert_eq!(
        pointer_on_frame((f64::NAN, f64::INFINITY), (1600, 960), f),
        norm(0.0, 479.0, f)
    );
    // Degenerate sizes do not divide by zero.
    let _ = pointer_on_frame((5.0, 5.0), (0, 0), (0, 0));
}

#[test]
fn wheel_turns_into_whole_notches_the_right_way_round() {
    let mut w = Wheel::default();
    // winit: positive y scrolls up; quicdesk: positive dy scrolls down.
    assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, 1.0)), Some((0, -1)));
    assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -2.0)), Some((0, 2)));
    assert_eq!(w.add(MouseScrollDelta::LineDelta(1.0, 0.0)), Some((-1, 0)));
    // Fractional lines and smooth-scroll pixels add up.
    assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -0.5)), None);
    assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, -0.5)), Some((0, 1)));
    let px = |y| MouseScrollDelta::PixelDelta(winit::dpi::PhysicalPosition::new(0.0, y));
    assert_eq!(w.add(px(-25.0)), None);
    assert_eq!(w.add(px(-25.0)), Some((0, 1)));
    assert_eq!(w.add(px(30.0)), None, "10 px left over");
    // Huge or silly values are clamped and never pile up.
    assert_eq!(
        w.add(MouseScrollDelta::LineDelta(0.0, -1e9)),
        Some((0, MAX_WHEEL))
    );
    assert_eq!(w.add(MouseScrollDelta::LineDelta(0.0, 0.0)), None);
    assert_eq!(
        w.add(MouseScrollDelta::LineDelta(1e9, 1e9)),
        Some((-MAX_WHEEL, -MAX_WHEEL))
    );
    assert_eq!(w.add(MouseScrollDelta::LineDelta(f32::NAN, 0.0)), None);
    assert_eq!(w.add(px(f64::INFINITY)), None);
}

fn forwarder(capacity: usize) -> (Forwarder, mpsc::Receiver<InputEvent>) {
    let (tx, rx) = mpsc::channel(capacity);
    let mut f = Forwarder::new(tx, None);
    f.set_focused(true);
    (f, rx)
}

fn drain(rx: &mut mpsc::Receiver<InputEvent>) -> Vec<InputEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

#[test]
fn losing_the_focus_releases_what_is_held() {
    use winit::event::MouseButton as W;
    let (mut f, mut rx) = forwarder(64);
    f.send(InputEvent::Key {
        key: Key::ShiftLeft,
        pressed: true,
    });
    f.button(W::Left, ElementState::Pressed);
    f.set_focused(false);
    // Unfocused: nothing new goes out, but the release of a press sent earlier would.
    f.button(W::Right, ElementState::Pressed);
    f.wheel(MouseScrollDelta::LineDelta(0.0, 1.0));
    f.text("x");
    assert_eq!(
        drain(&mut rx),
        [
            InputEvent::Key {
                key: Key::ShiftLeft,
                pressed: true
            },
            InputEvent::MouseButton {
                button: MouseButton::Left,
                pressed: true
            },
            InputEvent::MouseButton {
                button: MouseButton::Left,
                pressed: false
            },
            InputEvent::Key {
                key: Key::ShiftLeft,
                pressed: false
            },
        ]
    );
}

#[test]
fn releases_wait_for_room_when_the_queue_is_full() {
    let (mut f, mut rx) = forwarder(2);
    let key = |pressed| InputEvent::Key {
        key: Key::ControlLeft,
        pressed,
    };
    f.send(key(true));
    f.send(InputEvent::Wheel { dx: 0, dy: 1 });
    // Full: a move is dropped, the release waits.
    f.pointer((1.0, 1.0), (10, 10), Some((10, 10)));
    f.release_all();
    assert_eq!(f.backlog, [key(false)]);
    assert_eq!(drain(&mut rx).len(), 2);
    f.flush();
    assert_eq!(drain(&mut rx), [key(false)]);
    assert!(f.backlog.is_empty() && f.held.is_empty());
}

#[test]
fn ctrl_alt_shift_digits_ask_for_monitors_and_nothing_else_does() {
    let all = ModifiersState::CONTROL | ModifiersState::ALT | ModifiersState::SHIFT;
    let code = PhysicalKey::Code;
    assert_eq!(monitor_key(all, code(KeyCode::Digit1)), Some(0));
    assert_eq!(monitor_key(all, code(KeyCode::Digit9)), Some(8));
    for (modifiers, key) in [
        (all, KeyCode::Digit0),
        (all, KeyCode::KeyA),
        (all, KeyCode::Numpad1),
        (
            ModifiersState::CONTROL | ModifiersState::ALT,
            KeyCode::Digit1,
        ),
        (ModifiersState::SHIFT, KeyCode::Digit1),
        (all | ModifiersState::SUPER, KeyCode::Digit1),
    ] {
        assert_eq!(
            monitor_key(modifiers, code(key)),
            None,
            "{modifiers:?} {key:?}"
        );
    }
}
