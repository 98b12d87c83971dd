//! The real S3 servers the tiering tests run against, started by the test on
//! 127.0.0.1 and stopped when dropped:
//!
//! - moto's server mode (`MOTO_SERVER`, then `target/tier-venv/bin/moto_server`,
//!   then `PATH`): starts in under 2 s; it takes any credentials.
//! - Ceph RGW (`radosgw` on `PATH`, started by `scripts/rgw`: one monitor, one
//!   memstore OSD): the most faithful to S3, with signed requests and
//!   conditional writes that answer 412.
//!
//! Without a server the test says so and passes, unless `REQUIRE_MOTO` /
//! `REQUIRE_RGW` is set (as `scripts/test` does, after installing both).

use object_store::ObjectStoreExt;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::process::{Child, Command};

use super::process;

pub const BUCKET: &str = "junction-tier-test";

enum Kind {
    Moto(Child),
    Rgw(tempfile::TempDir),
}

pub struct S3 {
    pub endpoint: String,
    pub access_key: String,
    pub secret_key: String,
    kind: Kind,
}

fn moto_bin() -> Option<String> {
    let candidates = [
        std::env::var("MOTO_SERVER").ok(),
        Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/tier-venv/bin/moto_server"
            )
            .to_string(),
        ),
        Some("moto_server".to_string()),
    ];
    candidates.into_iter().flatten().find(|c| {
        std::process::Command::new(c)
            .arg("--help")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// moto on a free port with [`BUCKET`], or None when none is installed (and
/// none is required).
pub async fn moto() -> Option<S3> {
    let Some(bin) = moto_bin() else {
        assert!(
            std::env::var_os("REQUIRE_MOTO").is_none(),
            "moto_server not found: set MOTO_SERVER or run scripts/test (it installs moto[server])"
        );
        eprintln!("skipped: no moto_server (pip install 'moto[server]')");
        return None;
    };
    let port = process::free_port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("moto_server starts");
    process::wait_listening(port).await;
    let endpoint = format!("http://127.0.0.1:{port}");
    // moto takes unsigned requests: make the bucket.
    let r = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}"))
        .send()
        .await
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    Some(S3 {
        endpoint,
        access_key: "testing".into(),
        secret_key: "testing".into(),
        kind: Kind::Moto(child),
    })
}

fn rgw_script() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/rgw"))
}

