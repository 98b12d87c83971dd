//! `junction cluster status|leave|peer-remove`, through a running node's HTTP API:
//! - `status`: what the node knows of its cluster (`GET /v1/cluster`), as a table
//!   or as JSON;
//! - `peer-remove NAME`: takes a node out of the meta group for good
//!   (`DELETE /v1/cluster/nodes/NAME`), from any node;
//! - `leave`: the node at `--url` removes itself;
//! - `join ROUTE…`: the node at `--url`, a cluster of one with nothing defined,
//!   restarts in place and joins the cluster at those cluster addresses
//!   (`POST /v1/cluster/join`).
//!
//! A node also joins by being started with `--join` (docs/cluster.md).

use crate::cli::ServeArgs;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// `junction cluster ...`.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ClusterCommand,
}

/// Subcommands of `junction cluster`.
#[derive(Debug, Clone, Subcommand)]
pub enum ClusterCommand {
    /// The nodes a running broker knows: meta role, id, and which are linked now.
    Status(StatusArgs),
    /// Remove a node from the cluster for good (its id is never reused); run
    /// against any node. Stop the removed node's process too.
    PeerRemove(PeerRemoveArgs),
    /// The node at --url removes itself from the cluster; stop its process after.
    Leave(StatusArgs),
    /// The node at --url (started with --cluster-listen and no --join, with
    /// nothing defined yet) joins the cluster at ROUTE: it restarts in place,
    /// forgets its cluster of one, and gets every definition of the cluster.
    Join(JoinArgs),
}

/// Flags of `junction cluster join`.
#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// Cluster addresses (host:port, or nats://host:port) of nodes of the
    /// cluster to join.
    #[arg(required = true, value_name = "ROUTE")]
    pub routes: Vec<String>,
    /// How to reach the broker that joins.
    #[command(flatten)]
    pub conn: StatusArgs,
}

/// Flags of `junction cluster peer-remove`.
#[derive(Debug, Clone, Args)]
pub struct PeerRemoveArgs {
    /// The node's name (as `junction cluster status` shows it).
    pub name: String,
    /// How to reach the broker.
    #[command(flatten)]
    pub conn: StatusArgs,
}

/// Flags of `junction cluster status`.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The broker's HTTP URL [default: the configuration's HTTP listener, or
    /// http://127.0.0.1:8080].
    #[arg(long = "url", value_name = "URL")]
    pub url: Option<String>,
    /// TOML configuration file to take the HTTP listener from.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the broker's JSON answer as it is.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for the answer.
    #[arg(long = "timeout", value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Runs `junction cluster ...`.
pub fn main(args: &ClusterArgs) -> ExitCode {
    let (what, result) = match &args.command {
        ClusterCommand::Status(a) => ("status", run_status(a)),
        ClusterCommand::PeerRemove(a) => ("peer-remove", run_remove(&a.conn, Some(&a.name))),
        ClusterCommand::Leave(a) => ("leave", run_remove(a, None)),
        ClusterCommand::Join(a) => ("join", run_join(a)),
    };
    match result {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(reason) => {
            eprintln!("junction cluster {what}: {reason}");
            ExitCode::from(1)
        }
    }
}

