//! When the broker restarts on the same port, an async-nats client reconnects by
//! itself and its subscriptions are restored: a subscription made before the restart
//! receives a message published after it.

use crate::support::{LONG_GUARD, next, within, within_for};
use async_nats::{ConnectOptions, Event};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedReceiver;

/// Waits for `event` on the client's event stream, skipping others.
async fn wait_for_event(events: &mut UnboundedReceiver<Event>, want: &Event) {
    within_for(LONG_GUARD, &format!("client event {want}"), async {
        loop {
            let event = events.recv().await.expect("event stream open");
            if std::mem::discriminant(&event) == std::mem::discriminant(want) {
                return;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_reconnects_and_resubscribes_after_restart() {
    let broker = junction_conformance::broker().await;
    let port = broker.nats_addr().port();

    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let client = within(
        "connect",
        ConnectOptions::new()
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(event);
                }
            })
            .connect(broker.nats_url()),
    )
    .await
    .unwrap();

    let mut sub = client.subscribe("restart.subject").await.unwrap();
    client.flush().await.unwrap();
    client
        .publish("restart.subject", Bytes::from_static(b"before"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(
        next(&mut sub, "message before restart").await.payload,
        "before"
    );

    let (mut config, dir) = within_for(LONG_GUARD, "broker shutdown", broker.stop()).await;
    wait_for_event(&mut events, &Event::Disconnected).await;

    config.nats_listen = format!("127.0.0.1:{port}");
    let broker = within_for(
        LONG_GUARD,
        "broker restart",
        junction_conformance::start_in(config, dir),
    )
    .await;
    assert_eq!(
        broker.nats_addr().port(),
        port,
        "restarted on the same port"
    );
    wait_for_event(&mut events, &Event::Connected).await;

    // The client resubscribes before anything it sends after reconnecting, so a
    // message it publishes now comes back on the old subscription.
    client
        .publish("restart.subject", Bytes::from_static(b"after"))
        .await
        .unwrap();
    within_for(LONG_GUARD, "flush after reconnect", client.flush())
        .await
        .unwrap();
    let m = within_for(LONG_GUARD, "message after restart", sub.next())
        .await
        .expect("subscription survives the restart");
    assert_eq!(m.payload, "after");

    // Another client on the new broker reaches the restored subscription too.
    let other = crate::support::connect(&broker).await;
    other
        .publish("restart.subject", Bytes::from_static(b"from-new-client"))
        .await
        .unwrap();
    other.flush().await.unwrap();
    assert_eq!(
        next(&mut sub, "message from a new client").await.payload,
        "from-new-client"
    );
}
