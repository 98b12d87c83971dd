//! Running the real `junction` binary from a test: a clean environment, a hang
//! guard, and reading the addresses it logs. Shared by the tests that start the
//! process themselves (`hostile_config.rs`, `process_signals_and_health.rs`,
//! `crash_consistency.rs`, `sequences_are_never_reused_after_kill_9.rs`,
//! `restart_keeps_station_state.rs`,
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
///
/// Ports are handed out in turn from 20000–31999, through a counter file shared
/// by every test process (nextest runs each test in a process of its own) under
/// an exclusive lock, and checked by binding them:
/// - below the kernel's ephemeral range (32768 and up on Linux), because a port
///   taken from that range can be taken again, before the broker binds it, as the
///   local port of an outgoing connection (the cluster's links dial a lot);
/// - in turn, because tests that pick at random collide often (a few hundred
///   ports out of twelve thousand), and the broker that loses fails to start.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let path = std::env::temp_dir().join("junction-test-ports");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .unwrap();
    file.lock().unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut &file, &mut text).unwrap();
    let mut next: u32 = text
        .trim()
        .parse()
        .unwrap_or_else(|_| std::process::id().wrapping_mul(7919) % SPAN);
    let mut port = 0;
    for _ in 0..SPAN {
        let candidate = (LOW + next % SPAN) as u16;
        next = (next + 1) % SPAN;
        if std::net::TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            port = candidate;
            break;
        }
    }
    std::fs::write(&path, next.to_string()).unwrap();
    file.unlock().unwrap();
    assert!(port != 0, "no free port in {LOW}..{}", LOW + SPAN);
    port
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

/// Starts `junction serve` with NATS only on `port` (logs at `warn`, output
/// discarded, killed when dropped) and waits until it listens.
pub async fn start_nats_only(data: &Path, port: u16) -> tokio::process::Child {
    let child = serve_nats_only(data, port)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("junction binary starts");
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("junction did not start listening on {port}");
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

/// Waits until something listens on 127.0.0.1:`port` (a hang guard of 20 s).
pub async fn wait_listening(port: u16) {
    for _ in 0..400 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("junction did not start listening on {port}");
}
