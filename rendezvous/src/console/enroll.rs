//! Enrollment tokens in the API: an operator issues one (a number of uses, an expiry, a label;
//! shown once, with the invite that carries it when the console is told the rendezvous's
//! public addresses), lists them and revokes them. The core checks them when a peer enrolls.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, Body, Console, audit, unix_now};
use crate::core::new_token;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/api/v1/enrollments", get(list).post(create))
        .route("/api/v1/enrollments/{id}", delete(revoke))
}

async fn list(State(console): State<Arc<Console>>, _: Caller) -> Json<Value> {
    Json(
        json!({ "access": console.admin.access_mode().to_string(), "tokens": console.admin.tokens() }),
    )
}

#[derive(Debug, Deserialize)]
struct NewToken {
    #[serde(default)]
    label: String,
    /// How many keys may enroll with it (default 2: one machine, its host and controller
    /// keys). JSON numbers (`5` and `5.0` alike).
    uses: Option<f64>,
    /// Seconds it is good for (default 7 days).
    expires_in: Option<f64>,
    /// The rendezvous's public QUIC addresses (host:port), to build the invite.
    #[serde(default)]
    addresses: Vec<String>,
}

const MAX_USES: u32 = 10_000;
const MAX_LIFETIME: u64 = 366 * 86_400;

async fn create(
    State(console): State<Arc<Console>>,
    caller: Caller,
    super::Body(t): Body<NewToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    caller.may_change_hosts()?;
    let label = t.label.trim().to_owned();
    if label.chars().count() > 64 || label.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "label: up to 64 characters, no control characters".into(),
        ));
    }
    let uses = whole(t.uses, 2, 1, u64::from(MAX_USES))
        .ok_or_else(|| ApiError::BadRequest(format!("uses: a whole number, 1 to {MAX_USES}")))?;
    let uses = u32::try_from(uses).unwrap_or(MAX_USES);
    let lifetime = whole(t.expires_in, 7 * 86_400, 60, MAX_LIFETIME).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "expires_in: a whole number, 60 to {MAX_LIFETIME} s"
        ))
    })?;
    let invite = if t.addresses.is_empty() {
        None
    } else {
        Some(
            proto::invite::Invite::new(t.addresses, console.server_fingerprint)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        )
    };
    let now = unix_now();
    let (token, secret) = new_token(&caller.user, &label, uses, now + lifetime, now);
    let id = token.id.clone();
    console.admin.add_token(token);
    let invite = invite
        .map(|i| i.with_token(&secret).map(|i| i.to_string()))
        .transpose()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (actor, detail) = (
        caller.actor.clone(),
        format!("{uses} uses, {lifetime} s, {label}"),
    );
    let target = id.clone();
    console
        .db
        .call(move |db| audit::record(db, now, &actor, "enrollment.create", &target, &detail))
        .await??;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": id, "token": secret, "invite": invite, "note": "shown once" })),
    ))
}

/// A JSON number that must be whole and within `lo..=hi` (`None`: `default`).
fn whole(v: Option<f64>, default: u64, lo: u64, hi: u64) -> Option<u64> {
    let Some(v) = v else { return Some(default) };
    (v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64).then_some(v as u64)
}

async fn revoke(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.may_change_hosts()?;
    if !console.admin.revoke_token(&id) {
        return Err(ApiError::NotFound);
    }
    let (actor, now) = (caller.actor.clone(), unix_now());
    console
        .db
        .call(move |db| audit::record(db, now, &actor, "enrollment.revoke", &id, ""))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}
