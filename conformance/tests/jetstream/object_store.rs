//! Object stores with async-nats's `object_store` module, as a NATS user writes
//! them (a bucket is an `OBJ_<bucket>` stream of chunks and metadata): a 100 MiB
//! file put and read back byte for byte (its SHA-256 digest checked by the
//! client), info, list, a link, watch, and delete (its chunks purged).

use crate::support::{connect, stream_state, within, within_for};
use async_nats::jetstream::object_store;
use futures::StreamExt;
use junction_conformance::broker;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// A deterministic pseudo-random file of `len` bytes (xorshift).
fn file(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_keeps_a_100_mib_file_and_gives_it_back() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let store = within(
        "create object store",
        js.create_object_store(object_store::Config {
            bucket: "files".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut watch = store.watch().await.unwrap();
    let big = file(
        std::env::var("OBJ_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(100)
            << 20,
    );
    let info = within_for(
        Duration::from_secs(300),
        "put 100 MiB",
        store.put("big.bin", &mut big.as_slice()),
    )
    .await
    .unwrap();
    assert_eq!(info.size, big.len());
    assert_eq!(info.name, "big.bin");
    let seen = within("watch sees the put", watch.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seen.name, "big.bin");

    // Read back byte for byte (async-nats checks the digest at the end).
    let mut object = store.get("big.bin").await.unwrap();
    let mut back = Vec::with_capacity(big.len());
    within_for(
        Duration::from_secs(300),
        "get 100 MiB",
        object.read_to_end(&mut back),
    )
    .await
    .unwrap();
    assert!(back == big, "the file read back differs");

    store.put("small.txt", &mut &b"hello"[..]).await.unwrap();
    let link = store.add_link("alias", &info).await.unwrap();
    assert_eq!(link.name, "alias");
    let mut names: Vec<String> = store
        .list()
        .await
        .unwrap()
        .map(|i| i.unwrap().name)
        .collect()
        .await;
    names.sort();
    assert_eq!(names, vec!["alias", "big.bin", "small.txt"]);
    let mut via_link = Vec::new();
    store
        .get("small.txt")
        .await
        .unwrap()
        .read_to_end(&mut via_link)
        .await
        .unwrap();
    assert_eq!(via_link, b"hello");

    // Delete: the object is gone and its chunks are purged.
    let before = stream_state(&js, "OBJ_files").await.bytes;
    store.delete("big.bin").await.unwrap();
    assert!(store.get("big.bin").await.is_err());
    let after = stream_state(&js, "OBJ_files").await.bytes;
    assert!(after < before / 10, "chunks purged: {before} -> {after}");
    let info = store.info("small.txt").await.unwrap();
    assert_eq!(info.size, 5);
}
