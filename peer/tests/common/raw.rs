//! A hostile controller written by hand: quinn with its own key, the session's frames encoded
//! one by one, the password proof done with the protocol's public algorithm; and a hostile
//! host's raw QUIC server. Used by the attack suite, the relay suite's look-up by a stranger and
//! the guessing benchmark.

use std::net::SocketAddr;
use std::time::Duration;

use certs::{Fingerprint, Identity};
use proto::session::{
    ALPN, ControlMsg, MAX_CONTROL_LEN, MAX_VIDEO_FRAME_LEN, StreamKind, VERSION, VideoHeader,
};
use proto::{AccessCode, quic, wire};

/// A hostile controller: its own key, its own socket on `source`.
pub struct Attacker {
    pub id: Identity,
    pub endpoint: quinn::Endpoint,
}

impl Attacker {
    pub fn new(source: &str) -> Self {
        Self {
            id: Identity::ephemeral().unwrap(),
            endpoint: quinn::Endpoint::client(format!("{source}:0").parse().unwrap()).unwrap(),
        }
    }

    /// Looks `code` up as a controller does (so the rendezvous announces this key to the host):
    /// what the rendezvous answers.
    pub async fn resolve(
        &self,
        rv: (SocketAddr, Fingerprint),
        code: AccessCode,
    ) -> Result<proto::client::Resolved, String> {
        let cfg = quic::client_config(
            &self.id,
            rv.1,
            proto::rendezvous::ALPN,
            quic::Role::RendezvousClient,
        )
        .map_err(|e| e.to_string())?;
        let conn = self
            .endpoint
            .connect_with(cfg, rv.0, "quicdesk.invalid")
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let r = proto::client::resolve(&conn, code, Vec::new(), false).await;
        conn.close(0u32.into(), b"");
        r.map_err(|e| e.to_string())
    }

    /// [`Self::resolve`], then the host's key and address (the rendezvous must run without a
    /// relay, so that it hands them out).
    pub async fn look_up(
        &self,
        rv: (SocketAddr, Fingerprint),
        code: AccessCode,
    ) -> Result<(Fingerprint, SocketAddr), String> {
        let r = self.resolve(rv, code).await?;
        let addr = *r.candidates.first().ok_or("no address handed out")?;
        Ok((r.host, addr))
    }

    /// [`Self::look_up`], then [`Self::dial`] the host: a connection the host expects.
    pub async fn reach(
        &self,
        rv: (SocketAddr, Fingerprint),
        code: AccessCode,
    ) -> Result<quinn::Connection, String> {
        let (host, addr) = self.look_up(rv, code).await?;
        self.dial(host, addr).await
    }

