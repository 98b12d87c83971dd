//! Idle connections: `conn` (NATS, async-nats) and `mqtt-conn` (MQTT, rumqttc).
//!
//! Opens `--count` connections, `--concurrency` handshakes at a time (the connect
//! rate and the handshake latency are measured), holds them open and idle for
//! `--hold` seconds, and reads the server's resident memory (VmRSS of
//! `--server-pid`) before the first connect and at the end of the hold: the
//! difference divided by the connections is the server's memory per idle connection.

use super::mqtt::{self, MqttClient, MqttTarget};
use super::progress::Progress;
use super::report::{ConnStats, Report};
use super::stats::{histogram, process_cpu_secs, record, rss_kb, self_rss_kb};
use super::{Plan, Scenario};
use anyhow::{Context as _, bail};
use futures::{StreamExt as _, TryStreamExt as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// File descriptors the benchmark keeps for itself beyond one per connection.
const SPARE_FDS: u64 = 1024;

/// One held connection. Nothing reads from it while it is held: the point is what
/// an idle client costs the server.
enum Held {
    Nats(#[allow(dead_code)] async_nats::Client),
    Mqtt(#[allow(dead_code)] Box<MqttClient>),
}

/// Raises this process's soft open-file limit to `count + SPARE_FDS` if the hard
/// limit allows; returns the soft limit in force, or an error when it is too low.
fn raise_fd_limit(count: usize) -> anyhow::Result<Option<u64>> {
    let want = count as u64 + SPARE_FDS;
    match rlimit::increase_nofile_limit(want) {
        Ok(limit) if limit < want => bail!(
            "{count} connections need about {want} file descriptors, but the limit is {limit} \
             (raise the hard limit: ulimit -Hn, /etc/security/limits.conf, or LimitNOFILE=)"
        ),
        Ok(limit) => Ok(Some(limit)),
        // Not a platform with RLIMIT_NOFILE: try anyway.
        Err(_) => Ok(None),
    }
}

/// The keep-alive the held MQTT clients announce: longer than the hold, so the
/// server never times them out for silence.
fn mqtt_keep_alive(hold: f64) -> Duration {
    Duration::from_secs_f64((hold * 2.0).clamp(60.0, 65_535.0).round())
}

async fn connect_nats(url: &str, i: usize, run_id: u32) -> anyhow::Result<Held> {
    let client = super::stats::with_tls(async_nats::ConnectOptions::new())
        .name(format!("junction-bench-conn-{run_id:08x}-{i}"))
        // Idle clients: small buffers on this side, so the benchmark itself fits
        // tens of thousands of them.
        .client_capacity(16)
        .subscription_capacity(16)
        .connection_timeout(Duration::from_secs(30))
        .connect(url)
        .await
        .with_context(|| format!("connection {i} cannot connect to {url}"))?;
    Ok(Held::Nats(client))
}

async fn connect_mqtt(
    target: &MqttTarget,
    hold: f64,
    i: usize,
    run_id: u32,
) -> anyhow::Result<Held> {
    let options = target.options(
        &format!("junction-bench-conn-{run_id:08x}-{i}"),
        mqtt_keep_alive(hold),
        4096,
        10,
    );
    let c = mqtt::connect(target, options, 1)
        .await
        .with_context(|| format!("connection {i}"))?;
    Ok(Held::Mqtt(Box::new(c)))
}

/// `conn` and `mqtt-conn`: the headline is the connect rate; `connections` has the
/// server's memory per connection.
pub(crate) async fn idle(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let count = args.count;
    let mqtt_protocol = args.scenario == Scenario::MqttConn;
    let fd_limit = raise_fd_limit(count)?;
    let target = if mqtt_protocol {
        Some(MqttTarget::parse(&plan.url)?)
    } else {
        None
    };
    let run_id = rand::random::<u32>();
    let server_before = args.server_pid.and_then(rss_kb);
    if let (Some(pid), None) = (args.server_pid, server_before) {
        bail!("--server-pid {pid}: cannot read /proc/{pid}/status (not a local process?)");
    }
    let client_before = self_rss_kb();

    let counter = Arc::new(AtomicU64::new(0));
    let bar = Progress::start(
        plan.progress,
        "connecting",
        counter.clone(),
        count as u64,
        None,
    );
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let url = plan.url.as_str();
    let hold = args.hold;
    let opened: Vec<(Held, Duration)> = futures::stream::iter(0..count)
        .map(|i| {
            let target = target.clone();
            let counter = counter.clone();
            async move {
                let t0 = Instant::now();
                let held = match &target {
                    Some(t) => connect_mqtt(t, hold, i, run_id).await?,
                    None => connect_nats(url, i, run_id).await?,
                };
                counter.fetch_add(1, Ordering::Relaxed);
                anyhow::Ok((held, t0.elapsed()))
            }
        })
        .buffer_unordered(plan.concurrency)
        .try_collect()
        .await?;
    let connect_secs = start.elapsed();
    let cpu1 = process_cpu_secs();
    bar.finish();

    let mut hist = histogram()?;
    for (_, d) in &opened {
        record(&mut hist, *d);
    }
    let held_from = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let held_secs = held_from.elapsed().as_secs_f64();
    let server_after = args.server_pid.and_then(rss_kb);
    let client_after = self_rss_kb();
    let connected = opened.len();
    drop(opened);

    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some(((a as f64 - b as f64) * 1024.0 / connected as f64).round())
        }
        _ => None,
    };
    let elapsed = connect_secs.as_secs_f64();
    let rate = if elapsed > 0.0 {
        connected as f64 / elapsed
    } else {
        0.0
    };
    let headline = super::report::GroupStats {
        msgs: connected as u64,
        bytes: 0,
        elapsed_secs: elapsed,
        msgs_per_sec: rate,
        mb_per_sec: 0.0,
        clients: Vec::new(),
    };
    let mut report = Report::new(plan, &headline, count as u64);
    report.set_latency("connect", &hist);
    report.set_cpu(cpu0, cpu1);
    report.connections = Some(ConnStats {
        protocol: if mqtt_protocol { "mqtt" } else { "nats" }.to_string(),
        count,
        connected,
        connect_secs: elapsed,
        connects_per_sec: rate,
        held_secs,
        server_pid: args.server_pid,
        server_rss_before_kb: server_before,
        server_rss_after_kb: server_after,
        server_rss_per_conn_bytes: per_conn(server_before, server_after),
        client_rss_per_conn_bytes: per_conn(client_before, client_after),
        fd_limit,
    });
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_alive_outlasts_the_hold() {
        assert_eq!(mqtt_keep_alive(2.0), Duration::from_secs(60));
        assert_eq!(mqtt_keep_alive(100.0), Duration::from_secs(200));
        assert_eq!(mqtt_keep_alive(1e9), Duration::from_secs(65_535));
    }
}
