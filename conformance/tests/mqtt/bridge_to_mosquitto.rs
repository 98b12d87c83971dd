//! `[[mqtt.bridges]]` against a real mosquitto that each test starts on
//! 127.0.0.1 and a free port, with a configuration file it writes
//! (`apt-get install mosquitto`; scripts/test installs it): messages cross in
//! both directions with the prefixes swapped, a `both` topic does not loop, and
//! at QoS 1 nothing either broker acknowledged is lost while the other broker is
//! down (mosquitto killed with SIGKILL, Junction restarted), because the bridge
//! acknowledges a message to its source only after the destination did. QoS 2
//! crosses exactly once, a bridge speaks 3.1.1 to a broker that asks for it
//! (with mosquitto's bridge bit), and a mosquitto bridging into Junction with
//! that bit gets No Local subscriptions here.

#[path = "../tls/certs.rs"]
mod certs;

use crate::support::{LONG_GUARD, V5, v5_options, within, within_for};
use junction_conformance::{TestBroker, mqtt_broker_with, start_in};
use junction_mqtt::bridge::{BridgeConfig, BridgeProtocol, BridgeTopic, Direction};
use rumqttc::v5::mqttbytes::QoS;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::process::{Child, Command};

/// A mosquitto process this test started (killed by PID when dropped).
struct Mosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

fn mosquitto_binary() -> PathBuf {
    for p in [
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/usr/bin/mosquitto",
    ] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("mosquitto is not installed: apt-get install mosquitto (scripts/test does)");
}

