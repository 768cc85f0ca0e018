//! Login limits (sans IO): at most [`PER_MINUTE`] failed logins a minute per source address
//! (an IPv4 address or an IPv6 /64) and per user name; whoever goes past that is locked out,
//! for a minute the first time and twice as long each further time (up to a day), even with
//! the right password. A success clears the user's and the source's failures but not a
//! lockout in force.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use proto::limits::Prefix;

/// Failed logins allowed a minute, per source and per user.
pub const PER_MINUTE: u32 = 10;
const WINDOW: Duration = Duration::from_secs(60);
const FIRST_LOCKOUT: Duration = Duration::from_secs(60);
const MAX_LOCKOUT: Duration = Duration::from_secs(24 * 3600);
/// Entries kept at most: past it quiet entries are forgotten, and if that is not enough, every
/// entry not locked out (a flood of fresh names and sources loses its partial counts, never a
/// lockout).
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    window_start: Instant,
    failures: u32,
    locked_until: Option<Instant>,
    /// The next lockout's length.
    next_lockout: Duration,
    last: Instant,
}

impl Entry {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            failures: 0,
            locked_until: None,
            next_lockout: FIRST_LOCKOUT,
            last: now,
        }
    }

    fn locked(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|&u| u > now)
            .map(|u| u.saturating_duration_since(now))
    }

    fn fail(&mut self, now: Instant) {
        self.last = now;
        if now.saturating_duration_since(self.window_start) >= WINDOW {
            self.window_start = now;
            self.failures = 0;
        }
        self.failures += 1;
        if self.failures >= PER_MINUTE {
            self.locked_until = Some(now + self.next_lockout);
            self.next_lockout = (self.next_lockout * 2).min(MAX_LOCKOUT);
            self.failures = 0;
            self.window_start = now;
        }
    }
}

/// The login limits of one console.
#[derive(Debug, Default)]
pub struct Limiter {
    sources: HashMap<Prefix, Entry>,
    users: HashMap<String, Entry>,
    /// Lockouts begun so far (for metrics).
    pub lockouts: u64,
}

/// A login refused before its password is checked: locked out for this long still.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked(pub Duration);

impl Limiter {
    /// Whether a login by `user` from `source` may be tried now.
    pub fn check(&self, now: Instant, source: Prefix, user: &str) -> Result<(), Locked> {
        let s = self.sources.get(&source).and_then(|e| e.locked(now));
        let u = self.users.get(user).and_then(|e| e.locked(now));
        match s.max(u) {
            Some(left) => Err(Locked(left)),
            None => Ok(()),
        }
    }

    /// A failed login (wrong password, unknown user or second factor).
    pub fn failed(&mut self, now: Instant, source: Prefix, user: &str) {
        if self.sources.len() + self.users.len() >= MAX_ENTRIES {
            self.sweep(now);
            if self.sources.len() + self.users.len() >= MAX_ENTRIES / 2 {
                self.sources.retain(|_, e| e.locked(now).is_some());
                self.users.retain(|_, e| e.locked(now).is_some());
            }
        }
        let before = self.check(now, source, user).is_err();
        self.sources
            .entry(source)
            .or_insert_with(|| Entry::new(now))
            .fail(now);
        // User names are capped so a flood of made-up names costs bounded memory.
        let user: String = user.chars().take(64).collect();
        self.users
            .entry(user.clone())
            .or_insert_with(|| Entry::new(now))
            .fail(now);
        if !before && self.check(now, source, &user).is_err() {
            self.lockouts += 1;
        }
    }

    /// A successful login: the failures so far are cleared (a lockout in force stays).
    pub fn succeeded(&mut self, now: Instant, source: Prefix, user: &str) {
        for e in [self.sources.get_mut(&source), self.users.get_mut(user)]
            .into_iter()
            .flatten()
        {
            e.failures = 0;
            e.last = now;
        }
    }

    /// Forgets entries quiet for a window and not locked out.
    pub fn sweep(&mut self, now: Instant) {
        let keep = |e: &mut Entry| {
            e.locked(now).is_some() || now.saturating_duration_since(e.last) < WINDOW
        };
        self.sources.retain(|_, e| keep(e));
        self.users.retain(|_, e| keep(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: u8) -> Prefix {
        Prefix::of(std::net::IpAddr::from([192, 0, 2, n]))
    }

    #[test]
    fn ten_failures_a_minute_lock_out_even_the_right_password_and_lockouts_grow() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for i in 0..PER_MINUTE - 1 {
            assert_eq!(l.check(t0, src(1), "ann"), Ok(()), "attempt {i}");
            l.failed(t0, src(1), "ann");
        }
        assert_eq!(l.check(t0, src(1), "ann"), Ok(()));
        l.failed(t0, src(1), "ann");
        // The 11th attempt is refused, whatever its password.
        assert_eq!(l.check(t0, src(1), "ann"), Err(Locked(FIRST_LOCKOUT)));
        // From another source the user is locked too; another user from that source too.
        assert!(l.check(t0, src(2), "ann").is_err());
        assert!(l.check(t0, src(1), "bob").is_err());
        assert_eq!(l.check(t0, src(2), "bob"), Ok(()));
        assert_eq!(l.lockouts, 1);
        // A minute later: open again; ten more failures lock out for twice as long.
        let t1 = t0 + FIRST_LOCKOUT;
        assert_eq!(l.check(t1, src(1), "ann"), Ok(()));
        for _ in 0..PER_MINUTE {
            l.failed(t1, src(1), "ann");
        }
        assert_eq!(l.check(t1, src(1), "ann"), Err(Locked(FIRST_LOCKOUT * 2)));
    }

    #[test]
    fn failures_spread_over_minutes_and_a_success_do_not_lock_out() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        for m in 0..5u64 {
            for _ in 0..PER_MINUTE - 1 {
                l.failed(t0 + Duration::from_secs(61 * m), src(1), "ann");
            }
        }
        assert_eq!(
            l.check(t0 + Duration::from_secs(300), src(1), "ann"),
            Ok(())
        );
        let t = t0 + Duration::from_secs(400);
        for _ in 0..PER_MINUTE - 1 {
            l.failed(t, src(1), "ann");
        }
        l.succeeded(t, src(1), "ann");
        l.failed(t, src(1), "ann");
        assert_eq!(l.check(t, src(1), "ann"), Ok(()));
    }

    #[test]
    fn made_up_user_names_cost_bounded_memory() {
        let t0 = Instant::now();
        let mut l = Limiter::default();
        let long = "x".repeat(10_000);
        l.failed(t0, src(1), &long);
        assert!(l.users.keys().all(|k| k.len() <= 64));
        for i in 0..1000u32 {
            l.failed(t0 + Duration::from_secs(120), src(3), &i.to_string());
        }
        l.sweep(t0 + Duration::from_secs(400));
        // Only the locked-out source remains, after every quiet name is forgotten.
        assert!(l.users.is_empty(), "{}", l.users.len());
    }
}
