//! The console in a real browser: Debian's Chromium, headless, driven over WebDriver
//! (chromedriver), against a running rendezvous with live hosts and a relayed session.
//!
//! The browser trusts the console's self-signed certificate by its key only
//! (`--ignore-certificate-errors-spki-list` with the SHA-256 of the server's public key, the
//! rendezvous fingerprint): a certificate with any other key is still refused. Run as root (as
//! CI does), Chromium needs `--no-sandbox`; the page it visits is this test's own console.
//! Chromium and chromedriver come from `cargo xtask setup`; without them the test fails saying so.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

mod console_support;
use console_support::rig::{ANN, Host, Rig, code_of, relayed_session, relays, start};

/// How long an element may take to appear (generous: two browsers and argon2 share two cores).
const WAIT: Duration = Duration::from_secs(30);

struct Browser {
    client: fantoccini::Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn browser(rig: &Rig) -> Browser {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run `cargo xtask setup` (it installs chromium and chromium-driver)"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let deadline = std::time::Instant::now() + WAIT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let profile = tempfile::tempdir().unwrap();
    let spki = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(rig.fingerprint.as_bytes())
    };
    let mut args = vec![
        "--headless=new".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--window-size=1280,900".to_owned(),
        format!("--user-data-dir={}", profile.path().display()),
        format!("--ignore-certificate-errors-spki-list={spki}"),
    ];
    if is_root() {
        args.push("--no-sandbox".to_owned());
    }
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": "/usr/bin/chromium", "args": args },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session with Chromium");
    Browser {
        client,
        driver,
        _profile: profile,
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|u| u.split_whitespace().next() == Some("0"))
        })
        .unwrap_or(false)
}

fn url(rig: &Rig, path: &str) -> String {
    format!("https://localhost:{}{path}", rig.client.addr.port())
}

async fn log_in(b: &fantoccini::Client, rig: &Rig, user: &str, password: &str) {
    b.goto(&url(rig, "/login")).await.unwrap();
    b.find(Locator::Id("user"))
        .await
        .unwrap()
        .send_keys(user)
        .await
        .unwrap();
    b.find(Locator::Id("password"))
        .await
        .unwrap()
        .send_keys(password)
        .await
        .unwrap();
    b.find(Locator::Id("login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    match b.wait().at_most(WAIT).for_element(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => {
            let at = b
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let page = b.source().await.unwrap_or_default();
            panic!("{css}: {e}\nat {at}:\n{page}");
        }
    }
}

