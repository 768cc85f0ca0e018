//! The programs' logging set-up (feature `logging`), shared by `peer` and `rendezvous`:
//! `tracing` events to stderr, filtered by `RUST_LOG` (`info` when it is unset or invalid), in
//! colour only when stderr is a terminal; one JSON object a line instead with
//! `QUICDESK_LOG_FORMAT=json` (for log collectors).

use tracing_subscriber::EnvFilter;

/// The environment variable that picks the format: `json`, else text.
pub const FORMAT_VAR: &str = "QUICDESK_LOG_FORMAT";

/// Installs the process's tracing subscriber. Call once, early in `main`; panics if a
/// subscriber is already installed.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var(FORMAT_VAR).is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        fmt.json().with_current_span(false).init();
    } else {
        fmt.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}
