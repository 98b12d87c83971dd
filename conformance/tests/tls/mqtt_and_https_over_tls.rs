//! MQTT over TLS on its own port (rumqttc over rustls, `mosquitto_sub` and
//! `mosquitto_pub --cafile`), next to plain MQTT, and HTTPS with `[http] tls`
//! (curl), all with the same certificate; what crosses between them arrives.

use crate::certs::{Pki, read};
use crate::support::{V4, text};
use junction_conformance::mqtt_broker_with;
use rumqttc::{QoS, TlsConfiguration, Transport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_mosquitto_and_curl_over_tls() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pki = Pki::new();
    let b = mqtt_broker_with(|c| {
        pki.configure(c);
        c.mqtt_tls_listen = "127.0.0.1:0".into();
        c.http.tls = true;
    })
    .await;
    let port = b.running_mqtt_tls_port();

    let mut o = rumqttc::MqttOptions::new("tls-reader", "localhost", port);
    o.set_transport(Transport::Tls(TlsConfiguration::Simple {
        ca: read(&pki.ca_path()),
        alpn: None,
        client_auth: None,
    }));
    let (mut reader, _) = V4::connect(o).await;
    reader.subscribe("secure/#", QoS::AtLeastOnce).await;

    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "secure/m",
            "-m",
            "from-mosquitto",
            "-q",
            "1",
        ])
        .arg("--cafile")
        .arg(pki.ca_path())
        .output()
        .expect("mosquitto_pub");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = reader.recv().await;
    assert_eq!(text(&m.payload), "from-mosquitto");

    // Plain MQTT is still served on its own port, and reaches TLS readers.
    let (mut plain, _) = V4::connect(crate::support::v4_options(&b, "plain")).await;
    plain
        .publish("secure/plain", QoS::AtLeastOnce, false, "from-plain")
        .await;
    let m = reader.recv().await;
    assert_eq!(text(&m.payload), "from-plain");

    // Plain text on the TLS port gets nothing: the handshake fails.
    let out = std::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "secure/x",
            "-m",
            "no",
            "-q",
            "1",
        ])
        .output()
        .expect("mosquitto_pub");
    assert!(
        !out.status.success(),
        "plain MQTT on the TLS port was served"
    );

    // HTTPS: curl with the CA publishes; plain HTTP on the port is refused.
    let url = format!("https://localhost:{}", b.http_port());
    let out = std::process::Command::new("curl")
        .args(["-s", "--cacert"])
        .arg(pki.ca_path())
        .args([
            "-X",
            "POST",
            "-d",
            "from-curl",
            &format!("{url}/v1/subjects/secure.curl"),
        ])
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl over HTTPS: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = reader.recv().await;
    assert_eq!(text(&m.payload), "from-curl");
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{}/healthz", b.http_port()),
        ])
        .output()
        .expect("curl");
    assert_ne!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "plain HTTP on the HTTPS port"
    );
}
