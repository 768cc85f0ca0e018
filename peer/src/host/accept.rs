//! Accepting controllers: only keys the rendezvous announced complete a handshake; each
//! connection is counted as unauthenticated until the password step (`handshake`) proves it,
//! with the guessing limits charged before the challenge.

use super::*;

pub(super) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // An address that has not answered yet gets a Retry (smaller than its Initial) and
        // nothing else: this host amplifies nothing towards a spoofed source.
        if !incoming.remote_address_validated() {
            if let Err(e) = incoming.retry() {
                debug!(%remote, "retry: {e}");
            }
            continue;
        }
        let route_key = net::canonical(remote);
        // Relayed connections arrive from their route's virtual address: their source is the
        // tag the rendezvous gave; direct ones are known by their own prefix.
        let source = lock(&shared.routes)
            .get(&route_key)
            .map(|r| r.source)
            .unwrap_or_else(|| crate::guard::source_of(remote));
        if !lock(&shared.guard).admit(source) {
            debug!(%remote, "refused a connection: too many that have not proven the password");
            incoming.refuse();
            continue;
        }
        let pre_auth = PreAuth(shared.clone(), source);
        let shared = shared.clone();
        tokio::spawn(async move {
            let conn = match incoming.await {
                Ok(c) => c,
                Err(e) => {
                    debug!(%remote, "handshake failed: {e}");
                    return;
                }
            };
            // A session on a route keeps it until it ends: the relayed one it came by, else
            // (no relay: quinn follows the controller's own addresses) the one prepared for
            // its key.
            let route_key = take_route(&shared, route_key, &conn);
            let started = (std::time::SystemTime::now(), Instant::now());
            let mut authenticated = false;
            let result = serve(&shared, &conn, pre_auth, route_key, &mut authenticated).await;
            let peer_closed = matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(_))
            );
            let (code, reason) = match &result {
                Ok(()) => {
                    info!(%remote, "session ended");
                    (0, "session over".to_owned())
                }
                // Whatever stream noticed first, the controller hanging up is a normal end.
                Err(_) if peer_closed => {
                    info!(%remote, "session ended by the controller");
                    (0, "session over".to_owned())
                }
                Err(e) => {
                    warn!(%remote, "session ended: {e}");
                    (1, e.to_string())
                }
            };
            let path = route_key
                .and_then(|r| shared.socket.route_view(r))
                .map_or(crate::stats::PathKind::Direct, |v| v.borrow().path);
            let record = super::audit::Record {
                start: started
                    .0
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                seconds: started.1.elapsed().as_secs_f64(),
                controller: quic::remote_fingerprint(&conn)
                    .map_or_else(String::new, |f| f.to_string()),
                from: Some(remote).filter(|a| !net::is_virtual(*a)),
                path,
                authenticated,
                ended: if peer_closed && result.is_err() {
                    "ended by the controller".to_owned()
                } else {
                    reason.clone()
                },
            };
            if let Err(e) = super::audit::append(&shared.cfg.data_dir, &record) {
                warn!("cannot write the audit log: {e}");
            }
            // The close must leave while the route it travels on still exists.
            quic::close_and_flush(&conn, code, reason.as_bytes(), Duration::from_millis(500)).await;
            if let Some(key) = route_key {
                lock(&shared.routes).remove(&key);
            }
        });
    }
}

/// Marks the route a new connection runs on as used and returns its key: the route of its
/// (virtual) address, else an unused one prepared for the controller's key.
fn take_route(shared: &Shared, remote: SocketAddr, conn: &quinn::Connection) -> Option<SocketAddr> {
    let controller = quic::remote_fingerprint(conn);
    let mut routes = lock(&shared.routes);
    let key = if routes.contains_key(&remote) {
        remote
    } else {
        *routes
            .iter()
            .find(|(_, r)| !r.used && Some(r.controller) == controller)?
            .0
    };
    if let Some(r) = routes.get_mut(&key) {
        r.used = true;
    }
    Some(key)
}

/// A connection that has not proven the password yet, counted by the guard until dropped.
pub(super) struct PreAuth(Arc<Shared>, pub(super) SourceTag);

impl Drop for PreAuth {
    fn drop(&mut self) {
        lock(&self.0.guard).authenticated_or_gone(&self.1);
    }
}

/// Authenticates a controller; returns the control stream, the host's key confirmation and the
/// session's candidates step.
pub(super) async fn authenticate(
    shared: &Shared,
    conn: &quinn::Connection,
    source: SourceTag,
) -> Result<
    (
        quinn::SendStream,
        quinn::RecvStream,
        [u8; 32],
        CandidateExchange,
    ),
    Error,
> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::NoPeerKey)?;
    let remote = conn.remote_address();
    let mut charged = None;
    let (mut send, mut recv) = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| Error::Timeout("controller opened no control stream"))??;
    send.set_priority(CONTROL_PRIORITY).ok();
    let mut hs = HostHandshake::new();
    loop {
        let msg = session::read_control(&mut recv, AUTH_TIMEOUT).await?;
        match hs.on_message(msg) {
            // The attempt is charged now, before anything that depends on the password is
            // sent; only a proof takes the charge back.
            HostAction::ChargeAttempt => {
                let begun = lock(&shared.guard).begin(controller, source, Instant::now());
                match begun {
                    Ok(attempt) => {
                        shared.status.send_modify(|s| s.password_attempts += 1);
                        charged = Some(attempt);
                        let (kdf, secret) = shared.secret();
                        let challenge = hs.challenge(kdf, &secret, net::exporter(conn)?)?;
                        drop(secret);
                        wire::write_msg(&mut send, &challenge, MAX_CONTROL_LEN).await?;
                    }
                    Err(refused) => {
                        warn!(%remote, %controller, "password attempt refused: {refused}");
                        let (last, err) = hs.refuse(refused.to_string());
                        send_final(&mut send, &last).await;
                        return Err(err);
                    }
                }
            }
            HostAction::Proven {
                confirm,
                candidates,
            } => {
                if let Some(attempt) = charged.take() {
                    lock(&shared.guard).succeeded(attempt);
                }
                return Ok((send, recv, confirm, candidates));
            }
            HostAction::End(last, err) => {
                if matches!(last, Some(ControlMsg::WrongPassword)) {
                    warn!(%remote, %controller, "wrong password");
                }
                if let Some(last) = last {
                    send_final(&mut send, &last).await;
                }
                return Err(err);
            }
        }
    }
}

pub(super) async fn deny(send: &mut quinn::SendStream, reason: &str) {
    let msg = ControlMsg::Denied {
        reason: reason.to_string(),
    };
    send_final(send, &msg).await;
}

/// Sends the last message of a control stream that is about to be closed.
pub(super) async fn send_final(send: &mut quinn::SendStream, msg: &ControlMsg) {
    let _ = wire::write_msg(send, msg, MAX_CONTROL_LEN).await;
    let _ = send.finish();
    // Give the message a moment to leave before the connection is closed.
    tokio::time::sleep(Duration::from_millis(50)).await;
}
