//! The rate controller on simulated time, against a simulated bottleneck: a link of some
//! capacity with a small buffer (excess is lost) or a large one (excess queues, the RTT grows,
//! then it is lost).

use super::*;

const MBIT: u32 = 1_000_000;
const PACKET_BITS: f64 = 1200.0 * 8.0;

/// A bottleneck the video crosses; one step is one sample interval.
struct Link {
    capacity_bps: f64,
    base_rtt: Duration,
    /// How many bits may queue before the excess is lost.
    buffer_bits: f64,
    queued_bits: f64,
    sent: u64,
    lost: u64,
    path_changes: u32,
}

impl Link {
    fn new(capacity_bps: u32, base_rtt_ms: u64, buffer_ms: u64) -> Self {
        let capacity_bps = f64::from(capacity_bps);
        Self {
            capacity_bps,
            base_rtt: Duration::from_millis(base_rtt_ms),
            buffer_bits: capacity_bps * buffer_ms as f64 / 1000.0,
            queued_bits: 0.0,
            sent: 0,
            lost: 0,
            path_changes: 0,
        }
    }

    /// One second of video at `bitrate`; the sample the transport then gives.
    fn step(&mut self, bitrate: u32) -> Sample {
        let offered = f64::from(bitrate) * SAMPLE_EVERY.as_secs_f64();
        let packets = (offered / PACKET_BITS).ceil();
        let through = self.capacity_bps * SAMPLE_EVERY.as_secs_f64();
        self.queued_bits = (self.queued_bits + offered - through).max(0.0);
        let dropped = (self.queued_bits - self.buffer_bits).max(0.0);
        self.queued_bits -= dropped;
        self.sent += packets as u64;
        self.lost += (dropped / PACKET_BITS).round() as u64;
        let queue = Duration::from_secs_f64(self.queued_bits / self.capacity_bps);
        Sample {
            rtt: self.base_rtt + queue,
            sent_packets: self.sent,
            lost_packets: self.lost,
            path_changes: self.path_changes,
        }
    }
}

/// Runs `secs` samples of the controller over `link`; the bitrate after each.
fn run(rate: &mut RateController, link: &mut Link, t0: Instant, from: u64, secs: u64) -> Vec<u32> {
    (from..from + secs)
        .map(|s| {
            let sample = link.step(rate.bitrate());
            let before = rate.bitrate();
            match rate.on_sample(t0 + Duration::from_secs(s), sample) {
                Some(MediaCmd::SetBitrate(b)) => assert_eq!(b, rate.bitrate()),
                Some(other) => panic!("only bitrates: {other:?}"),
                None => assert_eq!(before, rate.bitrate()),
            }
            rate.bitrate()
        })
        .collect()
}

fn changes(trace: &[u32]) -> usize {
    trace.windows(2).filter(|w| w[0] != w[1]).count()
}

#[test]
fn a_link_faster_than_the_configured_bitrate_never_sees_a_command() {
    let t0 = Instant::now();
    for (capacity, rtt, buffer) in [
        (10 * MBIT, 40, 50),
        (100 * MBIT, 1, 5),
        (9 * MBIT, 300, 1000),
    ] {
        let mut rate = RateController::new(8 * MBIT, t0);
        let trace = run(&mut rate, &mut Link::new(capacity, rtt, buffer), t0, 0, 600);
        assert!(
            trace.iter().all(|&b| b == 8 * MBIT),
            "{capacity}: {trace:?}"
        );
    }
}

#[test]
fn a_lossy_bottleneck_brings_the_bitrate_under_its_capacity_and_holds_it_there() {
    let t0 = Instant::now();
    let mut rate = RateController::new(8 * MBIT, t0);
    // 3 Mbit/s with a 30 ms buffer: the excess is lost.
    let mut link = Link::new(3 * MBIT, 40, 30);
    let trace = run(&mut rate, &mut link, t0, 0, 120);
    let first_under = trace.iter().position(|&b| b <= 3 * MBIT).unwrap();
    assert!(
        first_under <= 8,
        "under capacity after {first_under} s: {trace:?}"
    );
    // From then on it probes back up now and then but stays near the capacity, rarely changing.
    let after = &trace[20..];
    let mean = after.iter().map(|&b| f64::from(b)).sum::<f64>() / after.len() as f64;
    assert!(
        (1.5e6..=3.6e6).contains(&mean),
        "mean {mean} over {after:?}"
    );
    assert!(changes(after) <= 30, "{} changes in 100 s", changes(after));
    assert!(after.iter().all(|&b| b >= rate.floor));
}

