//! The console's pages: server-rendered HTML (maud escapes everything interpolated), one
//! stylesheet and one script served from the binary, and the security headers every answer
//! carries (a strict Content-Security-Policy: no inline script, no framing).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;

use super::accounts::{self, Role};
use super::api::HostJson;
use super::auth::Caller;
use super::{ApiError, Console, audit};
use crate::core::HostQuery;

const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/login", get(super::login::form).post(super::login::submit))
        .route("/hosts", get(hosts))
        .route("/audit", get(audit_log))
        .route("/sessions", get(sessions_page))
        .route("/users", get(users))
        .route("/keys", get(keys))
        .route("/enroll", get(enroll_page))
        .route("/settings", get(settings))
        .route(
            "/static/console.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route(
            "/static/console.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
}

/// The headers every answer carries.
pub(super) async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    for (k, v) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Not no-referrer: with it browsers send `Origin: null` on same-origin form posts,
        // which the origin check must refuse.
        (header::REFERRER_POLICY, "same-origin"),
        (header::CACHE_CONTROL, "no-store"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
    ] {
        h.insert(k, HeaderValue::from_static(v));
    }
    r
}

/// A page for a logged-in caller, else a redirect to the login page.
type Page = Result<Html<String>, Response>;

fn need_login(e: ApiError) -> Response {
    match e {
        ApiError::Unauthorized => Redirect::to("/login").into_response(),
        e => e.into_response(),
    }
}

fn layout(caller: &Caller, title: &str, live: bool, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="csrf" content=(caller.csrf.as_deref().unwrap_or(""));
                    title { (title) " · quicdesk rendezvous" }
                    link rel="stylesheet" href="/static/console.css";
                    script src="/static/console.js" defer {}
                }
                body data-live=(live) {
                    header {
                        b { "quicdesk rendezvous" }
                        a href="/" { "Dashboard" }
                        a href="/hosts" { "Hosts" }
                        a href="/sessions" { "Sessions" }
                        a href="/audit" { "Audit log" }
                        a href="/users" { "Users" }
                        a href="/keys" { "API keys" }
                        a href="/enroll" { "Enrollment" }
                        a href="/settings" { "Settings" }
                        span class="who" {
                            (caller.user) " (" (caller.role) ") "
                            button id="logout" data-url="/api/v1/logout" data-then="/login" { "Log out" }
                        }
                    }
                    main {
                        h1 { (title) }
                        output id="message" {}
                        (body)
                    }
                }
            }
        }
        .into_string(),
    )
}

fn when(unix: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix))
        .to_string()
}

fn host_table(hosts: &[HostJson], live: bool, online_only: bool, actions: bool) -> Markup {
    html! {
        table id="hosts" data-live=(live) data-online-only=(online_only) {
            thead { tr {
                th { "Code" } th { "Name" } th { "State" } th { "Address" } th { "Last seen" }
                th { "Key" } th { "Version" } th { "NAT" }
                @if actions { th { "Actions" } }
            } }
            tbody {
                @for h in hosts {
                    tr data-code=(h.code) class=(if h.online { "online" } else { "offline" }) {
                        td data-field="code" { (h.code) }
                        td data-field="name" { (h.name.as_deref().unwrap_or("")) }
                        td data-field="state" {
                            (if h.banned { "banned" } else if h.online { "online" } else { "offline" })
                        }
                        td data-field="address" { (h.address.as_deref().unwrap_or("")) }
                        td data-field="last_seen" { (when(h.last_seen)) }
                        td data-field="key" title=(h.key) { (&h.key[..16]) "…" }
                        td data-field="version" { (h.version.as_deref().unwrap_or("")) }
                        td data-field="nat" { (h.nat_mapping.as_deref().unwrap_or("")) }
                        @if actions {
                            td {
                                form class="inline" data-url=(format!("/api/v1/hosts/{}", h.code)) data-method="PATCH" {
                                    input name="name" value=(h.name.as_deref().unwrap_or("")) placeholder="name" size="14";
                                    button { "Rename" }
                                    output {}
                                }
                                @if h.banned {
                                    button data-url=(format!("/api/v1/hosts/{}/unban", h.code)) { "Unban" }
                                } @else {
                                    button data-url=(format!("/api/v1/hosts/{}/ban", h.code))
                                        data-confirm=(format!("Ban {}? It goes offline and cannot register again.", h.code)) { "Ban" }
                                }
                                button data-url=(format!("/api/v1/hosts/{}", h.code)) data-method="DELETE"
                                    data-confirm=(format!("Forget {}? Its code is quarantined.", h.code)) { "Forget" }
                            }
                        }
                    }
                }
            }
        }
    }
}

