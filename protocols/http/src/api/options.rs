//! What an HTTP producer asks of the station that stores its message, as the
//! engine's typed [`PublishOptions`].
//!
//! - `Idempotency-Key: k` (a batch item's or WebSocket frame's `idempotency_key`)
//!   is the de-duplication id. It is also stored as the message header
//!   `Nats-Msg-Id: k` (documented; NATS consumers see it, and a restart reads the
//!   duplicate window back from it).
//! - Preconditions are request headers, checked against the station before the
//!   message is stored; a failed one answers `412 Precondition Failed`:
//!   `Junction-Expected-Station`, `Junction-Expected-Last-Sequence`,
//!   `Junction-Expected-Last-Subject-Sequence`,
//!   `Junction-Expected-Last-Idempotency-Key`.
//! - The older form, JetStream's headers set as message headers
//!   (`X-Junction-Header-Nats-Expected-Last-Sequence: 7`, or `Nats-*` names in a
//!   batch item's `headers`), keeps working and keeps its `409` answer. A request
//!   header of the new form wins over the old form's value.
//!
//! Malformed values are refused here (400 `invalid_header`), before anything is
//! published.

use super::error::AppError;
use axum::http::{HeaderMap, StatusCode};
use junction_api::{EngineError, ErrorKind, Headers, PublishOptions};

/// `Junction-Expected-Station`: the station that must capture the message.
pub const EXPECTED_STATION: &str = "junction-expected-station";
/// `Junction-Expected-Last-Sequence`: the station's last sequence must be this.
pub const EXPECTED_LAST_SEQUENCE: &str = "junction-expected-last-sequence";
/// `Junction-Expected-Last-Subject-Sequence`: the last sequence stored on the
/// message's subject must be this (0: none).
pub const EXPECTED_LAST_SUBJECT_SEQUENCE: &str = "junction-expected-last-subject-sequence";
/// `Junction-Expected-Last-Idempotency-Key`: the last idempotency key (NATS:
/// `Nats-Msg-Id`) the station stored must be this.
pub const EXPECTED_LAST_IDEMPOTENCY_KEY: &str = "junction-expected-last-idempotency-key";

const PRECONDITIONS: [&str; 4] = [
    EXPECTED_STATION,
    EXPECTED_LAST_SEQUENCE,
    EXPECTED_LAST_SUBJECT_SEQUENCE,
    EXPECTED_LAST_IDEMPOTENCY_KEY,
];

/// A publish's options and how a failed precondition is answered.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// What the station is asked.
    pub options: PublishOptions,
    /// The request carried a `Junction-Expected-*` header: a failed precondition
    /// is `412`, not the older form's `409`.
    pub conditional: bool,
}

impl HttpOptions {
    /// The options of a message built from a request: the older form from its
    /// message `headers` (where `Idempotency-Key` already is, as `Nats-Msg-Id`),
    /// then the `Junction-Expected-*` request headers of `request`.
    pub fn of(request: Option<&HeaderMap>, headers: Option<&Headers>) -> Result<Self, AppError> {
        let mut options = from_message_headers(headers)?;
        let mut conditional = false;
        if let Some(request) = request {
            let value = |name: &str| -> Result<Option<String>, AppError> {
                let Some(v) = request.get(name) else {
                    return Ok(None);
                };
                let v = v.to_str().map_err(|_| {
                    AppError::bad_request(
                        "invalid_header",
                        format!("{}: the value must be visible ASCII", display(name)),
                    )
                })?;
                Ok(Some(v.trim().to_string()))
            };
            if let Some(v) = value(EXPECTED_STATION)? {
                options.expected_station = Some(non_empty(EXPECTED_STATION, v)?);
            }
            if let Some(v) = value(EXPECTED_LAST_SEQUENCE)? {
                options.expected_last_seq = Some(sequence(EXPECTED_LAST_SEQUENCE, &v)?);
            }
            if let Some(v) = value(EXPECTED_LAST_SUBJECT_SEQUENCE)? {
                options.expected_last_subject_seq =
                    Some(sequence(EXPECTED_LAST_SUBJECT_SEQUENCE, &v)?);
            }
            if let Some(v) = value(EXPECTED_LAST_IDEMPOTENCY_KEY)? {
                options.expected_last_msg_id = Some(non_empty(EXPECTED_LAST_IDEMPOTENCY_KEY, v)?);
            }
            conditional = PRECONDITIONS.iter().any(|n| request.contains_key(*n));
        }
        Ok(HttpOptions {
            options,
            conditional,
        })
    }

