//! Serving the embedded web console ([`junction_gui`]) on the main HTTP listener.
//!
//! The console is a single-page app: every `GET` or `HEAD` path that is not an
//! API route and not an embedded file answers `index.html`, so that its links
//! (`/stations/orders`, `/connections`, …) survive a reload. Paths under the
//! API's prefixes (`/v1`, `/varz`, `/connz`, `/healthz`, `/readyz`, `/metrics`,
//! `/mqtt`) never do: an unknown one keeps answering the API's JSON 404.
//!
//! This is the API router's fallback, so any route registered anywhere on the
//! listener wins over it; the fallback has no auth (the app shows its own login
//! and sends credentials with each API request).

use crate::api::route_not_found;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, header};
use axum::response::{IntoResponse, Response};

/// Prefixes that belong to the API and monitoring, never to the app.
const RESERVED: &[&str] = &[
    "v1", "varz", "connz", "healthz", "readyz", "metrics", "mqtt",
];

/// Answers a request no route matched: an embedded file, the app's entry page,
/// or the API's JSON 404.
pub async fn fallback(req: Request<Body>) -> Response {
    let path = req.uri().path();
    if !matches!(*req.method(), Method::GET | Method::HEAD) || is_reserved(path) {
        return route_not_found(req.uri().clone()).await.into_response();
    }
    let relative = path.trim_start_matches('/');
    if let Some(asset) = junction_gui::asset(relative) {
        return serve(asset);
    }
    // A missing file (it has an extension, or lies under `assets/`) is a 404, not
    // the app: a stale script tag must not receive HTML.
    let last = relative.rsplit('/').next().unwrap_or("");
    if relative.starts_with("assets/") || last.contains('.') {
        return route_not_found(req.uri().clone()).await.into_response();
    }
    serve(junction_gui::index())
}

fn is_reserved(path: &str) -> bool {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    RESERVED.contains(&first)
}

fn serve(asset: &'static junction_gui::Asset) -> Response {
    let cache = if asset.is_immutable() {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(asset.content_type),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    async fn get(method: Method, path: &str) -> Response {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        fallback(req).await
    }

    fn content_type(r: &Response) -> &str {
        r.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn app_routes_get_the_entry_page() {
        for path in [
            "/",
            "/stations",
            "/stations/orders",
            "/stations/a/dls",
            "/lineage",
        ] {
            let r = get(Method::GET, path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(content_type(&r).starts_with("text/html"), "{path}");
        }
    }

    #[tokio::test]
    async fn api_prefixes_keep_the_json_404() {
        for path in ["/v1/nope", "/v1", "/metrics/x", "/mqtt", "/varz/x"] {
            let r = get(Method::GET, path).await;
            assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(content_type(&r), "application/json", "{path}");
        }
    }

    #[tokio::test]
    async fn missing_files_and_other_methods_are_404() {
        assert_eq!(
            get(Method::GET, "/assets/gone-1234.js").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(Method::GET, "/favicon-missing.png").await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(Method::POST, "/stations").await.status(),
            StatusCode::NOT_FOUND
        );
    }

    #[tokio::test]
    async fn embedded_files_are_served_with_their_type() {
        for asset in junction_gui::assets() {
            let r = get(Method::GET, &format!("/{}", asset.path)).await;
            assert_eq!(r.status(), StatusCode::OK, "{}", asset.path);
            assert_eq!(content_type(&r), asset.content_type);
        }
    }
}
