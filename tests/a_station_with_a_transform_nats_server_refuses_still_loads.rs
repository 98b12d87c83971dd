//! A station defined before transforms followed nats-server 2.10 exactly may
//! hold a template nats-server refuses (here a `*` in the destination, which
//! Junction used to read as "the source's next `*`"). Such a station still
//! loads with every message it had, takes new ones under the subject they were
//! published to (the transform is not applied), and the start says so.
//!
//! The old definition is written into the data directory's store, as an older
//! broker would have left it, between two runs of the real `junction` binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use junction_storage::Store;
use serde_json::{Value, json};
use std::process::Stdio;
use std::time::Duration;

use crate::support::process;

const GUARD: Duration = Duration::from_secs(30);

async fn request(client: &async_nats::Client, subject: &str, body: Value) -> Value {
    let reply = tokio::time::timeout(
        GUARD,
        client.request(subject.to_string(), Bytes::from(body.to_string())),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    serde_json::from_slice(&reply.payload).unwrap()
}

async fn stored_subject(client: &async_nats::Client, seq: u64) -> Value {
    request(client, "$JS.API.STREAM.MSG.GET.LEG", json!({ "seq": seq })).await["message"]["subject"]
        .clone()
}

async fn publish(client: &async_nats::Client, subject: &str) -> Value {
    let ack = tokio::time::timeout(GUARD, client.request(subject.to_string(), Bytes::from("m")))
        .await
        .expect("acked in time")
        .expect("acked");
    serde_json::from_slice(&ack.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_station_whose_transform_nats_server_refuses_loads_and_keeps_its_messages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = process::free_port();

    let mut first = process::start_nats_only(&data, port).await;
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let v = request(
        &client,
        "$JS.API.STREAM.CREATE.LEG",
        json!({"name": "LEG", "subjects": ["leg.>"],
               "subject_transform": {"src": "leg.*", "dest": "out.$1"}}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(publish(&client, "leg.a").await["seq"], 1);
    assert_eq!(stored_subject(&client, 1).await, "out.a");
    drop(client);
    first.kill().await.unwrap();
    first.wait().await.unwrap();

    // The definition as an older broker kept it: `out.*`.
    {
        let store = Store::open(&data).unwrap();
        let (key, value) = store
            .list_meta("station/")
            .unwrap()
            .into_iter()
            .find(|(_, v)| serde_json::from_slice::<Value>(v).unwrap()["config"]["name"] == "LEG")
            .expect("the station's definition");
        let mut meta: Value = serde_json::from_slice(&value).unwrap();
        meta["config"]["subject_transform"]["destination"] = json!("out.*");
        store
            .put_meta(&key, &serde_json::to_vec(&meta).unwrap())
            .unwrap();
    }

    let log = dir.path().join("second.log");
    let mut second = process::serve_nats_only(&data, port)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .expect("junction starts again");
    process::wait_listening(port).await;
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap();
    let info = request(&client, "$JS.API.STREAM.INFO.LEG", json!({})).await;
    assert_eq!(info["state"]["messages"], 1, "{info}");
    assert_eq!(stored_subject(&client, 1).await, "out.a");
    // Stored as published: the transform is not applied.
    let ack = publish(&client, "leg.b").await;
    assert_eq!(ack["stream"], "LEG", "{ack}");
    assert_eq!(stored_subject(&client, 2).await, "leg.b");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("is not applied") && text.contains("LEG") && text.contains("out.*"),
        "{text}"
    );
    // Updating it with the nats-server form makes it apply again.
    let v = request(
        &client,
        "$JS.API.STREAM.UPDATE.LEG",
        json!({"name": "LEG", "subjects": ["leg.>"],
               "subject_transform": {"src": "leg.*", "dest": "out.$1"}}),
    )
    .await;
    assert!(v.get("error").is_none(), "{v}");
    publish(&client, "leg.c").await;
    assert_eq!(stored_subject(&client, 3).await, "out.c");
    second.kill().await.unwrap();
}
