//! A running rendezvous with its console and three users, and raw QUIC hosts and relay
//! sockets to put live data in front of it (the console and browser tests).

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use certs::Identity;
use proto::rendezvous::{ALPN, ClientMsg, MAX_MSG_LEN, ServerMsg};
use proto::{AccessCode, quic, relay, wire};
use rendezvous::console::{self, Role};
use rendezvous::server::{self, Server};

use super::Client;

pub const ANN: (&str, &str) = ("ann", "Correct-Horse-Battery-9");
pub const OLGA: (&str, &str) = ("olga", "Operator-Staple-Lamp-41");
pub const AUDREY: (&str, &str) = ("audrey", "Read-Only-Ledger-Fern-7");

pub struct Rig {
    pub client: Client,
    pub rv: SocketAddr,
    pub relay: SocketAddr,
    pub fingerprint: certs::Fingerprint,
    pub logins: console::LoginCounters,
    /// The server's data directory.
    pub dir: std::path::PathBuf,
    _closer: server::Closer,
    _dir: tempfile::TempDir,
}

pub async fn start() -> Rig {
    start_with(|_| ()).await
}

/// [`start`], with an access mode (and a relay cap per account).
pub async fn start_access(access: rendezvous::core::AccessMode, per_account: usize) -> Rig {
    start_full(|_| (), access, per_account).await
}

/// [`start`], with `prepare` run on the data directory first (e.g. to fill the registry).
pub async fn start_with(prepare: impl FnOnce(&std::path::Path)) -> Rig {
    start_full(prepare, rendezvous::core::AccessMode::Open, 0).await
}

async fn start_full(
    prepare: impl FnOnce(&std::path::Path),
    access: rendezvous::core::AccessMode,
    per_account: usize,
) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    for ((name, pw), role) in
        [ANN, OLGA, AUDREY]
            .into_iter()
            .zip([Role::Admin, Role::Operator, Role::Auditor])
    {
        console::add_user(dir.path(), name, role, pw).unwrap();
    }
    let ip: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut cfg = server::Config::new(ip, dir.path().to_path_buf());
    cfg.relay = Some(server::RelayConfig {
        listen: ip,
        limits: rendezvous::relay::Limits::default(),
    });
    cfg.access = access;
    cfg.relay_sessions_per_account = Some(per_account).filter(|&n| n > 0);
    let server = Server::bind(&cfg).unwrap();
    let logins = console::LoginCounters::default();
    let bound = console::bind(
        &console::Config {
            listen: ip,
            certificate: console::Certificate::SelfSigned {
                names: vec!["localhost".into()],
            },
        },
        dir.path(),
        console::Handles {
            admin: server.admin(),
            stun: server.stun_counters(),
            logins: logins.clone(),
        },
    )
    .await
    .unwrap();
    let closer = server.closer();
    let rig = Rig {
        client: Client::new(bound.local_addr, server.fingerprint()),
        rv: server.local_addr().unwrap(),
        relay: server.relay_addr().unwrap(),
        fingerprint: server.fingerprint(),
        logins,
        _closer: closer.clone(),
        dir: dir.path().to_path_buf(),
        _dir: dir,
    };
    let mut closed = closer.subscribe();
    tokio::spawn(bound.serve(async move {
        let _ = closed.wait_for(|c| *c).await;
    }));
    tokio::spawn(server.run());
    rig
}

/// A host as a raw QUIC client: its own key, registering by hand.
pub struct Host {
    endpoint: quinn::Endpoint,
    conn: quinn::Connection,
}

impl Host {
    pub async fn connect(rig: &Rig) -> Self {
        Self::with_key(rig, Identity::ephemeral().unwrap()).await
    }

    pub async fn with_key(rig: &Rig, id: Identity) -> Self {
        Self::with_key_from(rig, id, "127.0.0.1").await
    }

    /// From another loopback address (each address may hold only so many connections).
    pub async fn with_key_from(rig: &Rig, id: Identity, source: &str) -> Self {
        let cfg =
            quic::client_config(&id, rig.fingerprint, ALPN, quic::Role::RendezvousClient).unwrap();
        let mut endpoint = quinn::Endpoint::client(format!("{source}:0").parse().unwrap()).unwrap();
        endpoint.set_default_client_config(cfg);
        let conn = endpoint
            .connect(rig.rv, "quicdesk.invalid")
            .unwrap()
            .await
            .unwrap();
        Self { endpoint, conn }
    }

