//! The one typed configuration, read from a TOML file, then `JUNCTION_*`
//! environment variables, then command-line flags (later wins).
//!
//! Documented field by field in `docs/configuration.md`.

use crate::engine::User;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Broker configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Server name shown to clients, in the console and in monitoring; defaults to
    /// the machine's host name (`junction` when it has none). The unique, random
    /// `server_id` is separate.
    pub server_name: Option<String>,
    /// Host of every listener given without one (`:port`, a bare port, and the
    /// defaults); `0.0.0.0` when unset. `-a HOST` sets it.
    pub host: Option<String>,
    /// NATS listener, `host:port`, `:port`, or `off`.
    pub nats_listen: String,
    /// MQTT listener, `host:port`, `:port`, or `off`.
    pub mqtt_listen: String,
    /// HTTP listener (REST, WebSocket, GUI, monitoring), `host:port`, `:port`, or `off`.
    pub http_listen: String,
    /// Extra nats-server style monitoring listener (`-m`), or unset.
    pub monitor_listen: Option<String>,
    /// Where durable data lives.
    pub data_dir: PathBuf,
    /// Serve the JetStream API (stations) to NATS clients.
    pub jetstream: bool,
    /// Log level when `RUST_LOG` is unset: error, warn, info, debug or trace.
    pub log_level: String,
    /// Write logs to this file instead of stderr.
    pub log_file: Option<PathBuf>,
    /// Write the process id to this file while running.
    pub pid_file: Option<PathBuf>,
    /// Reload by itself when the configuration file's content changes
    /// (checked every 2 s, through symlinks, so a Kubernetes ConfigMap update
    /// is seen), as SIGHUP does.
    pub config_watch: bool,
    /// The configuration file the broker was started with (`-c`), if any.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
    /// Protocol and resource limits.
    pub limits: Limits,
    /// Who may connect.
    pub auth: Auth,
    /// Tenants (`[[tenants]]`, nats-server's accounts): each with its own users,
    /// stations, subjects and MQTT sessions, invisible to the others.
    pub tenants: Vec<TenantConfig>,
    /// The tenant whose users are the operators (nats-server's
    /// `system_account`): they see every tenant in monitoring and the console,
    /// and edit tenants live. Default: the tenant named `$SYS`, if there is one;
    /// without either, the users of `[auth]` are the operators.
    pub system_account: Option<String>,
    /// TLS (`[tls]`, nats-server's `tls {}`): with a certificate, the NATS
    /// listener requires TLS, `mqtt_tls_listen` serves MQTT over TLS and
    /// `[http] tls` serves HTTPS.
    pub tls: TlsSettings,
    /// MQTT over TLS listener (with `[tls]`), `host:port`, `:port` (MQTT's is
    /// 8883), or `off`.
    pub mqtt_tls_listen: String,
    /// The HTTP gateway.
    pub http: Http,
    /// The MQTT front-end.
    pub mqtt: Mqtt,
    /// Clustering (`[cluster]`); off unless `listen` is set.
    pub cluster: ClusterSettings,
    /// Tiered storage on S3 (`[tier]`, `JUNCTION_TIER_*`); off unless `bucket`
    /// is set. See `docs/tiering.md`.
    pub tier: TierConfig,
    /// The notification centre (`[[notifications.webhooks]]`).
    pub notifications: crate::notify::Notifications,
    /// Other brokers (Junction or nats-server) that stations mirror or source
    /// from (`[remotes.<name>]`): a station names one in its metadata
    /// (`junction.remote.<origin stream> = "<name>"`), so the URL and the
    /// credentials stay in this file.
    pub remotes: std::collections::BTreeMap<String, RemoteConfig>,
}

/// A broker stations mirror or source from (`[remotes.<name>]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteConfig {
    /// NATS URL, or several separated by commas (`nats://host:4222`).
    pub url: String,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// Path of a `.creds` file (JWT and nkey seed), read at each connection.
    pub creds_file: Option<PathBuf>,
    /// The remote's JetStream API prefix (default `$JS.API`); a stream's
    /// `external.api` wins over it.
    pub api: Option<String>,
    /// The tenant (`[[tenants]]` name) whose stations may use it; unset: the
    /// default tenant's.
    pub tenant: Option<String>,
}

impl RemoteConfig {
    /// Checks one `[remotes.<name>]` entry.
    fn check(&self, name: &str) -> Result<(), ConfigError> {
        let at = format!("remotes.{name}");
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(ConfigError(format!(
                "{at}: a remote's name is 1 to 64 letters, digits, '-' or '_'"
            )));
        }
        if self.url.trim().is_empty() {
            return Err(ConfigError(format!("{at}.url is missing")));
        }
        for u in self.url.split(',') {
            let u = u.trim();
            if u.parse::<async_nats::ServerAddr>().is_err() || u.contains(char::is_whitespace) {
                return Err(ConfigError(format!("{at}.url: '{u}' is not a NATS URL")));
            }
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError(format!("{at}: user and password go together")));
        }
        let ways = usize::from(self.user.is_some())
            + usize::from(self.token.is_some())
            + usize::from(self.creds_file.is_some());
        if ways > 1 {
            return Err(ConfigError(format!(
                "{at}: give one of user and password, token, or creds_file"
            )));
        }
        if let Some(path) = &self.creds_file
            && let Err(e) = std::fs::read_to_string(path)
        {
            return Err(ConfigError(format!(
                "{at}.creds_file '{}': {e}",
                path.display()
            )));
        }
        if let Some(api) = &self.api
            && (api.is_empty() || api.contains(char::is_whitespace))
        {
            return Err(ConfigError(format!(
                "{at}.api: '{api}' is not a subject prefix"
            )));
        }
        Ok(())
    }

    /// The remote as the engine uses it.
    pub fn origin(&self) -> junction_api::RemoteOrigin {
        junction_api::RemoteOrigin {
            url: self.url.clone(),
            api: self.api.clone(),
            user: self.user.clone(),
            password: self.password.clone(),
            token: self.token.clone(),
            creds_file: self
                .creds_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
        }
    }

    /// Every `[remotes.<name>]` as the engine takes them.
    pub fn remote_origins(
        all: &std::collections::BTreeMap<String, RemoteConfig>,
    ) -> std::collections::HashMap<String, (junction_api::TenantId, junction_api::RemoteOrigin)>
    {
        all.iter()
            .map(|(n, r)| (n.clone(), (r.tenant_id(), r.origin())))
            .collect()
    }

    /// The tenant whose stations may use it.
    pub fn tenant_id(&self) -> junction_api::TenantId {
        match &self.tenant {
            Some(t) => junction_api::TenantId(std::sync::Arc::from(t.as_str())),
            None => junction_api::TenantId::default_tenant(),
        }
    }
}

