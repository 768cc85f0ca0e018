//! The JSON API (`/api/v1/…`, documented by `/api/openapi.json`) and the ISR-style read
//! endpoints (`/status`, `/info/{code}`, `/list`). Every handler takes a [`Caller`] (so an
//! unauthenticated request never reaches one, but `/status`), checks the caller's role for
//! what it changes, and records every change in the audit log.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, http::StatusCode};
use proto::AccessCode;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::accounts::{self, Role, Scope};
use super::auth::{self, Caller};
use super::{ApiError, Body, Console, Params, audit, unix_now};
use crate::core::{AdminError, HostQuery, HostView, parse_name};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/api/v1/login", post(auth::api_login))
        .route("/api/v1/logout", post(auth::api_logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/hosts", get(hosts))
        .route(
            "/api/v1/hosts/{code}",
            get(host).patch(rename).delete(forget),
        )
        .route("/api/v1/hosts/{code}/ban", post(ban))
        .route("/api/v1/hosts/{code}/unban", post(unban))
        .route("/api/v1/audit", get(audit_page))
        .route("/api/v1/users", get(users).post(add_user))
        .route("/api/v1/users/{name}", axum::routing::delete(remove_user))
        .route("/api/v1/keys", get(keys).post(create_key))
        .route("/api/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/status", get(isr_status))
        .route("/info/{code}", get(isr_info))
        .route("/list", get(isr_list))
}

/// A host as the API shows it.
#[derive(Debug, Serialize)]
pub struct HostJson {
    pub code: String,
    pub name: Option<String>,
    /// The host key's fingerprint (hex SHA-256 of its SubjectPublicKeyInfo).
    pub key: String,
    pub online: bool,
    /// Where its registration came from, while online.
    pub address: Option<String>,
    /// Unix seconds it has been online since.
    pub online_since: Option<u64>,
    pub last_seen: u64,
    pub banned: bool,
    /// What it reported while online: its version and NAT mapping.
    pub version: Option<String>,
    pub nat_mapping: Option<String>,
}

impl From<&HostView> for HostJson {
    fn from(h: &HostView) -> Self {
        HostJson {
            code: h.code.to_string(),
            name: h.name.clone(),
            key: h.key.to_string(),
            online: h.online.is_some(),
            address: h.online.map(|(a, _)| a.to_string()),
            online_since: h.online.map(|(_, t)| t),
            last_seen: h.last_seen,
            banned: h.banned,
            version: h.version.clone(),
            nat_mapping: h.mapping.map(|m| m.to_string()),
        }
    }
}

fn code(s: &str) -> Result<AccessCode, ApiError> {
    s.parse().map_err(|_| ApiError::NotFound)
}

fn admin_error(e: AdminError) -> ApiError {
    match e {
        AdminError::NoSuchHost => ApiError::NotFound,
        e => ApiError::BadRequest(e.to_string()),
    }
}

async fn record(
    console: &Console,
    caller: &Caller,
    action: &'static str,
    target: String,
    detail: String,
) -> Result<(), ApiError> {
    let actor = caller.actor.clone();
    let now = unix_now();
    console
        .db
        .call(move |db| audit::record(db, now, &actor, action, &target, &detail))
        .await??;
    Ok(())
}

async fn me(caller: Caller) -> Json<Value> {
    Json(json!({
        "user": caller.user, "role": caller.role, "scope": caller.scope, "csrf": caller.csrf
    }))
}

/// The counts the dashboard shows.
pub fn stats_json(console: &Console) -> Value {
    let s = console.admin.counts();
    let relay = s.relay.unwrap_or_default();
    json!({
        "hosts_known": s.hosts_known,
        "hosts_online": s.hosts_online,
        "connections": s.connections,
        "registrations": s.registrations,
        "resolves": s.resolves,
        "refusals": s.refusals.total(),
        "relay_enabled": s.relay.is_some(),
        "relay_sessions_active": relay.sessions_active,
        "relay_sessions_opened": relay.sessions_opened,
        "relay_bytes_forwarded": relay.bytes_forwarded,
        "relay_packets_forwarded": relay.packets_forwarded,
        "stun_answered": console.stun.answered.load(Relaxed),
        "stun_limited": console.stun.limited.load(Relaxed),
        "uptime_s": console.started.elapsed().as_secs(),
    })
}

async fn stats(State(console): State<Arc<Console>>, _: Caller) -> Json<Value> {
    Json(stats_json(&console))
}

#[derive(Debug, Deserialize)]
struct HostsQuery {
    search: Option<String>,
    online: Option<bool>,
    after: Option<String>,
    limit: Option<usize>,
}

fn host_query(q: HostsQuery) -> Result<HostQuery, ApiError> {
    let after = match q.after.as_deref() {
        Some(a) => Some(
            a.parse()
                .map_err(|_| ApiError::BadRequest("after: ISR- and eight digits".into()))?,
        ),
        None => None,
    };
    Ok(HostQuery {
        search: q.search.filter(|s| !s.trim().is_empty()),
        online: q.online,
        after,
        limit: super::page_limit(q.limit)?,
    })
}

async fn hosts(
    State(console): State<Arc<Console>>,
    _: Caller,
    Params(q): Params<HostsQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = console.admin.hosts(&host_query(q)?);
    Ok(Json(json!({
        "hosts": page.hosts.iter().map(HostJson::from).collect::<Vec<_>>(),
        "total": page.total,
        "next": page.next.map(|c| c.to_string()),
    })))
}

async fn host(
    State(console): State<Arc<Console>>,
    _: Caller,
    Path(c): Path<String>,
) -> Result<Json<HostJson>, ApiError> {
    let h = console.admin.host(&code(&c)?).ok_or(ApiError::NotFound)?;
    Ok(Json(HostJson::from(&h)))
}

#[derive(Debug, Deserialize)]
struct Rename {
    /// The new name; `null` or empty removes it.
    name: Option<String>,
}

async fn rename(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(c): Path<String>,
    Body(body): Body<Rename>,
) -> Result<Json<HostJson>, ApiError> {
    caller.may_change_hosts()?;
    let code = code(&c)?;
    let name = match body
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        Some(n) => Some(parse_name(n).map_err(admin_error)?),
        None => None,
    };
    console
        .admin
        .rename(&code, name.clone())
        .map_err(admin_error)?;
    record(
        &console,
        &caller,
        "host.rename",
        code.to_string(),
        name.unwrap_or_default(),
    )
    .await?;
    host(State(console), caller, Path(c)).await
}

