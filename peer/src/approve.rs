//! Attended access on the host, sans IO: how often the host's user may be asked to accept a
//! controller, one question on screen at a time, and a question that nobody answers in time
//! is a denial. Plain state with `now` passed in, driven by `host::attend`.
//!
//! ```text
//!  begin(now, timeout) ──► Ok(PromptId)     (the driver shows the window)
//!                     └──► Err(Refused)      (one is open / too many lately)
//!  answer(id, Answer)  ──► Some(Verdict)      (the user chose)
//!  gone(id, why)       ──► Some(Verdict::Denied) (the window's process died, or the
//!                                              controller left)
//!  poll_timeout() / handle_timeout(now) ──► Some((id, Verdict::Denied(TimedOut)))
//! ```
//!
//! A question costs the host's user as much as a password guess costs the host, so every one
//! is counted and limited twice: the driver charges it to the guessing limits first
//! ([`crate::guard`]: back-off per source and per key, a global bucket), and this machine keeps
//! its own, stricter bucket ([`PROMPT_BURST`] at once, then one per [`PROMPT_EVERY`]) and never
//! has more than one open. A verdict arrives once per question; a late answer (after a
//! timeout) is ignored.
//!
//! What it does not do: draw anything, spawn the window's process, or read its answer (that is
//! `host::attend` and `peer::ui`), or decide what a session may do beyond the user's choice.

use std::time::{Duration, Instant};

use certs::Fingerprint;
use proto::limits::Bucket;
pub use proto::session::{Approval, Permissions};

/// Questions the host's user may get at once, after a quiet time.
pub const PROMPT_BURST: f64 = 3.0;
/// Then one question per this long.
pub const PROMPT_EVERY: Duration = Duration::from_secs(20);
/// How long the host's user has to answer by default (`--approve-timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// The shortest and longest answer times a host accepts.
pub const MIN_TIMEOUT: Duration = Duration::from_secs(1);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(proto::session::MAX_ASKING_SECS as u64);

/// One question, as the driver names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PromptId(u64);

/// What the host's user chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept(Permissions),
    Deny,
}

/// Why a controller was not let in by the host's user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The user clicked Deny (or pressed Escape, or closed the window).
    User,
    /// Nobody answered in time.
    TimedOut,
    /// The window's process died or said something that is not an answer.
    UiFailed,
    /// The controller left before an answer.
    ControllerLeft,
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::User => "the host's user declined",
            Self::TimedOut => "the host's user did not answer in time",
            Self::UiFailed => "the host could not ask its user",
            Self::ControllerLeft => "the controller left before an answer",
        })
    }
}

/// The outcome of one question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted(Permissions),
    Denied(DenyReason),
}

/// Why no question may be asked now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    #[error("the host's user is already being asked about another connection")]
    Open,
    #[error("the host's user was asked too often lately; try again in {}s", .0.as_secs().max(1))]
    TooOften(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Open {
    id: PromptId,
    deadline: Instant,
}

/// The host's questions to its user (see the module docs).
#[derive(Debug)]
pub struct Prompts {
    bucket: Bucket,
    open: Option<Open>,
    next_id: u64,
    /// Questions asked so far.
    pub asked: u64,
    /// Questions refused before they were asked.
    pub refused: u64,
}

impl Prompts {
    pub fn new(now: Instant) -> Self {
        Self {
            bucket: Bucket::with_burst(1.0 / PROMPT_EVERY.as_secs_f64(), PROMPT_BURST, now),
            open: None,
            next_id: 0,
            asked: 0,
            refused: 0,
        }
    }

    /// Opens a question that `timeout` from `now` becomes a denial, or says why not.
    pub fn begin(&mut self, now: Instant, timeout: Duration) -> Result<PromptId, Refused> {
        if self.open.is_some() {
            self.refused += 1;
            return Err(Refused::Open);
        }
        if !self.bucket.take(now) {
            self.refused += 1;
            // One token comes back every PROMPT_EVERY; the bucket does not say when exactly.
            return Err(Refused::TooOften(PROMPT_EVERY));
        }
        let id = PromptId(self.next_id);
        self.next_id += 1;
        self.asked += 1;
        self.open = Some(Open {
            id,
            deadline: now + timeout,
        });
        Ok(id)
    }

    /// Whether a question is open.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The user's answer to `id`; `None` if `id` is not the open question (already decided).
    pub fn answer(&mut self, id: PromptId, answer: Answer, now: Instant) -> Option<Verdict> {
        let open = self.open.filter(|o| o.id == id)?;
        self.open = None;
        if now >= open.deadline {
            // The deadline passed before this answer was seen: the timeout wins.
            return Some(Verdict::Denied(DenyReason::TimedOut));
        }
        Some(match answer {
            Answer::Accept(p) => Verdict::Accepted(p),
            Answer::Deny => Verdict::Denied(DenyReason::User),
        })
    }

    /// Question `id` cannot be answered (`why`): it is a denial. `None` if already decided.
    pub fn gone(&mut self, id: PromptId, why: DenyReason) -> Option<Verdict> {
        self.open.filter(|o| o.id == id)?;
        self.open = None;
        Some(Verdict::Denied(why))
    }

    /// When [`Self::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.open.map(|o| o.deadline)
    }

    /// The open question, if its deadline has passed: denied.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<(PromptId, Verdict)> {
        let open = self.open.filter(|o| now >= o.deadline)?;
        self.open = None;
        Some((open.id, Verdict::Denied(DenyReason::TimedOut)))
    }
}