/// Tiered storage on an S3-compatible bucket (`[tier]`, `JUNCTION_TIER_*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TierConfig {
    /// The S3 endpoint URL, e.g. `http://127.0.0.1:9000` (unset: AWS S3).
    pub endpoint: Option<String>,
    /// The bucket; tiering is off while it is unset.
    pub bucket: Option<String>,
    /// Prefix of every object key Junction writes [default: `junction`].
    pub prefix: String,
    /// The region [default: `AWS_REGION`, or `us-east-1`].
    pub region: Option<String>,
    /// Access key id [default: `AWS_ACCESS_KEY_ID`].
    pub access_key_id: Option<String>,
    /// Secret access key [default: `AWS_SECRET_ACCESS_KEY`].
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (a local S3 server) [default: false].
    pub allow_http: bool,
    /// Memory for decoded remote blocks: bytes or a size (`"256MiB"`)
    /// [default: 64 MiB].
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub cache_bytes: Option<u64>,
    /// Disk for remote blocks and footers, so a restart starts warm: bytes or
    /// a size (`"10GiB"`), 0 for no disk cache [default: 1 GiB].
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub disk_cache_bytes: Option<u64>,
    /// The disk cache's directory [default: `<data_dir>/tier-cache`].
    pub disk_cache_dir: Option<std::path::PathBuf>,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            endpoint: None,
            bucket: None,
            prefix: "junction".into(),
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            cache_bytes: None,
            disk_cache_bytes: None,
            disk_cache_dir: None,
        }
    }
}

impl TierConfig {
    /// Default block cache: 64 MiB.
    pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
    /// Default disk cache: 1 GiB.
    pub const DEFAULT_DISK_CACHE_BYTES: u64 = 1024 * 1024 * 1024;

    /// The settings the storage crate takes, or `None` when tiering is off;
    /// the disk cache goes under `data_dir` unless `disk_cache_dir` is set.
    pub fn settings(
        &self,
        data_dir: &std::path::Path,
    ) -> Result<Option<junction_storage::tier::TierSettings>, ConfigError> {
        let Some(bucket) = self.bucket.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if bucket.is_empty() {
            return Err(ConfigError("tier.bucket: must not be empty".into()));
        }
        if let Some(e) = &self.endpoint {
            let scheme_ok = e.starts_with("https://") || e.starts_with("http://");
            if !scheme_ok {
                return Err(ConfigError(format!(
                    "tier.endpoint: '{e}' is not an http:// or https:// URL"
                )));
            }
            if e.starts_with("http://") && !self.allow_http {
                return Err(ConfigError(format!(
                    "tier.endpoint: '{e}' is plain HTTP; set tier.allow_http = true to use it"
                )));
            }
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(ConfigError(
                "tier: access_key_id and secret_access_key go together".into(),
            ));
        }
        let cache_bytes = self.cache_bytes.unwrap_or(Self::DEFAULT_CACHE_BYTES);
        if cache_bytes < 1024 * 1024 {
            return Err(ConfigError(
                "tier.cache_bytes: must be at least 1MiB".into(),
            ));
        }
        Ok(Some(junction_storage::tier::TierSettings {
            endpoint: self.endpoint.clone(),
            bucket: bucket.to_string(),
            prefix: self.prefix.clone(),
            region: self.region.clone(),
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
            allow_http: self.allow_http,
            cache_bytes,
            disk_cache_bytes: self
                .disk_cache_bytes
                .unwrap_or(Self::DEFAULT_DISK_CACHE_BYTES),
            disk_cache_dir: Some(
                self.disk_cache_dir
                    .clone()
                    .unwrap_or_else(|| data_dir.join("tier-cache")),
            ),
        }))
    }
}

/// Clustering (`[cluster]`, `JUNCTION_CLUSTER_*`, `--cluster-listen`, `--join`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSettings {
    /// The cluster's name; every node of one cluster has the same
    /// [default: `junction`].
    pub name: Option<String>,
    /// Where this node listens for its peers, `host:port` (also `nats://host:port`,
    /// as nats-server's `--cluster`). Clustering is off while it is unset.
    pub listen: Option<String>,
    /// Peers' cluster addresses to dial, `host:port` or `nats://host:port` (one is
    /// enough: the mesh completes from any node). May name this node too. A
    /// comma-separated string is accepted (environment variables).
    #[serde(deserialize_with = "comma_list")]
    pub join: Vec<String>,
    /// The address peers dial to reach this node [default: the bound listen
    /// address].
    pub advertise: Option<String>,
    /// Meta log entries between snapshots of the meta group [default: 1000]. A
    /// node that joins, or that was down while the log moved past a snapshot, is
    /// sent the snapshot.
    pub meta_snapshot_every: Option<u64>,
    /// How long a replicated station's replica may stay unreachable before its
    /// leader re-places it on a spare node (one that has no replica of the
    /// station), when there is one [default: 5m].
    #[serde(with = "humantime_serde")]
    pub replica_replace_after: Option<Duration>,
    /// Raft log entries between snapshots of a replicated station's group
    /// [default: 8192]. A snapshot streams the station from the store to a
    /// file; the log before it is then purged (a quarter of the interval is
    /// kept), and a replica too far behind, or a new one, is sent the
    /// snapshot.
    pub replica_snapshot_entries: Option<u64>,
}

/// A list, or one comma-separated string.
fn comma_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        OneOrMany::Many(v) => v,
    })
}

