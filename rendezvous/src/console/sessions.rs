//! Sessions in the API: the live relayed ones (from the core and the relay) and past ones
//! (from the database), and ending a live one. See `crate::core::SessionRecord` for what the
//! rendezvous can and cannot know about a session.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, Console, Params, audit, unix_now};
use crate::core::SessionRecord;
use crate::relay::SessionView;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/api/v1/sessions", get(list))
        .route("/api/v1/sessions/{id}", delete(end))
}

/// A session as the API shows it.
#[derive(Debug, Serialize)]
pub struct SessionJson {
    pub id: String,
    pub code: String,
    pub host_key: String,
    pub controller_key: String,
    pub controller_address: String,
    /// "relay" or "direct".
    pub path: String,
    pub started: u64,
    pub ended: Option<u64>,
    /// Bytes the relay forwarded for it.
    pub bytes: u64,
    pub end_reason: Option<String>,
    pub live: bool,
    /// Seconds since its last relayed packet (live sessions).
    pub idle_s: Option<u64>,
}

pub fn live_json(rec: &SessionRecord, view: &SessionView) -> SessionJson {
    SessionJson {
        id: rec.id.clone(),
        code: rec.code.to_string(),
        host_key: rec.host.to_string(),
        controller_key: rec.controller.to_string(),
        controller_address: rec.controller_addr.to_string(),
        path: rec.path.to_owned(),
        started: rec.started,
        ended: None,
        bytes: view.bytes,
        end_reason: None,
        live: true,
        idle_s: Some(view.last.elapsed().as_secs()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Past (ended or unrelayed) sessions started before `before`, newest first.
pub fn past(
    db: &rusqlite::Connection,
    before: Option<u64>,
    limit: usize,
) -> Result<Vec<SessionJson>, rusqlite::Error> {
    let mut stmt = db.prepare(
        "SELECT id, code, host, controller, controller_addr, path, started, ended, bytes, end_reason
         FROM sessions WHERE (ended IS NOT NULL OR path <> 'relay') AND started < ?1
         ORDER BY started DESC, id DESC LIMIT ?2",
    )?;
    let before = before.map_or(i64::MAX, |b| i64::try_from(b).unwrap_or(i64::MAX));
    let rows = stmt.query_map(params![before, i64::try_from(limit).unwrap_or(100)], |r| {
        let t = |i: usize| -> rusqlite::Result<u64> {
            Ok(u64::try_from(r.get::<_, i64>(i)?).unwrap_or(0))
        };
        Ok(SessionJson {
            id: r.get(0)?,
            code: r.get(1)?,
            host_key: hex(&r.get::<_, Vec<u8>>(2)?),
            controller_key: hex(&r.get::<_, Vec<u8>>(3)?),
            controller_address: r.get(4)?,
            path: r.get(5)?,
            started: t(6)?,
            ended: r
                .get::<_, Option<i64>>(7)?
                .map(|e| u64::try_from(e).unwrap_or(0)),
            bytes: t(8)?,
            end_reason: r.get(9)?,
            live: false,
            idle_s: None,
        })
    })?;
    rows.collect()
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// Past sessions started before this (Unix seconds).
    before: Option<String>,
    limit: Option<usize>,
}

/// The live sessions as the API and the live updates show them.
pub(super) fn live_list(console: &Console) -> Vec<SessionJson> {
    console
        .admin
        .live_sessions()
        .iter()
        .map(|(r, v)| live_json(r, v))
        .collect()
}

async fn list(
    State(console): State<Arc<Console>>,
    _: Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let live = live_list(&console);
    let limit = super::page_limit(q.limit)?;
    let before = super::cursor(q.before.as_deref())?;
    let past = console.db.call(move |db| past(db, before, limit)).await??;
    let next = (past.len() == limit)
        .then(|| past.last().map(|s| s.started))
        .flatten();
    Ok(Json(json!({ "live": live, "past": past, "next": next })))
}

async fn end(
    State(console): State<Arc<Console>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.may_change_hosts()?;
    if !console.admin.end_session(&id) {
        return Err(ApiError::NotFound);
    }
    let (actor, now) = (caller.actor.clone(), unix_now());
    console
        .db
        .call(move |db| audit::record(db, now, &actor, "session.end", &id, ""))
        .await??;
    Ok(StatusCode::NO_CONTENT)
}
