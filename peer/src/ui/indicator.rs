//! The session indicator on the host's display (`peer ui indicator`): a small always-on-top
//! window in the top right corner while a session runs, saying who controls the screen (its
//! self-declared name and short key), by which path (direct or relay, updated by the host),
//! what it may do, and an "End session" button.
//!
//! Clicking the button prints one [`IndicatorReply::End`] line and exits; the host then ends the
//! session. The host closing stdin (the session is over) closes the window. Closing the window
//! otherwise does not end the session: the host logs that its indicator is gone.
//!
//! What it does not do: end anything itself, or know about the session beyond the lines the
//! host writes (the path it shows is the host's route's, as the host reports it).

use std::time::Instant;

use super::canvas::{self, BOLD, Canvas, MUTED, Rect, SMALL, TEXT};
use super::dialog::{Dialog, Key, Placement};
use super::{IndicatorReply, IndicatorRequest, IndicatorUpdate};
use crate::viewer::ViewerError;

pub const SIZE: (u32, u32) = (380, 100);
pub const END: Rect = Rect::new(240, 56, 128, 34);
/// The window's title (tests find the window by it).
pub const TITLE_TEXT: &str = "quicdesk: session";

/// How the indicator ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The user clicked "End session".
    ByUser,
    /// The session ended (stdin closed) or the window was closed.
    Closed,
}

#[derive(Debug, Clone)]
pub struct Indicator {
    request: IndicatorRequest,
    short: String,
}

impl Indicator {
    pub fn new(request: IndicatorRequest) -> Self {
        let short = request
            .fingerprint
            .parse::<certs::Fingerprint>()
            .map(|f| crate::approve::short_fingerprint(&f))
            .unwrap_or_default();
        Self { request, short }
    }

    /// The path shown now.
    pub fn path(&self) -> &str {
        &self.request.path
    }
}

impl Dialog for Indicator {
    type Outcome = Ended;

    fn title(&self) -> String {
        TITLE_TEXT.into()
    }

    fn size(&self) -> (u32, u32) {
        SIZE
    }

    fn placement(&self) -> Placement {
        Placement::TopRight
    }

    fn always_on_top(&self) -> bool {
        true
    }

    fn draw(&self, c: &mut Canvas, _now: Instant) {
        let r = &self.request;
        let who = r.name.as_deref().unwrap_or("a controller");
        let line = canvas::fit(&format!("Controlled by {who}"), BOLD, 350);
        c.text(12, 10, &line, BOLD, TEXT);
        c.text(
            12,
            32,
            &format!("key {}  (name self-declared)", self.short),
            SMALL,
            MUTED,
        );
        c.text(12, 56, &format!("path: {}", r.path), SMALL, TEXT);
        c.text(
            12,
            74,
            &canvas::fit(&r.permissions, SMALL, 220),
            SMALL,
            TEXT,
        );
        c.button(END, "End session", canvas::DENY);
    }

    fn click(&mut self, x: f64, y: f64, _now: Instant) -> Option<Ended> {
        END.contains(x, y).then_some(Ended::ByUser)
    }

    fn key(&mut self, _key: Key, _now: Instant) -> Option<Ended> {
        None
    }

    fn line(&mut self, line: &str) -> Option<Ended> {
        if let Ok(update) = super::parse_reply::<IndicatorUpdate>(line) {
            self.request.path = crate::text::printable(&update.path);
        }
        None
    }

    fn parent_gone(&mut self) -> Option<Ended> {
        Some(Ended::Closed)
    }

    fn closed(&mut self) -> Ended {
        Ended::Closed
    }

    fn tick(&mut self, _now: Instant) -> (Option<Ended>, Option<Instant>) {
        (None, None)
    }
}

/// `peer ui indicator`: reads the request line, shows the window until the session ends or the
/// user ends it (then prints the `end` line).
///
/// # Errors
///
/// [`ViewerError`] for an unreadable request or a window that cannot be shown.
pub fn run_stdio() -> Result<(), ViewerError> {
    let request: IndicatorRequest = super::read_request()?;
    match super::dialog::run(Indicator::new(request))? {
        Ended::ByUser => super::write_reply(&IndicatorReply::End),
        Ended::Closed => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_button_ends_and_updates_change_the_path() {
        let mut i = Indicator::new(IndicatorRequest {
            fingerprint: "cd".repeat(32),
            name: None,
            path: "relay".into(),
            permissions: "view only".into(),
        });
        let t0 = Instant::now();
        assert_eq!(i.click(1.0, 1.0, t0), None);
        let (x, y) = END.centre();
        assert_eq!(i.click(f64::from(x), f64::from(y), t0), Some(Ended::ByUser));
        assert_eq!(i.line("{\"path\":\"direct\"}"), None);
        assert_eq!(i.path(), "direct");
        assert_eq!(i.line("{\"end\":true}"), None, "nothing else is obeyed");
        assert_eq!(i.parent_gone(), Some(Ended::Closed));
        let mut c = Canvas::new(SIZE.0, SIZE.1);
        i.draw(&mut c, t0);
        assert_eq!(
            c.pixel(END.x as u32 + 2, END.y as u32 + 2),
            Some(canvas::DENY)
        );
    }
}
