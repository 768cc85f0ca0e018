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
mod tests;
