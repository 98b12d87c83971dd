//! Stream lifecycle: create (idempotent for an identical config), info, update
//! (limits, description, subjects), names (also filtered by subject), list, delete.

use crate::support::{api, connect, create_stream, expect_api_error, publish, within};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::stream::{self, StorageType};
use futures::TryStreamExt;
use junction_conformance::broker;

fn orders() -> stream::Config {
    stream::Config {
        name: "ORDERS".into(),
        subjects: vec!["orders.>".into()],
        description: Some("all orders".into()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_and_info() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let mut s = create_stream(&js, orders()).await;
    let info = within("info", s.info()).await.unwrap().clone();
    assert_eq!(info.config.name, "ORDERS");
    assert_eq!(info.config.subjects, vec!["orders.>".to_string()]);
    assert_eq!(info.config.description.as_deref(), Some("all orders"));
    assert_eq!(info.config.storage, StorageType::File);
    assert_eq!(info.config.num_replicas, 1);
    assert_eq!(info.state.messages, 0);
    assert_eq!(info.state.last_sequence, 0);

    for i in 1..=3u64 {
        assert_eq!(
            publish(&js, "orders.new", format!("o{i}")).await.sequence,
            i
        );
    }
    let info = within("info", s.info()).await.unwrap();
    assert_eq!(info.state.messages, 3);
    assert_eq!(info.state.first_sequence, 1);
    assert_eq!(info.state.last_sequence, 3);
    assert!(info.state.bytes > 0);
    assert_eq!(info.state.consumer_count, 0);

    // Creating again with the identical configuration succeeds and changes nothing.
    let again = within("create again", js.create_stream(orders()))
        .await
        .expect("identical create is idempotent");
    assert_eq!(again.cached_info().state.messages, 3);

    // get_stream sees the same stream.
    let mut got = within("get stream", js.get_stream("ORDERS")).await.unwrap();
    assert_eq!(
        within("info", got.info())
            .await
            .unwrap()
            .state
            .last_sequence,
        3
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn update_limits_description_and_subjects() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let mut s = create_stream(&js, orders()).await;
    for i in 0..10 {
        publish(&js, "orders.new", format!("o{i}")).await;
    }

    // Shrinking max_msgs applies at once: the oldest messages go.
    let info = within(
        "update",
        js.update_stream(stream::Config {
            max_messages: 4,
            description: Some("recent orders".into()),
            ..orders()
        }),
    )
    .await
    .expect("update max_msgs and description");
    assert_eq!(info.config.max_messages, 4);
    assert_eq!(info.config.description.as_deref(), Some("recent orders"));
    assert_eq!(info.state.messages, 4);
    assert_eq!(info.state.first_sequence, 7);
    assert_eq!(info.state.last_sequence, 10);

    // Subjects: add one, drop the old one.
    let info = within(
        "update subjects",
        js.update_stream(stream::Config {
            subjects: vec!["invoices.>".into()],
            max_messages: 4,
            ..orders()
        }),
    )
    .await
    .expect("update subjects");
    assert_eq!(info.config.subjects, vec!["invoices.>".to_string()]);
    assert_eq!(publish(&js, "invoices.1", "i1").await.sequence, 11);
    let err = within("publish", js.publish("orders.new", "late".into()))
        .await
        .unwrap()
        .await
        .expect_err("orders.> is no longer captured");
    assert_eq!(err.kind(), PublishErrorKind::StreamNotFound, "{err:?}");

    let info = within("info", s.info()).await.unwrap();
    assert_eq!(info.state.last_sequence, 11);
    assert_eq!(info.state.messages, 4);
    assert_eq!(info.config.description.as_deref(), Some("all orders"));
}

#[tokio::test(flavor = "multi_thread")]
async fn update_errors() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    create_stream(&js, orders()).await;

    // Updating a stream that does not exist.
    let r = api(
        &client,
        "$JS.API.STREAM.UPDATE.NOPE",
        r#"{"name":"NOPE","subjects":["nope"]}"#,
    )
    .await;
    assert_eq!(expect_api_error(&r, 404, 10059), "stream not found");

    // The storage type can not change.
    let err = within(
        "update storage",
        js.update_stream(stream::Config {
            storage: StorageType::Memory,
            ..orders()
        }),
    )
    .await
    .expect_err("storage can not change");
    assert!(
        err.to_string().contains("can not change storage type"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn names_list_and_by_subject() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    for (name, subject) in [("A", "a.>"), ("B", "b.*"), ("C", "c")] {
        create_stream(
            &js,
            stream::Config {
                name: name.into(),
                subjects: vec![subject.into()],
                ..Default::default()
            },
        )
        .await;
    }

    let mut names: Vec<String> = within("names", js.stream_names().try_collect())
        .await
        .unwrap();
    names.sort();
    assert_eq!(names, ["A", "B", "C"]);

    let mut infos: Vec<stream::Info> = within("list", js.streams().try_collect()).await.unwrap();
    infos.sort_by(|x, y| x.config.name.cmp(&y.config.name));
    let listed: Vec<(&str, &str)> = infos
        .iter()
        .map(|i| (i.config.name.as_str(), i.config.subjects[0].as_str()))
        .collect();
    assert_eq!(listed, [("A", "a.>"), ("B", "b.*"), ("C", "c")]);

    // The subject filter of STREAM.NAMES.
    assert_eq!(
        within("by subject", js.stream_by_subject("a.x.y"))
            .await
            .unwrap(),
        "A"
    );
    assert_eq!(
        within("by subject", js.stream_by_subject("b.1"))
            .await
            .unwrap(),
        "B"
    );
    assert_eq!(
        within("by subject", js.stream_by_subject("c"))
            .await
            .unwrap(),
        "C"
    );
    within("by subject", js.stream_by_subject("d.1"))
        .await
        .expect_err("no stream captures d.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    create_stream(&js, orders()).await;
    publish(&js, "orders.1", "x").await;

    let status = within("delete", js.delete_stream("ORDERS")).await.unwrap();
    assert!(status.success);

    let err = within("get deleted", js.get_stream("ORDERS"))
        .await
        .expect_err("deleted stream is gone");
    match err.kind() {
        GetStreamErrorKind::JetStream(e) => {
            assert_eq!(e.error_code(), ErrorCode::STREAM_NOT_FOUND, "{e:?}")
        }
        other => panic!("unexpected error kind {other:?}"),
    }
    let names: Vec<String> = within("names", js.stream_names().try_collect())
        .await
        .unwrap();
    assert!(names.is_empty(), "{names:?}");

    // Deleting again: stream not found.
    let r = api(&client, "$JS.API.STREAM.DELETE.ORDERS", "").await;
    assert_eq!(expect_api_error(&r, 404, 10059), "stream not found");

    // The name and subjects are free again; the new stream starts from scratch.
    let mut s = create_stream(&js, orders()).await;
    let info = within("info", s.info()).await.unwrap();
    assert_eq!(info.state.messages, 0);
    assert_eq!(publish(&js, "orders.1", "y").await.sequence, 1);
}
