//! Route choice and liveness: the relay session (bind, refresh, rebind), the direct path
//! (adopted on a probe answer, checked when it goes unanswered, dead after
//! [`DEAD_AFTER`](crate::DEAD_AFTER)), and the fall back to the relay with a new punch round.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::agent::Agent;
use crate::tx::{Key, Purpose};
use crate::wire::{self, Ticket};
use crate::{
    CHECK_AFTER, DEAD_AFTER, Event, KEEPALIVE, Path, REBIND_EVERY, RELAY_REFRESH, Reason,
    STUN_RETRIES_MS, SendPath, Via,
};

/// A direct path that lived this long resets the re-punch back-off.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// Longest wait before punching again after direct paths kept dying.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Retransmissions of a bind sent to refresh or re-prove the relay session.
const REBIND_RETRIES_MS: [u64; 5] = [0, 100, 300, 700, 1500];

#[derive(Debug)]
pub(crate) struct RelayState {
    pub addr: SocketAddr,
    pub ticket: Ticket,
    counter: u64,
    pub bound: bool,
    pub last_bind: Option<Instant>,
    pub last_rebind: Option<Instant>,
}

impl RelayState {
    pub fn new(addr: SocketAddr, ticket: Ticket, first_counter: u64) -> Self {
        Self {
            addr,
            ticket,
            counter: first_counter.saturating_sub(1),
            bound: false,
            last_bind: None,
            last_rebind: None,
        }
    }

    /// The next bind frame (a fresh counter each time: the relay takes each proof once).
    pub fn next_bind(&mut self) -> [u8; wire::BIND_LEN] {
        self.counter = self.counter.saturating_add(1);
        wire::bind_frame(&self.ticket, self.counter)
    }
}

#[derive(Debug)]
pub(crate) struct Direct {
    pub to: SocketAddr,
    pub via: Via,
    pub adopted: Instant,
    pub last_tx: Instant,
    /// The first send since the last packet from the path, if sends kept coming.
    pub unanswered_since: Option<Instant>,
    /// A check was started for the current silence.
    pub checked: bool,
}

impl Agent {
    pub(crate) fn start_bind(&mut self, now: Instant, schedule: &'static [u64], within: Duration) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        relay.last_bind = Some(now);
        let to = relay.addr;
        self.txs.start(
            now,
            Key::Bind,
            Purpose::Bind,
            Via::Main,
            to,
            Vec::new(),
            schedule,
            within,
        );
    }

    pub(crate) fn on_bound(&mut self) {
        self.txs.complete(&Key::Bind);
        if let Some(relay) = self.relay.as_mut()
            && !relay.bound
        {
            relay.bound = true;
            self.events.push_back(Event::RelayBound);
        }
    }

    /// The relay saw our data from an address we did not bind from: our NAT moved us. Bind
    /// again from here, and find out where we are now.
    pub(crate) fn on_rebind(&mut self, now: Instant) {
        let Some(relay) = self.relay.as_mut() else {
            return;
        };
        if relay
            .last_rebind
            .is_some_and(|t| now.saturating_duration_since(t) < REBIND_EVERY)
        {
            return;
        }
        relay.last_rebind = Some(now);
        relay.bound = false;
        self.start_bind(now, &REBIND_RETRIES_MS, Duration::from_secs(3));
        self.rediscover(now);
    }

    pub(crate) fn set_path(&mut self, to: Path, reason: Reason) {
        if to == self.path {
            return;
        }
        let from = self.path;
        // Between the relay and the peer's own addresses (proven or not) is a change; a route
        // without a relay that finds its direct path among the candidates did not change.
        let relayed = |p: Path| matches!(p, Path::Relay(_));
        if relayed(from) != relayed(to) && from != Path::Nowhere && to != Path::Nowhere {
            self.path_changes += 1;
        }
        self.path = to;
        self.events
            .push_back(Event::PathChanged { from, to, reason });
    }

    /// Whether a direct path is in use and answering.
    pub(crate) fn direct_healthy(&self, now: Instant) -> bool {
        self.direct.as_ref().is_some_and(|d| {
            d.unanswered_since
                .is_none_or(|s| now.saturating_duration_since(s) < CHECK_AFTER)
        })
    }

    pub(crate) fn is_direct_to(&self, to: SocketAddr, via: Via) -> bool {
        self.direct
            .as_ref()
            .is_some_and(|d| d.to == to && d.via == via)
    }

    /// Notes a send (a probe, a check or the session's own packet) for the liveness of the
    /// direct path.
    pub(crate) fn note_sent(&mut self, now: Instant, via: Via, to: SocketAddr) {
        if let Some(d) = self.direct.as_mut()
            && d.to == to
            && d.via == via
        {
            d.last_tx = now;
            d.unanswered_since.get_or_insert(now);
        }
    }

    /// Notes a packet from `from` on `via`: if that is the direct path, it answers.
    pub(crate) fn heard_from(&mut self, _now: Instant, from: SocketAddr, via: Via) {
        if let Some(d) = self.direct.as_mut()
            && d.to == from
            && d.via == via
        {
            d.unanswered_since = None;
            d.checked = false;
        }
    }

    /// A probe to `to` out of `via` was answered: the path works both ways. Adopt it unless a
    /// healthy direct path is in use (no flapping between two good ones) or the move is held.
    pub(crate) fn offer_direct(&mut self, now: Instant, to: SocketAddr, via: Via) {
        if !self.cfg.direct || self.is_direct_to(to, via) || self.direct_healthy(now) {
            return;
        }
        if self.cfg.hold_direct {
            self.pending_direct.get_or_insert((to, via));
            return;
        }
        self.adopt(now, to, via, Reason::ProbeAnswered);
    }

