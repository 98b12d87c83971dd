//! Linux network namespaces for tests that cut the network between real `junction`
//! processes (`tests/cluster_partition_minority_side.rs`). Needs root, `ip`
//! (iproute2) and `nft` (nftables) or `iptables`; `scripts/test` installs them.
//!
//! The layout, named after the test process's pid so that concurrent runs never
//! clash (interface names stay within 15 characters):
//! - node `i` (0-based) lives in namespace `jn<pid>-<i+1>` at `10.A.B.<i+1>/24` on
//!   veth `jv<pid>b<i+1>`, whose peer `jv<pid>a<i+1>` is a port of the bridge;
//! - the bridge `jbr<pid>` lives in a namespace of its own, `jn<pid>-s`, so that
//!   traffic between nodes never goes through the host's firewall (with Docker's
//!   `br_netfilter` loaded, a bridge on the host forwards through its `FORWARD`
//!   chain, whose policy Docker sets to drop);
//! - the host, where the test runs, is `10.A.B.254` on `jv<pid>h`, whose peer
//!   `jv<pid>s` is a port of the bridge: the test reaches every node, cut or not.
//!
//! `10.A.B.0/24` is `10.(200 + pid % 50).(pid / 50 % 250).0/24`, or the next one
//! that the host does not use. [`Net::cut`] drops traffic between one node and
//! others inside that node's namespace (table `inet jpart`, or `iptables` rules);
//! [`Net::cut_inbound`] and [`Net::cut_outbound`] drop one way only;
//! [`Net::heal`] removes them all. Dropping a [`Net`] kills the processes it started
//! (each also gets `SIGKILL` if the test process dies first, through `setpriv
//! --pdeathsig` when util-linux has it) and deletes its links and namespaces; a new
//! [`Net`] first deletes what a test process that is gone left behind.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Where `tool` is: on `PATH`, else in the `sbin` directories (`ip` and `nft` are
/// there, and a non-login root shell may not have them on its `PATH`).
pub fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// Whether this runs in CI (`CI` set to anything but empty, `0` or `false`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Why this machine cannot run a namespace test; `None` when it can.
pub fn unavailable() -> Option<String> {
    if !is_root() {
        return Some("not root: network namespaces need root".into());
    }
    if find("ip").is_none() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    if find("nft").is_none() && find("iptables").is_none() {
        return Some("neither `nft` (nftables) nor `iptables` is installed".into());
    }
    None
}

/// Says that the test is skipped, and why; under CI as root a skip is a failure,
/// since CI must run the test (`scripts/test` installs what it needs).
pub fn skip(why: &str) {
    assert!(
        !(in_ci() && is_root()),
        "CI must run the network namespace test, but: {why}"
    );
    println!("skipped: {why}");
}

