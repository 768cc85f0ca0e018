//! The tokio driver of the rendezvous: accepts QUIC connections, answers requests with the
//! [`Registry`], persists it with the [`Store`], and pushes connect requests to online hosts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use certs::{Fingerprint, Identity};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::code::AccessCode;
use crate::proto::{self, ALPN, ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg};
use crate::registry::{Registry, Store, StoreError};
use crate::relay::{self, Relay, RelayOffer};
use crate::responder::Bucket;
use crate::{quic, wire};

/// How long a client has to send its first request on a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often expired hosts are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// Queued pushes per host before further ones are dropped.
const PUSH_QUEUE: usize = 16;
/// Resolves (each pushes a connect request and may open a relay session) allowed per controller
/// key and per source IP: a burst, then a steady rate. Keys cost nothing to make, hence both.
const RESOLVE_BURST_PER_KEY: f64 = 10.0;
const RESOLVES_PER_SEC_PER_KEY: f64 = 0.5;
const RESOLVE_BURST_PER_IP: f64 = 30.0;
const RESOLVES_PER_SEC_PER_IP: f64 = 2.0;

/// Server settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// UDP address of the STUN responder (`None`: no responder).
    pub stun_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    /// Hosts disconnected longer than this are forgotten and their codes freed.
    pub forget_after: Duration,
    /// UDP address and limits of the relay (`None`: no relay).
    pub relay: Option<RelayConfig>,
}

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
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

struct OnlineHost {
    conn_id: usize,
    push: mpsc::Sender<ServerMsg>,
    candidates: Vec<SocketAddr>,
}

/// Token buckets of resolve requests, by controller key and by source IP.
#[derive(Default)]
struct ResolveLimits {
    keys: HashMap<Fingerprint, Bucket>,
    ips: HashMap<std::net::IpAddr, Bucket>,
}

impl ResolveLimits {
    fn allow(&mut self, key: Fingerprint, ip: std::net::IpAddr, now: std::time::Instant) -> bool {
        let key_ok = take(
            &mut self.keys,
            key,
            (RESOLVES_PER_SEC_PER_KEY, RESOLVE_BURST_PER_KEY),
            now,
        );
        let ip_ok = take(
            &mut self.ips,
            ip,
            (RESOLVES_PER_SEC_PER_IP, RESOLVE_BURST_PER_IP),
            now,
        );
        key_ok && ip_ok
    }

    /// Forgets the buckets that have refilled (their owners are quiet).
    fn sweep(&mut self, now: std::time::Instant) {
        self.keys.retain(|_, b| !b.is_full(now));
        self.ips.retain(|_, b| !b.is_full(now));
    }
}

/// Takes a token from `key`'s bucket (made full, with `(rate, burst)`, on first use).
fn take<K: std::hash::Hash + Eq>(
    buckets: &mut HashMap<K, Bucket>,
    key: K,
    (rate, burst): (f64, f64),
    now: std::time::Instant,
) -> bool {
    buckets
        .entry(key)
        .or_insert_with(|| Bucket::with_burst(rate, burst, now))
        .take(now)
}

struct State {
    forget_after: Duration,
    stun_port: Option<u16>,
    relay_port: Option<u16>,
    relay: Option<Arc<Mutex<Relay>>>,
    resolve_limits: Mutex<ResolveLimits>,
    registry: Mutex<Registry>,
    store: Mutex<Store>,
    online: Mutex<HashMap<AccessCode, OnlineHost>>,
}

