//! Reaching the host: resolving its code at the rendezvous, binding the relay, dialling it with
//! its key pinned (relay first, punching towards its candidates), and the password step
//! (`handshake`).

use super::*;

pub(super) async fn resolve(
    cfg: &ConnectConfig,
    identity: &Identity,
    endpoint: &quinn::Endpoint,
) -> Result<Target, Error> {
    let rv_cfg = quic::client_config(
        identity,
        cfg.rendezvous_fingerprint,
        proto::rendezvous::ALPN,
        quic::Role::RendezvousClient,
    )?;
    let rv = endpoint
        .connect_with(rv_cfg, cfg.rendezvous, "quicdesk.invalid")?
        .await?;
    let relay_only = cfg.relay == RelayMode::Force;
    let lan = if relay_only {
        Vec::new()
    } else {
        crate::nat::lan_candidates(endpoint.local_addr()?)
    };
    let resolved = client::resolve(&rv, cfg.code, lan.clone(), relay_only).await?;
    rv.close(0u32.into(), b"resolved");
    let relay = resolved.relay.map(|offer| {
        (
            SocketAddr::new(cfg.rendezvous.ip(), offer.port),
            offer.ticket,
        )
    });
    // Whatever the rendezvous says, only addresses this controller may sensibly send to.
    let candidates = proto::rendezvous::sane_candidates(
        &resolved.candidates,
        Some(resolved.observed),
        &[endpoint.local_addr()?],
    );
    info!(
        code = %cfg.code,
        host = %resolved.host,
        candidates = ?candidates,
        relay = ?relay.map(|r| r.0),
        "resolved"
    );
    Ok(Target {
        host: resolved.host,
        candidates,
        relay,
        own_candidates: if relay_only {
            Vec::new()
        } else {
            proto::rendezvous::candidates(Some(resolved.observed), &lan)
        },
        observed: resolved.observed,
        mapping_probe: resolved
            .stun_port
            .map(|port| (cfg.rendezvous, resolved.observed, port)),
    })
}

/// Connects to the host through a route of the peer socket: by the relay first when there is
/// one, while punch probes go to every candidate (the host probes back when the rendezvous
/// tells it about this controller). A candidate that answers becomes the direct path once the
/// handshake is done, without a reconnect; the probes go on for [`crate::nat::PUNCH_FOR`] in
/// the background (the returned task) for NATs that open late. Without a relay, every
/// candidate gets the handshake until one answers.
pub(super) async fn connect(
    endpoint: &quinn::Endpoint,
    socket: &Arc<net::PeerSocket>,
    cfg: &quinn::ClientConfig,
    target: &Target,
    mode: RelayMode,
) -> Result<(quinn::Connection, net::RouteHandle, crate::AbortOnDrop), Error> {
    let relay = match mode {
        RelayMode::Off => None,
        RelayMode::Auto | RelayMode::Force => target.relay,
    };
    if mode == RelayMode::Force && relay.is_none() {
        return Err(Error::Unreachable(
            "--force-relay, but the rendezvous offers no relay".into(),
        ));
    }
    let candidates = if mode == RelayMode::Force {
        Vec::new()
    } else {
        target.candidates.clone()
    };
    if candidates.is_empty() && relay.is_none() {
        return Err(Error::Unreachable(match (mode, target.relay) {
            (RelayMode::Off, Some(_)) => {
                "--no-relay, but this rendezvous runs a relay and, to keep \
                 hosts' addresses private, tells them only over it once the password is proven; \
                 connect without --no-relay"
                    .into()
            }
            _ => "the rendezvous gave no address and no relay".into(),
        }));
    }
    let route = socket.add_route(net::RouteSpec {
        candidates: candidates.clone(),
        relay,
        direct_allowed: mode != RelayMode::Force,
        hold_direct: true,
    });
    let virtual_addr = route.addr();
    // The relay forwards only from an address proven by a bind: bind first (one round trip to
    // the rendezvous's machine), then dial.
    if relay.is_some() {
        match socket.bind_relay(virtual_addr, RELAY_BIND_WAIT).await {
            Ok(true) => debug!("relay bound"),
            Ok(false) => warn!("the relay did not answer a bind"),
            Err(e) => warn!("relay: {e}"),
        }
    }
    let punching = {
        let socket = socket.clone();
        crate::AbortOnDrop(tokio::spawn(async move {
            // Mappings are swapped only over the session: no birthday punching here.
            let punched = punch_host(
                &socket,
                virtual_addr,
                &candidates,
                crate::nat::Birthday::Off,
            )
            .await;
            debug!(answered = ?punched.answered, "punch probes done");
        }))
    };
    let connecting = endpoint.connect_with(cfg.clone(), virtual_addr, "quicdesk.invalid")?;
    let conn = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(conn)) => conn,
        // A key mismatch is fatal and says so.
        Ok(Err(e @ quinn::ConnectionError::TransportError(_))) => return Err(e.into()),
        Ok(Err(e)) => {
            return Err(Error::Unreachable(format!(
                "{e} ({})",
                describe(target, mode)
            )));
        }
        Err(_) => {
            return Err(Error::Unreachable(format!(
                "no answer within {CONNECT_TIMEOUT:?} ({})",
                describe(target, mode)
            )));
        }
    };
    if socket.release_direct(virtual_addr) {
        debug!("moved to the direct path found during the handshake");
    }
    Ok((conn, route, punching))
}

/// Punches towards the host's `candidates`; each that answers becomes the route's direct path.
pub(super) async fn punch_host(
    socket: &Arc<net::PeerSocket>,
    virtual_addr: SocketAddr,
    candidates: &[SocketAddr],
    birthday: crate::nat::Birthday,
) -> crate::nat::Punched {
    crate::nat::punch_session(
        socket,
        Some(virtual_addr),
        candidates,
        crate::nat::PUNCH_FOR,
        birthday,
        |addr, via| {
            socket.set_direct(virtual_addr, addr, via);
        },
    )
    .await
}

pub(super) fn describe(target: &Target, mode: RelayMode) -> String {
    let relay = match (mode, target.relay) {
        (RelayMode::Off, _) => "relay off".to_string(),
        (_, Some((addr, _))) => format!("relay {addr}"),
        (_, None) => "no relay offered".to_string(),
    };
    format!("candidates {:?}, {relay}", target.candidates)
}

pub(super) async fn authenticate(
    conn: &quinn::Connection,
    password: &str,
) -> Result<(quinn::SendStream, quinn::RecvStream, (u32, u32)), Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.set_priority(CONTROL_PRIORITY).ok();
    let (mut hs, hello) = ControllerHandshake::start(net::exporter(conn)?);
    wire::write_msg(&mut send, &hello, MAX_CONTROL_LEN).await?;
    loop {
        let msg = session::read_control(&mut recv, AUTH_TIMEOUT).await?;
        match hs.on_message(msg) {
            ControllerAction::Derive(kdf) => {
                // Argon2id of a fixed password takes a moment: off the async threads.
                let typed = zeroize::Zeroizing::new(password.to_owned());
                let secret =
                    tokio::task::spawn_blocking(move || crate::password::derive(&kdf, &typed))
                        .await
                        .map_err(|_| Error::Thread("password derivation"))??;
                let auth = hs.prove(&secret)?;
                wire::write_msg(&mut send, &auth, MAX_CONTROL_LEN).await?;
            }
            ControllerAction::Done { width, height } => {
                quic::widen_after_auth(conn, quic::Role::Controller);
                return Ok((send, recv, (width, height)));
            }
            ControllerAction::End(e) => return Err(e),
        }
    }
}
