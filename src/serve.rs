//! Process wiring: bind every listener, start every front-end, and shut down
//! gracefully.

use crate::config::{Config, ConfigError};
use crate::engine::{EngineOptions, StationEngine};
use junction_api::{Broker, Engine};
use junction_http::MonitorSettings;
use junction_nats::NatsOptions;
use junction_nats::frame::Limits;
use rand::Rng;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound (port in use, no permission, bad address).
    #[error("cannot listen for {what} on {addr}: {}", bind_reason(source))]
    Bind {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The data directory or pid file could not be written.
    #[error("{0}")]
    Io(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another junction process (lock held)")]
    DataDirInUse(String),
}

/// Why a bind failed, in the words of the fix.
fn bind_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::AddrInUse => "address already in use (another process is listening there)".into(),
        K::PermissionDenied => "permission denied (ports below 1024 need privileges)".into(),
        K::AddrNotAvailable => "address not available (no interface has this address)".into(),
        _ => e.to_string(),
    }
}

/// Removes a data directory this start created, unless the start succeeds.
struct CreatedDir(Option<std::path::PathBuf>);

impl CreatedDir {
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes a file this start wrote (the pid file), unless the start succeeds.
struct CreatedFile(Option<std::path::PathBuf>);

impl CreatedFile {
    fn keep(&mut self) {
        self.0 = None;
    }
}

impl Drop for CreatedFile {
    fn drop(&mut self) {
        if let Some(file) = self.0.take() {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// A running broker.
pub struct Running {
    nats: Option<SocketAddr>,
    mqtt: Option<SocketAddr>,
    mqtt_tls: Option<SocketAddr>,
    http: Option<SocketAddr>,
    monitor: Option<SocketAddr>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
    engine: Arc<StationEngine>,
    pid_file: Option<std::path::PathBuf>,
    readiness: junction_http::Readiness,
    /// Lame-duck mode for the NATS listener: its clients are sent `"ldm": true`.
    lame_duck: tokio::sync::watch::Sender<bool>,
    /// Notified when the broker asks to restart in place (`cluster join`).
    restart: Arc<tokio::sync::Notify>,
    /// Reloads the configuration (SIGHUP, `POST /v1/server/reload`).
    reloader: Arc<crate::reload::Reloader>,
}

impl Running {
    /// Sets how the configuration is read again on a reload (as at start: the
    /// file, the environment, the flags). Without one, a reload is refused.
    pub fn set_config_loader(&self, loader: crate::reload::ConfigLoader) {
        self.reloader.set_loader(loader);
    }

    /// Reads the configuration again and applies what may change live
    /// ([`crate::reload`]); blocking. What changed, or why nothing did.
    pub fn reload(&self) -> Result<String, String> {
        self.reloader.reload()
    }

    /// Where NATS clients connect, if enabled.
    pub fn nats_addr(&self) -> Option<SocketAddr> {
        self.nats
    }

    /// Where MQTT clients connect, if enabled.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt
    }

    /// Where MQTT clients connect over TLS, if enabled.
    pub fn mqtt_tls_addr(&self) -> Option<SocketAddr> {
        self.mqtt_tls
    }

    /// The main HTTP listener, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http
    }

    /// The nats-server style monitoring listener (`-m`), if enabled.
    pub fn monitor_addr(&self) -> Option<SocketAddr> {
        self.monitor
    }

    /// The engine, for in-process inspection.
    pub fn engine(&self) -> &Arc<StationEngine> {
        &self.engine
    }

    /// A `nats://` URL for clients.
    pub fn nats_url(&self) -> String {
        match self.nats {
            Some(a) => format!("nats://{a}"),
            None => String::new(),
        }
    }

    /// Lame-duck mode (SIGUSR2, `junction lame-duck`): `/readyz` answers 503 so load
    /// balancers and Kubernetes Services send no new clients, and every NATS client
    /// is sent an INFO with `"ldm": true` (as nats-server does) so that it moves to
    /// another server of its `connect_urls`; every listener keeps serving; a
    /// shutdown follows.
    pub fn enter_lame_duck(&self) {
        self.readiness.set(false);
        self.lame_duck.send_replace(true);
    }

    /// Stops accepting, closes every connection after flushing it, and waits.
    pub async fn shutdown(mut self) {
        self.engine.record_lifecycle(false);
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
        // The connections' disconnects (and `server_stopping`) are stored.
        {
            let engine = self.engine.clone();
            let _ =
                tokio::task::spawn_blocking(move || engine.close_events(Duration::from_secs(5)))
                    .await;
        }
        // Every task that held the engine has ended; dropping the last handle closes
        // the store (its writer thread persists and exits).
        let engine = self.engine;
        // The meta group's Raft tasks hold the store: stop them first, so that the
        // store closes (fsynced) when the engine goes.
        if let Some(meta) = engine.meta() {
            meta.shutdown().await;
        }
        if Arc::strong_count(&engine) > 1 {
            tracing::warn!(
                handles = Arc::strong_count(&engine),
                "engine still referenced at shutdown; the store closes when they drop"
            );
        }
        tokio::task::spawn_blocking(move || {
            engine.save_snapshots();
            drop(engine)
        })
        .await
        .ok();
        if let Some(pid) = &self.pid_file {
            let _ = std::fs::remove_file(pid);
        }
        tracing::info!("Server Exiting..");
    }
}

/// A nats-server style server id: `N` and 55 base32 characters.
fn new_server_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let mut id = String::with_capacity(56);
    id.push('N');
    for _ in 0..55 {
        id.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    id
}

/// The console's URL: the bound address, or `localhost` when it listens on every
/// interface.
fn console_url(addr: SocketAddr, https: bool) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() => "localhost".to_string(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let scheme = if https { "https" } else { "http" };
    format!("{scheme}://{host}:{}/", addr.port())
}

/// The cluster listener's address: `host:port` or `nats://host:port`.
fn cluster_listen_addr(value: &str) -> Result<SocketAddr, StartError> {
    use std::net::ToSocketAddrs;
    let a = crate::config::ClusterSettings::strip_scheme(value);
    a.to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| {
            StartError::Config(crate::config::ConfigError(format!(
                "cluster.listen: '{value}' is not host:port"
            )))
        })
}

/// A bound address as peers and clients can dial it: every interface becomes
/// loopback's address only when nothing better is known.
fn advertised(a: SocketAddr) -> SocketAddr {
    if a.ip().is_unspecified() {
        match crate::config::parse_host("host", &crate::config::default_server_name()) {
            Ok(ip) if !ip.is_unspecified() => SocketAddr::new(ip, a.port()),
            _ => SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), a.port()),
        }
    } else {
        a
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

/// Starts the broker and returns once every listener is bound.
///
/// Every listener is bound before the data directory is touched, so a port in use
/// fails the start without creating anything; a start that fails after creating
/// the data directory removes it again.
pub async fn start(config: Config) -> Result<Running, StartError> {
    crate::tls::install_crypto_provider();
    config.validate()?;
    let nats_addr = config.listen("nats_listen", &config.nats_listen)?;
    let http_addr = config.listen("http_listen", &config.http_listen)?;
    let mqtt_addr = config.listen("mqtt_listen", &config.mqtt_listen)?;
    let mqtt_tls_addr = config.listen("mqtt_tls_listen", &config.mqtt_tls_listen)?;
    // TLS: the NATS listener requires it once a certificate is configured;
    // MQTT over TLS has its own port; HTTPS is asked for with `[http] tls`.
    let nats_tls = if config.tls.enabled() {
        Some(crate::tls::server_config(&config.tls, &[])?)
    } else {
        None
    };
    let http_tls = if config.http.tls {
        Some(crate::tls::server_config(&config.tls, &[b"http/1.1"])?)
    } else {
        None
    };
    let monitor_addr = match &config.monitor_listen {
        Some(m) => config.listen("monitor_listen", m)?,
        None => None,
    };
    let cluster_addr = match &config.cluster.listen {
        Some(l) => Some(cluster_listen_addr(l)?),
        None => None,
    };

    // Each listener gets its own share of the file descriptors (docs/configuration.md).
    let fd_limit = crate::fd_budget::raise_nofile_limit();
    let listener = |addr: &Option<SocketAddr>, explicit| crate::fd_budget::Listener {
        enabled: addr.is_some(),
        explicit,
    };
    let [nats_cap, mqtt_cap, http_cap] = crate::fd_budget::shares(
        fd_limit,
        [
            listener(&nats_addr, config.limits.max_nats_connections),
            listener(&mqtt_addr, config.limits.max_mqtt_connections),
            listener(&http_addr, config.limits.max_http_connections),
        ],
    );

    // Bind everything before serving anything, so a port in use fails the start.
    let nats_listener = match nats_addr {
        Some(a) => Some(bind("NATS", a).await?),
        None => None,
    };
    let http_listener = match http_addr {
        Some(a) => Some(bind("HTTP", a).await?),
        None => None,
    };
    let mqtt_listener = match mqtt_addr {
        Some(a) => Some(bind("MQTT", a).await?),
        None => None,
    };
    let mqtt_tls_listener = match mqtt_tls_addr {
        Some(a) => Some(bind("MQTT over TLS", a).await?),
        None => None,
    };
    let monitor_listener = match monitor_addr {
        Some(a) => Some(bind("monitoring (-m)", a).await?),
        None => None,
    };
    let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
    let (nats_bound, http_bound, monitor_bound, mqtt_bound) = (
        local(&nats_listener),
        local(&http_listener),
        local(&monitor_listener),
        local(&mqtt_listener),
    );
    let mqtt_tls_bound = local(&mqtt_tls_listener);

    let data_dir = config.data_dir.display().to_string();
    // The outermost directory this start creates, so a failed start removes all of it.
    let mut created = CreatedDir(
        config
            .data_dir
            .ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .take_while(|p| !p.exists())
            .last()
            .map(std::path::Path::to_path_buf),
    );
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| StartError::Io(format!("cannot create data directory {data_dir}: {e}")))?;

    // The pid file is written before the store opens: a start refused here has
    // started no storage threads that could still touch the data directory while
    // it is removed. A start that fails later removes the pid file again.
    let mut pid_written = CreatedFile(None);
    if let Some(pid) = &config.pid_file {
        std::fs::write(pid, std::process::id().to_string())
            .map_err(|e| StartError::Io(format!("cannot write pid file {}: {e}", pid.display())))?;
        pid_written.0 = Some(pid.clone());
    }

    let server_id = new_server_id();
    let server_name = config
        .server_name
        .clone()
        .unwrap_or_else(crate::config::default_server_name);
    let auth = config.authenticator()?;
    let store = junction_storage::Store::open(&config.data_dir).map_err(|e| match e {
        junction_storage::StorageError::Locked => StartError::DataDirInUse(data_dir.clone()),
        e => StartError::Io(format!("cannot open the store in {data_dir}: {e}")),
    })?;
    let engine = StationEngine::open(
        EngineOptions {
            server_name: server_name.clone(),
            server_id: server_id.clone(),
            max_connections: config.limits.max_connections,
            max_subscriptions: config.limits.max_subscriptions,
            auth,
            tenants: config
                .tenants
                .iter()
                .map(crate::config::TenantConfig::id)
                .collect(),
            imports: config.stream_imports()?,
            exports: config.exports(),
            disk: config.limits.disk_policy(),
            self_checks: config.limits.self_checks(),
            system_tenant: config
                .system_tenant()?
                .map(|n| junction_api::TenantId(std::sync::Arc::from(n.as_str()))),
            tenant_limits: config
                .tenants
                .iter()
                .map(|t| (t.id(), t.engine_limits()))
                .collect(),
            tier: match config.tier.settings(&config.data_dir)? {
                None => None,
                Some(settings) => Some(std::sync::Arc::new(
                    junction_storage::tier::Remote::s3(&settings)
                        .map_err(|e| StartError::Io(e.to_string()))?,
                )),
            },
        },
        store,
    )
    .map_err(|e| StartError::Io(format!("cannot recover stations in {data_dir}: {e}")))?;

    let shutdown = CancellationToken::new();
    engine.set_remotes(crate::config::RemoteConfig::remote_origins(&config.remotes));
    engine.start_sourcing(shutdown.clone());
    let restart = Arc::new(tokio::sync::Notify::new());
    {
        let restart = restart.clone();
        engine.set_restart_hook(Box::new(move || restart.notify_one()));
    }
    // Checked (at least 1) with the rest of the configuration.
    let snapshot_every = config
        .cluster
        .meta_snapshot_every
        .unwrap_or(junction_cluster::meta::SNAPSHOT_EVERY);
    if cluster_addr.is_some() {
        let name = config.cluster.name.as_deref().unwrap_or("junction");
        match junction_cluster::meta::stored_cluster(engine.store()) {
            Ok(Some(stored)) if stored != name => {
                return Err(StartError::Io(format!(
                    "data directory {data_dir} belongs to cluster {stored:?}, not {name:?} (cluster.name); use another data directory to join {name:?}"
                )));
            }
            Ok(_) => {}
            Err(e) => {
                return Err(StartError::Io(format!(
                    "cannot read the cluster identity in {data_dir}: {e}"
                )));
            }
        }
    }
    if let Some(listen) = cluster_addr {
        // Routes a `junction cluster join` wrote down (its own meta group is
        // forgotten at the first start after it).
        let joined = crate::engine::join_routes(engine.store())
            .await
            .map_err(|e| {
                StartError::Io(format!("cannot read the cluster join in {data_dir}: {e}"))
            })?;
        let node = config
            .server_name
            .clone()
            .unwrap_or_else(|| format!("{server_name}-{}", listen.port()));
        let client_urls = nats_bound
            .map(|a| vec![advertised(a).to_string()])
            .unwrap_or_default();
        let cluster_config = junction_cluster::ClusterConfig {
            name: config
                .cluster
                .name
                .clone()
                .unwrap_or_else(|| "junction".to_string()),
            node,
            listen,
            advertise: config
                .cluster
                .advertise
                .as_deref()
                .map(crate::config::ClusterSettings::strip_scheme),
            seeds: config
                .cluster
                .join
                .iter()
                .map(|j| crate::config::ClusterSettings::strip_scheme(j))
                .chain(joined)
                .collect(),
            client_urls,
            http_url: http_bound.map(|a| advertised(a).to_string()),
        };
        let host: std::sync::Weak<dyn junction_cluster::Host> = {
            let strong: Arc<dyn junction_cluster::Host> = engine.clone();
            Arc::downgrade(&strong)
        };
        let cluster = junction_cluster::Cluster::start(cluster_config, host, shutdown.clone())
            .await
            .map_err(|source| StartError::Bind {
                what: "cluster",
                addr: listen,
                source,
            })?;
        engine.attach_cluster(cluster.clone());
        let meta_host: std::sync::Weak<dyn junction_cluster::meta::MetaHost> = {
            let strong: Arc<dyn junction_cluster::meta::MetaHost> = engine.clone();
            Arc::downgrade(&strong)
        };
        let meta = junction_cluster::meta::MetaGroup::start(
            cluster,
            engine.store().clone(),
            Some(meta_host),
            snapshot_every,
        )
        .await
        .map_err(|e| StartError::Io(format!("cannot start the cluster's meta group: {e}")))?;
        if let Some(entries) = config.cluster.replica_snapshot_entries {
            meta.replicas().set_snapshot_every(entries);
        }
        engine.attach_meta(meta);
        if let Some(after) = config.cluster.replica_replace_after {
            engine.set_replica_replace_after(after);
        }
    }
    // The MQTT front-end serves its TCP listener and `/mqtt` on the HTTP listener.
    let mqtt_broker = if mqtt_listener.is_some()
        || mqtt_tls_listener.is_some()
        || http_listener.is_some()
        || !config.mqtt.bridges.is_empty()
    {
        let dyn_engine: Arc<dyn Engine> = engine.clone();
        Some(
            junction_mqtt::MqttBroker::new(
                dyn_engine,
                junction_mqtt::MqttOptions {
                    max_pending: config.limits.max_pending,
                    max_connections: mqtt_cap,
                    ..config.mqtt.options()
                },
                shutdown.clone(),
            )
            .map_err(|e| StartError::Io(format!("cannot start the MQTT front-end: {e}")))?,
        )
    } else {
        None
    };
    // Logged once nothing can fail the start any more: a failed start prints one
    // line (docs/configuration.md).
    let fd_limit_text = fd_limit.map_or_else(|| "unknown".to_string(), |l| l.to_string());
    tracing::info!(
        "Open-file limit {fd_limit_text}; connection caps: NATS {nats_cap}, MQTT {mqtt_cap}, HTTP {http_cap} (0 = none)"
    );
    if crate::fd_budget::overcommitted(
        fd_limit,
        &[
            config.limits.max_nats_connections,
            config.limits.max_mqtt_connections,
            config.limits.max_http_connections,
        ],
    ) {
        tracing::warn!(
            "the connection caps add up to more than the open-file limit {fd_limit_text}; \
             one protocol can starve the others"
        );
    }
    let mut tasks = JoinSet::new();
    let limits = &config.limits;

    let monitor_settings = MonitorSettings {
        host: nats_bound.map_or_else(String::new, |a| a.ip().to_string()),
        port: nats_bound.map_or(0, |a| a.port()),
        http_host: monitor_bound
            .or(http_bound)
            .map_or_else(String::new, |a| a.ip().to_string()),
        http_port: monitor_bound.or(http_bound).map_or(0, |a| a.port()),
        version: junction_nats::info::ADVERTISED_VERSION.to_string(),
        auth_required: engine.auth_required(),
        max_connections: limits.max_connections,
        ping_interval: limits.ping_interval,
        ping_max: limits.max_pings_out,
        auth_timeout: limits.auth_timeout,
        max_control_line: limits.max_control_line,
        max_payload: limits.max_payload,
        max_pending: limits.max_pending,
        write_deadline: limits.write_deadline,
        require_credentials: config.http.monitoring_auth,
    };

    let (lame_duck, lame_duck_rx) = tokio::sync::watch::channel(false);
    if let (Some(listener), Some(addr)) = (nats_listener, nats_bound) {
        let options = NatsOptions {
            server_id: server_id.clone(),
            server_name: server_name.clone(),
            host: addr.ip().to_string(),
            port: addr.port(),
            limits: Limits {
                max_control_line: limits.max_control_line,
                max_payload: limits.max_payload,
            },
            max_pending: limits.max_pending,
            write_deadline: limits.write_deadline,
            ping_interval: limits.ping_interval,
            max_pings_out: limits.max_pings_out,
            auth_timeout: limits.auth_timeout,
            auth_required: engine.auth_required(),
            jetstream: config.jetstream,
            drain_timeout: Duration::from_secs(5),
            max_connections: nats_cap,
            lame_duck: Some(lame_duck_rx),
            tls: nats_tls.clone(),
            tls_timeout: config.tls.timeout,
            tls_handshake_first: config.tls.handshake_first,
            tls_verify: config.tls.verify,
        };
        tasks.spawn(junction_nats::serve(
            listener,
            engine.clone(),
            options,
            shutdown.clone(),
        ));
        tracing::info!("Listening for NATS client connections on {addr}");
    }
    let readiness = junction_http::Readiness::ready();
    let cors_origins = junction_http::CorsOrigins::new(config.http.cors_origins.clone());
    for (listener, addr, what, with_api, cap, tls) in [
        (
            monitor_listener,
            monitor_bound,
            "Starting http monitor on",
            false,
            crate::fd_budget::MONITOR_CONNECTIONS,
            None,
        ),
        (
            http_listener,
            http_bound,
            if http_tls.is_some() {
                "Listening for HTTPS on"
            } else {
                "Listening for HTTP on"
            },
            true,
            http_cap,
            http_tls.clone(),
        ),
    ] {
        if let (Some(listener), Some(addr)) = (listener, addr) {
            let mut router =
                junction_http::monitor_router(engine.clone(), monitor_settings.clone());
            if with_api {
                let mut api = junction_http::ApiSettings::new(limits.max_payload);
                api.listen = addr;
                api.readiness = readiness.clone();
                api.cors_origins = cors_origins.clone();
                api.auth_methods = junction_http::AuthMethods {
                    bearer: config.auth.token.is_some(),
                    basic: !config.auth.all_users().is_empty()
                        || config.tenants.iter().any(|t| !t.users.is_empty()),
                };
                router = router.merge(junction_http::api_router(engine.clone(), api));
                // Outside the API's auth layer; its own, per `[http] monitoring_auth`.
                router = router.merge(junction_http::metrics_router(
                    engine.clone(),
                    config.http.monitoring_auth,
                ));
                // MQTT over WebSocket authenticates with MQTT's own CONNECT.
                if let Some(broker) = mqtt_broker.clone() {
                    let handler: junction_http::MqttStreamHandler =
                        Arc::new(move |stream, remote, certificate| {
                            let broker = broker.clone();
                            Box::pin(
                                async move { broker.handle_tls(stream, remote, certificate).await },
                            )
                        });
                    router = router.merge(junction_http::mqtt_ws_router(handler));
                }
            }
            let token = shutdown.clone();
            let readiness = readiness.clone();
            let http_limits = junction_http::HttpLimits {
                max_connections: cap,
                header_timeout: config.http.header_timeout,
                idle_timeout: config.http.idle_timeout,
                tls,
            };
            tasks.spawn(async move {
                let stopping = async move {
                    token.cancelled().await;
                    readiness.set(false);
                };
                if let Err(e) = junction_http::serve(listener, router, http_limits, stopping).await
                {
                    tracing::error!(error = %e, "HTTP listener failed");
                }
            });
            tracing::info!("{what} {addr}");
            if with_api {
                tracing::info!("Web console at {}", console_url(addr, http_tls.is_some()));
            }
        }
    }
    if let Some(broker) = mqtt_broker.clone() {
        let mut listeners = Vec::new();
        if let Some(l) = mqtt_listener {
            listeners.push((l, None));
        }
        if let (Some(l), Some(server)) = (mqtt_tls_listener, nats_tls.clone()) {
            let tls = junction_mqtt::MqttTls {
                config: server,
                timeout: config.tls.timeout,
            };
            listeners.push((l, Some(tls)));
        }
        junction_mqtt::bridge::spawn(&broker, config.mqtt.bridges.clone());
        if !listeners.is_empty() {
            tasks.spawn(junction_mqtt::serve_listeners(listeners, broker));
        }
    }
    {
        let engine = engine.clone();
        let token = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        let engine = engine.clone();
                        // Expiry and compaction, then the disk self-check
                        // (they free space first).
                        let _ = tokio::task::spawn_blocking(move || {
                            engine.expire_stations();
                            engine.compact_stations();
                            engine.check_disk();
                            engine.check_memory();
                            engine.check_consumer_lag();
                            engine.check_fsync();
                        })
                        .await;
                    }
                }
            }
        });
    }
    {
        let engine = engine.clone();
        let token = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(50));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = token.cancelled() => {
                        let engine = engine.clone();
                        let _ = tokio::task::spawn_blocking(move || engine.tick_groups()).await;
                        break;
                    }
                    _ = tick.tick() => {
                        let engine = engine.clone();
                        let _ = tokio::task::spawn_blocking(move || engine.tick_groups()).await;
                    }
                }
            }
        });
    }
    // The certificate-expiry self-check: at start, then when the file changes
    // and at least every minute.
    if let (Some(cert), false) = (
        config
            .tls
            .cert_file
            .clone()
            .filter(|_| config.tls.enabled()),
        config.tls.expiry_warning.is_zero(),
    ) {
        let engine = engine.clone();
        let token = shutdown.clone();
        let warning = config.tls.expiry_warning;
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let (mut seen, mut checked) = (None, None::<std::time::Instant>);
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tick.tick() => {
                        let stamp = std::fs::metadata(&cert).and_then(|m| m.modified()).ok();
                        let due = checked.is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
                        if stamp != seen || due {
                            seen = stamp;
                            checked = Some(std::time::Instant::now());
                            crate::tls::check_expiry(&engine, &cert, warning);
                        }
                    }
                }
            }
        });
    }
    let reloader = crate::reload::Reloader::new(&engine, config.clone());
    let notifier = crate::notify::Notifier::start(
        Arc::downgrade(&engine),
        &config.notifications,
        shutdown.clone(),
    );
    engine.set_notification_centre(notifier.clone());
    reloader.set_notifier(notifier);
    reloader.set_cors_origins(cors_origins);
    {
        let reloader = reloader.clone();
        engine.set_reload_hook(Arc::new(move || reloader.reload()));
    }
    created.keep();
    pid_written.keep();
    engine.record_lifecycle(true);
    // `server_started` is in the events station before anyone is told "ready".
    {
        let engine = engine.clone();
        let _ =
            tokio::task::spawn_blocking(move || engine.flush_events(Duration::from_secs(5))).await;
    }
    tracing::info!(server_name = %server_name, server_id = %server_id, "Server is ready");
    Ok(Running {
        nats: nats_bound,
        mqtt: mqtt_bound,
        mqtt_tls: mqtt_tls_bound,
        http: http_bound,
        monitor: monitor_bound,
        shutdown,
        tasks,
        engine,
        pid_file: config.pid_file.clone(),
        readiness,
        lame_duck,
        restart,
        reloader,
    })
}

