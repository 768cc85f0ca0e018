//! The accept/deny window on the host's display (`peer ui prompt`): who wants in (the
//! controller's key fingerprint, short and whole, and its self-declared name, marked as such),
//! from where, whether it proved the password, the permissions to grant (input, clipboard,
//! files; viewing is always granted), a countdown after which it denies by itself, and the two
//! buttons (Enter accepts, Escape denies; keys count only from a second after it opened, so
//! someone typing elsewhere cannot accept by accident).
//!
//! The layout and what clicks and keys do are plain data ([`Prompt`], tested without a
//! window); `dialog` runs it. It prints one [`PromptReply`] line and exits; closing the window,
//! the countdown ending or the host going away (stdin closed) is a denial.
//!
//! What it does not do: decide. The host takes the printed line as one input to
//! `approve::Prompts`, which keeps its own deadline, and treats anything but a well-formed
//! answer as a denial.

use std::time::{Duration, Instant};

use super::canvas::{self, BODY, BOLD, Canvas, MUTED, Rect, SMALL, TEXT, TITLE, WARN};
use super::dialog::{Dialog, Key, Placement};
use super::{PromptReply, PromptRequest};
use crate::approve::Permissions;
use crate::viewer::ViewerError;

/// The window's size.
pub const SIZE: (u32, u32) = (600, 360);
/// Where things are, for clicks (and tests).
pub const ACCEPT: Rect = Rect::new(430, 300, 150, 40);
pub const DENY: Rect = Rect::new(20, 300, 150, 40);
pub const INPUT: Rect = Rect::new(20, 214, 180, 20);
pub const CLIPBOARD: Rect = Rect::new(20, 240, 300, 20);
pub const FILES: Rect = Rect::new(20, 266, 300, 20);
/// Where the short fingerprint is drawn (a test checks it is not blank).
pub const KEY_TEXT: Rect = Rect::new(120, 76, 200, 20);
/// The window's title (tests find the window by it).
pub const TITLE_TEXT: &str = "quicdesk: accept this connection?";
/// Keys are ignored this long after the window opens: someone typing elsewhere when it pops
/// up must not accept (Enter) by accident.
pub const KEY_GRACE: Duration = Duration::from_secs(1);

/// The prompt's state.
#[derive(Debug, Clone)]
pub struct Prompt {
    request: PromptRequest,
    short: String,
    opened: Instant,
    deadline: Instant,
    permissions: Permissions,
}

impl Prompt {
    pub fn new(request: PromptRequest, now: Instant) -> Self {
        let short = request
            .fingerprint
            .parse::<certs::Fingerprint>()
            .map(|f| crate::approve::short_fingerprint(&f))
            .unwrap_or_else(|_| "(not a key)".into());
        Self {
            opened: now,
            deadline: now + Duration::from_millis(request.timeout_ms),
            request,
            short,
            // Input is offered ticked; clipboard and files have nothing to gate yet.
            permissions: Permissions {
                input: true,
                clipboard: false,
                files: false,
            },
        }
    }

    pub fn permissions(&self) -> Permissions {
        self.permissions
    }

    fn accept(&self) -> PromptReply {
        PromptReply::accept(self.permissions)
    }

    fn seconds_left(&self, now: Instant) -> u64 {
        self.deadline
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil() as u64
    }
}

impl Dialog for Prompt {
    type Outcome = PromptReply;

    fn title(&self) -> String {
        TITLE_TEXT.into()
    }

    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn placement(&self) -> Placement {
        Placement::Centre
    }

    fn always_on_top(&self) -> bool {
        true
    }

    fn draw(&self, c: &mut Canvas, now: Instant) {
        let r = &self.request;
        c.text(20, 14, "A controller asks to see this screen", TITLE, TEXT);
        let name = r.name.as_deref().map_or_else(
            || "(no name given)".to_owned(),
            |n| format!("\"{n}\" (self-declared, not verified)"),
        );
        c.text(20, 50, "Name:", BOLD, TEXT);
        c.text(120, 50, &canvas::fit(&name, BODY, 460), BODY, TEXT);
        c.text(20, 78, "Key:", BOLD, TEXT);
        c.text(KEY_TEXT.x, KEY_TEXT.y, &self.short, TITLE, TEXT);
        c.text(120, 100, &r.fingerprint, SMALL, MUTED);
        c.text(20, 124, "From:", BOLD, TEXT);
        c.text(120, 124, &canvas::fit(&r.from, BODY, 460), BODY, TEXT);
        if r.password_proven {
            c.text(20, 150, "It gave this host's password.", BODY, TEXT);
        } else {
            c.text(
                20,
                150,
                "No password: only the key above says who it is.",
                BODY,
                WARN,
            );
            c.text(
                20,
                168,
                "Ask the person connecting to read you theirs before accepting.",
                SMALL,
                WARN,
            );
        }
        c.text(20, 192, "Allow (viewing is always allowed):", BOLD, TEXT);
        let p = self.permissions;
        c.checkbox(INPUT, p.input, "Input (mouse, keys)");
        c.checkbox(CLIPBOARD, p.clipboard, "Clipboard (nothing uses it yet)");
        c.checkbox(FILES, p.files, "Files (nothing uses them yet)");
        let left = self.seconds_left(now);
        c.text(
            190,
            312,
            &format!("Denies by itself in {left} s"),
            SMALL,
            MUTED,
        );
        c.button(DENY, "Deny (Esc)", canvas::DENY);
        c.button(ACCEPT, "Accept (Enter)", canvas::ACCEPT);
    }

