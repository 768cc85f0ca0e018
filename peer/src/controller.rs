//! The controller: resolves a code, connects to the host with its key pinned, proves the
//! password, then decodes video and sends input.
//!
//! Size: this file is well over 600 lines because it still holds look-up, connection and
//! punching, authentication, the media threads and control in one place; issue #12 splits it by
//! concern (a session driver shared by both sides, a sans-IO path agent).

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

use crate::handshake::{ControllerAction, ControllerHandshake};
use crate::session::{self, MAX_INPUT_LEN};
use crate::stats::{ClockOffset, PathKind, Report, Stats, Tick};
use crate::streams::Dispatcher;
use crate::{Error, net};
use proto::session::{
    self as msg, ALPN, CONTROL_PRIORITY, ControlMsg, INPUT_PRIORITY, MAX_CONTROL_LEN,
    MAX_VIDEO_FRAME_LEN, StreamKind, VideoHeader,
};

/// How long to wait for any candidate address of the host to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for the relay to answer a bind before dialing anyway.
const RELAY_BIND_WAIT: Duration = Duration::from_secs(2);
/// How long authentication may take.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to probe the clock offset.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How long, after the password proof, the candidates wait for this side's NAT mapping.
const MAPPING_WAIT: Duration = Duration::from_millis(500);

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub code: AccessCode,
    pub password: String,
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

/// Either decoder, behind one call.
enum AnyDecoder {
    InProcess(codec::Decoder),
    Isolated(codec::isolated::IsolatedDecoder),
}

impl AnyDecoder {
    fn new(mode: &DecoderMode) -> Result<Self, Error> {
        Ok(match mode {
            DecoderMode::InProcess => Self::InProcess(codec::Decoder::new()?),
            DecoderMode::Isolated { program } => {
                let mut cmd = std::process::Command::new(program);
                cmd.arg(codec::isolated::WORKER_ARG).env_clear();
                Self::Isolated(codec::isolated::IsolatedDecoder::spawn(cmd)?)
            }
        })
    }

