//! TLS to the remote broker of a bridge, as mosquitto's `bridge_cafile`,
//! `bridge_certfile` and `bridge_keyfile`: the remote broker's certificate must
//! chain to a CA in `ca_file` and carry the bridge's server name (the host of
//! `address`, or `server_name`); a client certificate is offered when the
//! remote broker asks for one. rustls on the ring backend, as the listeners.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::crypto::ring as provider;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

/// `[mqtt.bridges.tls]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeTls {
    /// PEM file of the CA certificates the remote broker's certificate must
    /// chain to (mosquitto's `bridge_cafile`).
    pub ca_file: PathBuf,
    /// PEM certificate chain offered to a remote broker that asks for a client
    /// certificate (`bridge_certfile`); with `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its PEM private key (`bridge_keyfile`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The name the remote broker's certificate must carry, when it is not the
    /// host of `address` (an IP address in `address` is checked as an IP).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// A ready connector and the name it checks.
#[derive(Clone)]
pub(crate) struct Tls {
    pub connector: TlsConnector,
    pub name: ServerName<'static>,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

impl BridgeTls {
    /// Reads the files and builds the connector for a remote broker at `host`;
    /// an error names the file or setting.
    pub(crate) fn load(&self, host: &str) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        for cert in certs(&self.ca_file)? {
            roots.add(cert).map_err(|e| {
                format!(
                    "{}: not a usable CA certificate: {e}",
                    self.ca_file.display()
                )
            })?;
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(provider::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| format!("{}: not a PEM private key: {e}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("client certificate: {e}"))?
            }
            _ => return Err("tls.cert_file and tls.key_file go together".into()),
        };
        let host = self.server_name.as_deref().unwrap_or(host);
        // An IPv6 address in `address` is written in brackets.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|e| format!("'{host}' is not a TLS server name: {e}"))?;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}
