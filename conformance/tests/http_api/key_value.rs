//! Key-value buckets over HTTP (`/v1/kv/{bucket}/{key}`), shared with NATS
//! clients: a bucket made by async-nats is read and written over HTTP, and what
//! HTTP puts and deletes is what `js.key_value` sees. An update that names a
//! stale revision is 412; a missing key or bucket is 404.

use crate::support::{Api, within};
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use junction_conformance::broker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_and_writes_the_buckets_nats_clients_use() {
    let b = broker().await;
    let api = Api::new(&b);
    let nc = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    let js = jetstream::new(nc);
    let store = within(
        "create bucket",
        js.create_key_value(kv::Config {
            bucket: "cfg".into(),
            history: 3,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    store
        .put("color", Bytes::from_static(b"red"))
        .await
        .unwrap();

    // NATS wrote it; HTTP reads it.
    let v = api.get("/v1/kv/cfg/color").await.expect(200);
    assert_eq!(v["value"], "red");
    let rev = v["revision"].as_u64().unwrap();

    // HTTP writes; NATS reads.
    let put = api
        .send(
            api.request(reqwest::Method::PUT, "/v1/kv/cfg/size")
                .body("XL"),
        )
        .await
        .expect(200);
    assert_eq!(put["key"], "size");
    assert_eq!(
        store.get("size").await.unwrap().as_deref(),
        Some(&b"XL"[..])
    );

    // An update of a revision: the current one works, a stale one is 412.
    let ok = api
        .send(
            api.request(reqwest::Method::PUT, "/v1/kv/cfg/color")
                .header("Junction-Expected-Last-Subject-Sequence", rev.to_string())
                .body("blue"),
        )
        .await
        .expect(200);
    assert!(ok["revision"].as_u64().unwrap() > rev);
    api.send(
        api.request(reqwest::Method::PUT, "/v1/kv/cfg/color")
            .header("Junction-Expected-Last-Subject-Sequence", rev.to_string())
            .body("green"),
    )
    .await
    .expect_error(412, "wrong_last_subject_sequence");
    assert_eq!(
        store.get("color").await.unwrap().as_deref(),
        Some(&b"blue"[..])
    );

    // Keys; a delete over HTTP is a delete for NATS too.
    let keys = api.get("/v1/kv/cfg").await.expect(200);
    assert_eq!(keys["keys"], serde_json::json!(["size", "color"]));
    let r = api.delete("/v1/kv/cfg/size").await;
    assert_eq!(r.status, 204);
    assert_eq!(store.get("size").await.unwrap(), None);
    api.get("/v1/kv/cfg/size")
        .await
        .expect_error(404, "key_not_found");
    let keys = api.get("/v1/kv/cfg").await.expect(200);
    assert_eq!(keys["keys"], serde_json::json!(["color"]));

    // History: every revision kept, oldest first, markers included (the
    // bucket keeps 3 per key).
    let h = api.get("/v1/kv/cfg/color/history").await.expect(200);
    let values: Vec<(&str, &str)> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(values, [("PUT", "red"), ("PUT", "blue")]);
    let h = api.get("/v1/kv/cfg/size/history").await.expect(200);
    let ops: Vec<&str> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap())
        .collect();
    assert_eq!(ops, ["PUT", "DEL"]);
    let h = api.get("/v1/kv/cfg/never/history").await.expect(200);
    assert_eq!(h["entries"], serde_json::json!([]));
    api.get("/v1/kv/nope/x/history")
        .await
        .expect_error(404, "bucket_not_found");

    // No such bucket.
    api.get("/v1/kv/nope/x")
        .await
        .expect_error(404, "bucket_not_found");
    api.send(api.request(reqwest::Method::PUT, "/v1/kv/nope/x").body("1"))
        .await
        .expect_error(404, "bucket_not_found");
}
