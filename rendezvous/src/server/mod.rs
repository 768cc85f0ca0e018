//! The tokio front-end of the rendezvous: binds the sockets, admits QUIC connections, reads
//! each request, asks the [`Core`] for the answer under one lock, writes it, and delivers the
//! pushes the core names to the registrations' streams. It also runs the STUN responder and the
//! relay's packet loop.
//!
//! What it does **not** do: decide anything about codes, limits, caps or relay sessions; that is
//! the core's. The front-end's state is the one `Mutex<Shared>` (the core, the SQLite store the
//! core's changes are written to before the lock is released, and the push channel of each
//! registration), plus what the hot paths read without it: the relay's own lock
//! ([`SharedRelay`]) and the STUN responder's [`LiveIps`].
//!
//! Every background service (sweeper, STUN responder, relay) runs under a supervisor: should its
//! task ever end or panic, that is logged, the service is marked down (and not advertised to
//! peers while it is) and the task is started again.

mod admin;
mod handlers;
mod services;

pub use admin::Admin;
pub use services::supervise;
use services::{backups, sweep};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use certs::{Fingerprint, Identity};
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::{Core, Event, Ports, PushId, SharedRelay, Snapshot, StoreOp, lock};
use crate::registry::{Registry, Store, StoreError};
use crate::relay::{self, Relay};
use crate::responder::LiveIps;
use proto::quic;
use proto::rendezvous::{ALPN, ServerMsg};

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// UDP address of the STUN responder (`None`: no responder).
    pub stun_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Hosts disconnected longer than this are forgotten.
    pub forget_after: Duration,
    /// A forgotten host's code goes to no other key for this long.
    pub quarantine: Duration,
    /// UDP address and limits of the relay (`None`: no relay).
    pub relay: Option<RelayConfig>,
    /// Back the registry up this often into `data_dir/backups` (`None`: never), keeping the
    /// newest `backup_keep`.
    pub backup_every: Option<Duration>,
    pub backup_keep: usize,
    /// Who may register and look codes up.
    pub access: crate::core::AccessMode,
    /// Most relayed sessions one account's keys may hold at once (enrolled and closed modes).
    pub relay_sessions_per_account: Option<usize>,
}

impl Config {
    /// Settings with the defaults the command line has: no STUN, no relay.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            stun_listen: None,
            data_dir,
            forget_after: Duration::from_secs(24 * 3600),
            quarantine: DEFAULT_QUARANTINE,
            relay: None,
            backup_every: None,
            backup_keep: 48,
            access: crate::core::AccessMode::Open,
            relay_sessions_per_account: None,
        }
    }
}

/// How long a forgotten code is kept from other keys by default: 90 days.
pub const DEFAULT_QUARANTINE: Duration = Duration::from_secs(90 * 24 * 3600);

