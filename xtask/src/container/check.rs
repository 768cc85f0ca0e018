//! The rendezvous's image as an operator uses it, each promise of the Dockerfile checked:
//!
//! - the image's configuration: uid 10001, the data directory a volume, the ports exposed, a
//!   health check, which passes once the server runs;
//! - settings from `QUICDESK_RV_*` variables (`check-config`, then the running server);
//! - the server runs as uid 10001 and its data directory holds only files of that user, the key
//!   readable by it alone;
//! - `podman exec … rendezvous user add` makes an admin who logs in to the console over HTTPS
//!   (curl, trusting only the console's own certificate, read from the volume) and renames a host;
//! - a host and a controller of this machine's build meet through it with `--force-relay`, so
//!   frames cross the relay's UDP port inside the container; the console lists that session on
//!   the relay with its bytes, `/metrics` counts the registration and the relayed bytes;
//! - `podman stop` ends it cleanly (SIGTERM, exit 0, well before the kill);
//! - a new container on the same volume has the same key (the same invite), the same admin and
//!   the same registry (the host's code, its new name, the past session).
//!
//! The containers use the host's network (tests here may only use loopback) where an operator
//! publishes ports; everything listens on 127.0.0.1.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use super::{IMAGE, Podman};
use crate::loopback::{code_and_password, give_password, peer_connect, peer_host, peer_join};
use crate::proc::{cargo, free_tcp_port, free_udp_port, run, spawn_lines, target_dir};

const NAME: &str = "quicdesk-rendezvous-check";
const VOLUME: &str = "quicdesk-rendezvous-check-data";
const DATA: &str = "/var/lib/quicdesk-rendezvous";
const UID: u32 = 10001;

pub fn operator_checks(podman: &Podman) -> Result<()> {
    image_config(podman)?;
    run(cargo().args(["build", "-p", "peer", "--bins"]))?;
    // Removed first (a run that was killed may have left them) and when done, passed or not.
    let cleanup = Cleanup(podman);
    cleanup.remove();

    let ports = Ports {
        quic: free_udp_port()?,
        console: free_tcp_port()?,
        metrics: free_tcp_port()?,
    };
    let env = ports.env();
    let cfg = podman.output(
        &[
            &["run", "--rm", "--network=host"][..],
            &env_args(&env),
            &[IMAGE, "check-config"],
        ]
        .concat(),
    )?;
    for want in [
        format!("listen = 127.0.0.1:{}", ports.quic),
        format!("console-listen = 127.0.0.1:{}", ports.console),
        format!("data-dir = {DATA}"),
    ] {
        ensure!(
            cfg.contains(&want),
            "check-config in the image lacks {want:?}:\n{cfg}"
        );
    }

    start(podman, &env)?;
    // The image's own health check, run as the engine runs it.
    let said = podman.output(&["healthcheck", "run", NAME])?;
    eprintln!("container: the image's health check: {}", said.trim());
    let volume = PathBuf::from(
        podman
            .output(&["volume", "inspect", "--format", "{{.Mountpoint}}", VOLUME])?
            .trim(),
    );
    runs_unprivileged(podman, &volume)?;

    let password = strong_password()?;
    exec_stdin(
        podman,
        &["rendezvous", "user", "add", "admin", "--password-stdin"],
        &password,
    )?;
    let quic = format!("127.0.0.1:{}", ports.quic);
    let invite = podman.output(&["exec", NAME, "rendezvous", "invite", "--address", &quic])?;
    let invite = invite.trim().to_owned();

    let work = std::env::temp_dir().join(format!("quicdesk-container-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let console = Console {
        base: format!("https://127.0.0.1:{}", ports.console),
        cert: volume.join("console-cert.pem"),
        jar: work.join("cookies"),
    };
    let csrf = console.log_in(&password)?;
    let code = relayed_session(&invite, &work)?;

    let host = console.get(&format!("/api/v1/hosts/{code}"))?;
    ensure!(host["code"] == code.as_str(), "the console's host: {host}");
    console.send(
        "PATCH",
        &format!("/api/v1/hosts/{code}"),
        &csrf,
        r#"{"name":"container-check"}"#,
    )?;
    let sessions = console.get("/api/v1/sessions")?;
    let relayed = ["live", "past"]
        .iter()
        .filter_map(|k| sessions[k].as_array())
        .flatten()
        .find(|s| s["code"] == code.as_str())
        .with_context(|| format!("the console lists no session to {code}: {sessions}"))?;
    ensure!(
        relayed["path"] == "relay" && relayed["bytes"].as_u64().unwrap_or(0) > 10_000,
        "the session through the container: {relayed}"
    );
    let metrics = http_get(&format!("http://127.0.0.1:{}/metrics", ports.metrics))?;
    ensure!(
        counter(&metrics, "quicdesk_registrations_total") >= 1.0
            && counter(&metrics, "quicdesk_relay_forwarded_bytes_total") > 10_000.0,
        "/metrics after a relayed session:\n{metrics}"
    );

    stop_cleanly(podman)?;
    podman.output(&["rm", NAME])?;
    eprintln!("container: a new container on the same volume");
    start(podman, &env)?;
    let again = podman.output(&["exec", NAME, "rendezvous", "invite", "--address", &quic])?;
    ensure!(
        again.trim() == invite,
        "the key did not survive the container: {invite} then {}",
        again.trim()
    );
    let _ = std::fs::remove_file(&console.jar);
    console.log_in(&password)?;
    let host = console.get(&format!("/api/v1/hosts/{code}"))?;
    ensure!(
        host["name"] == "container-check",
        "the registry did not survive the container: {host}"
    );
    let sessions = console.get("/api/v1/sessions")?;
    ensure!(
        sessions.to_string().contains(&code),
        "the past session did not survive the container: {sessions}"
    );
    stop_cleanly(podman)?;
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "container: the image runs as uid {UID}, takes its settings from the environment, keeps \
         its key, users and registry in its volume, relays a session and stops cleanly"
    );
    Ok(())
}

