//! A tenant's storage limits (`jetstream = { max_file, max_memory }`, nats-server's
//! account `max_file` / `max_mem`):
//! - a station reserves its `max_bytes` against them when it is created or
//!   changed: JetStream 10047 "insufficient storage resources available" (file),
//!   10028 "insufficient memory resources available" (memory), HTTP 507
//!   `insufficient_storage`;
//! - a message that would take the tenant's stored bytes past the limit is not
//!   stored: JetStream PubAck 10002 "resource limits exceeded for account", HTTP
//!   507 `tenant_storage_full`, MQTT 5 PUBACK 0x97 Quota exceeded (MQTT 3.1.1:
//!   acknowledged and dropped); a NATS core publish gets no answer but is counted;
//!   what was acknowledged before stays, and exactly that is stored.
//!
//! The same nats-server `.conf` is given to a real nats-server and to Junction
//! (`-c server.conf`): the JetStream answers (status, error code, description)
//! are compared step by step. Junction's TOML form of the same limits is checked
//! over HTTP and MQTT too.

use crate::common::{http, nats_as, tenant};
use crate::support::{V4, V5, v4_options, v5_options};
use junction::cli::ServeArgs;
use junction_conformance::{TestBroker, mqtt_broker_with, start_in};
use serde_json::{Value, json};
use std::process::{Command, Stdio};

/// `max_file: 1M` is 1,000,000 bytes (nats-server's `M`; `MB` would be 2^20).
const MAX_FILE: u64 = 1_000_000;
/// `max_mem: 100K`.
const MAX_MEMORY: u64 = 100_000;
/// Each message's payload; the account fills up after about 120 of them.
const PAYLOAD: usize = 8 * 1024;

/// The accounts block both servers read.
const ACCOUNTS: &str = r#"
accounts {
  LIM { users: [ { user: l, password: pw } ], jetstream { max_file: 1M, max_mem: 100K } }
}
"#;

fn nats_server_installed() -> bool {
    Command::new("nats-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Junction started from the same nats-server file.
async fn junction_from_conf() -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        format!("listen: \"127.0.0.1:0\"\njetstream: enabled\n{ACCOUNTS}"),
    )
    .unwrap();
    let mut config = ServeArgs {
        config: Some(conf),
        ..Default::default()
    }
    .load()
    .expect("the nats-server file loads");
    let lim = config
        .tenants
        .iter()
        .find(|t| t.name == "LIM")
        .expect("account LIM is a tenant");
    assert_eq!(lim.jetstream.max_file, Some(MAX_FILE));
    assert_eq!(lim.jetstream.max_memory, Some(MAX_MEMORY));
    let base = junction_conformance::test_config(dir.path());
    config.http_listen = base.http_listen;
    config.mqtt_listen = base.mqtt_listen;
    config.data_dir = base.data_dir;
    start_in(config, dir).await
}

async fn login(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::with_user_and_password("l".into(), "pw".into())
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("NATS login at {url}: {e}"))
}

async fn api(nc: &async_nats::Client, subject: String, body: Value) -> Value {
    let r = nc
        .request(subject, body.to_string().into())
        .await
        .expect("JetStream answers");
    serde_json::from_slice(&r.payload).unwrap()
}

/// `"ok"`, or the error's status, code and description.
fn outcome(v: &Value) -> String {
    match v.get("error") {
        None | Some(Value::Null) => "ok".into(),
        Some(e) => format!(
            "{} {} {}",
            e["code"],
            e["err_code"],
            e["description"].as_str().unwrap_or("?")
        ),
    }
}

async fn stream(nc: &async_nats::Client, verb: &str, config: Value) -> String {
    let name = config["name"].as_str().unwrap().to_string();
    let v = api(nc, format!("$JS.API.STREAM.{verb}.{name}"), config).await;
    outcome(&v)
}

fn file_stream(name: &str, max_bytes: i64) -> Value {
    json!({"name": name, "subjects": [format!("{name}.>")], "storage": "file",
           "max_bytes": max_bytes, "retention": "limits", "discard": "old",
           "max_msgs": -1, "max_age": 0, "num_replicas": 1})
}

/// What one server answers, step by step; and the messages acknowledged and
/// stored in the unlimited stream that fills the account.
struct Transcript {
    steps: Vec<(String, String)>,
    acked: u64,
    stored: u64,
    first_seq: u64,
}

