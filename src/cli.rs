//! The command line: `junction serve`, and nats-server compatible flags.
//!
//! Run with no subcommand, `junction` behaves like `junction serve`, so tools that
//! start `nats-server -a 127.0.0.1 -p -1 -m 8222 -js -sd DIR` can start Junction
//! instead. Go's flag syntax is accepted: one or two dashes, `-flag=value`, and the
//! multi-letter short flags `-js`, `-sd`, `-DV`, `-VV`, `-DVV`.

use crate::config::{Config, ConfigError, listen_parts, parse_host};
use clap::{Args, Parser, Subcommand};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use std::path::PathBuf;

/// Junction: a multi-protocol message broker (NATS, MQTT, HTTP, WebSocket) over one
/// durable station engine.
#[derive(Debug, Parser)]
#[command(
    name = "junction",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    /// What to do; with none, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve` flags, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the broker (the default).
    Serve(Box<ServeArgs>),
    /// Print the version and exit.
    Version,
    /// Benchmark NATS, MQTT and HTTP servers by URL (NATS core, stations, MQTT, HTTP,
    /// idle connections, cross-protocol), like `nats bench` and `emqtt-bench`.
    #[command(long_about = crate::bench::LONG_ABOUT)]
    Bench(Box<crate::bench::BenchArgs>),
    /// Ask a broker's /healthz whether it is healthy: exit 0 on 200, 1 with the
    /// reason otherwise (for container healthchecks; no curl needed).
    Health(crate::health::HealthArgs),
    /// Put a running broker in lame-duck mode (SIGUSR2: /readyz answers 503, clients
    /// stay served), then wait; for a Kubernetes preStop hook.
    LameDuck(crate::lame_duck::LameDuckArgs),
    /// Cluster commands: `status` shows the nodes a running broker knows,
    /// `peer-remove` and `leave` take a node out (docs/cluster.md).
    Cluster(crate::cluster_cli::ClusterArgs),
    /// Make a bcrypt hash of a password for a user's `password` in the
    /// configuration (`[[auth.users]]`, `[[tenants.users]]`).
    Passwd(crate::passwd::PasswdArgs),
}

