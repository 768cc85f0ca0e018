//! Part of the attack suite (`attack.rs`), in a file of its own: a host in `--approve prompt` mode (no password: its user accepts or denies each controller)
//! as a stranger sees it: a raw client that keeps connecting without any password cannot put
//! more questions in front of the host's user than the limits allow (one at a time, a burst
//! of `approve::PROMPT_BURST` and then one per `PROMPT_EVERY`), and gets no input through
//! without an acceptance. The window process is a stand-in shell script here (no display
//! needed) that counts how often it was started and answers with something that is not an
//! acceptance the host may take: the host must deny.

use std::time::{Duration, Instant};

use input::InputEvent;
use peer::approve::{Approval, PROMPT_BURST};
use peer::host::{Attended, UiCommand};
use proto::session::ControlMsg;

use super::common::raw::{Attacker, hello, input_frame, read_raw};
use super::common::{start_host, start_rendezvous_without_relay, synthetic_host};

/// What the stand-in window does: note that it was started, wait a second (so questions
/// overlap), then "accept" with a field no acceptance has, and wait for the host to close it.
const FAKE_WINDOW: &str = r#"echo "$1" >> "$COUNT"
sleep 1
printf '%s\n' '{"answer":"accept","input":true,"clipboard":true,"files":true,"admin":true}'
exec cat >/dev/null"#;

/// The host's answers on one connection of a stranger with no password, up to the end.
async fn try_without_password(
    rv: (std::net::SocketAddr, certs::Fingerprint),
    code: proto::AccessCode,
    source: String,
) -> Vec<ControlMsg> {
    let attacker = Attacker::new(&source);
    let conn = attacker.reach(rv, code).await.expect("reaches the host");
    let (_ctl, mut r) = hello(&conn).await.expect("control stream");
    let mut said = Vec::new();
    while let Some(msg) = read_raw(&mut r).await {
        let asked = matches!(msg, ControlMsg::Asking { .. });
        said.push(msg);
        if asked {
            // The question is open: the stranger tries to get input in meanwhile.
            match tokio::time::timeout(Duration::from_millis(300), conn.open_uni()).await {
                Err(_) | Ok(Err(_)) => {}
                Ok(Ok(mut s)) => {
                    let frame = input_frame(&InputEvent::Text {
                        text: input::BoundedText::new("pwned").unwrap(),
                    });
                    let _ = s.write_all(&[2]).await;
                    let _ = s.write_all(&frame).await;
                    panic!("an input stream opened while the host's user was being asked");
                }
            }
        }
    }
    said
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_without_a_password_cannot_pop_more_prompts_than_the_limit_or_get_input_in() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("windows-started");
    let rv = start_rendezvous_without_relay(dir.path());
    let backend = input::RecordingBackend::new();
    let mut cfg = synthetic_host(
        &rv,
        &dir.path().join("host"),
        (320, 240),
        "unused password 97531",
        backend.clone(),
    );
    cfg.attended = Attended {
        mode: Approval::Prompt,
        timeout: Duration::from_secs(5),
        ui: Some(UiCommand {
            program: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                format!("COUNT='{}'\n{FAKE_WINDOW}", count.display()).into(),
                "ui".into(),
            ],
            display: None,
        }),
        indicator: false,
    };
    let host = start_host(cfg).await;
    let code = host.status().code.expect("registered");
    let rv_key = (rv.addr, rv.fingerprint);
    let started = Instant::now();

    // Four strangers at once, from four addresses: one question is open at a time.
    let at_once: Vec<_> = (10..14)
        .map(|n| tokio::spawn(try_without_password(rv_key, code, format!("127.0.0.{n}"))))
        .collect();
    let mut answers = Vec::new();
    for t in at_once {
        answers.push(t.await.unwrap());
    }
    // Then six more, one after the other.
    for n in 14..20 {
        answers.push(try_without_password(rv_key, code, format!("127.0.0.{n}")).await);
    }
    let elapsed = started.elapsed();

    let mut asked = 0;
    for said in &answers {
        assert!(
            matches!(
                said.first(),
                Some(ControlMsg::Access {
                    mode: Approval::Prompt
                }) | Some(ControlMsg::Denied { .. })
            ),
            "{said:?}"
        );
        assert!(
            !said
                .iter()
                .any(|m| matches!(m, ControlMsg::Welcome { .. } | ControlMsg::Granted(_))),
            "a stranger was let in: {said:?}"
        );
        let Some(ControlMsg::Denied { reason }) = said.last() else {
            panic!("every attempt ends denied: {said:?}")
        };
        if said.iter().any(|m| matches!(m, ControlMsg::Asking { .. })) {
            asked += 1;
            assert_eq!(reason, "the host could not ask its user", "{said:?}");
        } else {
            assert!(
                reason.contains("already being asked")
                    || reason.contains("asked too often")
                    || reason.contains("too many"),
                "{reason}"
            );
        }
    }
    let windows = std::fs::read_to_string(&count)
        .unwrap_or_default()
        .lines()
        .count();
    let limit = PROMPT_BURST as usize + (elapsed.as_secs() / 20) as usize;
    eprintln!(
        "prompt flood: {} attempts in {elapsed:.1?}: {asked} questions asked ({windows} windows \
         started), limit {limit}",
        answers.len()
    );
    assert!(asked >= 1, "the first stranger should be asked about");
    assert!(asked <= limit, "{asked} questions, more than {limit}");
    assert_eq!(windows, asked, "one window per question");
    assert_eq!(host.status().prompts, asked as u64);
    assert!(
        backend.events().is_empty(),
        "input performed without an acceptance"
    );
    host.shutdown().await;
}
