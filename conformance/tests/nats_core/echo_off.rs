//! `echo: false` in CONNECT: a client does not receive its own messages on its
//! own subscriptions, while other clients still do.

use crate::support::{connect, next, sync, within};
use async_nats::ConnectOptions;
use bytes::Bytes;

#[tokio::test(flavor = "multi_thread")]
async fn no_echo_client_skips_its_own_messages_only() {
    let broker = junction_conformance::broker().await;
    let quiet = within(
        "no-echo connect",
        ConnectOptions::new().no_echo().connect(broker.nats_url()),
    )
    .await
    .unwrap();
    let other = connect(&broker).await;

    let mut quiet_sub = quiet.subscribe("echo.test").await.unwrap();
    let mut other_sub = other.subscribe("echo.test").await.unwrap();
    sync(&quiet).await;
    sync(&other).await;

    for i in 0..5 {
        quiet
            .publish("echo.test", Bytes::from(format!("own-{i}")))
            .await
            .unwrap();
    }
    sync(&quiet).await;
    // Published after the no-echo client's messages were routed, so if any of
    // those had been delivered back to it, they would arrive before this one.
    other
        .publish("echo.test", Bytes::from_static(b"from-other"))
        .await
        .unwrap();
    other.flush().await.unwrap();

    for i in 0..5 {
        let m = next(&mut other_sub, "the no-echo client's message").await;
        assert_eq!(m.payload, format!("own-{i}"));
    }
    let m = next(&mut other_sub, "own message with echo on").await;
    assert_eq!(m.payload, "from-other", "echo is on for the other client");

    let m = next(&mut quiet_sub, "the other client's message").await;
    assert_eq!(
        m.payload, "from-other",
        "the no-echo client got one of its own messages"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_is_on_by_default() {
    let broker = junction_conformance::broker().await;
    let client = connect(&broker).await;
    let mut sub = client.subscribe("echo.default").await.unwrap();
    client.flush().await.unwrap();
    client
        .publish("echo.default", Bytes::from_static(b"mine"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(next(&mut sub, "own message").await.payload, "mine");
}
