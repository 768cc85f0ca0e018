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
        lan,
        stun_servers: crate::nat::stun_servers(cfg.rendezvous, resolved.stun_port),
        observed: resolved.observed,
    })
}

/// Connects to the host through a route of the peer socket whose agent starts on the relay
/// when there is one and punches towards the host's candidates (the host punches back once
/// it hears of this controller). A probe answered becomes the direct path once the handshake
/// is done, without a reconnect (the agent holds the move until then: a QUIC server drops
/// handshake packets from a new address). Without a relay, every candidate gets the handshake
/// until one answers.
pub(super) async fn connect(
    endpoint: &quinn::Endpoint,
    socket: &Arc<net::PeerSocket>,
    cfg: &quinn::ClientConfig,
    target: &Target,
    mode: RelayMode,
) -> Result<(quinn::Connection, net::RouteHandle), Error> {
    let relay = match mode {
        RelayMode::Off => None,
        RelayMode::Auto | RelayMode::Force => target.relay,
    };
    if mode == RelayMode::Force && relay.is_none() {
        return Err(Error::Unreachable(
            "--force-relay, but the rendezvous offers no relay".into(),
        ));
    }
    let direct = mode != RelayMode::Force;
    let candidates = if direct {
        target.candidates.clone()
    } else {
        Vec::new()
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
    let route = socket.add_route(
        net::RouteConfig {
            seed: rand::random(),
            direct,
            hold_direct: true,
            birthday: true,
        },
        true,
    );
    route.with(|agent, now| {
        if direct {
            // Discovery first: the candidates are announced once, with the mapping.
            agent.discover(now, Some(target.observed), &target.stun_servers);
            agent.add_local_candidates(now, &target.lan);
        }
        if let Some((addr, ticket)) = relay {
            agent.set_relay(now, addr, ticket, net::bind_counter());
        }
        if !candidates.is_empty() {
            agent.set_remote_candidates(now, &candidates, net::Mapping::Unknown);
        }
        if direct {
            agent.start_punching(now);
        }
    });
    // The relay forwards only from an address proven by a bind: bind first (one round trip to
    // the rendezvous's machine), then dial.
    if relay.is_some() {
        if route.relay_bound(RELAY_BIND_WAIT).await {
            debug!("relay bound");
        } else {
            warn!("the relay did not answer a bind");
        }
    }
    let connecting = endpoint.connect_with(cfg.clone(), route.addr(), "quicdesk.invalid")?;
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
    route.with(|agent, now| agent.release_direct(now));
    Ok((conn, route))
}

pub(super) fn describe(target: &Target, mode: RelayMode) -> String {
    let relay = match (mode, target.relay) {
        (RelayMode::Off, _) => "relay off".to_string(),
        (_, Some((addr, _))) => format!("relay {addr}"),
        (_, None) => "no relay offered".to_string(),
    };
    format!("candidates {:?}, {relay}", target.candidates)
}

/// Who this controller is to the host: the password its user gave (if any), the name it
/// declares, its key, and whether the host's key is the one known for its code.
pub(super) struct Who<'a> {
    pub(super) password: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) me: Fingerprint,
    pub(super) known: bool,
}

/// What the opening gives the session: the control stream, the screen's size, what the
/// session may do, and its candidates step.
type Opened = (
    quinn::SendStream,
    quinn::RecvStream,
    (u32, u32),
    msg::Permissions,
    CandidateExchange,
);

pub(super) async fn authenticate(
    conn: &quinn::Connection,
    who: &Who<'_>,
    on_notice: &mut Option<NoticeHook>,
) -> Result<Opened, Error> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.set_priority(CONTROL_PRIORITY).ok();
    let (mut hs, opening) =
        ControllerHandshake::start(net::exporter(conn)?, who.name, who.password.is_some());
    for m in &opening {
        wire::write_msg(&mut send, m, MAX_CONTROL_LEN).await?;
    }
    let mut notify = |n: HostNotice| {
        info!("{n}");
        if let Some(hook) = on_notice.as_mut() {
            hook(&n);
        }
    };
    // While the host's user decides, the next message may take that long (and a little).
    let mut wait = AUTH_TIMEOUT;
    loop {
        let msg = session::read_control(&mut recv, wait).await?;
        match hs.on_message(msg) {
            ControllerAction::Read => {}
            ControllerAction::Mode(mode) => notify(HostNotice::Access {
                mode,
                known: who.known,
                me: who.me,
            }),
            ControllerAction::Asking { seconds } => {
                wait = Duration::from_secs(u64::from(seconds)) + AUTH_TIMEOUT;
                notify(HostNotice::Asking { seconds });
            }
            ControllerAction::Derive(kdf) => {
                // Argon2id of a fixed password takes a moment: off the async threads.
                let typed = zeroize::Zeroizing::new(who.password.unwrap_or_default().to_owned());
                let secret =
                    tokio::task::spawn_blocking(move || crate::password::derive(&kdf, &typed))
                        .await
                        .map_err(|_| Error::Thread("password derivation"))??;
                let auth = hs.prove(&secret)?;
                wire::write_msg(&mut send, &auth, MAX_CONTROL_LEN).await?;
            }
            ControllerAction::Done {
                width,
                height,
                permissions,
                candidates,
            } => {
                if hs.mode().is_some_and(msg::Approval::asks_user) || !permissions.input {
                    notify(HostNotice::Granted(permissions));
                }
                quic::widen_after_auth(conn, quic::Role::Controller);
                return Ok((send, recv, (width, height), permissions, candidates));
            }
            ControllerAction::End(e) => return Err(e),
        }
    }
}