/// Starts the broker and runs it until SIGINT or SIGTERM, then shuts down
/// gracefully. SIGHUP cannot reload without a way to read the configuration
/// again ([`run_with_loader`]); a line in the log says so. SIGUSR2 enters
/// lame-duck mode ([`Running::enter_lame_duck`]).
pub async fn run(config: Config) -> Result<(), StartError> {
    run_inner(config, None).await
}

/// [`run`], with SIGHUP (and `POST /v1/server/reload`) reloading the
/// configuration through `loader` ([`crate::reload`]).
pub async fn run_with_loader(
    config: Config,
    loader: crate::reload::ConfigLoader,
) -> Result<(), StartError> {
    run_inner(config, Some(loader)).await
}

async fn run_inner(
    config: Config,
    loader: Option<crate::reload::ConfigLoader>,
) -> Result<(), StartError> {
    // Handlers first: a signal that arrives while the broker starts must not take
    // the default action (SIGHUP and SIGUSR2 would end the process).
    let mut signals = Signals::new();
    let watched = config
        .config_watch
        .then(|| config.config_file.clone())
        .flatten();
    let running = start(config).await?;
    let mut watch = ConfigWatch::new(watched);
    if let Some(loader) = loader {
        running.set_config_loader(loader);
    }
    let restart = running.restart.clone();
    loop {
        let trapped = tokio::select! {
            t = signals.next() => t,
            _ = watch.changed() => {
                tracing::info!("the configuration file changed: reloading the configuration");
                Trapped::Reload
            }
            _ = restart.notified() => {
                tracing::warn!("restarting in place (cluster join)");
                RESTART.store(true, std::sync::atomic::Ordering::SeqCst);
                Trapped::Stop
            }
        };
        match trapped {
            Trapped::Stop => break,
            Trapped::Reload => {
                tracing::info!("Trapped SIGHUP: reloading the configuration");
                let reloader = running.reloader.clone();
                // The outcome is logged and recorded as an event.
                let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
            }
            Trapped::Reopen => match crate::log_file::reopen() {
                Ok(()) => tracing::info!("Trapped SIGUSR1: the log file was reopened"),
                Err(e) => tracing::error!("Trapped SIGUSR1: {e}; logging goes on to the old file"),
            },
            Trapped::LameDuck => {
                running.enter_lame_duck();
                tracing::warn!(
                    "Trapped SIGUSR2: entering lame-duck mode; /readyz answers 503, \
                     clients stay served until SIGTERM"
                );
            }
        }
    }
    tracing::info!("Trapped signal; shutting down");
    running.shutdown().await;
    Ok(())
}

