//! TLS for the client listeners (NATS, MQTT on its TLS port, HTTPS and `wss://`),
//! with rustls on the ring backend (no C build).
//!
//! The certificate and key are read again when their files change (checked at
//! most once a second, on a handshake), so a renewed certificate is served to
//! new connections without a restart and without dropping the ones open. A
//! file that fails to load keeps the previous certificate and logs why.

use crate::config::{ConfigError, TlsSettings};
use parking_lot::Mutex;
use rustls::RootCertStore;
use rustls::crypto::ring as provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Makes ring, the provider the broker's own TLS uses, the process's default
/// rustls provider (once; later calls do nothing). The S3 client brings
/// rustls's aws-lc-rs provider too, and with two compiled in rustls cannot
/// pick one by itself: every library that builds a TLS configuration without
/// naming a provider (async-nats, reqwest, rumqttc in the same process) would
/// panic.
pub fn install_crypto_provider() {
    let _ = provider::default_provider().install_default();
}
use std::time::{Duration, Instant, SystemTime};

/// How often the certificate files are looked at, at most.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

fn load_key(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate in it", cert.display()));
    }
    let der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
    let signing = provider::sign::any_supported_type(&der)
        .map_err(|e| format!("{}: unsupported private key: {e}", key.display()))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("{} does not match {}: {e}", key.display(), cert.display()))?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

/// Serves the certificate in `cert`/`key`, reloaded when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    loaded: Mutex<Loaded>,
}

impl ReloadingCert {
    /// Loads the certificate now; an error names the file.
    pub fn open(cert: &Path, key: &Path) -> Result<Self, String> {
        let loaded = Loaded {
            key: load_key(cert, key)?,
            stamps: (modified(cert), modified(key)),
            checked: Instant::now(),
        };
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            loaded: Mutex::new(loaded),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut l = self.loaded.lock();
        if l.checked.elapsed() >= RELOAD_CHECK {
            l.checked = Instant::now();
            let stamps = (modified(&self.cert), modified(&self.key));
            if stamps != l.stamps {
                match load_key(&self.cert, &self.key) {
                    Ok(key) => {
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                        l.key = key;
                        l.stamps = stamps;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "TLS certificate not reloaded; the previous one stays")
                    }
                }
            }
        }
        l.key.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// When the first certificate in the PEM file at `path` expires.
pub fn certificate_expiry(path: &Path) -> Result<SystemTime, String> {
    let der = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .next()
        .ok_or_else(|| format!("{} holds no certificate", path.display()))?
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let secs = cert.validity().not_after.timestamp();
    Ok(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64))
}

/// The certificate-expiry self-check: raises `tls_certificate_expiring` when
/// the certificate at `path` expires within `warning` (or cannot be read),
/// and clears it once a renewed one is in place.
pub fn check_expiry(
    engine: &crate::engine::StationEngine,
    path: &Path,
    warning: std::time::Duration,
) {
    const ALARM: &str = "tls_certificate_expiring";
    match certificate_expiry(path) {
        Ok(at) => {
            let left = at.duration_since(SystemTime::now()).unwrap_or_default();
            if left < warning {
                engine.raise_alarm(
                    ALARM,
                    &format!(
                        "the certificate in {} expires at {} (in {})",
                        path.display(),
                        humantime::format_rfc3339_seconds(at),
                        humantime::format_duration(std::time::Duration::from_secs(left.as_secs()))
                    ),
                );
            } else {
                engine.clear_alarm(ALARM);
            }
        }
        Err(e) => engine.raise_alarm(ALARM, &format!("cannot read the certificate: {e}")),
    }
}

/// The server configuration for `settings`, with `alpn` protocols (HTTP/1.1
/// for HTTPS; none for NATS and MQTT).
pub fn server_config(
    settings: &TlsSettings,
    alpn: &[&[u8]],
) -> Result<Arc<rustls::ServerConfig>, ConfigError> {
    let (Some(cert), Some(key)) = (&settings.cert_file, &settings.key_file) else {
        return Err(ConfigError(
            "tls: cert_file and key_file are both needed".into(),
        ));
    };
    let resolver = ReloadingCert::open(cert, key).map_err(|e| ConfigError(format!("tls: {e}")))?;
    let builder =
        rustls::ServerConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError(format!("tls: {e}")))?;
    let builder = match &settings.ca_file {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| {
                ConfigError(format!("tls.ca_file: cannot read {}: {e}", ca.display()))
            })?;
            for c in certs {
                let c = c.map_err(|e| ConfigError(format!("tls.ca_file {}: {e}", ca.display())))?;
                roots
                    .add(c)
                    .map_err(|e| ConfigError(format!("tls.ca_file {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(provider::default_provider()),
            );
            let verifier = if settings.verify || settings.verify_and_map {
                verifier.build()
            } else {
                verifier.allow_unauthenticated().build()
            }
            .map_err(|e| ConfigError(format!("tls.ca_file: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if settings.verify || settings.verify_and_map => {
            return Err(ConfigError(
                "tls.verify needs tls.ca_file: the authority client certificates must be signed by"
                    .into(),
            ));
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let s = TlsSettings {
            cert_file: Some("/nonexistent/cert.pem".into()),
            key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        match server_config(&s, &[]) {
            Err(e) => assert!(e.0.contains("/nonexistent/cert.pem"), "{}", e.0),
            Ok(_) => panic!("missing files accepted"),
        }
        let s = TlsSettings::default();
        assert!(server_config(&s, &[]).is_err());
    }
}
