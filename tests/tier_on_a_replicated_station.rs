//! Tiering a replicated station (R3): three real `junction` processes sharing
//! one bucket (moto's server mode), a snapshot every 20 log entries
//! (`JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES`).
//!
//! - Only the leader uploads: each segment it uploads is recorded through the
//!   station's Raft group, so every replica has the same remote index, and
//!   each replica trims its own disk of what the index holds. The bucket has
//!   one object per index entry, not one per replica.
//! - A consumer from sequence 1 gets every acknowledged message once, in
//!   order, through the remote range.
//! - After a `kill -9` of the leader, the new leader uploads on from where
//!   the group's index ends.
//! - The killed replica, whose log was purged meanwhile on the others, comes
//!   back with the group's index (from the leader's snapshot) and trims its
//!   own disk too; the consumer from sequence 1 still gets every message
//!   once, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;

use crate::support::cluster;

use crate::support::s3;

use async_nats::jetstream::{self, consumer, stream};
use cluster::{Cluster, get_json, until};

use futures::StreamExt;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;

const STATION: &str = "rtier";
const PAYLOAD: usize = 512;
const SEGMENT_BYTES: u64 = 48 * 1024;
const LOCAL_MAX_BYTES: u64 = 96 * 1024;
const PREFIX: &str = "r3";

/// The payload of message `n`: its id, then filler that depends on `n`.
fn payload(n: u64) -> Vec<u8> {
    let mut p = format!("m{n}:").into_bytes();
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while p.len() < PAYLOAD {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.push(b'a' + (x % 26) as u8);
    }
    p
}

