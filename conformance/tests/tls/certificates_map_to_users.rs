//! `verify_and_map`: a client certificate logs its client in as the user it
//! names (an e-mail SAN, or the subject DN as `CN=bob,O=Acme`), over NATS and
//! MQTT, with that user's tenant; a certificate that names no user is refused,
//! and a certificate-only user cannot log in with an empty password.

use crate::certs::Pki;
use crate::support::V4;
use futures::StreamExt;
use junction::config::TenantConfig;
use junction::engine::User;
use junction_conformance::mqtt_broker_with;
use rcgen::{DnType, SanType};

fn connections(b: &junction_conformance::TestBroker) -> serde_json::Value {
    let out = std::process::Command::new("curl")
        .args([
            "-s",
            "-u",
            "admin:pw",
            &format!("{}/v1/connections", b.http_url()),
        ])
        .output()
        .expect("curl");
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_name_their_users() {
    let pki = Pki::new();
    let b = mqtt_broker_with(|c| {
        pki.configure(c);
        c.tls.ca_file = Some(pki.ca_path());
        c.tls.verify_and_map = true;
        c.mqtt_tls_listen = "127.0.0.1:0".into();
        c.auth.users = vec![User::new("admin", "pw"), User::new("CN=bob,O=Acme", "")];
        c.tenants = vec![TenantConfig {
            name: "acme".into(),
            users: vec![User::new("alice@example.com", "")],
            ..Default::default()
        }];
    })
    .await;

    let (cert, key) = pki.ca.issue_with("alice", &[], true, |p| {
        p.subject_alt_names = vec![SanType::Rfc822Name("alice@example.com".try_into().unwrap())];
    });
    let alice = (
        pki.files.write("alice.pem", &cert),
        pki.files.write("alice.key", &key),
    );
    // Subject O=Acme, CN=bob, written (RFC 2253, last first) CN=bob,O=Acme.
    let (cert, key) = pki.ca.issue_with("bob", &[], true, |p| {
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::OrganizationName, "Acme");
        p.distinguished_name.push(DnType::CommonName, "bob");
    });
    let bob = (
        pki.files.write("bob.pem", &cert),
        pki.files.write("bob.key", &key),
    );
    let carol = pki.client("carol");

    let connect = |cert: (std::path::PathBuf, std::path::PathBuf)| {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(pki.ca_path())
            .add_client_certificate(cert.0, cert.1)
            .connect(b.nats_url())
    };
    let a = connect(alice.clone())
        .await
        .expect("alice's certificate logs in");
    let bb = connect(bob.clone())
        .await
        .expect("bob's certificate logs in");
    assert!(
        connect(carol).await.is_err(),
        "a certificate naming no user"
    );

    // Each is its user, in its user's tenant: alice (acme) does not see bob's
    // ($G) messages.
    let mut a_sub = a.subscribe("hello").await.unwrap();
    a.flush().await.unwrap();
    bb.publish("hello", "from bob".into()).await.unwrap();
    bb.flush().await.unwrap();
    a.publish("hello", "from alice".into()).await.unwrap();
    let m = crate::support::within("message", a_sub.next())
        .await
        .unwrap();
    assert_eq!(
        &m.payload[..],
        b"from alice",
        "bob's tenant leaked into alice's"
    );
    let conns = connections(&b);
    let users: Vec<(String, String)> = conns["connections"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["protocol"] == "nats")
        .map(|c| {
            (
                c["user"].as_str().unwrap_or_default().to_string(),
                c["tenant"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        users.contains(&("alice@example.com".into(), "acme".into())),
        "{users:?}"
    );
    assert!(
        users.contains(&("CN=bob,O=Acme".into(), "$G".into())),
        "{users:?}"
    );

    // A certificate-only user has no password to log in with.
    let empty =
        async_nats::ConnectOptions::with_user_and_password("CN=bob,O=Acme".into(), String::new())
            .require_tls(true)
            .add_root_certificates(pki.ca_path())
            .add_client_certificate(pki.client("dave").0, pki.files.path("dave.key"))
            .connect(b.nats_url())
            .await;
    assert!(empty.is_err(), "an empty password logged in");

    // MQTT over TLS: the certificate is the login.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut o = rumqttc::MqttOptions::new("alice-device", "localhost", b.running_mqtt_tls_port());
    o.set_keep_alive(std::time::Duration::from_secs(30));
    o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
        ca: crate::certs::read(&pki.ca_path()),
        alpn: None,
        client_auth: Some((crate::certs::read(&alice.0), crate::certs::read(&alice.1))),
    }));
    V4::connect(o).await;
}

/// `curl --cert` over HTTPS: `(status, body)`.
fn curl_https(
    pki: &Pki,
    port: u16,
    cert: Option<&(std::path::PathBuf, std::path::PathBuf)>,
    args: &[&str],
) -> (u16, serde_json::Value) {
    let mut cmd = std::process::Command::new("curl");
    cmd.args(["-s", "-w", "\n%{http_code}", "--cacert"])
        .arg(pki.ca_path());
    if let Some((c, k)) = cert {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = cmd
        .args(args)
        .arg(format!("https://localhost:{port}/v1/stations"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        status.trim().parse().unwrap_or(0),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_request_without_credentials_is_its_certificate_s_user() {
    let pki = Pki::new();
    let b = mqtt_broker_with(|c| {
        pki.configure(c);
        c.tls.ca_file = Some(pki.ca_path());
        c.tls.verify_and_map = true;
        c.http.tls = true;
        c.auth.users = vec![User::new("admin", "pw")];
        c.tenants = vec![TenantConfig {
            name: "acme".into(),
            users: vec![User::new("alice@example.com", "")],
            ..Default::default()
        }];
    })
    .await;
    let (cert, key) = pki.ca.issue_with("alice", &[], true, |p| {
        p.subject_alt_names = vec![SanType::Rfc822Name("alice@example.com".try_into().unwrap())];
    });
    let alice = (
        pki.files.write("alice.pem", &cert),
        pki.files.write("alice.key", &key),
    );
    let carol = pki.client("carol");
    let port = b.http_port();

    // alice's certificate is her login: her station is in acme.
    let (status, body) = curl_https(
        &pki,
        port,
        Some(&alice),
        &["-X", "POST", "-d", r#"{"name":"orders"}"#],
    );
    assert_eq!(status, 201, "{body}");
    let (status, list) = curl_https(&pki, port, Some(&alice), &[]);
    assert_eq!(status, 200, "{list}");
    assert!(list.to_string().contains("orders"), "{list}");
    // admin ($G), with the same kind of certificate plus a password, sees $G's:
    // an Authorization header names the user.
    let (status, list) = curl_https(&pki, port, Some(&carol), &["-u", "admin:pw"]);
    assert_eq!(status, 200, "{list}");
    assert!(!list.to_string().contains("orders"), "{list}");
    // A certificate that names no user, without credentials, is refused.
    let (status, body) = curl_https(&pki, port, Some(&carol), &[]);
    assert_eq!(status, 401, "{body}");
}