async fn transcript(url: &str) -> Transcript {
    let nc = login(url).await;
    let mut steps = Vec::new();
    let mut step = |what: &str, got: String| steps.push((what.to_string(), got));

    step(
        "file stream of 2 MiB",
        stream(&nc, "CREATE", file_stream("big", 2 << 20)).await,
    );
    step(
        "file stream of 512 KiB",
        stream(&nc, "CREATE", file_stream("half", 512 << 10)).await,
    );
    step(
        "second file stream of 600 KiB",
        stream(&nc, "CREATE", file_stream("more", 600 << 10)).await,
    );
    step(
        "512 KiB stream grown to 2 MiB",
        stream(&nc, "UPDATE", file_stream("half", 2 << 20)).await,
    );
    step(
        "512 KiB stream grown to 900 KiB",
        stream(&nc, "UPDATE", file_stream("half", 900 << 10)).await,
    );
    step(
        "512 KiB stream back",
        stream(&nc, "UPDATE", file_stream("half", 512 << 10)).await,
    );
    let mut memory = file_stream("mem", 200_000);
    memory["storage"] = json!("memory");
    step(
        "memory stream of 200 KB",
        stream(&nc, "CREATE", memory).await,
    );
    let mut memory = file_stream("mem", 50_000);
    memory["storage"] = json!("memory");
    step(
        "memory stream of 50 KB",
        stream(&nc, "CREATE", memory).await,
    );
    step(
        "unlimited file stream",
        stream(&nc, "CREATE", file_stream("open", -1)).await,
    );

    // Fill the account: publish until the PubAck is an error (well before
    // 10 x the limit), then once more.
    let payload = bytes::Bytes::from(vec![b'x'; PAYLOAD]);
    let mut acked = 0u64;
    let mut refusal = None;
    for _ in 0..(10 * MAX_FILE as usize / PAYLOAD) {
        let r = nc
            .request("open.x", payload.clone())
            .await
            .expect("a PubAck");
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        if v.get("error").is_some_and(|e| !e.is_null()) {
            refusal = Some(outcome(&v));
            break;
        }
        assert_eq!(v["stream"], "open", "{v}");
        acked += 1;
    }
    step(
        "publish into the full account",
        refusal.expect("a publish is refused before 10 x the limit"),
    );
    let again = nc
        .request("open.x", payload.clone())
        .await
        .expect("a PubAck");
    step(
        "publish again",
        outcome(&serde_json::from_slice(&again.payload).unwrap()),
    );

    let info = api(&nc, "$JS.API.STREAM.INFO.open".into(), json!({})).await;
    Transcript {
        steps,
        acked,
        stored: info["state"]["messages"].as_u64().unwrap(),
        first_seq: info["state"]["first_seq"].as_u64().unwrap(),
    }
}

const STORAGE: &str = "500 10047 insufficient storage resources available";
const MEMORY: &str = "500 10028 insufficient memory resources available";
const ACCOUNT: &str = "400 10002 resource limits exceeded for account";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_answers_as_nats_server_from_the_same_conf() {
    let b = junction_from_conf().await;
    let got = transcript(&b.nats_url()).await;
    let expected: Vec<(&str, &str)> = vec![
        ("file stream of 2 MiB", STORAGE),
        ("file stream of 512 KiB", "ok"),
        ("second file stream of 600 KiB", STORAGE),
        ("512 KiB stream grown to 2 MiB", STORAGE),
        ("512 KiB stream grown to 900 KiB", "ok"),
        ("512 KiB stream back", "ok"),
        ("memory stream of 200 KB", MEMORY),
        ("memory stream of 50 KB", "ok"),
        ("unlimited file stream", "ok"),
        ("publish into the full account", ACCOUNT),
        ("publish again", ACCOUNT),
    ];
    let steps: Vec<(&str, &str)> = got
        .steps
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(steps, expected);
    // Exactly what was acknowledged is stored, from the first message on:
    // nothing acknowledged was dropped to make room.
    assert!(got.acked > 0);
    assert_eq!(got.stored, got.acked);
    assert_eq!(got.first_seq, 1);

    if !nats_server_installed() {
        eprintln!("nats-server is not installed: the comparison with it is skipped");
        return;
    }
    let reference = crate::common::NatsServer::start(&format!(
        "jetstream {{ store_dir: \"{{store}}\" }}\n{ACCOUNTS}"
    ))
    .await;
    let want = transcript(&format!("nats://{}", reference.addr)).await;
    assert_eq!(
        got.steps, want.steps,
        "Junction answered differently from nats-server"
    );
    assert_eq!(want.stored, want.acked);
    assert_eq!(want.first_seq, 1);
}

