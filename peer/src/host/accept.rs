//! Accepting controllers: only keys the rendezvous announced complete a handshake; each
//! connection is counted as unauthenticated until it is admitted (`handshake`: the password
//! proof, the host's user's approval, or both), with the guessing limits charged before the
//! challenge or the question.

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
            let mut facts = Facts::default();
            let result = serve(&shared, &conn, pre_auth, route_key, &mut facts).await;
            let peer_closed = matches!(
                conn.close_reason(),
                Some(quinn::ConnectionError::ApplicationClosed(_))
            );
            let (code, reason) = match &result {
                Ok(how) => {
                    info!(%remote, "session ended: {how}");
                    (0, (*how).to_owned())
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
                authenticated: facts.authenticated,
                name: facts.name,
                approval: shared.cfg.attended.mode,
                asked: facts.asked,
                permissions: facts.permissions,
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

/// What the audit log records of a connection's admission, filled in as it goes.
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Whether the controller was admitted (password proven and/or the user accepted).
    pub(super) authenticated: bool,
    /// Its self-declared name.
    pub(super) name: Option<String>,
    /// What the host's user answered, in words, if asked.
    pub(super) asked: Option<String>,
    pub(super) permissions: Option<Permissions>,
}

/// An admitted controller: the control stream, the host's key confirmation (zeros without a
/// password), what the session may do, and its candidates step.
pub(super) struct Admitted {
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
    pub(super) confirm: [u8; 32],
    pub(super) permissions: Permissions,
    pub(super) candidates: CandidateExchange,
}

/// Admits a controller: the password proof, the host's user's approval, or both
/// (`--approve`).
pub(super) async fn authenticate(
    shared: &Shared,
    conn: &quinn::Connection,
    source: SourceTag,
    facts: &mut Facts,
) -> Result<Admitted, Error> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::NoPeerKey)?;
    let remote = conn.remote_address();
    let mode = shared.cfg.attended.mode;
    let mut charged = None;
    let (mut send, mut recv) = tokio::time::timeout(AUTH_TIMEOUT, conn.accept_bi())
        .await
        .map_err(|_| Error::Timeout("controller opened no control stream"))??;
    send.set_priority(CONTROL_PRIORITY).ok();
    let mut hs = HostHandshake::new(mode, shared.cfg.attended.timeout);
    loop {
        let msg = session::read_control(&mut recv, AUTH_TIMEOUT).await?;
        let mut action = hs.on_message(msg);
        // Actions chain while the host's user is asked (Ask → decided → Proven or End).
        loop {
            match action {
                HostAction::Read => break,
                // The attempt (or question) is charged now, before anything that depends on
                // the password is sent and before the user is asked; only an admission takes
                // the charge back.
                HostAction::ChargeAttempt => {
                    facts.name = hs.name().map(str::to_owned);
                    let begun = lock(&shared.guard).begin(controller, source, Instant::now());
                    let attempt = match begun {
                        Ok(attempt) => attempt,
                        Err(refused) => {
                            warn!(%remote, %controller, "attempt refused: {refused}");
                            let (last, err) = hs.refuse(refused.to_string());
                            send_final(&mut send, &last).await;
                            return Err(err);
                        }
                    };
                    charged = Some(attempt);
                    if mode.needs_password() {
                        shared.status.send_modify(|s| s.password_attempts += 1);
                        let (kdf, secret) = shared.secret();
                        let opening = hs.challenge(kdf, &secret, net::exporter(conn)?)?;
                        drop(secret);
                        for m in &opening {
                            wire::write_msg(&mut send, m, MAX_CONTROL_LEN).await?;
                        }
                        break;
                    }
                    let id = match may_ask(shared) {
                        Ok(id) => id,
                        Err(why) => {
                            info!(%remote, %controller, "not asking the host's user: {why}");
                            facts.asked = Some(format!("not asked: {why}"));
                            let (last, err) = hs.refuse(why);
                            send_final(&mut send, &last).await;
                            return Err(err);
                        }
                    };
                    for m in &hs.ask()? {
                        wire::write_msg(&mut send, m, MAX_CONTROL_LEN).await?;
                    }
                    let verdict = ask_user(shared, conn, id, &hs, false).await;
                    facts.asked = Some(asked_words(verdict));
                    action = hs.decided(verdict);
                }
                // `both`: the password is proven; now the user.
                HostAction::Ask(asking) => {
                    let id = match may_ask(shared) {
                        Ok(id) => id,
                        Err(why) => {
                            info!(%remote, %controller, "not asking the host's user: {why}");
                            facts.asked = Some(format!("not asked: {why}"));
                            let (last, err) = hs.refuse(why);
                            send_final(&mut send, &last).await;
                            return Err(err);
                        }
                    };
                    wire::write_msg(&mut send, &asking, MAX_CONTROL_LEN).await?;
                    let verdict = ask_user(shared, conn, id, &hs, true).await;
                    facts.asked = Some(asked_words(verdict));
                    action = hs.decided(verdict);
                }
                HostAction::Proven {
                    confirm,
                    permissions,
                    candidates,
                } => {
                    if let Some(attempt) = charged.take() {
                        lock(&shared.guard).succeeded(attempt);
                    }
                    facts.permissions = Some(permissions);
                    return Ok(Admitted {
                        send,
                        recv,
                        confirm,
                        permissions,
                        candidates,
                    });
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
}

/// Opens a question to the host's user if one may be asked now: not while a session runs,
/// not while another question is open, not too often.
fn may_ask(shared: &Shared) -> Result<crate::approve::PromptId, String> {
    if shared.status.borrow().in_session {
        return Err("the host is busy with another session".into());
    }
    let opened = lock(&shared.prompts).begin(Instant::now(), shared.cfg.attended.timeout);
    let id = opened.map_err(|e| e.to_string())?;
    shared.status.send_modify(|s| s.prompts += 1);
    Ok(id)
}

/// Asks the host's user about this connection (question `id`).
async fn ask_user(
    shared: &Shared,
    conn: &quinn::Connection,
    id: crate::approve::PromptId,
    hs: &HostHandshake,
    password_proven: bool,
) -> crate::approve::Verdict {
    let controller = quic::remote_fingerprint(conn).map_or_else(String::new, |f| f.to_string());
    let request = crate::ui::PromptRequest {
        fingerprint: controller,
        name: hs.name().map(str::to_owned),
        from: super::attend::from_where(conn.remote_address()),
        timeout_ms: shared.cfg.attended.timeout.as_millis() as u64,
        password_proven,
    };
    info!(name = ?request.name, from = %request.from, "asking the host's user");
    let verdict = super::attend::ask(shared, conn, id, &request).await;
    info!(?verdict, "the host's user decided");
    verdict
}

fn asked_words(verdict: crate::approve::Verdict) -> String {
    match verdict {
        crate::approve::Verdict::Accepted(p) => format!("accepted ({p})"),
        crate::approve::Verdict::Denied(why) => format!("denied: {why}"),
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
