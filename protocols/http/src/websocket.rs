//! What both WebSocket endpoints (`/v1/ws`, `/mqtt`) share: the RFC 6455 close
//! code a protocol error is answered with, and the answer to an upgrade request
//! that cannot be upgraded.
//!
//! The WebSocket library reports a broken frame as an error and leaves the reply to
//! us; RFC 6455 §7.1.7 says to _fail the connection_: send a Close frame with the
//! reason, then close TCP. The codes:
//! - 1002 (protocol error): an unmasked client frame, RSV bits without an
//!   extension, a reserved opcode, a fragmented control frame, a bad close frame;
//! - 1007 (invalid payload data): a text message that is not UTF-8;
//! - 1009 (message too big): a frame or message beyond the endpoint's limit.
//!
//! A Close frame with a code the RFC forbids (1005, 1006, 999, …) is answered by
//! the library itself with 1002, once the reply is flushed: the endpoints keep
//! reading after a Close for that reason.

use axum::extract::ws::CloseFrame;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tungstenite::Error as WsError;

/// Protocol error.
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// Unsupported data (a text frame where only binary is understood).
pub const CLOSE_UNSUPPORTED_DATA: u16 = 1003;
/// Invalid payload data (not UTF-8 in a text message).
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Message too big.
pub const CLOSE_TOO_BIG: u16 = 1009;

/// The Close frame that answers a read error, or `None` when the connection is
/// already gone (closed, reset) and there is no one to tell.
pub fn close_for(error: &axum::Error) -> Option<CloseFrame> {
    let cause = std::error::Error::source(error)?.downcast_ref::<WsError>()?;
    let (code, reason) = match cause {
        WsError::Utf8(_) => (CLOSE_INVALID_PAYLOAD, "text message is not valid UTF-8"),
        WsError::Capacity(_) => (CLOSE_TOO_BIG, "message too big"),
        WsError::Protocol(_) => (CLOSE_PROTOCOL_ERROR, "protocol error"),
        _ => return None,
    };
    tracing::info!(error = %cause, code, "WebSocket protocol error; closing");
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

/// The answer to a request that cannot be upgraded: `426 Upgrade Required` with
/// `Sec-WebSocket-Version: 13` for a version we do not speak (RFC 6455 §4.4), the
/// library's own status otherwise; always with the JSON error body.
pub fn refuse_upgrade(rejection: WebSocketUpgradeRejection) -> Response {
    let (status, code, message) = match &rejection {
        WebSocketUpgradeRejection::InvalidWebSocketVersionHeader(_) => (
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "unsupported Sec-WebSocket-Version; this server speaks version 13".to_string(),
        ),
        other => {
            let status = other.status();
            let code = match status {
                StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
                StatusCode::UPGRADE_REQUIRED => "upgrade_required",
                _ => "bad_request",
            };
            (status, code, other.body_text())
        }
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UPGRADE_REQUIRED {
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
    }
    response
}
