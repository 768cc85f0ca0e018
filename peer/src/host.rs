//! The host agent: registers its code, accepts one authenticated controller at a time, streams
//! the screen as H.264 and injects the input it receives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture::Capturer;
use certs::{Fingerprint, Identity};
use input::InputBackend;
use rendezvous::client::{self, ClientError};
use rendezvous::proto::{Refusal, ServerMsg};
use rendezvous::{AccessCode, quic, wire};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use crate::auth::HostAuth;
use crate::session::{
    self, ALPN, CONTROL_PRIORITY, ControlMsg, MAX_CONTROL_LEN, MAX_INPUT_LEN, MAX_VIDEO_FRAME_LEN,
    StreamKind, VERSION, VideoHeader,
};
use crate::{Error, net};

/// Failed password attempts after which a one-time password is replaced.
const MAX_FAILURES: u32 = 5;
/// Delay before answering a wrong password, to slow online guessing.
const FAILURE_DELAY: Duration = Duration::from_millis(750);
/// How long a controller has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts to reach the rendezvous.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the relay may take to answer a bind.
const RELAY_BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a route announced by the rendezvous waits for its session.
const UNUSED_ROUTE_TTL: Duration = Duration::from_secs(30);

/// Locks a mutex of plain data (a panic elsewhere leaves it usable).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the host shares.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Source {
    /// Moving synthetic content carrying frame numbers and timestamps (tests, benches, demo).
    Synthetic { width: u32, height: u32 },
    /// One monitor of an X11 display.
    #[cfg(all(unix, not(target_os = "macos")))]
    Screen(capture::x11::X11Options),
}

/// The part of the host's screen a session shares: where input backends place the pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenArea {
    /// Top-left corner of the shared monitor on the whole X screen.
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
}

/// Makes the input backend of a session, given what it shares. An error leaves the session
/// view-only (with a warning) rather than refusing it.
pub type InputFactory =
    Arc<dyn Fn(&ScreenArea) -> Result<Box<dyn InputBackend>, input::InputError> + Send + Sync>;

/// An input backend that performs nothing: a view-only session, or synthetic content with
/// nowhere to put events. Only tracks what is held, so the log shows what `release_all` drops.
#[derive(Debug, Default)]
pub struct DiscardBackend {
    held: input::HeldInputs,
}

impl InputBackend for DiscardBackend {
    fn inject(&mut self, event: &input::InputEvent) -> Result<(), input::InputError> {
        debug!(?event, "input event (not performed)");
        self.held.note(event);
        Ok(())
    }

    fn release_all(&mut self) -> Result<(), input::InputError> {
        let released = self.held.take_releases();
        if !released.is_empty() {
            debug!(count = released.len(), "released held keys and buttons");
        }
        Ok(())
    }
}

/// Host settings.
#[derive(Clone)]
pub struct HostConfig {
    pub rendezvous: SocketAddr,
    pub rendezvous_fingerprint: Fingerprint,
    pub data_dir: PathBuf,
    /// Local address of the host's one UDP socket.
    pub bind: SocketAddr,
    pub source: Source,
    /// A fixed password (scripts, unattended use); otherwise a one-time 6-digit one.
    pub password: Option<String>,
    /// Register this code instead of the saved or a random one.
    pub code: Option<AccessCode>,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Encoder mode; `None` picks by size (see [`content_for`]).
    pub content: Option<codec::ContentType>,
    pub input: InputFactory,
}

/// The encoder mode used when none is configured: OpenH264's screen-content tools up to 720p;
/// above that camera mode, because screen mode needs ~19 ms per 1080p frame on a 2-core machine
/// (camera mode ~7-11 ms), which breaks the one-frame latency budget. `cargo xtask bench` shows
/// both.
pub fn content_for(width: u32, height: u32) -> codec::ContentType {
    if u64::from(width) * u64::from(height) <= 1280 * 720 {
        codec::ContentType::Screen
    } else {
        codec::ContentType::Camera
    }
}

