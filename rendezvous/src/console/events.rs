//! Live updates for open consoles: `GET /api/v1/events`, server-sent events. `host` carries a
//! host's row whenever it comes online, goes offline or is changed; `forgotten` a code that
//! left the registry; `sessions` the live sessions whenever one begins or ends; `stats` the
//! dashboard's counts every [`STATS_EVERY`] (and at once when a console connects); `reload`
//! tells a console that fell behind (more than [`BACKLOG`] updates) to fetch afresh.
//!
//! Each event is rendered once, whatever the number of open consoles: one task (`render`) turns
//! the server's events and a [`STATS_EVERY`] tick into SSE payloads and broadcasts them; each open
//! console costs one receiver, and no turn of the server's lock of its own but its first counts.

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
use super::sessions::live_list;
use crate::core::Event;

/// How often the counts are sent.
pub const STATS_EVERY: Duration = Duration::from_secs(2);

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new().route("/api/v1/events", get(events))
}

/// One rendered update: the SSE event's name and its data.
pub(crate) type Rendered = Arc<(&'static str, String)>;

/// Updates kept for a console that reads slowly; one that falls further behind reloads.
const BACKLOG: usize = 1024;

/// The channel the renderer broadcasts on (kept in the console; consoles subscribe to it).
pub(super) fn channel() -> tokio::sync::broadcast::Sender<Rendered> {
    tokio::sync::broadcast::channel(BACKLOG).0
}

/// Renders each server event and the counts once for every open console, until the console
/// is gone (it holds the console weakly) or the server's event channel closes. Renders nothing
/// while no console is open.
pub(super) async fn render(console: std::sync::Weak<Console>) {
    let Some(mut rx) = console.upgrade().map(|c| c.admin.events()) else {
        return;
    };
    let mut tick = tokio::time::interval(STATS_EVERY);
    loop {
        let got = tokio::select! {
            _ = tick.tick() => None,
            got = rx.recv() => Some(got),
        };
        let Some(console) = console.upgrade() else {
            return;
        };
        let out = &console.updates;
        let update = match got {
            None if out.receiver_count() > 0 => Some(("stats", stats_json(&console).to_string())),
            Some(Ok(event)) if out.receiver_count() > 0 => Some(rendered(&console, event)),
            None | Some(Ok(_)) => None,
            Some(Err(RecvError::Lagged(_))) => Some(("reload", String::new())),
            Some(Err(RecvError::Closed)) => return,
        };
        if let Some(u) = update {
            // No console open: nobody to tell.
            let _ = out.send(Arc::new(u));
        }
    }
}

/// An event as consoles receive it.
fn rendered(console: &Console, event: Event) -> (&'static str, String) {
    match event {
        Event::Host(code) => match console.admin.host(&code) {
            Some(h) => (
                "host",
                serde_json::to_string(&HostJson::from(&h)).unwrap_or_default(),
            ),
            None => ("forgotten", code.to_string()),
        },
        Event::Forgotten(code) => ("forgotten", code.to_string()),
        // The live list is short (at most the relay's session cap): send it whole.
        Event::Session(_) => (
            "sessions",
            serde_json::to_string(&live_list(console)).unwrap_or_default(),
        ),
    }
}

async fn events(
    State(console): State<Arc<Console>>,
    _: Caller,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = console.updates.subscribe();
    // The counts at once, then the renderer's updates.
    let first = SseEvent::default()
        .event("stats")
        .data(stats_json(&console).to_string());
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        let event = match rx.recv().await {
            Ok(u) => SseEvent::default().event(u.0).data(u.1.as_str()),
            Err(RecvError::Lagged(_)) => SseEvent::default().event("reload").data(""),
            // The server is shutting down.
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), rx))
    });
    let stream =
        futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(first) }), rest);
    Sse::new(stream).keep_alive(KeepAlive::default())
}