    pub async fn dial(
        &self,
        host: Fingerprint,
        addr: SocketAddr,
    ) -> Result<quinn::Connection, String> {
        let cfg = quic::client_config(&self.id, host, ALPN, quic::Role::Controller)
            .map_err(|e| e.to_string())?;
        // On loopback the dial can beat the rendezvous's announcement to the host, which then
        // refuses the key it was not told of yet (TLS 1.3: the client learns it after its own
        // handshake is done). That race is not what these tests are about: dial again a few
        // times while the refusal is that one.
        let mut tries = 0;
        loop {
            let conn = self
                .endpoint
                .connect_with(cfg.clone(), addr, "quicdesk.invalid")
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let refused = tokio::time::timeout(Duration::from_millis(100), conn.closed())
                .await
                .is_ok_and(|e| e.to_string().contains("invalid peer certificate"));
            tries += 1;
            if !refused || tries == 5 {
                return Ok(conn);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One input event as the input stream carries it: a length-prefixed frame of `input`'s
/// encoding.
pub fn input_frame(event: &input::InputEvent) -> Vec<u8> {
    let b = input::encode(event);
    [&(b.len() as u32).to_be_bytes()[..], &b].concat()
}

/// A hostile host: a raw QUIC server on 127.0.0.1 with the key `id`, speaking the session's
/// protocol as a host does.
pub fn host_endpoint(id: &Identity) -> quinn::Endpoint {
    let cfg = quic::server_config(id, &[ALPN], quic::Role::Host).unwrap();
    quinn::Endpoint::server(cfg, "127.0.0.1:0".parse().unwrap()).unwrap()
}

/// Opens the control stream, says Hello and introduces itself (without a name), as every
/// controller begins.
pub async fn hello(
    conn: &quinn::Connection,
) -> Result<(quinn::SendStream, quinn::RecvStream), quinn::ConnectionError> {
    let (mut s, r) = conn.open_bi().await?;
    send(&mut s, &ControlMsg::Hello { version: VERSION }).await;
    send(&mut s, &ControlMsg::Introduce { name: "".into() }).await;
    Ok((s, r))
}

/// Writes one control message; a failed write shows as a missing answer.
pub async fn send(s: &mut quinn::SendStream, msg: &ControlMsg) {
    let _ = s
        .write_all(&wire::encode(msg, MAX_CONTROL_LEN).unwrap())
        .await;
}

/// The host's next control message, passing over what only says how it decides (`Access`)
/// and what it grants (`Granted`), which come before the challenge and the welcome.
pub async fn read(r: &mut quinn::RecvStream) -> Option<ControlMsg> {
    loop {
        match read_raw(r).await? {
            ControlMsg::Access { .. } | ControlMsg::Granted(_) => continue,
            other => return Some(other),
        }
    }
}

/// The host's next control message, whatever it is.
pub async fn read_raw(r: &mut quinn::RecvStream) -> Option<ControlMsg> {
    tokio::time::timeout(
        Duration::from_secs(5),
        wire::read_msg::<ControlMsg, _>(r, MAX_CONTROL_LEN),
    )
    .await
    .ok()?
    .ok()?
}

/// Proves `password` on a raw control stream, as a correct controller would.
pub async fn prove(
    conn: &quinn::Connection,
    password: &str,
) -> (quinn::SendStream, quinn::RecvStream, Option<ControlMsg>) {
    let (mut s, mut r) = hello(conn).await.unwrap();
    let (kdf, spake) = match read(&mut r).await {
        Some(ControlMsg::Challenge { kdf, spake }) => (kdf, spake),
        other => panic!(
            "no challenge, got {other:?} (connection: {:?})",
            conn.close_reason()
        ),
    };
    let exporter = peer::net::exporter(conn).unwrap();
    let secret = peer::password::derive(&kdf, password).unwrap();
    let keys = peer::auth::ControllerAuth::start(&secret, exporter)
        .finish(&spake)
        .unwrap();
    send(
        &mut s,
        &ControlMsg::Auth {
            spake: keys.spake_c.clone(),
            confirm: keys.confirm,
        },
    )
    .await;
    let verdict = read(&mut r).await;
    (s, r, verdict)
}

/// One password attempt on a fresh connection: the host's answer (a denial before the
/// challenge, or its verdict on the proof), or why there was none.
pub async fn guess(conn: &quinn::Connection, password: &str) -> Result<ControlMsg, String> {
    let (mut s, mut r) = hello(conn).await.map_err(|e| e.to_string())?;
    let (kdf, spake) = match read(&mut r).await {
        Some(ControlMsg::Challenge { kdf, spake }) => (kdf, spake),
        Some(other) => return Ok(other),
        None => return Err("no answer to Hello".into()),
    };
    let exporter = peer::net::exporter(conn).map_err(|e| e.to_string())?;
    let secret = peer::password::derive(&kdf, password).map_err(|e| e.to_string())?;
    let keys = peer::auth::ControllerAuth::start(&secret, exporter)
        .finish(&spake)
        .map_err(|e| e.to_string())?;
    let auth = ControlMsg::Auth {
        spake: keys.spake_c.clone(),
        confirm: keys.confirm,
    };
    send(&mut s, &auth).await;
    read(&mut r).await.ok_or_else(|| "no verdict".into())
}

/// Accepts the host's video streams on `conn` (after `quic::widen_after_auth`) and reads them
/// as a controller would, collecting each frame's header; stops with the connection.
pub fn read_video(
    conn: &quinn::Connection,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<VideoHeader>>>,
    tokio::task::JoinHandle<()>,
) {
    let frames = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (conn, seen) = (conn.clone(), frames.clone());
    let task = tokio::spawn(async move {
        while let Ok(mut video) = conn.accept_uni().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut kind = [0u8; 1];
                if video.read_exact(&mut kind).await.is_err() {
                    return; // a group of pictures superseded before it began
                }
                assert_eq!(kind[0], StreamKind::Video as u8);
                while let Ok(Some(body)) = wire::read_frame(&mut video, MAX_VIDEO_FRAME_LEN).await {
                    let header = VideoHeader::decode(&body).expect("the host's header").0;
                    seen.lock().unwrap().push(header);
                }
            });
        }
    });
    (frames, task)
}
