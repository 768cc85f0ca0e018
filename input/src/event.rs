//! The events themselves.

use std::fmt;
use std::str::FromStr;

use crate::{Key, NormalizedPoint};

/// Largest wheel step in one event, in notches, either way.
pub const MAX_WHEEL: i16 = 120;

/// One input event, sent by the controller and performed by the host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InputEvent {
    /// Move the pointer to an absolute position on the shared frame.
    MouseMove { pos: NormalizedPoint },
    /// A mouse button went down (`pressed`) or up.
    MouseButton { button: MouseButton, pressed: bool },
    /// Scroll by whole notches (lines); positive `dy` scrolls down, positive `dx` right.
    ///
    /// [`decode`](crate::decode) refuses steps beyond ±[`MAX_WHEEL`];
    /// [`encode`](crate::encode) clamps an event built with larger ones.
    Wheel { dx: i16, dy: i16 },
    /// A physical key went down (`pressed`) or up.
    Key { key: Key, pressed: bool },
    /// Text to type as it is, whatever the host's keyboard layout (other layouts, IME output).
    Text { text: BoundedText },
}

impl InputEvent {
    /// What kind of event this is, without its content: what logs may show (typed text must
    /// never reach a log).
    pub fn kind_name(&self) -> &'static str {
        match self {
            InputEvent::MouseMove { .. } => "mouse move",
            InputEvent::MouseButton { .. } => "mouse button",
            InputEvent::Wheel { .. } => "wheel",
            InputEvent::Key { .. } => "key",
            InputEvent::Text { .. } => "text",
        }
    }
}

/// Mouse buttons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MouseButton {
    Left,
    Right,
    Middle,
    /// The "back" side button (X1).
    Back,
    /// The "forward" side button (X2).
    Forward,
}

impl MouseButton {
    /// Every button, in wire-code order.
    pub const ALL: [MouseButton; 5] = [
        MouseButton::Left,
        MouseButton::Right,
        MouseButton::Middle,
        MouseButton::Back,
        MouseButton::Forward,
    ];

    /// The button's wire code: its index in [`MouseButton::ALL`].
    pub(crate) fn code(self) -> u8 {
        match self {
            MouseButton::Left => 0,
            MouseButton::Right => 1,
            MouseButton::Middle => 2,
            MouseButton::Back => 3,
            MouseButton::Forward => 4,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }
}

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    #[error("text is empty")]
    Empty,
    #[error("text is {0} bytes; at most {max} are allowed", max = BoundedText::MAX_LEN)]
    TooLong(usize),
    #[error("text contains the control character {0:?}")]
    ControlChar(char),
}

/// Typed text: 1 to [`BoundedText::MAX_LEN`] bytes of UTF-8 with no control characters
/// (Unicode category Cc) other than `\n` and `\t`.
///
/// Line breaks are `\n` only: a controller turns `\r\n` into `\n` before sending.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BoundedText(String);

impl BoundedText {
    /// Longest text, in bytes of UTF-8.
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
        Ok(Self(text.to_owned()))
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

impl fmt::Display for BoundedText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BoundedText {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl TryFrom<&str> for BoundedText {
    type Error = TextError;

    fn try_from(s: &str) -> Result<Self, TextError> {
        Self::new(s)
    }
}

impl AsRef<str> for BoundedText {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_limits() {
        let long = "é".repeat(BoundedText::MAX_LEN / 2);
        assert_eq!(BoundedText::new(&long).unwrap().as_str(), long);
        let cases = [
            ("", TextError::Empty),
            (&*"x".repeat(257), TextError::TooLong(257)),
            (&*format!("{long}x"), TextError::TooLong(257)),
            ("a\rb", TextError::ControlChar('\r')),
            ("\u{1b}[2J", TextError::ControlChar('\u{1b}')),
            ("\u{7f}", TextError::ControlChar('\u{7f}')),
            ("\u{85}", TextError::ControlChar('\u{85}')),
            ("nul\0", TextError::ControlChar('\0')),
        ];
        for (text, want) in cases {
            assert_eq!(BoundedText::new(text), Err(want), "{text:?}");
        }
        for ok in ["a\tb\nc", "日本語", "👩‍💻", " "] {
            assert_eq!(ok.parse::<BoundedText>().unwrap().to_string(), ok);
        }
    }

    #[test]
    fn button_codes_are_indices() {
        for (i, b) in MouseButton::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(b.code()), i);
            assert_eq!(MouseButton::from_code(b.code()), Some(b));
        }
        assert_eq!(MouseButton::from_code(5), None);
    }
}
