//! The OpenAPI 3 document's frame: title, tags and security schemes. The paths and
//! schemas come from each handler's `#[utoipa::path]`.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document's frame.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Junction HTTP API",
        description = "Produce, consume and administer Junction stations and consumer groups over HTTP. \
Errors are `{\"error\":{\"code\":\"…\",\"message\":\"…\"}}`. When the broker requires credentials, \
every /v1 route needs `Authorization: Bearer <token>` or Basic.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&Security),
    security(("bearer" = []), ("basic" = [])),
    components(schemas(super::error::ErrorBody, super::error::ErrorDetail)),
    tags(
        (name = "produce", description = "Publish to subjects and stations"),
        (name = "consume", description = "Browse stations; fetch and acknowledge through consumer groups"),
        (name = "stations", description = "Station admin"),
        (name = "groups", description = "Consumer group admin"),
        (name = "schemas", description = "Schema registry: JSON Schemas that stations validate every publish against"),
        (name = "dead-letter", description = "Dead-letter stations: browse, purge and re-send failed messages"),
        (name = "routing", description = "Content-based routing rules evaluated on every publish"),
        (name = "lineage", description = "Where messages came from and went: paths by message or trace id, and the station graph"),
        (name = "key-value", description = "Key-value buckets, the same NATS clients use (`KV_<bucket>` stations)"),
        (name = "server", description = "Connections, server figures, readiness, this document"),
        (name = "notifications", description = "Webhooks that carry system events out, with their health and a test (operators only); the alarms raised now"),
        (name = "bans", description = "Addresses and MQTT client ids banned after repeated failed logins, or by hand (operators only)"),
    )
)]
pub struct ApiDoc;

/// Declares the two ways to authenticate.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}