impl ClusterSettings {
    /// `nats://host:port` or `host:port` as `host:port`.
    pub fn strip_scheme(addr: &str) -> String {
        let a = addr.trim();
        let a = a
            .strip_prefix("nats://")
            .or_else(|| a.strip_prefix("nats-route://"))
            .or_else(|| a.strip_prefix("tcp://"))
            .unwrap_or(a);
        // A user:password@ part (nats-server route URLs) is not used.
        let a = a.rsplit_once('@').map_or(a, |(_, h)| h);
        a.trim_end_matches('/').to_string()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.name
            && (name.is_empty() || name.contains(|c: char| c.is_whitespace()))
        {
            return Err(ConfigError(format!(
                "cluster.name: '{name}' must be non-empty without spaces"
            )));
        }
        if let Some(listen) = &self.listen {
            let l = Self::strip_scheme(listen);
            if !l.contains(':') {
                return Err(ConfigError(format!(
                    "cluster.listen: '{listen}' must be host:port"
                )));
            }
        }
        for j in &self.join {
            let a = Self::strip_scheme(j);
            match a.rsplit_once(':') {
                Some((h, p)) if !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0) => {}
                _ => {
                    return Err(ConfigError(format!(
                        "cluster.join: '{j}' must be host:port"
                    )));
                }
            }
        }
        if !self.join.is_empty() && self.listen.is_none() {
            return Err(ConfigError(
                "cluster.join needs cluster.listen (--cluster-listen): peers must be able to reach this node".into(),
            ));
        }
        if self.meta_snapshot_every == Some(0) {
            return Err(ConfigError(
                "cluster.meta_snapshot_every: must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            server_name: None,
            host: None,
            nats_listen: ":4222".into(),
            mqtt_listen: ":1883".into(),
            http_listen: ":8080".into(),
            monitor_listen: None,
            data_dir: PathBuf::from("./junction-data"),
            jetstream: true,
            log_level: "info".into(),
            log_file: None,
            pid_file: None,
            config_watch: false,
            config_file: None,
            limits: Limits::default(),
            auth: Auth::default(),
            tenants: Vec::new(),
            system_account: None,
            tls: TlsSettings::default(),
            mqtt_tls_listen: "off".into(),
            http: Http::default(),
            mqtt: Mqtt::default(),
            cluster: ClusterSettings::default(),
            tier: TierConfig::default(),
            notifications: crate::notify::Notifications::default(),
            remotes: std::collections::BTreeMap::new(),
        }
    }
}

/// The MQTT front-end (`[mqtt]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt {
    /// Largest MQTT packet accepted, in bytes (advertised as Maximum Packet Size).
    pub max_packet_size: u32,
    /// QoS 1/2 publishes a client may have unacknowledged (Receive Maximum).
    pub receive_maximum: u16,
    /// Topic aliases a client may use (Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Highest keep-alive in seconds (0 = as the client asks; 65535, mosquitto's
    /// default, by default); MQTT 5 clients are told through Server Keep Alive,
    /// MQTT 3.1.1 clients asking for more (or for none) are refused below 65535.
    pub max_keep_alive: u16,
    /// mosquitto's spelling of `max_keep_alive`, for a `mosquitto.conf` moved
    /// over as it is; when given, it wins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keepalive: Option<u16>,
    /// Longest session expiry granted, in seconds.
    pub max_session_expiry: u32,
    /// Live QoS 1/2 messages queued per client beyond its Receive Maximum; one more
    /// disconnects the client as a slow consumer.
    pub max_queued_messages: usize,
    /// How often `$SYS/broker/...` topics are refreshed (`0s` turns them off).
    #[serde(with = "humantime_serde")]
    pub sys_interval: Duration,
    /// Topic authorization: publish and subscribe filters denied per user.
    pub acl: Vec<junction_mqtt::AclRule>,
    /// Flapping detection (EMQX's): a client id that connects `max_count`
    /// times within `window` is banned for `ban_for` (0: off, the default).
    pub flapping: Flapping,
    /// Bridges to other MQTT brokers (`[[mqtt.bridges]]`, mosquitto's
    /// `connection` sections).
    pub bridges: Vec<junction_mqtt::BridgeConfig>,
    /// Deliver the front-end's lineage markers to MQTT 5 subscribers as user
    /// properties, after the publisher's own (off: forwarded unaltered).
    pub lineage_properties: bool,
    /// MQTT 5 Response Information: a client that sets Request Response
    /// Information gets `<prefix>/<client id>` in CONNACK (`None`, the
    /// default: nothing, as mosquitto).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_information: Option<String>,
}

/// `[mqtt] flapping = { max_count = 15, window = "1m", ban_for = "5m" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Flapping {
    /// Connects of one client id within `window` that ban it (0: never).
    pub max_count: u32,
    /// The window connects are counted in.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the ban lasts.
    #[serde(with = "humantime_serde")]
    pub ban_for: Duration,
}

impl Default for Flapping {
    fn default() -> Self {
        Flapping {
            max_count: 0,
            window: Duration::from_secs(60),
            ban_for: Duration::from_secs(300),
        }
    }
}

impl Default for Mqtt {
    fn default() -> Self {
        let d = junction_mqtt::MqttOptions::default();
        Mqtt {
            max_packet_size: d.max_packet_size,
            receive_maximum: d.receive_maximum,
            topic_alias_maximum: d.topic_alias_maximum,
            max_keep_alive: d.max_keep_alive,
            max_keepalive: None,
            max_session_expiry: d.max_session_expiry,
            max_queued_messages: d.max_queued_messages,
            sys_interval: d.sys_interval,
            acl: d.acl,
            flapping: Flapping::default(),
            bridges: Vec::new(),
            lineage_properties: d.lineage_properties,
            response_information: d.response_information,
        }
    }
}

impl Mqtt {
    /// The front-end's options.
    pub fn options(&self) -> junction_mqtt::MqttOptions {
        junction_mqtt::MqttOptions {
            max_packet_size: self.max_packet_size,
            receive_maximum: self.receive_maximum,
            topic_alias_maximum: self.topic_alias_maximum,
            max_keep_alive: self.max_keepalive.unwrap_or(self.max_keep_alive),
            max_session_expiry: self.max_session_expiry,
            max_queued_messages: self.max_queued_messages,
            sys_interval: self.sys_interval,
            acl: self.acl.clone(),
            lineage_properties: self.lineage_properties,
            response_information: self.response_information.clone(),
            ..junction_mqtt::MqttOptions::default()
        }
    }
}

