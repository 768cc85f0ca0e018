//! The controller: resolves a code, connects to the host with its key pinned, proves the
//! password (or waits for the host's user to accept it, as the host says: `--approve`), then
//! decodes video and sends input (unless the host granted viewing only).
//!
//! - this file: configuration, hooks, `run` and the session's outline;
//! - [`connect`]: look-up, relay, dialling, punching towards the host, the password step;
//! - [`media`]: video streams and the decode thread;
//! - [`control`]: control messages (monitor switches among them), pings, input and the tick;
//! - [`known`]: the known hosts, each code's key (trust on first use).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certs::{Fingerprint, Identity};
use input::InputEvent;
use proto::{AccessCode, client, quic, wire};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::handshake::{CandidateExchange, ControllerAction, ControllerHandshake};
use crate::session::{self, MAX_INPUT_LEN};
use crate::stats::{ClockOffset, Report, Stats, Tick};
use crate::streams::Dispatcher;
use crate::{Error, net};
use proto::session::{
    self as msg, ALPN, CONTROL_PRIORITY, ControlMsg, INPUT_PRIORITY, MAX_CONTROL_LEN,
    MAX_VIDEO_FRAME_LEN, StreamKind, VideoHeader,
};

/// How long to wait for any candidate address of the host to answer.
mod connect;
mod control;
pub mod known;
mod media;

use connect::{authenticate, connect, resolve};
use control::{control_reader, control_writer, pinger, send_input, send_requests, ticker};
use media::{PathChanges, decode_loop, receive_video};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the relay to answer a bind before dialing anyway.
const RELAY_BIND_WAIT: Duration = Duration::from_secs(2);
/// How long authentication may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to probe the clock offset.
const PING_EVERY: Duration = Duration::from_secs(1);

/// How often a refused key is dialled again (see [`key_refused`]).
const KEY_REFUSED_RETRIES: u64 = 3;

/// Whether the host closed `conn` refusing this controller's certificate (a TLS alert as a QUIC
/// crypto error): it was not told of this key, or not yet.
fn key_refused(conn: &quinn::Connection) -> bool {
    matches!(
        conn.close_reason(),
        Some(quinn::ConnectionError::ConnectionClosed(c))
            if (0x100..0x200).contains(&u64::from(c.error_code))
    )
}

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub code: AccessCode,
    /// The host's password; `None` for a host that asks its user instead (`--approve
    /// prompt`): a host that wants a password then refuses with [`Error::PasswordNeeded`].
    pub password: Option<String>,
    /// The name this controller declares to the host's user (who sees it marked as
    /// self-declared, beside this controller's key).
    pub name: String,
    pub rendezvous: SocketAddr,
    pub rendezvous_fingerprint: Fingerprint,
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// End the session after this long (otherwise when the host ends it).
    pub duration: Option<Duration>,
    /// Write the received H.264 (Annex-B) here.
    pub record: Option<PathBuf>,
    /// Whether to use the rendezvous's relay.
    pub relay: RelayMode,
    /// Where the H.264 decoder runs.
    pub decoder: DecoderMode,
    /// Connect even if the code's host holds another key than last time (see [`known`]).
    pub accept_new_key: bool,
    /// Remember the host under this name (known hosts; the connect window lists it).
    pub save_as: Option<String>,
}

/// Where the controller decodes the host's video. The decoder is C code fed by the other side,
/// so by default it runs in a sandboxed child process ([`codec::isolated`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecoderMode {
    /// In a sandboxed worker process: `program` started with [`codec::isolated::WORKER_ARG`]
    /// (a program whose `main` first calls [`codec::isolated::run_worker_if_requested`], as
    /// `peer` does).
    Isolated { program: PathBuf },
    /// In this process (where the sandbox does not exist yet, e.g. Windows).
    InProcess,
}

impl DecoderMode {
    /// The `peer` program's own choice: its own executable as the worker where the sandbox
    /// exists (Linux), else in process.
    pub fn this_program() -> Self {
        if cfg!(target_os = "linux") {
            Self::Isolated {
                program: "/proc/self/exe".into(),
            }
        } else {
            Self::InProcess
        }
    }
}

/// How a controller uses the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RelayMode {
    /// Start on the relay (or whichever path answers first) and move to a punched direct
    /// path as soon as one works.
    #[default]
    Auto,
    /// Relay only: no punching, on either side.
    Force,
    /// Never the relay: direct paths only.
    Off,
}

