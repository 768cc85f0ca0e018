//! The host's side of the rendezvous: registering (again after every loss of the connection),
//! answering pushed connect requests by preparing a route (relay binding, punching) for the
//! announced controller, and replacing one-time passwords when they expire.
//!
//! A rendezvous that crashes sends no close. If it comes back at once, its stateless reset
//! answers the host's next keep-alive (every `RENDEZVOUS_KEEP_ALIVE`); if it stays away, the
//! host notices the silence ([`Silence`]: no acknowledgement for [`SILENCE`]) and dials again
//! every [`MAX_BACKOFF`] at most, each attempt bounded by [`REGISTER_TIMEOUT`]: either way the
//! host is registered again within a few seconds of the rendezvous being back, not after the
//! idle timeout.

use super::*;

pub(super) async fn rendezvous_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    rv_cfg: quinn::ClientConfig,
) {
    let rv = shared.cfg.rendezvous;
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = tokio::time::timeout(REGISTER_TIMEOUT, async {
            let conn = endpoint
                .connect_with(rv_cfg.clone(), rv, "quicdesk.invalid")?
                .await?;
            let lan = crate::nat::lan_candidates(endpoint.local_addr()?);
            let reg = client::register(&conn, lan.clone()).await?;
            Ok::<_, Error>((conn, reg, lan))
        });
        let attempt = attempt
            .await
            .unwrap_or(Err(Error::Timeout("the rendezvous did not answer")));
        match attempt {
            Ok((conn, mut reg, lan)) => {
                backoff = Duration::from_millis(200);
                let code = reg.code;
                info!(%code, observed = %reg.observed, "registered with the rendezvous");
                shared.status.send_modify(|s| {
                    s.code = Some(code);
                    s.registrations += 1;
                    s.observed = Some(reg.observed);
                });
                *lock(&shared.network) = Network {
                    lan,
                    stun_servers: crate::nat::stun_servers(rv, reg.stun_port),
                };
                // Discovery runs beside the registration so connect requests are not held up.
                let discovery = tokio::spawn({
                    let shared = shared.clone();
                    let (observed, stun_port) = (reg.observed, reg.stun_port);
                    let conn = conn.clone();
                    async move {
                        let m = crate::nat::discover(&shared.socket, rv, observed, stun_port).await;
                        shared.status.send_modify(|s| s.mapping = Some(m));
                        // For the operator's console; an older rendezvous refuses it, harmlessly.
                        if let Err(e) = client::report(&conn, env!("CARGO_PKG_VERSION"), m).await {
                            debug!("the rendezvous took no report: {e}");
                        }
                    }
                });
                let _discovery = crate::AbortOnDrop(discovery);
                loop {
                    let next = tokio::select! {
                        next = reg.next() => next,
                        () = silent(&conn) => {
                            warn!(rendezvous = %rv, "the rendezvous acknowledged nothing for {SILENCE:?}; registering again");
                            break;
                        }
                    };
                    match next {
                        Ok(Some(ServerMsg::ConnectRequest {
                            controller,
                            candidates,
                            relay,
                            source,
                        })) => {
                            let relay = relay.map(|o| (SocketAddr::new(rv.ip(), o.port), o.ticket));
                            info!(%controller, ?candidates, relay = ?relay.map(|r| r.0), "a controller wants to connect");
                            tokio::spawn(prepare_route(
                                shared.clone(),
                                controller,
                                candidates,
                                relay,
                                source,
                            ));
                        }
                        Ok(Some(other)) => debug!(?other, "ignoring rendezvous message"),
                        Ok(None) => {
                            warn!("rendezvous closed the registration");
                            break;
                        }
                        Err(e) => {
                            warn!("lost the rendezvous: {e}");
                            break;
                        }
                    }
                }
            }
            Err(Error::Rendezvous(ClientError::Refused {
                reason: Refusal::RateLimited,
                message,
            })) => {
                backoff = REFUSED_BACKOFF;
                warn!(rendezvous = %rv, "registration refused for now ({message}); retrying in {backoff:?}");
            }
            // Not something a retry in seconds mends: the operator must act (enroll, unban).
            Err(Error::Rendezvous(ClientError::Refused {
                reason: Refusal::NotEnrolled | Refusal::Unavailable,
                message,
            })) => {
                backoff = OPERATOR_BACKOFF;
                warn!(rendezvous = %rv, "registration refused: {message}; trying again in {backoff:?}");
            }
            Err(e) => warn!(rendezvous = %rv, "cannot register: {e}; retrying in {backoff:?}"),
        }
        // Jittered, so that hosts do not all come back in the same instant.
        tokio::time::sleep(backoff.mul_f64(rand::random_range(0.5..=1.0))).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a connection is still heard from: it counts the acknowledgements the rendezvous
/// sent, sampled now and then.
#[derive(Debug)]
pub(super) struct Silence {
    acks: u64,
    heard: Instant,
}

impl Silence {
    pub(super) fn new(now: Instant, acks: u64) -> Self {
        Self { acks, heard: now }
    }

    /// Takes a sample of the acknowledgement count; true once none came for [`SILENCE`].
    pub(super) fn is_silent(&mut self, now: Instant, acks: u64) -> bool {
        if acks != self.acks {
            self.acks = acks;
            self.heard = now;
        }
        now.saturating_duration_since(self.heard) >= SILENCE
    }
}

/// Returns once `conn`'s peer has acknowledged nothing for [`SILENCE`].
async fn silent(conn: &quinn::Connection) {
    let mut silence = Silence::new(Instant::now(), conn.stats().frame_rx.acks);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if silence.is_silent(Instant::now(), conn.stats().frame_rx.acks) {
            return;
        }
    }
}

