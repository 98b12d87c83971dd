//! `js-failover`: how long a replicated stream takes no publishes when its
//! leader dies.
//!
//! One publisher on a node that does not lead the stream publishes with
//! `Nats-Msg-Id` and awaits each PubAck (`--msgs` of them first, to warm up).
//! Then the leader's process is killed with SIGKILL (its PID from
//! `--node-pids NAME=PID,...`, by the server name each node gives in INFO),
//! and once the process is gone the publisher goes on, each try given
//! [`TRY_FOR`] before it is sent again with the same id. The failover time is
//! from the kill to the first PubAck of a publish sent after it; it is reported
//! as the single latency sample (`p50_us`), with the new leader. After it, the
//! publisher sends [`AFTER`] more and checks that the stream holds every
//! acknowledged message once.

use super::Plan;
use super::report::{FailoverStats, Report, group};
use super::stats::{Counted, connect, histogram, payload, process_cpu_secs, record};
use anyhow::{Context as _, bail};
use async_nats::jetstream;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How long one try of a publish may wait for its PubAck before it is sent
/// again (the failover time's resolution).
const TRY_FOR: Duration = Duration::from_millis(200);

/// Publishes after the failover, to check the stream is whole.
const AFTER: u64 = 100;

/// Gives up when no publish is acknowledged for this long after the kill.
const GIVE_UP: Duration = Duration::from_secs(120);

/// `NAME=PID,...` → name → PID.
fn node_pids(text: &str) -> anyhow::Result<BTreeMap<String, u32>> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (name, pid) = pair
                .split_once('=')
                .with_context(|| format!("--node-pids: '{pair}' is not NAME=PID"))?;
            let pid = pid
                .parse()
                .with_context(|| format!("--node-pids: '{pid}' is not a PID"))?;
            Ok((name.to_string(), pid))
        })
        .collect()
}

/// Whether process `pid` is gone or only a zombie (its memory and sockets
/// released).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
    }
}

/// Publishes `id` until a PubAck comes (each try waits up to [`TRY_FOR`]);
/// its sequence.
async fn publish_until_acked(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    body: &bytes::Bytes,
    deadline: Instant,
) -> anyhow::Result<u64> {
    loop {
        if Instant::now() > deadline {
            bail!("{id}: no PubAck within {GIVE_UP:?}");
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let started = Instant::now();
        if let Ok(ack) = js
            .publish_with_headers(subject.to_string(), headers, body.clone())
            .await
            && let Ok(Ok(ack)) = tokio::time::timeout(TRY_FOR, ack).await
        {
            return Ok(ack.sequence);
        }
        // A try refused at once (no leader yet) waits out its slot, so a
        // stream without a leader is not flooded.
        tokio::time::sleep(TRY_FOR.saturating_sub(started.elapsed())).await;
    }
}

async fn leader_of(js: &jetstream::Context, stream: &str) -> Option<String> {
    let mut s = js.get_stream(stream).await.ok()?;
    let info = s.info().await.ok()?;
    info.cluster.as_ref()?.leader.clone()
}

pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    if args.replicas < 3 {
        bail!("js-failover needs a replicated stream: --replicas 3 or 5");
    }
    let pids = node_pids(
        args.node_pids
            .as_deref()
            .context("js-failover needs --node-pids NAME=PID,... (every node of the cluster)")?,
    )?;
    let admin = connect(&plan.url, "junction-bench-admin", &plan.client_drops).await?;
    let admin_js = jetstream::new(admin);
    let stream = super::js::ensure_stream(&admin_js, plan).await?;
    let follower = super::js::node_by_role(plan, &stream, super::PubTo::Follower).await?;
    let client = connect(&follower, "junction-bench-failover", &plan.client_drops).await?;
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(5))
        .build(client.clone());
    let subject = format!("{}.bench", args.stream);
    let body = payload(args.size, false);
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let mut acked = BTreeMap::new();
    let mut n = 0u64;
    let deadline = start + GIVE_UP;
    while n < args.msgs {
        let id = format!("f{n}");
        let seq = publish_until_acked(&js, &subject, &id, &body, deadline).await?;
        acked.insert(id, seq);
        n += 1;
    }
    let leader = leader_of(&admin_js, &args.stream)
        .await
        .context("the stream has no leader to kill")?;
    let pid = *pids
        .get(&leader)
        .with_context(|| format!("--node-pids has no PID for the leader {leader}"))?;
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .context("kill -KILL")?;
    while !dead(pid) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let killed = Instant::now();
    let deadline = killed + GIVE_UP;
    let id = format!("f{n}");
    let seq = publish_until_acked(&js, &subject, &id, &body, deadline).await?;
    let failover = killed.elapsed();
    acked.insert(id, seq);
    n += 1;
    let mut hist = histogram()?;
    record(&mut hist, failover);
    for _ in 0..AFTER {
        let id = format!("f{n}");
        let seq = publish_until_acked(&js, &subject, &id, &body, deadline).await?;
        acked.insert(id, seq);
        n += 1;
    }
    let elapsed = start.elapsed();
    let cpu1 = process_cpu_secs();
    // Every acknowledged publish is stored once, at the sequence its PubAck
    // gave, and nothing else is.
    let mut seqs: Vec<u64> = acked.values().copied().collect();
    seqs.sort_unstable();
    seqs.dedup();
    if seqs.len() != acked.len() {
        bail!(
            "{} publishes were acknowledged at {} distinct sequences",
            acked.len(),
            seqs.len()
        );
    }
    let new_leader = leader_of(&js, &args.stream).await.unwrap_or_default();
    let mut s = js.get_stream(&args.stream).await.context("stream info")?;
    let stored = s.info().await.context("stream info")?.state.messages;
    let counted = Counted {
        msgs: acked.len() as u64,
        bytes: acked.len() as u64 * args.size as u64,
        elapsed,
    };
    let publishers = group(&[counted]);
    let mut report = Report::new(plan, &publishers, args.msgs + 1 + AFTER);
    report.publishers = Some(publishers);
    report.set_latency("failover", &hist);
    report.set_cpu(cpu0, cpu1);
    report.failover = Some(FailoverStats {
        killed: leader,
        killed_pid: pid,
        new_leader,
        failover_ms: failover.as_secs_f64() * 1000.0,
        try_ms: TRY_FOR.as_millis() as u64,
        acked: acked.len() as u64,
        stored,
    });
    if stored != acked.len() as u64 {
        bail!(
            "the stream holds {stored} messages after the failover, {} were acknowledged",
            acked.len()
        );
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_pids_are_read_and_bad_ones_named() {
        let m = node_pids("n0=12, n1=34,").unwrap();
        assert_eq!(m.get("n0"), Some(&12));
        assert_eq!(m.get("n1"), Some(&34));
        assert!(
            node_pids("n0")
                .unwrap_err()
                .to_string()
                .contains("NAME=PID")
        );
        assert!(
            node_pids("n0=x")
                .unwrap_err()
                .to_string()
                .contains("not a PID")
        );
    }

    #[test]
    fn this_process_is_alive_and_a_missing_one_dead() {
        assert!(!dead(std::process::id()));
        assert!(dead(u32::MAX));
    }
}
