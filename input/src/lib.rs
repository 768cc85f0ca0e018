//! Input events for quicdesk: their types, their wire encoding, and the backends that inject them.
//!
//! ```text
//! controller: window events ─► InputEvent ─► encode() ─► (peer frames it on the input stream)
//! host:       (peer reads a frame) ─► decode() validates ─► InputBackend::inject()
//! ```
//!
//! Types cannot hold bad values: a [`NormalizedPoint`] is always inside the frame, a [`Key`] is
//! a known physical key, a [`BoundedText`] is short, valid UTF-8 without control characters. So a
//! backend never sees an event it has to second-guess.
//!
//! What this crate does **not** do: it knows nothing of QUIC, sockets or framing (the `peer`
//! crate puts each encoded event in a length-prefixed frame), and it does not map keys to
//! characters: keys are physical positions, typed text travels as [`InputEvent::Text`].

#![forbid(unsafe_code)]

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

mod keys;

pub use keys::{Key, UnknownKey};

/// Longest encoded event: a text event with [`BoundedText::MAX_LEN`] bytes.
pub const MAX_EVENT_LEN: usize = 1 + 2 + BoundedText::MAX_LEN;
/// Largest wheel step in one event, in notches.
pub const MAX_WHEEL: i16 = 120;

/// A position on the shared frame, independent of its pixel size: `0..=65535` on each axis,
/// `(0, 0)` the top-left corner and `(65535, 65535)` the bottom-right pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NormalizedPoint {
    x: u16,
    y: u16,
}

impl NormalizedPoint {
    pub const fn new(x: u16, y: u16) -> Self {
        Self { x, y }
    }

    pub fn x(self) -> u16 {
        self.x
    }

    pub fn y(self) -> u16 {
        self.y
    }

    /// From a pixel position on a frame of `width` x `height` (controller side); positions
    /// outside the frame are clamped to its edge.
    pub fn from_frame(x: f64, y: f64, width: u32, height: u32) -> Self {
        let scale = |v: f64, size: u32| {
            let last = f64::from(size.max(2) - 1);
            let v = if v.is_finite() {
                v.clamp(0.0, last)
            } else {
                0.0
            };
            // v / last is in 0..=1, so the product fits u16
            (v / last * f64::from(u16::MAX)).round() as u16
        };
        Self {
            x: scale(x, width),
            y: scale(y, height),
        }
    }

    /// The pixel this point falls on, on a screen of `size` (host side).
    pub fn to_screen(self, size: ScreenSize) -> ScreenPoint {
        let map = |v: u16, n: u32| {
            // v <= 65535 and n <= 16384: the product fits in u64, the result is < n
            ((u64::from(v) * u64::from(n - 1) + 32767) / 65535) as u32
        };
        ScreenPoint {
            x: map(self.x, size.width),
            y: map(self.y, size.height),
        }
    }
}

/// Why a screen size was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("screen size {width}x{height} is out of range (1..={max} on each side)", max = ScreenSize::MAX)]
pub struct ScreenSizeError {
    pub width: u32,
    pub height: u32,
}

/// The host screen's size in pixels, non-zero and at most [`ScreenSize::MAX`] per side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenSize {
    width: u32,
    height: u32,
}

impl ScreenSize {
    pub const MAX: u32 = 16384;

    pub fn new(width: u32, height: u32) -> Result<Self, ScreenSizeError> {
        if (1..=Self::MAX).contains(&width) && (1..=Self::MAX).contains(&height) {
            Ok(Self { width, height })
        } else {
            Err(ScreenSizeError { width, height })
        }
    }

    pub fn width(self) -> u32 {
        self.width
    }

    pub fn height(self) -> u32 {
        self.height
    }
}

/// A pixel on the host screen; only made by [`NormalizedPoint::to_screen`], so always inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScreenPoint {
    x: u32,
    y: u32,
}

impl ScreenPoint {
    pub fn x(self) -> u32 {
        self.x
    }

    pub fn y(self) -> u32 {
        self.y
    }
}

/// Mouse buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MouseButton {
    Left,
    Right,
    Middle,
    Back,
    Forward,
}

impl MouseButton {
    const ALL: [MouseButton; 5] = [
        MouseButton::Left,
        MouseButton::Right,
        MouseButton::Middle,
        MouseButton::Back,
        MouseButton::Forward,
    ];

