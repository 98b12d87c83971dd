//! With `tls.verify`, a client must present a certificate signed by
//! `tls.ca_file`: a good one connects; an expired one, one from another
//! authority, and none at all fail at the handshake, on NATS and on MQTT.

use crate::certs::{Ca, Pki};
use junction_conformance::mqtt_broker_with;

async fn nats_with(
    b: &junction_conformance::TestBroker,
    pki: &Pki,
    cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let mut o = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca_path());
    if let Some((c, k)) = cert {
        o = o.add_client_certificate(c, k);
    }
    o.connect(b.nats_url()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_certificates_from_the_configured_authority_get_in() {
    let pki = Pki::new();
    let b = mqtt_broker_with(|c| {
        pki.configure(c);
        c.tls.ca_file = Some(pki.ca_path());
        c.tls.verify = true;
        c.mqtt_tls_listen = "127.0.0.1:0".into();
    })
    .await;

    let good = pki.client("alice");
    let nc = nats_with(&b, &pki, Some(good.clone()))
        .await
        .expect("a good client certificate connects");
    nc.publish("x", "y".into()).await.unwrap();
    nc.flush().await.unwrap();
    assert!(nc.server_info().tls_required, "INFO says tls_required");

    assert!(
        nats_with(&b, &pki, None).await.is_err(),
        "no client certificate connected"
    );
    let other = Ca::new("Another CA");
    let (cert, key) = other.issue("mallory", &[], true);
    let wrong = (
        pki.files.write("wrong.pem", &cert),
        pki.files.write("wrong.key", &key),
    );
    assert!(
        nats_with(&b, &pki, Some(wrong.clone())).await.is_err(),
        "a certificate from another authority connected"
    );
    let (cert, key) = pki.ca.issue_with("old", &[], true, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let expired = (
        pki.files.write("expired.pem", &cert),
        pki.files.write("expired.key", &key),
    );
    assert!(
        nats_with(&b, &pki, Some(expired.clone())).await.is_err(),
        "an expired certificate connected"
    );

    // MQTT over TLS checks the same way (mosquitto_pub, another client).
    let port = b.running_mqtt_tls_port();
    let pub_with = |cert: Option<&(std::path::PathBuf, std::path::PathBuf)>| {
        let mut cmd = std::process::Command::new("mosquitto_pub");
        cmd.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "tls/x",
            "-m",
            "hi",
            "-q",
            "1",
        ])
        .arg("--cafile")
        .arg(pki.ca_path());
        if let Some((c, k)) = cert {
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        cmd.output().expect("mosquitto_pub (mosquitto-clients)")
    };
    let ok = pub_with(Some(&good));
    assert!(
        ok.status.success(),
        "mosquitto_pub with a good certificate: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        !pub_with(None).status.success(),
        "MQTT without a certificate"
    );
    assert!(
        !pub_with(Some(&wrong)).status.success(),
        "MQTT with another authority's certificate"
    );
    assert!(
        !pub_with(Some(&expired)).status.success(),
        "MQTT with an expired certificate"
    );
}
