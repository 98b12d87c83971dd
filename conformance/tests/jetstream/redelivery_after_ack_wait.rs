//! Redelivery: a message not acked within `ack_wait` is delivered again with its
//! delivery count raised; `max_deliver` caps how often; `backoff` sets the wait per
//! delivery.

use crate::support::{
    connect, consumer_info, create_consumer, delivered, publish_n, pull_n, pull_once, seq,
    simple_stream, within,
};
use async_nats::jetstream::consumer::pull;
use junction_conformance::broker;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn unacked_message_is_redelivered() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 1).await;
    let ack_wait = Duration::from_secs(1);
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_wait,
            ..Default::default()
        },
    )
    .await;

    // Measured from before the first pull request, so the bound below can only be
    // an underestimate of the broker's wait.
    let sent = Instant::now();
    let first = pull_n(&c, 1).await.remove(0);
    assert_eq!((seq(&first), delivered(&first)), (1, 1));
    let info = first.info().unwrap();
    assert_eq!(info.consumer_sequence, 1);

    // Not acked: it comes back, never before ack_wait.
    let second = pull_n(&c, 1).await.remove(0);
    assert!(sent.elapsed() >= ack_wait, "redelivered before ack_wait");
    assert_eq!((seq(&second), delivered(&second)), (1, 2));
    // Every delivery takes a new consumer sequence.
    assert_eq!(second.info().unwrap().consumer_sequence, 2);
    let third = pull_n(&c, 1).await.remove(0);
    assert_eq!((seq(&third), delivered(&third)), (1, 3));

    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_redelivered, 1);
    assert_eq!(info.num_ack_pending, 1);
    within("ack", third.double_ack()).await.unwrap();
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_redelivered, 0);
    assert_eq!(info.ack_floor.stream_sequence, 1);
    // Acked: no further redelivery.
    assert!(pull_once(&c, 1, Duration::from_secs(2)).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_deliver_stops_redelivery() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 2).await;
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_wait: Duration::from_millis(500),
            max_deliver: 2,
            ..Default::default()
        },
    )
    .await;

    // Message 1 is never acked; message 2 is acked at once.
    let got = pull_n(&c, 2).await;
    assert_eq!((seq(&got[0]), delivered(&got[0])), (1, 1));
    within("ack 2", got[1].double_ack()).await.unwrap();
    let again = pull_n(&c, 1).await.remove(0);
    assert_eq!((seq(&again), delivered(&again)), (1, 2));

    // Delivered max_deliver times: well past another ack_wait, it does not return.
    assert!(pull_once(&c, 1, Duration::from_secs(2)).await.is_empty());
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.delivered.stream_sequence, 2);
    // The consumer moves on: new messages still flow.
    publish_n(&js, "s.x", 1).await;
    let next = pull_n(&c, 1).await.remove(0);
    assert_eq!((seq(&next), delivered(&next)), (3, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn backoff_sets_the_wait_per_delivery() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 1).await;
    let backoff = vec![Duration::from_millis(200), Duration::from_millis(800)];
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            backoff: backoff.clone(),
            max_deliver: 3,
            ..Default::default()
        },
    )
    .await;
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.config.backoff, backoff);
    assert_eq!(info.config.ack_wait, backoff[0]);

    // Each wait is measured from before the pull that got the previous delivery, so
    // it can only underestimate the broker's wait.
    let mut previous_pull = Instant::now();
    for (n, wait) in [(1, None), (2, Some(backoff[0])), (3, Some(backoff[1]))] {
        let this_pull = Instant::now();
        let m = pull_n(&c, 1).await.remove(0);
        if let Some(wait) = wait {
            assert!(
                previous_pull.elapsed() >= wait,
                "delivery {n} came before its backoff"
            );
        }
        previous_pull = this_pull;
        assert_eq!((seq(&m), delivered(&m)), (1, n));
    }
    assert!(pull_once(&c, 1, Duration::from_secs(2)).await.is_empty());
}
