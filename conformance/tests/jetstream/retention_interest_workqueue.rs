//! Interest retention keeps a message until every consumer interested in it has
//! acked it; work-queue retention removes a message once it is acked and allows
//! only one consumer per subject.

use crate::support::{
    api, connect, consumer_info, create_consumer, create_stream, durable, expect_api_error,
    poll_until, publish, publish_n, pull_n, seq, stream_state, within,
};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use futures::StreamExt;
use junction_conformance::broker;

fn config(name: &str, retention: RetentionPolicy) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![format!("{}.>", name.to_lowercase())],
        retention,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn interest_keeps_until_every_consumer_acked() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(&js, config("I", RetentionPolicy::Interest)).await;
    let a = durable(&s, "A").await;
    let c = durable(&s, "B").await;
    publish_n(&js, "i.x", 3).await;
    assert_eq!(stream_state(&js, "I").await.messages, 3);

    // A acks everything: B has not, so everything stays.
    for m in pull_n(&a, 3).await {
        within("ack", m.double_ack()).await.unwrap();
    }
    assert_eq!(stream_state(&js, "I").await.messages, 3);

    // B acks the first: only that one goes.
    let from_b = pull_n(&c, 3).await;
    within("ack", from_b[0].double_ack()).await.unwrap();
    let state = stream_state(&js, "I").await;
    assert_eq!((state.messages, state.first_sequence), (2, 2));
    for m in &from_b[1..] {
        within("ack", m.double_ack()).await.unwrap();
    }
    let state = stream_state(&js, "I").await;
    assert_eq!((state.messages, state.last_sequence), (0, 3));
}

#[tokio::test(flavor = "multi_thread")]
async fn interest_respects_filters_and_consumer_deletion() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(&js, config("I", RetentionPolicy::Interest)).await;
    let all = durable(&s, "ALL").await;
    create_consumer(
        &s,
        pull::Config {
            durable_name: Some("ONLY_A".into()),
            filter_subject: "i.a".into(),
            ..Default::default()
        },
    )
    .await;
    publish(&js, "i.a", "a").await; // 1: both interested
    publish(&js, "i.b", "b").await; // 2: only ALL
    for m in pull_n(&all, 2).await {
        within("ack", m.double_ack()).await.unwrap();
    }
    // i.b is gone (its only interested consumer acked); i.a waits for ONLY_A.
    let state = stream_state(&js, "I").await;
    assert_eq!((state.messages, state.first_sequence), (1, 1));

    // Deleting the consumer holding it back releases it.
    assert!(
        within("delete consumer", s.delete_consumer("ONLY_A"))
            .await
            .unwrap()
            .success
    );
    poll_until("message released", || async {
        stream_state(&js, "I").await.messages == 0
    })
    .await;
}

fn filtered(name: &str, filter: &str) -> pull::Config {
    pull::Config {
        durable_name: Some(name.into()),
        filter_subject: filter.into(),
        ..Default::default()
    }
}

/// Deleting a consumer releases exactly the messages it alone held back, from
/// the first it had not acked (only those are looked at since deleting one of
/// many consumers no longer walks every message), and nothing it was done with.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_one_of_several_consumers_releases_only_what_it_held() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(&js, config("I", RetentionPolicy::Interest)).await;
    let all = durable(&s, "ALL").await;
    let x = create_consumer(&s, filtered("X", "i.x")).await;
    let y = create_consumer(&s, filtered("Y", "i.y")).await;
    for (subject, payload) in [
        ("i.x", "1"),
        ("i.y", "2"),
        ("i.x", "3"),
        ("i.y", "4"),
        ("i.x", "5"),
    ] {
        publish(&js, subject, payload).await;
    }
    for m in pull_n(&all, 5).await {
        within("ack", m.double_ack()).await.unwrap();
    }
    // X acks 1 and 3 and leaves 5 pending; Y acks 2 and leaves 4 pending.
    let from_x = pull_n(&x, 3).await;
    assert_eq!(from_x.iter().map(seq).collect::<Vec<_>>(), [1, 3, 5]);
    for m in &from_x[..2] {
        within("ack", m.double_ack()).await.unwrap();
    }
    let from_y = pull_n(&y, 2).await;
    assert_eq!(from_y.iter().map(seq).collect::<Vec<_>>(), [2, 4]);
    within("ack", from_y[0].double_ack()).await.unwrap();
    let state = stream_state(&js, "I").await;
    assert_eq!((state.messages, state.first_sequence), (2, 4));

    assert!(
        within("delete X", s.delete_consumer("X"))
            .await
            .unwrap()
            .success
    );
    poll_until("X's message released", || async {
        stream_state(&js, "I").await.messages == 1
    })
    .await;
    let state = stream_state(&js, "I").await;
    assert_eq!((state.messages, state.first_sequence), (1, 4));

    assert!(
        within("delete Y", s.delete_consumer("Y"))
            .await
            .unwrap()
            .success
    );
    poll_until("Y's message released", || async {
        stream_state(&js, "I").await.messages == 0
    })
    .await;
}

