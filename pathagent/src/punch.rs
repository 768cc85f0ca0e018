//! Punch rounds: probes to every candidate, then port prediction and birthday punching.
//!
//! ```text
//!  0 ms     probes (STUN Binding, retransmitted) to every remote candidate and learnt address
//!  500 ms   nothing answered: probes to ±16 ports around the peer's first candidate, and
//!           Pool side: open POOL_SIZE sockets, each probing the peer at 0/1/2 s
//!  700 ms   Spray side: SPRAY_BATCH single probes per SPRAY_TICK to random ports of the peer's IP
//!  a probe answered ──► the route's direct path (out of the socket that asked)
//!  5 s      the round ends; pool sockets that neither carry the path nor were reached close
//! ```
//!
//! Against a NAT that maps endpoint-dependently at random, one socket per side cannot meet:
//! the hard side's pool gives POOL_SIZE mapped ports, the easy side probes SPRAY_MAX random
//! ports; a hit happens in 1 − (1 − 256/64512)^2048 ≈ 99.97 % of rounds.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::tx::Purpose;
use crate::{
    Event, MAX_LEARNED, Mapping, POOL_SENDS_MS, POOL_SIZE, PREDICT_AFTER, PREDICT_SPAN, PUNCH_FOR,
    SPRAY_AFTER, SPRAY_BATCH, SPRAY_MAX, SPRAY_TICK, STUN_RETRIES_MS, Via,
};

/// What a side does beyond probing candidates when nothing answered within [`PREDICT_AFTER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Birthday {
    Off,
    /// This side maps endpoint-dependently, the other independently: open a pool.
    Pool,
    /// This side maps endpoint-independently, the other dependently: probe random ports.
    Spray,
}

