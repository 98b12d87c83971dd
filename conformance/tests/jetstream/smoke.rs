use async_nats::jetstream::{self, consumer::pull, stream};
use futures::StreamExt;
use junction_conformance::broker;
use std::time::Duration;

#[tokio::test]
async fn create_publish_fetch_ack() {
    let b = broker().await;
    let client = async_nats::connect(b.nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let mut s = js
        .create_stream(stream::Config {
            name: "ORDERS".into(),
            subjects: vec!["orders.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    for i in 0..10 {
        let ack = js
            .publish(format!("orders.{i}"), format!("m{i}").into())
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(ack.sequence, i + 1);
        assert_eq!(ack.stream, "ORDERS");
    }
    assert_eq!(s.info().await.unwrap().state.messages, 10);
    let consumer = s
        .create_consumer(pull::Config {
            durable_name: Some("workers".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(10)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    while let Some(m) = batch.next().await {
        let m = m.unwrap();
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
        m.ack().await.unwrap();
    }
    assert_eq!(got, (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>());
}