impl std::fmt::Debug for HostConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostConfig")
            .field("rendezvous", &self.rendezvous)
            .field("data_dir", &self.data_dir)
            .field("source", &self.source)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// What the host is doing, for the CLI and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    pub code: AccessCode,
    /// Successful registrations so far (1 after start, +1 after each re-registration).
    pub registrations: u64,
    /// The host's address as the rendezvous saw it at the last registration.
    pub observed: Option<SocketAddr>,
    /// How the host's NAT maps ports, once discovery after a registration finished.
    pub mapping: Option<crate::nat::Mapping>,
    /// The password a controller must give now.
    pub password: String,
    /// Whether a controller is connected and authenticated.
    pub in_session: bool,
    /// Set when the host gave up (e.g. its code belongs to another key).
    pub fatal: Option<String>,
}

/// A running host.
#[derive(Debug)]
pub struct HostHandle {
    pub fingerprint: Fingerprint,
    pub local_addr: SocketAddr,
    status: watch::Receiver<HostStatus>,
    endpoint: quinn::Endpoint,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HostHandle {
    /// The current status.
    pub fn status(&self) -> HostStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<HostStatus> {
        self.status.clone()
    }

    /// Waits until the host has registered at least `n` times, or fails.
    pub async fn wait_registered(&self, n: u64, within: Duration) -> Result<HostStatus, Error> {
        let mut rx = self.status.clone();
        let res = tokio::time::timeout(
            within,
            rx.wait_for(|s| s.registrations >= n || s.fatal.is_some()),
        )
        .await;
        match res {
            Ok(Ok(s)) if s.fatal.is_none() => Ok(s.clone()),
            Ok(Ok(s)) => Err(Error::Denied(s.fatal.clone().unwrap_or_default())),
            Ok(Err(_)) => Err(Error::Protocol("host stopped")),
            Err(_) => Err(Error::Timeout("host registration")),
        }
    }

    /// Stops the host: closes every connection and the socket.
    pub async fn shutdown(self) {
        self.endpoint.close(0u32.into(), b"host shutting down");
        for t in &self.tasks {
            t.abort();
        }
        self.endpoint.wait_idle().await;
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SavedState {
    code: Option<AccessCode>,
    /// Whether the rendezvous ever accepted this code from us.
    confirmed: bool,
}

fn state_path(cfg: &HostConfig) -> PathBuf {
    cfg.data_dir.join("host.json")
}

fn load_state(cfg: &HostConfig) -> SavedState {
    let path = state_path(cfg);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(path = %path.display(), "ignoring unreadable host state: {e}");
            SavedState::default()
        }),
        Err(_) => SavedState::default(),
    }
}

fn save_state(cfg: &HostConfig, state: &SavedState) {
    let path = state_path(cfg);
    // serializing a plain struct to JSON cannot fail
    let bytes = serde_json::to_vec_pretty(state).expect("state serializes");
    if let Err(e) = certs::write_private_file(&path, &bytes) {
        warn!(path = %path.display(), "cannot save host state: {e}");
    }
}

/// A fresh one-time password: 6 random digits.
pub fn one_time_password() -> String {
    use rand::Rng;
    let n: u32 = rand::rng().random_range(0..1_000_000);
    format!("{n:06}")
}

struct Shared {
    cfg: HostConfig,
    status: watch::Sender<HostStatus>,
    failures: Mutex<u32>,
    busy: tokio::sync::Mutex<()>,
    /// Routes to the controllers announced by the rendezvous, by virtual address; `true` once
    /// a session runs on one.
    routes: Mutex<HashMap<SocketAddr, (net::RouteHandle, bool)>>,
    socket: Arc<net::PeerSocket>,
    /// This host's candidates as of its last registration (reflexive, then LAN), told to a
    /// controller once it has proven the password.
    candidates: Mutex<Vec<SocketAddr>>,
}

impl Shared {
    fn password(&self) -> String {
        self.status.borrow().password.clone()
    }

