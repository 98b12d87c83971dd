//! Negative limits, over-long names and names with control characters: refused
//! with nats-server's JetStream error (500 / 10052 for streams, 500 / 10012 for
//! consumers) and an accurate text, never stored as "unlimited".

use crate::js::{self, api, expect_api_error};
use junction_conformance::broker;

#[tokio::test]
async fn negative_stream_limits_are_refused() {
    let broker = broker().await;
    let (client, _) = js::connect(&broker).await;
    for field in [
        "max_msgs",
        "max_bytes",
        "max_msgs_per_subject",
        "max_msg_size",
        "max_consumers",
    ] {
        let r = api(
            &client,
            "$JS.API.STREAM.CREATE.L",
            &format!(r#"{{"name":"L","subjects":["l.>"],"{field}":-5}}"#),
        )
        .await;
        let text = expect_api_error(&r, 500, 10052);
        assert!(
            text.contains(field) && text.contains("-5"),
            "{field}: {text}"
        );
    }
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.L",
        r#"{"name":"L","subjects":["l.>"],"max_age":-1000000000}"#,
    )
    .await;
    assert_eq!(
        expect_api_error(&r, 500, 10052),
        "max age needs to be >= 100ms"
    );
    // -1 and 0 still mean unlimited.
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.L",
        r#"{"name":"L","subjects":["l.>"],"max_msgs":-1,"max_bytes":0}"#,
    )
    .await;
    assert!(r["error"].is_null(), "{r}");
    assert_eq!(r["config"]["max_msgs"], -1);
    assert_eq!(r["config"]["max_bytes"], -1);
}

#[tokio::test]
async fn negative_consumer_limits_are_refused() {
    let broker = broker().await;
    let (client, jsx) = js::connect(&broker).await;
    js::simple_stream(&jsx, "C", &["c.>"]).await;
    for field in ["max_deliver", "max_ack_pending"] {
        let r = api(
            &client,
            "$JS.API.CONSUMER.CREATE.C.g",
            &format!(
                r#"{{"stream_name":"C","config":{{"durable_name":"g","ack_policy":"explicit","{field}":-5}}}}"#
            ),
        )
        .await;
        let text = r["error"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(r["error"]["code"], 500, "{field}: {r}");
        assert_eq!(r["error"]["err_code"], 10012, "{field}: {r}");
        assert!(
            text.contains(field) && text.contains("-5"),
            "{field}: {text}"
        );
    }
}

#[tokio::test]
async fn names_are_checked_with_accurate_messages() {
    let broker = broker().await;
    let (client, _) = js::connect(&broker).await;
    let long = "n".repeat(256);
    let r = api(
        &client,
        &format!("$JS.API.STREAM.CREATE.{long}"),
        &format!(r#"{{"name":"{long}","subjects":["n.x"]}}"#),
    )
    .await;
    assert_eq!(
        r["error"]["description"], "stream name is too long, maximum allowed is 255",
        "{r}"
    );
    let r = api(
        &client,
        "$JS.API.STREAM.CREATE.a",
        "{\"name\":\"a\\u0000b\",\"subjects\":[\"n.y\"]}",
    )
    .await;
    // (A NUL cannot be in the request subject: it is refused at ingress.)
    assert_eq!(r["error"]["err_code"], 10056, "{r}");
    let names = api(&client, "$JS.API.STREAM.NAMES", "").await;
    assert_eq!(names["total"], 0, "nothing was created: {names}");
}