/// A one-node Ceph cluster and radosgw (about 12 s to start) with
/// [`BUCKET`], or None when `radosgw` is not installed (and not required).
pub async fn rgw() -> Option<S3> {
    let installed = std::process::Command::new("radosgw")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        assert!(
            std::env::var_os("REQUIRE_RGW").is_none(),
            "radosgw not found: run scripts/test (it installs radosgw ceph-mon ceph-osd)"
        );
        eprintln!("skipped: no radosgw (apt-get install radosgw ceph-mon ceph-osd)");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (port, mon_port) = (process::free_port(), process::free_port());
    let out = Command::new(rgw_script())
        .args([
            "start",
            dir.path().to_str().unwrap(),
            &port.to_string(),
            BUCKET,
            &mon_port.to_string(),
        ])
        .output()
        .await
        .expect("scripts/rgw runs");
    let s3 = S3 {
        endpoint: format!("http://127.0.0.1:{port}"),
        access_key: "JUNCTIONTEST".into(),
        secret_key: "junctiontestsecret".into(),
        kind: Kind::Rgw(dir),
    };
    assert!(
        out.status.success(),
        "scripts/rgw start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(s3)
}

impl S3 {
    pub fn is_rgw(&self) -> bool {
        matches!(self.kind, Kind::Rgw(_))
    }

    fn pid(&self) -> String {
        match &self.kind {
            Kind::Moto(child) => child.id().expect("moto runs").to_string(),
            Kind::Rgw(dir) => std::fs::read_to_string(dir.path().join("run/client.rgw.pid"))
                .expect("radosgw's pid file")
                .trim()
                .to_string(),
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid();
        let ok = std::process::Command::new("kill")
            .args([&format!("-{signal}"), pid.as_str()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// A hung S3: the server takes connections and answers nothing (SIGSTOP);
    /// its data is kept.
    pub fn hang(&self) {
        self.signal("STOP");
    }

    /// Ends [`S3::hang`].
    pub fn unhang(&self) {
        self.signal("CONT");
    }

    /// RGW only: kills radosgw (SIGKILL), so connections are refused; the
    /// cluster behind it keeps the objects.
    pub async fn kill_gateway(&self) {
        let Kind::Rgw(_) = &self.kind else {
            panic!("kill_gateway is for RGW")
        };
        let pid = self.pid();
        self.signal("KILL");
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// RGW only: starts radosgw again on the same cluster and port.
    pub async fn restart_gateway(&self) {
        let Kind::Rgw(dir) = &self.kind else {
            panic!("restart_gateway is for RGW")
        };
        let ok = Command::new(rgw_script())
            .args(["rgw-start", dir.path().to_str().unwrap()])
            .status()
            .await
            .unwrap()
            .success();
        assert!(ok, "scripts/rgw rgw-start");
    }

    /// A client of the bucket with the server's credentials.
    pub fn bucket(&self) -> object_store::aws::AmazonS3 {
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(BUCKET)
            .with_region("us-east-1")
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_allow_http(true)
            .build()
            .unwrap()
    }

    /// Keys of the objects in the bucket under `prefix`.
    pub async fn list_keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix.trim_end_matches('/'));
        let bucket = self.bucket();
        let listed: Vec<_> = object_store::ObjectStore::list(&bucket, Some(&prefix))
            .try_collect()
            .await
            .expect("list the bucket");
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// The segment objects under `prefix` (not the stations' manifests).
    #[allow(dead_code)] // each test binary uses part of it
    pub async fn list_segments(&self, prefix: &str) -> Vec<String> {
        let mut keys = self.list_keys(prefix).await;
        keys.retain(|k| k.ends_with(".seg"));
        keys
    }

    /// `junction serve` in `cwd` with its data in `data`, NATS and HTTP on
    /// `ports` (MQTT off), `[tier]` on this server's bucket under `prefix`, and
    /// `env` besides (`RUST_LOG`, cache sizes…): started, both ports
    /// listening. Its standard error is the test's.
    #[allow(dead_code)] // each test binary uses part of it
    pub async fn junction(
        &self,
        prefix: &str,
        env: &[(&'static str, String)],
        cwd: &std::path::Path,
        data: &std::path::Path,
        ports: (u16, u16),
    ) -> Child {
        let mut all = self.tier_env(prefix);
        all.extend(env.iter().cloned());
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let child = process::junction(
            cwd,
            &[
                "serve",
                "--nats-listen",
                &format!("127.0.0.1:{}", ports.0),
                "--http-listen",
                &format!("127.0.0.1:{}", ports.1),
                "--mqtt-listen",
                "off",
                "--data-dir",
                data.to_str().expect("a UTF-8 path"),
            ],
            &all,
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("junction starts");
        process::wait_listening(ports.0).await;
        process::wait_listening(ports.1).await;
        child
    }

    /// [`S3::junction`] with `RUST_LOG=info` and nothing else besides.
    #[allow(dead_code)] // each test binary uses part of it
    pub async fn junction_at(
        &self,
        prefix: &str,
        cwd: &std::path::Path,
        data: &std::path::Path,
        ports: (u16, u16),
    ) -> Child {
        self.junction(prefix, &[("RUST_LOG", "info".into())], cwd, data, ports)
            .await
    }

    /// The broker's `JUNCTION_TIER_*` settings for this server's bucket under `prefix`.
    pub fn tier_env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("JUNCTION_TIER_ENDPOINT", self.endpoint.clone()),
            ("JUNCTION_TIER_BUCKET", BUCKET.to_string()),
            ("JUNCTION_TIER_PREFIX", prefix.to_string()),
            ("JUNCTION_TIER_ALLOW_HTTP", "true".to_string()),
            ("JUNCTION_TIER_ACCESS_KEY_ID", self.access_key.clone()),
            ("JUNCTION_TIER_SECRET_ACCESS_KEY", self.secret_key.clone()),
        ]
    }

    /// Reads `key` and writes it back with `f` applied (outside the broker).
    pub async fn rewrite(&self, key: &str, f: impl FnOnce(&mut Vec<u8>)) {
        let bucket = self.bucket();
        let path = object_store::path::Path::from(key);
        let mut object = bucket
            .get(&path)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        f(&mut object);
        bucket.put(&path, object.into()).await.unwrap();
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Kind::Rgw(dir) = &self.kind {
            // A stopped gateway must be resumed to die cleanly; SIGKILL needs no help.
            let _ = std::process::Command::new(rgw_script())
                .args(["stop", dir.path().to_str().unwrap()])
                .status();
        }
    }
}

/// `len` bytes that depend on `seq` (xorshift from it): the tiering tests'
/// payloads, checked byte for byte or by SHA-256 after a round trip.
#[allow(dead_code)] // each test binary uses part of it
pub fn payload(seq: u64, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len + 8);
    let mut x = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while p.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.extend_from_slice(&x.to_le_bytes());
    }
    p.truncate(len);
    p
}

/// Kills a broker (SIGKILL) and waits for it.
#[allow(dead_code)] // each test binary uses part of it
pub async fn kill(mut child: Child) {
    child.start_kill().expect("kill");
    let _ = child.wait().await;
}