    /// Moves to a new socket bound at `source` (as a network change or a NAT rebinding does):
    /// the connection goes on from there.
    pub fn rebind(&self, source: &str) {
        let socket = UdpSocket::bind(format!("{source}:0")).unwrap();
        self.endpoint.rebind(socket).unwrap();
    }

    /// The address the host sends from now.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Sends one request on a new stream; the first answer and the stream.
    pub async fn ask(&self, msg: &ClientMsg) -> (ServerMsg, quinn::SendStream, quinn::RecvStream) {
        let (mut send, mut recv) = self.conn.open_bi().await.unwrap();
        send.write_all(&wire::encode(msg, MAX_MSG_LEN).unwrap())
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            wire::read_msg::<ServerMsg, _>(&mut recv, MAX_MSG_LEN),
        )
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
        (answer, send, recv)
    }

    /// Presents an enrollment token; the answer.
    pub async fn enroll(&self, token: &str) -> ServerMsg {
        self.ask(&ClientMsg::Enroll {
            token: token.to_owned(),
        })
        .await
        .0
    }

    /// Looks `code` up; the answer.
    pub async fn resolve(&self, code: AccessCode) -> ServerMsg {
        self.ask(&ClientMsg::Resolve {
            code,
            lan_addrs: Vec::new(),
            relay_only: true,
        })
        .await
        .0
    }

    /// Registers; the answer and the registration's stream.
    pub async fn register(&self) -> (ServerMsg, quinn::SendStream, quinn::RecvStream) {
        let (mut send, mut recv) = self.conn.open_bi().await.unwrap();
        let msg = ClientMsg::Register {
            lan_addrs: Vec::new(),
        };
        send.write_all(&wire::encode(&msg, MAX_MSG_LEN).unwrap())
            .await
            .unwrap();
        let answer = tokio::time::timeout(
            Duration::from_secs(5),
            wire::read_msg::<ServerMsg, _>(&mut recv, MAX_MSG_LEN),
        )
        .await
        .expect("an answer in time")
        .unwrap()
        .expect("an answer");
        (answer, send, recv)
    }
}

pub fn code_of(answer: &ServerMsg) -> AccessCode {
    match answer {
        ServerMsg::Registered { code, .. } => *code,
        other => panic!("registration refused: {other:?}"),
    }
}

/// Relays `payload` from `from` (bound with its ticket) towards the other side; whether the
/// other side's socket got it.
pub fn relays(from: &UdpSocket, to: &UdpSocket, relay: SocketAddr, token: relay::Token) -> bool {
    let frame = [&relay::data_header(token)[..], b"screen bytes"].concat();
    from.send_to(&frame, relay).unwrap();
    to.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 256];
    matches!(to.recv_from(&mut buf), Ok((n, _)) if buf[..n].ends_with(b"screen bytes"))
}

pub fn bind(socket: &UdpSocket, relay: SocketAddr, ticket: &relay::Ticket) {
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
        .send_to(&relay::bind_frame(ticket, 1), relay)
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = socket
        .recv_from(&mut buf)
        .expect("the relay answers a bind");
    assert!(matches!(
        relay::parse(&buf[..n]),
        Ok(relay::Frame::Bound { .. })
    ));
}

/// A controller looks `code` up (relay only); both sides bind their relay tickets from UDP
/// sockets of their own: the host's and the controller's socket and tickets, ready to relay.
/// `pushes` is the host's registration stream, which gets the connect request.
pub async fn relayed_session(
    rig: &Rig,
    code: AccessCode,
    pushes: &mut quinn::RecvStream,
) -> (UdpSocket, UdpSocket, relay::Ticket, relay::Ticket) {
    let controller = Host::connect(rig).await;
    let (ServerMsg::Resolved { relay: Some(c), .. }, ..) = controller
        .ask(&ClientMsg::Resolve {
            code,
            lan_addrs: Vec::new(),
            relay_only: true,
        })
        .await
    else {
        panic!("no relay offered");
    };
    let push = wire::read_msg::<ServerMsg, _>(pushes, MAX_MSG_LEN)
        .await
        .unwrap()
        .unwrap();
    let ServerMsg::ConnectRequest { relay: Some(h), .. } = push else {
        panic!("{push:?}");
    };
    let (hs, cs) = (
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        UdpSocket::bind("127.0.0.1:0").unwrap(),
    );
    bind(&hs, rig.relay, &h.ticket);
    bind(&cs, rig.relay, &c.ticket);
    (hs, cs, h.ticket, c.ticket)
}
