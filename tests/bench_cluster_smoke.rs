//! Smoke test of `junction bench js-pub --pub-to leader|follower` against a
//! real 3-node cluster: the publishers go to the R3 stream's leader, or to a
//! node that is not its leader, and every message is acknowledged. Throughput
//! is never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use cluster::Cluster;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_pub_goes_to_the_leader_or_to_a_follower_of_an_r3_stream() {
    let c = Cluster::start(3, &[]).await;
    let urls = (0..3).map(|i| c.nats_url(i)).collect::<Vec<_>>().join(",");
    for role in ["leader", "follower"] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_junction"))
            .args([
                "bench",
                "js-pub",
                "--window",
                "100",
                "--msgs",
                "2000",
                "--stream",
                "SMOKER3",
                "--replicas",
                "3",
                "--pub-to",
                role,
                "--url",
                &c.nats_url(0),
                "--pub-url",
                &urls,
                "--json",
            ])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["lost"], 0, "{report}");
        assert_eq!(report["jetstream"]["pub_to"], role, "{report}");
        assert_eq!(report["msgs"], 2000, "{report}");
    }
}

/// `junction bench js-failover`: the benchmark kills the R3 stream's leader
/// (by the PIDs it is given) while publishing through a follower, and reports
/// the failover with every acknowledged message stored once. The time itself
/// is never asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn js_failover_kills_the_leader_and_every_acknowledged_message_is_stored_once() {
    let c = Cluster::start(3, &[]).await;
    let urls = (0..3).map(|i| c.nats_url(i)).collect::<Vec<_>>().join(",");
    let pids = c
        .nodes
        .iter()
        .map(|n| format!("{}={}", n.name, n.child.id().unwrap()))
        .collect::<Vec<_>>()
        .join(",");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_junction"))
        .args([
            "bench",
            "js-failover",
            "--msgs",
            "50",
            "--stream",
            "SMOKEFO",
            "--replicas",
            "3",
            "--url",
            &c.nats_url(0),
            "--pub-url",
            &urls,
            "--node-pids",
            &pids,
            "--json",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &report["failover"];
    let killed = f["killed"].as_str().unwrap();
    assert!(c.nodes.iter().any(|n| n.name == killed), "{report}");
    assert_ne!(f["new_leader"], f["killed"], "{report}");
    assert_eq!(f["acked"], 151, "{report}");
    assert_eq!(f["stored"], 151, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(report["p50_us"].as_f64().unwrap() > 0.0, "{report}");
}
