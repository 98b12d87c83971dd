//! Request/reply: a responder task answers on the requester's reply subject, for
//! sequential and concurrent requests alike, and every reply goes to its own request.

use crate::support::{connect, next, sync, within};
use bytes::Bytes;
use futures::StreamExt;

#[tokio::test(flavor = "multi_thread")]
async fn responder_answers_every_request_with_its_own_reply() {
    let broker = junction_conformance::broker().await;
    let responder = connect(&broker).await;
    let requester = connect(&broker).await;

    let mut requests = responder.subscribe("svc.echo").await.unwrap();
    sync(&responder).await;
    let server = tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let reply = m.reply.expect("request carries a reply subject");
            let mut answer = b"echo: ".to_vec();
            answer.extend_from_slice(&m.payload);
            responder.publish(reply, answer.into()).await.unwrap();
        }
    });

    for i in 0..20 {
        let reply = within(
            "sequential reply",
            requester.request("svc.echo", Bytes::from(format!("req-{i}"))),
        )
        .await
        .unwrap();
        assert_eq!(reply.payload, format!("echo: req-{i}"));
    }

    let concurrent = (0..50).map(|i| {
        let requester = requester.clone();
        async move {
            let reply = requester
                .request("svc.echo", Bytes::from(format!("c-{i}")))
                .await
                .unwrap();
            (i, reply.payload)
        }
    });
    let replies = within("concurrent replies", futures::future::join_all(concurrent)).await;
    for (i, payload) in replies {
        assert_eq!(payload, format!("echo: c-{i}"), "reply to request {i}");
    }
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn reply_subject_is_delivered_to_subscribers_as_is() {
    let broker = junction_conformance::broker().await;
    let client = connect(&broker).await;
    let mut sub = client.subscribe("svc.raw").await.unwrap();
    let mut inbox = client.subscribe("my.inbox.1").await.unwrap();
    client.flush().await.unwrap();

    client
        .publish_with_reply("svc.raw", "my.inbox.1", Bytes::from_static(b"q"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let m = next(&mut sub, "request").await;
    assert_eq!(m.payload, "q");
    let reply = m.reply.expect("reply subject");
    assert_eq!(reply.as_str(), "my.inbox.1");

    client
        .publish(reply, Bytes::from_static(b"a"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let a = next(&mut inbox, "reply on the inbox").await;
    assert_eq!(a.payload, "a");
    assert!(a.reply.is_none());
}
