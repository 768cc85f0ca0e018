use super::*;

fn start(fps: u32) -> (Media, mpsc::Receiver<Packet>) {
    let source = capture::SyntheticSource::new(320, 240).unwrap();
    let spec = SourceSpec::Synthetic {
        width: 320,
        height: 240,
    };
    let (media, rx, _events) = start_on(Box::new(source), spec, fps);
    (media, rx)
}

/// A pipeline on `capturer`, its packets and its events.
fn start_on(
    capturer: Box<dyn capture::Capturer>,
    spec: SourceSpec,
    fps: u32,
) -> (
    Media,
    mpsc::Receiver<Packet>,
    std::sync::mpsc::Receiver<MediaEvent>,
) {
    let (tx, rx) = mpsc::channel(64);
    let (events_tx, events) = std::sync::mpsc::channel();
    let media = Media::start(
        capturer,
        spec,
        MediaConfig {
            fps,
            bitrate_bps: 1_000_000,
            content: None,
        },
        tx,
        move |e| {
            let _ = events_tx.send(e);
        },
    )
    .unwrap();
    (media, rx, events)
}

fn next(rx: &mut mpsc::Receiver<Packet>) -> Packet {
    for _ in 0..500 {
        match rx.try_recv() {
            Ok(p) => return p,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    panic!("no packet within 5 s");
}

/// Packets until (and including) the first key frame after `cmd`; how many came before it.
fn frames_to_key_after(media: &Media, rx: &mut mpsc::Receiver<Packet>, cmd: MediaCmd) -> usize {
    // Drain, then steer: a key frame must follow within a few frames.
    while rx.try_recv().is_ok() {}
    media.commands().send(cmd).unwrap();
    (0..10)
        .position(|_| next(rx).header.key_frame)
        .unwrap_or_else(|| panic!("no key frame within 10 frames after {cmd:?}"))
}

#[test]
fn commands_steer_the_running_pipeline() {
    let (media, mut rx) = start(30);
    assert!(
        next(&mut rx).header.key_frame,
        "the first frame is a key frame"
    );
    for _ in 0..3 {
        assert!(!next(&mut rx).header.key_frame, "then predicted frames");
    }
    for cmd in [MediaCmd::KeyFrame, MediaCmd::SetFps(20)] {
        assert!(frames_to_key_after(&media, &mut rx, cmd) <= 3, "{cmd:?}");
    }
    // A new bitrate goes to the running encoder: the stream goes on without a key frame (the
    // rate controller's steps would otherwise each cost a burst on a link short of capacity).
    for bitrate in [300_000, 6_000_000] {
        while rx.try_recv().is_ok() {}
        media
            .commands()
            .send(MediaCmd::SetBitrate(bitrate))
            .unwrap();
        for _ in 0..10 {
            assert!(
                !next(&mut rx).header.key_frame,
                "a key frame after {bitrate}"
            );
        }
    }
    media.stop();
}

#[test]
fn stop_is_taken_at_once_even_at_one_frame_a_second() {
    let (media, mut rx) = start(1);
    let _ = next(&mut rx);
    let t = Instant::now();
    media.stop();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "stopping took {:?}",
        t.elapsed()
    );
}

#[test]
fn out_of_range_settings_are_clamped() {
    let mut st = State::new(
        MediaConfig {
            fps: 30,
            bitrate_bps: 1_000_000,
            content: None,
        },
        320,
        240,
    )
    .unwrap();
    assert!(st.apply(MediaCmd::SetFps(0)).unwrap());
    assert_eq!(st.config.fps, 1);
    assert!(st.apply(MediaCmd::SetBitrate(u32::MAX)).unwrap());
    assert_eq!(st.config.bitrate_bps, BITRATE_RANGE.1);
    assert!(!st.apply(MediaCmd::Stop).unwrap());
}

/// A synthetic source has no monitors: a switch fails, says so, and the stream goes on.
#[test]
fn a_switch_on_synthetic_content_fails_and_the_stream_goes_on() {
    let source = Box::new(capture::SyntheticSource::new(320, 240).unwrap());
    let spec = SourceSpec::Synthetic {
        width: 320,
        height: 240,
    };
    let (media, mut rx, events) = start_on(source, spec, 30);
    let _ = next(&mut rx);
    media.commands().send(MediaCmd::SwitchMonitor(1)).unwrap();
    match events.recv_timeout(Duration::from_secs(5)) {
        Ok(MediaEvent::SwitchFailed { index: 1, reason }) => {
            assert!(reason.contains("no monitors"), "{reason}");
        }
        other => panic!("expected SwitchFailed, got {other:?}"),
    }
    let p = next(&mut rx);
    assert_eq!((p.header.width, p.header.height), (320, 240));
    media.stop();
}

/// Two RandR monitors of different sizes on a private Xvfb: after a switch the frames have
/// the new monitor's size and the first of them is a key frame; a bad index is an event and
/// the current monitor keeps streaming.
#[cfg(all(unix, not(target_os = "macos")))]
#[test]
fn switching_monitors_changes_the_frame_size_and_starts_with_a_key_frame() {
    use capture::xvfb::VirtualDisplay;
    let d = VirtualDisplay::start(1280, 720)
        .unwrap_or_else(|e| panic!("this test needs Xvfb (run `cargo xtask setup`): {e}"));
    let (all, [big, small]) = d
        .set_monitors(VirtualDisplay::TWO_MONITORS)
        .unwrap_or_else(|e| panic!("xrandr (run `cargo xtask setup`): {e}"));
    let (big, small) = (big.index, small.index);
    let screen = capture::ScreenSpec {
        display: Some(d.name().to_owned()),
        monitor: None,
        cursor: false,
    };
    let spec = SourceSpec::Screen(capture::ScreenSpec {
        monitor: Some(big),
        ..screen
    });
    let opened = capture::open(&spec).unwrap();
    let (media, mut rx, events) = start_on(opened.capturer, spec, 30);
    let first = next(&mut rx);
    assert!(first.header.key_frame);
    assert_eq!((first.header.width, first.header.height), (800, 600));

    media
        .commands()
        .send(MediaCmd::SwitchMonitor(small))
        .unwrap();
    let event = events.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        event,
        MediaEvent::Switched {
            area: capture::Area {
                x: 800,
                y: 0,
                width: 480,
                height: 360
            },
            monitor: small,
            monitors: all.len(),
        }
    );
    // Frames of the old monitor may still be queued; the first of the new one is a key
    // frame (the screen is still: only the forced refresh makes it).
    let switched = loop {
        let p = next(&mut rx);
        if (p.header.width, p.header.height) != (800, 600) {
            break p;
        }
    };
    assert_eq!((switched.header.width, switched.header.height), (480, 360));
    assert!(
        switched.header.key_frame,
        "the new monitor starts with a key frame"
    );

    media
        .commands()
        .send(MediaCmd::SwitchMonitor(all.len()))
        .unwrap();
    match events.recv_timeout(Duration::from_secs(5)) {
        Ok(MediaEvent::SwitchFailed { index, reason }) => {
            assert_eq!(index, all.len());
            assert!(reason.contains(&format!("no monitor {index}")), "{reason}");
        }
        other => panic!("expected SwitchFailed, got {other:?}"),
    }
    // Still streaming the small monitor.
    media.commands().send(MediaCmd::KeyFrame).unwrap();
    let p = next(&mut rx);
    assert_eq!((p.header.width, p.header.height), (480, 360));
    assert!(p.header.key_frame);
    media.stop();
}
