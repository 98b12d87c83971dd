//! Tenants, for the operators (the system tenant's users, or the default
//! tenant's when there is none): list them with their users (never a
//! password), limits and usage, and make, change or delete those made here.
//! Tenants of the configuration file are read-only (409 `tenant_read_only`).

use super::ApiState;
use super::auth::Authenticated;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{TenantInfo, TenantSpec};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Every tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// The default tenant `$G` first: `{"name", "source": "default" | "config" |
    /// "api", "system", "users": [{"user", "login", "permissions"}], "limits",
    /// "jetstream", "exports", "imports", "usage": {"connections", "stations",
    /// "consumers"}}`.
    #[schema(value_type = Vec<Object>)]
    pub tenants: Vec<TenantInfo>,
}

/// List tenants (operators only).
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "tenants",
    responses(
        (status = 200, description = "Every tenant", body = TenantList),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
    )
)]
pub async fn list_tenants(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<TenantList>, AppError> {
    auth.operators_only("tenants")?;
    Ok(Json(TenantList {
        tenants: state.engine.tenant_infos(),
    }))
}

/// Read one tenant (operators only).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 200, description = "The tenant", body = Object),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
    )
)]
pub async fn get_tenant(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<TenantInfo>, AppError> {
    auth.operators_only("tenants")?;
    state
        .engine
        .tenant_infos()
        .into_iter()
        .find(|t| t.name == name)
        .map(Json)
        .ok_or_else(|| junction_api::EngineError::TenantNotFound.into())
}

/// Make or replace a tenant (operators only).
///
/// The body is `[[tenants]]` as JSON, without exports and imports: `{"users":
/// [{"user", "password", "permissions"}], "limits": {"max_connections"},
/// "jetstream": {"max_streams", "max_consumers"}}`. Passwords in clear text are
/// stored as bcrypt hashes; a user given without one keeps its password. The
/// connections of users removed or changed are closed. 201 when made, 200 when
/// replaced; kept across restarts.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name: letters, digits, '-' and '_'")),
    request_body(content = Object, description = "The tenant's users and limits"),
    responses(
        (status = 201, description = "Made", body = Object),
        (status = 200, description = "Replaced", body = Object),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 409, description = "`tenant_read_only`: the default tenant, a tenant of the configuration file, or a broker without credentials", body = ErrorBody),
        (status = 422, description = "`invalid_config`: a bad name, user or permission, or a user name another tenant has", body = ErrorBody),
    )
)]
pub async fn put_tenant(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
    JsonBody(spec): JsonBody<TenantSpec>,
) -> Result<Response, AppError> {
    auth.operators_only("tenants")?;
    let existed = state.engine.tenant_infos().iter().any(|t| t.name == name);
    let saved = state.engine.put_tenant(&name, spec).await?;
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(saved)).into_response())
}

/// Delete a tenant made over the API (operators only). Its connections are
/// closed; its stations stay on disk and are its again if it is made again.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant}",
    tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`tenant_not_found`", body = ErrorBody),
        (status = 409, description = "`tenant_read_only`", body = ErrorBody),
    )
)]
pub async fn delete_tenant(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    auth.operators_only("tenants")?;
    state.engine.delete_tenant(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