    fn rotate_password(&self, why: &str) {
        if self.cfg.password.is_some() {
            return;
        }
        let pw = one_time_password();
        info!("one-time password replaced ({why})");
        self.status.send_modify(|s| s.password = pw);
    }
}

/// Starts a host: loads its identity and code, binds its socket, and begins registering and
/// accepting controllers in the background.
pub async fn start(cfg: HostConfig) -> Result<HostHandle, Error> {
    if !(1..=60).contains(&cfg.fps) {
        return Err(Error::Protocol("fps must be between 1 and 60"));
    }
    let identity = Identity::load_or_create(&cfg.data_dir, "host")?;
    let mut state = load_state(&cfg);
    let code = match (cfg.code, state.code) {
        (Some(c), _) => c,
        (None, Some(c)) => c,
        (None, None) => AccessCode::random(&mut rand::rng()),
    };
    if state.code != Some(code) {
        state = SavedState {
            code: Some(code),
            confirmed: false,
        };
        save_state(&cfg, &state);
    }
    let server_cfg = quic::server_config(&identity, &[ALPN])?;
    let (endpoint, socket) = net::bind(cfg.bind, Some(server_cfg))?;
    let rv_cfg = quic::client_config(
        &identity,
        cfg.rendezvous_fingerprint,
        rendezvous::proto::ALPN,
    )?;
    let password = cfg.password.clone().unwrap_or_else(one_time_password);
    let (status_tx, status_rx) = watch::channel(HostStatus {
        code,
        registrations: 0,
        observed: None,
        mapping: None,
        password,
        in_session: false,
        fatal: None,
    });
    let shared = Arc::new(Shared {
        cfg,
        status: status_tx,
        failures: Mutex::new(0),
        busy: tokio::sync::Mutex::new(()),
        routes: Mutex::default(),
        socket,
        candidates: Mutex::default(),
    });
    let tasks = vec![
        tokio::spawn(rendezvous_loop(
            shared.clone(),
            endpoint.clone(),
            rv_cfg,
            state,
        )),
        tokio::spawn(accept_loop(shared, endpoint.clone())),
    ];
    Ok(HostHandle {
        fingerprint: identity.fingerprint(),
        local_addr: endpoint.local_addr()?,
        status: status_rx,
        endpoint,
        tasks,
    })
}

