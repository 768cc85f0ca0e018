//! The lab's network: one set of namespaces per pair (internet bridge, two routers, two LANs),
//! the nftables rules of each NAT kind, the delay-and-loss wire's links, and what the lab does
//! to the routers of a running pair (cut the direct path). Everything it makes is deleted when
//! the [`Topology`] drops, on Ctrl-C, or at the next run if the process was killed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::wire::Impairment;

/// What a NAT does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    None,
    FullCone,
    PortRestricted,
    /// A new random public port per destination (`masquerade random`).
    Symmetric,
    /// A new public port per destination, taken in sequence (as many home and carrier NATs
    /// do): port prediction can find it.
    SymmetricSeq,
    /// UDP only to and from the rendezvous (everything else dropped).
    Blocked,
}

impl Nat {
    pub const ALL: [Nat; 6] = [
        Nat::None,
        Nat::FullCone,
        Nat::PortRestricted,
        Nat::Symmetric,
        Nat::SymmetricSeq,
        Nat::Blocked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Nat::None => "none",
            Nat::FullCone => "full-cone",
            Nat::PortRestricted => "port-restricted",
            Nat::Symmetric => "symmetric",
            Nat::SymmetricSeq => "symmetric-seq",
            Nat::Blocked => "blocked",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Nat::ALL
            .into_iter()
            .find(|n| n.name() == s || (s == "cone" && *n == Nat::FullCone))
            .with_context(|| {
                format!("unknown NAT kind {s:?}: none, full-cone (cone), port-restricted, symmetric, symmetric-seq, blocked")
            })
    }

    /// The nftables ruleset of router `n` (1 or 2) whose public link is `pub_if`.
    fn rules(self, pub_if: &str, public_ip: &str) -> String {
        let fullcone = format!(
            "table ip nat {{
  map fullcone {{
    type inet_service : ipv4_addr . inet_service
    flags dynamic,timeout
    timeout 300s
    size 65536
  }}
  chain pre {{
    type nat hook prerouting priority dstnat;
    iifname \"{pub_if}\" meta l4proto udp dnat to udp dport map @fullcone
  }}
  chain post {{
    type nat hook postrouting priority srcnat;
    oifname \"{pub_if}\" meta l4proto udp update @fullcone {{ udp sport timeout 300s : ip saddr . udp sport }}
    oifname \"{pub_if}\" snat to {public_ip}
  }}
}}
"
        );
        let symmetric = format!(
            "table ip nat {{
  chain pre {{
    type nat hook prerouting priority dstnat;
  }}
  chain post {{
    type nat hook postrouting priority srcnat;
    oifname \"{pub_if}\" masquerade random
  }}
}}
"
        );
        let established_only = format!(
            "table ip filter {{
  chain forward {{
    type filter hook forward priority 0;
    iifname \"{pub_if}\" ct state established,related accept
    iifname \"{pub_if}\" drop
  }}
}}
"
        );
        // `snat to IP : numgen inc …` would take numgen's host-order number as a network-order
        // port (ports then step by 256); a map from the counter to ports keeps the byte order.
        let ports: Vec<String> = (0..SEQ_PORTS)
            .map(|i| format!("{i} : {}", SEQ_BASE + i))
            .collect();
        let sequential = format!(
            "table ip nat {{
  chain post {{
    type nat hook postrouting priority srcnat;
    oifname \"{pub_if}\" meta l4proto udp snat to {public_ip} : numgen inc mod {SEQ_PORTS} map {{ {} }}
  }}
}}
",
            ports.join(", ")
        );
        match self {
            Nat::None => String::new(),
            Nat::SymmetricSeq => sequential,
            Nat::FullCone => fullcone,
            Nat::PortRestricted => fullcone + &established_only,
            Nat::Symmetric => symmetric,
            Nat::Blocked => {
                symmetric
                    + &format!(
                        "table ip filter {{
  chain forward {{
    type filter hook forward priority 0;
    ip daddr {RV_IP} accept
    ip saddr {RV_IP} accept
    meta l4proto udp drop
  }}
}}
"
                    )
            }
        }
    }
}

pub const RV_IP: &str = "198.51.100.1";
/// The sequential symmetric NAT hands out these ports in turn.
const SEQ_BASE: u32 = 20000;
const SEQ_PORTS: u32 = 256;
const PREFIX: &str = "qdlab";

