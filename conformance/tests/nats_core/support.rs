//! Helpers shared by the scenarios: hang guards, connecting, and reading
//! monitoring JSON.

use async_nats::{Client, Message, Subscriber};
use futures::StreamExt;
use junction_conformance::TestBroker;
use std::future::Future;
use std::time::Duration;

/// How long any single step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(10);

/// A longer guard for steps that involve a broker restart or a flood of data.
pub const LONG_GUARD: Duration = Duration::from_secs(20);

/// Runs `f`, failing the test if it does not finish within [`GUARD`].
pub async fn within<F: Future>(what: &str, f: F) -> F::Output {
    within_for(GUARD, what, f).await
}

/// Runs `f`, failing the test if it does not finish within `limit`.
pub async fn within_for<F: Future>(limit: Duration, what: &str, f: F) -> F::Output {
    match tokio::time::timeout(limit, f).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Connects a plain async-nats client to `broker`.
pub async fn connect(broker: &TestBroker) -> Client {
    within("connect", async_nats::connect(broker.nats_url()))
        .await
        .expect("client connects")
}

/// The next message of `sub`; fails if the stream ends or nothing arrives in time.
pub async fn next(sub: &mut Subscriber, what: &str) -> Message {
    within(what, sub.next())
        .await
        .unwrap_or_else(|| panic!("subscription ended while waiting for {what}"))
}

/// GETs `path` from the broker's HTTP listener and parses the body as JSON.
pub async fn get_json(broker: &TestBroker, path: &str) -> serde_json::Value {
    let url = format!("{}{path}", broker.http_url());
    let response = within(&url, reqwest::get(&url))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert!(
        response.status().is_success(),
        "GET {url}: status {}",
        response.status()
    );
    within(&url, response.json::<serde_json::Value>())
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body is not JSON: {e}"))
}

/// `/varz` field `name` as a number.
pub async fn varz_u64(broker: &TestBroker, name: &str) -> u64 {
    let varz = get_json(broker, "/varz").await;
    varz[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/varz has no numeric {name}: {varz}"))
}

/// Polls `/varz` until `check` accepts it, returning it; fails after [`GUARD`].
/// For values that settle after the event a test caused (a closed connection is
/// forgotten just after its socket closes).
pub async fn varz_until(
    broker: &TestBroker,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = serde_json::Value::Null;
    let found = tokio::time::timeout(GUARD, async {
        loop {
            last = get_json(broker, "/varz").await;
            if check(&last) {
                return last.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await;
    match found {
        Ok(v) => v,
        Err(_) => panic!("timed out after {GUARD:?} waiting for /varz {what}; last: {last}"),
    }
}

/// A full round trip on `client`: returns once the broker has processed everything
/// the client sent before it. (async-nats `flush` only writes to the socket; it does
/// not wait for the server.) It is a request nobody answers, so the broker's `503`
/// no-responders status comes back on the same connection; it adds one to `in_msgs`
/// and creates the client's request inbox subscription on first use.
pub async fn sync(client: &Client) {
    let err = within(
        "sync round trip",
        client.request("_conformance.sync", bytes::Bytes::new()),
    )
    .await
    .expect_err("nobody answers the sync subject");
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "sync round trip: {err:?}"
    );
}