    fn code(self) -> u8 {
        match self {
            MouseButton::Left => 0,
            MouseButton::Right => 1,
            MouseButton::Middle => 2,
            MouseButton::Back => 3,
            MouseButton::Forward => 4,
        }
    }
}

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    #[error("text is {0} bytes long; at most {max} are allowed", max = BoundedText::MAX_LEN)]
    TooLong(usize),
    #[error("text contains the control character {0:?}")]
    ControlChar(char),
    #[error("text is empty")]
    Empty,
}

/// Typed text: 1 to [`BoundedText::MAX_LEN`] bytes of UTF-8, no control characters but `\n`
/// and `\t`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedText(String);

impl BoundedText {
    pub const MAX_LEN: usize = 256;

    pub fn new(text: &str) -> Result<Self, TextError> {
        if text.is_empty() {
            return Err(TextError::Empty);
        }
        if text.len() > Self::MAX_LEN {
            return Err(TextError::TooLong(text.len()));
        }
        if let Some(c) = text
            .chars()
            .find(|&c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(TextError::ControlChar(c));
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BoundedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl FromStr for BoundedText {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, TextError> {
        Self::new(s)
    }
}

/// One input event from the controller.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputEvent {
    /// Move the pointer to an absolute position on the shared frame.
    MouseMove {
        pos: NormalizedPoint,
    },
    MouseButton {
        button: MouseButton,
        pressed: bool,
    },
    /// Scroll, in notches; positive `dy` scrolls down, positive `dx` right.
    Wheel {
        dx: i16,
        dy: i16,
    },
    /// A physical key went down or up.
    Key {
        key: Key,
        pressed: bool,
    },
    /// Text to type as it is (any layout, IME output).
    Text {
        text: BoundedText,
    },
}

const TAG_MOVE: u8 = 1;
const TAG_BUTTON: u8 = 2;
const TAG_WHEEL: u8 = 3;
const TAG_KEY: u8 = 4;
const TAG_TEXT: u8 = 5;

/// Encodes one event. Layouts (big-endian):
/// move `01 x:u16 y:u16`, button `02 b:u8 pressed:u8`, wheel `03 dx:i16 dy:i16`,
/// key `04 hid_usage:u16 pressed:u8`, text `05 len:u16 utf8`.
pub fn encode(event: &InputEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(8);
    match event {
        InputEvent::MouseMove { pos } => {
            out.push(TAG_MOVE);
            out.extend_from_slice(&pos.x.to_be_bytes());
            out.extend_from_slice(&pos.y.to_be_bytes());
        }
        InputEvent::MouseButton { button, pressed } => {
            out.extend_from_slice(&[TAG_BUTTON, button.code(), u8::from(*pressed)]);
        }
        InputEvent::Wheel { dx, dy } => {
            out.push(TAG_WHEEL);
            out.extend_from_slice(&dx.clamp(&-MAX_WHEEL, &MAX_WHEEL).to_be_bytes());
            out.extend_from_slice(&dy.clamp(&-MAX_WHEEL, &MAX_WHEEL).to_be_bytes());
        }
        InputEvent::Key { key, pressed } => {
            out.push(TAG_KEY);
            out.extend_from_slice(&key.hid_usage().to_be_bytes());
            out.push(u8::from(*pressed));
        }
        InputEvent::Text { text } => {
            out.push(TAG_TEXT);
            // BoundedText is at most MAX_LEN (256) bytes, which fits u16
            out.extend_from_slice(&(text.0.len() as u16).to_be_bytes());
            out.extend_from_slice(text.0.as_bytes());
        }
    }
    out
}

/// Why bytes are not a valid event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("empty input event")]
    Empty,
    #[error("unknown input event type {0}")]
    UnknownTag(u8),
    #[error("input event is {got} bytes; this type takes {want}")]
    Length { got: usize, want: usize },
    #[error("unknown mouse button {0}")]
    Button(u8),
    #[error("pressed flag must be 0 or 1, got {0}")]
    Flag(u8),
    #[error("wheel step {0} is beyond ±{MAX_WHEEL}")]
    Wheel(i16),
    #[error("unknown key (hid usage {0:#06x})")]
    Key(u16),
    #[error("text is not valid utf-8")]
    Utf8,
    #[error(transparent)]
    Text(#[from] TextError),
}

fn flag(b: u8) -> Result<bool, DecodeError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Flag(b)),
    }
}

fn exact(bytes: &[u8], want: usize) -> Result<(), DecodeError> {
    if bytes.len() == want {
        Ok(())
    } else {
        Err(DecodeError::Length {
            got: bytes.len(),
            want,
        })
    }
}

fn be16(b: &[u8], at: usize) -> [u8; 2] {
    [b[at], b[at + 1]]
}

