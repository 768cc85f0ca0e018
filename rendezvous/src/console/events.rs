//! Live updates for open consoles: `GET /api/v1/events`, server-sent events. `host` carries a
//! host's row whenever it comes online, goes offline or is changed; `forgotten` a code that
//! left the registry; `sessions` the live sessions whenever one begins or ends; `stats` the dashboard's counts every [`STATS_EVERY`]; `reload` tells a
//! console that fell behind (more than the server's event backlog) to fetch afresh.
//!
//! Each open console costs one broadcast receiver and one timer; nothing per host.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::routing::get;
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::Console;
use super::api::{HostJson, stats_json};
use super::auth::Caller;
use super::sessions::live_json;
use crate::core::Event;

/// How often the counts are sent.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/api/v1/events", get(events))
}

struct Feed {
    console: Arc<Console>,
    rx: tokio::sync::broadcast::Receiver<Event>,
    tick: tokio::time::Interval,
}

async fn events(
    State(console): State<Arc<Console>>,
    _: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let feed = Feed {
        rx: console.admin.events(),
        console,
        tick: tokio::time::interval(STATS_EVERY),
    };
    let stream = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = tokio::select! {
            _ = feed.tick.tick() => {
                let stats = stats_json(&feed.console);
                SseEvent::default().event("stats").data(stats.to_string())
            }
            got = feed.rx.recv() => match got {
                Ok(Event::Host(code)) => match feed.console.admin.host(&code) {
                    Some(h) => SseEvent::default()
                        .event("host")
                        .data(serde_json::to_string(&HostJson::from(&h)).unwrap_or_default()),
                    None => SseEvent::default().event("forgotten").data(code.to_string()),
                },
                Ok(Event::Forgotten(code)) => {
                    SseEvent::default().event("forgotten").data(code.to_string())
                }
                // The live list is short (at most the relay's session cap): send it whole.
                Ok(Event::Session(_)) => {
                    let live: Vec<_> = feed
                        .console
                        .admin
                        .live_sessions()
                        .iter()
                        .map(|(r, v)| live_json(r, v))
                        .collect();
                    SseEvent::default()
                        .event("sessions")
                        .data(serde_json::to_string(&live).unwrap_or_default())
                }
                Err(RecvError::Lagged(_)) => SseEvent::default().event("reload").data(""),
                // The server is shutting down.
                Err(RecvError::Closed) => return None,
            },
        };
        Some((Ok(event), feed))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