impl Birthday {
    pub fn for_mappings(ours: Mapping, theirs: Mapping) -> Self {
        use Mapping::{EndpointDependent as Dep, EndpointIndependent as Indep};
        match (ours, theirs) {
            (Dep, Indep) => Birthday::Pool,
            (Indep, Dep) => Birthday::Spray,
            _ => Birthday::Off,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Round {
    pub id: u32,
    start: Instant,
    deadline: Instant,
    /// The peer's public address (its first candidate, if public): predicted ports, the pool's
    /// destination and the spray's IP.
    pub target: Option<SocketAddr>,
    birthday: Birthday,
    phase2: bool,
    spray: Vec<SocketAddr>,
    next_spray: Option<Instant>,
    pool: Vec<u32>,
    /// Pool sockets a probe from the peer reached: the peer may go direct by any of them.
    reached: Vec<u32>,
    confirmed: bool,
    answered: bool,
    tried: Vec<(SocketAddr, Via)>,
}

/// Whether an address could be a NAT's public side.
pub fn is_public(addr: &SocketAddr) -> bool {
    match addr.ip() {
        IpAddr::V4(v4) => !(v4.is_private() || v4.is_loopback() || v4.is_link_local()),
        IpAddr::V6(v6) => !(v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()),
    }
}

/// Ports an endpoint-dependent NAT may have given the peer for us: those near `around`
/// (sequential allocators, port preservation nearby), nearest first, 1024 and up.
pub fn predicted(around: SocketAddr) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for d in 1..=PREDICT_SPAN {
        for port in [around.port().checked_add(d), around.port().checked_sub(d)]
            .into_iter()
            .flatten()
            .filter(|&p| p >= 1024)
        {
            out.push(SocketAddr::new(around.ip(), port));
        }
    }
    out
}

impl Agent {
    /// Starts a new punch round (ending a running one) if there is anyone to punch towards.
    fn start_round(&mut self, now: Instant) {
        self.end_round(now);
        if !self.punching || !self.cfg.direct || self.remote.is_empty() || self.direct_healthy(now)
        {
            return;
        }
        // Pool sockets an earlier round kept because the peer reached them: a new round means
        // none of them carries a working path.
        let direct_via = self.direct.as_ref().map(|d| d.via);
        let stale: Vec<u32> = self
            .pool_open
            .iter()
            .copied()
            .filter(|&p| Some(Via::Pool(p)) != direct_via)
            .collect();
        self.close_pool(stale);
        self.rounds += 1;
        let target = self.remote.first().copied().filter(is_public);
        let birthday = match target {
            Some(_) if self.cfg.birthday => {
                Birthday::for_mappings(self.mapping, self.remote_mapping)
            }
            _ => Birthday::Off,
        };
        self.round = Some(Round {
            id: self.rounds,
            start: now,
            deadline: now + PUNCH_FOR,
            target,
            birthday,
            phase2: false,
            spray: Vec::new(),
            next_spray: None,
            pool: Vec::new(),
            reached: Vec::new(),
            confirmed: false,
            answered: false,
            tried: Vec::new(),
        });
        let all: Vec<SocketAddr> = self.remote.iter().chain(&self.learned).copied().collect();
        for c in all {
            self.round_probe(now, c, Via::Main, &STUN_RETRIES_MS);
        }
    }

    /// Ends the running round: its probes stop; pool sockets that neither carry nor may carry
    /// the path close.
    pub(crate) fn end_round(&mut self, _now: Instant) {
        let Some(round) = self.round.take() else {
            return;
        };
        let id = round.id;
        self.txs
            .retain(|tx| tx.purpose != Purpose::Probe { round: Some(id) });
        let in_use = |via: Via| {
            self.direct.as_ref().is_some_and(|d| d.via == via)
                || self.pending_direct.is_some_and(|(_, v)| v == via)
        };
        let close: Vec<u32> = round
            .pool
            .iter()
            .copied()
            .filter(|&p| !in_use(Via::Pool(p)) && self.pool_open.contains(&p))
            .filter(|p| !round.reached.contains(p))
            .collect();
        self.close_pool(close);
    }

    fn close_pool(&mut self, ids: Vec<u32>) {
        if ids.is_empty() {
            return;
        }
        self.pool_open.retain(|id| !ids.contains(id));
        self.txs
            .retain(|tx| !matches!(tx.via, Via::Pool(id) if ids.contains(&id)));
        self.events.push_back(Event::ClosePool { ids });
    }

    /// The peer's candidates changed while a round runs (its NAT moved it): probe the new ones
    /// within the round rather than start over, so a spray or pool under way keeps its
    /// progress. Returns `false` when the round cannot take them (none runs, or the birthday
    /// roles or the address the pool sends to changed): then a new round is due.
    pub(crate) fn extend_round(&mut self, now: Instant) -> bool {
        let first = self.remote.first().copied().filter(is_public);
        let birthday = match first {
            Some(_) if self.cfg.birthday => {
                Birthday::for_mappings(self.mapping, self.remote_mapping)
            }
            _ => Birthday::Off,
        };
        let Some(r) = self.round.as_mut() else {
            return false;
        };
        let same_ip = r.target.map(|t| t.ip()) == first.map(|f| f.ip());
        if birthday != r.birthday || !same_ip || (birthday == Birthday::Pool && r.target != first) {
            return false;
        }
        let moved = r.target != first;
        r.target = first;
        let phase2 = r.phase2;
        for c in self.remote.clone() {
            self.round_probe(now, c, Via::Main, &STUN_RETRIES_MS);
        }
        if let (true, true, Some(first)) = (moved, phase2, first) {
            for c in predicted(first) {
                self.round_probe(now, c, Via::Main, &STUN_RETRIES_MS);
            }
        }
        true
    }

    /// A probe within the running round (once per address and socket).
    fn round_probe(&mut self, now: Instant, to: SocketAddr, via: Via, schedule: &'static [u64]) {
        let Some(r) = self.round.as_mut() else {
            return;
        };
        if r.tried.contains(&(to, via)) {
            return;
        }
        r.tried.push((to, via));
        let (id, within) = (r.id, r.deadline.saturating_duration_since(now));
        self.start_stun_tx(
            now,
            Purpose::Probe { round: Some(id) },
            via,
            to,
            schedule,
            within,
        );
    }

    /// Probes an address the peer sent from: in the round if one runs, else on its own.
    pub(crate) fn probe_learned(&mut self, now: Instant, to: SocketAddr) {
        self.probe_outside_round(now, to, Via::Main);
    }

    pub(crate) fn probe_outside_round(&mut self, now: Instant, to: SocketAddr, via: Via) {
        if !self.punching || !self.cfg.direct {
            return;
        }
        if self.round.is_some() {
            self.round_probe(now, to, via, &STUN_RETRIES_MS);
            return;
        }
        let busy = self
            .txs
            .any(|tx| tx.to == to && tx.via == via && matches!(tx.purpose, Purpose::Probe { .. }));
        if !busy {
            self.start_stun_tx(
                now,
                Purpose::Probe { round: None },
                via,
                to,
                &STUN_RETRIES_MS,
                Duration::from_secs(3),
            );
        }
    }

    /// A Binding request from the peer reached pool socket `id`: confirm that path both ways
    /// from the same socket.
    pub(crate) fn pool_hit(&mut self, now: Instant, id: u32, from: SocketAddr) {
        let Some(r) = self.round.as_mut() else {
            return;
        };
        if !r.pool.contains(&id) {
            return;
        }
        if !r.reached.contains(&id) {
            r.reached.push(id);
        }
        if r.confirmed {
            return;
        }
        // The pool socket's own probe to the peer (sent at 0, 1 and 2 s) goes out again now,
        // not at its next scheduled send: the peer's NAT has just let one in from this port,
        // so its filter is open towards it. (Without this a hit waited up to a second.)
        let via = Via::Pool(id);
        let pending = self
            .txs
            .find(|tx| {
                tx.to == from && tx.via == via && matches!(tx.purpose, Purpose::Probe { .. })
            })
            .map(|tx| tx.bytes.clone());
        match pending {
            Some(bytes) => {
                self.note_sent(now, via, from);
                self.transmits.push_back(crate::Transmit {
                    via,
                    to: from,
                    bytes,
                });
            }
            None => self.round_probe(now, from, via, &STUN_RETRIES_MS),
        }
    }

    pub(crate) fn on_probe_answered(
        &mut self,
        now: Instant,
        round: Option<u32>,
        from: SocketAddr,
        via: Via,
    ) {
        if let Some(r) = self.round.as_mut()
            && Some(r.id) == round
        {
            r.answered = true;
            r.spray.clear();
            if let Via::Pool(id) = via
                && !r.confirmed
            {
                r.confirmed = true;
                if !r.reached.contains(&id) {
                    r.reached.push(id);
                }
            }
        }
        // A peer-reflexive address that answered is worth keeping among the candidates.
        if !self.remote.contains(&from)
            && !self.learned.contains(&from)
            && self.learned.len() < MAX_LEARNED
        {
            self.learned.push(from);
        }
        self.offer_direct(now, from, via);
    }

    /// A direct path was adopted: the spray stops, and of the pool only the sockets that carry
    /// the path or that the peer reached stay open.
    pub(crate) fn on_direct_found(&mut self, _now: Instant, via: Via) {
        let Some(r) = self.round.as_mut() else {
            return;
        };
        r.spray.clear();
        r.next_spray = None;
        let keep = |p: &u32| Via::Pool(*p) == via || r.reached.contains(p);
        let close: Vec<u32> = r.pool.iter().copied().filter(|p| !keep(p)).collect();
        r.pool.retain(keep);
        let close: Vec<u32> = close
            .into_iter()
            .filter(|p| self.pool_open.contains(p))
            .collect();
        self.close_pool(close);
    }

    pub(crate) fn punch_timeout(&self) -> Option<Instant> {
        let round = self.round.as_ref().map(|r| {
            let mut at = r.deadline;
            if !r.phase2 {
                at = at.min(r.start + PREDICT_AFTER);
            }
            if let Some(s) = r.next_spray.filter(|_| !r.spray.is_empty()) {
                at = at.min(s);
            }
            at
        });
        round.into_iter().chain(self.next_round_at).min()
    }

    /// Acts on the punch timers; returns whether it did anything.
    pub(crate) fn punch_due(&mut self, now: Instant) -> bool {
        if let Some(at) = self.next_round_at
            && at <= now
        {
            self.next_round_at = None;
            self.start_round(now);
            return true;
        }
        let Some(r) = self.round.as_mut() else {
            return false;
        };
        if now >= r.deadline {
            self.end_round(now);
            return true;
        }
        if !r.phase2 && now >= r.start + PREDICT_AFTER {
            r.phase2 = true;
            if !r.answered {
                self.phase2(now);
            }
            return true;
        }
        if let Some(at) = r.next_spray.filter(|at| *at <= now && !r.spray.is_empty()) {
            let keep = r.spray.len().saturating_sub(SPRAY_BATCH);
            let batch = r.spray.split_off(keep);
            r.next_spray = Some(at + SPRAY_TICK);
            for c in batch {
                self.round_probe(now, c, Via::Main, &[0]);
            }
            return true;
        }
        false
    }

    /// Nothing answered within [`PREDICT_AFTER`]: predicted ports, and birthday punching.
    fn phase2(&mut self, now: Instant) {
        let Some(r) = self.round.as_ref() else {
            return;
        };
        let (birthday, target, start) = (r.birthday, r.target, r.start);
        // Only around the peer's first candidate (the rendezvous's view of it): guessing around
        // the others would let a peer aim our probes at a stranger.
        if let Some(first) = self.remote.first().copied().filter(is_public) {
            for c in predicted(first) {
                self.round_probe(now, c, Via::Main, &STUN_RETRIES_MS);
            }
        }
        let Some(target) = target else {
            return;
        };
        match birthday {
            Birthday::Pool => {
                let ids: Vec<u32> = (0..POOL_SIZE)
                    .map(|i| self.next_pool_id.wrapping_add(i))
                    .collect();
                self.next_pool_id = self.next_pool_id.wrapping_add(POOL_SIZE);
                self.pool_open.extend(&ids);
                self.events.push_back(Event::OpenPool { ids: ids.clone() });
                if let Some(r) = self.round.as_mut() {
                    r.pool = ids.clone();
                }
                for id in ids {
                    self.round_probe(now, target, Via::Pool(id), &POOL_SENDS_MS);
                }
            }
            Birthday::Spray => {
                let spray = self.spray_targets(target);
                if let Some(r) = self.round.as_mut() {
                    r.spray = spray;
                    r.next_spray = Some(start + SPRAY_AFTER);
                }
            }
            Birthday::Off => {}
        }
    }

    /// [`SPRAY_MAX`] distinct random ports (1024 and up) of `target`'s IP, none tried yet.
    fn spray_targets(&mut self, target: SocketAddr) -> Vec<SocketAddr> {
        let tried: Vec<SocketAddr> = self
            .round
            .as_ref()
            .map(|r| r.tried.iter().map(|(a, _)| *a).collect())
            .unwrap_or_default();
        rand::seq::index::sample(
            &mut self.rng,
            usize::from(u16::MAX - 1023),
            SPRAY_MAX + tried.len(),
        )
        .into_iter()
        .filter_map(|i| u16::try_from(1024 + i).ok())
        .map(|port| SocketAddr::new(target.ip(), port))
        .filter(|a| !tried.contains(a))
        .take(SPRAY_MAX)
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicted_ports_are_near_and_bounded() {
        let p = predicted("198.51.100.11:40000".parse().unwrap());
        assert_eq!(p.len(), 2 * usize::from(PREDICT_SPAN));
        assert_eq!(p[0], "198.51.100.11:40001".parse().unwrap());
        assert_eq!(p[1], "198.51.100.11:39999".parse().unwrap());
        assert!(
            predicted("198.51.100.11:1030".parse().unwrap())
                .iter()
                .all(|a| a.port() >= 1024)
        );
    }

    #[test]
    fn birthday_roles_follow_both_mappings() {
        use Mapping::*;
        for (ours, theirs, role) in [
            (EndpointDependent, EndpointIndependent, Birthday::Pool),
            (EndpointIndependent, EndpointDependent, Birthday::Spray),
            (EndpointDependent, EndpointDependent, Birthday::Off),
            (Unknown, EndpointDependent, Birthday::Off),
        ] {
            assert_eq!(
                Birthday::for_mappings(ours, theirs),
                role,
                "ours {ours:?}, theirs {theirs:?}"
            );
        }
    }
}
