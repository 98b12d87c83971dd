//! Acknowledgements: an ack retires a message; a NAK redelivers it (after its delay
//! when one is given) with the delivery count raised; TERM retires it without
//! success and it is never redelivered; `+WPI` keeps it pending; `ack_policy: all`
//! acks everything up to the acked message.

use crate::support::{
    connect, consumer_info, create_consumer, delivered, durable, publish_n, pull_n, pull_once, seq,
    simple_stream, within,
};
use async_nats::jetstream::AckKind;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use junction_conformance::broker;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn ack_retires_messages() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 3).await;
    let c = durable(&s, "C").await;

    let got = pull_n(&c, 3).await;
    assert_eq!(consumer_info(&s, "C").await.num_ack_pending, 3);
    for m in &got {
        assert_eq!(delivered(m), 1);
        within("ack", m.double_ack()).await.unwrap();
    }
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.num_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 3);
    assert_eq!(info.ack_floor.consumer_sequence, 3);
    assert_eq!(info.delivered.stream_sequence, 3);
    // Nothing comes back.
    assert!(
        pull_once(&c, 3, Duration::from_millis(300))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn nak_redelivers_at_once() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 2).await;
    let c = durable(&s, "C").await;

    let first = pull_n(&c, 1).await.remove(0);
    assert_eq!((seq(&first), delivered(&first)), (1, 1));
    within("nak", first.double_ack_with(AckKind::Nak(None)))
        .await
        .unwrap();
    // The NAKed message comes back before the next new one.
    let again = pull_n(&c, 2).await;
    assert_eq!((seq(&again[0]), delivered(&again[0])), (1, 2));
    assert_eq!((seq(&again[1]), delivered(&again[1])), (2, 1));
    assert_eq!(consumer_info(&s, "C").await.num_redelivered, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn nak_with_delay_redelivers_after_the_delay() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 1).await;
    let c = durable(&s, "C").await;

    let m = pull_n(&c, 1).await.remove(0);
    let delay = Duration::from_secs(1);
    let naked = Instant::now();
    within("nak", m.double_ack_with(AckKind::Nak(Some(delay))))
        .await
        .unwrap();
    let again = pull_n(&c, 1).await.remove(0);
    // Never before the delay (a lower bound only; how much later is not asserted).
    assert!(naked.elapsed() >= delay, "redelivered before the NAK delay");
    assert_eq!((seq(&again), delivered(&again)), (1, 2));
    within("ack", again.double_ack()).await.unwrap();
    assert_eq!(consumer_info(&s, "C").await.num_ack_pending, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn term_is_never_redelivered() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 2).await;
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_wait: Duration::from_millis(500),
            ..Default::default()
        },
    )
    .await;

    let got = pull_n(&c, 2).await;
    within("term", got[0].double_ack_with(AckKind::Term))
        .await
        .unwrap();
    within("ack", got[1].double_ack()).await.unwrap();
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 2);
    // Well past ack_wait, nothing is redelivered.
    assert!(pull_once(&c, 2, Duration::from_secs(2)).await.is_empty());
    assert_eq!(consumer_info(&s, "C").await.num_redelivered, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_keeps_pending() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 1).await;
    let c = durable(&s, "C").await;

    let m = pull_n(&c, 1).await.remove(0);
    within("progress", m.double_ack_with(AckKind::Progress))
        .await
        .unwrap();
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 1);
    assert_eq!(info.ack_floor.stream_sequence, 0);
    within("ack", m.double_ack()).await.unwrap();
    assert_eq!(consumer_info(&s, "C").await.num_ack_pending, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn ack_all_acks_everything_before() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 5).await;
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_policy: AckPolicy::All,
            ..Default::default()
        },
    )
    .await;

    let got = pull_n(&c, 5).await;
    within("ack 3", got[2].double_ack()).await.unwrap();
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 2);
    assert_eq!(info.ack_floor.stream_sequence, 3);
    within("ack 5", got[4].double_ack()).await.unwrap();
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 5);
}
