//! `xproto`: MQTT publishers (rumqttc, `--mqtt-url`, `--qos`) to NATS subscribers
//! (async-nats, `--url`) of the subject the topic maps to, on one broker that speaks
//! both (Junction). The headline is what the NATS subscribers received; the latency is
//! MQTT publish to NATS receive, from the send time in the payload.

use super::Plan;
use super::core_nats::{Run, SubContext, connect_all, finish_run, subscribe_loop};
use super::mqtt::{bench_topic, connect_publishers, spawn_publishers};
use super::report::{Report, group};
use super::stats::{histogram, process_cpu_secs, round_trip};
use anyhow::Context as _;
use async_nats::Subject;
use std::time::Instant;

/// The NATS subject of an MQTT topic, by the rules of docs/mqtt.md: `/` separates
/// levels, a `.` inside a level becomes `//`, an empty level becomes `/`.
pub(crate) fn subject_of_topic(topic: &str) -> String {
    topic
        .split('/')
        .map(|level| {
            if level.is_empty() {
                "/".to_string()
            } else {
                level.replace('.', "//")
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// `xproto`: see the module docs.
pub(crate) async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let args = &plan.args;
    let run_id = rand::random::<u32>();
    let topic = bench_topic(plan, run_id)?;
    let subject = Subject::from(subject_of_topic(&topic));
    let stamp = args.size >= 8;

    let sub_clients = connect_all(plan, "sub", plan.subs).await?;
    let mut subscriptions = Vec::with_capacity(plan.subs);
    for c in &sub_clients {
        let s = c.subscribe(subject.clone()).await?;
        round_trip(c).await?;
        subscriptions.push(s);
    }
    let publishers = connect_publishers(plan, &args.mqtt_url, plan.pubs, run_id).await?;

    let Run {
        expected_tx,
        expected_rx,
        stop,
        received,
        published: published_counter,
        bar,
    } = Run::start(plan, args.msgs.saturating_mul(plan.subs as u64));
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let sub_tasks: Vec<_> = subscriptions
        .into_iter()
        .map(|s| {
            tokio::spawn(subscribe_loop(
                s,
                SubContext {
                    expected: expected_rx.clone(),
                    group_total: None,
                    stop: stop.clone(),
                    start,
                    stamp,
                    progress: received.clone(),
                },
            ))
        })
        .collect();
    let pub_tasks = spawn_publishers(plan, publishers, &topic, stamp, start, &published_counter);
    let (published, total_published, results, cpu1) =
        finish_run(pub_tasks, sub_tasks, &expected_tx, &stop, start).await?;
    bar.finish();
    drop(sub_clients);
    let results = results?;

    let mut hist = histogram()?;
    let mut got = Vec::with_capacity(results.len());
    for (c, h) in results {
        hist.add(&h).context("merging latency histograms")?;
        got.push(c);
    }
    let subscribers = group(&got);
    let expected = total_published.saturating_mul(plan.subs as u64);
    let mut report = Report::new(plan, &subscribers, expected);
    report.publishers = Some(group(&published));
    report.subscribers = Some(subscribers);
    report.mqtt_qos = Some(args.qos);
    report.set_latency("publish_to_receive", &hist);
    report.set_cpu(cpu0, cpu1);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_subjects() {
        assert_eq!(subject_of_topic("junction/bench/1"), "junction.bench.1");
        assert_eq!(subject_of_topic("a.b/c"), "a//b.c");
        assert_eq!(subject_of_topic("/a"), "/.a");
    }
}
