//! A graceful restart on the same data directory keeps file streams (messages,
//! sequences, de-duplication ids) and durable consumers (acked messages stay acked,
//! unacked ones are delivered again, new ones follow); memory streams come back
//! empty.

use crate::support::{
    LONG_GUARD, connect, consumer_info, create_consumer, create_stream, delivered, publish, pull_n,
    pull_once, seq, stream_state, text, within, within_for,
};
use async_nats::jetstream::consumer::{PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, StorageType};
use junction_conformance::{TestBroker, start_in};
use std::collections::BTreeMap;
use std::time::Duration;

/// Stops `broker` gracefully and starts a new one on the same data and NATS port.
async fn restart(broker: TestBroker) -> TestBroker {
    let port = broker.nats_addr().port();
    let (mut config, dir) = within_for(LONG_GUARD, "graceful stop", broker.stop()).await;
    config.nats_listen = format!("127.0.0.1:{port}");
    within_for(LONG_GUARD, "restart", start_in(config, dir)).await
}

async fn get_consumer(
    js: &async_nats::jetstream::Context,
    stream: &str,
    name: &str,
) -> PullConsumer {
    within("get consumer", async {
        js.get_stream(stream)
            .await
            .unwrap()
            .get_consumer(name)
            .await
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn durable_consumer_resumes_and_redelivers_unacked() {
    let b = junction_conformance::broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(
        &js,
        stream::Config {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            ..Default::default()
        },
    )
    .await;
    for i in 0..10 {
        let m = PublishMessage::build()
            .payload(format!("m{i}").into())
            .message_id(format!("id{i}"));
        within("publish", async {
            js.send_publish("s.x", m).await.unwrap().await.unwrap()
        })
        .await;
    }
    // ack_wait short enough that a broker which restores pending deliveries with
    // their deadline (as nats-server does) redelivers them within the test.
    create_consumer(
        &s,
        pull::Config {
            durable_name: Some("C".into()),
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        },
    )
    .await;
    let c = get_consumer(&js, "S", "C").await;
    let got = pull_n(&c, 6).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    for m in &got[..4] {
        within("ack", m.double_ack()).await.unwrap();
    }
    // 5 and 6 stay unacked.
    let before = consumer_info(&s, "C").await;
    assert_eq!(before.ack_floor.stream_sequence, 4);
    assert_eq!(before.num_ack_pending, 2);
    drop((s, c, js, _client));

    let b = restart(b).await;
    let (_client, js) = connect(&b).await;

    let state = stream_state(&js, "S").await;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (10, 1, 10)
    );
    let s = within("get stream", js.get_stream("S")).await.unwrap();
    let m7 = within("get 7", s.get_raw_message(7)).await.unwrap();
    assert_eq!(&m7.payload[..], b"m6");

    let info = consumer_info(&s, "C").await;
    assert_eq!(info.config.ack_wait, Duration::from_secs(2));
    assert_eq!(info.ack_floor.stream_sequence, 4);

    // Everything after the acked ones, once: 5 and 6 again (second delivery), then
    // 7..=10 for the first time. The order between the two sets is the broker's.
    let c = get_consumer(&js, "S", "C").await;
    let got = pull_n(&c, 6).await;
    let by_seq: BTreeMap<u64, (i64, String)> = got
        .iter()
        .map(|m| (seq(m), (delivered(m), text(m))))
        .collect();
    assert_eq!(
        by_seq.len(),
        6,
        "duplicates: {:?}",
        got.iter().map(seq).collect::<Vec<_>>()
    );
    let expected: BTreeMap<u64, (i64, String)> = (5..=10u64)
        .map(|n| (n, (if n <= 6 { 2 } else { 1 }, format!("m{}", n - 1))))
        .collect();
    assert_eq!(by_seq, expected);
    for m in &got {
        within("ack", m.double_ack()).await.unwrap();
    }
    assert!(
        pull_once(&c, 10, Duration::from_millis(300))
            .await
            .is_empty()
    );
    let info = consumer_info(&s, "C").await;
    assert_eq!(info.ack_floor.stream_sequence, 10);
    assert_eq!(info.num_ack_pending, 0);

    // Sequences continue; de-duplication ids survived the restart.
    let dup = within("publish dup", async {
        js.send_publish(
            "s.x",
            PublishMessage::build()
                .payload("again".into())
                .message_id("id3"),
        )
        .await
        .unwrap()
        .await
        .unwrap()
    })
    .await;
    assert_eq!((dup.sequence, dup.duplicate), (4, true));
    assert_eq!(publish(&js, "s.x", "m10").await.sequence, 11);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_stream_is_empty_after_restart() {
    let b = junction_conformance::broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(
        &js,
        stream::Config {
            name: "MEM".into(),
            subjects: vec!["mem.>".into()],
            storage: StorageType::Memory,
            ..Default::default()
        },
    )
    .await;
    for i in 0..5 {
        publish(&js, "mem.x", format!("m{i}")).await;
    }
    assert_eq!(stream_state(&js, "MEM").await.messages, 5);
    drop((s, js, _client));

    let b = restart(b).await;
    let (_client, js) = connect(&b).await;
    let mut s = within("get stream", js.get_stream("MEM")).await.unwrap();
    let info = within("info", s.info()).await.unwrap();
    assert_eq!(info.config.storage, StorageType::Memory);
    assert_eq!(info.state.messages, 0);
    // It still captures its subjects.
    publish(&js, "mem.x", "after").await;
    assert_eq!(stream_state(&js, "MEM").await.messages, 1);
}