/// Set when the broker stopped to restart in place: `junction serve` then runs
/// itself again, with the same arguments ([`restart_requested`]).
static RESTART: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Did the broker stop in order to restart in place (`junction cluster join`)?
pub fn restart_requested() -> bool {
    RESTART.load(std::sync::atomic::Ordering::SeqCst)
}

/// `config_watch`: the configuration file's content, read every 2 s. Reading
/// the path follows symlinks, so a Kubernetes ConfigMap (whose `..data`
/// symlink is swapped) is seen to change as an edited file is.
struct ConfigWatch {
    path: Option<std::path::PathBuf>,
    seen: Option<Vec<u8>>,
}

impl ConfigWatch {
    fn new(path: Option<std::path::PathBuf>) -> Self {
        let seen = path.as_ref().and_then(|p| std::fs::read(p).ok());
        ConfigWatch { path, seen }
    }

    /// Resolves once the file's content differs from the last seen (never
    /// without a file to watch). A file that cannot be read (in the middle of
    /// a swap) is skipped until it can.
    async fn changed(&mut self) {
        let Some(path) = self.path.clone() else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let Ok(now) = tokio::fs::read(&path).await else {
                continue;
            };
            if self.seen.as_ref() != Some(&now) {
                self.seen = Some(now);
                return;
            }
        }
    }
}

