//! Long-poll fetch: a waiting fetch is answered when a message arrives, without
//! waiting for its batch to fill; an empty wait ends with no messages;
//! `max_wait_ms: 0` answers at once; unacknowledged messages come back after
//! `ack_wait`.

use crate::support::{Api, LONG_GUARD, deliveries, payload, poll_until, seq, within, within_for};
use junction_conformance::broker;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn waiting_fetch_is_answered_by_a_later_publish() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("Q", &["q"]).await;
    api.group("Q", "g", json!({})).await;

    let fetcher = {
        let api = api.clone();
        tokio::spawn(async move { api.fetch("Q", "g", 5, 20_000).await })
    };
    // Publish only once the fetch is waiting in the engine.
    poll_until("the fetch to wait", || {
        let api = api.clone();
        async move { api.group_state("Q", "g").await["waiting"] == 1 }
    })
    .await;
    api.publish_stored("q", "late").await;
    // The fetch answers once the message is there; it does not wait for the batch
    // of 5 to fill (max_wait is longer than the hang guard).
    let got = within("the fetch", fetcher).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(payload(&got[0]), "late");
}

#[tokio::test(flavor = "multi_thread")]
async fn full_batch_answers_and_empty_wait_ends_empty() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("W", &["w.>"]).await;
    api.group("W", "g", json!({})).await;

    // Nothing there: a short wait ends with an empty list, not an error.
    assert!(api.fetch("W", "g", 5, 200).await.is_empty());
    // No wait at all: answers at once.
    assert!(api.fetch("W", "g", 5, 0).await.is_empty());

    for i in 0..4 {
        api.publish_stored("w.x", &format!("m{i}")).await;
    }
    // A batch smaller than the backlog is filled and answered.
    let got = api.fetch("W", "g", 3, 20_000).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![1, 2, 3]);
    // max_wait_ms 0 delivers what is there.
    let got = api.fetch("W", "g", 3, 0).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![4]);
    // A long wait with messages already there answers with them, without waiting
    // for the rest of the batch.
    api.publish_stored("w.x", "m4").await;
    api.publish_stored("w.x", "m5").await;
    let got = api.fetch("W", "g", 10, 20_000).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), vec![5, 6]);
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_message_is_redelivered_after_ack_wait() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("R", &["r"]).await;
    api.group("R", "g", json!({"ack_wait_ms": 300})).await;
    api.publish_stored("r", "again").await;

    let first = api.fetch("R", "g", 1, 2000).await;
    assert_eq!(deliveries(&first[0]), 1);
    // Not acked: it comes back, delivered twice.
    let again = within_for(LONG_GUARD, "redelivery", async {
        loop {
            let got = api.fetch("R", "g", 1, 500).await;
            if !got.is_empty() {
                return got;
            }
        }
    })
    .await;
    assert_eq!(seq(&again[0]), 1);
    assert!(deliveries(&again[0]) >= 2, "{again:?}");
    api.ack("R", "g", &again).await;
    let state = api.group_state("R", "g").await;
    assert_eq!(state["pending_acks"], 0, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_bytes_stops_before_a_message_that_does_not_fit() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("M", &["m"]).await;
    api.group("M", "g", json!({})).await;
    api.publish_stored("m", "12345").await;
    api.publish_stored("m", "1234567890").await;
    let r = api
        .post(
            "/v1/stations/M/groups/g/fetch",
            &json!({"batch": 10, "max_wait_ms": 1000, "max_bytes": 8}),
        )
        .await
        .expect(200);
    let got = r["messages"].as_array().unwrap();
    assert_eq!(got.len(), 1, "{r}");
    assert_eq!(payload(&got[0]), "12345");
}

#[tokio::test(flavor = "multi_thread")]
async fn max_ack_pending_holds_back_deliveries_until_acked() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("P", &["p"]).await;
    api.group("P", "g", json!({"max_ack_pending": 1})).await;
    api.publish_stored("p", "1").await;
    api.publish_stored("p", "2").await;
    let first = api.fetch("P", "g", 2, 0).await;
    assert_eq!(first.iter().map(seq).collect::<Vec<_>>(), vec![1]);
    assert!(api.fetch("P", "g", 2, 0).await.is_empty());
    assert!(api.fetch("P", "g", 2, 200).await.is_empty());
    api.ack("P", "g", &first).await;
    let second = api.fetch("P", "g", 2, 0).await;
    assert_eq!(second.iter().map(seq).collect::<Vec<_>>(), vec![2]);
    // No fetch is left waiting in the engine.
    assert_eq!(api.group_state("P", "g").await["waiting"], 0);
}