/// A bound rendezvous server. Call [`Server::run`] to serve.
pub struct Server {
    endpoint: quinn::Endpoint,
    stun: Option<tokio::net::UdpSocket>,
    relay: Option<tokio::net::UdpSocket>,
    stun_counters: Arc<crate::responder::Counters>,
    fingerprint: Fingerprint,
    state: Arc<State>,
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Loads (or creates) the server identity in `data_dir`.
pub fn identity(data_dir: &std::path::Path) -> Result<Identity, certs::Error> {
    Identity::load_or_create(data_dir, "rendezvous")
}

/// Loads (or creates) the persistent stateless-reset secret in `data_dir`.
fn reset_key(data_dir: &std::path::Path) -> Result<[u8; 32], ServerError> {
    let path = data_dir.join("reset.key");
    let io = |source| ServerError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            io(std::io::Error::other(
                "expected 32 bytes; delete the file to make a new one",
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            rand::Rng::fill(&mut rand::rng(), &mut secret);
            certs::write_private_file(&path, &secret).map_err(io)?;
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

impl Server {
    /// Loads identity and registry from the data dir and binds the UDP socket.
    pub fn bind(config: &Config) -> Result<Self, ServerError> {
        let identity = identity(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join("registry.sqlite3"))?;
        let mut registry = Registry::new(config.forget_after);
        registry.extend(store.load()?);
        info!(hosts = registry.len(), "registry loaded");
        let server_config = quic::server_config(&identity, &[ALPN])?;
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
        let stun_port = stun
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port());
        let relay_socket = config.relay.map(|r| bind_udp(r.listen)).transpose()?;
        let relay_port = relay_socket
            .as_ref()
            .and_then(|s| s.local_addr().ok())
            .map(|a| a.port());
        let relay = config
            .relay
            .map(|r| Arc::new(Mutex::new(Relay::new(r.limits, std::time::Instant::now()))));
        Ok(Self {
            endpoint,
            stun,
            relay: relay_socket,
            stun_counters: Arc::default(),
            fingerprint: identity.fingerprint(),
            state: Arc::new(State {
                forget_after: config.forget_after,
                stun_port,
                relay_port,
                relay,
                resolve_limits: Mutex::default(),
                registry: Mutex::new(registry),
                store: Mutex::new(store),
                online: Mutex::new(HashMap::new()),
            }),
            shutdown: tokio::sync::watch::Sender::new(false),
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
        self.state.relay.clone().map(RelayCounters)
    }

    /// What the STUN responder has done so far.
    pub fn stun_counters(&self) -> Arc<crate::responder::Counters> {
        self.stun_counters.clone()
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A handle that asks [`Server::run`] to close every connection and return.
    pub fn closer(&self) -> Closer {
        Closer(self.shutdown.clone())
    }

    /// Serves until [`Closer::close`] is called; then closes every connection (peers are told,
    /// so hosts re-register at once with the next server) and releases the socket.
    pub async fn run(mut self) {
        let sweeper = tokio::spawn(sweep(self.state.clone()));
        let stun = self.stun.take().map(|socket| {
            tokio::spawn(crate::responder::serve(socket, self.stun_counters.clone()))
        });
        let relaying = match (self.relay.take(), self.state.relay.clone()) {
            (Some(socket), Some(relay)) => Some(tokio::spawn(relay::serve(socket, relay))),
            _ => None,
        };
        let mut shutdown = self.shutdown.subscribe();
        loop {
            let incoming = tokio::select! {
                i = self.endpoint.accept() => i,
                _ = shutdown.wait_for(|&s| s) => None,
            };
            let Some(incoming) = incoming else { break };
            let state = self.state.clone();
            tokio::spawn(async move {
                let remote = incoming.remote_address();
                match incoming.await {
                    Ok(conn) => handle_connection(state, conn).await,
                    Err(e) => debug!(%remote, "handshake failed: {e}"),
                }
            });
        }
        sweeper.abort();
        for task in [stun, relaying].into_iter().flatten() {
            task.abort();
        }
        self.endpoint
            .close(0u32.into(), b"rendezvous shutting down");
        self.endpoint.wait_idle().await;
    }
}

fn bind_udp(addr: SocketAddr) -> Result<tokio::net::UdpSocket, ServerError> {
    let bind = |source| ServerError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind)?;
    socket.set_nonblocking(true).map_err(bind)?;
    tokio::net::UdpSocket::from_std(socket).map_err(bind)
}

/// Reads the relay's counters of a running server.
#[derive(Clone)]
pub struct RelayCounters(Arc<Mutex<Relay>>);

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
}

async fn sweep(state: Arc<State>) {
    // Sweep often enough that a short --forget-after is honoured promptly.
    let every = SWEEP_EVERY
        .min(state.forget_after / 4)
        .max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        sweep_once(&state);
    }
}

fn sweep_once(state: &State) {
    lock(&state.resolve_limits).sweep(std::time::Instant::now());
    let now = unix_now();
    // lock order everywhere: online, registry, store
    let online = lock(&state.online);
    let mut registry = lock(&state.registry);
    let store = lock(&state.store);
    for code in online.keys() {
        if let Some(rec) = registry.touch(code, now)
            && let Err(e) = store.upsert(code, &rec)
        {
            warn!("{e}");
        }
    }
    for code in registry.expire(now, |c| online.contains_key(c)) {
        info!(%code, "forgetting host not seen for too long");
        if let Err(e) = store.delete(&code) {
            warn!("{e}");
        }
    }
}

/// Locks a mutex; a poisoned lock only means another task panicked mid-update of plain data,
/// which stays usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn handle_connection(state: Arc<State>, conn: quinn::Connection) {
    let Some(fp) = quic::remote_fingerprint(&conn) else {
        conn.close(1u32.into(), b"no client certificate");
        return;
    };
    let remote = conn.remote_address();
    debug!(%remote, peer = %fp, "peer connected");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(%remote, "connection ended: {e}");
                return;
            }
        };
        tokio::spawn(handle_stream(state.clone(), conn.clone(), fp, send, recv));
    }
}