/// TLS for the client listeners (`[tls]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// The server's certificate chain, PEM. Reloaded when the file changes.
    pub cert_file: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Authorities whose client certificates are accepted, PEM.
    pub ca_file: Option<PathBuf>,
    /// Require a client certificate signed by `ca_file`.
    pub verify: bool,
    /// Require a client certificate and log the client in as the user it
    /// names: an e-mail SAN, DNS SAN or URI SAN, or the subject DN
    /// (`CN=alice,O=Acme`), tried in that order (nats-server's
    /// `verify_and_map`). Such users may have no password.
    pub verify_and_map: bool,
    /// Time a TLS handshake may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// NATS: the TLS handshake comes first, before INFO (nats-server's
    /// `handshake_first`, async-nats's `tls_first`); otherwise INFO is sent in
    /// clear text and the client starts TLS after reading it.
    pub handshake_first: bool,
    /// Raise the `tls_certificate_expiring` alarm when the certificate expires
    /// within this long (`0s`: never).
    #[serde(with = "humantime_serde")]
    pub expiry_warning: Duration,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            cert_file: None,
            key_file: None,
            ca_file: None,
            verify: false,
            verify_and_map: false,
            timeout: Duration::from_secs(2),
            handshake_first: false,
            expiry_warning: Duration::from_secs(30 * 86400),
        }
    }
}

impl TlsSettings {
    /// Is TLS configured (a certificate given)?
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// The HTTP gateway (`[http]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Origins allowed to call the API from a browser (CORS); `"*"` allows any.
    pub cors_origins: Vec<String>,
    /// Time a request head has to arrive in full, from the connection opening or
    /// from the first byte of the next request; a partial head is answered 408.
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// Time a kept-alive connection may sit with no request before it is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// When the broker has credentials, `/varz`, `/connz` and `/metrics` require
    /// them too (they show client names, addresses and subscriptions).
    /// `/healthz` and `/readyz` stay open.
    pub monitoring_auth: bool,
    /// Serve HTTPS (and `wss://`) with the `[tls]` certificate instead of
    /// plain HTTP.
    pub tls: bool,
}

impl Default for Http {
    fn default() -> Self {
        Http {
            cors_origins: vec!["*".into()],
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            monitoring_auth: true,
            tls: false,
        }
    }
}

/// Protocol and resource limits. Defaults match nats-server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest message payload, headers included, in bytes.
    pub max_payload: usize,
    /// Longest NATS control line (arguments only), in bytes.
    pub max_control_line: usize,
    /// Bytes queued for one client before it is disconnected as a slow consumer.
    pub max_pending: usize,
    /// Most clients at once, all protocols together (0 = unlimited).
    pub max_connections: usize,
    /// Most sockets the NATS listener holds at once (0 = its share of the
    /// process's file descriptors, see `fd_budget`).
    pub max_nats_connections: usize,
    /// Most sockets the MQTT listener holds at once (0 = its share).
    pub max_mqtt_connections: usize,
    /// Most sockets the HTTP listener holds at once, WebSockets included (0 = its
    /// share).
    pub max_http_connections: usize,
    /// Most subscriptions per client (0 = unlimited).
    pub max_subscriptions: usize,
    /// Longest one socket write may take before the client is a slow consumer.
    #[serde(with = "humantime_serde")]
    pub write_deadline: Duration,
    /// How often an idle client is pinged.
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
    /// Unanswered pings before the connection is closed as stale.
    pub max_pings_out: u32,
    /// Time a client has to authenticate when auth is on.
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    /// Fence stored writes when the data directory's file system is this full,
    /// in percent (1 to 100; 0: never). Core messages, reads, acks and purges
    /// go on; stored writes resume by themselves once it is below again.
    pub disk_max_used_percent: u8,
    /// Fence stored writes, too, when less than this is free on the data
    /// directory's file system: bytes or a size (`"512MiB"`); unset: no floor.
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub disk_min_free: Option<u64>,
    /// The memory limit the memory self-check measures against: bytes or a
    /// size; unset: the cgroup's `memory.max`, else the machine's memory.
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub memory_max: Option<u64>,
    /// Raise `memory_high`, and refuse new connections, at this percent of
    /// the memory limit (1 to 100; 0: never).
    pub memory_high_percent: u8,
    /// Raise `consumer_lag:<tenant>/<station>/<group>` when a consumer group
    /// has more than this many messages to deliver (0: never).
    pub consumer_lag_alarm: u64,
    /// Raise `stuck_acks:<tenant>/<station>/<group>` when a consumer group has
    /// messages delivered and unacknowledged and its ack floor has not moved
    /// for this long (`"0s"`: never).
    #[serde(with = "humantime_serde")]
    pub stuck_ack_alarm: Duration,
    /// Raise `fsync_slow` when the 99th percentile of the data directory's
    /// fsyncs over the last 10 s is over this (`"0s"`: never).
    #[serde(with = "humantime_serde")]
    pub fsync_p99_alarm: Duration,
}

impl Limits {
    /// The self-checks' thresholds.
    pub fn self_checks(&self) -> crate::engine::SelfChecks {
        crate::engine::SelfChecks {
            memory_max: self.memory_max,
            memory_high_percent: self.memory_high_percent,
            consumer_lag_alarm: self.consumer_lag_alarm,
            stuck_ack_alarm: self.stuck_ack_alarm,
            fsync_p99_alarm: self.fsync_p99_alarm,
        }
    }

    /// When stored writes are fenced.
    pub fn disk_policy(&self) -> crate::engine::DiskPolicy {
        crate::engine::DiskPolicy {
            max_used_percent: self.disk_max_used_percent,
            min_free: self.disk_min_free,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_payload: 1024 * 1024,
            max_control_line: 4096,
            max_pending: 64 * 1024 * 1024,
            max_connections: 65536,
            max_nats_connections: 0,
            max_mqtt_connections: 0,
            max_http_connections: 0,
            max_subscriptions: 0,
            write_deadline: Duration::from_secs(10),
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            auth_timeout: Duration::from_secs(2),
            disk_max_used_percent: 95,
            disk_min_free: None,
            memory_max: None,
            memory_high_percent: 90,
            consumer_lag_alarm: 1_000_000,
            stuck_ack_alarm: Duration::from_secs(300),
            fsync_p99_alarm: Duration::from_millis(500),
        }
    }
}

