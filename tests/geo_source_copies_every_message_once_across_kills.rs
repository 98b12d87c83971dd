//! Geo-replication: a station on one broker ("cluster" B) sources a stream of
//! another broker over an ordinary NATS connection, given by URL in the stream's
//! metadata (`junction.remote.<origin>`). With either side killed (SIGKILL) and
//! started again during the flow, B ends with every origin message exactly
//! once, in the origin's order. The origin is another Junction process, then a
//! real nats-server (the test says so and skips that half when nats-server is
//! not installed; scripts/test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, stream::Source};
use std::collections::HashMap;
use std::time::Duration;

#[path = "support/process.rs"]
#[allow(dead_code)]
mod process;
#[path = "support/sourcing.rs"]
#[allow(dead_code)]
mod sourcing;

use sourcing::{GUARD, Junction, all_messages, config, until_count};

const CHUNKS: u64 = 4;
const PER_CHUNK: u64 = 2500;

async fn publish(js: &jetstream::Context, from: u64, n: u64) {
    let mut acks = Vec::with_capacity(256);
    for i in from..from + n {
        acks.push(
            js.publish(format!("orders.{}", i % 7), format!("{i}").into())
                .await
                .unwrap(),
        );
        if acks.len() == 256 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks.drain(..) {
        a.await.unwrap();
    }
}

fn sourced_stream(origin_url: &str) -> jetstream::stream::Config {
    let mut c = config("GEO", &[]);
    c.sources = Some(vec![Source {
        name: "ORDERS".into(),
        ..Default::default()
    }]);
    c.metadata = HashMap::from([("junction.remote.ORDERS".to_string(), origin_url.to_string())]);
    c
}

/// B's copies: origin sequences (from `Nats-Stream-Source`) in B's order, and
/// the payloads are the origin's.
async fn check_exactly_once_in_order(js: &jetstream::Context, total: u64) {
    let copies = all_messages(js, "GEO").await;
    assert_eq!(copies.len() as u64, total, "message count on B");
    for (i, (_, _, payload, src)) in copies.iter().enumerate() {
        let src = src.as_deref().expect("Nats-Stream-Source");
        let origin_seq: u64 = src.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert_eq!(
            origin_seq,
            i as u64 + 1,
            "copy {i} is origin seq {origin_seq}: {src}"
        );
        assert_eq!(payload, &i.to_string(), "payload of copy {i}");
    }
}

async fn lag_shown(js: &jetstream::Context) {
    let mut s = js.get_stream("GEO").await.unwrap();
    let info = s.info().await.unwrap();
    assert_eq!(info.sources.len(), 1);
    assert_eq!(info.sources[0].name, "ORDERS");
    assert_eq!(info.sources[0].lag, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_to_junction_source_survives_kills_of_either_side() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Junction::start(&dir.path().join("a"), process::free_port()).await;
    let mut b = Junction::start(&dir.path().join("b"), process::free_port()).await;
    a.js()
        .await
        .create_stream(config("ORDERS", &["orders.>"]))
        .await
        .unwrap();
    b.js()
        .await
        .create_stream(sourced_stream(&a.url()))
        .await
        .unwrap();
    for chunk in 0..CHUNKS {
        publish(&a.js().await, chunk * PER_CHUNK, PER_CHUNK).await;
        // Kill A, B, A, B, while B is copying.
        if chunk.is_multiple_of(2) {
            a = a.kill_9_and_restart().await;
        } else {
            b = b.kill_9_and_restart().await;
        }
    }
    let total = CHUNKS * PER_CHUNK;
    let js = b.js().await;
    until_count(&js, "GEO", total).await;
    // Nothing more arrives after a last restart of both.
    a = a.kill_9_and_restart().await;
    b = b.kill_9_and_restart().await;
    publish(&a.js().await, total, 1).await;
    let js = b.js().await;
    until_count(&js, "GEO", total + 1).await;
    check_exactly_once_in_order(&js, total + 1).await;
    lag_shown(&js).await;
    a.kill_9().await;
    b.kill_9().await;
}

/// A JetStream context on the nats-server at `url`, once it answers.
async fn nats_js(url: &str, log: &std::path::Path) -> jetstream::Context {
    let r = tokio::time::timeout(GUARD, async {
        loop {
            if let Ok(c) = async_nats::connect(url).await {
                let js = jetstream::new(c);
                // (async-nats' account info does not parse nats-server 2.9's.)
                if js
                    .get_or_create_stream(config("ORDERS", &["orders.>"]))
                    .await
                    .is_ok()
                {
                    return js;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match r {
        Ok(js) => js,
        Err(_) => panic!(
            "nats-server at {url} does not answer; its log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_origin_source_survives_kills_of_junction() {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: nats-server is not installed (apt-get install nats-server)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let nport = process::free_port();
    let store = dir.path().join("nats");
    let nats_log = dir.path().join("nats-server.log");
    let start_nats = || {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&nats_log)
            .unwrap();
        tokio::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &nport.to_string(), "-sd"])
            .arg(&store)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("nats-server starts")
    };
    let mut nats = start_nats();
    let url = format!("nats://127.0.0.1:{nport}");
    nats_js(&url, &nats_log).await;
    let mut b = Junction::start(&dir.path().join("b"), process::free_port()).await;
    b.js()
        .await
        .create_stream(sourced_stream(&url))
        .await
        .unwrap();
    let mut next = 0;
    for chunk in 0..CHUNKS {
        publish(&nats_js(&url, &nats_log).await, next, PER_CHUNK).await;
        next += PER_CHUNK;
        if chunk.is_multiple_of(2) {
            b = b.kill_9_and_restart().await;
        } else {
            // The origin nats-server too.
            nats.kill().await.unwrap();
            nats = start_nats();
        }
    }
    let js = b.js().await;
    until_count(&js, "GEO", next).await;
    check_exactly_once_in_order(&js, next).await;
    lag_shown(&js).await;
    b.kill_9().await;
    nats.kill().await.unwrap();
}
