//! Session statistics on the controller: rates, latency percentiles, the JSON report.

use std::time::{Duration, Instant};

use serde::Serialize;

/// Which kind of path the session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Direct,
    Relay,
}

impl std::fmt::Display for PathKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PathKind::Direct => "direct",
            PathKind::Relay => "relay",
        })
    }
}

/// What `--stats-json` writes at the end of a session.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub frames_decoded: u64,
    pub frames_received: u64,
    pub decode_errors: u64,
    pub fps: f64,
    pub mbps: f64,
    pub bytes_received: u64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub path: PathKind,
    pub path_changes: u32,
    /// Frames decoded since the last path change (all of them without one).
    pub frames_since_path_change: u64,
    pub time_to_first_frame_ms: Option<f64>,
    /// From the start to the move onto the direct path, if the session made one.
    pub time_to_direct_ms: Option<f64>,
    pub duration_s: f64,
    pub width: u32,
    pub height: u32,
    pub input_events_sent: u64,
    /// What the host let the session do.
    pub permissions: Option<proto::session::Permissions>,
    /// Why the host ended the session, when it did (its goodbye, made printable).
    pub ended_by_host: Option<String>,
}

/// Running counters; one per session, updated by the receive and decode tasks.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    first_frame: Option<Instant>,
    pub frames_decoded: u64,
    pub frames_received: u64,
    pub decode_errors: u64,
    pub bytes_received: u64,
    pub input_events_sent: u64,
    pub width: u32,
    pub height: u32,
    pub path: PathKind,
    pub path_changes: u32,
    frames_since_path_change: u64,
    /// The path changes [`Self::frames_since_path_change`] counts from.
    changes_counted_from: u32,
    direct_since: Option<Instant>,
    latencies_us: Vec<u64>,
    window: Window,
}

/// Counters since the last one-second print.
#[derive(Debug, Clone, Copy)]
struct Window {
    at: Instant,
    frames: u64,
    bytes: u64,
    latencies_from: usize,
}

/// One line of live stats.
#[derive(Debug, Clone, Copy)]
pub struct Tick {
    pub fps: f64,
    pub mbps: f64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub frames_decoded: u64,
    pub path: PathKind,
}

impl std::fmt::Display for Tick {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:5.1} fps  {:6.2} Mbit/s  latency p50 {} p95 {}  path {}  frames {}",
            self.fps,
            self.mbps,
            fmt_ms(self.latency_ms_p50),
            fmt_ms(self.latency_ms_p95),
            self.path,
            self.frames_decoded
        )
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "  -  ".into(), |v| format!("{v:5.1} ms"))
}

/// Cap on stored latency samples (an hour at 60 fps); older ones are dropped in halves.
const MAX_SAMPLES: usize = 216_000;

