//! The same user permissions, answered each protocol's way: MQTT PUBACK 0x87
//! and SUBACK 0x87 (3.1.1: 0x80), HTTP and WebSocket 403 `forbidden` with
//! nats-server's text, SSE 403. What is refused goes nowhere.

use crate::common::{http, post_as, ws_as, ws_call};
use crate::support::{V4, V5, text, v4_options, v5_options};
use junction::engine::{PermissionsConfig, RulesConfig, StringList, User};
use junction_conformance::mqtt_broker_with;
use rumqttc::QoS;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;
use serde_json::json;

fn list(items: &[&str]) -> Option<StringList> {
    Some(StringList::Many(
        items.iter().map(|s| s.to_string()).collect(),
    ))
}

fn limited() -> User {
    let mut u = User::new("limited", "pw");
    u.permissions = Some(PermissionsConfig {
        publish: Some(RulesConfig::Split {
            allow: list(&["orders.>"]),
            deny: list(&["orders.secret"]),
        }),
        subscribe: Some(RulesConfig::Split {
            allow: list(&["orders.>", "_INBOX.>"]),
            deny: list(&["orders.hidden"]),
        }),
        allow_responses: None,
    });
    u
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_gets_reason_codes_and_refused_messages_go_nowhere() {
    let b = mqtt_broker_with(|c| c.auth.users = vec![limited(), User::new("all", "pw")]).await;
    let mut o = v4_options(&b, "watcher");
    o.set_credentials("all", "pw");
    let (mut watcher, _) = V4::connect(o).await;
    watcher.subscribe("#", QoS::AtLeastOnce).await;

    let mut o = v5_options(&b, "limited5");
    o.set_credentials("limited", "pw");
    let (mut c5, _) = V5::connect(o).await;
    let reason = c5
        .publish("elsewhere", QoS5::AtLeastOnce, false, "no")
        .await;
    assert_eq!(reason.as_deref(), Some("NotAuthorized"), "PUBACK 0x87");
    let reason = c5
        .publish("orders/secret", QoS5::AtLeastOnce, false, "no")
        .await;
    assert_eq!(reason.as_deref(), Some("NotAuthorized"), "deny wins");
    assert_eq!(
        c5.subscribe("other/#", QoS5::AtLeastOnce).await,
        vec![Sub5::NotAuthorized],
        "SUBACK 0x87"
    );
    assert_eq!(
        c5.subscribe("orders/hidden", QoS5::AtLeastOnce).await,
        vec![Sub5::NotAuthorized]
    );
    // A wider subscription is granted; the denied subject is filtered out.
    assert_eq!(
        c5.subscribe("orders/+", QoS5::AtLeastOnce).await,
        vec![Sub5::Success(QoS5::AtLeastOnce)]
    );

    let mut o = v4_options(&b, "limited4");
    o.set_credentials("limited", "pw");
    let (mut c4, _) = V4::connect(o).await;
    assert_eq!(
        c4.subscribe("other/x", QoS::AtLeastOnce).await,
        vec![rumqttc::SubscribeReasonCode::Failure],
        "3.1.1 SUBACK 0x80"
    );
    // 3.1.1 has no reason code: the PUBACK comes and the message goes nowhere.
    c4.publish("elsewhere", QoS::AtLeastOnce, false, "v4-no")
        .await;

    let mut o = v4_options(&b, "all-pub");
    o.set_credentials("all", "pw");
    let (mut all, _) = V4::connect(o).await;
    all.publish("orders/hidden", QoS::AtLeastOnce, false, "hidden")
        .await;
    c5.publish("orders/new", QoS5::AtLeastOnce, false, "end")
        .await;

    let got = watcher.recv_until(b"end").await;
    let payloads: Vec<String> = got.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(
        payloads,
        ["hidden", "end"],
        "refused publishes went nowhere"
    );
    let got = c5.recv_until(b"end").await;
    let payloads: Vec<String> = got.iter().map(|m| text(&m.payload)).collect();
    assert_eq!(payloads, ["end"], "orders/hidden was filtered out");

    // The operators' event log: the violations, aggregated (seven of them,
    // not seven events), the first told at once with its user.
    use junction_api::Monitor;
    // Events are stored by a writer thread: wait for what was recorded.
    b.running
        .engine()
        .flush_events(std::time::Duration::from_secs(10));
    let events = b.running.engine().events(
        &junction_api::TenantId::default_tenant(),
        &junction_api::EventFilter {
            limit: 1000,
            ..Default::default()
        },
    );
    let told: Vec<&str> = events
        .iter()
        .filter(|e| e.kind.as_str() == "permission_violation")
        .map(|e| e.message.as_str())
        .collect();
    assert!(!told.is_empty() && told.len() < 7, "aggregated: {told:?}");
    assert_eq!(
        told[told.len() - 1],
        "1 permission violation(s); the last: not authorized to publish to 'elsewhere' (user 'limited')",
        "{told:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_websocket_and_sse_get_403_with_nats_servers_text() {
    let b = mqtt_broker_with(|c| c.auth.users = vec![limited()]).await;
    let (status, body) = post_as(&b, "limited", "pw", "/v1/subjects/elsewhere", "x").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden", "{body}");
    assert_eq!(
        body["error"]["message"], "Permissions Violation for Publish to \"elsewhere\"",
        "{body}"
    );
    let (status, _) = post_as(&b, "limited", "pw", "/v1/subjects/orders.secret", "x").await;
    assert_eq!(status, 403);
    let (status, body) = post_as(&b, "limited", "pw", "/v1/subjects/orders.ok", "x").await;
    assert_eq!(status, 200, "allowed publish: {body}");

    let r = http()
        .get(format!("{}/v1/subjects/elsewhere.>/events", b.http_url()))
        .basic_auth("limited", Some("pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403, "SSE subscription refused");

    let mut ws = ws_as(&b, "limited", "pw").await;
    let answer = ws_call(
        &mut ws,
        json!({"op": "subscribe", "sub": "a", "subject": "elsewhere.>", "ref": 1}),
        &["subscribed", "error"],
    )
    .await;
    assert_eq!(answer["op"], "error", "{answer}");
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    let answer = ws_call(
        &mut ws,
        json!({"op": "publish", "subject": "orders.secret", "payload": "x", "ref": 2}),
        &["published", "error"],
    )
    .await;
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
    assert_eq!(
        answer["error"]["message"],
        "Permissions Violation for Publish to \"orders.secret\""
    );
    // The socket stays usable.
    let answer = ws_call(
        &mut ws,
        json!({"op": "subscribe", "sub": "b", "subject": "orders.>", "ref": 3}),
        &["subscribed", "error"],
    )
    .await;
    assert_eq!(answer["op"], "subscribed", "{answer}");
}
