//! Who is calling: the [`Caller`] extractor (a browser session's cookie, or an API key), the
//! CSRF and origin checks on every request that changes something, and logging in and out
//! (with the login limits of [`super::limiter`] and an audit record of each attempt).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use proto::limits::Prefix;
use serde::Deserialize;

use super::accounts::{self, Role, Scope};
use super::tls::TlsListener;
use super::{ApiError, Body, Console, audit, unix_now};
use crate::core::lock;

/// The session cookie's name. `__Host-` makes browsers insist on Secure, Path=/ and no Domain.
pub const COOKIE: &str = "__Host-qd_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The client's address, as the TCP connection came from.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TlsListener>> for ClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// For the audit log: the user name, or `user (api-key ID)`.
    pub actor: String,
    pub user: String,
    pub role: Role,
    /// Read-only keys may not change anything whatever their user's role.
    pub scope: Scope,
    /// A browser session's CSRF token (to render into pages); `None` for an API key.
    pub csrf: Option<String>,
    /// The session's cookie token (to log it out).
    pub(crate) token: Option<String>,
}

impl Caller {
    /// Refuses unless the caller may change hosts and sessions.
    pub fn may_change_hosts(&self) -> Result<(), ApiError> {
        if self.scope == Scope::Write && self.role.may_change_hosts() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the operator or admin role"))
        }
    }

    /// Refuses unless the caller may manage users and keys.
    pub fn may_administer(&self) -> Result<(), ApiError> {
        if self.scope == Scope::Write && self.role.may_administer() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role"))
        }
    }
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Whether a request's `Origin` (if it has one) is this console. Browsers send it on every
/// cross-site and every changing request; a request from another site's page is refused even
/// before its CSRF token is looked at.
pub fn same_origin(console: &Console, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some(rest) = origin.strip_prefix("https://") else {
        return false;
    };
    let Ok(authority) = rest.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    // The place the browser says it sent this to (its Host header) is the origin's place…
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if host == Some(authority.as_str()) {
        return true;
    }
    // …or the origin is one of the certificate's names at our port.
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    authority.port_u16().unwrap_or(443) == console.port && console.names.iter().any(|n| n == name)
}

impl FromRequestParts<Arc<Console>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Self, ApiError> {
        let changing = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if changing && !same_origin(console, &parts.headers) {
            return Err(ApiError::Csrf);
        }
        // One credential per request: a key alongside a session cookie is refused rather than
        // one of them silently winning.
        if parts.headers.contains_key(header::AUTHORIZATION)
            && cookie(&parts.headers, COOKIE).is_some()
        {
            return Err(ApiError::Unauthorized);
        }
        if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
            let key = auth
                .to_str()
                .ok()
                .and_then(|a| a.strip_prefix("Bearer "))
                .ok_or(ApiError::Unauthorized)?
                .to_owned();
            let id = key
                .strip_prefix("qdk_")
                .and_then(|k| k.split_once('_'))
                .map(|(id, _)| id.to_owned())
                .unwrap_or_default();
            let found = console
                .db
                .call(move |db| accounts::api_key(db, &key))
                .await??;
            let (user, role, scope) = found.ok_or(ApiError::Unauthorized)?;
            return Ok(Caller {
                actor: format!("{user} (api-key {id})"),
                user,
                role,
                scope,
                csrf: None,
                token: None,
            });
        }
        let token = cookie(&parts.headers, COOKIE)
            .ok_or(ApiError::Unauthorized)?
            .to_owned();
        let now = unix_now();
        let t = token.clone();
        let session = console
            .db
            .call(move |db| accounts::session(db, &t, now))
            .await??
            .ok_or(ApiError::Unauthorized)?;
        if changing {
            let sent = parts
                .headers
                .get(CSRF_HEADER)
                .map(HeaderValue::as_bytes)
                .unwrap_or_default();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(sent, session.csrf.as_bytes())) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(Caller {
            actor: session.user.clone(),
            user: session.user,
            role: session.role,
            scope: Scope::Write,
            csrf: Some(session.csrf),
            token: Some(token),
        })
    }
}

/// A login, from the form or the API.
#[derive(Debug, Deserialize)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// The TOTP code, for users who have one.
    #[serde(default)]
    pub totp: Option<String>,
}

/// A successful login: the cookie to set and the session's CSRF token.
#[derive(Debug)]
pub struct LoggedIn {
    pub user: String,
    pub role: Role,
    pub cookie: HeaderValue,
    pub csrf: String,
}

