//! The sessions the rendezvous brokered, as the operator sees them: each look-up that opened a
//! relay session is a session (host code and key, controller key and address, start), live
//! while its relay session lives, past once that closed (end, bytes relayed, why). The relay's
//! own table says what is live; this adds who and what code, and turns closings into records.
//!
//! What the rendezvous cannot see: peers that moved to a direct path stop using the relay, so
//! their relay session ends after the relay's idle time, not when they hang up; the record
//! says "relay" for the path it brokered and the bytes it carried. Without a relay, a session
//! is recorded at its look-up only (path "direct", no end).

use std::collections::HashMap;
use std::net::SocketAddr;

use certs::Fingerprint;
use proto::AccessCode;

use super::{Core, Event, Now, StoreOp, lock};
use crate::relay::{CloseWhy, SessionView};

/// A brokered session (`id` is unique across restarts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub code: AccessCode,
    pub host: Fingerprint,
    pub controller: Fingerprint,
    pub controller_addr: SocketAddr,
    /// "relay" or "direct" (a rendezvous without a relay).
    pub path: &'static str,
    /// Unix seconds.
    pub started: u64,
    /// Unix seconds of its last relayed packet, once it ended.
    pub ended: Option<u64>,
    pub bytes: u64,
    /// Why it ended: "idle", "unbound" (a side never came), "ended by operator".
    pub end_reason: Option<&'static str>,
    /// The account whose relay cap it counts against (an enrolled or closed rendezvous).
    pub account: Option<String>,
}

/// What the core keeps of live relayed sessions, by relay session id.
#[derive(Debug, Default)]
pub(super) struct Live {
    by_relay_id: HashMap<u64, SessionRecord>,
    /// Makes ids unique across restarts (the relay's count from 0 at each start).
    boot: u32,
}

impl Live {
    pub(super) fn new(boot: u32) -> Self {
        Self {
            by_relay_id: HashMap::new(),
            boot,
        }
    }

    /// Live relayed sessions counted against `account`.
    pub(super) fn live_of(&self, account: &str) -> usize {
        self.by_relay_id
            .values()
            .filter(|r| r.account.as_deref() == Some(account))
            .count()
    }
}

impl Core {
    /// Records a session the look-up of `code` opened (`relay_id`: its relay session).
    pub(super) fn session_started(
        &mut self,
        now: Now,
        relay_id: Option<u64>,
        (code, host): (AccessCode, Fingerprint),
        (controller, controller_addr): (Fingerprint, SocketAddr),
        account: Option<String>,
    ) {
        let n = relay_id.unwrap_or(self.next_push);
        let rec = SessionRecord {
            id: format!("{:08x}-{n}", self.sessions.boot),
            code,
            host,
            controller,
            controller_addr,
            path: if relay_id.is_some() {
                "relay"
            } else {
                "direct"
            },
            started: now.unix,
            ended: None,
            bytes: 0,
            end_reason: None,
            account,
        };
        self.store.push_back(StoreOp::Session(rec.clone()));
        self.events.push_back(Event::Session(rec.id.clone()));
        if let Some(id) = relay_id {
            self.sessions.by_relay_id.insert(id, rec);
        }
    }

    /// Turns the relay's closed sessions into records (called by the sweep and before the
    /// live sessions are listed).
    pub fn collect_closed_sessions(&mut self, now: Now) {
        let Some(relay) = &self.relay else { return };
        let closed = lock(relay).take_closed();
        for c in closed {
            let Some(mut rec) = self.sessions.by_relay_id.remove(&c.id) else {
                continue;
            };
            let ago = now.instant.saturating_duration_since(c.last).as_secs();
            rec.ended = Some(now.unix.saturating_sub(ago).max(rec.started));
            rec.bytes = c.bytes;
            rec.end_reason = Some(match c.why {
                CloseWhy::Idle => "idle",
                CloseWhy::Unbound => "unbound",
                CloseWhy::Ended => "ended by operator",
            });
            self.events.push_back(Event::Session(rec.id.clone()));
            self.store.push_back(StoreOp::Session(rec));
        }
    }

    /// The live relayed sessions, newest first, with their bytes so far.
    pub fn live_sessions(&mut self, now: Now) -> Vec<(SessionRecord, SessionView)> {
        self.collect_closed_sessions(now);
        let Some(relay) = &self.relay else {
            return Vec::new();
        };
        let views = lock(relay).sessions();
        let mut out: Vec<(SessionRecord, SessionView)> = views
            .into_iter()
            .filter_map(|v| {
                let mut rec = self.sessions.by_relay_id.get(&v.id)?.clone();
                rec.bytes = v.bytes;
                Some((rec, v))
            })
            .collect();
        out.sort_by(|a, b| b.0.started.cmp(&a.0.started).then(b.0.id.cmp(&a.0.id)));
        out
    }

    /// Ends the live session `id` (its relay session closes at once). Returns whether it was
    /// live.
    pub fn end_session(&mut self, now: Now, id: &str) -> bool {
        let Some(relay_id) = self
            .sessions
            .by_relay_id
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(k, _)| *k)
        else {
            return false;
        };
        let ended = self.relay.as_ref().is_some_and(|r| lock(r).end(relay_id));
        self.collect_closed_sessions(now);
        ended
    }
}
