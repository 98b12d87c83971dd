//! A tenant's limits: stations (JetStream 10027, HTTP 429 `tenant_limit`),
//! consumer groups (JetStream 10026) and connections (NATS `-ERR 'maximum
//! account active connections exceeded'`, MQTT 5 CONNACK 0x97). Other tenants
//! are not limited by them.

use crate::common::{nats_as, post_as, tenant};
use crate::support::{V5, v5_options};
use junction_conformance::mqtt_broker_with;
use serde_json::{Value, json};

async fn js(nc: &async_nats::Client, api: &str, body: Value) -> Value {
    let r = nc
        .request(format!("$JS.API.{api}"), body.to_string().into())
        .await
        .expect("JetStream answers");
    serde_json::from_slice(&r.payload).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_consumers_and_connections_are_bounded_per_tenant() {
    let b = mqtt_broker_with(|c| {
        let mut small = tenant("small", &[("s", "pw")]);
        small.limits.max_connections = Some(2);
        small.jetstream.max_streams = Some(1);
        small.jetstream.max_consumers = Some(1);
        c.tenants = vec![small, tenant("big", &[("g", "pw")])];
    })
    .await;
    let nc = nats_as(&b, "s", "pw").await;
    let ok = js(
        &nc,
        "STREAM.CREATE.one",
        json!({"name": "one", "subjects": ["one.>"]}),
    )
    .await;
    assert!(ok["error"].is_null(), "{ok}");
    let refused = js(
        &nc,
        "STREAM.CREATE.two",
        json!({"name": "two", "subjects": ["two.>"]}),
    )
    .await;
    assert_eq!(refused["error"]["err_code"], 10027, "{refused}");
    assert_eq!(
        refused["error"]["description"],
        "maximum number of streams reached"
    );
    // The same station again is not a new one.
    let again = js(
        &nc,
        "STREAM.CREATE.one",
        json!({"name": "one", "subjects": ["one.>"]}),
    )
    .await;
    assert!(again["error"].is_null(), "{again}");
    let (status, body) = post_as(&b, "s", "pw", "/v1/stations", r#"{"name":"three"}"#).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "tenant_limit", "{body}");

    let c1 = js(
        &nc,
        "CONSUMER.DURABLE.CREATE.one.c1",
        json!({"stream_name": "one", "config": {"durable_name": "c1", "ack_policy": "explicit"}}),
    )
    .await;
    assert!(c1["error"].is_null(), "{c1}");
    let c2 = js(
        &nc,
        "CONSUMER.DURABLE.CREATE.one.c2",
        json!({"stream_name": "one", "config": {"durable_name": "c2", "ack_policy": "explicit"}}),
    )
    .await;
    assert_eq!(c2["error"]["err_code"], 10026, "{c2}");

    // Another tenant is not bound by them.
    let other = nats_as(&b, "g", "pw").await;
    for name in ["x", "y"] {
        let r = js(
            &other,
            &format!("STREAM.CREATE.{name}"),
            json!({"name": name}),
        )
        .await;
        assert!(r["error"].is_null(), "{r}");
    }

    // Connections: `nc` is one; a second is allowed, a third refused.
    let _second = nats_as(&b, "s", "pw").await;
    let third = async_nats::ConnectOptions::with_user_and_password("s".into(), "pw".into())
        .connect(b.nats_url())
        .await;
    let err = match third {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a third connection is accepted"),
    };
    assert!(
        err.contains("maximum account active connections exceeded"),
        "{err}"
    );
    let mut o = v5_options(&b, "small-mqtt");
    o.set_credentials("s", "pw");
    let err = V5::try_connect(o).await.err().expect("MQTT refused");
    assert!(err.contains("QuotaExceeded"), "CONNACK 0x97: {err}");
    // A WebSocket is a connection too (as nats-server counts its WebSocket
    // clients): refused with 429 `tenant_limit` before the upgrade.
    {
        use base64::Engine as _;
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/ws", b.http_url().replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("request");
        let token = base64::engine::general_purpose::STANDARD.encode("s:pw");
        request.headers_mut().insert(
            "authorization",
            format!("Basic {token}").parse().expect("header"),
        );
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 429, "{r:?}")
            }
            other => panic!("a WebSocket past the limit: {other:?}"),
        }
    }
    // The other tenant still connects.
    let mut o = v5_options(&b, "big-mqtt");
    o.set_credentials("g", "pw");
    V5::connect(o).await;
}
