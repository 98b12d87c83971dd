//! How messages, headers, payloads and times look in JSON, both ways.
//!
//! - A payload that is valid UTF-8 is sent as `payload` (text); any other payload as
//!   `payload_base64` (standard alphabet, padded). Exactly one of the two is present.
//! - Headers are an object of name to value; a name with several values maps to an
//!   array of them, in order.
//! - Times are RFC 3339 in UTC with nanoseconds; times sent to the API may carry any
//!   offset.

use super::error::AppError;
use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use junction_api::{Headers, StoredMessage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};
use utoipa::ToSchema;

/// One header's value, or its values when the name repeats.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum HeaderValues {
    /// A single value.
    One(String),
    /// Several values, in order.
    Many(Vec<String>),
}

/// Message headers as JSON.
pub type HeadersJson = BTreeMap<String, HeaderValues>;

/// A stored message as JSON.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageJson {
    /// Sequence number in the station.
    pub seq: u64,
    /// The subject it was published on.
    pub subject: String,
    /// When the station stored it (RFC 3339).
    #[schema(example = "2025-01-01T12:00:00.123456789Z")]
    pub time: String,
    /// Headers (empty object when none).
    #[schema(value_type = Object)]
    pub headers: HeadersJson,
    /// The payload, when it is valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload in base64, when it is not valid UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
}

/// Did the request ask for lineage (`Junction-Lineage: true`)? `false`/`0` or no
/// header: no; anything else is a 400 `invalid_header`.
pub fn wants_lineage(headers: &axum::http::HeaderMap) -> Result<bool, super::error::AppError> {
    let Some(v) = headers.get(junction_api::LINEAGE_OPT_IN) else {
        return Ok(false);
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Ok("true" | "1") => Ok(true),
        Ok("false" | "0") => Ok(false),
        _ => Err(super::error::AppError::bad_request(
            "invalid_header",
            format!("{}: expected true or false", junction_api::LINEAGE_OPT_IN),
        )),
    }
}

impl MessageJson {
    /// The JSON form of a stored message, with its lineage rendered as `Junction-*`
    /// headers when `lineage` (the caller opted in).
    pub fn from_stored_with(m: &StoredMessage, lineage: bool) -> Self {
        if lineage && !m.lineage.is_empty() {
            let mut m = m.clone();
            m.render_lineage();
            return Self::from_stored(&m);
        }
        Self::from_stored(m)
    }

    /// The JSON form of a stored message: exactly the headers its producer sent.
    pub fn from_stored(m: &StoredMessage) -> Self {
        let (payload, payload_base64) = encode_payload(&m.payload);
        MessageJson {
            seq: m.seq,
            subject: m.subject.to_str_lossy().into_owned(),
            time: rfc3339(m.time),
            headers: m.headers.as_ref().map(headers_json).unwrap_or_default(),
            payload,
            payload_base64,
        }
    }
}

/// `(text, base64)`: exactly one is set.
pub fn encode_payload(payload: &[u8]) -> (Option<String>, Option<String>) {
    match std::str::from_utf8(payload) {
        Ok(text) => (Some(text.to_string()), None),
        Err(_) => (None, Some(STANDARD.encode(payload))),
    }
}

/// The payload of a JSON message: `payload` (text) or `payload_base64`, not both.
pub fn decode_payload(
    payload: Option<String>,
    payload_base64: Option<String>,
) -> Result<Bytes, AppError> {
    match (payload, payload_base64) {
        (Some(_), Some(_)) => Err(AppError::bad_request(
            "invalid_payload",
            "give either payload or payload_base64, not both",
        )),
        (Some(text), None) => Ok(Bytes::from(text)),
        (None, Some(b64)) => STANDARD
            .decode(b64.as_bytes())
            .map(Bytes::from)
            .map_err(|e| AppError::bad_request("invalid_payload", format!("payload_base64: {e}"))),
        (None, None) => Ok(Bytes::new()),
    }
}

/// Headers as JSON.
pub fn headers_json(h: &Headers) -> HeadersJson {
    let mut out: HeadersJson = BTreeMap::new();
    for (name, value) in h.iter() {
        match out.get_mut(name) {
            None => {
                out.insert(name.to_string(), HeaderValues::One(value.to_string()));
            }
            Some(HeaderValues::One(first)) => {
                let first = std::mem::take(first);
                out.insert(
                    name.to_string(),
                    HeaderValues::Many(vec![first, value.to_string()]),
                );
            }
            Some(HeaderValues::Many(values)) => values.push(value.to_string()),
        }
    }
    out
}

/// JSON headers as message headers; names must be HTTP tokens and values free of
/// line breaks, as every protocol can carry them.
pub fn headers_from_json(json: &HeadersJson) -> Result<Headers, AppError> {
    let mut h = Headers::new();
    for (name, values) in json {
        check_header_name(name)?;
        let values: &[String] = match values {
            HeaderValues::One(v) => std::slice::from_ref(v),
            HeaderValues::Many(vs) => vs,
        };
        for v in values {
            if v.contains(['\r', '\n']) {
                return Err(AppError::bad_request(
                    "invalid_header",
                    format!("header {name}: values may not contain line breaks"),
                ));
            }
            h.append(name.clone(), v.clone());
        }
    }
    Ok(h)
}

fn check_header_name(name: &str) -> Result<(), AppError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(AppError::bad_request(
            "invalid_header",
            format!("'{name}' is not a valid header name"),
        ));
    }
    Ok(())
}

/// Request headers that become message headers.
pub const HEADER_PREFIX: &str = "x-junction-header-";

