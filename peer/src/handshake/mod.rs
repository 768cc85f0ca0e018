//! A session's opening, sans-IO, for both sides: which control message comes next, what it
//! means and what to answer. The drivers (`host::authenticate`, `controller::authenticate`)
//! only move messages between a QUIC control stream and these machines, with deadlines; then
//! their control loops (`host::serve`, `controller::control`) move the candidates.
//!
//! ```text
//!  controller                                   host
//!  ControllerHandshake::start ── Hello ───────► HostHandshake::on_message → ChargeAttempt
//!                                               (driver: guard.begin) → challenge(kdf, secret, exporter)
//!  on_message → Derive(kdf) ◄──── Challenge ──── (or refuse(reason) → Denied, end)
//!  (driver: derive, off the async threads)
//!  prove(secret) ─────────────── Auth ────────► on_message → Proven{confirm} (driver: Welcome)
//!                                               (or WrongPassword, end)
//!  on_message → Done{size} ◄────── Welcome ─────
//!  Done{candidates}                             Proven{candidates}
//!  CandidateExchange ◄───────── Candidates ───► CandidateExchange   (either side, any time,
//!                                                                    again when its NAT moves it)
//! ```
//!
//! What the machines guarantee: the host sends nothing that depends on the password before the
//! controller's proof (its challenge element says nothing about it, see [`crate::auth`]), and
//! asks its driver to charge the attempt before that challenge; the controller accepts the
//! session only with the host's own confirmation. The candidates step ([`candidates`]) exists
//! only on a proven session: neither side learns where the other may be reached before. Text
//! from the host is made printable here.
//!
//! What they do not do: I/O, deadlines, the guessing limits (the driver's [`crate::guard`]),
//! or the password derivation itself (argon2id takes a moment: the driver runs it off the
//! async threads and hands back the secret).

use proto::session::{ControlMsg, Kdf, VERSION};

use crate::Error;

pub mod candidates;
use crate::auth::{AuthError, ControllerAuth, ControllerKeys, EXPORTER_LEN, HostAuth};
pub use candidates::{CandidateExchange, Punch};

/// The host's side. The TLS exporter comes with the challenge, not at the start: a QUIC server
/// may hold the connection before the client's handshake is complete, and the exporter is only
/// certain once the client's first stream data (its Hello) has arrived.
#[derive(Debug)]
pub struct HostHandshake {
    state: HostState,
}

#[derive(Debug)]
enum HostState {
    Hello,
    /// Hello seen; the driver is charging the attempt.
    Charging,
    Auth(Box<HostAuth>),
    Over,
}

/// What the host's driver does next.
#[derive(Debug)]
pub enum HostAction {
    /// Charge a password attempt for this controller, then call [`HostHandshake::challenge`]
    /// with the password's derivation and secret, or [`HostHandshake::refuse`].
    ChargeAttempt,
    /// The controller proved the password: `confirm` goes into `Welcome`, and the session's
    /// candidates step opens.
    Proven {
        confirm: [u8; 32],
        candidates: CandidateExchange,
    },
    /// Write this last message (if any), finish the stream, and end with this error.
    End(Option<ControlMsg>, Error),
}

impl Default for HostHandshake {
    fn default() -> Self {
        Self::new()
    }
}

impl HostHandshake {
    /// A handshake waiting for the controller's Hello.
    pub fn new() -> Self {
        Self {
            state: HostState::Hello,
        }
    }

