//! The wire encoding of one event.
//!
//! Every encoding starts with [`WIRE_VERSION`] and a type tag, then fixed fields, big-endian:
//!
//! | event         | bytes                                        | length   |
//! |---------------|----------------------------------------------|----------|
//! | `MouseMove`   | `01 01 x:u16 y:u16`                          | 6        |
//! | `MouseButton` | `01 02 button:u8 pressed:u8`                 | 4        |
//! | `Wheel`       | `01 03 dx:i16 dy:i16`                        | 6        |
//! | `Key`         | `01 04 hid_usage:u16 pressed:u8`             | 5        |
//! | `Text`        | `01 05 len:u16 utf8[len]`                    | 4 + len  |
//!
//! Buttons are coded 0 to 4 in [`MouseButton::ALL`] order, `pressed` is 0 or 1, keys are USB
//! HID usages (keyboard page 0x07). The encoding is canonical: an accepted input is exactly what
//! [`encode`] makes of the event it decodes to.
//!
//! Hand-written rather than serde: five tiny layouts whose every field needs a range check
//! anyway, and a layout that stays put whatever a serialisation library does.

use crate::{BoundedText, InputEvent, Key, MAX_WHEEL, MouseButton, NormalizedPoint, TextError};

/// Version of the encoding, the first byte of every encoded event. A receiver refuses versions
/// it does not know rather than guessing at their layout. (The session handshake has its own
/// protocol version; this one keeps an encoded event readable on its own, in logs or fuzz
/// corpora.)
pub const WIRE_VERSION: u8 = 1;

/// Longest encoded event: a text event with [`BoundedText::MAX_LEN`] bytes of text.
pub const MAX_EVENT_LEN: usize = HEADER + 2 + BoundedText::MAX_LEN;

/// Version and tag.
const HEADER: usize = 2;

const TAG_MOVE: u8 = 1;
const TAG_BUTTON: u8 = 2;
const TAG_WHEEL: u8 = 3;
const TAG_KEY: u8 = 4;
const TAG_TEXT: u8 = 5;

