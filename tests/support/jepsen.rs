//! A Jepsen-style fault harness for replicated stations: three real `junction`
//! processes, writers that publish through real JetStream clients (async-nats)
//! while faults are injected, a history of every publish, and a checker that
//! reads every node's own copy back and judges the history against it
//! (`tests/replicated_station_faults.rs`).
//!
//! What it owns, one concern a file:
//! - here, [`Nodes`]: the cluster, on 127.0.0.1 ports ([`cluster::Cluster`])
//!   or in network namespaces ([`netns::Net`]), with the faults: `kill -9`,
//!   restart, `SIGSTOP`/`SIGCONT`, cutting a node off from its peers (both
//!   ways or one way), leader step-down; on 127.0.0.1, membership changes too:
//!   a node added, a replica moved (peer-remove), a node removed for good,
//!   with which nodes hold a station's replicas now; reading each node's own
//!   copy back;
//! - `jepsen/writers.rs`, the writers: paced publishes with `Nats-Msg-Id:
//!   <writer>-<n>` (payload: the id), each writer a client of its own that
//!   knows every node, each publish tried again with the same id while its
//!   outcome is unknown; every try is an [`Attempt`] with its start and end
//!   instants and its outcome (acknowledged with a sequence, definitely
//!   refused, or indeterminate);
//! - `jepsen/checker.rs`, the history and the checker ([`check`]): pure
//!   functions over a history and the replicas' copies, tested on synthetic
//!   histories.
//!
//! What the checker asserts (counts only, never timing):
//! - every acknowledged id is stored at the sequence it was acknowledged with;
//! - no id is stored twice, and nothing is stored that no writer sent;
//! - sequences run without a gap from the first to the last;
//! - every replica (every node holding one at the end) holds the same
//!   messages (subject, headers, payload);
//! - a publish refused with "wrong last sequence" is not stored, and at most
//!   one publish wins each `Nats-Expected-Last-Sequence`, at that sequence + 1;
//! - sequences are linearizable: when publish A was acknowledged before publish
//!   B began, seq(A) < seq(B).
#![allow(dead_code)] // each test binary uses part of it

#[path = "jepsen/checker.rs"]
pub mod checker;
#[path = "jepsen/writers.rs"]
pub mod writers;

pub use checker::{Attempt, Outcome, ReplicaCopy, Report, Stored, check};
pub use writers::{Load, Writers, probe_every_node, start_cas_writers, start_writers};

use super::{cluster, netns, process};
use async_nats::jetstream::{self, stream};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

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

/// The seed of a scenario's random choices: `JEPSEN_SEED`, or one from the
/// clock. Print it, so that a failure can be replayed with the same choices
/// (the timing of the run is not replayed).
pub fn seed() -> u64 {
    let clock = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    env_or("JEPSEN_SEED", clock ^ u64::from(std::process::id()))
}

/// A small seeded generator (SplitMix64) for the choices of a scenario: the
/// same seed makes the same choices.
pub struct Choices(u64);

impl Choices {
    pub fn new(seed: u64) -> Choices {
        Choices(seed)
    }

