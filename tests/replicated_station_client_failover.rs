//! Client failover onto a replicated station (R3), three real `junction`
//! processes: an async-nats client given only node 1's URL (it learns the others
//! from INFO `connect_urls`, as from nats-server) publishes with `Nats-Msg-Id`;
//! node 1 is killed; the client reconnects to another node by itself and keeps
//! publishing (each unacknowledged message sent again with its id until
//! acknowledged). Every message ends up stored exactly once, in the order
//! published, on both surviving replicas. The same with nats-py (the pinned
//! virtualenv `scripts/test` makes, `NATS_PY_PYTHON`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, get_json, until};
use std::time::Duration;

async fn publish_until_acked(js: &jetstream::Context, id: &str) -> u64 {
    for _ in 0..200 {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", id);
        let ack = match js
            .publish_with_headers("fo.x", headers, id.to_string().into())
            .await
        {
            Ok(f) => f.await.ok(),
            Err(_) => None,
        };
        if let Some(a) = ack {
            return a.sequence;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_one_seed_url_keeps_publishing_after_its_node_is_killed() {
    let mut c = Cluster::start(3, &[]).await;
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(c.nats_url(0))
        .await
        .unwrap();
    let mut js = jetstream::new(client.clone());
    js.set_timeout(Duration::from_secs(2));
    js.create_stream(stream::Config {
        name: "fo".into(),
        subjects: vec!["fo.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut ids = Vec::new();
    for n in 0..20 {
        let id = format!("m{n}");
        publish_until_acked(&js, &id).await;
        ids.push(id);
    }
    c.kill(0).await;
    for n in 20..40 {
        let id = format!("m{n}");
        publish_until_acked(&js, &id).await;
        ids.push(id);
    }
    // The client is connected to another node now.
    assert_eq!(
        client.connection_state(),
        async_nats::connection::State::Connected
    );
    for i in [1, 2] {
        until(
            "the survivor has the 40 messages once each, in order",
            || async {
                let page = get_json(c.nodes[i].http, "/v1/stations/fo/replica?limit=1000").await;
                let got: Vec<String> = page["messages"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                got == ids
            },
        )
        .await;
    }
}

/// nats-py's side: publishes p0..p19 with `Nats-Msg-Id`, says READY, waits for
/// a line on stdin (node 1 is killed meanwhile), publishes p20..p39, each sent
/// again with its id until acknowledged, and says DONE with the URL it is on.
const NATS_PY_PUBLISHER: &str = r#"
import asyncio, sys, nats

async def main():
    nc = await nats.connect(servers=[sys.argv[1]], max_reconnect_attempts=-1,
                            reconnect_time_wait=0.2, connect_timeout=2)
    js = nc.jetstream(timeout=2)

    async def publish(i):
        mid = f"p{i}"
        for _ in range(300):
            try:
                ack = await js.publish("fp.x", mid.encode(), headers={"Nats-Msg-Id": mid}, timeout=2)
                return ack.seq
            except Exception:
                await asyncio.sleep(0.1)
        raise SystemExit(f"{mid} never acknowledged")

    for i in range(20):
        await publish(i)
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for i in range(20, 40):
        await publish(i)
    print(f"DONE {nc.connected_url.netloc}", flush=True)
    await nc.close()

asyncio.run(main())
"#;

/// A python with nats-py: `NATS_PY_PYTHON`, else the one `scripts/test`
/// makes; None (the test says why it is skipped) outside CI without one.
fn python_with_nats() -> Option<String> {
    let candidates = [
        std::env::var("NATS_PY_PYTHON").ok(),
        Some(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/doc-examples/venv/bin/python3"
            )
            .to_string(),
        ),
        Some("python3".to_string()),
    ];
    for python in candidates.into_iter().flatten() {
        let ok = std::process::Command::new(&python)
            .args(["-c", "import nats"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    assert!(
        std::env::var("CI").is_err(),
        "nats-py is required under CI: scripts/test sets NATS_PY_PYTHON"
    );
    eprintln!("skipped: no python with nats-py (run ./scripts/doc-examples --setup-only)");
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_py_client_with_one_seed_url_keeps_publishing_after_its_node_is_killed() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Some(python) = python_with_nats() else {
        return;
    };
    let mut c = Cluster::start(3, &[]).await;
    let js = jetstream::new(async_nats::connect(c.nats_url(1)).await.unwrap());
    js.create_stream(stream::Config {
        name: "fp".into(),
        subjects: vec!["fp.>".into()],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut py = tokio::process::Command::new(&python)
        .args(["-c", NATS_PY_PUBLISHER, &c.nats_url(0)])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(py.stdout.take().unwrap()).lines();
    let mut stdin = py.stdin.take().unwrap();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("nats-py published its first 20")
        .unwrap();
    assert_eq!(line.as_deref(), Some("READY"));
    c.kill(0).await;
    stdin.write_all(b"go\n").await.unwrap();
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
        .await
        .expect("nats-py published the other 20 after the kill")
        .unwrap()
        .unwrap_or_default();
    assert!(line.starts_with("DONE "), "{line}");
    let on = line.trim_start_matches("DONE ");
    let killed = c.nats_url(0);
    assert!(!killed.ends_with(on), "still on the killed node: {on}");
    assert!(py.wait().await.unwrap().success());
    let ids: Vec<String> = (0..40).map(|n| format!("p{n}")).collect();
    for i in [1, 2] {
        until(
            "the survivor has nats-py's 40 messages once each, in order",
            || async {
                let page = get_json(c.nodes[i].http, "/v1/stations/fp/replica?limit=1000").await;
                let got: Vec<String> = page["messages"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                got == ids
            },
        )
        .await;
    }
}