async fn set_ban(
    console: Arc<Console>,
    caller: Caller,
    c: String,
    banned: bool,
) -> Result<Json<HostJson>, ApiError> {
    caller.may_change_hosts()?;
    let code = code(&c)?;
    console
        .admin
        .set_banned(&code, banned)
        .map_err(admin_error)?;
    let action = if banned { "host.ban" } else { "host.unban" };
    record(&console, &caller, action, code.to_string(), String::new()).await?;
    host(State(console), caller, Path(c)).await
}

async fn ban(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(c): Path<String>,
) -> Result<Json<HostJson>, ApiError> {
    set_ban(console, caller, c, true).await
}

async fn unban(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(c): Path<String>,
) -> Result<Json<HostJson>, ApiError> {
    set_ban(console, caller, c, false).await
}

async fn forget(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(c): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.may_change_hosts()?;
    let code = code(&c)?;
    console.admin.forget(&code).map_err(admin_error)?;
    record(
        &console,
        &caller,
        "host.forget",
        code.to_string(),
        String::new(),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    before: Option<String>,
    search: Option<String>,
    limit: Option<usize>,
}

async fn audit_page(
    State(console): State<Arc<Console>>,
    _: Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = super::page_limit(q.limit)?;
    let before = super::cursor(q.before.as_deref())?.map(|b| i64::try_from(b).unwrap_or(i64::MAX));
    let search = q.search.filter(|s| !s.is_empty());
    let records = console
        .db
        .call(move |db| audit::page(db, before, search.as_deref(), limit))
        .await??;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(Json(json!({ "records": records, "next": next })))
}

async fn users(State(console): State<Arc<Console>>, _: Caller) -> Result<Json<Value>, ApiError> {
    let users = console.db.call(accounts::users).await??;
    Ok(Json(json!({ "users": users })))
}

#[derive(Debug, Deserialize)]
struct NewUser {
    name: String,
    role: String,
    password: String,
}

async fn add_user(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Body(u): Body<NewUser>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.may_administer()?;
    let role: Role = u.role.parse().map_err(ApiError::BadRequest)?;
    accounts::parse_name(&u.name)?;
    let password = u.password;
    let hash = tokio::task::spawn_blocking(move || accounts::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    let (name, now) = (u.name.clone(), unix_now());
    console
        .db
        .call(move |db| accounts::add_user(db, &name, role, &hash, now))
        .await??;
    record(
        &console,
        &caller,
        "user.add",
        u.name.clone(),
        role.to_string(),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": u.name, "role": role })),
    ))
}

async fn remove_user(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.may_administer()?;
    if name == caller.user {
        // Another admin does it: nobody locks themselves out by a slip.
        return Err(ApiError::Forbidden("you cannot remove your own account"));
    }
    let n = name.clone();
    console
        .db
        .call(move |db| accounts::remove_user(db, &n))
        .await?
        .map_err(|e| match e {
            accounts::AccountError::NoSuchUser(_) => ApiError::NotFound,
            e => e.into(),
        })?;
    record(&console, &caller, "user.remove", name, String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn keys(
    State(console): State<Arc<Console>>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let all = console.db.call(accounts::api_keys).await??;
    // An admin sees every key; others their own.
    let keys: Vec<_> = all
        .into_iter()
        .filter(|k| caller.role.may_administer() || k.user == caller.user)
        .collect();
    Ok(Json(json!({ "keys": keys })))
}

#[derive(Debug, Deserialize)]
struct NewKey {
    scope: Scope,
    #[serde(default)]
    label: String,
}

async fn create_key(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Body(k): Body<NewKey>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Keys are made in a browser session (a key cannot make keys).
    if caller.csrf.is_none() {
        return Err(ApiError::Forbidden(
            "API keys are made from a logged-in session",
        ));
    }
    let label: String = k.label.trim().chars().take(64).collect();
    if label.chars().any(char::is_control) {
        return Err(ApiError::BadRequest("label: no control characters".into()));
    }
    let (user, scope, now, l) = (caller.user.clone(), k.scope, unix_now(), label.clone());
    let key = console
        .db
        .call(move |db| accounts::create_api_key(db, &user, scope, &l, now))
        .await??;
    let id = key.split('_').nth(1).unwrap_or_default().to_owned();
    record(
        &console,
        &caller,
        "key.create",
        id.clone(),
        format!("{scope:?} {label}"),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "key": key, "note": "shown once: store it now" })),
    ))
}