/// The request header whose value becomes the message's `Nats-Msg-Id`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Message headers from HTTP request headers: `X-Junction-Header-<Name>: v` becomes
/// `<Name>: v` (the name in canonical form, `trace-id` → `Trace-Id`) and
/// `Idempotency-Key: k` becomes `Nats-Msg-Id: k`.
pub fn headers_from_request(request: &HeaderMap) -> Result<Option<Headers>, AppError> {
    let mut h = Headers::new();
    for (name, value) in request {
        let lower = name.as_str();
        let target = if let Some(rest) = lower.strip_prefix(HEADER_PREFIX) {
            if rest.is_empty() {
                return Err(AppError::bad_request(
                    "invalid_header",
                    format!("{name}: the message header name is empty"),
                ));
            }
            canonical_name(rest)
        } else if lower == IDEMPOTENCY_KEY {
            "Nats-Msg-Id".to_string()
        } else {
            continue;
        };
        let value = value.to_str().map_err(|_| {
            AppError::bad_request(
                "invalid_header",
                format!("{name}: the value must be visible ASCII"),
            )
        })?;
        h.append(target, value);
    }
    Ok((!h.is_empty()).then_some(h))
}

/// `content-type` → `Content-Type`, as Go's `CanonicalMIMEHeaderKey` writes it.
/// The W3C trace context headers keep the spelling their specification gives
/// (`traceparent`, `tracestate`), which OpenTelemetry's NATS and MQTT propagators
/// look up.
pub fn canonical_name(lower: &str) -> String {
    if ["traceparent", "tracestate"]
        .iter()
        .any(|t| t.eq_ignore_ascii_case(lower))
    {
        return lower.to_ascii_lowercase();
    }
    let mut out = String::with_capacity(lower.len());
    let mut upper = true;
    for c in lower.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

/// RFC 3339 in UTC with nanoseconds.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_nanos(t).to_string()
}

/// Parses RFC 3339 with any offset (`Z`, `+02:00`, `-0530`) and optional fractional
/// seconds.
pub fn parse_rfc3339(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    let bad = || format!("'{text}' is not an RFC 3339 time");
    let (local, offset_secs): (&str, i64) =
        if let Some(rest) = text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
            (rest, 0)
        } else {
            // The offset is the last '+' or '-' after the 'T'.
            let t_at = text.find(['T', 't', ' ']).ok_or_else(bad)?;
            let sign_at = text[t_at..]
                .rfind(['+', '-'])
                .map(|i| i + t_at)
                .ok_or_else(bad)?;
            let (local, offset) = text.split_at(sign_at);
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            let hours: i64 = digits[..2].parse().map_err(|_| bad())?;
            let minutes: i64 = digits[2..].parse().map_err(|_| bad())?;
            if hours > 23 || minutes > 59 {
                return Err(bad());
            }
            (local, sign * (hours * 3600 + minutes * 60))
        };
    if local.len() < 19 {
        return Err(bad());
    }
    let utc_as_if = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let shift = Duration::from_secs(offset_secs.unsigned_abs());
    // Local time minus the offset is UTC.
    if offset_secs >= 0 {
        utc_as_if.checked_sub(shift).ok_or_else(bad)
    } else {
        utc_as_if.checked_add(shift).ok_or_else(bad)
    }
}

/// Milliseconds of a duration, saturating.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn rfc3339_offsets() {
        let z = parse_rfc3339("2024-05-06T07:08:09Z");
        let plus = parse_rfc3339("2024-05-06T09:08:09+02:00");
        let minus = parse_rfc3339("2024-05-06T01:38:09-05:30");
        let compact = parse_rfc3339("2024-05-06T09:08:09+0200");
        assert!(z.is_ok());
        assert_eq!(z, plus);
        assert_eq!(z, minus);
        assert_eq!(z, compact);
        let frac = parse_rfc3339("2024-05-06T07:08:09.5Z");
        assert_eq!(
            frac.map(|t| t.duration_since(UNIX_EPOCH).map(|d| d.subsec_millis()).ok()),
            Ok(Some(500))
        );
        assert!(parse_rfc3339("yesterday").is_err());
        assert!(parse_rfc3339("2024-05-06").is_err());
        assert!(parse_rfc3339("2024-05-06T07:08:09+25:00").is_err());
    }

    #[test]
    fn round_trips_time() {
        let t = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        assert_eq!(parse_rfc3339(&rfc3339(t)), Ok(t));
    }

    #[test]
    fn payload_encoding() {
        assert_eq!(encode_payload(b"hi"), (Some("hi".into()), None));
        assert_eq!(encode_payload(&[0xff, 0]), (None, Some("/wA=".into())));
        assert_eq!(
            decode_payload(None, Some("/wA=".into())).ok(),
            Some(Bytes::from_static(&[0xff, 0]))
        );
        assert!(decode_payload(Some("a".into()), Some("YQ==".into())).is_err());
        assert!(decode_payload(None, Some("!!".into())).is_err());
    }

    #[test]
    fn canonical_header_names() {
        assert_eq!(canonical_name("trace-id"), "Trace-Id");
        assert_eq!(canonical_name("traceparent"), "traceparent");
        assert_eq!(
            canonical_name("nats-expected-last-sequence"),
            "Nats-Expected-Last-Sequence"
        );
    }

    #[test]
    fn repeated_headers_become_arrays() {
        let mut h = Headers::new();
        h.append("A", "1");
        h.append("B", "2");
        h.append("A", "3");
        let json = headers_json(&h);
        assert_eq!(
            json.get("A"),
            Some(&HeaderValues::Many(vec!["1".into(), "3".into()]))
        );
        let back = headers_from_json(&json).ok();
        assert_eq!(back.map(|b| b.get_all("A").count()), Some(2));
    }
}
