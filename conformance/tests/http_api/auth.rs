//! Authentication: when the broker requires credentials every `/v1` route needs
//! `Authorization: Bearer <token>` or Basic; missing or wrong credentials get 401
//! with `WWW-Authenticate`. `/healthz` and `/readyz` stay open.

use crate::support::{Api, Reply};
use junction_conformance::broker_with;
use serde_json::json;

/// `Basic` credentials for `user:password` (base64 by hand: the test has no base64
/// crate).
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn assert_challenged(r: Reply) {
    let challenges: Vec<String> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    assert!(
        challenges.iter().any(|c| c.starts_with("Bearer")),
        "{challenges:?}"
    );
    assert!(
        challenges.iter().any(|c| c.starts_with("Basic")),
        "{challenges:?}"
    );
    r.expect_error(401, "unauthorized");
}

#[tokio::test(flavor = "multi_thread")]
async fn bearer_token() {
    let b = broker_with(|c| c.auth.token = Some("s3cret".into())).await;
    let anonymous = Api::new(&b);
    assert_challenged(anonymous.get("/v1/stations").await);
    assert_challenged(anonymous.publish("a.b", "x").await);
    assert_challenged(anonymous.get("/v1/openapi.json").await);
    assert_challenged(anonymous.with_auth("Bearer wrong").get("/v1/server").await);
    assert_challenged(anonymous.with_auth("Token s3cret").get("/v1/server").await);
    assert_challenged(
        anonymous
            .with_auth(&basic("s3cret", ""))
            .get("/v1/server")
            .await,
    );

    let api = anonymous.with_auth("Bearer s3cret");
    api.station("S", &["s"]).await;
    assert_eq!(api.publish_stored("s", "x").await, 1);
    assert_eq!(
        api.get("/v1/server").await.expect(200)["auth_required"],
        true
    );

    // Health and readiness need no credentials.
    anonymous.get("/healthz").await.expect(200);
    anonymous.get("/readyz").await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn basic_user_and_password() {
    let b = broker_with(|c| {
        c.auth.user = Some("alice".into());
        c.auth.password = Some("pa:ss word".into());
    })
    .await;
    let anonymous = Api::new(&b);
    assert_challenged(anonymous.get("/v1/stations").await);
    assert_challenged(
        anonymous
            .with_auth(&basic("alice", "nope"))
            .get("/v1/stations")
            .await,
    );
    assert_challenged(anonymous.with_auth("Basic !!!").get("/v1/stations").await);
    assert_challenged(
        anonymous
            .with_auth("Bearer pa:ss word")
            .get("/v1/stations")
            .await,
    );

    let api = anonymous.with_auth(&basic("alice", "pa:ss word"));
    let r = api
        .post("/v1/stations", &json!({"name": "S"}))
        .await
        .expect(201);
    assert_eq!(r["name"], "S");
    api.get("/v1/stations").await.expect(200);
}
