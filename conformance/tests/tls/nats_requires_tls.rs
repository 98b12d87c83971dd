//! With `[tls]`, the NATS port requires TLS as nats-server's does: INFO says
//! `tls_required`, async-nats connects with `require_tls` (and with
//! `tls_first` when `handshake_first` is set), and a client that speaks plain
//! text is closed without being served.

use crate::certs::Pki;
use futures::StreamExt;
use junction_conformance::broker_with;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nats_connects_over_tls_and_plain_text_is_closed() {
    let pki = Pki::new();
    let b = broker_with(|c| pki.configure(c)).await;

    // INFO comes in clear text and asks for TLS.
    let stream = tokio::net::TcpStream::connect(b.nats_addr()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let info: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap();
    assert_eq!(info["tls_required"], true, "{info}");
    // Plain text after it is not served: the handshake fails and the socket
    // closes, with no PONG.
    let mut stream = reader.into_inner();
    stream
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut rest),
    )
    .await
    .expect("the server closes the socket");
    let _ = read;
    assert!(
        !String::from_utf8_lossy(&rest).contains("PONG"),
        "plain text was served: {:?}",
        String::from_utf8_lossy(&rest)
    );

    // A TLS client is served.
    let nc = async_nats::ConnectOptions::new()
        .require_tls(true)
        .add_root_certificates(pki.ca_path())
        .connect(b.nats_url())
        .await
        .expect("TLS connect");
    let mut sub = nc.subscribe("tls.>").await.unwrap();
    nc.publish("tls.a", "over tls".into()).await.unwrap();
    let m = crate::support::within("message", sub.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"over tls");

    // A client that does not trust the server's authority fails.
    let untrusted = async_nats::ConnectOptions::new()
        .require_tls(true)
        .connect(b.nats_url())
        .await;
    assert!(untrusted.is_err(), "a client without the CA connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_first_serves_tls_first_clients() {
    let pki = Pki::new();
    let b = broker_with(|c| {
        pki.configure(c);
        c.tls.handshake_first = true;
    })
    .await;
    let nc = async_nats::ConnectOptions::new()
        .tls_first()
        .add_root_certificates(pki.ca_path())
        .connect(b.nats_url())
        .await
        .expect("tls_first connect");
    let mut sub = nc.subscribe("first").await.unwrap();
    nc.publish("first", "hello".into()).await.unwrap();
    let m = crate::support::within("message", sub.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"hello");
    assert!(
        nc.server_info().tls_required,
        "INFO inside TLS says tls_required"
    );
}
