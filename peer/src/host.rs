//! The host agent: registers its code, accepts one authenticated controller at a time, streams
//! the screen as H.264 and injects the input it receives.
//!
//! Size: this file is well over 600 lines because it still holds registration, authentication
//! and the guessing limits, the media threads and stream dispatch in one place; issue #12
//! splits it by concern (a session driver shared by both sides, a sans-IO path agent).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture::Capturer;
use certs::{Fingerprint, Identity};
use input::InputBackend;
use proto::client::{self, ClientError};
use proto::rendezvous::{Refusal, ServerMsg};
use proto::{AccessCode, quic, wire};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

pub mod media;

use crate::guard::GuessGuard;
use crate::handshake::{HostAction, HostHandshake};
use crate::password::{Kdf, Stored};
use crate::session::{self, MAX_INPUT_LEN};
use crate::streams::Dispatcher;
use crate::{Error, lock, net};
use proto::rendezvous::SourceTag;
use proto::session::{
    ALPN, CONTROL_PRIORITY, ControlMsg, MAX_CONTROL_LEN, MAX_VIDEO_FRAME_LEN, StreamKind,
};

/// How long a controller has to authenticate.
const AUTH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait between attempts to reach the rendezvous.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the relay may take to answer a bind.
const RELAY_BIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a route announced by the rendezvous waits for its session.
const UNUSED_ROUTE_TTL: Duration = Duration::from_secs(30);

/// The part of the host's desktop a session shares: where input backends place the pointer.
pub use capture::Area as ScreenArea;
/// What the host shares: `capture`'s platform seam.
pub use capture::SourceSpec as Source;

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
        // The kind only: typed text never reaches a log.
        debug!(kind = event.kind_name(), "input event (not performed)");
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
    /// Which password a controller must prove.
    pub password: HostPassword,
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
            .field("password", &self.password)
            .finish_non_exhaustive()
    }
}

/// The password a host asks for.
#[derive(Debug, Clone)]
pub enum HostPassword {
    /// A one-time password ([`crate::password::one_time`]), replaced after every session and
    /// after `lifetime`.
    OneTime { lifetime: Duration },
    /// A fixed password, as `peer password set` stored it (argon2id hash).
    Fixed(Stored),
}

/// How long a one-time password lasts by default.
pub const ONE_TIME_LIFETIME: Duration = Duration::from_secs(10 * 60);

impl Default for HostPassword {
    fn default() -> Self {
        Self::OneTime {
            lifetime: ONE_TIME_LIFETIME,
        }
    }
}

/// What the host is doing, for the CLI and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStatus {
    /// The code the rendezvous gave this host (once registered).
    pub code: Option<AccessCode>,
    /// Successful registrations so far (1 after start, +1 after each re-registration).
    pub registrations: u64,
    /// The host's address as the rendezvous saw it at the last registration.
    pub observed: Option<SocketAddr>,
    /// How the host's NAT maps ports, once discovery after a registration finished.
    pub mapping: Option<crate::nat::Mapping>,
    /// The one-time password a controller must give now (`None` with a fixed password).
    pub password: Option<String>,
    /// Whether a controller is connected and authenticated.
    pub in_session: bool,
    /// Password attempts charged so far (each reached the password step), proven or not.
    pub password_attempts: u64,
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
            Ok(Err(_)) => Err(Error::Stopped),
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

/// A route to a controller the rendezvous announced.
struct Route {
    _handle: net::RouteHandle,
    /// Whether a session runs on it.
    used: bool,
    /// The controller's source, as the rendezvous tagged it.
    source: SourceTag,
}

struct Shared {
    cfg: HostConfig,
    status: watch::Sender<HostStatus>,
    guard: Mutex<GuessGuard>,
    /// Controller keys the rendezvous announced, each admitted for one handshake.
    expected: certs::ExpectedClients,
    busy: tokio::sync::Mutex<()>,
    /// Routes to the controllers announced by the rendezvous, by virtual address; `true` once
    /// a session runs on one.
    routes: Mutex<HashMap<SocketAddr, Route>>,
    socket: Arc<net::PeerSocket>,
    /// This host's candidates as of its last registration (reflexive, then LAN), told to a
    /// controller once it has proven the password.
    candidates: Mutex<Vec<SocketAddr>>,
}