    /// The answer to `e`, a refusal of this publish: a failed precondition of a
    /// `Junction-Expected-*` header is `412` (same code and message as the older
    /// form's `409`).
    pub fn error(&self, e: EngineError) -> AppError {
        let precondition = e.kind() == ErrorKind::PreconditionFailed;
        let error = AppError::from(e);
        match error {
            AppError::Client { code, message, .. } if precondition && self.conditional => {
                AppError::new(StatusCode::PRECONDITION_FAILED, code, message)
            }
            other => other,
        }
    }
}

/// Refuses, when a request carries them, the `Junction-Expected-*` headers: a
/// batch has no one "last sequence" to expect (each item may carry the older form
/// in its `headers`).
pub fn refuse_preconditions(request: &HeaderMap, what: &str) -> Result<(), AppError> {
    match PRECONDITIONS.iter().find(|n| request.contains_key(**n)) {
        Some(name) => Err(AppError::bad_request(
            "invalid_header",
            format!("{}: not supported on {what}", display(name)),
        )),
        None => Ok(()),
    }
}

/// The older form: JetStream's headers among the message headers, read strictly
/// (a sequence that is not a number is a 400, not a mismatch).
fn from_message_headers(headers: Option<&Headers>) -> Result<PublishOptions, AppError> {
    let Some(h) = headers else {
        return Ok(PublishOptions::NONE);
    };
    for name in [
        "Nats-Expected-Last-Sequence",
        "Nats-Expected-Last-Subject-Sequence",
    ] {
        if let Some(v) = h.get(name).map(str::trim).filter(|v| !v.is_empty()) {
            sequence(name, v)?;
        }
    }
    Ok(PublishOptions::from_headers(Some(h)))
}

fn sequence(name: &str, v: &str) -> Result<u64, AppError> {
    if !v.is_empty()
        && v.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = v.parse()
    {
        return Ok(n);
    }
    Err(AppError::bad_request(
        "invalid_header",
        format!(
            "{}: '{v}' is not a sequence number (a whole number, 0 or more)",
            display(name)
        ),
    ))
}

fn non_empty(name: &str, v: String) -> Result<String, AppError> {
    if v.is_empty() {
        return Err(AppError::bad_request(
            "invalid_header",
            format!("{}: the value is empty", display(name)),
        ));
    }
    Ok(v)
}

/// A header name as the documentation writes it.
fn display(name: &str) -> String {
    super::wire::canonical_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.insert(*n, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn new_headers_win_over_the_older_form() {
        let mut h = Headers::new();
        h.append("Nats-Msg-Id", "k1");
        h.append("Nats-Expected-Last-Sequence", "3");
        let o = HttpOptions::of(
            Some(&request(&[
                ("junction-expected-last-sequence", "5"),
                ("junction-expected-last-idempotency-key", "k0"),
            ])),
            Some(&h),
        )
        .ok()
        .unwrap_or_default();
        assert!(o.conditional);
        assert_eq!(o.options.msg_id.as_deref(), Some("k1"));
        assert_eq!(o.options.expected_last_seq, Some(5));
        assert_eq!(o.options.expected_last_msg_id.as_deref(), Some("k0"));
    }

    #[test]
    fn malformed_values_are_400() {
        for (name, value) in [
            ("junction-expected-last-sequence", "seven"),
            ("junction-expected-last-subject-sequence", "-1"),
            ("junction-expected-station", ""),
        ] {
            let e = HttpOptions::of(Some(&request(&[(name, value)])), None)
                .err()
                .map(|e| (e.status(), e.detail().code));
            assert_eq!(
                e,
                Some((StatusCode::BAD_REQUEST, "invalid_header".into())),
                "{name}"
            );
        }
        let mut h = Headers::new();
        h.append("Nats-Expected-Last-Sequence", "x");
        assert!(HttpOptions::of(None, Some(&h)).is_err());
    }

    #[test]
    fn only_the_new_form_answers_412() {
        let old = HttpOptions::default();
        let new = HttpOptions {
            conditional: true,
            ..HttpOptions::default()
        };
        let e = || EngineError::WrongLastSequence(4);
        assert_eq!(old.error(e()).status(), StatusCode::CONFLICT);
        assert_eq!(new.error(e()).status(), StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            new.error(EngineError::MaxMessages).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
    }
}
