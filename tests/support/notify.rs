//! What the notification tests share: a `junction serve -c junction.toml`
//! process on loopback ports, and a webhook receiver on 127.0.0.1 that records
//! every POST and answers from a script.

use super::process::{GUARD, addr_after, junction};
use hmac::Mac;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;

/// A `junction serve -c junction.toml` on loopback ports.
pub struct Broker {
    pub child: Child,
    pub log: Arc<Mutex<Vec<String>>>,
    pub nats: SocketAddr,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
}

impl Broker {
    pub async fn start(dir: &Path) -> Broker {
        let args = [
            "serve",
            "-c",
            "junction.toml",
            "--nats-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
        ];
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
        let (mut nats, mut mqtt, mut http) = (None, None, None);
        let ready = tokio::time::timeout(GUARD, async {
            while let Some(line) = lines.recv().await {
                nats =
                    nats.or_else(|| addr_after(&line, "Listening for NATS client connections on "));
                mqtt = mqtt.or_else(|| addr_after(&line, "Listening for MQTT clients on "));
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
        // The MQTT listener may say where it listens just after "ready".
        if mqtt.is_none() {
            let _ = tokio::time::timeout(GUARD, async {
                while let Some(line) = lines.recv().await {
                    mqtt = addr_after(&line, "Listening for MQTT clients on ");
                    if mqtt.is_some() {
                        return;
                    }
                }
            })
            .await;
        }
        Broker {
            child,
            log,
            nats: nats.expect("NATS address in the log"),
            mqtt: mqtt.expect("MQTT address in the log"),
            http: http.expect("HTTP address in the log"),
        }
    }

    pub async fn stop(mut self) {
        let pid = self.child.id().unwrap().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        let status = tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("junction stops")
            .unwrap();
        assert!(
            status.success(),
            "exit status {status}; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub async fn get(&self, path: &str) -> Value {
        http()
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn post(&self, path: &str, body: Value) -> u16 {
        http()
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn events(&self, query: &str) -> Vec<Value> {
        self.get(&format!("/v1/events?limit=1000&{query}")).await["events"]
            .as_array()
            .unwrap()
            .clone()
    }
}

impl Broker {
    /// Reads `junction_alarm_active{name="<name>"}` from `/metrics` (None:
    /// absent).
    pub async fn alarm(&self, name: &str) -> Option<u8> {
        let text = http()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("junction_alarm_active{{name=\"{name}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Waits until the alarm's gauge is `value` (an alarm named after what it
    /// is about, `consumer_lag:…`, is listed only while it is up).
    pub async fn until_alarm(&self, name: &str, value: u8) {
        let deadline = Instant::now() + GUARD;
        while self.alarm(name).await.unwrap_or(0) != value {
            assert!(
                Instant::now() < deadline,
                "junction_alarm_active{{name={name:?}}} never became {value}; log:\n{}",
                self.log.lock().unwrap().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(GUARD)
        .build()
        .unwrap()
}

/// One request a receiver got.
#[derive(Clone, Debug)]
pub struct Hit {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: Vec<u8>,
}

impl Hit {
    /// Does `Junction-Signature` hold the HMAC-SHA256 of the body with `secret`?
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(&self.raw);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        self.header("Junction-Signature") == Some(&format!("sha256={hex}"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver's answers to come: status and `Retry-After`.
pub type Script = Arc<Mutex<std::collections::VecDeque<(u16, Option<&'static str>)>>>;

/// A webhook receiver on 127.0.0.1: records every POST and answers from a
/// script (then 200).
pub struct Receiver {
    pub addr: SocketAddr,
    pub hits: Arc<Mutex<Vec<Hit>>>,
    pub script: Script,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start(port: u16) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(std::collections::VecDeque::new()));
        let (h, s) = (hits.clone(), script.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    return;
                };
                let (h, s) = (h.clone(), s.clone());
                tokio::spawn(async move {
                    let _ = serve(sock, h, s).await;
                });
            }
        });
        Receiver {
            addr,
            hits,
            script,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the hits received.
    pub async fn until(&self, what: &str, pred: impl Fn(&[Hit]) -> bool) -> Vec<Hit> {
        let deadline = Instant::now() + GUARD;
        loop {
            let hits = self.hits();
            if pred(&hits) {
                return hits;
            }
            assert!(
                Instant::now() < deadline,
                "webhook receiver: {what}; got {} hits: {:#?}",
                hits.len(),
                hits.iter().map(|h| &h.body).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Receiver {
    /// Waits until one hit passes `pred`, and returns it.
    pub async fn until_hit(&self, what: &str, pred: impl Fn(&Hit) -> bool) -> Hit {
        self.until(what, |hits| hits.iter().any(&pred))
            .await
            .into_iter()
            .find(|h| pred(h))
            .unwrap()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one keep-alive connection of HTTP/1.1 POSTs.
async fn serve(
    sock: tokio::net::TcpStream,
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Script,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(sock);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        let (status, retry_after) = script.lock().unwrap().pop_front().unwrap_or((200, None));
        hits.lock().unwrap().push(Hit {
            at: Instant::now(),
            headers,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
            raw: body,
        });
        let extra = retry_after
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        let answer = format!("HTTP/1.1 {status} X\r\n{extra}Content-Length: 0\r\n\r\n");
        reader.get_mut().write_all(answer.as_bytes()).await?;
    }
}
