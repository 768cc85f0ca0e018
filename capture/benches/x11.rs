//! X11 capture on a private Xvfb (started here; `cargo xtask setup` installs it):
//!
//! * `x11_capture/grab_{720p,1080p}`: a full read of a changed screen: `refresh` then `capture`
//!   (DamageSubtract, MIT-SHM GetImage of the monitor into a free segment, pointer drawn in, the
//!   segment lent to the frame and back on the free list when the frame is dropped).
//! * `x11_capture/still_{720p,1080p}`: one tick on a still screen: events drained, one XFIXES
//!   round trip for the pointer, no pixels read (`capture` returns `None`). At 30 ticks a second
//!   this is what an idle host spends.

#![cfg(all(unix, not(target_os = "macos")))]

use std::hint::black_box;

use capture::Capturer;
use capture::ScreenSpec;
use capture::x11::X11Capturer;
use capture::xvfb::VirtualDisplay;
use criterion::{Criterion, criterion_group, criterion_main};

fn bench_x11(c: &mut Criterion) {
    let mut group = c.benchmark_group("x11_capture");
    for (name, width, height) in [("720p", 1280, 720), ("1080p", 1920, 1080)] {
        let display = VirtualDisplay::start(width, height)
            .unwrap_or_else(|e| panic!("the capture bench needs Xvfb (cargo xtask setup): {e}"));
        let mut cap = X11Capturer::open(&ScreenSpec {
            display: Some(display.name().to_owned()),
            monitor: None,
            cursor: true,
        })
        .expect("open the Xvfb display");
        assert!(cap.uses_shm(), "Xvfb should offer MIT-SHM");
        group.bench_function(format!("grab_{name}"), |b| {
            b.iter(|| {
                cap.refresh();
                let frame = cap.capture().unwrap().expect("a refresh gives a frame");
                black_box(&frame.data);
                drop(frame);
            });
        });
        group.bench_function(format!("still_{name}"), |b| {
            b.iter(|| {
                assert!(
                    black_box(cap.capture().unwrap()).is_none(),
                    "screen is still"
                );
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench_x11);
criterion_main!(benches);
