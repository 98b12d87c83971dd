//! Authentication: the right user/password or token connects and works; wrong or
//! missing credentials fail the connect with an authorization violation.

use crate::support::{next, varz_until, within};
use async_nats::{Client, ConnectErrorKind, ConnectOptions};
use bytes::Bytes;
use junction_conformance::TestBroker;

/// Connects with `options`, without retrying, so a refusal fails at once.
async fn try_connect(
    broker: &TestBroker,
    options: ConnectOptions,
) -> Result<Client, async_nats::ConnectError> {
    within("connect attempt", options.connect(broker.nats_url())).await
}

/// A round trip on `client`, to prove the connection is usable.
async fn round_trip(client: &Client) {
    let mut sub = client.subscribe("auth.check").await.unwrap();
    client.flush().await.unwrap();
    client
        .publish("auth.check", Bytes::from_static(b"ok"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    assert_eq!(next(&mut sub, "round trip").await.payload, "ok");
}

fn assert_refused(result: Result<Client, async_nats::ConnectError>, what: &str) {
    match result {
        Ok(_) => panic!("{what}: connect succeeded"),
        Err(e) => assert_eq!(
            e.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{what}: {e:?}"
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn user_and_password() {
    let broker = junction_conformance::broker_with(|cfg| {
        cfg.auth.user = Some("alice".into());
        cfg.auth.password = Some("s3cret".into());
        // `/varz` is read anonymously below; monitoring auth has its own tests
        // (hostile_http::monitoring_auth).
        cfg.http.monitoring_auth = false;
    })
    .await;

    let good = try_connect(
        &broker,
        ConnectOptions::with_user_and_password("alice".into(), "s3cret".into()),
    )
    .await
    .expect("right user and password connect");
    round_trip(&good).await;

    assert_refused(
        try_connect(
            &broker,
            ConnectOptions::with_user_and_password("alice".into(), "wrong".into()),
        )
        .await,
        "wrong password",
    );
    assert_refused(
        try_connect(
            &broker,
            ConnectOptions::with_user_and_password("mallory".into(), "s3cret".into()),
        )
        .await,
        "unknown user",
    );
    assert_refused(
        try_connect(&broker, ConnectOptions::new()).await,
        "no credentials",
    );
    assert_refused(
        try_connect(&broker, ConnectOptions::with_token("s3cret".into())).await,
        "token instead of user",
    );

    // The refused attempts did not disturb the authenticated client.
    round_trip(&good).await;
    let varz = varz_until(&broker, "connections == 1 (only the good client)", |v| {
        v["connections"] == 1
    })
    .await;
    assert_eq!(varz["auth_required"], true, "{varz}");
}

#[tokio::test(flavor = "multi_thread")]
async fn token() {
    let broker = junction_conformance::broker_with(|cfg| {
        cfg.auth.token = Some("t0ken-value".into());
    })
    .await;

    let good = try_connect(&broker, ConnectOptions::with_token("t0ken-value".into()))
        .await
        .expect("right token connects");
    round_trip(&good).await;

    assert_refused(
        try_connect(&broker, ConnectOptions::with_token("not-it".into())).await,
        "wrong token",
    );
    assert_refused(
        try_connect(&broker, ConnectOptions::new()).await,
        "no token",
    );
    assert_refused(
        try_connect(
            &broker,
            ConnectOptions::with_user_and_password("t0ken-value".into(), "x".into()),
        )
        .await,
        "user/password instead of token",
    );
    round_trip(&good).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn open_broker_accepts_anyone() {
    let broker = junction_conformance::broker().await;
    let client = try_connect(
        &broker,
        ConnectOptions::with_user_and_password("anyone".into(), "anything".into()),
    )
    .await
    .expect("no auth configured");
    round_trip(&client).await;
}
