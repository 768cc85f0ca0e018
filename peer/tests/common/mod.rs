//! Shared by the end-to-end tests: an in-process rendezvous, host start-up, controller settings;
//! and, for the attack suite, the resident-memory reader of the rendezvous's attack suite.

#![allow(dead_code)] // each test binary uses its own subset

pub mod raw;
#[path = "../../../rendezvous/tests/common/mod.rs"]
pub mod rss;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use peer::controller::{ConnectConfig, Target};
use peer::host::{self, HostConfig, HostHandle};
use proto::AccessCode;
use rendezvous::server::{self, Closer, Server};

pub const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub struct Rv {
    pub addr: SocketAddr,
    pub stun: Option<SocketAddr>,
    pub relay: Option<SocketAddr>,
    pub relay_counters: Option<server::RelayCounters>,
    pub fingerprint: certs::Fingerprint,
    pub closer: Closer,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn start_rendezvous(dir: &Path, listen: SocketAddr, forget_after: Duration) -> Rv {
    start_rendezvous_relay(dir, listen, forget_after, true)
}

/// A rendezvous in `dir`/rv on 127.0.0.1 that forgets no host during a test, without a relay:
/// so a look-up hands out the host's address, and a raw client can dial it.
pub fn start_rendezvous_without_relay(dir: &Path) -> Rv {
    start_rendezvous_relay(&dir.join("rv"), LOCAL, Duration::from_secs(3600), false)
}

/// [`start_rendezvous`], with or without a relay.
pub fn start_rendezvous_relay(
    dir: &Path,
    listen: SocketAddr,
    forget_after: Duration,
    relay: bool,
) -> Rv {
    let mut cfg = server::Config::new(listen, dir.to_path_buf());
    cfg.stun_listen = Some(SocketAddr::new(listen.ip(), 0));
    cfg.forget_after = forget_after;
    cfg.relay = relay.then(|| server::RelayConfig {
        listen: SocketAddr::new(listen.ip(), 0),
        limits: rendezvous::relay::Limits::default(),
    });
    let server = Server::bind(&cfg).expect("rendezvous binds");
    Rv {
        addr: server.local_addr().unwrap(),
        stun: server.stun_addr(),
        relay: server.relay_addr(),
        relay_counters: server.relay_counters(),
        fingerprint: server.fingerprint(),
        closer: server.closer(),
        task: tokio::spawn(server.run()),
    }
}

/// The logs (`RUST_LOG`, else `info,peer=debug`), in the test's output: shown only when the
/// test fails.
pub fn show_logs_on_failure() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info,peer=debug".into()))
        .with_test_writer()
        .try_init();
}

/// A fixed password as `peer password set` stores it.
pub fn fixed(password: &str) -> host::HostPassword {
    host::HostPassword::Fixed(
        peer::password::Stored::derive(password, peer::password::DEFAULT_COST)
            .expect("a strong test password"),
    )
}

/// A host of the test rendezvous on 127.0.0.1 sharing `source` with a fixed password.
pub fn test_host(
    rv: &Rv,
    dir: &Path,
    source: host::Source,
    password: &str,
    input: host::InputFactory,
) -> HostConfig {
    HostConfig {
        rendezvous: rv.addr,
        rendezvous_fingerprint: rv.fingerprint,
        data_dir: dir.to_path_buf(),
        bind: LOCAL,
        source,
        password: fixed(password),
        fps: 30,
        bitrate_bps: 3_000_000,
        content: None,
        input,
        attended: Default::default(),
    }
}

/// A host sharing a synthetic `size` screen with a fixed password, recording the input it gets.
pub fn synthetic_host(
    rv: &Rv,
    dir: &Path,
    (width, height): (u32, u32),
    password: &str,
    backend: input::RecordingBackend,
) -> HostConfig {
    let input: host::InputFactory = std::sync::Arc::new(move |_: &host::ScreenArea| {
        Ok(Box::new(backend.clone()) as Box<dyn input::InputBackend>)
    });
    test_host(
        rv,
        dir,
        host::Source::Synthetic { width, height },
        password,
        input,
    )
}