    fn adopt(&mut self, now: Instant, to: SocketAddr, via: Via, reason: Reason) {
        if let Some(old) = self.direct.take() {
            self.close_pool_socket_of(old.via, via);
        }
        self.direct = Some(Direct {
            to,
            via,
            adopted: now,
            last_tx: now,
            unanswered_since: None,
            checked: false,
        });
        self.direct_since.get_or_insert(now);
        self.next_round_at = None;
        self.set_path(Path::Direct { to, via }, reason);
        self.on_direct_found(now, via);
    }

    /// Ends the hold ([`crate::Config::hold_direct`]) and moves to the direct path found
    /// meanwhile, if any.
    pub fn release_direct(&mut self, now: Instant) {
        let now = self.tick(now);
        self.cfg.hold_direct = false;
        if let Some((to, via)) = self.pending_direct.take()
            && self.cfg.direct
            && self.direct.is_none()
        {
            self.adopt(now, to, via, Reason::Released);
        }
        self.drive(now);
    }

    /// Where to send the session's next packet; counts as a send for the direct path's
    /// liveness. Call it for every datagram quinn sends.
    pub fn send_path(&mut self, now: Instant) -> SendPath {
        let now = self.tick(now);
        match self.path {
            Path::Direct { to, via } => {
                self.note_sent(now, via, to);
                SendPath::Direct { via, to }
            }
            Path::Relay(to) => match self.relay.as_ref() {
                Some(r) => SendPath::Relay {
                    to,
                    header: wire::data_header(r.ticket.token),
                },
                None => SendPath::Nowhere,
            },
            Path::Candidates => SendPath::Each(self.remote_candidates()),
            Path::Nowhere => SendPath::Nowhere,
        }
    }

    pub(crate) fn path_timeout(&self) -> Option<Instant> {
        let direct = self.direct.as_ref().map(|d| match d.unanswered_since {
            Some(s) if !d.checked => s + CHECK_AFTER,
            Some(s) => s + DEAD_AFTER,
            None => d.last_tx + KEEPALIVE,
        });
        let relay = self
            .relay
            .as_ref()
            .and_then(|r| r.last_bind)
            .map(|t| t + RELAY_REFRESH);
        direct.into_iter().chain(relay).min()
    }

    /// Acts on the path's timers; returns whether it did anything.
    pub(crate) fn path_due(&mut self, now: Instant) -> bool {
        let mut busy = false;
        if let Some(d) = self.direct.as_mut() {
            let (to, via) = (d.to, d.via);
            match d.unanswered_since {
                Some(s) if now.saturating_duration_since(s) >= DEAD_AFTER => {
                    self.on_direct_dead(now);
                    busy = true;
                }
                Some(s) if !d.checked && now.saturating_duration_since(s) >= CHECK_AFTER => {
                    d.checked = true;
                    self.start_check(now, to, via);
                    busy = true;
                }
                None if now.saturating_duration_since(d.last_tx) >= KEEPALIVE => {
                    d.checked = true;
                    self.start_check(now, to, via);
                    busy = true;
                }
                _ => {}
            }
        }
        if let Some(r) = self.relay.as_ref()
            && r.last_bind
                .is_some_and(|t| now.saturating_duration_since(t) >= RELAY_REFRESH)
        {
            // Keeps the relay session (and this side's mapping towards it) alive.
            self.start_bind(now, &REBIND_RETRIES_MS, Duration::from_secs(3));
            busy = true;
        }
        busy
    }

    fn start_check(&mut self, now: Instant, to: SocketAddr, via: Via) {
        self.start_stun_tx(now, Purpose::Check, via, to, &STUN_RETRIES_MS, DEAD_AFTER);
    }

    /// The direct path went unanswered for [`DEAD_AFTER`]: back to the relay (or to every
    /// candidate without one), rebind the relay in case this side's NAT moved us, find out
    /// where we are now, and punch again (at once the first times, then backing off).
    fn on_direct_dead(&mut self, now: Instant) {
        let Some(dead) = self.direct.take() else {
            return;
        };
        self.txs
            .retain(|tx| !(tx.purpose == Purpose::Check && tx.to == dead.to));
        self.close_pool_socket_of(dead.via, Via::Main);
        let lived = now.saturating_duration_since(dead.adopted);
        self.deaths = if lived >= STABLE_AFTER {
            1
        } else {
            self.deaths + 1
        };
        // Stale after a NAT moved the peer; learnt again from its probes.
        self.learned.clear();
        self.requesters.clear();
        let fallback = match self.relay.as_ref() {
            Some(r) => Path::Relay(r.addr),
            None if !self.remote.is_empty() => Path::Candidates,
            None => Path::Nowhere,
        };
        self.set_path(fallback, Reason::DirectDead);
        if self.relay.is_some() {
            self.start_bind(now, &REBIND_RETRIES_MS, Duration::from_secs(3));
        }
        self.rediscover(now);
        if self.punching {
            let backoff = match self.deaths {
                0..=2 => Duration::ZERO,
                n => Duration::from_secs(1 << (n - 2).min(6)).min(MAX_BACKOFF),
            };
            self.next_round_at = Some(now + backoff);
        }
    }

    /// Closes pool socket `old` unless it is `keep` (Main is never closed).
    fn close_pool_socket_of(&mut self, old: Via, keep: Via) {
        if let Via::Pool(id) = old
            && old != keep
            && self.pool_open.contains(&id)
        {
            self.pool_open.retain(|x| *x != id);
            self.txs.retain(|tx| tx.via != old);
            self.events.push_back(Event::ClosePool { ids: vec![id] });
        }
    }
}
