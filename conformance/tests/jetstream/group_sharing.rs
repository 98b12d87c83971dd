//! One durable consumer shared by several members: each message goes to exactly
//! one of them; none is lost or delivered twice.

use crate::support::{LONG_GUARD, connect, durable, seq, simple_stream, within, within_for};
use async_nats::jetstream::consumer::PullConsumer;
use futures::StreamExt;
use junction_conformance::broker;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const TOTAL: usize = 1000;

/// A member: pulls small batches until the members together have `TOTAL`, acking
/// each message; returns the stream sequences it got.
async fn member(consumer: PullConsumer, seen: Arc<AtomicUsize>) -> Vec<u64> {
    let mut mine = Vec::new();
    while seen.load(Ordering::SeqCst) < TOTAL {
        let mut batch = consumer
            .batch()
            .max_messages(10)
            .expires(Duration::from_millis(300))
            .messages()
            .await
            .expect("pull request");
        while let Some(m) = batch.next().await {
            let m = m.expect("pulled message");
            mine.push(seq(&m));
            m.ack().await.expect("ack");
            seen.fetch_add(1, Ordering::SeqCst);
        }
    }
    mine
}

#[tokio::test(flavor = "multi_thread")]
async fn members_share_without_loss_or_duplicates() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    durable(&s, "WORKERS").await;

    // Publish everything with PubAcks outstanding at once, then wait for them all.
    let mut acks = Vec::with_capacity(TOTAL);
    for i in 0..TOTAL {
        acks.push(
            js.publish("s.work", format!("job{i}").into())
                .await
                .unwrap(),
        );
    }
    for ack in acks {
        ack.await.unwrap();
    }
    drop(client);

    // Two members, each on its own connection, both connected before either pulls.
    let seen = Arc::new(AtomicUsize::new(0));
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let mut members = Vec::new();
    for _ in 0..2 {
        let (_c, js) = connect(&b).await;
        let consumer: PullConsumer = within("get consumer", async {
            js.get_stream("S")
                .await
                .unwrap()
                .get_consumer("WORKERS")
                .await
                .unwrap()
        })
        .await;
        let (seen, start) = (seen.clone(), start.clone());
        members.push(tokio::spawn(async move {
            start.wait().await;
            member(consumer, seen).await
        }));
    }
    let mut all = Vec::new();
    let mut counts = Vec::new();
    for m in members {
        let got = within_for(LONG_GUARD, "members to drain the stream", m)
            .await
            .unwrap();
        counts.push(got.len());
        all.extend(got);
    }
    assert_eq!(all.len(), TOTAL, "per member: {counts:?}");
    let distinct: BTreeSet<u64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), TOTAL, "duplicates delivered");
    assert_eq!(distinct, (1..=TOTAL as u64).collect::<BTreeSet<_>>());
    assert!(
        counts.iter().all(|n| *n > 0),
        "a member got nothing: {counts:?}"
    );
}
