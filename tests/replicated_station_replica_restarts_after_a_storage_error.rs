//! A replica whose Raft group stops on a storage error comes back by itself
//! once the cause is gone, without a restart of its process.
//!
//! openraft stops a group for good on any storage error: a snapshot that
//! cannot be written (a full disk), a snapshot file that cannot be read. Before
//! the supervisor, that node's copy of the station then stayed behind until
//! the process restarted (seen in CI as a replica that never caught up).
//!
//! Three nodes, an R3 station with a snapshot every 20 entries. On a follower,
//! the snapshot directory is replaced by a plain file, so its next snapshot
//! fails and its group stops (logged). The directory comes back; the group is
//! restarted from its storage (logged) and the follower's own copy catches up
//! to every message published meanwhile, in order, each once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::cluster;

use async_nats::jetstream::{self, stream};
use cluster::{Cluster, until};
use std::path::{Path, PathBuf};

const STATION: &str = "heal";
const SUBJECT: &str = "heal.x";

/// The `replica-snapshots` directory under a node's data directory.
fn snapshot_dir(data: &Path) -> PathBuf {
    let mut stack = vec![data.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                if e.file_name() == "replica-snapshots" {
                    return e.path();
                }
                stack.push(e.path());
            }
        }
    }
    panic!("no replica-snapshots under {}", data.display());
}

fn log_has(c: &Cluster, i: usize, text: &str) -> bool {
    std::fs::read_to_string(c.dir.path().join(format!("{}.log", c.nodes[i].name)))
        .unwrap_or_default()
        .contains(text)
}

/// The message ids (`Nats-Msg-Id`) in node `i`'s own copy, in sequence order.
async fn copy_ids(c: &Cluster, i: usize) -> Vec<String> {
    cluster::replica_messages(c.nodes[i].http, STATION)
        .await
        .iter()
        .map(|m| m["msg_id"].as_str().unwrap_or("").to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stopped_by_a_storage_error_restarts_and_catches_up() {
    let mut c = Cluster::start(
        3,
        &[
            ("JUNCTION_CLUSTER_REPLICA_SNAPSHOT_ENTRIES", "20"),
            ("RUST_LOG", "warn,junction=info,junction_cluster=info"),
        ],
    )
    .await;
    let js = jetstream::new(async_nats::connect(c.nats_url(0)).await.unwrap());
    js.create_stream(stream::Config {
        name: STATION.into(),
        subjects: vec![format!("{STATION}.>")],
        num_replicas: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    until("3 current replicas and a leader", || async {
        let (names, leader) = cluster::station_placement(c.nodes[0].http, STATION).await;
        names.len() == 3 && leader.is_some()
    })
    .await;
    cluster::publish_ids(&js, SUBJECT, 0, 60).await;
    let leader = cluster::station_placement(c.nodes[0].http, STATION)
        .await
        .1
        .unwrap();
    let follower = (0..3).find(|i| c.nodes[*i].name != leader).unwrap();
    until("the follower has its first snapshots", || async {
        let dir = snapshot_dir(&c.dir.path().join(&c.nodes[follower].name));
        std::fs::read_dir(dir).unwrap().count() > 0
    })
    .await;

    // The follower's snapshots can no longer be written: its group stops.
    let dir = snapshot_dir(&c.dir.path().join(&c.nodes[follower].name));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    // Entries keep coming until its next snapshot is due and fails.
    let mut stopped_at: usize = 60;
    while !log_has(&c, follower, "replica of a station group stopped") {
        assert!(stopped_at < 2000, "the follower's group never stopped");
        cluster::publish_ids(&js, SUBJECT, stopped_at, stopped_at + 20).await;
        stopped_at += 20;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Published while that copy is down.
    cluster::publish_ids(&js, SUBJECT, stopped_at, stopped_at + 100).await;
    let total = stopped_at + 100;

    // The cause goes away: the group comes back by itself and catches up.
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    until("the follower's group restarts", || async {
        log_has(&c, follower, "replica of a station group restarted")
    })
    .await;
    let want: Vec<String> = (0..total).map(|n| format!("m{n}")).collect();
    until("the follower's copy holds every message", || async {
        copy_ids(&c, follower).await.len() >= total
    })
    .await;
    assert_eq!(copy_ids(&c, follower).await, want, "the follower's copy");
    // And it keeps up with what comes next.
    cluster::publish_ids(&js, SUBJECT, total, total + 50).await;
    until("the follower's copy keeps up", || async {
        copy_ids(&c, follower).await.len() == total + 50
    })
    .await;
    c.kill(0).await;
}
