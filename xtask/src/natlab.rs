//! `cargo xtask nat-lab`: real binaries behind real (nftables) NATs in network namespaces.
//!
//! ```text
//!                 inet (bridge lab0, 198.51.100.1 = rendezvous :7700, STUN :7701, relay :7702)
//!                  │                                   │
//!   nat1: 198.51.100.11 ── NAT kind A ──┐     ┌── NAT kind B ── nat2: 198.51.100.12
//!         10.1.0.1                      │     │                 10.2.0.1
//!   lan1: 10.1.0.2  peer host ──────────┘     └────────── peer connect  lan2: 10.2.0.2
//! ```
//!
//! One topology per pair of NAT kinds, named `qdlab<pid>-…`; every namespace is deleted when the
//! pair ends, on failure and on Ctrl-C, and stale ones from a killed run are deleted at start.
//! The NAT rules are those of `shared/nat-lab.md`: nftables `masquerade random` for symmetric
//! NATs, a dynamic map for full cone, plus an established-only forward filter for port-restricted
//! cone. "symmetric-seq" is a symmetric NAT that hands out ports in sequence (`snat to IP :
//! numgen inc …`, evaluated once per new flow), the kind port prediction can beat. "No NAT"
//! routes the LAN from the internet side; "blocked" lets UDP through only to and from the
//! rendezvous.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::wire::Impairment;
use crate::{spawn_lines_to, target_dir, wait_line};

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

const RV_IP: &str = "198.51.100.1";
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

fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<()> {
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
fn delete_stale() {
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
struct Topology {
    names: Vec<String>,
    wire: Option<std::process::Child>,
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
    fn ns(&self, role: &str) -> String {
        format!("{PREFIX}{}-{role}", std::process::id())
    }

    /// Builds the namespaces of one pair; with `wire`, the host's router reaches the internet
    /// through a delay-and-loss wire ([`crate::wire`]).
    fn build(host: Nat, ctl: Nat, wire: Option<Impairment>) -> Result<Self> {
        let mut t = Topology {
            names: Vec::new(),
            wire: None,
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

/// The input every lab session sends; the host logs what it receives, one event a line.
const LAB_SCRIPT: &str = "wait 300ms\nmove 0.25 0.75\nclick left\nwheel 0 -2\nkey KeyQ\ntext nat lab\nmove 0.5 0.5\nkey KeyW\ntext done\n";
/// Lines the host logs for [`LAB_SCRIPT`]: moves, click (2), wheel, keys (2 each), texts.
const LAB_EVENTS: usize = 11;

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
    let netem = format!(
        "delay {}ms loss {}%",
        imp.delay.as_millis(),
        imp.loss * 100.0
    );
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

/// What happens to the paths during a session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conditions {
    /// netem-style delay and loss on the host's internet link, both ways.
    pub netem: Option<String>,
    /// Seconds after the controller starts at which the host's router starts dropping
    /// everything between the two peers' public addresses (the relay still works).
    pub cut_direct_after: Option<u32>,
}

impl std::fmt::Display for Conditions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(n) = &self.netem {
            parts.push(n.clone());
        }
        if let Some(s) = self.cut_direct_after {
            parts.push(format!("direct path cut at {s} s"));
        }
        if parts.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// The outcome of one pair.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub host: Nat,
    pub controller: Nat,
    pub conditions: Conditions,
    pub connected: bool,
    pub path: String,
    pub path_changes: u64,
    /// Frames decoded since the last path change.
    pub frames_since_change: u64,
    pub time_to_first_frame_ms: Option<f64>,
    pub time_to_direct_ms: Option<f64>,
    pub frames: u64,
    /// Input events the host received (of [`LAB_EVENTS`]).
    pub input_events: usize,
    pub error: Option<String>,
}

/// Runs rendezvous, host and controller for one pair under `conditions` and reports what
/// happened.
pub fn run_pair(host: Nat, ctl: Nat, seconds: u32, conditions: &Conditions) -> Result<Outcome> {
    let bin = target_dir().join("debug");
    let wire = conditions
        .netem
        .as_deref()
        .map(Impairment::parse)
        .transpose()?;
    let topo = Topology::build(host, ctl, wire)?;
    let work = std::env::temp_dir().join(format!(
        "quicdesk-natlab-{}-{}-{}",
        std::process::id(),
        host.name(),
        ctl.name()
    ));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let result = session(&topo, &bin, &work, seconds, conditions.cut_direct_after);
    let input_events = std::fs::read_to_string(work.join("input.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0);
    let conditions = conditions.clone();
    let outcome = match result {
        Ok(stats) => Outcome {
            host,
            controller: ctl,
            conditions,
            connected: stats["frames_decoded"].as_u64().unwrap_or(0) > 0,
            path: stats["path"].as_str().unwrap_or("?").to_owned(),
            path_changes: stats["path_changes"].as_u64().unwrap_or(0),
            frames_since_change: stats["frames_since_path_change"].as_u64().unwrap_or(0),
            time_to_first_frame_ms: stats["time_to_first_frame_ms"].as_f64(),
            time_to_direct_ms: stats["time_to_direct_ms"].as_f64(),
            frames: stats["frames_decoded"].as_u64().unwrap_or(0),
            input_events,
            error: None,
        },
        Err(e) => Outcome {
            host,
            controller: ctl,
            conditions,
            connected: false,
            path: "-".into(),
            path_changes: 0,
            frames_since_change: 0,
            time_to_first_frame_ms: None,
            time_to_direct_ms: None,
            frames: 0,
            input_events,
            error: Some(format!("{e:#}")),
        },
    };
    drop(topo);
    if std::env::var_os("QUICDESK_LAB_KEEP").is_some() {
        eprintln!("nat-lab:   logs kept in {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(outcome)
}

/// Makes the host's router drop everything between the two peers' public addresses.
fn cut_direct(router: &str) -> Result<()> {
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

fn session(
    topo: &Topology,
    bin: &Path,
    work: &Path,
    seconds: u32,
    cut_direct_after: Option<u32>,
) -> Result<serde_json::Value> {
    let rv_dir = work.join("rendezvous");
    let fp = crate::rendezvous_fingerprint(bin, &rv_dir)?;
    let rv_addr = format!("{RV_IP}:7700");
    let log = |name: &str| -> Result<Stdio> {
        Ok(std::fs::File::create(work.join(format!("{name}.log")))?.into())
    };
    let mut rv = in_ns(&topo.ns("inet"), &path_str(&bin.join("rendezvous")));
    rv.args(["--listen", &rv_addr, "--data-dir"]).arg(&rv_dir);
    let (_rv, rv_lines) = spawn_lines_to(rv, "rendezvous", log("rendezvous")?)?;
    wait_line(
        &rv_lines,
        "rendezvous listening on",
        Duration::from_secs(10),
    )?;

    let mut host = in_ns(&topo.ns("lan1"), &path_str(&bin.join("peer")));
    crate::peer_host(&mut host, (&rv_addr, &fp), &work.join("host"));
    host.args(["--bind", "0.0.0.0:0", "--source", "synthetic"])
        .args(["--size", "640x360", "--input-log"])
        .arg(work.join("input.log"));
    let (_host, host_lines) = spawn_lines_to(host, "host", log("host")?)?;
    let (code, password) = crate::code_and_password(&host_lines)?;

    let stats_path = work.join("stats.json");
    let script = work.join("input.script");
    std::fs::write(&script, LAB_SCRIPT)?;
    let mut ctl = in_ns(&topo.ns("lan2"), &path_str(&bin.join("peer")));
    crate::peer_connect(
        &mut ctl,
        &code,
        (&rv_addr, &fp),
        seconds,
        &stats_path,
        &work.join("controller"),
    );
    ctl.args(["--headless", "--bind", "0.0.0.0:0", "--input-script"])
        .arg(&script);
    let (mut ctl, _ctl_lines) = spawn_lines_to(ctl, "controller", log("controller")?)?;
    crate::give_password(&mut ctl, &password)?;
    let cutter = cut_direct_after.map(|after| {
        let router = topo.ns("nat1");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(u64::from(after)));
            cut_direct(&router)
        })
    });
    let deadline = Instant::now() + Duration::from_secs(u64::from(seconds) + 30);
    let status = loop {
        if let Some(s) = ctl.0.try_wait()? {
            break s;
        }
        if Instant::now() > deadline {
            bail!("the controller did not finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if let Some(cutter) = cutter {
        cutter
            .join()
            .map_err(|_| anyhow::anyhow!("the path cutter panicked"))?
            .context("cutting the direct path")?;
    }
    if !status.success() {
        let tail = std::fs::read_to_string(work.join("controller.log")).unwrap_or_default();
        // anyhow's report: "Error: …", then "Caused by:" and its lines, then a backtrace.
        let why: Vec<&str> = tail
            .lines()
            .skip_while(|l| !l.starts_with("Error:"))
            .take_while(|l| !l.starts_with("Stack backtrace"))
            .map(str::trim)
            .filter(|l| !l.is_empty() && *l != "Caused by:")
            .collect();
        bail!("controller exited with {status}: {}", why.join(" / "));
    }
    Ok(serde_json::from_slice(&std::fs::read(&stats_path)?)?)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Deletes the live namespaces on Ctrl-C / SIGTERM, then exits.
fn install_signal_cleanup() {
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

/// The pairs CI runs, each with the path it must end on (`None`: either). Cone NATs, filtering
/// NATs on both sides (hole punching), a symmetric controller against a full cone
/// (peer-reflexive candidates), a sequential symmetric host against a filtering controller
/// (port prediction), random symmetric against port-restricted both ways (birthday punching),
/// and a pair no punching opens, which must end on the relay.
pub const CI_PAIRS: [(Nat, Nat, Option<&str>); 7] = [
    (Nat::FullCone, Nat::FullCone, Some("direct")),
    (Nat::PortRestricted, Nat::PortRestricted, Some("direct")),
    (Nat::FullCone, Nat::Symmetric, Some("direct")),
    (Nat::SymmetricSeq, Nat::PortRestricted, Some("direct")),
    (Nat::PortRestricted, Nat::Symmetric, Some("direct")),
    (Nat::Symmetric, Nat::PortRestricted, Some("direct")),
    (Nat::Symmetric, Nat::Symmetric, Some("relay")),
];

/// The cut CI runs: the direct path dies mid-session; the session must go on by the relay.
pub const CI_CUT: (Nat, Nat, u32) = (Nat::PortRestricted, Nat::PortRestricted, 2);

/// The lossy path CI runs: a session over it must deliver frames and every input event.
pub const CI_NETEM: (Nat, Nat, &str) = (
    Nat::PortRestricted,
    Nat::PortRestricted,
    "delay 50ms loss 5%",
);

/// `cargo xtask nat-lab [--pairs host:ctl,...] [--seconds N]`: prints the matrix.
pub fn nat_lab(rest: &[String]) -> Result<()> {
    let mut pairs: Vec<(Nat, Nat, Option<&str>)> = Nat::ALL
        .into_iter()
        .flat_map(|a| Nat::ALL.into_iter().map(move |b| (a, b, None)))
        .collect();
    let mut seconds = 3;
    let mut ci = false;
    let mut netem: Option<String> = None;
    let mut cut: Option<u32> = None;
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--pairs" => {
                let list = it.next().context("--pairs needs host:controller,...")?;
                pairs = list
                    .split(',')
                    .map(|p| {
                        let (a, b) = p
                            .split_once(':')
                            .with_context(|| format!("pair {p:?} is not host:controller"))?;
                        Ok((Nat::parse(a)?, Nat::parse(b)?, None))
                    })
                    .collect::<Result<_>>()?;
            }
            "--ci" => {
                pairs = CI_PAIRS.to_vec();
                ci = true;
            }
            "--netem" => {
                let arg = it
                    .next()
                    .context("--netem needs netem-style arguments, e.g. \"delay 50ms loss 5%\"")?;
                Impairment::parse(arg)?;
                netem = Some(arg.clone());
            }
            "--cut-direct-after" => {
                cut = Some(
                    it.next()
                        .context("--cut-direct-after needs seconds")?
                        .parse()
                        .context("--cut-direct-after needs whole seconds")?,
                );
            }
            "--seconds" => {
                seconds = it
                    .next()
                    .context("--seconds needs a number")?
                    .parse()
                    .context("--seconds needs a number")?;
            }
            other => bail!("unknown nat-lab option {other:?}"),
        }
    }
    if !crate::is_root() {
        bail!("nat-lab needs root (network namespaces and nftables): run it with sudo");
    }
    for tool in ["nft", "ip", "ethtool"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            bail!(
                "nat-lab needs {tool}: run `cargo xtask setup` (installs nftables, iproute2 and ethtool)"
            );
        }
    }
    crate::run(crate::cargo().args(["build", "-p", "rendezvous", "-p", "peer", "--bins"]))?;
    delete_stale();
    install_signal_cleanup();
    let mut runs: Vec<(Nat, Nat, Option<&str>, Conditions)> = pairs
        .into_iter()
        .map(|(h, c, want)| {
            let conditions = Conditions {
                netem: netem.clone(),
                cut_direct_after: cut,
            };
            (h, c, want, conditions)
        })
        .collect();
    if ci {
        let (h, c, n) = CI_NETEM;
        let lossy = Conditions {
            netem: Some(n.to_owned()),
            cut_direct_after: None,
        };
        runs.push((h, c, None, lossy));
        let (h, c, at) = CI_CUT;
        let cut = Conditions {
            netem: None,
            cut_direct_after: Some(at),
        };
        runs.push((h, c, Some("relay"), cut));
    }
    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for (h, c, want, conditions) in runs {
        eprintln!(
            "nat-lab: host behind {}, controller behind {}, {conditions}",
            h.name(),
            c.name(),
        );
        // Lossy or cut paths: long enough for the input to get through and frames to follow.
        let secs = if conditions == Conditions::default() {
            seconds
        } else {
            seconds.max(6)
        };
        let o = run_pair(h, c, secs, &conditions)?;
        if let Some(e) = &o.error {
            eprintln!("nat-lab:   not connected: {e}");
        }
        let pair = format!("host {} / controller {} ({conditions})", h.name(), c.name());
        if !o.connected {
            failures.push(format!(
                "{pair} did not connect: {}",
                o.error.as_deref().unwrap_or("no frames")
            ));
        } else if o.input_events != LAB_EVENTS {
            failures.push(format!(
                "{pair}: the host got {} of {LAB_EVENTS} input events",
                o.input_events
            ));
        }
        if let Some(want) = want
            && o.connected
            && o.path != want
        {
            failures.push(format!("{pair} ended on the {} path, not {want}", o.path));
        }
        // A cut must be a real fallback (relay, then direct, then the relay again: 2 changes),
        // and frames must keep coming after it: counted from the last change, at least 2/3 of
        // 30 fps over what is left after the cut and the 1.5 s it takes to notice it.
        if let Some(at) = conditions.cut_direct_after {
            let after = u64::from(secs.saturating_sub(at + 2)) * 20;
            if o.path_changes < 2 {
                failures.push(format!(
                    "{pair}: {} path changes, not a fallback to the relay",
                    o.path_changes
                ));
            }
            if o.frames_since_change < after {
                failures.push(format!(
                    "{pair}: only {} frames after falling back (want {after})",
                    o.frames_since_change
                ));
            }
        }
        outcomes.push(o);
    }
    print_matrix(&outcomes);
    if ci && !failures.is_empty() {
        bail!("NAT lab: {}", failures.join("; "));
    }
    Ok(())
}

fn print_matrix(outcomes: &[Outcome]) {
    let ms = |v: Option<f64>| v.map_or("-".into(), |ms| format!("{ms:.0} ms"));
    println!(
        "\n| host NAT | controller NAT | path conditions | connected | path (changes) | time to first frame | time to direct | frames (since the last path change) | input events |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for o in outcomes {
        println!(
            "| {} | {} | {} | {} | {} ({}) | {} | {} | {} ({}) | {}/{LAB_EVENTS} |",
            o.host.name(),
            o.controller.name(),
            o.conditions,
            if o.connected { "yes" } else { "no" },
            o.path,
            o.path_changes,
            ms(o.time_to_first_frame_ms),
            ms(o.time_to_direct_ms),
            o.frames,
            o.frames_since_change,
            o.input_events
        );
    }
}
