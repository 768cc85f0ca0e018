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

#[tokio::test]
async fn a_server_expecting_clients_admits_each_announced_key_once_and_no_other() {
    let server_id = Identity::ephemeral().unwrap();
    let expected = certs::ExpectedClients::default();
    let tls = server_id
        .server_config_expecting(&[ALPN], expected.clone())
        .unwrap();
    let cfg = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls).unwrap()));
    let ep = quinn::Endpoint::server(cfg, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    let addr = ep.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            tokio::spawn(async move {
                if let Ok(conn) = inc.await {
                    conn.closed().await;
                }
            });
        }
    });
    let stranger = Identity::ephemeral().unwrap();
    let announced = Identity::ephemeral().unwrap();
    let soon = std::time::Instant::now() + std::time::Duration::from_secs(30);
    expected.expect(announced.fingerprint(), soon);

    assert_refused(connect(&stranger, server_id.fingerprint(), addr).await).await;
    let conn = connect(&announced, server_id.fingerprint(), addr)
        .await
        .expect("the announced key is admitted");
    let mut s = conn.open_uni().await.unwrap();
    s.write_all(b"x").await.unwrap();
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(300), conn.closed())
            .await
            .is_err(),
        "the admitted connection stays up"
    );
    conn.close(0u32.into(), b"");
    assert_refused(connect(&announced, server_id.fingerprint(), addr).await).await;
    // An announcement that ran out admits nothing.
    expected.expect(
        announced.fingerprint(),
        std::time::Instant::now() - std::time::Duration::from_millis(1),
    );
    assert_refused(connect(&announced, server_id.fingerprint(), addr).await).await;
}

/// A TLS 1.3 client finishes its side of the handshake before the server has judged its
/// certificate, so a refusal arrives as the connection's close, with the TLS alert.
async fn assert_refused(conn: Result<quinn::Connection, quinn::ConnectionError>) {
    let err = match conn {
        Err(e) => e,
        Ok(conn) => tokio::time::timeout(std::time::Duration::from_secs(5), conn.closed())
            .await
            .expect("a refused client is closed at once"),
    };
    assert!(err.to_string().contains("certificate"), "{err}");
}
