//! The `peer` program as a user runs it: setting a fixed password; joining a rendezvous with
//! an invite, after which the host needs no rendezvous flags.

mod common;

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn set_password(dir: &std::path::Path, input: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["password", "set", "--stdin", "--data-dir"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_fixed_password_is_checked_and_stored_only_as_a_private_hash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("host");
    let weak = set_password(&data, "123456\n");
    assert!(!weak.status.success());
    let err = String::from_utf8_lossy(&weak.stderr);
    assert!(err.contains("too weak"), "{err}");
    assert!(!data.join("password.json").exists());

    let ok = set_password(&data, "kq8v-2mzx-77ta-pw\n");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let stored = std::fs::read_to_string(data.join("password.json")).unwrap();
    assert!(!stored.contains("kq8v"), "the password in clear: {stored}");
    assert!(stored.contains("m_kib"), "{stored}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join("password.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The host refuses a --password flag: a password never goes on a command line.
    let flag = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--password", "kq8v-2mzx-77ta-pw"])
        .output()
        .unwrap();
    assert!(!flag.status.success());
    assert!(
        String::from_utf8_lossy(&flag.stderr).contains("unexpected argument"),
        "{}",
        String::from_utf8_lossy(&flag.stderr)
    );
}

/// The code a `peer host` child prints on its standard output: `Err` if none within `within`,
/// `Ok(None)` if its output ended without one.
async fn printed_code(
    host: &mut std::process::Child,
    within: Duration,
) -> Result<Option<String>, tokio::time::error::Elapsed> {
    let stdout = host.stdout.take().expect("the host's stdout is piped");
    let code = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("code: ").map(str::to_owned))
    });
    tokio::time::timeout(within, code)
        .await
        .map(|joined| joined.expect("the reading task"))
}

fn peer(args: &[&str], data: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env_remove("QUICDESK_RENDEZVOUS")
        .env_remove("QUICDESK_RENDEZVOUS_FINGERPRINT")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_joining_with_an_invite_the_host_needs_no_rendezvous_flags() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let data = dir.path().join("host");
    let config = data.join(peer::config::FILE_NAME);
    let invite = proto::invite::Invite::new(vec![rv.addr.to_string()], rv.fingerprint)
        .unwrap()
        .to_string();
    let join = |invite: String| {
        let data = data.clone();
        tokio::task::spawn_blocking(move || peer(&["join", &invite], &data))
    };

    // Before joining, the host says what to do.
    let lost = peer(&["host", "--source", "synthetic"], &data);
    assert!(!lost.status.success());
    let why = String::from_utf8_lossy(&lost.stderr);
    assert!(why.contains("peer join"), "{why}");

    // Not an invite, or another key than the rendezvous holds: refused, nothing saved.
    let garbage = join("ISR-12345678".into()).await.unwrap();
    assert!(!garbage.status.success());
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("qd1:"));
    let other_key = invite.replace(&rv.fingerprint.to_string(), &"ab".repeat(32));
    let forged = join(other_key).await.unwrap();
    assert!(
        !forged.status.success(),
        "{}",
        String::from_utf8_lossy(&forged.stdout)
    );
    assert!(!config.exists(), "a refused invite was saved");

    // The operator's invite: checked against the rendezvous, saved.
    let joined = join(invite.clone()).await.unwrap();
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    let saved = peer::config::load(&config).unwrap().rendezvous.unwrap();
    assert_eq!(saved.fingerprint, rv.fingerprint);
    assert_eq!(saved.addresses, [rv.addr.to_string()]);

    // Now `peer host` with nothing but its data directory registers and prints its code.
    let mut host = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--source", "synthetic", "--data-dir"])
        .arg(&data)
        .env_remove("QUICDESK_RENDEZVOUS")
        .env_remove("QUICDESK_RENDEZVOUS_FINGERPRINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = printed_code(&mut host, Duration::from_secs(15)).await;
    let _ = host.kill();
    let _ = host.wait();
    let code = code
        .expect("the host printed no code within 15 s")
        .expect("the host ended without a code");
    assert!(code.parse::<proto::AccessCode>().is_ok(), "{code}");
}

