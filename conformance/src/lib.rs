//! Black-box test support: start a real Junction broker in process, on loopback
//! ephemeral ports with a throwaway data directory, for tests that talk to it over
//! real sockets with third-party clients (`async-nats`, raw TCP).

use junction::{Config, Running};
use tempfile::TempDir;

/// A broker running for one test. Dropping it leaks nothing but the tasks, which end
/// with the test runtime; call [`TestBroker::stop`] to shut down gracefully.
pub struct TestBroker {
    /// The running broker.
    pub running: Running,
    /// Its configuration.
    pub config: Config,
    dir: TempDir,
}

impl TestBroker {
    /// `nats://127.0.0.1:PORT`.
    pub fn nats_url(&self) -> String {
        self.running.nats_url()
    }

    /// `127.0.0.1:PORT` of the NATS listener.
    pub fn nats_addr(&self) -> std::net::SocketAddr {
        self.running.nats_addr().expect("NATS listener enabled")
    }

    /// `127.0.0.1:PORT` of the MQTT listener (start with [`mqtt_broker`]).
    pub fn mqtt_addr(&self) -> std::net::SocketAddr {
        self.running.mqtt_addr().expect("MQTT listener enabled")
    }

    /// The MQTT listener's port.
    pub fn mqtt_port(&self) -> u16 {
        self.mqtt_addr().port()
    }

    /// The port of the MQTT over TLS listener.
    pub fn running_mqtt_tls_port(&self) -> u16 {
        self.running
            .mqtt_tls_addr()
            .expect("MQTT over TLS listener enabled")
            .port()
    }

    /// The port of the HTTP listener.
    pub fn http_port(&self) -> u16 {
        self.running
            .http_addr()
            .expect("HTTP listener enabled")
            .port()
    }

    /// `http://127.0.0.1:PORT` of the HTTP listener.
    pub fn http_url(&self) -> String {
        format!(
            "http://{}",
            self.running.http_addr().expect("HTTP listener enabled")
        )
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Shuts down gracefully and returns the data directory, so a test can restart a
    /// broker on the same data.
    pub async fn stop(self) -> (Config, TempDir) {
        self.running.shutdown().await;
        (self.config, self.dir)
    }
}

/// A configuration for tests: every listener on 127.0.0.1 port 0, MQTT off.
pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        nats_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        mqtt_listen: "off".into(),
        data_dir: dir.to_path_buf(),
        ..Config::default()
    }
}

/// Starts a broker with the test configuration.
pub async fn broker() -> TestBroker {
    broker_with(|_| {}).await
}

/// Starts a broker with the test configuration, changed by `tweak`.
pub async fn broker_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    start_in(config, dir).await
}

/// Starts a broker with MQTT on too.
pub async fn mqtt_broker() -> TestBroker {
    mqtt_broker_with(|_| {}).await
}

/// Starts a broker with MQTT on, changed by `tweak`.
pub async fn mqtt_broker_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
    broker_with(|c| {
        c.mqtt_listen = "127.0.0.1:0".into();
        tweak(c);
    })
    .await
}

/// Starts a broker with `config` on the data directory `dir`.
pub async fn start_in(config: Config, dir: TempDir) -> TestBroker {
    let running = junction::start(config.clone())
        .await
        .expect("broker starts");
    TestBroker {
        running,
        config,
        dir,
    }
}

/// A nats-server process on a free loopback port, stopped when dropped.
pub struct NatsServer {
    child: std::process::Child,
    /// Where it listens.
    pub addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl NatsServer {
    /// Starts Debian's nats-server with `conf` after its `listen` line;
    /// `{store}` in `conf` becomes a JetStream store directory of its own.
    pub async fn start(conf: &str) -> NatsServer {
        Self::start_binary("nats-server", conf).await
    }

    /// [`NatsServer::start`] with the nats-server binary `bin` (another
    /// version: `scripts/nats-server-2.10`).
    pub async fn start_binary(bin: &str, conf: &str) -> NatsServer {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let file = dir.path().join("server.conf");
        let conf = conf.replace("{store}", &dir.path().join("js").display().to_string());
        std::fs::write(&file, format!("listen: \"127.0.0.1:{port}\"\n{conf}")).unwrap();
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{bin} starts (scripts/test installs it): {e}"));
        let server = NatsServer {
            child,
            addr: format!("127.0.0.1:{port}").parse().unwrap(),
            _dir: dir,
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(server.addr).await.is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("nats-server did not start");
    }
}

impl NatsServer {
    /// Its NATS URL.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}
