//! What the core can tell about itself at one moment ([`Snapshot`]): counts for metrics and one
//! row per known host for the admin API. Plain data, made under the core's lock and read
//! after it is released; it holds no reference into the core.

use std::net::SocketAddr;

use certs::Fingerprint;
use proto::AccessCode;

use super::{Core, Why, lock};
use crate::relay::{self, AllocError};

/// Refusals since the start, by reason.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    pub register_rate_limited: u64,
    pub no_free_code: u64,
    pub resolve_rate_limited: u64,
    /// Look-ups of unknown, forgotten or offline codes.
    pub unavailable: u64,
    pub relay_full: u64,
    pub relay_key_cap: u64,
    pub relay_prefix_cap: u64,
    pub relay_down: u64,
    pub connection_cap: u64,
    pub bad_request: u64,
    /// Registrations of banned keys.
    pub banned: u64,
    /// Registrations, look-ups and enrollments of keys that are not enrolled.
    pub not_enrolled: u64,
    /// Look-ups over their account's relay cap.
    pub account_cap: u64,
}

impl Refusals {
    pub(super) fn count(&mut self, why: Why) {
        let n = match why {
            Why::RegisterRateLimited => &mut self.register_rate_limited,
            Why::NoFreeCode => &mut self.no_free_code,
            Why::ResolveRateLimited => &mut self.resolve_rate_limited,
            Why::Unavailable => &mut self.unavailable,
            Why::Relay(AllocError::Full) => &mut self.relay_full,
            Why::Relay(AllocError::KeyCap) => &mut self.relay_key_cap,
            Why::Relay(AllocError::PrefixCap) => &mut self.relay_prefix_cap,
            Why::RelayDown => &mut self.relay_down,
            Why::ConnectionCap => &mut self.connection_cap,
            Why::BadRequest => &mut self.bad_request,
            Why::Banned => &mut self.banned,
            Why::NotEnrolled => &mut self.not_enrolled,
            Why::AccountCap => &mut self.account_cap,
        };
        *n += 1;
    }

    /// All refusals together.
    pub fn total(&self) -> u64 {
        let Self {
            register_rate_limited,
            no_free_code,
            resolve_rate_limited,
            unavailable,
            relay_full,
            relay_key_cap,
            relay_prefix_cap,
            relay_down,
            connection_cap,
            bad_request,
            banned,
            not_enrolled,
            account_cap,
        } = *self;
        register_rate_limited
            + no_free_code
            + resolve_rate_limited
            + unavailable
            + relay_full
            + relay_key_cap
            + relay_prefix_cap
            + relay_down
            + connection_cap
            + bad_request
            + banned
            + not_enrolled
            + account_cap
    }
}

/// A known host, as the admin API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRow {
    pub code: AccessCode,
    pub key: Fingerprint,
    /// Unix seconds when it was last connected (updated at registration, at each sweep while
    /// online, and when it leaves).
    pub last_seen: u64,
    /// While online: where its registration came from and since when (Unix seconds).
    pub online: Option<(SocketAddr, u64)>,
}

/// The core's counts and hosts at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Hosts the registry holds a code for.
    pub hosts_known: usize,
    pub hosts_online: usize,
    /// Codes of forgotten hosts kept from other keys.
    pub codes_quarantined: usize,
    /// Connections open now.
    pub connections: usize,
    /// Registrations taken since the start.
    pub registrations: u64,
    /// Look-ups answered with a host since the start.
    pub resolves: u64,
    pub refusals: Refusals,
    /// The relay's counters (sessions active, opened, refused; bytes forwarded, ...), if the
    /// rendezvous runs one.
    pub relay: Option<relay::Counters>,
    /// Background services started again after they ended or panicked.
    pub service_restarts: u64,
    /// Every known host, by code.
    pub hosts: Vec<HostRow>,
}

impl Core {
    /// Counts and per-host rows now (takes the relay's lock briefly for its counters).
    pub fn snapshot(&self) -> Snapshot {
        let mut hosts: Vec<HostRow> = self
            .registry
            .iter()
            .map(|(code, rec)| HostRow {
                code: *code,
                key: rec.fingerprint,
                last_seen: rec.last_seen,
                online: self.online.get(code).map(|h| (h.source, h.since)),
            })
            .collect();
        hosts.sort_by_key(|h| h.code);
        Snapshot {
            hosts,
            ..self.counts()
        }
    }

    /// The counts alone (`hosts` empty): what metrics need, in time independent of how many
    /// hosts the registry holds, but for the quarantine count.
    pub fn counts(&self) -> Snapshot {
        Snapshot {
            hosts_known: self.registry.len(),
            hosts_online: self.online.len(),
            codes_quarantined: self.registry.quarantined().count(),
            connections: self.policy.connections(),
            registrations: self.counts.registrations,
            resolves: self.counts.resolves,
            refusals: self.counts.refusals,
            relay: self.relay.as_ref().map(|r| lock(r).counters()),
            service_restarts: self.counts.service_restarts,
            hosts: Vec::new(),
        }
    }
}
