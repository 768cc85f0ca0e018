//! The host's and the controller's small windows, each in a child process of its own (`peer ui
//! prompt|indicator|connect`, a hidden subcommand of the same program), and what the parent
//! and that process say to each other: one JSON object per line, the parent's request on the
//! child's stdin, the child's answers on its stdout.
//!
//! ```text
//!  host (tokio)                          peer ui prompt (winit, main thread)
//!   host::attend ── PromptRequest ─────► accept/deny window ── PromptReply ──► host
//!   host::attend ── IndicatorRequest ──► indicator  ── IndicatorReply{end} ──► host
//!                 ── IndicatorUpdate ──►            (stdin closed: the session is over)
//!  peer connect ── ConnectRequest ─────► connect window ── ConnectReply ─────► peer connect
//! ```
//!
//! Why a process: winit wants the main thread, which the host's tokio runtime (perhaps a
//! service) does not give up; on Windows a service must start UI in the user's session anyway;
//! and a crashed window cannot take the host with it. The parent treats whatever the child
//! prints as hostile: lines are read up to [`MAX_LINE`] bytes and parsed strictly
//! ([`parse_reply`]); a prompt's only possible outcomes are accept-with-these-flags and deny
//! (anything else, a crash, a kill or silence is a denial), an indicator's only one is "end".
//!
//! This module is the protocol only (no I/O, no windows). The windows are in [`canvas`]
//! (drawing text and buttons into a frame buffer with embedded-graphics' fonts), [`dialog`]
//! (the winit driver), [`prompt`], [`indicator`] and [`connect`], behind the `viewer` feature;
//! the host's side of the processes is `host::attend`.

use serde::{Deserialize, Serialize};

use crate::approve::Permissions;

#[cfg(feature = "viewer")]
pub mod canvas;
#[cfg(feature = "viewer")]
pub mod connect;
#[cfg(feature = "viewer")]
pub mod dialog;
#[cfg(feature = "viewer")]
pub mod indicator;
#[cfg(feature = "viewer")]
pub mod prompt;

/// Longest line either side reads.
pub const MAX_LINE: usize = 16 * 1024;

/// The host asks its user about a controller (`peer ui prompt`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptRequest {
    /// The controller's key fingerprint, 64 hex digits.
    pub fingerprint: String,
    /// Its self-declared name, already made printable.
    pub name: Option<String>,
    /// Where it comes from: an address, or "via the relay".
    pub from: String,
    /// Milliseconds until the host denies by itself.
    pub timeout_ms: u64,
    /// Whether the controller proved the password first (`--approve both`).
    pub password_proven: bool,
}

/// The user's answer to a [`PromptRequest`]: `{"answer":"accept","input":…,"clipboard":…,
/// "files":…}` (all three flags) or `{"answer":"deny"}` (none), nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "answer",
    rename_all = "kebab-case",
    deny_unknown_fields,
    try_from = "RawPromptReply"
)]
pub enum PromptReply {
    Accept {
        input: bool,
        clipboard: bool,
        files: bool,
    },
    Deny,
}

/// A [`PromptReply`] as it reads, checked into one by `TryFrom` (serde's internally tagged
/// unit variants would take any extra field).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPromptReply {
    answer: String,
    input: Option<bool>,
    clipboard: Option<bool>,
    files: Option<bool>,
}

impl TryFrom<RawPromptReply> for PromptReply {
    type Error = String;

    fn try_from(r: RawPromptReply) -> Result<Self, String> {
        match (r.answer.as_str(), r.input, r.clipboard, r.files) {
            ("accept", Some(input), Some(clipboard), Some(files)) => Ok(Self::Accept {
                input,
                clipboard,
                files,
            }),
            ("deny", None, None, None) => Ok(Self::Deny),
            _ => Err("neither an acceptance with its three flags nor a bare denial".into()),
        }
    }
}

impl PromptReply {
    pub fn accept(p: Permissions) -> Self {
        Self::Accept {
            input: p.input,
            clipboard: p.clipboard,
            files: p.files,
        }
    }
}

/// A session runs: the indicator shows who and how (`peer ui indicator`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorRequest {
    pub fingerprint: String,
    pub name: Option<String>,
    /// `direct` or `relay`.
    pub path: String,
    /// What the session may do, in words (`Permissions`' display).
    pub permissions: String,
}

/// A change the indicator shows (later lines on its stdin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndicatorUpdate {
    pub path: String,
}

/// The indicator's one message: the user clicked "End session".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum IndicatorReply {
    End,
}

/// A host the controller connected to before, for the connect window's list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecentHost {
    pub code: String,
    pub name: Option<String>,
    /// Unix seconds of the last session.
    pub last: u64,
}

/// What the connect window starts with (`peer ui connect`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub recent: Vec<RecentHost>,
    /// Unix seconds now, to say "2 h ago".
    pub now: u64,
}

