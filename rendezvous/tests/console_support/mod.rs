//! An HTTPS client for the console tests that behaves as an attacker's script would (any
//! header, any cookie, any origin), over TLS that pins the console's key: the self-signed
//! certificate is made from the rendezvous's key, so the pinned fingerprint is the server's.

// Shared by two test targets, each of which uses a part.
#![allow(dead_code)]
pub mod rig;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;

/// A response, whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// A client of one console.
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Client {
    pub fn new(addr: SocketAddr, server: certs::Fingerprint) -> Self {
        let id = certs::Identity::ephemeral().unwrap();
        let tls = id.client_config(server, b"http/1.1").unwrap();
        Self {
            addr,
            tls: Arc::new(tls),
        }
    }

    /// One request on a fresh connection: `headers` as given (a cookie, a CSRF token, an
    /// origin), `body` as JSON when it is not empty.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .expect("TLS to the console, its key pinned");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let res = sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", path, headers, "").await
    }
}

/// A logged-in browser session: its cookie header and CSRF token.
#[derive(Debug, Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

impl Session {
    /// The headers of a request that changes something, as the console's script sends them.
    pub fn changing(&self) -> [(&str, &str); 2] {
        [
            ("cookie", self.cookie.as_str()),
            ("x-csrf-token", self.csrf.as_str()),
        ]
    }

    pub fn reading(&self) -> [(&str, &str); 1] {
        [("cookie", self.cookie.as_str())]
    }
}

pub async fn log_in(c: &Client, user: &str, password: &str) -> Result<Session, Answer> {
    let a = c
        .send(
            "POST",
            "/api/v1/login",
            &[],
            &serde_json::json!({ "user": user, "password": password }).to_string(),
        )
        .await;
    if a.status != 200 {
        return Err(a);
    }
    let cookie = a.header("set-cookie").split(';').next().unwrap().to_owned();
    Ok(Session {
        cookie,
        csrf: a.json()["csrf"].as_str().unwrap().to_owned(),
    })
}

impl Client {
    /// A streaming GET (server-sent events): the status, and the body's text as it arrives.
    pub async fn stream(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder()
            .uri(path)
            .header("host", format!("localhost:{}", self.addr.port()));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = sender
            .send_request(req.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let status = res.status().as_u16();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut body = res.into_body();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data()
                    && tx
                        .send(String::from_utf8_lossy(&data).into_owned())
                        .is_err()
                {
                    return;
                }
            }
        });
        (status, rx)
    }
}
