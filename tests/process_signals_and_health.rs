//! What deployments rely on from the process, run against the real binary:
//!
//! - `junction health` exits 0 when `/healthz` answers 200, and 1 with one line
//!   saying why when nothing listens or the endpoint answers 503; with no `--url`
//!   it asks the configured HTTP listener (Docker's HEALTHCHECK, no curl);
//! - SIGHUP (systemd's `ExecReload`) reloads the configuration without stopping
//!   the broker: users and tenants change live (a removed user's connection is
//!   closed, a new one logs in), a broken file or a change that needs a restart
//!   keeps the running configuration and says why, and every protocol keeps
//!   answering; `POST /v1/server/reload` does the same for an operator;
//! - `junction lame-duck` (SIGUSR2; the Helm chart's preStop) turns `/readyz` to 503
//!   while `/healthz` stays 200 and clients keep being served, and NATS clients are
//!   sent an INFO with `"ldm": true` (async-nats reports `LameDuckMode`);
//! - SIGTERM then stops the broker with exit status 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::process;
use process::{GUARD, addr_after, junction, run_to_exit};

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `junction serve` on loopback ports, with its log lines as they come.
struct Broker {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    nats: SocketAddr,
    http: SocketAddr,
}

impl Broker {
    async fn start(dir: &Path) -> Broker {
        Broker::start_with(dir, &[]).await
    }

    /// A broker with `extra` flags (`-c FILE`).
    async fn start_with(dir: &Path, extra: &[&str]) -> Broker {
        let mut args = vec![
            "serve",
            "--nats-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ];
        args.extend_from_slice(extra);
        let mut child = junction(dir, &args, &[("NO_COLOR", "1")])
            .spawn()
            .expect("junction starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    log.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        let (mut nats, mut http) = (None, None);
        let ready = tokio::time::timeout(GUARD, async {
            while let Some(line) = lines.recv().await {
                nats = nats.or_else(|| addr_after(&line, "NATS client connections on "));
                http = http.or_else(|| addr_after(&line, "Listening for HTTP on "));
                if line.contains("Server is ready") {
                    return true;
                }
            }
            false
        })
        .await;
        let all = log.lock().unwrap().join("\n");
        assert_eq!(ready, Ok(true), "junction did not start; its log:\n{all}");
        Broker {
            child,
            log,
            lines,
            nats: nats.expect("NATS address in the log"),
            http: http.expect("HTTP address in the log"),
        }
    }

    fn pid(&self) -> String {
        self.child.id().expect("running").to_string()
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &self.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for the first log line (from now on) that contains `needle`.
    async fn wait_for_line(&mut self, needle: &str) -> String {
        let found = tokio::time::timeout(GUARD, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            _ => panic!(
                "no log line with {needle:?}; the log:\n{}",
                self.log.lock().unwrap().join("\n")
            ),
        }
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(format!("http://{}{path}", self.http))
            .timeout(GUARD)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// A NATS request-reply round trip through the broker.
    async fn nats_round_trip(&self) {
        let client = async_nats::connect(format!("nats://{}", self.nats))
            .await
            .unwrap();
        let mut sub = client.subscribe("deploy.check").await.unwrap();
        client
            .publish("deploy.check", "alive".into())
            .await
            .unwrap();
        client.flush().await.unwrap();
        let msg = tokio::time::timeout(GUARD, futures::StreamExt::next(&mut sub))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&msg.payload[..], b"alive");
    }

    /// SIGTERM, then the exit status.
    async fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("junction exits after SIGTERM")
            .unwrap()
            .code()
    }
}

#[tokio::test]
async fn health_exits_0_on_a_healthy_broker_and_1_with_the_reason_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path()).await;
    let url = format!("http://{}", broker.http);

    let out = run_to_exit(dir.path(), &["health", "--url", &url], &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("{url}/healthz: 200 {{\"status\":\"ok\"}}\n")
    );
    assert_eq!(text(&out.stderr), "");

    // No --url: the configured HTTP listener (here from the environment, as a
    // container's HEALTHCHECK shares the server's environment).
    let out = run_to_exit(
        dir.path(),
        &["health"],
        &[("JUNCTION_HTTP_LISTEN", &broker.http.to_string())],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with(&format!("{url}/healthz: 200")));

