//! A Jepsen-style fault harness for replicated stations: three real `junction`
//! processes, writers that publish through real JetStream clients (async-nats)
//! while faults are injected, a history of every publish, and a checker that
//! reads every node's own copy back and judges the history against it
//! (`tests/replicated_station_faults.rs`).
//!
//! What it owns:
//! - [`Nodes`]: the cluster, on 127.0.0.1 ports ([`cluster::Cluster`]) or in
//!   network namespaces ([`netns::Net`]), with the faults: `kill -9`, restart,
//!   `SIGSTOP`/`SIGCONT`, cutting a node off from its peers, leader step-down;
//! - writers: paced publishes with `Nats-Msg-Id: <writer>-<n>` (payload: the
//!   id), each writer a client of its own that knows every node, each publish
//!   retried with the same id when its outcome is unknown; every try is an
//!   [`Attempt`] with its start and end instants and its outcome (acknowledged
//!   with a sequence, definitely refused, or indeterminate);
//! - the checker ([`check`]): pure functions over a history and the replicas'
//!   copies, so that it can be tested on synthetic histories.
//!
//! What the checker asserts (counts only, never timing):
//! - every acknowledged id is stored at the sequence it was acknowledged with;
//! - no id is stored twice, and nothing is stored that no writer sent;
//! - sequences run without a gap from the first to the last;
//! - every replica holds the same messages (subject, headers, payload);
//! - a publish refused with "wrong last sequence" is not stored, and at most
//!   one publish wins each `Nats-Expected-Last-Sequence`, at that sequence + 1;
//! - sequences are linearizable: when publish A was acknowledged before publish
//!   B began, seq(A) < seq(B).
#![allow(dead_code)] // each test binary uses part of it

use super::{cluster, netns, process};
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------
// Knobs
// ---------------------------------------------------------------------------

/// A number from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// How long faults go on (`JEPSEN_SECS`, 40 s by default).
pub fn fault_time() -> Duration {
    Duration::from_secs(env_or("JEPSEN_SECS", 40))
}

/// The nodes' `RUST_LOG` (`JEPSEN_NODE_LOG`, `warn` by default).
pub fn node_log_level() -> String {
    std::env::var("JEPSEN_NODE_LOG").unwrap_or_else(|_| "warn".into())
}

/// One scenario at a time on this machine, across test processes (nextest runs
/// each test in a process of its own): three brokers under load each, plus
/// faults, would otherwise starve one another. Held until dropped.
pub fn exclusive() -> std::fs::File {
    let path = std::env::temp_dir().join("junction-jepsen.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .expect("jepsen lock file");
    file.lock().expect("jepsen lock");
    file
}

/// Prints `what` with the time since `epoch`, to line faults up with the logs.
pub fn event(epoch: Instant, what: &str) {
    println!("[{:>7.2}s] {what}", epoch.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

/// What one publish try came to.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A PubAck: the station's sequence and whether it was a duplicate.
    Acked { seq: u64, duplicate: bool },
    /// Definitely not stored ("wrong last sequence").
    Rejected(String),
    /// An error or a timeout: it may or may not be stored.
    Indeterminate(String),
}

/// One publish try; instants are offsets from the run's epoch.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub msg_id: String,
    pub subject: String,
    /// `Nats-Expected-Last-Sequence`, when sent.
    pub expected_last_seq: Option<u64>,
    pub start: Duration,
    pub end: Duration,
    pub outcome: Outcome,
}

/// One stored message, as a node's replica endpoint returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub subject: String,
    pub msg_id: Option<String>,
    pub headers: Value,
    pub payload_base64: String,
    pub time_ns: u64,
}

/// A node's own copy of a station.
#[derive(Clone, Debug, Default)]
pub struct ReplicaCopy {
    pub node: String,
    pub role: String,
    pub applied: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub messages: BTreeMap<u64, Stored>,
}

/// A publish as the linearizability check sees it: from its first try's start
/// to its acknowledgement (`None`: never acknowledged, but stored at `seq`).
#[derive(Clone, Debug)]
pub struct LinOp {
    pub id: String,
    pub start: Duration,
    pub end: Option<Duration>,
    pub seq: u64,
}

// ---------------------------------------------------------------------------
// Checker (pure)
// ---------------------------------------------------------------------------

/// What the checker found; [`Report::problems`] is empty when all holds.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Ids acknowledged at least once.
    pub acked: usize,
    /// Ids never acknowledged nor refused.
    pub indeterminate: usize,
    /// Of those, how many are stored.
    pub indeterminate_stored: usize,
    /// Ids definitely refused.
    pub rejected: usize,
    /// Messages in the reference copy.
    pub stored: usize,
    pub lost: Vec<String>,
    pub duplicated: Vec<String>,
    pub gaps: Vec<String>,
    /// Stored messages that no writer sent, or whose payload is not their id.
    pub phantoms: Vec<String>,
    pub rejected_but_stored: Vec<String>,
    pub replica_diffs: Vec<String>,
    /// Only reported: the store time is the leader's clock, carried in the log.
    pub time_diffs: Vec<String>,
    pub linearizability: Vec<String>,
    pub expected_seq: Vec<String>,
    /// Longest time between two consecutive acknowledgements.
    pub max_failover_gap: Duration,
}

