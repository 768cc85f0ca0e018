//! Identity and trust for quicdesk: persistent key pairs, self-signed certificates, fingerprints,
//! and rustls configurations that accept exactly one pinned peer.
//!
//! ```text
//!   data dir ──► Identity::load_or_create ──► (key 0600, rcgen self-signed cert)
//!                      │                               │
//!                      ▼                               ▼
//!   pinned Fingerprint ──► client_config()     server_config()  ──► quinn
//!                      (server must hold the   (client must prove a key;
//!                       pinned key)             its fingerprint is read after
//!                                               the handshake by the caller)
//! ```
//!
//! A peer is known by its [`Fingerprint`]: the SHA-256 of the DER SubjectPublicKeyInfo of its
//! certificate. Certificates are self-signed and carry no meaning beyond the key they hold, so
//! they are made anew from the key at every start; the fingerprint stays the same.
//!
//! What this crate does **not** do: it opens no socket, decides no policy about *which*
//! fingerprint to trust (that is the caller's, e.g. the rendezvous binding codes to keys), and it
//! never offers a way to turn verification off. Every handshake signature is verified with the
//! ring provider's algorithms; a certificate whose key does not match the pin is refused.

#![forbid(unsafe_code)]

mod files;
mod web;

pub use files::{
    check_private_dir, check_private_file, create_private_dir, ensure_private_file,
    open_private_file, write_private_file,
};
pub use web::{certificate_pem, certificate_sha256, web_server_config_from_files};

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// Errors from loading identities, parsing fingerprints and building TLS configs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid private key: {source}")]
    BadKey {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid fingerprint: {0}")]
    BadFingerprint(&'static str),
    #[error("{path}: private file is readable by others (mode {mode:o}); run: chmod 600 {path}")]
    InsecureKeyFile { path: PathBuf, mode: u32 },
    #[error("{path}: refused: {why}")]
    InsecurePath { path: PathBuf, why: String },
}

/// SHA-256 of a certificate's DER-encoded SubjectPublicKeyInfo.
///
/// Displays as 64 lowercase hex digits; parses from that form with or without `:` separators and
/// in either case, so fingerprints can be pasted from logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Fingerprint of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Self(Sha256::digest(spki_der).into())
    }

    /// Fingerprint of a DER certificate (parses it to find the SubjectPublicKeyInfo).
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<Self, Error> {
        let parsed = ParsedCertificate::try_from(cert)?;
        Ok(Self::of_spki(parsed.subject_public_key_info().as_ref()))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// From raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            self.0.serialize(s)
        }
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            <[u8; 32]>::deserialize(d).map(Self)
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let mut out = [0u8; 32];
        let mut n = 0usize;
        let mut high: Option<u8> = None;
        for c in s.trim().chars() {
            if c == ':' {
                continue;
            }
            let v = c
                .to_digit(16)
                .ok_or(Error::BadFingerprint("expected hex digits"))? as u8;
            match high.take() {
                None => high = Some(v),
                Some(h) => {
                    if n == 32 {
                        return Err(Error::BadFingerprint("longer than 64 hex digits"));
                    }
                    out[n] = (h << 4) | v;
                    n += 1;
                }
            }
        }
        if n != 32 || high.is_some() {
            return Err(Error::BadFingerprint("expected 64 hex digits (sha-256)"));
        }
        Ok(Self(out))
    }
}

/// A persistent key pair and the self-signed certificate made from it.
pub struct Identity {
    key_pem: String,
    cert: CertificateDer<'static>,
    fingerprint: Fingerprint,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Where [`Identity::load_or_create`] keeps the key named `name` in `dir`.
    pub fn key_path(dir: &Path, name: &str) -> std::path::PathBuf {
        dir.join(format!("{name}.key"))
    }

