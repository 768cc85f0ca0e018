//! The operator's view of the core and what an operator may change in it: host names, bans,
//! forgetting a host, pages of hosts for the console and API, and the events that keep an open
//! console up to date. Same rules as the rest of the core: no IO; writes are queued as
//! [`StoreOp`]s, events for the front-end to broadcast as [`Event`]s.

use std::net::SocketAddr;

use certs::Fingerprint;
use proto::AccessCode;
use proto::code::CodeCursor;
use tracing::info;

use super::{Core, Now, PushId, StoreOp};

/// What the operator has said about a host key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostMeta {
    /// A name for people (the console shows and searches it).
    pub name: Option<String>,
    /// A banned key registers nowhere on this server.
    pub banned: bool,
}

/// Longest host name, in characters.
pub const MAX_NAME: usize = 64;

/// A host as the console and API show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostView {
    pub code: AccessCode,
    pub key: Fingerprint,
    pub name: Option<String>,
    pub banned: bool,
    /// Unix seconds when it was last connected.
    pub last_seen: u64,
    /// While online: where its registration came from and since when (Unix seconds).
    pub online: Option<(SocketAddr, u64)>,
    /// While online, what it reported: its version and how its NAT maps ports.
    pub version: Option<String>,
    pub mapping: Option<proto::session::Mapping>,
}

/// Which hosts a page holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostQuery {
    /// A part of the code or the name (ASCII letters in any case), or the start of the key's
    /// hex.
    pub search: Option<String>,
    /// Only online (`Some(true)`) or offline (`Some(false)`) hosts.
    pub online: Option<bool>,
    /// Hosts with codes after this one (the previous page's last).
    pub after: Option<CodeCursor>,
    /// At most this many (capped at [`MAX_PAGE`]).
    pub limit: usize,
}

/// Most hosts on one page.
pub const MAX_PAGE: usize = 500;

/// A page of hosts, by code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPage {
    pub hosts: Vec<HostView>,
    /// How many hosts match the query in all.
    pub total: usize,
    /// Give this as `after` for the next page (`None`: this was the last).
    pub next: Option<AccessCode>,
}

/// Something an open console should show without reloading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A host came online, went offline, or the operator changed it.
    Host(AccessCode),
    /// A host was forgotten.
    Forgotten(AccessCode),
    /// A brokered session began or ended (its id).
    Session(String),
}

/// Why an operator's change was not made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    #[error("no host has this code")]
    NoSuchHost,
    #[error("a name is 1 to 64 printable characters")]
    BadName,
}

/// A name as an operator typed it: trimmed, 1 to [`MAX_NAME`] characters, no control characters.
pub fn parse_name(name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME || name.chars().any(char::is_control) {
        return Err(AdminError::BadName);
    }
    Ok(name.to_owned())
}

/// A search: a part of the code or of the name (ASCII letters in any case), or the start of
/// the key's hex. Matches without allocating: a page's scan of 100 000 hosts stays in
/// milliseconds, under the core's lock.
struct Matcher {
    needle: Vec<u8>,
    /// The needle's nibbles, if it is all hex digits (a key prefix).
    nibbles: Option<Vec<u8>>,
}

impl Matcher {
    fn new(search: &str) -> Self {
        let needle = search.trim().as_bytes().to_vec();
        let nibbles = (needle.len() <= 64 && !needle.is_empty())
            .then(|| {
                needle
                    .iter()
                    .map(|&b| (b as char).to_digit(16).map(|d| d as u8))
                    .collect::<Option<Vec<u8>>>()
            })
            .flatten();
        Self { needle, nibbles }
    }

    fn matches(&self, code: &AccessCode, key: &Fingerprint, name: Option<&str>) -> bool {
        let mut text = *b"ISR-00000000";
        for (t, d) in text[4..].iter_mut().zip(code.digits()) {
            *t = b'0' + d;
        }
        contains_ignore_ascii_case(&text, &self.needle)
            || name.is_some_and(|n| contains_ignore_ascii_case(n.as_bytes(), &self.needle))
            || self.nibbles.as_ref().is_some_and(|nib| {
                nib.iter().enumerate().all(|(i, &n)| {
                    let byte = key.as_bytes()[i / 2];
                    n == if i % 2 == 0 { byte >> 4 } else { byte & 15 }
                })
            })
    }
}