/// Encodes one event (at most [`MAX_EVENT_LEN`] bytes). Wheel steps beyond ±[`MAX_WHEEL`] are
/// clamped, so whatever this returns decodes.
pub fn encode(event: &InputEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(6);
    out.push(WIRE_VERSION);
    match event {
        InputEvent::MouseMove { pos } => {
            out.push(TAG_MOVE);
            out.extend_from_slice(&pos.x().to_be_bytes());
            out.extend_from_slice(&pos.y().to_be_bytes());
        }
        InputEvent::MouseButton { button, pressed } => {
            out.extend_from_slice(&[TAG_BUTTON, button.code(), u8::from(*pressed)]);
        }
        InputEvent::Wheel { dx, dy } => {
            out.push(TAG_WHEEL);
            for v in [dx, dy] {
                out.extend_from_slice(&v.clamp(&-MAX_WHEEL, &MAX_WHEEL).to_be_bytes());
            }
        }
        InputEvent::Key { key, pressed } => {
            out.push(TAG_KEY);
            out.extend_from_slice(&key.hid_usage().to_be_bytes());
            out.push(u8::from(*pressed));
        }
        InputEvent::Text { text } => {
            let text = text.as_str();
            out.reserve(2 + text.len());
            out.push(TAG_TEXT);
            // BoundedText holds at most MAX_LEN (256) bytes, so the length fits u16
            out.extend_from_slice(&(text.len() as u16).to_be_bytes());
            out.extend_from_slice(text.as_bytes());
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
    #[error("unsupported input encoding version {0}")]
    Version(u8),
    #[error("input event is cut short")]
    Truncated,
    #[error("unknown input event type {0}")]
    UnknownTag(u8),
    #[error("input event is {got} bytes; this one takes {want}")]
    Length { got: usize, want: usize },
    #[error("unknown mouse button {0}")]
    Button(u8),
    #[error("pressed flag must be 0 or 1, not {0}")]
    Flag(u8),
    #[error("wheel step {0} is beyond ±{MAX_WHEEL}")]
    Wheel(i16),
    #[error("unknown key (hid usage {0:#06x})")]
    Key(u16),
    #[error("text is not utf-8")]
    Utf8,
    #[error(transparent)]
    Text(#[from] TextError),
}

/// Decodes and validates one event received from the network: all of `bytes`, nothing more or
/// less. Never panics, whatever `bytes` holds.
pub fn decode(bytes: &[u8]) -> Result<InputEvent, DecodeError> {
    let (&version, rest) = bytes.split_first().ok_or(DecodeError::Empty)?;
    if version != WIRE_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (&tag, body) = rest.split_first().ok_or(DecodeError::Truncated)?;
    match tag {
        TAG_MOVE => {
            let [x0, x1, y0, y1] = fields(bytes, body)?;
            Ok(InputEvent::MouseMove {
                pos: NormalizedPoint::new(
                    u16::from_be_bytes([x0, x1]),
                    u16::from_be_bytes([y0, y1]),
                ),
            })
        }
        TAG_BUTTON => {
            let [button, pressed] = fields(bytes, body)?;
            Ok(InputEvent::MouseButton {
                button: MouseButton::from_code(button).ok_or(DecodeError::Button(button))?,
                pressed: flag(pressed)?,
            })
        }
        TAG_WHEEL => {
            let [x0, x1, y0, y1] = fields(bytes, body)?;
            Ok(InputEvent::Wheel {
                dx: wheel([x0, x1])?,
                dy: wheel([y0, y1])?,
            })
        }
        TAG_KEY => {
            let [k0, k1, pressed] = fields(bytes, body)?;
            let usage = u16::from_be_bytes([k0, k1]);
            Ok(InputEvent::Key {
                key: Key::from_hid_usage(usage).ok_or(DecodeError::Key(usage))?,
                pressed: flag(pressed)?,
            })
        }
        TAG_TEXT => {
            let [l0, l1, text @ ..] = body else {
                return Err(DecodeError::Truncated);
            };
            let len = usize::from(u16::from_be_bytes([*l0, *l1]));
            if len > BoundedText::MAX_LEN {
                return Err(TextError::TooLong(len).into());
            }
            if text.len() != len {
                return Err(DecodeError::Length {
                    got: bytes.len(),
                    want: HEADER + 2 + len,
                });
            }
            let text = std::str::from_utf8(text).map_err(|_| DecodeError::Utf8)?;
            Ok(InputEvent::Text {
                text: BoundedText::new(text)?,
            })
        }
        other => Err(DecodeError::UnknownTag(other)),
    }
}

/// The fixed-size body of an event, or a length error naming the whole event's size.
fn fields<const N: usize>(bytes: &[u8], body: &[u8]) -> Result<[u8; N], DecodeError> {
    body.try_into().map_err(|_| DecodeError::Length {
        got: bytes.len(),
        want: HEADER + N,
    })
}

fn flag(b: u8) -> Result<bool, DecodeError> {
    match b {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::Flag(b)),
    }
}

fn wheel(be: [u8; 2]) -> Result<i16, DecodeError> {
    let v = i16::from_be_bytes(be);
    if (-MAX_WHEEL..=MAX_WHEEL).contains(&v) {
        Ok(v)
    } else {
        Err(DecodeError::Wheel(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind_of_event() -> Vec<InputEvent> {
        let mut v = Vec::new();
        for (x, y) in [(0, 0), (u16::MAX, u16::MAX), (1, 0x8000), (0xabcd, 7)] {
            v.push(InputEvent::MouseMove {
                pos: NormalizedPoint::new(x, y),
            });
        }
        for button in MouseButton::ALL {
            for pressed in [false, true] {
                v.push(InputEvent::MouseButton { button, pressed });
            }
        }
        for (dx, dy) in [(0, 0), (-MAX_WHEEL, MAX_WHEEL), (1, -1), (0, -3)] {
            v.push(InputEvent::Wheel { dx, dy });
        }
        for &key in Key::ALL {
            for pressed in [false, true] {
                v.push(InputEvent::Key { key, pressed });
            }
        }
        for text in ["a", "ä\t日本\n", "👩‍💻", &"x".repeat(BoundedText::MAX_LEN)] {
            v.push(InputEvent::Text {
                text: BoundedText::new(text).unwrap(),
            });
        }
        v
    }

    #[test]
    fn every_event_round_trips() {
        for ev in every_kind_of_event() {
            let bytes = encode(&ev);
            assert!(bytes.len() <= MAX_EVENT_LEN, "{ev:?}");
            assert_eq!(bytes[0], WIRE_VERSION);
            assert_eq!(decode(&bytes), Ok(ev));
        }
    }

    #[test]
    fn layouts_are_as_documented() {
        let cases: Vec<(InputEvent, &[u8])> = vec![
            (
                InputEvent::MouseMove {
                    pos: NormalizedPoint::new(0x0102, 0xfffe),
                },
                &[1, 1, 0x01, 0x02, 0xff, 0xfe],
            ),
            (
                InputEvent::MouseButton {
                    button: MouseButton::Forward,
                    pressed: true,
                },
                &[1, 2, 4, 1],
            ),
            (
                InputEvent::Wheel { dx: -1, dy: 120 },
                &[1, 3, 0xff, 0xff, 0, 120],
            ),
            (
                InputEvent::Key {
                    key: Key::ShiftLeft,
                    pressed: false,
                },
                &[1, 4, 0x00, 0xe1, 0],
            ),
            (
                InputEvent::Text {
                    text: BoundedText::new("hé").unwrap(),
                },
                &[1, 5, 0, 3, b'h', 0xc3, 0xa9],
            ),
        ];
        for (ev, bytes) in cases {
            assert_eq!(encode(&ev), bytes, "{ev:?}");
        }
        let longest = InputEvent::Text {
            text: BoundedText::new(&"x".repeat(BoundedText::MAX_LEN)).unwrap(),
        };
        assert_eq!(encode(&longest).len(), MAX_EVENT_LEN);
    }

    #[test]
    fn oversized_wheel_steps_are_clamped_when_encoding() {
        let ev = InputEvent::Wheel {
            dx: i16::MIN,
            dy: 500,
        };
        assert_eq!(
            decode(&encode(&ev)),
            Ok(InputEvent::Wheel {
                dx: -MAX_WHEEL,
                dy: MAX_WHEEL
            })
        );
    }

    #[test]
    fn malformed_events_are_refused() {
        use DecodeError as E;
        let cases: &[(&[u8], DecodeError)] = &[
            (&[], E::Empty),
            (&[0, 1, 0, 0, 0, 0], E::Version(0)),
            (&[2, 1, 0, 0, 0, 0], E::Version(2)),
            (&[0xff], E::Version(0xff)),
            (&[1], E::Truncated),
            (&[1, 0], E::UnknownTag(0)),
            (&[1, 6, 0, 0], E::UnknownTag(6)),
            (&[1, 0xff], E::UnknownTag(0xff)),
            // wrong lengths, short and with trailing bytes, for every fixed layout
            (&[1, 1], E::Length { got: 2, want: 6 }),
            (&[1, 1, 0, 0, 0], E::Length { got: 5, want: 6 }),
            (&[1, 1, 0, 0, 0, 0, 0], E::Length { got: 7, want: 6 }),
            (&[1, 2, 0], E::Length { got: 3, want: 4 }),
            (&[1, 2, 0, 0, 0], E::Length { got: 5, want: 4 }),
            (&[1, 3, 0, 0, 0], E::Length { got: 5, want: 6 }),
            (&[1, 3, 0, 0, 0, 0, 9], E::Length { got: 7, want: 6 }),
            (&[1, 4, 0, 4], E::Length { got: 4, want: 5 }),
            (&[1, 4, 0, 4, 1, 1], E::Length { got: 6, want: 5 }),
            // out-of-range fields
            (&[1, 2, 5, 1], E::Button(5)),
            (&[1, 2, 0xff, 0], E::Button(0xff)),
            (&[1, 2, 0, 2], E::Flag(2)),
            (&[1, 2, 0, 0xff], E::Flag(0xff)),
            (&[1, 3, 0, 121, 0, 0], E::Wheel(121)),
            (&[1, 3, 0, 0, 0xff, 0x87], E::Wheel(-121)),
            (&[1, 3, 0x80, 0, 0, 0], E::Wheel(i16::MIN)),
            (&[1, 3, 0x7f, 0xff, 0, 0], E::Wheel(i16::MAX)),
            (&[1, 4, 0, 0, 1], E::Key(0)),
            (&[1, 4, 0, 0x03, 1], E::Key(3)),
            (&[1, 4, 0, 0x32, 1], E::Key(0x32)),
            (&[1, 4, 0x01, 0x04, 1], E::Key(0x104)),
            (&[1, 4, 0, 0xe8, 0], E::Key(0xe8)),
            (&[1, 4, 0, 4, 3], E::Flag(3)),
            // text
            (&[1, 5], E::Truncated),
            (&[1, 5, 0], E::Truncated),
            (&[1, 5, 0, 0], E::Text(TextError::Empty)),
            (&[1, 5, 0, 2, b'a'], E::Length { got: 5, want: 6 }),
            (&[1, 5, 0, 1, b'a', b'b'], E::Length { got: 6, want: 5 }),
            (&[1, 5, 1, 1], E::Text(TextError::TooLong(257))),
            (&[1, 5, 0xff, 0xff], E::Text(TextError::TooLong(0xffff))),
            (&[1, 5, 0, 1, 0xff], E::Utf8),
            (&[1, 5, 0, 2, 0xc3, 0x28], E::Utf8),
            (&[1, 5, 0, 1, 0xc3], E::Utf8),
            (&[1, 5, 0, 3, 0xed, 0xa0, 0x80], E::Utf8), // a UTF-16 surrogate
            (&[1, 5, 0, 2, 0xc0, 0x80], E::Utf8),       // overlong NUL
            (
                &[1, 5, 0, 1, 0x07],
                E::Text(TextError::ControlChar('\u{7}')),
            ),
            (&[1, 5, 0, 1, b'\r'], E::Text(TextError::ControlChar('\r'))),
            (
                &[1, 5, 0, 2, 0xc2, 0x9b], // C1 control CSI
                E::Text(TextError::ControlChar('\u{9b}')),
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(decode(bytes).as_ref(), Err(want), "{bytes:02x?}");
        }
        let mut long = vec![1, 5, 1, 1];
        long.extend(std::iter::repeat_n(b'x', 257));
        assert_eq!(decode(&long), Err(E::Text(TextError::TooLong(257))));
    }

    #[test]
    fn errors_read_as_short_lowercase_messages() {
        for e in [
            DecodeError::Empty,
            DecodeError::Version(9),
            DecodeError::Key(0x32),
            DecodeError::Text(TextError::TooLong(300)),
        ] {
            let msg = e.to_string();
            assert!(msg.starts_with(|c: char| c.is_lowercase()), "{msg}");
            assert!(!msg.ends_with('.') && msg.len() < 80, "{msg}");
        }
        assert_eq!(
            DecodeError::Key(0x32).to_string(),
            "unknown key (hid usage 0x0032)"
        );
    }

    /// xorshift64*: deterministic, so a failure is reproducible from the iteration number.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn byte(&mut self) -> u8 {
            (self.next() >> 56) as u8
        }
    }

    #[test]
    fn random_bytes_never_panic_and_what_decodes_is_canonical() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut accepted = [0usize; 6];
        for i in 0..300_000 {
            // Mostly plausible headers, so the field checks are reached, not just the tag check.
            let len = match rng.below(8) {
                0 => rng.below(MAX_EVENT_LEN as u64 + 8) as usize,
                _ => rng.below(9) as usize,
            };
            // Small values are likelier, so that in-range fields turn up often.
            const MASKS: [u8; 5] = [0xff, 0x7f, 0x07, 0x01, 0x00];
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| rng.byte() & MASKS[rng.below(5) as usize])
                .collect();
            if len > 0 && rng.below(16) != 0 {
                bytes[0] = WIRE_VERSION;
            }
            if len > 1 && rng.below(16) != 0 {
                bytes[1] = rng.below(7) as u8;
            }
            if len >= 4 && bytes[1] == TAG_TEXT && rng.below(4) != 0 {
                // a length prefix that matches, with mostly-ASCII text
                let n = (len - 4) as u16;
                bytes[2..4].copy_from_slice(&n.to_be_bytes());
                for b in &mut bytes[4..] {
                    if rng.below(8) != 0 {
                        *b &= 0x7f;
                    }
                }
            }
            if let Ok(ev) = decode(&bytes) {
                assert_eq!(encode(&ev), bytes, "iteration {i}: {ev:?}");
                accepted[usize::from(bytes[1])] += 1;
            }
        }
        // Every event type was reached and accepted at least once.
        assert!(accepted[1..].iter().all(|&n| n > 0), "{accepted:?}");
    }
}
