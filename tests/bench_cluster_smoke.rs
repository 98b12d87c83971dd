//! Smoke test of `junction bench js-pub --pub-to leader|follower` against a
//! real 3-node cluster: the publishers go to the R3 stream's leader, or to a
//! node that is not its leader, and every message is acknowledged. Throughput
//! is never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
#[allow(dead_code)] // each test binary uses part of it
mod process;

#[path = "support/cluster.rs"]
mod cluster;

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
