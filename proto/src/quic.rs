//! quinn configuration from a [`certs::Identity`]: the same settings for every quicdesk endpoint.

use std::sync::Arc;
use std::time::Duration;

use certs::{Fingerprint, Identity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// Keep-alive interval: below the usual 30 s UDP timeout of NATs, so mappings stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Keep-alive of a peer's connection to the rendezvous, shorter than [`KEEP_ALIVE`]: a
/// rendezvous that crashed and came back (no close was ever sent) answers the next keep-alive
/// with a stateless reset, so a host notices within this long and registers again; and a
/// silent rendezvous is noticed soon after (a live one acknowledges every keep-alive). It costs
/// a live rendezvous one small packet each way per host this often.
pub const RENDEZVOUS_KEEP_ALIVE: Duration = Duration::from_secs(4);
/// A connection silent for this long is considered dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(45);

/// Errors building QUIC configurations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(transparent)]
    Certs(#[from] certs::Error),
    #[error("tls config unusable for quic: {0}")]
    Quic(String),
}

/// Which side of which protocol a configuration is for: each opens only the streams and flow
/// control its protocol needs, so a stranger's connection costs little before it has proven
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// The rendezvous serving peers: a few request streams at once, messages of at most
    /// [`crate::rendezvous::MAX_MSG_LEN`].
    Rendezvous,
    /// A peer's connection to the rendezvous: the server opens no stream, pushes are small.
    RendezvousClient,
    /// A host serving controllers. Until the controller has proven the password: one control
    /// stream and a small window; then [`widen_after_auth`] lets input streams in.
    Host,
    /// A controller's connection to a host. Until the host has accepted the password: nothing
    /// but answers on the control stream; then [`widen_after_auth`] lets video in.
    Controller,
}

const KIB: u32 = 1024;

fn transport(role: Role) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(match role {
        Role::RendezvousClient => RENDEZVOUS_KEEP_ALIVE,
        _ => KEEP_ALIVE,
    }));
    // IDLE_TIMEOUT is a small constant that fits the VarInt range
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT.try_into().expect("idle timeout in range"),
    ));
    // No QUIC datagrams anywhere: nothing would read them.
    t.datagram_receive_buffer_size(None);
    // (bidirectional streams, unidirectional streams, window per stream, window per connection)
    let (bidi, uni, stream_window, conn_window) = match role {
        Role::Rendezvous => (4u32, 0u32, 32 * KIB, 128 * KIB),
        Role::RendezvousClient => (0, 0, 32 * KIB, 64 * KIB),
        Role::Host => (1, 0, 64 * KIB, 32 * KIB),
        // A whole key frame may sit on one video stream: its window is wide, the connection's
        // is not until the host is authenticated.
        Role::Controller => (0, 0, 4096 * KIB, 64 * KIB),
    };
    t.max_concurrent_bidi_streams(bidi.into());
    t.max_concurrent_uni_streams(uni.into());
    t.stream_receive_window(stream_window.into());
    t.receive_window(conn_window.into());
    Arc::new(t)
}

/// Opens a peer connection up for the session once the other side is authenticated: the host
/// accepts input streams, the controller video streams (one per group of pictures, so several
/// may overlap while an old one is reset).
pub fn widen_after_auth(conn: &quinn::Connection, role: Role) {
    match role {
        Role::Host => {
            conn.set_max_concurrent_uni_streams(4u32.into());
            conn.set_receive_window((256 * KIB).into());
        }
        Role::Controller => {
            conn.set_max_concurrent_uni_streams(16u32.into());
            conn.set_receive_window((16 * 1024 * KIB).into());
        }
        Role::Rendezvous | Role::RendezvousClient => {}
    }
}

/// A client configuration presenting `identity` and pinning the server key `pinned`.
pub fn client_config(
    identity: &Identity,
    pinned: Fingerprint,
    alpn: &[u8],
    role: Role,
) -> Result<quinn::ClientConfig, ConfigError> {
    let tls = identity.client_config(pinned, alpn)?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport(role));
    Ok(cfg)
}

/// A server configuration presenting `identity`; clients must prove a key of their own.
pub fn server_config(
    identity: &Identity,
    alpn: &[&[u8]],
    role: Role,
) -> Result<quinn::ServerConfig, ConfigError> {
    server_config_with(identity.server_config(alpn)?, role)
}

/// A server configuration from a prepared TLS configuration (e.g. one whose client verifier
/// admits only expected keys).
pub fn server_config_with(
    tls: rustls::ServerConfig,
    role: Role,
) -> Result<quinn::ServerConfig, ConfigError> {
    let quic = QuicServerConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport(role));
    // Handshakes not yet accepted: few, and little buffered for them.
    cfg.max_incoming(1024);
    cfg.incoming_buffer_size(16 * 1024);
    cfg.incoming_buffer_size_total(4 * 1024 * 1024);
    Ok(cfg)
}

/// Endpoint settings shared by every quicdesk socket. QUIC-bit greasing is off so the first
/// bits of a datagram tell QUIC from STUN on a shared socket (RFC 9443).
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::default();
    cfg.grease_quic_bit(false);
    cfg
}

/// Like [`endpoint_config`], with a stateless-reset key and connection IDs that survive
/// restarts: after a server restart, peers still holding a connection to the old process get a
/// valid stateless reset at their next packet and reconnect at once, instead of waiting for the
/// idle timeout. Both come from `secret`: the reset tokens (HMAC-SHA256 of the connection ID),
/// and the key of quinn's connection-ID check, without which the new process would take the old
/// IDs for garbage and drop the packets unanswered.
pub fn endpoint_config_with_reset_key(secret: &[u8; 32]) -> quinn::EndpointConfig {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let cid_key = ring::hmac::sign(&key, b"quicdesk connection-id key");
    let cid_key = u64::from_le_bytes(cid_key.as_ref()[..8].try_into().unwrap_or([0; 8]));
    let mut cfg = quinn::EndpointConfig::new(std::sync::Arc::new(key));
    cfg.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    cfg.grease_quic_bit(false);
    cfg
}

/// The fingerprint of the key the remote side proved during the handshake.
pub fn remote_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let chain = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    certs::peer_fingerprint(&chain).ok()
}

/// Closes `conn` and waits (at most `within`) until its CONNECTION_CLOSE frame has been put on
/// the wire, so the peer learns of the end at once instead of after its idle timeout. Callers
/// whose packets go through a route that they are about to tear down (a relay session, a
/// punched path) must close this way before dropping the route.
pub async fn close_and_flush(
    conn: &quinn::Connection,
    code: u32,
    reason: &[u8],
    within: std::time::Duration,
) {
    if conn.close_reason().is_some() {
        return; // closed already (by the peer, a timeout or us): nothing more to send
    }
    // quinn-proto 0.11.19 does not count the CONNECTION_CLOSE frames it sends in `frame_tx`:
    // after `close` only close packets leave, so a datagram sent after this point is one.
    let before = conn.stats().udp_tx.datagrams;
    let sent = || {
        let stats = conn.stats();
        stats.frame_tx.connection_close > 0 || stats.udp_tx.datagrams > before
    };
    conn.close(code.into(), reason);
    let deadline = tokio::time::Instant::now() + within;
    while !sent() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // The frame is counted when the packet is built; the driver hands it to the socket next.
    tokio::task::yield_now().await;
}
