//! Compaction is crash-safe: SIGKILL during compaction, many times over, and
//! no key loses its newest acknowledged value, and no deleted key comes back
//! (NATS KV brought purged values back after an unclean shutdown:
//! nats-server #8505).
//!
//! The real `junction` runs a compacted station (min_lag 0, tombstones kept
//! 300 ms). Each cycle publishes updates and deletes (`KV-Operation: DEL`)
//! with pipelined acks, at most one unacknowledged publish per key, and is
//! killed with SIGKILL: on even cycles as soon as `STREAM.INFO` shows the
//! compacted count moving (a pass is under way), on odd cycles at a random
//! moment. After each restart, every key's newest message (`MSG.GET` by
//! subject) must be its last acknowledged operation or the one in flight at
//! the kill; a key whose last acknowledged operation was a delete may have
//! nothing left (its tombstone expired), never an older value. Fifty keys are
//! deleted in cycle 1 and never written again: they must stay gone through
//! every later crash. `COMPACTION_CRASH_CYCLES` sets the cycles (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream;
use bytes::Bytes;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::compaction as support;
use support::process;

/// Keys written throughout.
const LIVE_KEYS: u64 = 150;
/// Keys written in cycle 0, deleted in cycle 1, then left alone.
const DELETED_KEYS: std::ops::Range<u64> = 150..200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put(u64),
    Del(u64),
}

#[derive(Default)]
struct Ledger {
    /// key -> its last acknowledged operation.
    acked: HashMap<u64, Op>,
    /// key -> the operation published and not (yet) acknowledged.
    in_flight: HashMap<u64, Op>,
    /// Highest sequence acknowledged.
    max_seq: u64,
}

async fn publish(
    js: &jetstream::Context,
    key: u64,
    op: Op,
) -> jetstream::context::PublishAckFuture {
    let subject = format!("crashkv.k{key}");
    match op {
        Op::Put(n) => js.publish(subject, Bytes::from(n.to_string())).await,
        Op::Del(n) => {
            let mut h = async_nats::HeaderMap::new();
            h.insert("KV-Operation", "DEL");
            js.publish_with_headers(subject, h, Bytes::from(n.to_string()))
                .await
        }
    }
    .expect("published")
}

/// Publishes `op` on `key` and waits for its ack.
async fn publish_acked(js: &jetstream::Context, ledger: &Mutex<Ledger>, key: u64, op: Op) {
    let ack = publish(js, key, op).await.await.expect("acked");
    let mut l = ledger.lock().unwrap();
    l.acked.insert(key, op);
    l.max_seq = l.max_seq.max(ack.sequence);
}

/// Every key's newest message as the broker has it.
async fn actual(js: &jetstream::Context) -> HashMap<u64, Op> {
    let stream = js.get_stream("crashkv").await.expect("stream recovered");
    let mut out = HashMap::new();
    for key in 0..DELETED_KEYS.end {
        let Ok(m) = stream
            .get_last_raw_message_by_subject(&format!("crashkv.k{key}"))
            .await
        else {
            continue;
        };
        let n: u64 = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        let del = m
            .headers
            .get("KV-Operation")
            .is_some_and(|v| v.as_str() == "DEL");
        out.insert(key, if del { Op::Del(n) } else { Op::Put(n) });
    }
    out
}

