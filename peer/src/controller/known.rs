//! The controller's known hosts (trust on first use): the key each code's host proved the
//! password with, kept in `known_hosts.json` in the data directory. A code whose host comes
//! back with another key is refused with a clear message unless the user accepts the new key
//! (`--accept-new-key`, after the host's owner says it was reinstalled).
//!
//! Each entry also keeps when the code was last connected to and, if the user gave one
//! (`peer connect CODE --save-as NAME`, or the connect window's field), a name: the connect
//! window lists the most recent hosts by name ([`KnownHosts::recent`]).
//!
//! What it adds to the password proof: a rendezvous that hands out another key for a known code
//! (hostile, or fooled) is caught before any password is tried, instead of after. A key is
//! remembered only once the session is admitted, so a failed attempt never replaces one. A host
//! that asks its user instead of a password (`--approve prompt`) proves nothing about its key:
//! its key is remembered all the same once the user accepted (trust on first use, as SSH does),
//! so that the next time the controller can say whether the rendezvous still names the same
//! key, and a later password session to the real host exposes a key first given by someone in
//! the middle.
//! What it does not do: vouch for a code seen for the first time (that is what the password
//! proof is for).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use certs::Fingerprint;
use proto::AccessCode;

use crate::Error;

/// The file's name in the data directory.
pub const FILE_NAME: &str = "known_hosts.json";
/// Most codes remembered; the oldest entries beyond go (a controller rarely knows this many).
pub const MAX_HOSTS: usize = 10_000;
/// Largest file read.
const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

/// What the file says about a code's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Never connected to this code.
    New,
    /// The same key as before.
    Same,
    /// Another key than before.
    Changed { was: Fingerprint },
}

/// The known hosts of one data directory.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    hosts: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Entry {
    key: Fingerprint,
    /// Unix seconds of the last authenticated session, for trimming and the recent list.
    last: u64,
    /// The name the user gave this host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

/// Longest name kept for a host, in characters.
pub const MAX_NAME_CHARS: usize = 64;

impl KnownHosts {
    /// Reads the file in `data_dir` (none yet: no known hosts).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if it cannot be read; [`Error::Setting`] if it is not a known-hosts file
    /// (it is never overwritten then: the user decides).
    pub fn load(data_dir: &Path) -> Result<Self, Error> {
        use std::io::Read;
        let path = data_dir.join(FILE_NAME);
        let mut text = String::new();
        match std::fs::File::open(&path) {
            Ok(f) => {
                f.take(MAX_FILE_LEN + 1).read_to_string(&mut text)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let hosts = if text.is_empty() {
            BTreeMap::new()
        } else if text.len() as u64 > MAX_FILE_LEN {
            return Err(unusable(&path, "too large"));
        } else {
            serde_json::from_str(&text).map_err(|e| unusable(&path, &e.to_string()))?
        };
        Ok(Self { path, hosts })
    }

    /// What is known of `code`'s key.
    pub fn seen(&self, code: AccessCode, key: Fingerprint) -> Seen {
        match self.hosts.get(&code.to_string()) {
            None => Seen::New,
            Some(e) if e.key == key => Seen::Same,
            Some(e) => Seen::Changed { was: e.key },
        }
    }

    /// The `n` hosts connected to most recently, newest first, with their names.
    pub fn recent(&self, n: usize) -> Vec<crate::ui::RecentHost> {
        let mut all: Vec<_> = self
            .hosts
            .iter()
            .map(|(code, e)| crate::ui::RecentHost {
                code: code.clone(),
                name: e.name.clone(),
                last: e.last,
            })
            .collect();
        all.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.code.cmp(&b.code)));
        all.truncate(n);
        all
    }

    /// Remembers `key` for `code` (after an authenticated session), with `name` if given (else
    /// the name it had, if the key is the same), and writes the file, whole or not at all.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the file cannot be written.
    pub fn remember(
        &mut self,
        code: AccessCode,
        key: Fingerprint,
        now_unix: u64,
        name: Option<String>,
    ) -> Result<(), Error> {
        let name = name
            .map(|n| {
                crate::text::printable(&n)
                    .chars()
                    .take(MAX_NAME_CHARS)
                    .collect::<String>()
            })
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .or_else(|| {
                self.hosts
                    .get(&code.to_string())
                    .filter(|e| e.key == key)
                    .and_then(|e| e.name.clone())
            });
        self.hosts.insert(
            code.to_string(),
            Entry {
                key,
                last: now_unix,
                name,
            },
        );
        while self.hosts.len() > MAX_HOSTS {
            let oldest = self
                .hosts
                .iter()
                .min_by_key(|(_, e)| e.last)
                .map(|(c, _)| c.clone());
            if let Some(c) = oldest {
                self.hosts.remove(&c);
            }
        }
        let text = serde_json::to_string_pretty(&self.hosts)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        certs::write_private_file(&self.path, text.as_bytes())?;
        Ok(())
    }
}