    // The same, from a config file.
    let config = dir.path().join("junction.toml");
    std::fs::write(&config, format!("http_listen = \"{}\"\n", broker.http)).unwrap();
    let out = run_to_exit(
        dir.path(),
        &["health", "--config", config.to_str().unwrap()],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));

    // A closed port: a free port on loopback that nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = run_to_exit(
        dir.path(),
        &["health", "--url", &format!("http://{closed}")],
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "junction health: http://{closed}/healthz: connection refused or unreachable (is the broker running there?)\n"
        )
    );
    assert_eq!(text(&out.stdout), "");

    // Nothing to ask: HTTP off and no -m listener.
    let out = run_to_exit(dir.path(), &["health"], &[("JUNCTION_HTTP_LISTEN", "off")]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "junction health: the configuration has no HTTP listener (http_listen and monitor_listen are off); pass --url\n"
    );

    assert_eq!(broker.terminate().await, Some(0));
}

#[tokio::test]
async fn sighup_reloads_and_the_broker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path()).await;
    broker.signal("HUP");
    broker
        .wait_for_line("Trapped SIGHUP: reloading the configuration")
        .await;
    let line = broker.wait_for_line("configuration reloaded").await;
    assert!(line.contains("0 users logged out"), "{line}");
    // A second one too: the handler stays installed.
    broker.signal("HUP");
    broker.wait_for_line("configuration reloaded").await;

    assert_eq!(
        broker.get("/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    assert_eq!(
        broker.get("/readyz").await,
        (200, serde_json::json!({"status": "ready"}))
    );
    broker.nats_round_trip().await;
    assert_eq!(broker.terminate().await, Some(0));
}

/// A raw NATS login as `user` (password `pw`): the socket after its first
/// PONG, or what the broker answered instead.
async fn raw_login(broker: &Broker, user: &str) -> Result<tokio::net::TcpStream, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(broker.nats).await.unwrap();
    let connect =
        format!("CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"pw\"}}\r\nPING\r\n");
    s.write_all(connect.as_bytes()).await.unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(GUARD, s.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap_or(0);
        if n == 0 {
            return Err(seen);
        }
        seen.push_str(&text(&buf[..n]));
        if seen.contains("PONG") {
            return Ok(s);
        }
        if seen.contains("-ERR") {
            return Err(seen);
        }
    }
}

/// What the broker sends on `s` until it closes it.
async fn until_closed(s: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(GUARD, s.read(&mut buf))
            .await
            .expect("closed in time")
            .unwrap_or(0);
        if n == 0 {
            return seen;
        }
        seen.push_str(&text(&buf[..n]));
    }
}

