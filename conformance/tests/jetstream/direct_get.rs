//! `$JS.API.DIRECT.GET`: async-nats's `direct_get`, `direct_get_last_for_subject`
//! and `direct_get_next_for_subject` get a stored message answered as a message
//! (its headers, `Nats-Stream`/`Nats-Subject`/`Nats-Sequence`/`Nats-Time-Stamp`,
//! its payload), as from nats-server; a missing one is `NotFound` (404); raw
//! requests get nats-server's 408 statuses.

use crate::support::{connect, publish, simple_stream, within};
use async_nats::HeaderMap;
use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_get_by_sequence_last_and_next_for_subject() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "DG", &["dg.>"]).await;
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
        (&br#"{"seq":1,"batch":2}"#[..], "Bad Request"),
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
    // An unknown stream finds nothing.
    let r = within(
        "unknown stream",
        client.request(
            "$JS.API.DIRECT.GET.NOPE",
            Bytes::from_static(br#"{"seq":1}"#),
        ),
    )
    .await
    .unwrap();
    assert_eq!(r.status.map(|s| s.as_u16()), Some(404));
}
