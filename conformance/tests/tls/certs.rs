//! Certificates for the TLS tests, made with rcgen and written as PEM files.

#![allow(dead_code)]

use junction::config::Config;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use std::path::{Path, PathBuf};

/// A certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `names` (DNS names or IPs) signed by this authority:
    /// (certificate PEM, key PEM).
    pub fn issue(&self, common_name: &str, names: &[&str], client: bool) -> (String, String) {
        self.issue_with(common_name, names, client, |_| {})
    }

    /// [`Ca::issue`], with the parameters changed by `tweak`.
    pub fn issue_with(
        &self,
        common_name: &str,
        names: &[&str],
        client: bool,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![if client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        tweak(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Files in a directory.
pub struct Files {
    pub dir: tempfile::TempDir,
}

impl Files {
    pub fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A CA, a server certificate for 127.0.0.1 and localhost, and their files
/// (`ca.pem`, `server.pem`, `server.key`).
pub struct Pki {
    pub ca: Ca,
    pub files: Files,
}

impl Pki {
    pub fn new() -> Pki {
        let ca = Ca::new("Junction test CA");
        let files = Files::new();
        files.write("ca.pem", &ca.pem);
        let (cert, key) = ca.issue("junction", &["127.0.0.1", "localhost"], false);
        files.write("server.pem", &cert);
        files.write("server.key", &key);
        Pki { ca, files }
    }

    /// Sets `[tls]` to the server certificate.
    pub fn configure(&self, c: &mut Config) {
        c.tls.cert_file = Some(self.files.path("server.pem"));
        c.tls.key_file = Some(self.files.path("server.key"));
    }

    pub fn ca_path(&self) -> PathBuf {
        self.files.path("ca.pem")
    }

    /// A client certificate and key signed by this CA, written as
    /// `<name>.pem` and `<name>.key`.
    pub fn client(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = self.ca.issue(name, &[], true);
        (
            self.files.write(&format!("{name}.pem"), &cert),
            self.files.write(&format!("{name}.key"), &key),
        )
    }
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}