/// Checks a login against the limits and the database; records it in the audit log.
pub async fn log_in(
    console: &Arc<Console>,
    from: SocketAddr,
    headers: &HeaderMap,
    login: Login,
) -> Result<LoggedIn, ApiError> {
    if !same_origin(console, headers) {
        return Err(ApiError::Csrf);
    }
    let prefix = Prefix::of(from.ip());
    let user: String = login.user.trim().chars().take(64).collect();
    if let Err(locked) = lock(&console.limiter).check(Instant::now(), prefix, &user) {
        return Err(ApiError::Locked(locked.0.as_secs().max(1)));
    }
    let (u, password, totp) = (user.clone(), login.password, login.totp);
    let verdict = console
        .db
        .call(move |db| -> Result<Option<(Role, Option<u64>)>, ApiError> {
            let creds = accounts::credentials(db, &u)?;
            // Argon2id takes tens of milliseconds: this runs on a blocking thread.
            if !accounts::verify_password(creds.as_ref(), &password) {
                return Ok(None);
            }
            let Some(creds) = creds else { return Ok(None) };
            let step = match &creds.totp_secret {
                Some(secret) => match super::api::totp_step(secret, totp.as_deref(), unix_now()) {
                    Some(step) => Some(step),
                    None => return Ok(None),
                },
                None => None,
            };
            Ok(Some((creds.role, step)))
        })
        .await??;
    // A TOTP code counts once: a code seen (say, over a shoulder) cannot log in again within
    // its 30 s (steps kept in memory; a restart forgets them, and codes expire in a minute).
    let verdict = verdict.filter(|(_, step)| match step {
        Some(step) => {
            let mut used = lock(&console.totp_used);
            let fresh = used.get(&user).is_none_or(|last| step > last);
            if fresh {
                used.insert(user.clone(), *step);
            }
            fresh
        }
        None => true,
    });
    let verdict = verdict.map(|(role, _)| role);
    let now = unix_now();
    let Some(role) = verdict else {
        let lockouts_before = {
            let mut l = lock(&console.limiter);
            let before = l.lockouts;
            l.failed(Instant::now(), prefix, &user);
            l.lockouts - before
        };
        use std::sync::atomic::Ordering::Relaxed;
        console.counters.failures.fetch_add(1, Relaxed);
        console
            .counters
            .lockouts
            .fetch_add(lockouts_before, Relaxed);
        let (u, ip) = (user.clone(), from.ip().to_string());
        console
            .db
            .call(move |db| audit::record(db, now, "-", "login.failed", &u, &format!("from {ip}")))
            .await??;
        return Err(ApiError::WrongLogin);
    };
    lock(&console.limiter).succeeded(Instant::now(), prefix, &user);
    let (u, ip) = (user.clone(), from.ip().to_string());
    let (token, csrf) = console
        .db
        .call(move |db| -> Result<_, ApiError> {
            let opened = accounts::open_session(db, &u, now)?;
            audit::record(db, now, &u, "login", &u, &format!("from {ip}"))?;
            Ok(opened)
        })
        .await??;
    let cookie = format!(
        "{COOKIE}={token}; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        accounts::SESSION_LIFETIME
    );
    Ok(LoggedIn {
        user,
        role,
        cookie: HeaderValue::from_str(&cookie)
            .map_err(|e| ApiError::Internal(format!("cookie: {e}")))?,
        csrf,
    })
}

/// Ends the caller's browser session (an API key has none to end).
pub async fn log_out(console: &Arc<Console>, caller: &Caller) -> Result<HeaderValue, ApiError> {
    if let Some(token) = caller.token.clone() {
        let (user, now) = (caller.user.clone(), unix_now());
        console
            .db
            .call(move |db| -> Result<(), ApiError> {
                accounts::close_session(db, &token)?;
                audit::record(db, now, &user, "logout", &user, "")?;
                Ok(())
            })
            .await??;
    }
    Ok(HeaderValue::from_static(
        "__Host-qd_session=; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=0",
    ))
}

/// `POST /api/v1/login` (JSON).
pub async fn api_login(
    State(console): State<Arc<Console>>,
    ConnectInfo(ClientAddr(from)): ConnectInfo<ClientAddr>,
    headers: HeaderMap,
    Body(login): Body<Login>,
) -> Result<Response, ApiError> {
    let done = log_in(&console, from, &headers, login).await?;
    Ok((
        [(header::SET_COOKIE, done.cookie)],
        axum::Json(serde_json::json!({
            "user": done.user, "role": done.role, "csrf": done.csrf
        })),
    )
        .into_response())
}

/// `POST /api/v1/logout`.
pub async fn api_logout(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let cookie = log_out(&console, &caller).await?;
    Ok((
        [(header::SET_COOKIE, cookie)],
        axum::Json(serde_json::json!({})),
    )
        .into_response())
}