    fn click(&mut self, x: f64, y: f64, _now: Instant) -> Option<PromptReply> {
        let p = &mut self.permissions;
        if ACCEPT.contains(x, y) {
            return Some(self.accept());
        }
        if DENY.contains(x, y) {
            return Some(PromptReply::Deny);
        }
        if INPUT.contains(x, y) {
            p.input = !p.input;
        } else if CLIPBOARD.contains(x, y) {
            p.clipboard = !p.clipboard;
        } else if FILES.contains(x, y) {
            p.files = !p.files;
        }
        None
    }

    fn key(&mut self, key: Key, now: Instant) -> Option<PromptReply> {
        if now < self.opened + KEY_GRACE {
            return None;
        }
        match key {
            Key::Enter => Some(self.accept()),
            Key::Escape => Some(PromptReply::Deny),
            _ => None,
        }
    }

    fn line(&mut self, _line: &str) -> Option<PromptReply> {
        None
    }

    fn parent_gone(&mut self) -> Option<PromptReply> {
        Some(PromptReply::Deny)
    }

    fn closed(&mut self) -> PromptReply {
        PromptReply::Deny
    }

    fn tick(&mut self, now: Instant) -> (Option<PromptReply>, Option<Instant>) {
        if now >= self.deadline {
            return (Some(PromptReply::Deny), None);
        }
        // Redraw at the next whole second of the countdown.
        let left = self.deadline - now;
        let frac = Duration::from_nanos((left.as_nanos() % 1_000_000_000) as u64);
        let next = now
            + if frac.is_zero() {
                Duration::from_secs(1)
            } else {
                frac
            };
        (None, Some(next.min(self.deadline)))
    }
}

/// `peer ui prompt`: reads the request line, shows the window, prints the answer.
///
/// # Errors
///
/// [`ViewerError`] when the request is unreadable (then nothing is printed: the host denies)
/// or the window cannot be shown.
pub fn run_stdio() -> Result<(), ViewerError> {
    let request: PromptRequest = super::read_request()?;
    let reply = super::dialog::run(Prompt::new(request, Instant::now()))?;
    super::write_reply(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PromptRequest {
        PromptRequest {
            fingerprint: "ab".repeat(32),
            name: Some("ann@desk".into()),
            from: "via the relay".into(),
            timeout_ms: 30_000,
            password_proven: false,
        }
    }

    #[test]
    fn clicks_and_keys_choose_and_the_countdown_denies() {
        let t0 = Instant::now();
        let mut p = Prompt::new(request(), t0);
        let (cx, cy) = CLIPBOARD.centre();
        assert_eq!(p.click(f64::from(cx), f64::from(cy), t0), None);
        let (ix, iy) = INPUT.centre();
        assert_eq!(p.click(f64::from(ix), f64::from(iy), t0), None);
        let (ax, ay) = ACCEPT.centre();
        assert_eq!(
            p.click(f64::from(ax), f64::from(ay), t0),
            Some(PromptReply::Accept {
                input: false,
                clipboard: true,
                files: false
            })
        );
        // Keys right after the window opened are someone typing elsewhere.
        assert_eq!(p.key(Key::Enter, t0), None);
        let later = t0 + KEY_GRACE;
        assert_eq!(p.key(Key::Escape, later), Some(PromptReply::Deny));
        assert_eq!(
            p.key(Key::Enter, later),
            Some(PromptReply::accept(p.permissions()))
        );
        assert_eq!(p.key(Key::Text("y".into()), later), None);
        let (out, next) = p.tick(t0 + Duration::from_millis(200));
        assert_eq!(out, None);
        assert_eq!(next, Some(t0 + Duration::from_secs(1)));
        assert_eq!(
            p.tick(t0 + Duration::from_secs(30)).0,
            Some(PromptReply::Deny)
        );
        assert_eq!(p.parent_gone(), Some(PromptReply::Deny));
        assert_eq!(p.closed(), PromptReply::Deny);
    }

    #[test]
    fn the_window_shows_the_key_and_both_buttons() {
        let t0 = Instant::now();
        let p = Prompt::new(request(), t0);
        let mut c = Canvas::new(SIZE.0, SIZE.1);
        p.draw(&mut c, t0);
        let at = |r: Rect| c.pixel(r.x as u32 + 2, r.y as u32 + 2);
        assert_eq!(at(ACCEPT), Some(canvas::ACCEPT));
        assert_eq!(at(DENY), Some(canvas::DENY));
        let inked = (KEY_TEXT.x..KEY_TEXT.x + KEY_TEXT.w as i32)
            .flat_map(|x| (KEY_TEXT.y..KEY_TEXT.y + KEY_TEXT.h as i32).map(move |y| (x, y)))
            .filter(|&(x, y)| c.pixel(x as u32, y as u32) == Some(TEXT))
            .count();
        assert!(inked > 100, "the fingerprint drew {inked} pixels");
    }
}