/// Runs `program ARGS` to its end, with `input` on its standard input; its error
/// output when it fails.
fn run_with(program: &Path, args: &[&str], input: Option<&str>) -> Result<(), String> {
    let what = || format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{}: {e}", what()))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| format!("{}: {e}", what()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", what()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            what(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The standard output of `program ARGS` (empty when it fails).
fn output_of(program: &Path, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The pid in a name made by a [`Net`] (`jn<pid>-…`, `jv<pid>h`), if it is one.
fn pid_in(name: &str, prefix: &str, suffix: impl Fn(&str) -> bool) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let end = rest.find(|c: char| !c.is_ascii_digit())?;
    suffix(&rest[end..])
        .then(|| rest[..end].parse().ok())
        .flatten()
}

/// Which traffic a one-way cut drops, seen from the node it is made on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Way {
    /// What the node receives from its peers.
    Inbound,
    /// What the node sends to its peers.
    Outbound,
}

/// Nodes in network namespaces on one bridge; everything is removed when dropped.
pub struct Net {
    iproute: PathBuf,
    nft: Option<PathBuf>,
    iptables: Option<PathBuf>,
    setpriv: Option<PathBuf>,
    switch: String,
    host_link: String,
    spaces: Vec<String>,
    ips: Vec<String>,
    host: String,
    children: Vec<Option<Child>>,
}

impl Net {
    /// Makes `nodes` namespaces (at most 9) on a bridge, each with `lo` up and its
    /// address on its veth; the host gets `.254` on the same network.
    pub fn new(nodes: usize) -> Result<Net, String> {
        assert!((1..=9).contains(&nodes), "1 to 9 nodes");
        let ip = find("ip").ok_or("`ip` (iproute2) is not installed")?;
        let pid = std::process::id();
        let mut net = Net {
            nft: find("nft"),
            iptables: find("iptables"),
            // util-linux's setpriv knows --pdeathsig since 2.33.
            setpriv: find("setpriv").filter(|p| output_of(p, &["--help"]).contains("pdeathsig")),
            switch: format!("jn{pid}-s"),
            host_link: format!("jv{pid}h"),
            spaces: (1..=nodes).map(|i| format!("jn{pid}-{i}")).collect(),
            ips: Vec::new(),
            host: String::new(),
            children: Vec::new(),
            iproute: ip,
        };
        net.sweep(pid);
        let prefix = net.free_prefix(pid)?;
        net.ips = (1..=nodes).map(|i| format!("{prefix}.{i}")).collect();
        net.host = format!("{prefix}.254");
        // From here on, dropping `net` removes whatever was made.
        let bridge = format!("jbr{pid}");
        let switch = net.switch.clone();
        net.ip(&["netns", "add", &switch])?;
        net.ip(&["-n", &switch, "link", "set", "lo", "up"])?;
        net.ip(&["-n", &switch, "link", "add", &bridge, "type", "bridge"])?;
        net.ip(&["-n", &switch, "link", "set", &bridge, "up"])?;
        let ends = |ns: &str, outside: &str, inside: &str| -> Vec<String> {
            [
                "link", "add", inside, "netns", ns, "type", "veth", "peer", "name",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([outside.to_string(), "netns".into(), switch.clone()])
            .collect()
        };
        for (i, ns) in net.spaces.clone().iter().enumerate() {
            let (port, link) = (format!("jv{pid}a{}", i + 1), format!("jv{pid}b{}", i + 1));
            let addr = format!("{}/24", net.ips[i]);
            net.ip(&["netns", "add", ns])?;
            net.ip_owned(&ends(ns, &port, &link))?;
            net.ip(&["-n", &switch, "link", "set", &port, "master", &bridge])?;
            net.ip(&["-n", &switch, "link", "set", &port, "up"])?;
            net.ip(&["-n", ns, "addr", "add", &addr, "dev", &link])?;
            net.ip(&["-n", ns, "link", "set", &link, "up"])?;
            net.ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        let (host_link, port) = (net.host_link.clone(), format!("jv{pid}s"));
        net.ip(&[
            "link", "add", &host_link, "type", "veth", "peer", "name", &port, "netns", &switch,
        ])?;
        net.ip(&["-n", &switch, "link", "set", &port, "master", &bridge])?;
        net.ip(&["-n", &switch, "link", "set", &port, "up"])?;
        let addr = format!("{}/24", net.host);
        net.ip(&["addr", "add", &addr, "dev", &host_link])?;
        net.ip(&["link", "set", &host_link, "up"])?;
        Ok(net)
    }

    /// Node `i`'s address (0-based).
    pub fn ip_of(&self, i: usize) -> &str {
        &self.ips[i]
    }

    /// Every node's address, in order.
    pub fn ips(&self) -> &[String] {
        &self.ips
    }

    /// The host's address on the nodes' network.
    pub fn host_ip(&self) -> &str {
        &self.host
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.spaces[i]
    }

    /// Starts `program ARGS` in node `i`'s namespace (`ip netns exec`, which execs
    /// it: the child's pid is the program's), with only `env` in its environment
    /// and its standard and error output appended to `log`. Call it from the
    /// test's own thread: the parent-death signal follows the thread that spawns.
    pub fn spawn(
        &mut self,
        i: usize,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<u32, String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.iproute);
        cmd.args(["netns", "exec", &self.spaces[i]]);
        if let Some(setpriv) = &self.setpriv {
            cmd.arg(setpriv).args(["--pdeathsig", "KILL", "--"]);
        }
        let child = cmd
            .arg(program)
            .args(args)
            .env_clear()
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("{} in {}: {e}", program.display(), self.spaces[i]))?;
        let pid = child.id();
        if self.children.len() <= i {
            self.children.resize_with(i + 1, || None);
        }
        if let Some(mut old) = self.children[i].replace(child) {
            let _ = old.kill();
            let _ = old.wait();
        }
        Ok(pid)
    }

    /// The program that node `i`'s process runs now (`/proc/PID/exe`).
    pub fn exe(&self, i: usize) -> Option<PathBuf> {
        let child = self.children.get(i)?.as_ref()?;
        std::fs::read_link(format!("/proc/{}/exe", child.id())).ok()
    }

    /// Kills node `i`'s process (`SIGKILL`) and waits for it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children.get_mut(i).and_then(Option::take) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Drops all traffic between node `i` and the nodes in `peers`, both ways,
    /// inside node `i`'s namespace; the host still reaches node `i`.
    pub fn cut(&self, i: usize, peers: &[usize]) -> Result<(), String> {
        let ns = &self.spaces[i];
        let others: Vec<&str> = peers.iter().map(|j| self.ips[*j].as_str()).collect();
        if others.is_empty() {
            return Ok(());
        }
        if let Some(nft) = &self.nft {
            let set = format!("{{ {} }}", others.join(", "));
            let script = format!(
                "table inet jpart {{\n\
                 \tchain cut_in {{ type filter hook input priority 0; policy accept; }}\n\
                 \tchain cut_out {{ type filter hook output priority 0; policy accept; }}\n\
                 }}\n\
                 add rule inet jpart cut_in ip saddr {set} drop\n\
                 add rule inet jpart cut_out ip daddr {set} drop\n"
            );
            let nft = nft.display().to_string();
            run_with(
                &self.iproute,
                &["netns", "exec", ns, &nft, "-f", "-"],
                Some(&script),
            )
        } else {
            let iptables = self.iptables.as_ref().ok_or("no nft nor iptables")?;
            let iptables = iptables.display().to_string();
            for other in others {
                for (chain, side) in [("INPUT", "-s"), ("OUTPUT", "-d")] {
                    let rule = [
                        "netns", "exec", ns, &iptables, "-A", chain, side, other, "-j", "DROP",
                    ];
                    run_with(&self.iproute, &rule, None)?;
                }
            }
            Ok(())
        }
    }

    /// Drops only what node `i` receives from the nodes in `peers` (a rule in an
    /// `input` chain of node `i`'s namespace). What node `i` sends still
    /// arrives, but nothing comes back, not even a TCP acknowledgement, so
    /// every connection between them breaks asymmetrically: the peers may
    /// hear node `i` for a while, node `i` hears nothing.
    pub fn cut_inbound(&self, i: usize, peers: &[usize]) -> Result<(), String> {
        self.cut_one_way(i, peers, Way::Inbound)
    }

    /// Drops only what node `i` sends to the nodes in `peers` (a rule in an
    /// `output` chain of node `i`'s namespace, so node `i`'s own sends fail
    /// locally). What the peers send still arrives, but node `i` answers
    /// nothing, not even a TCP acknowledgement: node `i` may hear the peers for
    /// a while, they hear nothing from it.
    pub fn cut_outbound(&self, i: usize, peers: &[usize]) -> Result<(), String> {
        self.cut_one_way(i, peers, Way::Outbound)
    }

    /// One way of [`Net::cut`]; the host still reaches node `i` both ways.
    fn cut_one_way(&self, i: usize, peers: &[usize], way: Way) -> Result<(), String> {
        let ns = &self.spaces[i];
        let others: Vec<&str> = peers.iter().map(|j| self.ips[*j].as_str()).collect();
        if others.is_empty() {
            return Ok(());
        }
        let (chain, hook, side, iptables_chain, iptables_side) = match way {
            Way::Inbound => ("cut_in", "input", "saddr", "INPUT", "-s"),
            Way::Outbound => ("cut_out", "output", "daddr", "OUTPUT", "-d"),
        };
        if let Some(nft) = &self.nft {
            let set = format!("{{ {} }}", others.join(", "));
            let script = format!(
                "table inet jpart {{\n\
                 \tchain {chain} {{ type filter hook {hook} priority 0; policy accept; }}\n\
                 }}\n\
                 add rule inet jpart {chain} ip {side} {set} drop\n"
            );
            let nft = nft.display().to_string();
            run_with(
                &self.iproute,
                &["netns", "exec", ns, &nft, "-f", "-"],
                Some(&script),
            )
        } else {
            let iptables = self.iptables.as_ref().ok_or("no nft nor iptables")?;
            let iptables = iptables.display().to_string();
            for other in others {
                let rule = [
                    "netns",
                    "exec",
                    ns,
                    &iptables,
                    "-A",
                    iptables_chain,
                    iptables_side,
                    other,
                    "-j",
                    "DROP",
                ];
                run_with(&self.iproute, &rule, None)?;
            }
            Ok(())
        }
    }

    /// Cuts node `i` off from every other node.
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        let others: Vec<usize> = (0..self.ips.len()).filter(|j| *j != i).collect();
        self.cut(i, &others)
    }

    /// Undoes every [`Net::cut`], [`Net::cut_inbound`] and [`Net::cut_outbound`]
    /// made in node `i`'s namespace (they share its table, or its chains).
    pub fn heal(&self, i: usize) -> Result<(), String> {
        let ns = &self.spaces[i];
        if let Some(nft) = &self.nft {
            let nft = nft.display().to_string();
            let args = [
                "netns", "exec", ns, &nft, "delete", "table", "inet", "jpart",
            ];
            run_with(&self.iproute, &args, None)
        } else {
            let iptables = self.iptables.as_ref().ok_or("no nft nor iptables")?;
            let iptables = iptables.display().to_string();
            for chain in ["INPUT", "OUTPUT"] {
                run_with(
                    &self.iproute,
                    &["netns", "exec", ns, &iptables, "-F", chain],
                    None,
                )?;
            }
            Ok(())
        }
    }

    fn ip(&self, args: &[&str]) -> Result<(), String> {
        run_with(&self.iproute, args, None)
    }

    fn ip_owned(&self, args: &[String]) -> Result<(), String> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.ip(&args)
    }

    /// The first `10.A.B` network, from this pid's, that no address or route of
    /// the host is in.
    fn free_prefix(&self, pid: u32) -> Result<String, String> {
        let (a, b) = (200 + pid % 50, pid / 50 % 250);
        let used = output_of(&self.iproute, &["-4", "route", "show", "table", "all"])
            + &output_of(&self.iproute, &["-4", "-o", "addr", "show"]);
        (0..250)
            .map(|k| format!("10.{a}.{}", (b + k) % 250))
            .find(|p| !used.contains(&format!("{p}.")))
            .ok_or_else(|| format!("no free 10.{a}.x.0/24 network on this host"))
    }

    /// Deletes the namespaces and host links of test processes that are gone
    /// (killed before their [`Net`] was dropped), and any of this pid's.
    fn sweep(&self, me: u32) {
        let gone = |pid: u32| pid == me || !Path::new(&format!("/proc/{pid}")).exists();
        for line in output_of(&self.iproute, &["netns", "list"]).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if pid_in(name, "jn", |s| s.starts_with('-')).is_some_and(gone) {
                let _ = self.ip(&["netns", "delete", name]);
            }
        }
        for line in output_of(&self.iproute, &["-o", "link", "show"]).lines() {
            let name = line.split(": ").nth(1).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default();
            if pid_in(name, "jv", |s| s == "h").is_some_and(gone) {
                let _ = self.ip(&["link", "delete", name]);
            }
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        // Deleting a veth deletes its peer; the namespaces go once no process or
        // socket holds them (the kernel keeps closed TCP connections a while).
        let _ = self.ip(&["link", "delete", &self.host_link]);
        for ns in self.spaces.iter().chain([&self.switch]) {
            let _ = run_with(&self.iproute, &["netns", "delete", ns], None);
        }
    }
}
