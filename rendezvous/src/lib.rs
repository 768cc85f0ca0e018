//! The quicdesk rendezvous: code registry, address discovery and signaling for peers.
//!
//! ```text
//!  host ──QUIC──► Register ─┐                       ┌─► Registry (code → host key) ─► Store
//!                  ▲ push   ├─► server (front-end) ─► Core ─► limits, caps, online table
//!  controller ─QUIC─► Resolve ┘   one lock per call  └─► Relay::allocate (tickets)
//!  peer ──UDP──► relay port ──► relay::serve ──► Relay (own lock: the packet path)
//!  peer ──UDP──► STUN Binding (second port) ──► XOR-MAPPED-ADDRESS (responder)
//! ```
//!
//! Peers open one QUIC connection (ALPN `proto::rendezvous::ALPN`) and one bidirectional stream
//! per request, framed by `proto::wire`. What is said on the wire (messages, codes, relay frames,
//! STUN, QUIC settings, rate limits) is the `proto` crate's, which peers link instead of this
//! one; this crate is the server: [`core`] (every decision, sans IO: registrations, look-ups,
//! limits and caps, relay allocation, snapshots), [`registry`] (the codes and their SQLite
//! store), [`relay`], [`responder`] (STUN), [`server`] (the tokio front-end around them) and
//! [`metrics`] (Prometheus text at `/metrics`, over HTTP, when asked for).
//! The server authenticates every peer by its certificate key and assigns each key its code.
//!
//! What this crate does **not** do: it never sees a peer session's plaintext. Peers connect to each
//! other with their own TLS keys; the rendezvous only tells them whom to expect and where.

#![forbid(unsafe_code)]
// The console's OpenAPI document is one `serde_json::json!` literal, deeper than the default.
#![recursion_limit = "256"]

pub mod backup;
pub mod console;
pub mod core;
pub mod metrics;
pub mod registry;
pub mod relay;
pub mod responder;
pub mod schema;
pub mod server;
