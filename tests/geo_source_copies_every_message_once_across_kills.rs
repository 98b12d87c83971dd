//! Geo-replication: a station on one broker ("cluster" B) sources a stream of
//! another broker over an ordinary NATS connection, given by URL in the stream's
//! metadata (`junction.remote.<origin>`). 100 K messages are published on the
//! origin by a publisher that keeps going while either side is killed with
//! SIGKILL and started again (origin, destination, origin); it retries every
//! publish until acked, with a `Nats-Msg-Id`, so a retry is never stored twice.
//! B ends with every origin message exactly once, in the origin's order (its
//! `Nats-Stream-Source` origin sequences are 1, 2, 3, … and each copy is the
//! origin's message at that sequence). The origin is another Junction process,
//! then a real nats-server (that half says SKIPPED when nats-server is not
//! installed; scripts/test installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, message::PublishMessage, stream::Source};
use futures::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::support::process;
use crate::support::sourcing;

use sourcing::{GUARD, Junction, config, until_count};

/// Messages published on the origin.
const TOTAL: u64 = 100_000;
/// Publishes in flight at once.
const WINDOW: usize = 512;

/// Publishes message `i` (payload `i`, `Nats-Msg-Id: m<i>`) for every `i` below
/// [`TOTAL`] on the origin at `url`, retrying each until the origin acks it,
/// through restarts of the origin. `acked` counts acknowledged messages as they
/// come (a duplicate ack for a retry that was stored the first time counts
/// once, as it is one message). Returns the number of retries.
async fn publisher(url: String, acked: Arc<AtomicU64>) -> u64 {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .unwrap();
    let js = jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(3))
        .build(client);
    let mut next = 0;
    let mut retry: Vec<u64> = Vec::new();
    let mut retries = 0;
    // Retries the origin had stored already (their first ack was lost).
    let mut duplicates = 0;
    let r = tokio::time::timeout(GUARD * 3, async {
        while next < TOTAL || !retry.is_empty() {
            let mut batch: Vec<u64> = std::mem::take(&mut retry);
            while batch.len() < WINDOW && next < TOTAL {
                batch.push(next);
                next += 1;
            }
            let mut sent = Vec::with_capacity(batch.len());
            for &i in &batch {
                let p = PublishMessage::build()
                    .payload(i.to_string().into())
                    .message_id(format!("m{i}"));
                let f = tokio::time::timeout(
                    Duration::from_secs(3),
                    js.send_publish(format!("orders.{}", i % 7), p),
                )
                .await;
                sent.push((i, f));
            }
            // The acks are awaited together: each has its own timeout.
            let acks = futures::future::join_all(sent.into_iter().map(|(i, f)| async move {
                match f {
                    Ok(Ok(ack)) => (
                        i,
                        ack.await
                            .map(|a| a.duplicate)
                            .map_err(|e| format!("ack: {e}")),
                    ),
                    Ok(Err(e)) => (i, Err(e.to_string())),
                    Err(_) => (i, Err("send timed out".to_string())),
                }
            }))
            .await;
            for (i, r) in acks {
                match r {
                    Ok(duplicate) => {
                        duplicates += u64::from(duplicate);
                        acked.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        if retry.is_empty() {
                            eprintln!("publish {i}: {e} (retried)");
                        }
                        retry.push(i);
                    }
                }
            }
            if !retry.is_empty() {
                retries += retry.len() as u64;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "publisher stuck: {} acked, {} retries pending",
        acked.load(Ordering::SeqCst),
        retry.len()
    );
    eprintln!("{duplicates} retried publishes were acked as duplicates (stored once)");
    retries
}

/// Waits (with the guard) until the publisher has `n` acks.
async fn until_acked(acked: &AtomicU64, n: u64) {
    tokio::time::timeout(GUARD, async {
        while acked.load(Ordering::SeqCst) < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "publisher stuck at {} acks (waiting for {n})",
            acked.load(Ordering::SeqCst)
        )
    });
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

/// One stored message: (stream sequence, subject, payload, `Nats-Stream-Source`).
type Stored = (u64, String, String, Option<String>);

/// The first `n` messages of `stream`, in order, read with an ordered consumer.
async fn read_all(js: &jetstream::Context, name: &str, n: u64) -> Vec<Stored> {
    let stream = js.get_stream(name).await.expect("stream");
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig::default())
        .await
        .expect("ordered consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::with_capacity(n as usize);
    tokio::time::timeout(GUARD, async {
        while (out.len() as u64) < n {
            let m = messages.next().await.expect("more").expect("message");
            let seq = m.info().expect("info").stream_sequence;
            let src = m
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Stream-Source"))
                .map(|v| v.as_str().to_string());
            out.push((
                seq,
                m.subject.to_string(),
                String::from_utf8_lossy(&m.payload).to_string(),
                src,
            ));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{name}: only {} of {n} messages read", out.len()));
    out
}

/// The origin holds each of the [`TOTAL`] messages once; B holds a copy of each
/// origin message once, in the origin's order, with nothing else; and B's
/// source reports no lag.
async fn check(origin: &jetstream::Context, b: &jetstream::Context) {
    let o_info = origin
        .get_stream("ORDERS")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(o_info.state.messages, TOTAL, "origin count: {o_info:?}");
    let b_info = b
        .get_stream("GEO")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(b_info.state.messages, TOTAL, "B count: {b_info:?}");
    let o = read_all(origin, "ORDERS", TOTAL).await;
    let copies = read_all(b, "GEO", TOTAL).await;
    let mut seen = vec![false; TOTAL as usize];
    for (seq, _, payload, _) in &o {
        let i: usize = payload.parse().unwrap();
        assert!(
            !seen[i],
            "message {i} stored twice on the origin (seq {seq})"
        );
        seen[i] = true;
    }
    let o_first = o[0].0;
    for (k, (_, subject, payload, src)) in copies.iter().enumerate() {
        let src = src.as_deref().expect("Nats-Stream-Source");
        let origin_seq: u64 = src.rsplit_once(' ').unwrap().1.parse().unwrap();
        assert_eq!(origin_seq, o_first + k as u64, "copy {k} is {src}");
        let (oseq, osubject, opayload, _) = &o[k];
        assert_eq!(*oseq, origin_seq);
        assert_eq!(
            (subject, payload),
            (osubject, opayload),
            "copy {k} differs from origin seq {oseq}"
        );
    }
    assert_eq!(b_info.sources.len(), 1);
    assert_eq!(b_info.sources[0].name, "ORDERS");
    // The lag is set just after the last copies are stored: waited for.
    tokio::time::timeout(GUARD, async {
        loop {
            let mut s = b.get_stream("GEO").await.unwrap();
            if s.info().await.unwrap().sources[0].lag == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("B's source reports no lag");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junction_to_junction_source_survives_kills_of_either_side_during_the_flow() {
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
    let acked = Arc::new(AtomicU64::new(0));
    let publishing = tokio::spawn(publisher(a.url(), acked.clone()));
    // Origin, destination, origin: each killed mid-flow and started again.
    until_acked(&acked, TOTAL / 4).await;
    a = a.kill_9_and_restart().await;
    until_acked(&acked, TOTAL / 2).await;
    b = b.kill_9_and_restart().await;
    until_acked(&acked, TOTAL * 3 / 4).await;
    a = a.kill_9_and_restart().await;
    let retries = publishing.await.unwrap();
    eprintln!("published {TOTAL} with {retries} retried publishes");
    assert_eq!(acked.load(Ordering::SeqCst), TOTAL);
    let js = b.js().await;
    until_count(&js, "GEO", TOTAL).await;
    check(&a.js().await, &js).await;
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
async fn nats_server_origin_source_survives_kills_of_either_side_during_the_flow() {
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
    let acked = Arc::new(AtomicU64::new(0));
    let publishing = tokio::spawn(publisher(url.clone(), acked.clone()));
    // Junction three times, the nats-server (its store on disk) twice between.
    for (k, at) in [1, 2, 3, 4, 5].into_iter().enumerate() {
        until_acked(&acked, TOTAL * at / 6).await;
        if k % 2 == 0 {
            b = b.kill_9_and_restart().await;
        } else {
            nats.kill().await.unwrap(); // SIGKILL
            nats = start_nats();
            nats_js(&url, &nats_log).await;
        }
    }
    let retries = publishing.await.unwrap();
    eprintln!("published {TOTAL} with {retries} retried publishes");
    assert_eq!(acked.load(Ordering::SeqCst), TOTAL);
    let js = b.js().await;
    until_count(&js, "GEO", TOTAL).await;
    check(&nats_js(&url, &nats_log).await, &js).await;
    b.kill_9().await;
    nats.kill().await.unwrap();
}