async fn post(b: &TestBroker, path: &str, body: &str) -> (u16, Value) {
    let r = http()
        .post(format!("{}{path}", b.http_url()))
        .basic_auth("l", Some("pw"))
        .body(body.to_string())
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_mqtt_and_a_stock_jetstream_client_see_the_toml_limits() {
    let b = mqtt_broker_with(|c| {
        let mut lim = tenant("lim", &[("l", "pw")]);
        lim.jetstream.max_file = Some(MAX_FILE);
        c.auth.users = vec![junction::engine::User::new("admin", "admin-pw")];
        c.tenants = vec![lim, tenant("other", &[("o", "pw")])];
    })
    .await;
    let nc = nats_as(&b, "l", "pw").await;
    let js = async_nats::jetstream::new(nc.clone());

    // A stock client's create: the error code it can match on.
    let err = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "big".into(),
            subjects: vec!["big.>".into()],
            max_bytes: 2 << 20,
            ..Default::default()
        })
        .await
        .expect_err("2 MiB does not fit 1 MB");
    match err.kind() {
        async_nats::jetstream::context::CreateStreamErrorKind::JetStream(e) => {
            assert_eq!(e.error_code().0, 10047, "{e}");
            assert_eq!(
                e.to_string(),
                "insufficient storage resources available (code 500, error code 10047)"
            );
        }
        other => panic!("not a JetStream error: {other:?}"),
    }
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "half".into(),
        subjects: vec!["half.>".into()],
        max_bytes: 512 << 10,
        ..Default::default()
    })
    .await
    .expect("512 KiB fits");

    // HTTP: the same reservation.
    let (status, body) = post(
        &b,
        "/v1/stations",
        r#"{"name":"web","subjects":["web.>"],"retention":{"max_bytes":600000}}"#,
    )
    .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_storage", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("max_file (1000000 bytes)")),
        "{body}"
    );
    let (status, body) = post(
        &b,
        "/v1/stations",
        r#"{"name":"open","subjects":["open.>"]}"#,
    )
    .await;
    assert_eq!(status, 201, "an unlimited station reserves 1 byte: {body}");

    // Fill the tenant over HTTP, then every protocol is refused.
    let payload = "y".repeat(PAYLOAD);
    let mut acked = 0u64;
    let refusal = loop {
        let (status, body) = post(&b, "/v1/subjects/open.h", &payload).await;
        if status != 201 {
            break (status, body);
        }
        acked += 1;
        assert!(acked < 10 * MAX_FILE / PAYLOAD as u64, "never refused");
    };
    assert_eq!(refusal.0, 507, "{}", refusal.1);
    assert_eq!(refusal.1["error"]["code"], "tenant_storage_full");
    assert!(acked > 0);

    let v: Value = serde_json::from_slice(
        &nc.request("open.n", payload.clone().into())
            .await
            .expect("PubAck")
            .payload,
    )
    .unwrap();
    assert_eq!(v["error"]["err_code"], 10002, "{v}");
    assert_eq!(
        v["error"]["description"],
        "resource limits exceeded for account"
    );

    let mut o = v5_options(&b, "lim-mqtt");
    o.set_credentials("l", "pw");
    let (mut mqtt, _) = V5::connect(o).await;
    let reason = mqtt
        .publish(
            "open/m",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            payload.clone().into_bytes(),
        )
        .await;
    assert_eq!(reason.as_deref(), Some("QuotaExceeded"));
    // MQTT 3.1.1 cannot refuse a publish: acknowledged and dropped (not stored),
    // as for a full station; the connection stays.
    let mut o = v4_options(&b, "lim-mqtt-v4");
    o.set_credentials("l", "pw");
    let (mut v4, _) = V4::connect(o).await;
    v4.publish(
        "open/v4",
        rumqttc::QoS::AtLeastOnce,
        false,
        payload.clone().into_bytes(),
    )
    .await;
    v4.publish(
        "open/v4",
        rumqttc::QoS::AtLeastOnce,
        false,
        payload.clone().into_bytes(),
    )
    .await;

    // A core NATS publish is not answered (as nats-server), and not stored.
    nc.publish("open.core", payload.clone().into())
        .await
        .unwrap();
    nc.flush().await.unwrap();

    // Exactly what was acknowledged is stored, from the first on.
    let (_, station) = crate::common::get_as(&b, "l", "pw", "/v1/stations/open").await;
    assert_eq!(station["state"]["messages"], acked, "{station}");
    assert_eq!(station["state"]["first_seq"], 1, "{station}");

    // Account info reports the limit and the usage it is checked against.
    let info = api(&nc, "$JS.API.INFO".into(), json!({})).await;
    assert_eq!(info["limits"]["max_storage"], MAX_FILE, "{info}");
    assert_eq!(info["limits"]["max_memory"], -1, "{info}");
    assert_eq!(info["reserved_storage"], 512 << 10, "{info}");
    assert!(info["storage"].as_u64().unwrap() <= MAX_FILE, "{info}");

    // Refusals are counted for the operators.
    let metrics = http()
        .get(format!("{}/metrics", b.http_url()))
        .basic_auth("admin", Some("admin-pw"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .unwrap();
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("junction_tenant_storage_refused_total "))
        .expect("the refusal counter")
        .trim()
        .parse()
        .unwrap();
    assert!(
        refused >= 6,
        "HTTP, JetStream, MQTT 5, MQTT 3.1.1 twice and core: {refused}"
    );

    // Another tenant is not bound by it.
    let other = nats_as(&b, "o", "pw").await;
    let js = async_nats::jetstream::new(other);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "big".into(),
        subjects: vec!["big.>".into()],
        max_bytes: 2 << 20,
        ..Default::default()
    })
    .await
    .expect("no limit for the other tenant");
}
