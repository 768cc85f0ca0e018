//! The operator's console and API as an attacker and as an operator meet them: a real server
//! with its console on HTTPS (self-signed from the server's key, which the client pins), driven
//! by a raw HTTP client that sends whatever headers, cookies and origins it likes, and by raw
//! QUIC hosts registering with the rendezvous.
//!
//! Longer than 600 lines on purpose: every test target links the whole server again, so the
//! console's suite stays one binary rather than two that would each cost a link and its disk.

use std::sync::atomic::Ordering;
use std::time::Duration;

use certs::Identity;
use proto::rendezvous::{ClientMsg, MAX_MSG_LEN, ServerMsg};
use proto::wire;

mod console_support;
use console_support::rig::{ANN, AUDREY, Host, OLGA, code_of, relayed_session, relays, start};
use console_support::{Session, log_in};

/// Every path the OpenAPI document names, with each method, answers a caller without a
/// session or key with 401 (but those it marks public); pages send it to the login page.
#[tokio::test]
async fn every_api_path_refuses_a_stranger() {
    let rig = start().await;
    let doc = rig.client.get("/api/openapi.json", &[]).await.json();
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let path = path
            .replace("{code}", "ISR-00000000")
            .replace("{name}", "ann")
            .replace("{id}", "0011223344");
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters"
                || op
                    .get("security")
                    .is_some_and(|s| s == &serde_json::json!([]))
            {
                continue;
            }
            let body = if method == "get" || method == "delete" {
                ""
            } else {
                "{}"
            };
            let a = rig
                .client
                .send(&method.to_uppercase(), &path, &[], body)
                .await;
            assert_eq!(a.status, 401, "{method} {path}: {}", a.body);
            checked += 1;
        }
    }
    assert!(checked >= 18, "only {checked} operations checked");
    // A forged or stale cookie is no better, nor is a made-up key.
    for cookie in ["__Host-qd_session=AAAA", "__Host-qd_session="] {
        let a = rig.client.get("/api/v1/hosts", &[("cookie", cookie)]).await;
        assert_eq!(a.status, 401, "{cookie}");
    }
    for key in [
        "Bearer qdk_0011223344_x",
        "Bearer nonsense",
        "Basic YW5uOnB3",
    ] {
        let a = rig
            .client
            .get("/api/v1/hosts", &[("authorization", key)])
            .await;
        assert_eq!(a.status, 401, "{key}");
    }
    for page in [
        "/",
        "/hosts",
        "/sessions",
        "/audit",
        "/users",
        "/keys",
        "/enroll",
        "/settings",
    ] {
        let a = rig.client.get(page, &[]).await;
        assert_eq!((a.status, a.header("location")), (303, "/login"), "{page}");
    }
    // What is public says nothing about hosts.
    let status = rig.client.get("/status", &[]).await;
    assert_eq!(status.status, 200);
    assert_eq!(status.json()["registered"], 0);
}

/// The session cookie is `Secure; HttpOnly; SameSite=Strict`, holds no user data, and dies at
/// logout on the server side (a copy of it is worthless afterwards).
#[tokio::test]
async fn a_session_cookie_is_locked_down_and_ends_at_logout() {
    let rig = start().await;
    let a = rig
        .client
        .send(
            "POST",
            "/api/v1/login",
            &[],
            &serde_json::json!({ "user": ANN.0, "password": ANN.1 }).to_string(),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let set = a.header("set-cookie").to_owned();
    for attr in [
        "__Host-qd_session=",
        "; Secure",
        "; HttpOnly",
        "; SameSite=Strict",
        "; Path=/",
    ] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("ann"), "{set}");
    let s = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    assert_eq!(
        rig.client.get("/api/v1/me", &s.reading()).await.json()["role"],
        "admin"
    );
    let out = rig
        .client
        .send("POST", "/api/v1/logout", &s.changing(), "")
        .await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(out.header("set-cookie").contains("Max-Age=0"));
    assert_eq!(rig.client.get("/api/v1/me", &s.reading()).await.status, 401);
}

