//! The handshake's last step, the same on both sides and open only once the password is proven
//! (a [`CandidateExchange`] comes out of a finished [`super::HostHandshake`] or
//! [`super::ControllerHandshake`], nowhere else): each side tells the other where it may be
//! reached directly, again whenever its NAT moves it, and punches towards what it is told.
//!
//! ```text
//!  route's agent ── RouteView.local ──► announce ── Candidates ──► other side
//!  other side ── Candidates ──► on_remote ── Punch (checked addresses) ──► route's agent
//! ```
//!
//! What it guarantees: each local list goes out once (a repeat of the same list and mapping is
//! not sent again); a list from the other side reaches the agent only through
//! [`proto::rendezvous::sane_candidates`] (a hostile peer could name any address: a third
//! party, this machine's own, a broadcast address); on a relay-only session nothing is punched.
//! What it does not do: I/O or the punching itself (the route's agent, `pathagent`).

use std::net::SocketAddr;
use std::time::Instant;

use proto::session::{ControlMsg, Mapping};

use crate::nat::{from_wire, to_wire};

/// One session's candidates step, after the password step.
#[derive(Debug)]
pub struct CandidateExchange {
    /// The last list and mapping sent.
    sent: Option<(Vec<SocketAddr>, pathagent::Mapping)>,
    /// Whether the other side's candidates are punched towards (not on a relay-only session).
    direct: bool,
}

/// Addresses of the other side's to punch towards, and how its NAT maps ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Punch {
    pub addrs: Vec<SocketAddr>,
    pub mapping: pathagent::Mapping,
}

impl Punch {
    /// Hands the list to a route's agent, which punches towards it (again, if it already was:
    /// a new list starts a new round unless the direct path is healthy).
    pub fn apply(&self, agent: &mut pathagent::Agent, now: Instant) {
        agent.set_remote_candidates(now, &self.addrs, self.mapping);
        agent.start_punching(now);
    }
}

impl CandidateExchange {
    /// Only a finished password step makes one.
    pub(super) fn new() -> Self {
        Self {
            sent: None,
            direct: true,
        }
    }

    /// This session stays on the relay: the other side's candidates are not punched towards
    /// (this side's are still announced if its route has any).
    #[must_use]
    pub fn relay_only(mut self) -> Self {
        self.direct = false;
        self
    }

    /// The `Candidates` message for this side's route's current `local` candidates and
    /// mapping (`RouteView::local`), if they are new.
    pub fn announce(
        &mut self,
        local: Option<&(Vec<SocketAddr>, pathagent::Mapping)>,
    ) -> Option<ControlMsg> {
        let local = local?;
        if self.sent.as_ref() == Some(local) {
            return None;
        }
        self.sent = Some(local.clone());
        Some(ControlMsg::Candidates {
            addrs: local.0.clone(),
            mapping: to_wire(local.1),
        })
    }

    /// The other side's `Candidates` message: what to punch towards, checked for a receiver
    /// seen by the rendezvous as `seen_as` whose own socket is at `own`. `None` when this
    /// session does not punch.
    pub fn on_remote(
        &self,
        addrs: &[SocketAddr],
        mapping: Mapping,
        seen_as: Option<SocketAddr>,
        own: &[SocketAddr],
    ) -> Option<Punch> {
        self.direct.then(|| Punch {
            addrs: proto::rendezvous::sane_candidates(addrs, seen_as, own),
            mapping: from_wire(mapping),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_local_list_is_announced_once() {
        let mut x = CandidateExchange::new();
        assert_eq!(x.announce(None), None, "nothing before discovery");
        let first = (
            vec![a("198.51.100.7:4000")],
            pathagent::Mapping::EndpointDependent,
        );
        let Some(ControlMsg::Candidates { addrs, mapping }) = x.announce(Some(&first)) else {
            panic!("the first list goes out");
        };
        assert_eq!(addrs, first.0);
        assert_eq!(mapping, Mapping::EndpointDependent);
        assert_eq!(x.announce(Some(&first)), None, "a repeat is not sent");
        // The NAT moved this side: the new list goes out, and only once.
        let moved = (vec![a("198.51.100.7:4100")], first.1);
        assert!(x.announce(Some(&moved)).is_some());
        assert_eq!(x.announce(Some(&moved)), None);
        // Same addresses, another mapping: new too.
        let remapped = (moved.0.clone(), pathagent::Mapping::EndpointIndependent);
        assert!(x.announce(Some(&remapped)).is_some());
    }

    #[test]
    fn the_other_sides_list_is_checked_before_it_is_punched() {
        let x = CandidateExchange::new();
        let own = a("192.168.1.5:5000");
        let hostile = [
            a("203.0.113.9:6000"),
            a("0.0.0.0:1"),
            a("255.255.255.255:9"),
            a("224.0.0.1:5"),
            a("127.0.0.1:22"),
            a("169.254.1.1:80"),
            a("203.0.113.9:0"),
            own,
            a("203.0.113.9:6000"),
        ];
        let punch = x
            .on_remote(
                &hostile,
                Mapping::EndpointIndependent,
                Some(a("198.51.100.1:7")),
                &[own],
            )
            .unwrap();
        assert_eq!(punch.addrs, vec![a("203.0.113.9:6000")]);
        assert_eq!(punch.mapping, pathagent::Mapping::EndpointIndependent);
        // A session that stays on the relay punches nothing.
        let relayed = CandidateExchange::new().relay_only();
        assert_eq!(
            relayed.on_remote(&hostile, Mapping::Unknown, None, &[own]),
            None
        );
    }
}