/// A key's fingerprint as people compare it: its first 64 bits, in four groups of four hex
/// digits (`3f9c 0a51 d2b7 e8f4`).
pub fn short_fingerprint(fp: &Fingerprint) -> String {
    let hex = fp.to_string();
    hex.as_bytes()[..16]
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A self-declared name from the other side made safe to show: printable
/// ([`crate::text::printable`]), at most [`proto::session::MAX_NAME_LEN`] bytes, trimmed;
/// `None` if nothing is left.
pub fn shown_name(name: &str) -> Option<String> {
    let mut s = crate::text::printable(name);
    if s.len() > proto::session::MAX_NAME_LEN {
        let mut cut = proto::session::MAX_NAME_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn a_question_nobody_answers_is_denied_at_its_deadline_and_a_late_answer_is_ignored() {
        let t0 = Instant::now();
        let mut p = Prompts::new(t0);
        let id = p.begin(t0, T).unwrap();
        assert_eq!(p.poll_timeout(), Some(t0 + T));
        assert_eq!(p.handle_timeout(t0 + T - Duration::from_millis(1)), None);
        assert_eq!(
            p.handle_timeout(t0 + T),
            Some((id, Verdict::Denied(DenyReason::TimedOut)))
        );
        assert_eq!(p.poll_timeout(), None);
        // The user clicks Accept a moment too late: nothing changes.
        let late = Answer::Accept(Permissions::ALL);
        assert_eq!(p.answer(id, late, t0 + T + Duration::from_secs(1)), None);
        // An answer that arrives after the deadline but before the timer fired still denies.
        let id = p.begin(t0 + T, T).unwrap();
        assert_eq!(
            p.answer(id, late, t0 + T + T),
            Some(Verdict::Denied(DenyReason::TimedOut))
        );
    }

    #[test]
    fn one_question_at_a_time_and_the_users_choice_is_the_verdict() {
        let t0 = Instant::now();
        let mut p = Prompts::new(t0);
        let first = p.begin(t0, T).unwrap();
        assert_eq!(p.begin(t0, T), Err(Refused::Open));
        assert_eq!(p.begin(t0 + Duration::from_secs(5), T), Err(Refused::Open));
        let view_only = Answer::Accept(Permissions::VIEW_ONLY);
        assert_eq!(
            p.answer(first, view_only, t0 + Duration::from_secs(3)),
            Some(Verdict::Accepted(Permissions::VIEW_ONLY))
        );
        let second = p.begin(t0 + Duration::from_secs(4), T).unwrap();
        assert_ne!(first, second);
        // A stale id never decides the open question.
        assert_eq!(p.answer(first, Answer::Deny, t0), None);
        assert_eq!(p.gone(first, DenyReason::UiFailed), None);
        assert_eq!(
            p.gone(second, DenyReason::UiFailed),
            Some(Verdict::Denied(DenyReason::UiFailed))
        );
        assert_eq!((p.asked, p.refused), (2, 2));
    }

    #[test]
    fn questions_are_rate_limited_after_a_burst() {
        let t0 = Instant::now();
        let mut p = Prompts::new(t0);
        let mut t = t0;
        for _ in 0..PROMPT_BURST as usize {
            let id = p.begin(t, T).unwrap();
            p.answer(id, Answer::Deny, t).unwrap();
            t += Duration::from_millis(100);
        }
        assert!(matches!(p.begin(t, T), Err(Refused::TooOften(_))));
        // One more after PROMPT_EVERY, and only one.
        let t = t0 + PROMPT_EVERY + Duration::from_millis(300);
        let id = p.begin(t, T).unwrap();
        p.answer(id, Answer::Deny, t).unwrap();
        assert!(matches!(p.begin(t, T), Err(Refused::TooOften(_))));
        // Over an hour of trying every second, at most burst + hour / PROMPT_EVERY questions.
        let mut p = Prompts::new(t0);
        let asked = (0..3600u64)
            .filter(|s| {
                let now = t0 + Duration::from_secs(*s);
                p.begin(now, T)
                    .map(|id| p.answer(id, Answer::Deny, now))
                    .is_ok()
            })
            .count() as u64;
        let most = PROMPT_BURST as u64 + 3600 / PROMPT_EVERY.as_secs() + 1;
        assert!(asked <= most, "{asked} > {most}");
        assert_eq!(p.asked, asked);
    }

    #[test]
    fn names_are_made_safe_and_fingerprints_short() {
        assert_eq!(shown_name("  ann@desk\x1b[2J "), Some("ann@desk[2J".into()));
        assert_eq!(shown_name("\u{202e}\n"), None);
        let long = "é".repeat(100);
        let shown = shown_name(&long).unwrap();
        assert!(shown.len() <= proto::session::MAX_NAME_LEN, "{shown}");
        let fp = Fingerprint::from_bytes([0x3f; 32]);
        assert_eq!(short_fingerprint(&fp), "3f3f 3f3f 3f3f 3f3f");
    }
}