impl Report {
    /// The summary line every scenario prints.
    pub fn summary(&self) -> String {
        format!(
            "checker: acked={} indeterminate={} lost={} duplicated={} stored={} \
             replicas_identical={} max_failover_gap={:.1}s",
            self.acked,
            self.indeterminate,
            self.lost.len(),
            self.duplicated.len(),
            self.stored,
            self.replica_diffs.is_empty(),
            self.max_failover_gap.as_secs_f64(),
        )
    }

    /// The other counts, on a second line.
    pub fn details(&self) -> String {
        format!(
            "checker: rejected={} indeterminate_stored={} gaps={} phantoms={} \
             rejected_but_stored={} linearizability_violations={} \
             expected_seq_violations={} time_diffs={}",
            self.rejected,
            self.indeterminate_stored,
            self.gaps.len(),
            self.phantoms.len(),
            self.rejected_but_stored.len(),
            self.linearizability.len(),
            self.expected_seq.len(),
            self.time_diffs.len(),
        )
    }

    /// Every violation, by kind (at most 10 examples of each).
    pub fn problems(&self) -> Vec<String> {
        let kinds: [(&str, &Vec<String>); 8] = [
            ("lost", &self.lost),
            ("duplicated", &self.duplicated),
            ("gap", &self.gaps),
            ("phantom", &self.phantoms),
            ("rejected but stored", &self.rejected_but_stored),
            ("replicas differ", &self.replica_diffs),
            ("not linearizable", &self.linearizability),
            ("expected last sequence", &self.expected_seq),
        ];
        let mut out = Vec::new();
        for (kind, list) in kinds {
            for p in list.iter().take(10) {
                out.push(format!("{kind}: {p}"));
            }
            if list.len() > 10 {
                out.push(format!("{kind}: … and {} more", list.len() - 10));
            }
        }
        out
    }

    /// Prints the summary and fails with every violation.
    pub fn assert_ok(&self, scenario: &str) {
        println!("{scenario}: {}", self.summary());
        println!("{scenario}: {}", self.details());
        for d in self.time_diffs.iter().take(5) {
            println!("{scenario}: note: store times differ: {d}");
        }
        let problems = self.problems();
        assert!(
            problems.is_empty(),
            "{scenario}: {}\n{}",
            self.summary(),
            problems.join("\n")
        );
        assert!(self.acked > 0, "{scenario}: nothing was acknowledged");
    }
}

/// Standard base64 with padding (the replica endpoint's payload encoding).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Pairs that break linearizability: A was acknowledged before B began, yet
/// seq(A) >= seq(B). Sorts by start and keeps the highest sequence of the
/// acknowledgements completed before each start: O(n log n).
pub fn linearizability_violations(ops: &[LinOp]) -> Vec<String> {
    let mut done: Vec<&LinOp> = ops.iter().filter(|o| o.end.is_some()).collect();
    done.sort_by_key(|o| o.end);
    let mut by_start: Vec<&LinOp> = ops.iter().collect();
    by_start.sort_by_key(|o| o.start);
    let mut out = Vec::new();
    let mut j = 0;
    let mut highest: Option<&LinOp> = None;
    for b in by_start {
        while j < done.len() && done[j].end.is_some_and(|end| end < b.start) {
            if highest.is_none_or(|h| done[j].seq > h.seq) {
                highest = Some(done[j]);
            }
            j += 1;
        }
        if let Some(a) = highest
            && a.seq >= b.seq
            && a.id != b.id
        {
            out.push(format!(
                "{} (seq {}, acknowledged at {:?}) before {} began (at {:?}), which got seq {}",
                a.id,
                a.seq,
                a.end.unwrap_or_default(),
                b.id,
                b.start,
                b.seq
            ));
        }
    }
    out
}