/// What a decoded frame was, for [`Hooks::on_frame`].
#[derive(Debug, Clone, Copy)]
pub struct FrameMeta {
    pub frame_no: u64,
    pub captured_at_us: u64,
    pub key_frame: bool,
    /// Capture → decoded latency in µs, once the clock offset is known.
    pub latency_us: Option<u64>,
}

/// A decoded-frame callback, run on the decode thread.
pub type FrameHook = Box<dyn FnMut(&FrameMeta, &codec::DecodedFrame) + Send>;
/// A once-per-second stats callback.
pub type TickHook = Box<dyn FnMut(&Tick) + Send>;
/// A callback for what the host says about its screen, run on a session task.
pub type NoticeHook = Box<dyn FnMut(&HostNotice) + Send>;

/// What the user asks of the host during a session (besides input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// Share monitor `index` (as the host's `--list-monitors` counts, from 0) instead. The host
    /// answers with [`HostNotice::Screen`] or [`HostNotice::SwitchFailed`].
    SwitchMonitor(u32),
}

/// What the host told about its screen, checked (a hostile host's impossible values never
/// reach a hook) and made printable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HostNotice {
    /// Now sharing this monitor; video from the next key frame on has its size.
    Screen(msg::Screen),
    /// Monitor `index` cannot be shared, and why; the one shared before goes on.
    SwitchFailed { index: u32, reason: String },
    /// How the host decides whether to let this controller in; `known` says whether this
    /// code's key is the one remembered from an earlier session (known hosts). `me` is this
    /// controller's key, as the host's user sees it.
    Access {
        mode: msg::Approval,
        known: bool,
        me: Fingerprint,
    },
    /// The host's user is being asked, and answers within `seconds`.
    Asking { seconds: u32 },
    /// What the host let the session do.
    Granted(msg::Permissions),
    /// The host ended the session, and why (made printable).
    Ended { reason: String },
}

impl HostNotice {
    /// The notice a control message carries, if it is one and holds possible values.
    pub fn from_msg(msg: &ControlMsg) -> Option<Self> {
        if !msg.is_sane() {
            return None;
        }
        match msg {
            ControlMsg::Screen(screen) => Some(Self::Screen(*screen)),
            ControlMsg::SwitchFailed { index, reason } => Some(Self::SwitchFailed {
                index: *index,
                reason: crate::text::printable(reason),
            }),
            _ => None,
        }
    }
}

impl std::fmt::Display for HostNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Screen(screen) => write!(f, "the host now shares {screen}"),
            Self::SwitchFailed { index, reason } => {
                write!(f, "the host cannot share monitor {index}: {reason}")
            }
            Self::Access { mode, known, me } => {
                let me = crate::approve::short_fingerprint(me);
                match mode {
                    msg::Approval::Password => write!(f, "the host asks for its password"),
                    msg::Approval::Both => write!(
                        f,
                        "the host asks for its password, then asks its user to accept this \
                         controller (key {me})"
                    ),
                    msg::Approval::Prompt if *known => write!(
                        f,
                        "the host asks its user to accept this controller (key {me}); no \
                         password: its key is the one this code had before (known hosts)"
                    ),
                    msg::Approval::Prompt => write!(
                        f,
                        "the host asks its user to accept this controller (key {me}); no \
                         password, and this code is new here: that this is the host you meant \
                         rests on the rendezvous's word alone"
                    ),
                }
            }
            Self::Asking { seconds } => write!(
                f,
                "waiting for the host's user to accept (they have {seconds} s)…"
            ),
            Self::Granted(p) if !p.input => write!(
                f,
                "the host's user allows {p}: your input is not sent (view only)"
            ),
            Self::Granted(p) => write!(f, "the host allows {p}"),
            Self::Ended { reason } => write!(f, "the host ended the session: {reason}"),
        }
    }
}

/// Ways for the caller to see and steer the session.
#[derive(Default)]
pub struct Hooks {
    pub on_frame: Option<FrameHook>,
    pub on_tick: Option<TickHook>,
    /// Input events to send to the host, in order.
    pub input: Option<mpsc::Receiver<InputEvent>>,
    /// Requests to send to the host (monitor switches), in order.
    pub requests: Option<mpsc::Receiver<Request>>,
    /// Hears the host's answers to requests.
    pub on_notice: Option<NoticeHook>,
    /// Ends the session cleanly (the host is told) when it fires, e.g. on Ctrl-C.
    pub stop: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks").finish_non_exhaustive()
    }
}