/// Flags of `junction serve`. Precedence: defaults, then the config file, then
/// `JUNCTION_*` environment variables, then these flags.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file: TOML, or nats-server's format when its name ends in
    /// `.conf` (the keys Junction supports; others are refused by line).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// NATS listener: host:port, :port, or off [default: :4222, on --addr's host].
    #[arg(long = "nats-listen", value_name = "ADDR")]
    pub nats_listen: Option<String>,
    /// MQTT listener: host:port, :port, or off [default: :1883, on --addr's host].
    #[arg(long = "mqtt-listen", value_name = "ADDR")]
    pub mqtt_listen: Option<String>,
    /// HTTP listener (REST API, WebSocket, web console, monitoring): host:port, :port,
    /// or off [default: :8080, on --addr's host].
    #[arg(long = "http-listen", value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Data directory [default: ./junction-data].
    #[arg(long = "data-dir", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log level when RUST_LOG is unset (error, warn, info, debug, trace).
    #[arg(long = "log-level", value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Listen host (nats-server `-a`): the NATS host, and the host of every listener
    /// given as :PORT or left at its default (MQTT, HTTP API and console, -m)
    /// [default: 0.0.0.0, every interface].
    #[arg(short = 'a', long = "addr", visible_alias = "net", value_name = "HOST")]
    pub addr: Option<String>,
    /// NATS client port (nats-server `-p`); -1 picks a random port.
    #[arg(
        short = 'p',
        long = "port",
        allow_negative_numbers = true,
        value_name = "PORT"
    )]
    pub port: Option<i32>,
    /// Extra monitoring port (nats-server `-m`: /varz, /connz, /healthz) on the --addr
    /// host; -1 random, 0 off. The HTTP listener serves these routes too.
    #[arg(
        short = 'm',
        long = "http_port",
        allow_negative_numbers = true,
        value_name = "PORT"
    )]
    pub http_port: Option<i32>,
    /// Server name shown to clients, in the console and in monitoring (nats-server
    /// `-n`) [default: the host name].
    #[arg(
        short = 'n',
        long = "name",
        visible_alias = "server_name",
        value_name = "NAME"
    )]
    pub name: Option<String>,
    /// User name every client must present (with --pass): NATS, MQTT, the HTTP API
    /// (Basic auth) and the web console.
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// Password for --user; required with it.
    #[arg(long = "pass", value_name = "PASSWORD")]
    pub pass: Option<String>,
    /// Token every client must present instead of a user: NATS auth_token, MQTT 5
    /// password (with no user name), HTTP `Authorization: Bearer` and the web console.
    #[arg(long = "auth", value_name = "TOKEN")]
    pub auth: Option<String>,
    /// Require TLS on the NATS port (nats-server `--tls`; needs --tlscert and
    /// --tlskey, which imply it).
    #[arg(long = "tls")]
    pub tls: bool,
    /// Server certificate chain, PEM (`tls.cert_file`).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key, PEM (`tls.key_file`).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Authorities client certificates are checked against (`tls.ca_file`).
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tls_ca_cert: Option<PathBuf>,
    /// Require client certificates signed by --tlscacert (`tls.verify`).
    #[arg(long = "tlsverify")]
    pub tls_verify: bool,
    /// Serve the JetStream API (nats-server `-js`); on by default in Junction.
    #[arg(long = "jetstream", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub jetstream: Option<bool>,
    /// Store directory (nats-server `-sd`); same as --data-dir.
    #[arg(long = "store_dir", value_name = "DIR")]
    pub store_dir: Option<PathBuf>,
    /// Append logs to this file instead of stderr (nats-server `-l`).
    #[arg(short = 'l', long = "log", value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Write the process id to this file (nats-server `-P`).
    #[arg(short = 'P', long = "pid", value_name = "FILE")]
    pub pid: Option<PathBuf>,
    /// Debug logging (nats-server `-D`; `-DV` for debug and trace).
    #[arg(short = 'D', long = "debug")]
    pub debug: bool,
    /// Trace logging (nats-server `-V`).
    #[arg(short = 'V', long = "trace")]
    pub trace: bool,
    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    pub version: bool,
    /// Send a signal to a running broker and exit, as nats-server's `--signal`:
    /// `reload` (SIGHUP), `reopen` (SIGUSR1: the log file), `ldm` (SIGUSR2, lame
    /// duck), `quit` (SIGINT), `term`
    /// (SIGTERM) or `stop` (SIGKILL), with `=PID`, or the process id read from
    /// `-P FILE` (or the configuration's `pid_file`).
    #[arg(long = "signal", value_name = "SIGNAL[=PID]")]
    pub signal: Option<String>,
    /// Cluster listener, host:port (nats-server `--cluster nats://H:P` and
    /// `--cluster_listen` are accepted too). Clustering is off without it.
    #[arg(
        long = "cluster-listen",
        visible_aliases = ["cluster_listen", "cluster"],
        value_name = "ADDR"
    )]
    pub cluster_listen: Option<String>,
    /// Peers' cluster addresses to join, comma-separated host:port (nats-server
    /// `--routes nats://H:P,...` is accepted too); may include this node.
    #[arg(
        long = "join",
        visible_alias = "routes",
        value_name = "ADDRS",
        value_delimiter = ','
    )]
    pub join: Vec<String>,
    /// Cluster name; every node of a cluster has the same [default: junction].
    #[arg(
        long = "cluster-name",
        visible_alias = "cluster_name",
        value_name = "NAME"
    )]
    pub cluster_name: Option<String>,
    /// Address peers dial to reach this node's cluster listener [default: the
    /// bound address] (nats-server `--cluster_advertise`).
    #[arg(
        long = "cluster-advertise",
        visible_alias = "cluster_advertise",
        value_name = "ADDR"
    )]
    pub cluster_advertise: Option<String>,
    /// Tiered storage: the S3 endpoint URL (RGW, MinIO, moto; AWS S3 when unset)
    /// (`tier.endpoint`). Keys are never flags (other users of the machine see
    /// a process's arguments): give them in the file or the environment.
    #[arg(long = "tier-endpoint", value_name = "URL")]
    pub tier_endpoint: Option<String>,
    /// Tiered storage: the bucket, which must exist; tiering is off without one
    /// (`tier.bucket`).
    #[arg(long = "tier-bucket", value_name = "BUCKET")]
    pub tier_bucket: Option<String>,
    /// Tiered storage: prefix of every object key [default: junction] (`tier.prefix`).
    #[arg(long = "tier-prefix", value_name = "PREFIX")]
    pub tier_prefix: Option<String>,
    /// Tiered storage: the region [default: AWS_REGION, else us-east-1] (`tier.region`).
    #[arg(long = "tier-region", value_name = "REGION")]
    pub tier_region: Option<String>,
    /// Tiered storage: allow a plain-HTTP endpoint (`tier.allow_http`).
    #[arg(long = "tier-allow-http")]
    pub tier_allow_http: bool,
    /// Tiered storage: memory for decoded remote blocks, bytes or a size such as
    /// 256MiB [default: 64MiB] (`tier.cache_bytes`).
    #[arg(long = "tier-cache-bytes", value_name = "SIZE")]
    pub tier_cache_bytes: Option<String>,
    /// Tiered storage: disk for remote blocks, bytes or a size such as 10GiB, 0
    /// for none [default: 1GiB] (`tier.disk_cache_bytes`).
    #[arg(long = "tier-disk-cache-bytes", value_name = "SIZE")]
    pub tier_disk_cache_bytes: Option<String>,
    /// Tiered storage: the disk cache's directory [default: <data-dir>/tier-cache]
    /// (`tier.disk_cache_dir`).
    #[arg(long = "tier-disk-cache-dir", value_name = "DIR")]
    pub tier_disk_cache_dir: Option<String>,
}

