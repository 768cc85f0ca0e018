//! What quicdesk's peers and its rendezvous say to each other, and nothing else: the crate every
//! program links, so a peer never links the server (or SQLite).
//!
//! ```text
//!  peer ──QUIC stream──► wire frame ──► rendezvous::ClientMsg ──► server (rendezvous crate)
//!  peer ◄─QUIC stream─── wire frame ◄── rendezvous::ServerMsg ◄──
//!  peer ──UDP──► relay frame (relay) / STUN Binding (stun) ──► relay / STUN responder
//! ```
//!
//! - [`wire`]: length-prefixed postcard frames on QUIC streams, with size limits.
//! - [`rendezvous`]: messages between a peer and the rendezvous; [`client`]: the peer's side of
//!   them (register, resolve, pushed connect requests).
//! - [`session`]: messages between the two peers of a session (control, video frame header,
//!   stream kinds).
//! - [`code`]: access codes (`ISR-` + 8 digits).
//! - [`invite`]: the invite string (`rendezvous invite` → `peer join`): the rendezvous's
//!   addresses and key fingerprint.
//! - [`relay`]: relay frames, tickets and bind proofs.
//! - [`stun`]: STUN Binding requests and answers (RFC 8489, through stun-rs).
//! - [`quic`]: the quinn and rustls settings every endpoint uses, per role.
//! - [`limits`]: token buckets, source prefixes and caps that the servers use against floods.
//!
//! One thing beside the protocol, because both programs link this crate: `logging` (feature
//! `logging`, off by default), the programs' shared tracing set-up.
//!
//! What it does **not** do: it owns no socket and runs no server; the registry, the relay's
//! session table and the STUN responder are the `rendezvous` crate's, the session's media and
//! path logic the `peer` crate's.

#![forbid(unsafe_code)]

#[cfg(feature = "quic")]
pub mod client;
pub mod code;
#[cfg(feature = "quic")]
pub mod invite;
pub mod limits;
#[cfg(feature = "logging")]
pub mod logging;
#[cfg(feature = "quic")]
pub mod quic;
pub mod relay;
#[cfg(feature = "quic")]
pub mod rendezvous;
pub mod session;
pub mod strength;
pub mod stun;
pub mod wire;

pub use code::AccessCode;