/// The image's own configuration, as `docker inspect` shows it to an operator.
fn image_config(podman: &Podman) -> Result<()> {
    let text = podman.output(&["image", "inspect", IMAGE])?;
    let v: Value = serde_json::from_str(&text)?;
    let c = &v[0]["Config"];
    ensure!(
        c["User"] == format!("{UID}:{UID}"),
        "the image's user: {}",
        c["User"]
    );
    ensure!(
        c["Volumes"].get(DATA).is_some(),
        "no volume at {DATA}: {}",
        c["Volumes"]
    );
    for port in ["7700/udp", "7701/udp", "7702/udp", "8443/tcp"] {
        ensure!(
            c["ExposedPorts"].get(port).is_some(),
            "{port} is not exposed: {}",
            c["ExposedPorts"]
        );
    }
    // Podman shows it beside the config, Docker inside it.
    let health = match &v[0]["Healthcheck"] {
        Value::Null => &c["Healthcheck"]["Test"],
        h => &h["Test"],
    };
    ensure!(
        health.to_string().contains("rendezvous") && health.to_string().contains("health"),
        "the image's health check: {health}"
    );
    let size = v[0]["Size"].as_u64().unwrap_or(0);
    eprintln!(
        "container: {IMAGE}: user {}, {} MB",
        c["User"],
        size / 1_000_000
    );
    Ok(())
}

struct Ports {
    quic: u16,
    console: u16,
    metrics: u16,
}

impl Ports {
    /// The settings an operator gives with `-e` (STUN and relay follow the QUIC port: +1, +2).
    fn env(&self) -> Vec<String> {
        vec![
            format!("QUICDESK_RV_LISTEN=127.0.0.1:{}", self.quic),
            format!("QUICDESK_RV_CONSOLE_LISTEN=127.0.0.1:{}", self.console),
            format!("QUICDESK_RV_METRICS_LISTEN=127.0.0.1:{}", self.metrics),
        ]
    }
}

fn env_args(env: &[String]) -> Vec<&str> {
    env.iter().flat_map(|e| ["-e", e.as_str()]).collect()
}

