//! Pull requests: a batch is filled in stream order; a waiting request with
//! `expires` ends with `408 Request Timeout` carrying fewer messages when the stream
//! has fewer; a `no_wait` request on an empty consumer ends at once with `404 No
//! Messages`, and one with messages ends with `408` after delivering them; a
//! `no_wait` request with `expires` waits for the first message.

use crate::support::{
    GUARD, connect, consumer_info, durable, poll_until, publish_n, raw_pull, read_pull, seq,
    simple_stream, status_code, text, within,
};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn fetch_fills_batches_in_order() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 10).await;
    let c = durable(&s, "C").await;

    let mut seqs = Vec::new();
    for _ in 0..2 {
        let mut batch = within("fetch", c.fetch().max_messages(5).messages())
            .await
            .unwrap();
        let mut n = 0;
        while let Some(m) = within("fetch message", batch.next()).await {
            let m = m.unwrap();
            assert_eq!(text(&m), format!("m{}", seq(&m) - 1));
            // Pending: what is left for the consumer after this message.
            assert_eq!(m.info().unwrap().pending, 10 - seq(&m));
            seqs.push(seq(&m));
            n += 1;
        }
        assert_eq!(n, 5);
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_with_expires_returns_fewer() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 3).await;
    let c = durable(&s, "C").await;

    // async-nats: the batch ends (on the server's 408) with what there was.
    let mut batch = within(
        "batch",
        c.batch()
            .max_messages(10)
            .expires(Duration::from_millis(500))
            .messages(),
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    while let Some(m) = within("batch message", batch.next()).await {
        got.push(seq(&m.unwrap()));
    }
    assert_eq!(got, [1, 2, 3]);

    // On the wire: 408 Request Timeout, with what was left of the request.
    publish_n(&js, "s.x", 2).await;
    let pull = raw_pull(&client, "S", "C", r#"{"batch":10,"expires":500000000}"#).await;
    assert_eq!(pull.messages.len(), 2);
    assert_eq!(status_code(&pull), 408, "{:?}", pull.status);
    let status = pull.status.as_ref().unwrap();
    let headers = status.headers.as_ref().expect("status headers");
    assert_eq!(
        headers
            .get("Nats-Pending-Messages")
            .map(|v| v.as_str().to_string()),
        Some("8".to_string()),
        "{headers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn no_wait_on_empty_ends_with_404() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    let c = durable(&s, "C").await;

    // async-nats fetch is no_wait: an empty consumer gives an empty batch, at once
    // (the guard only catches a hang).
    let mut batch = within("fetch", c.fetch().max_messages(10).messages())
        .await
        .unwrap();
    assert!(within("empty fetch", batch.next()).await.is_none());

    let pull = raw_pull(&client, "S", "C", r#"{"batch":10,"no_wait":true}"#).await;
    assert!(pull.messages.is_empty());
    assert_eq!(status_code(&pull), 404, "{:?}", pull.status);
    assert_eq!(
        pull.status.as_ref().unwrap().description.as_deref(),
        Some("No Messages")
    );

    // Everything consumed: empty again.
    publish_n(&js, "s.x", 2).await;
    let pull = raw_pull(&client, "S", "C", r#"{"batch":2,"no_wait":true}"#).await;
    assert_eq!(pull.messages.len(), 2);
    assert!(
        pull.status.is_none(),
        "a filled request ends without a status"
    );
    let pull = raw_pull(&client, "S", "C", r#"{"batch":2,"no_wait":true}"#).await;
    assert!(pull.messages.is_empty());
    assert_eq!(status_code(&pull), 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_wait_with_fewer_messages_ends_with_408() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    publish_n(&js, "s.x", 3).await;
    durable(&s, "C").await;

    let pull = raw_pull(&client, "S", "C", r#"{"batch":10,"no_wait":true}"#).await;
    assert_eq!(pull.messages.len(), 3);
    assert_eq!(status_code(&pull), 408, "{:?}", pull.status);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_wait_with_expires_waits_for_first_message() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "S", &["s.>"]).await;
    durable(&s, "C").await;

    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            "$JS.API.CONSUMER.MSG.NEXT.S.C",
            inbox,
            Bytes::from(format!(
                r#"{{"batch":5,"no_wait":true,"expires":{}}}"#,
                GUARD.as_nanos()
            )),
        )
        .await
        .unwrap();
    // The request waits (nothing is pending yet) ...
    poll_until("the request to wait", || async {
        consumer_info(&s, "C").await.num_waiting == 1
    })
    .await;
    // ... and a message ends it, with 408 for the rest of the batch.
    publish_n(&js, "s.x", 1).await;
    let pull = read_pull(&mut sub, 5).await;
    assert_eq!(pull.messages.len(), 1);
    assert_eq!(status_code(&pull), 408, "{:?}", pull.status);
}
