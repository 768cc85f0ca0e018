//! Prometheus metrics: the core's [`Snapshot`] and the STUN responder's counters in the text
//! exposition format (version 0.0.4), and the small HTTP server that serves them at
//! `/metrics` (`rendezvous --metrics-listen ADDR`, off by default: put it on a private address
//! or behind the firewall, as coturn's and iroh-relay's are).
//!
//! [`render`] is plain data in, text out; [`serve`] is its axum front-end. What it does not
//! do: per-host series (the host rows stay for the admin API), or authentication (it tells
//! counts only, no code, key or address).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::console::LoginCounters;
use crate::core::Snapshot;
use crate::responder::Counters as StunCounters;

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One metric family: name, help, type, and its samples (labels, value).
fn family(out: &mut String, name: &str, help: &str, kind: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for (labels, value) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

/// The metrics for one scrape.
pub fn render(s: &Snapshot, stun: &StunCounters, logins: &LoginCounters) -> String {
    let mut out = String::new();
    let n = |v: usize| v as u64;
    family(
        &mut out,
        "quicdesk_hosts_known",
        "Hosts the registry holds a code for.",
        "gauge",
        &[("", n(s.hosts_known))],
    );
    family(
        &mut out,
        "quicdesk_hosts_online",
        "Hosts registered now.",
        "gauge",
        &[("", n(s.hosts_online))],
    );
    family(
        &mut out,
        "quicdesk_codes_quarantined",
        "Codes of forgotten hosts kept from other keys.",
        "gauge",
        &[("", n(s.codes_quarantined))],
    );
    family(
        &mut out,
        "quicdesk_connections",
        "QUIC connections open now.",
        "gauge",
        &[("", n(s.connections))],
    );
    family(
        &mut out,
        "quicdesk_registrations_total",
        "Registrations taken.",
        "counter",
        &[("", s.registrations)],
    );
    family(
        &mut out,
        "quicdesk_resolves_total",
        "Look-ups answered with a host.",
        "counter",
        &[("", s.resolves)],
    );
    let r = &s.refusals;
    family(
        &mut out,
        "quicdesk_refusals_total",
        "Requests refused, by reason.",
        "counter",
        &[
            ("reason=\"register_rate_limited\"", r.register_rate_limited),
            ("reason=\"no_free_code\"", r.no_free_code),
            ("reason=\"resolve_rate_limited\"", r.resolve_rate_limited),
            ("reason=\"unavailable\"", r.unavailable),
            ("reason=\"relay_full\"", r.relay_full),
            ("reason=\"relay_key_cap\"", r.relay_key_cap),
            ("reason=\"relay_prefix_cap\"", r.relay_prefix_cap),
            ("reason=\"relay_down\"", r.relay_down),
            ("reason=\"connection_cap\"", r.connection_cap),
            ("reason=\"bad_request\"", r.bad_request),
            ("reason=\"banned\"", r.banned),
            ("reason=\"not_enrolled\"", r.not_enrolled),
            ("reason=\"account_cap\"", r.account_cap),
        ],
    );
    family(
        &mut out,
        "quicdesk_service_restarts_total",
        "Background services started again after they ended.",
        "counter",
        &[("", s.service_restarts)],
    );
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    family(
        &mut out,
        "quicdesk_stun_requests_total",
        "STUN Binding requests, by what was done with them.",
        "counter",
        &[
            ("outcome=\"answered\"", load(&stun.answered)),
            ("outcome=\"ignored\"", load(&stun.ignored)),
            ("outcome=\"rate_limited\"", load(&stun.limited)),
            ("outcome=\"too_small\"", load(&stun.too_small)),
        ],
    );
    if let Some(relay) = &s.relay {
        family(
            &mut out,
            "quicdesk_relay_sessions",
            "Relayed sessions open now.",
            "gauge",
            &[("", relay.sessions_active)],
        );
        family(
            &mut out,
            "quicdesk_relay_sessions_total",
            "Relayed sessions, by what happened to them.",
            "counter",
            &[
                ("event=\"opened\"", relay.sessions_opened),
                ("event=\"refused\"", relay.sessions_refused),
                ("event=\"expired\"", relay.sessions_expired),
                ("event=\"unbound\"", relay.sessions_unbound),
            ],
        );
        family(
            &mut out,
            "quicdesk_relay_forwarded_packets_total",
            "Packets the relay forwarded.",
            "counter",
            &[("", relay.packets_forwarded)],
        );
        family(
            &mut out,
            "quicdesk_relay_forwarded_bytes_total",
            "Bytes the relay forwarded.",
            "counter",
            &[("", relay.bytes_forwarded)],
        );
        family(
            &mut out,
            "quicdesk_relay_dropped_total",
            "Datagrams the relay dropped, by reason.",
            "counter",
            &[
                ("reason=\"unknown_token\"", relay.dropped_unknown),
                ("reason=\"unproven\"", relay.dropped_unproven),
                ("reason=\"rate_limited\"", relay.dropped_limited),
                ("reason=\"unbound\"", relay.dropped_unbound),
                ("reason=\"malformed\"", relay.dropped_malformed),
            ],
        );
    }
    family(
        &mut out,
        "quicdesk_console_logins_failed_total",
        "Console logins that failed (wrong name, password or second factor).",
        "counter",
        &[("", logins.failures.load(Ordering::Relaxed))],
    );
    family(
        &mut out,
        "quicdesk_console_lockouts_total",
        "Console login lockouts begun (10 failures a minute by a source or for a user).",
        "counter",
        &[("", logins.lockouts.load(Ordering::Relaxed))],
    );
    out
}

/// Serves [`render`] at `GET /metrics` on `listener` until `shutdown` resolves; anything else
/// gets 404.
///
/// # Errors
///
/// The listener's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshots: crate::server::Snapshots,
    stun: Arc<StunCounters>,
    logins: LoginCounters,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let (snapshots, stun, logins) = (snapshots.clone(), stun.clone(), logins.clone());
            async move {
                // The counts take the core's lock: off the async threads.
                let body = tokio::task::spawn_blocking(move || {
                    render(&snapshots.counts(), &stun, &logins)
                })
                .await
                .unwrap_or_default();
                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], body)
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Refusals;

    #[test]
    fn every_family_is_well_formed() {
        let s = Snapshot {
            hosts_known: 3,
            hosts_online: 2,
            codes_quarantined: 1,
            connections: 5,
            registrations: 7,
            resolves: 4,
            refusals: Refusals {
                unavailable: 9,
                ..Refusals::default()
            },
            relay: Some(crate::relay::Counters {
                bytes_forwarded: 1234,
                ..Default::default()
            }),
            service_restarts: 0,
            hosts: Vec::new(),
        };
        let stun = StunCounters::default();
        stun.answered.store(11, Ordering::Relaxed);
        let logins = LoginCounters::default();
        logins.failures.store(3, Ordering::Relaxed);
        let text = render(&s, &stun, &logins);
        assert!(
            text.contains("\nquicdesk_console_logins_failed_total 3\n"),
            "{text}"
        );
        assert!(text.contains("\nquicdesk_hosts_online 2\n"), "{text}");
        assert!(text.contains("quicdesk_refusals_total{reason=\"unavailable\"} 9\n"));
        assert!(text.contains("quicdesk_stun_requests_total{outcome=\"answered\"} 11\n"));
        assert!(text.contains("quicdesk_relay_forwarded_bytes_total 1234\n"));
        // Each sample's family was announced (HELP and TYPE) before it, once.
        let mut announced = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!announced.contains(&name.to_owned()), "{name} twice");
                announced.push(name.to_owned());
            } else if !line.starts_with("# HELP ") {
                let name = line.split(['{', ' ']).next().unwrap();
                assert_eq!(announced.last().map(String::as_str), Some(name), "{line}");
                let value = line.rsplit(' ').next().unwrap();
                assert!(value.parse::<u64>().is_ok(), "{line}");
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name}"
                );
            }
        }
        // Without a relay, no relay series.
        let no_relay = Snapshot { relay: None, ..s };
        assert!(!render(&no_relay, &stun, &logins).contains("quicdesk_relay"));
    }
}