async fn rendezvous_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    rv_cfg: quinn::ClientConfig,
    mut state: SavedState,
) {
    let rv = shared.cfg.rendezvous;
    let mut backoff = Duration::from_millis(200);
    loop {
        let code = shared.status.borrow().code;
        let attempt = async {
            let conn = endpoint
                .connect_with(rv_cfg.clone(), rv, "quicdesk.invalid")?
                .await?;
            let lan = crate::nat::lan_candidates(endpoint.local_addr()?);
            let reg = client::register(&conn, code, lan.clone()).await?;
            Ok::<_, Error>((conn, reg, lan))
        };
        match attempt.await {
            Ok((_conn, mut reg, lan)) => {
                backoff = Duration::from_millis(200);
                if !state.confirmed {
                    state.confirmed = true;
                    save_state(&shared.cfg, &state);
                }
                info!(%code, observed = %reg.observed, "registered with the rendezvous");
                shared.status.send_modify(|s| {
                    s.registrations += 1;
                    s.observed = Some(reg.observed);
                });
                *lock(&shared.candidates) = rendezvous::proto::candidates(Some(reg.observed), &lan);
                // Discovery runs beside the registration so connect requests are not held up.
                let discovery = tokio::spawn({
                    let shared = shared.clone();
                    let (observed, stun_port) = (reg.observed, reg.stun_port);
                    async move {
                        let d = crate::nat::discover(&shared.socket, rv, observed, stun_port).await;
                        shared.status.send_modify(|s| s.mapping = Some(d.mapping));
                    }
                });
                let _discovery = crate::AbortOnDrop(discovery);
                loop {
                    match reg.next().await {
                        Ok(Some(ServerMsg::ConnectRequest {
                            controller,
                            candidates,
                            relay,
                        })) => {
                            let relay = relay.map(|o| (SocketAddr::new(rv.ip(), o.port), o.token));
                            info!(%controller, ?candidates, relay = ?relay.map(|r| r.0), "a controller wants to connect");
                            tokio::spawn(prepare_route(
                                shared.clone(),
                                controller,
                                candidates,
                                relay,
                            ));
                        }
                        Ok(Some(other)) => debug!(?other, "ignoring rendezvous message"),
                        Ok(None) => {
                            warn!("rendezvous closed the registration");
                            break;
                        }
                        Err(e) => {
                            warn!("lost the rendezvous: {e}");
                            break;
                        }
                    }
                }
            }
            Err(Error::Rendezvous(ClientError::Refused {
                reason: Refusal::CodeTaken,
                message,
            })) => {
                if shared.cfg.code.is_none() && !state.confirmed {
                    // A random code collided with another host's: pick another.
                    let fresh = AccessCode::random(&mut rand::rng());
                    warn!(old = %code, new = %fresh, "code already taken; picking another");
                    state.code = Some(fresh);
                    save_state(&shared.cfg, &state);
                    shared.status.send_modify(|s| s.code = fresh);
                    continue;
                }
                let msg = format!("the rendezvous refused {code}: {message}");
                tracing::error!("{msg}");
                shared.status.send_modify(|s| s.fatal = Some(msg));
                return;
            }
            Err(e) => warn!(rendezvous = %rv, "cannot register: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Makes the route to a controller the rendezvous announced: binds this side of the relay and
/// probes the controller's candidates (if the rendezvous gave any), so this side's NAT lets its
/// packets in. The route carries only the relayed path: when the controller moves to a direct
/// path, its packets arrive from its own address and quinn migrates the connection there (and
/// back to the route if the controller returns to the relay). Mapping the controller's
/// addresses onto the route instead would break a handshake that reached this host directly
/// before the rendezvous's announcement did. A route no session took within
/// [`UNUSED_ROUTE_TTL`] is dropped.
async fn prepare_route(
    shared: Arc<Shared>,
    controller: certs::Fingerprint,
    candidates: Vec<SocketAddr>,
    relay: Option<(SocketAddr, rendezvous::relay::Token)>,
) {
    let socket = &shared.socket;
    let started = tokio::time::Instant::now();
    let virtual_addr = relay.map(|relay| {
        let route = socket.add_route(net::RouteSpec {
            candidates: Vec::new(),
            relay: Some(relay),
            direct_allowed: false,
            hold_direct: false,
        });
        let virtual_addr = route.addr();
        lock(&shared.routes).insert(virtual_addr, (route, false));
        virtual_addr
    });
    let binding = async {
        let Some(virtual_addr) = virtual_addr else {
            return;
        };
        match socket.bind_relay(virtual_addr, RELAY_BIND_TIMEOUT).await {
            Ok(true) => debug!(%controller, "relay bound"),
            Ok(false) => warn!(%controller, "the relay did not answer"),
            Err(e) => warn!(%controller, "relay: {e}"),
        }
    };
    // Without a relay (the only case with candidates here) the mappings are not exchanged:
    // no birthday punching.
    let probing = crate::nat::punch_session(
        socket,
        None,
        &candidates,
        crate::nat::PUNCH_FOR,
        crate::nat::Birthday::Off,
        |_, _| {},
    );
    let ((), punched) = tokio::join!(binding, probing);
    info!(%controller, answered = ?punched.answered, "punch probes done");
    let Some(virtual_addr) = virtual_addr else {
        return;
    };
    tokio::time::sleep_until(started + UNUSED_ROUTE_TTL).await;
    let mut routes = lock(&shared.routes);
    if routes.get(&virtual_addr).is_some_and(|(_, used)| !used) {
        routes.remove(&virtual_addr);
        debug!(%controller, "no session came by this route; dropped it");
    }
}

/// How this host's NAT maps ports, as far as discovery found out.
fn own_mapping(shared: &Shared) -> crate::nat::Mapping {
    shared
        .status
        .borrow()
        .mapping
        .unwrap_or(crate::nat::Mapping::Unknown)
}

async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, "handshake failed: {e}");
                    return;
                }
            };
            // A session on a route keeps it until it ends.
            let route_key = net::canonical(remote);
            if let Some((_, used)) = lock(&shared.routes).get_mut(&route_key) {
                *used = true;
            }
            let result = serve(&shared, &conn).await;
            lock(&shared.routes).remove(&route_key);
            let peer_closed = matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(_))
            );
            match result {
                Ok(()) => info!(%remote, "session ended"),
                // Whatever stream noticed first, the controller hanging up is a normal end.
                Err(_) if peer_closed => info!(%remote, "session ended by the controller"),
                Err(e) => {
                    warn!(%remote, "session ended: {e}");
                    conn.close(1u32.into(), e.to_string().as_bytes());
                }
            }
        });
    }
}

