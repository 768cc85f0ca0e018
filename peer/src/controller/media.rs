//! The video side of a session: the host's video streams (routed by kind; a newer group of
//! pictures supersedes the older), and the decode thread (in process or the sandboxed worker)
//! that measures latency and feeds the hooks.

use super::*;

/// Either decoder, as `mode` says.
fn new_decoder(mode: &DecoderMode) -> Result<Box<dyn codec::Decode>, Error> {
    Ok(match mode {
        DecoderMode::InProcess => Box::new(codec::Decoder::new()?),
        DecoderMode::Isolated { program } => {
            let mut cmd = std::process::Command::new(program);
            cmd.arg(codec::isolated::WORKER_ARG).env_clear();
            Box::new(codec::isolated::IsolatedDecoder::spawn(cmd)?)
        }
    })
}

pub(super) async fn receive_video(
    conn: &quinn::Connection,
    frames: mpsc::Sender<(VideoHeader, Vec<u8>)>,
    stats: Arc<Mutex<Stats>>,
) -> Result<(), Error> {
    // Each group of pictures arrives on a new stream; a newer one supersedes the older.
    let mut current: Option<tokio::task::JoinHandle<()>> = None;
    let mut dispatcher = Dispatcher::new();
    let mut streams = dispatcher.route(StreamKind::Video, 4);
    let accepting = dispatcher.run(conn, "the host");
    tokio::pin!(accepting);
    loop {
        let mut recv = tokio::select! {
            r = &mut accepting => return r,
            s = streams.recv() => match s {
                Some(s) => s,
                None => return Ok(()),
            },
        };
        if let Some(old) = current.take() {
            old.abort();
        }
        let (frames, stats) = (frames.clone(), stats.clone());
        current = Some(tokio::spawn(async move {
            loop {
                let body = match wire::read_frame(&mut recv, MAX_VIDEO_FRAME_LEN).await {
                    Ok(Some(b)) => b,
                    Ok(None) => return,
                    Err(e) => {
                        debug!("video stream ended: {e}");
                        let _ = recv.stop(1u32.into());
                        return;
                    }
                };
                let header = match VideoHeader::decode(&body) {
                    Ok((h, _)) => h,
                    Err(e) => {
                        warn!("bad video frame, dropping the stream: {e}");
                        let _ = recv.stop(2u32.into());
                        return;
                    }
                };
                stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .on_received(body.len());
                if frames.send((header, body)).await.is_err() {
                    return;
                }
            }
        }));
    }
}

/// How often the session's route has changed path so far (read by the decode thread).
pub(super) type PathChanges = Box<dyn Fn() -> u32 + Send>;

pub(super) fn decode_loop(
    mut rx: mpsc::Receiver<(VideoHeader, Vec<u8>)>,
    stats: Arc<Mutex<Stats>>,
    clock: Arc<Mutex<ClockOffset>>,
    ctl: mpsc::UnboundedSender<ControlMsg>,
    mut on_frame: Option<FrameHook>,
    mut recorder: Option<std::io::BufWriter<std::fs::File>>,
    (decoder_mode, path_changes): (DecoderMode, PathChanges),
) -> Result<(), Error> {
    // Spawned here: the worker lives as long as the thread that started it.
    let mut decoder = new_decoder(&decoder_mode)?;
    // One picture buffer for the whole session: decoding allocates nothing per frame.
    let mut frame = codec::DecodedFrame::default();
    let mut synced = false; // have we decoded a key frame since the last error?
    while let Some((header, body)) = rx.blocking_recv() {
        let payload = &body[msg::VIDEO_HEADER_LEN..];
        if !synced && !header.key_frame {
            continue; // P-frames are useless until the next key frame
        }
        match decoder.decode_into(payload, &mut frame) {
            Ok(true) => {
                synced = true;
                let now = Instant::now();
                let now_us = session::now_us();
                let latency_us = {
                    let c = clock.lock().unwrap_or_else(|p| p.into_inner());
                    c.known()
                        .then(|| now_us.saturating_sub(c.to_local_us(header.captured_at_us)))
                };
                if let Some(rec) = recorder.as_mut() {
                    rec.write_all(payload)?;
                }
                let changes = path_changes();
                stats.lock().unwrap_or_else(|p| p.into_inner()).on_decoded(
                    now,
                    latency_us,
                    (frame.width, frame.height),
                    changes,
                );
                if let Some(hook) = on_frame.as_mut() {
                    let meta = FrameMeta {
                        frame_no: header.frame_no,
                        captured_at_us: header.captured_at_us,
                        key_frame: header.key_frame,
                        latency_us,
                    };
                    hook(&meta, &frame);
                }
            }
            Ok(false) => {}
            Err(e) => {
                warn!(
                    frame = header.frame_no,
                    "decode error, asking for a key frame: {e}"
                );
                // A worker that died, hung or lied is gone for good: start a fresh one.
                if matches!(
                    e,
                    codec::CodecError::WorkerExited(_)
                        | codec::CodecError::WorkerTimeout(_)
                        | codec::CodecError::WorkerProtocol(_)
                ) {
                    decoder = new_decoder(&decoder_mode)?;
                }
                stats
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .decode_errors += 1;
                synced = false;
                let _ = ctl.send(ControlMsg::KeyFrameRequest);
            }
        }
    }
    if let Some(mut rec) = recorder {
        rec.flush()?;
    }
    Ok(())
}
