//! Connections and requests, as IO: admits a connection if the core says so, reads each
//! request off its stream with a deadline, writes the core's answer, and serves a
//! registration's stream with the pushes the core sends it. Every decision is the core's
//! ([`crate::core::Core`]); this file only moves messages and holds the one lock for the
//! length of a core call (never across an `await`).

use std::sync::Arc;
use std::time::Duration;

use certs::Fingerprint;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::State;
use crate::core::{Admit, Lookup, Now};
use proto::rendezvous::{ClientMsg, MAX_MSG_LEN, ServerMsg};
use proto::{quic, wire};

/// How long a client has to send its first request on a stream.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a push may take to be written to a host (one that stops reading is dropped).
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
/// Queued pushes per host before further ones are dropped.
const PUSH_QUEUE: usize = 16;

/// Decides on a new connection and serves it in its own task.
pub(super) fn admit(state: &Arc<State>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let verdict = state.with(|s| {
        s.core
            .connection(remote, incoming.remote_address_validated())
    });
    match verdict {
        Admit::Refuse => {
            debug!(%remote, "refused a connection: too many from this source");
            incoming.refuse();
            return;
        }
        Admit::Retry => {
            if let Err(e) = incoming.retry() {
                debug!(%remote, "retry: {e}");
            }
            return;
        }
        Admit::Accept => {}
    }
    // Counted from now until the task ends, however it ends.
    struct Open(Arc<State>, std::net::SocketAddr);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.with(|s| s.core.connection_closed(self.1));
        }
    }
    let open = Open(state.clone(), remote);
    let state = state.clone();
    tokio::spawn(async move {
        let _open = open;
        match incoming.await {
            Ok(conn) => handle_connection(state, conn).await,
            Err(e) => debug!(%remote, "handshake failed: {e}"),
        }
    });
}

async fn handle_connection(state: Arc<State>, conn: quinn::Connection) {
    let Some(fp) = quic::remote_fingerprint(&conn) else {
        conn.close(1u32.into(), b"no client certificate");
        return;
    };
    let remote = conn.remote_address();
    // While this authenticated connection lives, its IP is a proven STUN client.
    let _live = state.live.hold(remote.ip());
    debug!(%remote, peer = %fp, "peer connected");
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(s) => s,
            Err(e) => {
                debug!(%remote, "connection ended: {e}");
                return;
            }
        };
        // At most `Role::Rendezvous`'s few streams at once: quinn refuses more.
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
            debug!(%remote, "bad request: {e}");
            let answer = state.with(|s| s.core.bad_request(&e.to_string()));
            answer_once(&mut send, &answer).await;
            return;
        }
        Err(_) => {
            debug!(%remote, "no request before timeout");
            let _ = recv.stop(0u32.into());
            return;
        }
    };
    match msg {
        ClientMsg::Register { lan_addrs } => register(state, conn, fp, lan_addrs, send, recv).await,
        ClientMsg::Resolve {
            code,
            lan_addrs,
            relay_only,
        } => {
            let ports = state.ports();
            let answer = state.with(|s| {
                s.follow_move(code);
                let lookup = Lookup {
                    key: fp,
                    source: remote,
                    code,
                    lan_addrs: &lan_addrs,
                    relay_only,
                };
                let resolution = s.core.resolve(Now::system(), lookup, ports);
                if let Some(push) = resolution.push {
                    let delivered = s
                        .pushes
                        .get(&push.to)
                        .is_some_and(|live| live.push.try_send(push.msg).is_ok());
                    if !delivered {
                        warn!(%code, "host is not reading connect requests; dropped one");
                    }
                }
                resolution.answer
            });
            answer_once(&mut send, &answer).await;
        }
        ClientMsg::Report { version, mapping } => {
            state.with(|s| s.core.report(&fp, &version, mapping));
            answer_once(&mut send, &ServerMsg::Noted).await;
        }
        ClientMsg::Enroll { token } => {
            let answer = state.with(|s| s.core.enroll(Now::system(), fp, remote, &token));
            answer_once(&mut send, &answer).await;
        }
    }
}

/// Writes the one answer of a request and ends the stream.
async fn answer_once(send: &mut quinn::SendStream, answer: &ServerMsg) {
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, wire::write_msg(send, answer, MAX_MSG_LEN)).await;
    let _ = send.finish();
}

async fn register(
    state: Arc<State>,
    conn: quinn::Connection,
    fp: Fingerprint,
    lan_addrs: Vec<std::net::SocketAddr>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let observed = conn.remote_address();
    let (push_tx, mut push_rx) = mpsc::channel(PUSH_QUEUE);
    let ports = state.ports();
    let outcome = state.with(|s| -> Result<_, crate::core::Refused> {
        let reg = s.core.register(
            Now::system(),
            fp,
            observed,
            &lan_addrs,
            ports,
            &mut rand::rng(),
        )?;
        // The replaced registration's stream ends when its channel closes.
        if let Some(old) = reg.replaced {
            s.pushes.remove(&old);
        }
        s.pushes.insert(
            reg.push,
            super::Live {
                push: push_tx,
                conn: conn.clone(),
            },
        );
        Ok(reg)
    });
    let reg = match outcome {
        Ok(reg) => reg,
        Err(refused) => {
            answer_once(&mut send, &refused.to_msg()).await;
            return;
        }
    };
    let code = reg.code;
    let sent = tokio::time::timeout(
        PUSH_TIMEOUT,
        wire::write_msg(&mut send, &reg.answer, MAX_MSG_LEN),
    )
    .await;
    if matches!(sent, Ok(Ok(()))) {
        // Serve pushes until the host goes away, stops reading, or a newer registration
        // replaces this one.
        // (A host that moves is followed where its address is used: `Shared::follow_move`.)
        let mut scratch = [0u8; 64];
        loop {
            tokio::select! {
                push = push_rx.recv() => match push {
                    Some(msg) => {
                        let written = tokio::time::timeout(PUSH_TIMEOUT, wire::write_msg(&mut send, &msg, MAX_MSG_LEN)).await;
                        if !matches!(written, Ok(Ok(()))) {
                            warn!(%code, "host does not take connect requests; dropping its registration");
                            break;
                        }
                    }
                    None => break,
                },
                // The host sends nothing more on this stream; its end means the host left.
                r = recv.read(&mut scratch) => if !matches!(r, Ok(Some(_))) { break },
                _ = conn.closed() => break,
            }
        }
    }
    state.with(|s| {
        s.pushes.remove(&reg.push);
        s.core.disconnected(Now::system(), code, reg.push);
    });
}
