//! `junction lame-duck`: puts a running broker into lame-duck mode and waits, for
//! a Kubernetes `preStop` hook (nats-server's `--signal ldm`); and `junction
//! --signal SIGNAL[=PID]`, nats-server's way to signal a running broker.
//!
//! It sends SIGUSR2 to the broker (by `--pid` or `--pid-file`). The broker then
//! answers `/readyz` with 503 (`not_ready`), so Services and load balancers stop
//! sending it new clients, while it keeps serving every client it has. The command
//! then waits `--wait` before it returns, so the hook holds back the SIGTERM that
//! follows it until the endpoints have been updated; SIGTERM then drains and stops
//! the broker as usual.

use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Flags of `junction lame-duck`.
#[derive(Debug, Clone, Args)]
pub struct LameDuckArgs {
    /// Process id of the broker (1 inside its container).
    #[arg(long = "pid", value_name = "PID", conflicts_with = "pid_file")]
    pub pid: Option<i32>,
    /// File the broker wrote its process id to (`pid_file`, `-P`).
    #[arg(long = "pid-file", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,
    /// How long to wait after the signal before returning.
    #[arg(long = "wait", value_name = "DURATION", default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
}

/// Runs `junction lame-duck`.
pub fn main(args: &LameDuckArgs) -> ExitCode {
    match signal(args) {
        Ok(pid) => {
            println!(
                "junction lame-duck: signalled process {pid}; waiting {}",
                humantime::format_duration(args.wait)
            );
            std::thread::sleep(args.wait);
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("junction lame-duck: {reason}");
            ExitCode::from(1)
        }
    }
}

fn target_pid(args: &LameDuckArgs) -> Result<i32, String> {
    match (&args.pid, &args.pid_file) {
        (Some(pid), _) => Ok(*pid),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("cannot read pid file {}: {e}", file.display()))?;
            text.trim().parse().map_err(|_| {
                format!(
                    "pid file {} holds {:?}, not a process id",
                    file.display(),
                    text.trim()
                )
            })
        }
        (None, None) => Err("say which broker: --pid PID or --pid-file FILE".into()),
    }
}

#[cfg(unix)]
fn signal(args: &LameDuckArgs) -> Result<i32, String> {
    use rustix::process::{Pid, Signal, kill_process};
    let raw = target_pid(args)?;
    let pid = Pid::from_raw(raw)
        .filter(|_| raw > 0)
        .ok_or_else(|| format!("{raw} is not a process id"))?;
    kill_process(pid, Signal::USR2).map_err(|e| format!("cannot signal process {raw}: {e}"))?;
    Ok(raw)
}

#[cfg(not(unix))]
fn signal(_args: &LameDuckArgs) -> Result<i32, String> {
    Err("lame-duck mode needs signals (Unix only)".into())
}

/// `junction --signal SIGNAL[=PID]` (nats-server's): sends `SIGNAL` to the
/// broker whose process id is given, or read from `-P FILE` or the
/// configuration's `pid_file`, and exits 0, or 1 with the reason.
pub fn send_signal(spec: &str, args: &crate::cli::ServeArgs) -> ExitCode {
    match signal_by_name(spec, args) {
        Ok((name, pid)) => {
            println!("junction: sent {name} to process {pid}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("junction: --signal {spec}: {reason}");
            ExitCode::from(1)
        }
    }
}

#[cfg(unix)]
fn signal_by_name(spec: &str, args: &crate::cli::ServeArgs) -> Result<(String, i32), String> {
    use rustix::process::{Pid, Signal, kill_process};
    let (name, pid) = match spec.split_once('=') {
        Some((n, p)) => (
            n,
            Some(
                p.trim()
                    .parse::<i32>()
                    .map_err(|_| format!("'{p}' is not a process id"))?,
            ),
        ),
        None => (spec, None),
    };
    let (signal, label) = match name {
        "reload" => (Signal::HUP, "SIGHUP (reload)"),
        "ldm" => (Signal::USR2, "SIGUSR2 (lame-duck mode)"),
        "quit" => (Signal::INT, "SIGINT (quit)"),
        "term" => (Signal::TERM, "SIGTERM (stop after draining)"),
        "stop" => (Signal::KILL, "SIGKILL (stop at once)"),
        "reopen" => (Signal::USR1, "SIGUSR1 (reopen the log file)"),
        other => {
            return Err(format!(
                "unknown signal '{other}': give reload, reopen, ldm, quit, term or stop"
            ));
        }
    };
    let raw = match pid {
        Some(p) => p,
        None => {
            let file = match &args.pid {
                Some(f) => f.clone(),
                None => args
                    .load()
                    .map_err(|e| e.to_string())?
                    .pid_file
                    .ok_or("say which broker: SIGNAL=PID, or -P FILE (its pid file)")?,
            };
            let text = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read pid file {}: {e}", file.display()))?;
            text.trim()
                .parse()
                .map_err(|_| format!("pid file {} holds no process id", file.display()))?
        }
    };
    let target = Pid::from_raw(raw)
        .filter(|_| raw > 0)
        .ok_or_else(|| format!("{raw} is not a process id"))?;
    kill_process(target, signal).map_err(|e| format!("cannot signal process {raw}: {e}"))?;
    Ok((label.to_string(), raw))
}

#[cfg(not(unix))]
fn signal_by_name(_spec: &str, _args: &crate::cli::ServeArgs) -> Result<(String, i32), String> {
    Err("signals are Unix only".into())
}