/// Long flags that Go's flag package also accepts with a single dash.
const GO_LONG_FLAGS: &[&str] = &[
    "addr",
    "net",
    "port",
    "http_port",
    "name",
    "server_name",
    "user",
    "pass",
    "auth",
    "jetstream",
    "store_dir",
    "log",
    "pid",
    "debug",
    "trace",
    "config",
    "version",
    "cluster",
    "cluster_listen",
    "cluster_name",
    "cluster_advertise",
    "routes",
    "tls",
    "tlscert",
    "tlskey",
    "tlscacert",
    "tlsverify",
    "signal",
];

/// Rewrites Go-style flags into the form clap parses.
pub fn normalize_args(args: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = args.into_iter();
    if let Some(program) = iter.next() {
        out.push(program);
    }
    let mut expect_value = false;
    for arg in iter {
        if expect_value || !arg.starts_with('-') || arg == "-" || arg == "--" {
            expect_value = false;
            out.push(arg);
            continue;
        }
        let body = arg.trim_start_matches('-');
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let mapped: Vec<String> = match name {
            "js" => vec!["--jetstream".into()],
            "sd" => vec!["--store_dir".into()],
            "sl" => vec!["--signal".into()],
            "DV" | "DVV" => vec!["-D".into(), "-V".into()],
            "VV" => vec!["-V".into()],
            n if GO_LONG_FLAGS.contains(&n) => vec![format!("--{n}")],
            _ => {
                out.push(arg);
                continue;
            }
        };
        let takes_value = !matches!(
            name,
            "js" | "jetstream"
                | "DV"
                | "DVV"
                | "VV"
                | "debug"
                | "trace"
                | "version"
                | "tls"
                | "tlsverify"
        );
        let last = mapped.len() - 1;
        for (i, m) in mapped.into_iter().enumerate() {
            match value {
                Some(v) if i == last => out.push(format!("{m}={v}")),
                _ => out.push(m),
            }
        }
        expect_value = takes_value && value.is_none();
    }
    out
}

