//! Input events arrive from the controller on the input stream: decoding must validate, never
//! panic, and what it accepts must be canonical and survive a round trip. Then the host's side
//! of what it accepted: positions land on the screen whatever its size, and the bookkeeping of
//! held keys and buttons releases exactly what is held.
#![no_main]

use input::{HeldInputs, InputEvent, Key, MouseButton, NormalizedPoint, ScreenSize};
use libfuzzer_sys::fuzz_target;
use quicdesk_fuzz::write_seeds_if_asked;

fn check_one(data: &[u8], held: &mut HeldInputs, size: ScreenSize) {
    let Ok(event) = input::decode(data) else {
        return;
    };
    let again = input::encode(&event);
    assert!(again.len() <= input::MAX_EVENT_LEN);
    // The encoding is canonical: the accepted bytes are exactly the event's encoding ...
    assert_eq!(again, data);
    // ... and re-decoding gives the same event back.
    assert_eq!(input::decode(&again), Ok(event.clone()));
    match &event {
        InputEvent::MouseMove { pos } => {
            let p = pos.to_screen(size);
            assert!(p.x() < size.width() && p.y() < size.height());
        }
        InputEvent::Wheel { dx, dy } => {
            assert!(dx.unsigned_abs() <= input::MAX_WHEEL as u16);
            assert!(dy.unsigned_abs() <= input::MAX_WHEEL as u16);
        }
        InputEvent::Text { text } => {
            // 1 to 256 bytes, no control character but line feed and tab.
            let t = text.as_str();
            assert!(!t.is_empty() && t.len() <= input::BoundedText::MAX_LEN);
            assert!(!t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
        }
        _ => {}
    }
    held.note(&event);
}

fuzz_target!(
    init: write_seeds_if_asked("input_decode", seeds),
    |data: &[u8]| {
        let mut held = HeldInputs::new();
        let size = ScreenSize::new(1 + u32::from(data.first().copied().unwrap_or(0)) * 64, 1080)
            .expect("in range");
        check_one(data, &mut held, size);
        // The same bytes as a stream of events, split where the input says (0xfe).
        for chunk in data.split(|&b| b == 0xfe) {
            check_one(chunk, &mut held, size);
        }
        let releases = held.take_releases();
        assert!(held.is_empty());
        for r in &releases {
            assert!(matches!(
                r,
                InputEvent::Key { pressed: false, .. } | InputEvent::MouseButton { pressed: false, .. }
            ));
            held.note(r);
        }
        assert!(held.is_empty());
        // At most one release per key and button.
        let mut seen = releases.clone();
        seen.dedup();
        assert_eq!(seen.len(), releases.len());
    }
);

fn seeds() -> Vec<Vec<u8>> {
    let events = [
        InputEvent::MouseMove {
            pos: NormalizedPoint::new(0, 65535),
        },
        InputEvent::MouseButton {
            button: MouseButton::Left,
            pressed: true,
        },
        InputEvent::MouseButton {
            button: MouseButton::Forward,
            pressed: false,
        },
        InputEvent::Wheel { dx: -3, dy: 120 },
        InputEvent::Key {
            key: Key::KeyA,
            pressed: true,
        },
        InputEvent::Key {
            key: Key::Enter,
            pressed: false,
        },
        InputEvent::Text {
            text: input::BoundedText::new("héllo wörld ✓").expect("valid text"),
        },
    ];
    let mut out: Vec<Vec<u8>> = events.iter().map(input::encode).collect();
    // A stream: press, move, press, as the host receives them.
    out.push(
        [
            input::encode(&events[4]),
            input::encode(&events[0]),
            input::encode(&events[1]),
        ]
        .join(&0xfe),
    );
    out
}
