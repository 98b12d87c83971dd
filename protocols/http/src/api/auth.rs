//! Authentication for `/v1`: `Authorization: Bearer <token>` or `Basic`, checked
//! by the engine on every request when the broker requires credentials.

use super::ApiState;
use super::error::AppError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use junction_api::{Credentials, Engine, Identity, Permissions, TenantId};
use std::sync::Arc;

/// Which kinds of credentials the broker is configured with. A refused request is
/// told (`auth_methods` in the 401 body) so that a sign-in form offers the right
/// one; it names only the kinds, nothing secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthMethods {
    /// A token (`--auth`): `Authorization: Bearer <token>`.
    pub bearer: bool,
    /// Users and passwords (`--user`/`--pass`, `[[auth.users]]`): `Authorization: Basic`.
    pub basic: bool,
}

impl Default for AuthMethods {
    /// Both, when the process does not say.
    fn default() -> Self {
        AuthMethods {
            bearer: true,
            basic: true,
        }
    }
}

impl AuthMethods {
    /// `"bearer"` and `"basic"`, in that order, for those configured.
    pub fn names(self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.bearer {
            names.push("bearer");
        }
        if self.basic {
            names.push("basic");
        }
        names
    }
}

/// The tenant a request acts for, set by [`require`].
#[derive(Debug, Clone)]
pub struct Tenant(pub TenantId);

/// Who the request authenticated as, set by [`require`] (anonymous when the
/// broker requires no credentials), and whether that is an operator.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Identity, pub Operator);

/// Is the caller one of the broker's operators ([`Engine::is_operator`])?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Operator(pub bool);

impl Default for Authenticated {
    /// Anonymous, on a broker that requires no credentials: everyone is an
    /// operator there.
    fn default() -> Self {
        Authenticated(Identity::anonymous(), Operator(true))
    }
}

impl Authenticated {
    /// Who `request` authenticated as (anonymous outside `/v1`).
    pub fn of<B>(request: &axum::http::Request<B>) -> Authenticated {
        request
            .extensions()
            .get::<Authenticated>()
            .cloned()
            .unwrap_or_default()
    }

    /// Authenticated as `identity`, an operator if `engine` says so.
    pub fn new(engine: &dyn Engine, identity: Identity) -> Self {
        let operator = Operator(engine.is_operator(&identity));
        Authenticated(identity, operator)
    }

    /// Is the caller an operator: the system tenant's users (`$SYS`), or the
    /// default tenant's (`[auth]`) when there is no system tenant?
    pub fn is_operator(&self) -> bool {
        self.1.0
    }

    /// 403 `forbidden` unless the caller is an operator; `what` names what is
    /// refused (`"tenants"`, `"bans"`) in the message and the log.
    pub fn operators_only(&self, what: &str) -> Result<(), AppError> {
        if self.is_operator() {
            return Ok(());
        }
        tracing::info!(user = ?self.0.user, "{what} administration refused to a tenant's user");
        Err(AppError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{what} are administered by the operators (the system tenant's users)"),
        ))
    }

    /// Does the caller see every tenant's connections in monitoring? The
    /// operators do; a user of another tenant sees only its tenant's.
    pub fn sees_every_tenant(&self) -> bool {
        self.is_operator()
    }

    /// May the caller publish to `subject`? 403 `forbidden` when not.
    pub fn may_publish(&self, subject: &str) -> Result<(), AppError> {
        check_publish(self.0.permissions.as_deref(), subject)
    }

    /// May the caller subscribe to (read) `filter`, in `queue` if given?
    pub fn may_subscribe(&self, filter: &str, queue: Option<&str>) -> Result<(), AppError> {
        check_subscribe(self.0.permissions.as_deref(), filter, queue)
    }
}

/// 403 `forbidden` with nats-server's text when `permissions` refuse publishing
/// to `subject`.
pub fn check_publish(permissions: Option<&Permissions>, subject: &str) -> Result<(), AppError> {
    match permissions {
        Some(p) if !p.may_publish(subject.as_bytes()) => {
            tracing::info!(subject, "HTTP publish refused by permissions");
            Err(AppError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Permissions Violation for Publish to \"{subject}\""),
            ))
        }
        _ => Ok(()),
    }
}

/// 403 `forbidden` with nats-server's text when `permissions` refuse a
/// subscription to `filter` (in `queue`).
pub fn check_subscribe(
    permissions: Option<&Permissions>,
    filter: &str,
    queue: Option<&str>,
) -> Result<(), AppError> {
    match permissions {
        Some(p) if !p.may_subscribe(filter.as_bytes(), queue) => {
            tracing::info!(filter, "HTTP subscription refused by permissions");
            let text = match queue {
                Some(q) => format!(
                    "Permissions Violation for Subscription to \"{filter}\" using queue \"{q}\""
                ),
                None => format!("Permissions Violation for Subscription to \"{filter}\""),
            };
            Err(AppError::new(StatusCode::FORBIDDEN, "forbidden", text))
        }
        _ => Ok(()),
    }
}

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
    let identity = if state.engine.auth_required() {
        match check(
            state.engine.as_ref(),
            request.headers(),
            peer(&request),
            request.extensions().get(),
            state.settings.auth_methods,
        ) {
            Ok(t) => t,
            Err(refused) => return *refused,
        }
    } else {
        Identity::anonymous()
    };
    request
        .extensions_mut()
        .insert(Tenant(identity.tenant.clone()));
    let auth = Authenticated::new(state.engine.as_ref(), identity);
    request.extensions_mut().insert(auth);
    next.run(request).await
}

