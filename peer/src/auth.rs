//! Password authentication between controller and host: SPAKE2 bound to the TLS session.
//!
//! Both sides derive the same 32-byte TLS exporter from the peer-to-peer QUIC connection and use
//! it as the SPAKE2 identity and inside the key confirmation MACs. A man in the middle (a lying
//! rendezvous, a relay) terminates two different TLS sessions, so its exporters differ and the
//! exchange fails; a captured transcript allows no offline guessing of the password.
//!
//! The controller confirms first. The host's first message (its SPAKE2 element) says nothing
//! about the password; its key confirmation goes out only after the controller's confirmation
//! checked out. So a controller learns whether its guess was right only from an attempt the host
//! has already counted ([`crate::guard`]), however the controller ends it.
//!
//! Sans-IO: these functions turn messages into messages; the caller moves them over the control
//! stream. The secret is what [`crate::password::Kdf`] derives (the one-time password, or the
//! argon2id hash of a fixed one).
//!
//! ```text
//! controller                                        host
//!        ──Hello{version}────────────────────────►  HostAuth::start(secret, exporter)
//!        ◄─Challenge{kdf, spake_h}────────────────  (attempt charged)
//!   ControllerAuth::start(kdf(pw), exporter)
//!   .finish(spake_h)
//!        ──Auth{spake_c, mac_c}──────────────────►  HostAuth::finish(spake_c, mac_c)
//!        ◄─Welcome{.., mac_h} / Denied────────────
//!   ControllerKeys::verify_host(mac_h)
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use spake2::{Ed25519Group, Identity, Password, Spake2};

/// Label for the TLS exporter (RFC 5705 / RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-quicdesk-pake";
/// Length of the exporter output and of the MACs.
pub const EXPORTER_LEN: usize = 32;
/// A SPAKE2 message is one group element plus a side byte; refuse anything much larger.
pub const MAX_SPAKE_LEN: usize = 64;

const HOST_LABEL: &[u8] = b"quicdesk host confirm";
const CONTROLLER_LABEL: &[u8] = b"quicdesk controller confirm";

/// Authentication failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("wrong password (or the connection is being intercepted)")]
    WrongPassword,
    #[error("malformed authentication message")]
    Malformed,
    #[error("the host could not prove it knows the password (the connection may be intercepted)")]
    HostUnproven,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8], label: &[u8], exporter: &[u8], spake_c: &[u8], spake_h: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length
    let mut m = HmacSha256::new_from_slice(key).expect("hmac takes any key length");
    for part in [label, exporter, spake_c, spake_h] {
        m.update(&(part.len() as u32).to_be_bytes());
        m.update(part);
    }
    m
}

/// The controller's side before it has the host's element.
pub struct ControllerAuth {
    state: Spake2<Ed25519Group>,
    exporter: [u8; EXPORTER_LEN],
    spake_c: Vec<u8>,
}

impl std::fmt::Debug for ControllerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControllerAuth")
    }
}

/// What the controller sends in `Auth`, and what it expects in the host's `Welcome`.
pub struct ControllerKeys {
    /// The controller's SPAKE2 element.
    pub spake_c: Vec<u8>,
    /// The controller's key confirmation.
    pub confirm: [u8; 32],
    expected_host: [u8; 32],
}

impl std::fmt::Debug for ControllerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControllerKeys")
    }
}

impl ControllerAuth {
    /// Starts the exchange with the secret derived from what the user typed.
    pub fn start(secret: &[u8], exporter: [u8; EXPORTER_LEN]) -> Self {
        let (state, spake_c) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(secret),
            &Identity::new(&exporter),
        );
        Self {
            state,
            exporter,
            spake_c,
        }
    }

    /// Takes the host's element; returns the controller's confirmation for `Auth` and the host
    /// confirmation to expect.
    pub fn finish(self, spake_h: &[u8]) -> Result<ControllerKeys, AuthError> {
        if spake_h.len() > MAX_SPAKE_LEN {
            return Err(AuthError::Malformed);
        }
        let key = self
            .state
            .finish(spake_h)
            .map_err(|_| AuthError::Malformed)?;
        let macs = |label| -> [u8; 32] {
            mac(&key, label, &self.exporter, &self.spake_c, spake_h)
                .finalize()
                .into_bytes()
                .into()
        };
        Ok(ControllerKeys {
            confirm: macs(CONTROLLER_LABEL),
            expected_host: macs(HOST_LABEL),
            spake_c: self.spake_c.clone(),
        })
    }
}