/// Decodes and validates one event received from the network. Never panics.
pub fn decode(bytes: &[u8]) -> Result<InputEvent, DecodeError> {
    let (&tag, _) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match tag {
        TAG_MOVE => {
            exact(bytes, 5)?;
            Ok(InputEvent::MouseMove {
                pos: NormalizedPoint::new(
                    u16::from_be_bytes(be16(bytes, 1)),
                    u16::from_be_bytes(be16(bytes, 3)),
                ),
            })
        }
        TAG_BUTTON => {
            exact(bytes, 3)?;
            let button = *MouseButton::ALL
                .get(usize::from(bytes[1]))
                .ok_or(DecodeError::Button(bytes[1]))?;
            Ok(InputEvent::MouseButton {
                button,
                pressed: flag(bytes[2])?,
            })
        }
        TAG_WHEEL => {
            exact(bytes, 5)?;
            let dx = i16::from_be_bytes(be16(bytes, 1));
            let dy = i16::from_be_bytes(be16(bytes, 3));
            for v in [dx, dy] {
                if !(-MAX_WHEEL..=MAX_WHEEL).contains(&v) {
                    return Err(DecodeError::Wheel(v));
                }
            }
            Ok(InputEvent::Wheel { dx, dy })
        }
        TAG_KEY => {
            exact(bytes, 4)?;
            let usage = u16::from_be_bytes(be16(bytes, 1));
            Ok(InputEvent::Key {
                key: Key::from_hid_usage(usage).ok_or(DecodeError::Key(usage))?,
                pressed: flag(bytes[3])?,
            })
        }
        TAG_TEXT => {
            if bytes.len() < 3 {
                return Err(DecodeError::Length {
                    got: bytes.len(),
                    want: 3,
                });
            }
            let len = usize::from(u16::from_be_bytes(be16(bytes, 1)));
            if len > BoundedText::MAX_LEN {
                return Err(TextError::TooLong(len).into());
            }
            exact(bytes, 3 + len)?;
            let s = std::str::from_utf8(&bytes[3..]).map_err(|_| DecodeError::Utf8)?;
            Ok(InputEvent::Text {
                text: BoundedText::new(s)?,
            })
        }
        other => Err(DecodeError::UnknownTag(other)),
    }
}

/// Errors from injecting input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("input backend: {0}")]
    Backend(String),
}

/// Something that performs input events on the host.
///
/// Backends that move a real pointer learn the screen size from their own display; positions
/// arrive normalised to the frame and are mapped with [`NormalizedPoint::to_screen`].
pub trait InputBackend: Send {
    /// Performs one (already validated) event.
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError>;
    /// Releases every key and button still held; called when a session ends, so a dropped
    /// connection never leaves a modifier stuck down.
    fn release_all(&mut self) -> Result<(), InputError>;
}

#[derive(Debug, Default)]
struct Recorded {
    events: Vec<InputEvent>,
    keys: Vec<Key>,
    buttons: Vec<MouseButton>,
}

/// A backend that records events instead of performing them (tests, synthetic hosts). Clones
/// share one record, so a test keeps a clone to read what the host received.
#[derive(Debug, Clone, Default)]
pub struct RecordingBackend {
    inner: Arc<Mutex<Recorded>>,
}

