//! Router tests without a socket (`tower::ServiceExt::oneshot`) against a stub
//! engine, for the paths a real broker cannot be made to take on demand: storage
//! failures (500), handler panics (500), not ready (503) and client limits (503).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::{ApiSettings, api_router};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use junction_api::{
    AckKind, Admin, AdminFuture, Broker, ClientId, ClientRecord, ClientSnapshot, Credentials,
    EngineError, FetchRequest, FetchSink, GroupConfig, GroupInfo, LineageGraph, LineageTrace,
    Message, MessageQuery, Monitor, NewClient, Protocol, PublishOutcome, Purge, QueueGroup,
    ResendRequest, ResendStatus, RoutingRule, SchemaFormat, SchemaInfo, ServerSnapshot,
    StationConfig, StationInfo, StoredCallback, StoredMessage, Subject, SubjectFilter, Subscriber,
    SubscriptionId, SubscriptionSnapshot, SystemEvent, TenantId,
};
use std::sync::Arc;
use std::time::SystemTime;
use tower::ServiceExt;

/// An engine whose stations all fail with a storage error, whose client list
/// panics, and which refuses new clients.
struct Broken;

fn storage() -> EngineError {
    EngineError::Storage("disk on fire".into())
}

impl Broker for Broken {
    fn auth_required(&self) -> bool {
        false
    }
    fn authenticate(&self, _: &Credentials) -> Result<junction_api::Identity, EngineError> {
        Ok(junction_api::Identity::anonymous())
    }
    fn connect(&self, _: NewClient, _: TenantId) -> Result<Arc<ClientRecord>, EngineError> {
        Err(EngineError::MaxConnections)
    }
    fn disconnect(&self, _: ClientId) {}
    fn publish_stored(
        &self,
        _: &ClientRecord,
        _: &Message,
        _: &junction_api::PublishOptions,
        _: Option<StoredCallback>,
    ) -> PublishOutcome {
        PublishOutcome::default()
    }
    fn system_client(&self) -> Arc<ClientRecord> {
        Arc::new(ClientRecord::new(
            ClientId(0),
            TenantId::default_tenant(),
            &NewClient {
                protocol: Protocol::Http,
                remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            },
        ))
    }
    fn count_delivered(&self, _: usize) {}
    fn create_internal_station(
        &self,
        _: &TenantId,
        _: StationConfig,
    ) -> Result<StationInfo, EngineError> {
        Err(storage())
    }
    fn purge_internal_station(&self, _: &TenantId, _: &str, _: Purge) -> Result<u64, EngineError> {
        Err(storage())
    }
    fn create_internal_group(
        &self,
        _: &TenantId,
        _: &str,
        _: GroupConfig,
    ) -> Result<GroupInfo, EngineError> {
        Err(storage())
    }
    fn delete_internal_group(&self, _: &TenantId, _: &str, _: &str) -> Result<(), EngineError> {
        Err(storage())
    }
    fn station_info(&self, _: &TenantId, _: &str) -> Result<StationInfo, EngineError> {
        Err(storage())
    }
    fn station_names(&self, _: &TenantId, _: Option<&str>) -> Vec<String> {
        Vec::new()
    }
    fn station_node(&self, _: &TenantId, _: &str) -> Option<String> {
        None
    }
    fn forward_request(&self, _: &str, _: &TenantId, _: &Message) -> Result<(), EngineError> {
        Err(storage())
    }
    fn broadcast_request(&self, _: &TenantId, _: &Message) -> usize {
        0
    }
    fn get_message(
        &self,
        _: &TenantId,
        _: &str,
        _: MessageQuery,
    ) -> Result<StoredMessage, EngineError> {
        Err(storage())
    }
    fn publish_routed(&self, _: &ClientRecord, _: &Subject, _: &Message) -> usize {
        0
    }
    fn group_info(&self, _: &TenantId, _: &str, _: &str) -> Result<GroupInfo, EngineError> {
        Err(storage())
    }
    fn group_names(&self, _: &TenantId, _: &str) -> Result<Vec<String>, EngineError> {
        Err(storage())
    }
    fn fetch(
        &self,
        _: &TenantId,
        _: &str,
        _: &str,
        _: FetchRequest,
        _: Arc<dyn FetchSink>,
    ) -> Result<(), EngineError> {
        Err(storage())
    }
    fn run_group_timers(&self, _: &TenantId, _: &str, _: &str) {}
    fn ack(&self, _: &TenantId, _: &str, _: &str, _: u64, _: AckKind) -> Result<(), EngineError> {
        Err(storage())
    }
    fn subscribe(
        &self,
        _: &ClientRecord,
        _: SubjectFilter,
        _: Option<QueueGroup>,
        _: Arc<dyn Subscriber>,
    ) -> Result<SubscriptionId, EngineError> {
        Err(storage())
    }
    fn unsubscribe(&self, _: &ClientRecord, _: SubscriptionId) {}
    fn slow_consumer(&self, _: &ClientRecord) {}
    fn backpressure(&self) -> Option<junction_api::Backpressure> {
        None
    }
}

fn refused<T: Send + 'static>() -> AdminFuture<T> {
    Box::pin(async { Err(storage()) })
}

