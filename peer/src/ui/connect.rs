//! The controller's connect window (`peer connect` without a code, run as `peer ui connect`):
//! fields for the host's code, its password (shown as dots; empty for a host whose user
//! accepts instead) and a name to remember it by, and the hosts connected to before, newest
//! first, with their names; clicking one fills its code (and name). Connect (or Enter) prints
//! one [`ConnectReply`] line and exits; Escape or closing the window prints nothing.
//!
//! The code is checked (`AccessCode`, with its check digit) before the window closes; a wrong
//! one is said in the window. Tab moves between the fields.
//!
//! What it does not do: connect, or write the known hosts (`peer connect` does both with what
//! it printed); the password leaves it only on that one line to its parent.

use std::time::Instant;

use super::canvas::{self, BODY, BOLD, Canvas, MUTED, Rect, SMALL, TEXT, TITLE};
use super::dialog::{Dialog, Key, Placement};
use super::{ConnectReply, ConnectRequest};
use crate::viewer::ViewerError;

pub const SIZE: (u32, u32) = (520, 440);
pub const CODE: Rect = Rect::new(150, 56, 350, 30);
pub const PASSWORD: Rect = Rect::new(150, 96, 350, 30);
pub const SAVE_AS: Rect = Rect::new(150, 136, 350, 30);
pub const CONNECT: Rect = Rect::new(370, 390, 130, 38);
/// The first recent host's row; the others follow every [`ROW`] pixels.
pub const FIRST_ROW: Rect = Rect::new(20, 222, 480, 26);
pub const ROW: i32 = 28;
/// Recent hosts shown at most.
pub const MAX_ROWS: usize = 5;
/// The window's title (tests find the window by it).
pub const TITLE_TEXT: &str = "quicdesk: connect";
/// Longest text a field takes, in characters.
const MAX_FIELD: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Code,
    Password,
    SaveAs,
}

#[derive(Debug, Clone)]
pub struct Connect {
    request: ConnectRequest,
    code: String,
    password: zeroize::Zeroizing<String>,
    save_as: String,
    focus: Field,
    error: Option<String>,
}

impl Connect {
    pub fn new(mut request: ConnectRequest) -> Self {
        request.recent.truncate(MAX_ROWS);
        Self {
            request,
            code: String::new(),
            password: zeroize::Zeroizing::new(String::new()),
            save_as: String::new(),
            focus: Field::Code,
            error: None,
        }
    }

    fn row(i: usize) -> Rect {
        Rect {
            y: FIRST_ROW.y + ROW * i as i32,
            ..FIRST_ROW
        }
    }

    fn field(&mut self) -> &mut String {
        match self.focus {
            Field::Code => &mut self.code,
            Field::Password => &mut self.password,
            Field::SaveAs => &mut self.save_as,
        }
    }

    fn submit(&mut self) -> Option<Option<ConnectReply>> {
        let code = self.code.trim().to_uppercase();
        match code.parse::<proto::AccessCode>() {
            Ok(code) => Some(Some(ConnectReply {
                code: code.to_string(),
                password: self.password.to_string(),
                save_as: Some(self.save_as.trim().to_owned()).filter(|s| !s.is_empty()),
            })),
            Err(e) => {
                self.error = Some(format!("Not a host's code: {e}"));
                self.focus = Field::Code;
                None
            }
        }
    }
}

