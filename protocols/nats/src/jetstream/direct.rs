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
//! - Batched gets (ADR-31, nats-server 2.11): `batch` (with `seq`,
//!   `next_by_subj`, `start_time`, `max_bytes`) answers up to `batch` messages
//!   from the start on, and `multi_last` (with `up_to_seq` or `up_to_time`,
//!   `batch`) the newest message of every matching subject; each message
//!   carries `Nats-Num-Pending` (matching messages left after it) and
//!   `Nats-Last-Sequence` (the previous one answered), `multi_last` ones also
//!   `Nats-UpTo-Sequence`, and the answer ends with `204 EOB` carrying the same.
//!   Nothing to answer is `404 Message Not Found`; more than
//!   [`MAX_MULTI_LAST`] subjects `413 Too Many Subjects`.

use super::api::respond_message;
use super::api_types::headers;
use super::api_types::{MsgGetTarget, StreamMsgGetRequest};
use super::convert::timestamp;
use bytes::Bytes;
use junction_api::{Engine, EngineError, Headers, Message, MessageQuery, Subject, TenantId};

/// Most messages one batched get answers.
const MAX_BATCH: usize = 1000;

/// Most subjects one `multi_last` get may name.
const MAX_MULTI_LAST: usize = 1024;

/// A batched direct get's body (ADR-31).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct BatchRequest {
    batch: usize,
    seq: u64,
    next_by_subj: Option<String>,
    max_bytes: usize,
    start_time: Option<String>,
    multi_last: Option<Vec<String>>,
    up_to_seq: u64,
    up_to_time: Option<String>,
}

