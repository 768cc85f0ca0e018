//! The host's rate controller: steers the encoder's bitrate from what the transport says of the
//! path, so that a link slower than the configured bitrate gets a picture that keeps up instead
//! of a queue that grows (and input that lags behind it).
//!
//! ```text
//!  quinn::Connection::stats() ── every second ──► Sample (RTT, sent and lost packets, path moves)
//!        └─► RateController::on_sample(now, sample) ── Some(SetBitrate(b)) ──► media pipeline
//! ```
//!
//! Sans-IO ([`RateController`] takes samples and `now`, returns commands); [`adapt`] is its thin
//! driver. The rules, AIMD in the manner of TCP-friendly video senders:
//!
//! - **Congested**: over [`LOSS_CONGESTED`] of the packets sent since the last sample were lost,
//!   or the smoothed RTT stands more than [`QUEUE_DELAY`] (and more than the base RTT itself)
//!   above the lowest RTT of the last [`BASE_WINDOW`] samples: a queue is building. The bitrate
//!   drops to [`DECREASE`] of itself, at most once per [`HOLD_AFTER_DECREASE`], never below the
//!   floor (a sixteenth of the configured bitrate, at least [`super::media::BITRATE_RANGE`]'s
//!   lowest).
//! - **Clear**: under [`LOSS_CLEAR`] lost and the RTT within [`QUEUE_DELAY_CLEAR`] of the base,
//!   for [`CLEAR_FOR`] since the last change: the bitrate grows by [`INCREASE`], never above the
//!   configured bitrate, which is also where it starts. A clean link never sees a command.
//! - A sample with too few packets says nothing about loss; counters that go backwards (a new
//!   path in quinn) start a new baseline; a path move (relay ↔ direct) forgets the base RTT,
//!   since the new path has its own.
//!
//! The running encoder takes each change without a key frame (`codec::Encoder::set_bitrate`);
//! the holds keep changes rare all the same, since OpenH264's rate control takes a moment to
//! settle on a new target. What it does not do: change the frame rate (a slow link already gets fewer frames, since sending blocks the
//! pipeline), or probe for capacity above the configured bitrate.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::info;

use super::media::{BITRATE_RANGE, MediaCmd};

/// How often the driver samples the connection.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Loss over this fraction of the packets sent is congestion.
pub const LOSS_CONGESTED: f64 = 0.05;
/// Loss under this fraction is a clear link.
pub const LOSS_CLEAR: f64 = 0.01;
/// RTT this far above the base (and above twice the base) is a queue building.
pub const QUEUE_DELAY: Duration = Duration::from_millis(100);
/// RTT within this of the base is a clear link.
pub const QUEUE_DELAY_CLEAR: Duration = Duration::from_millis(30);
/// How many samples the base RTT is the lowest of.
pub const BASE_WINDOW: usize = 30;
/// The bitrate after a decrease, as a fraction of the one before.
pub const DECREASE: f64 = 0.7;
/// The bitrate after an increase, as a multiple of the one before.
pub const INCREASE: f64 = 1.2;
/// No second decrease sooner than this after one (the first one's effect shows first).
pub const HOLD_AFTER_DECREASE: Duration = Duration::from_secs(2);
/// How long the link must be clear, since the last change, before an increase.
pub const CLEAR_FOR: Duration = Duration::from_secs(5);
/// Fewer packets sent between two samples say nothing about loss.
pub const MIN_PACKETS: u64 = 20;

/// What the transport says of the path at one moment (quinn's counters are cumulative).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Smoothed round-trip time.
    pub rtt: Duration,
    pub sent_packets: u64,
    pub lost_packets: u64,
    /// How often the session's path moved (relay ↔ direct) so far.
    pub path_changes: u32,
}

impl Sample {
    /// The sample of a quinn connection, with the route's path moves.
    pub fn of(conn: &quinn::Connection, path_changes: u32) -> Self {
        let path = conn.stats().path;
        Self {
            rtt: path.rtt,
            sent_packets: path.sent_packets,
            lost_packets: path.lost_packets,
            path_changes,
        }
    }
}

/// The bitrate one session's video gets.
#[derive(Debug)]
pub struct RateController {
    ceiling: u32,
    floor: u32,
    current: u32,
    last: Option<Sample>,
    /// The RTTs of the last [`BASE_WINDOW`] samples on this path.
    rtts: VecDeque<Duration>,
    changed_at: Instant,
    decreased_at: Option<Instant>,
    /// Since when the link has been clear, if it is.
    clear_since: Option<Instant>,
}

