//! Access codes: `ISR-` followed by 8 decimal digits, the last one a Damm check digit.
//!
//! The Damm algorithm detects every single-digit error and every transposition of two adjacent
//! digits, which covers the usual ways a person mistypes a code read out over the phone.

use std::fmt;
use std::str::FromStr;

/// Seven payload digits plus one check digit.
const DIGITS: usize = 8;
const PREFIX: &str = "ISR-";

/// The Damm quasigroup of order 10 (a weakly totally anti-symmetric quasigroup with a zero
/// diagonal), as published by H. Michael Damm (2004).
const DAMM: [[u8; 10]; 10] = [
    [0, 3, 1, 7, 5, 9, 8, 6, 4, 2],
    [7, 0, 9, 2, 1, 5, 4, 8, 6, 3],
    [4, 2, 0, 6, 8, 7, 1, 3, 5, 9],
    [1, 7, 5, 0, 9, 8, 3, 4, 2, 6],
    [6, 1, 2, 3, 0, 4, 5, 9, 7, 8],
    [3, 6, 7, 4, 2, 0, 9, 5, 8, 1],
    [5, 8, 6, 9, 7, 2, 0, 1, 3, 4],
    [8, 9, 4, 5, 3, 6, 2, 0, 1, 7],
    [9, 4, 3, 8, 6, 1, 7, 2, 0, 5],
    [2, 5, 8, 1, 4, 3, 6, 7, 9, 0],
];

fn damm_interim(digits: &[u8]) -> u8 {
    digits
        .iter()
        .fold(0u8, |acc, &d| DAMM[acc as usize][d as usize])
}

/// Why a string is not an access code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodeError {
    #[error("an access code looks like ISR-12345678")]
    Format,
    #[error("the code's check digit does not match: a digit is mistyped or two are swapped")]
    CheckDigit,
}

/// A validated access code such as `ISR-48213370`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccessCode([u8; DIGITS]);

impl AccessCode {
    /// A code from seven payload digits (each 0..=9), appending the check digit.
    pub fn from_payload(payload: [u8; DIGITS - 1]) -> Result<Self, CodeError> {
        if payload.iter().any(|&d| d > 9) {
            return Err(CodeError::Format);
        }
        let mut digits = [0u8; DIGITS];
        digits[..DIGITS - 1].copy_from_slice(&payload);
        digits[DIGITS - 1] = damm_interim(&payload);
        Ok(Self(digits))
    }

    /// Its eight digits (the last is the check digit); codes order as their digits do.
    pub fn digits(&self) -> [u8; DIGITS] {
        self.0
    }

    /// A random code.
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        let mut payload = [0u8; DIGITS - 1];
        for d in &mut payload {
            *d = rng.random_range(0..10);
        }
        // payload digits are all below 10 by construction
        Self::from_payload(payload).expect("digits in range")
    }
}

impl FromStr for AccessCode {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, CodeError> {
        let s = s.trim();
        let rest = s
            .get(..PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(PREFIX))
            .map(|_| &s[PREFIX.len()..])
            .ok_or(CodeError::Format)?;
        // Accept "ISR-1234 5678" and "ISR-1234-5678" as typed by people.
        let mut digits = [0u8; DIGITS];
        let mut n = 0;
        for c in rest.chars() {
            if c == ' ' || c == '-' {
                continue;
            }
            let d = c.to_digit(10).ok_or(CodeError::Format)? as u8;
            if n == DIGITS {
                return Err(CodeError::Format);
            }
            digits[n] = d;
            n += 1;
        }
        if n != DIGITS {
            return Err(CodeError::Format);
        }
        if damm_interim(&digits) != 0 {
            return Err(CodeError::CheckDigit);
        }
        Ok(Self(digits))
    }
}

/// A position in the order of codes, as a page cursor: `ISR-` and eight digits, check digit
/// not checked (a cursor need not be a code anybody holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CodeCursor(pub [u8; DIGITS]);

impl CodeCursor {
    /// Whether `code` comes after this position.
    pub fn is_before(&self, code: &AccessCode) -> bool {
        code.0 > self.0
    }
}

impl From<AccessCode> for CodeCursor {
    fn from(c: AccessCode) -> Self {
        Self(c.0)
    }
}

impl FromStr for CodeCursor {
    type Err = CodeError;

    fn from_str(s: &str) -> Result<Self, CodeError> {
        let rest = s.strip_prefix(PREFIX).ok_or(CodeError::Format)?;
        if rest.len() != DIGITS || !rest.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CodeError::Format);
        }
        let mut digits = [0u8; DIGITS];
        for (d, b) in digits.iter_mut().zip(rest.bytes()) {
            *d = b - b'0';
        }
        Ok(Self(digits))
    }
}

impl fmt::Display for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        for d in self.0 {
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AccessCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for AccessCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AccessCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_damm_vector() {
        // Damm's worked example: 572 -> check digit 4.
        assert_eq!(damm_interim(&[5, 7, 2]), 4);
        assert_eq!(damm_interim(&[5, 7, 2, 4]), 0);
    }

    #[test]
    fn parse_display_round_trip() {
        let code = AccessCode::from_payload([4, 8, 2, 1, 3, 3, 7]).unwrap();
        let s = code.to_string();
        assert!(s.starts_with("ISR-") && s.len() == 12, "{s}");
        assert_eq!(s.parse::<AccessCode>().unwrap(), code);
        assert_eq!(s.to_lowercase().parse::<AccessCode>().unwrap(), code);
        let spaced = format!("{} {}", &s[..8], &s[8..]);
        assert_eq!(spaced.parse::<AccessCode>().unwrap(), code);
    }

    #[test]
    fn every_single_digit_error_and_adjacent_swap_is_caught() {
        let mut rng = rand::rng();
        for _ in 0..2000 {
            let code = AccessCode::random(&mut rng);
            let digits = code.0;
            for i in 0..DIGITS {
                for wrong in 0..10u8 {
                    if wrong == digits[i] {
                        continue;
                    }
                    let mut d = digits;
                    d[i] = wrong;
                    assert_ne!(damm_interim(&d), 0, "{code} with digit {i} -> {wrong}");
                }
                if i + 1 < DIGITS && digits[i] != digits[i + 1] {
                    let mut d = digits;
                    d.swap(i, i + 1);
                    assert_ne!(damm_interim(&d), 0, "{code} with {i},{} swapped", i + 1);
                }
            }
        }
    }

    #[test]
    fn bad_codes_are_refused() {
        for bad in [
            "",
            "ISR-",
            "ISR-1234567",
            "ISR-123456789",
            "XYZ-12345678",
            "ISR-1234567a",
            "ISR-１２３４５６７８",
        ] {
            assert_eq!(bad.parse::<AccessCode>(), Err(CodeError::Format), "{bad:?}");
        }
        let good = AccessCode::from_payload([1, 2, 3, 4, 5, 6, 7])
            .unwrap()
            .to_string();
        let mut wrong = good.into_bytes();
        wrong[11] = if wrong[11] == b'0' { b'1' } else { b'0' };
        let wrong = String::from_utf8(wrong).unwrap();
        assert_eq!(wrong.parse::<AccessCode>(), Err(CodeError::CheckDigit));
    }
}
