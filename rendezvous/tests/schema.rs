//! The API against its own OpenAPI document, by a tool nobody here wrote: schemathesis
//! generates requests from `/api/openapi.json` (valid and invalid ones, in sequences that
//! follow the data) against a running rendezvous with a live host and a relayed session, and
//! checks every answer: no 5xx, status codes and bodies as documented, invalid input refused,
//! valid input accepted.
//!
//! schemathesis runs from a virtualenv that `cargo xtask setup` makes in the cache directory
//! (`~/.cache/quicdesk/schemathesis-VERSION`); without it the test fails saying so.

use std::path::PathBuf;
use std::process::Command;

mod console_support;
use console_support::log_in;
use console_support::rig::{ANN, Host, code_of, start};

/// The version `cargo xtask setup` installs.
const SCHEMATHESIS: &str = "4.32.5";

fn schemathesis() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|x| !x.is_empty())
        .map(|x| PathBuf::from(x).join("quicdesk"))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/quicdesk")
        });
    let bin = cache.join(format!("schemathesis-{SCHEMATHESIS}/bin/schemathesis"));
    assert!(
        bin.exists(),
        "{} is missing: run `cargo xtask setup` (it installs schemathesis into a virtualenv)",
        bin.display()
    );
    bin
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_to_its_openapi_document() {
    let bin = schemathesis();
    let rig = start().await;
    let host = Host::connect(&rig).await;
    let (answer, _send, _recv) = host.register().await;
    let code = code_of(&answer);
    let s = log_in(&rig.client, ANN.0, ANN.1).await.unwrap();
    let made = rig
        .client
        .send(
            "POST",
            "/api/v1/keys",
            &s.changing(),
            r#"{"scope":"write","label":"schemathesis"}"#,
        )
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    let key = made.json()["key"].as_str().unwrap().to_owned();
    let work = tempfile::tempdir().unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::copy(rig.dir.join(rendezvous::console::SELF_SIGNED_PEM), &ca).unwrap();
    // Two rules are more than a schema can say, so those operations' "valid input accepted"
    // check is off: a user's password strength (an estimate; weak ones get 400) and an
    // invite's host:port addresses (an IPv6 literal's validity). Real identifiers let the
    // generated requests reach past 404.
    let config = work.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        format!(
            "[[operations]]\ninclude-name = \"POST /api/v1/users\"\n\
             checks.positive_data_acceptance.enabled = false\n\n\
             [[operations]]\ninclude-name = \"POST /api/v1/enrollments\"\n\
             checks.positive_data_acceptance.enabled = false\n\n\
             [parameters]\ncode = \"{code}\"\n"
        ),
    )
    .unwrap();
    let url = format!(
        "https://localhost:{}/api/openapi.json",
        rig.client.addr.port()
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(url)
            .arg("--tls-verify")
            .arg(&ca)
            .args(["-H", &format!("Authorization: Bearer {key}")])
            // The event stream never ends; logging out and revoking keys would end the run's
            // own credential.
            .args([
                "--exclude-path-regex",
                r"^/api/v1/(events|logout|keys/\{id\})$",
            ])
            .args(["--generation-with-security-parameters", "false"])
            .args(["--max-examples", "40", "--workers", "1", "--seed", "7"])
            .current_dir(work.path())
            .output()
            .expect("running schemathesis")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation of the document but the three left out was tested.
    let doc = rig.client.get("/api/openapi.json", &[]).await.json();
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|item| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "parameters")
                .count()
        })
        .sum();
    assert!(
        text.contains(&format!("Tested: {}", operations - 3)),
        "{operations}: {text}"
    );
    assert!(!text.contains("Authentication failed"), "{text}");
}