/// Where the host is and which key it must hold.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: Fingerprint,
    pub candidates: Vec<SocketAddr>,
    /// The relay and this controller's ticket for the session.
    pub relay: Option<(SocketAddr, proto::relay::Ticket)>,
    /// This controller's LAN addresses, offered to the host (after its reflexive address) once
    /// the password is proven; empty with `--force-relay`.
    pub lan: Vec<SocketAddr>,
    /// STUN servers that tell this controller its reflexive address and so its NAT's mapping
    /// (told to the host with the candidates, for birthday punching): the rendezvous's STUN
    /// port, if it runs one.
    pub stun_servers: Vec<SocketAddr>,
    /// This controller's address as the rendezvous saw it.
    pub observed: SocketAddr,
}

/// Runs a whole session (resolve the code, connect, authenticate, stream); returns its report.
pub async fn run(cfg: ConnectConfig, hooks: Hooks) -> Result<Report, Error> {
    run_with(cfg, None, hooks).await
}

/// Like [`run`] but skips the rendezvous: connects to `target` directly.
pub async fn run_to(cfg: ConnectConfig, target: Target, hooks: Hooks) -> Result<Report, Error> {
    run_with(cfg, Some(target), hooks).await
}

async fn run_with(
    cfg: ConnectConfig,
    target: Option<Target>,
    hooks: Hooks,
) -> Result<Report, Error> {
    let (identity, (endpoint, socket), started) = open(&cfg)?;
    let known = known::KnownHosts::load(&cfg.data_dir)?;
    // The host's key once it proved the password (remembered however the session then ends).
    let mut proven = None;
    let result = async {
        let target = match target {
            Some(t) => t,
            None => resolve(&cfg, &identity, &endpoint).await?,
        };
        // Before anything is sent to the host.
        let seen = known::check(&known, cfg.code, target.host, cfg.accept_new_key)?;
        if let known::Seen::Changed { was } = seen {
            warn!(code = %cfg.code, %was, now = %target.host, "accepting the host's new key");
        }
        session(
            &cfg,
            hooks,
            &identity,
            (&endpoint, &socket),
            started,
            (target, &mut proven, seen == known::Seen::Same),
        )
        .await
    }
    .await;
    close(endpoint).await;
    if let Some(key) = proven {
        remember(known, cfg.code, key, cfg.save_as.clone()).await;
    }
    result
}

/// Remembers `key` for `code` (the file is written and synced: off the async threads), with
/// the name the user gave it, if any.
async fn remember(
    mut known: known::KnownHosts,
    code: AccessCode,
    key: Fingerprint,
    name: Option<String>,
) {
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match tokio::task::spawn_blocking(move || known.remember(code, key, now_unix, name)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!("cannot remember the host's key: {e}"),
        Err(e) => warn!("cannot remember the host's key: {e}"),
    }
}

type Net = (quinn::Endpoint, Arc<net::PeerSocket>);

fn open(cfg: &ConnectConfig) -> Result<(Identity, Net, Instant), Error> {
    let started = Instant::now();
    let identity = Identity::load_or_create(&cfg.data_dir, "controller")?;
    Ok((identity, net::bind(cfg.bind, None)?, started))
}

async fn close(endpoint: quinn::Endpoint) {
    endpoint.close(0u32.into(), b"bye");
    // Let the CONNECTION_CLOSE frames leave before the socket goes.
    let _ = tokio::time::timeout(Duration::from_millis(500), endpoint.wait_idle()).await;
}