impl Shared {
    /// How the controller derives the secret, and the secret the exchange runs over now.
    fn secret(&self) -> (Kdf, zeroize::Zeroizing<Vec<u8>>) {
        match &self.cfg.password {
            HostPassword::Fixed(stored) => (stored.kdf(), stored.secret()),
            HostPassword::OneTime { .. } => {
                let pw = self.status.borrow().password.clone().unwrap_or_default();
                (
                    Kdf::OneTime,
                    zeroize::Zeroizing::new(crate::password::normalize_one_time(&pw).into_bytes()),
                )
            }
        }
    }

    fn rotate_password(&self, why: &str) {
        if let HostPassword::OneTime { .. } = self.cfg.password {
            let pw = crate::password::one_time();
            info!("one-time password replaced ({why})");
            self.status.send_modify(|s| s.password = Some(pw));
        }
    }
}

/// Starts a host: loads its identity and code, binds its socket, and begins registering and
/// accepting controllers in the background.
pub async fn start(cfg: HostConfig) -> Result<HostHandle, Error> {
    if !(1..=60).contains(&cfg.fps) {
        return Err(Error::Setting {
            name: "fps",
            why: format!("{} is not between 1 and 60", cfg.fps),
        });
    }
    let identity = Identity::load_or_create(&cfg.data_dir, "host")?;
    let expected = certs::ExpectedClients::default();
    // Only the controllers the rendezvous announced complete a handshake (see prepare_route).
    let server_cfg = quic::server_config_with(
        identity.server_config_expecting(&[ALPN], expected.clone())?,
        quic::Role::Host,
    )?;
    let (endpoint, socket) = net::bind(cfg.bind, Some(server_cfg))?;
    let rv_cfg = quic::client_config(
        &identity,
        cfg.rendezvous_fingerprint,
        proto::rendezvous::ALPN,
        quic::Role::RendezvousClient,
    )?;
    let password = match cfg.password {
        HostPassword::OneTime { .. } => Some(crate::password::one_time()),
        HostPassword::Fixed(_) => None,
    };
    let (status_tx, status_rx) = watch::channel(HostStatus {
        code: None,
        registrations: 0,
        observed: None,
        mapping: None,
        password,
        in_session: false,
        password_attempts: 0,
        fatal: None,
    });
    let shared = Arc::new(Shared {
        cfg,
        status: status_tx,
        guard: Mutex::new(GuessGuard::new(Instant::now())),
        expected,
        busy: tokio::sync::Mutex::new(()),
        routes: Mutex::default(),
        socket,
        candidates: Mutex::default(),
    });
    let tasks = vec![
        tokio::spawn(rendezvous_loop(shared.clone(), endpoint.clone(), rv_cfg)),
        tokio::spawn(expire_passwords(shared.clone())),
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
) {
    let rv = shared.cfg.rendezvous;
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let conn = endpoint
                .connect_with(rv_cfg.clone(), rv, "quicdesk.invalid")?
                .await?;
            let lan = crate::nat::lan_candidates(endpoint.local_addr()?);
            let reg = client::register(&conn, lan.clone()).await?;
            Ok::<_, Error>((conn, reg, lan))
        };
        match attempt.await {
            Ok((_conn, mut reg, lan)) => {
                backoff = Duration::from_millis(200);
                let code = reg.code;
                info!(%code, observed = %reg.observed, "registered with the rendezvous");
                shared.status.send_modify(|s| {
                    s.code = Some(code);
                    s.registrations += 1;
                    s.observed = Some(reg.observed);
                });
                *lock(&shared.candidates) = proto::rendezvous::candidates(Some(reg.observed), &lan);
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
                            source,
                        })) => {
                            let relay = relay.map(|o| (SocketAddr::new(rv.ip(), o.port), o.ticket));
                            info!(%controller, ?candidates, relay = ?relay.map(|r| r.0), "a controller wants to connect");
                            tokio::spawn(prepare_route(
                                shared.clone(),
                                controller,
                                candidates,
                                relay,
                                source,
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
                reason: Refusal::RateLimited,
                message,
            })) => {
                backoff = MAX_BACKOFF;
                warn!(rendezvous = %rv, "registration refused for now ({message}); retrying in {backoff:?}");
            }
            Err(e) => warn!(rendezvous = %rv, "cannot register: {e}; retrying in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Replaces the one-time password when it has lived its lifetime (a session that runs on keeps
/// running; the next one needs the new password).
async fn expire_passwords(shared: Arc<Shared>) {
    let HostPassword::OneTime { lifetime } = shared.cfg.password else {
        return;
    };
    let mut status = shared.status.subscribe();
    loop {
        let current = status.borrow_and_update().password.clone();
        tokio::select! {
            () = tokio::time::sleep(lifetime) => {
                // Only if it did not change meanwhile (a session's end replaces it too).
                if shared.status.borrow().password == current {
                    shared.rotate_password("it expired");
                }
            }
            r = status.wait_for(|s| s.password != current) => if r.is_err() { return },
        }
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
    relay: Option<(SocketAddr, proto::relay::Ticket)>,
    source: SourceTag,
) {
    let socket = &shared.socket;
    let started = tokio::time::Instant::now();
    // This controller, and only it, may now complete one handshake, within the window.
    shared
        .expected
        .expect(controller, Instant::now() + UNUSED_ROUTE_TTL);
    let virtual_addr = relay.map(|relay| {
        let route = socket.add_route(net::RouteSpec {
            candidates: Vec::new(),
            relay: Some(relay),
            direct_allowed: false,
            hold_direct: false,
        });
        let virtual_addr = route.addr();
        lock(&shared.routes).insert(
            virtual_addr,
            Route {
                _handle: route,
                used: false,
                source,
            },
        );
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
    // no birthday punching. What the rendezvous passed on from the controller is filtered.
    let candidates = proto::rendezvous::sane_candidates(
        &candidates,
        shared.status.borrow().observed,
        &[socket.local_addr().unwrap_or(shared.cfg.bind)],
    );
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
    if routes.get(&virtual_addr).is_some_and(|r| !r.used) {
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
        let remote = incoming.remote_address();
        // An address that has not answered yet gets a Retry (smaller than its Initial) and
        // nothing else: this host amplifies nothing towards a spoofed source.
        if !incoming.remote_address_validated() {
            if let Err(e) = incoming.retry() {
                debug!(%remote, "retry: {e}");
            }
            continue;
        }
        let route_key = net::canonical(remote);
        // Relayed connections arrive from their route's virtual address: their source is the
        // tag the rendezvous gave; direct ones are known by their own prefix.
        let source = lock(&shared.routes)
            .get(&route_key)
            .map(|r| r.source)
            .unwrap_or_else(|| crate::guard::source_of(remote));
        if !lock(&shared.guard).admit(source) {
            debug!(%remote, "refused a connection: too many that have not proven the password");
            incoming.refuse();
            continue;
        }
        let pre_auth = PreAuth(shared.clone(), source);
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, "handshake failed: {e}");
                    return;
                }
            };
            // A session on a route keeps it until it ends.
            if let Some(r) = lock(&shared.routes).get_mut(&route_key) {
                r.used = true;
            }
            let result = serve(&shared, &conn, pre_auth).await;
            let peer_closed = matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(_))
            );
            let (code, reason) = match &result {
                Ok(()) => {
                    info!(%remote, "session ended");
                    (0, "session over".to_owned())
                }
                // Whatever stream noticed first, the controller hanging up is a normal end.
                Err(_) if peer_closed => {
                    info!(%remote, "session ended by the controller");
                    (0, "session over".to_owned())
                }
                Err(e) => {
                    warn!(%remote, "session ended: {e}");
                    (1, e.to_string())
                }
            };
            // The close must leave while the route it travels on still exists.
            quic::close_and_flush(&conn, code, reason.as_bytes(), Duration::from_millis(500)).await;
            lock(&shared.routes).remove(&route_key);
        });
    }
}

