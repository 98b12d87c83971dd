//! A renewed certificate written over the configured files is served to new
//! connections without a restart, and the connections already open keep
//! working.

use crate::certs::{Ca, Pki};
use futures::StreamExt;
use junction_conformance::broker_with;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_and_open_connections_stay() {
    let pki = Pki::new();
    let b = broker_with(|c| pki.configure(c)).await;
    let old = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca_path())
        .connect(b.nats_url())
        .await
        .expect("connect with the first certificate");
    let mut sub = old.subscribe("renewed").await.unwrap();
    old.flush().await.unwrap();

    // The certificate is renewed by another authority and written in place.
    let next = Ca::new("Next CA");
    let (cert, key) = next.issue("junction", &["127.0.0.1", "localhost"], false);
    let next_ca = pki.files.write("next-ca.pem", &next.pem);
    // Key first, then certificate: a reload between the two writes keeps the
    // old pair (the key does not match) and the next look takes the new one.
    pki.files.write("server.key", &key);
    pki.files.write("server.pem", &cert);

    // New connections get the new certificate (within the reload check).
    let mut fresh = None;
    for _ in 0..100 {
        if let Ok(c) = async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(next_ca.clone())
            .connect(b.nats_url())
            .await
        {
            fresh = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fresh = fresh.expect("a client trusting the new authority connects");
    fresh.publish("renewed", "after".into()).await.unwrap();
    fresh.flush().await.unwrap();
    // The connection made before is still open and served.
    let m = crate::support::within("message", sub.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"after");
    old.publish("renewed", "old still works".into())
        .await
        .unwrap();
    let m = crate::support::within("message", sub.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"old still works");
}
