//! Connections and requests: who is let in, and the answers to `Register` and `Resolve`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use certs::Fingerprint;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{Admit, OnlineHost, State, lock, prefix_of, source_tag, unix_now};
use crate::relay::{Owner, RelayOffer};
use proto::rendezvous::{self as msg, ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg};
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
    let prefix = prefix_of(remote);
    let verdict = lock(&state.policy).admit(prefix, incoming.remote_address_validated());
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
    lock(&state.policy).open(prefix);
    struct Open(Arc<State>, proto::limits::Prefix);
    impl Drop for Open {
        fn drop(&mut self) {
            lock(&self.0.policy).close(&self.1);
        }
    }
    let open = Open(state.clone(), prefix);
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
            refuse(&mut send, Refusal::BadRequest, &e.to_string()).await;
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
            let reply = resolve(&state, fp, remote, code, lan_addrs, relay_only);
            let _ = tokio::time::timeout(
                REQUEST_TIMEOUT,
                wire::write_msg(&mut send, &reply, MAX_MSG_LEN),
            )
            .await;
            let _ = send.finish();
        }
    }
}

async fn refuse(send: &mut quinn::SendStream, reason: Refusal, message: &str) {
    let msg = ServerMsg::Refused {
        reason,
        message: message.to_string(),
    };
    let _ = tokio::time::timeout(REQUEST_TIMEOUT, wire::write_msg(send, &msg, MAX_MSG_LEN)).await;
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
    let conn_id = conn.stable_id();
    let outcome = {
        let mut online = lock(&state.online);
        let mut registry = lock(&state.registry);
        let new_code = registry.code_of(&fp).is_none();
        if !lock(&state.policy).allow_register(fp, prefix_of(observed), new_code, Instant::now()) {
            Err((
                Refusal::RateLimited,
                "too many registrations from this key or address; wait a little".to_string(),
            ))
        } else {
            match registry.register(fp, unix_now(), &mut rand::rng()) {
                Ok(reg) => {
                    if let Err(e) = lock(&state.store).upsert(&reg.code, &reg.record) {
                        warn!("{e}");
                    }
                    online.insert(
                        reg.code,
                        OnlineHost {
                            conn_id,
                            push: push_tx,
                            candidates: msg::candidates(Some(observed), &lan_addrs),
                        },
                    );
                    Ok(reg)
                }
                Err(e) => Err((Refusal::Busy, e.to_string())),
            }
        }
    };
    let reg = match outcome {
        Ok(reg) => reg,
        Err((reason, msg)) => {
            warn!(peer = %fp, %observed, "refused a registration: {msg}");
            refuse(&mut send, reason, &msg).await;
            return;
        }
    };
    let code = reg.code;
    info!(%code, host = %fp, %observed, new = reg.new, "host registered");
    let welcome = ServerMsg::Registered {
        code,
        observed,
        stun_port: state.stun.advertised(),
    };
    let sent = tokio::time::timeout(
        PUSH_TIMEOUT,
        wire::write_msg(&mut send, &welcome, MAX_MSG_LEN),
    )
    .await;
    if matches!(sent, Ok(Ok(()))) {
        // Serve pushes until the host goes away, stops reading, or a newer registration
        // replaces this one.
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

/// The one answer for a code nobody can be reached at, whatever the reason.
fn unavailable(code: proto::AccessCode) -> ServerMsg {
    ServerMsg::Refused {
        reason: Refusal::Unavailable,
        message: format!("no host with the code {code} can be reached now"),
    }
}

fn resolve(
    state: &State,
    controller: Fingerprint,
    observed: std::net::SocketAddr,
    code: proto::AccessCode,
    lan_addrs: Vec<std::net::SocketAddr>,
    relay_only: bool,
) -> ServerMsg {
    let now = Instant::now();
    let prefix = prefix_of(observed);
    if !lock(&state.policy).allow_resolve(controller, prefix, now) {
        warn!(%code, %controller, %observed, "resolve refused: over the rate limit");
        return ServerMsg::Refused {
            reason: Refusal::RateLimited,
            message: "too many look-ups from this key or address; wait a little".into(),
        };
    }
    let online = lock(&state.online);
    let registry = lock(&state.registry);
    // Unknown, forgotten and offline codes answer alike.
    let (Some(rec), Some(host)) = (registry.get(&code), online.get(&code)) else {
        debug!(%code, %observed, "resolve of a code that is not online");
        return unavailable(code);
    };
    // One relay session per resolve: the host's ticket goes with the push, the controller's
    // with the answer. No relay to offer (full, capped, or its task down) means no session:
    // addresses are never handed out instead.
    let relay_port = state.relay_service.advertised();
    let tickets = match (&state.relay, relay_port) {
        (Some(relay), Some(port)) => {
            let owner = Owner {
                key: controller,
                prefix,
            };
            match lock(relay).allocate(now, owner) {
                Ok([h, c]) => Some((port, h, c)),
                Err(e) => {
                    warn!(%code, %controller, %observed, "resolve refused: {e}");
                    return ServerMsg::Refused {
                        reason: Refusal::Busy,
                        message: format!("{e}; try again later"),
                    };
                }
            }
        }
        (Some(_), None) => {
            warn!(%code, "resolve refused: the relay is down");
            return ServerMsg::Refused {
                reason: Refusal::Busy,
                message: "the relay is not running right now; try again later".into(),
            };
        }
        (None, _) => None,
    };
    // With a relay the peers meet there first and swap addresses only once the password is
    // proven (over their encrypted session). Only a rendezvous run without a relay, whose
    // operator chose that, hands them out here.
    let reveal = state.relay.is_none() && !relay_only;
    let push = ServerMsg::ConnectRequest {
        controller,
        candidates: if reveal {
            msg::candidates(Some(observed), &lan_addrs)
        } else {
            Vec::new()
        },
        relay: tickets.map(|(port, h, _)| RelayOffer { port, ticket: h }),
        source: source_tag(state, prefix),
    };
    if host.push.try_send(push).is_err() {
        warn!(%code, "host is not reading connect requests; dropped one");
    }
    info!(%code, %controller, %observed, relay = tickets.is_some(), relay_only, "resolved");
    ServerMsg::Resolved {
        host: rec.fingerprint,
        candidates: if reveal {
            host.candidates.clone()
        } else {
            Vec::new()
        },
        observed,
        stun_port: state.stun.advertised(),
        relay: tickets.map(|(port, _, c)| RelayOffer { port, ticket: c }),
    }
}
