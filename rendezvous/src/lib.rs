//! The quicdesk rendezvous: code registry, address discovery and signaling for peers.
//!
//! ```text
//!  host ──QUIC──► Register{code} ──► Registry (code → host key) ──► Store (SQLite)
//!                    ▲ pushes ConnectRequest
//!  controller ─QUIC─► Resolve{code} ──► host key + candidate addresses
//!  peer ──UDP──► STUN Binding (second port) ──► XOR-MAPPED-ADDRESS (responder)
//! ```
//!
//! Peers open one QUIC connection (ALPN [`proto::ALPN`]) and one bidirectional stream per request,
//! framed by [`wire`]. The server authenticates every peer by its certificate key and binds a
//! code to the first key that registers it.
//!
//! What this crate does **not** do: it never sees a peer session's plaintext. Peers connect to each
//! other with their own TLS keys; the rendezvous only tells them whom to expect and where.

#![forbid(unsafe_code)]

pub mod client;
pub mod code;
pub mod limits;
pub mod proto;
pub mod quic;
pub mod registry;
pub mod relay;
pub mod responder;
pub mod server;
pub mod stun;
pub mod wire;

pub use code::AccessCode;
