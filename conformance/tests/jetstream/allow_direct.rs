//! Direct gets are answered only for streams with `allow_direct`, as
//! nats-server (which subscribes a stream's direct-get subject only then):
//! for another stream, or none, the client gets no responders. Turning it on
//! with an update makes them work; key-value buckets (async-nats and nats-py
//! set `allow_direct` on them, or read with `STREAM.MSG.GET` without it) keep
//! working.

use crate::support::{connect, create_stream, publish, simple_stream, within};
use async_nats::jetstream::kv;
use async_nats::jetstream::stream;
use async_nats::jetstream::stream::DirectGetErrorKind;
use bytes::Bytes;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_gets_need_allow_direct() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = simple_stream(&js, "AD", &["ad.>"]).await;
    publish(&js, "ad.a", "one").await;

    // Without allow_direct: nobody answers.
    let err = within("direct get without allow_direct", s.direct_get(1)).await;
    assert!(
        !matches!(&err, Err(e) if e.kind() == DirectGetErrorKind::NotFound) && err.is_err(),
        "{err:?}"
    );
    let raw = within(
        "raw direct get",
        client.request("$JS.API.DIRECT.GET.AD", Bytes::from_static(br#"{"seq":1}"#)),
    )
    .await;
    assert!(
        matches!(&raw, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{raw:?}"
    );
    // A stream that does not exist: the same.
    let raw = within(
        "raw direct get of no stream",
        client.request(
            "$JS.API.DIRECT.GET.NONE",
            Bytes::from_static(br#"{"seq":1}"#),
        ),
    )
    .await;
    assert!(
        matches!(&raw, Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders),
        "{raw:?}"
    );

    // Turned on by an update: answered.
    within(
        "update",
        js.update_stream(stream::Config {
            name: "AD".into(),
            subjects: vec!["ad.>".into()],
            allow_direct: true,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let m = within("direct get with allow_direct", s.direct_get(1))
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"one");

    // A stream made with it from the start.
    let d = create_stream(
        &js,
        stream::Config {
            name: "AD2".into(),
            subjects: vec!["ad2.>".into()],
            allow_direct: true,
            ..Default::default()
        },
    )
    .await;
    publish(&js, "ad2.a", "two").await;
    let m = within("direct get", d.direct_get_last_for_subject("ad2.a"))
        .await
        .unwrap();
    assert_eq!(&m.payload[..], b"two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_value_buckets_still_read_with_direct_gets() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let kv = within(
        "create bucket",
        js.create_key_value(kv::Config {
            bucket: "direct".into(),
            history: 3,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut s = js.get_stream("KV_direct").await.unwrap();
    assert!(s.info().await.unwrap().config.allow_direct);
    kv.put("k", Bytes::from_static(b"v1")).await.unwrap();
    kv.put("k", Bytes::from_static(b"v2")).await.unwrap();
    let got = within("kv get", kv.get("k")).await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"v2"[..]));
    let entry = within("kv entry", kv.entry_for_revision("k", 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&entry.value[..], b"v1");
}
