//! The operator's console and HTTP API, served over HTTPS by the rendezvous process.
//!
//! ```text
//!  browser ──HTTPS──► tls::TlsListener ──► axum Router
//!                        ├─ pages (server-rendered HTML; a little inline JS for actions)
//!                        ├─ /api/v1/… (JSON; cookie session + CSRF header, or an API key)
//!                        ├─ /api/v1/events (server-sent events: hosts and counts, live)
//!                        ├─ /info/{code} /list /status (ISR-style read endpoints)
//!                        └─ /api/openapi.json
//!        auth: accounts (users, roles, sessions, API keys) · limiter (login limits) · audit
//!        data: server::Admin (the core: hosts, names, bans) · SQLite (accounts, audit)
//! ```
//!
//! Who may do what: an **auditor** reads everything, an **operator** also changes hosts, an
//! **admin** also manages users and API keys. A browser session is a random token in a
//! `Secure; HttpOnly; SameSite=Strict` cookie, stored only as its hash; every request that
//! changes something must also carry the session's CSRF token in `X-CSRF-Token` (the pages'
//! script sends it), and a request whose `Origin` is not this console is refused. API keys
//! (`Authorization: Bearer qdk_…`) carry their own scope and need no CSRF token.
//!
//! What it does **not** do: it serves no peer traffic. `/register` and `/resolve` stay on QUIC:
//! an HTTP registration could only take an address the client declares, which anyone could
//! forge, where the QUIC registration's address is the one the rendezvous observed and its key
//! is proven by TLS.

mod accounts;
mod api;
mod audit;
mod auth;
mod enroll;
mod events;
mod limiter;
mod login;
mod openapi;
mod pages;
mod sessions;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tracing::{info, warn};

use crate::core::lock;
use crate::server::Admin;

pub use accounts::{AccountError, Role, Scope, hash_password};
pub use tls::{HANDSHAKE_TIMEOUT, MAX_CONNECTIONS};

/// Where the self-signed certificate is written (public), in the data directory.
pub const SELF_SIGNED_PEM: &str = "console-cert.pem";

/// Where the console's certificate comes from.
#[derive(Debug, Clone)]
pub enum Certificate {
    /// The operator's PEM files (e.g. from an ACME client).
    Files { chain: PathBuf, key: PathBuf },
    /// Self-signed, made from the rendezvous's key, for these names (DNS names or IPs).
    SelfSigned { names: Vec<String> },
}

/// The console's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub certificate: Certificate,
}

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    #[error(transparent)]
    Certs(#[from] certs::Error),
    #[error("console database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("console: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Unix seconds now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The console's own connection to the database (the core's store has another; SQLite's WAL
/// lets them work side by side). Calls run off the async threads.
#[derive(Clone)]
pub(crate) struct Db(Arc<Mutex<rusqlite::Connection>>);

impl Db {
    /// Opens the database file the server made (never through a link).
    pub(crate) fn open(path: &Path) -> Result<Self, rusqlite::Error> {
        let db = crate::registry::open_db(path)?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        db.execute_batch("PRAGMA foreign_keys = ON;")?;
        Ok(Self(Arc::new(Mutex::new(db))))
    }

    /// Runs `f` on the connection on a blocking thread.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, ApiError>
    where
        F: FnOnce(&rusqlite::Connection) -> R + Send + 'static,
        R: Send + 'static,
    {
        let db = self.0.clone();
        tokio::task::spawn_blocking(move || f(&lock(&db)))
            .await
            .map_err(|e| ApiError::Internal(format!("database task: {e}")))
    }
}

/// What the console's handlers share.
pub(crate) struct Console {
    pub(crate) admin: Admin,
    pub(crate) db: Db,
    pub(crate) limiter: Mutex<limiter::Limiter>,
    pub(crate) counters: LoginCounters,
    /// The last TOTP time step each user logged in with (a code counts once).
    pub(crate) totp_used: Mutex<std::collections::HashMap<String, u64>>,
    /// This console's origin (`https://host:port` as the certificate names it), for the
    /// `Origin` check; any origin whose host is one of `names` and whose port is ours passes.
    pub(crate) names: Vec<String>,
    pub(crate) port: u16,
    pub(crate) started: std::time::Instant,
    pub(crate) server_fingerprint: certs::Fingerprint,
    pub(crate) stun: Arc<crate::responder::Counters>,
    /// The live updates, rendered once for every open console (`events`).
    pub(crate) updates: tokio::sync::broadcast::Sender<events::Rendered>,
}

/// Login failures and lockouts so far (for `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct LoginCounters {
    pub failures: Arc<std::sync::atomic::AtomicU64>,
    pub lockouts: Arc<std::sync::atomic::AtomicU64>,
}

