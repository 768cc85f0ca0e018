//! The invite: one string an operator hands out (`rendezvous invite`) and a peer takes
//! (`peer join`), saying where the rendezvous is and which key it holds, so that nobody has to
//! copy a 64-digit fingerprint into a command line.
//!
//! ```text
//!  qd1:rv.example.com:7700,198.51.100.7:7700/3f9c…(64 hex digits: the server key's SHA-256)
//!  └┬┘ └──────── 1 to 4 addresses, host:port ┘ └ fingerprint ┘
//!  qd1:rv.example.com:7700/3f9c…/qde_0a1b2c3d4e5f_…   (with an enrollment token)
//! ```
//!
//! The optional third part is an enrollment token the operator issued in the console, for a
//! rendezvous that admits enrolled keys only: `peer join` presents it once for the peer's key.
//! It is a secret (whoever holds it may enroll a key, as many times as it allows): hand such
//! an invite over as you would a password.
//!
//! Hosts are DNS names, IPv4 addresses or bracketed IPv6 addresses (not the unspecified
//! address a server listens on). The string carries no
//! secret: the fingerprint is what a peer pins (the enrollment token, when there is one,
//! is the only secret), so a mangled or forged invite can only fail to
//! connect (TLS refuses any other key), never lead a peer to trust another server. Parsing is
//! strict (a clear error for anything off) and bounded ([`MAX_LEN`]).

use std::fmt;
use std::str::FromStr;

use certs::Fingerprint;

/// What every invite starts with (the format's version).
pub const PREFIX: &str = "qd1:";
/// Most addresses in one invite.
pub const MAX_ADDRESSES: usize = 4;
/// Longest invite accepted, in bytes.
pub const MAX_LEN: usize = 1024;
/// Longest host name (DNS's limit).
const MAX_HOST_LEN: usize = 253;

/// Where a rendezvous is, and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// `host:port` each, in the order to try; 1 to [`MAX_ADDRESSES`].
    pub addresses: Vec<String>,
    pub fingerprint: Fingerprint,
    /// An enrollment token (`qde_…`), for a rendezvous that admits enrolled keys only.
    pub token: Option<String>,
}

/// Why a string is not an invite.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    #[error("not an invite: it should start with {PREFIX:?} (as `rendezvous invite` prints it)")]
    Prefix,
    #[error("the invite is longer than {MAX_LEN} bytes")]
    TooLong,
    #[error("the invite has no fingerprint after the addresses ('/' and 64 hex digits)")]
    NoFingerprint,
    #[error("the invite's fingerprint is not 64 hex digits")]
    Fingerprint,
    #[error("the invite names no address")]
    NoAddress,
    #[error("the invite names more than {MAX_ADDRESSES} addresses")]
    TooManyAddresses,
    #[error("the invite's enrollment token is not qde_ and 1 to 100 letters, digits, '-' or '_'")]
    Token,
    #[error(
        "{0:?} is not host:port (a DNS name, IPv4 address or [IPv6] address, and a port 1-65535)"
    )]
    Address(String),
}

impl Invite {
    /// An invite for `addresses` (each checked as [`FromStr`] checks them).
    ///
    /// # Errors
    ///
    /// The [`InviteError`] parsing the result would give.
    pub fn new(addresses: Vec<String>, fingerprint: Fingerprint) -> Result<Self, InviteError> {
        let invite = Self {
            addresses,
            fingerprint,
            token: None,
        };
        invite.to_string().parse()
    }

    /// This invite with an enrollment token.
    ///
    /// # Errors
    ///
    /// [`InviteError::Token`] for a token of the wrong shape.
    pub fn with_token(mut self, token: &str) -> Result<Self, InviteError> {
        if !is_token(token) {
            return Err(InviteError::Token);
        }
        self.token = Some(token.to_owned());
        Ok(self)
    }
}

/// `qde_` and 1 to 100 of `[A-Za-z0-9_-]`.
fn is_token(t: &str) -> bool {
    t.strip_prefix("qde_").is_some_and(|r| {
        (1..=100).contains(&r.len())
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    })
}

impl fmt::Display for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}/{}",
            self.addresses.join(","),
            self.fingerprint
        )?;
        match &self.token {
            Some(t) => write!(f, "/{t}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Invite {
    type Err = InviteError;

    /// Reads an invite; surrounding white space (from copying it) is ignored.
    fn from_str(s: &str) -> Result<Self, InviteError> {
        let s = s.trim();
        if s.len() > MAX_LEN {
            return Err(InviteError::TooLong);
        }
        let rest = s.strip_prefix(PREFIX).ok_or(InviteError::Prefix)?;
        let mut parts = rest.split('/');
        let (addrs, fp, token) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(f), t, None) => (a, f, t),
            (_, None, ..) => return Err(InviteError::NoFingerprint),
            _ => return Err(InviteError::Token),
        };
        if token.is_some_and(|t| !is_token(t)) {
            return Err(InviteError::Token);
        }
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(InviteError::Fingerprint);
        }
        let fingerprint = fp.parse().map_err(|_| InviteError::Fingerprint)?;
        if addrs.is_empty() {
            return Err(InviteError::NoAddress);
        }
        let addresses: Vec<String> = addrs.split(',').map(str::to_owned).collect();
        if addresses.len() > MAX_ADDRESSES {
            return Err(InviteError::TooManyAddresses);
        }
        if let Some(bad) = addresses.iter().find(|a| !is_host_port(a)) {
            return Err(InviteError::Address(bad.clone()));
        }
        Ok(Self {
            addresses,
            fingerprint,
            token: token.map(str::to_owned),
        })
    }
}

