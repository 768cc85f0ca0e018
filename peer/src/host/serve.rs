//! One authenticated session: the media pipeline, the input thread (only if the session may
//! give input: a view-only session's input streams are read and dropped), the streams the
//! controller opens (routed by kind), the control loop (which also carries monitor switches:
//! the request to the pipeline, its answer to the controller and the new area to the input
//! thread), the indicator window (`attend`), and an orderly end (queued input dropped, held
//! keys released, a goodbye when the host's user ended it, the close sent before the route
//! goes).

use super::*;
use proto::session::{MAX_MONITORS, MAX_REASON_LEN};

/// Opens the capture source for a session, with the screen area it covers.
pub(super) fn make_source(source: &Source) -> Result<(Box<dyn Capturer>, ScreenArea), Error> {
    let opened = capture::open(source)?;
    info!(source = %opened.description, "capturing");
    Ok((opened.capturer, opened.area))
}

/// What the input thread is told.
pub(super) enum InputCmd {
    Event(input::InputEvent),
    /// The shared screen changed size.
    Resize(input::ScreenSize),
    /// The session shares another monitor, which covers this part of the desktop.
    Area(ScreenArea),
}

/// Performs input on a dedicated thread (injection may block on the display server), in
/// order; once `ended` is set, drops what is still queued instead of performing it; when every
/// sender is gone (the session is over) releases whatever is still held.
pub(super) fn input_loop(
    mut backend: Box<dyn InputBackend>,
    mut rx: mpsc::Receiver<InputCmd>,
    ended: &AtomicBool,
) {
    let mut dropped = 0u64;
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            InputCmd::Event(_) if ended.load(Ordering::SeqCst) => dropped += 1,
            InputCmd::Event(event) => {
                if let Err(e) = backend.inject(&event) {
                    // The kind only: typed text never reaches a log.
                    warn!(
                        kind = event.kind_name(),
                        "cannot perform an input event: {e}"
                    );
                }
            }
            InputCmd::Resize(size) => backend.set_screen_size(size),
            InputCmd::Area(area) => {
                backend.set_origin(area.x, area.y);
                if let Ok(size) = input::ScreenSize::new(area.width, area.height) {
                    backend.set_screen_size(size);
                }
            }
        }
    }
    if dropped > 0 {
        debug!(dropped, "input queued at the session's end was dropped");
    }
    if let Err(e) = backend.release_all() {
        warn!("releasing held keys and buttons failed: {e}");
    }
}

/// How a session that went well ended, for the log and the audit log.
pub(super) const ENDED_BY_HOST: &str = "ended by the host's user";

