//! The host's access passwords: one-time passwords, and fixed passwords stored as argon2id
//! hashes.
//!
//! - A **one-time password** is 8 random characters of Crockford's base 32 (40 bits), shown as
//!   `abcd-efgh`; typing is forgiving (case, dashes and spaces are ignored, `o` reads as `0`,
//!   `i` and `l` as `1`). The host replaces it after every session and when it expires.
//! - A **fixed password** (unattended access) must be strong ([`check_strength`]) and is kept
//!   only as an argon2id hash with its salt and cost (`password.json`, mode 0600, written by
//!   `peer password set`). The SPAKE2 exchange runs over that hash: the host sends the salt and
//!   cost in its challenge and the controller derives the same hash from what its user typed. So
//!   the clear password is stored nowhere, and whoever reads the host's file still has to break
//!   argon2id to learn the password itself.
//!
//! Either way the controller proves the password without sending it (see [`crate::auth`]).

use std::path::{Path, PathBuf};

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

pub use proto::session::{Cost, Kdf};

/// Crockford's base-32 alphabet, lower case.
const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Characters of a one-time password.
pub const ONE_TIME_LEN: usize = 8;
/// Bits of a one-time password.
pub const ONE_TIME_BITS: u32 = 5 * ONE_TIME_LEN as u32;
pub use proto::strength::{MIN_BITS, MIN_LEN};
/// Name of the stored fixed password in the data directory.
pub const FILE_NAME: &str = "password.json";

/// The argon2id cost of new hashes: OWASP's recommended minimum (19 MiB, 2 passes).
pub const DEFAULT_COST: Cost = Cost {
    m_kib: 19 * 1024,
    t: 2,
    p: 1,
};
/// The most a host may ask a controller to spend on one derivation (a hostile host must not be
/// able to make the controller allocate gigabytes).
const MAX_COST: Cost = Cost {
    m_kib: 256 * 1024,
    t: 16,
    p: 8,
};

/// What went wrong with a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    #[error("password too weak: {0}")]
    Weak(String),
    #[error("the host asks for an unreasonable password hashing cost ({0})")]
    Cost(String),
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
}

/// The secret for `typed` under `kdf`: what [`Stored::secret`] holds on the host.
pub fn derive(kdf: &Kdf, typed: &str) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    match kdf {
        Kdf::OneTime => Ok(Zeroizing::new(normalize_one_time(typed).into_bytes())),
        Kdf::Argon2id { salt, cost } => {
            if cost.m_kib > MAX_COST.m_kib || cost.t > MAX_COST.t || cost.p > MAX_COST.p {
                return Err(PasswordError::Cost(format!("{cost:?}")));
            }
            argon2id(typed.as_bytes(), salt, *cost)
        }
    }
}

fn argon2id(pw: &[u8], salt: &[u8; 16], cost: Cost) -> Result<Zeroizing<Vec<u8>>, PasswordError> {
    let params = Params::new(cost.m_kib, cost.t, cost.p, Some(32))
        .map_err(|e| PasswordError::Cost(e.to_string()))?;
    let mut out = Zeroizing::new(vec![0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(pw, salt, &mut out)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    Ok(out)
}

/// A fresh one-time password, formatted `abcd-efgh`.
pub fn one_time() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let chars: String = (0..ONE_TIME_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// What a one-time password is compared as: lower case, without separators, with the letters
/// people confuse with digits read as those digits.
pub fn normalize_one_time(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' ' | '_' | '.'))
        .map(|c| match c.to_ascii_lowercase() {
            'o' => '0',
            'i' | 'l' => '1',
            c => c,
        })
        .collect()
}

/// Refuses a fixed password shorter than [`MIN_LEN`] or weaker than [`MIN_BITS`]
/// ([`proto::strength::check`], the rule the rendezvous's console accounts follow too).
pub fn check_strength(pw: &str) -> Result<(), PasswordError> {
    proto::strength::check(pw).map_err(PasswordError::Weak)
}

/// A fixed password as the host keeps it: argon2id hash, salt and cost.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(with = "hex16")]
    salt: [u8; 16],
    cost: Cost,
    #[serde(with = "hex32")]
    hash: [u8; 32],
}

impl std::fmt::Debug for Stored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stored")
            .field("cost", &self.cost)
            .finish_non_exhaustive()
    }
}

