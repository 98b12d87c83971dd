//! An HTTP consumer group is the engine group a JetStream pull consumer of the same
//! name reads: HTTP fetches and NATS pulls share its messages, each acknowledgement
//! counts for both, and a delivery one side leaves unacknowledged is redelivered
//! to the other after `ack_wait`.

use crate::support::{Api, LONG_GUARD, deliveries, seq, within, within_for};
use async_nats::jetstream::{self, consumer::PullConsumer};
use futures::StreamExt;
use junction_conformance::{TestBroker, broker};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

async fn nats_consumer(b: &TestBroker, station: &str, group: &str) -> PullConsumer {
    let client = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(client);
    within("get consumer", async {
        js.get_stream(station)
            .await
            .unwrap()
            .get_consumer(group)
            .await
            .unwrap()
    })
    .await
}

/// One NATS pull request for up to `n` messages.
async fn nats_pull(c: &PullConsumer, n: usize, expires: Duration) -> Vec<jetstream::Message> {
    within("NATS pull", async {
        let mut batch = c
            .batch()
            .max_messages(n)
            .expires(expires)
            .messages()
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(m) = batch.next().await {
            got.push(m.unwrap());
        }
        got
    })
    .await
}

fn stream_seq(m: &jetstream::Message) -> u64 {
    m.info().unwrap().stream_sequence
}

#[tokio::test(flavor = "multi_thread")]
async fn http_and_nats_members_take_turns_on_one_group() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("SHARED", &["shared.>"]).await;
    api.group("SHARED", "workers", json!({"ack_wait_ms": 60000}))
        .await;
    let items: Vec<_> = (0..20)
        .map(|i| json!({"subject": "shared.job", "payload": format!("job{i}")}))
        .collect();
    api.post("/v1/stations/SHARED/messages/batch", &json!(items))
        .await
        .expect(200);
    let nats = nats_consumer(&b, "SHARED", "workers").await;

    let mut by_http = Vec::new();
    let mut by_nats = Vec::new();
    for _ in 0..2 {
        let got = api.fetch("SHARED", "workers", 5, 2000).await;
        api.ack("SHARED", "workers", &got).await;
        by_http.extend(got.iter().map(seq));
        for m in nats_pull(&nats, 5, Duration::from_secs(2)).await {
            by_nats.push(stream_seq(&m));
            within("NATS ack", m.double_ack()).await.unwrap();
        }
    }
    assert_eq!(by_http, vec![1, 2, 3, 4, 5, 11, 12, 13, 14, 15]);
    assert_eq!(by_nats, vec![6, 7, 8, 9, 10, 16, 17, 18, 19, 20]);

    // Every ack counted for the one group, whichever protocol sent it.
    let state = api.group_state("SHARED", "workers").await;
    assert_eq!(state["pending_acks"], 0, "{state}");
    assert_eq!(state["lag"], 0, "{state}");
    assert_eq!(state["ack_floor"]["station_seq"], 20, "{state}");
    let mut nats = nats;
    let info = within("consumer info", nats.info()).await.unwrap();
    assert_eq!(info.num_ack_pending, 0);
    assert_eq!(info.ack_floor.stream_sequence, 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn unacked_delivery_moves_to_the_other_protocol() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("HANDOFF", &["handoff"]).await;
    api.group("HANDOFF", "g", json!({"ack_wait_ms": 300})).await;
    let nats = nats_consumer(&b, "HANDOFF", "g").await;

    // HTTP takes it and never acks; a NATS member gets it after ack_wait.
    api.publish_stored("handoff", "one").await;
    let http_first = api.fetch("HANDOFF", "g", 1, 2000).await;
    assert_eq!(seq(&http_first[0]), 1);
    let redelivered = within_for(LONG_GUARD, "NATS redelivery", async {
        loop {
            let got = nats_pull(&nats, 1, Duration::from_millis(500)).await;
            if let Some(m) = got.into_iter().next() {
                return m;
            }
        }
    })
    .await;
    assert_eq!(stream_seq(&redelivered), 1);
    assert!(redelivered.info().unwrap().delivered >= 2);
    within("NATS ack", redelivered.double_ack()).await.unwrap();

    // NATS takes the next one and never acks; HTTP gets it after ack_wait.
    api.publish_stored("handoff", "two").await;
    let nats_first = nats_pull(&nats, 1, Duration::from_secs(2)).await;
    assert_eq!(stream_seq(&nats_first[0]), 2);
    let again = within_for(LONG_GUARD, "HTTP redelivery", async {
        loop {
            let got = api.fetch("HANDOFF", "g", 1, 500).await;
            if !got.is_empty() {
                return got;
            }
        }
    })
    .await;
    assert_eq!(seq(&again[0]), 2);
    assert!(deliveries(&again[0]) >= 2, "{again:?}");
    api.ack("HANDOFF", "g", &again).await;

    let state = api.group_state("HANDOFF", "g").await;
    assert_eq!(state["pending_acks"], 0, "{state}");
    assert_eq!(state["ack_floor"]["station_seq"], 2, "{state}");
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_members_lose_and_duplicate_nothing() {
    const TOTAL: usize = 200;
    let b = broker().await;
    let api = Api::new(&b);
    api.station("MIXED", &["mixed.>"]).await;
    api.group("MIXED", "workers", json!({"ack_wait_ms": 60000}))
        .await;
    for chunk in 0..(TOTAL / 50) {
        let items: Vec<_> = (0..50)
            .map(|i| json!({"subject": "mixed.job", "payload": format!("{}", chunk * 50 + i)}))
            .collect();
        api.post("/v1/stations/MIXED/messages/batch", &json!(items))
            .await
            .expect(200);
    }
    let seen = Arc::new(AtomicUsize::new(0));
    let http_member = {
        let (api, seen) = (api.clone(), seen.clone());
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while seen.load(Ordering::SeqCst) < TOTAL {
                let got = api.fetch("MIXED", "workers", 10, 300).await;
                if !got.is_empty() {
                    api.ack("MIXED", "workers", &got).await;
                }
                seen.fetch_add(got.len(), Ordering::SeqCst);
                mine.extend(got.iter().map(seq));
            }
            mine
        })
    };
    let nats = nats_consumer(&b, "MIXED", "workers").await;
    let nats_member = {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut mine = Vec::new();
            while seen.load(Ordering::SeqCst) < TOTAL {
                for m in nats_pull(&nats, 10, Duration::from_millis(300)).await {
                    mine.push(stream_seq(&m));
                    m.ack().await.unwrap();
                    seen.fetch_add(1, Ordering::SeqCst);
                }
            }
            mine
        })
    };
    let mut all = within_for(LONG_GUARD, "HTTP member", http_member)
        .await
        .unwrap();
    all.extend(
        within_for(LONG_GUARD, "NATS member", nats_member)
            .await
            .unwrap(),
    );
    assert_eq!(all.len(), TOTAL, "duplicates or losses");
    let distinct: BTreeSet<u64> = all.into_iter().collect();
    assert_eq!(distinct, (1..=TOTAL as u64).collect::<BTreeSet<_>>());
}
