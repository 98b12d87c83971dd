//! `$JS.API.DIRECT.GET`: a stored message answered as a message (its own
//! headers and payload, plus `Nats-Stream`, `Nats-Subject`, `Nats-Sequence` and
//! `Nats-Time-Stamp`), not as JSON, as nats-server answers a stream with
//! `allow_direct`.
//!
//! - `DIRECT.GET.<stream>` with a JSON body: `seq`, `last_by_subj`, or
//!   `next_by_subj` (from `seq`), as `STREAM.MSG.GET` takes them.
//! - `DIRECT.GET.<stream>.<subject>`: the last message on that subject (the body
//!   is not read).
//! - Not found: a status message `404 Message Not Found`; an empty body `408
//!   Empty Request`, a body that is not JSON `408 Malformed Request`, a request
//!   that asks for nothing or too much `408 Bad Request` (as nats-server).
//! - Batched gets (`batch`, `multi_last`) answer `408 Bad Request`: not
//!   supported yet.

use super::api::respond_message;
use super::api_types::headers;
use super::api_types::{MsgGetTarget, StreamMsgGetRequest};
use super::convert::timestamp;
use bytes::Bytes;
use junction_api::{Engine, EngineError, Headers, Message, MessageQuery, Subject, TenantId};

/// Answers one direct get (`api` is the subject after `$JS.API.`).
pub fn answer<E: Engine + ?Sized>(engine: &E, api: &str, body: &[u8], reply: Subject) {
    let (h, payload) = match get(engine, api, body) {
        Ok(found) => found,
        Err((status, description)) => {
            tracing::debug!(api, status, "direct get: {description}");
            (
                Headers::with_status(status, Some(description)),
                Bytes::new(),
            )
        }
    };
    let mut m = Message::new(reply, payload);
    m.headers = Some(h);
    respond_message(engine, m);
}

type Refusal = (u16, &'static str);

fn get<E: Engine + ?Sized>(
    engine: &E,
    api: &str,
    body: &[u8],
) -> Result<(Headers, Bytes), Refusal> {
    const NOT_FOUND: Refusal = (404, "Message Not Found");
    const BAD: Refusal = (408, "Bad Request");
    let rest = api.strip_prefix("DIRECT.GET.").ok_or(BAD)?;
    let (stream, subject) = match rest.split_once('.') {
        Some((s, subject)) => (s, Some(subject)),
        None => (rest, None),
    };
    if stream.is_empty() || subject.is_some_and(str::is_empty) {
        return Err(BAD);
    }
    let query = match subject {
        Some(subject) => MessageQuery::LastBySubject(subject.to_string()),
        None => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Err((408, "Empty Request"));
            }
            let value: serde_json::Value =
                serde_json::from_slice(body).map_err(|_| (408, "Malformed Request"))?;
            let batched = [
                "batch",
                "multi_last",
                "up_to_seq",
                "up_to_time",
                "start_time",
            ]
            .iter()
            .any(|k| value.get(k).is_some_and(|v| !v.is_null()));
            if batched {
                return Err(BAD);
            }
            let req: StreamMsgGetRequest =
                serde_json::from_value(value).map_err(|_| (408, "Malformed Request"))?;
            match req.target().map_err(|_| BAD)? {
                MsgGetTarget::Sequence(seq) => MessageQuery::Seq(seq),
                MsgGetTarget::LastBySubject(s) => MessageQuery::LastBySubject(s.to_string()),
                MsgGetTarget::NextBySubject { subject, start_seq } => MessageQuery::NextBySubject {
                    seq: start_seq,
                    subject: subject.to_string(),
                },
            }
        }
    };
    let tenant = TenantId::default_tenant();
    let stored = engine
        .get_message(&tenant, stream, query)
        .map_err(|e| match e {
            EngineError::BadRequest(_) => BAD,
            _ => NOT_FOUND,
        })?;
    let mut h = stored.headers.clone().unwrap_or_default();
    h.insert(headers::STREAM, stream);
    h.insert(headers::SUBJECT, stored.subject.to_str_lossy().into_owned());
    h.insert(headers::SEQUENCE, stored.seq.to_string());
    h.insert(headers::TIME_STAMP, timestamp(stored.time));
    Ok((h, stored.payload))
}