/// A change needs the session's CSRF token and this console's origin: a page on another
/// site that makes the browser send the cookie gets nowhere, and neither does a guessed token.
#[tokio::test]
async fn changes_need_the_csrf_token_and_this_origin() {
    let rig = start().await;
    let s = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    let path = "/api/v1/hosts/ISR-00000000/ban";
    let cookie = ("cookie", s.cookie.as_str());
    let ours = format!("https://localhost:{}", rig.client.addr.port());
    let cases: [(&[(&str, &str)], u16); 5] = [
        (&[cookie], 403),
        (&[cookie, ("x-csrf-token", "guess")], 403),
        (
            &[cookie, ("x-csrf-token", &s.csrf[..s.csrf.len() - 1])],
            403,
        ),
        (
            &[
                cookie,
                ("x-csrf-token", &s.csrf),
                ("origin", "https://evil.example"),
            ],
            403,
        ),
        // Past every check: the host does not exist.
        (&[cookie, ("x-csrf-token", &s.csrf), ("origin", &ours)], 404),
    ];
    for (headers, want) in cases {
        let a = rig.client.send("POST", path, headers, "").await;
        assert_eq!(a.status, want, "{headers:?}: {}", a.body);
    }
    // Logging in from another site's page is refused too (login CSRF).
    let a = rig
        .client
        .send(
            "POST",
            "/api/v1/login",
            &[("origin", "https://evil.example")],
            &serde_json::json!({ "user": ANN.0, "password": ANN.1 }).to_string(),
        )
        .await;
    assert_eq!(a.status, 403);
}

/// Ten wrong passwords in a minute lock the user out: the eleventh attempt is refused even with
/// the right password, from any source; failures are counted and audited.
#[tokio::test]
async fn eleven_wrong_passwords_lock_out_even_the_right_one() {
    let rig = start().await;
    for i in 0..10 {
        let a = log_in(&rig.client, OLGA.0, "wrong password number x")
            .await
            .unwrap_err();
        assert_eq!(a.status, 401, "attempt {i}: {}", a.body);
        assert_eq!(a.json()["error"], "wrong user name or password");
    }
    let locked = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap_err();
    assert_eq!(locked.status, 429, "{}", locked.body);
    let retry: u64 = locked.header("retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(rig.logins.failures.load(Ordering::Relaxed), 10);
    assert_eq!(rig.logins.lockouts.load(Ordering::Relaxed), 1);
    // This source is locked out for every user now.
    assert_eq!(
        log_in(&rig.client, ANN.0, ANN.1).await.unwrap_err().status,
        429
    );
    // An unknown name fails like a wrong password (no hint which names exist).
    let rig2 = start().await;
    let unknown = log_in(&rig2.client, "mallory", "whatever password")
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.status, unknown.json()["error"].clone()),
        (401, "wrong user name or password".into())
    );
    let s = log_in(&rig2.client, ANN.0, ANN.1).await.unwrap();
    let audit = rig2
        .client
        .get("/api/v1/audit?search=login", &s.reading())
        .await
        .json();
    let actions: Vec<&str> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["login", "login.failed"], "{audit}");
}