impl Stored {
    /// Hashes a new fixed password (refused if weak) with a random salt and `cost`.
    pub fn derive(pw: &str, cost: Cost) -> Result<Self, PasswordError> {
        check_strength(pw)?;
        let salt: [u8; 16] = rand::random();
        let secret = argon2id(pw.as_bytes(), &salt, cost)?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&secret);
        Ok(Self { salt, cost, hash })
    }

    /// What the host tells the controller.
    pub fn kdf(&self) -> Kdf {
        Kdf::Argon2id {
            salt: self.salt,
            cost: self.cost,
        }
    }

    /// The secret the exchange runs over.
    pub fn secret(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.hash.to_vec())
    }

    /// Where the host of `data_dir` keeps its fixed password.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(FILE_NAME)
    }

    /// Saves it (mode 0600, never through a link).
    pub fn save(&self, data_dir: &Path) -> Result<(), PasswordError> {
        let path = Self::path(data_dir);
        let file_err = |why: String| PasswordError::File {
            path: path.clone(),
            why,
        };
        certs::create_private_dir(data_dir).map_err(|e| file_err(e.to_string()))?;
        // serializing a plain struct to JSON cannot fail
        let json = serde_json::to_vec_pretty(self).expect("serializes");
        certs::write_private_file(&path, &json).map_err(|e| file_err(e.to_string()))
    }

    /// Loads the stored password of `data_dir`; `Ok(None)` if there is none.
    pub fn load(data_dir: &Path) -> Result<Option<Self>, PasswordError> {
        let path = Self::path(data_dir);
        let file_err = |why: String| PasswordError::File {
            path: path.clone(),
            why,
        };
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(file_err(e.to_string())),
            Ok(_) => {}
        }
        certs::check_private_file(&path).map_err(|e| file_err(e.to_string()))?;
        let bytes = std::fs::read(&path).map_err(|e| file_err(e.to_string()))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| file_err(format!("unreadable ({e}); set the password again")))
    }

    /// Removes the stored password (the host goes back to one-time passwords).
    pub fn remove(data_dir: &Path) -> std::io::Result<bool> {
        match std::fs::remove_file(Self::path(data_dir)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

macro_rules! hex_array {
    ($name:ident, $n:expr) => {
        mod $name {
            use serde::{Deserialize, Deserializer, Serializer};

            pub fn serialize<S: Serializer>(b: &[u8; $n], s: S) -> Result<S::Ok, S::Error> {
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                s.serialize_str(&hex)
            }

            pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; $n], D::Error> {
                let s = String::deserialize(d)?;
                let bad = || serde::de::Error::custom(concat!("expected ", $n, " bytes in hex"));
                if s.len() != 2 * $n || !s.is_ascii() {
                    return Err(bad());
                }
                let mut out = [0u8; $n];
                for (i, o) in out.iter_mut().enumerate() {
                    *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                Ok(out)
            }
        }
    };
}
hex_array!(hex16, 16);
hex_array!(hex32, 32);

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap cost for tests of the logic (the real cost is checked once below).
    const CHEAP: Cost = Cost {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    #[test]
    fn one_time_passwords_have_40_bits_and_forgiving_input() {
        let pw = one_time();
        assert_eq!(pw.len(), ONE_TIME_LEN + 1);
        assert_eq!(&pw[4..5], "-");
        let n = normalize_one_time(&pw);
        assert_eq!(n.len(), ONE_TIME_LEN);
        assert!(n.bytes().all(|b| ALPHABET.contains(&b)));
        assert_ne!(one_time(), one_time());
        assert_eq!(
            normalize_one_time("AbOl-iK 9z"),
            normalize_one_time("ab01-1k9z")
        );
        assert_eq!(
            derive(&Kdf::OneTime, "AB01 1K9Z").unwrap().as_slice(),
            b"ab011k9z"
        );
    }

    #[test]
    fn weak_fixed_passwords_are_refused() {
        for weak in [
            "",
            "123456",
            "password",
            "aaaaaaaaaaaaaaaaaaaaa",
            "123456789012",
        ] {
            assert!(
                matches!(check_strength(weak), Err(PasswordError::Weak(_))),
                "{weak:?} passed"
            );
        }
        for strong in [
            "correct horse battery",
            "Tr0ub4dor&3xyz",
            "kq8v-2mzx-77ta-pw",
        ] {
            check_strength(strong).unwrap_or_else(|e| panic!("{strong:?}: {e}"));
        }
    }

    #[test]
    fn stored_hash_is_what_the_controller_derives_and_holds_no_clear_text() {
        let dir = tempfile::tempdir().unwrap();
        let pw = "correct horse battery";
        let stored = Stored::derive(pw, CHEAP).unwrap();
        stored.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(Stored::path(dir.path())).unwrap();
        assert!(!text.contains("horse"), "{text}");
        let loaded = Stored::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, stored);
        assert_eq!(
            derive(&loaded.kdf(), pw).unwrap().as_slice(),
            loaded.secret().as_slice()
        );
        assert_ne!(
            derive(&loaded.kdf(), "correct horse batterY")
                .unwrap()
                .as_slice(),
            loaded.secret().as_slice()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Stored::path(dir.path()))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(Stored::remove(dir.path()).unwrap());
        assert_eq!(Stored::load(dir.path()).unwrap(), None);
    }

    #[test]
    fn a_host_cannot_ask_for_a_ruinous_cost() {
        let kdf = Kdf::Argon2id {
            salt: [0; 16],
            cost: Cost {
                m_kib: 4 * 1024 * 1024,
                t: 1,
                p: 1,
            },
        };
        assert!(matches!(derive(&kdf, "x"), Err(PasswordError::Cost(_))));
    }

    #[test]
    fn the_default_cost_derives() {
        let s = Stored::derive("correct horse battery", DEFAULT_COST).unwrap();
        assert_eq!(derive(&s.kdf(), "correct horse battery").unwrap().len(), 32);
    }
}