/// Authenticates a controller; returns the control stream on success.
async fn authenticate(
    shared: &Shared,
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), Error> {
    let (mut send, mut recv) = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| Error::Timeout("controller opened no control stream"))??;
    send.set_priority(CONTROL_PRIORITY).ok();
    let spake_c = match session::read_control(&mut recv, AUTH_TIMEOUT).await? {
        ControlMsg::Hello { version, spake } if version == VERSION => spake,
        ControlMsg::Hello { version, .. } => {
            let reason = format!("unsupported protocol version {version} (host speaks {VERSION})");
            deny(&mut send, &reason).await;
            return Err(Error::Denied(reason));
        }
        _ => return Err(Error::Protocol("expected Hello")),
    };
    let exporter = net::exporter(conn)?;
    let (auth, spake_h, confirm) = HostAuth::respond(&shared.password(), exporter, &spake_c)?;
    wire::write_msg(
        &mut send,
        &ControlMsg::HelloAck {
            spake: spake_h,
            confirm,
        },
        MAX_CONTROL_LEN,
    )
    .await?;
    let verdict = match session::read_control(&mut recv, AUTH_TIMEOUT).await? {
        ControlMsg::Confirm { confirm } => auth.verify(&confirm),
        // The controller saw our confirmation fail: the password was wrong.
        ControlMsg::Goodbye { .. } => Err(crate::auth::AuthError::WrongPassword),
        _ => return Err(Error::Protocol("expected Confirm")),
    };
    if let Err(e) = verdict {
        let failures = {
            let mut f = shared.failures.lock().unwrap_or_else(|p| p.into_inner());
            *f += 1;
            *f
        };
        warn!(remote = %conn.remote_address(), failures, "wrong password");
        tokio::time::sleep(FAILURE_DELAY).await;
        if failures >= MAX_FAILURES {
            *shared.failures.lock().unwrap_or_else(|p| p.into_inner()) = 0;
            shared.rotate_password("too many wrong passwords");
        }
        deny(&mut send, "wrong password").await;
        return Err(e.into());
    }
    *shared.failures.lock().unwrap_or_else(|p| p.into_inner()) = 0;
    Ok((send, recv))
}

