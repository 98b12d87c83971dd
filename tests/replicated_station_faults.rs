//! Jepsen-style fault scenarios for replicated stations (R3): three real
//! `junction` processes (a fourth joins in scenario 8), writers publishing through real JetStream clients
//! (async-nats, `Nats-Msg-Id: <writer>-<n>`, each client knowing every node)
//! while faults go on, then the checker of `support/jepsen.rs` on the history
//! and on every node's own copy (`GET /v1/stations/{name}/replica`):
//! 1. `kill -9` of the station's leader every 10 s, restarted 5 s later;
//! 2. `SIGSTOP` of the leader for 5 s, then `SIGCONT`, every 10 s: an old
//!    leader that wakes up acknowledges nothing it should not;
//! 3. the leader cut off from its peers (network namespaces, nftables) for 5 to
//!    8 s while clients still reach it, then healed, again and again: nothing
//!    is acknowledged from the minority side;
//! 4. every node `kill -9`ed at once while publishing, then restarted, 5 times;
//! 5. linearizable sequences under concurrent writers, and at most one winner
//!    per `Nats-Expected-Last-Sequence` among concurrent conditional writers,
//!    with the leader handing over every 10 s;
//! 6. one-way partitions: every 10 s or so the leader's traffic with its peers
//!    is dropped in one direction only for 5 to 8 s, then healed; one round it
//!    hears nothing from them but still sends, the next it sends nothing but
//!    still hears (TCP needs both ways, so each connection breaks
//!    asymmetrically), while clients reach it both ways;
//! 7. every 5 s a random node (the leader or a follower) is split from the
//!    other two, both ways, the previous split healed first; one round in four
//!    (at random) everything stays healed. The choices come from a seed printed
//!    as `seed N`; `JEPSEN_SEED=N` makes the same choices again;
//! 8. membership changes while publishing: after 5 s a 4th node is started
//!    with `--join` to the others; once it is an online voter in `GET
//!    /v1/cluster`, a follower's replica is moved to it (`POST
//!    /v1/stations/{name}/peer-remove`), then the leader's replica to the only
//!    spare left (the node moved off; a refusal is printed and the move
//!    skipped), each move awaited until the leader shows the new replicas all
//!    online and current; then the node left without a replica is removed from
//!    the cluster (`DELETE /v1/cluster/nodes/{name}`), stopped with SIGTERM,
//!    and awaited until it is gone from `/v1/cluster` on the others. The
//!    checker reads and compares only the copies of the nodes holding a replica
//!    at the end.
//!
//! Each scenario heals every fault, checks that every node takes a publish
//! again, waits until the replicas report the same last sequence (60 s at most)
//! and prints `checker: acked=… indeterminate=… lost=… duplicated=… stored=…
//! replicas_identical=… max_failover_gap=…s`. It fails on any lost or duplicated
//! message, gap, difference between replicas, refused-but-stored message or
//! linearizability violation; an error or a timeout on a publish is
//! indeterminate, never a failure. Nothing about timing is asserted.
//!
//! Run one scenario: `cargo nextest run --test behaviour
//! replicated_station_faults::kill9` (or `cargo test --test behaviour --
//! --nocapture replicated_station_faults::kill9`). The scenarios take a lock file so that only one runs at a time on a
//! machine, even under nextest.
//!
//! Soak mode, through the environment:
//! - `JEPSEN_SECS` (40): how long faults go on in every scenario but 4 (in 8,
//!   at least until 5 s after the node is removed), e.g.
//!   `JEPSEN_SECS=1800` for half an hour;
//! - `JEPSEN_ROUNDS` (5): how many times scenario 4 kills every node;
//! - `JEPSEN_RATE` (1500): publishes a second offered across the writers;
//! - `JEPSEN_SEED`: the seed of scenario 7's choices (from the clock otherwise);
//! - `JEPSEN_CONVERGE_SECS` (60): how long replicas may take to converge;
//! - `JEPSEN_NODE_LOG` (`warn`): the nodes' `RUST_LOG`;
//! - `JEPSEN_KEEP=1` (namespaces) or `CLUSTER_TEST_KEEP=1` (127.0.0.1): keep
//!   the nodes' logs even when the scenario passes; they are kept, and their
//!   errors and last lines printed, whenever it fails, next to the history
//!   and every node's copy as tab-separated files (`jepsen-<station>-*.tsv`).
//!
//! e.g. `JEPSEN_SECS=600 JEPSEN_ROUNDS=30 cargo nextest run --test behaviour
//! replicated_station_faults:: --no-capture`.
//!
//! Scenarios 3, 6 and 7 need root, `ip` (iproute2) and `nft` (nftables) or
//! `iptables`; without them each prints `skipped: …` and passes, except under
//! `CI=true` as root, as `cluster_partition_minority_side.rs` does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::netns;