/// Roles and key scopes: an auditor only reads, an operator changes hosts but not users, a
/// read key only reads, a revoked or forged key is nobody, and a key cannot make keys.
#[tokio::test]
async fn roles_and_key_scopes_limit_what_a_caller_may_change() {
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let rename = format!("/api/v1/hosts/{code}");
    let name = r#"{"name":"desk"}"#;
    let auditor = log_in(&rig.client, AUDREY.0, AUDREY.1).await.unwrap();
    let a = rig
        .client
        .send("PATCH", &rename, &auditor.changing(), name)
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        rig.client.get(&rename, &auditor.reading()).await.status,
        200
    );
    let operator = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap();
    let new_user = r#"{"name":"eve","role":"admin","password":"Sneaky-Admin-Pass-99"}"#;
    let a = rig
        .client
        .send("POST", "/api/v1/users", &operator.changing(), new_user)
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    assert_eq!(
        rig.client
            .send("PATCH", &rename, &operator.changing(), name)
            .await
            .status,
        200
    );
    // Keys: a read key of the operator, then a write key.
    let make = |s: &Session, scope: &str| {
        let (client, s, body) = (
            rig.client.clone(),
            s.clone(),
            format!(r#"{{"scope":"{scope}","label":"ci"}}"#),
        );
        async move {
            let a = client
                .send("POST", "/api/v1/keys", &s.changing(), &body)
                .await;
            assert_eq!(a.status, 201, "{}", a.body);
            let v = a.json();
            (
                v["id"].as_str().unwrap().to_owned(),
                v["key"].as_str().unwrap().to_owned(),
            )
        }
    };
    let (_, read_key) = make(&operator, "read").await;
    let (write_id, write_key) = make(&operator, "write").await;
    let bearer = |k: &str| format!("Bearer {k}");
    let (rk, wk) = (bearer(&read_key), bearer(&write_key));
    assert_eq!(
        rig.client
            .get("/api/v1/hosts", &[("authorization", &rk)])
            .await
            .status,
        200
    );
    let a = rig
        .client
        .send("PATCH", &rename, &[("authorization", &rk)], name)
        .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = rig
        .client
        .send(
            "PATCH",
            &rename,
            &[("authorization", &wk)],
            r#"{"name":"desk 2"}"#,
        )
        .await;
    assert_eq!(
        (a.status, a.json()["name"].clone()),
        (200, "desk 2".into()),
        "{}",
        a.body
    );
    // A key cannot make keys, nor can the operator's write key add users.
    let a = rig
        .client
        .send(
            "POST",
            "/api/v1/keys",
            &[("authorization", &wk)],
            r#"{"scope":"write"}"#,
        )
        .await;
    assert_eq!(a.status, 403);
    let a = rig
        .client
        .send("POST", "/api/v1/users", &[("authorization", &wk)], new_user)
        .await;
    assert_eq!(a.status, 403);
    // The right id with another secret is nobody.
    let forged = format!("Bearer qdk_{write_id}_{}", "A".repeat(43));
    assert_eq!(
        rig.client
            .get("/api/v1/hosts", &[("authorization", &forged)])
            .await
            .status,
        401
    );
    // Revoked: nobody.
    let a = rig
        .client
        .send(
            "DELETE",
            &format!("/api/v1/keys/{write_id}"),
            &operator.changing(),
            "",
        )
        .await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(
        rig.client
            .get("/api/v1/hosts", &[("authorization", &wk)])
            .await
            .status,
        401
    );
    // The admin adds a user; the new user logs in.
    let admin = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    let a = rig
        .client
        .send("POST", "/api/v1/users", &admin.changing(), new_user)
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
    let weak = r#"{"name":"weak","role":"auditor","password":"password"}"#;
    let a = rig
        .client
        .send("POST", "/api/v1/users", &admin.changing(), weak)
        .await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        log_in(&rig.client, "eve", "Sneaky-Admin-Pass-99")
            .await
            .is_ok()
    );
}