/// Replaces the one-time password when it has lived its lifetime (a session that runs on keeps
/// running; the next one needs the new password).
pub(super) async fn expire_passwords(shared: Arc<Shared>) {
    let HostPassword::OneTime { lifetime } = shared.cfg.password else {
        return;
    };
    let mut status = shared.status.subscribe();
    loop {
        let current = status.borrow_and_update().password.clone();
        tokio::select! {
            () = tokio::time::sleep(lifetime) => {
                // Only if it did not change meanwhile (a session's end replaces it too).
                if shared.status.borrow().password == current {
                    shared.rotate_password("it expired");
                }
            }
            r = status.wait_for(|s| s.password != current) => if r.is_err() { return },
        }
    }
}

/// Makes the route to a controller the rendezvous announced: its agent binds this side of the
/// relay, discovers this host's reflexive address and mapping (told to the controller once it
/// has proven the password), and punches towards the controller's candidates when it has some
/// (from the rendezvous without a relay; over the session otherwise). With a relay the route
/// carries the session: relayed, then direct once a probe proved a path, and back. Without
/// one, the controller's packets come from its own addresses and quinn follows them (see
/// [`net::PeerSocket::add_route`]). A route no session took within [`UNUSED_ROUTE_TTL`] is
/// dropped.
pub(super) async fn prepare_route(
    shared: Arc<Shared>,
    controller: certs::Fingerprint,
    candidates: Vec<SocketAddr>,
    relay: Option<(SocketAddr, proto::relay::Ticket)>,
    source: SourceTag,
) {
    let socket = &shared.socket;
    let started = tokio::time::Instant::now();
    // This controller, and only it, may now complete one handshake, within the window.
    shared
        .expected
        .expect(controller, Instant::now() + UNUSED_ROUTE_TTL);
    // What the rendezvous passed on from the controller is filtered.
    let observed = shared.status.borrow().observed;
    let candidates = proto::rendezvous::sane_candidates(
        &candidates,
        observed,
        &[socket.local_addr().unwrap_or(shared.cfg.bind)],
    );
    let network = lock(&shared.network).clone();
    let route = socket.add_route(
        net::RouteConfig {
            seed: rand::random(),
            direct: true,
            hold_direct: false,
            birthday: true,
        },
        relay.is_some(),
    );
    route.with(|agent, now| {
        // Discovery first: the candidates are announced once, with the mapping.
        agent.discover(now, observed, &network.stun_servers);
        agent.add_local_candidates(now, &network.lan);
        if let Some((addr, ticket)) = relay {
            agent.set_relay(now, addr, ticket, net::bind_counter());
        }
        if !candidates.is_empty() {
            agent.set_remote_candidates(now, &candidates, net::Mapping::Unknown);
        }
        agent.start_punching(now);
    });
    let virtual_addr = route.addr();
    let view = route.view();
    lock(&shared.routes).insert(
        virtual_addr,
        Route {
            _handle: route,
            controller,
            used: false,
            source,
        },
    );
    if relay.is_some() {
        if net::relay_bound(view, RELAY_BIND_TIMEOUT).await {
            debug!(%controller, "relay bound");
        } else {
            warn!(%controller, "the relay did not answer");
        }
    }
    tokio::time::sleep_until(started + UNUSED_ROUTE_TTL).await;
    let mut routes = lock(&shared.routes);
    if routes.get(&virtual_addr).is_some_and(|r| !r.used) {
        routes.remove(&virtual_addr);
        debug!(%controller, "no session came by this route; dropped it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_no_acknowledgement_for_a_while() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut s = Silence::new(t0, 10);
        // Keep-alives acknowledged every 4 s: never silent.
        for i in 1..=20u32 {
            let t = f64::from(i) * 4.0;
            assert!(!s.is_silent(at(t - 0.5), 10 + u64::from(i) - 1));
            assert!(!s.is_silent(at(t), 10 + u64::from(i)));
        }
        // Then nothing: silent once SILENCE has passed since the last one, not before.
        let last = 80.0;
        assert!(!s.is_silent(at(last + SILENCE.as_secs_f64() - 0.1), 30));
        assert!(s.is_silent(at(last + SILENCE.as_secs_f64()), 30));
        // A counter that moves (even backwards: another connection's) is something heard.
        assert!(!s.is_silent(at(last + 30.0), 3));
    }
}
