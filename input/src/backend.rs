//! Performing events on the host: the backend trait, held-input tracking, and a recording
//! backend for tests.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::{InputEvent, Key, MouseButton, NormalizedPoint, ScreenPoint, ScreenSize};

/// Errors from performing input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("input backend: {0}")]
    Backend(String),
    /// This build has no backend for this platform.
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
}

/// Something that performs input events on the host.
///
/// The host owns one backend and drives it in this order: [`set_screen_size`] before the first
/// event of a session (and again whenever the captured screen changes size; with
/// [`set_origin`] when the session moves to another monitor), [`inject`] for each decoded
/// event, [`release_all`] when the session ends, however it ends.
///
/// [`set_screen_size`]: InputBackend::set_screen_size
/// [`set_origin`]: InputBackend::set_origin
/// [`inject`]: InputBackend::inject
/// [`release_all`]: InputBackend::release_all
pub trait InputBackend: Send {
    /// Performs one event. Events come from [`decode`](crate::decode), so every field is in
    /// range; positions are mapped onto the screen with [`NormalizedPoint::to_screen`].
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError>;

    /// Releases every key and button still held, so a session that ends (or drops) never leaves
    /// a modifier or a button stuck down. Releasing when nothing is held does nothing.
    /// [`HeldInputs`] does the bookkeeping.
    fn release_all(&mut self) -> Result<(), InputError>;

    /// The size of the screen the host captures, onto which pointer positions map.
    ///
    /// The host tells the backend rather than the backend asking its display, because only the
    /// host knows which screen it streams. Backends that place a real pointer override this;
    /// the default ignores the size, which suits backends that never map positions.
    fn set_screen_size(&mut self, size: ScreenSize) {
        let _ = size;
    }

    /// Where the shared area's top-left corner is on the whole desktop (the captured monitor's
    /// position), so that positions land on that monitor. Starts at `(0, 0)`; the host sets it
    /// again when the session switches monitors. Backends that place a real pointer override
    /// this; the default ignores it.
    fn set_origin(&mut self, x: i32, y: i32) {
        let _ = (x, y);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    Key(Key),
    Button(MouseButton),
}

/// The keys and mouse buttons currently held down, as seen from the events a backend performed:
/// the bookkeeping behind [`InputBackend::release_all`].
///
/// Holds at most one entry per key and button, so its size is bounded whatever a controller
/// sends.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldInputs {
    /// In press order; a repeated press moves the entry to the end.
    held: Vec<Held>,
}