/// An error as the API answers it: a status and `{"error": "..."}`.
#[derive(Debug)]
pub(crate) enum ApiError {
    /// No valid session or key.
    Unauthorized,
    /// A login with a wrong name, password or second factor.
    WrongLogin,
    /// Authenticated, but the role or scope does not allow this.
    Forbidden(&'static str),
    /// A changing request without the session's CSRF token, or from another origin.
    Csrf,
    NotFound,
    /// A name that is taken.
    Conflict(String),
    BadRequest(String),
    /// Logins locked out for this many seconds.
    Locked(u64),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, msg) = match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "log in first".to_owned()),
            ApiError::WrongLogin => (
                StatusCode::UNAUTHORIZED,
                "wrong user name or password".to_owned(),
            ),
            ApiError::Forbidden(why) => (StatusCode::FORBIDDEN, why.to_owned()),
            ApiError::Csrf => (
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token, or another origin".to_owned(),
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, "not found".to_owned()),
            ApiError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::Locked(secs) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    axum::Json(serde_json::json!({
                        "error": format!("too many failed logins: try again in {secs} s")
                    })),
                )
                    .into_response();
                if let Ok(v) = secs.to_string().parse() {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                return r;
            }
            ApiError::Internal(m) => {
                warn!("console: {m}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (see the server's log)".to_owned(),
                )
            }
        };
        (status, axum::Json(serde_json::json!({ "error": msg }))).into_response()
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Db(e) => ApiError::Internal(e.to_string()),
            AccountError::Hash(e) | AccountError::Store(e) => ApiError::Internal(e),
            e @ AccountError::Exists(_) => ApiError::Conflict(e.to_string()),
            e => ApiError::BadRequest(e.to_string()),
        }
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

/// A JSON body; one that does not parse is a 400 with a JSON error, like every other error
/// of the API (axum's own rejections are plain text, some 415 or 422).
#[derive(Debug)]
pub(crate) struct Body<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Body<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Query parameters; ones that do not parse are a 400 with a JSON error.
#[derive(Debug)]
pub(crate) struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// A page size as given (`None`: 100); outside 1 to 500 is refused, as the OpenAPI document
/// says, rather than quietly changed.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100),
        Some(n @ 1..=500) => Ok(n),
        Some(_) => Err(ApiError::BadRequest("limit: 1 to 500".into())),
    }
}

/// The largest integer the API takes (JSON's safe integers), as the OpenAPI document says.
pub(crate) const MAX_INTEGER: u64 = (1 << 53) - 1;

/// A `before` cursor as given; outside 0 to [`MAX_INTEGER`] is refused.
pub(crate) fn cursor(before: Option<&str>) -> Result<Option<u64>, ApiError> {
    match before.map(str::parse::<u64>) {
        None => Ok(None),
        Some(Ok(b)) if b <= MAX_INTEGER => Ok(Some(b)),
        Some(_) => Err(ApiError::BadRequest(format!("before: 0 to {MAX_INTEGER}"))),
    }
}

/// A bound console, ready to serve.
pub struct Bound {
    listener: tls::TlsListener,
    router: Router,
    /// The certificate's SHA-256 (what a browser shows), when self-signed.
    pub self_signed_sha256: Option<String>,
    pub local_addr: SocketAddr,
    /// Whether any user exists (else nobody can log in yet).
    pub has_users: bool,
}

impl std::fmt::Debug for Bound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bound")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

/// What the console reads from the running server.
#[derive(Debug, Clone)]
pub struct Handles {
    pub admin: Admin,
    pub stun: Arc<crate::responder::Counters>,
    /// Where the console counts login failures (shared with `/metrics`).
    pub logins: LoginCounters,
}

/// Binds the console: its certificate, its database connection and its port; starts the task
/// that renders its live updates.
pub async fn bind(
    config: &Config,
    data_dir: &Path,
    handles: Handles,
) -> Result<Bound, ConsoleError> {
    let Handles {
        admin,
        stun,
        logins: counters,
    } = handles;
    let identity = crate::server::identity(data_dir)?;
    let (tls, self_signed, names) = match &config.certificate {
        Certificate::Files { chain, key } => (
            certs::web_server_config_from_files(chain, key)?,
            None,
            Vec::new(),
        ),
        Certificate::SelfSigned { names } => {
            let (cfg, cert) = identity.web_server_config(names)?;
            // For browsers, curl (`--cacert`) and API clients to trust it by hand.
            let pem = certs::certificate_pem(&cert);
            let path = data_dir.join(SELF_SIGNED_PEM);
            std::fs::write(&path, pem).map_err(|source| certs::Error::Io { path, source })?;
            (cfg, Some(certs::certificate_sha256(&cert)), names.clone())
        }
    };
    let db = Db::open(&data_dir.join(crate::backup::DB_FILE))?;
    let has_users = accounts::any_user(&lock(&db.0)).unwrap_or(false);
    let tcp = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ConsoleError::Bind {
            addr: config.listen,
            source,
        })?;
    let local_addr = tcp.local_addr().map_err(|source| ConsoleError::Bind {
        addr: config.listen,
        source,
    })?;
    let listener =
        tls::TlsListener::new(tcp, Arc::new(tls)).map_err(|source| ConsoleError::Bind {
            addr: config.listen,
            source,
        })?;
    let console = Arc::new(Console {
        admin,
        db,
        limiter: Mutex::new(limiter::Limiter::default()),
        counters,
        totp_used: Mutex::default(),
        names,
        port: local_addr.port(),
        started: std::time::Instant::now(),
        server_fingerprint: identity.fingerprint(),
        stun,
        updates: events::channel(),
    });
    tokio::spawn(events::render(Arc::downgrade(&console)));
    let router = Router::new()
        .merge(pages::routes())
        .merge(api::routes())
        .merge(events::routes())
        .merge(sessions::routes())
        .merge(enroll::routes())
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn(pages::security_headers))
        .with_state(console);
    Ok(Bound {
        listener,
        router,
        self_signed_sha256: self_signed,
        local_addr,
        has_users,
    })
}

