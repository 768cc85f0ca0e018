//! Key codes of the platforms' injection APIs for each physical [`Key`]: Linux evdev codes
//! (and X keycodes from them) and Windows scan codes (set 1, as `SendInput` takes them).
//! Pure tables, tested on every platform.

use crate::Key;

/// The Linux evdev code (`KEY_*` in `linux/input-event-codes.h`) of a physical key, as the
/// kernel's HID driver assigns it to the key's USB HID usage.
pub fn evdev_code(key: Key) -> u16 {
    use Key::*;
    match key {
        KeyA => 30,
        KeyB => 48,
        KeyC => 46,
        KeyD => 32,
        KeyE => 18,
        KeyF => 33,
        KeyG => 34,
        KeyH => 35,
        KeyI => 23,
        KeyJ => 36,
        KeyK => 37,
        KeyL => 38,
        KeyM => 50,
        KeyN => 49,
        KeyO => 24,
        KeyP => 25,
        KeyQ => 16,
        KeyR => 19,
        KeyS => 31,
        KeyT => 20,
        KeyU => 22,
        KeyV => 47,
        KeyW => 17,
        KeyX => 45,
        KeyY => 21,
        KeyZ => 44,
        Digit1 => 2,
        Digit2 => 3,
        Digit3 => 4,
        Digit4 => 5,
        Digit5 => 6,
        Digit6 => 7,
        Digit7 => 8,
        Digit8 => 9,
        Digit9 => 10,
        Digit0 => 11,
        Enter => 28,
        Escape => 1,
        Backspace => 14,
        Tab => 15,
        Space => 57,
        Minus => 12,
        Equal => 13,
        BracketLeft => 26,
        BracketRight => 27,
        Backslash => 43,
        Semicolon => 39,
        Quote => 40,
        Backquote => 41,
        Comma => 51,
        Period => 52,
        Slash => 53,
        CapsLock => 58,
        F1 => 59,
        F2 => 60,
        F3 => 61,
        F4 => 62,
        F5 => 63,
        F6 => 64,
        F7 => 65,
        F8 => 66,
        F9 => 67,
        F10 => 68,
        F11 => 87,
        F12 => 88,
        PrintScreen => 99,
        ScrollLock => 70,
        Pause => 119,
        Insert => 110,
        Home => 102,
        PageUp => 104,
        Delete => 111,
        End => 107,
        PageDown => 109,
        ArrowRight => 106,
        ArrowLeft => 105,
        ArrowDown => 108,
        ArrowUp => 103,
        NumLock => 69,
        NumpadDivide => 98,
        NumpadMultiply => 55,
        NumpadSubtract => 74,
        NumpadAdd => 78,
        NumpadEnter => 96,
        Numpad1 => 79,
        Numpad2 => 80,
        Numpad3 => 81,
        Numpad4 => 75,
        Numpad5 => 76,
        Numpad6 => 77,
        Numpad7 => 71,
        Numpad8 => 72,
        Numpad9 => 73,
        Numpad0 => 82,
        NumpadDecimal => 83,
        IntlBackslash => 86,
        ContextMenu => 127,
        NumpadEqual => 117,
        F13 => 183,
        F14 => 184,
        F15 => 185,
        F16 => 186,
        F17 => 187,
        F18 => 188,
        F19 => 189,
        F20 => 190,
        F21 => 191,
        F22 => 192,
        F23 => 193,
        F24 => 194,
        NumpadComma => 121,
        IntlRo => 89,
        KanaMode => 93,
        IntlYen => 124,
        Convert => 92,
        NonConvert => 94,
        Lang1 => 122,
        Lang2 => 123,
        Lang3 => 90,
        Lang4 => 91,
        Lang5 => 85,
        ControlLeft => 29,
        ShiftLeft => 42,
        AltLeft => 56,
        SuperLeft => 125,
        ControlRight => 97,
        ShiftRight => 54,
        AltRight => 100,
        SuperRight => 126,
    }
}

/// How Windows' `SendInput` presses a physical key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowsKey {
    /// A set-1 scan code; `extended` for the keys whose code is prefixed with 0xE0 (sent with
    /// `KEYEVENTF_EXTENDEDKEY`).
    Scan { code: u8, extended: bool },
    /// A virtual-key code, for the two keys whose scan codes Windows does not take back as
    /// they come (NumLock shares 0x45 with Pause, which sends an 0xE1 sequence).
    Virtual(u16),
}