#[tokio::test]
async fn sighup_reloads_users_and_tenants_and_keeps_the_old_configuration_when_it_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("junction.toml");
    std::fs::write(
        &file,
        "[auth]\nusers = [{ user = \"alice\", password = \"pw\" }]\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let mut broker = Broker::start_with(dir.path(), &["-c", &path, "-P", "junction.pid"]).await;
    let mut alice = raw_login(&broker, "alice").await.expect("alice logs in");
    assert!(
        raw_login(&broker, "bob").await.is_err(),
        "bob is not a user yet"
    );

    // bob replaces alice; a tenant with carol appears.
    std::fs::write(
        &file,
        "[auth]\nusers = [{ user = \"bob\", password = \"pw\" }]\n\
         [[tenants]]\nname = \"acme\"\nusers = [{ user = \"carol\", password = \"pw\" }]\n",
    )
    .unwrap();
    broker.signal("HUP");
    let line = broker.wait_for_line("configuration reloaded").await;
    assert!(
        line.contains("1 users logged out, 1 tenants added"),
        "{line}"
    );
    let closed = until_closed(&mut alice).await;
    assert!(
        closed.contains("-ERR 'Authorization Violation'"),
        "{closed:?}"
    );
    assert!(raw_login(&broker, "alice").await.is_err(), "alice is gone");
    raw_login(&broker, "bob").await.expect("bob logs in");
    raw_login(&broker, "carol")
        .await
        .expect("carol logs in, in acme");

    // A broken file keeps what runs, and says why. (nats-server's way to send
    // the signal: `--signal reload` with the pid file.)
    std::fs::write(&file, "[auth\nusers = ").unwrap();
    let sent = run_to_exit(
        dir.path(),
        &["--signal", "reload", "-P", "junction.pid"],
        &[],
    )
    .await;
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    assert!(
        text(&sent.stdout).contains("sent SIGHUP (reload) to process"),
        "{}",
        text(&sent.stdout)
    );
    let line = broker
        .wait_for_line("configuration reload refused, the previous configuration stays")
        .await;
    assert!(line.contains("TOML") || line.contains("expected"), "{line}");
    raw_login(&broker, "bob").await.expect("bob still logs in");

    // A change that needs a restart refuses the whole reload.
    std::fs::write(
        &file,
        "[auth]\nusers = [{ user = \"dave\", password = \"pw\" }]\n[limits]\nmax_payload = 2048\n",
    )
    .unwrap();
    broker.signal("HUP");
    let line = broker.wait_for_line("configuration reload refused").await;
    assert!(
        line.contains("config reload not supported for limits.max_payload"),
        "{line}"
    );
    assert!(
        raw_login(&broker, "dave").await.is_err(),
        "nothing was applied"
    );

    // An operator asks over HTTP; a tenant's user may not.
    std::fs::write(
        &file,
        "[auth]\nusers = [{ user = \"bob\", password = \"pw\" }, { user = \"dave\", password = \"pw\" }]\n\
         [[tenants]]\nname = \"acme\"\nusers = [{ user = \"carol\", password = \"pw\" }]\n",
    )
    .unwrap();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |user: &'static str| {
        client
            .post(format!("http://{}/v1/server/reload", broker.http))
            .basic_auth(user, Some("pw"))
            .timeout(GUARD)
            .send()
    };
    assert_eq!(post("carol").await.unwrap().status().as_u16(), 403);
    let r = post("bob").await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(body["reloaded"].as_str().is_some(), "{body}");
    raw_login(&broker, "dave").await.expect("dave logs in");
    // Both outcomes are in the event log.
    let events: serde_json::Value = client
        .get(format!("http://{}/v1/events", broker.http))
        .basic_auth("bob", Some("pw"))
        .timeout(GUARD)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"config_reloaded"), "{events}");
    assert!(kinds.contains(&"config_reload_failed"), "{events}");
    let refused = run_to_exit(dir.path(), &["-sl", "bogus=1"], &[]).await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused.stderr)
            .contains("unknown signal 'bogus': give reload, reopen, ldm, quit, term or stop"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(broker.terminate().await, Some(0));
}