async fn deny(send: &mut quinn::SendStream, reason: &str) {
    let msg = ControlMsg::Denied {
        reason: reason.to_string(),
    };
    let _ = wire::write_msg(send, &msg, MAX_CONTROL_LEN).await;
    let _ = send.finish();
    // Give the message a moment to leave before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Opens the capture source for a session, with the screen area it covers.
fn make_source(source: &Source) -> Result<(Box<dyn Capturer>, ScreenArea), Error> {
    match source {
        Source::Synthetic { width, height } => {
            let area = ScreenArea {
                x: 0,
                y: 0,
                width: *width,
                height: *height,
            };
            Ok((
                Box::new(capture::SyntheticSource::new(*width, *height)?),
                area,
            ))
        }
        #[cfg(all(unix, not(target_os = "macos")))]
        Source::Screen(opts) => {
            let c = capture::x11::X11Capturer::open(opts)?;
            let m = c.monitor();
            info!(monitor = %m, shm = c.uses_shm(), "capturing the screen");
            let (width, height) = c.size();
            let area = ScreenArea {
                x: i32::from(m.x),
                y: i32::from(m.y),
                width,
                height,
            };
            Ok((Box::new(c), area))
        }
    }
}

/// What the input thread is told.
enum InputCmd {
    Event(input::InputEvent),
    /// The shared screen changed size.
    Resize(input::ScreenSize),
}

/// Performs input on a dedicated thread (injection may block on the display server), in
/// order; when every sender is gone (the session is over) releases whatever is still held.
fn input_loop(mut backend: Box<dyn InputBackend>, mut rx: mpsc::Receiver<InputCmd>) {
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            InputCmd::Event(event) => {
                if let Err(e) = backend.inject(&event) {
                    warn!("cannot perform {event:?}: {e}");
                }
            }
            InputCmd::Resize(size) => backend.set_screen_size(size),
        }
    }
    if let Err(e) = backend.release_all() {
        warn!("releasing held keys and buttons failed: {e}");
    }
}

async fn serve(shared: &Arc<Shared>, conn: &quinn::Connection) -> Result<(), Error> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::Protocol("no controller key"))?;
    let remote = conn.remote_address();
    let (mut ctl_send, mut ctl_recv) = authenticate(shared, conn).await?;
    let Ok(_busy) = shared.busy.try_lock() else {
        deny(&mut ctl_send, "the host is busy with another session").await;
        return Err(Error::Denied("host busy".into()));
    };
    info!(%remote, %controller, "controller authenticated; session starts");
    let (capturer, area) = make_source(&shared.cfg.source)?;
    let (width, height) = capturer.size();
    let backend = (shared.cfg.input)(&area).unwrap_or_else(|e| {
        warn!("input is off for this session (view only): {e}");
        Box::new(DiscardBackend::default())
    });
    let (input_tx, input_rx) = mpsc::channel(256);
    if let Ok(size) = input::ScreenSize::new(width, height) {
        let _ = input_tx.send(InputCmd::Resize(size)).await;
    }
    let input_thread = std::thread::Builder::new()
        .name("quicdesk-input".into())
        .spawn(move || input_loop(backend, input_rx))?;
    wire::write_msg(
        &mut ctl_send,
        &ControlMsg::Welcome { width, height },
        MAX_CONTROL_LEN,
    )
    .await?;
    shared.status.send_modify(|s| s.in_session = true);
    // Only now, with the password proven, does the controller learn where this host is.
    let own = lock(&shared.candidates).clone();
    let mapping = own_mapping(shared);
    wire::write_msg(
        &mut ctl_send,
        &ControlMsg::Candidates {
            addrs: own,
            mapping,
        },
        MAX_CONTROL_LEN,
    )
    .await?;

    let key_request = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let (video_tx, video_rx) = mpsc::channel(2);
    let pipeline = {
        let (key_request, stop) = (key_request.clone(), stop.clone());
        let settings = codec::EncoderConfig {
            width,
            height,
            bitrate_bps: shared.cfg.bitrate_bps,
            max_fps: shared.cfg.fps as f32,
            content: shared
                .cfg
                .content
                .unwrap_or_else(|| content_for(width, height)),
        };
        let pipeline = Pipeline {
            fps: shared.cfg.fps,
            content: shared.cfg.content,
            key_request,
            stop,
            video: video_tx,
            input: input_tx.clone(),
        };
        std::thread::Builder::new()
            .name("quicdesk-encode".into())
            .spawn(move || encode_loop(capturer, settings, pipeline))?
    };
    let result = tokio::select! {
        r = send_video(conn, video_rx) => r,
        r = receive_streams(conn, input_tx) => r,
        r = control_loop(shared, &mut ctl_send, &mut ctl_recv, &key_request) => r,
        e = conn.closed() => match e {
            quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => Ok(()),
            e => Err(e.into()),
        },
    };
    stop.store(true, Ordering::Relaxed);
    conn.close(0u32.into(), b"session over");
    // The encode thread notices `stop` within one frame interval; the input tasks end with the
    // connection, and the input thread then releases whatever is held.
    let _ = tokio::task::spawn_blocking(move || {
        let _ = pipeline.join();
        let _ = input_thread.join();
    })
    .await;
    shared.status.send_modify(|s| s.in_session = false);
    shared.rotate_password("session ended");
    result
}

