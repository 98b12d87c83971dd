//! A webhook receiver that hangs (accepts, never answers) and one that is
//! closed (connection refused), for 60 s, while clients come and go and a
//! JetStream publisher keeps publishing (docs/operations.md, "Webhooks"):
//!
//! - every publish is acknowledged: webhooks never hold up publishing;
//! - the broker's memory stays bounded: events wait in the `$sys_events`
//!   station, not in memory (resident memory after 60 s is compared with after
//!   10 s);
//! - once the receivers are back, every event recorded meanwhile reaches each
//!   of them (within `retry_max`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::notify;
use crate::support::process;
use notify::{Broker, Receiver};
use process::GUARD;

use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OUTAGE: Duration = Duration::from_secs(60);

/// The broker's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn webhook(name: &str, port: u16) -> String {
    format!(
        "[[notifications.webhooks]]\nname = \"{name}\"\nurl = \"http://127.0.0.1:{port}/hook\"\n\
         kinds = [\"client_connected\", \"client_disconnected\"]\ntimeout = \"1s\"\n\
         retry_base = \"100ms\"\nretry_max = \"2s\"\nmax_attempts = 100000\nmax_per_minute = 100000\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_closed_receiver_for_60_s_holds_up_nothing_and_gets_everything_after() {
    // Hung: accepts and holds every connection, never reads or answers.
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut sockets = Vec::new();
        while let Ok((s, _)) = hung.accept().await {
            sockets.push(s);
        }
    });
    // Closed: nothing listens there.
    let closed_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("junction.toml"),
        format!(
            "{}{}",
            webhook("hung", hung_port),
            webhook("closed", closed_port)
        ),
    )
    .unwrap();
    let broker = Broker::start(dir.path()).await;
    let pid = broker.child.id().unwrap();

    // A publisher, acked one by one, at a steady pace.
    let nc = async_nats::connect(broker.nats.to_string()).await.unwrap();
    let js = async_nats::jetstream::new(nc);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "readings".into(),
        subjects: vec!["readings.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let publisher = {
        let (stop, acked, failed) = (stop.clone(), acked.clone(), failed.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ok = match js.publish(format!("readings.{i}"), "21.5".into()).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if ok { &acked } else { &failed }.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    // Clients come and go: connect and disconnect events for the webhooks.
    let start = Instant::now();
    let mut rss_early = None;
    let mut n = 0;
    while start.elapsed() < OUTAGE {
        let c = async_nats::ConnectOptions::new()
            .name(format!("device-{n}"))
            .connect(broker.nats.to_string())
            .await
            .unwrap();
        c.flush().await.unwrap();
        drop(c);
        n += 1;
        if rss_early.is_none() && start.elapsed() >= Duration::from_secs(10) {
            rss_early = Some(rss(pid));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rss_late = rss(pid);
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();

    let (acked, failed) = (
        acked.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert_eq!(failed, 0, "every publish acknowledged ({acked} were)");
    assert!(acked >= 100, "the publisher kept publishing: {acked} acked");
    let rss_early = rss_early.unwrap();
    assert!(
        rss_late < rss_early + 64 * 1024 * 1024,
        "memory bounded: {rss_early} bytes after 10 s, {rss_late} after 60 s"
    );
    eprintln!(
        "{acked} publishes acked, none failed; RSS {} MiB after 10 s, {} MiB after 60 s",
        rss_early >> 20,
        rss_late >> 20
    );
    // Both webhooks failed and kept their events.
    let list = broker.get("/v1/notifications/webhooks").await;
    for hook in list["webhooks"].as_array().unwrap() {
        assert!(
            hook["health"]["failed_attempts"].as_u64().unwrap() > 0,
            "{hook}"
        );
        assert_eq!(hook["health"]["delivered"], 0, "{hook}");
        assert_eq!(hook["health"]["dead_lettered"], 0, "{hook}");
    }

    // The receivers come back.
    held.abort();
    let _ = held.await;
    let back_hung = Receiver::start(hung_port).await;
    let back_closed = Receiver::start(closed_port).await;
    let mut want: BTreeSet<u64> = BTreeSet::new();
    for kind in ["client_connected", "client_disconnected"] {
        for e in broker.events(&format!("kind={kind}")).await {
            want.insert(e["id"].as_u64().unwrap());
        }
    }
    assert!(
        want.len() >= 20,
        "connects and disconnects were recorded: {}",
        want.len()
    );
    let ids = |hits: &[notify::Hit]| -> BTreeSet<u64> {
        hits.iter()
            .filter_map(|h| h.body.get("id").and_then(Value::as_u64))
            .collect()
    };
    for receiver in [&back_hung, &back_closed] {
        receiver
            .until("every event recorded during the outage", |hits| {
                want.is_subset(&ids(hits))
            })
            .await;
    }
    eprintln!(
        "{} events reached both receivers once they were back",
        want.len()
    );
    let deadline = Instant::now() + GUARD;
    loop {
        let list = broker.get("/v1/notifications/webhooks").await;
        let delivered: Vec<u64> = list["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["health"]["delivered"].as_u64().unwrap())
            .collect();
        if delivered.iter().all(|d| *d >= want.len() as u64) {
            break;
        }
        assert!(Instant::now() < deadline, "health never counted: {list}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.stop().await;
}
