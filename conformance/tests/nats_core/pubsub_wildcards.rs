//! `*` matches exactly one token, `>` one or more trailing tokens: every subscriber
//! gets exactly the subjects its filter matches, with the exact payloads, in order.

use crate::support::{connect, next, varz_until};
use bytes::Bytes;

/// The subjects published, in order.
const PUBLISHED: &[&str] = &[
    "foo.bar",
    "foo.baz",
    "foo.bar.baz",
    "foo",
    "other.bar",
    "foo.x.y.baz",
    "bar",
];

/// Each filter and the subjects of [`PUBLISHED`] it must receive, worked out by hand.
const EXPECTED: &[(&str, &[&str])] = &[
    ("foo.*", &["foo.bar", "foo.baz"]),
    (
        "foo.>",
        &["foo.bar", "foo.baz", "foo.bar.baz", "foo.x.y.baz"],
    ),
    ("foo.bar", &["foo.bar"]),
    ("*.bar", &["foo.bar", "other.bar"]),
    (
        ">",
        &[
            "foo.bar",
            "foo.baz",
            "foo.bar.baz",
            "foo",
            "other.bar",
            "foo.x.y.baz",
            "bar",
        ],
    ),
    ("foo.*.baz", &["foo.bar.baz"]),
    ("*", &["foo", "bar"]),
    ("*.*.*", &["foo.bar.baz"]),
];

/// Published last; between them every filter above matches at least one, so each
/// subscriber can read up to its first end marker and know nothing else came first.
const END_MARKERS: &[&str] = &["foo.bar", "foo.end.baz", "end", "a.b.c"];

fn payload(index: usize, subject: &str) -> Bytes {
    Bytes::from(format!("{index}:{subject}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn wildcards_deliver_exactly_the_matching_subjects() {
    let broker = junction_conformance::broker().await;
    let subscriber = connect(&broker).await;
    let publisher = connect(&broker).await;

    let mut subs = Vec::new();
    for (filter, _) in EXPECTED {
        subs.push(subscriber.subscribe(*filter).await.unwrap());
    }
    subscriber.flush().await.unwrap();
    // Every filter matches a sync subject, so wait for the broker to show them all.
    let n = EXPECTED.len();
    varz_until(&broker, &format!("subscriptions == {n}"), |v| {
        v["subscriptions"] == n
    })
    .await;

    for (i, subject) in PUBLISHED.iter().enumerate() {
        publisher
            .publish(*subject, payload(i, subject))
            .await
            .unwrap();
    }
    for subject in END_MARKERS {
        publisher
            .publish(*subject, Bytes::from_static(b"END"))
            .await
            .unwrap();
    }
    publisher.flush().await.unwrap();

    for ((filter, expected), sub) in EXPECTED.iter().zip(subs.iter_mut()) {
        let mut got = Vec::new();
        loop {
            let m = next(sub, &format!("messages on {filter}")).await;
            if m.payload == "END" {
                break;
            }
            got.push((m.subject.to_string(), m.payload));
        }
        let want: Vec<(String, Bytes)> = expected
            .iter()
            .map(|s| {
                let i = PUBLISHED.iter().position(|p| p == s).unwrap();
                ((*s).to_string(), payload(i, s))
            })
            .collect();
        assert_eq!(got, want, "subscriber on {filter}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_arrive_byte_for_byte() {
    let broker = junction_conformance::broker().await;
    let client = connect(&broker).await;
    let mut sub = client.subscribe("bytes.>").await.unwrap();
    client.flush().await.unwrap();

    let binary: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let payloads = [
        Bytes::new(),
        Bytes::from_static(b"hello"),
        Bytes::from_static(b"line\r\nbreaks\r\nMSG fake 1 2\r\n"),
        Bytes::from(binary),
    ];
    for (i, p) in payloads.iter().enumerate() {
        client
            .publish(format!("bytes.{i}"), p.clone())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    for (i, p) in payloads.iter().enumerate() {
        let m = next(&mut sub, &format!("payload {i}")).await;
        assert_eq!(m.subject.as_str(), format!("bytes.{i}"));
        assert_eq!(m.payload, *p, "payload {i}");
    }
}