/// Waits until `css` matches nothing.
async fn gone(b: &fantoccini::Client, css: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !b.find_all(Locator::Css(css)).await.unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "{css} still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Log in, watch a host come online without reloading, rename it, end a relayed session,
/// find both in the audit log, log out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_console_in_a_real_browser() {
    let rig = start().await;
    let browser = browser(&rig).await;
    let b = &browser.client;
    log_in(b, &rig, ANN.0, ANN.1).await;
    assert_eq!(text_of(b, "#stat-hosts_online").await, "0");
    // A mark the page keeps only if it is never reloaded.
    b.execute("window.stayedOpen = 'yes'; return 1;", vec![])
        .await
        .unwrap();
    let host = Host::connect(&rig).await;
    let (answer, _send, mut pushes) = host.register().await;
    let code = code_of(&answer);
    let row = format!("#hosts tr[data-code='{code}'] td[data-field='state']");
    assert_eq!(text_of(b, &row).await, "online");
    let kept = b
        .execute("return window.stayedOpen || 'reloaded';", vec![])
        .await
        .unwrap();
    assert_eq!(kept, "yes", "the page was reloaded");
    // The counter follows within the stats period.
    let deadline = tokio::time::Instant::now() + WAIT;
    while text_of(b, "#stat-hosts_online").await != "1" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the counter did not follow"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Rename it on the hosts page.
    b.goto(&url(&rig, "/hosts")).await.unwrap();
    let input = b
        .find(Locator::Css(&format!(
            "tr[data-code='{code}'] input[name='name']"
        )))
        .await
        .unwrap();
    input.send_keys("Reception PC").await.unwrap();
    b.find(Locator::Css(&format!("tr[data-code='{code}'] form button")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let name = format!("tr[data-code='{code}'] td[data-field='name']");
    let deadline = tokio::time::Instant::now() + WAIT;
    while text_of(b, &name).await != "Reception PC" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the name did not change"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A relayed session, ended from the sessions page.
    let (hs, cs, _, c) = relayed_session(&rig, code, &mut pushes).await;
    assert!(relays(&cs, &hs, rig.relay, c.token));
    b.goto(&url(&rig, "/sessions")).await.unwrap();
    assert_eq!(
        text_of(b, "#live-sessions tr td:first-child").await,
        code.to_string()
    );
    b.find(Locator::Css("#live-sessions button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.accept_alert().await.expect("the confirmation dialog");
    gone(b, "#live-sessions tbody tr").await;
    assert!(
        !relays(&cs, &hs, rig.relay, c.token),
        "relayed after the end"
    );
    assert_eq!(
        text_of(b, "#past-sessions tbody tr td:last-child").await,
        "ended by operator"
    );

    // Both in the audit log.
    b.goto(&url(&rig, "/audit")).await.unwrap();
    let log = text_of(b, "#audit").await;
    assert!(
        log.contains("host.rename") && log.contains("Reception PC"),
        "{log}"
    );
    assert!(log.contains("session.end"), "{log}");

    // Issue an enrollment token: the invite that carries it is shown once.
    b.goto(&url(&rig, "/enroll")).await.unwrap();
    b.find(Locator::Css("#new-token input[name='label']"))
        .await
        .unwrap()
        .send_keys("front desk")
        .await
        .unwrap();
    b.find(Locator::Css("#new-token input[name='addresses']"))
        .await
        .unwrap()
        .send_keys("rv.example.com:7700")
        .await
        .unwrap();
    b.find(Locator::Css("#new-token button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let shown = {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let t = text_of(b, "#new-token output").await;
            if !t.is_empty() || tokio::time::Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let invite = shown
        .strip_prefix("Invite (shown once): ")
        .unwrap_or_else(|| panic!("{shown}"));
    let invite: proto::invite::Invite = invite.parse().expect("the invite shown parses");
    assert_eq!(invite.addresses, ["rv.example.com:7700"]);
    assert_eq!(invite.fingerprint, rig.fingerprint);
    assert!(invite.token.is_some());

    // Log out: back at the login page, and the console is closed to this browser.
    b.find(Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.wait()
        .at_most(WAIT)
        .for_element(Locator::Id("login"))
        .await
        .unwrap();
    b.goto(&url(&rig, "/")).await.unwrap();
    b.wait()
        .at_most(WAIT)
        .for_element(Locator::Id("login"))
        .await
        .unwrap();
    assert!(b.current_url().await.unwrap().path() == "/login");
    drop(browser);
}

/// Eleven wrong passwords typed into the login form lock the user out: the form then refuses
/// even the right password, saying for how long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eleven_wrong_passwords_in_the_login_form_lock_out() {
    let rig = start().await;
    let browser = browser(&rig).await;
    let b = &browser.client;
    for i in 0..11 {
        log_in(b, &rig, ANN.0, "not the password at all").await;
        let said = text_of(b, "#login-error").await;
        if i < 10 {
            assert_eq!(said, "wrong user name or password", "attempt {i}");
        } else {
            assert!(
                said.starts_with("Too many failed logins"),
                "attempt {i}: {said}"
            );
        }
    }
    log_in(b, &rig, ANN.0, ANN.1).await;
    let said = text_of(b, "#login-error").await;
    assert!(said.starts_with("Too many failed logins"), "{said}");
    drop(browser);
}
