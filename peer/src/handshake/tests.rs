//! The handshake machines driven against each other, in every mode.

use super::*;
use crate::password::derive;
use std::time::Duration;

const EXPORTER: [u8; EXPORTER_LEN] = [7; EXPORTER_LEN];
const ASK: Duration = Duration::from_secs(30);

/// The controller's outcome (the screen size and permissions) and the host's (its
/// confirmation).
type Outcomes = (
    Result<(u32, u32, Permissions), Error>,
    Result<[u8; 32], Error>,
);

/// Runs both machines against each other in `mode`; the host knows `host_pw`, the
/// controller typed `typed` (None: no password); the host's user answers `verdict`.
fn run_mode(
    mode: Approval,
    host_pw: &str,
    typed: Option<&str>,
    host_exporter: [u8; EXPORTER_LEN],
    verdict: Verdict,
) -> Outcomes {
    let (mut c, opening) = ControllerHandshake::start(EXPORTER, "ann@desk", typed.is_some());
    let mut h = HostHandshake::new(mode, ASK);
    let [hello, intro] = opening;
    assert!(matches!(h.on_message(hello), HostAction::Read));
    assert!(matches!(h.on_message(intro), HostAction::ChargeAttempt));
    assert_eq!(h.name(), Some("ann@desk"));
    // The host's messages, delivered to the controller until it acts.
    let to_controller = |c: &mut ControllerHandshake, msgs: Vec<ControlMsg>| {
        let mut last = ControllerAction::Read;
        for m in msgs {
            last = c.on_message(m);
            if let ControllerAction::End(_) = last {
                break;
            }
        }
        last
    };
    let mut host_action = if mode.needs_password() {
        let secret = derive(&Kdf::OneTime, host_pw).unwrap();
        let [access, challenge] = h.challenge(Kdf::OneTime, &secret, host_exporter).unwrap();
        match c.on_message(access) {
            ControllerAction::Mode(m) => assert_eq!(m, mode),
            ControllerAction::End(e) => return (Err(e), Err(Error::Closed("test"))),
            other => panic!("{other:?}"),
        }
        let kdf = match c.on_message(challenge) {
            ControllerAction::Derive(kdf) => kdf,
            ControllerAction::End(e) => return (Err(e), Err(Error::Closed("test"))),
            other => panic!("{other:?}"),
        };
        let auth = c.prove(&derive(&kdf, typed.unwrap()).unwrap()).unwrap();
        h.on_message(auth)
    } else {
        let [access, asking] = h.ask().unwrap();
        match c.on_message(access) {
            ControllerAction::Mode(m) => assert_eq!(m, mode),
            ControllerAction::End(e) => return (Err(e), Err(Error::Closed("test"))),
            other => panic!("{other:?}"),
        }
        HostAction::Ask(asking)
    };
    if let HostAction::Ask(asking) = host_action {
        assert!(matches!(
            c.on_message(asking),
            ControllerAction::Asking { seconds: 30 }
        ));
        host_action = h.decided(verdict);
    }
    match host_action {
        HostAction::Proven {
            confirm,
            permissions,
            ..
        } => {
            let welcome = ControlMsg::Welcome {
                width: 1280,
                height: 720,
                confirm,
            };
            match to_controller(&mut c, vec![ControlMsg::Granted(permissions), welcome]) {
                ControllerAction::Done {
                    width,
                    height,
                    permissions,
                    ..
                } => (Ok((width, height, permissions)), Ok(confirm)),
                ControllerAction::End(e) => (Err(e), Ok(confirm)),
                other => panic!("{other:?}"),
            }
        }
        HostAction::End(Some(last), e) => match c.on_message(last) {
            ControllerAction::End(ce) => (Err(ce), Err(e)),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

fn run(host_pw: &str, typed: &str, host_exporter: [u8; EXPORTER_LEN]) -> Outcomes {
    let accept = Verdict::Accepted(Permissions::ALL);
    run_mode(
        Approval::Password,
        host_pw,
        Some(typed),
        host_exporter,
        accept,
    )
}

#[test]
fn the_right_password_opens_the_session_on_both_sides() {
    let (c, h) = run("ab01-1k9z", "AB01 1K9Z", EXPORTER);
    assert_eq!(c.unwrap(), (1280, 720, Permissions::ALL));
    assert!(h.is_ok());
}

#[test]
fn a_wrong_password_is_refused_on_both_sides() {
    let (c, h) = run("ab01-1k9z", "ab01-1k9y", EXPORTER);
    assert!(
        matches!(c, Err(Error::Auth(AuthError::WrongPassword))),
        "{c:?}"
    );
    assert!(matches!(h, Err(Error::Auth(_))), "{h:?}");
}

#[test]
fn another_tls_connection_cannot_reuse_the_proof() {
    // A machine in the middle terminates TLS twice: the exporters differ, and so the proof
    // fails although both sides know the password.
    let (c, h) = run("ab01-1k9z", "ab01-1k9z", [8; EXPORTER_LEN]);
    assert!(c.is_err() && h.is_err(), "{c:?} {h:?}");
}

#[test]
fn attended_modes_admit_only_what_the_user_accepted() {
    let view_only = Verdict::Accepted(Permissions::VIEW_ONLY);
    // Prompt: no password at all; the user's choice of permissions reaches the controller.
    let (c, h) = run_mode(Approval::Prompt, "", None, EXPORTER, view_only);
    assert_eq!(c.unwrap(), (1280, 720, Permissions::VIEW_ONLY));
    assert_eq!(h.unwrap(), [0; 32]);
    // A password given anyway is simply not used.
    let (c, _) = run_mode(Approval::Prompt, "", Some("x"), EXPORTER, view_only);
    assert!(c.is_ok());
    // Denied, or timed out: the controller hears why.
    for why in [DenyReason::User, DenyReason::TimedOut, DenyReason::UiFailed] {
        let (c, h) = run_mode(Approval::Prompt, "", None, EXPORTER, Verdict::Denied(why));
        let Err(Error::Denied(said)) = c else {
            panic!("{c:?}")
        };
        assert_eq!(said, why.to_string());
        assert!(matches!(h, Err(Error::Denied(_))));
    }
    // Both: the password, then the user.
    let input = Permissions {
        input: true,
        ..Permissions::VIEW_ONLY
    };
    let (c, h) = run_mode(
        Approval::Both,
        "pw-1",
        Some("pw-1"),
        EXPORTER,
        Verdict::Accepted(input),
    );
    assert_eq!(c.unwrap().2, input);
    assert_ne!(h.unwrap(), [0; 32], "the host's confirmation is real");
    let denied = Verdict::Denied(DenyReason::User);
    let (c, _) = run_mode(Approval::Both, "pw-1", Some("pw-1"), EXPORTER, denied);
    assert!(matches!(c, Err(Error::Denied(_))), "{c:?}");
    // A wrong password in `both` never reaches the user.
    let (c, _) = run_mode(Approval::Both, "pw-1", Some("pw-2"), EXPORTER, view_only);
    assert!(matches!(c, Err(Error::Auth(_))), "{c:?}");
    // Without a password, a host that wants one is refused before any proof.
    let (c, _) = run_mode(Approval::Both, "pw-1", None, EXPORTER, view_only);
    assert!(matches!(c, Err(Error::PasswordNeeded)), "{c:?}");
}

#[test]
fn a_controller_never_skips_the_proof_a_password_host_announced() {
    // A host (or someone in the middle) that said `password` and then welcomes without a
    // proof, or that says it is asking its user while in password mode, is refused.
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    assert!(matches!(
        c.on_message(ControlMsg::Access {
            mode: Approval::Password
        }),
        ControllerAction::Mode(Approval::Password)
    ));
    assert!(matches!(
        c.on_message(ControlMsg::Granted(Permissions::ALL)),
        ControllerAction::End(Error::Unexpected { .. })
    ));
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    c.on_message(ControlMsg::Access {
        mode: Approval::Prompt,
    });
    // Welcome without Granted, or a second Asking, is refused.
    let welcome = ControlMsg::Welcome {
        width: 1,
        height: 1,
        confirm: [0; 32],
    };
    assert!(matches!(
        c.on_message(welcome),
        ControllerAction::End(Error::Unexpected { .. })
    ));
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    c.on_message(ControlMsg::Access {
        mode: Approval::Prompt,
    });
    assert!(matches!(
        c.on_message(ControlMsg::Asking { seconds: 30 }),
        ControllerAction::Asking { seconds: 30 }
    ));
    assert!(matches!(
        c.on_message(ControlMsg::Asking { seconds: 30 }),
        ControllerAction::End(_)
    ));
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    c.on_message(ControlMsg::Access {
        mode: Approval::Prompt,
    });
    assert!(matches!(
        c.on_message(ControlMsg::Asking { seconds: 0 }),
        ControllerAction::End(_)
    ));
}

#[test]
fn the_host_answers_nothing_password_related_out_of_order() {
    let mut h = HostHandshake::new(Approval::Password, ASK);
    assert!(matches!(
        h.on_message(ControlMsg::KeyFrameRequest),
        HostAction::End(None, Error::Unexpected { expected: "Hello" })
    ));
    // An old controller gets a reason, nothing else.
    let mut h = HostHandshake::new(Approval::Password, ASK);
    let HostAction::End(Some(ControlMsg::Denied { reason }), Error::Denied(_)) =
        h.on_message(ControlMsg::Hello {
            version: VERSION - 1,
        })
    else {
        panic!("an old version should be denied");
    };
    assert!(reason.contains("unsupported protocol version"), "{reason}");
    // No challenge without a charged Hello, and nothing accepted while charging.
    let mut h = HostHandshake::new(Approval::Password, ASK);
    assert!(h.challenge(Kdf::OneTime, b"x", EXPORTER).is_err());
    assert!(matches!(
        h.on_message(ControlMsg::Hello { version: VERSION }),
        HostAction::Read
    ));
    // No Introduce: nothing more.
    assert!(matches!(
        h.on_message(ControlMsg::Hello { version: VERSION }),
        HostAction::End(None, Error::Unexpected { .. })
    ));
    let mut h = HostHandshake::new(Approval::Password, ASK);
    h.on_message(ControlMsg::Hello { version: VERSION });
    let long = ControlMsg::Introduce {
        name: "x".repeat(proto::session::MAX_NAME_LEN + 1),
    };
    assert!(matches!(h.on_message(long), HostAction::End(None, _)));
    let mut h = HostHandshake::new(Approval::Password, ASK);
    h.on_message(ControlMsg::Hello { version: VERSION });
    let intro = ControlMsg::Introduce { name: "".into() };
    assert!(matches!(h.on_message(intro), HostAction::ChargeAttempt));
    assert_eq!(h.name(), None);
    assert!(h.ask().is_err(), "password mode never asks without a proof");
    assert!(matches!(
        h.on_message(ControlMsg::Hello { version: VERSION }),
        HostAction::End(None, Error::Unexpected { .. })
    ));
    // A refused attempt says why, and ends.
    let mut h = HostHandshake::new(Approval::Prompt, ASK);
    h.on_message(ControlMsg::Hello { version: VERSION });
    h.on_message(ControlMsg::Introduce { name: "".into() });
    assert!(h.challenge(Kdf::OneTime, b"x", EXPORTER).is_err());
    let (msg, err) = h.refuse("try again in 4s".into());
    assert!(matches!(msg, ControlMsg::Denied { .. }) && matches!(err, Error::Denied(_)));
    // A verdict nobody asked for decides nothing.
    let mut h = HostHandshake::new(Approval::Prompt, ASK);
    assert!(matches!(
        h.decided(Verdict::Accepted(Permissions::ALL)),
        HostAction::End(None, _)
    ));
}

#[test]
fn the_controller_accepts_only_a_proven_welcome() {
    // A Welcome before any proof, a forged confirmation, or a challenge out of turn.
    let forged = ControlMsg::Welcome {
        width: 1,
        height: 1,
        confirm: [0; 32],
    };
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    assert!(matches!(
        c.on_message(forged.clone()),
        ControllerAction::End(Error::Unexpected { expected: "Access" })
    ));
    let (mut c, [hello, intro]) = ControllerHandshake::start(EXPORTER, "", true);
    let mut h = HostHandshake::new(Approval::Password, ASK);
    h.on_message(hello);
    h.on_message(intro);
    let secret = derive(&Kdf::OneTime, "pw").unwrap();
    let [access, challenge] = h.challenge(Kdf::OneTime, &secret, EXPORTER).unwrap();
    c.on_message(access);
    let ControllerAction::Derive(_) = c.on_message(challenge) else {
        panic!()
    };
    assert!(c.prove(&secret).is_ok());
    assert!(matches!(
        c.on_message(ControlMsg::Granted(Permissions::ALL)),
        ControllerAction::Read
    ));
    assert!(matches!(
        c.on_message(forged),
        ControllerAction::End(Error::Auth(_))
    ));
    // Remote text is made printable.
    let (mut c, _) = ControllerHandshake::start(EXPORTER, "", true);
    let ControllerAction::End(Error::Denied(why)) = c.on_message(ControlMsg::Denied {
        reason: "busy\x1b[2J".into(),
    }) else {
        panic!()
    };
    assert!(!why.contains('\x1b'), "{why:?}");
}
