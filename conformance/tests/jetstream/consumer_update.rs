//! Consumers updated in place, as `nats consumer edit` and the clients'
//! create-or-update do it: limits and timers change, the position and the
//! pending deliveries stay; what nats-server does not let change (deliver
//! policy, ack policy, filters, push or pull) is refused with 10012 and
//! nothing changes; `action: create` on an existing consumer with another
//! configuration is 10148.

use crate::support::{
    api, connect, expect_api_error, publish_n, pull_once, seq, simple_stream, within,
};
use async_nats::jetstream::consumer::{self, DeliverPolicy, pull};
use junction_conformance::broker;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_updated_in_place_keeps_its_position() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "UPD", &["upd.>"]).await;
    publish_n(&js, "upd.x", 30).await;
    let mut config = pull::Config {
        durable_name: Some("c".into()),
        max_ack_pending: 10,
        ..Default::default()
    };
    let c: consumer::PullConsumer = within("create", stream.create_consumer(config.clone()))
        .await
        .unwrap();
    // Ten taken and not acked: the limit holds the rest back.
    let first = pull_once(&c, 20, Duration::from_millis(500)).await;
    assert_eq!(first.len(), 10);
    assert!(
        pull_once(&c, 5, Duration::from_millis(300))
            .await
            .is_empty()
    );

    // Raised in place (create-or-update): the next ones come, from where it was.
    config.max_ack_pending = 25;
    config.description = Some("raised".into());
    let c: consumer::PullConsumer = within("update", stream.create_consumer(config.clone()))
        .await
        .unwrap();
    let mut c2 = c.clone();
    let info = c2.info().await.unwrap();
    assert_eq!(info.config.max_ack_pending, 25);
    assert_eq!(info.config.description.as_deref(), Some("raised"));
    assert_eq!(info.num_ack_pending, 10);
    let next = pull_once(&c, 20, Duration::from_millis(500)).await;
    assert_eq!(next.len(), 15);
    assert_eq!(seq(&next[0]), 11);

    // What may not change is refused, and nothing changes.
    let body = |extra: serde_json::Value| {
        let mut cfg = serde_json::json!({"durable_name": "c", "ack_policy": "explicit", "max_ack_pending": 25, "description": "raised"});
        for (k, v) in extra.as_object().unwrap() {
            cfg[k] = v.clone();
        }
        serde_json::json!({"stream_name": "UPD", "config": cfg}).to_string()
    };
    for (extra, text) in [
        (
            serde_json::json!({"deliver_policy": "new"}),
            "deliver policy can not be updated",
        ),
        (
            serde_json::json!({"ack_policy": "none"}),
            "ack policy can not be updated",
        ),
        (
            serde_json::json!({"filter_subject": "upd.y"}),
            "filter subjects can not be updated",
        ),
        (
            serde_json::json!({"deliver_subject": "d.upd"}),
            "push or pull mode can not be updated",
        ),
    ] {
        let v = api(&client, "$JS.API.CONSUMER.CREATE.UPD.c", &body(extra)).await;
        assert_eq!(expect_api_error(&v, 500, 10012), text);
    }
    let info = c2.info().await.unwrap();
    assert_eq!(info.config.deliver_policy, DeliverPolicy::All);
    assert_eq!(info.num_ack_pending, 25);

    // action "create" with another configuration: 10148.
    let mut create = serde_json::json!({"stream_name": "UPD", "action": "create",
        "config": {"durable_name": "c", "max_ack_pending": 99}});
    let v = api(
        &client,
        "$JS.API.CONSUMER.CREATE.UPD.c",
        &create.to_string(),
    )
    .await;
    expect_api_error(&v, 400, 10148);
    create["action"] = "update".into();
    create["config"]["durable_name"] = "nope".into();
    let v = api(
        &client,
        "$JS.API.CONSUMER.CREATE.UPD.nope",
        &create.to_string(),
    )
    .await;
    expect_api_error(&v, 400, 10149);
}