    fn decode_into(
        &mut self,
        annexb: &[u8],
        out: &mut codec::DecodedFrame,
    ) -> Result<bool, codec::CodecError> {
        match self {
            Self::InProcess(d) => d.decode_into(annexb, out),
            Self::Isolated(d) => d.decode_into(annexb, out),
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

/// Ways for the caller to see and steer the session.
#[derive(Default)]
pub struct Hooks {
    pub on_frame: Option<FrameHook>,
    pub on_tick: Option<TickHook>,
    /// Input events to send to the host, in order.
    pub input: Option<mpsc::Receiver<InputEvent>>,
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
    /// This controller's own candidates (its address as the rendezvous saw it, then its LAN
    /// addresses), offered to the host once the password is proven; empty with
    /// `--force-relay`.
    pub own_candidates: Vec<SocketAddr>,
    /// Where to learn how this controller's NAT maps ports (told to the host with the
    /// candidates, for birthday punching): the rendezvous, the address it observed, and its
    /// STUN port.
    pub mapping_probe: Option<(SocketAddr, SocketAddr, u16)>,
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
    let result = async {
        let target = match target {
            Some(t) => t,
            None => resolve(&cfg, &identity, &endpoint).await?,
        };
        session(
            &cfg,
            hooks,
            &identity,
            (&endpoint, &socket),
            started,
            target,
        )
        .await
    }
    .await;
    close(endpoint).await;
    result
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

async fn resolve(
    cfg: &ConnectConfig,
    identity: &Identity,
    endpoint: &quinn::Endpoint,
) -> Result<Target, Error> {
    let rv_cfg = quic::client_config(
        identity,
        cfg.rendezvous_fingerprint,
        proto::rendezvous::ALPN,
        quic::Role::RendezvousClient,
    )?;
    let rv = endpoint
        .connect_with(rv_cfg, cfg.rendezvous, "quicdesk.invalid")?
        .await?;
    let relay_only = cfg.relay == RelayMode::Force;
    let lan = if relay_only {
        Vec::new()
    } else {
        crate::nat::lan_candidates(endpoint.local_addr()?)
    };
    let resolved = client::resolve(&rv, cfg.code, lan.clone(), relay_only).await?;
    rv.close(0u32.into(), b"resolved");
    let relay = resolved.relay.map(|offer| {
        (
            SocketAddr::new(cfg.rendezvous.ip(), offer.port),
            offer.ticket,
        )
    });
    // Whatever the rendezvous says, only addresses this controller may sensibly send to.
    let candidates = proto::rendezvous::sane_candidates(
        &resolved.candidates,
        Some(resolved.observed),
        &[endpoint.local_addr()?],
    );
    info!(
        code = %cfg.code,
        host = %resolved.host,
        candidates = ?candidates,
        relay = ?relay.map(|r| r.0),
        "resolved"
    );
    Ok(Target {
        host: resolved.host,
        candidates,
        relay,
        own_candidates: if relay_only {
            Vec::new()
        } else {
            proto::rendezvous::candidates(Some(resolved.observed), &lan)
        },
        observed: resolved.observed,
        mapping_probe: resolved
            .stun_port
            .map(|port| (cfg.rendezvous, resolved.observed, port)),
    })
}

async fn session(
    cfg: &ConnectConfig,
    hooks: Hooks,
    identity: &Identity,
    (endpoint, socket): (&quinn::Endpoint, &Arc<net::PeerSocket>),
    started: Instant,
    target: Target,
) -> Result<Report, Error> {
    // Connect to the host, pinning the key the rendezvous reported.
    let peer_cfg = quic::client_config(identity, target.host, ALPN, quic::Role::Controller)?;
    // Learn this side's NAT mapping while the handshake runs (one STUN round trip).
    let mut mapping = target
        .mapping_probe
        .filter(|_| !target.own_candidates.is_empty())
        .map(|(rendezvous, observed, port)| {
            let socket = socket.clone();
            crate::AbortOnDrop(tokio::spawn(async move {
                crate::nat::discover(&socket, rendezvous, observed, Some(port))
                    .await
                    .mapping
            }))
        });
    let (conn, route, _punching) = connect(endpoint, socket, &peer_cfg, &target, cfg.relay).await?;
    let path = route.state().map_or(PathKind::Direct, |s| s.path);
    info!(%path, "connected to the host");

    // Prove the password.
    let (mut ctl_send, mut ctl_recv, (width, height)) = authenticate(&conn, &cfg.password).await?;
    info!(width, height, "authenticated");
    // Now that the host holds the same secret, tell it where this side can be reached.

    // Run the streams.
    let stats = Arc::new(Mutex::new(Stats::new(started, path)));
    let clock = Arc::new(Mutex::new(ClockOffset::default()));
    let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
    // Discovery is done by now unless the STUN port does not answer: wait a little, then
    // punch without knowing.
    let mapping = match mapping.as_mut() {
        Some(task) => match tokio::time::timeout(MAPPING_WAIT, &mut task.0).await {
            Ok(Ok(m)) => m,
            _ => crate::nat::Mapping::Unknown,
        },
        None => crate::nat::Mapping::Unknown,
    };
    if !target.own_candidates.is_empty() {
        let addrs = target.own_candidates.clone();
        let _ = ctl_tx.send(ControlMsg::Candidates { addrs, mapping });
    }
    let (frames_tx, frames_rx) = mpsc::channel::<(VideoHeader, Vec<u8>)>(16);
    let recorder = match &cfg.record {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let decoder = {
        let (stats, clock, ctl_tx) = (stats.clone(), clock.clone(), ctl_tx.clone());
        let on_frame = hooks.on_frame;
        let mode = cfg.decoder.clone();
        let (socket, virtual_addr) = (socket.clone(), route.addr());
        let path_changes: PathChanges = Box::new(move || {
            socket
                .route_state(virtual_addr)
                .map_or(0, |s| s.path_changes)
        });
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
            r = control_reader(&mut ctl_recv, clock.clone(), (socket, &route, cfg.relay, mapping, target.observed)) => r,
            r = pinger(ctl_tx.clone()) => r,
            r = send_input(&conn, hooks.input, stats.clone()) => r,
            r = ticker(stats.clone(), &route, hooks.on_tick) => r,
            () = sleep_or_forever(cfg.duration) => Ok(()),
            () = stopped(hooks.stop) => Ok(()),
        }
    };
    let result = session_end.await;
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
        if let Some(state) = route.state() {
            stats.set_path(state.path, state.path_changes, state.direct_since);
        }
        stats.report(Instant::now())
    };
    match result {
        Ok(()) => Ok(report),
        // The host ending the session is a normal end.
        Err(Error::Connection(quinn::ConnectionError::ApplicationClosed(_))) => Ok(report),
        Err(e) => Err(e),
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

/// Connects to the host through a route of the peer socket: by the relay first when there is
/// one, while punch probes go to every candidate (the host probes back when the rendezvous
/// tells it about this controller). A candidate that answers becomes the direct path once the
/// handshake is done, without a reconnect; the probes go on for [`crate::nat::PUNCH_FOR`] in
/// the background (the returned task) for NATs that open late. Without a relay, every
/// candidate gets the handshake until one answers.
async fn connect(
    endpoint: &quinn::Endpoint,
    socket: &Arc<net::PeerSocket>,
    cfg: &quinn::ClientConfig,
    target: &Target,
    mode: RelayMode,
) -> Result<(quinn::Connection, net::RouteHandle, crate::AbortOnDrop), Error> {
    let relay = match mode {
        RelayMode::Off => None,
        RelayMode::Auto | RelayMode::Force => target.relay,
    };
    if mode == RelayMode::Force && relay.is_none() {
        return Err(Error::Unreachable(
            "--force-relay, but the rendezvous offers no relay".into(),
        ));
    }
    let candidates = if mode == RelayMode::Force {
        Vec::new()
    } else {
        target.candidates.clone()
    };
    if candidates.is_empty() && relay.is_none() {
        return Err(Error::Unreachable(match (mode, target.relay) {
            (RelayMode::Off, Some(_)) => {
                "--no-relay, but this rendezvous runs a relay and, to keep \
                 hosts' addresses private, tells them only over it once the password is proven; \
                 connect without --no-relay"
                    .into()
            }
            _ => "the rendezvous gave no address and no relay".into(),
        }));
    }
    let route = socket.add_route(net::RouteSpec {
        candidates: candidates.clone(),
        relay,
        direct_allowed: mode != RelayMode::Force,
        hold_direct: true,
    });
    let virtual_addr = route.addr();
    // The relay forwards only from an address proven by a bind: bind first (one round trip to
    // the rendezvous's machine), then dial.
    if relay.is_some() {
        match socket.bind_relay(virtual_addr, RELAY_BIND_WAIT).await {
            Ok(true) => debug!("relay bound"),
            Ok(false) => warn!("the relay did not answer a bind"),
            Err(e) => warn!("relay: {e}"),
        }
    }
    let punching = {
        let socket = socket.clone();
        crate::AbortOnDrop(tokio::spawn(async move {
            // Mappings are swapped only over the session: no birthday punching here.
            let punched = punch_host(
                &socket,
                virtual_addr,
                &candidates,
                crate::nat::Birthday::Off,
            )
            .await;
            debug!(answered = ?punched.answered, "punch probes done");
        }))
    };
    let connecting = endpoint.connect_with(cfg.clone(), virtual_addr, "quicdesk.invalid")?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => conn,
        // A key mismatch is fatal and says so.
        Ok(Err(e @ quinn::ConnectionError::TransportError(_))) => return Err(e.into()),
        Ok(Err(e)) => {
            return Err(Error::Unreachable(format!(
                "{e} ({})",
                describe(target, mode)
            )));
        }
        Err(_) => {
            return Err(Error::Unreachable(format!(
                "no answer within {CONNECT_TIMEOUT:?} ({})",
                describe(target, mode)
            )));
        }
    };
    if socket.release_direct(virtual_addr) {
        debug!("moved to the direct path found during the handshake");
    }
    Ok((conn, route, punching))
}

/// Punches towards the host's `candidates`; each that answers becomes the route's direct path.
async fn punch_host(
    socket: &Arc<net::PeerSocket>,
    virtual_addr: SocketAddr,
    candidates: &[SocketAddr],
    birthday: crate::nat::Birthday,
) -> crate::nat::Punched {
    crate::nat::punch_session(
        socket,
        Some(virtual_addr),
        candidates,
        crate::nat::PUNCH_FOR,
        birthday,
        |addr, via| {
            socket.set_direct(virtual_addr, addr, via);
        },
    )
    .await
}

fn describe(target: &Target, mode: RelayMode) -> String {
    let relay = match (mode, target.relay) {
        (RelayMode::Off, _) => "relay off".to_string(),
        (_, Some((addr, _))) => format!("relay {addr}"),
        (_, None) => "no relay offered".to_string(),
    };
    format!("candidates {:?}, {relay}", target.candidates)
}

async fn authenticate(
    conn: &quinn::Connection,
    password: &str,
) -> Result<(quinn::SendStream, quinn::RecvStream, (u32, u32)), Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.set_priority(CONTROL_PRIORITY).ok();
    let (mut hs, hello) = ControllerHandshake::start(net::exporter(conn)?);
    wire::write_msg(&mut send, &hello, MAX_CONTROL_LEN).await?;
    loop {
        let msg = session::read_control(&mut recv, AUTH_TIMEOUT).await?;
        match hs.on_message(msg) {
            ControllerAction::Derive(kdf) => {
                // Argon2id of a fixed password takes a moment: off the async threads.
                let typed = zeroize::Zeroizing::new(password.to_owned());
                let secret =
                    tokio::task::spawn_blocking(move || crate::password::derive(&kdf, &typed))
                        .await
                        .map_err(|_| Error::Thread("password derivation"))??;
                let auth = hs.prove(&secret)?;
                wire::write_msg(&mut send, &auth, MAX_CONTROL_LEN).await?;
            }
            ControllerAction::Done { width, height } => {
                quic::widen_after_auth(conn, quic::Role::Controller);
                return Ok((send, recv, (width, height)));
            }
            ControllerAction::End(e) => return Err(e),
        }
    }
}

async fn receive_video(
    conn: &quinn::Connection,
    frames: mpsc::Sender<(VideoHeader, Vec<u8>)>,
    stats: Arc<Mutex<Stats>>,
) -> Result<(), Error> {
    // Each group of pictures arrives on a new stream; a newer one supersedes the older.
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    let mut dispatcher = Dispatcher::new();
    let mut streams = dispatcher.route(StreamKind::Video, 4);
    let accepting = dispatcher.run(conn, "the host");
    tokio::pin!(accepting);
    loop {
        let mut recv = tokio::select! {
            r = &mut accepting => return r,
            s = streams.recv() => match s {
                Some(s) => s,
                None => return Ok(()),
            },
        };
        if let Some(old) = current.take() {
            old.abort();
        }
        let (frames, stats) = (frames.clone(), stats.clone());
        current = Some(tokio::spawn(async move {
            loop {
                let body = match wire::read_frame(&mut recv, MAX_VIDEO_FRAME_LEN).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(e) => {
                        debug!("video stream ended: {e}");
                        let _ = recv.stop(1u32.into());
                        return;
                    }
                };
                let header = match VideoHeader::decode(&body) {
                    Ok((h, _)) => h,
                    Err(e) => {
                        warn!("bad video frame, dropping the stream: {e}");
                        let _ = recv.stop(2u32.into());
                        return;
                    }
                };
                stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .on_received(body.len());
                if frames.send((header, body)).await.is_err() {
                    return;
                }
            }
        }));
    }
}

/// How often the session's route has changed path so far (read by the decode thread).
type PathChanges = Box<dyn Fn() -> u32 + Send>;

fn decode_loop(
    mut rx: mpsc::Receiver<(VideoHeader, Vec<u8>)>,
    stats: Arc<Mutex<Stats>>,
    clock: Arc<Mutex<ClockOffset>>,
    ctl: mpsc::UnboundedSender<ControlMsg>,
    mut on_frame: Option<FrameHook>,
    mut recorder: Option<std::io::BufWriter<std::fs::File>>,
    (decoder_mode, path_changes): (DecoderMode, PathChanges),
) -> Result<(), Error> {
    // Spawned here: the worker lives as long as the thread that started it.
    let mut decoder = AnyDecoder::new(&decoder_mode)?;
    // One picture buffer for the whole session: decoding allocates nothing per frame.
    let mut frame = codec::DecodedFrame::default();
    let mut synced = false; // have we decoded a key frame since the last error?
    while let Some((header, body)) = rx.blocking_recv() {
        let payload = &body[msg::VIDEO_HEADER_LEN..];
        if !synced && !header.key_frame {
            continue; // P-frames are useless until the next key frame
        }
        match decoder.decode_into(payload, &mut frame) {
            Ok(true) => {
                synced = true;
                let now = Instant::now();
                let now_us = session::now_us();
                let latency_us = {
                    let c = clock.lock().unwrap_or_else(|p| p.into_inner());
                    c.known()
                        .then(|| now_us.saturating_sub(c.to_local_us(header.captured_at_us)))
                };
                if let Some(rec) = recorder.as_mut() {
                    rec.write_all(payload)?;
                }
                let changes = path_changes();
                stats.lock().unwrap_or_else(|p| p.into_inner()).on_decoded(
                    now,
                    latency_us,
                    (frame.width, frame.height),
                    changes,
                );
                if let Some(hook) = on_frame.as_mut() {
                    let meta = FrameMeta {
                        frame_no: header.frame_no,
                        captured_at_us: header.captured_at_us,
                        key_frame: header.key_frame,
                        latency_us,
                    };
                    hook(&meta, &frame);
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn!(
                    frame = header.frame_no,
                    "decode error, asking for a key frame: {e}"
                );
                // A worker that died, hung or lied is gone for good: start a fresh one.
                if matches!(
                    e,
                    codec::CodecError::WorkerExited(_)
                        | codec::CodecError::WorkerTimeout(_)
                        | codec::CodecError::WorkerProtocol(_)
                ) {
                    decoder = AnyDecoder::new(&decoder_mode)?;
                }
                stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .decode_errors += 1;
                synced = false;
                let _ = ctl.send(ControlMsg::KeyFrameRequest);
            }
        }
    }
    if let Some(mut rec) = recorder {
        rec.flush()?;
    }
    Ok(())
}

async fn control_writer(
    send: &mut quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<ControlMsg>,
) -> Result<(), Error> {
    while let Some(msg) = rx.recv().await {
        wire::write_msg(send, &msg, MAX_CONTROL_LEN).await?;
    }
    Ok(())
}

async fn control_reader(
    recv: &mut quinn::RecvStream,
    clock: Arc<Mutex<ClockOffset>>,
    (socket, route, mode, ours, seen_as): (
        &Arc<net::PeerSocket>,
        &net::RouteHandle,
        RelayMode,
        crate::nat::Mapping,
        SocketAddr,
    ),
) -> Result<(), Error> {
    // Punching towards the host's addresses, stopped when the session ends.
    let mut punching = Vec::new();
    loop {
        match wire::read_msg::<ControlMsg, _>(recv, MAX_CONTROL_LEN).await? {
            Some(ControlMsg::Candidates {
                addrs,
                mapping: theirs,
            }) if mode != RelayMode::Force && punching.is_empty() => {
                // A hostile host could name anything: only addresses worth punching towards.
                let addrs = proto::rendezvous::sane_candidates(
                    &addrs,
                    Some(seen_as),
                    &[socket.local_addr()?],
                );
                info!(candidates = ?addrs, mapping = %theirs, "the host's addresses");
                let virtual_addr = route.addr();
                socket.add_candidates(virtual_addr, &addrs);
                let socket = socket.clone();
                punching.push(crate::AbortOnDrop(tokio::spawn(async move {
                    let birthday = crate::nat::Birthday::for_mappings(ours, theirs);
                    let punched = punch_host(&socket, virtual_addr, &addrs, birthday).await;
                    debug!(answered = ?punched.answered, "punch probes to the host done");
                    // A birthday pool socket that got through carries the direct path.
                    if punched.pool.is_some() {
                        std::future::pending::<()>().await;
                    }
                })));
            }
            None => return Ok(()),
            Some(ControlMsg::Pong { sent_us, host_us }) => {
                clock.lock().unwrap_or_else(|p| p.into_inner()).update(
                    sent_us,
                    host_us,
                    session::now_us(),
                );
            }
            Some(ControlMsg::Goodbye { reason }) => {
                let reason = crate::text::printable(&reason);
                info!("host ended the session: {reason}");
                return Ok(());
            }
            Some(other) => debug!(?other, "unexpected control message"),
        }
    }
}

async fn pinger(ctl: mpsc::UnboundedSender<ControlMsg>) -> Result<(), Error> {
    // A few quick probes first so latency is known from the first frames on.
    for i in 0u32.. {
        if ctl
            .send(ControlMsg::Ping {
                sent_us: session::now_us(),
            })
            .is_err()
        {
            return Ok(());
        }
        let wait = if i < 3 {
            Duration::from_millis(20)
        } else {
            PING_EVERY
        };
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

async fn send_input(
    conn: &quinn::Connection,
    events: Option<mpsc::Receiver<InputEvent>>,
    stats: Arc<Mutex<Stats>>,
) -> Result<(), Error> {
    let Some(mut events) = events else {
        return std::future::pending().await;
    };
    let mut stream: Option<quinn::SendStream> = None;
    while let Some(ev) = events.recv().await {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => {
                let mut s = conn.open_uni().await?;
                s.set_priority(INPUT_PRIORITY).ok();
                s.write_all(&[StreamKind::Input as u8]).await?;
                stream.insert(s)
            }
        };
        wire::write_frame(s, &input::encode(&ev), MAX_INPUT_LEN).await?;
        stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .input_events_sent += 1;
    }
    if let Some(mut s) = stream {
        let _ = s.finish();
    }
    // The script is done; the session goes on until it ends otherwise.
    std::future::pending().await
}

async fn ticker(
    stats: Arc<Mutex<Stats>>,
    route: &net::RouteHandle,
    mut hook: Option<TickHook>,
) -> Result<(), Error> {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        every.tick().await;
        let tick = {
            let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(state) = route.state() {
                stats.set_path(state.path, state.path_changes, state.direct_since);
            }
            stats.tick(Instant::now())
        };
        if let Some(h) = hook.as_mut() {
            h(&tick);
        }
    }
}