fn contains_ignore_ascii_case(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || hay
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

impl Core {
    /// Loads what the store holds about host keys.
    pub fn extend_meta(&mut self, meta: impl IntoIterator<Item = (Fingerprint, HostMeta)>) {
        self.meta.extend(meta);
    }

    /// Whether `key` is banned.
    pub fn is_banned(&self, key: &Fingerprint) -> bool {
        self.meta.get(key).is_some_and(|m| m.banned)
    }

    fn view(&self, code: AccessCode) -> Option<HostView> {
        let rec = self.registry.get(&code)?;
        let meta = self.meta.get(&rec.fingerprint);
        Some(HostView {
            code,
            key: rec.fingerprint,
            name: meta.and_then(|m| m.name.clone()),
            banned: meta.is_some_and(|m| m.banned),
            last_seen: rec.last_seen,
            online: self.online.get(&code).map(|h| (h.source, h.since)),
            version: self.online.get(&code).and_then(|h| h.version.clone()),
            mapping: self.online.get(&code).and_then(|h| h.mapping),
        })
    }

    /// A registered host's report of itself (kept while it is online). A version that is not
    /// short printable ASCII is kept as "?": it is shown to the operator.
    pub fn report(&mut self, key: &Fingerprint, version: &str, mapping: proto::session::Mapping) {
        let Some(code) = self.registry.code_of(key) else {
            return;
        };
        let Some(h) = self.online.get_mut(&code) else {
            return;
        };
        let printable = !version.is_empty()
            && version.len() <= proto::rendezvous::MAX_VERSION_LEN
            && version.bytes().all(|b| b.is_ascii_graphic());
        h.version = Some(if printable {
            version.to_owned()
        } else {
            "?".to_owned()
        });
        h.mapping = Some(mapping);
        self.events.push_back(Event::Host(code));
    }

    /// One host.
    pub fn host(&self, code: &AccessCode) -> Option<HostView> {
        self.view(*code)
    }

    /// A page of hosts by code. Scans the registry once (no sort of the whole registry: the
    /// page's hosts are picked from the matches with a bounded heap).
    pub fn hosts_page(&self, q: &HostQuery) -> HostPage {
        let limit = q.limit.clamp(1, MAX_PAGE);
        let matcher = q.search.as_deref().map(Matcher::new);
        let mut total = 0;
        // The `limit + 1` smallest codes after `q.after` (one more tells whether a next page exists).
        let mut heap = std::collections::BinaryHeap::with_capacity(limit + 2);
        for (code, rec) in self.registry.iter() {
            if q.online
                .is_some_and(|on| on != self.online.contains_key(code))
            {
                continue;
            }
            if let Some(m) = &matcher {
                let name = self
                    .meta
                    .get(&rec.fingerprint)
                    .and_then(|m| m.name.as_deref());
                if !m.matches(code, &rec.fingerprint, name) {
                    continue;
                }
            }
            total += 1;
            if q.after.is_some_and(|a| !a.is_before(code)) {
                continue;
            }
            heap.push(*code);
            if heap.len() > limit + 1 {
                heap.pop();
            }
        }
        let mut codes = heap.into_sorted_vec();
        let next = (codes.len() > limit).then(|| {
            codes.truncate(limit);
            codes[limit - 1]
        });
        HostPage {
            hosts: codes.into_iter().filter_map(|c| self.view(c)).collect(),
            total,
            next,
        }
    }

    /// Changes what the operator says about host `code`'s key and queues it for the store;
    /// returns the key.
    fn change_meta(
        &mut self,
        code: &AccessCode,
        change: impl FnOnce(&mut HostMeta),
    ) -> Result<Fingerprint, AdminError> {
        let key = self
            .registry
            .get(code)
            .ok_or(AdminError::NoSuchHost)?
            .fingerprint;
        let meta = self.meta.entry(key).or_default();
        change(meta);
        let meta = meta.clone();
        self.store.push_back(StoreOp::Meta(key, meta));
        Ok(key)
    }

    /// Names the host `code` (`None`: no name).
    pub fn rename(&mut self, code: &AccessCode, name: Option<String>) -> Result<(), AdminError> {
        self.change_meta(code, |m| m.name = name)?;
        self.events.push_back(Event::Host(*code));
        Ok(())
    }

    /// Bans or unbans the key of host `code`. A ban takes the host offline at once: the
    /// registration to close is returned (its next registration is refused).
    pub fn set_banned(
        &mut self,
        now: Now,
        code: &AccessCode,
        banned: bool,
    ) -> Result<Option<PushId>, AdminError> {
        let key = self.change_meta(code, |m| m.banned = banned)?;
        info!(%code, host = %key, banned, "operator changed a host's ban");
        let push = if banned {
            self.take_offline(now, code)
        } else {
            None
        };
        self.events.push_back(Event::Host(*code));
        Ok(push)
    }

    /// Forgets host `code` now, as if it had been away for too long: its code is quarantined
    /// (see [`crate::registry`]) and it goes offline; the registration to close is returned.
    /// The host registers again if it is still running (and not banned).
    pub fn forget(&mut self, now: Now, code: &AccessCode) -> Result<Option<PushId>, AdminError> {
        if self.registry.get(code).is_none() {
            return Err(AdminError::NoSuchHost);
        }
        let push = self.online.remove(code).map(|h| h.push);
        if let Some(expired) = self.registry.forget(code, now.unix) {
            self.store.push_back(StoreOp::Expired(expired));
        }
        info!(%code, "operator forgot a host; its code is quarantined");
        self.events.push_back(Event::Forgotten(*code));
        Ok(push)
    }

    fn take_offline(&mut self, now: Now, code: &AccessCode) -> Option<PushId> {
        let push = self.online.get(code)?.push;
        self.disconnected(now, *code, push);
        Some(push)
    }

    /// The next event for open consoles; call until `None` after every other call.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}