/// What an operator does with a host, seen live and audited: the host appears in an open event
/// stream when it registers, is renamed (a hostile name is shown as text), banned (its
/// registration ends and it cannot register again), unbanned and forgotten.
#[tokio::test]
async fn a_host_is_seen_live_renamed_banned_and_forgotten_and_all_of_it_audited() {
    let rig = start().await;
    let s = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap();
    let (status, mut events) = rig.client.stream("/api/v1/events", &s.reading()).await;
    assert_eq!(status, 200);
    let id = Identity::ephemeral().unwrap();
    let key_pem_host = Host::with_key(&rig, id).await;
    let (answer, _send, mut recv) = key_pem_host.register().await;
    let code = code_of(&answer);
    // The stream tells of the host within a few seconds (it also sends counts every 2 s).
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.contains(&format!("\"code\":\"{code}\"")) {
        let chunk = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("the host's event in time")
            .expect("the stream stays open");
        seen.push_str(&chunk);
    }
    assert!(seen.contains("event: host"), "{seen}");
    let path = format!("/api/v1/hosts/{code}");
    let hostile = r#"{"name":"<script>alert(1)</script>"}"#;
    let a = rig
        .client
        .send("PATCH", &path, &s.changing(), hostile)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let page = rig.client.get("/hosts", &s.reading()).await;
    assert!(!page.body.contains("<script>alert"), "{}", page.body);
    assert!(page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(
        page.header("content-security-policy")
            .contains("script-src 'self'")
    );
    // Search finds it by part of its name.
    let found = rig
        .client
        .get("/api/v1/hosts?search=ALERT", &s.reading())
        .await
        .json();
    assert_eq!(found["total"], 1, "{found}");
    // Ban: the registration's stream ends, and registering again is refused.
    let a = rig
        .client
        .send("POST", &format!("{path}/ban"), &s.changing(), "")
        .await;
    assert_eq!(
        (
            a.status,
            a.json()["banned"].clone(),
            a.json()["online"].clone()
        ),
        (200, true.into(), false.into())
    );
    let ended = tokio::time::timeout(
        Duration::from_secs(5),
        wire::read_msg::<ServerMsg, _>(&mut recv, MAX_MSG_LEN),
    )
    .await;
    assert!(matches!(ended, Ok(Ok(None)) | Ok(Err(_))), "{ended:?}");
    let (again, ..) = key_pem_host.register().await;
    assert!(
        matches!(&again, ServerMsg::Refused { message, .. } if message.contains("banned")),
        "{again:?}"
    );
    let a = rig
        .client
        .send("POST", &format!("{path}/unban"), &s.changing(), "")
        .await;
    assert_eq!(a.status, 200);
    let (again, _s2, _r2) = key_pem_host.register().await;
    assert_eq!(code_of(&again), code, "the same key gets its code back");
    let a = rig.client.send("DELETE", &path, &s.changing(), "").await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(rig.client.get(&path, &s.reading()).await.status, 404);
    let audit = rig
        .client
        .get("/api/v1/audit?search=host.", &s.reading())
        .await
        .json();
    let got: Vec<(String, String, String)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let f = |k: &str| r[k].as_str().unwrap().to_owned();
            (f("actor"), f("action"), f("target"))
        })
        .collect();
    let want: Vec<(String, String, String)> =
        ["host.forget", "host.unban", "host.ban", "host.rename"]
            .iter()
            .map(|a| ("olga".to_owned(), a.to_string(), code.to_string()))
            .collect();
    assert_eq!(got, want);
}