impl Dialog for Connect {
    /// `None`: the user gave up.
    type Outcome = Option<ConnectReply>;

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
        false
    }

    fn draw(&self, c: &mut Canvas, _now: Instant) {
        c.text(20, 14, "Connect to a host", TITLE, TEXT);
        for (label, r, shown, field) in [
            ("Code", CODE, self.code.clone(), Field::Code),
            (
                "Password",
                PASSWORD,
                "*".repeat(self.password.chars().count()),
                Field::Password,
            ),
            ("Save as", SAVE_AS, self.save_as.clone(), Field::SaveAs),
        ] {
            c.text(20, r.y + 7, label, BOLD, TEXT);
            c.field(r, &canvas::fit(&shown, BODY, r.w - 20), self.focus == field);
        }
        c.text(
            150,
            170,
            "Leave the password empty if the host's user accepts you.",
            SMALL,
            MUTED,
        );
        c.text(20, 198, "Recent hosts", BOLD, TEXT);
        if self.request.recent.is_empty() {
            c.text(20, 224, "(none yet)", BODY, MUTED);
        }
        for (i, host) in self.request.recent.iter().enumerate() {
            let r = Self::row(i);
            if host.code == self.code {
                c.fill(r, canvas::HOVER);
            }
            let name = host.name.as_deref().unwrap_or("(no name)");
            let when = super::ago(host.last, self.request.now);
            let line = format!("{}  {}  {when}", canvas::fit(name, BODY, 180), host.code);
            c.text(
                r.x + 6,
                r.y + 5,
                &canvas::fit(&line, BODY, r.w - 12),
                BODY,
                TEXT,
            );
        }
        if let Some(e) = &self.error {
            c.text(20, 366, &canvas::fit(e, SMALL, 480), SMALL, canvas::ERROR);
        }
        c.text(20, 402, "Enter: connect   Esc: cancel", SMALL, MUTED);
        c.button(CONNECT, "Connect", canvas::PRIMARY);
    }

    fn click(&mut self, x: f64, y: f64, _now: Instant) -> Option<Option<ConnectReply>> {
        if CONNECT.contains(x, y) {
            return self.submit();
        }
        for (r, f) in [
            (CODE, Field::Code),
            (PASSWORD, Field::Password),
            (SAVE_AS, Field::SaveAs),
        ] {
            if r.contains(x, y) {
                self.focus = f;
                return None;
            }
        }
        let picked = (0..self.request.recent.len()).find(|&i| Self::row(i).contains(x, y));
        if let Some(host) = picked.and_then(|i| self.request.recent.get(i)) {
            self.code = host.code.clone();
            self.save_as = host.name.clone().unwrap_or_default();
            self.error = None;
            self.focus = Field::Password;
        }
        None
    }

    fn key(&mut self, key: Key, _now: Instant) -> Option<Option<ConnectReply>> {
        match key {
            Key::Enter => return self.submit(),
            Key::Escape => return Some(None),
            Key::Tab => {
                self.focus = match self.focus {
                    Field::Code => Field::Password,
                    Field::Password => Field::SaveAs,
                    Field::SaveAs => Field::Code,
                };
            }
            Key::Backspace => {
                self.field().pop();
            }
            Key::Text(t) => {
                let field = self.field();
                for ch in t.chars() {
                    if field.chars().count() < MAX_FIELD {
                        field.push(ch);
                    }
                }
                self.error = None;
            }
        }
        None
    }

    fn line(&mut self, _line: &str) -> Option<Option<ConnectReply>> {
        None
    }

    fn parent_gone(&mut self) -> Option<Option<ConnectReply>> {
        // The parent closes stdin once it wrote the request: nothing to do.
        None
    }

    fn closed(&mut self) -> Option<ConnectReply> {
        None
    }

    fn tick(&mut self, _now: Instant) -> (Option<Option<ConnectReply>>, Option<Instant>) {
        (None, None)
    }
}

/// `peer ui connect`: reads the request line (the recent hosts), shows the window, prints what
/// the user typed (nothing if they cancelled).
///
/// # Errors
///
/// [`ViewerError`] for an unreadable request or a window that cannot be shown.
pub fn run_stdio() -> Result<(), ViewerError> {
    let request: ConnectRequest = super::read_request()?;
    match super::dialog::run(Connect::new(request))? {
        Some(reply) => super::write_reply(&reply),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::RecentHost;

    #[test]
    fn typing_picking_and_submitting() {
        let code = proto::AccessCode::from_payload([4, 8, 2, 1, 3, 3, 7]).unwrap();
        let t0 = Instant::now();
        let mut c = Connect::new(ConnectRequest {
            recent: vec![RecentHost {
                code: code.to_string(),
                name: Some("office".into()),
                last: 100,
            }],
            now: 4000,
        });
        // A wrong code is said, not sent.
        c.key(Key::Text("ISR-1".into()), t0);
        assert_eq!(c.key(Key::Enter, t0), None);
        assert!(c.error.is_some());
        // Picking the recent host fills its code and name, and moves to the password.
        let (x, y) = Connect::row(0).centre();
        assert_eq!(c.click(f64::from(x), f64::from(y), t0), None);
        c.key(Key::Text("pw 1".into()), t0);
        c.key(Key::Backspace, t0);
        let Some(Some(reply)) = c.key(Key::Enter, t0) else {
            panic!("submitted")
        };
        assert_eq!(reply.code, code.to_string());
        assert_eq!(reply.password, "pw ");
        assert_eq!(reply.save_as.as_deref(), Some("office"));
        assert_eq!(c.key(Key::Escape, t0), Some(None));
        let mut canvas = Canvas::new(SIZE.0, SIZE.1);
        c.draw(&mut canvas, t0);
        assert_eq!(
            canvas.pixel(CONNECT.x as u32 + 2, CONNECT.y as u32 + 2),
            Some(canvas::PRIMARY)
        );
    }
}