/// Checks the broker against the ledger, then makes the ledger what the
/// broker has (an in-flight operation either landed or was lost).
fn check(ledger: &mut Ledger, actual: &HashMap<u64, Op>, when: &str) {
    for key in 0..DELETED_KEYS.end {
        let got = actual.get(&key).copied();
        let acked = ledger.acked.get(&key).copied();
        let flight = ledger.in_flight.get(&key).copied();
        if let Some(op) = got
            && got == flight
        {
            ledger.acked.insert(key, op);
            continue;
        }
        // The delete in flight landed, and its tombstone has expired since.
        if got.is_none()
            && let Some(Op::Del(n)) = flight
        {
            ledger.acked.insert(key, Op::Del(n));
            continue;
        }
        match acked {
            Some(Op::Put(n)) => assert_eq!(
                got,
                Some(Op::Put(n)),
                "{when}: key {key} lost its newest value (in flight: {flight:?})"
            ),
            Some(Op::Del(n)) => assert!(
                got.is_none() || got == Some(Op::Del(n)),
                "{when}: deleted key {key} came back as {got:?} (deleted by op {n}, in flight: {flight:?})"
            ),
            None => assert_eq!(got, None, "{when}: key {key} was never acknowledged"),
        }
    }
    ledger.in_flight.clear();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_compaction_loses_no_key_and_revives_no_deleted_key() {
    let cycles: usize = std::env::var("COMPACTION_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let (nats, http) = (process::free_port(), process::free_port());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut next_op = 0u64;
    let mut compacted_total = 0u64;
    let mut killed_while_compacting = 0;
    for cycle in 0..cycles {
        let mut child = support::start(dir.path(), nats, http).await;
        let nc = support::client(nats).await;
        let js = jetstream::new(nc.clone());
        if cycle == 0 {
            js.create_stream(jetstream::stream::Config {
                name: "crashkv".into(),
                subjects: vec!["crashkv.>".into()],
                metadata: [
                    ("junction.compact.min_lag_ms", "0"),
                    ("junction.compact.max_lag_ms", "200"),
                    ("junction.compact.tombstone_retention_ms", "300"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
                ..Default::default()
            })
            .await
            .expect("compacted stream");
        } else {
            let now = actual(&js).await;
            let info = support::raw_info(&nc, "crashkv").await;
            let mut l = ledger.lock().unwrap();
            check(&mut l, &now, &format!("after crash {cycle}"));
            let last = info["state"]["last_seq"].as_u64().unwrap();
            assert!(
                last >= l.max_seq,
                "after crash {cycle}: last sequence {last} is below the acknowledged {}",
                l.max_seq
            );
            drop(l);
            compacted_total = info["state"]["junction_compacted"].as_u64().unwrap_or(0);
        }
        // Cycle 0 writes the keys that cycle 1 deletes for good.
        for key in DELETED_KEYS {
            let op = if cycle == 0 {
                Some(Op::Put(next_op))
            } else if cycle == 1 {
                Some(Op::Del(next_op))
            } else {
                None
            };
            if let Some(op) = op {
                publish_acked(&js, &ledger, key, op).await;
                next_op += 1;
            }
        }

        let start_op = next_op;
        next_op += 10_000_000;
        let (js_pub, ledger_pub) = (js.clone(), ledger.clone());
        let publisher = tokio::spawn(async move {
            let mut window = VecDeque::new();
            let mut n = start_op;
            loop {
                let key = n % LIVE_KEYS;
                let op = if rand::rng().random_range(0..7) == 0 {
                    Op::Del(n)
                } else {
                    Op::Put(n)
                };
                ledger_pub.lock().unwrap().in_flight.insert(key, op);
                window.push_back((key, op, publish(&js_pub, key, op).await));
                n += 1;
                // 64 in flight, fewer than the keys: one per key at most.
                if window.len() >= 64 {
                    let (key, op, ack) = window.pop_front().unwrap();
                    let Ok(ack) = ack.await else { return };
                    let mut l = ledger_pub.lock().unwrap();
                    l.acked.insert(key, op);
                    l.max_seq = l.max_seq.max(ack.sequence);
                    if l.in_flight.get(&key) == Some(&op) {
                        l.in_flight.remove(&key);
                    }
                }
            }
        });
        let published_for = Duration::from_millis(rand::rng().random_range(300..1500));
        tokio::time::sleep(published_for).await;
        if cycle % 2 == 0 {
            // Kill as soon as a compaction pass is seen removing messages.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while tokio::time::Instant::now() < deadline {
                let info = support::raw_info(&nc, "crashkv").await;
                let c = info["state"]["junction_compacted"].as_u64().unwrap_or(0);
                if c > compacted_total {
                    killed_while_compacting += 1;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        child.start_kill().unwrap();
        let _ = child.wait().await;
        publisher.abort();
        let _ = publisher.await;
        let l = ledger.lock().unwrap();
        eprintln!(
            "cycle {cycle}: killed; {} keys acknowledged, {} in flight, max seq {}",
            l.acked.len(),
            l.in_flight.len(),
            l.max_seq
        );
    }

    // A last start: check, then let compaction settle and read everything.
    let _child = support::start(dir.path(), nats, http).await;
    let nc = support::client(nats).await;
    let js = jetstream::new(nc.clone());
    let now = actual(&js).await;
    let live: Vec<u64> = {
        let mut l = ledger.lock().unwrap();
        check(&mut l, &now, "after the last crash");
        (0..DELETED_KEYS.end)
            .filter(|k| matches!(l.acked.get(k), Some(Op::Put(_))))
            .collect()
    };
    let state = support::wait_state(
        &nc,
        "crashkv",
        Duration::from_secs(60),
        "compaction settles",
        |s| s["messages"] == live.len() as u64,
    )
    .await;
    eprintln!(
        "{cycles} kills ({killed_while_compacting} while compaction was removing messages); \
         {} keys live, {} compacted, last seq {}",
        live.len(),
        state["junction_compacted"],
        state["last_seq"]
    );
    let all = support::read_all(&js, "crashkv", 1).await;
    let l = ledger.lock().unwrap();
    assert_eq!(all.len(), live.len());
    for (_, subject, op, body) in &all {
        let key: u64 = subject.trim_start_matches("crashkv.k").parse().unwrap();
        assert_eq!(op, &None, "{subject}: only values are left");
        assert_eq!(
            l.acked.get(&key),
            Some(&Op::Put(body.parse().unwrap())),
            "{subject}"
        );
    }
    for key in DELETED_KEYS {
        assert!(
            all.iter().all(|m| m.1 != format!("crashkv.k{key}")),
            "key {key}, deleted in cycle 1, stays deleted"
        );
    }
    assert!(
        killed_while_compacting > 0,
        "no kill landed while compaction was removing messages"
    );
}