/// A filtered consumer that has caught up, on a stream busy with other
/// subjects, gets every new match: the engine remembers the stretch it found
/// nothing in and looks only after it, so the stretch must end where the
/// committed messages end.
#[tokio::test(flavor = "multi_thread")]
async fn a_caught_up_filtered_consumer_gets_each_match_among_other_subjects() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(
        &js,
        stream::Config {
            name: "BUSY".into(),
            subjects: vec!["busy.>".into()],
            ..Default::default()
        },
    )
    .await;
    let f = create_consumer(&s, filtered("F", "busy.f.*")).await;
    let mut want = Vec::new();
    for round in 0..5u64 {
        for i in 0..30 {
            publish(&js, &format!("busy.other.{round}.{i}"), "x").await;
        }
        // Nothing for F yet: its fetch ends empty (it has looked at the 30).
        let mut empty = within("fetch", f.fetch().max_messages(1).messages())
            .await
            .unwrap();
        while let Some(m) = within("fetch end", empty.next()).await {
            // The client reports the 404 "no messages" status as an error item.
            if let Ok(m) = m {
                panic!("nothing for F yet, got seq {}", seq(&m));
            }
        }
        let ack = publish(&js, &format!("busy.f.{round}"), "match").await;
        want.push(ack.sequence);
        let got = pull_n(&f, 1).await;
        assert_eq!(seq(&got[0]), ack.sequence);
        within("ack", got[0].double_ack()).await.unwrap();
    }
    // Every match, one per round, 31 sequences apart.
    assert_eq!(want, [31, 62, 93, 124, 155]);
    let info = consumer_info(&s, "F").await;
    assert_eq!((info.num_pending, info.num_ack_pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn interest_without_consumers_stores_nothing() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    create_stream(&js, config("I", RetentionPolicy::Interest)).await;
    let ack = publish(&js, "i.x", "nobody listens").await;
    assert_eq!(ack.sequence, 1);
    poll_until("message dropped", || async {
        stream_state(&js, "I").await.messages == 0
    })
    .await;
    assert_eq!(stream_state(&js, "I").await.last_sequence, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn workqueue_removes_on_ack() {
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    let s = create_stream(&js, config("W", RetentionPolicy::WorkQueue)).await;
    publish_n(&js, "w.x", 3).await;
    let c = durable(&s, "C").await;
    let got = pull_n(&c, 3).await;
    assert_eq!(got.iter().map(seq).collect::<Vec<_>>(), [1, 2, 3]);
    within("ack", got[0].double_ack()).await.unwrap();
    within("ack", got[2].double_ack()).await.unwrap();
    let state = stream_state(&js, "W").await;
    assert_eq!(
        (state.messages, state.first_sequence, state.last_sequence),
        (1, 2, 3)
    );
    within("ack", got[1].double_ack()).await.unwrap();
    assert_eq!(stream_state(&js, "W").await.messages, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn workqueue_consumer_rules() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = create_stream(&js, config("W", RetentionPolicy::WorkQueue)).await;
    durable(&s, "FIRST").await;

    // A second unfiltered consumer.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.W.SECOND",
        r#"{"stream_name":"W","config":{"durable_name":"SECOND","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 400, 10099),
        "multiple non-filtered consumers not allowed on workqueue stream"
    );
    let err = within(
        "create second",
        s.create_consumer(pull::Config {
            durable_name: Some("SECOND".into()),
            ..Default::default()
        }),
    )
    .await
    .expect_err("second unfiltered consumer refused");
    assert!(err.to_string().contains("10099"), "{err}");

    // The existing consumer can still be looked up and re-created as it is.
    durable(&s, "FIRST").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn workqueue_filtered_consumers_must_not_overlap() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let s = create_stream(&js, config("W", RetentionPolicy::WorkQueue)).await;
    create_consumer(
        &s,
        pull::Config {
            durable_name: Some("A".into()),
            filter_subject: "w.a.>".into(),
            ..Default::default()
        },
    )
    .await;
    // Disjoint filter: fine.
    create_consumer(
        &s,
        pull::Config {
            durable_name: Some("B".into()),
            filter_subject: "w.b.>".into(),
            ..Default::default()
        },
    )
    .await;
    // Overlapping filter: not unique.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.W.C.w.a.x",
        r#"{"stream_name":"W","config":{"durable_name":"C","filter_subject":"w.a.x","ack_policy":"explicit"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 400, 10100),
        "filtered consumer not unique on workqueue stream"
    );
    // An unfiltered one next to filtered ones.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.W.D",
        r#"{"stream_name":"W","config":{"durable_name":"D","ack_policy":"explicit"}}"#,
    )
    .await;
    expect_api_error(&r, 400, 10099);

    // Work-queue consumers must ack explicitly and deliver all.
    let r = api(
        &client,
        "$JS.API.CONSUMER.CREATE.W.E.w.e",
        r#"{"stream_name":"W","config":{"durable_name":"E","filter_subject":"w.e","ack_policy":"none"}}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 400, 10098),
        "workqueue stream requires explicit ack"
    );
    let err = within(
        "create deliver-new",
        s.create_consumer(pull::Config {
            durable_name: Some("F".into()),
            filter_subject: "w.f".into(),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        }),
    )
    .await
    .expect_err("deliver new refused on a work queue");
    assert!(err.to_string().contains("10101"), "{err}");
}
