//! Prometheus `GET /metrics` on the main HTTP listener: the text exposition format,
//! every `junction_` metric with its labels, counters that move with NATS traffic,
//! station and consumer-group gauges, the fsync histogram, and no auth required.

use crate::support::{Api, poll_until, within};
use bytes::Bytes;
use junction_conformance::{broker, broker_with};
use serde_json::json;
use std::collections::BTreeMap;

/// One sample: metric name and its labels (sorted), as scraped.
type Key = (String, BTreeMap<String, String>);

/// A parsed scrape: samples plus `# TYPE` lines.
struct Scrape {
    samples: BTreeMap<Key, f64>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    /// The value of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }

    /// Like [`Scrape::get`], failing the test when the sample is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    fn type_of(&self, name: &str) -> &str {
        self.types
            .get(name)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("no # TYPE for {name} in:\n{}", self.text))
    }
}

/// Parses the text exposition format (as much of it as the encoder writes: no
/// escaped quotes or commas inside our label values).
fn parse(text: String) -> Scrape {
    let mut samples = BTreeMap::new();
    let mut types = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.strip_suffix('}').expect("closing brace");
                let labels = body
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').expect("label pair");
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        samples.insert((name, labels), value);
    }
    Scrape {
        samples,
        types,
        text,
    }
}