    /// Loads `<dir>/<name>.key`, or creates it (mode 0600, directory 0700) on first use.
    ///
    /// A key file that others can read is refused rather than silently used.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Self, Error> {
        let path = Self::key_path(dir, name);
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        match fs::read_to_string(&path) {
            Ok(pem) => {
                check_private_dir(dir)?;
                check_private_file(&path)?;
                let key = rcgen::KeyPair::from_pem(&pem).map_err(|source| Error::BadKey {
                    path: path.clone(),
                    source,
                })?;
                Self::from_key(key)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_private_dir(dir)?;
                let key = rcgen::KeyPair::generate()?;
                write_private_file(&path, key.serialize_pem().as_bytes()).map_err(io)?;
                tracing::info!(path = %path.display(), "created a new identity key");
                Self::from_key(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// A fresh identity that lives only in memory (for tests and one-shot tools).
    pub fn ephemeral() -> Result<Self, Error> {
        Self::from_key(rcgen::KeyPair::generate()?)
    }

    fn from_key(key: rcgen::KeyPair) -> Result<Self, Error> {
        let mut params = rcgen::CertificateParams::new(vec!["quicdesk.invalid".to_string()])?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "quicdesk peer");
        // The certificate only carries the key; it is regenerated at every start and pinned by
        // key, so validity dates matter little. Keep them wide to survive clock skew.
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key)?;
        let fingerprint = Fingerprint::of_certificate(cert.der())?;
        Ok(Self {
            key_pem: key.serialize_pem(),
            cert: cert.der().clone(),
            fingerprint,
        })
    }

    /// This identity's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The self-signed certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, Error> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem)?;
        Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.serialize_der(),
        )))
    }

    /// A TLS 1.3 client config that presents this identity and accepts only a server whose key
    /// has the fingerprint `pinned`. `alpn` is the application protocol to offer.
    pub fn client_config(
        &self,
        pinned: Fingerprint,
        alpn: &[u8],
    ) -> Result<rustls::ClientConfig, Error> {
        let provider = provider();
        let verifier = Arc::new(PinnedServerVerifier {
            pinned,
            algorithms: provider.signature_verification_algorithms,
        });
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous() // a custom verifier: it pins one key and checks every signature
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(vec![self.cert.clone()], self.private_key()?)?;
        cfg.alpn_protocols = vec![alpn.to_vec()];
        Ok(cfg)
    }

    /// A TLS 1.3 server config presenting this identity. Clients must present a certificate and
    /// prove they hold its key; which keys are welcome is decided by the caller after the
    /// handshake, from [`peer_fingerprint`].
    pub fn server_config(&self, alpn: &[&[u8]]) -> Result<rustls::ServerConfig, Error> {
        self.server_config_with(alpn, None)
    }

    /// Like [`Self::server_config`], but a client whose key is not on `expected` fails the
    /// handshake (and an expected key is taken off the list by its handshake).
    pub fn server_config_expecting(
        &self,
        alpn: &[&[u8]],
        expected: ExpectedClients,
    ) -> Result<rustls::ServerConfig, Error> {
        self.server_config_with(alpn, Some(expected))
    }

    fn server_config_with(
        &self,
        alpn: &[&[u8]],
        expected: Option<ExpectedClients>,
    ) -> Result<rustls::ServerConfig, Error> {
        let provider = provider();
        let verifier = Arc::new(ProofOfKeyClientVerifier {
            algorithms: provider.signature_verification_algorithms,
            expected,
        });
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.private_key()?)?;
        cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(cfg)
    }
}

/// The client keys a server expects now, each until a deadline: a server built with
/// [`Identity::server_config_expecting`] completes a handshake only with a key on this list, and
/// takes it off (one handshake per announcement).
#[derive(Debug, Clone, Default)]
pub struct ExpectedClients(
    Arc<std::sync::Mutex<std::collections::HashMap<Fingerprint, std::time::Instant>>>,
);

impl ExpectedClients {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<Fingerprint, std::time::Instant>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Expects one handshake from `key` until `until`.
    pub fn expect(&self, key: Fingerprint, until: std::time::Instant) {
        let mut map = self.lock();
        let now = std::time::Instant::now();
        map.retain(|_, t| *t > now);
        map.insert(key, until);
    }

    /// Takes `key` off the list if it is expected now.
    pub fn take(&self, key: &Fingerprint) -> bool {
        let mut map = self.lock();
        match map.remove(key) {
            Some(until) => until > std::time::Instant::now(),
            None => false,
        }
    }