/// Runs a controller's connection from its admission to its end; how it ended.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    conn: &quinn::Connection,
    pre_auth: PreAuth,
    route: Option<SocketAddr>,
    facts: &mut super::accept::Facts,
) -> Result<&'static str, Error> {
    let controller = quic::remote_fingerprint(conn).ok_or(Error::NoPeerKey)?;
    let remote = conn.remote_address();
    let super::accept::Admitted {
        send: mut ctl_send,
        recv: mut ctl_recv,
        confirm,
        permissions,
        candidates,
    } = authenticate(shared, conn, pre_auth.1, facts).await?;
    facts.authenticated = true;
    drop(pre_auth);
    quic::widen_after_auth(conn, quic::Role::Host);
    let Ok(_busy) = shared.busy.try_lock() else {
        deny(&mut ctl_send, "the host is busy with another session").await;
        return Err(Error::Denied("host busy".into()));
    };
    info!(%remote, %controller, %permissions, "controller admitted; session starts");
    let (capturer, area) = make_source(&shared.cfg.source)?;
    let (width, height) = capturer.size();
    let backend = if permissions.input {
        (shared.cfg.input)(&area).unwrap_or_else(|e| {
            warn!("input is off for this session (view only): {e}");
            Box::new(DiscardBackend::default())
        })
    } else {
        // Not granted: no backend is even opened, and the input streams are dropped below.
        Box::new(DiscardBackend::default())
    };
    let (input_tx, input_rx) = mpsc::channel(256);
    if let Ok(size) = input::ScreenSize::new(width, height) {
        let _ = input_tx.send(InputCmd::Resize(size)).await;
    }
    let ended = Arc::new(AtomicBool::new(false));
    let input_thread = {
        let ended = ended.clone();
        std::thread::Builder::new()
            .name("quicdesk-input".into())
            .spawn(move || input_loop(backend, input_rx, &ended))?
    };
    let welcome = ControlMsg::Welcome {
        width,
        height,
        confirm,
    };
    let granted = ControlMsg::Granted(permissions);
    wire::write_msg(&mut ctl_send, &granted, MAX_CONTROL_LEN).await?;
    wire::write_msg(&mut ctl_send, &welcome, MAX_CONTROL_LEN).await?;
    shared.status.send_modify(|s| s.in_session = true);
    let view = route.and_then(|r| shared.socket.route_view(r));
    let mut indicator = super::attend::Indicator::start(
        shared,
        crate::ui::IndicatorRequest {
            fingerprint: controller.to_string(),
            name: facts.name.clone(),
            path: view
                .as_ref()
                .map_or(crate::stats::PathKind::Direct, |v| v.borrow().path)
                .to_string(),
            permissions: permissions.to_string(),
        },
        view,
    );
    let (video_tx, video_rx) = mpsc::channel(2);
    // The answers to switches, for the control loop: at most one is asked for at a time.
    let (switched_tx, mut switched) = mpsc::unbounded_channel();
    let media = {
        let input = input_tx.clone();
        media::Media::start(
            capturer,
            shared.cfg.source.clone(),
            media::MediaConfig {
                fps: shared.cfg.fps,
                bitrate_bps: shared.cfg.bitrate_bps,
                content: shared.cfg.content,
            },
            video_tx,
            move |event| match event {
                media::MediaEvent::Resized { width, height } => {
                    if let Ok(size) = input::ScreenSize::new(width, height) {
                        let _ = input.blocking_send(InputCmd::Resize(size));
                    }
                }
                media::MediaEvent::Switched { area, .. } => {
                    // Before the controller hears of it, so its next input lands there.
                    let _ = input.blocking_send(InputCmd::Area(area));
                    let _ = switched_tx.send(event);
                }
                other => {
                    let _ = switched_tx.send(other);
                }
            },
        )?
    };
    let media_cmds = media.commands();
    // The rate controller watches the path and steers the pipeline's bitrate.
    let path_changes = {
        let view = route.and_then(|r| shared.socket.route_view(r));
        move || view.as_ref().map_or(0, |v| v.borrow().path_changes)
    };
    let adapting = rate::adapt(conn, &media_cmds, shared.cfg.bitrate_bps, path_changes);
    let mut dispatcher = Dispatcher::new();
    let input_streams = dispatcher.route(StreamKind::Input, 4);
    let receiving = async {
        if permissions.input {
            receive_input_streams(input_streams, input_tx).await;
        } else {
            drop(input_tx);
            drop_input_streams(input_streams).await;
        }
    };
    let result = tokio::select! {
        r = send_video(conn, video_rx) => r.map(|()| "session over"),
        r = dispatcher.run(conn, "the controller") => r.map(|()| "session over"),
        () = receiving => Ok("session over"),
        r = control_loop(shared, (&mut ctl_send, &mut ctl_recv), &media_cmds, (route, candidates), &mut switched) => r.map(|()| "session over"),
        () = adapting => Ok("session over"),
        () = indicator.end_requested() => Ok(ENDED_BY_HOST),
        e = conn.closed() => match e {
            quinn::ConnectionError::ApplicationClosed(_) | quinn::ConnectionError::LocallyClosed => Ok("session over"),
            e => Err(e.into()),
        },
    };
    // Input still queued when the session ends is dropped, never performed.
    ended.store(true, Ordering::SeqCst);
    drop(indicator);
    let (code, reason): (u32, &[u8]) = match &result {
        Ok(how) if *how == ENDED_BY_HOST => {
            let bye = ControlMsg::Goodbye {
                reason: ENDED_BY_HOST.into(),
            };
            let _ = wire::write_msg(&mut ctl_send, &bye, MAX_CONTROL_LEN).await;
            (0, ENDED_BY_HOST.as_bytes())
        }
        Ok(_) => (0, b"session over"),
        Err(_) => (1, b"session failed"),
    };
    let ending = Instant::now();
    quic::close_and_flush(conn, code, reason, Duration::from_millis(500)).await;
    let closed = ending.elapsed();
    // The pipeline stops at its next command check; the input tasks end with the connection,
    // and the input thread then releases whatever is held.
    let _ = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        media.stop();
        let media = t.elapsed();
        let _ = input_thread.join();
        debug!(?closed, ?media, input = ?t.elapsed() - media, "session torn down");
    })
    .await;
    shared.status.send_modify(|s| s.in_session = false);
    shared.rotate_password("session ended");
    result
}

