//! The peer side of the rendezvous protocol: register a host, resolve a code.

use std::net::SocketAddr;

use certs::Fingerprint;

use crate::code::AccessCode;
use crate::rendezvous::{ClientMsg, MAX_MSG_LEN, Refusal, ServerMsg};
use crate::wire::{self, WireError};

/// Errors talking to the rendezvous.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    #[error("rendezvous refused: {reason}: {message}")]
    Refused { reason: Refusal, message: String },
    #[error("rendezvous connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("rendezvous protocol: {0}")]
    Wire(#[from] WireError),
    #[error("rendezvous closed the stream without answering")]
    NoAnswer,
    #[error("rendezvous sent an unexpected message")]
    Unexpected,
}

/// A host's live registration: the server pushes connect requests down it.
#[derive(Debug)]
pub struct Registration {
    /// The code the rendezvous gave this host's key.
    pub code: AccessCode,
    /// The host's address as the rendezvous sees it.
    pub observed: SocketAddr,
    /// The rendezvous's STUN port, if it runs a responder.
    pub stun_port: Option<u16>,
    _send: quinn::SendStream,
    recv: quinn::RecvStream,
}

impl Registration {
    /// The next pushed message; `Ok(None)` when the server closed the registration.
    pub async fn next(&mut self) -> Result<Option<ServerMsg>, ClientError> {
        Ok(wire::read_msg(&mut self.recv, MAX_MSG_LEN).await?)
    }
}

/// What a controller learns from resolving a code.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub host: Fingerprint,
    pub candidates: Vec<SocketAddr>,
    /// The controller's own address as the rendezvous sees it.
    pub observed: SocketAddr,
    /// The rendezvous's STUN port, if it runs a responder.
    pub stun_port: Option<u16>,
    /// The controller's side of a relayed path, if the rendezvous runs a relay.
    pub relay: Option<crate::relay::RelayOffer>,
}

async fn request(
    conn: &quinn::Connection,
    msg: &ClientMsg,
) -> Result<(ServerMsg, quinn::SendStream, quinn::RecvStream), ClientError> {
    let (mut send, mut recv) = conn.open_bi().await?;
    wire::write_msg(&mut send, msg, MAX_MSG_LEN).await?;
    let reply = wire::read_msg(&mut recv, MAX_MSG_LEN)
        .await?
        .ok_or(ClientError::NoAnswer)?;
    if let ServerMsg::Refused { reason, message } = reply {
        return Err(ClientError::Refused { reason, message });
    }
    Ok((reply, send, recv))
}

/// Registers the key `conn` was opened with; the rendezvous answers with its code.
pub async fn register(
    conn: &quinn::Connection,
    lan_addrs: Vec<SocketAddr>,
) -> Result<Registration, ClientError> {
    match request(conn, &ClientMsg::Register { lan_addrs }).await? {
        (
            ServerMsg::Registered {
                code,
                observed,
                stun_port,
            },
            send,
            recv,
        ) => Ok(Registration {
            code,
            observed,
            stun_port,
            _send: send,
            recv,
        }),
        _ => Err(ClientError::Unexpected),
    }
}

/// Asks how to reach the host registered as `code` (`relay_only`: the host is not to punch).
pub async fn resolve(
    conn: &quinn::Connection,
    code: AccessCode,
    lan_addrs: Vec<SocketAddr>,
    relay_only: bool,
) -> Result<Resolved, ClientError> {
    let msg = ClientMsg::Resolve {
        code,
        lan_addrs,
        relay_only,
    };
    match request(conn, &msg).await? {
        (
            ServerMsg::Resolved {
                host,
                candidates,
                observed,
                stun_port,
                relay,
            },
            mut send,
            _,
        ) => {
            let _ = send.finish();
            Ok(Resolved {
                host,
                candidates,
                observed,
                stun_port,
                relay,
            })
        }
        _ => Err(ClientError::Unexpected),
    }
}

/// Presents an enrollment token for the key `conn` was opened with.
pub async fn enroll(conn: &quinn::Connection, token: &str) -> Result<(), ClientError> {
    let msg = ClientMsg::Enroll {
        token: token.to_owned(),
    };
    match request(conn, &msg).await? {
        (ServerMsg::Enrolled, ..) => Ok(()),
        _ => Err(ClientError::Unexpected),
    }
}

/// Tells the rendezvous this host's version and NAT mapping (for its operator's console).
pub async fn report(
    conn: &quinn::Connection,
    version: &str,
    mapping: crate::session::Mapping,
) -> Result<(), ClientError> {
    let msg = ClientMsg::Report {
        version: version.to_owned(),
        mapping,
    };
    match request(conn, &msg).await? {
        (ServerMsg::Noted, ..) => Ok(()),
        _ => Err(ClientError::Unexpected),
    }
}