use crate::support::jepsen;

use jepsen::{Load, Nodes, event, fault_time};
use std::time::{Duration, Instant};

/// Stops the writers, checks that every node takes a publish again, and runs
/// the checker on `station`.
async fn finish(
    scenario: &str,
    nodes: &mut Nodes,
    station: &str,
    writers: jepsen::Writers,
    epoch: Instant,
) {
    nodes.recover_all().await;
    event(epoch, "faults over: every node up, healed");
    let mut history = writers.stop().await;
    event(
        epoch,
        &format!("writers stopped after {} tries", history.len()),
    );
    history.extend(jepsen::probe_every_node(nodes, station, epoch).await);
    let report = nodes.check_station(station, &history).await;
    report.assert_ok(scenario);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill9_of_the_leader_every_10s_loses_no_acknowledged_message() {
    let _one = jepsen::exclusive();
    let mut nodes = Nodes::local().await;
    let station = "kills";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let l = nodes.until_leader(station).await;
        event(epoch, &format!("kill -9 {} (leader)", nodes.names[l]));
        nodes.kill(l).await;
        nodes
            .watch_failover(station, l, Duration::from_secs(5), epoch)
            .await;
        event(epoch, &format!("restart {}", nodes.names[l]));
        nodes.restart(l).await;
    }
    finish("kill9", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_of_the_leader_acknowledges_nothing_wrongly() {
    let _one = jepsen::exclusive();
    let mut nodes = Nodes::local().await;
    let station = "pauses";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let l = nodes.until_leader(station).await;
        event(epoch, &format!("SIGSTOP {} (leader)", nodes.names[l]));
        nodes.stop(l);
        nodes
            .watch_failover(station, l, Duration::from_secs(5), epoch)
            .await;
        event(epoch, &format!("SIGCONT {}", nodes.names[l]));
        nodes.cont(l);
    }
    finish("sigstop", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leader_acknowledges_nothing_from_the_minority_side() {
    let _one = jepsen::exclusive();
    let mut nodes = match Nodes::in_namespaces().await {
        Ok(nodes) => nodes,
        Err(why) => {
            netns::skip(&why);
            return;
        }
    };
    let station = "cuts";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    let mut round = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let l = nodes.until_leader(station).await;
        let cut_for = Duration::from_secs(5 + round % 4);
        event(
            epoch,
            &format!("cut {} (leader) off for {cut_for:?}", nodes.names[l]),
        );
        nodes.isolate(l);
        nodes.watch_failover(station, l, cut_for, epoch).await;
        event(epoch, &format!("heal {}", nodes.names[l]));
        nodes.heal(l);
        round += 1;
    }
    finish("partition", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_every_node_at_once_loses_no_acknowledged_message() {
    let _one = jepsen::exclusive();
    let mut nodes = Nodes::local().await;
    let station = "crashes";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    for round in 1..=jepsen::env_or("JEPSEN_ROUNDS", 5u32) {
        tokio::time::sleep(Duration::from_secs(5)).await;
        event(epoch, &format!("round {round}: kill -9 every node"));
        nodes.kill_all().await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 0..3 {
            nodes.restart(i).await;
        }
        let l = nodes.until_leader(station).await;
        event(epoch, &format!("restarted; {} leads", nodes.names[l]));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    finish("kill-all", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequences_are_linearizable_and_expected_last_sequence_has_one_winner() {
    let _one = jepsen::exclusive();
    let mut nodes = Nodes::local().await;
    let (plain, cas) = ("lin", "cas");
    nodes.create_station(plain).await;
    nodes.create_station(cas).await;
    let epoch = Instant::now();
    let load = Load {
        writers: 6,
        ..Load::default()
    };
    let writers = jepsen::start_writers(&nodes, plain, &load, epoch);
    let cas_writers = jepsen::start_cas_writers(&nodes, cas, 3, epoch);
    let end = epoch + fault_time();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for station in [plain, cas] {
            let asked = nodes.step_down(station).await;
            event(
                epoch,
                &format!("{station}: leader asked to step down ({asked})"),
            );
        }
    }
    let cas_history = cas_writers.stop().await;
    let wins = cas_history
        .iter()
        .filter(|a| matches!(a.outcome, jepsen::Outcome::Acked { .. }))
        .count();
    let refusals = cas_history
        .iter()
        .filter(|a| matches!(a.outcome, jepsen::Outcome::Rejected(_)))
        .count();
    println!(
        "expected-last-sequence writers: {} tries, {wins} won, {refusals} refused",
        cas_history.len()
    );
    finish("linearizable", &mut nodes, plain, writers, epoch).await;
    let report = nodes.check_station(cas, &cas_history).await;
    report.assert_ok("expected-last-sequence");
    assert!(
        refusals > 0,
        "concurrent conditional writers never collided"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_one_way_acknowledges_nothing_wrongly() {
    let _one = jepsen::exclusive();
    let mut nodes = match Nodes::in_namespaces().await {
        Ok(nodes) => nodes,
        Err(why) => {
            netns::skip(&why);
            return;
        }
    };
    let station = "oneway";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    let mut round = 0u64;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let l = nodes.until_leader(station).await;
        let cut_for = Duration::from_secs(5 + round / 2 % 4);
        let name = &nodes.names[l];
        if round.is_multiple_of(2) {
            event(
                epoch,
                &format!(
                    "{name} (leader) hears nothing from its peers for {cut_for:?}, still sends"
                ),
            );
            nodes.cut_inbound(l);
        } else {
            event(
                epoch,
                &format!("{name} (leader) sends nothing to its peers for {cut_for:?}, still hears"),
            );
            nodes.cut_outbound(l);
        }
        nodes.watch_failover(station, l, cut_for, epoch).await;
        event(epoch, &format!("heal {}", nodes.names[l]));
        nodes.heal(l);
        round += 1;
    }
    finish("one-way", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_random_node_split_from_the_other_two_every_5s_loses_nothing() {
    let _one = jepsen::exclusive();
    let mut nodes = match Nodes::in_namespaces().await {
        Ok(nodes) => nodes,
        Err(why) => {
            netns::skip(&why);
            return;
        }
    };
    let station = "splits";
    nodes.create_station(station).await;
    let seed = jepsen::seed();
    let mut choices = jepsen::Choices::new(seed);
    let epoch = Instant::now();
    event(
        epoch,
        &format!("seed {seed} (JEPSEN_SEED={seed} replays these choices)"),
    );
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    // The node split off, and whether it led when it was split.
    let mut split: Option<(usize, bool)> = None;
    let mut round = 0u32;
    loop {
        match split {
            Some((i, true)) => {
                nodes
                    .watch_failover(station, i, Duration::from_secs(5), epoch)
                    .await
            }
            _ => tokio::time::sleep(Duration::from_secs(5)).await,
        }
        // Asked before healing: the majority side names the leader.
        let leader = nodes.until_leader(station).await;
        if let Some((i, _)) = split.take() {
            event(epoch, &format!("heal {}", nodes.names[i]));
            nodes.heal(i);
        }
        if Instant::now() >= end {
            break;
        }
        round += 1;
        if choices.below(4) == 0 {
            event(epoch, &format!("round {round}: no split, healed for 5s"));
            continue;
        }
        let i = choices.below(3) as usize;
        let role = if i == leader { "leader" } else { "follower" };
        let rest: Vec<&str> = (0..3)
            .filter(|j| *j != i)
            .map(|j| nodes.names[j].as_str())
            .collect();
        event(
            epoch,
            &format!(
                "round {round}: split {} ({role}) | {}",
                nodes.names[i],
                rest.join(" ")
            ),
        );
        nodes.isolate(i);
        split = Some((i, i == leader));
    }
    finish("random-split", &mut nodes, station, writers, epoch).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_added_replicas_moved_and_a_node_removed_while_publishing_lose_nothing() {
    let _one = jepsen::exclusive();
    let mut nodes = Nodes::local().await;
    let station = "moves";
    nodes.create_station(station).await;
    let epoch = Instant::now();
    let writers = jepsen::start_writers(&nodes, station, &Load::default(), epoch);
    let end = epoch + fault_time();
    let names = |nodes: &Nodes, of: &[usize]| -> String {
        let v: Vec<&str> = of.iter().map(|i| nodes.names[*i].as_str()).collect();
        v.join(" ")
    };

    // A fourth node joins the running cluster.
    tokio::time::sleep(Duration::from_secs(5)).await;
    event(epoch, "start a 4th node, --join n1 n2 n3");
    let added = nodes.add_node().await;
    nodes.until_voter(added).await;
    event(
        epoch,
        &format!("{} is an online voter on every node", nodes.names[added]),
    );

    // A follower's replica moves to it.
    let mut holders = nodes.replicas_of(station);
    let leader = nodes.until_leader(station).await;
    let follower = *holders.iter().find(|i| **i != leader).unwrap();
    event(
        epoch,
        &format!(
            "move {}'s replica (a follower; {} leads)",
            nodes.names[follower], nodes.names[leader]
        ),
    );
    if let Err(e) = nodes.move_replica(station, follower, leader).await {
        panic!(
            "moving {}'s replica to {} was refused: {e}",
            nodes.names[follower], nodes.names[added]
        );
    }
    holders.retain(|i| *i != follower);
    holders.push(added);
    nodes.until_replicas(station, &holders).await;
    nodes.set_replicas(station, holders.clone());
    let leader = nodes.until_leader(station).await;
    event(
        epoch,
        &format!(
            "replicas on {}, all online and current; {} leads",
            names(&nodes, &holders),
            nodes.names[leader]
        ),
    );

    // The leader's replica moves too, to the only spare left: the node the
    // follower's replica moved off.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leader = nodes.until_leader(station).await;
    let via = *holders.iter().find(|i| **i != leader).unwrap();
    event(
        epoch,
        &format!(
            "move {}'s replica (the leader), asked of {}",
            nodes.names[leader], nodes.names[via]
        ),
    );
    match nodes.move_replica(station, leader, via).await {
        Ok(()) => {
            holders.retain(|i| *i != leader);
            holders.push(follower);
            nodes.until_replicas(station, &holders).await;
            nodes.set_replicas(station, holders.clone());
            let now = nodes.until_leader(station).await;
            event(
                epoch,
                &format!(
                    "replicas on {}, all online and current; {} leads",
                    names(&nodes, &holders),
                    nodes.names[now]
                ),
            );
        }
        Err(e) => event(
            epoch,
            &format!(
                "moving the leader's replica ({}) was refused, skipped: {e}",
                nodes.names[leader]
            ),
        ),
    }

    // The node left without a replica leaves the cluster for good.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let spare = nodes
        .members()
        .into_iter()
        .find(|i| !holders.contains(i))
        .unwrap();
    let via = holders[0];
    event(
        epoch,
        &format!(
            "remove {name} from the cluster: DELETE /v1/cluster/nodes/{name} on {}",
            nodes.names[via],
            name = nodes.names[spare]
        ),
    );
    if let Err(e) = nodes.remove_node(spare, via).await {
        panic!("removing {} was refused: {e}", nodes.names[spare]);
    }
    let status = nodes.terminate(spare).await;
    event(
        epoch,
        &format!("{} stopped with SIGTERM: {status}", nodes.names[spare]),
    );
    nodes.until_gone(spare).await;
    event(
        epoch,
        &format!(
            "{} gone from /v1/cluster on {}",
            nodes.names[spare],
            names(&nodes, &nodes.members())
        ),
    );

    tokio::time::sleep_until((end.max(Instant::now() + Duration::from_secs(5))).into()).await;
    finish("membership", &mut nodes, station, writers, epoch).await;
}

// ---------------------------------------------------------------------------
// The checker itself, on synthetic histories
// ---------------------------------------------------------------------------

mod checker {
    use super::jepsen::checker::{
        Attempt, LinOp, Outcome, ReplicaCopy, Stored, base64, check, linearizability_violations,
    };
    use super::jepsen::writers::last_seq_in_error;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn acked(id: &str, start: u64, end: u64, seq: u64) -> Attempt {
        Attempt {
            msg_id: id.into(),
            subject: "s.w0".into(),
            expected_last_seq: None,
            start: ms(start),
            end: ms(end),
            outcome: Outcome::Acked {
                seq,
                duplicate: false,
            },
        }
    }

    fn unknown(id: &str, start: u64, end: u64) -> Attempt {
        Attempt {
            outcome: Outcome::Indeterminate("timed out".into()),
            ..acked(id, start, end, 0)
        }
    }

    fn copy_at(node: &str, stored: &[(u64, &str)]) -> ReplicaCopy {
        let mut c = ReplicaCopy {
            node: node.into(),
            role: "follower".into(),
            first_seq: 1,
            last_seq: stored.iter().map(|(s, _)| *s).max().unwrap_or(0),
            ..Default::default()
        };
        for (seq, id) in stored {
            c.messages.insert(
                *seq,
                Stored {
                    subject: "s.w0".into(),
                    msg_id: Some(id.to_string()),
                    headers: serde_json::json!({"Nats-Msg-Id": id}),
                    payload_base64: base64(id.as_bytes()),
                    time_ns: *seq,
                },
            );
        }
        c
    }

    fn copy(node: &str, ids: &[&str]) -> ReplicaCopy {
        let stored: Vec<(u64, &str)> = (1..).zip(ids.iter().copied()).collect();
        copy_at(node, &stored)
    }

    fn three(ids: &[&str]) -> Vec<ReplicaCopy> {
        ["n1", "n2", "n3"].iter().map(|n| copy(n, ids)).collect()
    }

    #[test]
    fn base64_matches_the_standard_alphabet_with_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"w1-10"), "dzEtMTA=");
    }

    #[test]
    fn a_clean_history_passes_with_indeterminate_publishes_either_way() {
        let history = vec![
            acked("a", 0, 10, 1),
            unknown("b", 5, 5000),
            acked("b", 5200, 5210, 2),
            unknown("c", 20, 5020), // stored, never acknowledged
            unknown("d", 30, 5030), // never stored
            acked("e", 6000, 6010, 4),
        ];
        let r = check(&history, &three(&["a", "b", "c", "e"]), 0);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(
            (r.acked, r.indeterminate, r.indeterminate_stored),
            (3, 2, 1)
        );
        assert_eq!(r.stored, 4);
        assert_eq!(r.max_failover_gap, ms(5200));
        assert!(
            r.summary()
                .contains("acked=3 indeterminate=2 lost=0 duplicated=0")
        );
        assert!(
            r.summary()
                .contains("replicas_identical=true max_failover_gap=5.2s")
        );
    }

    #[test]
    fn a_lost_acknowledgement_a_duplicate_and_a_gap_are_found() {
        let history = vec![
            acked("a", 0, 10, 1),
            acked("b", 20, 30, 2),
            acked("c", 40, 50, 3),
        ];
        // b and c lost (c and a at their places), a stored twice, 4 missing.
        let c = copy_at("n1", &[(1, "a"), (2, "c"), (3, "a"), (5, "b")]);
        let copies = vec![c.clone(), c.clone(), c];
        let r = check(&history, &copies, 0);
        assert_eq!(r.lost.len(), 2, "{:?}", r.lost); // b at 2, c at 3
        assert_eq!(r.duplicated.len(), 1, "{:?}", r.duplicated);
        assert_eq!(r.gaps.len(), 1, "{:?}", r.gaps);
        assert!(r.gaps[0].contains("[4]"), "{:?}", r.gaps);
        assert!(r.summary().contains("lost=2 duplicated=1"));
    }

    #[test]
    fn replicas_that_differ_and_phantoms_are_found() {
        let history = vec![acked("a", 0, 10, 1), acked("b", 20, 30, 2)];
        let mut copies = three(&["a", "b"]);
        copies[2] = copy("n3", &["a", "z"]);
        copies[1]
            .messages
            .get_mut(&1)
            .unwrap()
            .payload_base64
            .push('A');
        let r = check(&history, &copies, 0);
        // n2: one seq differs; n3: one seq differs, and holds z, not b.
        let diffs = r.replica_diffs.join("\n");
        assert_eq!(r.replica_diffs.len(), 4, "{diffs}");
        assert!(
            diffs.contains("1 seqs differ between n1 and n2, from seq 1"),
            "{diffs}"
        );
        assert!(
            diffs.contains(r#"only n1 holds 1 ids ["b@2"]; only n3 holds 1 ids ["z@2"]"#),
            "{diffs}"
        );
        assert!(r.summary().contains("replicas_identical=false"));
        // Checked against n3's copy: b is lost and z was never sent.
        let r = check(&history, &copies, 2);
        assert_eq!(r.lost.len(), 1);
        assert_eq!(r.phantoms.len(), 1, "{:?}", r.phantoms);
    }

    #[test]
    fn linearizability_catches_an_ack_that_goes_back_in_time() {
        let op = |id: &str, start, end: Option<u64>, seq| LinOp {
            id: id.into(),
            start: ms(start),
            end: end.map(ms),
            seq,
        };
        // Overlapping publishes may take either order.
        let fine = [
            op("a", 0, Some(100), 2),
            op("b", 50, Some(80), 1),
            op("c", 101, Some(120), 3),
            op("d", 110, None, 4),
        ];
        assert!(linearizability_violations(&fine).is_empty());
        // c began after a was acknowledged with 2, yet got 1; d too (stored only).
        let bad = [
            op("a", 0, Some(100), 2),
            op("c", 101, Some(120), 1),
            op("d", 130, None, 2),
        ];
        let v = linearizability_violations(&bad);
        assert_eq!(v.len(), 2, "{v:?}");
        // Through `check`: an id retried keeps its first start.
        let history = vec![
            acked("a", 0, 100, 2),
            unknown("b", 50, 60),
            acked("b", 150, 160, 1),
        ];
        let r = check(&history, &three(&["b", "a"]), 0);
        assert!(r.linearizability.is_empty(), "{:?}", r.linearizability);
        let history = vec![acked("a", 0, 100, 2), acked("b", 150, 160, 1)];
        let r = check(&history, &three(&["b", "a"]), 0);
        assert_eq!(r.linearizability.len(), 1, "{:?}", r.linearizability);
    }

    #[test]
    fn expected_last_sequence_allows_one_winner_and_no_stored_refusal() {
        let cas = |id: &str, expected, outcome| Attempt {
            expected_last_seq: Some(expected),
            outcome,
            ..acked(id, 0, 1, 0)
        };
        let won = |seq| Outcome::Acked {
            seq,
            duplicate: false,
        };
        let refused = || Outcome::Rejected("wrong last sequence: 1".into());
        let good = vec![
            cas("x", 0, won(1)),
            cas("y", 0, refused()),
            cas("z", 1, won(2)),
        ];
        let r = check(&good, &three(&["x", "z"]), 0);
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(r.rejected, 1);
        let bad = vec![
            cas("x", 0, won(1)),
            cas("y", 0, won(2)),
            cas("z", 1, refused()),
        ];
        let r = check(&bad, &three(&["x", "y", "z"]), 0);
        // y won 0 as well and sits at 2; z was refused, yet stored at 3.
        assert_eq!(r.expected_seq.len(), 3, "{:?}", r.expected_seq);
        assert_eq!(r.rejected_but_stored.len(), 1);
        assert_eq!(last_seq_in_error("wrong last sequence: 17"), Some(17));
        assert_eq!(
            last_seq_in_error("publish failed: wrong last sequence: 5 (10071)"),
            Some(5)
        );
        assert_eq!(last_seq_in_error("timed out"), None);
    }
}