impl ControllerKeys {
    /// Checks the host's confirmation (that the host, too, knew the password), in constant time.
    pub fn verify_host(&self, host_mac: &[u8]) -> Result<(), AuthError> {
        if subtle_eq::ct_eq(&self.expected_host, host_mac) {
            Ok(())
        } else {
            Err(AuthError::HostUnproven)
        }
    }
}

/// The host's side, between sending its challenge and receiving `Auth`.
pub struct HostAuth {
    state: Spake2<Ed25519Group>,
    exporter: [u8; EXPORTER_LEN],
    spake_h: Vec<u8>,
}

impl std::fmt::Debug for HostAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostAuth")
    }
}

impl HostAuth {
    /// Starts the exchange; returns the state and the element for the challenge.
    pub fn start(secret: &[u8], exporter: [u8; EXPORTER_LEN]) -> (Self, Vec<u8>) {
        let (state, spake_h) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(secret),
            &Identity::new(&exporter),
        );
        let msg = spake_h.clone();
        (
            Self {
                state,
                exporter,
                spake_h,
            },
            msg,
        )
    }

    /// Checks the controller's element and confirmation; on success returns the host's
    /// confirmation for `Welcome`.
    pub fn finish(self, spake_c: &[u8], controller_mac: &[u8]) -> Result<[u8; 32], AuthError> {
        if spake_c.len() > MAX_SPAKE_LEN {
            return Err(AuthError::Malformed);
        }
        let key = self
            .state
            .finish(spake_c)
            .map_err(|_| AuthError::Malformed)?;
        let expected: [u8; 32] = mac(
            &key,
            CONTROLLER_LABEL,
            &self.exporter,
            spake_c,
            &self.spake_h,
        )
        .finalize()
        .into_bytes()
        .into();
        if !subtle_eq::ct_eq(&expected, controller_mac) {
            return Err(AuthError::WrongPassword);
        }
        Ok(
            mac(&key, HOST_LABEL, &self.exporter, spake_c, &self.spake_h)
                .finalize()
                .into_bytes()
                .into(),
        )
    }
}

mod subtle_eq {
    /// Constant-time equality for short secrets of public length.
    pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pw_c: &[u8], pw_h: &[u8], exp_c: [u8; 32], exp_h: [u8; 32]) -> Result<(), AuthError> {
        let (h, spake_h) = HostAuth::start(pw_h, exp_h);
        let keys = ControllerAuth::start(pw_c, exp_c).finish(&spake_h)?;
        let host_mac = h.finish(&keys.spake_c, &keys.confirm)?;
        keys.verify_host(&host_mac)
    }

    #[test]
    fn same_password_same_session_succeeds() {
        assert_eq!(run(b"kq8v2mzx", b"kq8v2mzx", [7; 32], [7; 32]), Ok(()));
    }

    #[test]
    fn wrong_password_fails_at_the_host() {
        assert_eq!(
            run(b"kq8v2mzx", b"kq8v2mzy", [7; 32], [7; 32]),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn different_tls_sessions_fail() {
        // a relay terminating TLS on both sides would see two different exporters
        assert_eq!(
            run(b"kq8v2mzx", b"kq8v2mzx", [7; 32], [8; 32]),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn a_host_without_the_password_is_caught_by_the_controller() {
        let keys = ControllerAuth::start(b"right", [1; 32])
            .finish(&HostAuth::start(b"wrong", [1; 32]).1)
            .unwrap();
        assert_eq!(keys.verify_host(&[0; 32]), Err(AuthError::HostUnproven));
    }

    #[test]
    fn garbage_messages_are_errors_not_panics() {
        for bad in [&[][..], &[0u8; 10], &[0xff; 33], &[0x41; 64], &[1; 200]] {
            let (h, _) = HostAuth::start(b"1", [0; 32]);
            // Either not a group element, or an element whose proof fails: never a pass.
            assert!(matches!(
                h.finish(bad, &[0; 32]),
                Err(AuthError::Malformed | AuthError::WrongPassword)
            ));
            assert!(matches!(
                ControllerAuth::start(b"1", [0; 32]).finish(bad),
                Err(AuthError::Malformed)
            ));
        }
    }
}