pub(super) async fn send_video(
    conn: &quinn::Connection,
    mut rx: mpsc::Receiver<media::Packet>,
) -> Result<(), Error> {
    let mut current: Option<quinn::SendStream> = None;
    while let Some(p) = rx.recv().await {
        let stream = match current.as_mut() {
            Some(s) if !p.header.key_frame => s,
            _ => {
                if let Some(mut old) = current.take() {
                    // A new key frame supersedes whatever of the old group is still in flight.
                    let _ = old.reset(0u32.into());
                }
                let mut s = conn.open_uni().await?;
                s.write_all(&[StreamKind::Video as u8]).await?;
                current.insert(s)
            }
        };
        let body = p.header.encode_with(&p.data);
        wire::write_frame(stream, &body, MAX_VIDEO_FRAME_LEN).await?;
    }
    Ok(())
}

/// A view-only session's input streams: read to their end and dropped, event by event (so the
/// controller's stream never stalls), never reaching the input thread.
pub(super) async fn drop_input_streams(mut streams: mpsc::Receiver<quinn::RecvStream>) {
    let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
    while let Some(mut recv) = streams.recv().await {
        let dropped = dropped.clone();
        tokio::spawn(async move {
            while let Ok(Some(_)) = wire::read_frame(&mut recv, MAX_INPUT_LEN).await {
                let n = dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n == 1 || n.is_power_of_two() {
                    debug!(dropped = n, "view-only session: input events dropped");
                }
            }
        });
    }
}

/// Each input stream the controller opens, read on its own task into the input thread.
pub(super) async fn receive_input_streams(
    mut streams: mpsc::Receiver<quinn::RecvStream>,
    input: mpsc::Sender<InputCmd>,
) {
    while let Some(recv) = streams.recv().await {
        tokio::spawn(receive_input(recv, input.clone()));
    }
}

pub(super) async fn receive_input(mut recv: quinn::RecvStream, input: mpsc::Sender<InputCmd>) {
    loop {
        let frame = match wire::read_frame(&mut recv, MAX_INPUT_LEN).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                warn!("input stream closed: {e}");
                let _ = recv.stop(2u32.into());
                return;
            }
        };
        let event = match input::decode(&frame) {
            Ok(ev) => ev,
            Err(e) => {
                warn!("invalid input event, closing the input stream: {e}");
                let _ = recv.stop(2u32.into());
                return;
            }
        };
        if input.send(InputCmd::Event(event)).await.is_err() {
            return; // the session is over
        }
    }
}

