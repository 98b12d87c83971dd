//! A mirror keeps its origin's messages under the origin's sequences, and a
//! station sourcing two streams (one with a subject filter, one with a subject
//! transform) gets each wanted message exactly once, while the publisher runs
//! and across SIGKILLs of the real `junction` process. Also: a mirror refuses
//! subjects of its own (10034), and STREAM.INFO shows each link's lag.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::stream::{Source, SubjectTransform};
use std::collections::BTreeMap;

use crate::support::process;
use crate::support::sourcing;

use sourcing::{Junction, all_messages, config, until_count};

const ROUNDS: u64 = 3;
const PER_ROUND: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mirror_and_sources_copy_every_message_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = process::free_port();
    let mut j = Junction::start(&data, port).await;
    let js = j.js().await;
    js.create_stream(config("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    js.create_stream(config("EVENTS", &["events.>"]))
        .await
        .unwrap();

    // A mirror with subjects of its own is refused as nats-server does.
    let mut bad = config("BAD", &["bad.>"]);
    bad.mirror = Some(Source {
        name: "ORDERS".into(),
        ..Default::default()
    });
    let err = js.create_stream(bad).await.unwrap_err().to_string();
    assert!(err.contains("10034"), "{err}");

    let mut mirror = config("ORDERS_M", &[]);
    mirror.mirror = Some(Source {
        name: "ORDERS".into(),
        ..Default::default()
    });
    js.create_stream(mirror).await.unwrap();
    let mut all = config("ALL", &[]);
    all.sources = Some(vec![
        Source {
            name: "ORDERS".into(),
            filter_subject: Some("orders.eu.*".into()),
            ..Default::default()
        },
        Source {
            name: "EVENTS".into(),
            subject_transforms: vec![SubjectTransform {
                source: "events.*".into(),
                destination: "copied.{{wildcard(1)}}".into(),
            }],
            ..Default::default()
        },
    ]);
    js.create_stream(all).await.unwrap();

    // Publish in rounds; between rounds the broker is killed and started again,
    // while the links may be anywhere in their copying.
    for round in 0..ROUNDS {
        let js = j.js().await;
        for i in 0..PER_ROUND {
            let n = round * PER_ROUND + i;
            let region = if n.is_multiple_of(2) { "eu" } else { "us" };
            js.publish(format!("orders.{region}.{n}"), format!("o{n}").into())
                .await
                .unwrap()
                .await
                .unwrap();
            js.publish(format!("events.e{n}"), format!("e{n}").into())
                .await
                .unwrap()
                .await
                .unwrap();
        }
        j = j.kill_9_and_restart().await;
    }
    let total = ROUNDS * PER_ROUND;
    let js = j.js().await;
    until_count(&js, "ORDERS_M", total).await;
    until_count(&js, "ALL", total / 2 + total).await;
    // One more restart once caught up: nothing is copied twice.
    j = j.kill_9_and_restart().await;
    let js = j.js().await;
    js.publish("orders.eu.last", "last".into())
        .await
        .unwrap()
        .await
        .unwrap();
    until_count(&js, "ORDERS_M", total + 1).await;
    until_count(&js, "ALL", total / 2 + total + 1).await;

    // The mirror: the same messages under the same sequences.
    let origin = all_messages(&js, "ORDERS").await;
    let copy = all_messages(&js, "ORDERS_M").await;
    assert_eq!(origin.len() as u64, total + 1);
    let strip = |v: &Vec<sourcing::Stored>| {
        v.iter()
            .map(|(s, subj, p, _)| (*s, subj.clone(), p.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        strip(&origin),
        strip(&copy),
        "mirror differs from its origin"
    );

    // The sourced station: each wanted origin message exactly once.
    let sourced = all_messages(&js, "ALL").await;
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (_, subject, payload, src) in &sourced {
        let src = src
            .as_deref()
            .expect("sourced copies carry Nats-Stream-Source");
        *seen.entry(src.to_string()).or_default() += 1;
        if payload.starts_with('e') {
            assert_eq!(subject, &format!("copied.{payload}"), "transformed");
        } else {
            assert!(subject.starts_with("orders.eu."), "filtered: {subject}");
        }
    }
    let dups: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "copied twice: {dups:?}");
    assert_eq!(sourced.len() as u64, total / 2 + total + 1);

    // STREAM.INFO shows the links, caught up.
    let mut m = js.get_stream("ORDERS_M").await.unwrap();
    let info = m.info().await.unwrap();
    let mi = info.mirror.as_ref().expect("mirror info");
    assert_eq!(mi.name, "ORDERS");
    assert_eq!(mi.lag, 0);
    let mut a = js.get_stream("ALL").await.unwrap();
    let info = a.info().await.unwrap();
    assert_eq!(info.sources.len(), 2);
    j.kill_9().await;
}
