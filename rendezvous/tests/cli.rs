//! The `rendezvous` program's set-up commands as an operator runs them.

use std::path::Path;
use std::process::Command;

mod console_support;

fn rendezvous(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

/// The lines a started server prints on `out`, read until `enough` has seen what it wants
/// (its argument: the lines so far). Within 20 s: a server that never prints them fails the test
/// instead of hanging it.
fn lines_until(
    out: impl std::io::Read + Send + 'static,
    mut enough: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut lines = Vec::new();
    while !enough(&lines) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => panic!("the server did not print what was expected within 20 s: {lines:?}"),
        }
    }
    lines
}

#[test]
fn an_invite_names_the_addresses_given_and_this_servers_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = rendezvous(
        &[
            "invite",
            "--address",
            "rv.example.com:7700",
            "--address",
            "[2001:db8::7]:7700",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let invite: proto::invite::Invite = String::from_utf8(out.stdout).unwrap().parse().unwrap();
    assert_eq!(
        invite.addresses,
        ["rv.example.com:7700", "[2001:db8::7]:7700"]
    );
    // The key is the one the server runs with (the same data directory).
    let fp = rendezvous(&["fingerprint"], dir.path());
    assert_eq!(
        String::from_utf8(fp.stdout).unwrap().trim(),
        invite.fingerprint.to_string()
    );

    // An address peers cannot use is refused, with the reason, and nothing is printed.
    let bad = rendezvous(&["invite", "--address", "0.0.0.0:7700"], dir.path());
    assert!(!bad.status.success());
    assert!(bad.stdout.is_empty());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("host:port"), "{why}");
    // Without an address it says what to give.
    let none = rendezvous(&["invite"], dir.path());
    assert!(!none.status.success());
    assert!(String::from_utf8_lossy(&none.stderr).contains("--address"));
}

fn check_config(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rendezvous"));
    c.arg("check-config").args(args);
    c.env_remove("QUICDESK_DATA_DIR")
        .env_remove("QUICDESK_RV_CONFIG");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

#[test]
fn settings_come_from_the_command_line_then_the_environment_then_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/rendezvous.toml");
    let file = dir.path().join("rv.toml");
    let data_in_file = dir.path().join("from-file");
    std::fs::write(
        &file,
        format!(
            "{}\ndata-dir = {:?}\nrelay_idle = \"5m\"\n",
            std::fs::read_to_string(shipped).unwrap(),
            data_in_file
        ),
    )
    .unwrap();
    let out = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The shipped example is valid as it is.
    let fresh = dir.path().join("fresh");
    let fresh = fresh.to_str().unwrap();
    let example = check_config(&["--config", shipped, "--data-dir", fresh], &[]);
    assert!(example.status.success(), "{}", err(&example));

    let c = file.to_str().unwrap();
    let from_file = check_config(&["--config", c], &[]);
    assert!(from_file.status.success(), "{}", err(&from_file));
    let text = out(&from_file);
    assert!(text.contains("relay-idle = 5m"), "{text}");
    assert!(
        text.contains(&format!("data-dir = {}", data_in_file.display())),
        "{text}"
    );
    assert!(text.contains("stun-listen = 0.0.0.0:7701"), "{text}");

    // The environment beats the file; the command line beats both.
    let data_in_env = dir.path().join("from-env");
    let env = [("QUICDESK_DATA_DIR", data_in_env.as_path())];
    let text = out(&check_config(&["--config", c], &env));
    assert!(
        text.contains(&format!("data-dir = {}", data_in_env.display())),
        "{text}"
    );
    let text = out(&check_config(
        &[
            "--config",
            c,
            "--listen",
            "127.0.0.1:9000",
            "--relay-idle=10s",
        ],
        &env,
    ));
    assert!(text.contains("listen = 127.0.0.1:9000"), "{text}");
    assert!(text.contains("relay-idle = 10s"), "{text}");
    // Every flag has its variable (as a container is configured): QUICDESK_RV_ and the name.
    let env = [
        ("QUICDESK_RV_RELAY_IDLE", Path::new("7m")),
        ("QUICDESK_RV_NO_STUN", Path::new("true")),
        ("QUICDESK_RV_CONSOLE_LISTEN", Path::new("127.0.0.1:8443")),
        (
            "QUICDESK_RV_CONSOLE_NAME",
            Path::new("rv.example.com,192.0.2.7"),
        ),
    ];
    let text = out(&check_config(&["--config", c], &env));
    assert!(text.contains("relay-idle = 7m"), "{text}");
    assert!(text.contains("stun-listen = off"), "{text}");
    assert!(text.contains("console-listen = 127.0.0.1:8443"), "{text}");
    assert!(
        text.contains("rv.example.com") && text.contains("192.0.2.7"),
        "{text}"
    );
    let text = out(&check_config(&["--config", c, "--relay-idle", "9s"], &env));
    assert!(text.contains("relay-idle = 9s"), "{text}");
    let bad = check_config(
        &["--config", c],
        &[("QUICDESK_RV_LISTEN", Path::new("nowhere"))],
    );
    assert!(!bad.status.success());
    assert!(
        err(&bad).contains("QUICDESK_RV_LISTEN") || err(&bad).contains("--listen"),
        "{}",
        err(&bad)
    );
    // The file through the environment, too.
    let text = out(&check_config(
        &[],
        &[("QUICDESK_RV_CONFIG", file.as_path())],
    ));
    assert!(text.contains("relay-idle = 5m"), "{text}");

    // A typo is an error naming the known keys; so is a bad value, and a port clash.
    std::fs::write(&file, "lisen = \"0.0.0.0:1\"\n").unwrap();
    let typo = check_config(&["--config", c], &[]);
    assert!(!typo.status.success());
    assert!(
        err(&typo).contains("lisen") && err(&typo).contains("listen"),
        "{}",
        err(&typo)
    );
    std::fs::write(&file, "relay-idle = \"soon\"\n").unwrap();
    assert!(!check_config(&["--config", c], &[]).status.success());
    let clash = check_config(
        &[
            "--listen",
            "127.0.0.1:7000",
            "--stun-listen",
            "127.0.0.1:7000",
            "--data-dir",
            fresh,
        ],
        &[],
    );
    assert!(err(&clash).contains("two services"), "{}", err(&clash));
}