async fn session(
    cfg: &ConnectConfig,
    hooks: Hooks,
    identity: &Identity,
    (endpoint, socket): (&quinn::Endpoint, &Arc<net::PeerSocket>),
    started: Instant,
    (target, proven, known): (Target, &mut Option<Fingerprint>, bool),
) -> Result<Report, Error> {
    let mut hooks = hooks;
    // Connect to the host, pinning the key the rendezvous reported.
    let peer_cfg = quic::client_config(identity, target.host, ALPN, quic::Role::Controller)?;
    // Prove the password. Without a relay the handshake may reach the host before the
    // rendezvous's announcement of this controller does (the host then refuses the key it
    // was not told of yet, which a TLS 1.3 client learns only after its handshake): dial again,
    // a few times, while that is the refusal.
    let mut refused = 0;
    let who = connect::Who {
        password: cfg.password.as_deref(),
        name: &cfg.name,
        me: identity.fingerprint(),
        known,
    };
    let (conn, route, (mut ctl_send, mut ctl_recv, (width, height), permissions, candidates)) = loop {
        let (conn, route) = connect(endpoint, socket, &peer_cfg, &target, cfg.relay).await?;
        info!(path = %route.state().path, "connected to the host");
        match authenticate(&conn, &who, &mut hooks.on_notice).await {
            Ok(auth) => break (conn, route, auth),
            Err(e) if refused < KEY_REFUSED_RETRIES && key_refused(&conn) => {
                refused += 1;
                debug!("the host refused this key ({e}); dialling again");
                tokio::time::sleep(Duration::from_millis(100 * refused)).await;
            }
            Err(e) => return Err(e),
        }
    };
    let path = route.state().path;
    info!(width, height, %permissions, "admitted");
    // The host proved the password with this key (or, without one, its user let this
    // controller in): it is the one to expect next time.
    *proven = Some(target.host);
    if !permissions.input {
        // View only: whatever the user does is dropped here, never sent.
        if let Some(mut events) = hooks.input.take() {
            tokio::spawn(async move { while events.recv().await.is_some() {} });
        }
    }
    let ended_by_host = Arc::new(Mutex::new(None::<String>));
    // Now that the host holds the same secret, the candidates step tells it where this side
    // can be reached (again whenever that changes).
    let candidates = match cfg.relay {
        RelayMode::Force => candidates.relay_only(),
        _ => candidates,
    };

    // Run the streams.
    let stats = Arc::new(Mutex::new(Stats::new(started, path)));
    let clock = Arc::new(Mutex::new(ClockOffset::default()));
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    let (frames_tx, frames_rx) = mpsc::channel::<(VideoHeader, Vec<u8>)>(16);
    let recorder = match &cfg.record {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let decoder = {
        let (stats, clock, ctl_tx) = (stats.clone(), clock.clone(), ctl_tx.clone());
        let on_frame = hooks.on_frame;
        let mode = cfg.decoder.clone();
        let view = route.view();
        let path_changes: PathChanges = Box::new(move || view.borrow().path_changes);
        std::thread::Builder::new()
            .name("quicdesk-decode".into())
            .spawn(move || {
                decode_loop(
                    frames_rx,
                    stats,
                    clock,
                    ctl_tx,
                    on_frame,
                    recorder,
                    (mode, path_changes),
                )
            })?
    };
    let session_end = async {
        tokio::select! {
            r = receive_video(&conn, frames_tx, stats.clone()) => r,
            r = control_writer(&mut ctl_send, ctl_rx) => r,
            r = control_reader(&mut ctl_recv, clock.clone(), (socket, &route, target.observed), (candidates, ctl_tx.clone()), (hooks.on_notice, ended_by_host.clone())) => r,
            r = send_requests(hooks.requests, ctl_tx.clone()) => r,
            r = pinger(ctl_tx.clone()) => r,
            r = send_input(&conn, hooks.input, stats.clone()) => r,
            r = ticker(stats.clone(), &route, hooks.on_tick) => r,
            () = sleep_or_forever(cfg.duration) => Ok(()),
            () = stopped(hooks.stop) => Ok(()),
        }
    };
    let result = session_end.await;
    // Whether the host had closed the connection when the session ended (whichever stream
    // noticed first, and however it said so): before this side closes it too.
    let host_closed = match conn.close_reason() {
        Some(quinn::ConnectionError::ApplicationClosed(close)) => Some(close),
        _ => None,
    };
    let _ = wire::write_msg(
        &mut ctl_send,
        &ControlMsg::Goodbye {
            reason: "controller closed the session".into(),
        },
        MAX_CONTROL_LEN,
    )
    .await;
    // Before the route (relay or punched path) goes with this function's end.
    quic::close_and_flush(&conn, 0, b"session over", Duration::from_millis(500)).await;
    // The decode thread ends once the frame channel (owned by receive_video) is dropped.
    let recorded = tokio::task::spawn_blocking(move || decoder.join())
        .await
        .map_err(|_| Error::Thread("decode"))?
        .map_err(|_| Error::Thread("decode"))?;
    recorded?;
    let report = {
        let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
        let state = route.state();
        stats.set_path(state.path, state.path_changes, state.direct_since);
        stats.report(Instant::now())
    };
    let mut report = report;
    report.permissions = Some(permissions);
    report.ended_by_host = crate::lock(&ended_by_host).take();
    match (result, host_closed) {
        (Ok(()), _) => Ok(report),
        // The host ending the session is a normal end.
        (Err(_), Some(close)) => {
            if report.ended_by_host.is_none() && close.reason.as_ref() != b"session over" {
                let reason = crate::text::printable(&String::from_utf8_lossy(&close.reason));
                report.ended_by_host = Some(reason);
            }
            Ok(report)
        }
        (Err(e), None) => Err(e),
    }
}

async fn stopped(stop: Option<tokio::sync::oneshot::Receiver<()>>) {
    match stop {
        // a dropped sender is not a request to stop
        Some(rx) => {
            if rx.await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn sleep_or_forever(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