pub fn connect_config(rv: &Rv, code: AccessCode, password: &str, dir: &Path) -> ConnectConfig {
    ConnectConfig {
        code,
        password: Some(password.into()),
        name: "test controller".into(),
        rendezvous: rv.addr,
        rendezvous_fingerprint: rv.fingerprint,
        data_dir: dir.to_path_buf(),
        bind: LOCAL,
        duration: Some(Duration::from_secs(3)),
        record: None,
        relay: peer::controller::RelayMode::Auto,
        // The real thing: the decoder sandboxed in a `peer` worker process.
        decoder: peer::controller::DecoderMode::Isolated {
            program: env!("CARGO_BIN_EXE_peer").into(),
        },
        accept_new_key: false,
        save_as: None,
    }
}

/// Where a controller dials a host directly, bypassing the rendezvous's look-up: the host's
/// key and one address, no relay, no LAN or STUN addresses.
pub fn direct_target(host: certs::Fingerprint, addr: SocketAddr) -> Target {
    Target {
        host,
        candidates: vec![addr],
        relay: None,
        lan: Vec::new(),
        stun_servers: Vec::new(),
        observed: LOCAL,
    }
}

pub async fn start_host(cfg: HostConfig) -> HostHandle {
    let h = host::start(cfg).await.expect("host starts");
    h.wait_registered(1, Duration::from_secs(10))
        .await
        .expect("host registers");
    h
}

/// Helpers for tests on a private X display.
#[cfg(all(unix, not(target_os = "macos")))]
pub mod desktop {
    use std::path::Path;
    use std::sync::Arc;

    use capture::ScreenSpec;
    use capture::xvfb::VirtualDisplay;
    use peer::host::{self, HostConfig, Source};

    use super::Rv;

    pub const RED: [u8; 3] = [208, 48, 32];
    pub const BLUE: [u8; 3] = [32, 96, 208];

    pub fn xvfb(w: u32, h: u32) -> VirtualDisplay {
        VirtualDisplay::start(w, h)
            .unwrap_or_else(|e| panic!("this test needs Xvfb (run `cargo xtask setup`): {e}"))
    }

    pub fn hex(c: [u8; 3]) -> String {
        format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
    }

    /// Paints the root window: left half [`RED`], right half [`BLUE`] (ImageMagick).
    pub fn paint_halves(d: &VirtualDisplay, dir: &Path, w: u32, h: u32) {
        let png = dir.join("halves.png");
        let png = png.to_str().unwrap();
        let size = format!("{w}x{h}");
        let rect = format!("rectangle {},0 {},{}", w / 2, w - 1, h - 1);
        let out = std::process::Command::new("convert")
            .args(["-size", &size, &format!("xc:{}", hex(RED))])
            .args(["-fill", &hex(BLUE), "-draw", &rect, png])
            .output()
            .expect("ImageMagick's convert is missing (run `cargo xtask setup`)");
        assert!(out.status.success(), "convert: {out:?}");
        // `display -window root` sets the root background and exits; its status is 1 even
        // when it worked, so the pixels the test sees are the check.
        d.command("display")
            .args(["-window", "root", png])
            .status()
            .expect("ImageMagick's display is missing (run `cargo xtask setup`)");
    }

    /// A host sharing `d` (pointer drawn in) with a fixed password.
    pub fn screen_host(
        rv: &Rv,
        dir: &Path,
        d: &VirtualDisplay,
        password: &str,
        input: host::InputFactory,
    ) -> HostConfig {
        let source = Source::Screen(ScreenSpec {
            display: Some(d.name().to_owned()),
            monitor: None,
            cursor: true,
        });
        super::test_host(rv, dir, source, password, input)
    }

    /// Input performed on `d` with this platform's backend (XTEST), as `peer host` does.
    pub fn enigo(d: &VirtualDisplay) -> host::InputFactory {
        let name = d.name().to_owned();
        Arc::new(move |area: &host::ScreenArea| {
            input::open(&input::InputSpec {
                display: Some(name.clone()),
                origin: (area.x, area.y),
            })
        })
    }

    /// Input dropped (a view-only host).
    pub fn discard() -> host::InputFactory {
        Arc::new(|_: &host::ScreenArea| {
            Ok(Box::new(host::DiscardBackend::default()) as Box<dyn input::InputBackend>)
        })
    }
}

/// Fails the test with a clear message when a command-line tool is missing.
pub fn need(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "this test needs `{tool}` from Debian's {package} package: run `cargo xtask setup`"
    );
}