/// A connection that has not proven the password yet, counted by the guard until dropped.
struct PreAuth(Arc<Shared>, SourceTag);

impl Drop for PreAuth {
    fn drop(&mut self) {
        lock(&self.0.guard).authenticated_or_gone(&self.1);
    }
}

/// Authenticates a controller; returns the control stream and the host's key confirmation.
async fn authenticate(
    shared: &Shared,
    conn: &quinn::Connection,
    source: SourceTag,
) -> Result<(quinn::SendStream, quinn::RecvStream, [u8; 32]), Error> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::NoPeerKey)?;
    let remote = conn.remote_address();
    let mut charged = None;
    let (mut send, mut recv) = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| Error::Timeout("controller opened no control stream"))??;
    send.set_priority(CONTROL_PRIORITY).ok();
    let mut hs = HostHandshake::new(net::exporter(conn)?);
    loop {
        let msg = session::read_control(&mut recv, AUTH_TIMEOUT).await?;
        match hs.on_message(msg) {
            // The attempt is charged now, before anything that depends on the password is
            // sent; only a proof takes the charge back.
            HostAction::ChargeAttempt => {
                let begun = lock(&shared.guard).begin(controller, source, Instant::now());
                match begun {
                    Ok(attempt) => {
                        shared.status.send_modify(|s| s.password_attempts += 1);
                        charged = Some(attempt);
                        let (kdf, secret) = shared.secret();
                        let challenge = hs.challenge(kdf, &secret)?;
                        drop(secret);
                        wire::write_msg(&mut send, &challenge, MAX_CONTROL_LEN).await?;
                    }
                    Err(refused) => {
                        warn!(%remote, %controller, "password attempt refused: {refused}");
                        let (last, err) = hs.refuse(refused.to_string());
                        send_final(&mut send, &last).await;
                        return Err(err);
                    }
                }
            }
            HostAction::Proven { confirm } => {
                if let Some(attempt) = charged.take() {
                    lock(&shared.guard).succeeded(attempt);
                }
                return Ok((send, recv, confirm));
            }
            HostAction::End(last, err) => {
                if matches!(last, Some(ControlMsg::WrongPassword)) {
                    warn!(%remote, %controller, "wrong password");
                }
                if let Some(last) = last {
                    send_final(&mut send, &last).await;
                }
                return Err(err);
            }
        }
    }
}

