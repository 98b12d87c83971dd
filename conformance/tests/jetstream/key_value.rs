//! Key-value buckets with async-nats's `kv` module, as a NATS user writes them
//! (a bucket is a `KV_<bucket>` stream with rollups and per-subject history):
//! put and get with revisions, create that refuses an existing key, update
//! that checks the revision, delete and purge (a rollup), history, keys, and
//! watch (the current values first, then live updates; both are ordered
//! push consumers). Then a rollup of the
//! whole stream with `Nats-Rollup: all`, and a rollup refused on a stream
//! without `allow_rollup_hdrs`.

use crate::support::{connect, publish, simple_stream, stream_state, within};
use async_nats::jetstream::kv::{self, Operation};
use bytes::Bytes;
use futures::StreamExt;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_value_bucket_works_as_on_nats_server() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let kv = within(
        "create bucket",
        js.create_key_value(kv::Config {
            bucket: "settings".into(),
            history: 5,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let status = kv.status().await.unwrap();
    assert_eq!(status.history(), 5);

    let r1 = kv.put("color", Bytes::from_static(b"red")).await.unwrap();
    let r2 = kv.put("color", Bytes::from_static(b"blue")).await.unwrap();
    assert!(r2 > r1);
    assert_eq!(
        kv.get("color").await.unwrap().as_deref(),
        Some(&b"blue"[..])
    );
    let entry = kv.entry("color").await.unwrap().unwrap();
    assert_eq!(entry.revision, r2);
    assert_eq!(entry.operation, Operation::Put);

    // Create refuses an existing key; update checks the revision.
    assert!(kv.create("color", Bytes::from_static(b"x")).await.is_err());
    let r3 = kv.create("size", Bytes::from_static(b"L")).await.unwrap();
    assert!(
        kv.update("size", Bytes::from_static(b"M"), r1)
            .await
            .is_err()
    );
    let r4 = kv
        .update("size", Bytes::from_static(b"M"), r3)
        .await
        .unwrap();
    assert!(r4 > r3);

    // Watch everything with its history: the current values first, then
    // what changes (async-nats's `watch_all` starts with new changes only).
    let mut watch = kv.watch_with_history(">").await.unwrap();
    let mut first = Vec::new();
    while first.len() < 2 {
        let e = within("watch", watch.next()).await.unwrap().unwrap();
        first.push((
            e.key.clone(),
            String::from_utf8_lossy(&e.value).into_owned(),
        ));
    }
    first.sort();
    assert_eq!(
        first,
        vec![("color".into(), "blue".into()), ("size".into(), "M".into())]
    );
    kv.put("shape", Bytes::from_static(b"round")).await.unwrap();
    let e = within("live watch", watch.next()).await.unwrap().unwrap();
    assert_eq!((e.key.as_str(), &e.value[..]), ("shape", &b"round"[..]));

    // History keeps up to 5 revisions per key.
    for n in 0..6 {
        kv.put("color", Bytes::from(format!("c{n}"))).await.unwrap();
    }
    let history: Vec<_> = kv
        .history("color")
        .await
        .unwrap()
        .map(|e| String::from_utf8_lossy(&e.unwrap().value).into_owned())
        .collect()
        .await;
    assert_eq!(history, vec!["c1", "c2", "c3", "c4", "c5"]);

    // Delete leaves a marker (get answers none); purge replaces the key's
    // whole history with one marker (a rollup).
    kv.delete("size").await.unwrap();
    assert_eq!(kv.get("size").await.unwrap(), None);
    let e = within("delete seen by the watch", async {
        loop {
            let e = watch.next().await.unwrap().unwrap();
            if e.key == "size" {
                return e;
            }
        }
    })
    .await;
    assert_eq!(e.operation, Operation::Delete);
    kv.purge("color").await.unwrap();
    assert_eq!(kv.get("color").await.unwrap(), None);
    let history: Vec<_> = kv.history("color").await.unwrap().collect().await;
    assert_eq!(history.len(), 1, "only the purge marker is left");
    assert_eq!(history[0].as_ref().unwrap().operation, Operation::Purge);

    let mut keys: Vec<String> = kv.keys().await.unwrap().map(|k| k.unwrap()).collect().await;
    keys.sort();
    assert_eq!(keys, vec!["shape"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_replaces_earlier_messages_only_where_allowed() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "RU".into(),
        subjects: vec!["ru.>".into()],
        allow_rollup: true,
        ..Default::default()
    })
    .await
    .unwrap();
    for n in 0..5 {
        publish(&js, "ru.a", format!("a{n}")).await;
        publish(&js, "ru.b", format!("b{n}")).await;
    }
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "sub");
    js.publish_with_headers("ru.a", h, "a-all".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(
        stream_state(&js, "RU").await.messages,
        6,
        "ru.a rolled up to one"
    );
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "all");
    let ack = js
        .publish_with_headers("ru.b", h, "everything".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let state = stream_state(&js, "RU").await;
    assert_eq!((state.messages, state.first_sequence), (1, ack.sequence));

    // Without allow_rollup_hdrs: refused (10115 in nats-server's table as
    // "rollup not permitted"), nothing stored.
    simple_stream(&js, "NORU", &["noru.>"]).await;
    publish(&js, "noru.a", "one").await;
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Rollup", "sub");
    let refused = js
        .publish_with_headers("noru.a", h, "two".into())
        .await
        .unwrap()
        .await;
    assert!(refused.is_err());
    assert_eq!(stream_state(&js, "NORU").await.messages, 1);
    drop(client);
}

/// nats-py's key-value API: create a bucket, put, get, update with the
/// revision, delete, keys; prints what it read.
const NATS_PY_KV: &str = r#"
import asyncio, sys, nats

async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="pykv", history=3)
    r1 = await kv.put("a", b"1")
    await kv.put("b", b"2")
    r3 = await kv.update("a", b"11", last=r1)
    e = await kv.get("a")
    print(f"GET {e.key}={e.value.decode()} rev={e.revision} updated={r3 == e.revision}", flush=True)
    await kv.delete("b")
    keys = sorted(await kv.keys())
    print("KEYS " + ",".join(keys), flush=True)
    await nc.close()

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_key_value() {
    let Some(python) = crate::support::python_with_nats() else {
        return;
    };
    let b = broker().await;
    let out = within(
        "nats-py kv",
        tokio::process::Command::new(python)
            .args(["-c", NATS_PY_KV, &b.nats_url()])
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("GET a=11 rev=3 updated=True"), "{stdout}");
    assert!(stdout.contains("KEYS a\n"), "{stdout}");
}