/// Judges `history` against the replicas' `copies`; `reference` is the copy
/// that acknowledged messages are looked up in (the leader's).
pub fn check(history: &[Attempt], copies: &[ReplicaCopy], reference: usize) -> Report {
    let mut r = Report::default();
    let Some(refc) = copies.get(reference) else {
        r.replica_diffs.push("no copy to check against".into());
        return r;
    };
    r.stored = refc.messages.len();

    // Where each id is stored (in the reference copy).
    let mut stored_at: HashMap<&str, Vec<u64>> = HashMap::new();
    for (seq, m) in &refc.messages {
        match &m.msg_id {
            Some(id) => stored_at.entry(id.as_str()).or_default().push(*seq),
            None => r.phantoms.push(format!("seq {seq} has no Nats-Msg-Id")),
        }
    }

    // Each id's tries, in order.
    let mut tries: BTreeMap<&str, Vec<&Attempt>> = BTreeMap::new();
    for a in history {
        tries.entry(a.msg_id.as_str()).or_default().push(a);
    }
    let mut lin = Vec::new();
    for (id, attempts) in &tries {
        let first_start = attempts.iter().map(|a| a.start).min().unwrap_or_default();
        let acks: Vec<(u64, Duration)> = attempts
            .iter()
            .filter_map(|a| match a.outcome {
                Outcome::Acked { seq, .. } => Some((seq, a.end)),
                _ => None,
            })
            .collect();
        let rejected = attempts
            .iter()
            .any(|a| matches!(a.outcome, Outcome::Rejected(_)));
        let at = stored_at.get(id).cloned().unwrap_or_default();
        if let Some(&(seq, end)) = acks.iter().min_by_key(|(_, end)| *end) {
            r.acked += 1;
            if acks.iter().any(|(s, _)| *s != seq) {
                let seqs: Vec<u64> = acks.iter().map(|(s, _)| *s).collect();
                r.duplicated.push(format!(
                    "{id} acknowledged with different sequences {seqs:?}"
                ));
            }
            for (s, _) in &acks {
                let there = refc.messages.get(s).and_then(|m| m.msg_id.as_deref());
                if there != Some(id) {
                    r.lost.push(format!(
                        "{id} acknowledged at seq {s}, which holds {there:?} (id stored at {at:?})"
                    ));
                }
            }
            lin.push(LinOp {
                id: id.to_string(),
                start: first_start,
                end: Some(end),
                seq,
            });
        } else if rejected {
            r.rejected += 1;
            if !at.is_empty() {
                r.rejected_but_stored
                    .push(format!("{id} was refused, yet is stored at {at:?}"));
            }
        } else {
            r.indeterminate += 1;
            if let Some(&seq) = at.first() {
                r.indeterminate_stored += 1;
                lin.push(LinOp {
                    id: id.to_string(),
                    start: first_start,
                    end: None,
                    seq,
                });
            }
        }
        if at.len() > 1 {
            r.duplicated.push(format!("{id} stored at {at:?}"));
        }
        // At most one winner per expected sequence, and it lands right after.
        for a in attempts {
            if let Some(e) = a.expected_last_seq {
                for s in &at {
                    if *s != e + 1 {
                        r.expected_seq.push(format!(
                            "{id} expected last sequence {e}, yet is stored at {s}"
                        ));
                    }
                }
            }
        }
    }
    let mut winners: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for a in history {
        if let (Some(e), Outcome::Acked { .. }) = (a.expected_last_seq, &a.outcome)
            && !winners
                .get(&e)
                .is_some_and(|w| w.contains(&a.msg_id.as_str()))
        {
            winners.entry(e).or_default().push(a.msg_id.as_str());
        }
    }
    for (e, ids) in winners {
        if ids.len() > 1 {
            r.expected_seq.push(format!(
                "{} publishes expecting last sequence {e} all acknowledged: {ids:?}",
                ids.len()
            ));
        }
    }

    // Stored messages: sent by a writer, payload intact, no gaps.
    for (seq, m) in &refc.messages {
        if let Some(id) = &m.msg_id {
            if !tries.contains_key(id.as_str()) {
                r.phantoms.push(format!("seq {seq}: {id} was never sent"));
            } else if m.payload_base64 != base64(id.as_bytes()) {
                r.phantoms.push(format!(
                    "seq {seq}: {id} has payload {} (base64)",
                    m.payload_base64
                ));
            }
        }
    }
    if refc.last_seq >= refc.first_seq && refc.last_seq > 0 {
        let missing: Vec<u64> = (refc.first_seq.max(1)..=refc.last_seq)
            .filter(|s| !refc.messages.contains_key(s))
            .collect();
        if !missing.is_empty() {
            r.gaps.push(format!(
                "{} sequences missing between {} and {} on {}: {:?}…",
                missing.len(),
                refc.first_seq,
                refc.last_seq,
                refc.node,
                &missing[..missing.len().min(20)]
            ));
        }
    }
    if let Some((&beyond, _)) = refc.messages.range(refc.last_seq + 1..).next() {
        r.gaps.push(format!(
            "{} stores seq {beyond} beyond its last_seq {}",
            refc.node, refc.last_seq
        ));
    }

    // Every replica against the reference.
    for c in copies {
        r.replica_diffs.extend(replica_diffs(refc, c));
        r.time_diffs.extend(time_diffs(refc, c));
    }

    r.linearizability = linearizability_violations(&lin);

    let mut ends: Vec<Duration> = history
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Acked { .. }))
        .map(|a| a.end)
        .collect();
    ends.sort();
    r.max_failover_gap = ends
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    r
}

/// How copy `b` differs from copy `a` (subject, id, headers, payload, range).
pub fn replica_diffs(a: &ReplicaCopy, b: &ReplicaCopy) -> Vec<String> {
    let mut out = Vec::new();
    if (a.first_seq, a.last_seq) != (b.first_seq, b.last_seq) {
        out.push(format!(
            "{} has seqs {}..={}, {} has {}..={}",
            a.node, a.first_seq, a.last_seq, b.node, b.first_seq, b.last_seq
        ));
    }
    let seqs: std::collections::BTreeSet<u64> = a
        .messages
        .keys()
        .chain(b.messages.keys())
        .copied()
        .collect();
    for seq in seqs {
        let same = match (a.messages.get(&seq), b.messages.get(&seq)) {
            (Some(x), Some(y)) => {
                x.subject == y.subject
                    && x.msg_id == y.msg_id
                    && x.headers == y.headers
                    && x.payload_base64 == y.payload_base64
            }
            _ => false,
        };
        if !same {
            let show = |c: &ReplicaCopy| {
                c.messages.get(&seq).map_or("nothing".to_string(), |m| {
                    format!("{} {:?} {}", m.subject, m.msg_id, m.payload_base64)
                })
            };
            out.push(format!(
                "seq {seq}: {} has {}, {} has {}",
                a.node,
                show(a),
                b.node,
                show(b)
            ));
        }
    }
    out
}

