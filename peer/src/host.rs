//! The host agent: registers its code, accepts one authenticated controller at a time, streams
//! the screen as H.264 and injects the input it receives.
//!
//! - this file: configuration, status, the handle, and `start`;
//! - [`register`]: the rendezvous connection, connect requests, routes, password expiry;
//! - [`accept`]: admitting controllers and the password step (and the host's user's approval);
//! - [`attend`]: the accept/deny window and the session indicator (window processes);
//! - [`serve`]: one authenticated session's streams, input thread and control loop;
//! - [`media`]: the capture/encode pipeline;
//! - [`audit`]: the log of every controller connection (`audit.jsonl`);
//! - [`rate`]: the rate controller steering the pipeline's bitrate from the path's statistics.

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

mod accept;
mod attend;
pub mod audit;
pub mod media;
pub mod rate;
mod register;
mod serve;

use accept::{PreAuth, accept_loop, authenticate, deny};
pub use attend::{Attended, UiCommand};
use register::{expire_passwords, rendezvous_loop};
use serve::serve;

use crate::approve::Permissions;
use crate::guard::GuessGuard;
use crate::handshake::{CandidateExchange, HostAction, HostHandshake};
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
/// Longest wait between attempts to reach the rendezvous (each attempt waits at most
/// [`REGISTER_TIMEOUT`]), so a host is back within a few seconds of its rendezvous.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Wait after the rendezvous refused a registration for now (its rate limits).
const REFUSED_BACKOFF: Duration = Duration::from_secs(5);
/// How long a host waits after a refusal only its rendezvous's operator can lift (not
/// enrolled, banned).
const OPERATOR_BACKOFF: Duration = Duration::from_secs(30);
/// How long one attempt to connect and register may take.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(3);
/// A registration whose rendezvous acknowledged nothing for this long (keep-alives go out every
/// `proto::quic::RENDEZVOUS_KEEP_ALIVE`) is given up for a new one.
const SILENCE: Duration = Duration::from_secs(6);
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
    /// Whether the host's user is asked (`--approve`), and its windows.
    pub attended: Attended,
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
            .field("attended", &self.attended)
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
    /// Times the host's user was asked to accept a controller (`--approve prompt|both`).
    pub prompts: u64,
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
    /// The controller it is for.
    controller: certs::Fingerprint,
    /// Whether a session runs on it.
    used: bool,
    /// The controller's source, as the rendezvous tagged it.
    source: SourceTag,
}

/// What the last registration told of this host's network.
#[derive(Debug, Clone, Default)]
struct Network {
    lan: Vec<SocketAddr>,
    stun_servers: Vec<SocketAddr>,
}

struct Shared {
    cfg: HostConfig,
    status: watch::Sender<HostStatus>,
    guard: Mutex<GuessGuard>,
    /// The host's questions to its user: one at a time, rate-limited.
    prompts: Mutex<crate::approve::Prompts>,
    /// Controller keys the rendezvous announced, each admitted for one handshake.
    expected: certs::ExpectedClients,
    busy: tokio::sync::Mutex<()>,
    /// Routes to the controllers announced by the rendezvous, by virtual address; `true` once
    /// a session runs on one.
    routes: Mutex<HashMap<SocketAddr, Route>>,
    socket: Arc<net::PeerSocket>,
    /// This host's LAN addresses and STUN servers as of its last registration, given to each
    /// route's agent (which tells a controller the candidates once it has proven the password).
    network: Mutex<Network>,
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
    cfg.attended.check()?;
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
        prompts: 0,
        fatal: None,
    });
    let shared = Arc::new(Shared {
        cfg,
        status: status_tx,
        guard: Mutex::new(GuessGuard::new(Instant::now())),
        prompts: Mutex::new(crate::approve::Prompts::new(Instant::now())),
        expected,
        busy: tokio::sync::Mutex::new(()),
        routes: Mutex::default(),
        socket,
        network: Mutex::default(),
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
