//! One pair's session in the lab: rendezvous, `peer host` and `peer connect` with an input
//! script in the pair's namespaces, while the lab acts on the paths, then what the controller's
//! stats and the host's input log say.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::Conditions;
use super::flush::{Measured, flush_router, measure};
use super::topology::{Nat, RV_IP, Topology, cut_direct, in_ns, path_str};
use super::wire::Impairment;
use crate::loopback::{
    code_and_password, give_password, peer_connect, peer_host, peer_join, rendezvous_invite,
};
use crate::proc::{Guard, spawn_lines_to, target_dir, wait_line};

/// The input every lab session sends; the host logs what it receives, one event a line.
pub const LAB_SCRIPT: &str = "wait 300ms\nmove 0.25 0.75\nclick left\nwheel 0 -2\nkey KeyQ\ntext nat lab\nmove 0.5 0.5\nkey KeyW\ntext done\n";
/// Lines the host logs for [`LAB_SCRIPT`]: moves, click (2), wheel, keys (2 each), texts.
pub const LAB_EVENTS: usize = 11;

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
    /// What a mapping flush did and when frames flowed again (`--flush`).
    pub flush: Option<Measured>,
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
    let result = session(&topo, &bin, &work, seconds, conditions);
    let input_events = std::fs::read_to_string(work.join("input.log"))
        .map(|log| log.lines().count())
        .unwrap_or(0);
    let conditions = conditions.clone();
    let outcome = match result {
        Ok((stats, flush)) => Outcome {
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
            flush,
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
            flush: None,
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

fn session(
    topo: &Topology,
    bin: &Path,
    work: &Path,
    seconds: u32,
    conditions: &Conditions,
) -> Result<(serde_json::Value, Option<Measured>)> {
    let rv_dir = work.join("rendezvous");
    let rv_addr = format!("{RV_IP}:7700");
    let invite = rendezvous_invite(bin, &rv_dir, &rv_addr)?;
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

    // The whole first-run flow: each peer joins from a fresh data directory with the
    // operator's invite (checked against the rendezvous through its NAT), then runs with no
    // rendezvous flags.
    let (host_dir, ctl_dir) = (work.join("host"), work.join("controller"));
    let peer = |lan: &str| in_ns(&topo.ns(lan), &path_str(&bin.join("peer")));
    peer_join(peer("lan1"), &invite, &host_dir)?;
    peer_join(peer("lan2"), &invite, &ctl_dir)?;
    let mut host = peer("lan1");
    peer_host(&mut host, &host_dir);
    host.args(["--bind", "0.0.0.0:0", "--source", "synthetic"])
        .args(["--size", "640x360", "--input-log"])
        .arg(work.join("input.log"));
    let (_host, host_lines) = spawn_lines_to(host, "host", log("host")?)?;
    let (code, password) = code_and_password(&host_lines)?;

    let stats_path = work.join("stats.json");
    let script = work.join("input.script");
    std::fs::write(&script, LAB_SCRIPT)?;
    let mut ctl = peer("lan2");
    peer_connect(&mut ctl, &code, seconds, &stats_path, &ctl_dir);
    ctl.args(["--headless", "--bind", "0.0.0.0:0", "--input-script"])
        .arg(&script);
    // With a flush, what reaches and leaves the controller is captured, to see when and on
    // which path frames flow again.
    let capture_path = work.join("capture.txt");
    let capture = match conditions.flush {
        Some(_) => Some(start_capture(&topo.ns("lan2"), &capture_path)?),
        None => None,
    };
    let (mut ctl, _ctl_lines) = spawn_lines_to(ctl, "controller", log("controller")?)?;
    give_password(&mut ctl, &password)?;
    let flusher = conditions.flush.map(|f| {
        let routers: Vec<(String, Nat)> = f
            .side
            .routers()
            .iter()
            .map(|&n| (topo.ns(&format!("nat{n}")), topo.kinds[usize::from(n) - 1]))
            .collect();
        std::thread::spawn(move || -> Result<(f64, Vec<u64>)> {
            std::thread::sleep(f.at);
            let at = unix_now();
            let deleted = routers
                .iter()
                .map(|(router, nat)| flush_router(router, *nat))
                .collect::<Result<Vec<u64>>>()?;
            eprintln!(
                "nat-lab:   flushed the mappings of {} at {at:.6} ({:.0} ms), {deleted:?} entries",
                f.side.name(),
                (unix_now() - at) * 1000.0
            );
            Ok((at, deleted))
        })
    });
    let cutter = conditions.cut_direct_after.map(|after| {
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
    let until = unix_now();
    let flushed = match flusher {
        Some(f) => Some(
            f.join()
                .map_err(|_| anyhow::anyhow!("the mapping flusher panicked"))?
                .context("flushing the NAT mappings")?,
        ),
        None => None,
    };
    if let Some(mut c) = capture {
        // tcpdump writes each line as it sees the packet (-l); give it a moment for the last.
        std::thread::sleep(Duration::from_millis(200));
        let _ = c.0.kill();
        let _ = c.0.wait();
    }
    let measured = match flushed {
        Some((at, deleted)) => Some(measure(
            &capture_path,
            (at, until),
            deleted,
            CONTROLLER_IP,
            &format!("{RV_IP}.7702"),
        )?),
        None => None,
    };
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
    Ok((
        serde_json::from_slice(&std::fs::read(&stats_path)?)?,
        measured,
    ))
}

/// The controller's address on its LAN (also without a NAT: the LAN is then routed).
const CONTROLLER_IP: &str = "10.2.0.2";

/// Starts tcpdump on the LAN side of namespace `ns`, every UDP packet one line in `to`.
fn start_capture(ns: &str, to: &Path) -> Result<Guard> {
    let out = std::fs::File::create(to)?;
    let child = in_ns(ns, "tcpdump")
        .args(["-i", "eth0", "-n", "-tt", "-l", "udp"])
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .context("starting tcpdump (cargo xtask setup installs it)")?;
    // It opens its socket at once; the controller starts only after this.
    std::thread::sleep(Duration::from_millis(300));
    Ok(Guard(child, "tcpdump"))
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