/// Credentials. Setting any of them makes every protocol require authentication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// A single user name (with `password`).
    pub user: Option<String>,
    /// The single user's password.
    pub password: Option<String>,
    /// A token clients present instead of a user name.
    pub token: Option<String>,
    /// More users.
    pub users: Vec<User>,
    /// The user a client that presents no credentials connects as (nats-server's
    /// `no_auth_user`); it must be one of the configured users, in any tenant.
    pub no_auth_user: Option<String>,
    /// Failed logins from one address, or with one MQTT client id, within
    /// `failure_window` that ban it for `ban_for` (0: never). A banned address
    /// or client id is refused before any password check.
    pub ban_after_failures: u32,
    /// The window failed logins are counted in.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// How long a ban lasts.
    #[serde(with = "humantime_serde")]
    pub ban_for: Duration,
}

impl Default for Auth {
    fn default() -> Self {
        let ban = crate::engine::auth::BanPolicy::default();
        Auth {
            user: None,
            password: None,
            token: None,
            users: Vec::new(),
            no_auth_user: None,
            ban_after_failures: ban.after,
            failure_window: ban.window,
            ban_for: ban.ban_for,
        }
    }
}

/// The name of the operators' tenant when `system_account` names none.
pub const SYSTEM_TENANT: &str = "$SYS";

/// One tenant (`[[tenants]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    /// The tenant's name: letters, digits, `-` and `_`, at most 64.
    pub name: String,
    /// Its users (`[[tenants.users]]`); user names are unique across tenants.
    pub users: Vec<User>,
    /// Connection limits (nats-server's account `max_connections`).
    pub limits: TenantLimitsConfig,
    /// Station limits (nats-server's account `jetstream {}`).
    pub jetstream: TenantJetStreamConfig,
    /// Subjects other tenants may import (`exports = [{ stream = "public.>" }]`).
    pub exports: Vec<ExportConfig>,
    /// Subjects imported from other tenants (`[[tenants.imports]]`).
    pub imports: Vec<ImportConfig>,
}

/// One export: subjects other tenants may import.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The subjects (a filter).
    pub stream: String,
}

/// One import: another tenant's exported subjects, delivered here.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportConfig {
    /// Where from.
    pub stream: ImportSource,
    /// Put in front of the subjects here (`prefix.public.x`); none keeps them.
    #[serde(default)]
    pub prefix: Option<String>,
}

/// The tenant and subjects an import takes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportSource {
    /// The exporting tenant.
    pub tenant: String,
    /// The subjects (within one of its exports).
    pub subject: String,
}

/// Is the filter `inner` within the filter `outer` (every subject it matches,
/// `outer` matches)?
fn filter_within(inner: &str, outer: &str) -> bool {
    let (i, o): (Vec<&str>, Vec<&str>) = (inner.split('.').collect(), outer.split('.').collect());
    for (k, ot) in o.iter().enumerate() {
        match (*ot, i.get(k)) {
            (">", Some(_)) => return true,
            (_, None) => return false,
            ("*", Some(&">")) => return false,
            ("*", Some(_)) => {}
            (a, Some(b)) if a == *b => {}
            _ => return false,
        }
    }
    i.len() == o.len()
}

impl Config {
    /// The stream imports of every tenant, checked against the exports.
    pub fn stream_imports(&self) -> Result<Vec<crate::engine::StreamImport>, ConfigError> {
        let mut out = Vec::new();
        for t in &self.tenants {
            for i in &t.imports {
                let source = &i.stream;
                let Some(exporter) = self.tenants.iter().find(|e| e.name == source.tenant) else {
                    return Err(ConfigError(format!(
                        "tenants '{}': imports from '{}', which is not a tenant",
                        t.name, source.tenant
                    )));
                };
                if !exporter
                    .exports
                    .iter()
                    .any(|e| filter_within(&source.subject, &e.stream))
                {
                    return Err(ConfigError(format!(
                        "tenants '{}': imports '{}' from '{}', which does not export it",
                        t.name, source.subject, source.tenant
                    )));
                }
                let filter =
                    junction_api::SubjectFilter::new(source.subject.clone()).map_err(|e| {
                        ConfigError(format!(
                            "tenants '{}': import '{}': {e}",
                            t.name, source.subject
                        ))
                    })?;
                if let Some(p) = &i.prefix
                    && junction_api::Subject::new(format!("{p}.x")).is_err()
                {
                    return Err(ConfigError(format!(
                        "tenants '{}': import prefix '{p}' is not a subject",
                        t.name
                    )));
                }
                out.push(crate::engine::StreamImport {
                    from: exporter.id(),
                    filter,
                    to: t.id(),
                    prefix: i.prefix.clone(),
                });
            }
        }
        Ok(out)
    }
}

/// `[[tenants]] limits = { max_connections = N }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantLimitsConfig {
    /// NATS and MQTT connections at once (NATS `-ERR 'maximum account active
    /// connections exceeded'`, MQTT CONNACK 0x97).
    pub max_connections: Option<usize>,
}

/// `[[tenants]] jetstream = { max_streams = N, max_consumers = N, max_file = "10G",
/// max_memory = "1G" }`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantJetStreamConfig {
    /// Stations (JetStream 10027, HTTP 429 `tenant_limit`).
    pub max_streams: Option<usize>,
    /// Consumer groups over all the tenant's stations (JetStream 10026).
    pub max_consumers: Option<usize>,
    /// Bytes of file storage (nats-server's account `max_file`): bytes or a size
    /// string (`"10G"`, `"512MiB"`, see [`crate::byte_size`]); `0` allows no file
    /// station, `-1` or unset no limit. Stations reserve their `max_bytes` against
    /// it (JetStream 10047, HTTP 507 `insufficient_storage`) and publishes are
    /// refused once the stored bytes would pass it (JetStream PubAck 10002, HTTP
    /// 507 `tenant_storage_full`, MQTT 5 0x97).
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub max_file: Option<u64>,
    /// Bytes of memory storage (nats-server's `max_mem`), as `max_file` for memory
    /// stations (JetStream 10028 on create).
    #[serde(deserialize_with = "crate::byte_size::optional")]
    pub max_memory: Option<u64>,
}

impl TenantConfig {
    /// The tenant's id.
    pub fn id(&self) -> junction_api::TenantId {
        junction_api::TenantId(std::sync::Arc::from(self.name.as_str()))
    }