/// Namespaces alive now, for the Ctrl-C handler.
static LIVE: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn ip(args: &[&str]) -> Result<()> {
    checked(Command::new("ip").args(args), || {
        format!("ip {}", args.join(" "))
    })
}

/// Runs `cmd` to the end; an error names it (as `what` says) with its stderr.
fn checked(cmd: &mut Command, what: impl Fn() -> String) -> Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("running {}", what()))?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            what(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

pub fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<()> {
    checked(in_ns(ns, program).args(args), || {
        format!("{program} {} in {ns}", args.join(" "))
    })
}

fn delete_namespaces(names: &[String]) {
    for ns in names {
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
    }
}

/// Deletes namespaces left by lab runs whose process is gone.
pub fn delete_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| {
            n.strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        })
        .map(str::to_owned)
        .collect();
    if !stale.is_empty() {
        eprintln!("nat-lab: deleting stale namespaces {stale:?}");
        delete_namespaces(&stale);
    }
}

/// One pair's namespaces (and the wire process, if any); deleted when dropped.
pub struct Topology {
    names: Vec<String>,
    wire: Option<std::process::Child>,
    /// The NAT kinds of router 1 (the host's) and router 2 (the controller's).
    pub kinds: [Nat; 2],
}

impl Drop for Topology {
    fn drop(&mut self) {
        if let Some(mut w) = self.wire.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
        delete_namespaces(&self.names);
        LIVE.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| !self.names.contains(n));
    }
}

impl Topology {
    pub fn ns(&self, role: &str) -> String {
        format!("{PREFIX}{}-{role}", std::process::id())
    }

