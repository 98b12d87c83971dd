//! Two durable consumers on one stream are independent: each gets every message,
//! in order, and acks on one do not affect the other.

use crate::support::{
    connect, consumer_info, durable, publish_n, pull_n, seq, simple_stream, text, within,
};
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread")]
async fn each_durable_gets_everything() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    let a = durable(&s, "A").await;
    let bb = durable(&s, "B").await;
    publish_n(&js, "s.x", 100).await;

    let from_a = pull_n(&a, 100).await;
    for m in &from_a {
        within("ack", m.ack()).await.unwrap();
    }
    let from_b = pull_n(&bb, 100).await;
    let expected: Vec<u64> = (1..=100).collect();
    assert_eq!(from_a.iter().map(seq).collect::<Vec<_>>(), expected);
    assert_eq!(from_b.iter().map(seq).collect::<Vec<_>>(), expected);
    assert_eq!(text(&from_b[41]), "m41");

    // A's acks left B's state alone.
    within("last ack", from_a[99].double_ack()).await.unwrap();
    let info_a = consumer_info(&s, "A").await;
    let info_b = consumer_info(&s, "B").await;
    assert_eq!(info_a.num_ack_pending, 0);
    assert_eq!(info_a.ack_floor.stream_sequence, 100);
    assert_eq!(info_b.num_ack_pending, 100);
    assert_eq!(info_b.ack_floor.stream_sequence, 0);

    let mut names: Vec<String> = {
        use futures::TryStreamExt;
        within("consumer names", s.consumer_names().try_collect())
            .await
            .unwrap()
    };
    names.sort();
    assert_eq!(names, ["A", "B"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn late_durable_starts_from_the_beginning() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    let a = durable(&s, "A").await;
    publish_n(&js, "s.x", 10).await;
    for m in pull_n(&a, 10).await {
        within("ack", m.double_ack()).await.unwrap();
    }
    // Created after A consumed everything, B still sees all ten (deliver all).
    let late = durable(&s, "B").await;
    let got = pull_n(&late, 10).await;
    assert_eq!(
        got.iter().map(seq).collect::<Vec<_>>(),
        (1..=10).collect::<Vec<_>>()
    );
}
