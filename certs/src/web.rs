//! TLS for the rendezvous's web console and API: browsers, not quicdesk peers, connect there,
//! so the server does not ask for a client certificate (people log in instead). TLS 1.3 only,
//! which every browser of the last years speaks. The certificate is the operator's (PEM files, e.g. from an ACME
//! client) or a self-signed one made from the rendezvous's own key for the names the operator
//! gives, whose key fingerprint is the rendezvous's fingerprint.
//!
//! Nothing here verifies anybody: it builds server configs only.

use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::{Error, Identity, provider};

/// A web server config from the operator's PEM files: the certificate chain (leaf first) and
/// its private key.
pub fn web_server_config_from_files(
    cert_chain: &Path,
    key: &Path,
) -> Result<rustls::ServerConfig, Error> {
    let bad = |path: &Path, why: String| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_chain)
        .map_err(|e| bad(cert_chain, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert_chain, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert_chain, "no certificate in this file".into()));
    }
    crate::check_private_file(key)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
    web_config(chain, key_der)
}

impl Identity {
    /// A web server config with a self-signed certificate made from this identity's key,
    /// valid for `names` (DNS names or IP addresses, as the browser will type them). Returns
    /// the certificate too, for its fingerprint.
    pub fn web_server_config(
        &self,
        names: &[String],
    ) -> Result<(rustls::ServerConfig, CertificateDer<'static>), Error> {
        let key = rcgen::KeyPair::from_pem(&self.key_pem)?;
        let mut params = rcgen::CertificateParams::new(names.to_vec())?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "quicdesk rendezvous console");
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key)?.der().clone();
        let cfg = web_config(vec![cert.clone()], self.private_key()?)?;
        Ok((cfg, cert))
    }
}

fn web_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A certificate in PEM.
pub fn certificate_pem(cert: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The SHA-256 of a whole certificate (what browsers show as its fingerprint), in hex with
/// colons.
pub fn certificate_sha256(cert: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(cert.as_ref());
    digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}
