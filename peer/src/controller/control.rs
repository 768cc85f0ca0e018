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

pub(super) async fn control_reader(
    recv: &mut quinn::RecvStream,
    clock: Arc<Mutex<ClockOffset>>,
    (socket, route, mode, seen_as): (
        &Arc<net::PeerSocket>,
        &net::RouteHandle,
        RelayMode,
        SocketAddr,
    ),
    mut on_notice: Option<NoticeHook>,
) -> Result<(), Error> {
    loop {
        match wire::read_msg::<ControlMsg, _>(recv, MAX_CONTROL_LEN).await? {
            // Again whenever the host's NAT moved it: the agent punches towards the new list.
            Some(ControlMsg::Candidates { addrs, mapping }) if mode != RelayMode::Force => {
                // A hostile host could name anything: only addresses worth punching towards.
                let addrs = proto::rendezvous::sane_candidates(
                    &addrs,
                    Some(seen_as),
                    &[socket.local_addr()?],
                );
                info!(candidates = ?addrs, %mapping, "the host's addresses");
                let mapping = crate::nat::from_wire(mapping);
                route.with(|agent, now| agent.set_remote_candidates(now, &addrs, mapping));
            }
            None => return Ok(()),
            Some(ControlMsg::Pong { sent_us, host_us }) => {
                clock.lock().unwrap_or_else(|p| p.into_inner()).update(
                    sent_us,
                    host_us,
                    session::now_us(),
                );
            }
            Some(ControlMsg::Goodbye { reason }) => {
                let reason = crate::text::printable(&reason);
                info!("host ended the session: {reason}");
                return Ok(());
            }
            Some(msg @ (ControlMsg::Screen { .. } | ControlMsg::SwitchFailed { .. })) => {
                // A hostile host could say anything: impossible values are dropped here.
                let Some(notice) = HostNotice::from_msg(&msg) else {
                    warn!("the host sent an impossible screen message; ignored");
                    continue;
                };
                match &notice {
                    HostNotice::Screen { .. } => info!("{notice}"),
                    _ => warn!("{notice}"),
                }
                if let Some(hook) = on_notice.as_mut() {
                    hook(&notice);
                }
            }
            Some(other) => debug!(?other, "unexpected control message"),
        }
    }
}

/// Tells the host this side's candidates and NAT mapping whenever the route's agent reports
/// them (first after discovery, again when this side's NAT moved it). Never ends by itself.
pub(super) async fn announce_candidates(
    mut view: tokio::sync::watch::Receiver<net::RouteView>,
    ctl: mpsc::UnboundedSender<ControlMsg>,
) {
    let mut announcer = crate::nat::Announcer::default();
    loop {
        let msg = announcer.next(&view.borrow_and_update());
        if let Some(msg) = msg {
            let _ = ctl.send(msg);
        }
        if view.changed().await.is_err() {
            return std::future::pending().await;
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