/// The Windows scan code of a physical key (Microsoft's "Keyboard Scan Code Specification",
/// HID usage to set 1), or `None` for the few keys Windows has no code for.
pub fn windows_key(key: Key) -> Option<WindowsKey> {
    use Key::*;
    let scan = |code| {
        Some(WindowsKey::Scan {
            code,
            extended: false,
        })
    };
    let ext = |code| {
        Some(WindowsKey::Scan {
            code,
            extended: true,
        })
    };
    match key {
        NumLock => Some(WindowsKey::Virtual(0x90)),
        Pause => Some(WindowsKey::Virtual(0x13)),
        IntlBackslash => scan(0x56),
        F11 => scan(0x57),
        F12 => scan(0x58),
        NumpadEnter => ext(0x1c),
        ControlRight => ext(0x1d),
        NumpadDivide => ext(0x35),
        PrintScreen => ext(0x37),
        AltRight => ext(0x38),
        Home => ext(0x47),
        ArrowUp => ext(0x48),
        PageUp => ext(0x49),
        ArrowLeft => ext(0x4b),
        ArrowRight => ext(0x4d),
        End => ext(0x4f),
        ArrowDown => ext(0x50),
        PageDown => ext(0x51),
        Insert => ext(0x52),
        Delete => ext(0x53),
        SuperLeft => ext(0x5b),
        SuperRight => ext(0x5c),
        ContextMenu => ext(0x5d),
        NumpadEqual => scan(0x59),
        F13 => scan(0x64),
        F14 => scan(0x65),
        F15 => scan(0x66),
        F16 => scan(0x67),
        F17 => scan(0x68),
        F18 => scan(0x69),
        F19 => scan(0x6a),
        F20 => scan(0x6b),
        F21 => scan(0x6c),
        F22 => scan(0x6d),
        F23 => scan(0x6e),
        F24 => scan(0x76),
        KanaMode => scan(0x70),
        IntlRo => scan(0x73),
        Convert => scan(0x79),
        NonConvert => scan(0x7b),
        IntlYen => scan(0x7d),
        NumpadComma => scan(0x7e),
        Lang1 => scan(0xf2),
        Lang2 => scan(0xf1),
        Lang3 => scan(0x78),
        Lang4 => scan(0x77),
        Lang5 => None, // 0x76 is F24's
        // The main block, F1-F10, ScrollLock and the numeric keypad: set 1's codes are the
        // evdev codes there (the kernel numbered its keys after them).
        other => {
            let code = evdev_code(other);
            (code <= 0x53).then_some(WindowsKey::Scan {
                code: code as u8,
                extended: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_but_one_has_its_own_windows_code() {
        let mut seen = std::collections::HashMap::new();
        for &k in Key::ALL {
            let Some(w) = windows_key(k) else {
                assert_eq!(k, Key::Lang5);
                continue;
            };
            if let Some(other) = seen.insert(w, k) {
                panic!("{k} and {other} share {w:?}");
            }
        }
    }

    #[test]
    fn known_scan_codes() {
        // From Microsoft's scan code table.
        for (k, code, extended) in [
            (Key::Escape, 0x01, false),
            (Key::KeyA, 0x1e, false),
            (Key::KeyQ, 0x10, false),
            (Key::Digit1, 0x02, false),
            (Key::Enter, 0x1c, false),
            (Key::Space, 0x39, false),
            (Key::ShiftLeft, 0x2a, false),
            (Key::ShiftRight, 0x36, false),
            (Key::ControlLeft, 0x1d, false),
            (Key::ControlRight, 0x1d, true),
            (Key::AltLeft, 0x38, false),
            (Key::F10, 0x44, false),
            (Key::F12, 0x58, false),
            (Key::Numpad7, 0x47, false),
            (Key::Home, 0x47, true),
            (Key::ArrowUp, 0x48, true),
            (Key::NumpadMultiply, 0x37, false),
            (Key::PrintScreen, 0x37, true),
            (Key::SuperLeft, 0x5b, true),
        ] {
            assert_eq!(
                windows_key(k),
                Some(WindowsKey::Scan { code, extended }),
                "{k}"
            );
        }
    }
}