async fn deny(send: &mut quinn::SendStream, reason: &str) {
    let msg = ControlMsg::Denied {
        reason: reason.to_string(),
    };
    send_final(send, &msg).await;
}

/// Sends the last message of a control stream that is about to be closed.
async fn send_final(send: &mut quinn::SendStream, msg: &ControlMsg) {
    let _ = wire::write_msg(send, msg, MAX_CONTROL_LEN).await;
    let _ = send.finish();
    // Give the message a moment to leave before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Opens the capture source for a session, with the screen area it covers.
fn make_source(source: &Source) -> Result<(Box<dyn Capturer>, ScreenArea), Error> {
    let opened = capture::open(source)?;
    info!(source = %opened.description, "capturing");
    Ok((opened.capturer, opened.area))
}

/// What the input thread is told.
enum InputCmd {
    Event(input::InputEvent),
    /// The shared screen changed size.
    Resize(input::ScreenSize),
}

/// Performs input on a dedicated thread (injection may block on the display server), in
/// order; once `ended` is set, drops what is still queued instead of performing it; when every
/// sender is gone (the session is over) releases whatever is still held.
fn input_loop(
    mut backend: Box<dyn InputBackend>,
    mut rx: mpsc::Receiver<InputCmd>,
    ended: &AtomicBool,
) {
    let mut dropped = 0u64;
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            InputCmd::Event(_) if ended.load(Ordering::SeqCst) => dropped += 1,
            InputCmd::Event(event) => {
                if let Err(e) = backend.inject(&event) {
                    // The kind only: typed text never reaches a log.
                    warn!(
                        kind = event.kind_name(),
                        "cannot perform an input event: {e}"
                    );
                }
            }
            InputCmd::Resize(size) => backend.set_screen_size(size),
        }
    }
    if dropped > 0 {
        debug!(dropped, "input queued at the session's end was dropped");
    }
    if let Err(e) = backend.release_all() {
        warn!("releasing held keys and buttons failed: {e}");
    }
}