async fn handle_stream(
    state: Arc<State>,
    conn: quinn::Connection,
    fp: Fingerprint,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let remote = conn.remote_address();
    let first = tokio::time::timeout(
        REQUEST_TIMEOUT,
        wire::read_msg::<ClientMsg, _>(&mut recv, MAX_MSG_LEN),
    )
    .await;
    let msg = match first {
        Ok(Ok(Some(m))) => m,
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            warn!(%remote, "bad request: {e}");
            refuse(&mut send, Refusal::BadRequest, &e.to_string()).await;
            return;
        }
        Err(_) => {
            debug!(%remote, "no request before timeout");
            return;
        }
    };
    match msg {
        ClientMsg::Register { code, lan_addrs } => {
            register(state, conn, fp, code, lan_addrs, send, recv).await
        }
        ClientMsg::Resolve {
            code,
            lan_addrs,
            relay_only,
        } => {
            let reply = resolve(&state, fp, remote, code, lan_addrs, relay_only);
            let _ = wire::write_msg(&mut send, &reply, MAX_MSG_LEN).await;
            let _ = send.finish();
        }
    }
}

async fn refuse(send: &mut quinn::SendStream, reason: Refusal, message: &str) {
    let msg = ServerMsg::Refused {
        reason,
        message: message.to_string(),
    };
    let _ = wire::write_msg(send, &msg, MAX_MSG_LEN).await;
    let _ = send.finish();
}