/// What a trapped signal asks for.
enum Trapped {
    /// SIGTERM or SIGINT: shut down.
    Stop,
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR2: lame-duck mode.
    LameDuck,
    /// SIGUSR1: reopen the log file.
    Reopen,
}

/// The process's signal handlers, installed once.
struct Signals {
    #[cfg(unix)]
    unix: Option<[tokio::signal::unix::Signal; 5]>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let all = (|| {
                Ok::<_, std::io::Error>([
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                    signal(SignalKind::hangup())?,
                    signal(SignalKind::user_defined2())?,
                    signal(SignalKind::user_defined1())?,
                ])
            })();
            if let Err(e) = &all {
                tracing::warn!(error = %e, "cannot install signal handlers; only Ctrl-C stops the broker");
            }
            Signals { unix: all.ok() }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    async fn next(&mut self) -> Trapped {
        #[cfg(unix)]
        if let Some([term, int, hup, usr2, usr1]) = &mut self.unix {
            return tokio::select! {
                _ = term.recv() => Trapped::Stop,
                _ = int.recv() => Trapped::Stop,
                _ = hup.recv() => Trapped::Reload,
                _ = usr2.recv() => Trapped::LameDuck,
                _ = usr1.recv() => Trapped::Reopen,
            };
        }
        let _ = tokio::signal::ctrl_c().await;
        Trapped::Stop
    }
}
