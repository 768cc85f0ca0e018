//! A session's opening, sans-IO, for both sides: which control message comes next, what it
//! means and what to answer. The drivers (`host::authenticate`, `controller::authenticate`)
//! only move messages between a QUIC control stream and these machines, with deadlines; then
//! their control loops (`host::serve`, `controller::control`) move the candidates.
//!
//! ```text
//!  controller                                   host (mode: password | prompt | both)
//!  ControllerHandshake::start ── Hello, Introduce{name} ─► on_message → ChargeAttempt
//!                                               (driver: guard.begin) → challenge(...) / ask()
//!  on_message → Mode(mode) ◄──── Access{mode} ──── (or refuse(reason) → Denied, end)
//!  password, both:
//!  on_message → Derive(kdf) ◄──── Challenge ──── challenge(kdf, secret, exporter)
//!  (driver: derive, off the async threads)
//!  prove(secret) ─────────────── Auth ────────► on_message → Proven (password)
//!                                                           → Ask (both)
//!  prompt, both:
//!  on_message → Asking{secs} ◄─── Asking ─────── (driver: the host's user decides, within secs)
//!                                               decided(verdict) → Proven / End(Denied)
//!  on_message (Granted) ◄──────── Granted{permissions}
//!  on_message → Done{size} ◄────── Welcome ───── (the host's key confirmation, with a password)
//!  Done{candidates}                             Proven{candidates}
//!  CandidateExchange ◄───────── Candidates ───► CandidateExchange   (either side, any time,
//!                                                                    again when its NAT moves it)
//! ```
//!
//! What the machines guarantee: the host sends nothing that depends on the password before the
//! controller's proof (its challenge element says nothing about it, see [`crate::auth`]), and
//! asks its driver to charge the attempt before that challenge and before asking its user (a
//! question costs the user as much as a guess costs the host); with a password the controller
//! accepts the session only with the host's own confirmation; in `prompt` mode there is none,
//! and the controller knows it (`Mode`) before anything else happens. The candidates step
//! ([`candidates`]) exists only on an admitted session: neither side learns where the other
//! may be reached before. Text from the other side is made printable here.
//!
//! What they do not do: I/O, deadlines, the guessing limits (the driver's [`crate::guard`]),
//! asking the user (the driver's `host::attend`, with [`crate::approve`]), or the password
//! derivation itself (argon2id takes a moment: the driver runs it off the async threads and
//! hands back the secret).

use proto::session::{Approval, ControlMsg, Kdf, Permissions, VERSION};

use crate::Error;
use crate::approve::{DenyReason, Verdict};

pub mod candidates;
use crate::auth::{AuthError, ControllerAuth, ControllerKeys, EXPORTER_LEN, HostAuth};
pub use candidates::{CandidateExchange, Punch};

/// The host's side. The TLS exporter comes with the challenge, not at the start: a QUIC server
/// may hold the connection before the client's handshake is complete, and the exporter is only
/// certain once the client's first stream data (its Hello) has arrived.
#[derive(Debug)]
pub struct HostHandshake {
    mode: Approval,
    /// How long the host's user has to answer, as told to the controller.
    asking_secs: u32,
    /// The controller's self-declared name, made printable (`None` if it gave none).
    name: Option<String>,
    state: HostState,
}

#[derive(Debug)]
enum HostState {
    Hello,
    Introduce,
    /// Hello seen; the driver is charging the attempt.
    Charging,
    Auth(Box<HostAuth>),
    /// The driver is asking the host's user; the host's key confirmation if a password was
    /// proven.
    Asking(Option<[u8; 32]>),
    Over,
}

/// What the host's driver does next.
#[derive(Debug)]
pub enum HostAction {
    /// Nothing yet: read the next message.
    Read,
    /// Charge an attempt for this controller, then call [`HostHandshake::challenge`] (a mode
    /// with a password) or [`HostHandshake::ask`] (prompt), or [`HostHandshake::refuse`].
    ChargeAttempt,
    /// The password is proven and the host's user must now be asked: send this `Asking`, ask,
    /// then call [`HostHandshake::decided`].
    Ask(ControlMsg),
    /// The controller is admitted: `Granted(permissions)` and `Welcome` (with `confirm`) go
    /// out, and the session's candidates step opens.
    Proven {
        confirm: [u8; 32],
        permissions: Permissions,
        candidates: CandidateExchange,
    },
    /// Write this last message (if any), finish the stream, and end with this error.
    End(Option<ControlMsg>, Error),
}

