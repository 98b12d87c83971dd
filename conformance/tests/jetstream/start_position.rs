//! Where a new consumer starts: all (default), by start sequence, by start time,
//! last, new, last per subject.

use crate::support::{
    connect, consumer_info, create_consumer, publish, pull_n, pull_once, seq, simple_stream, within,
};
use async_nats::jetstream::consumer::{DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::Stream;
use junction_conformance::broker;
use std::time::Duration;

async fn consumer(s: &Stream, name: &str, deliver_policy: DeliverPolicy) -> PullConsumer {
    create_consumer(
        s,
        pull::Config {
            durable_name: Some(name.into()),
            deliver_policy,
            ..Default::default()
        },
    )
    .await
}

async fn seqs(c: &PullConsumer, n: usize) -> Vec<u64> {
    let got = pull_n(c, n).await;
    assert!(
        pull_once(c, 10, Duration::from_millis(300))
            .await
            .is_empty(),
        "more than {n} messages"
    );
    got.iter().map(seq).collect()
}

/// A stream "S" with ten messages: s.a, s.b, s.c, s.a, ... (seq 1..=10).
async fn ten(js: &async_nats::jetstream::Context) -> Stream {
    let s = simple_stream(js, "S", &["s.>"]).await;
    for i in 0..10 {
        publish(
            js,
            &format!("s.{}", ["a", "b", "c"][i % 3]),
            format!("m{i}"),
        )
        .await;
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn all_and_by_start_sequence() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = ten(&js).await;
    let all = consumer(&s, "ALL", DeliverPolicy::All).await;
    assert_eq!(seqs(&all, 10).await, (1..=10).collect::<Vec<_>>());
    let from5 = consumer(
        &s,
        "FROM5",
        DeliverPolicy::ByStartSequence { start_sequence: 5 },
    )
    .await;
    assert_eq!(seqs(&from5, 6).await, (5..=10).collect::<Vec<_>>());
    let info = consumer_info(&s, "FROM5").await;
    assert_eq!(
        info.config.deliver_policy,
        DeliverPolicy::ByStartSequence { start_sequence: 5 }
    );
    // Past the end: only what comes next.
    let ahead = consumer(
        &s,
        "AHEAD",
        DeliverPolicy::ByStartSequence { start_sequence: 12 },
    )
    .await;
    publish(&js, "s.a", "11").await;
    publish(&js, "s.a", "12").await;
    assert_eq!(seqs(&ahead, 1).await, [12]);
}

#[tokio::test(flavor = "multi_thread")]
async fn by_start_time() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = ten(&js).await;
    // Start at the stored time of message 6: every message stored at or after it.
    let mut times = Vec::new();
    for n in 1..=10 {
        times.push(within("get", s.get_raw_message(n)).await.unwrap().time);
    }
    let start = times[5];
    let expected: Vec<u64> = (1..=10u64)
        .filter(|n| times[*n as usize - 1] >= start)
        .collect();
    assert_eq!(expected.last(), Some(&10));
    let c = consumer(&s, "T", DeliverPolicy::ByStartTime { start_time: start }).await;
    assert_eq!(seqs(&c, expected.len()).await, expected);
    // A start time after the last message: nothing to deliver.
    let later = start + Duration::from_secs(3600);
    let c = consumer(
        &s,
        "LATER",
        DeliverPolicy::ByStartTime { start_time: later },
    )
    .await;
    assert!(
        pull_once(&c, 10, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn last_and_new() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = ten(&js).await;
    let last = consumer(&s, "LAST", DeliverPolicy::Last).await;
    let new = consumer(&s, "NEW", DeliverPolicy::New).await;
    assert_eq!(seqs(&last, 1).await, [10]);
    assert!(
        pull_once(&new, 10, Duration::from_millis(300))
            .await
            .is_empty()
    );
    publish(&js, "s.z", "eleven").await;
    assert_eq!(seqs(&new, 1).await, [11]);
    assert_eq!(seqs(&last, 1).await, [11]);
}

#[tokio::test(flavor = "multi_thread")]
async fn last_per_subject() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = ten(&js).await;
    // s.a: 1,4,7,10  s.b: 2,5,8  s.c: 3,6,9
    let c = consumer(&s, "LPS", DeliverPolicy::LastPerSubject).await;
    assert_eq!(seqs(&c, 3).await, [8, 9, 10]);
    // Then new messages.
    publish(&js, "s.b", "x").await;
    assert_eq!(seqs(&c, 1).await, [11]);

    let filtered = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("LPS_B".into()),
            deliver_policy: DeliverPolicy::LastPerSubject,
            filter_subject: "s.b".into(),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&filtered, 1).await, [11]);
}