/// The relay's settings.
#[derive(Debug, Clone, Copy)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub limits: relay::Limits,
}

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error(transparent)]
    Identity(#[from] certs::Error),
    #[error(transparent)]
    Config(#[from] quic::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A background service's port and whether its task is running now.
#[derive(Debug)]
struct Service {
    port: Option<u16>,
    up: Arc<AtomicBool>,
}

impl Service {
    fn new(port: Option<u16>) -> Self {
        Self {
            port,
            up: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The port to tell peers: only while the service runs.
    fn advertised(&self) -> Option<u16> {
        self.port.filter(|_| self.up.load(Ordering::Relaxed))
    }
}

struct State {
    forget_after: Duration,
    /// How often a supervised service had to be started again.
    restarts: Arc<std::sync::atomic::AtomicU64>,
    stun: Service,
    relay_service: Service,
    live: Arc<LiveIps>,
    /// The one lock every request takes.
    shared: Mutex<Shared>,
    /// What open consoles should see ([`crate::core::Event`]), sent after each call.
    events: tokio::sync::broadcast::Sender<Event>,
}

/// What the one lock guards.
struct Shared {
    core: Core,
    /// Where the core's changes go, written before the lock is released so two requests'
    /// writes reach the database in the order the core made them.
    store: Store,
    /// Each live registration: its push channel and its host's connection.
    pushes: HashMap<PushId, Live>,
}

/// A live registration as the driver holds it.
struct Live {
    push: mpsc::Sender<ServerMsg>,
    /// Read for the host's address when it is used ([`Shared::follow_move`]).
    conn: quinn::Connection,
}

impl Shared {
    /// Brings the core's address for host `code` up to date with its connection: QUIC follows a
    /// host whose packets come from a new address (a network change, a NAT that rebound), and
    /// the connection knows where it is now. Asked where the address is used (a look-up, the
    /// console), so that idle registrations cost no timer. Whether it had moved.
    fn follow_move(&mut self, code: proto::AccessCode) -> bool {
        let Some(push) = self.core.online(&code) else {
            return false;
        };
        let Some(live) = self.pushes.get(&push) else {
            return false;
        };
        let at = live.conn.remote_address();
        let Some(from) = self.core.moved(code, push, at) else {
            return false;
        };
        tracing::info!(%code, %from, to = %at, "host moved");
        true
    }
}

impl State {
    /// Runs `f` on the core under the lock, then writes what it changed to the store.
    fn with<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        let mut shared = lock(&self.shared);
        let out = f(&mut shared);
        let Shared { core, store, .. } = &mut *shared;
        while let Some(op) = core.poll_store() {
            let written = match &op {
                StoreOp::Upsert(code, rec) => store.upsert(code, rec),
                StoreOp::Expired(expired) => store.apply(expired),
                StoreOp::Meta(key, meta) => store.set_meta(key, meta),
                StoreOp::Session(record) => store.put_session(record),
                StoreOp::Token(token) => store.put_token(token),
                StoreOp::Enrolled(e) => store.put_enrollment(e),
            };
            if let Err(e) = written {
                warn!("{e}");
            }
        }
        while let Some(event) = core.poll_event() {
            // No console open: nobody to tell.
            let _ = self.events.send(event);
        }
        out
    }

    /// The ports to tell peers now: only of the services that run.
    fn ports(&self) -> Ports {
        Ports {
            stun: self.stun.advertised(),
            relay: self.relay_service.advertised(),
        }
    }
}

/// Events kept for a console that reads slowly; one that falls further behind reloads.
const EVENT_BACKLOG: usize = 1024;

/// A bound rendezvous server. Call [`Server::run`] to serve.
pub struct Server {
    endpoint: quinn::Endpoint,
    stun: Option<Arc<tokio::net::UdpSocket>>,
    relay: Option<Arc<tokio::net::UdpSocket>>,
    stun_counters: Arc<crate::responder::Counters>,
    fingerprint: Fingerprint,
    /// The relay's table, for its packet loop (the core holds it too).
    relay_table: Option<SharedRelay>,
    state: Arc<State>,
    shutdown: tokio::sync::watch::Sender<bool>,
    /// One server per data directory, for as long as this one runs.
    _lock: crate::backup::DirLock,
    data_dir: PathBuf,
    backups: Option<(Duration, usize)>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Loads (or creates) the server identity in `data_dir`.
pub fn identity(data_dir: &std::path::Path) -> Result<Identity, certs::Error> {
    Identity::load_or_create(data_dir, IDENTITY)
}

/// The name of the server's key in its data directory.
const IDENTITY: &str = "rendezvous";

/// Where [`identity`] keeps the server's key.
pub fn identity_file(data_dir: &std::path::Path) -> std::path::PathBuf {
    Identity::key_path(data_dir, IDENTITY)
}

/// Loads (or creates) the persistent stateless-reset secret in `data_dir`.
fn reset_key(data_dir: &std::path::Path) -> Result<[u8; 32], ServerError> {
    let path = data_dir.join("reset.key");
    let io = |source| ServerError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            certs::check_private_file(&path)?;
            bytes.try_into().map_err(|_| {
                io(std::io::Error::other(
                    "expected 32 bytes; delete the file to make a new one",
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            certs::write_private_file(&path, &secret).map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

impl Server {
    /// Loads identity and registry from the data dir and binds the UDP sockets.
    pub fn bind(config: &Config) -> Result<Self, ServerError> {
        let identity = identity(&config.data_dir)?;
        certs::check_private_dir(&config.data_dir)?;
        let lock = crate::backup::lock(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join(crate::backup::DB_FILE))?;
        let mut registry = Registry::new(config.forget_after, config.quarantine);
        let (hosts, quarantined) = store.load()?;
        registry.extend(hosts, quarantined);
        info!(hosts = registry.len(), "registry loaded");
        let server_config = quic::server_config(&identity, &[ALPN], quic::Role::Rendezvous)?;
        let socket =
            std::net::UdpSocket::bind(config.listen).map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let runtime = quinn::default_runtime().ok_or_else(|| ServerError::Bind {
            addr: config.listen,
            source: std::io::Error::other("no async runtime"),
        })?;
        let reset_key = reset_key(&config.data_dir)?;
        let endpoint = quinn::Endpoint::new(
            quic::endpoint_config_with_reset_key(&reset_key),
            Some(server_config),
            socket,
            runtime,
        )
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let stun = config.stun_listen.map(bind_udp).transpose()?;
        let relay_socket = config.relay.map(|r| bind_udp(r.listen)).transpose()?;
        let port = |s: &Option<Arc<tokio::net::UdpSocket>>| {
            s.as_ref()
                .and_then(|s| s.local_addr().ok())
                .map(|a| a.port())
        };
        let relay = config
            .relay
            .map(|r| Arc::new(Mutex::new(Relay::new(r.limits, std::time::Instant::now()))));
        // Source tags are keyed anew at every start.
        store.close_dangling_sessions(crate::core::Now::system().unix)?;
        let mut core = Core::new(registry, relay.clone(), rand::random());
        core.extend_meta(store.load_meta()?);
        let (tokens, enrolled) = store.load_access()?;
        core.extend_access(tokens, enrolled);
        core.set_access(config.access);
        core.set_account_relay_cap(config.relay_sessions_per_account);
        Ok(Self {
            endpoint,
            stun_counters: Arc::default(),
            fingerprint: identity.fingerprint(),
            relay_table: relay,
            state: Arc::new(State {
                forget_after: config.forget_after,
                restarts: Arc::default(),
                stun: Service::new(port(&stun)),
                relay_service: Service::new(port(&relay_socket)),
                live: Arc::default(),
                events: tokio::sync::broadcast::Sender::new(EVENT_BACKLOG),
                shared: Mutex::new(Shared {
                    core,
                    store,
                    pushes: HashMap::new(),
                }),
            }),
            stun,
            relay: relay_socket,
            shutdown: tokio::sync::watch::Sender::new(false),
            _lock: lock,
            data_dir: config.data_dir.clone(),
            backups: config
                .backup_every
                .filter(|d| !d.is_zero())
                .map(|d| (d, config.backup_keep)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The STUN responder's address, if it has one.
    pub fn stun_addr(&self) -> Option<SocketAddr> {
        self.stun.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// The relay's address, if it runs one.
    pub fn relay_addr(&self) -> Option<SocketAddr> {
        self.relay.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// A handle on the relay's counters, if it runs one.
    pub fn relay_counters(&self) -> Option<RelayCounters> {
        self.relay_table.clone().map(RelayCounters)
    }

    /// A handle that reads the core's [`Snapshot`] while the server runs.
    pub fn snapshots(&self) -> Snapshots {
        Snapshots(self.state.clone())
    }

    /// How often a background service (sweeper, STUN responder, relay) ended or panicked and
    /// was started again; 0 in a healthy server.
    pub fn service_restarts(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.state.restarts.clone()
    }

    /// What the STUN responder has done so far.
    pub fn stun_counters(&self) -> Arc<crate::responder::Counters> {
        self.stun_counters.clone()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A handle for the operator's console: hosts, names, bans, events.
    pub fn admin(&self) -> Admin {
        Admin(self.state.clone())
    }

    /// A handle that asks [`Server::run`] to close every connection and return.
    pub fn closer(&self) -> Closer {
        Closer(self.shutdown.clone())
    }

    /// Serves until [`Closer::close`] is called; then closes every connection (peers are told,
    /// so hosts re-register at once with the next server) and releases the sockets.
    pub async fn run(mut self) {
        let on_restart = {
            let state = self.state.clone();
            move || {
                state.restarts.fetch_add(1, Ordering::Relaxed);
                state.with(|s| s.core.service_restarted());
            }
        };
        let mut services = vec![tokio::spawn(supervise(
            "registry sweeper",
            (Arc::new(AtomicBool::new(false)), on_restart.clone()),
            {
                let state = self.state.clone();
                move || sweep(state.clone())
            },
        ))];
        if let Some(socket) = self.stun.take() {
            let (counters, live) = (self.stun_counters.clone(), self.state.live.clone());
            services.push(tokio::spawn(supervise(
                "STUN responder",
                (self.state.stun.up.clone(), on_restart.clone()),
                move || crate::responder::serve(socket.clone(), counters.clone(), live.clone()),
            )));
        }
        if let (Some(socket), Some(relay)) = (self.relay.take(), self.relay_table.clone()) {
            services.push(tokio::spawn(supervise(
                "relay",
                (self.state.relay_service.up.clone(), on_restart),
                move || relay::serve(socket.clone(), relay.clone()),
            )));
        }
        if let Some((every, keep)) = self.backups {
            let data_dir = self.data_dir.clone();
            services.push(tokio::spawn(backups(data_dir, every, keep)));
        }
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => i,
                _ = shutdown.wait_for(|&s| s) => None,
            };
            let Some(incoming) = incoming else { break };
            handlers::admit(&self.state, incoming);
        }
        for task in services {
            task.abort();
        }
        self.endpoint
            .close(0u32.into(), b"rendezvous shutting down");
        self.endpoint.wait_idle().await;
    }
}

fn bind_udp(addr: SocketAddr) -> Result<Arc<tokio::net::UdpSocket>, ServerError> {
    let bind = |source| ServerError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    tokio::net::UdpSocket::from_std(socket)
        .map(Arc::new)
        .map_err(bind)
}

/// Reads the relay's counters of a running server.
#[derive(Clone)]
pub struct RelayCounters(SharedRelay);

impl std::fmt::Debug for RelayCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("RelayCounters").field(&self.get()).finish()
    }
}

impl RelayCounters {
    pub fn get(&self) -> relay::Counters {
        lock(&self.0).counters()
    }
}

/// Asks a running server to shut down (it holds no socket itself).
#[derive(Debug, Clone)]
pub struct Closer(tokio::sync::watch::Sender<bool>);

impl Closer {
    pub fn close(&self) {
        self.0.send_replace(true);
    }

    /// Sees the request to close (true once asked), for services beside the server.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Reads the core's [`Snapshot`] of a running server.
#[derive(Clone)]
pub struct Snapshots(Arc<State>);

impl std::fmt::Debug for Snapshots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshots").finish_non_exhaustive()
    }
}

impl Snapshots {
    pub fn get(&self) -> Snapshot {
        lock(&self.0.shared).core.snapshot()
    }

    /// The counts alone, for metrics ([`crate::core::Core::counts`]).
    pub fn counts(&self) -> Snapshot {
        lock(&self.0.shared).core.counts()
    }
}
