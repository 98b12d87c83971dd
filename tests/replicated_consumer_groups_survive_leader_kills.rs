//! Consumer groups on replicated stations (R3) through leader kills, with three
//! real `junction` processes and async-nats:
//! - a **work-queue** stream: a durable pull consumer takes messages and
//!   acknowledges them with AckSync (`double_ack`) while the station's leader is
//!   killed with SIGKILL twice (restarted each time). Every acknowledged publish
//!   is delivered at least once; no message whose AckSync was answered is ever
//!   delivered again; at the end the station is empty on every replica (the
//!   deletes went through the station's log, so every copy agrees) and
//!   STREAM.INFO reports 0 messages;
//! - an **interest** stream with two durable consumers: a message stays on every
//!   replica until both have acknowledged it, and goes from every replica once
//!   they have; deleting a consumer releases what only it held back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, until};
use futures::StreamExt;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// A client that knows every node, so it moves to another when its node dies.
async fn js_all(c: &Cluster) -> jetstream::Context {
    let urls: Vec<async_nats::ServerAddr> = (0..c.nodes.len())
        .map(|i| c.nats_url(i).parse().unwrap())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(urls)
        .await
        .unwrap();
    let mut js = jetstream::new(client);
    js.set_timeout(Duration::from_secs(5));
    js
}

/// The sequences in node `i`'s own copy.
async fn copy(c: &Cluster, i: usize, name: &str) -> Vec<u64> {
    cluster::replica_messages(c.nodes[i].http, name)
        .await
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
}

async fn leader(c: &Cluster, i: usize, name: &str) -> Option<String> {
    let v = get_json(c.nodes[i].http, &format!("/v1/stations/{name}")).await;
    v["cluster"]["leader"].as_str().map(str::to_string)
}