    /// The next number, from all of `u64`.
    pub fn number(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (slightly biased for huge `n`, which is fine here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.number() % n
    }
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

/// One replica of a station, as its leader shows it (`GET
/// /v1/stations/{name}`, `cluster.replicas`).
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaState {
    pub name: String,
    pub leader: bool,
    pub current: bool,
    pub online: bool,
}

enum Backend {
    Local(cluster::Cluster),
    Netns(Box<NetNodes>),
}

/// Three nodes (more once [`Nodes::add_node`] starts one) and the faults done
/// to them; tracks which are down, stopped, cut off or removed from the
/// cluster, so that questions go only to nodes that can answer.
pub struct Nodes {
    backend: Backend,
    pub names: Vec<String>,
    down: Vec<bool>,
    stopped: Vec<bool>,
    cut: Vec<bool>,
    /// Removed from the cluster for good ([`Nodes::remove_node`]): never
    /// restarted, never asked.
    gone: Vec<bool>,
    /// The nodes holding a replica of a station, when they are not the first
    /// three ([`Nodes::set_replicas`]).
    replicas: BTreeMap<String, Vec<usize>>,
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
            gone: vec![false; 3],
            replicas: BTreeMap::new(),
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

    /// Every node's NATS address (but those removed), node `first`'s first.
    pub fn nats_urls_from(&self, first: usize) -> Vec<String> {
        let n = self.names.len();
        (0..n)
            .map(|k| (first + k) % n)
            .filter(|i| !self.gone[*i])
            .map(|i| self.nats_url(i))
            .collect()
    }

    /// The nodes not removed from the cluster, in order.
    pub fn members(&self) -> Vec<usize> {
        (0..self.names.len()).filter(|i| !self.gone[*i]).collect()
    }

    /// Whether node `i` can answer now (running, not stopped, not removed).
    pub fn answers(&self, i: usize) -> bool {
        !self.down[i] && !self.stopped[i] && !self.gone[i]
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
        for i in (0..self.names.len()).filter(|i| self.answers(*i) && !self.cut[*i]) {
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

    /// Spends `span` watching for another leader than `old` and prints when one
    /// is named (for the timeline only: nothing is asserted).
    pub async fn watch_failover(&self, station: &str, old: usize, span: Duration, epoch: Instant) {
        let until = Instant::now() + span;
        let mut seen = false;
        while Instant::now() < until {
            if !seen
                && let Some(l) = self.leader(station).await
                && l != old
            {
                event(epoch, &format!("{} leads {station}", self.names[l]));
                seen = true;
            }
            let left = until.saturating_duration_since(Instant::now());
            tokio::time::sleep(left.min(Duration::from_millis(100))).await;
        }
        if !seen {
            event(epoch, &format!("no other leader of {station} named"));
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
        let pids: Vec<u32> = (0..self.names.len())
            .filter(|i| !self.down[*i])
            .map(|i| self.pid(i))
            .collect();
        if !pids.is_empty() {
            signal("-KILL", &pids);
        }
        for i in 0..self.names.len() {
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

    /// Drops what node `i` receives from its peers, not what it sends them;
    /// clients (the host) still reach it both ways. See [`netns::Net::cut_inbound`].
    pub fn cut_inbound(&mut self, i: usize) {
        self.net().cut_inbound(i, &self.peers_of(i)).expect("cut");
        self.cut[i] = true;
    }

    /// Drops what node `i` sends to its peers, not what it receives from them;
    /// clients (the host) still reach it both ways. See [`netns::Net::cut_outbound`].
    pub fn cut_outbound(&mut self, i: usize) {
        self.net().cut_outbound(i, &self.peers_of(i)).expect("cut");
        self.cut[i] = true;
    }

    fn peers_of(&self, i: usize) -> Vec<usize> {
        (0..self.names.len()).filter(|j| *j != i).collect()
    }

    /// Undoes [`Nodes::isolate`], [`Nodes::cut_inbound`] and [`Nodes::cut_outbound`].
    pub fn heal(&mut self, i: usize) {
        self.net().heal(i).expect("heal");
        self.cut[i] = false;
    }

    /// Ends every fault: heals cuts, continues stopped nodes, restarts dead ones
    /// (not those removed from the cluster).
    pub async fn recover_all(&mut self) {
        for i in self.members() {
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
        for i in (0..self.names.len()).filter(|i| self.answers(*i)) {
            let url = format!("{}/v1/stations/{station}/stepdown", self.http_base(i));
            if let Ok(r) = self.quick.post(url).send().await {
                return r.status().is_success();
            }
        }
        false
    }

    // -----------------------------------------------------------------------
    // Membership: nodes added and removed, replicas moved
    // -----------------------------------------------------------------------

    /// The nodes holding a replica of `station`: as told with
    /// [`Nodes::set_replicas`], else the first three (where
    /// [`Nodes::create_station`] puts them).
    pub fn replicas_of(&self, station: &str) -> Vec<usize> {
        self.replicas
            .get(station)
            .cloned()
            .unwrap_or_else(|| vec![0, 1, 2])
    }

    /// Tells which nodes hold a replica of `station` now (after replicas moved):
    /// the checker reads and compares only their copies.
    pub fn set_replicas(&mut self, station: &str, holders: Vec<usize>) {
        self.replicas.insert(station.to_string(), holders);
    }

    /// Starts one more node, with the same flags as the others and `--join`
    /// naming them, and returns its index once it listens (whether it became a
    /// member is [`Nodes::until_voter`]'s to wait for). On 127.0.0.1 only.
    pub async fn add_node(&mut self) -> usize {
        let (i, name) = match &mut self.backend {
            Backend::Local(c) => {
                let i = c.add_node().await;
                (i, c.nodes[i].name.clone())
            }
            Backend::Netns(_) => panic!("adding a node needs the 127.0.0.1 harness"),
        };
        assert_eq!(i, self.names.len(), "node indices follow the harness's");
        self.names.push(name);
        self.down.push(false);
        self.stopped.push(false);
        self.cut.push(false);
        self.gone.push(false);
        i
    }

    /// Waits until every member lists node `i` in `GET /v1/cluster` as an
    /// online voter (a hang guard).
    pub async fn until_voter(&self, i: usize) {
        let name = self.names[i].as_str();
        cluster::until(
            &format!("{name} is an online voter on every node"),
            || async {
                for j in self.members() {
                    let Some(v) = self.get(j, "/v1/cluster").await else {
                        return false;
                    };
                    let listed = v["nodes"].as_array().is_some_and(|a| {
                        a.iter()
                            .any(|n| n["name"] == name && n["voter"] == true && n["online"] == true)
                    });
                    if !listed {
                        return false;
                    }
                }
                true
            },
        )
        .await;
    }

    /// The station's replicas as its leader shows them (`GET
    /// /v1/stations/{name}`, `cluster.replicas`), asked of the node most nodes
    /// name as leader; `None` while that node does not answer as the leader.
    pub async fn replica_view(&self, station: &str) -> Option<Vec<ReplicaState>> {
        let l = self.leader(station).await?;
        let v = self.get(l, &format!("/v1/stations/{station}")).await?;
        let view: Vec<ReplicaState> = v["cluster"]["replicas"]
            .as_array()?
            .iter()
            .map(|r| ReplicaState {
                name: r["name"].as_str().unwrap_or_default().to_string(),
                leader: r["leader"] == true,
                current: r["current"] == true,
                online: r["online"] == true,
            })
            .collect();
        view.iter()
            .any(|r| r.leader && r.name == self.names[l])
            .then_some(view)
    }

    /// Waits until the station's leader shows exactly the replicas on `holders`,
    /// every one online and current (a hang guard; the last view it saw is in
    /// the panic).
    pub async fn until_replicas(&self, station: &str, holders: &[usize]) {
        let want: BTreeSet<&str> = holders.iter().map(|i| self.names[*i].as_str()).collect();
        let deadline = Instant::now() + process::GUARD;
        let mut last = None;
        loop {
            if let Some(view) = self.replica_view(station).await {
                let names: BTreeSet<&str> = view.iter().map(|r| r.name.as_str()).collect();
                if names == want && view.iter().all(|r| r.online && r.current) {
                    return;
                }
                last = Some(view);
            }
            assert!(
                Instant::now() < deadline,
                "the replicas of {station} are never {want:?}, all online and current; \
                 the leader's last view: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves the station's replica off node `peer` to a spare node (`POST
    /// /v1/stations/{station}/peer-remove`, asked of node `via`); `Err` holds
    /// the broker's answer when it refuses.
    pub async fn move_replica(&self, station: &str, peer: usize, via: usize) -> Result<(), String> {
        let url = format!("{}/v1/stations/{station}/peer-remove", self.http_base(via));
        let resp = self
            .slow
            .post(url)
            .json(&serde_json::json!({ "peer": self.names[peer] }))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        Err(format!(
            "{status}: {}",
            resp.text().await.unwrap_or_default()
        ))
    }

    /// Removes node `i` from the cluster for good (`DELETE
    /// /v1/cluster/nodes/{name}`, asked of node `via`); `Err` holds the
    /// broker's answer when it refuses. From then on node `i` is never asked
    /// anything nor restarted; stop it with [`Nodes::terminate`].
    pub async fn remove_node(&mut self, i: usize, via: usize) -> Result<(), String> {
        let url = format!("{}/v1/cluster/nodes/{}", self.http_base(via), self.names[i]);
        let resp = self
            .slow
            .delete(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!(
                "{status}: {}",
                resp.text().await.unwrap_or_default()
            ));
        }
        self.gone[i] = true;
        Ok(())
    }

    /// Stops node `i` with SIGTERM and waits for it to exit (a hang guard);
    /// its exit status. On 127.0.0.1 only.
    pub async fn terminate(&mut self, i: usize) -> std::process::ExitStatus {
        signal("-TERM", &[self.pid(i)]);
        let Backend::Local(c) = &mut self.backend else {
            panic!("terminating a node needs the 127.0.0.1 harness");
        };
        let name = c.nodes[i].name.clone();
        let status = tokio::time::timeout(process::GUARD, c.nodes[i].child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} still runs {:?} after SIGTERM", process::GUARD))
            .expect("wait for the node");
        self.down[i] = true;
        status
    }

    /// Waits until node `i` is gone from `GET /v1/cluster` on every member (a
    /// hang guard).
    pub async fn until_gone(&self, i: usize) {
        let name = self.names[i].as_str();
        cluster::until(
            &format!("{name} is gone from /v1/cluster on every other node"),
            || async {
                for j in self.members() {
                    let Some(v) = self.get(j, "/v1/cluster").await else {
                        return false;
                    };
                    let listed = v["nodes"]
                        .as_array()
                        .is_none_or(|a| a.iter().any(|n| n["name"] == name));
                    if listed {
                        return false;
                    }
                }
                true
            },
        )
        .await;
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
        for i in self.replicas_of(name) {
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

    /// Waits (at most `JEPSEN_CONVERGE_SECS`, 60 s) until the copy of every node
    /// holding a replica ([`Nodes::replicas_of`]) has the same last sequence;
    /// `Err` says what each of them says otherwise.
    pub async fn until_converged(&self, name: &str) -> Result<(), String> {
        let wait = Duration::from_secs(env_or("JEPSEN_CONVERGE_SECS", 60));
        let deadline = Instant::now() + wait;
        let holders = self.replicas_of(name);
        loop {
            let mut seen = Vec::new();
            for &i in &holders {
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
                return Ok(());
            }
            if Instant::now() >= deadline {
                let mut text = String::new();
                for (i, a) in holders.iter().zip(&seen) {
                    let _ = write!(text, "\n  {}: ", self.names[*i]);
                    match a {
                        Ok((last, role, applied)) => {
                            let _ = write!(text, "last_seq={last} role={role} applied={applied}");
                        }
                        Err(e) => {
                            let _ = write!(text, "error {e}");
                        }
                    }
                }
                return Err(format!(
                    "the replicas of {name} did not converge within {wait:?}:{text}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Heals everything, waits for the replicas to converge, reads the copy of
    /// every node holding a replica ([`Nodes::replicas_of`]) and checks
    /// `history` against them (the leader's copy as reference). Replicas that
    /// do not converge fail the scenario, after the checker has judged the
    /// history against each node's copy in turn.
    pub async fn check_station(&mut self, name: &str, history: &[Attempt]) -> Report {
        self.recover_all().await;
        let holders = self.replicas_of(name);
        let leader = self.until_leader(name).await;
        let Some(leader) = holders.iter().position(|i| *i == leader) else {
            panic!(
                "{} leads {name}, yet holds no replica of it (replicas on {:?})",
                self.names[leader],
                holders.iter().map(|i| &self.names[*i]).collect::<Vec<_>>()
            );
        };
        let converged = self.until_converged(name).await;
        let mut copies = Vec::new();
        for &i in &holders {
            match self.read_copy(i, name).await {
                Ok(c) => copies.push(c),
                Err(e) => panic!("reading {}'s copy of {name}: {e}", self.names[i]),
            }
        }
        let report = check(history, &copies, leader);
        if converged.is_err() || !report.problems().is_empty() {
            self.dump(name, history, &copies);
        }
        if let Err(e) = converged {
            for (i, c) in copies.iter().enumerate() {
                let r = check(history, &copies, i);
                println!(
                    "against {} ({}, seqs {}..={}, {} stored): {}",
                    c.node,
                    c.role,
                    c.first_seq,
                    c.last_seq,
                    c.messages.len(),
                    r.summary()
                );
                for p in r.problems().iter().filter(|p| !p.starts_with("replicas")) {
                    println!("  {p}");
                }
            }
            let r = check(history, &copies, leader);
            for p in r.problems().iter().filter(|p| p.starts_with("replicas")) {
                println!("  {p}");
            }
            panic!("{e}\n{}", r.summary());
        }
        report
    }

    /// Writes the history and every copy as tab-separated files next to the
    /// nodes' logs (kept when the scenario fails), for a post-mortem.
    fn dump(&self, name: &str, history: &[Attempt], copies: &[ReplicaCopy]) {
        let dir = self.dir();
        let mut text =
            String::from("msg_id\tsubject\texpected_last_seq\tstart_ms\tend_ms\toutcome\n");
        for a in history {
            let _ = writeln!(
                text,
                "{}\t{}\t{}\t{:.3}\t{:.3}\t{:?}",
                a.msg_id,
                a.subject,
                a.expected_last_seq.map_or("-".into(), |e| e.to_string()),
                a.start.as_secs_f64() * 1e3,
                a.end.as_secs_f64() * 1e3,
                a.outcome
            );
        }
        let path = dir.join(format!("jepsen-{name}-history.tsv"));
        let _ = std::fs::write(&path, text);
        println!("history in {}", path.display());
        for c in copies {
            let mut text = String::from("seq\tmsg_id\tsubject\ttime_ns\n");
            for (seq, m) in &c.messages {
                let _ = writeln!(
                    text,
                    "{seq}\t{}\t{}\t{}",
                    m.msg_id.as_deref().unwrap_or("-"),
                    m.subject,
                    m.time_ns
                );
            }
            let path = dir.join(format!("jepsen-{name}-{}.tsv", c.node));
            let _ = std::fs::write(&path, text);
            println!("{}'s copy in {}", c.node, path.display());
        }
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
        for i in 0..self.names.len() {
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
            for name in &self.names {
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