impl HostHandshake {
    /// A handshake waiting for the controller's Hello, deciding by `mode`; the host's user
    /// (if asked) answers within `asking` (1 s to [`proto::session::MAX_ASKING_SECS`], clamped).
    pub fn new(mode: Approval, asking: std::time::Duration) -> Self {
        let secs = asking.as_secs_f64().ceil() as u32;
        Self {
            mode,
            asking_secs: secs.clamp(1, proto::session::MAX_ASKING_SECS),
            name: None,
            state: HostState::Hello,
        }
    }

    /// The controller's self-declared name, made printable, once it has introduced itself.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The controller's next message.
    pub fn on_message(&mut self, msg: ControlMsg) -> HostAction {
        match (std::mem::replace(&mut self.state, HostState::Over), msg) {
            (HostState::Hello, ControlMsg::Hello { version }) if version == VERSION => {
                self.state = HostState::Introduce;
                HostAction::Read
            }
            (HostState::Hello, ControlMsg::Hello { version }) => {
                let reason =
                    format!("unsupported protocol version {version} (host speaks {VERSION})");
                HostAction::End(
                    Some(ControlMsg::Denied {
                        reason: reason.clone(),
                    }),
                    Error::Denied(reason),
                )
            }
            (HostState::Hello, _) => HostAction::End(None, Error::Unexpected { expected: "Hello" }),
            (HostState::Introduce, msg @ ControlMsg::Introduce { .. }) if msg.is_sane() => {
                if let ControlMsg::Introduce { name } = msg {
                    self.name = crate::approve::shown_name(&name);
                }
                self.state = HostState::Charging;
                HostAction::ChargeAttempt
            }
            (HostState::Introduce, _) => HostAction::End(
                None,
                Error::Unexpected {
                    expected: "Introduce",
                },
            ),
            (HostState::Auth(auth), ControlMsg::Auth { spake, confirm }) => {
                match auth.finish(&spake, &confirm) {
                    Ok(confirm) if self.mode.asks_user() => {
                        self.state = HostState::Asking(Some(confirm));
                        HostAction::Ask(ControlMsg::Asking {
                            seconds: self.asking_secs,
                        })
                    }
                    Ok(confirm) => HostAction::Proven {
                        confirm,
                        permissions: Permissions::ALL,
                        candidates: CandidateExchange::new(),
                    },
                    Err(e) => HostAction::End(Some(ControlMsg::WrongPassword), e.into()),
                }
            }
            (HostState::Auth(_), _) => {
                HostAction::End(None, Error::Unexpected { expected: "Auth" })
            }
            (HostState::Charging | HostState::Asking(_) | HostState::Over, _) => HostAction::End(
                None,
                Error::Unexpected {
                    expected: "nothing while the host decides",
                },
            ),
        }
    }

    /// The attempt is charged and this host asks for the password: `Access` and the challenge
    /// to send, over the password's `secret` and `kdf`, bound to the connection's TLS
    /// `exporter`.
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when no attempt was being charged or the mode has no password.
    pub fn challenge(
        &mut self,
        kdf: Kdf,
        secret: &[u8],
        exporter: [u8; EXPORTER_LEN],
    ) -> Result<[ControlMsg; 2], Error> {
        if !matches!(self.state, HostState::Charging) || !self.mode.needs_password() {
            return Err(Error::Unexpected {
                expected: "a challenge only after Hello, with a password",
            });
        }
        let (auth, spake) = HostAuth::start(secret, exporter);
        self.state = HostState::Auth(Box::new(auth));
        Ok([
            ControlMsg::Access { mode: self.mode },
            ControlMsg::Challenge { kdf, spake },
        ])
    }