/// One encoded frame on its way from the encode thread to the network.
struct Packet {
    header: VideoHeader,
    data: Vec<u8>,
}

/// What the encode thread works with besides the capturer.
struct Pipeline {
    fps: u32,
    content: Option<codec::ContentType>,
    key_request: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    video: mpsc::Sender<Packet>,
    input: mpsc::Sender<InputCmd>,
}

/// Capture and encode on a dedicated thread, paced to `fps`; blocks (never drops) when the
/// network is slower, so each captured frame is as fresh as the network allows. A still screen
/// gives no frames and costs next to nothing; a size change makes a new encoder (and a key
/// frame) and tells the input thread.
fn encode_loop(mut capturer: Box<dyn Capturer>, mut settings: codec::EncoderConfig, p: Pipeline) {
    let mut encoder = match codec::Encoder::new(settings) {
        Ok(e) => e,
        Err(e) => {
            warn!("cannot create the encoder: {e}");
            return;
        }
    };
    let interval = Duration::from_secs_f64(1.0 / f64::from(p.fps));
    let mut next = Instant::now();
    let tx = &p.video;
    while !p.stop.load(Ordering::Relaxed) {
        if p.key_request.load(Ordering::Relaxed) {
            capturer.refresh(); // a key frame even if the screen is still
        }
        match capturer.capture() {
            Ok(Some(frame)) => {
                if (frame.width, frame.height) != (settings.width, settings.height) {
                    info!(
                        from = %format!("{}x{}", settings.width, settings.height),
                        to = %format!("{}x{}", frame.width, frame.height),
                        "screen size changed; new encoder"
                    );
                    settings.width = frame.width;
                    settings.height = frame.height;
                    settings.content = p
                        .content
                        .unwrap_or_else(|| content_for(frame.width, frame.height));
                    encoder = match codec::Encoder::new(settings) {
                        Ok(e) => e,
                        Err(e) => {
                            warn!("cannot create the encoder: {e}");
                            return;
                        }
                    };
                    if let Ok(size) = input::ScreenSize::new(frame.width, frame.height) {
                        let _ = p.input.blocking_send(InputCmd::Resize(size));
                    }
                }
                let force = p.key_request.swap(false, Ordering::Relaxed);
                let encoded = encoder.encode(&frame.data, frame.stride, force);
                let header = VideoHeader {
                    frame_no: frame.frame_no,
                    captured_at_us: frame.captured_at_us,
                    width: frame.width,
                    height: frame.height,
                    key_frame: false,
                };
                // A lent capture segment goes back to the capturer here.
                drop(frame);
                match encoded {
                    Ok(enc) if !enc.data.is_empty() => {
                        let packet = Packet {
                            header: VideoHeader {
                                key_frame: enc.is_key_frame,
                                ..header
                            },
                            data: enc.data,
                        };
                        if tx.blocking_send(packet).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {} // rate control skipped this frame
                    Err(e) => {
                        warn!("encode failed: {e}");
                        return;
                    }
                }
            }
            Ok(None) => {} // screen unchanged: nothing to send
            Err(e) => {
                warn!("capture failed: {e}");
                return;
            }
        }
        next += interval;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now; // running late: don't try to catch up with a burst
        }
    }
}

