//! User permissions over NATS: the same configuration, in nats-server's format
//! (read by nats-server, and by Junction with `-c server.conf`) and in
//! Junction's TOML, gives byte-identical answers to a raw-socket probe on a real
//! nats-server and on Junction, for publish, subscribe, queue
//! subscribe, deny-filtered wildcard subscriptions and `allow_responses` (one
//! reply per request). The connection stays open after each violation.

use junction::cli::ServeArgs;
use junction_conformance::start_in;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NATS_SERVER_CONF: &str = r#"
authorization {
  users = [
    {
      user: "limited", password: "pw",
      permissions: {
        publish: { allow: ["allowed.>"], deny: ["allowed.secret"] },
        subscribe: { allow: ["allowed.>", "jobs.* workers"], deny: ["allowed.hidden"] }
      }
    },
    { user: "svc", password: "pw", permissions: { publish: { deny: [">"] }, subscribe: ["svc.>"], allow_responses: true } },
    { user: "req", password: "pw" }
  ]
}
"#;

const JUNCTION_TOML: &str = r#"
[[auth.users]]
user = "limited"
password = "pw"
permissions = { publish = { allow = ["allowed.>"], deny = ["allowed.secret"] }, subscribe = { allow = ["allowed.>", "jobs.* workers"], deny = ["allowed.hidden"] } }

[[auth.users]]
user = "svc"
password = "pw"
permissions = { publish = { deny = [">"] }, subscribe = ["svc.>"], allow_responses = true }

[[auth.users]]
user = "req"
password = "pw"
"#;

/// A raw NATS connection.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects as `user` and reads past INFO and the first PONG.
    async fn login(addr: SocketAddr, user: &str, verbose: bool) -> Raw {
        let stream = TcpStream::connect(addr).await.unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        let info = raw.until(b"\r\n").await;
        assert!(info.starts_with(b"INFO "));
        let connect = format!(
            "CONNECT {{\"verbose\":{verbose},\"pedantic\":false,\"headers\":true,\"user\":\"{user}\",\"pass\":\"pw\"}}\r\nPING\r\n"
        );
        raw.stream.write_all(connect.as_bytes()).await.unwrap();
        let first = raw.until(b"PONG\r\n").await;
        let expected: &[u8] = if verbose {
            b"+OK\r\nPONG\r\n"
        } else {
            b"PONG\r\n"
        };
        assert_eq!(first, expected, "login as {user}");
        raw
    }

    /// Reads until the bytes read end with `end`; returns them.
    async fn until(&mut self, end: &[u8]) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(i) = find(&self.buf, end) {
                let rest = self.buf.split_off(i + end.len());
                return std::mem::replace(&mut self.buf, rest);
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout_at(deadline, self.stream.read(&mut chunk))
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "timed out waiting for {:?} after {:?}",
                        String::from_utf8_lossy(end),
                        String::from_utf8_lossy(&self.buf)
                    )
                })
                .unwrap();
            assert!(
                n > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&self.buf)
            );
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends `ops` and a PING; everything answered up to the PONG.
    async fn probe(&mut self, ops: &str) -> String {
        self.stream
            .write_all(format!("{ops}PING\r\n").as_bytes())
            .await
            .unwrap();
        String::from_utf8_lossy(&self.until(b"PONG\r\n").await).into_owned()
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The probe of one server: every answer, in order.
async fn transcript(addr: SocketAddr) -> Vec<String> {
    let mut out = Vec::new();
    for verbose in [false, true] {
        let mut c = Raw::login(addr, "limited", verbose).await;
        out.push(
            c.probe(concat!(
                "SUB denied 1\r\n",
                "SUB jobs.a other 2\r\n",
                "SUB jobs.a workers 3\r\n",
                "SUB allowed.hidden 4\r\n",
                "SUB allowed.* 5\r\n",
                "SUB jobs.a 6\r\n",
            ))
            .await,
        );
        out.push(
            c.probe(concat!(
                "PUB denied 2\r\nhi\r\n",
                "PUB allowed.secret 2\r\nhi\r\n",
                "PUB allowed.x 2\r\nhi\r\n",
                "PUB allowed.hidden 2\r\nhi\r\n",
                "PUB jobs.a 2\r\nhi\r\n",
                "HPUB denied 12 14\r\nNATS/1.0\r\n\r\nhi\r\n",
            ))
            .await,
        );
        // Still open and served.
        out.push(c.probe("PUB allowed.y 2\r\nok\r\n").await);
    }

    // allow_responses: one reply per request received, nothing else.
    let mut svc = Raw::login(addr, "svc", false).await;
    let mut req = Raw::login(addr, "req", false).await;
    out.push(svc.probe("SUB svc.req 1\r\nSUB other 2\r\n").await);
    out.push(
        req.probe("SUB _INBOX.r1 1\r\nPUB svc.req _INBOX.r1 2\r\nq?\r\n")
            .await,
    );
    out.push(String::from_utf8_lossy(&svc.until(b"q?\r\n").await).into_owned());
    out.push(
        svc.probe(concat!(
            "PUB _INBOX.r1 3\r\none\r\n",
            "PUB _INBOX.r1 3\r\ntwo\r\n",
            "PUB _INBOX.never 1\r\nx\r\n",
        ))
        .await,
    );
    out.push(req.probe("").await);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_probe_gets_nats_servers_exact_bytes() {
    let reference = crate::common::NatsServer::start(NATS_SERVER_CONF).await;
    let expected = transcript(reference.addr).await;

    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("junction.toml");
    std::fs::write(&toml, JUNCTION_TOML).unwrap();
    let mut config = ServeArgs {
        config: Some(toml),
        ..Default::default()
    }
    .load()
    .expect("the TOML loads");
    let base = junction_conformance::test_config(dir.path());
    config.nats_listen = base.nats_listen;
    config.http_listen = base.http_listen;
    config.mqtt_listen = base.mqtt_listen;
    config.data_dir = base.data_dir;
    let b = start_in(config, dir).await;
    let got = transcript(b.nats_addr()).await;

    // Junction started from the nats-server file itself (`-c server.conf`).
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!("listen: \"127.0.0.1:0\"\n{NATS_SERVER_CONF}"),
    )
    .unwrap();
    let mut config = ServeArgs {
        config: Some(conf),
        ..Default::default()
    }
    .load()
    .expect("the nats-server file loads");
    let base = junction_conformance::test_config(dir.path());
    config.http_listen = base.http_listen;
    config.mqtt_listen = base.mqtt_listen;
    config.data_dir = base.data_dir;
    let from_conf = start_in(config, dir).await;
    let got_conf = transcript(from_conf.nats_addr()).await;
    assert_eq!(
        got_conf, expected,
        "Junction from server.conf answered differently"
    );

    // What the probe shows nats-server doing, spelled out once.
    assert!(
        expected[0].contains(
            "-ERR 'Permissions Violation for Subscription to \"jobs.a\" using queue \"other\"'"
        ),
        "{expected:?}"
    );
    assert!(
        expected[1].contains("-ERR 'Permissions Violation for Publish to \"denied\"'"),
        "{expected:?}"
    );
    for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
        assert_eq!(
            g, e,
            "step {i}: Junction answered differently from nats-server"
        );
    }
    assert_eq!(got.len(), expected.len());
}