async fn serve(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    pre_auth: PreAuth,
) -> Result<(), Error> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::NoPeerKey)?;
    let remote = conn.remote_address();
    let (mut ctl_send, mut ctl_recv, confirm) = authenticate(shared, conn, pre_auth.1).await?;
    drop(pre_auth);
    quic::widen_after_auth(conn, quic::Role::Host);
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
    let ended = Arc::new(AtomicBool::new(false));
    let input_thread = {
        let ended = ended.clone();
        std::thread::Builder::new()
            .name("quicdesk-input".into())
            .spawn(move || input_loop(backend, input_rx, &ended))?
    };
    let welcome = ControlMsg::Welcome {
        width,
        height,
        confirm,
    };
    wire::write_msg(&mut ctl_send, &welcome, MAX_CONTROL_LEN).await?;
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

    let (video_tx, video_rx) = mpsc::channel(2);
    let media = {
        let input = input_tx.clone();
        media::Media::start(
            capturer,
            media::MediaConfig {
                fps: shared.cfg.fps,
                bitrate_bps: shared.cfg.bitrate_bps,
                content: shared.cfg.content,
            },
            video_tx,
            move |w, h| {
                if let Ok(size) = input::ScreenSize::new(w, h) {
                    let _ = input.blocking_send(InputCmd::Resize(size));
                }
            },
        )?
    };
    let media_cmds = media.commands();
    let mut dispatcher = Dispatcher::new();
    let input_streams = dispatcher.route(StreamKind::Input, 4);
    let result = tokio::select! {
        r = send_video(conn, video_rx) => r,
        r = dispatcher.run(conn, "the controller") => r,
        () = receive_input_streams(input_streams, input_tx) => Ok(()),
        r = control_loop(shared, &mut ctl_send, &mut ctl_recv, &media_cmds) => r,
        e = conn.closed() => match e {
            quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => Ok(()),
            e => Err(e.into()),
        },
    };
    // Input still queued when the session ends is dropped, never performed.
    ended.store(true, Ordering::SeqCst);
    let (code, reason): (u32, &[u8]) = match &result {
        Ok(()) => (0, b"session over"),
        Err(_) => (1, b"session failed"),
    };
    quic::close_and_flush(conn, code, reason, Duration::from_millis(500)).await;
    // The pipeline stops at its next command check; the input tasks end with the connection,
    // and the input thread then releases whatever is held.
    let _ = tokio::task::spawn_blocking(move || {
        media.stop();
        let _ = input_thread.join();
    })
    .await;
    shared.status.send_modify(|s| s.in_session = false);
    shared.rotate_password("session ended");
    result
}

async fn send_video(
    conn: &quinn::Connection,
    mut rx: mpsc::Receiver<media::Packet>,
) -> Result<(), Error> {
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

/// Each input stream the controller opens, read on its own task into the input thread.
async fn receive_input_streams(
    mut streams: mpsc::Receiver<quinn::RecvStream>,
    input: mpsc::Sender<InputCmd>,
) {
    while let Some(recv) = streams.recv().await {
        tokio::spawn(receive_input(recv, input.clone()));
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
    media: &std::sync::mpsc::Sender<media::MediaCmd>,
) -> Result<(), Error> {
    // Punching towards the controller's addresses, stopped when the session ends.
    let mut punching = Vec::new();
    loop {
        let Some(msg) = wire::read_msg::<ControlMsg, _>(recv, MAX_CONTROL_LEN).await? else {
            return Ok(());
        };
        match msg {
            ControlMsg::KeyFrameRequest => {
                let _ = media.send(media::MediaCmd::KeyFrame);
            }
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
                // A hostile controller could name anything: only addresses worth punching to.
                let seen_as = shared.status.borrow().observed;
                let own = [shared.socket.local_addr()?];
                let addrs = proto::rendezvous::sane_candidates(&addrs, seen_as, &own);
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
                return Err(Error::Unexpected {
                    expected: "a control message for a running session",
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(x: u16) -> input::InputEvent {
        input::InputEvent::MouseMove {
            pos: input::NormalizedPoint::new(x, x),
        }
    }

    #[test]
    fn input_queued_when_the_session_ends_is_dropped_not_performed() {
        let backend = input::RecordingBackend::new();
        let (tx, rx) = mpsc::channel(16);
        let ended = Arc::new(AtomicBool::new(false));
        let thread = {
            let (backend, ended) = (backend.clone(), ended.clone());
            std::thread::spawn(move || input_loop(Box::new(backend), rx, &ended))
        };
        tx.blocking_send(InputCmd::Event(moved(1))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while backend.events().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The session ends with more input still queued.
        ended.store(true, Ordering::SeqCst);
        for x in 2..10 {
            tx.blocking_send(InputCmd::Event(moved(x))).unwrap();
        }
        drop(tx);
        thread.join().unwrap();
        assert_eq!(backend.events(), vec![moved(1)]);
    }
}
