//! `$JS.API.DIRECT.GET`: async-nats's `direct_get`, `direct_get_last_for_subject`
//! and `direct_get_next_for_subject` get a stored message answered as a message
//! (its headers, `Nats-Stream`/`Nats-Subject`/`Nats-Sequence`/`Nats-Time-Stamp`,
//! its payload), as from nats-server; a missing one is `NotFound` (404); raw
//! requests get nats-server's 408 statuses. Batched gets (ADR-31, as
//! nats-server 2.11 answers them and orbit's `jetstream-extra` reads them):
//! `batch` from a sequence or for a subject filter, with `Nats-Num-Pending` and
//! `Nats-Last-Sequence` on each message and a `204 EOB` at the end; `multi_last`
//! with `up_to_seq`; too many subjects is 413.

use crate::support::{connect, create_stream, publish, within};
use async_nats::HeaderMap;
use async_nats::jetstream::stream;
use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use junction_conformance::broker;

/// A stream with `allow_direct` (direct gets answer only such streams).
async fn direct_stream(
    js: &async_nats::jetstream::Context,
    name: &str,
    subject: &str,
) -> stream::Stream {
    create_stream(
        js,
        stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            allow_direct: true,
            ..Default::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_get_by_sequence_last_and_next_for_subject() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = direct_stream(&js, "DG", "dg.>").await;
    let mut h = HeaderMap::new();
    h.insert("Color", "blue");
    within(
        "publish with headers",
        js.publish_with_headers("dg.a", h, Bytes::from_static(b"one")),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    publish(&js, "dg.b", "two").await;
    publish(&js, "dg.a", "three").await;

    let m = within("direct get 1", s.direct_get(1)).await.unwrap();
    assert_eq!(m.sequence, 1);
    assert_eq!(m.subject.as_str(), "dg.a");
    assert_eq!(&m.payload[..], b"one");
    assert_eq!(m.headers.get("Color").map(|v| v.as_str()), Some("blue"));
    assert_eq!(m.headers.get("Nats-Stream").map(|v| v.as_str()), Some("DG"));

    let last = within("last for dg.a", s.direct_get_last_for_subject("dg.a"))
        .await
        .unwrap();
    assert_eq!((last.sequence, &last.payload[..]), (3, &b"three"[..]));

    let next = within(
        "next for dg.b from 1",
        s.direct_get_next_for_subject("dg.b", Some(1)),
    )
    .await
    .unwrap();
    assert_eq!((next.sequence, &next.payload[..]), (2, &b"two"[..]));
    let next = within(
        "next for dg.> from 3",
        s.direct_get_next_for_subject("dg.>", Some(3)),
    )
    .await
    .unwrap();
    assert_eq!(next.sequence, 3);

    for missing in [
        within("missing seq", s.direct_get(99)).await,
        within("missing subject", s.direct_get_last_for_subject("dg.none")).await,
        within(
            "nothing after",
            s.direct_get_next_for_subject("dg.b", Some(3)),
        )
        .await,
    ] {
        let e = missing.expect_err("not found");
        assert_eq!(e.kind(), DirectGetErrorKind::NotFound, "{e:?}");
    }

    // Raw requests as nats-server answers them: 408 with its descriptions.
    for (body, want) in [
        (&b""[..], "Empty Request"),
        (&b"{not json"[..], "Malformed Request"),
        (&br#"{"seq":1,"last_by_subj":"dg.a"}"#[..], "Bad Request"),
        (&br#"{"seq":1,"up_to_seq":2}"#[..], "Bad Request"),
    ] {
        let r = within(
            "raw direct get",
            client.request("$JS.API.DIRECT.GET.DG", Bytes::copy_from_slice(body)),
        )
        .await
        .unwrap();
        assert_eq!(r.status.map(|s| s.as_u16()), Some(408), "{body:?}");
        assert_eq!(r.description.as_deref(), Some(want), "{body:?}");
    }
    // An unknown stream has nobody answering, as on nats-server.
    let r = within(
        "unknown stream",
        client.request(
            "$JS.API.DIRECT.GET.NOPE",
            Bytes::from_static(br#"{"seq":1}"#),
        ),
    )
    .await;
    assert!(
        matches!(&r, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{r:?}"
    );
}

/// Sends a raw batched direct get and reads its answer up to the `204 EOB`
/// (or a single error status): the messages, and the end status.
async fn batch_get(
    client: &async_nats::Client,
    stream: &str,
    body: serde_json::Value,
) -> (Vec<async_nats::Message>, async_nats::Message) {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.unwrap();
    client
        .publish_with_reply(
            format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            Bytes::from(body.to_string()),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    loop {
        let m = within("batched direct get", futures::StreamExt::next(&mut sub))
            .await
            .unwrap();
        if m.status.is_some() {
            return (got, m);
        }
        got.push(m);
    }
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> &'a str {
    m.headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map_or("", |v| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_direct_gets_answer_as_nats_server_2_11() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    direct_stream(&js, "DGB", "dgb.>").await;
    for n in 1..=10 {
        let subject = if n % 2 == 0 { "dgb.even" } else { "dgb.odd" };
        publish(&js, subject, format!("m{n}")).await;
    }
    // Three from sequence 4.
    let (msgs, end) = batch_get(&client, "DGB", serde_json::json!({"batch": 3, "seq": 4})).await;
    let seqs: Vec<&str> = msgs.iter().map(|m| header(m, "Nats-Sequence")).collect();
    assert_eq!(seqs, ["4", "5", "6"]);
    let pending: Vec<&str> = msgs.iter().map(|m| header(m, "Nats-Num-Pending")).collect();
    assert_eq!(pending, ["6", "5", "4"]);
    let last: Vec<&str> = msgs
        .iter()
        .map(|m| header(m, "Nats-Last-Sequence"))
        .collect();
    assert_eq!(last, ["0", "4", "5"]);
    assert_eq!(&msgs[0].payload[..], b"m4");
    assert_eq!(header(&msgs[0], "Nats-Stream"), "DGB");
    assert_eq!(end.status.map(|s| s.as_u16()), Some(204));
    assert_eq!(end.description.as_deref(), Some("EOB"));
    assert_eq!(header(&end, "Nats-Last-Sequence"), "6");
    assert_eq!(header(&end, "Nats-Num-Pending"), "4");

    // Every even one, from the start.
    let (msgs, _) = batch_get(
        &client,
        "DGB",
        serde_json::json!({"batch": 100, "next_by_subj": "dgb.even"}),
    )
    .await;
    let payloads: Vec<String> = msgs
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(payloads, ["m2", "m4", "m6", "m8", "m10"]);
    assert_eq!(header(msgs.last().unwrap(), "Nats-Num-Pending"), "0");

    // The newest of each subject, and as of sequence 5.
    let (msgs, end) = batch_get(&client, "DGB", serde_json::json!({"multi_last": ["dgb.>"]})).await;
    let seqs: Vec<&str> = msgs.iter().map(|m| header(m, "Nats-Sequence")).collect();
    assert_eq!(seqs, ["9", "10"]);
    assert_eq!(end.status.map(|s| s.as_u16()), Some(204));
    let (msgs, _) = batch_get(
        &client,
        "DGB",
        serde_json::json!({"multi_last": ["dgb.even", "dgb.odd"], "up_to_seq": 5}),
    )
    .await;
    let seqs: Vec<&str> = msgs.iter().map(|m| header(m, "Nats-Sequence")).collect();
    assert_eq!(seqs, ["4", "5"]);
    assert_eq!(header(&msgs[0], "Nats-UpTo-Sequence"), "5");

    // Nothing there: 404; too many subjects: 413.
    let (msgs, end) = batch_get(&client, "DGB", serde_json::json!({"batch": 5, "seq": 50})).await;
    assert!(msgs.is_empty());
    assert_eq!(end.status.map(|s| s.as_u16()), Some(404));
    let many: Vec<String> = (0..1025).map(|n| format!("dgb.s{n}")).collect();
    let (_, end) = batch_get(&client, "DGB", serde_json::json!({"multi_last": many})).await;
    assert_eq!(end.status.map(|s| s.as_u16()), Some(413));
}