/// Middleware for the monitoring routes outside `/v1` (`/varz`, `/connz`,
/// `/metrics`) when they require credentials: the same credentials as the API,
/// and the same 401 without them.
pub async fn require_for_monitoring(
    State(engine): State<Arc<dyn Engine>>,
    mut request: Request,
    next: Next,
) -> Response {
    if engine.auth_required() {
        match check(
            engine.as_ref(),
            request.headers(),
            peer(&request),
            request.extensions().get(),
            AuthMethods::default(),
        ) {
            Ok(identity) => {
                let auth = Authenticated::new(engine.as_ref(), identity);
                // Server-wide figures are the operators'; a tenant's user sees
                // its own connections in /connz and its own figures in /metrics.
                if !auth.sees_every_tenant()
                    && !matches!(request.uri().path(), "/connz" | "/metrics")
                {
                    tracing::info!(user = ?auth.0.user, path = %request.uri().path(), "monitoring refused to a tenant's user");
                    return AppError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "server-wide monitoring is for the operators (the system tenant's users); /connz and /metrics show your tenant's",
                    )
                    .into_response();
                }
                request.extensions_mut().insert(auth);
            }
            Err(refused) => return *refused,
        }
    }
    next.run(request).await
}

/// The address a request came from.
fn peer(request: &Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
}

/// Authenticates a request's credentials: the tenant, or the 401 to answer.
fn check(
    engine: &dyn Engine,
    headers: &HeaderMap,
    remote: Option<std::net::IpAddr>,
    certificate: Option<&crate::listener::PeerCertificate>,
    methods: AuthMethods,
) -> Result<Identity, Box<Response>> {
    let refused = |e| Box::new(refuse(e, is_scripted(headers), methods));
    let creds = match credentials(headers) {
        // verify_and_map: a request that names no user is its certificate's,
        // as an MQTT client's CONNECT without a user name is.
        Ok(Credentials::None) if certificate.is_some() && engine.maps_certificates() => {
            Credentials::Certificate(certificate.map(|c| c.0.to_vec()).unwrap_or_default())
        }
        Ok(Credentials::None) => {
            return Err(refused(AppError::Unauthorized(
                "credentials required".into(),
            )));
        }
        Ok(c) => c,
        Err(e) => return Err(refused(e)),
    };
    engine
        .authenticate_from(
            &creds,
            remote.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        )
        .map_err(|_| refused(AppError::Unauthorized("invalid credentials".into())))
}

/// Whether the request says it comes from a script (`X-Requested-With:
/// XMLHttpRequest`, as the web console sends): a browser shows its own login
/// dialog for a `Basic` challenge, so such requests get only the `Bearer` one and
/// the page shows its own login instead.
fn is_scripted(headers: &HeaderMap) -> bool {
    headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("xmlhttprequest"))
}

/// The 401: the error's JSON plus `auth_methods`, e.g.
/// `{"error":{"code":"unauthorized",…},"auth_methods":["basic"]}`.
fn refuse(error: AppError, scripted: bool, methods: AuthMethods) -> Response {
    let detail = error.detail();
    let mut response = error.into_response();
    let body = serde_json::json!({ "error": detail, "auth_methods": methods.names() });
    if let Ok(bytes) = serde_json::to_vec(&body) {
        *response.body_mut() = axum::body::Body::from(bytes);
    }
    if scripted {
        let kept: Vec<_> = response
            .headers()
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .filter(|v| !v.as_bytes().to_ascii_lowercase().starts_with(b"basic"))
            .cloned()
            .collect();
        response.headers_mut().remove(header::WWW_AUTHENTICATE);
        for v in kept {
            response.headers_mut().append(header::WWW_AUTHENTICATE, v);
        }
    }
    response
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

    #[test]
    fn scripted_requests_get_no_basic_challenge() {
        let challenges = |scripted| {
            let r = refuse(
                AppError::Unauthorized("x".into()),
                scripted,
                AuthMethods::default(),
            );
            r.headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .map(|v| {
                    v.to_str()
                        .unwrap_or("")
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(challenges(false), ["Bearer", "Basic"]);
        assert_eq!(challenges(true), ["Bearer"]);
        let mut h = HeaderMap::new();
        h.insert(
            "x-requested-with",
            HeaderValue::from_static("XMLHttpRequest"),
        );
        assert!(is_scripted(&h));
        assert!(!is_scripted(&HeaderMap::new()));
    }
}