fn percentile_ms(samples: &[u64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_unstable();
    let idx = ((v.len() - 1) as f64 * p).round() as usize;
    Some(v[idx.min(v.len() - 1)] as f64 / 1000.0)
}

impl Stats {
    pub fn new(started: Instant, path: PathKind) -> Self {
        Self {
            started,
            first_frame: None,
            frames_decoded: 0,
            frames_received: 0,
            decode_errors: 0,
            bytes_received: 0,
            input_events_sent: 0,
            width: 0,
            height: 0,
            path,
            path_changes: 0,
            frames_since_path_change: 0,
            changes_counted_from: 0,
            direct_since: None,
            latencies_us: Vec::new(),
            window: Window {
                at: Instant::now(),
                frames: 0,
                bytes: 0,
                latencies_from: 0,
            },
        }
    }

    /// The path the session is on now, how often it changed, and since when it is direct.
    pub fn set_path(&mut self, path: PathKind, changes: u32, direct_since: Option<Instant>) {
        self.path = path;
        self.path_changes = changes;
        self.direct_since = direct_since;
    }

    pub fn on_received(&mut self, bytes: usize) {
        self.frames_received += 1;
        self.bytes_received += bytes as u64;
    }

    /// Counts a decoded frame on a route that has changed path `path_changes` times so far
    /// (read as the frame is decoded, so frames after a change are counted from the change).
    pub fn on_decoded(
        &mut self,
        now: Instant,
        latency_us: Option<u64>,
        (width, height): (u32, u32),
        path_changes: u32,
    ) {
        self.frames_decoded += 1;
        if path_changes != self.changes_counted_from {
            self.changes_counted_from = path_changes;
            self.frames_since_path_change = 0;
        }
        self.frames_since_path_change += 1;
        self.width = width;
        self.height = height;
        self.first_frame.get_or_insert(now);
        if let Some(l) = latency_us {
            if self.latencies_us.len() >= MAX_SAMPLES {
                self.latencies_us.drain(..MAX_SAMPLES / 2);
                self.window.latencies_from = 0;
            }
            self.latencies_us.push(l);
        }
    }

    /// Rates since the previous tick.
    pub fn tick(&mut self, now: Instant) -> Tick {
        let secs = now.duration_since(self.window.at).as_secs_f64().max(1e-6);
        let recent = &self.latencies_us[self.window.latencies_from.min(self.latencies_us.len())..];
        let t = Tick {
            fps: (self.frames_decoded - self.window.frames) as f64 / secs,
            mbps: (self.bytes_received - self.window.bytes) as f64 * 8.0 / secs / 1e6,
            latency_ms_p50: percentile_ms(recent, 0.5),
            latency_ms_p95: percentile_ms(recent, 0.95),
            frames_decoded: self.frames_decoded,
            path: self.path,
        };
        self.window = Window {
            at: now,
            frames: self.frames_decoded,
            bytes: self.bytes_received,
            latencies_from: self.latencies_us.len(),
        };
        t
    }

    /// The whole-session report.
    pub fn report(&self, now: Instant) -> Report {
        let duration = now.duration_since(self.started);
        // rates over the time frames were flowing
        let flowing = self
            .first_frame
            .map_or(Duration::ZERO, |f| now.duration_since(f))
            .as_secs_f64();
        let per_sec = |x: f64| if flowing > 0.0 { x / flowing } else { 0.0 };
        Report {
            frames_decoded: self.frames_decoded,
            frames_received: self.frames_received,
            decode_errors: self.decode_errors,
            fps: per_sec(self.frames_decoded.saturating_sub(1) as f64),
            mbps: per_sec(self.bytes_received as f64 * 8.0 / 1e6),
            bytes_received: self.bytes_received,
            latency_ms_p50: percentile_ms(&self.latencies_us, 0.5),
            latency_ms_p95: percentile_ms(&self.latencies_us, 0.95),
            path: self.path,
            path_changes: self.path_changes,
            frames_since_path_change: self.frames_since_path_change,
            time_to_first_frame_ms: self
                .first_frame
                .map(|f| f.duration_since(self.started).as_secs_f64() * 1000.0),
            time_to_direct_ms: self
                .direct_since
                .filter(|_| self.path_changes > 0)
                .map(|d| d.saturating_duration_since(self.started).as_secs_f64() * 1000.0),
            duration_s: duration.as_secs_f64(),
            width: self.width,
            height: self.height,
            input_events_sent: self.input_events_sent,
            permissions: None,
            ended_by_host: None,
        }
    }
}

/// Host-minus-controller clock offset, from the ping with the smallest round trip.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClockOffset {
    best_rtt_us: Option<u64>,
    offset_us: i64,
}

impl ClockOffset {
    /// Feeds one ping/pong: `sent` and `received` on the controller clock, `host` on the host's.
    pub fn update(&mut self, sent_us: u64, host_us: u64, received_us: u64) {
        let rtt = received_us.saturating_sub(sent_us);
        if self.best_rtt_us.is_none_or(|best| rtt <= best) {
            self.best_rtt_us = Some(rtt);
            let midpoint = sent_us as i128 + rtt as i128 / 2;
            self.offset_us = (host_us as i128 - midpoint) as i64;
        }
    }

    /// Whether at least one sample arrived.
    pub fn known(&self) -> bool {
        self.best_rtt_us.is_some()
    }

    /// Converts a host timestamp to the controller's clock.
    pub fn to_local_us(&self, host_us: u64) -> u64 {
        (host_us as i128 - self.offset_us as i128).max(0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<u64> = (1..=100).map(|x| x * 1000).collect();
        assert_eq!(percentile_ms(&v, 0.5), Some(51.0));
        assert_eq!(percentile_ms(&v, 0.95), Some(95.0));
        assert_eq!(percentile_ms(&[], 0.5), None);
    }

    #[test]
    fn clock_offset_uses_best_rtt() {
        let mut c = ClockOffset::default();
        // host is 1 s ahead; first sample has a large asymmetric delay
        c.update(0, 1_000_000 + 90_000, 100_000);
        c.update(200_000, 1_200_000 + 1_000, 202_000);
        assert_eq!(c.to_local_us(1_500_000), 500_000);
    }
}