/// Reads the controller's control messages and acts on them; tells the controller this host's
/// candidates once its route's agent has them, and again whenever they change (this side's NAT
/// moved it). Only now, with the password proven, does the controller learn where this host is.
pub(super) async fn control_loop(
    shared: &Shared,
    (send, recv): (&mut quinn::SendStream, &mut quinn::RecvStream),
    media: &std::sync::mpsc::Sender<media::MediaCmd>,
    (route, mut candidates): (Option<SocketAddr>, CandidateExchange),
    switched: &mut mpsc::UnboundedReceiver<media::MediaEvent>,
) -> Result<(), Error> {
    let mut view = route.and_then(|r| shared.socket.route_view(r));
    let (reading, mut msgs) = session::control_inbox(recv);
    tokio::pin!(reading);
    // The monitor switch the pipeline is doing, if any.
    let mut switching: Option<u32> = None;
    loop {
        // This host's candidates, once its route's agent has them and again when they change.
        // Borrowed only for the comparison: the message is built from it.
        let msg = view
            .as_mut()
            .and_then(|v| candidates.announce(v.borrow_and_update().local.as_ref()));
        if let Some(msg) = msg {
            wire::write_msg(send, &msg, MAX_CONTROL_LEN).await?;
        }
        let msg = tokio::select! {
            biased;
            m = msgs.recv() => match m {
                Some(m) => m,
                None => return Ok(()),
            },
            Some(event) = switched.recv() => {
                if let Some(answer) = switch_answer(event) {
                    switching = None;
                    wire::write_msg(send, &answer, MAX_CONTROL_LEN).await?;
                }
                continue;
            }
            r = &mut reading => return r,
            () = net::view_changed(&mut view) => continue,
        };
        match msg {
            ControlMsg::KeyFrameRequest => {
                let _ = media.send(media::MediaCmd::KeyFrame);
            }
            ControlMsg::SwitchMonitor { index } => {
                // A hostile controller could ask anything, as often as it likes: one switch at
                // a time, and indices no host has are refused before the display is asked.
                let refusal = if let Some(under_way) = switching {
                    Some(format!("a switch to monitor {under_way} is under way"))
                } else if index >= MAX_MONITORS {
                    Some(format!("no monitor {index}"))
                } else if media
                    .send(media::MediaCmd::SwitchMonitor(index as usize))
                    .is_err()
                {
                    Some("the video pipeline has stopped".into())
                } else {
                    info!(monitor = index, "the controller asks for another monitor");
                    switching = Some(index);
                    None
                };
                if let Some(reason) = refusal {
                    let failed = ControlMsg::SwitchFailed { index, reason };
                    wire::write_msg(send, &failed, MAX_CONTROL_LEN).await?;
                }
            }
            ControlMsg::Ping { sent_us } => {
                let pong = ControlMsg::Pong {
                    sent_us,
                    host_us: session::now_us(),
                };
                wire::write_msg(send, &pong, MAX_CONTROL_LEN).await?;
            }
            ControlMsg::Goodbye { reason } => {
                info!("controller said goodbye: {reason}");
                return Ok(());
            }
            // Again whenever the controller's NAT moved it: the agent punches towards them.
            ControlMsg::Candidates { addrs, mapping } => {
                let seen_as = shared.status.borrow().observed;
                let own = [shared.socket.local_addr()?];
                let Some(punch) = candidates.on_remote(&addrs, mapping, seen_as, &own) else {
                    continue;
                };
                info!(candidates = ?punch.addrs, %mapping, "the controller's addresses");
                let punching = route.and_then(|r| {
                    shared
                        .socket
                        .with_route(r, |agent, now| punch.apply(agent, now))
                });
                if punching.is_none() {
                    debug!("no route for this session: its candidates are not punched");
                }
            }
            other => {
                debug!(?other, "unexpected control message");
                return Err(Error::Unexpected {
                    expected: "a control message for a running session",
                });
            }
        }
    }
}

/// The host's answer to a switch the pipeline did or refused (`None` for other events).
fn switch_answer(event: media::MediaEvent) -> Option<ControlMsg> {
    let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    match event {
        media::MediaEvent::Switched {
            area,
            monitor,
            monitors,
        } => Some(ControlMsg::Screen(proto::session::Screen {
            width: area.width,
            height: area.height,
            // Only indices below MAX_MONITORS are ever asked for.
            monitor: small(monitor),
            monitors: small(monitors).min(MAX_MONITORS),
        })),
        media::MediaEvent::SwitchFailed { index, mut reason } => {
            if reason.len() > MAX_REASON_LEN {
                let mut cut = MAX_REASON_LEN;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            Some(ControlMsg::SwitchFailed {
                index: small(index),
                reason,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moved(x: u16) -> input::InputEvent {
        input::InputEvent::MouseMove {
            pos: input::NormalizedPoint::new(x, x),
        }
    }

    #[test]
    fn input_queued_when_the_session_ends_is_dropped_not_performed() {
        let backend = input::RecordingBackend::new();
        let (tx, rx) = mpsc::channel(16);
        let ended = Arc::new(AtomicBool::new(false));
        let thread = {
            let (backend, ended) = (backend.clone(), ended.clone());
            std::thread::spawn(move || input_loop(Box::new(backend), rx, &ended))
        };
        tx.blocking_send(InputCmd::Event(moved(1))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while backend.events().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // The session ends with more input still queued.
        ended.store(true, Ordering::SeqCst);
        for x in 2..10 {
            tx.blocking_send(InputCmd::Event(moved(x))).unwrap();
        }
        drop(tx);
        thread.join().unwrap();
        assert_eq!(backend.events(), vec![moved(1)]);
    }
}