impl Admin for Broken {
    fn create_station(&self, _: &TenantId, _: StationConfig) -> AdminFuture<StationInfo> {
        refused()
    }
    fn update_station(&self, _: &TenantId, _: StationConfig) -> AdminFuture<StationInfo> {
        refused()
    }
    fn delete_station(&self, _: &TenantId, _: &str) -> AdminFuture<()> {
        refused()
    }
    fn purge_station(&self, _: &TenantId, _: &str, _: Purge) -> AdminFuture<u64> {
        refused()
    }
    fn delete_message(&self, _: &TenantId, _: &str, _: u64) -> AdminFuture<()> {
        refused()
    }
    fn create_group(&self, _: &TenantId, _: &str, _: GroupConfig) -> AdminFuture<GroupInfo> {
        refused()
    }
    fn delete_group(&self, _: &TenantId, _: &str, _: &str) -> AdminFuture<()> {
        refused()
    }
    fn group_info_served(&self, _: &TenantId, _: &str, _: &str) -> AdminFuture<GroupInfo> {
        refused()
    }
    fn create_schema(
        &self,
        _: &TenantId,
        _: &str,
        _: SchemaFormat,
        _: &str,
    ) -> AdminFuture<SchemaInfo> {
        refused()
    }
    fn add_schema_version(&self, _: &TenantId, _: &str, _: &str) -> AdminFuture<SchemaInfo> {
        refused()
    }
    fn activate_schema_version(&self, _: &TenantId, _: &str, _: u32) -> AdminFuture<SchemaInfo> {
        refused()
    }
    fn delete_schema(&self, _: &TenantId, _: &str) -> AdminFuture<()> {
        refused()
    }
    fn put_routing_rule(&self, _: &TenantId, _: RoutingRule) -> AdminFuture<RoutingRule> {
        refused()
    }
    fn delete_routing_rule(&self, _: &TenantId, _: &str) -> AdminFuture<()> {
        refused()
    }
    fn resend_dead_letters(
        &self,
        _: &TenantId,
        _: &str,
        _: ResendRequest,
    ) -> AdminFuture<ResendStatus> {
        refused()
    }
    fn close_client(&self, _: &TenantId, _: ClientId, _: &str) -> AdminFuture<()> {
        refused()
    }

    fn remove_cluster_node(&self, _: &str) -> AdminFuture<()> {
        refused()
    }
}

impl Monitor for Broken {
    fn server_snapshot(&self) -> ServerSnapshot {
        ServerSnapshot {
            server_id: "stub".into(),
            server_name: "stub".into(),
            version: "0".into(),
            start: SystemTime::now(),
            connections: 0,
            total_connections: 0,
            in_msgs: 0,
            in_bytes: 0,
            out_msgs: 0,
            out_bytes: 0,
            subscriptions: 0,
            slow_consumers: 0,
            tenant_storage_refused: 0,
        }
    }
    fn clients(&self) -> Vec<ClientSnapshot> {
        panic!("client registry exploded");
    }
    fn client_subscriptions(&self, _: ClientId) -> Vec<SubscriptionSnapshot> {
        Vec::new()
    }
    fn storage_stats(&self) -> junction_api::StorageStats {
        junction_api::StorageStats::default()
    }
    fn storage_health(&self) -> Result<(), String> {
        // Healthy storage: `/readyz` is then up to the readiness flag.
        Ok(())
    }
    fn schema_info(&self, _: &TenantId, _: &str) -> Result<SchemaInfo, EngineError> {
        Err(storage())
    }
    fn schemas(&self, _: &TenantId) -> Vec<SchemaInfo> {
        Vec::new()
    }
    fn routing_rules(&self, _: &TenantId) -> Vec<RoutingRule> {
        Vec::new()
    }
    fn resend_status(&self, _: &TenantId, _: &str, _: u64) -> Result<ResendStatus, EngineError> {
        Err(storage())
    }
    fn lineage(&self, _: &TenantId, _: &str) -> Result<LineageTrace, EngineError> {
        Err(storage())
    }
    fn lineage_graph(&self, _: &TenantId) -> LineageGraph {
        LineageGraph::default()
    }
    fn events(&self, _: &TenantId, _: &junction_api::EventFilter) -> Vec<SystemEvent> {
        Vec::new()
    }
    fn cluster(&self) -> Option<junction_api::ClusterSnapshot> {
        None
    }
}

async fn call(
    settings: ApiSettings,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, serde_json::Value) {
    let router = api_router(Arc::new(Broken), settings);
    let response = router
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{uri}: not JSON ({e}): {bytes:?}"));
    (status, json)
}

fn code(json: &serde_json::Value) -> &str {
    json["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn storage_failure_is_a_logged_503_without_details() {
    let (status, json) = call(ApiSettings::new(1024), "GET", "/v1/stations/s", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&json), "storage_unavailable");
    assert!(!json.to_string().contains("disk on fire"), "{json}");
}

#[tokio::test]
async fn handler_panic_is_a_500_json() {
    let (status, json) = call(ApiSettings::new(1024), "GET", "/v1/connections", "").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(code(&json), "internal");
}

#[tokio::test]
async fn not_ready_is_503() {
    let settings = ApiSettings::new(1024);
    settings.readiness.set(false);
    let (status, json) = call(settings, "GET", "/readyz", "").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&json), "not_ready");
    let (status, json) = call(ApiSettings::new(1024), "GET", "/readyz", "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["status"], "ready");
}

#[tokio::test]
async fn engine_client_limit_is_503() {
    let (status, json) = call(ApiSettings::new(1024), "POST", "/v1/subjects/a.b", "x").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&json), "max_connections");
}

#[tokio::test]
async fn body_over_max_payload_is_413() {
    let (status, json) = call(ApiSettings::new(4), "POST", "/v1/subjects/a.b", "12345").await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(code(&json), "payload_too_large");
}