impl Mosquitto {
    /// Starts mosquitto on a free port of 127.0.0.1, persistence in `dir`.
    async fn start(dir: &Path) -> Mosquitto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Self::start_on(dir, port).await
    }

    /// Starts mosquitto on `port` (again, after a kill: it reads what it saved).
    async fn start_on(dir: &Path, port: u16) -> Mosquitto {
        Self::start_with(dir, port, "").await
    }

    /// [`Mosquitto::start_on`], with `extra` lines at the end of its
    /// configuration (another listener, say).
    async fn start_with(dir: &Path, port: u16, extra: &str) -> Mosquitto {
        // Started as root, mosquitto drops to its own user: it must be able to
        // write its persistence file here.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))
                .expect("chmod the mosquitto directory");
        }
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n\
                 persistence_location {}/\nlog_dest stderr\nlog_type error\nlog_type warning\n{extra}",
                dir.display()
            ),
        )
        .expect("mosquitto.conf");
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(&conf)
            .kill_on_drop(true)
            .spawn()
            .expect("mosquitto starts");
        within("mosquitto to listen", async {
            while tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        Mosquitto {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn options(&self, client_id: &str) -> rumqttc::v5::MqttOptions {
        let mut o = rumqttc::v5::MqttOptions::new(client_id, "127.0.0.1", self.port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    /// A persistent session (Clean Start 0, session expiry 1 h).
    fn persistent(&self, client_id: &str) -> rumqttc::v5::MqttOptions {
        let mut o = self.options(client_id);
        o.set_clean_start(false);
        o.set_session_expiry_interval(Some(3600));
        o
    }

    /// Writes the persistence file now (SIGUSR1) and waits until it is there.
    async fn save(&self) {
        let db = self.dir.join("mosquitto.db");
        let _ = std::fs::remove_file(&db);
        let pid = self.child.id().expect("mosquitto runs");
        let sent = Command::new("kill")
            .args(["-USR1", &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(sent.success());
        within("mosquitto.db", async {
            while !db.exists() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// SIGKILL: what mosquitto held only in memory is gone.
    async fn kill9(mut self) -> (PathBuf, u16) {
        self.child.start_kill().expect("kill -9 mosquitto");
        let _ = self.child.wait().await;
        (self.dir.clone(), self.port)
    }
}

fn topic(pattern: &str, direction: Direction, local: &str, remote: &str) -> BridgeTopic {
    BridgeTopic {
        pattern: pattern.into(),
        direction,
        qos: 1,
        local_prefix: local.into(),
        remote_prefix: remote.into(),
    }
}

fn bridge(port: u16, topics: Vec<BridgeTopic>) -> BridgeConfig {
    BridgeConfig {
        name: "to-mosquitto".into(),
        address: format!("127.0.0.1:{port}"),
        client_id: None,
        username: None,
        password: None,
        local_username: None,
        local_password: None,
        keep_alive: Duration::from_secs(30),
        session_expiry: Duration::from_secs(3600),
        reconnect_min: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        topics,
        tls: None,
        protocol_version: BridgeProtocol::V5,
        try_private: true,
    }
}

async fn junction_with_bridge(b: BridgeConfig) -> TestBroker {
    mqtt_broker_with(|c| c.mqtt.bridges = vec![b]).await
}

/// Publishes `probe` on `from` until `to` gets one: the bridge is connected
/// and subscribed. (Probes are told apart by their payload.)
async fn until_bridged(from: &mut V5, topic: &str, to: &mut V5) {
    within_for(LONG_GUARD, "the bridge to carry a probe", async {
        loop {
            from.publish(topic, QoS::AtLeastOnce, false, "probe").await;
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(300), to.recv()).await {
                assert_eq!(&m.payload[..], b"probe");
                return;
            }
        }
    })
    .await;
}

/// Payloads received until `sentinel`, probes left out.
async fn payloads_until(c: &mut V5, sentinel: &str) -> Vec<(String, String)> {
    within_for(
        LONG_GUARD,
        "messages up to the sentinel",
        c.recv_until(sentinel.as_bytes()),
    )
    .await
    .into_iter()
    .filter(|m| &m.payload[..] != b"probe")
    .map(|m| {
        (
            String::from_utf8_lossy(&m.topic).into_owned(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        )
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_cross_both_ways_with_prefixes_and_a_both_topic_does_not_loop() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(dir.path()).await;
    let j = junction_with_bridge(bridge(
        m.port,
        vec![
            topic("sensors/#", Direction::Out, "site/", "fleet/a/"),
            topic("cmd/#", Direction::In, "", "fleet/a/"),
            topic("chat/#", Direction::Both, "", ""),
        ],
    ))
    .await;

    let mut j_sub = V5::new(&j, "j-sub").await;
    j_sub.subscribe("cmd/#", QoS::AtLeastOnce).await;
    j_sub.subscribe("chat/#", QoS::AtLeastOnce).await;
    let mut j_pub = V5::new(&j, "j-pub").await;
    let (mut m_sub, _) = V5::connect(m.options("m-sub")).await;
    m_sub.subscribe("fleet/a/sensors/#", QoS::AtLeastOnce).await;
    m_sub.subscribe("chat/#", QoS::AtLeastOnce).await;
    let (mut m_pub, _) = V5::connect(m.options("m-pub")).await;
    until_bridged(&mut j_pub, "site/sensors/probe", &mut m_sub).await;
    until_bridged(&mut m_pub, "fleet/a/cmd/probe", &mut j_sub).await;

    // Out: site/sensors/... here is fleet/a/sensors/... there, in order.
    for i in 0..20 {
        j_pub
            .publish("site/sensors/t1", QoS::AtLeastOnce, false, format!("s{i}"))
            .await;
    }
    j_pub
        .publish("site/sensors/t1", QoS::AtLeastOnce, false, "s-end")
        .await;
    let got = payloads_until(&mut m_sub, "s-end").await;
    let want: Vec<(String, String)> = (0..20)
        .map(|i| format!("s{i}"))
        .chain(["s-end".to_string()])
        .map(|p| ("fleet/a/sensors/t1".to_string(), p))
        .collect();
    assert_eq!(got, want);

    // In: fleet/a/cmd/... there is cmd/... here; user properties kept.
    let props = rumqttc::v5::mqttbytes::v5::PublishProperties {
        user_properties: vec![("k".into(), "v1".into()), ("k".into(), "v2".into())],
        content_type: Some("text/plain".into()),
        ..Default::default()
    };
    m_pub
        .publish_with(
            "fleet/a/cmd/valve",
            QoS::AtLeastOnce,
            false,
            "open",
            Some(props.clone()),
        )
        .await;
    let c = within("the command", j_sub.recv()).await;
    assert_eq!(
        (&c.topic[..], &c.payload[..]),
        (&b"cmd/valve"[..], &b"open"[..])
    );
    let p = c.properties.expect("properties");
    assert_eq!(p.user_properties, props.user_properties);
    assert_eq!(p.content_type, props.content_type);

    // Both: each side's message reaches the other side once, and does not come
    // back to its own side a second time.
    j_pub
        .publish("chat/x", QoS::AtLeastOnce, false, "from-j")
        .await;
    m_pub
        .publish("chat/x", QoS::AtLeastOnce, false, "from-m")
        .await;
    j_pub
        .publish("chat/x", QoS::AtLeastOnce, false, "end-j")
        .await;
    m_pub
        .publish("chat/x", QoS::AtLeastOnce, false, "end-m")
        .await;
    let (mut seen_j, mut seen_m) = (Vec::new(), Vec::new());
    for (who, c, seen) in [
        ("junction", &mut j_sub, &mut seen_j),
        ("mosquitto", &mut m_sub, &mut seen_m),
    ] {
        while !(seen.contains(&"end-j".to_string()) && seen.contains(&"end-m".to_string())) {
            let m = within(who, c.recv()).await;
            if &m.payload[..] != b"probe" {
                seen.push(String::from_utf8_lossy(&m.payload).into_owned());
            }
        }
    }
    // A sentinel after everything: nothing came twice, on either side.
    j_pub
        .publish("chat/x", QoS::AtLeastOnce, false, "tail")
        .await;
    for (who, c, seen) in [
        ("junction", &mut j_sub, &mut seen_j),
        ("mosquitto", &mut m_sub, &mut seen_m),
    ] {
        seen.extend(payloads_until(c, "tail").await.into_iter().map(|(_, p)| p));
        seen.sort();
        assert_eq!(
            *seen,
            vec!["end-j", "end-m", "from-j", "from-m", "tail"],
            "{who}: each message once"
        );
    }
}

/// Out at QoS 1 while mosquitto is down: Junction acknowledges the publishes
/// (the bridge's session here keeps them), mosquitto is killed with SIGKILL and
/// started again, the bridge reconnects by itself, and every message reaches a
/// persistent subscriber there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_out_loses_nothing_acknowledged_while_mosquitto_is_killed_and_restarted() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(dir.path()).await;
    let j = junction_with_bridge(bridge(
        m.port,
        vec![topic("data/#", Direction::Out, "", "")],
    ))
    .await;
    let mut j_pub = V5::new(&j, "j-pub").await;
    let (mut m_sub, _) = V5::connect(m.persistent("m-durable")).await;
    m_sub.subscribe("data/#", QoS::AtLeastOnce).await;
    until_bridged(&mut j_pub, "data/probe", &mut m_sub).await;
    m_sub.disconnect().await;
    // The subscriber's session is on disk; then mosquitto dies.
    m.save().await;
    let (dir_path, port) = m.kill9().await;

    for i in 0..50 {
        let reason = j_pub
            .publish("data/x", QoS::AtLeastOnce, false, format!("d{i}"))
            .await;
        assert!(
            reason.as_deref().is_none_or(|r| r == "Success"),
            "acknowledged by Junction: {reason:?}"
        );
    }
    j_pub
        .publish("data/x", QoS::AtLeastOnce, false, "d-end")
        .await;

    let m = Mosquitto::start_on(&dir_path, port).await;
    let (mut m_sub, ack) = V5::connect(m.persistent("m-durable")).await;
    assert!(
        ack.session_present,
        "mosquitto kept the subscriber's session"
    );
    let got: Vec<String> = payloads_until(&mut m_sub, "d-end")
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    let mut want: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
    want.push("d-end".into());
    want.sort();
    assert_eq!(
        unique, want,
        "every acknowledged message arrived (at least once)"
    );
    eprintln!("{} delivered for {} published", got.len(), want.len());
}

/// In at QoS 1 while Junction is down: mosquitto acknowledges the publishes and
/// keeps them for the bridge's persistent session there; Junction starts again
/// on its data, the bridge reconnects, and a persistent subscriber here gets
/// every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_in_loses_nothing_acknowledged_while_junction_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(dir.path()).await;
    let j = junction_with_bridge(bridge(m.port, vec![topic("up/#", Direction::In, "", "")])).await;
    let mut o = v5_options(&j, "j-durable");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut j_sub, _) = V5::connect(o).await;
    j_sub.subscribe("up/#", QoS::AtLeastOnce).await;
    let (mut m_pub, _) = V5::connect(m.options("m-pub")).await;
    until_bridged(&mut m_pub, "up/probe", &mut j_sub).await;
    j_sub.disconnect().await;

    let (config, data) = within_for(LONG_GUARD, "Junction to stop", j.stop()).await;
    for i in 0..50 {
        let reason = m_pub
            .publish("up/x", QoS::AtLeastOnce, false, format!("u{i}"))
            .await;
        assert!(
            reason.as_deref().is_none_or(|r| r == "Success"),
            "acknowledged by mosquitto: {reason:?}"
        );
    }
    m_pub
        .publish("up/x", QoS::AtLeastOnce, false, "u-end")
        .await;
    let j = within_for(
        LONG_GUARD,
        "Junction to start again",
        start_in(config, data),
    )
    .await;

    let mut o = v5_options(&j, "j-durable");
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    let (mut j_sub, ack) = V5::connect(o).await;
    assert!(ack.session_present);
    let got: Vec<String> = payloads_until(&mut j_sub, "u-end")
        .await
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let mut unique = got.clone();
    unique.sort();
    unique.dedup();
    let mut want: Vec<String> = (0..50).map(|i| format!("u{i}")).collect();
    want.push("u-end".into());
    want.sort();
    assert_eq!(
        unique, want,
        "every acknowledged message arrived (at least once)"
    );
    eprintln!("{} delivered for {} published", got.len(), want.len());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// mosquitto with a plain listener (for the test's clients) and a TLS one that
/// asks for a client certificate (for the bridge): (mosquitto, TLS port).
async fn mosquitto_with_tls(dir: &Path, pki: &certs::Pki) -> (Mosquitto, u16) {
    use std::os::unix::fs::PermissionsExt;
    // mosquitto drops to its own user: it must be able to read the files.
    for f in ["ca.pem", "server.pem", "server.key"] {
        std::fs::set_permissions(pki.files.path(f), std::fs::Permissions::from_mode(0o644))
            .unwrap();
    }
    std::fs::set_permissions(pki.files.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let tls_port = free_port();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        pki.ca_path().display(),
        pki.files.path("server.pem").display(),
        pki.files.path("server.key").display(),
    );
    let m = Mosquitto::start_with(dir, free_port(), &extra).await;
    within("mosquitto's TLS listener", async {
        while tokio::net::TcpStream::connect(("127.0.0.1", tls_port))
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    (m, tls_port)
}

/// A bridge over TLS with a client certificate (mosquitto's `bridge_cafile`,
/// `bridge_certfile`, `bridge_keyfile`) carries both ways; a second bridge on
/// the same Junction, whose CA is not the one that signed mosquitto's
/// certificate, never connects, so nothing crosses on its topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_over_tls_verifies_the_remote_broker_and_offers_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = certs::Pki::new();
    let (client_cert, client_key) = pki.client("junction-bridge");
    for f in [&client_cert, &client_key] {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let (m, tls_port) = mosquitto_with_tls(dir.path(), &pki).await;

    let mut good = bridge(
        tls_port,
        vec![
            topic("up/#", Direction::Out, "", ""),
            topic("down/#", Direction::In, "", ""),
        ],
    );
    good.name = "tls-good".into();
    good.tls = Some(junction_mqtt::bridge::BridgeTls {
        ca_file: pki.ca_path(),
        cert_file: Some(client_cert.clone()),
        key_file: Some(client_key.clone()),
        server_name: None,
    });
    let other_ca = certs::Ca::new("Another CA");
    let other_ca_path = pki.files.write("other-ca.pem", &other_ca.pem);
    let mut bad = bridge(tls_port, vec![topic("wrong/#", Direction::Out, "", "")]);
    bad.name = "tls-wrong-ca".into();
    bad.tls = Some(junction_mqtt::bridge::BridgeTls {
        ca_file: other_ca_path,
        cert_file: Some(client_cert),
        key_file: Some(client_key),
        server_name: None,
    });
    let j = mqtt_broker_with(|c| c.mqtt.bridges = vec![good, bad]).await;

    let mut j_sub = V5::new(&j, "j-sub").await;
    j_sub.subscribe("down/#", QoS::AtLeastOnce).await;
    let mut j_pub = V5::new(&j, "j-pub").await;
    let (mut m_sub, _) = V5::connect(m.options("m-sub")).await;
    m_sub.subscribe("up/#", QoS::AtLeastOnce).await;
    m_sub.subscribe("wrong/#", QoS::AtLeastOnce).await;
    let (mut m_pub, _) = V5::connect(m.options("m-pub")).await;
    until_bridged(&mut j_pub, "up/probe", &mut m_sub).await;
    until_bridged(&mut m_pub, "down/probe", &mut j_sub).await;

    // The wrong-CA bridge's topic first, then the good one's, in one order on
    // one connection: when the good bridge's sentinel has crossed, the other
    // bridge has had every chance to carry its messages (it retries every
    // 100-500 ms) and carried none.
    for i in 0..10 {
        j_pub
            .publish("wrong/x", QoS::AtLeastOnce, false, format!("w{i}"))
            .await;
        j_pub
            .publish("up/x", QoS::AtLeastOnce, false, format!("u{i}"))
            .await;
    }
    j_pub
        .publish("up/x", QoS::AtLeastOnce, false, "u-end")
        .await;
    let got = payloads_until(&mut m_sub, "u-end").await;
    let want: Vec<(String, String)> = (0..10)
        .map(|i| format!("u{i}"))
        .chain(["u-end".to_string()])
        .map(|p| ("up/x".to_string(), p))
        .collect();
    assert_eq!(
        got, want,
        "only the good bridge's messages, each once, in order"
    );

    for i in 0..10 {
        m_pub
            .publish("down/x", QoS::AtLeastOnce, false, format!("d{i}"))
            .await;
    }
    m_pub
        .publish("down/x", QoS::AtLeastOnce, false, "d-end")
        .await;
    let got = payloads_until(&mut j_sub, "d-end").await;
    assert_eq!(got.len(), 11, "{got:?}");
    assert!(got.iter().all(|(t, _)| t == "down/x"));
}

/// Messages on `c` until every one of `want` came, probes left out.
async fn collect(c: &mut V5, who: &str, qos: QoS, want: &[&str], seen: &mut Vec<String>) {
    while !want.iter().all(|w| seen.iter().any(|s| s == w)) {
        let m = within(who, c.recv()).await;
        if &m.payload[..] != b"probe" {
            assert_eq!(m.qos, qos, "{who}: delivered at the topic's QoS");
            seen.push(String::from_utf8_lossy(&m.payload).into_owned());
        }
    }
}

/// A `both` topic (`chat/#`, subscribed on both sides at `qos`): once the
/// bridge carries a probe each way, each side publishes once, and every
/// subscriber gets both messages once, at `qos`. A loop would bring a side's
/// message back to it through the other broker; that echo is queued before the
/// tail messages published once both were seen, so each subscriber reads until
/// both tails and must have nothing twice.
async fn both_ways_once(j: &TestBroker, m: &Mosquitto, qos: QoS) {
    let mut j_sub = V5::new(j, "j-sub").await;
    j_sub.subscribe("chat/#", qos).await;
    let mut j_pub = V5::new(j, "j-pub").await;
    let (mut m_sub, _) = V5::connect(m.options("m-sub")).await;
    m_sub.subscribe("chat/#", qos).await;
    let (mut m_pub, _) = V5::connect(m.options("m-pub")).await;
    until_bridged(&mut j_pub, "chat/probe", &mut m_sub).await;
    until_bridged(&mut m_pub, "chat/probe", &mut j_sub).await;
    let (j_pub, j_sub, m_pub, m_sub) = (&mut j_pub, &mut j_sub, &mut m_pub, &mut m_sub);
    j_pub.publish("chat/x", qos, false, "from-j").await;
    m_pub.publish("chat/x", qos, false, "from-m").await;
    let (mut seen_j, mut seen_m) = (Vec::new(), Vec::new());
    collect(j_sub, "junction", qos, &["from-j", "from-m"], &mut seen_j).await;
    collect(m_sub, "mosquitto", qos, &["from-j", "from-m"], &mut seen_m).await;
    m_pub.publish("chat/x", qos, false, "tail-m").await;
    j_pub.publish("chat/x", qos, false, "tail-j").await;
    for (who, c, seen) in [
        ("junction", j_sub, &mut seen_j),
        ("mosquitto", m_sub, &mut seen_m),
    ] {
        collect(c, who, qos, &["tail-j", "tail-m"], seen).await;
        seen.sort();
        assert_eq!(
            *seen,
            ["from-j", "from-m", "tail-j", "tail-m"],
            "{who}: each message once"
        );
    }
}

/// QoS 2 both ways over MQTT 5: each side's subscriber at QoS 2 gets the other
/// side's messages at QoS 2, once; the bridge relays PUBREC, PUBREL and PUBCOMP
/// under the source's packet ids.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos2_crosses_both_ways_once_at_qos2() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(dir.path()).await;
    let mut t = topic("chat/#", Direction::Both, "", "");
    t.qos = 2;
    let j = junction_with_bridge(bridge(m.port, vec![t])).await;
    both_ways_once(&j, &m, QoS::ExactlyOnce).await;
}

/// `protocol_version = "mqttv311"`: the bridge speaks 3.1.1 to mosquitto, with
/// mosquitto's bridge bit (`try_private`), so mosquitto makes the bridge's
/// subscription No Local and a `both` topic does not loop; prefixes and QoS 1
/// work as over MQTT 5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_311_bridge_with_the_bridge_bit_carries_both_ways_without_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mosquitto::start(dir.path()).await;
    let mut b = bridge(
        m.port,
        vec![
            topic("sensors/#", Direction::Out, "site/", "fleet/a/"),
            topic("chat/#", Direction::Both, "", ""),
        ],
    );
    b.protocol_version = BridgeProtocol::V311;
    let j = junction_with_bridge(b).await;
    let mut j_pub = V5::new(&j, "j-sensors").await;
    let (mut m_sub, _) = V5::connect(m.options("m-sensors")).await;
    m_sub.subscribe("fleet/a/sensors/#", QoS::AtLeastOnce).await;
    until_bridged(&mut j_pub, "site/sensors/probe", &mut m_sub).await;
    j_pub
        .publish("site/sensors/t1", QoS::AtLeastOnce, false, "s1")
        .await;
    j_pub
        .publish("site/sensors/t1", QoS::AtLeastOnce, false, "s-end")
        .await;
    let got = payloads_until(&mut m_sub, "s-end").await;
    assert_eq!(
        got.last(),
        Some(&("fleet/a/sensors/t1".to_string(), "s-end".to_string()))
    );
    assert!(
        got.contains(&("fleet/a/sensors/t1".into(), "s1".into())),
        "{got:?}"
    );
    both_ways_once(&j, &m, QoS::AtLeastOnce).await;
}

/// `protocol_version = "mqttv31"`: the bridge speaks MQTT 3.1 (`MQIsdp`,
/// level 3, with the bridge bit) to mosquitto, which takes it as a 3.1 bridge;
/// both directions carry, once each, without a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_31_bridge_carries_both_ways_without_a_loop() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    // mosquitto's notice "New bridge connected … as <id> (p1, …)" (a client
    // with the bridge bit): protocol 1 is MQTT 3.1 (2 is 3.1.1, 5 is 5).
    let log = dir.path().join("notice.log");
    let m = Mosquitto::start_with(
        dir.path(),
        port,
        &format!(
            "log_dest file {}
log_type notice
",
            log.display()
        ),
    )
    .await;
    let mut b = bridge(m.port, vec![topic("chat/#", Direction::Both, "", "")]);
    b.protocol_version = BridgeProtocol::V31;
    // 3.1 client ids are 23 characters at most (the default here has 28).
    b.client_id = Some("junction-bridge-31".into());
    let client_id = b.client_id();
    let j = junction_with_bridge(b).await;
    both_ways_once(&j, &m, QoS::AtLeastOnce).await;
    let text = std::fs::read_to_string(&log).expect("mosquitto's log");
    let line = text
        .lines()
        .find(|l| l.contains("New bridge connected") && l.contains(&format!(" as {client_id} ")))
        .unwrap_or_else(|| panic!("no connect of the bridge in {text}"));
    assert!(line.contains("(p1,"), "not a 3.1 connect: {line}");
}

/// A mosquitto bridging into Junction (its `connection` section, 3.1.1 with its
/// default `try_private true`): Junction accepts the bridge bit (protocol level
/// 0x84) instead of refusing the CONNECT, and treats the bridge's subscriptions
/// as mosquitto would, No Local and Retain As Published, so a `both` topic
/// does not bring mosquitto's messages back to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mosquitto_bridge_with_the_bridge_bit_does_not_get_its_messages_back() {
    let dir = tempfile::tempdir().unwrap();
    let j = junction_conformance::mqtt_broker().await;
    let m_port = free_port();
    let m = Mosquitto::start_with(
        dir.path(),
        m_port,
        &format!(
            "connection to-junction\naddress 127.0.0.1:{}\ncleansession false\n\
             restart_timeout 1\ntopic chat/# both 1\n",
            j.mqtt_port()
        ),
    )
    .await;
    both_ways_once(&j, &m, QoS::AtLeastOnce).await;
}