/// Removes `name` (or, without one, the node at the URL) from the cluster.
fn run_remove(args: &StatusArgs, name: Option<&str>) -> Result<String, String> {
    let base = base_url(args)?;
    crate::health::with_client(args.timeout, async |client| {
        let name = match name {
            Some(n) => n.to_string(),
            None => {
                let url = format!("{base}/v1/cluster");
                let v: serde_json::Value = client
                    .get(&url)
                    .send()
                    .await
                    .map_err(|e| format!("{url}: {e}"))?
                    .json()
                    .await
                    .map_err(|e| format!("{url}: not JSON: {e}"))?;
                v["nodes"]
                    .as_array()
                    .and_then(|ns| ns.iter().find(|n| n["this"] == true))
                    .and_then(|n| n["name"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| format!("{url} does not name the node answering"))?
            }
        };
        let url = format!("{base}/v1/cluster/nodes/{name}");
        let resp = client
            .delete(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(format!("node {name} removed from the cluster\n"));
        }
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        Err(format!(
            "{url} answered {status}: {}",
            body["message"].as_str().unwrap_or("")
        ))
    })
}

/// Asks the node at the URL to join the cluster at the routes.
fn run_join(args: &JoinArgs) -> Result<String, String> {
    let base = base_url(&args.conn)?;
    let url = format!("{base}/v1/cluster/join");
    let routes = args.routes.clone();
    crate::health::with_client(args.conn.timeout, async |client| {
        let resp = client
            .post(&url)
            .json(&serde_json::json!({ "routes": routes }))
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if status.is_success() {
            return Ok(format!(
                "the node at {base} restarts and joins the cluster at {}\n",
                routes.join(", ")
            ));
        }
        Err(format!(
            "{url} answered {status}: {}",
            body["message"].as_str().unwrap_or("")
        ))
    })
}

fn base_url(args: &StatusArgs) -> Result<String, String> {
    if let Some(u) = &args.url {
        return Ok(u.trim().trim_end_matches('/').to_string());
    }
    let config = ServeArgs {
        config: args.config.clone(),
        ..ServeArgs::default()
    }
    .load()
    .map_err(|e| e.to_string())?;
    match crate::health::local_http_addr(&config)? {
        Some(addr) => Ok(format!("http://{addr}")),
        None => Err("the configuration has no HTTP listener; pass --url".into()),
    }
}

fn run_status(args: &StatusArgs) -> Result<String, String> {
    let url = format!("{}/v1/cluster", base_url(args)?);
    let body: serde_json::Value = crate::health::with_client(args.timeout, async |client| {
        let resp = client
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{url} answered {status}"));
        }
        resp.json()
            .await
            .map_err(|e| format!("{url}: not JSON: {e}"))
    })?;
    if args.json {
        return Ok(format!("{body}\n"));
    }
    Ok(render(&body))
}

/// The answer of `/v1/cluster` as a table.
fn render(v: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
    let mut out = match v["name"].as_str() {
        Some(name) => format!(
            "cluster {name}, meta leader: {}\n",
            v["meta_leader"].as_str().unwrap_or("none yet")
        ),
        None => "not in a cluster (this node runs alone)\n".to_string(),
    };
    let leader = v["meta_leader"].as_str().unwrap_or("");
    let rows: Vec<[String; 7]> = v["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .map(|n| {
                    [
                        format!(
                            "{}{}",
                            s(&n["name"]),
                            if n["this"] == true { " *" } else { "" }
                        ),
                        n["id"].as_u64().map_or("-".to_string(), |i| i.to_string()),
                        if !leader.is_empty() && n["name"] == leader {
                            "leader"
                        } else if n["voter"] == true {
                            "voter"
                        } else if n["id"].is_u64() {
                            "learner"
                        } else {
                            "-"
                        }
                        .to_string(),
                        s(&n["addr"]),
                        if n["online"] == true {
                            "online"
                        } else {
                            "offline"
                        }
                        .to_string(),
                        s(&n["last_seen"]),
                        n["client_urls"]
                            .as_array()
                            .map(|u| u.iter().map(&s).collect::<Vec<_>>().join(","))
                            .unwrap_or_default(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let head = [
        "NODE",
        "ID",
        "ROLE",
        "CLUSTER ADDRESS",
        "STATE",
        "LAST SEEN",
        "CLIENT URLS",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: [&str; 7]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<w$}  ", w = width[i]));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(head));
    for r in &rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5], &r[6]]));
    }
    if let Some(d) = v["dropped_forwards"].as_u64().filter(|d| *d > 0) {
        out.push_str(&format!(
            "{d} messages could not be forwarded to a peer since start\n"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_with_this_node_marked() {
        let v = serde_json::json!({"name":"demo","meta_leader":"n1","dropped_forwards":0,"nodes":[
            {"name":"n1","id":1,"voter":true,"addr":"127.0.0.1:6222","online":true,"this":true,"last_seen":"t1","client_urls":["127.0.0.1:4222"]},
            {"name":"n2","id":2,"voter":true,"addr":"127.0.0.1:6223","online":false,"this":false,"last_seen":"t0","client_urls":[]},
            {"name":"n3","id":null,"voter":false,"addr":"127.0.0.1:6224","online":true,"this":false,"last_seen":"t2","client_urls":[]}]});
        assert_eq!(
            render(&v),
            "cluster demo, meta leader: n1\n\
             NODE  ID  ROLE    CLUSTER ADDRESS  STATE    LAST SEEN  CLIENT URLS\n\
             n1 *  1   leader  127.0.0.1:6222   online   t1         127.0.0.1:4222\n\
             n2    2   voter   127.0.0.1:6223   offline  t0\n\
             n3    -   -       127.0.0.1:6224   online   t2\n"
        );
    }
}