/// Publishes `from..to` with `Nats-Msg-Id` `m<n>`, each sent again until
/// acknowledged (as a client does while a leader is replaced).
async fn publish(js: &jetstream::Context, from: u64, to: u64) {
    for n in from..to {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("m{n}").as_str());
        let mut tries = 0;
        loop {
            let acked = match js
                .publish_with_headers(
                    format!("{STATION}.k{}", n % 7),
                    headers.clone(),
                    payload(n).into(),
                )
                .await
            {
                Ok(wait) => wait.await.is_ok(),
                Err(_) => false,
            };
            if acked {
                break;
            }
            tries += 1;
            assert!(tries < 100, "m{n} never acknowledged");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Node `i`'s own replica: its role, local first sequence, remote segments
/// and the last sequence of its remote index.
async fn copy(c: &Cluster, i: usize) -> Value {
    get_json(
        c.nodes[i].http,
        &format!("/v1/stations/{STATION}/replica?limit=1"),
    )
    .await
}

/// Waits until every node in `nodes` has the same remote index reaching at
/// least `through`, and has trimmed its own disk (its local log starts above
/// 1); the index's (segments, last sequence).
async fn until_tiered(c: &Cluster, nodes: &[usize], through: u64) -> (u64, u64) {
    let deadline = std::time::Instant::now() + process::GUARD;
    loop {
        let mut all = Vec::new();
        let mut pages = Vec::new();
        for &i in nodes {
            let v = copy(c, i).await;
            let local = v["local_first_seq"].as_u64().unwrap_or(0);
            let segs = v["remote_segments"].as_u64().unwrap_or(0);
            let last = v["remote_last_seq"].as_u64().unwrap_or(0);
            if local > 1 && last >= through && segs > 0 {
                all.push((segs, last));
            }
            pages.push(v);
        }
        if all.len() == nodes.len() && all.windows(2).all(|w| w[0] == w[1]) {
            return all[0];
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replicas never agreed on a remote index reaching {through} with their disks trimmed: {pages:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads the whole station from sequence 1 through node `i` (a pull
/// consumer, no acks): every message's number, in order.
async fn read_all(c: &Cluster, i: usize, expect: u64) -> Vec<u64> {
    let js = jetstream::new(async_nats::connect(c.nats_url(i)).await.unwrap());
    let s = js.get_stream(STATION).await.unwrap();
    let name = format!("reader{}", rand_suffix());
    let consumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy: consumer::DeliverPolicy::All,
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(200)
        .messages()
        .await
        .unwrap();
    while (out.len() as u64) < expect {
        let m = tokio::time::timeout(process::GUARD, messages.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {expect} read", out.len()))
            .unwrap()
            .unwrap();
        let n: u64 = std::str::from_utf8(&m.payload)
            .unwrap()
            .split(':')
            .next()
            .unwrap()
            .trim_start_matches('m')
            .parse()
            .unwrap();
        assert_eq!(m.payload.as_ref(), payload(n).as_slice(), "payload of m{n}");
        out.push(n);
    }
    drop(messages);
    s.delete_consumer(&name).await.unwrap();
    out
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_station_tiers_once_and_keeps_every_message_across_a_leader_kill() {
    let Some(s3) = s3::moto().await else { return };
    let mut env: Vec<(&str, String)> = s3.tier_env(PREFIX);
    env.push(("JUNCTION_TIER_CACHE_BYTES", "4MiB".into()));
    env.push(("JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES", "20".into()));
    env.push((
        "RUST_LOG",
        "warn,junction=info,junction_cluster=info".into(),
    ));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut c = Cluster::start(3, &env).await;

    let js0 = jetstream::new(async_nats::connect(c.nats_url(0)).await.unwrap());
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", SEGMENT_BYTES.to_string()),
        ("junction.tier.local_max_bytes", LOCAL_MAX_BYTES.to_string()),
        ("junction.tier.segment_max_age_ms", "1000".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    js0.create_stream(stream::Config {
        name: STATION.into(),
        subjects: vec![format!("{STATION}.>")],
        num_replicas: 3,
        metadata,
        ..Default::default()
    })
    .await
    .unwrap();
    until(
        "the station has 3 current replicas and a leader",
        || async {
            let (names, leader) = cluster::station_placement(c.nodes[0].http, STATION).await;
            names.len() == 3 && leader.is_some()
        },
    )
    .await;

    // 1,500 messages of 512 B: several segments, most of them off every disk.
    publish(&js0, 0, 1500).await;
    // Every message in the index (the last segment seals by age): no upload
    // is still on its way when the bucket is listed.
    let (segments, through) = until_tiered(&c, &[0, 1, 2], 1500).await;
    assert!(segments >= 3, "{segments} segments");
    // One object per index entry: the followers uploaded nothing.
    let objects = s3.list_segments(PREFIX).await;
    assert_eq!(objects.len() as u64, segments, "objects {objects:?}");
    let read = read_all(&c, 0, 1500).await;
    assert_eq!(read, (0..1500).collect::<Vec<_>>());

    // kill -9 of the leader; 1,500 more through a survivor.
    let leader = cluster::station_placement(c.nodes[0].http, STATION)
        .await
        .1
        .unwrap();
    let dead = c.index_of(&leader);
    c.kill(dead).await;
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    let js = jetstream::new(async_nats::connect(c.nats_url(alive[0])).await.unwrap());
    publish(&js, 1500, 3000).await;
    let (segments2, through2) = until_tiered(&c, &alive, through + 1000).await;
    assert!(segments2 > segments && through2 > through);
    let read = read_all(&c, alive[0], 3000).await;
    assert_eq!(
        read,
        (0..3000).collect::<Vec<_>>(),
        "after the leader's kill"
    );

    // The killed replica comes back: its log was purged on the others (a
    // snapshot every 20 entries), so it catches up from a snapshot that
    // carries the index, and trims its disk like the others.
    c.restart(dead).await;
    let (segments3, through3) = until_tiered(&c, &[0, 1, 2], through2).await;
    eprintln!(
        "index: {segments} segments through {through}, then {segments2} through {through2}, then {segments3} through {through3}; restarted replica: {}",
        copy(&c, dead).await
    );
    assert!(segments3 >= segments2 && through3 >= through2);
    let objects = s3.list_segments(PREFIX).await;
    // At most one object the killed leader uploaded without its entry being
    // committed (an orphan the reconciler removes after an hour).
    assert!(
        (objects.len() as u64) >= segments3 && (objects.len() as u64) <= segments3 + 1,
        "{} objects for {segments3} index entries",
        objects.len()
    );
    let read = read_all(&c, dead, 3000).await;
    assert_eq!(read, (0..3000).collect::<Vec<_>>(), "after the restart");

    // The station's own limits bound local plus remote: at most 1,000
    // messages. The leader drops the oldest segments through the group, so
    // every replica's index shrinks alike, and their objects leave the bucket.
    let mut config = js0
        .get_stream(STATION)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .config
        .clone();
    config.max_messages = 1000;
    js0.update_stream(config).await.unwrap();
    let deadline = std::time::Instant::now() + process::GUARD;
    let kept = loop {
        let copies = [copy(&c, 0).await, copy(&c, 1).await, copy(&c, 2).await];
        let segs: Vec<u64> = copies
            .iter()
            .map(|v| v["remote_segments"].as_u64().unwrap_or(0))
            .collect();
        let info = get_json(c.nodes[0].http, &format!("/v1/stations/{STATION}")).await;
        let messages = info["state"]["messages"].as_u64().unwrap_or(0);
        if segs.windows(2).all(|w| w[0] == w[1]) && segs[0] < segments3 && messages <= 1000 + 150 {
            break (
                segs[0],
                info["state"]["first_seq"].as_u64().unwrap(),
                messages,
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "remote segments never dropped: {segs:?}, {info}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (segments4, first, messages) = kept;
    assert!(
        first > 1 && messages >= 1000,
        "first {first}, {messages} messages"
    );
    until("the dropped segments' objects leave the bucket", || async {
        let n = s3.list_segments(PREFIX).await.len() as u64;
        n <= segments4 + 1
    })
    .await;
    let read = read_all(&c, 0, messages).await;
    assert_eq!(
        read,
        (first - 1..3000).collect::<Vec<_>>(),
        "within the limit"
    );
}
