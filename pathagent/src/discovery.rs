//! Address discovery: which addresses this side offers, and how its NAT maps ports.
//!
//! ```text
//!  socket ──QUIC──► rendezvous:P     sees A1 (the driver passes it as `observed`)
//!  socket ──STUN──► rendezvous:P+1   sees A2 (XOR-MAPPED-ADDRESS)
//!  A1 == A2 ⇒ endpoint-independent mapping; A1 != A2 ⇒ endpoint-dependent ("symmetric")
//! ```
//!
//! Candidates offered: the reflexive address first (the peer predicts ports around it), then
//! the LAN addresses. A rediscovery (after a dead direct path or a relay rebind, i.e. when this
//! side's NAT may have moved it) asks the STUN servers again; a new reflexive address is
//! announced again so the peer can punch towards it.

use std::net::SocketAddr;
use std::time::Instant;

use crate::agent::Agent;
use crate::tx::Purpose;
use crate::{DISCOVERY_TIMEOUT, Event, MAX_LAN_CANDIDATES, Mapping, STUN_RETRIES_MS, Via};

/// One discovery of this side's reflexive address.
#[derive(Debug, Default)]
pub(crate) struct Discovery {
    pub round: u32,
    /// Servers still asked.
    pub pending: usize,
    /// What the servers answered this round.
    pub answers: Vec<SocketAddr>,
    pub last: Option<Instant>,
}

impl Agent {
    // ── Inputs about this side ─────────────────────────────────────────────────────────────

    /// The machine's LAN addresses with the socket's port (offered to the peer after the
    /// reflexive address; at most [`MAX_LAN_CANDIDATES`]).
    pub fn add_local_candidates(&mut self, now: Instant, addrs: &[SocketAddr]) {
        self.tick(now);
        for &a in addrs {
            if !self.lan.contains(&a) && self.lan.len() < MAX_LAN_CANDIDATES {
                self.lan.push(a);
            }
        }
        self.announce_if_ready();
    }

    /// Starts address discovery: `observed` is the address the rendezvous's QUIC port saw
    /// this socket at (if any), `stun_servers` are asked where it is (e.g. the rendezvous's
    /// STUN port); comparing the answers tells the NAT's [`Mapping`].
    /// [`Event::LocalCandidates`] follows once every server answered or timed out. One call
    /// with both, so the candidates are announced once, with the mapping.
    pub fn discover(
        &mut self,
        now: Instant,
        observed: Option<SocketAddr>,
        stun_servers: &[SocketAddr],
    ) {
        let now = self.tick(now);
        if let Some(addr) = observed {
            self.observed = Some(addr);
            self.reflexive = Some(addr);
        }
        for &server in stun_servers {
            if !self.stun_servers.contains(&server) {
                self.stun_servers.push(server);
                self.discovery.pending += 1;
                self.ask_stun(now, server);
            }
        }
        self.classify();
        self.announce_if_ready();
        self.drive(now);
    }

    fn ask_stun(&mut self, now: Instant, server: SocketAddr) {
        let round = self.discovery.round;
        self.start_stun_tx(
            now,
            Purpose::Discovery { round },
            Via::Main,
            server,
            &STUN_RETRIES_MS,
            DISCOVERY_TIMEOUT,
        );
    }

    /// Asks every STUN server again (this side's NAT may have moved it), at most once per
    /// [`crate::REDISCOVER_EVERY`].
    pub(crate) fn rediscover(&mut self, now: Instant) {
        if self.stun_servers.is_empty()
            || self
                .discovery
                .last
                .is_some_and(|t| now.saturating_duration_since(t) < crate::REDISCOVER_EVERY)
        {
            return;
        }
        self.discovery.last = Some(now);
        self.discovery.round += 1;
        self.discovery.answers.clear();
        self.discovery.pending = self.stun_servers.len();
        for server in self.stun_servers.clone() {
            self.ask_stun(now, server);
        }
    }

    /// The mapping the reflexive addresses of one discovery show: the first round compares
    /// the rendezvous's view with the STUN answers; later rounds (the rendezvous's view is
    /// stale by then) compare the answers with each other, if there are two or more.
    pub(crate) fn classify(&mut self) {
        let mut seen: Vec<SocketAddr> = self.discovery.answers.clone();
        if self.discovery.round == 0 {
            seen.extend(self.observed);
        }
        if seen.len() < 2 {
            return;
        }
        let m = if seen.iter().all(|a| *a == seen[0]) {
            Mapping::EndpointIndependent
        } else {
            Mapping::EndpointDependent
        };
        if m != self.mapping {
            self.mapping = m;
            self.events.push_back(Event::Mapping(m));
        }
    }

    /// This side's candidates as offered to the peer: the reflexive address first (the peer
    /// predicts ports around it), then the LAN addresses.
    pub fn local_candidates(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self.reflexive.into_iter().collect();
        out.extend(self.lan.iter().filter(|a| Some(**a) != self.reflexive));
        out
    }

    pub fn mapping(&self) -> Mapping {
        self.mapping
    }

    /// Reports [`Event::LocalCandidates`] once discovery is over, and again when they change.
    pub(crate) fn announce_if_ready(&mut self) {
        if self.discovery.pending > 0 || (self.reflexive.is_none() && self.lan.is_empty()) {
            return;
        }
        let now = (self.local_candidates(), self.mapping);
        if self.announced.as_ref() != Some(&now) {
            self.announced = Some(now.clone());
            self.events.push_back(Event::LocalCandidates {
                addrs: now.0,
                mapping: now.1,
            });
        }
    }

    pub(crate) fn on_discovered(&mut self, round: u32, server: SocketAddr, addr: SocketAddr) {
        if round != self.discovery.round {
            return;
        }
        self.events
            .push_back(Event::ReflexiveAddress { server, addr });
        self.discovery.pending = self.discovery.pending.saturating_sub(1);
        self.discovery.answers.push(addr);
        // The reflexive address offered: the rendezvous's view first time round, the first
        // server's answer after a rediscovery (the rendezvous's view is stale then).
        if (self.observed.is_none() || round > 0) && self.discovery.answers.len() == 1 {
            self.reflexive = Some(addr);
        }
        self.classify();
        self.announce_if_ready();
    }
}