    /// Builds the namespaces of one pair; with `wire`, the host's router reaches the internet
    /// through a delay-and-loss wire ([`super::wire`]).
    pub fn build(host: Nat, ctl: Nat, wire: Option<Impairment>) -> Result<Self> {
        let mut t = Topology {
            names: Vec::new(),
            wire: None,
            kinds: [host, ctl],
        };
        for role in ["inet", "nat1", "lan1", "nat2", "lan2"] {
            let ns = t.ns(role);
            ip(&["netns", "add", &ns])?;
            LIVE.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(ns.clone());
            t.names.push(ns.clone());
            run_in(&ns, "ip", &["link", "set", "lo", "up"])?;
        }
        let inet = t.ns("inet");
        run_in(&inet, "ip", &["link", "add", "lab0", "type", "bridge"])?;
        run_in(
            &inet,
            "ip",
            &["addr", "add", &format!("{RV_IP}/24"), "dev", "lab0"],
        )?;
        run_in(&inet, "ip", &["link", "set", "lab0", "up"])?;
        run_in(&inet, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
        for (n, nat) in [(1, host), (2, ctl)] {
            let (router, lan) = (t.ns(&format!("nat{n}")), t.ns(&format!("lan{n}")));
            let (pub_if, br_if, in_if, lan_if) = ("pub0", format!("up{n}"), "in0", "eth0");
            let public_ip = format!("198.51.100.{}", 10 + n);
            // Router ↔ internet bridge.
            ip(&[
                "link", "add", pub_if, "netns", &router, "type", "veth", "peer", "name", &br_if,
                "netns", &inet,
            ])?;
            let wired = n == 1 && wire.is_some();
            if wired {
                // up1 ── wire ── w1 ══ w1b on the bridge
                run_in(
                    &inet,
                    "ip",
                    &["link", "add", "w1", "type", "veth", "peer", "name", "w1b"],
                )?;
                run_in(&inet, "ip", &["link", "set", "w1b", "master", "lab0"])?;
                for dev in ["w1", "w1b"] {
                    run_in(&inet, "ip", &["link", "set", dev, "up"])?;
                }
            } else {
                run_in(&inet, "ip", &["link", "set", &br_if, "master", "lab0"])?;
            }
            run_in(&inet, "ip", &["link", "set", &br_if, "up"])?;
            // Router ↔ LAN.
            ip(&[
                "link", "add", in_if, "netns", &router, "type", "veth", "peer", "name", lan_if,
                "netns", &lan,
            ])?;
            let lan_net = format!("10.{n}.0");
            let (public_cidr, gw_cidr) = (format!("{public_ip}/24"), format!("{lan_net}.1/24"));
            let (lan_cidr, gw) = (format!("{lan_net}.2/24"), format!("{lan_net}.1"));
            let steps: [(&str, &[&str]); 8] = [
                (&router, &["addr", "add", &public_cidr, "dev", pub_if]),
                (&router, &["addr", "add", &gw_cidr, "dev", in_if]),
                (&router, &["link", "set", pub_if, "up"]),
                (&router, &["link", "set", in_if, "up"]),
                (&router, &["route", "add", "default", "via", RV_IP]),
                (&lan, &["addr", "add", &lan_cidr, "dev", lan_if]),
                (&lan, &["link", "set", lan_if, "up"]),
                (&lan, &["route", "add", "default", "via", &gw]),
            ];
            for (ns, args) in steps {
                run_in(ns, "ip", args)?;
            }
            run_in(&router, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
            if let (true, Some(imp)) = (wired, wire) {
                t.wire = Some(start_wire(&router, &inet, &br_if, imp)?);
            }
            if nat == Nat::None {
                // The LAN is public: the internet routes to it.
                run_in(
                    &inet,
                    "ip",
                    &[
                        "route",
                        "add",
                        &format!("{lan_net}.0/24"),
                        "via",
                        &public_ip,
                    ],
                )?;
            } else {
                let rules = nat.rules(pub_if, &public_ip);
                let mut nft = in_ns(&router, "nft");
                nft.args(["-f", "-"]).stdin(Stdio::piped());
                let mut child = nft
                    .spawn()
                    .context("running nft (cargo xtask setup installs nftables)")?;
                std::io::Write::write_all(
                    child.stdin.as_mut().context("nft stdin")?,
                    rules.as_bytes(),
                )?;
                drop(child.stdin.take());
                let status = child.wait()?;
                if !status.success() {
                    bail!("nft rejected the {} rules", nat.name());
                }
            }
        }
        Ok(t)
    }
}

/// Starts `xtask netem-wire` between `up_if` and `w1` in the internet namespace, with
/// segmentation and checksum offloads off on the links whose frames it reads (so each frame is
/// one finished packet).
fn start_wire(
    router: &str,
    inet: &str,
    up_if: &str,
    imp: Impairment,
) -> Result<std::process::Child> {
    let offloads = [
        "tx", "off", "sg", "off", "tso", "off", "gso", "off", "gro", "off",
    ];
    for (ns, dev) in [(router, "pub0"), (inet, up_if), (inet, "w1"), (inet, "w1b")] {
        let mut args = vec!["-K", dev];
        args.extend(offloads);
        run_in(ns, "ethtool", &args)?;
    }
    let out = in_ns(router, "cat")
        .arg("/sys/class/net/pub0/address")
        .output()
        .context("reading the router's MAC")?;
    let mac = String::from_utf8(out.stdout)?.trim().to_owned();
    let exe = std::env::current_exe().context("locating xtask")?;
    let netem = imp.to_string();
    let mut child = in_ns(inet, &path_str(&exe))
        .args(["netem-wire", up_if, "w1", &mac, &netem])
        .stdout(Stdio::null())
        .spawn()
        .context("starting the delay-and-loss wire")?;
    // It opens its packet sockets at once; one that is gone by now never will.
    std::thread::sleep(Duration::from_millis(300));
    if let Some(status) = child.try_wait()? {
        bail!("the delay-and-loss wire (xtask netem-wire) exited at start: {status}");
    }
    Ok(child)
}

/// Makes the host's router drop everything between the two peers' public addresses.
pub fn cut_direct(router: &str) -> Result<()> {
    let other = "198.51.100.12";
    run_in(router, "nft", &["add", "table", "ip", "qdcut"])?;
    run_in(
        router,
        "nft",
        &[
            "add", "chain", "ip", "qdcut", "forward", "{", "type", "filter", "hook", "forward",
            "priority", "-10", ";", "}",
        ],
    )?;
    for dir in ["daddr", "saddr"] {
        run_in(
            router,
            "nft",
            &[
                "add", "rule", "ip", "qdcut", "forward", "ip", dir, other, "drop",
            ],
        )?;
    }
    Ok(())
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Deletes the live namespaces on Ctrl-C / SIGTERM, then exits.
pub fn install_signal_cleanup() {
    let _ = ctrlc::set_handler(|| {
        let names = LIVE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        eprintln!("nat-lab: interrupted; deleting {names:?}");
        delete_namespaces(&names);
        std::process::exit(130);
    });
}
