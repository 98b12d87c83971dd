//! The OpenAPI document at `/v1/openapi.json`: it parses as OpenAPI 3, lists every
//! route the gateway serves, and lists nothing the gateway does not serve.

use crate::support::{Api, within};
use junction_conformance::broker;
use std::collections::BTreeSet;

/// Every route of the gateway (method, path): the list in docs/http.md.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/subjects/{subject}"),
    ("post", "/v1/stations/{station}/messages"),
    ("get", "/v1/stations/{station}/messages"),
    ("post", "/v1/stations/{station}/messages/batch"),
    ("get", "/v1/stations/{station}/messages/{seq}"),
    ("delete", "/v1/stations/{station}/messages/{seq}"),
    ("post", "/v1/stations"),
    ("get", "/v1/stations"),
    ("get", "/v1/stations/{station}"),
    ("put", "/v1/stations/{station}"),
    ("delete", "/v1/stations/{station}"),
    ("post", "/v1/stations/{station}/purge"),
    ("post", "/v1/stations/{station}/stepdown"),
    ("post", "/v1/stations/{station}/tier/adopt"),
    ("get", "/v1/tier/manifests"),
    ("post", "/v1/stations/{station}/peer-remove"),
    ("get", "/v1/stations/{station}/replica"),
    ("post", "/v1/stations/{station}/groups"),
    ("get", "/v1/stations/{station}/groups"),
    ("get", "/v1/stations/{station}/groups/{group}"),
    ("delete", "/v1/stations/{station}/groups/{group}"),
    ("post", "/v1/stations/{station}/groups/{group}/fetch"),
    ("post", "/v1/stations/{station}/groups/{group}/ack"),
    ("post", "/v1/schemas"),
    ("get", "/v1/schemas"),
    ("get", "/v1/schemas/{schema}"),
    ("delete", "/v1/schemas/{schema}"),
    ("post", "/v1/schemas/{schema}/versions"),
    ("post", "/v1/schemas/{schema}/rollback"),
    ("get", "/v1/stations/{station}/dls/messages"),
    ("delete", "/v1/stations/{station}/dls/messages"),
    ("post", "/v1/stations/{station}/dls/resend"),
    ("get", "/v1/stations/{station}/dls/resend/{task}"),
    ("get", "/v1/lineage/graph"),
    ("get", "/v1/lineage/{id}"),
    ("post", "/v1/routing/rules"),
    ("get", "/v1/routing/rules"),
    ("get", "/v1/routing/rules/{rule}"),
    ("delete", "/v1/routing/rules/{rule}"),
    ("get", "/v1/kv/{bucket}"),
    ("get", "/v1/kv/{bucket}/{key}"),
    ("put", "/v1/kv/{bucket}/{key}"),
    ("delete", "/v1/kv/{bucket}/{key}"),
    ("get", "/v1/kv/{bucket}/{key}/history"),
    ("get", "/v1/connections"),
    ("delete", "/v1/connections/{cid}"),
    ("get", "/v1/events"),
    ("post", "/v1/server/reload"),
    ("get", "/v1/tenants"),
    ("get", "/v1/tenants/{tenant}"),
    ("put", "/v1/tenants/{tenant}"),
    ("delete", "/v1/tenants/{tenant}"),
    ("get", "/v1/alarms"),
    ("get", "/v1/notifications/webhooks"),
    ("get", "/v1/notifications/webhooks/{name}"),
    ("put", "/v1/notifications/webhooks/{name}"),
    ("delete", "/v1/notifications/webhooks/{name}"),
    ("post", "/v1/notifications/webhooks/{name}/test"),
    ("get", "/v1/bans"),
    ("post", "/v1/bans"),
    ("delete", "/v1/bans/{kind}/{who}"),
    ("get", "/v1/server"),
    ("get", "/v1/cluster"),
    ("delete", "/v1/cluster/nodes/{name}"),
    ("post", "/v1/cluster/join"),
    ("get", "/v1/openapi.json"),
    ("get", "/v1/subjects/{filter}/events"),
    ("get", "/v1/ws"),
    ("get", "/readyz"),
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

#[tokio::test(flavor = "multi_thread")]
async fn document_is_openapi_3_and_matches_the_routes() {
    let b = broker().await;
    let api = Api::new(&b);
    let doc = api.get("/v1/openapi.json").await.expect(200);
    let version = doc["openapi"].as_str().expect("an openapi version");
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].as_str().is_some());
    let paths = doc["paths"].as_object().expect("paths");

    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(move |m| (m.to_string(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        documented, served,
        "OpenAPI paths and the gateway's routes differ"
    );

    // Every operation has responses; every referenced schema exists.
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    let text = doc.to_string();
    for reference in text.split("\"#/components/schemas/").skip(1) {
        let name = reference.split('"').next().unwrap_or("");
        assert!(schemas.contains_key(name), "missing schema {name}");
    }
    for (method, path) in &documented {
        assert!(
            paths[path][method]["responses"]
                .as_object()
                .is_some_and(|r| !r.is_empty()),
            "{method} {path} has no responses"
        );
    }
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(schemes.contains_key("bearer") && schemes.contains_key("basic"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_documented_route_is_served() {
    let b = broker().await;
    let api = Api::new(&b);
    for (method, path) in ROUTES {
        let concrete = path
            .replace("{subject}", "probe.subject")
            .replace("{filter}", "probe.subject")
            .replace("{station}", "PROBE")
            .replace("{group}", "probe")
            .replace("{seq}", "1")
            .replace("{schema}", "probe")
            .replace("{task}", "1")
            .replace("{id}", "probe")
            .replace("{rule}", "probe")
            .replace("{tenant}", "probe")
            .replace("{kind}", "client_id")
            .replace("{who}", "probe");
        let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = within(
            "probe",
            api.request(method.clone(), &concrete)
                .header("content-type", "application/json")
                .body("{}")
                .send(),
        )
        .await
        .unwrap();
        let status = response.status();
        // An event stream never ends: its status is enough.
        if status.is_success() {
            continue;
        }
        let body: serde_json::Value = within("probe body", response.json()).await.unwrap();
        // The route exists: whatever the answer, it is not "no such route" or "wrong
        // method" (PROBE does not exist, so most answer 404 station_not_found).
        let code = body["error"]["code"].as_str().unwrap_or("");
        assert!(
            code != "route_not_found" && code != "method_not_allowed",
            "{method} {concrete}: {status} {body}"
        );
    }
}