    /// The limits the engine enforces for it (0 or none: no limit).
    pub fn engine_limits(&self) -> crate::engine::TenantLimits {
        crate::engine::TenantLimits {
            max_connections: self.limits.max_connections.unwrap_or(0),
            max_streams: self.jetstream.max_streams.unwrap_or(0),
            max_consumers: self.jetstream.max_consumers.unwrap_or(0),
            max_file: self.jetstream.max_file,
            max_memory: self.jetstream.max_memory,
        }
    }

    /// Refuses a name that is empty, reserved or holds other characters.
    /// `certificate_users`: users without a password are allowed (they log in
    /// with a TLS client certificate, `verify_and_map`).
    pub fn validate(&self, certificate_users: bool) -> Result<(), ConfigError> {
        let n = &self.name;
        if n == SYSTEM_TENANT {
            // The operators' tenant: only users.
            if !self.exports.is_empty() || !self.imports.is_empty() {
                return Err(ConfigError(format!(
                    "tenants '{n}': the system tenant holds operators; it has no exports or imports"
                )));
            }
        } else if n.is_empty() || n.len() > 64 {
            return Err(ConfigError(format!(
                "tenants: name '{n}' must have 1 to 64 characters"
            )));
        }
        if n != SYSTEM_TENANT
            && !n
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError(format!(
                "tenants: name '{n}' may hold only letters, digits, '-' and '_' (users of [auth] are in the default tenant $G)"
            )));
        }
        for u in self.users.iter().filter(|u| u.nkey.is_none()) {
            if u.user.is_empty() || (u.password.is_empty() && !certificate_users) {
                return Err(ConfigError(format!(
                    "tenants '{n}': every user needs a name and a password"
                )));
            }
        }
        Ok(())
    }
}

impl Auth {
    /// Refuses credentials that would let anyone in by accident: a user without a
    /// password, a password without a user, empty values, and a token together with
    /// a user. `certificate_users`: users without a password are allowed (they
    /// log in with a TLS client certificate, `verify_and_map`).
    pub fn validate(&self, certificate_users: bool) -> Result<(), ConfigError> {
        let err = |m: &str| Err(ConfigError(m.to_string()));
        if self.token.is_some() && self.user.is_some() {
            return err("auth: set either user/password or token, not both");
        }
        if self.token.as_deref() == Some("") {
            return err("auth.token is empty: give a token or remove the key");
        }
        match (&self.user, &self.password) {
            (Some(u), _) if u.is_empty() => return err("auth.user is empty"),
            (Some(_), None) => {
                return err("auth.user is set without auth.password (--pass): set both");
            }
            (Some(_), Some(p)) if p.is_empty() => {
                return err("auth.password is empty: an empty password would let anyone in");
            }
            (None, Some(_)) => {
                return err("auth.password is set without auth.user (--user): set both");
            }
            _ => {}
        }
        let mut seen = std::collections::HashSet::new();
        for u in self.users.iter().filter(|u| u.nkey.is_none()) {
            if u.user.is_empty() {
                return err("auth.users: a user has an empty name");
            }
            if u.password.is_empty() && !certificate_users {
                return Err(ConfigError(format!(
                    "auth.users: user '{}' has an empty password",
                    u.user
                )));
            }
            if !seen.insert(u.user.as_str()) || self.user.as_deref() == Some(u.user.as_str()) {
                return Err(ConfigError(format!(
                    "auth.users: user '{}' is listed twice",
                    u.user
                )));
            }
        }
        Ok(())
    }

    /// Every user, the single `user`/`password` pair included.
    pub fn all_users(&self) -> Vec<User> {
        let mut users = self.users.clone();
        if let Some(user) = &self.user {
            users.push(User::new(
                user.clone(),
                self.password.clone().unwrap_or_default(),
            ));
        }
        users
    }
}

impl Config {
    /// The tenant whose users are the operators: `system_account`, which must
    /// be a tenant, or the tenant `$SYS` if there is one.
    pub fn system_tenant(&self) -> Result<Option<String>, ConfigError> {
        match &self.system_account {
            Some(name) if self.tenants.iter().any(|t| &t.name == name) => Ok(Some(name.clone())),
            Some(name) => Err(ConfigError(format!(
                "system_account: '{name}' is not a tenant; add [[tenants]] name = \"{name}\" with the operators as its users"
            ))),
            None => Ok(self
                .tenants
                .iter()
                .any(|t| t.name == SYSTEM_TENANT)
                .then(|| SYSTEM_TENANT.to_string())),
        }
    }

    /// What each tenant exports, as configured.
    pub fn exports(&self) -> ahash::AHashMap<junction_api::TenantId, Vec<String>> {
        self.tenants
            .iter()
            .filter(|t| !t.exports.is_empty())
            .map(|t| (t.id(), t.exports.iter().map(|e| e.stream.clone()).collect()))
            .collect()
    }

    /// The authenticator for `[auth]` and `[[tenants]]`, or why they are refused.
    pub fn authenticator(&self) -> Result<crate::engine::Authenticator, ConfigError> {
        let tenants: Vec<(String, Vec<User>)> = self
            .tenants
            .iter()
            .map(|t| (t.name.clone(), t.users.clone()))
            .collect();
        let mut names = std::collections::HashSet::new();
        for (name, _) in &tenants {
            if !names.insert(name.as_str()) {
                return Err(ConfigError(format!("tenants: '{name}' is listed twice")));
            }
        }
        crate::engine::Authenticator::with_tenants(
            self.auth.all_users(),
            &tenants,
            self.auth.token.clone(),
            self.auth.no_auth_user.clone(),
        )
        .map(|a| {
            a.with_ban_policy(crate::engine::auth::BanPolicy {
                after: self.auth.ban_after_failures,
                window: self.auth.failure_window,
                ban_for: self.auth.ban_for,
            })
            .with_certificate_mapping(self.tls.enabled() && self.tls.verify_and_map)
            .with_flapping(crate::engine::auth::BanPolicy {
                after: self.mqtt.flapping.max_count,
                window: self.mqtt.flapping.window,
                ban_for: self.mqtt.flapping.ban_for,
            })
        })
        .map_err(|e| ConfigError(format!("auth: {e}")))
    }
}