#[test]
fn a_queue_building_behind_a_large_buffer_is_congestion_too() {
    let t0 = Instant::now();
    let mut rate = RateController::new(8 * MBIT, t0);
    // 4 Mbit/s with 3 s of buffer: no loss for a while, but the RTT climbs.
    let mut link = Link::new(4 * MBIT, 30, 3000);
    let trace = run(&mut rate, &mut link, t0, 0, 60);
    // It reacts while the buffer fills: little is ever lost, and the queue drains.
    assert!(
        link.lost * 50 < link.sent,
        "{} of {} lost: {trace:?}",
        link.lost,
        link.sent
    );
    let last = &trace[30..];
    assert!(last.iter().all(|&b| b <= 5 * MBIT), "{trace:?}");
    let mean = last.iter().map(|&b| f64::from(b)).sum::<f64>() / last.len() as f64;
    assert!(mean <= 4e6, "mean {mean}: {trace:?}");
    assert!(link.queued_bits / link.capacity_bps < 1.0, "{trace:?}");
}

#[test]
fn the_bitrate_climbs_back_to_the_configured_one_and_never_above() {
    let t0 = Instant::now();
    let mut rate = RateController::new(6 * MBIT, t0);
    let mut link = Link::new(MBIT, 50, 40);
    let low = run(&mut rate, &mut link, t0, 0, 40);
    // Near the capacity: a probe a little above it loses too little to count as congestion.
    assert!(*low.last().unwrap() <= MBIT + MBIT / 10, "{low:?}");
    // The bottleneck goes away.
    link.capacity_bps = 50e6;
    link.buffer_bits = 50e6 * 0.05;
    let high = run(&mut rate, &mut link, t0, 40, 120);
    let back = high.iter().position(|&b| b == 6 * MBIT).unwrap();
    assert!(back <= 90, "back after {back} s: {high:?}");
    assert!(high.iter().all(|&b| b <= 6 * MBIT));
    // Increases wait for a clear link: at least CLEAR_FOR apart.
    let ups: Vec<usize> = high
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[1] > w[0])
        .map(|(i, _)| i)
        .collect();
    assert!(
        ups.windows(2)
            .all(|w| (w[1] - w[0]) as u64 >= CLEAR_FOR.as_secs()),
        "{ups:?}"
    );
}

#[test]
fn a_move_to_a_slower_path_is_not_taken_for_a_queue() {
    let t0 = Instant::now();
    let mut rate = RateController::new(8 * MBIT, t0);
    let mut link = Link::new(50 * MBIT, 10, 50);
    run(&mut rate, &mut link, t0, 0, 40);
    // Direct → relay: 150 ms more RTT, the same capacity; the route counts a path move.
    link.base_rtt = Duration::from_millis(160);
    link.path_changes += 1;
    let trace = run(&mut rate, &mut link, t0, 40, 60);
    assert!(trace.iter().all(|&b| b == 8 * MBIT), "{trace:?}");
    // Without the move counted, the same jump reads as a queue.
    let mut rate = RateController::new(8 * MBIT, t0);
    let mut link = Link::new(50 * MBIT, 10, 50);
    run(&mut rate, &mut link, t0, 0, 40);
    link.base_rtt = Duration::from_millis(160);
    let trace = run(&mut rate, &mut link, t0, 40, 5);
    assert!(trace.iter().any(|&b| b < 8 * MBIT), "{trace:?}");
}

#[test]
fn odd_counters_are_not_read_as_loss_and_the_bounds_hold() {
    let t0 = Instant::now();
    let mut rate = RateController::new(2 * MBIT, t0);
    let floor = rate.floor;
    let sample = |sent, lost, rtt_ms| Sample {
        rtt: Duration::from_millis(rtt_ms),
        sent_packets: sent,
        lost_packets: lost,
        path_changes: 0,
    };
    let mut s = 0;
    let mut feed = |rate: &mut RateController, x: Sample| {
        s += 1;
        rate.on_sample(t0 + Duration::from_secs(s), x)
    };
    assert_eq!(feed(&mut rate, sample(1000, 0, 20)), None);
    // Counters going backwards (quinn's new path), few packets, more lost than sent.
    assert_eq!(feed(&mut rate, sample(10, 9, 20)), None);
    assert_eq!(feed(&mut rate, sample(15, 14, 20)), None);
    assert_eq!(feed(&mut rate, sample(15, u64::MAX, 20)), None);
    assert_eq!(feed(&mut rate, sample(u64::MAX, 0, 20)), None);
    // Endless congestion ends at the floor; endless clear link at the configured bitrate.
    for i in 0..200u64 {
        feed(&mut rate, sample(i * 1000, i * 500, 20 + i * 1000));
        assert!(rate.bitrate() >= floor);
    }
    assert_eq!(rate.bitrate(), floor);
    let n = 200 * 1000;
    for i in 0..400u64 {
        feed(&mut rate, sample(n + i * 1000, 200 * 500, 20));
        assert!(rate.bitrate() <= 2 * MBIT);
    }
    assert_eq!(rate.bitrate(), 2 * MBIT);
    // Configured bitrates outside the pipeline's range are clamped into it.
    assert_eq!(RateController::new(0, t0).bitrate(), BITRATE_RANGE.0);
    assert_eq!(RateController::new(u32::MAX, t0).bitrate(), BITRATE_RANGE.1);
}
