//! A queue group shares a subject's messages among its members: each message goes
//! to exactly one member, none is lost, and (with two members) both get some.
//! Plain subscribers on the same subject still get every message.

use crate::support::{LONG_GUARD, connect, next, sync, varz_u64, within_for};
use async_nats::Subscriber;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

const MESSAGES: usize = 1_000;

/// Reads `sub` until the shared `total` reaches [`MESSAGES`], returning what it read.
async fn drain_member(mut sub: Subscriber, total: Arc<AtomicUsize>) -> Vec<usize> {
    let mut got = Vec::new();
    while total.load(Ordering::SeqCst) < MESSAGES {
        let next = tokio::time::timeout(std::time::Duration::from_millis(100), sub.next()).await;
        match next {
            Ok(Some(m)) => {
                got.push(std::str::from_utf8(&m.payload).unwrap().parse().unwrap());
                total.fetch_add(1, Ordering::SeqCst);
            }
            Ok(None) => panic!("queue subscription ended"),
            Err(_) => {} // nothing yet; check whether the other member finished the count
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn two_members_split_messages_without_loss_or_duplicates() {
    let broker = junction_conformance::broker().await;
    let member_a = connect(&broker).await;
    let member_b = connect(&broker).await;
    let publisher = connect(&broker).await;

    let sub_a = member_a
        .queue_subscribe("work.items", "workers".into())
        .await
        .unwrap();
    let sub_b = member_b
        .queue_subscribe("work.items", "workers".into())
        .await
        .unwrap();
    sync(&member_a).await;
    sync(&member_b).await;
    let out_before = varz_u64(&broker, "out_msgs").await;

    for i in 0..MESSAGES {
        publisher
            .publish("work.items", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    let total = Arc::new(AtomicUsize::new(0));
    let a = tokio::spawn(drain_member(sub_a, total.clone()));
    let b = tokio::spawn(drain_member(sub_b, total.clone()));
    let (got_a, got_b) = within_for(LONG_GUARD, "all queued messages", async {
        (a.await.unwrap(), b.await.unwrap())
    })
    .await;

    assert!(!got_a.is_empty(), "member a got none of {MESSAGES}");
    assert!(!got_b.is_empty(), "member b got none of {MESSAGES}");
    let mut all: Vec<usize> = got_a.iter().chain(&got_b).copied().collect();
    assert_eq!(all.len(), MESSAGES, "one delivery per message");
    all.sort_unstable();
    let distinct: BTreeSet<usize> = all.iter().copied().collect();
    assert_eq!(distinct.len(), MESSAGES, "no message delivered twice");
    assert_eq!(all, (0..MESSAGES).collect::<Vec<_>>(), "no message lost");
    // Each member sees its share in publish order.
    assert!(got_a.is_sorted(), "member a out of order");
    assert!(got_b.is_sorted(), "member b out of order");

    // The broker delivered each message exactly once.
    assert_eq!(
        varz_u64(&broker, "out_msgs").await - out_before,
        MESSAGES as u64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_subscriber_sees_everything_next_to_a_queue_group() {
    let broker = junction_conformance::broker().await;
    let client = connect(&broker).await;
    let mut plain = client.subscribe("jobs").await.unwrap();
    let mut member = client.queue_subscribe("jobs", "q".into()).await.unwrap();
    client.flush().await.unwrap();

    for i in 0..10 {
        client
            .publish("jobs", Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    for i in 0..10 {
        let m = next(&mut plain, "plain copy").await;
        assert_eq!(m.payload, i.to_string());
        let q = next(&mut member, "queue copy").await;
        assert_eq!(q.payload, i.to_string());
    }
    assert_eq!(varz_u64(&broker, "out_msgs").await, 20);
}
