//! Content-based routing rules: create or replace, list, read, delete
//! (docs/routing.md).

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::RoutingRule;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Every rule, in evaluation order.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleList {
    /// Rules: `{"name", "priority", "subjects", "match": [predicates], "action"}`.
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<RoutingRule>,
}

/// Create or replace a routing rule.
///
/// The body is the rule: `{"name", "priority"?, "subjects"?, "match"?: [predicates],
/// "action": {"route": [stations]} | {"drop": true} | {"resubject": "subject"}}`.
/// Answers 201 when created, 200 when it replaced a rule of that name.
#[utoipa::path(
    post,
    path = "/v1/routing/rules",
    tag = "routing",
    request_body(content = Object, description = "The rule"),
    responses(
        (status = 201, description = "Created", body = Object),
        (status = 200, description = "Replaced", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 422, description = "Invalid rule", body = ErrorBody),
    )
)]
pub async fn put_rule(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(rule): JsonBody<RoutingRule>,
) -> Result<Response, AppError> {
    let existed = state
        .engine
        .routing_rules(&tenant)
        .iter()
        .any(|r| r.name == rule.name);
    let saved = state.engine.put_routing_rule(&tenant, rule).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)).into_response())
}

/// List routing rules.
#[utoipa::path(
    get,
    path = "/v1/routing/rules",
    tag = "routing",
    responses((status = 200, description = "Every rule, in evaluation order", body = RuleList))
)]
pub async fn list_rules(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<RuleList> {
    Json(RuleList {
        rules: state.engine.routing_rules(&tenant),
    })
}

/// Read a routing rule.
#[utoipa::path(
    get,
    path = "/v1/routing/rules/{rule}",
    tag = "routing",
    params(("rule" = String, Path, description = "Rule name")),
    responses(
        (status = 200, description = "The rule", body = Object),
        (status = 404, description = "`routing_rule_not_found`", body = ErrorBody),
    )
)]
pub async fn get_rule(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<RoutingRule>, AppError> {
    state
        .engine
        .routing_rules(&tenant)
        .into_iter()
        .find(|r| r.name == name)
        .map(Json)
        .ok_or_else(|| junction_api::EngineError::RoutingRuleNotFound.into())
}

/// Delete a routing rule.
#[utoipa::path(
    delete,
    path = "/v1/routing/rules/{rule}",
    tag = "routing",
    params(("rule" = String, Path, description = "Rule name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`routing_rule_not_found`", body = ErrorBody),
    )
)]
pub async fn delete_rule(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.engine.delete_routing_rule(&tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