async fn dashboard(State(console): State<Arc<Console>>, caller: Result<Caller, ApiError>) -> Page {
    let caller = caller.map_err(need_login)?;
    let s = super::api::stats_json(&console);
    let stat = |id: &str, label: &str| {
        html! { div class="stat" { b id=(format!("stat-{id}")) { (s[id]) } (label) } }
    };
    let page = console.admin.hosts(&HostQuery {
        online: Some(true),
        limit: 100,
        ..HostQuery::default()
    });
    let rows: Vec<HostJson> = page.hosts.iter().map(HostJson::from).collect();
    Ok(layout(
        &caller,
        "Dashboard",
        true,
        html! {
            div class="stats" {
                (stat("hosts_online", "hosts online"))
                (stat("hosts_known", "hosts known"))
                (stat("connections", "connections"))
                (stat("relay_sessions_active", "relayed sessions"))
                (stat("relay_bytes_forwarded", "bytes relayed"))
                (stat("stun_answered", "STUN answers"))
                (stat("resolves", "look-ups"))
                (stat("refusals", "refusals"))
            }
            h2 { "Live sessions" }
            (live_sessions_table(&console, false))
            h2 { "Online hosts" }
            (host_table(&rows, true, true, false))
            @if page.total > rows.len() {
                p { a href="/hosts?online=true" { "All " (page.total) " online hosts" } }
            }
        },
    ))
}