async fn register(
    state: Arc<State>,
    conn: quinn::Connection,
    fp: Fingerprint,
    code: AccessCode,
    lan_addrs: Vec<SocketAddr>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let observed = conn.remote_address();
    let (push_tx, mut push_rx) = mpsc::channel(PUSH_QUEUE);
    let conn_id = conn.stable_id();
    let outcome = {
        let mut online = lock(&state.online);
        let mut registry = lock(&state.registry);
        registry.register(code, fp, unix_now()).map(|rec| {
            if let Err(e) = lock(&state.store).upsert(&code, &rec) {
                warn!("{e}");
            }
            online.insert(
                code,
                OnlineHost {
                    conn_id,
                    push: push_tx,
                    candidates: proto::candidates(Some(observed), &lan_addrs),
                },
            );
        })
    };
    if let Err(reason) = outcome {
        warn!(%code, peer = %fp, %observed, "refused registration: code belongs to another key");
        let msg = format!("{code} is registered to another host key; choose another code");
        refuse(&mut send, reason, &msg).await;
        return;
    }
    info!(%code, host = %fp, %observed, "host registered");
    if wire::write_msg(
        &mut send,
        &ServerMsg::Registered {
            observed,
            stun_port: state.stun_port,
        },
        MAX_MSG_LEN,
    )
    .await
    .is_ok()
    {
        // Serve pushes until the host goes away or a newer registration replaces this one.
        let mut scratch = [0u8; 64];
        loop {
            tokio::select! {
                push = push_rx.recv() => match push {
                    Some(msg) => if wire::write_msg(&mut send, &msg, MAX_MSG_LEN).await.is_err() { break },
                    None => break,
                },
                // The host sends nothing more on this stream; its end means the host left.
                r = recv.read(&mut scratch) => if !matches!(r, Ok(Some(_))) { break },
                _ = conn.closed() => break,
            }
        }
    }
    let mut online = lock(&state.online);
    if online.get(&code).is_some_and(|h| h.conn_id == conn_id) {
        online.remove(&code);
        let mut registry = lock(&state.registry);
        if let Some(rec) = registry.touch(&code, unix_now())
            && let Err(e) = lock(&state.store).upsert(&code, &rec)
        {
            warn!("{e}");
        }
        info!(%code, "host went offline");
    }
}

fn resolve(
    state: &State,
    controller: Fingerprint,
    observed: SocketAddr,
    code: AccessCode,
    lan_addrs: Vec<SocketAddr>,
    relay_only: bool,
) -> ServerMsg {
    if !lock(&state.resolve_limits).allow(controller, observed.ip(), std::time::Instant::now()) {
        warn!(%code, %controller, %observed, "resolve refused: over the rate limit");
        return ServerMsg::Refused {
            reason: Refusal::RateLimited,
            message: "too many look-ups from this key or address; wait a little".into(),
        };
    }
    let online = lock(&state.online);
    let registry = lock(&state.registry);
    let Some(rec) = registry.get(&code) else {
        debug!(%code, %observed, "resolve of unknown code");
        return ServerMsg::Refused {
            reason: Refusal::UnknownCode,
            message: format!("no host is registered as {code}"),
        };
    };
    let Some(host) = online.get(&code) else {
        return ServerMsg::Refused {
            reason: Refusal::HostOffline,
            message: format!("{code} is not connected to the rendezvous right now"),
        };
    };
    // One relay session per resolve: the host's token goes with the push, the controller's
    // with the answer.
    let tokens = match (&state.relay, state.relay_port) {
        (Some(relay), Some(port)) => {
            let tokens = lock(relay).allocate(std::time::Instant::now());
            if tokens.is_none() {
                warn!(%code, "relay is full: this session gets no relay");
            }
            tokens.map(|[h, c]| (port, h, c))
        }
        _ => None,
    };
    // With a relay the peers meet there first and swap addresses only once the password is
    // proven (over their encrypted session), so a look-up reveals neither side's address. Only
    // a rendezvous without a relay has to hand them out here.
    let reveal = tokens.is_none() && !relay_only;
    let push = ServerMsg::ConnectRequest {
        controller,
        candidates: if reveal {
            proto::candidates(Some(observed), &lan_addrs)
        } else {
            Vec::new()
        },
        relay: tokens.map(|(port, h, _)| RelayOffer { port, token: h }),
    };
    if host.push.try_send(push).is_err() {
        warn!(%code, "host is not reading connect requests; dropped one");
    }
    info!(%code, controller = %controller, %observed, relay = tokens.is_some(), relay_only, "resolved");
    ServerMsg::Resolved {
        host: rec.fingerprint,
        candidates: if reveal {
            host.candidates.clone()
        } else {
            Vec::new()
        },
        observed,
        stun_port: state.stun_port,
        relay: tokens.map(|(port, _, c)| RelayOffer { port, token: c }),
    }
}
