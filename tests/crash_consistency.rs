//! Crash consistency: every acknowledged publish survives `kill -9`.
//!
//! Runs the real `junction` binary, publishes to a station through the JetStream API
//! with pipelined acks, kills the process with SIGKILL at a random moment, restarts
//! it on the same data, and repeats. At the end every acknowledged message must be
//! present exactly once, at the sequence its ack named, with no gaps in the sequence
//! numbers. Set `CRASH_CYCLES` to change the number of cycles (default 20).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;

const SUBJECT: &str = "crash.events";

async fn start(data: &Path, port: u16) -> Child {
    process::start_nats_only(data, port).await
}

async fn context(port: u16) -> jetstream::Context {
    let client = async_nats::ConnectOptions::new()
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("connect");
    jetstream::new(client)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_kill_9() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    // id -> acknowledged sequence
    let acked: Arc<Mutex<HashMap<u64, u64>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut next_id = 0u64;
    for cycle in 0..cycles {
        let mut child = start(dir.path(), port).await;
        let js = context(port).await;
        js.get_or_create_stream(jetstream::stream::Config {
            name: "crash".into(),
            subjects: vec![SUBJECT.into()],
            ..Default::default()
        })
        .await
        .expect("stream exists");
        let start_id = next_id;
        next_id += 1_000_000;
        let acked_in = acked.clone();
        let publisher = tokio::spawn(async move {
            let mut in_flight = VecDeque::new();
            let mut id = start_id;
            loop {
                let ack = match js.publish(SUBJECT, Bytes::from(id.to_string())).await {
                    Ok(f) => f,
                    Err(_) => return,
                };
                in_flight.push_back((id, ack));
                id += 1;
                if in_flight.len() >= 128 {
                    let (mid, f) = in_flight.pop_front().unwrap();
                    match f.await {
                        Ok(ack) => {
                            assert!(!ack.duplicate);
                            acked_in.lock().unwrap().insert(mid, ack.sequence);
                        }
                        Err(_) => return,
                    }
                }
            }
        });
        let wait = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(wait)).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
        // Nothing can be acknowledged by a dead server; stop the client's retries.
        publisher.abort();
        let _ = publisher.await;
        eprintln!(
            "cycle {cycle}: {} acknowledged so far",
            acked.lock().unwrap().len()
        );
    }

    let mut child = start(dir.path(), port).await;
    let js = context(port).await;
    let mut stream = js.get_stream("crash").await.expect("stream recovered");
    let last = stream.info().await.unwrap().state.last_sequence;
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "nothing was acknowledged");
    let max_acked = acked.values().copied().max().unwrap();
    assert!(
        last >= max_acked,
        "last sequence {last} < acknowledged {max_acked}"
    );
    // Read everything back by sequence, 64 requests in flight, in order.
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let reads = futures::stream::iter(1..=last)
        .map(|seq| {
            let stream = &stream;
            async move { (seq, stream.get_raw_message(seq).await) }
        })
        .buffered(64);
    futures::pin_mut!(reads);
    while let Some((seq, msg)) = reads.next().await {
        let msg = msg.unwrap_or_else(|e| panic!("sequence {seq} missing: {e}"));
        assert_eq!(msg.sequence, seq);
        let id: u64 = std::str::from_utf8(&msg.payload).unwrap().parse().unwrap();
        assert!(seen.insert(id, seq).is_none(), "message {id} stored twice");
    }
    for (id, seq) in &acked {
        assert_eq!(
            seen.get(id),
            Some(seq),
            "acknowledged message {id} not at {seq}"
        );
    }
    // Sequence order follows publish order within each cycle.
    let mut by_seq: Vec<(u64, u64)> = seen.iter().map(|(id, seq)| (*seq, *id)).collect();
    by_seq.sort();
    assert!(by_seq.windows(2).all(|w| w[0].1 < w[1].1), "out of order");
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
