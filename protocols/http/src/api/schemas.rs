//! Schema admin: create, list, read, add a version, roll back to a version, delete.

use super::ApiState;
use super::auth::Tenant;
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::rfc3339;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use junction_api::{SchemaFormat, SchemaInfo};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A new schema and its first version.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSchemaRequest {
    /// Name: 1 to 128 letters, digits, `-` or `_`.
    pub name: String,
    /// `json` (JSON Schema; the default). Other formats are not supported yet.
    #[serde(rename = "type", default = "json_type")]
    pub format: String,
    /// The JSON Schema document.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
}

fn json_type() -> String {
    "json".into()
}

/// A new version of a schema.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaVersionRequest {
    /// The JSON Schema document.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
}

/// Which version to make active.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// An existing version number.
    pub version: u32,
}

/// One version of a schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaVersionJson {
    /// 1, 2, 3, …
    pub version: u32,
    /// When it was added (RFC 3339).
    pub created: String,
    /// The document.
    #[schema(value_type = Object)]
    pub definition: serde_json::Value,
}

/// A schema and its versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaJson {
    /// Name.
    pub name: String,
    /// `json`.
    #[serde(rename = "type")]
    pub format: String,
    /// The version stations without a pinned `schema_version` validate against.
    pub active_version: u32,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Stations using it.
    pub stations: Vec<String>,
    /// Every version, oldest first.
    pub versions: Vec<SchemaVersionJson>,
}

impl From<&SchemaInfo> for SchemaJson {
    fn from(s: &SchemaInfo) -> Self {
        SchemaJson {
            name: s.name.clone(),
            format: s.format.as_str().to_string(),
            active_version: s.active_version,
            created: rfc3339(s.created),
            stations: s.stations.clone(),
            versions: s
                .versions
                .iter()
                .map(|v| SchemaVersionJson {
                    version: v.version,
                    created: rfc3339(v.created),
                    definition: serde_json::from_str(&v.definition)
                        .unwrap_or(serde_json::Value::Null),
                })
                .collect(),
        }
    }
}

/// Every schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct SchemaList {
    /// Schemas, by name.
    pub schemas: Vec<SchemaJson>,
}

/// Create a schema.
///
/// The definition must be a valid JSON Schema; it becomes version 1. Attach it to
/// a station with `"schema": "<name>"` in the station's definition.
#[utoipa::path(
    post,
    path = "/v1/schemas",
    tag = "schemas",
    request_body = CreateSchemaRequest,
    responses(
        (status = 201, description = "Created", body = SchemaJson),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "`schema_exists`", body = ErrorBody),
        (status = 422, description = "Invalid name, type or definition", body = ErrorBody),
    )
)]
pub async fn create_schema(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    JsonBody(request): JsonBody<CreateSchemaRequest>,
) -> Result<Response, AppError> {
    let format = SchemaFormat::parse(&request.format).ok_or_else(|| {
        AppError::invalid(
            "invalid_config",
            format!("unsupported schema type '{}'; use \"json\"", request.format),
        )
    })?;
    let info = state
        .engine
        .create_schema(
            &tenant,
            &request.name,
            format,
            &request.definition.to_string(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(SchemaJson::from(&info))).into_response())
}

/// List schemas.
#[utoipa::path(
    get,
    path = "/v1/schemas",
    tag = "schemas",
    responses((status = 200, description = "Every schema, by name", body = SchemaList))
)]
pub async fn list_schemas(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
) -> Json<SchemaList> {
    let schemas = state
        .engine
        .schemas(&tenant)
        .iter()
        .map(SchemaJson::from)
        .collect();
    Json(SchemaList { schemas })
}

/// Read a schema with all its versions.
#[utoipa::path(
    get,
    path = "/v1/schemas/{schema}",
    tag = "schemas",
    params(("schema" = String, Path, description = "Schema name")),
    responses(
        (status = 200, description = "The schema", body = SchemaJson),
        (status = 404, description = "`schema_not_found`", body = ErrorBody),
    )
)]
pub async fn get_schema(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<SchemaJson>, AppError> {
    let info = state.engine.schema_info(&tenant, &name)?;
    Ok(Json(SchemaJson::from(&info)))
}

/// Delete a schema.
///
/// Refused with 409 `schema_in_use` while a station uses it.
#[utoipa::path(
    delete,
    path = "/v1/schemas/{schema}",
    tag = "schemas",
    params(("schema" = String, Path, description = "Schema name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`schema_not_found`", body = ErrorBody),
        (status = 409, description = "`schema_in_use`", body = ErrorBody),
    )
)]
pub async fn delete_schema(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, AppError> {
    state.engine.delete_schema(&tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a version to a schema.
///
/// The new version becomes active at once for every station that does not pin a
/// `schema_version`.
#[utoipa::path(
    post,
    path = "/v1/schemas/{schema}/versions",
    tag = "schemas",
    params(("schema" = String, Path, description = "Schema name")),
    request_body = SchemaVersionRequest,
    responses(
        (status = 201, description = "Added", body = SchemaJson),
        (status = 404, description = "`schema_not_found`", body = ErrorBody),
        (status = 422, description = "Invalid definition", body = ErrorBody),
    )
)]
pub async fn add_schema_version(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<SchemaVersionRequest>,
) -> Result<Response, AppError> {
    let info = state
        .engine
        .add_schema_version(&tenant, &name, &request.definition.to_string())
        .await?;
    Ok((StatusCode::CREATED, Json(SchemaJson::from(&info))).into_response())
}

/// Roll a schema back (or forward) to one of its versions.
///
/// That version becomes active for every station that does not pin a
/// `schema_version`. No version is deleted.
#[utoipa::path(
    post,
    path = "/v1/schemas/{schema}/rollback",
    tag = "schemas",
    params(("schema" = String, Path, description = "Schema name")),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "Rolled back", body = SchemaJson),
        (status = 404, description = "`schema_not_found`: no such schema or version", body = ErrorBody),
    )
)]
pub async fn rollback_schema(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    ApiPath(name): ApiPath<String>,
    JsonBody(request): JsonBody<RollbackRequest>,
) -> Result<Json<SchemaJson>, AppError> {
    let info = state
        .engine
        .activate_schema_version(&tenant, &name, request.version)
        .await?;
    Ok(Json(SchemaJson::from(&info)))
}
