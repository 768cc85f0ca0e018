//! The `peer` program's command line (clap): commands, their flags and help texts, and where
//! each setting comes from when no flag gives it (environment, configuration file, default).
//! Part of the binary, not of the `peer` library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use certs::Fingerprint;
use clap::{Args, Parser, Subcommand};
use proto::AccessCode;

/// quicdesk peer: a remote desktop over QUIC, end-to-end encrypted.
///
/// First, once on each machine: `peer join INVITE`, with the invite the rendezvous's operator
/// gave you (`rendezvous invite`). On the machine to be controlled run `peer host`; it prints a
/// code and a one-time password. On the controlling machine run `peer connect CODE` (or `peer
/// connect` for a window with your recent hosts) and give that password. For unattended access
/// set a fixed password once with `peer password set`; for a host whose user accepts each
/// controller in a window, `peer host --approve prompt` (no password) or `--approve both`.
///
/// Settings come from the command line, then QUICDESK_* environment variables, then the
/// configuration file (`config.toml` in the data directory; `peer join` writes its rendezvous
/// part, a `[host]` table may set fps, bitrate_kbps, display, monitor, approve and
/// approve_timeout_secs, and a `[controller]` table name), then defaults.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Share this machine: register a code with the rendezvous and accept a controller.
    Host(HostArgs),
    /// View and control a host, given its code (without one, a window asks for it and lists
    /// recent hosts).
    ///
    /// In the window, Ctrl+Alt+Shift+N (N from 1 to 9) asks the host to share its monitor
    /// number N-1 in `peer host --list-monitors`; the window takes the new monitor's size, and a
    /// number the host does not have is refused with a message. That key is not sent to the
    /// host. With --headless, an input script's `monitor N` line (N as the host numbers it)
    /// does the same.
    Connect(ConnectArgs),
    /// Set or clear this host's fixed password (unattended access).
    #[command(subcommand)]
    Password(PasswordCommand),
    /// Run the host as a systemd user service, for unattended access to this desktop (needs
    /// `peer join` and `peer password set` first).
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Take an invite from the rendezvous's operator (`rendezvous invite` prints it): its
    /// addresses and key go into the configuration file, so that `peer host` and `peer
    /// connect CODE` need no rendezvous flags. Checks first that the rendezvous answers with
    /// that key.
    Join {
        /// The invite, `qd1:…`.
        invite: String,
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// The configuration file (default: config.toml in the data directory).
        #[arg(long, env = "QUICDESK_CONFIG")]
        config: Option<PathBuf>,
        /// Save the invite without checking that the rendezvous answers (e.g. offline).
        #[arg(long)]
        no_check: bool,
    },
    /// The windows' process (started by `peer host` and `peer connect` themselves): reads one
    /// JSON request on stdin, answers on stdout.
    #[command(hide = true)]
    Ui {
        #[arg(value_enum)]
        kind: UiKind,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UiKind {
    Prompt,
    Indicator,
    Connect,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ApproveArg {
    /// The controller proves the password; nobody is asked.
    Password,
    /// No password: the host's user accepts or denies each controller in a window, which shows
    /// the controller's key fingerprint and its self-declared name. Without a password the
    /// controller's only assurance that this is the host it meant is the rendezvous's word
    /// (and its known hosts), so a hostile rendezvous could sit in the middle: the fingerprint
    /// in the window is what the host's user checks (ask the controller's user to read theirs
    /// out). The session is still end-to-end encrypted to the controller's key.
    Prompt,
    /// The password first, then the host's user accepts or denies.
    Both,
}

impl From<ApproveArg> for peer::approve::Approval {
    fn from(a: ApproveArg) -> Self {
        match a {
            ApproveArg::Password => Self::Password,
            ApproveArg::Prompt => Self::Prompt,
            ApproveArg::Both => Self::Both,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ServiceCommand {
    /// Start the host at logon and now. Linux: writes
    /// ~/.config/systemd/user/quicdesk-host.service (starts `peer host` with the desktop session,
    /// restarts it on failure, logs to the journal), then enables and starts it. Windows: the
    /// value quicdesk-host in HKCU\Software\Microsoft\Windows\CurrentVersion\Run (no
    /// administrator needed), and starts the host now without a window, logging to host.log in
    /// the data directory.
    Install {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// The configuration file (default: config.toml in the data directory).
        #[arg(long, env = "QUICDESK_CONFIG")]
        config: Option<PathBuf>,
        /// Write the unit below this directory and run no systemctl (packaging, tests; Linux
        /// only).
        #[arg(long)]
        root: Option<PathBuf>,
        /// A system service instead, started at boot, before anyone logs in. Linux (as root):
        /// it shares whoever is logged in to the graphical session (`peer host --display
        /// session`); join and set the password for its data directory first, e.g. `sudo peer
        /// join INVITE --data-dir /var/lib/quicdesk-host`. Windows (as Administrator): the
        /// service quicdesk-host, which starts `peer host` as whoever is logged on at the
        /// console, in their session; its data directory (default
        /// %ProgramData%\quicdesk-host: `peer join INVITE --data-dir
        /// C:\ProgramData\quicdesk-host`, then `peer password set --data-dir …`) must be
        /// readable by them.
        #[arg(long)]
        system: bool,
    },
    /// Stop and remove the service (Linux: disable it and remove its unit file; Windows:
    /// remove the Run value, or stop and delete the system service).
    Uninstall {
        /// As for install.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The system service.
        #[arg(long)]
        system: bool,
    },
    /// Whether the service is installed, what it runs, and whether it is running.
    Status {
        /// As for install.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The system service.
        #[arg(long)]
        system: bool,
    },
    /// The Windows service's body, started by the service manager (`peer service install
    /// --system` installs it): keeps `peer host` running in the console's session. Elsewhere it
    /// says so and fails.
    #[command(hide = true)]
    Run {
        /// The host's data directory.
        #[arg(long, default_value_os_t = peer::service::system_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum PasswordCommand {
    /// Set a fixed password: `peer host` then asks for it instead of one-time passwords. It is
    /// read without echo (twice) and stored only as an argon2id hash (`password.json`, mode
    /// 0600, in the data directory). At least 12 characters, and not guessable.
    Set {
        /// Where the host keeps its key and state.
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
        /// Read the password from the first line of standard input (scripts) instead of the
        /// terminal.
        #[arg(long)]
        stdin: bool,
    },
    /// Remove the fixed password: `peer host` goes back to one-time passwords.
    Clear {
        #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct Common {
    /// Rendezvous server address, host:port or ip:port (default: the configuration file's,
    /// which `peer join` writes).
    #[arg(long, env = "QUICDESK_RENDEZVOUS")]
    pub rendezvous: Option<String>,
    /// The rendezvous server's fingerprint, as printed by `rendezvous fingerprint` (default:
    /// the configuration file's).
    #[arg(long, env = "QUICDESK_RENDEZVOUS_FINGERPRINT")]
    pub rendezvous_fingerprint: Option<Fingerprint>,
    /// Where this peer keeps its key (mode 0600) and state.
    #[arg(long, env = "QUICDESK_DATA_DIR", default_value_os_t = default_data_dir())]
    pub data_dir: PathBuf,
    /// The configuration file (default: config.toml in the data directory).
    #[arg(long, env = "QUICDESK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Local address of this peer's UDP socket.
    #[arg(long, default_value = "0.0.0.0:0")]
    pub bind: SocketAddr,
}

impl Common {
    /// The configuration file's contents (empty if there is none).
    pub fn config(&self) -> anyhow::Result<peer::config::Config> {
        let path = peer::config::path(self.config.as_deref(), &self.data_dir);
        Ok(peer::config::load(&path)?)
    }

    /// The rendezvous address and fingerprint, which every command but `--list-monitors` needs:
    /// from the flags (or environment), else from the configuration file.
    pub async fn rendezvous(
        &self,
        file: &peer::config::Config,
    ) -> anyhow::Result<(SocketAddr, Fingerprint)> {
        let from_file = file.rendezvous.as_ref();
        let addresses: Vec<String> = match (&self.rendezvous, from_file) {
            (Some(a), _) => vec![a.clone()],
            (None, Some(rv)) => rv.addresses.clone(),
            (None, None) => bail!(
                "no rendezvous: run `peer join INVITE` once with the invite your rendezvous's \
                 operator gave you (`rendezvous invite`), or give --rendezvous ADDR and \
                 --rendezvous-fingerprint FP"
            ),
        };
        let Some(fp) = self
            .rendezvous_fingerprint
            .or(from_file.map(|rv| rv.fingerprint))
        else {
            bail!(
                "missing --rendezvous-fingerprint FP (or QUICDESK_RENDEZVOUS_FINGERPRINT): \
                 the server's key, as `rendezvous fingerprint` prints it on the server"
            );
        };
        let mut last = None;
        for a in &addresses {
            match resolve_addr(a).await {
                Ok(addr) => return Ok((addr, fp)),
                Err(e) => {
                    tracing::warn!("{e:#}");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("the configuration names no rendezvous")))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceKind {
    /// This machine's screen (X11: `--display`, `--monitor`).
    Screen,
    /// Moving test content with frame numbers and timestamps drawn in (`--size`).
    Synthetic,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ContentKind {
    /// Screen-content tools up to 720p, camera mode above (fast enough for 1080p on 2 cores).
    Auto,
    /// OpenH264 screen-content mode: about half the bandwidth, about twice the encode time.
    Screen,
    /// Camera mode: fastest encode.
    Camera,
}

#[derive(Args, Debug)]
pub struct HostArgs {
    #[command(flatten)]
    pub common: Common,
    /// What to share.
    #[arg(long, value_enum, default_value = "screen")]
    pub source: SourceKind,
    /// X display to share, e.g. :0, or `session`: whoever is logged in to this machine's
    /// graphical session, followed across logins (the system service uses it) (default: the
    /// configuration file's host.display, else
    /// $DISPLAY).
    #[arg(long)]
    pub display: Option<String>,
    /// Monitor to share, by its number in `--list-monitors` (default: the configuration file's
    /// host.monitor, else the primary one).
    #[arg(long)]
    pub monitor: Option<usize>,
    /// Print the display's monitors with their numbers, and exit.
    #[arg(long)]
    pub list_monitors: bool,
    /// Do not draw the pointer into the shared picture.
    #[arg(long)]
    pub hide_cursor: bool,
    /// Size of the synthetic screen, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720", value_parser = parse_size)]
    pub size: (u32, u32),
    /// Frames per second to capture and send at most [default: 30, or the configuration
    /// file's host.fps].
    #[arg(long)]
    pub fps: Option<u32>,
    /// Highest video bitrate in kbit/s: the host lowers it while the path loses packets or
    /// builds a queue, and raises it back as the path clears [default: 4000, or the
    /// configuration file's host.bitrate_kbps].
    #[arg(long)]
    pub bitrate_kbps: Option<u32>,
    /// Encoder mode.
    #[arg(long, value_enum, default_value = "auto")]
    pub content: ContentKind,
    /// How long each one-time password lasts before a new one replaces it (it is also
    /// replaced after every session). Ignored with a fixed password (`peer password set`).
    #[arg(long, default_value = "10min", value_parser = humantime::parse_duration)]
    pub password_lifetime: Duration,
    /// Write every input event received to this file, one per line, instead of performing it
    /// (tests, auditing).
    #[arg(long)]
    pub input_log: Option<PathBuf>,
    /// How a controller gets in: `password` (the default), `prompt` (the host's user accepts
    /// or denies in a window: no password, see the security note in `--help`) or `both` (the
    /// password, then the user). The window shows the controller's key fingerprint, its
    /// self-declared name and where it comes from, and lets the user grant view only, input,
    /// clipboard or files (clipboard and files have nothing to gate yet). At most one window
    /// at a time, a few a minute at most; no answer in time denies [default: the
    /// configuration file's host.approve, else password].
    ///
    /// Security: with `prompt`, nothing proves to the controller that it reached the host it
    /// meant but the rendezvous's word and its known hosts; a hostile rendezvous could put
    /// itself in the middle, and the host's user's defence is the controller's fingerprint in
    /// the window. The session stays end-to-end encrypted to the pinned keys.
    #[arg(long, env = "QUICDESK_APPROVE", value_enum)]
    pub approve: Option<ApproveArg>,
    /// How long the host's user has to answer before the host denies [default: 30s, or the
    /// configuration file's host.approve_timeout_secs].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub approve_timeout: Option<Duration>,
    /// No session indicator window (who is connected, the path, "End session") on the host's
    /// display.
    #[arg(long)]
    pub no_indicator: bool,
}

#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// The host's code, e.g. ISR-48213370. Without it a window asks for the code and the
    /// password and lists the hosts connected to before.
    pub code: Option<AccessCode>,
    #[command(flatten)]
    pub common: Common,
    /// Read the host's password from the first line of standard input (scripts). Without it
    /// the password is asked for on the terminal, without echo. It is never taken from the
    /// command line, where other users of the machine could see it.
    #[arg(long, conflicts_with = "no_password")]
    pub password_stdin: bool,
    /// Give no password: for a host whose user accepts each controller (`peer host --approve
    /// prompt`). On the terminal, an empty password means the same.
    #[arg(long)]
    pub no_password: bool,
    /// The name the host's user sees beside this controller's key (self-declared, and shown
    /// as such) [default: the configuration file's controller.name, else user@hostname].
    #[arg(long)]
    pub name: Option<String>,
    /// Remember the host under this name in the recent hosts (known hosts), once connected.
    #[arg(long)]
    pub save_as: Option<String>,
    /// No window: print stats each second (the only mode of a build without the `viewer`
    /// feature).
    #[arg(long)]
    pub headless: bool,
    /// End the session after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Write the received video as an Annex-B H.264 file (ffprobe/ffplay read it).
    #[arg(long)]
    pub record: Option<PathBuf>,
    /// Write session statistics as JSON here when the session ends.
    #[arg(long)]
    pub stats_json: Option<PathBuf>,
    /// Send the input events in this file (see `peer::script` for the format; `monitor N`
    /// switches the host's monitor).
    #[arg(long)]
    pub input_script: Option<PathBuf>,
    /// Use only the rendezvous's relay: no hole punching on either side (the session is still
    /// end-to-end encrypted; the relay sees only ciphertext).
    #[arg(long, conflicts_with = "no_relay")]
    pub force_relay: bool,
    /// Connect even though the host now holds another key than when this controller last
    /// connected to its code (its owner reinstalled it); the new key is remembered.
    #[arg(long)]
    pub accept_new_key: bool,
    /// Never use the relay: connect directly or fail. Works only with a rendezvous that runs no
    /// relay: one that does keeps hosts' addresses for controllers that proved the password
    /// over it.
    #[arg(long)]
    pub no_relay: bool,
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_local_dir()
        .unwrap_or_else(|| PathBuf::from("."))
        .join("quicdesk")
        .join("peer")
}

pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| "expected WIDTHxHEIGHT, e.g. 1280x720".to_string())?;
    let w: u32 = w.trim().parse().map_err(|_| format!("bad width {w:?}"))?;
    let h: u32 = h.trim().parse().map_err(|_| format!("bad height {h:?}"))?;
    Ok((w, h))
}

pub async fn resolve_addr(s: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    tokio::net::lookup_host(s)
        .await
        .with_context(|| format!("cannot resolve rendezvous address {s:?}"))?
        .next()
        .with_context(|| format!("rendezvous address {s:?} resolves to nothing"))
}
