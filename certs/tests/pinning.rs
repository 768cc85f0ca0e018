//! Real QUIC handshakes on loopback: the pinned key is accepted, any other is refused.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use certs::{Fingerprint, Identity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

const ALPN: &[u8] = b"quicdesk-test";

fn server(id: &Identity) -> quinn::Endpoint {
    let tls = id.server_config(&[ALPN]).unwrap();
    let cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap()
}

async fn connect(
    client: &Identity,
    pinned: Fingerprint,
    addr: SocketAddr,
) -> Result<quinn::Connection, quinn::ConnectionError> {
    let tls = client.client_config(pinned, ALPN).unwrap();
    let cfg = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls).unwrap()));
    let ep = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    ep.connect_with(cfg, addr, "quicdesk.invalid")
        .unwrap()
        .await
}

#[tokio::test]
async fn pinned_fingerprint_connects_and_both_sides_learn_keys() {
    let server_id = Identity::ephemeral().unwrap();
    let client_id = Identity::ephemeral().unwrap();
    let ep = server(&server_id);
    let addr = ep.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let conn = ep.accept().await.unwrap().await.unwrap();
        let chain = conn
            .peer_identity()
            .unwrap()
            .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
            .unwrap();
        certs::peer_fingerprint(&chain).unwrap()
    });
    let conn = connect(&client_id, server_id.fingerprint(), addr)
        .await
        .expect("pinned key must be accepted");
    let chain = conn
        .peer_identity()
        .unwrap()
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .unwrap();
    assert_eq!(
        certs::peer_fingerprint(&chain).unwrap(),
        server_id.fingerprint()
    );
    assert_eq!(accept.await.unwrap(), client_id.fingerprint());
}

#[tokio::test]
async fn wrong_fingerprint_is_refused() {
    let server_id = Identity::ephemeral().unwrap();
    let other = Identity::ephemeral().unwrap();
    let client_id = Identity::ephemeral().unwrap();
    let ep = server(&server_id);
    let addr = ep.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            let _ = inc.await;
        }
    });
    let err = connect(&client_id, other.fingerprint(), addr)
        .await
        .expect_err("a server holding another key must be refused");
    let text = err.to_string();
    assert!(
        text.contains("certificate") || text.contains("crypto"),
        "unexpected error: {text}"
    );
}
