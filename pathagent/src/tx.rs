//! The one retransmission implementation: every request the agent sends until it is answered
//! (STUN discovery, punch probes, path checks, relay binds) is a [`Tx`] here, sent at the
//! times its schedule gives (ms from its start) and forgotten at its deadline.
//!
//! Timers live in a min-heap with lazy deletion: an entry is acted on only if its transaction
//! still exists and is still due at that instant, so completing or dropping a transaction is
//! O(log n) and thousands of spray probes cost nothing while they wait.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::Via;
use crate::wire::TxId;

/// What a transaction is for, which decides what its answer (or its expiry) does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Asks a STUN server for this socket's reflexive address (discovery round `round`).
    Discovery { round: u32 },
    /// A punch probe of punch round `round` (`None`: outside a round, to a learnt address).
    Probe { round: Option<u32> },
    /// Checks that the direct path still answers.
    Check,
    /// Binds the relay session (the bytes are made anew at each send: the counter grows).
    Bind,
}

/// How a transaction is found again: a STUN transaction by its id, the relay bind by itself
/// (its answer names only the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Key {
    Stun(TxId),
    Bind,
}

#[derive(Debug)]
pub(crate) struct Tx {
    pub purpose: Purpose,
    pub via: Via,
    pub to: SocketAddr,
    /// The request (STUN); empty for a bind, whose frame is made at each send.
    pub bytes: Vec<u8>,
    schedule: &'static [u64],
    sent: usize,
    start: Instant,
    deadline: Instant,
    /// When this transaction next needs attention (a send, or its deadline).
    next: Instant,
}

/// What a due timer asks for.
#[derive(Debug)]
pub(crate) enum Due {
    /// Send (again) the transaction of this key.
    Send(Key),
    /// The deadline passed without an answer.
    Expired(Tx),
}

#[derive(Debug, Default)]
pub(crate) struct Txs {
    by_key: BTreeMap<Key, Tx>,
    timers: BinaryHeap<Reverse<(Instant, u64, Key)>>,
    seq: u64,
}

impl Txs {
    /// Starts a transaction: first send now (at the next [`Self::poll_due`]), the others at
    /// `schedule`, given up `within` after now. Replaces one with the same key.
    #[allow(clippy::too_many_arguments)] // each is one field of the request; a struct would only rename them
    pub fn start(
        &mut self,
        now: Instant,
        key: Key,
        purpose: Purpose,
        via: Via,
        to: SocketAddr,
        bytes: Vec<u8>,
        schedule: &'static [u64],
        within: Duration,
    ) {
        let tx = Tx {
            purpose,
            via,
            to,
            bytes,
            schedule,
            sent: 0,
            start: now,
            deadline: now + within,
            next: now,
        };
        self.by_key.insert(key, tx);
        self.arm(now, key);
    }

    fn arm(&mut self, at: Instant, key: Key) {
        self.seq += 1;
        self.timers.push(Reverse((at, self.seq, key)));
    }

    pub fn get(&self, key: &Key) -> Option<&Tx> {
        self.by_key.get(key)
    }

    /// The transaction answered: it is done.
    pub fn complete(&mut self, key: &Key) -> Option<Tx> {
        self.by_key.remove(key)
    }

    /// Drops every transaction `keep` says no to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Tx) -> bool) {
        self.by_key.retain(|_, tx| keep(tx));
    }

    /// The first transaction `f` says yes to.
    pub fn find(&self, mut f: impl FnMut(&Tx) -> bool) -> Option<&Tx> {
        self.by_key.values().find(|tx| f(tx))
    }

    pub fn any(&self, f: impl FnMut(&Tx) -> bool) -> bool {
        self.by_key.values().any(f)
    }

    /// The next due timer at or before `now`, if any. A `Send` has already been counted and
    /// rescheduled, so the caller only has to put the bytes on the wire.
    pub fn poll_due(&mut self, now: Instant) -> Option<Due> {
        loop {
            let &Reverse((at, _, key)) = self.timers.peek()?;
            if at > now {
                return None;
            }
            self.timers.pop();
            let Some(tx) = self.by_key.get_mut(&key) else {
                continue;
            };
            if tx.next != at {
                continue;
            }
            if tx.sent < tx.schedule.len() {
                tx.sent += 1;
                let next = match tx.schedule.get(tx.sent) {
                    Some(&ms) => (tx.start + Duration::from_millis(ms)).min(tx.deadline),
                    None => tx.deadline,
                };
                tx.next = next.max(at);
                let next = tx.next;
                self.arm(next, key);
                return Some(Due::Send(key));
            }
            if at >= tx.deadline {
                return self.by_key.remove(&key).map(Due::Expired);
            }
            // Every send done, deadline later: wait for it.
            tx.next = tx.deadline;
            let deadline = tx.deadline;
            self.arm(deadline, key);
        }
    }

    /// When the next timer is due (stale entries are dropped on the way).
    pub fn next_timeout(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, _, key))) = self.timers.peek() {
            if self.by_key.get(&key).is_some_and(|tx| tx.next == at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_follow_the_schedule_then_expire() {
        let t0 = Instant::now();
        let mut txs = Txs::default();
        let to: SocketAddr = "192.0.2.1:1".parse().unwrap();
        txs.start(
            t0,
            Key::Bind,
            Purpose::Bind,
            Via::Main,
            to,
            Vec::new(),
            &[0, 100, 300],
            Duration::from_millis(1000),
        );
        let mut sends = Vec::new();
        let mut now = t0;
        loop {
            while let Some(d) = txs.poll_due(now) {
                match d {
                    Due::Send(_) => sends.push(now.duration_since(t0).as_millis()),
                    Due::Expired(_) => {
                        assert_eq!(now.duration_since(t0).as_millis(), 1000);
                        assert_eq!(sends, [0, 100, 300]);
                        return;
                    }
                }
            }
            now = txs.next_timeout().expect("a timer is pending");
        }
    }
}
