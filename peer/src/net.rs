//! The peer's one UDP socket and the QUIC endpoint on it.
//!
//! Every peer owns exactly one UDP socket: the rendezvous connection and the peer-to-peer
//! connection share it, so the address the rendezvous observes is the one the other peer is
//! told to use. (NAT traversal later adds STUN, punching and relaying on this same socket.)

use std::net::SocketAddr;
use std::sync::Arc;

/// Binds the peer's UDP socket and wraps it in a quinn endpoint. `server` is set on hosts, which
/// accept the controller's connection on the same socket they use to reach the rendezvous.
pub fn endpoint(
    bind: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(bind)?;
    let runtime: Arc<dyn quinn::Runtime> = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no tokio runtime is running"))?;
    quinn::Endpoint::new(rendezvous::quic::endpoint_config(), server, socket, runtime)
}

/// The TLS exporter of a connection, for binding the password proof to it.
pub fn exporter(conn: &quinn::Connection) -> Result<[u8; crate::auth::EXPORTER_LEN], crate::Error> {
    let mut out = [0u8; crate::auth::EXPORTER_LEN];
    conn.export_keying_material(&mut out, crate::auth::EXPORTER_LABEL, b"")
        .map_err(|_| crate::Error::Protocol("tls exporter unavailable"))?;
    Ok(out)
}
