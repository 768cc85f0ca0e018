//! `rendezvous health`: whether the server that these settings describe answers, as a peer
//! would find it: a QUIC handshake with its QUIC port that proves the server's key (the one in
//! the data directory). For container health checks and monitoring scripts; exit status 0 when
//! it answered, 1 otherwise with the reason. Part of the binary.
//!
//! It never creates a key: a data directory without one has had no server, which is an
//! unhealthy answer, not a new identity.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use certs::Identity;
use proto::rendezvous::ALPN;

/// How long the handshake may take.
const WITHIN: Duration = Duration::from_secs(5);

/// Checks the server at `listen` (a wildcard address means this machine's loopback) whose data
/// directory is `data_dir`; what to print when it answered.
pub(crate) fn health(listen: SocketAddr, data_dir: &Path) -> anyhow::Result<String> {
    if !rendezvous::server::identity_file(data_dir).exists() {
        bail!(
            "no server key in {}: no server has run with this data directory",
            data_dir.display()
        );
    }
    let key = rendezvous::server::identity(data_dir)
        .with_context(|| format!("reading the server's key in {}", data_dir.display()))?
        .fingerprint();
    let target = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let took = rt.block_on(handshake(target, key))?;
    Ok(format!(
        "healthy: {target} answered with this server's key ({key}) in {} ms",
        took.as_millis()
    ))
}

async fn handshake(target: SocketAddr, key: certs::Fingerprint) -> anyhow::Result<Duration> {
    let me = Identity::ephemeral()?;
    let cfg = proto::quic::client_config(&me, key, ALPN, proto::quic::Role::RendezvousClient)?;
    let bind: SocketAddr = if target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind).context("opening a UDP socket")?;
    endpoint.set_default_client_config(cfg);
    let start = Instant::now();
    let connecting = endpoint
        .connect(target, "quicdesk.invalid")
        .with_context(|| format!("connecting to {target}"))?;
    let conn = match tokio::time::timeout(WITHIN, connecting).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => bail!("{target} did not complete a handshake with this server's key: {e}"),
        Err(_) => bail!("{target} did not answer within {} s", WITHIN.as_secs()),
    };
    let took = start.elapsed();
    conn.close(0u32.into(), b"health check");
    // The close sent (not waited on past a second: the answer is already known).
    let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    Ok(took)
}