async fn revoke_key(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let keys = console.db.call(accounts::api_keys).await??;
    let key = keys.iter().find(|k| k.id == id).ok_or(ApiError::NotFound)?;
    if key.user != caller.user {
        caller.may_administer()?;
    } else if caller.scope != Scope::Write {
        return Err(ApiError::Forbidden("a read-only key cannot revoke keys"));
    }
    let (i, now) = (id.clone(), unix_now());
    if !console
        .db
        .call(move |db| accounts::revoke_api_key(db, &i, now))
        .await??
    {
        return Err(ApiError::NotFound);
    }
    record(&console, &caller, "key.revoke", id, String::new()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The time step (30 s since the epoch) whose TOTP (RFC 6238: SHA-1, 6 digits; one step of
/// clock skew either way) `code` is for `secret` at `now`, if it is one of them.
pub fn totp_step(secret: &[u8], code: Option<&str>, now: u64) -> Option<u64> {
    let code = code.map(str::trim)?;
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, secret.to_vec()).ok()?;
    let step = now / 30;
    // Every candidate is compared (in constant time), whichever matches.
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .fold(None, |found, s| {
            let want = totp.generate(s * 30);
            let hit: bool = subtle::ConstantTimeEq::ct_eq(want.as_bytes(), code.as_bytes()).into();
            if hit { Some(s) } else { found }
        })
}

// ---- ISR-style read endpoints ----

/// `GET /status`: public, counts only (no code, key or address).
async fn isr_status(State(console): State<Arc<Console>>) -> Json<Value> {
    let s = console.admin.counts();
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "registered": s.hosts_known,
        "online": s.hosts_online,
        "uptime": console.started.elapsed().as_secs(),
    }))
}

/// An ISR-style registry entry.
fn isr_entry(h: &HostView) -> Value {
    json!({
        "id": h.code.to_string(),
        "name": h.name,
        "fingerprint": h.key.to_string(),
        "online": h.online.is_some(),
        "last_seen": h.last_seen,
    })
}

/// `GET /info/{code}`: one host (authenticated: the QUIC look-up deliberately does not say
/// which codes exist, and neither does this to strangers).
async fn isr_info(
    State(console): State<Arc<Console>>,
    _: Caller,
    Path(c): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let h = console.admin.host(&code(&c)?).ok_or(ApiError::NotFound)?;
    Ok(Json(isr_entry(&h)))
}

/// `GET /list`: every host, paged like `/api/v1/hosts` (authenticated).
async fn isr_list(
    State(console): State<Arc<Console>>,
    _: Caller,
    Params(q): Params<HostsQuery>,
) -> Result<Json<Value>, ApiError> {
    let page = console.admin.hosts(&host_query(q)?);
    Ok(Json(json!({
        "hosts": page.hosts.iter().map(isr_entry).collect::<Vec<_>>(),
        "total": page.total,
        "next": page.next.map(|c| c.to_string()),
    })))
}