/// What the user typed in the connect window (the window closed without it: nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectReply {
    pub code: String,
    /// Empty: no password (a host that asks its user instead).
    pub password: String,
    /// A name to remember the host by.
    pub save_as: Option<String>,
}

/// Why a line from the other process is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    #[error("a line longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("not a message of this protocol: {0}")]
    Malformed(String),
}

/// Parses one line (without its line ending) as `T`, strictly.
///
/// # Errors
///
/// [`UiError`] for a line over [`MAX_LINE`] bytes or anything but one `T`.
pub fn parse_reply<T: serde::de::DeserializeOwned>(line: &str) -> Result<T, UiError> {
    if line.len() > MAX_LINE {
        return Err(UiError::TooLong);
    }
    serde_json::from_str(line.trim_end_matches(['\r', '\n']))
        .map_err(|e| UiError::Malformed(e.to_string()))
}

/// One message as a line (with its line ending).
pub fn line<T: Serialize>(msg: &T) -> String {
    // Serializing these plain structs cannot fail (no maps with non-string keys, no I/O).
    let mut s = serde_json::to_string(msg).unwrap_or_default();
    s.push('\n');
    s
}

impl PromptReply {
    /// The answer as the host's approval machine takes it.
    pub fn answer(self) -> crate::approve::Answer {
        match self {
            Self::Accept {
                input,
                clipboard,
                files,
            } => crate::approve::Answer::Accept(Permissions {
                input,
                clipboard,
                files,
            }),
            Self::Deny => crate::approve::Answer::Deny,
        }
    }
}

/// Reads the first line of stdin as the window's request (`peer ui KIND`).
///
/// # Errors
///
/// [`crate::viewer::ViewerError::Request`] for a missing or malformed request.
#[cfg(feature = "viewer")]
pub fn read_request<T: serde::de::DeserializeOwned>() -> Result<T, crate::viewer::ViewerError> {
    use std::io::BufRead;
    let mut buf = Vec::new();
    let stdin = std::io::stdin();
    let mut lock = stdin.lock();
    std::io::Read::take(&mut lock, MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut buf)
        .map_err(|e| crate::viewer::ViewerError::Request(e.to_string()))?;
    let line = String::from_utf8_lossy(&buf);
    parse_reply(&line).map_err(|e| crate::viewer::ViewerError::Request(e.to_string()))
}

/// Writes the window's answer on stdout, as one line.
///
/// # Errors
///
/// [`crate::viewer::ViewerError::Request`] if stdout is closed.
#[cfg(feature = "viewer")]
pub fn write_reply<T: Serialize>(reply: &T) -> Result<(), crate::viewer::ViewerError> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(line(reply).as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| crate::viewer::ViewerError::Request(format!("answering: {e}")))
}

/// "just now", "5 min ago", "3 h ago", "12 days ago".
pub fn ago(then: u64, now: u64) -> String {
    let s = now.saturating_sub(then);
    match s {
        0..60 => "just now".into(),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_parsed_strictly() {
        let accept = PromptReply::accept(Permissions {
            input: true,
            ..Permissions::VIEW_ONLY
        });
        let text = line(&accept);
        assert_eq!(
            text,
            "{\"answer\":\"accept\",\"input\":true,\"clipboard\":false,\"files\":false}\n"
        );
        assert_eq!(parse_reply::<PromptReply>(&text), Ok(accept));
        assert_eq!(
            parse_reply::<PromptReply>("{\"answer\":\"deny\"}"),
            Ok(PromptReply::Deny)
        );
        for bad in [
            "",
            "accept",
            "{\"answer\":\"accept\"}",
            "{\"answer\":\"accept\",\"input\":true,\"clipboard\":false,\"files\":false,\"admin\":true}",
            "{\"answer\":\"deny\",\"input\":true}",
            "{\"answer\":\"allow-all\"}",
            "[{\"answer\":\"deny\"}]",
        ] {
            assert!(parse_reply::<PromptReply>(bad).is_err(), "{bad}");
        }
        let long = format!("{{\"answer\":\"deny\"{}}}", " ".repeat(MAX_LINE));
        assert_eq!(parse_reply::<PromptReply>(&long), Err(UiError::TooLong));
        assert_eq!(
            parse_reply::<IndicatorReply>("{\"action\":\"end\"}"),
            Ok(IndicatorReply::End)
        );
        assert!(parse_reply::<IndicatorReply>("{\"action\":\"grant\"}").is_err());
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(100, 130), "just now");
        assert_eq!(ago(0, 300), "5 min ago");
        assert_eq!(ago(0, 3 * 3600 + 5), "3 h ago");
        assert_eq!(ago(0, 12 * 86_400), "12 days ago");
        assert_eq!(ago(200, 100), "just now");
    }
}