/// `peer service` as a user runs it, with `--root` so that nothing outside the scratch
/// directory is touched and no systemctl runs: refused until the host is joined and has a
/// fixed password, then a unit that systemd's own checker accepts.
#[test]
fn the_service_unit_needs_a_joined_host_with_a_fixed_password_and_systemd_accepts_it() {
    let dir = tempfile::tempdir().unwrap();
    let (data, root, home) = (
        dir.path().join("host"),
        dir.path().join("root"),
        dir.path().join("home"),
    );
    let service = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_peer"))
            .arg("service")
            .args(args)
            .arg("--root")
            .arg(&root)
            .env("HOME", &home)
            .env("QUICDESK_DATA_DIR", &data)
            .env_remove("QUICDESK_CONFIG")
            .output()
            .unwrap()
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let unit = root
        .join(home.strip_prefix("/").unwrap())
        .join(".config/systemd/user/quicdesk-host.service");

    let no_rv = service(&["install"]);
    assert!(!no_rv.status.success());
    assert!(stderr(&no_rv).contains("peer join"), "{}", stderr(&no_rv));
    let fp = "ab".repeat(32);
    let joined = peer(
        &[
            "join",
            &format!("qd1:rv.example.com:7700/{fp}"),
            "--no-check",
        ],
        &data,
    );
    assert!(joined.status.success(), "{}", stderr(&joined));
    let no_pw = service(&["install"]);
    assert!(!no_pw.status.success());
    assert!(
        stderr(&no_pw).contains("peer password set"),
        "{}",
        stderr(&no_pw)
    );
    assert!(!unit.exists());

    assert!(set_password(&data, "kq8v-2mzx-77ta-pw\n").status.success());
    let installed = service(&["install"]);
    assert!(installed.status.success(), "{}", stderr(&installed));
    let text = std::fs::read_to_string(&unit).unwrap();
    assert!(text.contains(" host --data-dir "), "{text}");
    // systemd's own checker takes it (the program it names exists).
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian's systemd package; `cargo xtask setup` installs it)");
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        stderr(&verify)
    );
    let status = service(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("installed at"));
    assert!(service(&["uninstall"]).status.success());
    assert!(!unit.exists());
    let status = service(&["status"]);
    assert!(String::from_utf8_lossy(&status.stdout).contains("not installed"));

    // The system service: from boot, following the graphical session; systemd takes it too.
    let system_unit = root.join("etc/systemd/system/quicdesk-host.service");
    let installed = service(&["install", "--system"]);
    assert!(installed.status.success(), "{}", stderr(&installed));
    let text = std::fs::read_to_string(&system_unit).unwrap();
    assert!(
        text.contains(" --display session") && text.contains("WantedBy=multi-user.target"),
        "{text}"
    );
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&system_unit)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "systemd-analyze verify: {}",
        stderr(&verify)
    );
    assert!(service(&["uninstall", "--system"]).status.success());
    assert!(!system_unit.exists());
}

