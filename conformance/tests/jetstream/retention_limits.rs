//! Limits retention: `max_msgs`, `max_bytes`, `max_age` and `max_msgs_per_subject`
//! drop the oldest messages; with `discard: new` a full stream refuses publishes.

use crate::support::{connect, create_stream, poll_until, publish, stream_state, within};
use async_nats::jetstream::Context;
use async_nats::jetstream::stream::{self, DiscardPolicy};
use junction_conformance::broker;
use std::time::Duration;

fn config(name: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        ..Default::default()
    }
}

/// The JetStream error of a refused publish: (code, err_code, description).
async fn refused(js: &Context, subject: &str) -> (usize, u64, String) {
    let err = within("publish", js.publish(subject.to_string(), "x".into()))
        .await
        .unwrap()
        .await
        .expect_err("publish refused");
    let source =
        std::error::Error::source(&err).unwrap_or_else(|| panic!("no JetStream error in {err:?}"));
    let e = source
        .downcast_ref::<async_nats::jetstream::Error>()
        .unwrap_or_else(|| panic!("not a JetStream error: {source:?}"));
    let text = e.to_string();
    let description = text.split(" (code ").next().unwrap_or_default().to_string();
    (e.code(), e.error_code().0, description)
}

#[tokio::test(flavor = "multi_thread")]
async fn max_msgs_drops_oldest() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(
        &js,
        stream::Config {
            max_messages: 5,
            ..config("M")
        },
    )
    .await;
    for i in 1..=12u64 {
        assert_eq!(publish(&js, "m.x", format!("{i}")).await.sequence, i);
    }
    let state = stream_state(&js, "M").await;
    assert_eq!(state.messages, 5);
    assert_eq!(state.first_sequence, 8);
    assert_eq!(state.last_sequence, 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_bytes_drops_oldest() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(
        &js,
        stream::Config {
            max_bytes: 1000,
            ..config("B")
        },
    )
    .await;
    let payload = "x".repeat(100);
    for _ in 0..30 {
        publish(&js, "b.x", payload.clone()).await;
    }
    let state = stream_state(&js, "B").await;
    assert!(state.bytes <= 1000, "{state:?}");
    assert!(state.messages >= 1 && state.messages < 10, "{state:?}");
    assert_eq!(state.last_sequence, 30);
    assert_eq!(state.first_sequence, 30 - state.messages + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_expires_messages() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(
        &js,
        stream::Config {
            max_age: Duration::from_secs(1),
            ..config("A")
        },
    )
    .await;
    for _ in 0..3 {
        publish(&js, "a.x", "old").await;
    }
    assert!(stream_state(&js, "A").await.messages <= 3);
    poll_until("messages to age out", || async {
        stream_state(&js, "A").await.messages == 0
    })
    .await;
    let state = stream_state(&js, "A").await;
    assert_eq!(state.last_sequence, 3);
    assert_eq!(state.first_sequence, 4);
    // New messages are stored as usual.
    assert_eq!(publish(&js, "a.x", "new").await.sequence, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn max_msgs_per_subject_keeps_newest_of_each() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(
        &js,
        stream::Config {
            max_messages_per_subject: 2,
            ..config("P")
        },
    )
    .await;
    for i in 1..=3 {
        publish(&js, "p.a", format!("a{i}")).await; // 1, 3, 5
        publish(&js, "p.b", format!("b{i}")).await; // 2, 4, 6
    }
    let state = stream_state(&js, "P").await;
    assert_eq!(state.messages, 4);
    assert_eq!(state.first_sequence, 3);
    assert_eq!(state.subjects_count, 2);
    let last_a = within("last a", s.get_last_raw_message_by_subject("p.a"))
        .await
        .unwrap();
    assert_eq!((last_a.sequence, &last_a.payload[..]), (5, &b"a3"[..]));
    let first_a = within("first a", s.get_first_raw_message_by_subject("p.a", 0))
        .await
        .unwrap();
    assert_eq!((first_a.sequence, &first_a.payload[..]), (3, &b"a2"[..]));
    within("seq 1", s.get_raw_message(1))
        .await
        .expect_err("seq 1 was dropped");
}

#[tokio::test(flavor = "multi_thread")]
async fn discard_new_refuses_when_full() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(
        &js,
        stream::Config {
            max_messages: 3,
            discard: DiscardPolicy::New,
            ..config("N")
        },
    )
    .await;
    for i in 1..=3u64 {
        assert_eq!(publish(&js, "n.x", "x").await.sequence, i);
    }
    assert_eq!(
        refused(&js, "n.x").await,
        (503, 10077, "maximum messages exceeded".to_string())
    );
    let state = stream_state(&js, "N").await;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (3, 1, 3)
    );

    // Bytes too.
    create_stream(
        &js,
        stream::Config {
            max_bytes: 500,
            discard: DiscardPolicy::New,
            ..config("NB")
        },
    )
    .await;
    let mut stored = 0;
    loop {
        let ack = within("publish", js.publish("nb.x", "y".repeat(100).into()))
            .await
            .unwrap()
            .await;
        match ack {
            Ok(_) => stored += 1,
            Err(_) => break,
        }
        assert!(stored < 10, "max_bytes never refused a publish");
    }
    assert!(stored >= 1);
    assert_eq!(
        refused(&js, "nb.x").await,
        (503, 10077, "maximum bytes exceeded".to_string())
    );
    assert_eq!(stream_state(&js, "NB").await.messages, stored);
}