/// The shipped unit, pointed at the program just built, passes systemd's checker, and its
/// sandboxing scores as systemd's own security analysis rates it (printed; asserted "OK" or
/// better, i.e. an exposure of at most 2.0 out of 10).
#[test]
fn the_shipped_systemd_unit_verifies_and_is_sandboxed() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = include_str!("../dist/quicdesk-rendezvous.service");
    let unit = dir.path().join("quicdesk-rendezvous.service");
    std::fs::write(
        &unit,
        shipped.replace(
            "/usr/local/bin/rendezvous",
            env!("CARGO_BIN_EXE_rendezvous"),
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new("systemd-analyze")
            .args(args)
            .arg(&unit)
            .output()
            .expect("systemd-analyze (Debian's systemd package; `cargo xtask setup` installs it)")
    };
    let verify = run(&["verify", "--man=no"]);
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = run(&["security", "--offline=true", "--no-pager"]);
    let report = String::from_utf8_lossy(&security.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for").nth(1))
        .and_then(|rest| rest.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in: {report}{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

/// `--metrics-listen`: Prometheus text at /metrics from the running server, counting what it
/// did (here a STUN request), and nothing else served.
#[test]
fn the_running_server_serves_its_metrics() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut metrics, mut stun) = (None, None);
    lines_until(child.stdout.take().unwrap(), |lines| {
        let line = lines.last().map_or("", String::as_str);
        if let Some(a) = line.strip_prefix("metrics on http://") {
            metrics = Some(a.trim_end_matches("/metrics").to_owned());
        } else if let Some(a) = line.strip_prefix("stun responder on ") {
            stun = Some(a.to_owned());
        }
        metrics.is_some() && stun.is_some()
    });
    let (metrics, stun) = (
        metrics.expect("metrics address"),
        stun.expect("stun address"),
    );
    let get = |path: &str| {
        let mut s = std::net::TcpStream::connect(&metrics).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (_, request) = proto::stun::binding_request().unwrap();
    udp.send_to(&request, &stun).unwrap();
    // Counted once the responder has taken it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = get("/metrics");
        let counted: u64 = text
            .lines()
            .filter(|l| l.starts_with("quicdesk_stun_requests_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        if counted == 1 || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let other = get("/admin");
    let _ = child.kill();
    let _ = child.wait();
    assert!(other.starts_with("HTTP/1.1 404"), "{other}");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("text/plain; version=0.0.4"), "{text}");
    assert!(text.contains("\nquicdesk_hosts_online 0\n"), "{text}");
    assert!(text.contains("quicdesk_relay_sessions 0"), "{text}");
    let counted: u64 = text
        .lines()
        .filter(|l| l.starts_with("quicdesk_stun_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(counted, 1, "{text}");
}

/// `QUICDESK_LOG_FORMAT=json`: every log line is one JSON object (for log collectors).
#[test]
fn logs_can_be_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--no-stun",
            "--no-relay",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("QUICDESK_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = lines_until(child.stderr.take().unwrap(), |lines| !lines.is_empty());
    let _ = child.kill();
    let _ = child.wait();
    let line = &first[0];
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(v["level"], "INFO", "{line}");
    assert!(v["fields"]["message"].is_string(), "{line}");
}

/// The first admin is made on the command line (a weak password refused, nothing made); the
/// running binary serves its console on HTTPS with the server's key, where that admin logs in.
#[test]
fn the_first_admin_logs_in_to_the_console_of_the_running_server() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let add = |pw: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
            .args([
                "user",
                "add",
                "root-admin",
                "--password-stdin",
                "--data-dir",
            ])
            .arg(dir.path())
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{pw}").unwrap();
        child.wait_with_output().unwrap()
    };
    let weak = add("password123");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("too weak"));
    let ok = add("Granite-Owl-Harbor-62");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let list = rendezvous(&["user", "list"], dir.path());
    assert_eq!(
        String::from_utf8_lossy(&list.stdout),
        "root-admin\tadmin\t-\n"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--console-listen",
            "127.0.0.1:0",
            "--console-redirect-from",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (mut console, mut fingerprint, mut plain) = (None, None, None);
    lines_until(child.stdout.take().unwrap(), |lines| {
        let line = lines.last().map_or("", String::as_str);
        if let Some(a) = line.strip_prefix("http://") {
            plain = a
                .strip_suffix(" redirects to the console")
                .map(str::to_owned);
        } else if let Some(a) = line.strip_prefix("console on https://") {
            console = Some(
                a.trim_end_matches('/')
                    .parse::<std::net::SocketAddr>()
                    .unwrap(),
            );
        } else if let Some(f) = line.strip_prefix("fingerprint: ") {
            fingerprint = Some(f.parse::<certs::Fingerprint>().unwrap());
        }
        console.is_some() && fingerprint.is_some() && plain.is_some()
    });
    let console = console.unwrap();
    // Plain HTTP only redirects to the console's HTTPS port, same path.
    let redirect = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(plain.unwrap()).unwrap();
        write!(
            s,
            "GET /hosts?x=1 HTTP/1.1\r\nHost: rv.example.com\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    };
    assert!(redirect.starts_with("HTTP/1.1 308"), "{redirect}");
    let location = format!(
        "location: https://rv.example.com:{}/hosts?x=1\r\n",
        console.port()
    );
    assert!(redirect.to_lowercase().contains(&location), "{redirect}");
    let client = console_support::Client::new(console, fingerprint.unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let me = rt.block_on(async {
        let s = console_support::log_in(&client, "root-admin", "Granite-Owl-Harbor-62")
            .await
            .expect("the admin logs in");
        client.get("/api/v1/me", &s.reading()).await.json()
    });
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(me["role"], "admin");
}

/// `rendezvous health` (the container's health check) says healthy only of a running server
/// that proves the key in the data directory, and gives a reason otherwise.
#[test]
fn health_answers_only_for_the_running_server_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let health = |listen: &str, data: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_rendezvous"))
            .args(["health", "--listen", listen, "--data-dir"])
            .arg(data)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let none = health("127.0.0.1:9", dir.path());
    assert!(!none.status.success());
    assert!(err(&none).contains("no server key"), "{}", err(&none));
    assert!(
        !dir.path().join("rendezvous.key").exists(),
        "health made a key"
    );

    let mut server = Command::new(env!("CARGO_BIN_EXE_rendezvous"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_until(server.stdout.take().unwrap(), |lines| {
        lines
            .iter()
            .any(|l| l.starts_with("rendezvous listening on "))
    });
    let at = lines
        .iter()
        .find_map(|l| l.strip_prefix("rendezvous listening on "))
        .unwrap()
        .to_owned();
    let ok = health(&at, dir.path());
    assert!(ok.status.success(), "{}", err(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).starts_with("healthy: "));

    // Another server's key: the one answering is not the server these settings describe.
    let other = tempfile::tempdir().unwrap();
    assert!(rendezvous(&["fingerprint"], other.path()).status.success());
    let wrong = health(&at, other.path());
    assert!(!wrong.status.success());
    assert!(err(&wrong).contains("this server's key"), "{}", err(&wrong));

    let _ = server.kill();
    let _ = server.wait();
    let gone = health(&at, dir.path());
    assert!(!gone.status.success());
    assert!(err(&gone).contains("did not answer"), "{}", err(&gone));
}
