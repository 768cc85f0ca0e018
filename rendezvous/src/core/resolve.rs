//! Look-ups: a controller asks for a code; the core checks the access mode and the limits,
//! finds the host online, opens a relay session (within the relay's and the account's caps)
//! and answers both sides. Part of [`Core`], in its own file for length.

use proto::limits::Prefix;
use proto::rendezvous::{self as msg, Refusal, ServerMsg};
use tracing::{debug, info, warn};

use super::{Core, Lookup, Now, Ports, Push, Refused, Resolution, Why, lock};
use crate::relay::{Owner, RelayOffer};

impl Core {
    /// A controller looks a code up ([`Lookup`]).
    ///
    /// An unknown, forgotten or offline code gets one and the same answer. Each look-up of an
    /// online host opens one relay session: the host's ticket goes with the push, the
    /// controller's with the answer. No relay to offer (full, capped, or its task down) means
    /// a refusal: addresses are never handed out instead. Only a rendezvous without a relay
    /// (and a controller that did not ask for `relay_only`) gives each side the other's
    /// addresses.
    pub fn resolve(&mut self, now: Now, lookup: Lookup<'_>, ports: Ports) -> Resolution {
        match self.try_resolve(now, lookup, ports) {
            Ok(resolution) => {
                self.counts.resolves += 1;
                resolution
            }
            Err(refused) => {
                self.counts.refusals.count(refused.why);
                Resolution {
                    answer: refused.to_msg(),
                    push: None,
                }
            }
        }
    }

    fn try_resolve(
        &mut self,
        now: Now,
        lookup: Lookup<'_>,
        ports: Ports,
    ) -> Result<Resolution, Refused> {
        let Lookup {
            key,
            source,
            code,
            lan_addrs,
            relay_only,
        } = lookup;
        let prefix = Prefix::of(source.ip());
        self.may_resolve(&key)?;
        if !self.policy.allow_resolve(key, prefix, now.instant) {
            warn!(%code, controller = %key, %source, "resolve refused: over the rate limit");
            return Err(Refused::new(
                Why::ResolveRateLimited,
                Refusal::RateLimited,
                "too many look-ups from this key or address; wait a little",
            ));
        }
        // Unknown, forgotten and offline codes answer alike.
        let (Some(rec), Some(host)) = (self.registry.get(&code), self.online.get(&code)) else {
            debug!(%code, %source, "resolve of a code that is not online");
            return Err(Refused::new(
                Why::Unavailable,
                Refusal::Unavailable,
                format!("no host with the code {code} can be reached now"),
            ));
        };
        let account = self.relay_account(&rec.fingerprint, &key);
        if let (Some(account), Some(cap)) = (&account, self.access.relay_cap)
            && self.relay.is_some()
            && self.sessions.live_of(account) >= cap
        {
            warn!(%code, controller = %key, %account, "resolve refused: the account's relay cap");
            return Err(Refused::new(
                Why::AccountCap,
                Refusal::Busy,
                "this account holds as many relayed sessions as it may; end one or try later",
            ));
        }
        let tickets = match (&self.relay, ports.relay) {
            (Some(relay), Some(port)) => {
                let mut relay = lock(relay);
                match relay.allocate(now.instant, Owner { key, prefix }) {
                    Ok([h, c]) => Some((port, h, c, relay.session_of(&h.token))),
                    Err(e) => {
                        warn!(%code, controller = %key, %source, "resolve refused: {e}");
                        return Err(Refused::new(
                            Why::Relay(e),
                            Refusal::Busy,
                            format!("{e}; try again later"),
                        ));
                    }
                }
            }
            (Some(_), None) => {
                warn!(%code, "resolve refused: the relay is down");
                return Err(Refused::new(
                    Why::RelayDown,
                    Refusal::Busy,
                    "the relay is not running right now; try again later",
                ));
            }
            (None, _) => None,
        };
        // With a relay the peers meet there first and swap addresses only once the password is
        // proven (over their encrypted session). Only a rendezvous run without a relay, whose
        // operator chose that, hands them out here.
        let reveal = self.relay.is_none() && !relay_only;
        let push = Push {
            to: host.push,
            msg: ServerMsg::ConnectRequest {
                controller: key,
                candidates: if reveal {
                    msg::candidates(Some(source), lan_addrs)
                } else {
                    Vec::new()
                },
                relay: tickets.map(|(port, h, ..)| RelayOffer { port, ticket: h }),
                source: self.source_tag(prefix),
            },
        };
        info!(%code, controller = %key, %source, relay = tickets.is_some(), relay_only, "resolved");
        let relay_id = tickets.and_then(|(.., id)| id);
        let host_key = rec.fingerprint;
        let resolved_candidates = if reveal {
            host.candidates.clone()
        } else {
            Vec::new()
        };
        self.session_started(now, relay_id, (code, host_key), (key, source), account);
        Ok(Resolution {
            answer: ServerMsg::Resolved {
                host: host_key,
                candidates: resolved_candidates,
                observed: source,
                stun_port: ports.stun,
                relay: tickets.map(|(port, _, c, _)| RelayOffer { port, ticket: c }),
            },
            push: Some(push),
        })
    }
}
