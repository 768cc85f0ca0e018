//! Input events for quicdesk: their types, their wire encoding, and the backends that perform
//! them ([`open`] picks this platform's).
//!
//! ```text
//! controller:  window event ─► InputEvent ─► encode() ─► bytes ─► peer: frame
//!                                                                   │ QUIC input stream
//! host:        inject() ◄─ InputEvent ◄─ decode() ◄─ bytes ◄───── peer: unframe
//!              (InputBackend: set_screen_size() first, release_all() when the session ends)
//! ```
//!
//! Types cannot hold bad values ("parse, don't validate"): a [`NormalizedPoint`] is always on
//! the frame, a [`ScreenPoint`] always inside its [`ScreenSize`], a [`Key`] is a known physical
//! key and a [`BoundedText`] is short UTF-8 without control characters. [`decode`] turns
//! untrusted bytes into those types or into a [`DecodeError`], and never panics, so a backend
//! never sees an event it has to second-guess.
//!
//! What this crate does **not** do:
//! - it knows nothing of QUIC, sockets or framing: [`encode`] turns one event into bytes and
//!   [`decode`] turns exactly those bytes back; the `peer` crate puts each encoding in a
//!   length-prefixed frame on the session's input stream and limits frames to
//!   [`MAX_EVENT_LEN`];
//! - it does not map keys to characters: a [`Key`] is a position on the keyboard, whatever the
//!   layout prints on it, and typed text (other layouts, IME output) travels as
//!   [`InputEvent::Text`];
//! - it does not decide who may send input: the session authenticates the controller before any
//!   event reaches a backend.

#![deny(unsafe_code)]

mod backend;
mod codes;
#[cfg(all(feature = "enigo", unix, not(target_os = "macos")))]
mod enigo_backend;
mod event;
mod keys;
mod open;
mod point;
mod wire;

pub use backend::{HeldInputs, InputBackend, InputError, RecordingBackend, RecordingHandle};
pub use codes::{WindowsKey, evdev_code, windows_key};
#[cfg(all(feature = "enigo", unix, not(target_os = "macos")))]
pub use enigo_backend::{EnigoBackend, x_keycode};
// SendInput is FFI; each unsafe block says why it holds.
#[cfg(all(feature = "enigo", windows))]
#[allow(unsafe_code)]
mod windows;
pub use event::{BoundedText, InputEvent, MAX_WHEEL, MouseButton, TextError};
pub use keys::{Key, UnknownKey};
pub use open::{InputSpec, open};
pub use point::{NormalizedPoint, ScreenPoint, ScreenSize, ScreenSizeError};
#[cfg(all(feature = "enigo", windows))]
pub use windows::{WindowsBackend, absolute_coordinate, pointer_position};
pub use wire::{DecodeError, MAX_EVENT_LEN, WIRE_VERSION, decode, encode};

/// enigo's name for a button; both enigo backends (X11, Windows) use it.
#[cfg(all(feature = "enigo", any(windows, all(unix, not(target_os = "macos")))))]
fn enigo_button(b: MouseButton) -> enigo::Button {
    match b {
        MouseButton::Left => enigo::Button::Left,
        MouseButton::Right => enigo::Button::Right,
        MouseButton::Middle => enigo::Button::Middle,
        MouseButton::Back => enigo::Button::Back,
        MouseButton::Forward => enigo::Button::Forward,
    }
}
