//! Routes the unidirectional streams a peer opens to the part of the session that owns their
//! kind: each stream starts with a [`StreamKind`] byte; [`Dispatcher::run`] reads it and hands
//! the stream, in the order the peer opened them, to the channel [`Dispatcher::route`] made for
//! that kind. A new kind of stream (clipboard, files) is a route on one side and a module that
//! reads its channel.
//!
//! Streams of a kind nobody routed are refused (`STOP_SENDING`); a stream that does not send its
//! kind byte within [`KIND_TIMEOUT`] is refused too, so it cannot hold up the streams behind it.

use std::time::Duration;

use proto::session::StreamKind;
use tokio::sync::mpsc;
use tracing::warn;

use crate::Error;

/// How long a new stream has to send its kind byte.
pub const KIND_TIMEOUT: Duration = Duration::from_secs(2);

/// Error code of `STOP_SENDING` for a refused stream.
const REFUSED: u32 = 1;

/// Where each kind of incoming stream goes.
#[derive(Debug, Default)]
pub struct Dispatcher {
    routes: Vec<(StreamKind, mpsc::Sender<quinn::RecvStream>)>,
}

impl Dispatcher {
    pub fn new() -> Self {
        Self::default()
    }

    /// Streams of `kind` from now on arrive on the returned channel, in order; at most
    /// `backlog` wait there (the dispatcher waits for room, so a slow consumer slows only the
    /// acceptance of new streams).
    pub fn route(&mut self, kind: StreamKind, backlog: usize) -> mpsc::Receiver<quinn::RecvStream> {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        self.routes.retain(|(k, _)| *k != kind);
        self.routes.push((kind, tx));
        rx
    }

    /// Accepts `conn`'s unidirectional streams until it closes (its error) or every route's
    /// receiver is gone (`Ok`). `peer` names the other side in logs.
    pub async fn run(self, conn: &quinn::Connection, peer: &'static str) -> Result<(), Error> {
        loop {
            let mut recv = conn.accept_uni().await?;
            let mut kind = [0u8; 1];
            match tokio::time::timeout(KIND_TIMEOUT, recv.read_exact(&mut kind)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!("{peer} opened a stream and closed it before its kind: {e}");
                    continue;
                }
                Err(_) => {
                    warn!("{peer} opened a stream that sent no kind; refusing it");
                    let _ = recv.stop(REFUSED.into());
                    continue;
                }
            }
            let route = StreamKind::from_byte(kind[0])
                .and_then(|k| self.routes.iter().find(|(r, _)| *r == k));
            let Some((_, tx)) = route else {
                warn!(
                    kind = kind[0],
                    "{peer} opened a stream of a kind this side does not take; refusing it"
                );
                let _ = recv.stop(REFUSED.into());
                continue;
            };
            if tx.send(recv).await.is_err() && self.routes.iter().all(|(_, t)| t.is_closed()) {
                return Ok(());
            }
        }
    }
}