impl Bound {
    /// Serves until `shutdown` completes.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        info!(addr = %self.local_addr, "console serving");
        let app = self
            .router
            .into_make_service_with_connect_info::<auth::ClientAddr>();
        if let Err(e) = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            warn!("console stopped: {e}");
        }
    }
}

/// Answers plain HTTP on `listener` with a permanent redirect to the console's HTTPS port,
/// same host and path, until `shutdown`. Nothing else is served in clear text.
pub async fn redirect_http(
    listener: tokio::net::TcpListener,
    https_port: u16,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().fallback(
        move |headers: axum::http::HeaderMap, uri: axum::http::Uri| async move {
            let host = headers
                .get(axum::http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<axum::http::uri::Authority>().ok());
            let Some(host) = host else {
                return (StatusCode::BAD_REQUEST, "a Host header, please").into_response();
            };
            let port = if https_port == 443 {
                String::new()
            } else {
                format!(":{https_port}")
            };
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let to = format!("https://{}{port}{path}", host.host());
            axum::response::Redirect::permanent(&to).into_response()
        },
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// `rendezvous user add`: makes a user in the data directory's database (the server may be
/// running), recorded in the audit log as done on the command line.
pub fn add_user(
    data_dir: &Path,
    name: &str,
    role: Role,
    password: &str,
) -> Result<(), AccountError> {
    let hash = hash_password(password)?;
    let db = open_for_cli(data_dir)?;
    accounts::add_user(&db, name, role, &hash, unix_now())?;
    audit::record(&db, unix_now(), "cli", "user.add", name, &role.to_string())?;
    Ok(())
}

/// `rendezvous user passwd`: sets a user's password (ending its sessions).
pub fn set_password(data_dir: &Path, name: &str, password: &str) -> Result<(), AccountError> {
    let hash = hash_password(password)?;
    let db = open_for_cli(data_dir)?;
    accounts::set_password(&db, name, &hash)?;
    audit::record(&db, unix_now(), "cli", "user.password", name, "")?;
    Ok(())
}

/// `rendezvous user list`.
pub fn list_users(data_dir: &Path) -> Result<Vec<accounts::User>, AccountError> {
    accounts::users(&open_for_cli(data_dir)?)
}

/// `rendezvous user remove`.
pub fn remove_user(data_dir: &Path, name: &str) -> Result<(), AccountError> {
    let db = open_for_cli(data_dir)?;
    accounts::remove_user(&db, name)?;
    audit::record(&db, unix_now(), "cli", "user.remove", name, "")?;
    Ok(())
}

/// `rendezvous user totp`: gives `name` a new TOTP secret (returned as an `otpauth://` URI and
/// its base-32 secret, for an authenticator app) or, with `enable` false, removes it.
pub fn set_totp(
    data_dir: &Path,
    name: &str,
    enable: bool,
) -> Result<Option<(String, String)>, AccountError> {
    let db = open_for_cli(data_dir)?;
    let out = if enable {
        let secret: [u8; 20] = rand::random();
        accounts::set_totp(&db, name, Some(&secret))?;
        let b32 = match totp_rs::Secret::Raw(secret.to_vec()).to_encoded() {
            totp_rs::Secret::Encoded(s) => s,
            totp_rs::Secret::Raw(_) => String::new(),
        };
        let uri = format!(
            "otpauth://totp/quicdesk:{name}?secret={b32}&issuer=quicdesk&algorithm=SHA1&digits=6&period=30"
        );
        Some((uri, b32))
    } else {
        accounts::set_totp(&db, name, None)?;
        None
    };
    audit::record(
        &db,
        unix_now(),
        "cli",
        if enable {
            "user.totp.on"
        } else {
            "user.totp.off"
        },
        name,
        "",
    )?;
    Ok(out)
}

/// The database for a command-line change: opened (and migrated) through the store, so the
/// tables exist even before the server first ran.
fn open_for_cli(data_dir: &Path) -> Result<rusqlite::Connection, AccountError> {
    certs::create_private_dir(data_dir).map_err(|e| AccountError::Store(e.to_string()))?;
    let path = data_dir.join(crate::backup::DB_FILE);
    drop(crate::registry::Store::open(&path).map_err(|e| AccountError::Store(e.to_string()))?);
    let db = Db::open(&path)?;
    let db = Arc::try_unwrap(db.0)
        .map_err(|_| AccountError::Store("database handle shared".into()))?
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(db)
}