fn unusable(path: &Path, why: &str) -> Error {
    Error::Setting {
        name: "known hosts",
        why: format!(
            "{} is unusable ({why}); move it away to start afresh",
            path.display()
        ),
    }
}

/// Checks `key` against what is known of `code`: `Ok` for a new or the same key, or a changed
/// one the user accepts; otherwise the error that tells the user what happened.
///
/// # Errors
///
/// [`Error::HostKeyChanged`] for a changed key not accepted.
pub fn check(
    known: &KnownHosts,
    code: AccessCode,
    key: Fingerprint,
    accept_new_key: bool,
) -> Result<Seen, Error> {
    match known.seen(code, key) {
        Seen::Changed { was } if !accept_new_key => Err(Error::HostKeyChanged {
            code,
            was: Box::new(was),
            now: Box::new(key),
        }),
        seen => Ok(seen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 32])
    }

    fn code(n: u8) -> AccessCode {
        AccessCode::from_payload([4, 8, 2, 1, 3, 3, n % 10]).unwrap()
    }

    #[test]
    fn a_changed_key_is_refused_unless_accepted_and_only_proven_keys_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let code = code(7);
        let mut known = KnownHosts::load(dir.path()).unwrap();
        assert_eq!(check(&known, code, key(1), false).unwrap(), Seen::New);
        known.remember(code, key(1), 100, None).unwrap();
        // Read back from the file.
        let known = KnownHosts::load(dir.path()).unwrap();
        assert_eq!(check(&known, code, key(1), false).unwrap(), Seen::Same);
        let err = check(&known, code, key(2), false).unwrap_err().to_string();
        assert!(
            err.contains(&code.to_string()) && err.contains("--accept-new-key"),
            "{err}"
        );
        assert_eq!(
            check(&known, code, key(2), true).unwrap(),
            Seen::Changed { was: key(1) }
        );
        // A file that is not ours is never overwritten: the user is told.
        std::fs::write(dir.path().join(FILE_NAME), "{not json").unwrap();
        let err = KnownHosts::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("move it away"), "{err}");
    }

    #[test]
    fn names_are_kept_and_the_recent_list_is_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut known = KnownHosts::load(dir.path()).unwrap();
        known
            .remember(code(1), key(1), 100, Some(" office\x1b[2J ".into()))
            .unwrap();
        known.remember(code(2), key(2), 300, None).unwrap();
        // Connected again without a name: the name stays; with another key, it goes.
        known.remember(code(1), key(1), 200, None).unwrap();
        let known = KnownHosts::load(dir.path()).unwrap();
        let recent = known.recent(10);
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].code, code(2).to_string());
        assert_eq!(recent[0].name, None);
        assert_eq!(recent[1].name.as_deref(), Some("office[2J"));
        assert_eq!(recent[1].last, 200);
        assert_eq!(known.recent(1).len(), 1);
        let mut known = known;
        known.remember(code(1), key(9), 400, None).unwrap();
        assert_eq!(
            known.recent(1)[0].name,
            None,
            "a new key starts without the name"
        );
    }

    #[test]
    fn the_file_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut known = KnownHosts::load(dir.path()).unwrap();
        known.hosts = (0..MAX_HOSTS as u64)
            .map(|i| {
                (
                    format!("ISR-{i:08}"),
                    Entry {
                        key: key(1),
                        last: i + 10,
                        name: None,
                    },
                )
            })
            .collect();
        let code = code(7);
        known.remember(code, key(3), 1_000_000, None).unwrap();
        assert_eq!(known.hosts.len(), MAX_HOSTS);
        assert!(!known.hosts.contains_key("ISR-00000000"), "the oldest went");
        assert_eq!(known.seen(code, key(3)), Seen::Same);
    }
}