fn time_diffs(a: &ReplicaCopy, b: &ReplicaCopy) -> Vec<String> {
    a.messages
        .iter()
        .filter_map(|(seq, x)| {
            let y = b.messages.get(seq)?;
            (x.time_ns != y.time_ns).then(|| {
                format!(
                    "seq {seq}: {} {} ns, {} {} ns",
                    a.node, x.time_ns, b.node, y.time_ns
                )
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The cluster and its faults
// ---------------------------------------------------------------------------

const NAMES: [&str; 3] = ["n1", "n2", "n3"];

/// Nodes in network namespaces, their logs in a directory kept on failure.
struct NetNodes {
    net: netns::Net,
    dir: PathBuf,
    tmp: Option<tempfile::TempDir>,
    pids: Vec<u32>,
}

impl NetNodes {
    fn start(&mut self, i: usize) {
        let ip = self.net.ip_of(i).to_string();
        let join = self
            .net
            .ips()
            .iter()
            .map(|a| format!("{a}:6222"))
            .collect::<Vec<_>>()
            .join(",");
        let (nats, mqtt, http) = (
            format!("{ip}:4222"),
            format!("{ip}:1883"),
            format!("{ip}:8080"),
        );
        let data = self.dir.join(NAMES[i]).display().to_string();
        let cluster = format!("{ip}:6222");
        let args = [
            "serve",
            "-n",
            NAMES[i],
            "--nats-listen",
            &nats,
            "--mqtt-listen",
            &mqtt,
            "--http-listen",
            &http,
            "--data-dir",
            &data,
            "--cluster-listen",
            &cluster,
            "--join",
            &join,
        ];
        let level = node_log_level();
        let log = self.dir.join(format!("{}.log", NAMES[i]));
        let pid = self
            .net
            .spawn(
                i,
                Path::new(process::BIN),
                &args,
                &[("RUST_LOG", &level)],
                &log,
            )
            .expect("junction starts in its namespace");
        if self.pids.len() <= i {
            self.pids.resize(i + 1, 0);
        }
        self.pids[i] = pid;
    }
}

impl Drop for NetNodes {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if !failed && std::env::var_os("JEPSEN_KEEP").is_none() {
            return;
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.keep();
        }
        eprintln!("node logs in {}", self.dir.display());
        if failed {
            print_log_tails(&self.dir);
        }
    }
}

/// The last lines of each node's log, and its errors and panics.
fn print_log_tails(dir: &Path) {
    for name in NAMES {
        let log = dir.join(format!("{name}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let bad: Vec<&&str> = lines
            .iter()
            .filter(|l| l.contains("ERROR") || l.contains("panicked"))
            .collect();
        eprintln!("--- {} errors and panics in {}:", bad.len(), log.display());
        for line in bad.iter().take(20) {
            eprintln!("{line}");
        }
        eprintln!("--- last lines of {}:", log.display());
        for line in &lines[lines.len().saturating_sub(30)..] {
            eprintln!("{line}");
        }
    }
}

enum Backend {
    Local(cluster::Cluster),
    Netns(Box<NetNodes>),
}

/// Three nodes and the faults done to them; tracks which are down, stopped or
/// cut off, so that questions go only to nodes that can answer.
pub struct Nodes {
    backend: Backend,
    pub names: Vec<String>,
    down: Vec<bool>,
    stopped: Vec<bool>,
    cut: Vec<bool>,
    quick: reqwest::Client,
    slow: reqwest::Client,
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("http client")
}

/// Sends `signal` (`-STOP`, `-CONT`, `-KILL`) to `pids` with `kill(1)`.
fn signal(signal: &str, pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let status = std::process::Command::new("kill")
        .arg(signal)
        .args(&pids)
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill {signal} {pids:?}");
}

impl Nodes {
    fn new(backend: Backend) -> Nodes {
        Nodes {
            backend,
            names: NAMES.iter().map(|n| n.to_string()).collect(),
            down: vec![false; 3],
            stopped: vec![false; 3],
            cut: vec![false; 3],
            quick: client(Duration::from_secs(3)),
            slow: client(Duration::from_secs(30)),
        }
    }

    /// Three nodes on 127.0.0.1 ports, once the meta group has formed.
    pub async fn local() -> Nodes {
        let level = node_log_level();
        let c = cluster::Cluster::start(3, &[("RUST_LOG", &level)]).await;
        Nodes::new(Backend::Local(c))
    }

    /// Three nodes in network namespaces, once the meta group has formed;
    /// `Err` says why namespaces cannot be used here. Call it from the test's
    /// own thread (not a spawned task): see [`netns::Net::spawn`].
    pub async fn in_namespaces() -> Result<Nodes, String> {
        if let Some(why) = netns::unavailable() {
            return Err(why);
        }
        let net = netns::Net::new(3).map_err(|e| format!("cannot make network namespaces: {e}"))?;
        let tmp = tempfile::tempdir().expect("temporary directory");
        let mut nodes = NetNodes {
            net,
            dir: tmp.path().to_path_buf(),
            tmp: Some(tmp),
            pids: Vec::new(),
        };
        for i in 0..3 {
            nodes.start(i);
        }
        let nodes = Nodes::new(Backend::Netns(Box::new(nodes)));
        nodes.until_meta_formed().await;
        Ok(nodes)
    }

    async fn until_meta_formed(&self) {
        cluster::until(
            "the meta group forms (same leader on all, 3 voters)",
            || async {
                let mut seen = Vec::new();
                for i in 0..3 {
                    let Some(v) = self.get(i, "/v1/cluster").await else {
                        return false;
                    };
                    let voters = v["nodes"]
                        .as_array()
                        .map_or(0, |a| a.iter().filter(|n| n["voter"] == true).count());
                    if voters != 3 {
                        return false;
                    }
                    seen.push(v["meta_leader"].as_str().map(str::to_string));
                }
                seen[0].is_some() && seen.windows(2).all(|w| w[0] == w[1])
            },
        )
        .await;
    }

    fn host(&self, i: usize) -> String {
        match &self.backend {
            Backend::Local(_) => "127.0.0.1".into(),
            Backend::Netns(n) => n.net.ip_of(i).to_string(),
        }
    }

    /// Node `i`'s HTTP API.
    pub fn http_base(&self, i: usize) -> String {
        match &self.backend {
            Backend::Local(c) => format!("http://127.0.0.1:{}", c.nodes[i].http),
            Backend::Netns(_) => format!("http://{}:8080", self.host(i)),
        }
    }

    /// Node `i`'s NATS address.
    pub fn nats_url(&self, i: usize) -> String {
        match &self.backend {
            Backend::Local(c) => c.nats_url(i),
            Backend::Netns(_) => format!("nats://{}:4222", self.host(i)),
        }
    }

    /// Every node's NATS address, node `first`'s first.
    pub fn nats_urls_from(&self, first: usize) -> Vec<String> {
        (0..3).map(|k| self.nats_url((first + k) % 3)).collect()
    }

    /// Whether node `i` can answer now (running, not stopped).
    pub fn answers(&self, i: usize) -> bool {
        !self.down[i] && !self.stopped[i]
    }

    fn pid(&self, i: usize) -> u32 {
        match &self.backend {
            Backend::Local(c) => c.nodes[i].child.id().expect("node runs"),
            Backend::Netns(n) => n.pids[i],
        }
    }

    /// `GET` on node `i` (3 s timeout): the JSON body of a 2xx answer.
    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        let resp = self
            .quick
            .get(format!("{}{path}", self.http_base(i)))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.json().await.ok()
    }

    /// The station's leader, as most answering nodes that are not cut off name it.
    pub async fn leader(&self, station: &str) -> Option<usize> {
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        for i in (0..3).filter(|i| self.answers(*i) && !self.cut[*i]) {
            if let Some(v) = self.get(i, &format!("/v1/stations/{station}")).await
                && let Some(l) = v["cluster"]["leader"].as_str()
            {
                *votes.entry(l.to_string()).or_default() += 1;
            }
        }
        let (name, _) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        self.names.iter().position(|n| *n == name)
    }

    /// Waits for the station to have a leader (a hang guard).
    pub async fn until_leader(&self, station: &str) -> usize {
        let deadline = Instant::now() + process::GUARD;
        loop {
            if let Some(l) = self.leader(station).await {
                return l;
            }
            assert!(
                Instant::now() < deadline,
                "station {station} has no leader for {:?}",
                process::GUARD
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9` of node `i`.
    pub async fn kill(&mut self, i: usize) {
        if self.stopped[i] {
            self.cont(i);
        }
        match &mut self.backend {
            Backend::Local(c) => c.kill(i).await,
            Backend::Netns(n) => n.net.kill(i),
        }
        self.down[i] = true;
    }

    /// `kill -9` of every node at once (one `kill(1)`), then reaps them.
    pub async fn kill_all(&mut self) {
        let pids: Vec<u32> = (0..3)
            .filter(|i| !self.down[*i])
            .map(|i| self.pid(i))
            .collect();
        if !pids.is_empty() {
            signal("-KILL", &pids);
        }
        for i in 0..3 {
            if !self.down[i] {
                self.kill(i).await;
            }
        }
    }

    /// Starts node `i` again on its addresses and data. Call it from the test's
    /// own thread (see [`netns::Net::spawn`]).
    pub async fn restart(&mut self, i: usize) {
        match &mut self.backend {
            Backend::Local(c) => c.restart(i).await,
            Backend::Netns(n) => n.start(i),
        }
        self.down[i] = false;
        self.stopped[i] = false;
    }

    /// `SIGSTOP` to node `i`.
    pub fn stop(&mut self, i: usize) {
        signal("-STOP", &[self.pid(i)]);
        self.stopped[i] = true;
    }

    /// `SIGCONT` to node `i`.
    pub fn cont(&mut self, i: usize) {
        signal("-CONT", &[self.pid(i)]);
        self.stopped[i] = false;
    }

    fn net(&self) -> &netns::Net {
        match &self.backend {
            Backend::Netns(n) => &n.net,
            Backend::Local(_) => panic!("partitions need the namespace harness"),
        }
    }

    /// Cuts node `i` off from its peers; clients (the host) still reach it.
    pub fn isolate(&mut self, i: usize) {
        self.net().isolate(i).expect("cut");
        self.cut[i] = true;
    }

    /// Undoes [`Nodes::isolate`].
    pub fn heal(&mut self, i: usize) {
        self.net().heal(i).expect("heal");
        self.cut[i] = false;
    }

    /// Ends every fault: heals cuts, continues stopped nodes, restarts dead ones.
    pub async fn recover_all(&mut self) {
        for i in 0..3 {
            if self.cut[i] {
                self.heal(i);
            }
            if self.stopped[i] {
                self.cont(i);
            }
            if self.down[i] {
                self.restart(i).await;
            }
        }
    }

    /// Asks the station's leader to hand over (any node passes it on).
    pub async fn step_down(&self, station: &str) -> bool {
        for i in (0..3).filter(|i| self.answers(*i)) {
            let url = format!("{}/v1/stations/{station}/stepdown", self.http_base(i));
            if let Ok(r) = self.quick.post(url).send().await {
                return r.status().is_success();
            }
        }
        false
    }

    /// A JetStream context of a client of node `i` alone.
    pub async fn js_on(&self, i: usize) -> Option<jetstream::Context> {
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(3))
            .connect(self.nats_url(i));
        let client = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .ok()?
            .ok()?;
        Some(jetstream::new(client))
    }

    /// Creates the stream `name` (subjects `name.>`, three replicas) and waits
    /// until every node knows it (STREAM.INFO with a leader, and a copy).
    pub async fn create_station(&self, name: &str) {
        let config = stream::Config {
            name: name.into(),
            subjects: vec![format!("{name}.>")],
            num_replicas: 3,
            ..Default::default()
        };
        let deadline = Instant::now() + process::GUARD;
        loop {
            let err = match self.js_on(0).await {
                Some(js) => match js.get_or_create_stream(config.clone()).await {
                    Ok(_) => break,
                    Err(e) => e.to_string(),
                },
                None => "cannot connect to n1".into(),
            };
            assert!(
                Instant::now() < deadline,
                "cannot create the R3 stream {name}: {err}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        for i in 0..3 {
            cluster::until(
                &format!("{} knows stream {name} and has a copy", self.names[i]),
                || async move {
                    let Some(js) = self.js_on(i).await else {
                        return false;
                    };
                    let Ok(mut s) = js.get_stream(name).await else {
                        return false;
                    };
                    let leader = s
                        .info()
                        .await
                        .ok()
                        .and_then(|info| info.cluster.clone())
                        .and_then(|c| c.leader);
                    leader.is_some()
                        && self
                            .get(i, &format!("/v1/stations/{name}/replica?limit=1"))
                            .await
                            .is_some()
                },
            )
            .await;
        }
    }

    /// One page of node `i`'s own copy.
    async fn replica_page(&self, i: usize, name: &str, from: u64) -> Result<Value, String> {
        let url = format!(
            "{}/v1/stations/{name}/replica?from_seq={from}&limit=1000",
            self.http_base(i)
        );
        let resp = self.slow.get(url).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))
    }

    /// Node `i`'s whole copy, page by page.
    pub async fn read_copy(&self, i: usize, name: &str) -> Result<ReplicaCopy, String> {
        let mut copy = ReplicaCopy::default();
        let mut from = 1;
        loop {
            let page = self.replica_page(i, name, from).await?;
            if from == 1 {
                copy.node = page["node"].as_str().unwrap_or_default().to_string();
                copy.role = page["role"].as_str().unwrap_or_default().to_string();
                copy.applied = page["applied"].as_u64().unwrap_or_default();
                copy.first_seq = page["first_seq"].as_u64().unwrap_or_default();
                copy.last_seq = page["last_seq"].as_u64().unwrap_or_default();
            }
            let msgs = page["messages"].as_array().cloned().unwrap_or_default();
            if msgs.is_empty() {
                return Ok(copy);
            }
            for m in msgs {
                let seq = m["seq"].as_u64().ok_or(format!("no seq in {m}"))?;
                let stored = Stored {
                    subject: m["subject"].as_str().unwrap_or_default().to_string(),
                    msg_id: m["msg_id"].as_str().map(str::to_string),
                    headers: m["headers"].clone(),
                    payload_base64: m["payload_base64"].as_str().unwrap_or_default().to_string(),
                    time_ns: m["time_ns"].as_u64().unwrap_or_default(),
                };
                if copy.messages.insert(seq, stored).is_some() {
                    return Err(format!("seq {seq} returned twice"));
                }
                if seq < from {
                    return Err(format!("seq {seq} returned when asking from {from}"));
                }
                from = seq + 1;
            }
            if copy.last_seq > 0 && from > copy.last_seq {
                return Ok(copy);
            }
        }
    }

    /// Waits (at most `JEPSEN_CONVERGE_SECS`, 60 s) until every node's copy has
    /// the same last sequence; fails with what each node says otherwise.
    pub async fn until_converged(&self, name: &str) {
        let wait = Duration::from_secs(env_or("JEPSEN_CONVERGE_SECS", 60));
        let deadline = Instant::now() + wait;
        loop {
            let mut seen = Vec::new();
            for i in 0..3 {
                let url = format!(
                    "{}/v1/stations/{name}/replica?from_seq={}&limit=1",
                    self.http_base(i),
                    u64::MAX
                );
                let answer = match self.quick.get(url).send().await {
                    Ok(r) => {
                        let status = r.status();
                        let body = r.text().await.unwrap_or_default();
                        match serde_json::from_str::<Value>(&body) {
                            Ok(v) if status.is_success() => Ok((
                                v["last_seq"].as_u64().unwrap_or_default(),
                                v["role"].as_str().unwrap_or_default().to_string(),
                                v["applied"].as_u64().unwrap_or_default(),
                            )),
                            _ => Err(format!("{status}: {body}")),
                        }
                    }
                    Err(e) => Err(e.to_string()),
                };
                seen.push(answer);
            }
            let lasts: Vec<Option<u64>> = seen
                .iter()
                .map(|a| a.as_ref().ok().map(|(l, _, _)| *l))
                .collect();
            if lasts[0].is_some() && lasts.windows(2).all(|w| w[0] == w[1]) {
                return;
            }
            if Instant::now() >= deadline {
                let mut text = String::new();
                for (i, a) in seen.iter().enumerate() {
                    let _ = write!(text, "\n  {}: ", self.names[i]);
                    match a {
                        Ok((last, role, applied)) => {
                            let _ = write!(text, "last_seq={last} role={role} applied={applied}");
                        }
                        Err(e) => {
                            let _ = write!(text, "error {e}");
                        }
                    }
                }
                panic!("the replicas of {name} did not converge within {wait:?}:{text}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Heals everything, waits for the replicas to converge, reads every copy
    /// and checks `history` against them (the leader's copy as reference).
    pub async fn check_station(&mut self, name: &str, history: &[Attempt]) -> Report {
        self.recover_all().await;
        let leader = self.until_leader(name).await;
        self.until_converged(name).await;
        let mut copies = Vec::new();
        for i in 0..3 {
            match self.read_copy(i, name).await {
                Ok(c) => copies.push(c),
                Err(e) => panic!("reading {}'s copy of {name}: {e}", self.names[i]),
            }
        }
        check(history, &copies, leader)
    }

    /// The directory holding the nodes' data and logs.
    pub fn dir(&self) -> PathBuf {
        match &self.backend {
            Backend::Local(c) => c.dir.path().to_path_buf(),
            Backend::Netns(n) => n.dir.clone(),
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // A stopped node is left running, not stopped, for the harness to kill.
        for i in 0..3 {
            if self.stopped[i] && !self.down[i] {
                let _ = std::process::Command::new("kill")
                    .args(["-CONT", &self.pid(i).to_string()])
                    .status();
            }
        }
        if std::thread::panicking()
            && let Backend::Local(c) = &self.backend
        {
            // The cluster harness prints the last lines and where the logs are
            // kept; add each node's errors and panics.
            for name in NAMES {
                let log = c.dir.path().join(format!("{name}.log"));
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let bad: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("ERROR") || l.contains("panicked"))
                    .collect();
                eprintln!("--- {} errors and panics in {name}.log:", bad.len());
                for line in bad.iter().take(20) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Writers
// ---------------------------------------------------------------------------

/// The offered load.
#[derive(Clone, Debug)]
pub struct Load {
    pub writers: usize,
    /// Publishes a second across all writers (`JEPSEN_RATE`, 1500).
    pub rate: f64,
    /// Publishes in flight per writer at most.
    pub window: usize,
    /// Tries per id while the outcome is unknown.
    pub tries: usize,
    /// How long a try waits for its PubAck.
    pub ack_timeout: Duration,
}

impl Default for Load {
    fn default() -> Load {
        Load {
            writers: 4,
            rate: env_or("JEPSEN_RATE", 1500.0),
            window: 32,
            tries: 3,
            ack_timeout: Duration::from_secs(5),
        }
    }
}

/// A client that knows every node, `urls[0]` first, reconnecting quickly and
/// noticing a silent (stopped) server within a few seconds.
pub async fn connect_all(urls: &[String], ack_timeout: Duration) -> jetstream::Context {
    let addrs: Vec<async_nats::ServerAddr> = urls
        .iter()
        .map(|u| u.parse().expect("server address"))
        .collect();
    let deadline = Instant::now() + process::GUARD;
    loop {
        let connect = async_nats::ConnectOptions::new()
            .retain_servers_order()
            .ping_interval(Duration::from_secs(1))
            .connection_timeout(Duration::from_secs(2))
            .max_reconnects(None)
            .reconnect_delay_callback(|n| Duration::from_millis((n as u64 * 100).min(1000)))
            .connect(addrs.clone())
            .await;
        match connect {
            Ok(client) => {
                return jetstream::ContextBuilder::new()
                    .timeout(ack_timeout)
                    .max_ack_inflight(4096)
                    .build(client);
            }
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect to {urls:?}: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One publish try of `id` (payload: the id), timed from `epoch`.
pub async fn publish_once(
    js: &jetstream::Context,
    subject: &str,
    id: &str,
    expected_last_seq: Option<u64>,
    epoch: Instant,
) -> Attempt {
    let mut msg = PublishMessage::build()
        .payload(bytes::Bytes::from(id.to_string()))
        .message_id(id);
    if let Some(e) = expected_last_seq {
        msg = msg.expected_last_sequence(e);
    }
    let start = epoch.elapsed();
    let result = async { js.send_publish(subject.to_string(), msg).await?.await }.await;
    let end = epoch.elapsed();
    let outcome = match result {
        Ok(ack) => Outcome::Acked {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        },
        Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
            Outcome::Rejected(e.to_string())
        }
        Err(e) => Outcome::Indeterminate(e.to_string()),
    };
    Attempt {
        msg_id: id.to_string(),
        subject: subject.to_string(),
        expected_last_seq,
        start,
        end,
        outcome,
    }
}

/// Publishes `id` until acknowledged or refused, at most `tries` times.
async fn publish_with_retries(
    js: jetstream::Context,
    subject: String,
    id: String,
    epoch: Instant,
    tries: usize,
) -> Vec<Attempt> {
    let mut out = Vec::new();
    for k in 0..tries {
        if k > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let a = publish_once(&js, &subject, &id, None, epoch).await;
        let settled = !matches!(a.outcome, Outcome::Indeterminate(_));
        out.push(a);
        if settled {
            break;
        }
    }
    out
}

/// Writers running in the background until [`Writers::stop`].
pub struct Writers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Vec<Attempt>>,
}

impl Writers {
    /// Stops offering new publishes, lets those in flight finish, and returns
    /// every try.
    pub async fn stop(mut self) -> Vec<Attempt> {
        let _ = self.stop.send(true);
        let mut all = Vec::new();
        while let Some(done) = self.tasks.join_next().await {
            all.extend(done.expect("writer task"));
        }
        all.sort_by_key(|a| a.start);
        all
    }
}

/// Starts `load.writers` paced writers on `station` (subjects
/// `<station>.w<k>`), writer `k` a client of node `k % 3` first.
pub fn start_writers(nodes: &Nodes, station: &str, load: &Load, epoch: Instant) -> Writers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let period = Duration::from_secs_f64(load.writers as f64 / load.rate.max(1.0));
    for k in 0..load.writers {
        let urls = nodes.nats_urls_from(k % 3);
        let (subject, name) = (format!("{station}.w{k}"), format!("w{k}"));
        let (load, mut stopped) = (load.clone(), stopped.clone());
        tasks.spawn(async move {
            let js = connect_all(&urls, load.ack_timeout).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut inflight: JoinSet<Vec<Attempt>> = JoinSet::new();
            let mut history = Vec::new();
            let mut n = 0u64;
            loop {
                let stopping = *stopped.borrow();
                if stopping && inflight.is_empty() {
                    break;
                }
                tokio::select! {
                    _ = tick.tick(), if !stopping && inflight.len() < load.window => {
                        n += 1;
                        inflight.spawn(publish_with_retries(
                            js.clone(),
                            subject.clone(),
                            format!("{name}-{n}"),
                            epoch,
                            load.tries,
                        ));
                    }
                    Some(done) = inflight.join_next(), if !inflight.is_empty() => {
                        history.extend(done.expect("publish task"));
                    }
                    _ = stopped.changed(), if !stopping => {}
                }
            }
            history
        });
    }
    Writers { stop, tasks }
}

/// The number after the last "wrong last sequence: " in an error, if any.
pub fn last_seq_in_error(text: &str) -> Option<u64> {
    let rest = &text[text.rfind("wrong last sequence: ")? + "wrong last sequence: ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Starts `count` writers that each publish with `Nats-Expected-Last-Sequence`
/// set to the last sequence they know (from their own acks, the refusals, or
/// STREAM.INFO), one publish at a time; every id is tried once.
pub fn start_cas_writers(nodes: &Nodes, station: &str, count: usize, epoch: Instant) -> Writers {
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for k in 0..count {
        let urls = nodes.nats_urls_from(k % 3);
        let (subject, name, station) = (
            format!("{station}.c{k}"),
            format!("c{k}"),
            station.to_string(),
        );
        let stopped = stopped.clone();
        tasks.spawn(async move {
            let js = connect_all(&urls, Duration::from_secs(5)).await;
            let info_last = |js: jetstream::Context, station: String| async move {
                let s = js.get_stream(station).await.ok()?;
                Some(s.cached_info().state.last_sequence)
            };
            let mut last = info_last(js.clone(), station.clone()).await.unwrap_or(0);
            let mut history = Vec::new();
            let mut n = 0u64;
            while !*stopped.borrow() {
                n += 1;
                let a =
                    publish_once(&js, &subject, &format!("{name}-{n}"), Some(last), epoch).await;
                match &a.outcome {
                    Outcome::Acked { seq, .. } => last = *seq,
                    Outcome::Rejected(e) => {
                        last = match last_seq_in_error(e) {
                            Some(l) => l,
                            None => info_last(js.clone(), station.clone()).await.unwrap_or(last),
                        }
                    }
                    Outcome::Indeterminate(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        last = info_last(js.clone(), station.clone()).await.unwrap_or(last);
                    }
                }
                history.push(a);
            }
            history
        });
    }
    Writers { stop, tasks }
}

/// After the faults: one publish through each node, tried until acknowledged
/// (a hang guard): the station takes writes again everywhere.
pub async fn probe_every_node(nodes: &Nodes, station: &str, epoch: Instant) -> Vec<Attempt> {
    let mut out = Vec::new();
    for i in 0..3 {
        let js = connect_all(&[nodes.nats_url(i)], Duration::from_secs(5)).await;
        let (subject, id) = (
            format!("{station}.probe"),
            format!("probe-{}", nodes.names[i]),
        );
        let deadline = Instant::now() + process::GUARD;
        loop {
            let a = publish_once(&js, &subject, &id, None, epoch).await;
            let acked = matches!(a.outcome, Outcome::Acked { .. });
            let why = format!("{:?}", a.outcome);
            out.push(a);
            if acked {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not take publishes after the faults: {why}",
                nodes.names[i]
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    out
}