/// The ISR-style endpoints: `/status` public with counts only; `/info/{code}` and `/list`
/// only for a logged-in caller, with the registry's fields.
#[tokio::test]
async fn isr_read_endpoints_answer_in_their_shape() {
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let status = rig.client.get("/status", &[]).await.json();
    assert_eq!(
        (status["registered"].as_u64(), status["online"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(
        rig.client.get(&format!("/info/{code}"), &[]).await.status,
        401
    );
    let s = log_in(&rig.client, AUDREY.0, AUDREY.1).await.unwrap();
    let info = rig
        .client
        .get(&format!("/info/{code}"), &s.reading())
        .await
        .json();
    assert_eq!(info["id"], code.to_string());
    assert_eq!(info["online"], true);
    assert_eq!(info["fingerprint"].as_str().unwrap().len(), 64);
    let list = rig.client.get("/list", &s.reading()).await.json();
    assert_eq!(list["total"], 1);
    assert_eq!(list["hosts"][0]["id"], code.to_string());
    assert_eq!(
        rig.client
            .get("/info/ISR-00000000", &s.reading())
            .await
            .status,
        404
    );
    assert_eq!(
        rig.client
            .get("/info/not-a-code", &s.reading())
            .await
            .status,
        404
    );
}

/// Clients that open TCP connections and never finish (or never start) their TLS handshake do
/// not stop the console from serving others.
#[tokio::test]
async fn stalled_handshakes_do_not_hold_up_other_clients() {
    let rig = start().await;
    let mut stalled = Vec::new();
    for _ in 0..200 {
        stalled.push(
            tokio::net::TcpStream::connect(rig.client.addr)
                .await
                .unwrap(),
        );
    }
    let a = tokio::time::timeout(Duration::from_secs(5), rig.client.get("/status", &[]))
        .await
        .expect("served while 200 handshakes stall");
    assert_eq!(a.status, 200);
}

/// A relayed session shows live with who, which code and its bytes; an operator ends it (its
/// packets stop at once) and it moves to the past sessions with why; an auditor may not end one.
/// (Two workers: the test's blocking UDP sockets must not stall the relay's task.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_and_ends_a_relayed_session() {
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, mut pushes) = host.register().await;
    let code = code_of(&answer);
    let (hs, cs, h, c) = relayed_session(&rig, code, &mut pushes).await;
    assert!(relays(&cs, &hs, rig.relay, c.token));
    let s = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap();
    let list = rig
        .client
        .get("/api/v1/sessions", &s.reading())
        .await
        .json();
    let live = &list["live"][0];
    assert_eq!(live["code"], code.to_string(), "{list}");
    assert_eq!(live["path"], "relay");
    assert_eq!(
        live["controller_address"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("127.0.0.1")
    );
    assert!(live["bytes"].as_u64().unwrap() > 0, "{list}");
    let id = live["id"].as_str().unwrap().to_owned();
    let auditor = log_in(&rig.client, AUDREY.0, AUDREY.1).await.unwrap();
    let path = format!("/api/v1/sessions/{id}");
    assert_eq!(
        rig.client
            .send("DELETE", &path, &auditor.changing(), "")
            .await
            .status,
        403
    );
    assert!(relays(&cs, &hs, rig.relay, c.token), "still relaying");
    let a = rig.client.send("DELETE", &path, &s.changing(), "").await;
    assert_eq!(a.status, 204, "{}", a.body);
    assert!(
        !relays(&cs, &hs, rig.relay, c.token),
        "relayed after the end"
    );
    assert!(
        !relays(&hs, &cs, rig.relay, h.token),
        "relayed after the end"
    );
    assert_eq!(
        rig.client
            .send("DELETE", &path, &s.changing(), "")
            .await
            .status,
        404
    );
    let list = rig
        .client
        .get("/api/v1/sessions", &s.reading())
        .await
        .json();
    assert_eq!(list["live"], serde_json::json!([]), "{list}");
    let past = &list["past"][0];
    assert_eq!(
        (past["id"].as_str(), past["end_reason"].as_str()),
        (Some(id.as_str()), Some("ended by operator"))
    );
    assert!(past["bytes"].as_u64().unwrap() > 0);
    let audit = rig
        .client
        .get("/api/v1/audit?search=session", &s.reading())
        .await
        .json();
    assert_eq!(audit["records"][0]["action"], "session.end");
    assert_eq!(audit["records"][0]["target"], id);
    // The session's own start and end are there too, by the rendezvous, for its host's code.
    let by_server: Vec<(&str, &str)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "rendezvous")
        .map(|r| (r["action"].as_str().unwrap(), r["target"].as_str().unwrap()))
        .collect();
    let code = code.to_string();
    assert_eq!(
        by_server,
        [
            ("session.ended", code.as_str()),
            ("session.started", code.as_str())
        ],
        "{audit}"
    );
}

/// A user with a TOTP second factor logs in only with the current code: not without one, not
/// with a wrong or an old one, and not twice with the same one.
#[tokio::test]
async fn a_second_factor_is_needed_once_set() {
    let rig = start().await;
    let (uri, secret) = rendezvous::console::set_totp(&rig.dir, OLGA.0, true)
        .unwrap()
        .unwrap();
    assert!(
        uri.starts_with("otpauth://totp/quicdesk:olga?secret="),
        "{uri}"
    );
    let raw = totp_rs::Secret::Encoded(secret).to_bytes().unwrap();
    let totp = totp_rs::TOTP::new(totp_rs::Algorithm::SHA1, 6, 1, 30, raw).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let login = |code: Option<String>| {
        let client = rig.client.clone();
        async move {
            let body = serde_json::json!({ "user": OLGA.0, "password": OLGA.1, "totp": code });
            client
                .send("POST", "/api/v1/login", &[], &body.to_string())
                .await
                .status
        }
    };
    assert_eq!(login(None).await, 401);
    assert_eq!(login(Some("000000".into())).await, 401);
    assert_eq!(
        login(Some(totp.generate(now - 300))).await,
        401,
        "an old code"
    );
    let code = totp.generate(now);
    assert_eq!(login(Some(code.clone())).await, 200);
    // Seen once, a code opens nothing again (someone who read it over a shoulder).
    assert_eq!(login(Some(code)).await, 401, "a TOTP code was taken twice");
    let listed = rendezvous::console::list_users(&rig.dir).unwrap();
    assert!(listed.iter().any(|u| u.name == "olga" && u.totp));
}

fn refused_not_enrolled(answer: &ServerMsg) -> bool {
    matches!(
        answer,
        ServerMsg::Refused {
            reason: proto::rendezvous::Refusal::NotEnrolled,
            ..
        }
    )
}

/// An enrolled rendezvous as strangers meet it (raw QUIC): an unenrolled key cannot register;
/// made-up, forged, spent and revoked tokens enroll nobody; a token issued in the console
/// enrolls as many keys as it says, and an enrolled key registers; controllers need nothing.
#[tokio::test]
async fn an_enrolled_rendezvous_admits_only_keys_enrolled_with_a_console_token() {
    let rig = console_support::rig::start_access(rendezvous::core::AccessMode::Enrolled, 0).await;
    let s = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap();
    let stranger = Host::connect(&rig).await;
    assert!(refused_not_enrolled(&stranger.register().await.0));
    let made = rig
        .client
        .send(
            "POST",
            "/api/v1/enrollments",
            &s.changing(),
            r#"{"uses":1,"label":"desk","addresses":["rv.example.com:7700"]}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let made = made.json();
    let token = made["token"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(
        made["invite"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/{token}"))
    );
    // An auditor issues none.
    let auditor = log_in(&rig.client, AUDREY.0, AUDREY.1).await.unwrap();
    let a = rig
        .client
        .send("POST", "/api/v1/enrollments", &auditor.changing(), "{}")
        .await;
    assert_eq!(a.status, 403);
    // Guesses: no such id, the right id with another secret, garbage.
    let forged = format!("qde_{id}_{}", "0".repeat(64));
    for guess in ["qde_000000000000_x", forged.as_str(), "nonsense", ""] {
        assert!(
            refused_not_enrolled(&stranger.enroll(guess).await),
            "{guess}"
        );
    }
    assert!(refused_not_enrolled(&stranger.register().await.0));
    // The real token: one use.
    let member = Host::connect(&rig).await;
    assert_eq!(member.enroll(&token).await, ServerMsg::Enrolled);
    let (answer, _send, _recv) = member.register().await;
    let code = code_of(&answer);
    let second = Host::connect(&rig).await;
    assert!(
        refused_not_enrolled(&second.enroll(&token).await),
        "a spent token enrolled"
    );
    // A controller needs no enrollment here: its look-up goes through.
    assert!(matches!(
        second.resolve(code).await,
        ServerMsg::Resolved { .. }
    ));
    // A revoked token enrolls nobody.
    let made = rig
        .client
        .send("POST", "/api/v1/enrollments", &s.changing(), "{}")
        .await
        .json();
    let (token2, id2) = (
        made["token"].as_str().unwrap().to_owned(),
        made["id"].as_str().unwrap().to_owned(),
    );
    let a = rig
        .client
        .send(
            "DELETE",
            &format!("/api/v1/enrollments/{id2}"),
            &s.changing(),
            "",
        )
        .await;
    assert_eq!(a.status, 204);
    assert!(refused_not_enrolled(&second.enroll(&token2).await));
    let listed = rig
        .client
        .get("/api/v1/enrollments", &s.reading())
        .await
        .json();
    assert_eq!(listed["access"], "enrolled");
    assert!(
        !listed.to_string().contains(&token),
        "a token's secret is listed"
    );
    let audit = rig
        .client
        .get("/api/v1/audit?search=enrollment", &s.reading())
        .await
        .json();
    assert_eq!(audit["records"].as_array().unwrap().len(), 3, "{audit}");
}

/// A closed rendezvous: controllers need an enrolled key to look codes up; relayed sessions are
/// capped per account (the controller's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_rendezvous_needs_enrolled_controllers_and_caps_relaying_per_account() {
    let rig = console_support::rig::start_access(rendezvous::core::AccessMode::Closed, 1).await;
    let s = log_in(&rig.client, OLGA.0, OLGA.1).await.unwrap();
    let made = rig
        .client
        .send(
            "POST",
            "/api/v1/enrollments",
            &s.changing(),
            r#"{"uses":3}"#,
        )
        .await
        .json();
    let token = made["token"].as_str().unwrap().to_owned();
    let host = Host::connect(&rig).await;
    assert_eq!(host.enroll(&token).await, ServerMsg::Enrolled);
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let stranger = Host::connect(&rig).await;
    assert!(refused_not_enrolled(&stranger.resolve(code).await));
    let controller = Host::connect(&rig).await;
    assert_eq!(controller.enroll(&token).await, ServerMsg::Enrolled);
    assert!(matches!(
        controller.resolve(code).await,
        ServerMsg::Resolved { .. }
    ));
    // The account (olga's) holds its one relayed session: the next look-up is refused.
    let again = controller.resolve(code).await;
    assert!(
        matches!(&again, ServerMsg::Refused { reason: proto::rendezvous::Refusal::Busy, message } if message.contains("account")),
        "{again:?}"
    );
}

/// What a host reports of itself (version, NAT mapping) shows in the console while it is online;
/// a version that is not short printable text shows as "?".
#[tokio::test]
async fn a_hosts_report_shows_its_version_and_nat_mapping() {
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let s = log_in(&rig.client, AUDREY.0, AUDREY.1).await.unwrap();
    let path = format!("/api/v1/hosts/{code}");
    let before = rig.client.get(&path, &s.reading()).await.json();
    assert_eq!(
        (before["version"].clone(), before["nat_mapping"].clone()),
        (serde_json::Value::Null, serde_json::Value::Null)
    );
    let report = |version: &str| ClientMsg::Report {
        version: version.to_owned(),
        mapping: proto::session::Mapping::EndpointDependent,
    };
    assert_eq!(host.ask(&report("0.1.0")).await.0, ServerMsg::Noted);
    let after = rig.client.get(&path, &s.reading()).await.json();
    assert_eq!(after["version"], "0.1.0");
    assert_eq!(after["nat_mapping"], "endpoint-dependent");
    assert_eq!(
        host.ask(&report("\u{1b}[2J<b>evil</b>")).await.0,
        ServerMsg::Noted
    );
    assert_eq!(
        rig.client.get(&path, &s.reading()).await.json()["version"],
        "?"
    );
    // A key with no registration reports into nothing.
    let stranger = Host::connect(&rig).await;
    assert_eq!(stranger.ask(&report("9.9.9")).await.0, ServerMsg::Noted);
}

/// A host whose connection moved (a network change, a NAT that rebound) is shown, and looked
/// up, at its new address: the rendezvous reads the connection's address where it is used.
#[tokio::test]
async fn a_host_that_moved_is_shown_at_its_new_address() {
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let s = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    let path = format!("/api/v1/hosts/{code}");
    let shown = rig.client.get(&path, &s.reading()).await.json();
    assert_eq!(shown["address"], host.local_addr().to_string());

    host.rebind("127.0.0.2");
    let moved_to = host.local_addr().to_string();
    assert!(moved_to.starts_with("127.0.0.2:"));
    // QUIC validates the new path before it counts as the connection's address; the host's
    // next packet starts that (a report: a request the rendezvous handles without looking at
    // the host's address, so what follows the move here is the console's read).
    let report = ClientMsg::Report {
        version: "moved".into(),
        mapping: proto::session::Mapping::Unknown,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let _ = host.ask(&report).await;
        let shown = rig.client.get(&path, &s.reading()).await.json();
        if shown["address"] == moved_to.as_str() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still shown at {} after the move to {moved_to}",
            shown["address"]
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = rig.client.get("/api/v1/hosts", &s.reading()).await.json();
    let row = page["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["code"] == code.to_string())
        .cloned()
        .unwrap();
    assert_eq!(row["address"], moved_to.as_str());
}
