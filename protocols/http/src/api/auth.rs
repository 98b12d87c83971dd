//! Authentication for `/v1`: `Authorization: Bearer <token>` or `Basic`, checked
//! by the engine on every request when the broker requires credentials.

use super::ApiState;
use super::error::AppError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use junction_api::{Credentials, TenantId};
use std::sync::Arc;

/// The tenant a request acts for, set by [`require`].
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

/// Reads the credentials of a request.
pub fn credentials(headers: &HeaderMap) -> Result<Credentials, AppError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(Credentials::None);
    };
    let malformed = || AppError::Unauthorized("malformed Authorization header".into());
    let value = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(malformed());
        }
        Ok(Credentials::Token(rest.to_string()))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).map_err(|_| malformed())?;
        let text = String::from_utf8(decoded).map_err(|_| malformed())?;
        let (user, password) = text.split_once(':').ok_or_else(malformed)?;
        Ok(Credentials::UserPassword {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else {
        Err(AppError::Unauthorized(format!(
            "unsupported Authorization scheme '{scheme}'; use Bearer or Basic"
        )))
    }
}

/// Middleware: authenticates the request when the broker requires it and records
/// the tenant; answers 401 with `WWW-Authenticate` otherwise.
pub async fn require(
    State(state): State<Arc<ApiState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let tenant = if state.engine.auth_required() {
        let creds = match credentials(request.headers()) {
            Ok(Credentials::None) => {
                return AppError::Unauthorized("credentials required".into()).into_response();
            }
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        match state.engine.authenticate(&creds) {
            Ok(t) => t,
            Err(_) => {
                return AppError::Unauthorized("invalid credentials".into()).into_response();
            }
        }
    } else {
        TenantId::default_tenant()
    };
    request.extensions_mut().insert(Tenant(tenant));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(header::AUTHORIZATION, v);
        }
        h
    }

    #[test]
    fn schemes() {
        assert!(matches!(
            credentials(&HeaderMap::new()),
            Ok(Credentials::None)
        ));
        assert!(matches!(
            credentials(&with("Bearer abc")),
            Ok(Credentials::Token(t)) if t == "abc"
        ));
        // "alice:pa:ss" in base64: the password may contain ':'.
        assert!(matches!(
            credentials(&with("basic YWxpY2U6cGE6c3M=")),
            Ok(Credentials::UserPassword { user, password }) if user == "alice" && password == "pa:ss"
        ));
        assert!(credentials(&with("Basic !!!")).is_err());
        assert!(credentials(&with("Bearer")).is_err());
        assert!(credentials(&with("Digest x")).is_err());
    }
}
