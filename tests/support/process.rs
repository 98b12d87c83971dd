//! Running the real `junction` binary from a test: a clean environment, a hang
//! guard, and reading the addresses it logs. Shared by the tests that start the
//! process themselves (`hostile_config.rs`, `process_signals_and_health.rs`,
//! `crash_consistency.rs`, `restart_keeps_station_state.rs`,
//! `mqtt_restart_kill9.rs`).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;
use tokio::process::Command;

/// How long any one step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(60);

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_junction");

/// `junction ARGS` in `cwd`, with only `env` in its environment (nothing inherited,
/// so a stray `JUNCTION_*` or `RUST_LOG` cannot change the answer).
pub fn junction(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A free port on 127.0.0.1 (bound, then released for the broker to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `junction serve` with NATS alone on 127.0.0.1:`port` and its data in `data`;
/// the caller chooses its environment and where its output goes.
pub fn serve_nats_only(data: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--nats-listen",
        &format!("127.0.0.1:{port}"),
        "--http-listen",
        "off",
        "--mqtt-listen",
        "off",
        "--data-dir",
    ])
    .arg(data);
    cmd
}

/// Runs `junction ARGS` to its exit.
pub async fn run_to_exit(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    tokio::time::timeout(GUARD, junction(cwd, args, env).output())
        .await
        .expect("junction exits by itself")
        .expect("junction runs")
}

/// The address logged after `marker` on a line (`Listening for HTTP on 127.0.0.1:1`).
pub fn addr_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split_whitespace().next()?.parse().ok()
}