/// Answers one direct get (`api` is the subject after `$JS.API.`).
pub fn answer<E: Engine + ?Sized>(
    engine: &E,
    tenant: &TenantId,
    api: &str,
    body: &[u8],
    reply: Subject,
) {
    // nats-server subscribes a stream's direct-get subject only when it has
    // `allow_direct`: for any other stream (or none) nobody answers, and a
    // client that asked for it gets the no-responders status.
    let stream = api
        .strip_prefix("DIRECT.GET.")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_default();
    if !engine.allows_direct_get(tenant, stream) {
        tracing::debug!(stream, "direct get of a stream without allow_direct");
        let mut m = Message::new(reply, Bytes::new());
        m.headers = Some(Headers::with_status(503, None));
        respond_message(engine, tenant, m);
        return;
    }
    if let Some(stream) = api.strip_prefix("DIRECT.GET.").filter(|s| !s.contains('.'))
        && let Ok(req) = serde_json::from_slice::<BatchRequest>(body)
        && (req.batch > 0 || req.multi_last.is_some())
    {
        answer_batch(engine, tenant, stream, req, reply);
        return;
    }
    let (h, payload) = match get(engine, tenant, api, body) {
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
    respond_message(engine, tenant, m);
}

type Refusal = (u16, &'static str);

fn status_message(reply: &Subject, status: u16, text: &str, extra: &[(&str, String)]) -> Message {
    let mut h = Headers::with_status(status, Some(text));
    for (k, v) in extra {
        h.insert(*k, v.clone());
    }
    let mut m = Message::new(reply.clone(), Bytes::new());
    m.headers = Some(h);
    m
}

/// The time in an RFC 3339 field, as a sequence bound through the station's
/// index (the first sequence stored at or after it).
fn first_at_or_after<E: Engine + ?Sized>(
    engine: &E,
    tenant: &TenantId,
    stream: &str,
    text: &str,
) -> Result<u64, Refusal> {
    let ns = super::api_types::parse_rfc3339_nanos(text).ok_or((408, "Bad Request"))?;
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_nanos(u64::try_from(ns.max(0)).unwrap_or(0));
    Ok(
        match engine.get_message(tenant, stream, MessageQuery::FirstAtOrAfter(t)) {
            Ok(m) => m.seq,
            Err(_) => u64::MAX,
        },
    )
}

/// Answers a batched direct get (see the module's notes).
fn answer_batch<E: Engine + ?Sized>(
    engine: &E,
    tenant: &TenantId,
    stream: &str,
    req: BatchRequest,
    reply: Subject,
) {
    let refuse = |(status, text): Refusal| {
        respond_message(engine, tenant, status_message(&reply, status, text, &[]));
    };
    let limit = if req.batch == 0 {
        MAX_BATCH
    } else {
        req.batch.min(MAX_BATCH)
    };
    // The sequences to answer, and what stays pending after each.
    let (seqs, pending_after, up_to): (Vec<u64>, Vec<u64>, Option<u64>) =
        if let Some(subjects) = &req.multi_last {
            if subjects.is_empty() {
                return refuse((408, "Bad Request"));
            }
            if subjects.len() > MAX_MULTI_LAST {
                return refuse((413, "Too Many Subjects"));
            }
            let up_to = match (&req.up_to_time, req.up_to_seq) {
                (Some(t), _) => match first_at_or_after(engine, tenant, stream, t) {
                    // Messages stored at or before the time.
                    Ok(first_after) => Some(first_after.saturating_sub(1)),
                    Err(r) => return refuse(r),
                },
                (None, 0) => None,
                (None, s) => Some(s),
            };
            let all = match engine.last_sequences(tenant, stream, subjects, up_to) {
                Ok(s) => s,
                Err(EngineError::BadRequest(_)) => return refuse((408, "Bad Request")),
                Err(_) => return refuse((404, "Message Not Found")),
            };
            let seqs: Vec<u64> = all.iter().copied().take(limit).collect();
            let left = all.len() as u64;
            let pending = (1..=seqs.len() as u64).map(|n| left - n).collect();
            let up_to = up_to.or_else(|| all.last().copied());
            (seqs, pending, up_to)
        } else {
            let filter = req.next_by_subj.as_deref().filter(|s| !s.is_empty());
            let start = match &req.start_time {
                Some(t) => match first_at_or_after(engine, tenant, stream, t) {
                    Ok(s) => s,
                    Err(r) => return refuse(r),
                },
                None => req.seq.max(1),
            };
            let total = match engine.count_messages(tenant, stream, start, filter) {
                Ok(n) => n,
                Err(EngineError::BadRequest(_)) => return refuse((408, "Bad Request")),
                Err(_) => return refuse((404, "Message Not Found")),
            };
            let mut seqs = Vec::new();
            let mut from = start;
            while seqs.len() < limit {
                let query = MessageQuery::NextBySubject {
                    seq: from,
                    subject: filter.unwrap_or(">").to_string(),
                };
                match engine.get_message(tenant, stream, query) {
                    Ok(m) => {
                        seqs.push(m.seq);
                        from = m.seq + 1;
                    }
                    Err(EngineError::TierUnavailable(_)) => {
                        return refuse((503, "Remote Tier Unavailable"));
                    }
                    Err(_) => break,
                }
            }
            let pending = (1..=seqs.len() as u64)
                .map(|n| total.saturating_sub(n))
                .collect();
            (seqs, pending, None)
        };
    if seqs.is_empty() {
        return refuse((404, "Message Not Found"));
    }
    let mut last = 0u64;
    let mut bytes = 0usize;
    let mut left = pending_after.first().map_or(0, |p| p + 1);
    for (seq, pending) in seqs.into_iter().zip(pending_after) {
        let Ok(stored) = engine.get_message(tenant, stream, MessageQuery::Seq(seq)) else {
            continue;
        };
        if req.max_bytes > 0 && last != 0 && bytes + stored.payload.len() > req.max_bytes {
            break;
        }
        bytes += stored.payload.len();
        let mut h = stored.headers.clone().unwrap_or_default();
        h.insert(headers::STREAM, stream);
        h.insert(headers::SUBJECT, stored.subject.to_str_lossy().into_owned());
        h.insert(headers::SEQUENCE, stored.seq.to_string());
        h.insert(headers::TIME_STAMP, timestamp(stored.time));
        h.insert(NUM_PENDING, pending.to_string());
        h.insert(LAST_SEQUENCE, last.to_string());
        if let Some(u) = up_to {
            h.insert(UP_TO_SEQUENCE, u.to_string());
        }
        let mut m = Message::new(reply.clone(), stored.payload);
        m.headers = Some(h);
        respond_message(engine, tenant, m);
        last = seq;
        left = pending;
    }
    let mut eob = vec![
        (NUM_PENDING, left.to_string()),
        (LAST_SEQUENCE, last.to_string()),
    ];
    if let Some(u) = up_to {
        eob.push((UP_TO_SEQUENCE, u.to_string()));
    }
    respond_message(engine, tenant, status_message(&reply, 204, "EOB", &eob));
}

/// Matching messages left after this one (batched gets).
const NUM_PENDING: &str = "Nats-Num-Pending";
/// The sequence answered before this one, 0 for the first (batched gets).
const LAST_SEQUENCE: &str = "Nats-Last-Sequence";
/// The sequence a `multi_last` get looked up to.
const UP_TO_SEQUENCE: &str = "Nats-UpTo-Sequence";

fn get<E: Engine + ?Sized>(
    engine: &E,
    tenant: &TenantId,
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
    let stored = engine
        .get_message(tenant, stream, query)
        .map_err(|e| match e {
            EngineError::BadRequest(_) => BAD,
            // In the remote tier and the bucket does not answer: not "not found".
            EngineError::TierUnavailable(_) => (503, "Remote Tier Unavailable"),
            _ => NOT_FOUND,
        })?;
    let mut h = stored.headers.clone().unwrap_or_default();
    h.insert(headers::STREAM, stream);
    h.insert(headers::SUBJECT, stored.subject.to_str_lossy().into_owned());
    h.insert(headers::SEQUENCE, stored.seq.to_string());
    h.insert(headers::TIME_STAMP, timestamp(stored.time));
    Ok((h, stored.payload))
}