/// A configuration value that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Parses a host: an IP address, `localhost`, `[v6]`, or a name that resolves.
pub fn parse_host(field: &str, value: &str) -> Result<IpAddr, ConfigError> {
    let v = value.trim();
    if v.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = v.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(ip);
    }
    let bad = || {
        ConfigError(format!(
            "{field}: '{value}' is not an IP address or a host name"
        ))
    };
    if v.is_empty() || v.contains(|c: char| c.is_whitespace() || c == ':' || c == '/') {
        return Err(bad());
    }
    use std::net::ToSocketAddrs;
    let mut addrs = (v, 0u16).to_socket_addrs().map_err(|_| bad())?;
    addrs.next().map(|a| a.ip()).ok_or_else(bad)
}

/// A listen value split into its explicit host, if it names one, and its port.
/// `None` means the listener is off.
pub fn listen_parts(
    field: &str,
    value: &str,
) -> Result<Option<(Option<IpAddr>, u16)>, ConfigError> {
    let v = value.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") || v.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let bad = || {
        ConfigError(format!(
            "{field}: '{value}' is not a listen address (host:port, :port or off)"
        ))
    };
    if let Some(port) = v.strip_prefix(':') {
        return Ok(Some((None, port.parse().map_err(|_| bad())?)));
    }
    if let Ok(port) = v.parse::<u16>() {
        return Ok(Some((None, port)));
    }
    if let Ok(addr) = v.parse::<SocketAddr>() {
        return Ok(Some((Some(addr.ip()), addr.port())));
    }
    if let Some((host, port)) = v.rsplit_once(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        let ip = parse_host(field, host).map_err(|_| bad())?;
        return Ok(Some((Some(ip), port)));
    }
    Err(bad())
}

/// Parses a listen address: `host:port`, `:port`, `port`, or `off`/`none`/empty
/// (disabled). A form without a host binds every interface (`0.0.0.0`); use
/// [`Config::listen`] to give it the configured `host` instead.
pub fn parse_listen(field: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    Ok(listen_parts(field, value)?
        .map(|(ip, port)| SocketAddr::new(ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port)))
}

/// The server name used when none is configured: the host name, as mosquitto and
/// EMQX name their nodes, or `junction` when the host has no usable name.
pub fn default_server_name() -> String {
    let host = gethostname::gethostname();
    match host.to_str() {
        Some(h) if valid_server_name(h) => h.to_string(),
        _ => "junction".to_string(),
    }
}