impl RateController {
    /// A controller starting at (and never above) the configured bitrate.
    pub fn new(configured_bps: u32, now: Instant) -> Self {
        let ceiling = configured_bps.clamp(BITRATE_RANGE.0, BITRATE_RANGE.1);
        Self {
            ceiling,
            floor: (ceiling / 16).max(BITRATE_RANGE.0),
            current: ceiling,
            last: None,
            rtts: VecDeque::with_capacity(BASE_WINDOW),
            changed_at: now,
            decreased_at: None,
            clear_since: None,
        }
    }

    /// The bitrate the pipeline was last told (or the configured one).
    pub fn bitrate(&self) -> u32 {
        self.current
    }

    /// Takes a sample; the command for the pipeline if the bitrate should change.
    pub fn on_sample(&mut self, now: Instant, sample: Sample) -> Option<MediaCmd> {
        let last = self.last.replace(sample);
        let Some(last) = last else {
            self.rtts.push_back(sample.rtt);
            return None;
        };
        if sample.path_changes != last.path_changes {
            // Another path: its own base RTT, and its own queue.
            self.rtts.clear();
            self.clear_since = None;
        }
        if self.rtts.len() == BASE_WINDOW {
            self.rtts.pop_front();
        }
        self.rtts.push_back(sample.rtt);
        let base = self.rtts.iter().min().copied().unwrap_or(sample.rtt);
        let sent = sample.sent_packets.checked_sub(last.sent_packets);
        let lost = sample.lost_packets.checked_sub(last.lost_packets);
        let loss = match (sent, lost) {
            (Some(sent), Some(lost)) if sent >= MIN_PACKETS => Some(lost as f64 / sent as f64),
            _ => None,
        };
        let queue = sample.rtt.saturating_sub(base);
        let congested =
            loss.is_some_and(|l| l > LOSS_CONGESTED) || (queue > QUEUE_DELAY && queue > base);
        let clear = loss.is_none_or(|l| l < LOSS_CLEAR) && queue <= QUEUE_DELAY_CLEAR;
        if congested {
            self.clear_since = None;
            if self
                .decreased_at
                .is_some_and(|at| now.saturating_duration_since(at) < HOLD_AFTER_DECREASE)
            {
                return None;
            }
            let next = ((f64::from(self.current) * DECREASE) as u32).max(self.floor);
            let cmd = self.change(now, next, sample, loss);
            if cmd.is_some() {
                self.decreased_at = Some(now);
            }
            return cmd;
        }
        if !clear {
            self.clear_since = None;
            return None;
        }
        let since = *self.clear_since.get_or_insert(now);
        let settled = now.saturating_duration_since(since.max(self.changed_at));
        if self.current < self.ceiling && settled >= CLEAR_FOR {
            let next = ((f64::from(self.current) * INCREASE) as u32).min(self.ceiling);
            return self.change(now, next, sample, loss);
        }
        None
    }

    fn change(
        &mut self,
        now: Instant,
        next: u32,
        sample: Sample,
        loss: Option<f64>,
    ) -> Option<MediaCmd> {
        if next == self.current {
            return None;
        }
        info!(
            from_bps = self.current,
            to_bps = next,
            rtt_ms = sample.rtt.as_millis() as u64,
            loss_pct = loss.map(|l| (l * 1000.0).round() / 10.0),
            "video bitrate adapted to the path"
        );
        self.current = next;
        self.changed_at = now;
        self.clear_since = None;
        Some(MediaCmd::SetBitrate(next))
    }
}

/// Samples `conn` every [`SAMPLE_EVERY`] and tells the pipeline what the controller decides;
/// ends when the pipeline is gone. `path_changes` reads the session route's path moves.
pub(super) async fn adapt(
    conn: &quinn::Connection,
    media: &std::sync::mpsc::Sender<MediaCmd>,
    configured_bps: u32,
    path_changes: impl Fn() -> u32,
) {
    let mut rate = RateController::new(configured_bps, Instant::now());
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let sample = Sample::of(conn, path_changes());
        if let Some(cmd) = rate.on_sample(Instant::now(), sample)
            && media.send(cmd).is_err()
        {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests;
