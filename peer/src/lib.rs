//! The quicdesk peer: a host that shares its screen and a controller that views and drives it.
//!
//! ```text
//!  host:        Capturer ─► codec::Encoder ─► video streams ─┐
//!               InputBackend ◄─ input stream ◄──────────────┐ │   QUIC, one UDP socket
//!  controller:  keyboard/mouse/script ─► input stream ──────┘ │   per peer, pinned keys,
//!               stats/record/on_frame ◄─ codec::Decoder ◄────┘   SPAKE2 password proof
//! ```
//!
//! Both sides find each other through a rendezvous ([`proto::client`]); the controller pins
//! the host key the rendezvous reports and proves the password with SPAKE2 bound to the TLS
//! exporter ([`auth`]), so a lying rendezvous cannot get in between.
//!
//! What this crate does **not** do: encode or decode pixels (`codec`), read the screen
//! (`capture`), or touch the OS input system (`input`). It never connects without a pinned key.

// Denied, not forbidden: the Windows service code (`service::windows*`) calls Win32 and allows
// it there, each unsafe block with its reason.
#![deny(unsafe_code)]

pub mod approve;
pub mod auth;
pub mod config;
pub mod controller;
pub mod guard;
pub mod handshake;
pub mod host;
pub mod nat;
pub mod net;
pub mod password;
pub mod script;
pub mod seat;
pub mod service;
pub mod session;
pub mod stats;
pub mod streams;
pub mod text;
pub mod ui;
#[cfg(feature = "viewer")]
pub mod viewer;

/// Errors of a peer session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Identity(#[from] certs::Error),
    #[error(transparent)]
    Config(#[from] proto::quic::ConfigError),
    #[error(transparent)]
    Rendezvous(#[from] proto::client::ClientError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("stream: {0}")]
    Wire(#[from] proto::wire::WireError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream read: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("authentication: {0}")]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error("host refused the session: {0}")]
    Denied(String),
    /// The host asks for its password and none was given.
    #[error(
        "the host asks for its password (`--approve password` or `both`): give the password \
         it shows"
    )]
    PasswordNeeded,

    /// The peer sent a message out of order.
    #[error("protocol error: expected {expected}")]
    Unexpected { expected: &'static str },
    /// A stream the protocol needs was closed by the peer.
    #[error("the peer closed the {0}")]
    Closed(&'static str),
    /// The connection has no peer certificate key (cannot happen with our TLS config).
    #[error("the connection has no peer key")]
    NoPeerKey,
    /// The TLS exporter the password proof is bound to is unavailable.
    #[error("the TLS exporter is unavailable")]
    Exporter,
    /// A setting is out of range.
    #[error("{name}: {why}")]
    Setting { name: &'static str, why: String },
    /// A worker thread of this process died.
    #[error("the {0} thread failed")]
    Thread(&'static str),
    /// The host was shut down.
    #[error("the host stopped")]
    Stopped,
    #[error("codec: {0}")]
    Codec(#[from] codec::CodecError),
    #[error("capture: {0}")]
    Capture(#[from] capture::CaptureError),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("no candidate address of the host answered ({0})")]
    Unreachable(String),
    /// A known code's host holds another key than when this controller last connected to it
    /// (`controller::known`).
    #[error(
        "the host {code} now has another key than when you last connected (was {was}, now \
         {now}): if its owner reinstalled or reset it, connect again with --accept-new-key; \
         otherwise someone may be impersonating it (nothing was sent to it)"
    )]
    HostKeyChanged {
        code: proto::AccessCode,
        was: Box<certs::Fingerprint>,
        now: Box<certs::Fingerprint>,
    },
}

/// Locks a mutex of plain data: a panic elsewhere while it was held leaves data that is still
/// consistent (every critical section in this crate writes whole values), so it stays usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Aborts a background task when the scope that started it ends.
#[derive(Debug)]
pub(crate) struct AbortOnDrop<T = ()>(pub(crate) tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