    /// The controller's next message.
    pub fn on_message(&mut self, msg: ControlMsg) -> HostAction {
        match (std::mem::replace(&mut self.state, HostState::Over), msg) {
            (HostState::Hello, ControlMsg::Hello { version }) if version == VERSION => {
                self.state = HostState::Charging;
                HostAction::ChargeAttempt
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
            (HostState::Auth(auth), ControlMsg::Auth { spake, confirm }) => {
                match auth.finish(&spake, &confirm) {
                    Ok(confirm) => HostAction::Proven {
                        confirm,
                        candidates: CandidateExchange::new(),
                    },
                    Err(e) => HostAction::End(Some(ControlMsg::WrongPassword), e.into()),
                }
            }
            (HostState::Auth(_), _) => {
                HostAction::End(None, Error::Unexpected { expected: "Auth" })
            }
            (HostState::Charging | HostState::Over, _) => HostAction::End(
                None,
                Error::Unexpected {
                    expected: "nothing during the password step",
                },
            ),
        }
    }

    /// The attempt is charged: the challenge to send, over the password's `secret` and `kdf`,
    /// bound to the connection's TLS `exporter`.
    ///
    /// # Errors
    ///
    /// [`Error::Unexpected`] when no attempt was being charged.
    pub fn challenge(
        &mut self,
        kdf: Kdf,
        secret: &[u8],
        exporter: [u8; EXPORTER_LEN],
    ) -> Result<ControlMsg, Error> {
        let HostState::Charging = self.state else {
            return Err(Error::Unexpected {
                expected: "a challenge only after Hello",
            });
        };
        let (auth, spake) = HostAuth::start(secret, exporter);
        self.state = HostState::Auth(Box::new(auth));
        Ok(ControlMsg::Challenge { kdf, spake })
    }

    /// The attempt was refused (guessing limits): the last message to send, and the error.
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
    state: ControllerState,
}

#[derive(Debug)]
enum ControllerState {
    Challenge,
    /// The driver is deriving the secret for this host element.
    Deriving(Vec<u8>),
    Welcome(Box<ControllerKeys>),
    Over,
}

/// What the controller's driver does next.
#[derive(Debug)]
pub enum ControllerAction {
    /// Derive the secret from what the user typed with this function
    /// ([`crate::password::derive`], off the async threads), then call
    /// [`ControllerHandshake::prove`].
    Derive(Kdf),
    /// The host is who we meant and let us in: the shared screen's size, and the session's
    /// candidates step.
    Done {
        width: u32,
        height: u32,
        candidates: CandidateExchange,
    },
    /// The session cannot start.
    End(Error),
}

impl ControllerHandshake {
    /// A handshake on a connection with this TLS exporter, and the `Hello` that opens it.
    pub fn start(exporter: [u8; EXPORTER_LEN]) -> (Self, ControlMsg) {
        (
            Self {
                exporter,
                state: ControllerState::Challenge,
            },
            ControlMsg::Hello { version: VERSION },
        )
    }