fn live_sessions_table(console: &Console, actions: bool) -> Markup {
    let live = console.admin.live_sessions();
    html! {
        table id="live-sessions" data-actions=(actions) {
            thead { tr {
                th { "Host" } th { "Controller" } th { "From" } th { "Path" } th { "Started" }
                th { "Bytes relayed" } th { "Idle (s)" } @if actions { th {} }
            } }
            tbody {
                @for (r, v) in &live {
                    @let s = super::sessions::live_json(r, v);
                    tr data-session=(s.id) {
                        td { (s.code) } td title=(s.controller_key) { (&s.controller_key[..16]) "…" }
                        td { (s.controller_address) } td { (s.path) } td { (when(s.started)) }
                        td { (s.bytes) } td { (s.idle_s.unwrap_or(0)) }
                        @if actions {
                            td { button data-url=(format!("/api/v1/sessions/{}", s.id)) data-method="DELETE"
                                data-confirm=(format!("End the session with {}? The relay drops its packets from now on.", s.code)) { "End" } }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct SessionsParams {
    before: Option<u64>,
}

async fn sessions_page(
    State(console): State<Arc<Console>>,
    caller: Result<Caller, ApiError>,
    Query(p): Query<SessionsParams>,
) -> Page {
    let caller = caller.map_err(need_login)?;
    let past = console
        .db
        .call(move |db| super::sessions::past(db, p.before, 100))
        .await
        .and_then(|r| r.map_err(ApiError::from))
        .map_err(IntoResponse::into_response)?;
    let next = (past.len() == 100)
        .then(|| past.last().map(|s| s.started))
        .flatten();
    let actions = caller.role.may_change_hosts();
    Ok(layout(
        &caller,
        "Sessions",
        true,
        html! {
            p { "A session is a look-up the rendezvous brokered. It is live while the relay carries it; peers that moved to a direct path stop using the relay, and their relayed session ends after the relay's idle time." }
            h2 { "Live" }
            (live_sessions_table(&console, actions))
            h2 { "Past" }
            table id="past-sessions" {
                thead { tr { th { "Host" } th { "Controller" } th { "From" } th { "Path" } th { "Started" } th { "Ended" } th { "Bytes relayed" } th { "Why" } } }
                tbody {
                    @for s in &past {
                        tr data-session=(s.id) {
                            td { (s.code) } td title=(s.controller_key) { (&s.controller_key[..16]) "…" }
                            td { (s.controller_address) } td { (s.path) } td { (when(s.started)) }
                            td { (s.ended.map(when).unwrap_or_default()) } td { (s.bytes) }
                            td { (s.end_reason.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
            @if let Some(n) = next { p { a href=(format!("/sessions?before={n}")) { "Older" } } }
        },
    ))
}

#[derive(Debug, Deserialize)]
struct HostsParams {
    search: Option<String>,
    online: Option<bool>,
    after: Option<String>,
}

async fn hosts(
    State(console): State<Arc<Console>>,
    caller: Result<Caller, ApiError>,
    Query(p): Query<HostsParams>,
) -> Page {
    let caller = caller.map_err(need_login)?;
    let q = HostQuery {
        search: p.search.clone().filter(|s| !s.trim().is_empty()),
        online: p.online,
        after: p.after.as_deref().and_then(|a| a.parse().ok()),
        limit: 100,
    };
    let page = console.admin.hosts(&q);
    let rows: Vec<HostJson> = page.hosts.iter().map(HostJson::from).collect();
    let actions = caller.role.may_change_hosts();
    let search = p.search.unwrap_or_default();
    Ok(layout(
        &caller,
        "Hosts",
        true,
        html! {
            form method="get" action="/hosts" {
                input name="search" value=(search) placeholder="code, name or key";
                button { "Search" }
                " " (page.total) " found"
            }
            (host_table(&rows, false, false, actions))
            @if let Some(next) = page.next {
                p { a href=(format!("/hosts?search={}&after={next}", urlencode(&search))) { "Next page" } }
            }
        },
    ))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct AuditParams {
    before: Option<i64>,
    search: Option<String>,
}

async fn audit_log(
    State(console): State<Arc<Console>>,
    caller: Result<Caller, ApiError>,
    Query(p): Query<AuditParams>,
) -> Page {
    let caller = caller.map_err(need_login)?;
    let search = p.search.clone().filter(|s| !s.is_empty());
    let records = console
        .db
        .call(move |db| audit::page(db, p.before, search.as_deref(), 100))
        .await
        .and_then(|r| r.map_err(ApiError::from))
        .map_err(IntoResponse::into_response)?;
    let next = (records.len() == 100)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    Ok(layout(
        &caller,
        "Audit log",
        false,
        html! {
            form method="get" action="/audit" {
                input name="search" value=(p.search.as_deref().unwrap_or("")) placeholder="action, actor or target";
                button { "Search" }
            }
            table id="audit" {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "On" } th { "Detail" } } }
                tbody {
                    @for r in &records {
                        tr { td { (when(r.at)) } td { (r.actor) } td { (r.action) } td { (r.target) } td { (r.detail) } }
                    }
                }
            }
            @if let Some(n) = next { p { a href=(format!("/audit?before={n}")) { "Older" } } }
        },
    ))
}

async fn users(State(console): State<Arc<Console>>, caller: Result<Caller, ApiError>) -> Page {
    let caller = caller.map_err(need_login)?;
    let users = console
        .db
        .call(accounts::users)
        .await
        .and_then(|r| r.map_err(ApiError::from))
        .map_err(IntoResponse::into_response)?;
    let admin = caller.role.may_administer();
    Ok(layout(
        &caller,
        "Users",
        false,
        html! {
            table id="users" {
                thead { tr { th { "Name" } th { "Role" } th { "TOTP" } th { "Since" } @if admin { th {} } } }
                tbody {
                    @for u in &users {
                        tr {
                            td { (u.name) } td { (u.role) } td { (if u.totp { "yes" } else { "no" }) }
                            td { (when(u.created)) }
                            @if admin {
                                td { button data-url=(format!("/api/v1/users/{}", u.name)) data-method="DELETE"
                                    data-confirm=(format!("Remove user {}?", u.name)) { "Remove" } }
                            }
                        }
                    }
                }
            }
            @if admin {
                h2 { "Add a user" }
                form data-url="/api/v1/users" data-method="POST" {
                    input name="name" placeholder="name" required;
                    select name="role" {
                        option value=(Role::Auditor) { "auditor" }
                        option value=(Role::Operator) { "operator" }
                        option value=(Role::Admin) { "admin" }
                    }
                    input name="password" type="password" placeholder="password (12+ characters)" required autocomplete="new-password";
                    button { "Add" }
                    output {}
                }
            }
        },
    ))
}

async fn keys(State(console): State<Arc<Console>>, caller: Result<Caller, ApiError>) -> Page {
    let caller = caller.map_err(need_login)?;
    let all = console
        .db
        .call(accounts::api_keys)
        .await
        .and_then(|r| r.map_err(ApiError::from))
        .map_err(IntoResponse::into_response)?;
    let mine = |k: &accounts::ApiKey| caller.role.may_administer() || k.user == caller.user;
    Ok(layout(
        &caller,
        "API keys",
        false,
        html! {
            p { "Use a key as " code { "Authorization: Bearer qdk_…" } ". A read key only reads; a write key may do what its user's role may." }
            table id="keys" {
                thead { tr { th { "Id" } th { "User" } th { "Scope" } th { "Label" } th { "Made" } th { "State" } th {} } }
                tbody {
                    @for k in all.iter().filter(|k| mine(k)) {
                        tr {
                            td { code { (k.id) } } td { (k.user) } td { (format!("{:?}", k.scope).to_lowercase()) }
                            td { (k.label) } td { (when(k.created)) }
                            td { (if k.revoked { "revoked" } else { "live" }) }
                            td { @if !k.revoked {
                                button data-url=(format!("/api/v1/keys/{}", k.id)) data-method="DELETE" { "Revoke" }
                            } }
                        }
                    }
                }
            }
            h2 { "Make a key" }
            form data-url="/api/v1/keys" data-method="POST" {
                select name="scope" { option value="read" { "read" } option value="write" { "write" } }
                input name="label" placeholder="label";
                button { "Make" }
                output {}
            }
        },
    ))
}

async fn enroll_page(
    State(console): State<Arc<Console>>,
    caller: Result<Caller, ApiError>,
) -> Page {
    let caller = caller.map_err(need_login)?;
    let tokens = console.admin.tokens();
    let mode = console.admin.access_mode();
    let may = caller.role.may_change_hosts();
    Ok(layout(
        &caller,
        "Enrollment",
        false,
        html! {
            p { "Access mode: " b id="access-mode" { (mode) } ". "
                (match mode {
                    crate::core::AccessMode::Open => "Any key may register and connect; tokens are not needed (start the server with --access enrolled or closed to require them).",
                    crate::core::AccessMode::Enrolled => "Hosts register only with a key enrolled by a token; any controller may connect (the host's password decides).",
                    crate::core::AccessMode::Closed => "Hosts and controllers need keys enrolled by a token.",
                })
            }
            p { "A token goes to a user inside an invite (" code { "peer join INVITE" } "); each machine takes two uses (its host and controller keys). It is a secret: hand it over like a password." }
            table id="tokens" {
                thead { tr { th { "Id" } th { "Account" } th { "Label" } th { "Uses left" } th { "Expires" } th { "State" } @if may { th {} } } }
                tbody {
                    @for t in &tokens {
                        tr data-token=(t.id) {
                            td { code { (t.id) } } td { (t.account) } td { (t.label) } td { (t.uses_left) }
                            td { (when(t.expires)) }
                            td { (if t.revoked { "revoked" } else if t.uses_left == 0 { "used up" } else { "live" }) }
                            @if may { td { @if !t.revoked {
                                button data-url=(format!("/api/v1/enrollments/{}", t.id)) data-method="DELETE" { "Revoke" }
                            } } }
                        }
                    }
                }
            }
            @if may {
                h2 { "Issue a token" }
                form id="new-token" data-url="/api/v1/enrollments" data-method="POST" data-numbers="uses expires_in" data-lists="addresses" {
                    input name="label" placeholder="label (who it is for)";
                    input name="uses" type="number" min="1" max="10000" value="2" title="uses";
                    select name="expires_in" {
                        option value="86400" { "1 day" }
                        option value="604800" selected { "7 days" }
                        option value="2592000" { "30 days" }
                    }
                    input name="addresses" placeholder="rendezvous address(es), host:port, comma-separated" size="40";
                    button { "Issue" }
                    output {}
                }
            }
        },
    ))
}

async fn settings(State(console): State<Arc<Console>>, caller: Result<Caller, ApiError>) -> Page {
    let caller = caller.map_err(need_login)?;
    let s = console.admin.counts();
    Ok(layout(
        &caller,
        "Settings",
        false,
        html! {
            p { "Settings are read from the command line, the environment and the configuration file; "
                code { "rendezvous check-config" } " prints them. Change them there and restart." }
            table {
                tr { th { "Version" } td { (env!("CARGO_PKG_VERSION")) } }
                tr { th { "Server key fingerprint" } td { code { (console.server_fingerprint) } } }
                tr { th { "Relay" } td { (if s.relay.is_some() { "on" } else { "off" }) } }
                tr { th { "Console TLS names" } td { (console.names.join(", ")) } }
                tr { th { "Up for" } td { (humantime::format_duration(std::time::Duration::from_secs(console.started.elapsed().as_secs()))) } }
            }
        },
    ))
}
