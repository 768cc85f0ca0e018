//! Password authentication between controller and host: SPAKE2 bound to the TLS session.
//!
//! Both sides derive the same 32-byte TLS exporter from the peer-to-peer QUIC connection and use
//! it as the SPAKE2 identity and inside the key confirmation MACs. A man in the middle (a lying
//! rendezvous, a relay) terminates two different TLS sessions, so its exporters differ and the
//! exchange fails; a captured transcript allows no offline guessing of the password.
//!
//! Sans-IO: these functions turn messages into messages; the caller moves them over the control
//! stream.
//!
//! ```text
//! controller                                   host
//!   start(pw, exporter) ──Hello{spake_c}──────►  respond(pw, exporter, spake_c)
//!   finish(spake_h, mac_h) ◄─HelloAck{spake_h, mac_h}
//!                        ──Confirm{mac_c}────►  verify(mac_c)
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

/// The controller's side, between sending `Hello` and receiving `HelloAck`.
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

impl ControllerAuth {
    /// Starts the exchange; returns the state and the SPAKE2 message for `Hello`.
    pub fn start(password: &str, exporter: [u8; EXPORTER_LEN]) -> (Self, Vec<u8>) {
        let (state, spake_c) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(password),
            &Identity::new(&exporter),
        );
        let msg = spake_c.clone();
        (
            Self {
                state,
                exporter,
                spake_c,
            },
            msg,
        )
    }

    /// Checks the host's confirmation; returns the controller's confirmation for `Confirm`.
    pub fn finish(self, spake_h: &[u8], host_mac: &[u8]) -> Result<[u8; 32], AuthError> {
        if spake_h.len() > MAX_SPAKE_LEN {
            return Err(AuthError::Malformed);
        }
        let key = self
            .state
            .finish(spake_h)
            .map_err(|_| AuthError::Malformed)?;
        mac(&key, HOST_LABEL, &self.exporter, &self.spake_c, spake_h)
            .verify_slice(host_mac)
            .map_err(|_| AuthError::WrongPassword)?;
        Ok(mac(
            &key,
            CONTROLLER_LABEL,
            &self.exporter,
            &self.spake_c,
            spake_h,
        )
        .finalize()
        .into_bytes()
        .into())
    }
}

/// The host's side, between sending `HelloAck` and receiving `Confirm`.
#[derive(Debug)]
pub struct HostAuth {
    expected: [u8; 32],
}

impl HostAuth {
    /// Answers a controller's `Hello`: returns the state, the SPAKE2 message and the host MAC.
    pub fn respond(
        password: &str,
        exporter: [u8; EXPORTER_LEN],
        spake_c: &[u8],
    ) -> Result<(Self, Vec<u8>, [u8; 32]), AuthError> {
        if spake_c.len() > MAX_SPAKE_LEN {
            return Err(AuthError::Malformed);
        }
        let (state, spake_h) = Spake2::<Ed25519Group>::start_symmetric(
            &Password::new(password),
            &Identity::new(&exporter),
        );
        let key = state.finish(spake_c).map_err(|_| AuthError::Malformed)?;
        let host_mac = mac(&key, HOST_LABEL, &exporter, spake_c, &spake_h)
            .finalize()
            .into_bytes()
            .into();
        let expected = mac(&key, CONTROLLER_LABEL, &exporter, spake_c, &spake_h)
            .finalize()
            .into_bytes()
            .into();
        Ok((Self { expected }, spake_h, host_mac))
    }

    /// Checks the controller's `Confirm` in constant time.
    pub fn verify(&self, controller_mac: &[u8]) -> Result<(), AuthError> {
        use subtle_eq::ct_eq;
        if ct_eq(&self.expected, controller_mac) {
            Ok(())
        } else {
            Err(AuthError::WrongPassword)
        }
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

    fn run(pw_c: &str, pw_h: &str, exp_c: [u8; 32], exp_h: [u8; 32]) -> Result<(), AuthError> {
        let (c, hello) = ControllerAuth::start(pw_c, exp_c);
        let (h, spake_h, mac_h) = HostAuth::respond(pw_h, exp_h, &hello)?;
        let mac_c = c.finish(&spake_h, &mac_h)?;
        h.verify(&mac_c)
    }

    #[test]
    fn same_password_same_session_succeeds() {
        assert_eq!(run("123456", "123456", [7; 32], [7; 32]), Ok(()));
    }

    #[test]
    fn wrong_password_fails() {
        assert_eq!(
            run("123456", "123457", [7; 32], [7; 32]),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn different_tls_sessions_fail() {
        // a relay terminating TLS on both sides would see two different exporters
        assert_eq!(
            run("123456", "123456", [7; 32], [8; 32]),
            Err(AuthError::WrongPassword)
        );
    }

    #[test]
    fn garbage_messages_are_errors_not_panics() {
        for bad in [&[][..], &[0u8; 10], &[0xff; 33], &[0x41; 64], &[1; 200]] {
            assert!(HostAuth::respond("1", [0; 32], bad).is_err());
            let (c, _) = ControllerAuth::start("1", [0; 32]);
            assert!(c.finish(bad, &[0; 32]).is_err());
        }
    }
}
