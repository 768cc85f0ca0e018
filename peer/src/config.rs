//! The peer's configuration file: `config.toml` in the data directory (or `--config FILE`,
//! `QUICDESK_CONFIG`). It holds the rendezvous (written by `peer join INVITE`) and the host's
//! settings, so that `peer host` and `peer connect CODE` need no flags.
//!
//! ```toml
//! [rendezvous]
//! addresses = ["rv.example.com:7700"]   # tried in order
//! fingerprint = "3f9c…"                 # the server key's SHA-256, 64 hex digits
//!
//! [host]
//! fps = 30              # frames per second at most
//! bitrate_kbps = 4000   # the most the video uses (it adapts to the path below that)
//! display = ":0"        # X display to share
//! monitor = 1           # monitor to share, as `peer host --list-monitors` numbers them
//! approve = "password"  # or "prompt" (the host's user accepts, no password) or "both"
//! approve_timeout_secs = 30   # how long the host's user has to answer
//!
//! [controller]
//! name = "ann@desk"     # the name the host's user sees (self-declared; default user@hostname)
//! ```
//!
//! Every setting may be left out. Precedence: the command line, then the environment
//! (`QUICDESK_RENDEZVOUS`, `QUICDESK_RENDEZVOUS_FINGERPRINT`, ...), then this file, then the
//! built-in defaults. Unknown keys are an error (a typo must not be ignored silently); so is a
//! file over [`MAX_FILE_LEN`]. What this module does not do: ask the network anything but, in
//! [`check_rendezvous`], whether the rendezvous answers with the key the invite names.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certs::{Fingerprint, Identity};
use proto::invite::Invite;
use serde::{Deserialize, Serialize};

/// The file's name in the data directory.
pub const FILE_NAME: &str = "config.toml";
/// Largest configuration file read.
pub const MAX_FILE_LEN: u64 = 64 * 1024;
/// How long [`check_rendezvous`] waits for the rendezvous.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rendezvous: Option<Rendezvous>,
    #[serde(default, skip_serializing_if = "HostSettings::is_empty")]
    pub host: HostSettings,
    #[serde(default, skip_serializing_if = "ControllerSettings::is_empty")]
    pub controller: ControllerSettings,
}

/// The controller's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControllerSettings {
    /// The name the host's user sees (self-declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ControllerSettings {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Which rendezvous, as an invite names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rendezvous {
    /// `host:port` each, tried in order.
    pub addresses: Vec<String>,
    pub fingerprint: Fingerprint,
}

/// The host's settings; each `None` leaves the built-in default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_kbps: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<usize>,
    /// How the host decides whether to let a controller in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve: Option<crate::approve::Approval>,
    /// How long the host's user has to answer, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approve_timeout_secs: Option<u64>,
}

impl HostSettings {
    fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_LEN} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: the rendezvous: {source}")]
    Rendezvous {
        path: PathBuf,
        source: proto::invite::InviteError,
    },
}

impl From<&Invite> for Rendezvous {
    fn from(i: &Invite) -> Self {
        Self {
            addresses: i.addresses.clone(),
            fingerprint: i.fingerprint,
        }
    }
}

/// Where the file is: `explicit` if given, else in `data_dir`.
pub fn path(explicit: Option<&Path>, data_dir: &Path) -> PathBuf {
    explicit.map_or_else(|| data_dir.join(FILE_NAME), Path::to_path_buf)
}

/// Reads the file at `path`; a missing file is an empty configuration.
///
/// # Errors
///
/// [`ConfigError`] for a file that cannot be read, is too large, or says something wrong.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    use std::io::Read;
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(e) => return Err(io(e)),
    };
    let mut text = String::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > MAX_FILE_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    parse(&text).map_err(|e| match e {
        ParseError::Syntax(message) => ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        },
        ParseError::Rendezvous(source) => ConfigError::Rendezvous {
            path: path.to_path_buf(),
            source,
        },
    })
}

enum ParseError {
    Syntax(String),
    Rendezvous(proto::invite::InviteError),
}

fn parse(text: &str) -> Result<Config, ParseError> {
    let cfg: Config = toml::from_str(text).map_err(|e| ParseError::Syntax(e.to_string()))?;
    if let Some(rv) = &cfg.rendezvous {
        // The same rules as an invite's.
        Invite::new(rv.addresses.clone(), rv.fingerprint).map_err(ParseError::Rendezvous)?;
    }
    Ok(cfg)
}

/// Writes `cfg` to `path` whole or not at all ([`certs::write_private_file`]), creating a
/// missing directory (mode 0700 on Unix).
///
/// # Errors
///
/// [`ConfigError::Io`] if the directory or file cannot be written.
pub fn save(path: &Path, cfg: &Config) -> Result<(), ConfigError> {
    let io = |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        certs::create_private_dir(dir).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    }
    let body = toml::to_string(cfg).map_err(|e| io(std::io::Error::other(e.to_string())))?;
    let text = format!(
        "# quicdesk peer configuration: see `peer --help`. The command line and QUICDESK_*\n\
         # environment variables override what is set here.\n\n{body}"
    );
    certs::write_private_file(path, text.as_bytes()).map_err(io)
}