async fn scrape(api: &Api) -> Scrape {
    let response = within(
        "GET /metrics",
        api.request(reqwest::Method::GET, "/metrics").send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert!(
        content_type.starts_with("text/plain") && content_type.contains("version=0.0.4"),
        "content type {content_type:?}"
    );
    parse(within("metrics body", response.text()).await.unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_follow_nats_traffic_stations_and_groups() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("METRICS", &["metrics.>"]).await;
    api.group("METRICS", "readers", json!({"ack_wait_ms": 60000}))
        .await;
    let before = scrape(&api).await;

    let nats = within("connect", async_nats::connect(b.nats_url()))
        .await
        .unwrap();
    const N: u64 = 5;
    let payload = Bytes::from_static(b"0123456789");
    for _ in 0..N {
        within("publish", nats.publish("metrics.in", payload.clone()))
            .await
            .unwrap();
    }
    within("flush", nats.flush()).await.unwrap();
    // Storing is asynchronous to a core publish: wait until the station holds them.
    poll_until("the station to hold every message", || async {
        scrape(&api).await.get(
            "junction_station_messages",
            &[("station", "METRICS"), ("tenant", "$G")],
        ) == Some(N as f64)
    })
    .await;
    // Two deliveries, not acknowledged: pending acks, and lag for the rest.
    // The metric counts a message once it is appended; a fetch sees it once it is
    // durable, and answers with what it has: fetch until both have come.
    let mut fetched = api.fetch("METRICS", "readers", 2, 2000).await;
    for _ in 0..20 {
        if fetched.len() >= 2 {
            break;
        }
        let want = 2 - fetched.len() as u64;
        fetched.extend(api.fetch("METRICS", "readers", want, 2000).await);
    }
    assert_eq!(fetched.len(), 2);

    let after = scrape(&api).await;

    // Types.
    for (name, kind) in [
        ("junction_connections", "gauge"),
        ("junction_total_connections", "counter"),
        ("junction_messages_in_total", "counter"),
        ("junction_messages_out_total", "counter"),
        ("junction_bytes_in_total", "counter"),
        ("junction_bytes_out_total", "counter"),
        ("junction_protocol_messages_in_total", "counter"),
        ("junction_protocol_messages_out_total", "counter"),
        ("junction_protocol_bytes_in_total", "counter"),
        ("junction_protocol_bytes_out_total", "counter"),
        ("junction_slow_consumer_disconnects_total", "counter"),
        ("junction_subscriptions", "gauge"),
        ("junction_station_messages", "gauge"),
        ("junction_station_bytes", "gauge"),
        ("junction_station_last_seq", "gauge"),
        ("junction_consumer_group_lag", "gauge"),
        ("junction_consumer_group_ack_pending", "gauge"),
        ("junction_consumer_group_redelivered", "gauge"),
        ("junction_fsync_seconds", "histogram"),
        ("junction_storage_disk_bytes", "gauge"),
        ("junction_resident_memory_bytes", "gauge"),
        ("junction_cpu_seconds_total", "counter"),
    ] {
        assert_eq!(after.type_of(name), kind, "type of {name}");
    }

    // Server-wide counters moved by at least what this test published.
    let grew = |name: &str| after.value(name, &[]) - before.value(name, &[]);
    assert!(grew("junction_messages_in_total") >= N as f64);
    assert!(grew("junction_bytes_in_total") >= (N * 10) as f64);
    assert!(after.value("junction_total_connections", &[]) >= 1.0);
    assert_eq!(
        after.value("junction_slow_consumer_disconnects_total", &[]),
        0.0
    );
    assert!(after.value("junction_subscriptions", &[]) >= 0.0);

    // Per protocol: the NATS client is connected and published N messages.
    let nats_label = [("protocol", "nats")];
    assert!(after.value("junction_connections", &nats_label) >= 1.0);
    assert!(after.value("junction_protocol_messages_in_total", &nats_label) >= N as f64);
    assert!(after.value("junction_protocol_bytes_in_total", &nats_label) >= (N * 10) as f64);
    for protocol in ["nats", "mqtt", "http", "websocket"] {
        let label = [("protocol", protocol)];
        after.value("junction_connections", &label);
        after.value("junction_protocol_messages_out_total", &label);
        after.value("junction_protocol_bytes_out_total", &label);
    }

    // The station and its group.
    let station = [("station", "METRICS"), ("tenant", "$G")];
    assert_eq!(after.value("junction_station_messages", &station), N as f64);
    assert!(after.value("junction_station_bytes", &station) >= (N * 10) as f64);
    assert_eq!(after.value("junction_station_last_seq", &station), N as f64);
    let group = [
        ("group", "readers"),
        ("station", "METRICS"),
        ("tenant", "$G"),
    ];
    assert_eq!(
        after.value("junction_consumer_group_lag", &group),
        (N - 2) as f64
    );
    assert_eq!(
        after.value("junction_consumer_group_ack_pending", &group),
        2.0
    );
    assert_eq!(
        after.value("junction_consumer_group_redelivered", &group),
        0.0
    );

    // Storage: the station's writes were fsynced, and the histogram is whole.
    let count = after.value("junction_fsync_seconds_count", &[]);
    assert!(count > before.value("junction_fsync_seconds_count", &[]));
    assert!(after.value("junction_fsync_seconds_sum", &[]) >= 0.0);
    assert_eq!(
        after.value("junction_fsync_seconds_bucket", &[("le", "+Inf")]),
        count
    );
    assert!(
        after
            .get("junction_fsync_seconds_bucket", &[("le", "0.001")])
            .is_some()
    );
    assert!(
        after
            .get("junction_fsync_seconds_bucket", &[("le", "1")])
            .is_some()
    );
    assert!(after.value("junction_storage_disk_bytes", &[]) > 0.0);

    // The process.
    assert!(after.value("junction_resident_memory_bytes", &[]) >= 0.0);
    assert!(after.value("junction_cpu_seconds_total", &[]) >= 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_the_api_credentials_when_the_broker_has_them() {
    let b = broker_with(|c| c.auth.token = Some("s3cret".into())).await;
    let anonymous = Api::new(&b);
    anonymous
        .get("/metrics")
        .await
        .expect_error(401, "unauthorized");
    let metrics = scrape(&anonymous.with_auth("Bearer s3cret")).await;
    metrics.value("junction_messages_in_total", &[]);

    // `[http] monitoring_auth = false` opens it again.
    let open = broker_with(|c| {
        c.auth.token = Some("s3cret".into());
        c.http.monitoring_auth = false;
    })
    .await;
    let metrics = scrape(&Api::new(&open)).await;
    metrics.value("junction_messages_in_total", &[]);
}
