//! Physical keys, named as in the W3C UI Events `code` values (the names winit's `KeyCode`
//! uses, so a viewer maps them by name), and carried on the wire as their USB HID usage (page
//! 0x07) numbers.
//!
//! Deliberately left out: keys without a page-0x07 usage (`Fn`, media and browser keys, which
//! live on the consumer page), keys a remote user should not press on the host (`Power`,
//! `Sleep`, `WakeUp`), and usage 0x32 (the ISO `#~` key), which UI Events also names
//! `Backslash`: one name per usage keeps the encoding canonical.

use std::fmt;
use std::str::FromStr;

macro_rules! keys {
    ($($name:ident = $usage:literal),* $(,)?) => {
        /// A physical key: a position on the keyboard, whatever the layout prints on it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Key { $($name),* }

        impl Key {
            /// Every key, in HID usage order.
            pub const ALL: &'static [Key] = &[$(Key::$name),*];

            /// The USB HID usage (keyboard page 0x07).
            pub fn hid_usage(self) -> u16 {
                match self { $(Key::$name => $usage),* }
            }

            /// The key with this HID usage, if quicdesk knows it.
            pub fn from_hid_usage(usage: u16) -> Option<Self> {
                match usage { $($usage => Some(Key::$name),)* _ => None }
            }

            /// The UI Events `code` name, e.g. `KeyA`, `ShiftLeft`.
            pub fn name(self) -> &'static str {
                match self { $(Key::$name => stringify!($name)),* }
            }
        }

        impl FromStr for Key {
            type Err = UnknownKey;
            fn from_str(s: &str) -> Result<Self, UnknownKey> {
                match s { $(stringify!($name) => Ok(Key::$name),)* _ => Err(UnknownKey) }
            }
        }
    };
}

keys! {
    KeyA = 0x04, KeyB = 0x05, KeyC = 0x06, KeyD = 0x07, KeyE = 0x08, KeyF = 0x09, KeyG = 0x0a,
    KeyH = 0x0b, KeyI = 0x0c, KeyJ = 0x0d, KeyK = 0x0e, KeyL = 0x0f, KeyM = 0x10, KeyN = 0x11,
    KeyO = 0x12, KeyP = 0x13, KeyQ = 0x14, KeyR = 0x15, KeyS = 0x16, KeyT = 0x17, KeyU = 0x18,
    KeyV = 0x19, KeyW = 0x1a, KeyX = 0x1b, KeyY = 0x1c, KeyZ = 0x1d,
    Digit1 = 0x1e, Digit2 = 0x1f, Digit3 = 0x20, Digit4 = 0x21, Digit5 = 0x22, Digit6 = 0x23,
    Digit7 = 0x24, Digit8 = 0x25, Digit9 = 0x26, Digit0 = 0x27,
    Enter = 0x28, Escape = 0x29, Backspace = 0x2a, Tab = 0x2b, Space = 0x2c, Minus = 0x2d,
    Equal = 0x2e, BracketLeft = 0x2f, BracketRight = 0x30, Backslash = 0x31, Semicolon = 0x33,
    Quote = 0x34, Backquote = 0x35, Comma = 0x36, Period = 0x37, Slash = 0x38, CapsLock = 0x39,
    F1 = 0x3a, F2 = 0x3b, F3 = 0x3c, F4 = 0x3d, F5 = 0x3e, F6 = 0x3f, F7 = 0x40, F8 = 0x41,
    F9 = 0x42, F10 = 0x43, F11 = 0x44, F12 = 0x45,
    PrintScreen = 0x46, ScrollLock = 0x47, Pause = 0x48, Insert = 0x49, Home = 0x4a,
    PageUp = 0x4b, Delete = 0x4c, End = 0x4d, PageDown = 0x4e, ArrowRight = 0x4f,
    ArrowLeft = 0x50, ArrowDown = 0x51, ArrowUp = 0x52, NumLock = 0x53, NumpadDivide = 0x54,
    NumpadMultiply = 0x55, NumpadSubtract = 0x56, NumpadAdd = 0x57, NumpadEnter = 0x58,
    Numpad1 = 0x59, Numpad2 = 0x5a, Numpad3 = 0x5b, Numpad4 = 0x5c, Numpad5 = 0x5d,
    Numpad6 = 0x5e, Numpad7 = 0x5f, Numpad8 = 0x60, Numpad9 = 0x61, Numpad0 = 0x62,
    NumpadDecimal = 0x63, IntlBackslash = 0x64, ContextMenu = 0x65, NumpadEqual = 0x67,
    F13 = 0x68, F14 = 0x69, F15 = 0x6a, F16 = 0x6b, F17 = 0x6c, F18 = 0x6d, F19 = 0x6e,
    F20 = 0x6f, F21 = 0x70, F22 = 0x71, F23 = 0x72, F24 = 0x73,
    NumpadComma = 0x85, IntlRo = 0x87, KanaMode = 0x88, IntlYen = 0x89, Convert = 0x8a,
    NonConvert = 0x8b, Lang1 = 0x90, Lang2 = 0x91, Lang3 = 0x92, Lang4 = 0x93, Lang5 = 0x94,
    ControlLeft = 0xe0, ShiftLeft = 0xe1, AltLeft = 0xe2, SuperLeft = 0xe3,
    ControlRight = 0xe4, ShiftRight = 0xe5, AltRight = 0xe6, SuperRight = 0xe7,
}

/// A key name quicdesk does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown key name")]
#[non_exhaustive]
pub struct UnknownKey;

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usages_are_unique_and_in_order() {
        for pair in Key::ALL.windows(2) {
            assert!(pair[0].hid_usage() < pair[1].hid_usage(), "{pair:?}");
        }
        for &k in Key::ALL {
            assert_eq!(Key::from_hid_usage(k.hid_usage()), Some(k));
        }
        let known = Key::ALL.len();
        let decodable = (0..=u16::MAX)
            .filter(|&u| Key::from_hid_usage(u).is_some())
            .count();
        assert_eq!(decodable, known);
    }

    #[test]
    fn the_key_families_are_there() {
        let has = |name: &str| name.parse::<Key>().is_ok();
        for c in 'A'..='Z' {
            assert!(has(&format!("Key{c}")));
        }
        for n in 0..=9 {
            assert!(has(&format!("Digit{n}")) && has(&format!("Numpad{n}")));
        }
        for n in 1..=24 {
            assert!(has(&format!("F{n}")));
        }
        for m in ["Shift", "Control", "Alt", "Super"] {
            assert!(has(&format!("{m}Left")) && has(&format!("{m}Right")));
        }
        assert!(!has("F25") && !has("keya") && !has("") && !has("Power"));
    }

    #[test]
    fn names_round_trip() {
        for &k in Key::ALL {
            assert_eq!(k.name().parse::<Key>(), Ok(k));
            assert_eq!(k.to_string(), k.name());
        }
        assert_eq!("NoSuchKey".parse::<Key>(), Err(UnknownKey));
    }
}
