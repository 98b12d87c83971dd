//! Measurement helpers: send timestamps, latency histograms, per-client counters,
//! the process CPU clock, and connection set-up shared by every scenario.

use anyhow::{Context as _, anyhow};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// The clock every send timestamp is relative to (publishers and subscribers live in
/// this one process, so a monotonic clock works).
static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since [`EPOCH`].
pub(crate) fn now_ns() -> u64 {
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A payload of `size` bytes; with `stamp` and at least 8 bytes, the first 8 carry the
/// send time in nanoseconds (little endian).
pub(crate) fn payload(size: usize, stamp: bool) -> Bytes {
    let mut b = BytesMut::zeroed(size);
    if stamp && size >= 8 {
        b[..8].copy_from_slice(&now_ns().to_le_bytes());
    }
    b.freeze()
}

/// Reads the send time out of a stamped payload.
pub(crate) fn stamp_of(payload: &[u8]) -> Option<u64> {
    let head: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(head))
}

/// A latency histogram in nanoseconds, 1 ns to 10 minutes, 3 significant digits.
pub(crate) fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).context("latency histogram")
}

/// Records a duration.
pub(crate) fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
}

/// What one client did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counted {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
    /// From the common start to this client's last message.
    pub(crate) elapsed: Duration,
}

/// CPU seconds (user + system) this process has used so far, from
/// `/proc/self/stat`; `None` where that file does not exist.
pub(crate) fn process_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    cpu_secs_from_stat(&stat)
}

/// Parses utime + stime out of a `/proc/PID/stat` line. They are in clock ticks of
/// `USER_HZ`, which is 100 on every Linux architecture's `/proc` interface.
fn cpu_secs_from_stat(stat: &str) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// The resident set size (VmRSS) of process `pid` in KiB, from `/proc/PID/status`.
pub(crate) fn rss_kb(pid: u32) -> Option<u64> {
    status_kb(
        &std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?,
        "VmRSS:",
    )
}

/// This process's VmRSS in KiB.
pub(crate) fn self_rss_kb() -> Option<u64> {
    status_kb(
        &std::fs::read_to_string("/proc/self/status").ok()?,
        "VmRSS:",
    )
}

fn status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.get(key.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The authorities NATS clients trust when the run is over TLS (`--tls-ca`).
pub(crate) static TLS_CA: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// `options` over TLS when the run asked for it (`--tls-ca`).
pub(crate) fn with_tls(options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
    match TLS_CA.get() {
        Some(ca) => options.require_tls(true).add_root_certificates(ca.clone()),
        None => options,
    }
}

/// Connects one client; every publisher and subscriber gets its own connection.
/// Messages the client itself drops because a subscription's channel is full are
/// counted (approximately: async-nats reports them as slow-consumer events) in
/// `client_drops`.
pub(crate) async fn connect(
    url: &str,
    name: &str,
    client_drops: &Arc<AtomicU64>,
) -> anyhow::Result<async_nats::Client> {
    let drops = client_drops.clone();
    with_tls(async_nats::ConnectOptions::new())
        .name(name)
        // A subscriber that falls behind a fast publisher buffers here rather than
        // dropping messages: the benchmark measures the server, not this channel.
        .subscription_capacity(1 << 20)
        .client_capacity(8192)
        .request_timeout(Some(Duration::from_secs(30)))
        .event_callback(move |event| {
            if let async_nats::Event::SlowConsumer(_) = event {
                drops.fetch_add(1, Ordering::Relaxed);
            }
            std::future::ready(())
        })
        .connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))
}

/// A round trip through the server on `client`'s connection: subscribe to a private
/// inbox, publish to it and wait for the echo. The server handles a connection's
/// operations in order, so once this returns every subscription made before it on
/// this connection is registered (`flush` alone only writes the socket).
pub(crate) async fn round_trip(client: &async_nats::Client) -> anyhow::Result<()> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, Bytes::new()).await?;
    client.flush().await?;
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .map_err(|_| anyhow!("no echo from the server within 10 s"))?
        .ok_or_else(|| anyhow!("connection closed during set-up"))?;
    sub.unsubscribe().await.ok();
    Ok(())
}

/// Waits for `rate` pacing: message number `sent` of a publisher that started at
/// `start` is due at `start + sent / rate`.
pub(crate) async fn pace(start: Instant, sent: u64, rate: f64) {
    if rate > 0.0 {
        let due = start + Duration::from_secs_f64(sent as f64 / rate);
        if due > Instant::now() {
            tokio::time::sleep_until(due.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_parses() {
        let line = "1234 (my (odd) name) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0";
        assert_eq!(cpu_secs_from_stat(line), Some(3.0));
        assert!(process_cpu_secs().is_some());
    }

    #[test]
    fn status_parses() {
        let status = "Name:\tjunction\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(status_kb(status, "VmRSS:"), Some(1024));
        assert_eq!(status_kb(status, "VmSwap:"), None);
        assert!(self_rss_kb().is_some());
        assert_eq!(rss_kb(std::process::id()).map(|k| k > 0), Some(true));
    }

    #[test]
    fn stamps_round_trip() {
        let p = payload(16, true);
        assert!(stamp_of(&p).is_some());
        assert_eq!(payload(4, true).len(), 4);
        assert_eq!(stamp_of(&payload(4, true)), None);
    }
}