/// nats-server refuses names with spaces; so do we (and control characters).
fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Config {
    /// The host given to listeners configured without one: `host`, or every
    /// interface.
    pub fn default_host(&self) -> Result<IpAddr, ConfigError> {
        match &self.host {
            Some(h) => parse_host("host", h),
            None => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    /// Resolves one listener's address (`field` names it in errors); a form
    /// without a host takes [`Config::default_host`]. `None` means off.
    pub fn listen(&self, field: &str, value: &str) -> Result<Option<SocketAddr>, ConfigError> {
        match listen_parts(field, value)? {
            None => Ok(None),
            Some((Some(ip), port)) => Ok(Some(SocketAddr::new(ip, port))),
            Some((None, port)) => Ok(Some(SocketAddr::new(self.default_host()?, port))),
        }
    }

    /// Checks everything that can be checked before binding.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.default_host()?;
        self.listen("nats_listen", &self.nats_listen)?;
        self.listen("mqtt_listen", &self.mqtt_listen)?;
        let mqtt_tls = self.listen("mqtt_tls_listen", &self.mqtt_tls_listen)?;
        if self.tls.enabled() {
            crate::tls::server_config(&self.tls, &[])?;
        } else if mqtt_tls.is_some() || self.http.tls {
            return Err(ConfigError(
                "mqtt_tls_listen and http.tls need a certificate: set tls.cert_file and tls.key_file"
                    .into(),
            ));
        }
        self.listen("http_listen", &self.http_listen)?;
        if let Some(m) = &self.monitor_listen {
            self.listen("monitor_listen", m)?;
        }
        if let Some(name) = &self.server_name
            && !valid_server_name(name)
        {
            return Err(ConfigError(format!(
                "server_name: '{name}' must be 1 to 255 characters without spaces"
            )));
        }
        let certificate_users = self.tls.enabled() && self.tls.verify_and_map;
        self.auth.validate(certificate_users)?;
        for t in &self.tenants {
            t.validate(certificate_users)?;
        }
        self.authenticator()?;
        self.stream_imports()?;
        self.system_tenant()?;
        self.cluster.validate()?;
        self.tier.settings(&self.data_dir)?;
        self.notifications.validate().map_err(ConfigError)?;
        for (name, remote) in &self.remotes {
            remote.check(name)?;
            if let Some(t) = &remote.tenant
                && !self.tenants.iter().any(|x| &x.name == t)
            {
                return Err(ConfigError(format!(
                    "remotes.{name}.tenant: there is no tenant '{t}' in [[tenants]]"
                )));
            }
        }
        if self.limits.max_payload == 0 {
            return Err(ConfigError("limits.max_payload must be more than 0".into()));
        }
        if self.limits.memory_high_percent > 100 {
            return Err(ConfigError(format!(
                "limits.memory_high_percent must be 0 (never) to 100, not {}",
                self.limits.memory_high_percent
            )));
        }
        if self.limits.memory_max == Some(0) {
            return Err(ConfigError(
                "limits.memory_max must be more than 0 (leave it unset for the cgroup's or the machine's memory)".into(),
            ));
        }
        if self.limits.disk_max_used_percent > 100 {
            return Err(ConfigError(format!(
                "limits.disk_max_used_percent must be 0 (never) to 100, not {}",
                self.limits.disk_max_used_percent
            )));
        }
        if self.limits.max_control_line < 64 {
            return Err(ConfigError(
                "limits.max_control_line must be at least 64".into(),
            ));
        }
        if self.limits.max_pending < self.limits.max_payload {
            return Err(ConfigError(
                "limits.max_pending must be at least limits.max_payload".into(),
            ));
        }
        if self.mqtt.max_packet_size < 64 {
            return Err(ConfigError(
                "mqtt.max_packet_size must be at least 64".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for bridge in &self.mqtt.bridges {
            bridge.check().map_err(ConfigError)?;
            if !names.insert(bridge.name.as_str()) {
                return Err(ConfigError(format!(
                    "mqtt.bridges: two bridges are named '{}'",
                    bridge.name
                )));
            }
        }
        if self.mqtt.receive_maximum == 0 {
            return Err(ConfigError(
                "mqtt.receive_maximum must be more than 0".into(),
            ));
        }
        for rule in &self.mqtt.acl {
            for f in rule.deny_publish.iter().chain(&rule.deny_subscribe) {
                junction_mqtt::topic::map_filter(f).map_err(|e| {
                    ConfigError(format!("mqtt.acl: '{f}' is not a topic filter: {e}"))
                })?;
            }
        }
        if self.limits.ping_interval.is_zero() {
            return Err(ConfigError(
                "limits.ping_interval must be more than 0".into(),
            ));
        }
        if self.http.header_timeout.is_zero() {
            return Err(ConfigError(
                "http.header_timeout must be more than 0".into(),
            ));
        }
        if self.http.idle_timeout.is_zero() {
            return Err(ConfigError("http.idle_timeout must be more than 0".into()));
        }
        for origin in &self.http.cors_origins {
            let valid = !origin.is_empty() && origin.bytes().all(|b| b.is_ascii_graphic());
            if !valid {
                return Err(ConfigError(format!(
                    "http.cors_origins: '{origin}' is not an origin"
                )));
            }
        }
        match self.log_level.to_ascii_lowercase().as_str() {
            "error" | "warn" | "info" | "debug" | "trace" => {}
            other => {
                return Err(ConfigError(format!(
                    "log_level: '{other}' is not one of error, warn, info, debug, trace"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        let a = |s| parse_listen("x", s).unwrap();
        assert_eq!(a(":1883"), Some("0.0.0.0:1883".parse().unwrap()));
        assert_eq!(a("127.0.0.1:0"), Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(a("localhost:5"), Some("127.0.0.1:5".parse().unwrap()));
        assert_eq!(a("[::1]:7"), Some("[::1]:7".parse().unwrap()));
        assert_eq!(a("off"), None);
        assert!(parse_listen("x", "nope").is_err());
        assert!(parse_listen("x", "1.2.3.4:99999").is_err());
    }

    #[test]
    fn tenant_storage_limits_take_bytes_or_sizes() {
        use figment::providers::{Format, Serialized, Toml};
        let read = |text: &str| {
            figment::Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(text))
                .extract::<Config>()
                .map_err(|e| e.to_string())
        };
        let c = read(
            "[[tenants]]\nname = \"a\"\njetstream = { max_file = \"10G\", max_memory = \"512MiB\", max_streams = 3 }\n\
             [[tenants]]\nname = \"b\"\njetstream = { max_file = 1048576, max_memory = -1 }\n\
             [[tenants]]\nname = \"c\"\njetstream = { max_memory = \"1M\" }\n",
        )
        .unwrap();
        let js = |i: usize| c.tenants[i].jetstream.clone();
        assert_eq!(js(0).max_file, Some(10_000_000_000));
        assert_eq!(js(0).max_memory, Some(512 << 20));
        assert_eq!(js(0).max_streams, Some(3));
        assert_eq!(js(1).max_file, Some(1_048_576));
        assert_eq!(js(1).max_memory, None);
        assert_eq!(js(2).max_file, None);
        assert_eq!(js(2).max_memory, Some(1_000_000));
        for bad in ["\"10 bananas\"", "-5", "\"1.5G\"", "true"] {
            let text = format!("[[tenants]]\nname = \"a\"\njetstream = {{ max_file = {bad} }}\n");
            assert!(read(&text).is_err(), "max_file = {bad} is accepted");
        }
    }

    #[test]
    fn mqtt_response_information() {
        use figment::providers::{Format, Serialized, Toml};
        let read = |text: &str| {
            figment::Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(text))
                .extract::<Config>()
                .map(|c| c.mqtt.options().response_information)
                .map_err(|e| e.to_string())
        };
        assert_eq!(read(""), Ok(None));
        assert_eq!(
            read("[mqtt]\nresponse_information = \"resp\"\n"),
            Ok(Some("resp".to_string()))
        );
    }

    #[test]
    fn mqtt_max_keep_alive_in_both_spellings() {
        use figment::providers::{Format, Serialized, Toml};
        let read = |text: &str| {
            figment::Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(text))
                .extract::<Config>()
                .map(|c| c.mqtt.options().max_keep_alive)
                .map_err(|e| e.to_string())
        };
        assert_eq!(read(""), Ok(u16::MAX));
        assert_eq!(read("[mqtt]\nmax_keep_alive = 60\n"), Ok(60));
        // mosquitto's `max_keepalive`, which wins when both are given.
        assert_eq!(read("[mqtt]\nmax_keepalive = 30\n"), Ok(30));
        assert_eq!(
            read("[mqtt]\nmax_keep_alive = 60\nmax_keepalive = 30\n"),
            Ok(30)
        );
        assert!(read("[mqtt]\nmax_keepalive = 70000\n").is_err());
    }

    #[test]
    fn http_cors_origins() {
        assert_eq!(Config::default().http.cors_origins, vec!["*".to_string()]);
        let read = |text: &str| {
            use figment::providers::{Format, Serialized, Toml};
            figment::Figment::from(Serialized::defaults(Config::default()))
                .merge(Toml::string(text))
                .extract::<Config>()
                .ok()
        };
        let c = read("[http]\ncors_origins = [\"https://a.example\"]\n").unwrap();
        assert_eq!(c.http.cors_origins, vec!["https://a.example".to_string()]);
        assert!(c.validate().is_ok());
        assert!(read("[http]\nnope = 1\n").is_none());
        let c = read(
            "[http]\nheader_timeout = \"1s\"\nidle_timeout = \"5m\"\nmonitoring_auth = false\n\
             [limits]\nmax_http_connections = 100\n",
        )
        .unwrap();
        assert_eq!(c.http.header_timeout, Duration::from_secs(1));
        assert_eq!(c.http.idle_timeout, Duration::from_secs(300));
        assert!(!c.http.monitoring_auth);
        assert_eq!(c.limits.max_http_connections, 100);
        assert!(
            read("[http]\nheader_timeout = \"0s\"\n")
                .unwrap()
                .validate()
                .is_err()
        );
        let mut bad = Config::default();
        bad.http.cors_origins = vec!["https://a.example b".into()];
        assert!(bad.validate().is_err());
    }
}
