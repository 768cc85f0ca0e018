//! NAT models: mapping (endpoint-independent, address-dependent, address-and-port-dependent),
//! filtering (the same three), port allocation (preserving, random, sequential), and a router
//! that can lose every mapping at once.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How much of the remote endpoint a mapping or a filter depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dep {
    Independent,
    Address,
    AddressAndPort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alloc {
    /// The local port if free (Linux `snat` does this), else a random one.
    Preserve,
    Random,
    /// Ports taken in turn from a block (like the lab's `numgen inc` map, 20000 + n).
    Sequential,
}

/// The NAT kinds of the lab matrix (`xtask natlab::Nat`), plus two the lab does not build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    None,
    FullCone,
    /// Address-restricted cone (not in the lab).
    Restricted,
    PortRestricted,
    /// `masquerade random`.
    Symmetric,
    SymmetricSeq,
    /// UDP only to and from the rendezvous.
    Blocked,
    /// A port-restricted cone that allocates at random (not in the lab): losing its mappings
    /// moves the peer to a new port, like a NAT rebinding.
    RandomCone,
}

impl Kind {
    pub const LAB: [Kind; 6] = [
        Kind::None,
        Kind::FullCone,
        Kind::PortRestricted,
        Kind::Symmetric,
        Kind::SymmetricSeq,
        Kind::Blocked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::FullCone => "full-cone",
            Kind::Restricted => "restricted",
            Kind::PortRestricted => "port-restricted",
            Kind::Symmetric => "symmetric",
            Kind::SymmetricSeq => "symmetric-seq",
            Kind::Blocked => "blocked",
            Kind::RandomCone => "random-cone",
        }
    }

    /// (mapping, filtering, allocation); `None` for no NAT.
    fn behaviour(self) -> Option<(Dep, Dep, Alloc)> {
        use Dep::*;
        match self {
            Kind::None => None,
            Kind::FullCone => Some((Independent, Independent, Alloc::Preserve)),
            Kind::Restricted => Some((Independent, Address, Alloc::Preserve)),
            Kind::PortRestricted => Some((Independent, AddressAndPort, Alloc::Preserve)),
            Kind::Symmetric | Kind::Blocked => {
                Some((AddressAndPort, AddressAndPort, Alloc::Random))
            }
            Kind::SymmetricSeq => Some((AddressAndPort, AddressAndPort, Alloc::Sequential)),
            Kind::RandomCone => Some((Independent, AddressAndPort, Alloc::Random)),
        }
    }
}

/// What a mapping depends on besides the local address.
type MapKey = (SocketAddr, Option<SocketAddr>);

#[derive(Debug)]
struct Entry {
    key: MapKey,
    /// Remote endpoints the inside sent to through this mapping (the filter's memory).
    sent_to: Vec<SocketAddr>,
}

#[derive(Debug)]
pub struct Nat {
    pub kind: Kind,
    pub public_ip: IpAddr,
    /// The one IP a blocked NAT lets UDP through to and from.
    pub rendezvous_ip: IpAddr,
    by_key: BTreeMap<MapKey, u16>,
    by_port: BTreeMap<u16, Entry>,
    seq: u32,
    rng: StdRng,
}

const SEQ_BASE: u32 = 20000;
/// The lab's block is 256 ports; a birthday pool fills that in one round, and its mappings
/// stay (no expiry here), so a second round would find none free: a bigger block keeps the
/// sequential behaviour without that artefact.
const SEQ_PORTS: u32 = 4096;

impl Nat {
    pub fn new(kind: Kind, public_ip: IpAddr, rendezvous_ip: IpAddr, seed: u64) -> Self {
        Self {
            kind,
            public_ip,
            rendezvous_ip,
            by_key: BTreeMap::new(),
            by_port: BTreeMap::new(),
            seq: 0,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn blocked(&self, remote: SocketAddr) -> bool {
        self.kind == Kind::Blocked && remote.ip() != self.rendezvous_ip
    }

    /// The public source of a datagram from `local` to `remote`, or `None` if dropped.
    pub fn outbound(&mut self, local: SocketAddr, remote: SocketAddr) -> Option<SocketAddr> {
        let Some((mapping, _, alloc)) = self.kind.behaviour() else {
            return Some(local);
        };
        if self.blocked(remote) {
            return None;
        }
        let key = match mapping {
            Dep::Independent => (local, None),
            Dep::Address => (local, Some(SocketAddr::new(remote.ip(), 0))),
            Dep::AddressAndPort => (local, Some(remote)),
        };
        let port = match self.by_key.get(&key) {
            Some(&p) => p,
            None => {
                let p = self.allocate(local.port(), alloc)?;
                self.by_key.insert(key, p);
                self.by_port.insert(
                    p,
                    Entry {
                        key,
                        sent_to: Vec::new(),
                    },
                );
                p
            }
        };
        let entry = self.by_port.get_mut(&port)?;
        if !entry.sent_to.contains(&remote) {
            entry.sent_to.push(remote);
        }
        Some(SocketAddr::new(self.public_ip, port))
    }

    fn allocate(&mut self, wanted: u16, alloc: Alloc) -> Option<u16> {
        let free = |p: u16, by_port: &BTreeMap<u16, Entry>| p >= 1024 && !by_port.contains_key(&p);
        match alloc {
            Alloc::Preserve if free(wanted, &self.by_port) => Some(wanted),
            Alloc::Sequential => {
                for _ in 0..SEQ_PORTS {
                    let p = u16::try_from(SEQ_BASE + self.seq % SEQ_PORTS).ok()?;
                    self.seq += 1;
                    if free(p, &self.by_port) {
                        return Some(p);
                    }
                }
                None
            }
            Alloc::Preserve | Alloc::Random => {
                for _ in 0..1000 {
                    let p = self.rng.random_range(1024..=u16::MAX);
                    if free(p, &self.by_port) {
                        return Some(p);
                    }
                }
                None
            }
        }
    }

    /// Where a datagram from `remote` to public port `port` goes inside, or `None` if dropped.
    pub fn inbound(&self, remote: SocketAddr, port: u16) -> Option<SocketAddr> {
        let (_, filtering, _) = self.kind.behaviour()?;
        if self.blocked(remote) {
            return None;
        }
        let entry = self.by_port.get(&port)?;
        let allowed = match filtering {
            Dep::Independent => true,
            Dep::Address => entry.sent_to.iter().any(|a| a.ip() == remote.ip()),
            Dep::AddressAndPort => entry.sent_to.contains(&remote),
        };
        allowed.then_some(entry.key.0)
    }

    /// The router forgets every mapping (a reboot, a conntrack flush, a timeout of all).
    pub fn flush(&mut self) {
        self.by_key.clear();
        self.by_port.clear();
    }
}