/// Takes `invite` into the file at `path`: its rendezvous replaces the one there, the other
/// settings stay.
///
/// # Errors
///
/// [`ConfigError`] if the existing file is unusable or the new one cannot be written.
pub fn join(path: &Path, invite: &Invite) -> Result<Config, ConfigError> {
    let mut cfg = load(path)?;
    cfg.rendezvous = Some(invite.into());
    save(path, &cfg)?;
    Ok(cfg)
}

/// Whether the rendezvous at `addr` answers a QUIC handshake with the key `fingerprint` names
/// (an ephemeral client key; nothing is registered or looked up).
///
/// # Errors
///
/// The handshake's error: no answer within [`CHECK_TIMEOUT`], or another key.
pub async fn check_rendezvous(
    addr: SocketAddr,
    fingerprint: Fingerprint,
) -> Result<(), crate::Error> {
    rendezvous_call(addr, fingerprint, &Identity::ephemeral()?, None).await
}

/// Enrolls `identity`'s key with the rendezvous at `addr` (which must hold `fingerprint`),
/// presenting the enrollment `token` of an invite.
pub async fn enroll(
    addr: SocketAddr,
    fingerprint: Fingerprint,
    identity: &Identity,
    token: &str,
) -> Result<(), crate::Error> {
    rendezvous_call(addr, fingerprint, identity, Some(token)).await
}

/// Connects to the rendezvous as `identity` (its key pinned), enrolls with `token` if given,
/// and closes.
async fn rendezvous_call(
    addr: SocketAddr,
    fingerprint: Fingerprint,
    identity: &Identity,
    token: Option<&str>,
) -> Result<(), crate::Error> {
    let cfg = proto::quic::client_config(
        identity,
        fingerprint,
        proto::rendezvous::ALPN,
        proto::quic::Role::RendezvousClient,
    )?;
    let bind: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint = quinn::Endpoint::client(bind)?;
    let connecting = endpoint.connect_with(cfg, addr, "quicdesk.invalid")?;
    let result = match tokio::time::timeout(CHECK_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => {
            let enrolled = match token {
                Some(t) => tokio::time::timeout(CHECK_TIMEOUT, proto::client::enroll(&conn, t))
                    .await
                    .map_err(|_| {
                        crate::Error::Timeout("the rendezvous did not answer the enrollment")
                    })
                    .and_then(|r| r.map_err(crate::Error::from)),
                None => Ok(()),
            };
            conn.close(0u32.into(), b"join check");
            enrolled
        }
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(crate::Error::Timeout("the rendezvous did not answer")),
    };
    endpoint.close(0u32.into(), b"");
    let _ = tokio::time::timeout(Duration::from_millis(300), endpoint.wait_idle()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3f9c0a51d2b7e8f4a6c1d0e9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2918070605";

    #[test]
    fn a_join_writes_the_rendezvous_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = path(None, &dir.path().join("peer"));
        assert_eq!(load(&path).unwrap(), Config::default(), "no file: empty");
        let mut cfg = Config::default();
        cfg.host.fps = Some(20);
        cfg.host.display = Some(":1".into());
        cfg.host.approve = Some(crate::approve::Approval::Both);
        cfg.controller.name = Some("ann@desk".into());
        save(&path, &cfg).unwrap();
        let invite: Invite = format!("qd1:rv.example.com:7700,198.51.100.7:7700/{FP}")
            .parse()
            .unwrap();
        let joined = join(&path, &invite).unwrap();
        let back = load(&path).unwrap();
        assert_eq!(back, joined);
        assert_eq!(back.host.fps, Some(20));
        assert_eq!(back.host.display.as_deref(), Some(":1"));
        assert_eq!(back.host.approve, Some(crate::approve::Approval::Both));
        assert_eq!(back.controller.name.as_deref(), Some("ann@desk"));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("approve = \"both\""), "{text}");
        let rv = back.rendezvous.unwrap();
        assert_eq!(rv.addresses, ["rv.example.com:7700", "198.51.100.7:7700"]);
        assert_eq!(rv.fingerprint, invite.fingerprint);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# quicdesk peer configuration"), "{text}");
    }

    #[test]
    fn a_bad_file_says_where_and_what() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for (text, says) in [
            ("[host]\nfsp = 30\n", "fsp"),
            ("[host]\nfps = \"thirty\"\n", "fps"),
            ("[host]\napprove = \"maybe\"\n", "maybe"),
            ("[controller]\nnick = \"x\"\n", "nick"),
            (
                "[rendezvous]\naddresses = []\nfingerprint = \"00\"\n",
                "fingerprint",
            ),
            (
                &format!("[rendezvous]\naddresses = [\"rv:0\"]\nfingerprint = \"{FP}\"\n"),
                "rv:0",
            ),
            ("[host\n", "host"),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = load(&path).unwrap_err().to_string();
            assert!(
                err.contains(FILE_NAME) && err.contains(says),
                "{text:?}: {err}"
            );
        }
        std::fs::write(&path, "#".repeat(MAX_FILE_LEN as usize + 1)).unwrap();
        assert!(matches!(load(&path), Err(ConfigError::TooLarge { .. })));
    }
}
