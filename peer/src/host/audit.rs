//! The host's audit log: one JSON line per controller connection that completed the TLS
//! handshake, written when it ends — who (the controller's key and self-declared name), when,
//! from where, on which path, for how long, how the host decided (`--approve`), whether it
//! was admitted, what the host's user answered and granted, and how it ended. `audit.jsonl` in the
//! data directory (mode 0600), kept under [`MAX_LEN`] by moving a full file to `audit.jsonl.1`.
//!
//! ```json
//! {"start":1795687691,"seconds":42.5,"controller":"3f9c…","from":"198.51.100.7:4242",
//!  "path":"direct","authenticated":true,"name":"ann@desk","approval":"prompt",
//!  "asked":"accepted (view, input)","permissions":{"input":true,"clipboard":false,
//!  "files":false},"ended":"session over"}
//! ```
//!
//! A line is written whole with one `write` to a file opened for appending, so a crash leaves
//! at most the last line missing, never a torn one in the middle. Failing to write is logged,
//! never the end of a session.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use serde::Serialize;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "audit.jsonl";
/// Size past which the file is moved aside (one older file is kept).
pub const MAX_LEN: u64 = 8 * 1024 * 1024;

/// One connection, as the log records it.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Unix seconds when the connection was accepted.
    pub start: u64,
    pub seconds: f64,
    /// The controller's key fingerprint.
    pub controller: String,
    /// The controller's address, when quinn saw it (a host without a relay); a session on a
    /// route (relayed, perhaps moved direct) shows none.
    pub from: Option<SocketAddr>,
    /// `direct` or `relay` at the end.
    pub path: crate::stats::PathKind,
    /// Whether the controller was admitted (proved the password and/or was accepted).
    pub authenticated: bool,
    /// The controller's self-declared name (printable), if it gave one.
    pub name: Option<String>,
    /// How the host decided (`--approve`).
    pub approval: crate::approve::Approval,
    /// What the host's user answered, in words, when asked.
    pub asked: Option<String>,
    /// What the session was allowed to do, once admitted.
    pub permissions: Option<crate::approve::Permissions>,
    /// How it ended, in words.
    pub ended: String,
}

/// Appends `record` to the log in `data_dir`.
///
/// # Errors
///
/// The file's I/O error.
pub fn append(data_dir: &Path, record: &Record) -> std::io::Result<()> {
    let path = data_dir.join(FILE_NAME);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_LEN) {
        std::fs::rename(&path, data_dir.join(format!("{FILE_NAME}.1")))?;
    }
    let mut line = serde_json::to_string(record).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(&path)?.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_append_and_a_full_file_moves_aside() {
        let dir = tempfile::tempdir().unwrap();
        let rec = Record {
            start: 1,
            seconds: 2.5,
            controller: "ab".repeat(32),
            from: Some("198.51.100.7:4242".parse().unwrap()),
            path: crate::stats::PathKind::Direct,
            authenticated: false,
            name: Some("ann".into()),
            approval: crate::approve::Approval::Prompt,
            asked: Some("denied: the host's user declined".into()),
            permissions: None,
            ended: "wrong \"password\"\n".into(),
        };
        append(dir.path(), &rec).unwrap();
        append(dir.path(), &rec).unwrap();
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["ended"], "wrong \"password\"\n");
            assert_eq!(v["from"], "198.51.100.7:4242");
            assert_eq!(v["approval"], "prompt");
            assert_eq!(v["asked"], "denied: the host's user declined");
        }
        // Past the limit the file moves aside and a new one starts.
        let big = dir.path().join(FILE_NAME);
        std::fs::write(&big, vec![b'x'; MAX_LEN as usize + 1]).unwrap();
        append(dir.path(), &rec).unwrap();
        assert_eq!(std::fs::read_to_string(&big).unwrap().lines().count(), 1);
        assert!(dir.path().join(format!("{FILE_NAME}.1")).exists());
    }
}
