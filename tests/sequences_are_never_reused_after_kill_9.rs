//! A station never gives a sequence number out twice, even when its newest message
//! was deleted just before a `kill -9`.
//!
//! A work-queue station whose consumer keeps up deletes its newest message on
//! every ack, so its log is empty between messages. Before the fix the delete
//! could reach the disk (made durable by any later fsync) without the station's
//! last sequence, and after a crash the next publish was acknowledged with the
//! sequence of the message already consumed: a consumer group whose position is
//! past it would skip the new message, and a client holding the old sequence (an
//! MQTT packet id is derived from it) would take the new message for the old one.
//!
//! Each cycle: publish one message to the work queue, consume it with AckSync,
//! publish (awaited) to a second station so that an fsync follows the delete,
//! then SIGKILL the broker and start it again on the same data. Every PubAck of
//! the work queue must name a sequence above every earlier one. Interest
//! retention and `max_age` expiry delete the newest message the same way and share
//! the code path (`Station::floor_with`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::path::Path;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;

async fn start(data: &Path, port: u16) -> Child {
    process::start_nats_only(data, port).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumed_newest_message_keeps_its_sequence_across_kill_9() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    let mut acked: Vec<u64> = Vec::new();
    for cycle in 0..cycles {
        let mut child = start(dir.path(), port).await;
        let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
            .await
            .expect("connect");
        let js = jetstream::new(client);
        let wq = js
            .get_or_create_stream(stream::Config {
                name: "WQ".into(),
                subjects: vec!["wq.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                ..Default::default()
            })
            .await
            .expect("work queue");
        js.get_or_create_stream(stream::Config {
            name: "OTHER".into(),
            subjects: vec!["other.>".into()],
            ..Default::default()
        })
        .await
        .expect("second station");
        let worker: consumer::PullConsumer = wq
            .get_or_create_consumer(
                "worker",
                consumer::pull::Config {
                    durable_name: Some("worker".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .expect("consumer");

        let ack = js
            .publish(format!("wq.job.{cycle}"), format!("job {cycle}").into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
        if let Some(last) = acked.last() {
            assert!(
                ack.sequence > *last,
                "cycle {cycle}: the work queue acknowledged sequence {} again after a kill -9 \
                 (sequences acknowledged so far: {acked:?})",
                ack.sequence
            );
        }
        acked.push(ack.sequence);

        let mut batch = worker
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .expect("fetch");
        let msg = batch
            .next()
            .await
            .expect("one message")
            .expect("a message, not an error");
        assert_eq!(msg.payload.as_ref(), format!("job {cycle}").as_bytes());
        assert_eq!(msg.info().unwrap().stream_sequence, ack.sequence);
        msg.double_ack().await.expect("AckSync");

        // An fsync after the delete of the consumed message: it reaches the disk
        // before the kill, as it would on a busy broker.
        js.publish(format!("other.{cycle}"), "x".into())
            .await
            .expect("publish")
            .await
            .expect("PubAck");
        let info = js
            .get_stream("WQ")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .clone();
        assert_eq!(
            info.state.messages, 0,
            "the work queue deleted the consumed job"
        );
        assert_eq!(info.state.last_sequence, ack.sequence);

        child.start_kill().unwrap();
        let _ = child.wait().await;
    }

    // After the last restart the station reports the last sequence it gave out.
    let _child = start(dir.path(), port).await;
    let client = async_nats::connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("connect");
    let js = jetstream::new(client);
    let mut wq = js.get_stream("WQ").await.expect("work queue recovered");
    let state = wq.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 0);
    assert_eq!(
        state.last_sequence,
        *acked.last().unwrap(),
        "the recovered station's last sequence"
    );
    assert_eq!(acked, (1..=cycles as u64).collect::<Vec<_>>());
}