    /// Whether `key` is expected now (without taking it).
    pub fn is_expected(&self, key: &Fingerprint) -> bool {
        self.lock()
            .get(key)
            .is_some_and(|t| *t > std::time::Instant::now())
    }
}

/// The ring crypto provider, the one provider used across the workspace.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The fingerprint of the peer's end-entity certificate, from what a TLS session reports
/// (e.g. `quinn::Connection::peer_identity()` downcast to `Vec<CertificateDer>`).
pub fn peer_fingerprint(chain: &[CertificateDer<'_>]) -> Result<Fingerprint, Error> {
    let leaf = chain
        .first()
        .ok_or(Error::BadFingerprint("peer presented no certificate"))?;
    Fingerprint::of_certificate(leaf)
}

/// The handshake-signature methods both verifiers share (the server and client verifier traits
/// declare the same three): every config is TLS 1.3 only, so a TLS 1.2 signature is refused
/// rather than checked; a TLS 1.3 signature is verified with `self.algorithms`, the ring
/// provider's.
macro_rules! tls13_signatures_only {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

/// The fingerprint of a certificate presented in a handshake; an unparsable one is a bad
/// encoding.
fn presented_fingerprint(end_entity: &CertificateDer<'_>) -> Result<Fingerprint, rustls::Error> {
    Fingerprint::of_certificate(end_entity)
        .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))
}

/// The refusal of a well-formed certificate whose key is not the one wanted.
fn unwanted_key() -> rustls::Error {
    rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
}

/// Accepts exactly one server key; checks the handshake signature with that key.
#[derive(Debug)]
struct PinnedServerVerifier {
    pinned: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = presented_fingerprint(end_entity)?;
        if seen == self.pinned {
            Ok(ServerCertVerified::assertion())
        } else {
            tracing::warn!(expected = %self.pinned, seen = %seen, "server key does not match the pinned fingerprint");
            Err(unwanted_key())
        }
    }

    tls13_signatures_only!();
}

/// Requires a client certificate and a valid TLS 1.3 signature with its key (proof of
/// possession); trusts nothing else about it. With `expected`, only those keys pass; otherwise
/// the application authorizes the fingerprint after the handshake.
#[derive(Debug)]
struct ProofOfKeyClientVerifier {
    algorithms: WebPkiSupportedAlgorithms,
    expected: Option<ExpectedClients>,
}

impl ClientCertVerifier for ProofOfKeyClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Parsing proves it is a well-formed certificate with a key we can verify with.
        ParsedCertificate::try_from(end_entity)?;
        if let Some(expected) = &self.expected {
            let seen = presented_fingerprint(end_entity)?;
            // The handshake signature is checked after this, with the same key: a client that
            // presents an expected certificate without its key still fails.
            if !expected.take(&seen) {
                tracing::debug!(client = %seen, "refused a client key nobody announced");
                return Err(unwanted_key());
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    tls13_signatures_only!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_display_parse_round_trip() {
        let id = Identity::ephemeral().unwrap();
        let fp = id.fingerprint();
        let s = fp.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<Fingerprint>().unwrap(), fp);
        let colons: String = s
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(colons.parse::<Fingerprint>().unwrap(), fp);
    }

    #[test]
    fn fingerprint_rejects_bad_input() {
        for bad in ["", "abc", &"0".repeat(63), &"0".repeat(66), &"g".repeat(64)] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn identity_persists_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data");
        let a = Identity::load_or_create(&sub, "host").unwrap();
        let b = Identity::load_or_create(&sub, "host").unwrap();
        assert_eq!(a.fingerprint(), b.fingerprint());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(sub.join("host.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            fs::set_permissions(sub.join("host.key"), fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(
                Identity::load_or_create(&sub, "host"),
                Err(Error::InsecureKeyFile { .. })
            ));
        }
    }

    #[test]
    fn corrupt_key_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        write_private_file(&dir.path().join("x.key"), b"not a key").unwrap();
        let err = Identity::load_or_create(dir.path(), "x").unwrap_err();
        assert!(err.to_string().contains("not a valid private key"), "{err}");
    }
}
