//! Shared by the end-to-end tests: an in-process rendezvous, host start-up, controller settings.

#![allow(dead_code)] // each test binary uses its own subset

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use peer::controller::ConnectConfig;
use peer::host::{self, HostConfig, HostHandle};
use rendezvous::AccessCode;
use rendezvous::server::{self, Closer, Server};

pub const LOCAL: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

pub struct Rv {
    pub addr: SocketAddr,
    pub fingerprint: certs::Fingerprint,
    pub closer: Closer,
    pub task: tokio::task::JoinHandle<()>,
}

pub fn start_rendezvous(dir: &Path, listen: SocketAddr, forget_after: Duration) -> Rv {
    let server = Server::bind(&server::Config {
        listen,
        data_dir: dir.to_path_buf(),
        forget_after,
    })
    .expect("rendezvous binds");
    Rv {
        addr: server.local_addr().unwrap(),
        fingerprint: server.fingerprint(),
        closer: server.closer(),
        task: tokio::spawn(server.run()),
    }
}

pub fn connect_config(rv: &Rv, code: AccessCode, password: &str, dir: &Path) -> ConnectConfig {
    ConnectConfig {
        code,
        password: password.into(),
        rendezvous: rv.addr,
        rendezvous_fingerprint: rv.fingerprint,
        data_dir: dir.to_path_buf(),
        bind: LOCAL,
        duration: Some(Duration::from_secs(3)),
        record: None,
    }
}

pub async fn start_host(cfg: HostConfig) -> HostHandle {
    let h = host::start(cfg).await.expect("host starts");
    h.wait_registered(1, Duration::from_secs(10))
        .await
        .expect("host registers");
    h
}
