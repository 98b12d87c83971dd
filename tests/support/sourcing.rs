//! Shared by the mirror/source tests: a real `junction` process that can be
//! killed with SIGKILL and started again on its data directory, and readers
//! that collect a stream's messages by sequence.

use super::process;
use async_nats::jetstream::{self, stream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

/// How long any one step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(120);

pub struct Junction {
    child: Child,
    pub port: u16,
    pub data: PathBuf,
}

impl Junction {
    pub async fn start(data: &Path, port: u16) -> Junction {
        let log = data.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log file");
        let child = process::serve_nats_only(data, port)
            .env_clear()
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("junction binary starts");
        tokio::time::timeout(GUARD, async {
            loop {
                if let Ok(client) = async_nats::connect(format!("nats://127.0.0.1:{port}")).await
                    && jetstream::new(client).query_account().await.is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("junction answers JetStream requests");
        Junction {
            child,
            port,
            data: data.to_path_buf(),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub async fn js(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url()).await.expect("connect");
        jetstream::new(client)
    }

    /// SIGKILL, then the same process started again on the same data.
    pub async fn kill_9_and_restart(mut self) -> Junction {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let _ = tokio::time::timeout(GUARD, self.child.wait()).await;
        Junction::start(&self.data, self.port).await
    }

    pub async fn kill_9(mut self) {
        let pid = self.child.id().expect("running").to_string();
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status();
        let _ = tokio::time::timeout(GUARD, self.child.wait()).await;
    }
}

/// A stream of `name` on `subjects` with defaults for the rest.
pub fn config(name: &str, subjects: &[&str]) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| (*s).to_string()).collect(),
        ..Default::default()
    }
}

/// One stored message: (sequence, subject, payload, `Nats-Stream-Source`).
pub type Stored = (u64, String, String, Option<String>);

/// Every message of `stream`, by sequence from its first to its last.
pub async fn all_messages(js: &jetstream::Context, name: &str) -> Vec<Stored> {
    let mut s = js.get_stream(name).await.expect("stream");
    let info = s.info().await.expect("info").clone();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(m) = s.get_raw_message(seq).await else {
            continue;
        };
        let src = m
            .headers
            .get("Nats-Stream-Source")
            .map(|v| v.as_str().to_string());
        out.push((
            seq,
            m.subject.to_string(),
            String::from_utf8_lossy(&m.payload).to_string(),
            src,
        ));
    }
    out
}

/// Waits (with the guard) until `stream` holds `n` messages.
pub async fn until_count(js: &jetstream::Context, name: &str, n: u64) {
    let r = tokio::time::timeout(GUARD, async {
        loop {
            if let Ok(mut s) = js.get_stream(name).await
                && let Ok(i) = s.info().await
                && i.state.messages >= n
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if r.is_err() {
        let mut s = js.get_stream(name).await.expect("stream");
        let i = s.info().await.expect("info");
        panic!(
            "{name} never reached {n} messages: {:?} mirror {:?} sources {:?}",
            i.state, i.mirror, i.sources
        );
    }
}
