//! The server's background services and how they are kept running: the supervisor that starts
//! a service again when its task ends or panics, the registry sweeper and the scheduled backups.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing::{error, info, warn};

use super::State;
use crate::core::Now;

/// How often expired hosts are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(30);
/// How long a supervisor waits before starting a failed service again.
const RESTART_AFTER: Duration = Duration::from_millis(500);

/// Runs the service `make` starts, marked `up` while it runs; starts it again (after a short
/// pause, told to `on_restart`) whenever it ends or panics, logging why. Ends only when its own
/// task is aborted.
pub async fn supervise<F, Fut, R>(
    name: &'static str,
    (up, on_restart): (Arc<AtomicBool>, R),
    make: F,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
    R: Fn(),
{
    // Marks the service down however this task ends (aborted at shutdown included).
    struct Down(Arc<AtomicBool>);
    impl Drop for Down {
        fn drop(&mut self) {
            self.0.store(false, Ordering::Relaxed);
        }
    }
    let _down = Down(up.clone());
    loop {
        up.store(true, Ordering::Relaxed);
        let task = tokio::spawn(make());
        let abort = task.abort_handle();
        // Aborting the supervisor aborts the service with it.
        struct AbortOnDrop(tokio::task::AbortHandle);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _guard = AbortOnDrop(abort);
        let outcome = task.await;
        up.store(false, Ordering::Relaxed);
        match outcome {
            Ok(()) => error!(service = name, "service stopped; starting it again"),
            Err(e) if e.is_panic() => {
                let why = e.into_panic();
                let why = why
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| why.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                error!(
                    service = name,
                    "service panicked ({why}); starting it again"
                );
            }
            Err(_) => return,
        }
        on_restart();
        tokio::time::sleep(RESTART_AFTER).await;
    }
}

/// Backs the registry up every `every` (the first one after `every`), off the async threads;
/// a failed backup is logged and the next one tried on time.
pub(super) async fn backups(data_dir: PathBuf, every: Duration, keep: usize) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let dir = data_dir.clone();
        let done = tokio::task::spawn_blocking(move || {
            crate::backup::scheduled(&dir, keep, std::time::SystemTime::now())
        })
        .await;
        match done {
            Ok(Ok(path)) => info!(path = %path.display(), "registry backed up"),
            Ok(Err(e)) => warn!("registry backup failed: {e}"),
            Err(e) => warn!("registry backup task failed: {e}"),
        }
    }
}

pub(super) async fn sweep(state: Arc<State>) {
    // Sweep often enough that a short --forget-after is honoured promptly.
    let every = SWEEP_EVERY
        .min(state.forget_after / 4)
        .max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        sweep_once(&state);
    }
}

fn sweep_once(state: &State) {
    state.with(|s| s.core.sweep(Now::system()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use tokio::sync::mpsc;

    #[tokio::test]
    async fn a_service_that_panics_is_restarted_and_marked_down_meanwhile() {
        let up = Arc::new(AtomicBool::new(false));
        let starts = Arc::new(AtomicU32::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let restarts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let on_restart = {
            let restarts = restarts.clone();
            move || {
                restarts.fetch_add(1, Ordering::SeqCst);
            }
        };
        let task = tokio::spawn(supervise("test", (up.clone(), on_restart), {
            let starts = starts.clone();
            move || {
                let n = starts.fetch_add(1, Ordering::SeqCst);
                let tx = tx.clone();
                async move {
                    if n == 0 {
                        panic!("first run fails");
                    }
                    let _ = tx.send(());
                    std::future::pending::<()>().await;
                }
            }
        }));
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("restarted within the timeout");
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        assert_eq!(restarts.load(Ordering::SeqCst), 1);
        assert!(up.load(Ordering::SeqCst));
        task.abort();
        let _ = task.await;
        assert!(!up.load(Ordering::SeqCst), "an aborted service is down");
    }
}