    /// The attempt is charged and this host asks its user alone (prompt): `Access` and
    /// `Asking` to send; then the driver asks, and calls [`Self::decided`].
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when no attempt was being charged or the mode wants a password.
    pub fn ask(&mut self) -> Result<[ControlMsg; 2], Error> {
        if !matches!(self.state, HostState::Charging) || self.mode.needs_password() {
            return Err(Error::Unexpected {
                expected: "a question without a password only after Hello",
            });
        }
        self.state = HostState::Asking(None);
        Ok([
            ControlMsg::Access { mode: self.mode },
            ControlMsg::Asking {
                seconds: self.asking_secs,
            },
        ])
    }

    /// What the host's user decided: the controller is admitted with the permissions chosen,
    /// or denied with the reason.
    pub fn decided(&mut self, verdict: Verdict) -> HostAction {
        let HostState::Asking(confirm) = std::mem::replace(&mut self.state, HostState::Over) else {
            return HostAction::End(
                None,
                Error::Unexpected {
                    expected: "a verdict only while asking",
                },
            );
        };
        match verdict {
            Verdict::Accepted(permissions) => HostAction::Proven {
                // Without a password there is nothing to confirm; the controller knows (Access).
                confirm: confirm.unwrap_or([0; 32]),
                permissions,
                candidates: CandidateExchange::new(),
            },
            Verdict::Denied(why) => {
                let reason = why.to_string();
                let last = (why != DenyReason::ControllerLeft).then(|| ControlMsg::Denied {
                    reason: reason.clone(),
                });
                HostAction::End(last, Error::Denied(reason))
            }
        }
    }

    /// The attempt was refused (guessing limits, or the user may not be asked now): the last
    /// message to send, and the error.
    pub fn refuse(&mut self, reason: String) -> (ControlMsg, Error) {
        self.state = HostState::Over;
        (
            ControlMsg::Denied {
                reason: reason.clone(),
            },
            Error::Denied(reason),
        )
    }
}

/// The controller's side.
#[derive(Debug)]
pub struct ControllerHandshake {
    exporter: [u8; EXPORTER_LEN],
    has_password: bool,
    mode: Option<Approval>,
    /// What the host granted, once it said.
    granted: Option<Permissions>,
    /// Whether the host said it is asking its user.
    asked: bool,
    state: ControllerState,
}

#[derive(Debug)]
enum ControllerState {
    Access,
    Challenge,
    /// The driver is deriving the secret for this host element.
    Deriving(Vec<u8>),
    /// Waiting for the host's admission; with the keys of a proven password.
    Welcome(Option<Box<ControllerKeys>>),
    Over,
}

/// What the controller's driver does next.
#[derive(Debug)]
pub enum ControllerAction {
    /// Nothing to do: read the next message.
    Read,
    /// The host decides by `mode`: tell the user (in `prompt` mode the host's identity rests
    /// on the rendezvous's word and known hosts alone); then read on.
    Mode(Approval),
    /// Derive the secret from what the user typed with this function
    /// ([`crate::password::derive`], off the async threads), then call
    /// [`ControllerHandshake::prove`].
    Derive(Kdf),
    /// The host's user is being asked: the answer comes within `seconds` (wait that long for
    /// the next message, not the usual deadline).
    Asking { seconds: u32 },
    /// The host let us in: the shared screen's size, what the session may do, and its
    /// candidates step.
    Done {
        width: u32,
        height: u32,
        permissions: Permissions,
        candidates: CandidateExchange,
    },
    /// The session cannot start.
    End(Error),
}

impl ControllerHandshake {
    /// A handshake on a connection with this TLS exporter, by a controller that declares
    /// itself `name` and whose user gave a password or not; and the messages that open it.
    pub fn start(
        exporter: [u8; EXPORTER_LEN],
        name: &str,
        has_password: bool,
    ) -> (Self, [ControlMsg; 2]) {
        let mut name = name.to_owned();
        let mut cut = name.len().min(proto::session::MAX_NAME_LEN);
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        name.truncate(cut);
        (
            Self {
                exporter,
                has_password,
                mode: None,
                granted: None,
                asked: false,
                state: ControllerState::Access,
            },
            [
                ControlMsg::Hello { version: VERSION },
                ControlMsg::Introduce { name },
            ],
        )
    }

    /// How the host decides, once it said.
    pub fn mode(&self) -> Option<Approval> {
        self.mode
    }

