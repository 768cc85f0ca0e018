//! quinn configuration from a [`certs::Identity`]: the same settings for every quicdesk endpoint.

use std::sync::Arc;
use std::time::Duration;

use certs::{Fingerprint, Identity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

/// Keep-alive interval: below the usual 30 s UDP timeout of NATs, so mappings stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
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

fn transport() -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(KEEP_ALIVE));
    // IDLE_TIMEOUT is a small constant that fits the VarInt range
    t.max_idle_timeout(Some(
        IDLE_TIMEOUT.try_into().expect("idle timeout in range"),
    ));
    // Video streams come and go (one per group of pictures); leave room for bursts.
    t.max_concurrent_uni_streams(256u32.into());
    t.max_concurrent_bidi_streams(64u32.into());
    Arc::new(t)
}

/// A client configuration presenting `identity` and pinning the server key `pinned`.
pub fn client_config(
    identity: &Identity,
    pinned: Fingerprint,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, ConfigError> {
    let tls = identity.client_config(pinned, alpn)?;
    let quic = QuicClientConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// A server configuration presenting `identity`; clients must prove a key of their own.
pub fn server_config(
    identity: &Identity,
    alpn: &[&[u8]],
) -> Result<quinn::ServerConfig, ConfigError> {
    let tls = identity.server_config(alpn)?;
    let quic = QuicServerConfig::try_from(tls).map_err(|e| ConfigError::Quic(e.to_string()))?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(quic));
    cfg.transport_config(transport());
    Ok(cfg)
}

/// Endpoint settings shared by every quicdesk socket. QUIC-bit greasing is off so the first
/// bits of a datagram tell QUIC from STUN on a shared socket (RFC 9443).
pub fn endpoint_config() -> quinn::EndpointConfig {
    let mut cfg = quinn::EndpointConfig::default();
    cfg.grease_quic_bit(false);
    cfg
}

/// Like [`endpoint_config`], with a stateless-reset key that survives restarts: after a server
/// restart, peers still holding a connection to the old process get a valid stateless reset at
/// their next packet and reconnect at once, instead of waiting for the idle timeout.
pub fn endpoint_config_with_reset_key(secret: &[u8; 32]) -> quinn::EndpointConfig {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut cfg = quinn::EndpointConfig::new(std::sync::Arc::new(key));
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