impl HeldInputs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes note of what `event` presses or releases; other events change nothing.
    pub fn note(&mut self, event: &InputEvent) {
        let (item, pressed) = match *event {
            InputEvent::Key { key, pressed } => (Held::Key(key), pressed),
            InputEvent::MouseButton { button, pressed } => (Held::Button(button), pressed),
            _ => return,
        };
        self.held.retain(|&h| h != item);
        if pressed {
            self.held.push(item);
        }
    }

    /// Whether `key` is held down.
    pub fn is_key_held(&self, key: Key) -> bool {
        self.held.contains(&Held::Key(key))
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Performs the release of everything held with `perform` (a backend's `inject`), most
    /// recent press first, and forgets it all. Goes on past a failure, so one key that cannot be
    /// released does not keep the others down; returns the first error.
    pub fn release_each(
        &mut self,
        mut perform: impl FnMut(&InputEvent) -> Result<(), InputError>,
    ) -> Result<(), InputError> {
        let mut first_error = None;
        for event in self.take_releases() {
            if let Err(e) = perform(&event) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The events that release everything held, most recent press first, and forgets them.
    pub fn take_releases(&mut self) -> Vec<InputEvent> {
        self.held
            .drain(..)
            .rev()
            .map(|h| match h {
                Held::Key(key) => InputEvent::Key {
                    key,
                    pressed: false,
                },
                Held::Button(button) => InputEvent::MouseButton {
                    button,
                    pressed: false,
                },
            })
            .collect()
    }
}

#[derive(Debug, Default)]
struct Record {
    events: Vec<InputEvent>,
    held: HeldInputs,
    screen: Option<ScreenSize>,
    pointer: Option<NormalizedPoint>,
    origin: (i32, i32),
}

fn lock(record: &Mutex<Record>) -> MutexGuard<'_, Record> {
    // The record is plain data updated in single steps: a panic while it was locked cannot
    // have left it half-changed, so a poisoned lock is still safe to use.
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A backend that records events instead of performing them, for tests and synthetic hosts.
///
/// It tracks held keys and buttons like a real backend, so [`release_all`] records the
/// matching release events. Read the record through a [`RecordingHandle`] (from [`handle`]),
/// from any thread. Clones of a `RecordingBackend` share one record too.
///
/// The record grows with every event: meant for tests and short sessions.
///
/// [`release_all`]: InputBackend::release_all
/// [`handle`]: RecordingBackend::handle
#[derive(Debug, Clone, Default)]
pub struct RecordingBackend {
    record: Arc<Mutex<Record>>,
}

impl RecordingBackend {
    pub fn new() -> Self {
        Self::default()
    }

    /// A read-only view of the record.
    pub fn handle(&self) -> RecordingHandle {
        RecordingHandle {
            record: Arc::clone(&self.record),
        }
    }

    /// Every event recorded so far; the same as [`RecordingHandle::events`].
    pub fn events(&self) -> Vec<InputEvent> {
        lock(&self.record).events.clone()
    }
}

impl InputBackend for RecordingBackend {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InputError> {
        let mut r = lock(&self.record);
        r.held.note(event);
        if let InputEvent::MouseMove { pos } = *event {
            r.pointer = Some(pos);
        }
        r.events.push(event.clone());
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), InputError> {
        let mut r = lock(&self.record);
        let releases = r.held.take_releases();
        r.events.extend(releases);
        Ok(())
    }

    fn set_screen_size(&mut self, size: ScreenSize) {
        lock(&self.record).screen = Some(size);
    }

    fn set_origin(&mut self, x: i32, y: i32) {
        lock(&self.record).origin = (x, y);
    }
}

/// A cloneable, read-only view of a [`RecordingBackend`]'s record, usable from any thread.
#[derive(Debug, Clone)]
pub struct RecordingHandle {
    record: Arc<Mutex<Record>>,
}

impl RecordingHandle {
    /// Every event injected so far, in order, including the releases `release_all` made.
    pub fn events(&self) -> Vec<InputEvent> {
        lock(&self.record).events.clone()
    }

    /// How many events were recorded.
    pub fn len(&self) -> usize {
        lock(&self.record).events.len()
    }

    /// Whether no event was recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The keys and buttons held now.
    pub fn held(&self) -> HeldInputs {
        lock(&self.record).held.clone()
    }

    /// The screen size the host last set.
    pub fn screen_size(&self) -> Option<ScreenSize> {
        lock(&self.record).screen
    }

    /// The origin the host last set (`(0, 0)` until it sets one).
    pub fn origin(&self) -> (i32, i32) {
        lock(&self.record).origin
    }

    /// Where the pointer is on the screen: the last move, mapped onto the last screen size.
    /// `None` until both are known.
    pub fn pointer(&self) -> Option<ScreenPoint> {
        let r = lock(&self.record);
        Some(r.pointer?.to_screen(r.screen?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoundedText;

    fn key(key: Key, pressed: bool) -> InputEvent {
        InputEvent::Key { key, pressed }
    }

    fn button(button: MouseButton, pressed: bool) -> InputEvent {
        InputEvent::MouseButton { button, pressed }
    }

    #[test]
    fn release_all_releases_what_is_held_most_recent_first() {
        let mut b = RecordingBackend::new();
        let seen = b.handle();
        let script = [
            key(Key::ControlLeft, true),
            key(Key::ShiftLeft, true),
            key(Key::KeyA, true),
            key(Key::KeyA, false),
            button(MouseButton::Left, true),
            InputEvent::Wheel { dx: 0, dy: 1 },
            key(Key::KeyB, true),
            key(Key::KeyB, true), // auto-repeat: still one key held
            button(MouseButton::Right, true),
            button(MouseButton::Right, false),
            key(Key::ControlLeft, false),
            key(Key::KeyZ, false), // released without a press: nothing to undo
        ];
        for ev in &script {
            b.inject(ev).unwrap();
        }
        assert!(!seen.held().is_empty());
        b.release_all().unwrap();
        let events = seen.events();
        assert_eq!(&events[..script.len()], &script);
        assert_eq!(
            &events[script.len()..],
            &[
                key(Key::KeyB, false),
                button(MouseButton::Left, false),
                key(Key::ShiftLeft, false),
            ]
        );
        assert!(seen.held().is_empty());

        b.release_all().unwrap();
        assert_eq!(seen.len(), script.len() + 3, "nothing is released twice");
    }

    #[test]
    fn release_all_with_nothing_held_records_nothing() {
        let mut b = RecordingBackend::new();
        b.release_all().unwrap();
        b.inject(&InputEvent::Text {
            text: BoundedText::new("hi").unwrap(),
        })
        .unwrap();
        b.release_all().unwrap();
        assert_eq!(b.handle().len(), 1);
    }

    #[test]
    fn held_inputs_stay_bounded() {
        let mut held = HeldInputs::new();
        for _ in 0..3 {
            for &k in Key::ALL {
                held.note(&key(k, true));
            }
            for b in MouseButton::ALL {
                held.note(&button(b, true));
            }
        }
        let releases = held.take_releases();
        assert_eq!(releases.len(), Key::ALL.len() + MouseButton::ALL.len());
        assert_eq!(releases[0], button(MouseButton::Forward, false));
        assert!(held.is_empty() && held.take_releases().is_empty());
    }

    #[test]
    fn handle_reads_from_another_thread() {
        let mut b = RecordingBackend::new();
        let seen = b.handle();
        assert_eq!(seen.pointer(), None);
        b.inject(&InputEvent::MouseMove {
            pos: NormalizedPoint::new(u16::MAX, 0),
        })
        .unwrap();
        assert_eq!(seen.pointer(), None, "no screen size yet");
        let size = ScreenSize::new(800, 600).unwrap();
        b.set_screen_size(size);
        let reader = std::thread::spawn(move || (seen.screen_size(), seen.pointer(), seen.len()));
        let (screen, pointer, len) = reader.join().unwrap();
        assert_eq!(screen, Some(size));
        assert_eq!(pointer, size.point(799, 0));
        assert_eq!(len, 1);
    }

    #[test]
    fn backends_are_usable_as_trait_objects() {
        let rec = RecordingBackend::new();
        let seen = rec.handle();
        let mut boxed: Box<dyn InputBackend> = Box::new(rec);
        boxed.set_screen_size(ScreenSize::new(1, 1).unwrap());
        boxed.inject(&key(Key::Escape, true)).unwrap();
        boxed.release_all().unwrap();
        assert_eq!(
            seen.events(),
            [key(Key::Escape, true), key(Key::Escape, false)]
        );
    }
}
