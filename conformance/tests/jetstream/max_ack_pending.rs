//! `max_ack_pending`: a consumer hands out at most that many unacknowledged
//! messages; acks make room for more.

use crate::support::{
    connect, consumer_info, create_consumer, publish_n, pull_n, pull_once, seq, simple_stream,
    within,
};
use async_nats::jetstream::consumer::pull;
use junction_conformance::broker;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn only_max_ack_pending_outstanding() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 12).await;
    let c = create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            max_ack_pending: 5,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(consumer_info(&s, "C").await.config.max_ack_pending, 5);

    let first = pull_n(&c, 5).await;
    assert_eq!(first.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    // Five outstanding: a request for more gets nothing until it expires.
    assert!(
        pull_once(&c, 10, Duration::from_millis(500))
            .await
            .is_empty()
    );
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.num_ack_pending, 5);
    assert_eq!(info.num_pending, 7);

    // Two acks make room for exactly two more.
    for m in &first[..2] {
        within("ack", m.double_ack()).await.unwrap();
    }
    let more = pull_n(&c, 2).await;
    assert_eq!(more.iter().map(seq).collect::<Vec<_>>(), [6, 7]);
    assert!(
        pull_once(&c, 10, Duration::from_millis(500))
            .await
            .is_empty()
    );
    assert_eq!(consumer_info(&s, "C").await.num_ack_pending, 5);

    // A request already waiting is served as soon as acks make room.
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { pull_n(&c, 5).await })
    };
    for m in first[2..].iter().chain(&more) {
        within("ack", m.double_ack()).await.unwrap();
    }
    let rest = within("waiting pull", waiting).await.unwrap();
    assert_eq!(rest.iter().map(seq).collect::<Vec<_>>(), [8, 9, 10, 11, 12]);
}