#[tokio::test]
async fn lame_duck_fails_readyz_keeps_healthz_and_clients_then_sigterm_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(dir.path()).await;
    let pid = broker.pid();

    // A NATS client connected before: async-nats reports the server's `ldm`.
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let watcher = async_nats::ConnectOptions::new()
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(format!("nats://{}", broker.nats))
        .await
        .unwrap();
    watcher.flush().await.unwrap();

    let out = run_to_exit(dir.path(), &["lame-duck", "--pid", &pid], &[]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let told = tokio::time::timeout(GUARD, async {
        while let Some(e) = events.recv().await {
            if matches!(e, async_nats::Event::LameDuckMode) {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(told, Ok(true), "the NATS client is told: INFO with ldm");
    assert_eq!(
        text(&out.stdout),
        format!("junction lame-duck: signalled process {pid}; waiting 0s\n")
    );
    let line = broker.wait_for_line("Trapped SIGUSR2").await;
    assert!(line.contains("entering lame-duck mode"), "{line}");

    assert_eq!(
        broker.get("/readyz").await,
        (
            503,
            serde_json::json!({"error": {
                "code": "not_ready",
                "message": "the server is not ready (starting or shutting down)"
            }})
        )
    );
    assert_eq!(
        broker.get("/healthz").await,
        (200, serde_json::json!({"status": "ok"}))
    );
    broker.nats_round_trip().await;

    // `health` against /readyz gives the reason in one line.
    let readyz = format!("http://{}/readyz", broker.http);
    let out = run_to_exit(dir.path(), &["health", "--url", &readyz], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "junction health: {readyz}: answered 503 Service Unavailable: the server is not ready (starting or shutting down)\n"
        )
    );

    assert_eq!(broker.terminate().await, Some(0));
}

#[tokio::test]
async fn lame_duck_without_a_broker_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(dir.path(), &["lame-duck", "--pid-file", "missing.pid"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("junction lame-duck: cannot read pid file missing.pid: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let out = run_to_exit(dir.path(), &["lame-duck"], &[]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        "junction lame-duck: say which broker: --pid PID or --pid-file FILE\n"
    );
}

/// `config_watch = true`: the broker reloads by itself when its configuration
/// file changes, also when the file is a Kubernetes ConfigMap volume's (the
/// file is a symlink through `..data`, and an update swaps `..data` to a new
/// directory in one rename).
#[tokio::test]
async fn a_watched_configuration_file_reloads_when_a_configmap_swaps_it() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let version = |name: &str, users: &str| {
        let d = dir.path().join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("junction.toml"),
            format!("config_watch = true\n[auth]\nusers = [{users}]\n"),
        )
        .unwrap();
    };
    version("..2026_12_06_a", "{ user = \"alice\", password = \"pw\" }");
    symlink("..2026_12_06_a", dir.path().join("..data")).unwrap();
    symlink("..data/junction.toml", dir.path().join("junction.toml")).unwrap();
    let path = dir.path().join("junction.toml").display().to_string();
    let mut broker = Broker::start_with(dir.path(), &["-c", &path]).await;
    raw_login(&broker, "alice").await.expect("alice logs in");
    assert!(
        raw_login(&broker, "bob").await.is_err(),
        "bob is not a user yet"
    );

    // The ConfigMap is updated: a new directory, then `..data` swapped to it.
    version(
        "..2026_12_06_b",
        "{ user = \"alice\", password = \"pw\" }, { user = \"bob\", password = \"pw\" }",
    );
    symlink("..2026_12_06_b", dir.path().join("..data_tmp")).unwrap();
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
    let line = broker.wait_for_line("configuration reloaded").await;
    assert!(line.contains("0 users logged out"), "{line}");
    raw_login(&broker, "bob")
        .await
        .expect("bob logs in after the swap");

    // A broken update keeps the configuration that works, and says why.
    std::fs::write(
        dir.path().join("..2026_12_06_b").join("junction.toml"),
        "config_watch = true\n[auth\n",
    )
    .unwrap();
    broker
        .wait_for_line("configuration reload refused, the previous configuration stays")
        .await;
    raw_login(&broker, "bob").await.expect("bob still logs in");
    assert_eq!(broker.terminate().await, Some(0));
}

/// `junction --signal reopen` (SIGUSR1): logrotate moves the log file away and
/// the broker writes a new one at the same path, as nats-server does.
#[tokio::test]
async fn signal_reopen_writes_a_new_log_file_after_logrotate_moved_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junction.toml"), "").unwrap();
    let http = process::free_port();
    let http_listen = format!("127.0.0.1:{http}");
    let mut child = junction(
        dir.path(),
        &[
            "serve",
            "-c",
            "junction.toml",
            "-l",
            "junction.log",
            "-P",
            "junction.pid",
            "--nats-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "off",
            "--http-listen",
            &http_listen,
            "--data-dir",
            "data",
        ],
        &[("NO_COLOR", "1")],
    )
    .spawn()
    .unwrap();
    process::wait_listening(http).await;
    let log = dir.path().join("junction.log");
    let until_logged = |path: std::path::PathBuf, needle: &'static str| async move {
        let deadline = std::time::Instant::now() + GUARD;
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.contains(needle) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{needle:?} not in {}: {text}",
                path.display()
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    until_logged(log.clone(), "Server is ready").await;
    std::fs::rename(&log, dir.path().join("junction.log.1")).unwrap();

    let sent = run_to_exit(
        dir.path(),
        &["--signal", "reopen", "-P", "junction.pid"],
        &[],
    )
    .await;
    assert!(sent.status.success(), "{}", text(&sent.stderr));
    until_logged(log.clone(), "the log file was reopened").await;
    // New lines go to the new file, none to the old one.
    let reload = reqwest::Client::new()
        .post(format!("http://{http_listen}/v1/server/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    until_logged(log.clone(), "configuration reloaded").await;
    let old = std::fs::read_to_string(dir.path().join("junction.log.1")).unwrap();
    assert!(old.contains("Server is ready") && !old.contains("configuration reloaded"));

    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