impl ServeArgs {
    /// Builds the configuration: defaults, then the file, then `JUNCTION_*`
    /// environment variables, then these flags.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = &self.config {
            if !path.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            if path.extension().is_some_and(|e| e == "conf") {
                // nats-server's format, for the keys Junction supports.
                let settings = crate::nats_conf::read(path).map_err(ConfigError)?;
                figment = figment.merge(Serialized::globals(settings));
            } else {
                figment = figment.merge(Toml::file_exact(path));
            }
        }
        figment = figment.merge(
            Env::prefixed("JUNCTION_")
                .filter(|k| {
                    let k = k.as_str().to_ascii_lowercase();
                    (!k.starts_with("cluster_") || k.starts_with("cluster__"))
                        && (!k.starts_with("tier_") || k.starts_with("tier__"))
                })
                .split("__"),
        );
        let set = |f: Figment, key: &str, v: &Option<String>| match v {
            Some(v) => f.merge((key, v.clone())),
            None => f,
        };
        figment = set(figment, "nats_listen", &self.nats_listen);
        figment = set(figment, "mqtt_listen", &self.mqtt_listen);
        figment = set(figment, "http_listen", &self.http_listen);
        figment = set(figment, "server_name", &self.name);
        figment = set(figment, "log_level", &self.log_level);
        figment = set(figment, "auth.user", &self.user);
        figment = set(figment, "auth.password", &self.pass);
        figment = set(figment, "auth.token", &self.auth);
        // `JUNCTION_CLUSTER_LISTEN` as well as `JUNCTION_CLUSTER__LISTEN`.
        figment = figment.merge(
            Env::prefixed("JUNCTION_CLUSTER_")
                .filter(|k| !k.as_str().starts_with('_'))
                .map(|k| format!("cluster.{}", k.as_str().to_ascii_lowercase()).into()),
        );
        // `JUNCTION_TIER_BUCKET` as well as `JUNCTION_TIER__BUCKET`.
        figment = figment.merge(
            Env::prefixed("JUNCTION_TIER_")
                .filter(|k| !k.as_str().starts_with('_'))
                .map(|k| format!("tier.{}", k.as_str().to_ascii_lowercase()).into()),
        );
        figment = set(figment, "tier.endpoint", &self.tier_endpoint);
        figment = set(figment, "tier.bucket", &self.tier_bucket);
        figment = set(figment, "tier.prefix", &self.tier_prefix);
        figment = set(figment, "tier.region", &self.tier_region);
        figment = set(figment, "tier.cache_bytes", &self.tier_cache_bytes);
        figment = set(
            figment,
            "tier.disk_cache_bytes",
            &self.tier_disk_cache_bytes,
        );
        figment = set(figment, "tier.disk_cache_dir", &self.tier_disk_cache_dir);
        if self.tier_allow_http {
            figment = figment.merge(("tier.allow_http", true));
        }
        figment = set(figment, "cluster.listen", &self.cluster_listen);
        figment = set(figment, "cluster.name", &self.cluster_name);
        figment = set(figment, "cluster.advertise", &self.cluster_advertise);
        if !self.join.is_empty() {
            figment = figment.merge(("cluster.join", self.join.clone()));
        }
        if let Some(dir) = self.data_dir.as_ref().or(self.store_dir.as_ref()) {
            figment = figment.merge(("data_dir", dir.clone()));
        }
        if let Some(js) = self.jetstream {
            figment = figment.merge(("jetstream", js));
        }
        if let Some(log) = &self.log {
            figment = figment.merge(("log_file", log.clone()));
        }
        if let Some(pid) = &self.pid {
            figment = figment.merge(("pid_file", pid.clone()));
        }
        if let Some(f) = &self.tls_cert {
            figment = figment.merge(("tls.cert_file", f.clone()));
        }
        if let Some(f) = &self.tls_key {
            figment = figment.merge(("tls.key_file", f.clone()));
        }
        if let Some(f) = &self.tls_ca_cert {
            figment = figment.merge(("tls.ca_file", f.clone()));
        }
        if self.tls_verify {
            figment = figment.merge(("tls.verify", true));
        }
        if self.trace {
            figment = figment.merge(("log_level", "trace"));
        } else if self.debug {
            figment = figment.merge(("log_level", "debug"));
        }
        let mut config: Config = figment
            .extract()
            .map_err(|e| ConfigError(describe_config_error(&e)))?;
        self.apply_nats_flags(&mut config)?;
        if (self.tls || self.tls_verify) && !config.tls.enabled() {
            return Err(ConfigError(
                "--tls needs --tlscert and --tlskey (or tls.cert_file and tls.key_file)".into(),
            ));
        }
        config.validate()?;
        config.config_file = self.config.clone();
        Ok(config)
    }

    /// Applies `-a`, `-p` and `-m`, as nats-server does: `-a` sets the NATS host and
    /// the `host` of every listener given without one; `-p` the NATS port; `-m` a
    /// monitoring listener on the NATS host.
    fn apply_nats_flags(&self, config: &mut Config) -> Result<(), ConfigError> {
        let addr = self.addr.as_deref().map(|a| a.trim().to_string());
        if let Some(a) = &addr {
            parse_host("--addr", a)?;
            config.host = Some(a.clone());
        }
        if addr.is_none() && self.port.is_none() && self.http_port.is_none() {
            return Ok(());
        }
        let current = listen_parts("nats_listen", &config.nats_listen)?;
        // The NATS host as written (None: it takes `host`).
        let host: Option<String> = match &addr {
            Some(a) => Some(a.clone()),
            None => current.and_then(|(ip, _)| ip).map(|ip| ip.to_string()),
        };
        let with_host = |port: u16| match &host {
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{port}"),
            Some(h) => format!("{h}:{port}"),
            None => format!(":{port}"),
        };
        if addr.is_some() || self.port.is_some() {
            let mut port = current.map_or(4222, |(_, p)| p);
            match self.port {
                Some(-1) => port = 0,
                Some(0) => port = 4222,
                Some(p) => {
                    port = u16::try_from(p)
                        .map_err(|_| ConfigError(format!("--port: {p} is not a valid port")))?
                }
                None => {}
            }
            config.nats_listen = with_host(port);
        }
        match self.http_port {
            None | Some(0) => {}
            Some(p) => {
                let p = if p == -1 {
                    0
                } else {
                    u16::try_from(p)
                        .map_err(|_| ConfigError(format!("--http_port: {p} is not a valid port")))?
                };
                config.monitor_listen = Some(with_host(p));
            }
        }
        Ok(())
    }
}