/// `host:port` with a DNS name, an IPv4 address or a bracketed IPv6 address.
fn is_host_port(a: &str) -> bool {
    let Some((host, port)) = a.rsplit_once(':') else {
        return false;
    };
    let port_ok = !port.starts_with('0') && port.parse::<u16>().is_ok_and(|p| p > 0);
    // An unspecified address is where a server listens, never where a peer can reach it.
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| !ip.is_unspecified())
    } else {
        is_dns_name(host)
            && host
                .parse::<std::net::Ipv4Addr>()
                .map_or(true, |ip| !ip.is_unspecified())
    };
    port_ok && host_ok
}

/// A DNS name (which an IPv4 address also is, textually): labels of letters, digits and
/// hyphens, 1 to 63 bytes each, not starting or ending with a hyphen.
fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= MAX_HOST_LEN
        && h.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "3f9c0a51d2b7e8f4a6c1d0e9b8a7f6e5d4c3b2a1908f7e6d5c4b3a2918070605";

    fn fp() -> Fingerprint {
        FP.parse().unwrap()
    }

    #[test]
    fn an_invite_reads_back_what_it_says() {
        for addrs in [
            vec!["rv.example.com:7700"],
            vec!["198.51.100.7:7700", "[2001:db8::7]:7700", "rv:1"],
        ] {
            let addrs: Vec<String> = addrs.into_iter().map(String::from).collect();
            let invite = Invite::new(addrs.clone(), fp()).unwrap();
            let text = invite.to_string();
            assert!(text.starts_with(PREFIX) && text.ends_with(FP), "{text}");
            assert_eq!(format!("  {text}\n").parse::<Invite>().unwrap(), invite);
            assert_eq!(invite.addresses, addrs);
        }
        // Upper-case hex, as some tools print it, is the same key.
        let upper = format!("{PREFIX}rv:7700/{}", FP.to_uppercase());
        assert_eq!(upper.parse::<Invite>().unwrap().fingerprint, fp());
    }

    #[test]
    fn anything_off_is_refused_with_a_reason() {
        let cases: &[(&str, InviteError)] = &[
            ("rv:7700/x", InviteError::Prefix),
            ("qd2:rv:7700/x", InviteError::Prefix),
            ("qd1:rv:7700", InviteError::NoFingerprint),
            ("qd1:rv:7700/abc", InviteError::Fingerprint),
            ("qd1:/FP", InviteError::NoAddress),
            ("qd1:a:1,b:2,c:3,d:4,e:5/FP", InviteError::TooManyAddresses),
        ];
        for (s, want) in cases {
            assert_eq!(
                &s.replace("FP", FP).parse::<Invite>().unwrap_err(),
                want,
                "{s}"
            );
        }
        for bad in [
            "rv",
            "rv:",
            "rv:0",
            "rv:65536",
            "rv:07700",
            ":7700",
            "-rv:7700",
            "r v:7700",
            "rv..x:7700",
            "[::1:7700",
            "[zz::1]:7700",
            "rv:7700\u{0}",
            "rv\u{1b}[2J:7700",
            "0.0.0.0:7700",
            "[::]:7700",
        ] {
            let s = format!("{PREFIX}{bad}/{FP}");
            assert!(
                matches!(s.parse::<Invite>(), Err(InviteError::Address(_))),
                "{bad:?}"
            );
        }
        let long = format!("{PREFIX}{}:1/{FP}", "a".repeat(MAX_LEN));
        assert_eq!(long.parse::<Invite>().unwrap_err(), InviteError::TooLong);
        let long_label = format!("{PREFIX}{}.x:1/{FP}", "a".repeat(64));
        assert!(long_label.parse::<Invite>().is_err());
        assert!(Invite::new(vec![], fp()).is_err());
        for bad in ["qde_", "qde_a b", "xyz", "qde_a/qde_b", "qde_\u{0}"] {
            let s = format!("{PREFIX}rv:7700/{FP}/{bad}");
            assert_eq!(
                s.parse::<Invite>().unwrap_err(),
                InviteError::Token,
                "{bad:?}"
            );
        }
        let long_token = format!("{PREFIX}rv:7700/{FP}/qde_{}", "a".repeat(101));
        assert_eq!(
            long_token.parse::<Invite>().unwrap_err(),
            InviteError::Token
        );
    }

    #[test]
    fn an_enrollment_token_rides_along() {
        let invite = Invite::new(vec!["rv:7700".into()], fp())
            .unwrap()
            .with_token("qde_0a1b2c3d4e5f_Zx-9")
            .unwrap();
        let text = invite.to_string();
        assert_eq!(text, format!("{PREFIX}rv:7700/{FP}/qde_0a1b2c3d4e5f_Zx-9"));
        assert_eq!(text.parse::<Invite>().unwrap(), invite);
        assert!(
            Invite::new(vec!["rv:1".into()], fp())
                .unwrap()
                .with_token("nope")
                .is_err()
        );
    }
}
