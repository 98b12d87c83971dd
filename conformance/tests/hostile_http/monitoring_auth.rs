//! Monitoring routes and credentials (`[http] monitoring_auth`, on by default):
//! when the broker has credentials, `/varz`, `/connz` (client names, addresses,
//! subscriptions) and `/metrics` take the API's own Bearer or Basic credentials
//! and answer `401 {"error":{"code":"unauthorized"}}` with `WWW-Authenticate`
//! without them, on the main listener and on the `-m` monitoring listener alike.
//! `/healthz` and `/readyz` stay open for probes. `monitoring_auth = false` opens
//! them again; a broker without credentials keeps them open.

use crate::support::{Api, within};
use junction_conformance::broker_with;

const GUARDED: [&str; 4] = ["/varz", "/connz", "/connz?subs=1", "/metrics"];

fn assert_401(r: crate::support::Reply, path: &str) {
    assert!(
        r.headers.get("www-authenticate").is_some(),
        "{path}: no challenge: {r:?}"
    );
    r.expect_error(401, "unauthorized");
}

/// The status of `GET path` (the body may be Prometheus text, not JSON).
async fn status(api: &Api, path: &str) -> u16 {
    within(path, api.request(reqwest::Method::GET, path).send())
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_needs_the_api_credentials() {
    let b = broker_with(|c| {
        c.auth.user = Some("ops".into());
        c.auth.password = Some("pa55".into());
        c.monitor_listen = Some("127.0.0.1:0".into());
    })
    .await;
    let main = Api::new(&b);
    let mut monitor = Api::new(&b);
    monitor.base = format!("http://{}", b.running.monitor_addr().unwrap());
    // "ops:pa55" in base64.
    let basic = "Basic b3BzOnBhNTU=";
    for api in [&main, &monitor] {
        for path in GUARDED {
            if path == "/metrics" && api.base == monitor.base {
                continue; // the -m listener serves nats-server's routes only
            }
            assert_401(api.get(path).await, path);
            assert_401(api.with_auth("Basic b3BzOndyb25n").get(path).await, path);
            assert_eq!(status(&api.with_auth(basic), path).await, 200, "{path}");
        }
        api.get("/healthz").await.expect(200);
    }
    main.get("/readyz").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_tokens_open_monitoring_too() {
    let b = broker_with(|c| c.auth.token = Some("t0k".into())).await;
    let api = Api::new(&b);
    for path in GUARDED {
        assert_401(api.get(path).await, path);
        assert_eq!(
            status(&api.with_auth("Bearer t0k"), path).await,
            200,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn monitoring_auth_false_or_no_credentials_leave_it_open() {
    let opened = broker_with(|c| {
        c.auth.token = Some("t0k".into());
        c.http.monitoring_auth = false;
    })
    .await;
    let open = broker_with(|_| {}).await;
    for b in [&opened, &open] {
        let api = Api::new(b);
        for path in GUARDED {
            assert_eq!(status(&api, path).await, 200, "{path}");
        }
    }
}