/// One line for a configuration error: where it is (file, environment or command
/// line), which key, and what is wrong.
pub fn describe_config_error(e: &figment::Error) -> String {
    use figment::Source;
    use figment::error::Kind;
    let (place, key) = match &e.metadata {
        Some(md) => match &md.source {
            Some(Source::File(path)) => {
                (format!("config file {}", path.display()), e.path.join("."))
            }
            _ if md.name.contains("environment") => (
                "environment".to_string(),
                format!(
                    "JUNCTION_{}",
                    e.path
                        .iter()
                        .map(|k| k.to_ascii_uppercase())
                        .collect::<Vec<_>>()
                        .join("__")
                ),
            ),
            _ => ("command line".to_string(), e.path.join(".")),
        },
        None => ("configuration".to_string(), e.path.join(".")),
    };
    let what = match &e.kind {
        Kind::UnknownField(field, expected) => {
            let key = if key.is_empty() {
                field.clone()
            } else {
                key.clone()
            };
            return format!(
                "{place}: unknown key '{key}' (known keys here: {})",
                expected.join(", ")
            );
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            let expected = match expected.as_str() {
                "usize" | "u64" => "a whole number, 0 or more",
                "u32" => "a whole number from 0 to 4294967295",
                "u16" => "a whole number from 0 to 65535",
                "u8" => "a whole number from 0 to 255",
                "i64" | "i32" => "a whole number",
                other => other,
            };
            format!("expected {expected}, found {actual}")
        }
        Kind::Message(m) if m.contains("TOML parse error") => {
            // toml's message is several lines: the position, the source line, a caret
            // and the reason. Keep the position and the reason.
            let lines: Vec<&str> = m.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let position = lines.first().copied().unwrap_or("TOML parse error");
            let reason = lines
                .last()
                .map(|l| l.trim_start_matches(|c: char| c == '|' || c == '^' || c.is_whitespace()))
                .unwrap_or("");
            return one_line(&format!("{place}: {position}: {reason}"));
        }
        other => other.to_string(),
    };
    if key.is_empty() {
        one_line(&format!("{place}: {what}"))
    } else {
        one_line(&format!("{place}: {key}: {what}"))
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn go_flags_are_rewritten() {
        assert_eq!(
            norm(&[
                "j",
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "-js",
                "-sd=/tmp/x",
                "-DV"
            ]),
            vec![
                "j",
                "-a",
                "127.0.0.1",
                "-p",
                "-1",
                "--jetstream",
                "--store_dir=/tmp/x",
                "-D",
                "-V"
            ]
        );
        assert_eq!(
            norm(&["j", "-port", "5", "--sd", "d", "-js=false"]),
            vec!["j", "--port", "5", "--store_dir", "d", "--jetstream=false"]
        );
        assert_eq!(
            norm(&["j", "serve", "--nats-listen", ":1"]),
            vec!["j", "serve", "--nats-listen", ":1"]
        );
    }

    #[test]
    fn flags_parse_and_apply() {
        let cli = Cli::try_parse_from(norm(&[
            "junction",
            "-a",
            "127.0.0.1",
            "-p",
            "-1",
            "-m",
            "8222",
            "-js",
            "-sd",
            "/tmp/d",
            "--user",
            "u",
            "--pass",
            "p",
        ]))
        .unwrap();
        assert!(cli.command.is_none());
        let c = cli.serve.load().unwrap();
        assert_eq!(c.nats_listen, "127.0.0.1:0");
        assert_eq!(c.monitor_listen.as_deref(), Some("127.0.0.1:8222"));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/d"));
        assert!(c.jetstream);
        assert_eq!(c.auth.user.as_deref(), Some("u"));
    }

    #[test]
    fn tier_flags_set_the_tier_section_over_the_environment() {
        let cli = Cli::try_parse_from([
            "junction",
            "--tier-endpoint",
            "http://127.0.0.1:7480",
            "--tier-bucket",
            "archive",
            "--tier-prefix",
            "prod",
            "--tier-region",
            "eu-west-1",
            "--tier-allow-http",
            "--tier-cache-bytes",
            "256MiB",
            "--tier-disk-cache-bytes",
            "10GiB",
            "--tier-disk-cache-dir",
            "/var/cache/junction",
        ])
        .unwrap();
        let c = cli.serve.load().unwrap();
        assert_eq!(c.tier.endpoint.as_deref(), Some("http://127.0.0.1:7480"));
        assert_eq!(c.tier.bucket.as_deref(), Some("archive"));
        assert_eq!(c.tier.prefix, "prod");
        assert_eq!(c.tier.region.as_deref(), Some("eu-west-1"));
        assert!(c.tier.allow_http);
        assert_eq!(c.tier.cache_bytes, Some(256 * 1024 * 1024));
        assert_eq!(c.tier.disk_cache_bytes, Some(10 * 1024 * 1024 * 1024));
        assert_eq!(
            c.tier.disk_cache_dir.as_deref(),
            Some(std::path::Path::new("/var/cache/junction"))
        );
        let bad = Cli::try_parse_from([
            "junction",
            "--tier-bucket",
            "b",
            "--tier-cache-bytes",
            "lots",
        ])
        .unwrap()
        .serve
        .load()
        .unwrap_err();
        assert!(bad.0.contains("cache_bytes"), "{}", bad.0);
    }

    #[test]
    fn cluster_flags_in_nats_server_and_junction_spelling() {
        for args in [
            vec![
                "junction",
                "--cluster",
                "nats://127.0.0.1:6222",
                "--routes",
                "nats://127.0.0.1:6223,nats://127.0.0.1:6224",
                "--cluster_name",
                "c1",
            ],
            vec![
                "junction",
                "--cluster-listen",
                "nats://127.0.0.1:6222",
                "--join",
                "nats://127.0.0.1:6223",
                "--join",
                "nats://127.0.0.1:6224",
                "--cluster-name",
                "c1",
            ],
            vec![
                "junction",
                "-cluster_listen",
                "nats://127.0.0.1:6222",
                "-routes",
                "nats://127.0.0.1:6223,nats://127.0.0.1:6224",
                "-cluster_name=c1",
            ],
        ] {
            let cli = Cli::try_parse_from(norm(&args)).unwrap();
            let c = cli.serve.load().unwrap();
            assert_eq!(c.cluster.listen.as_deref(), Some("nats://127.0.0.1:6222"));
            assert_eq!(
                c.cluster.join,
                ["nats://127.0.0.1:6223", "nats://127.0.0.1:6224"],
                "{args:?}"
            );
            assert_eq!(c.cluster.name.as_deref(), Some("c1"));
        }
    }

    #[test]
    fn addr_sets_the_host_of_every_listener_without_one() {
        let load = |args: &[&str]| {
            let mut all = vec!["junction"];
            all.extend_from_slice(args);
            Cli::try_parse_from(norm(&all))
                .unwrap()
                .serve
                .load()
                .unwrap()
        };
        let listen = |c: &Config, v: &str| c.listen("x", v).unwrap().unwrap().to_string();
        let c = load(&["-a", "127.0.0.1"]);
        assert_eq!(listen(&c, &c.nats_listen), "127.0.0.1:4222");
        assert_eq!(listen(&c, &c.mqtt_listen), "127.0.0.1:1883");
        assert_eq!(listen(&c, &c.http_listen), "127.0.0.1:8080");
        // `:PORT` takes the host; an explicit host wins (but for NATS, -a's own).
        let c = load(&[
            "-a",
            "localhost",
            "--mqtt-listen",
            ":1884",
            "--http-listen",
            "0.0.0.0:8081",
            "--nats-listen",
            "0.0.0.0:5222",
            "-m",
            "8222",
        ]);
        assert_eq!(listen(&c, &c.mqtt_listen), "127.0.0.1:1884");
        assert_eq!(listen(&c, &c.http_listen), "0.0.0.0:8081");
        assert_eq!(listen(&c, &c.nats_listen), "127.0.0.1:5222");
        assert_eq!(
            listen(&c, c.monitor_listen.as_deref().unwrap()),
            "127.0.0.1:8222"
        );
        // Without -a, every interface, as before.
        let c = load(&["-p", "-1"]);
        assert_eq!(listen(&c, &c.nats_listen), "0.0.0.0:0");
        assert_eq!(listen(&c, &c.mqtt_listen), "0.0.0.0:1883");
        // The `host` key does what -a does for the others.
        let c = load(&["--http-listen", ":9"]);
        let c = Config {
            host: Some("::1".into()),
            ..c
        };
        assert_eq!(listen(&c, &c.http_listen), "[::1]:9");
    }

    #[test]
    fn config_file_then_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.toml");
        std::fs::write(&path, "nats_listen = \"127.0.0.1:5000\"\n[limits]\nmax_payload = 2048\nping_interval = \"30s\"\n").unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            port: Some(6000),
            ..Default::default()
        };
        let c = args.load().unwrap();
        assert_eq!(c.nats_listen, "127.0.0.1:6000");
        assert_eq!(c.limits.max_payload, 2048);
        assert_eq!(c.limits.ping_interval, std::time::Duration::from_secs(30));
        std::fs::write(&path, "bogus_key = 1\n").unwrap();
        let err = args.load().unwrap_err().to_string();
        assert!(err.contains("bogus_key"), "{err}");
        assert!(!err.contains('\n'));
    }
}