impl RecordingBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event injected so far, including the releases `release_all` made.
    pub fn events(&self) -> Vec<InputEvent> {
        self.lock().events.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        // the record is plain data: a panic elsewhere leaves it usable
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl InputBackend for RecordingBackend {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        let mut r = self.lock();
        match *event {
            InputEvent::Key { key, pressed } => {
                r.keys.retain(|&k| k != key);
                if pressed {
                    r.keys.push(key);
                }
            }
            InputEvent::MouseButton { button, pressed } => {
                r.buttons.retain(|&b| b != button);
                if pressed {
                    r.buttons.push(button);
                }
            }
            _ => {}
        }
        r.events.push(event.clone());
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), InputError> {
        let mut r = self.lock();
        let keys = std::mem::take(&mut r.keys);
        let buttons = std::mem::take(&mut r.buttons);
        for key in keys.into_iter().rev() {
            r.events.push(InputEvent::Key {
                key,
                pressed: false,
            });
        }
        for button in buttons.into_iter().rev() {
            r.events.push(InputEvent::MouseButton {
                button,
                pressed: false,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<InputEvent> {
        let mut v = vec![
            InputEvent::MouseMove {
                pos: NormalizedPoint::new(0, 65535),
            },
            InputEvent::Wheel { dx: -120, dy: 120 },
            InputEvent::Text {
                text: BoundedText::new("ä\t日本\n").unwrap(),
            },
            InputEvent::Text {
                text: BoundedText::new(&"x".repeat(256)).unwrap(),
            },
        ];
        for b in MouseButton::ALL {
            for pressed in [false, true] {
                v.push(InputEvent::MouseButton { button: b, pressed });
            }
        }
        for &key in Key::ALL {
            v.push(InputEvent::Key { key, pressed: true });
        }
        v
    }

    #[test]
    fn every_event_round_trips() {
        for ev in samples() {
            let bytes = encode(&ev);
            assert!(bytes.len() <= MAX_EVENT_LEN);
            assert_eq!(decode(&bytes), Ok(ev));
        }
    }

    #[test]
    fn malformed_events_are_refused() {
        let cases: &[(&[u8], DecodeError)] = &[
            (&[], DecodeError::Empty),
            (&[9], DecodeError::UnknownTag(9)),
            (&[1, 0, 0, 0], DecodeError::Length { got: 4, want: 5 }),
            (&[1, 0, 0, 0, 0, 0], DecodeError::Length { got: 6, want: 5 }),
            (&[2, 5, 1], DecodeError::Button(5)),
            (&[2, 0, 2], DecodeError::Flag(2)),
            (&[3, 0, 121, 0, 0], DecodeError::Wheel(121)),
            (&[3, 0x80, 0, 0, 0], DecodeError::Wheel(i16::MIN)),
            (&[4, 0, 0, 1], DecodeError::Key(0)),
            (&[4, 0, 4, 3], DecodeError::Flag(3)),
            (&[5, 0], DecodeError::Length { got: 2, want: 3 }),
            (&[5, 0, 2, b'a'], DecodeError::Length { got: 4, want: 5 }),
            (&[5, 0, 1, 0xff], DecodeError::Utf8),
            (
                &[5, 0, 1, 0x07],
                DecodeError::Text(TextError::ControlChar('\u{7}')),
            ),
            (&[5, 0, 0], DecodeError::Text(TextError::Empty)),
            (&[5, 1, 1], DecodeError::Text(TextError::TooLong(257))),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Err(want), "{bytes:?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 12) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|i| (x >> (i * 5 % 56)) as u8).collect();
            if let Some(b) = bytes.first_mut() {
                *b %= 7; // mostly valid tags, to reach the field checks
            }
            if let Ok(ev) = decode(&bytes) {
                assert_eq!(decode(&encode(&ev)), Ok(ev));
            }
        }
    }

    #[test]
    fn normalized_points_map_to_the_screen_edges() {
        let size = ScreenSize::new(1920, 1080).unwrap();
        let p = NormalizedPoint::new(0, 0).to_screen(size);
        assert_eq!((p.x(), p.y()), (0, 0));
        let p = NormalizedPoint::new(65535, 65535).to_screen(size);
        assert_eq!((p.x(), p.y()), (1919, 1079));
        let mid = NormalizedPoint::from_frame(640.0, 360.0, 1281, 721);
        let p = mid.to_screen(ScreenSize::new(1281, 721).unwrap());
        assert_eq!((p.x(), p.y()), (640, 360));
        let clamped = NormalizedPoint::from_frame(-5.0, f64::NAN, 100, 100);
        assert_eq!((clamped.x(), clamped.y()), (0, 0));
        assert!(ScreenSize::new(0, 10).is_err() && ScreenSize::new(10, 16385).is_err());
    }

    #[test]
    fn release_all_releases_what_is_held() {
        let mut b = RecordingBackend::new();
        let reader = b.clone();
        for ev in [
            InputEvent::Key {
                key: Key::ShiftLeft,
                pressed: true,
            },
            InputEvent::Key {
                key: Key::KeyA,
                pressed: true,
            },
            InputEvent::Key {
                key: Key::KeyA,
                pressed: false,
            },
            InputEvent::MouseButton {
                button: MouseButton::Left,
                pressed: true,
            },
        ] {
            b.inject(&ev).unwrap();
        }
        b.release_all().unwrap();
        let ev = reader.events();
        assert_eq!(
            &ev[4..],
            &[
                InputEvent::Key {
                    key: Key::ShiftLeft,
                    pressed: false
                },
                InputEvent::MouseButton {
                    button: MouseButton::Left,
                    pressed: false
                }
            ]
        );
        b.release_all().unwrap();
        assert_eq!(reader.events().len(), 6, "nothing is released twice");
    }

    #[test]
    fn key_names_parse() {
        for &k in Key::ALL {
            assert_eq!(k.name().parse::<Key>(), Ok(k));
        }
        assert!("NoSuchKey".parse::<Key>().is_err());
    }
}
