//! The programs' logging set-up (feature `logging`), shared by `peer` and `rendezvous`:
//! `tracing` events to stderr, filtered by `RUST_LOG` (`info` when it is unset or invalid), in
//! colour only when stderr is a terminal.

use tracing_subscriber::EnvFilter;

/// Installs the process's tracing subscriber. Call once, early in `main`; panics if a
/// subscriber is already installed.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
