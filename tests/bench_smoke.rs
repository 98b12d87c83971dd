//! Smoke test of `junction bench`: every scenario runs briefly against an in-process
//! broker and counts every message. Throughput is never asserted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use clap::Parser;
use junction::bench::{BenchArgs, Report, run};
use junction::{Config, Running};
use tempfile::TempDir;

async fn broker() -> (Running, TempDir) {
    broker_with_mqtt("off").await
}

async fn broker_with_mqtt(mqtt_listen: &str) -> (Running, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        nats_listen: "127.0.0.1:0".into(),
        http_listen: "127.0.0.1:0".into(),
        mqtt_listen: mqtt_listen.into(),
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    let running = junction::start(config).await.expect("broker starts");
    (running, dir)
}

async fn bench(url: &str, args: &[&str]) -> Report {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--url", url, "--json"]);
    let parsed = BenchArgs::try_parse_from(&argv).expect("arguments parse");
    let report = run(parsed)
        .await
        .unwrap_or_else(|e| panic!("{argv:?}: {e:#}"));
    assert_eq!(report.lost, 0, "{argv:?}: {report:?}");
    assert!(report.elapsed_secs > 0.0, "{argv:?}: {report:?}");
    // The JSON the binary prints has the documented fields.
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "scenario",
        "msgs",
        "msgs_per_sec",
        "mb_per_sec",
        "p50_us",
        "p90_us",
        "p99_us",
        "p999_us",
        "elapsed_secs",
        "client_cpu_secs",
    ] {
        assert!(json.get(key).is_some(), "{key} missing from {json}");
    }
    assert!(!report.to_text().is_empty());
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_scenarios_count_every_message() {
    let (running, _dir) = broker().await;
    let url = running.nats_url();

    let r = bench(&url, &["pub", "--msgs", "2000"]).await;
    assert_eq!((r.scenario.as_str(), r.msgs), ("pub", 2000));

    let r = bench(
        &url,
        &["pubsub", "--msgs", "2000", "--pubs", "2", "--subs", "2"],
    )
    .await;
    assert_eq!(r.msgs, 4000);
    assert_eq!(r.publishers.as_ref().unwrap().msgs, 2000);
    assert!(r.p50_us.is_some() && r.p999_us.is_some());

    let r = bench(&url, &["fanout", "--msgs", "2000", "--subs", "5"]).await;
    assert_eq!(r.msgs, 10_000);
    assert_eq!(r.subscribers.as_ref().unwrap().clients.len(), 5);

    let r = bench(&url, &["queue", "--msgs", "2000", "--subs", "3"]).await;
    assert_eq!(r.msgs, 2000);

    let r = bench(&url, &["reqrep", "--msgs", "2000", "--subs", "2"]).await;
    assert_eq!(r.msgs, 2000);
    assert_eq!(r.latency.as_deref(), Some("round_trip"));

    // 1 KiB payloads, a rate limit, and a duration instead of a count.
    let r = bench(
        &url,
        &[
            "pubsub", "--msgs", "2000", "--size", "1024", "--rate", "20000",
        ],
    )
    .await;
    assert_eq!(r.msgs, 2000);
    let r = bench(&url, &["pubsub", "--duration", "0.3"]).await;
    assert!(r.msgs > 0);
    assert_eq!(r.msgs, r.publishers.as_ref().unwrap().msgs);
    // Payloads too small for a timestamp: no latency, still counted.
    let r = bench(&url, &["pubsub", "--msgs", "2000", "--size", "4"]).await;
    assert_eq!(r.msgs, 2000);
    assert!(r.p50_us.is_none());

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_ordered_and_geo_scenarios_count_every_message() {
    let (running, _dir) = broker().await;
    let url = running.nats_url();

    let r = bench(&url, &["kv-put", "--pubs", "2", "--msgs", "300"]).await;
    assert_eq!(r.msgs, 300);
    assert_eq!(r.latency.as_deref(), Some("put round trip"));
    let r = bench(&url, &["kv-get", "--pubs", "2", "--msgs", "500"]).await;
    assert_eq!(r.msgs, 500);
    assert_eq!(r.latency.as_deref(), Some("get round trip"));
    let r = bench(&url, &["js-ordered", "--msgs", "3000", "--stream", "ORD"]).await;
    assert_eq!(r.msgs, 3000);

    // Two brokers: the second sources the first's stream over NATS.
    let (dest, _dest_dir) = broker().await;
    let r = bench(
        &url,
        &[
            "geo-source",
            "--sub-url",
            &dest.nats_url(),
            "--msgs",
            "2000",
            "--size",
            "16",
            "--stream",
            "GEO",
        ],
    )
    .await;
    assert_eq!(r.msgs, 2000);
    assert_eq!(r.latency_samples, 2000);
    dest.shutdown().await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn station_scenarios_count_every_message() {
    let (running, _dir) = broker().await;
    let url = running.nats_url();

    let r = bench(&url, &["js-pub", "--sync", "--msgs", "200"]).await;
    assert_eq!(r.msgs, 200);
    assert_eq!(r.latency.as_deref(), Some("round_trip"));

    let r = bench(
        &url,
        &["js-pub", "--window", "100", "--msgs", "2000", "--purge"],
    )
    .await;
    assert_eq!(r.msgs, 2000);
    assert_eq!(r.jetstream.as_ref().unwrap().window, Some(100));

    let r = bench(
        &url,
        &[
            "js-pub",
            "--window",
            "100",
            "--msgs",
            "2000",
            "--stream",
            "FLUSHED",
            "--flush-interval",
            "50ms",
            "--pubs",
            "2",
        ],
    )
    .await;
    assert_eq!(r.msgs, 2000);
    let r = bench(
        &url,
        &[
            "js-pub",
            "--msgs",
            "500",
            "--stream",
            "MEM",
            "--storage",
            "memory",
        ],
    )
    .await;
    assert_eq!(r.msgs, 500);

    let r = bench(&url, &["js-fetch", "--batch", "100", "--msgs", "2000"]).await;
    assert_eq!(r.msgs, 2000);
    assert_eq!(r.latency.as_deref(), Some("fetch_round_trip"));
    // Again on the same (now purged) stream and durable, with two members.
    let r = bench(
        &url,
        &["js-fetch", "--batch", "50", "--msgs", "1000", "--subs", "2"],
    )
    .await;
    assert_eq!(r.msgs, 1000);

    // A durable push consumer delivers the whole preloaded stream.
    let r = bench(
        &url,
        &["js-push", "--msgs", "2000", "--consumer", "pushbench"],
    )
    .await;
    assert_eq!((r.msgs, r.lost), (2000, 0));

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_scenarios_count_every_message() {
    let (running, _dir) = broker_with_mqtt("127.0.0.1:0").await;
    let mqtt = format!("mqtt://{}", running.mqtt_addr().expect("MQTT listener"));

    for qos in ["0", "1", "2"] {
        let r = bench(
            &mqtt,
            &[
                "mqtt-pubsub",
                "--qos",
                qos,
                "--msgs",
                "2000",
                "--size",
                "64",
            ],
        )
        .await;
        assert_eq!((r.scenario.as_str(), r.msgs), ("mqtt-pubsub", 2000));
        assert_eq!(r.mqtt_qos, Some(qos.parse().unwrap()));
        assert_eq!(r.latency.as_deref(), Some("publish_to_receive"));
        assert!(r.p50_us.is_some() && r.p999_us.is_some());
    }
    // Several publishers and subscribers, a small in-flight window, a rate limit,
    // and a duration instead of a count.
    let r = bench(
        &mqtt,
        &[
            "mqtt-pubsub",
            "--qos",
            "1",
            "--msgs",
            "2000",
            "--pubs",
            "2",
            "--subs",
            "2",
            "--window",
            "10",
        ],
    )
    .await;
    assert_eq!(r.msgs, 4000);
    assert_eq!(r.publishers.as_ref().unwrap().msgs, 2000);
    let r = bench(&mqtt, &["mqtt-pubsub", "--msgs", "1000", "--rate", "20000"]).await;
    assert_eq!(r.msgs, 1000);
    let r = bench(&mqtt, &["mqtt-pubsub", "--duration", "0.3"]).await;
    assert!(r.msgs > 0);
    assert_eq!(r.msgs, r.publishers.as_ref().unwrap().msgs);

    // Idle connections, with this process standing in for the server's PID.
    let pid = std::process::id().to_string();
    let r = bench(
        &mqtt,
        &[
            "mqtt-conn",
            "--count",
            "200",
            "--hold",
            "0.1",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(r.msgs, 200);
    let c = r.connections.as_ref().unwrap();
    assert_eq!((c.protocol.as_str(), c.connected), ("mqtt", 200));
    assert!(c.server_rss_per_conn_bytes.is_some());
    assert_eq!(r.latency.as_deref(), Some("connect"));

    // MQTT publish -> NATS subscribers.
    let nats = running.nats_url();
    let r = bench(
        &nats,
        &[
            "xproto",
            "--mqtt-url",
            &mqtt,
            "--msgs",
            "2000",
            "--subs",
            "2",
            "--size",
            "32",
        ],
    )
    .await;
    assert_eq!(r.msgs, 4000);
    assert!(r.p50_us.is_some());
    let r = bench(
        &nats,
        &["xproto", "--mqtt-url", &mqtt, "--msgs", "500", "--qos", "1"],
    )
    .await;
    assert_eq!(r.msgs, 500);

    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_idle_connections_and_http_produce() {
    let (running, _dir) = broker().await;
    let nats = running.nats_url();
    let pid = std::process::id().to_string();
    let r = bench(
        &nats,
        &[
            "conn",
            "--count",
            "200",
            "--hold",
            "0.1",
            "--server-pid",
            &pid,
        ],
    )
    .await;
    assert_eq!(r.msgs, 200);
    assert_eq!(r.connections.as_ref().unwrap().protocol, "nats");
    // Without a PID there is no memory figure, but the connect rate is there.
    let r = bench(&nats, &["conn", "--count", "50", "--hold", "0"]).await;
    assert!(
        r.connections
            .as_ref()
            .unwrap()
            .server_rss_per_conn_bytes
            .is_none()
    );
    assert!(r.msgs_per_sec > 0.0);

    let http = format!("http://{}", running.http_addr().expect("HTTP listener"));
    // One message per request into a station (created), then batches into it.
    let r = bench(
        &http,
        &["http-produce", "--msgs", "300", "--concurrency", "4"],
    )
    .await;
    assert_eq!(r.msgs, 300);
    let h = r.http.as_ref().unwrap();
    assert_eq!(
        (h.target.as_str(), h.batch, h.requests),
        ("station", 1, 300)
    );
    assert_eq!(r.latency.as_deref(), Some("request_round_trip"));
    let r = bench(
        &http,
        &[
            "http-produce",
            "--msgs",
            "1005",
            "--batch",
            "100",
            "--purge",
            "--flush-interval",
            "20ms",
        ],
    )
    .await;
    assert_eq!(r.msgs, 1005);
    // Live publishes to a subject nobody captures.
    let r = bench(
        &http,
        &["http-produce", "--msgs", "200", "--subject", "live.bench"],
    )
    .await;
    assert_eq!(r.msgs, 200);
    assert_eq!(r.http.as_ref().unwrap().target, "subject");

    running.shutdown().await;
}

#[tokio::test]
async fn impossible_plans_are_refused() {
    let args = BenchArgs::try_parse_from(["bench", "fanout", "--pubs", "2"]).unwrap();
    assert!(run(args).await.is_err());
    let args = BenchArgs::try_parse_from(["bench", "js-fetch", "--duration", "1"]).unwrap();
    assert!(run(args).await.is_err());
    let args = BenchArgs::try_parse_from(["bench", "js-push", "--duration", "1"]).unwrap();
    assert!(run(args).await.is_err());
    // Nothing listens there.
    let args = BenchArgs::try_parse_from(["bench", "pub", "--url", "nats://127.0.0.1:1"]).unwrap();
    assert!(run(args).await.is_err());
    let args =
        BenchArgs::try_parse_from(["bench", "mqtt-pubsub", "--url", "mqtt://127.0.0.1:1"]).unwrap();
    assert!(run(args).await.is_err());
    let args = BenchArgs::try_parse_from(["bench", "mqtt-conn", "--duration", "1"]).unwrap();
    assert!(run(args).await.is_err());
    let args =
        BenchArgs::try_parse_from(["bench", "http-produce", "--subject", "a.b", "--batch", "10"])
            .unwrap();
    assert!(run(args).await.is_err());
}

#[test]
fn bad_arguments_are_refused() {
    assert!(BenchArgs::try_parse_from(["bench", "nope"]).is_err());
    assert!(BenchArgs::try_parse_from(["bench", "js-pub", "--sync", "--window", "5"]).is_err());
    assert!(BenchArgs::try_parse_from(["bench", "pub", "--msgs", "5", "--duration", "1"]).is_err());
    assert!(BenchArgs::try_parse_from(["bench", "mqtt-pubsub", "--qos", "3"]).is_err());
}