/// Every node up reports the same leader; returns its index.
async fn until_leader(c: &Cluster, up: &[usize], name: &str) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut seen = BTreeSet::new();
        let mut all = true;
        for i in up {
            match leader(c, *i, name).await {
                Some(l) => {
                    seen.insert(l);
                }
                None => all = false,
            }
        }
        if all && seen.len() == 1 {
            let l = c.index_of(seen.first().unwrap());
            if up.contains(&l) {
                return l;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no leader of {name} agreed on by {up:?} in 30 s (seen {seen:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    ids: std::ops::Range<u32>,
) -> Vec<u64> {
    let mut acked = Vec::new();
    for n in ids {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("m{n}").as_str());
        // Retried until acknowledged: the same id is never stored twice.
        for _ in 0..20 {
            let sent = js
                .publish_with_headers(subject.to_string(), headers.clone(), format!("m{n}").into())
                .await;
            if let Ok(wait) = sent
                && let Ok(ack) = wait.await
            {
                acked.push(ack.sequence);
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_queue_on_r3_delivers_everything_and_ends_empty_through_leader_kills() {
    let mut c = Cluster::start(3, &[]).await;
    let js = js_all(&c).await;
    js.create_stream(stream::Config {
        name: "jobs".into(),
        subjects: vec!["jobs.>".into()],
        retention: stream::RetentionPolicy::WorkQueue,
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let all = [0, 1, 2];
    until_leader(&c, &all, "jobs").await;
    let mut published: BTreeSet<u64> = publish_all(&js, "jobs.new", 0..300)
        .await
        .into_iter()
        .collect();
    assert_eq!(published.len(), 300);

    let consumer: consumer::PullConsumer = js
        .get_stream("jobs")
        .await
        .unwrap()
        .create_consumer(consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(3),
            ..Default::default()
        })
        .await
        .unwrap();

    // seq → how many times delivered; the seqs whose AckSync was answered.
    let mut delivered: BTreeMap<u64, u32> = BTreeMap::new();
    let mut sync_acked: BTreeSet<u64> = BTreeSet::new();
    let mut redelivered_after_ack = Vec::new();
    let mut kills = 0;
    let mut more_published = false;
    let mut idle_rounds = 0;
    while idle_rounds < 8 {
        let batch = consumer
            .fetch()
            .max_messages(20)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let Ok(mut batch) = batch else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let mut got = 0;
        while let Some(m) = batch.next().await {
            let Ok(m) = m else { break };
            let Ok(info) = m.info() else { continue };
            let seq = info.stream_sequence;
            got += 1;
            *delivered.entry(seq).or_default() += 1;
            if sync_acked.contains(&seq) {
                redelivered_after_ack.push(seq);
            }
            // Half-way through a batch, at 100 and 200 acked, the leader dies.
            if got == 10 && kills < 2 && sync_acked.len() >= 100 * (kills + 1) {
                let up: Vec<usize> = (0..3).collect();
                let l = until_leader(&c, &up, "jobs").await;
                eprintln!(
                    "kill -9 the leader {} after {} acked",
                    c.nodes[l].name,
                    sync_acked.len()
                );
                c.kill(l).await;
                let alive: Vec<usize> = up.into_iter().filter(|i| *i != l).collect();
                until_leader(&c, &alive, "jobs").await;
                c.restart(l).await;
                kills += 1;
            }
            if m.double_ack().await.is_ok() {
                sync_acked.insert(seq);
            }
        }
        if got == 0 {
            idle_rounds += 1;
            if !more_published && kills == 2 {
                // More work after the kills, through the new leader.
                published.extend(publish_all(&js, "jobs.more", 300..350).await);
                more_published = true;
                idle_rounds = 0;
            }
        } else {
            idle_rounds = 0;
        }
    }
    assert_eq!(kills, 2, "the leader was killed twice");
    assert!(more_published);
    assert_eq!(published.len(), 350);
    let missing: Vec<u64> = published
        .iter()
        .filter(|s| !delivered.contains_key(s))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged publishes never delivered: {missing:?}"
    );
    assert!(
        redelivered_after_ack.is_empty(),
        "delivered again after their AckSync was answered: {redelivered_after_ack:?}"
    );
    let again = delivered.values().filter(|n| **n > 1).count();
    eprintln!(
        "published={} delivered={} sync_acked={} delivered_more_than_once={again}",
        published.len(),
        delivered.len(),
        sync_acked.len()
    );

    // Every replica ends empty, and says so.
    until("the work queue is empty on every replica", || async {
        for i in 0..3 {
            if !copy(&c, i, "jobs").await.is_empty() {
                return false;
            }
        }
        true
    })
    .await;
    let mut s = js.get_stream("jobs").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.state.messages, 0, "{:?}", info.state);
    assert_eq!(info.state.last_sequence, 350);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interest_stream_on_r3_keeps_a_message_until_every_consumer_acked_it() {
    let c = Cluster::start(3, &[]).await;
    let js = js_all(&c).await;
    let s = js
        .create_stream(stream::Config {
            name: "audit".into(),
            subjects: vec!["audit.>".into()],
            retention: stream::RetentionPolicy::Interest,
            num_replicas: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    until_leader(&c, &[0, 1, 2], "audit").await;
    let mut consumers = Vec::new();
    for name in ["billing", "reports"] {
        let pc: consumer::PullConsumer = s
            .create_consumer(consumer::pull::Config {
                durable_name: Some(name.into()),
                ack_policy: consumer::AckPolicy::Explicit,
                ..Default::default()
            })
            .await
            .unwrap();
        consumers.push(pc);
    }
    let acked = publish_all(&js, "audit.login", 0..20).await;
    assert_eq!(acked, (1..=20).collect::<Vec<_>>());

    // "billing" acks all 20: every replica keeps them ("reports" has not).
    let mut got = consumers[0]
        .fetch()
        .max_messages(20)
        .messages()
        .await
        .unwrap();
    let mut n = 0;
    while let Some(m) = got.next().await {
        m.unwrap().double_ack().await.unwrap();
        n += 1;
    }
    assert_eq!(n, 20);
    // "reports" acks the first 5: they go from every replica, the rest stay.
    let mut got = consumers[1]
        .fetch()
        .max_messages(5)
        .messages()
        .await
        .unwrap();
    while let Some(m) = got.next().await {
        m.unwrap().double_ack().await.unwrap();
    }
    until(
        "the 5 both consumers acked are gone from every replica",
        || async {
            for i in 0..3 {
                if copy(&c, i, "audit").await != (6..=20).collect::<Vec<_>>() {
                    return false;
                }
            }
            true
        },
    )
    .await;
    // Deleting "reports" releases the 15 only it held back, on every replica.
    js.get_stream("audit")
        .await
        .unwrap()
        .delete_consumer("reports")
        .await
        .unwrap();
    until(
        "every replica is empty once the last holder is gone",
        || async {
            for i in 0..3 {
                if !copy(&c, i, "audit").await.is_empty() {
                    return false;
                }
            }
            true
        },
    )
    .await;
}
