//! `js-ready`: how soon a server serves a stream after a (re)start.
//!
//! Polls the server (connect, then `$JS.API.STREAM.INFO.<stream>`) every few
//! milliseconds until the stream answers with at least `--msgs` messages, and
//! reports when that first happened as a Unix time, so a script that noted when it
//! started the server gets the restart time without the benchmark's own start-up in
//! it (`bench/compare.sh` does). With `--server-pid` it also reads the server's
//! resident memory once the stream is ready.

use super::Plan;
use super::report::{GroupStats, ReadyStats, Report};
use super::stats::process_cpu_secs;
use anyhow::bail;
use async_nats::jetstream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long to keep polling before giving up (a failure guard, not a measurement).
const GIVE_UP: Duration = Duration::from_secs(900);

/// Between two polls.
const POLL: Duration = Duration::from_millis(5);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The VmRSS of process `pid`, KiB.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(crate) async fn wait(plan: &Plan) -> anyhow::Result<Report> {
    let cpu0 = process_cpu_secs();
    let started = Instant::now();
    let name = &plan.args.stream;
    let want = plan.args.msgs;
    let mut first_answer_unix_ns = None;
    let mut polls = 0u64;
    let (messages, bytes) = 'ready: loop {
        if started.elapsed() > GIVE_UP {
            bail!("stream {name} did not answer with {want} messages within {GIVE_UP:?}");
        }
        let client = match super::stats::with_tls(async_nats::ConnectOptions::new())
            .connection_timeout(GIVE_UP)
            .connect(&plan.url)
            .await
        {
            Ok(c) => c,
            Err(_) => {
                polls += 1;
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let js = jetstream::ContextBuilder::new()
            .timeout(GIVE_UP)
            .build(client);
        while started.elapsed() <= GIVE_UP {
            polls += 1;
            match js.get_stream(name).await {
                Ok(stream) => {
                    let state = &stream.cached_info().state;
                    first_answer_unix_ns.get_or_insert_with(unix_ns);
                    if state.messages >= want {
                        break 'ready (state.messages, state.bytes);
                    }
                }
                // Not connected any more (the server went away): connect again.
                Err(_)
                    if js.client().connection_state()
                        != async_nats::connection::State::Connected =>
                {
                    continue 'ready;
                }
                Err(_) => {}
            }
            tokio::time::sleep(POLL).await;
        }
    };
    let ready_unix_ns = unix_ns();
    let waited = started.elapsed();
    let headline = GroupStats {
        msgs: messages,
        bytes,
        elapsed_secs: waited.as_secs_f64(),
        msgs_per_sec: 0.0,
        mb_per_sec: 0.0,
        clients: Vec::new(),
    };
    let mut report = Report::new(plan, &headline, want);
    report.lost = 0;
    report.set_cpu(cpu0, process_cpu_secs());
    report.ready = Some(ReadyStats {
        stream: name.clone(),
        messages,
        bytes,
        polls,
        first_answer_unix_ns,
        ready_unix_ns,
        waited_secs: waited.as_secs_f64(),
        server_pid: plan.args.server_pid,
        server_rss_kb: plan.args.server_pid.and_then(rss_kb),
    });
    Ok(report)
}