/// `peer host --display session` (what the system service runs) finds the active graphical
/// session as logind reports it (a stand-in `loginctl` here), and shares it with the X
/// authority its session was given: the X server below refuses clients without that cookie,
/// and the host registers only once it could open the display.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_host_follows_the_graphical_session_with_its_authority() {
    let dir = tempfile::tempdir().unwrap();
    let rv = start_rendezvous(&dir.path().join("rv"), LOCAL, Duration::from_secs(3600));
    let auth = dir.path().join("xauth");
    let cookie: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    let xauth = |display: &str| {
        let ok = Command::new("xauth")
            .arg("-f")
            .arg(&auth)
            .args(["add", display, ".", &cookie])
            .status()
            .expect("xauth (installed with Xvfb by cargo xtask setup)");
        assert!(ok.success());
    };
    xauth(":99");
    let mut xvfb = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-nolisten",
            "tcp",
            "-noreset",
            "-screen",
            "0",
            "640x480x24",
            "-auth",
        ])
        .arg(&auth)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (cargo xtask setup installs it)");
    let mut n = String::new();
    std::io::BufReader::new(xvfb.stdout.take().unwrap())
        .read_line(&mut n)
        .unwrap();
    let display = format!(":{}", n.trim());
    xauth(&display);
    // Without the cookie the display is closed.
    let refused = Command::new("xdpyinfo")
        .args(["-display", &display])
        .env_remove("XAUTHORITY")
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the X server admits clients without a cookie"
    );
    // The session's leader carries XAUTHORITY in its environment, as display managers do.
    let mut leader = Command::new("sleep")
        .arg("60")
        .env("XAUTHORITY", &auth)
        .spawn()
        .unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let uid = String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout).unwrap();
    std::fs::write(
        bin.join("loginctl"),
        format!(
            "#!/bin/sh\ncase \"$1\" in\nlist-sessions) echo '7 {uid} ann seat0 tty7';;\n\
             show-session) printf 'Id=7\\nName=ann\\nUser={uid}\\nType=x11\\nDisplay={display}\\nActive=yes\\nClass=user\\nSeat=seat0\\nLeader={leader}\\n';;\nesac\n",
            uid = uid.trim(),
            leader = leader.id()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(bin.join("loginctl"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
    }
    let data = dir.path().join("host");
    let invite = proto::invite::Invite::new(vec![rv.addr.to_string()], rv.fingerprint).unwrap();
    assert!(peer(&["join", &invite.to_string()], &data).status.success());
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut host = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--display", "session", "--data-dir"])
        .arg(&data)
        .env("PATH", path)
        .env_remove("DISPLAY")
        .env_remove("XAUTHORITY")
        .env_remove("QUICDESK_RENDEZVOUS")
        .env_remove("QUICDESK_RENDEZVOUS_FINGERPRINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let code = printed_code(&mut host, Duration::from_secs(20)).await;
    for c in [&mut host, &mut leader, &mut xvfb] {
        let _ = c.kill();
        let _ = c.wait();
    }
    let code = code
        .expect("the session host printed no code within 20 s")
        .expect("the session host ended without a code");
    assert!(code.parse::<proto::AccessCode>().is_ok(), "{code}");
}

/// `--approve prompt|both` asks the host's user in a window: without a display the host
/// refuses to start and says why; `--help` carries the security note; a headless `peer
/// connect` needs its code (the connect window is for the window mode).
#[test]
fn asking_the_hosts_user_needs_a_display_and_help_says_what_prompt_costs() {
    let dir = tempfile::tempdir().unwrap();
    let fp = "ab".repeat(32);
    for (env, args) in [(None, vec!["--approve", "prompt"]), (Some("both"), vec![])] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_peer"));
        cmd.args([
            "host",
            "--source",
            "synthetic",
            "--rendezvous",
            "127.0.0.1:9",
        ])
        .args(["--rendezvous-fingerprint", &fp])
        .args(&args)
        .arg("--data-dir")
        .arg(dir.path())
        .env_remove("DISPLAY")
        .env_remove("QUICDESK_APPROVE")
        .env_remove("QUICDESK_CONFIG");
        if let Some(mode) = env {
            cmd.env("QUICDESK_APPROVE", mode);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            why.contains("asks the host's user in a window") && why.contains("no display"),
            "{why}"
        );
    }
    let help = Command::new(env!("CARGO_BIN_EXE_peer"))
        .args(["host", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("--approve") && help.contains("hostile rendezvous"),
        "{help}"
    );
    let headless = peer(&["connect", "--headless"], dir.path());
    assert!(!headless.status.success());
    assert!(String::from_utf8_lossy(&headless.stderr).contains("needs the host's code"));
}

/// On a rendezvous that admits enrolled hosts only, a host that joined without a token is told
/// why it cannot register; `peer join` with an invite that carries a token enrolls the
/// machine's keys (two uses of the token), saves no token, and `peer host` then registers. A
/// spent token enrolls nobody else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_with_an_enrollment_token_lets_the_host_register_on_an_enrolled_rendezvous() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = rendezvous::server::Config::new(LOCAL, dir.path().join("rv"));
    cfg.access = rendezvous::core::AccessMode::Enrolled;
    let server = rendezvous::server::Server::bind(&cfg).unwrap();
    let (addr, fp, admin) = (
        server.local_addr().unwrap(),
        server.fingerprint(),
        server.admin(),
    );
    tokio::spawn(server.run());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (token, secret) = rendezvous::core::new_token("ops", "ci", 2, now + 600, now);
    admin.add_token(token);
    let plain = proto::invite::Invite::new(vec![addr.to_string()], fp).unwrap();
    let with_token = plain.clone().with_token(&secret).unwrap().to_string();
    let run = |args: Vec<String>, data: std::path::PathBuf| {
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            peer(&args, &data)
        })
    };
    let host_registers = |data: std::path::PathBuf| {
        let admin = admin.clone();
        async move {
            let mut host = Command::new(env!("CARGO_BIN_EXE_peer"))
                .args(["host", "--source", "synthetic", "--data-dir"])
                .arg(&data)
                .env_remove("QUICDESK_RENDEZVOUS")
                .env_remove("QUICDESK_RENDEZVOUS_FINGERPRINT")
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let stderr = host.stderr.take().unwrap();
            let got = printed_code(&mut host, Duration::from_secs(8)).await;
            // A registered host reports its version and NAT mapping for the operator's console.
            if let Some(code) = got.as_ref().ok().and_then(|c| c.clone()) {
                let code: proto::AccessCode = code.parse().unwrap();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while admin.host(&code).and_then(|h| h.version).is_none() {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "the host reported nothing"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let h = admin.host(&code).unwrap();
                assert_eq!(h.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
                assert!(h.mapping.is_some());
            }
            let _ = host.kill();
            let _ = host.wait();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut { stderr }, &mut err);
            (got.ok().flatten(), err)
        }
    };

    // Joined without a token: the host cannot register, and says why.
    let outsider = dir.path().join("outsider");
    let joined = run(vec!["join".into(), plain.to_string()], outsider.clone())
        .await
        .unwrap();
    assert!(
        joined.status.success(),
        "{}",
        String::from_utf8_lossy(&joined.stderr)
    );
    let (code, err) = host_registers(outsider.clone()).await;
    assert_eq!(code, None, "an unenrolled host registered");
    assert!(err.contains("enrolled"), "{err}");

    // With the token: both keys enrolled, the token not saved, and the host registers.
    let member = dir.path().join("member");
    let joined = run(vec!["join".into(), with_token.clone()], member.clone())
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&joined.stderr);
    assert!(joined.status.success(), "{said}");
    assert!(
        said.contains("host key is enrolled") && said.contains("controller key is enrolled"),
        "{said}"
    );
    let config = std::fs::read_to_string(member.join(peer::config::FILE_NAME)).unwrap();
    assert!(!config.contains("qde_"), "the token was saved: {config}");
    let (code, err) = host_registers(member).await;
    assert!(
        code.is_some_and(|c| c.parse::<proto::AccessCode>().is_ok()),
        "{err}"
    );

    // The token is spent: a third key gets nothing, and nothing is saved.
    let late = dir.path().join("late");
    let refused = run(vec!["join".into(), with_token], late.clone())
        .await
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not valid"));
    assert!(!late.join(peer::config::FILE_NAME).exists());
}