async fn send_video(conn: &quinn::Connection, mut rx: mpsc::Receiver<Packet>) -> Result<(), Error> {
    let mut current: Option<quinn::SendStream> = None;
    while let Some(p) = rx.recv().await {
        let stream = match current.as_mut() {
            Some(s) if !p.header.key_frame => s,
            _ => {
                if let Some(mut old) = current.take() {
                    // A new key frame supersedes whatever of the old group is still in flight.
                    let _ = old.reset(0u32.into());
                }
                let mut s = conn.open_uni().await?;
                s.write_all(&[StreamKind::Video as u8]).await?;
                current.insert(s)
            }
        };
        let body = p.header.encode_with(&p.data);
        wire::write_frame(stream, &body, MAX_VIDEO_FRAME_LEN).await?;
    }
    Ok(())
}

async fn receive_streams(
    conn: &quinn::Connection,
    input: mpsc::Sender<InputCmd>,
) -> Result<(), Error> {
    loop {
        let mut recv = conn.accept_uni().await?;
        let mut kind = [0u8; 1];
        recv.read_exact(&mut kind).await?;
        match StreamKind::from_byte(kind[0]) {
            Some(StreamKind::Input) => {
                tokio::spawn(receive_input(recv, input.clone()));
            }
            _ => {
                warn!(
                    kind = kind[0],
                    "controller opened an unknown stream; refusing it"
                );
                let _ = recv.stop(1u32.into());
            }
        }
    }
}

async fn receive_input(mut recv: quinn::RecvStream, input: mpsc::Sender<InputCmd>) {
    loop {
        let frame = match wire::read_frame(&mut recv, MAX_INPUT_LEN).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                warn!("input stream closed: {e}");
                let _ = recv.stop(2u32.into());
                return;
            }
        };
        let event = match input::decode(&frame) {
            Ok(ev) => ev,
            Err(e) => {
                warn!("invalid input event, closing the input stream: {e}");
                let _ = recv.stop(2u32.into());
                return;
            }
        };
        if input.send(InputCmd::Event(event)).await.is_err() {
            return; // the session is over
        }
    }
}

async fn control_loop(
    shared: &Shared,
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
    key_request: &AtomicBool,
) -> Result<(), Error> {
    // Punching towards the controller's addresses, stopped when the session ends.
    let mut punching = Vec::new();
    loop {
        let Some(msg) = wire::read_msg::<ControlMsg, _>(recv, MAX_CONTROL_LEN).await? else {
            return Ok(());
        };
        match msg {
            ControlMsg::KeyFrameRequest => key_request.store(true, Ordering::Relaxed),
            ControlMsg::Ping { sent_us } => {
                let pong = ControlMsg::Pong {
                    sent_us,
                    host_us: session::now_us(),
                };
                wire::write_msg(send, &pong, MAX_CONTROL_LEN).await?;
            }
            ControlMsg::Goodbye { reason } => {
                info!("controller said goodbye: {reason}");
                return Ok(());
            }
            ControlMsg::Candidates { .. } if !punching.is_empty() => {
                debug!("ignoring a second list of candidates");
            }
            ControlMsg::Candidates { addrs, mapping } => {
                let addrs = crate::nat::sane_candidates(&addrs);
                let birthday = crate::nat::Birthday::for_mappings(own_mapping(shared), mapping);
                info!(candidates = ?addrs, %mapping, "the controller's addresses");
                let socket = shared.socket.clone();
                punching.push(crate::AbortOnDrop(tokio::spawn(async move {
                    let punched = crate::nat::punch_session(
                        &socket,
                        None,
                        &addrs,
                        crate::nat::PUNCH_FOR,
                        birthday,
                        |_, _| {},
                    )
                    .await;
                    debug!(answered = ?punched.answered, "punch probes to the controller done");
                    // A birthday pool socket that got through carries the controller's
                    // direct path (quinn migrates to it): keep it for the session.
                    if punched.pool.is_some() {
                        std::future::pending::<()>().await;
                    }
                })));
            }
            other => {
                debug!(?other, "unexpected control message");
                return Err(Error::Protocol("unexpected control message"));
            }
        }
    }
}
