//! The relay's tokio driver: reads with GRO, hands each segment to [`Relay`], forwards a batch of
//! one session's packets with one GSO send where the platform has them.
//!
//! Nothing a datagram holds can stop this loop: segments of any length (zero included) reach
//! the sans-IO core, which only ever drops or answers; socket errors are logged and the loop
//! goes on. The rendezvous also runs it under a supervisor that restarts it should it end.

use std::io::IoSliceMut;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quinn::udp::{RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;
use tracing::{debug, info, warn};

use super::{Action, Counters, Relay};

/// How often the relay logs its counters (when they changed).
const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Largest datagram the relay reads.
const MAX_DATAGRAM: usize = 2048;

fn lock(relay: &Mutex<Relay>) -> std::sync::MutexGuard<'_, Relay> {
    relay.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the relay on `socket` until the task is dropped (or the socket cannot be set up).
pub async fn serve(socket: Arc<tokio::net::UdpSocket>, relay: Arc<Mutex<Relay>>) {
    let socket = &*socket;
    let state = match UdpSocketState::new(socket.into()) {
        Ok(s) => s,
        Err(e) => {
            warn!("relay socket: {e}; the relay is off");
            return;
        }
    };
    let batch = quinn::udp::BATCH_SIZE.max(1);
    let segments = state.gro_segments().max(1);
    let mut storage = vec![0u8; batch * segments * MAX_DATAGRAM];
    let mut meta = vec![RecvMeta::default(); batch];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    let mut last_limit_warn: Option<Instant> = None;
    let mut actions = Vec::new();
    let mut report = Instant::now();
    let mut last_report = Counters::default();
    loop {
        tokio::select! {
            r = socket.readable() => if let Err(e) = r {
                warn!("relay socket: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            },
            _ = sweep.tick() => {
                let (closed, c) = {
                    let mut relay = lock(&relay);
                    (relay.sweep(Instant::now()), relay.counters())
                };
                if closed > 0 {
                    debug!(closed, "relay sessions closed (idle, or never bound by both sides)");
                }
                // A summary for the operator once a minute while anything moves.
                if report.elapsed() >= REPORT_EVERY && c != last_report {
                    report = Instant::now();
                    last_report = c;
                    info!(
                        active = c.sessions_active,
                        opened = c.sessions_opened,
                        refused = c.sessions_refused,
                        unbound = c.sessions_unbound,
                        mib_forwarded = c.bytes_forwarded >> 20,
                        dropped_limited = c.dropped_limited,
                        dropped_unknown = c.dropped_unknown,
                        dropped_unproven = c.dropped_unproven,
                        "relay"
                    );
                }
                continue;
            }
        }
        let n = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage
                .chunks_mut(segments * MAX_DATAGRAM)
                .map(IoSliceMut::new)
                .collect();
            match socket.try_io(Interest::READABLE, || {
                state.recv(socket.into(), &mut bufs, &mut meta)
            }) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => {
                    // ICMP errors from earlier sends surface here; keep serving.
                    debug!("relay recv: {e}");
                    continue;
                }
            }
        };
        for (m, chunk) in meta[..n]
            .iter()
            .zip(storage.chunks_mut(segments * MAX_DATAGRAM))
        {
            let len = m.len.min(chunk.len());
            let limited = forward(socket, &state, &relay, m, &mut chunk[..len], &mut actions).await;
            if limited {
                let now = Instant::now();
                if last_limit_warn.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                    last_limit_warn = Some(now);
                    warn!("relay: packets over a bandwidth limit are dropped");
                }
            }
        }
    }
}

/// What [`handle_buffer`] decided for one received buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The length the buffer was split at into segments; 0 for an empty buffer (no segment).
    pub stride: usize,
    /// Held datagrams a bind released, to send first.
    pub queued: Vec<(SocketAddr, Vec<u8>)>,
    /// Send the whole (rewritten) buffer to this address with one GSO send of `stride`-byte
    /// segments; otherwise each segment's [`Action`] on its own.
    pub whole: Option<SocketAddr>,
    /// Whether a bandwidth limit dropped some of it.
    pub limited: bool,
}

/// The driver's per-buffer step, sans-IO: splits a received buffer into its GRO segments
/// (`stride` as the socket reported it, 0 for a single datagram), hands each to the relay with
/// `from` and `now`, rewriting `buf` in place, and fills `actions` with one [`Action`] per
/// segment. A batch that goes whole to one address in at most `max_gso_segments` segments is
/// sent with one GSO send.
pub fn handle_buffer(
    relay: &mut Relay,
    now: Instant,
    from: SocketAddr,
    stride: usize,
    buf: &mut [u8],
    max_gso_segments: usize,
    actions: &mut Vec<Action>,
) -> Batch {
    actions.clear();
    // An empty datagram has no segment at all (and `chunks` of size 0 would panic).
    let stride = match stride {
        0 => buf.len(),
        s => s.min(buf.len()),
    };
    if stride == 0 {
        relay.count_malformed();
        return Batch::default();
    }
    let before = relay.dropped_limited();
    actions.extend(
        buf.chunks_mut(stride)
            .map(|seg| relay.on_datagram(now, from, seg)),
    );
    let queued = if relay.has_queued() {
        relay.take_queued()
    } else {
        Vec::new()
    };
    let limited = relay.dropped_limited() > before;
    // One session's batch, rewritten in place and unchanged in length: one GSO send.
    let whole = match actions.first() {
        Some(&Action::Send { to, .. }) if actions.len() > 1 => actions
            .iter()
            .zip(buf.chunks(stride))
            .all(|(a, seg)| *a == Action::Send { to, len: seg.len() })
            .then_some(to),
        _ => None,
    }
    .filter(|_| actions.len() <= max_gso_segments);
    Batch {
        stride,
        queued,
        whole,
        limited,
    }
}

/// Handles one received buffer (several segments of `meta.stride` bytes under GRO); returns
/// whether a bandwidth limit dropped some of it.
async fn forward(
    socket: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    relay: &Mutex<Relay>,
    meta: &RecvMeta,
    buf: &mut [u8],
    actions: &mut Vec<Action>,
) -> bool {
    let batch = handle_buffer(
        &mut lock(relay),
        Instant::now(),
        meta.addr,
        meta.stride,
        buf,
        state.max_gso_segments(),
        actions,
    );
    for (to, frame) in batch.queued {
        send(socket, state, to, &frame, None).await;
    }
    match batch.whole {
        Some(to) => send(socket, state, to, buf, Some(batch.stride)).await,
        None if batch.stride > 0 => {
            for (a, seg) in actions.iter().zip(buf.chunks(batch.stride)) {
                if let Action::Send { to, len } = *a {
                    send(socket, state, to, &seg[..len.min(seg.len())], None).await;
                }
            }
        }
        None => {}
    }
    batch.limited
}

async fn send(
    socket: &tokio::net::UdpSocket,
    state: &UdpSocketState,
    to: SocketAddr,
    contents: &[u8],
    segment_size: Option<usize>,
) {
    let transmit = Transmit {
        destination: to,
        ecn: None,
        contents,
        segment_size,
        src_ip: None,
    };
    loop {
        match socket.try_io(Interest::WRITABLE, || state.send(socket.into(), &transmit)) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if socket.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                debug!(%to, "relay send: {e}");
                return;
            }
        }
    }
}