    /// The host's next message.
    pub fn on_message(&mut self, msg: ControlMsg) -> ControllerAction {
        let denied = |reason: &str| Error::Denied(crate::text::printable(reason));
        match (
            std::mem::replace(&mut self.state, ControllerState::Over),
            msg,
        ) {
            (ControllerState::Access, ControlMsg::Access { mode }) => {
                if mode.needs_password() && !self.has_password {
                    return ControllerAction::End(Error::PasswordNeeded);
                }
                self.mode = Some(mode);
                self.state = if mode.needs_password() {
                    ControllerState::Challenge
                } else {
                    ControllerState::Welcome(None)
                };
                ControllerAction::Mode(mode)
            }
            (
                ControllerState::Access | ControllerState::Challenge,
                ControlMsg::Denied { reason },
            ) => ControllerAction::End(denied(&reason)),
            (ControllerState::Access, _) => {
                ControllerAction::End(Error::Unexpected { expected: "Access" })
            }
            (ControllerState::Challenge, ControlMsg::Challenge { kdf, spake }) => {
                self.state = ControllerState::Deriving(spake);
                ControllerAction::Derive(kdf)
            }
            (ControllerState::Challenge, _) => ControllerAction::End(Error::Unexpected {
                expected: "Challenge",
            }),
            (ControllerState::Welcome(keys), ControlMsg::Asking { seconds })
                if !self.asked && self.mode.is_some_and(Approval::asks_user) =>
            {
                if !(1..=proto::session::MAX_ASKING_SECS).contains(&seconds) {
                    return ControllerAction::End(Error::Unexpected {
                        expected: "a wait of 1 to 600 s",
                    });
                }
                self.asked = true;
                self.state = ControllerState::Welcome(keys);
                ControllerAction::Asking { seconds }
            }
            (ControllerState::Welcome(keys), ControlMsg::Granted(p)) if self.granted.is_none() => {
                self.granted = Some(p);
                self.state = ControllerState::Welcome(keys);
                ControllerAction::Read
            }
            (
                ControllerState::Welcome(keys),
                ControlMsg::Welcome {
                    width,
                    height,
                    confirm,
                },
            ) => {
                let Some(permissions) = self.granted else {
                    return ControllerAction::End(Error::Unexpected {
                        expected: "Granted before Welcome",
                    });
                };
                let done = ControllerAction::Done {
                    width,
                    height,
                    permissions,
                    candidates: CandidateExchange::new(),
                };
                match keys {
                    // The host must prove the password too, or it is not the host we meant.
                    Some(keys) => match keys.verify_host(&confirm) {
                        Ok(()) => done,
                        Err(e) => ControllerAction::End(e.into()),
                    },
                    // Prompt: no password, nothing to confirm (the mode said so first).
                    None if self.mode == Some(Approval::Prompt) => done,
                    None => ControllerAction::End(Error::Unexpected {
                        expected: "the password step before Welcome",
                    }),
                }
            }
            (ControllerState::Welcome(_), ControlMsg::WrongPassword) => {
                ControllerAction::End(AuthError::WrongPassword.into())
            }
            (ControllerState::Welcome(_), ControlMsg::Denied { reason }) => {
                ControllerAction::End(denied(&reason))
            }
            (ControllerState::Welcome(_), _) => ControllerAction::End(Error::Unexpected {
                expected: "Welcome",
            }),
            (ControllerState::Deriving(_) | ControllerState::Over, _) => {
                ControllerAction::End(Error::Unexpected {
                    expected: "nothing while the password is derived",
                })
            }
        }
    }

    /// The secret is derived: the `Auth` message proving it.
    ///
    /// # Errors
    ///
    /// [`Error::Auth`] for a malformed host element; [`Error::Unexpected`] when no challenge
    /// was pending.
    pub fn prove(&mut self, secret: &[u8]) -> Result<ControlMsg, Error> {
        let ControllerState::Deriving(spake_h) =
            std::mem::replace(&mut self.state, ControllerState::Over)
        else {
            return Err(Error::Unexpected {
                expected: "a proof only after a challenge",
            });
        };
        let keys = ControllerAuth::start(secret, self.exporter).finish(&spake_h)?;
        let msg = ControlMsg::Auth {
            spake: keys.spake_c.clone(),
            confirm: keys.confirm,
        };
        self.state = ControllerState::Welcome(Some(Box::new(keys)));
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
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
}