    /// The host's next message.
    pub fn on_message(&mut self, msg: ControlMsg) -> ControllerAction {
        let denied = |reason: &str| Error::Denied(crate::text::printable(reason));
        match (
            std::mem::replace(&mut self.state, ControllerState::Over),
            msg,
        ) {
            (ControllerState::Challenge, ControlMsg::Challenge { kdf, spake }) => {
                self.state = ControllerState::Deriving(spake);
                ControllerAction::Derive(kdf)
            }
            (ControllerState::Challenge, ControlMsg::Denied { reason }) => {
                ControllerAction::End(denied(&reason))
            }
            (ControllerState::Challenge, _) => ControllerAction::End(Error::Unexpected {
                expected: "Challenge",
            }),
            (
                ControllerState::Welcome(keys),
                ControlMsg::Welcome {
                    width,
                    height,
                    confirm,
                },
            ) => match keys.verify_host(&confirm) {
                // The host must prove the password too, or it is not the host we meant.
                Ok(()) => ControllerAction::Done {
                    width,
                    height,
                    candidates: CandidateExchange::new(),
                },
                Err(e) => ControllerAction::End(e.into()),
            },
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
        self.state = ControllerState::Welcome(Box::new(keys));
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::derive;

    const EXPORTER: [u8; EXPORTER_LEN] = [7; EXPORTER_LEN];

    /// The controller's outcome (the screen size) and the host's (its confirmation).
    type Outcomes = (Result<(u32, u32), Error>, Result<[u8; 32], Error>);

    /// Runs both machines against each other; the host knows `host_pw`, the controller typed
    /// `typed`. The controller's outcome and the host's.
    fn run(host_pw: &str, typed: &str, host_exporter: [u8; EXPORTER_LEN]) -> Outcomes {
        let (mut c, hello) = ControllerHandshake::start(EXPORTER);
        let mut h = HostHandshake::new();
        assert!(matches!(h.on_message(hello), HostAction::ChargeAttempt));
        let secret = derive(&Kdf::OneTime, host_pw).unwrap();
        let challenge = h.challenge(Kdf::OneTime, &secret, host_exporter).unwrap();
        let ControllerAction::Derive(kdf) = c.on_message(challenge) else {
            panic!("the controller should derive");
        };
        let auth = c.prove(&derive(&kdf, typed).unwrap()).unwrap();
        match h.on_message(auth) {
            HostAction::Proven { confirm, .. } => {
                let welcome = ControlMsg::Welcome {
                    width: 1280,
                    height: 720,
                    confirm,
                };
                match c.on_message(welcome) {
                    ControllerAction::Done { width, height, .. } => {
                        (Ok((width, height)), Ok(confirm))
                    }
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

    #[test]
    fn the_right_password_opens_the_session_on_both_sides() {
        let (c, h) = run("ab01-1k9z", "AB01 1K9Z", EXPORTER);
        assert_eq!(c.unwrap(), (1280, 720));
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
    fn the_host_answers_nothing_password_related_out_of_order() {
        let mut h = HostHandshake::new();
        assert!(matches!(
            h.on_message(ControlMsg::KeyFrameRequest),
            HostAction::End(None, Error::Unexpected { expected: "Hello" })
        ));
        // An old controller gets a reason, nothing else.
        let mut h = HostHandshake::new();
        let HostAction::End(Some(ControlMsg::Denied { reason }), Error::Denied(_)) =
            h.on_message(ControlMsg::Hello {
                version: VERSION - 1,
            })
        else {
            panic!("an old version should be denied");
        };
        assert!(reason.contains("unsupported protocol version"), "{reason}");
        // No challenge without a charged Hello, and nothing accepted while charging.
        let mut h = HostHandshake::new();
        assert!(h.challenge(Kdf::OneTime, b"x", EXPORTER).is_err());
        assert!(matches!(
            h.on_message(ControlMsg::Hello { version: VERSION }),
            HostAction::ChargeAttempt
        ));
        assert!(matches!(
            h.on_message(ControlMsg::Hello { version: VERSION }),
            HostAction::End(None, Error::Unexpected { .. })
        ));
        // A refused attempt says why, and ends.
        let mut h = HostHandshake::new();
        h.on_message(ControlMsg::Hello { version: VERSION });
        let (msg, err) = h.refuse("try again in 4s".into());
        assert!(matches!(msg, ControlMsg::Denied { .. }) && matches!(err, Error::Denied(_)));
    }

    #[test]
    fn the_controller_accepts_only_a_proven_welcome() {
        // A Welcome before any proof, a forged confirmation, or a challenge out of turn.
        let (mut c, _) = ControllerHandshake::start(EXPORTER);
        let forged = ControlMsg::Welcome {
            width: 1,
            height: 1,
            confirm: [0; 32],
        };
        assert!(matches!(
            c.on_message(forged.clone()),
            ControllerAction::End(Error::Unexpected {
                expected: "Challenge"
            })
        ));
        let (mut c, hello) = ControllerHandshake::start(EXPORTER);
        let mut h = HostHandshake::new();
        h.on_message(hello);
        let secret = derive(&Kdf::OneTime, "pw").unwrap();
        let ControllerAction::Derive(_) =
            c.on_message(h.challenge(Kdf::OneTime, &secret, EXPORTER).unwrap())
        else {
            panic!()
        };
        assert!(c.prove(&secret).is_ok());
        assert!(matches!(
            c.on_message(forged),
            ControllerAction::End(Error::Auth(_))
        ));
        // Remote text is made printable.
        let (mut c, _) = ControllerHandshake::start(EXPORTER);
        let ControllerAction::End(Error::Denied(why)) = c.on_message(ControlMsg::Denied {
            reason: "busy\x1b[2J".into(),
        }) else {
            panic!()
        };
        assert!(!why.contains('\x1b'), "{why:?}");
    }
}