/// Starts the server in a container named [`NAME`] on [`VOLUME`] and waits until it listens.
fn start(podman: &Podman, env: &[String]) -> Result<()> {
    let volume = format!("{VOLUME}:{DATA}");
    podman.output(
        &[
            &["run", "-d", "--name", NAME, "--network=host", "-v", &volume][..],
            &env_args(env),
            &[IMAGE],
        ]
        .concat(),
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let logs = logs(podman)?;
        if logs.contains("rendezvous listening on") && logs.contains("console on https://") {
            return Ok(());
        }
        let running = podman.output(&["inspect", "--format", "{{.State.Running}}", NAME])?;
        if running.trim() != "true" || Instant::now() > deadline {
            bail!("the rendezvous in the container did not start:\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn logs(podman: &Podman) -> Result<String> {
    let out = podman
        .cmd()
        .args(["logs", NAME])
        .output()
        .context("podman logs")?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// The server process's user as the kernel sees it, and the owner and modes of what it wrote.
fn runs_unprivileged(podman: &Podman, volume: &Path) -> Result<()> {
    let pid = podman.output(&["inspect", "--format", "{{.State.Pid}}", NAME])?;
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))?;
    let uids = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .context("no Uid line")?;
    ensure!(
        uids.split_whitespace().all(|u| u == UID.to_string()),
        "the server runs as uids {uids}, not {UID}"
    );
    ensure!(
        std::fs::metadata(volume)?.uid() == UID,
        "the data directory is not the server's own"
    );
    let mut key_seen = false;
    for e in std::fs::read_dir(volume)? {
        let e = e?;
        let meta = e.metadata()?;
        ensure!(
            meta.uid() == UID,
            "{} in the volume belongs to uid {}",
            e.path().display(),
            meta.uid()
        );
        if e.file_name().to_string_lossy().ends_with(".key") {
            key_seen = true;
            let mode = meta.permissions().mode() & 0o777;
            ensure!(mode == 0o600, "{} has mode {mode:o}", e.path().display());
        }
    }
    ensure!(key_seen, "no key file in the volume");
    Ok(())
}

/// `podman exec -i NAME ARGS` with `input` on its standard input.
fn exec_stdin(podman: &Podman, args: &[&str], input: &str) -> Result<()> {
    use std::io::Write;
    let mut child = podman
        .cmd()
        .args(["exec", "-i", NAME])
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .context("podman exec")?;
    writeln!(child.stdin.take().context("stdin")?, "{input}")?;
    let status = child.wait()?;
    ensure!(
        status.success(),
        "podman exec {} failed ({status})",
        args.join(" ")
    );
    Ok(())
}

/// A host and a controller of this machine's debug build meeting through the container's
/// relay; the host's code.
fn relayed_session(invite: &str, work: &Path) -> Result<String> {
    let peer = target_dir().join("debug/peer");
    let (host_dir, ctl_dir) = (work.join("host"), work.join("controller"));
    peer_join(Command::new(&peer), invite, &host_dir)?;
    peer_join(Command::new(&peer), invite, &ctl_dir)?;
    let mut host = Command::new(&peer);
    peer_host(&mut host, &host_dir);
    host.args(["--source", "synthetic", "--size", "640x360"]);
    let (_host, host_lines) = spawn_lines(host, "host")?;
    let (code, password) = code_and_password(&host_lines)?;
    let stats = work.join("stats.json");
    let mut ctl = Command::new(&peer);
    peer_connect(&mut ctl, &code, 4, &stats, &ctl_dir);
    ctl.args(["--headless", "--force-relay"]);
    let (mut ctl, _ctl_lines) = spawn_lines(ctl, "viewer")?;
    give_password(&mut ctl, &password)?;
    let status = ctl.0.wait()?;
    ensure!(status.success(), "the viewer failed ({status})");
    let stats: Value = serde_json::from_slice(&std::fs::read(&stats)?)?;
    let frames = stats["frames_decoded"].as_u64().unwrap_or(0);
    ensure!(
        frames >= 10 && stats["path"] == "relay",
        "the session through the container's relay: {stats}"
    );
    eprintln!("container: {frames} frames decoded through the container's relay");
    Ok(code)
}

/// The console over HTTPS with curl, trusting only the console's self-signed certificate.
struct Console {
    base: String,
    cert: PathBuf,
    jar: PathBuf,
}

impl Console {
    fn curl(&self, method: &str, path: &str, extra: &[&str], body: Option<&str>) -> Result<Value> {
        use std::io::Write;
        let mut c = Command::new("curl");
        c.args(["-sS", "--fail-with-body", "--max-time", "10", "-X", method])
            .arg("--cacert")
            .arg(&self.cert)
            .arg("--cookie")
            .arg(&self.jar)
            .arg("--cookie-jar")
            .arg(&self.jar)
            .args(extra)
            .arg(format!("{}{path}", self.base))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if body.is_some() {
            c.args([
                "-H",
                "content-type: application/json",
                "--data-binary",
                "@-",
            ]);
        }
        let mut child = c
            .spawn()
            .context("running curl (cargo xtask setup installs it)")?;
        let mut stdin = child.stdin.take().context("curl's stdin")?;
        if let Some(b) = body {
            stdin.write_all(b.as_bytes())?;
        }
        drop(stdin);
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "{method} {path}: {} {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{method} {path}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Logs the admin in; the session's CSRF token.
    fn log_in(&self, password: &str) -> Result<String> {
        let body = serde_json::json!({ "user": "admin", "password": password }).to_string();
        let v = self.curl("POST", "/api/v1/login", &[], Some(&body))?;
        v["csrf"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no csrf token in the login's answer: {v}"))
    }

    fn get(&self, path: &str) -> Result<Value> {
        self.curl("GET", path, &[], None)
    }

    fn send(&self, method: &str, path: &str, csrf: &str, body: &str) -> Result<Value> {
        let header = format!("x-csrf-token: {csrf}");
        self.curl(method, path, &["-H", &header], Some(body))
    }
}

fn http_get(url: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--max-time", "10", url])
        .output()
        .context("running curl")?;
    ensure!(
        out.status.success(),
        "GET {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The value of an unlabelled Prometheus counter (0 when absent).
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `podman stop` (SIGTERM, a kill after 20 s): the server must end by itself, with status 0.
fn stop_cleanly(podman: &Podman) -> Result<()> {
    let t = Instant::now();
    podman.output(&["stop", "--time", "20", NAME])?;
    let took = t.elapsed();
    let code = podman.output(&["inspect", "--format", "{{.State.ExitCode}}", NAME])?;
    ensure!(
        code.trim() == "0" && took < Duration::from_secs(15),
        "the server did not end cleanly on SIGTERM: exit {} after {took:?}\n{}",
        code.trim(),
        logs(podman)?
    );
    Ok(())
}

/// 128 random bits as hex: strong enough for the console's password rules.
fn strong_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Removes the check's container and volume.
struct Cleanup<'a>(&'a Podman);

impl Cleanup<'_> {
    fn remove(&self) {
        let _ = self.0.cmd().args(["rm", "-f", "-t", "0", NAME]).output();
        let _ = self.0.cmd().args(["volume", "rm", "-f", VOLUME]).output();
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}
