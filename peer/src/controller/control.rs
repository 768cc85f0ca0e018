//! The control side of a running session: writing and reading control messages (candidates,
//! key-frame requests, clock pings, monitor switches and the host's answers, goodbyes), sending
//! input, and the once-a-second tick.

use super::*;

pub(super) async fn control_writer(
    send: &mut quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<ControlMsg>,
) -> Result<(), Error> {
    while let Some(msg) = rx.recv().await {
        wire::write_msg(send, &msg, MAX_CONTROL_LEN).await?;
    }
    Ok(())
}

/// Reads the host's control messages and acts on them; tells the host this side's candidates
/// whenever the route's agent reports new ones (first after discovery, again when this side's
/// NAT moved it) through `candidates`, the handshake's last step.
pub(super) async fn control_reader(
    recv: &mut quinn::RecvStream,
    clock: Arc<Mutex<ClockOffset>>,
    (socket, route, seen_as): (&Arc<net::PeerSocket>, &net::RouteHandle, SocketAddr),
    (mut candidates, ctl): (CandidateExchange, mpsc::UnboundedSender<ControlMsg>),
    (mut on_notice, ended_by_host): (Option<NoticeHook>, Arc<Mutex<Option<String>>>),
) -> Result<(), Error> {
    let mut view = Some(route.view());
    let (reading, mut msgs) = session::control_inbox(recv);
    tokio::pin!(reading);
    loop {
        // Borrowed only for the comparison: the message is built from it.
        let msg = view
            .as_mut()
            .and_then(|v| candidates.announce(v.borrow_and_update().local.as_ref()));
        if let Some(msg) = msg {
            let _ = ctl.send(msg);
        }
        let msg = tokio::select! {
            biased;
            m = msgs.recv() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
            r = &mut reading => return r,
            () = net::view_changed(&mut view) => continue,
        };
        match msg {
            // Again whenever the host's NAT moved it: the agent punches towards the new list.
            ControlMsg::Candidates { addrs, mapping } => {
                let own = [socket.local_addr()?];
                if let Some(punch) = candidates.on_remote(&addrs, mapping, Some(seen_as), &own) {
                    info!(candidates = ?punch.addrs, %mapping, "the host's addresses");
                    route.with(|agent, now| punch.apply(agent, now));
                }
            }
            ControlMsg::Pong { sent_us, host_us } => {
                clock.lock().unwrap_or_else(|p| p.into_inner()).update(
                    sent_us,
                    host_us,
                    session::now_us(),
                );
            }
            ControlMsg::Goodbye { reason } => {
                let reason = crate::text::printable(&reason);
                info!("host ended the session: {reason}");
                *crate::lock(&ended_by_host) = Some(reason.clone());
                if let Some(hook) = on_notice.as_mut() {
                    hook(&HostNotice::Ended { reason });
                }
                return Ok(());
            }
            msg @ (ControlMsg::Screen(_) | ControlMsg::SwitchFailed { .. }) => {
                // A hostile host could say anything: impossible values are dropped here.
                let Some(notice) = HostNotice::from_msg(&msg) else {
                    warn!("the host sent an impossible screen message; ignored");
                    continue;
                };
                match &notice {
                    HostNotice::Screen(_) => info!("{notice}"),
                    _ => warn!("{notice}"),
                }
                if let Some(hook) = on_notice.as_mut() {
                    hook(&notice);
                }
            }
            other => debug!(?other, "unexpected control message"),
        }
    }
}

/// The user's requests, as control messages.
pub(super) async fn send_requests(
    requests: Option<mpsc::Receiver<Request>>,
    ctl: mpsc::UnboundedSender<ControlMsg>,
) -> Result<(), Error> {
    if let Some(mut requests) = requests {
        while let Some(request) = requests.recv().await {
            let msg = match request {
                Request::SwitchMonitor(index) => {
                    info!(monitor = index, "asking the host for another monitor");
                    ControlMsg::SwitchMonitor { index }
                }
            };
            if ctl.send(msg).is_err() {
                break;
            }
        }
    }
    // No more requests; the session goes on until it ends otherwise.
    std::future::pending().await
}

pub(super) async fn pinger(ctl: mpsc::UnboundedSender<ControlMsg>) -> Result<(), Error> {
    // A few quick probes first so latency is known from the first frames on.
    for i in 0u32.. {
        if ctl
            .send(ControlMsg::Ping {
                sent_us: session::now_us(),
            })
            .is_err()
        {
            return Ok(());
        }
        let wait = if i < 3 {
            Duration::from_millis(20)
        } else {
            PING_EVERY
        };
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

pub(super) async fn send_input(
    conn: &quinn::Connection,
    events: Option<mpsc::Receiver<InputEvent>>,
    stats: Arc<Mutex<Stats>>,
) -> Result<(), Error> {
    let Some(mut events) = events else {
        return std::future::pending().await;
    };
    let mut stream: Option<quinn::SendStream> = None;
    while let Some(ev) = events.recv().await {
        let s = match stream.as_mut() {
            Some(s) => s,
            None => {
                let mut s = conn.open_uni().await?;
                s.set_priority(INPUT_PRIORITY).ok();
                s.write_all(&[StreamKind::Input as u8]).await?;
                stream.insert(s)
            }
        };
        wire::write_frame(s, &input::encode(&ev), MAX_INPUT_LEN).await?;
        stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .input_events_sent += 1;
    }
    if let Some(mut s) = stream {
        let _ = s.finish();
    }
    // The script is done; the session goes on until it ends otherwise.
    std::future::pending().await
}

pub(super) async fn ticker(
    stats: Arc<Mutex<Stats>>,
    route: &net::RouteHandle,
    mut hook: Option<TickHook>,
) -> Result<(), Error> {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.tick().await;
    loop {
        every.tick().await;
        let tick = {
            let mut stats = stats.lock().unwrap_or_else(|p| p.into_inner());
            let state = route.state();
            stats.set_path(state.path, state.path_changes, state.direct_since);
            stats.tick(Instant::now())
        };
        if let Some(h) = hook.as_mut() {
            h(&tick);
        }
    }
}
