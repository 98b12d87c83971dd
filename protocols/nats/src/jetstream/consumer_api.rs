//! JetStream consumers on the engine's consumer groups: `CONSUMER.*` requests, pull
//! requests (`CONSUMER.MSG.NEXT`) and acks (`$JS.ACK.>`).

use super::api::respond;
use super::api_types::{
    self as t, AckKind as JsAck, ApiError, ConsumerAction, ConsumerConfig, ConsumerInfo,
    ConsumerInfoResponse, ConsumerListResponse, ConsumerNamesResponse, CreateConsumerRequest,
    JsErrorCode, LIST_PAGE_LIMIT, NAMES_PAGE_LIMIT, SequenceInfo, SuccessResponse,
    ack_reply_subject, decode_optional_request, decode_request, parse_ack, parse_ack_reply,
    parse_next_request, response_type, status,
};
use super::convert::{api_error, timestamp};
use crate::encode;
use bytes::Bytes;
use junction_api::{
    AckKind, AckPolicy, DeliverPolicy, Delivered, Delivery, Engine, EngineError, FetchEnd,
    FetchRequest, FetchSink, GroupConfig, GroupInfo, Message, PushConfig, Subject, SubjectFilter,
    Subscriber, TenantId,
};
use rand::Rng;
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type Routed = Result<Vec<u8>, (&'static str, ApiError)>;

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec())
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn dur(n: i64) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

/// Routes a `CONSUMER.*` API request (everything but `MSG.NEXT`).
pub async fn route<E: Engine>(engine: &E, tenant: &TenantId, api: &str, body: &[u8]) -> Routed {
    let tokens: Vec<&str> = api.split('.').collect();
    match tokens.as_slice() {
        ["CONSUMER", "CREATE", stream] => {
            create(engine, tenant, stream, None, None, body, false).await
        }
        ["CONSUMER", "CREATE", stream, name] => {
            create(engine, tenant, stream, Some(name), None, body, false).await
        }
        ["CONSUMER", "CREATE", stream, name, filter @ ..] => {
            let filter = filter.join(".");
            create(
                engine,
                tenant,
                stream,
                Some(name),
                Some(&filter),
                body,
                false,
            )
            .await
        }
        ["CONSUMER", "DURABLE", "CREATE", stream, name] => {
            create(engine, tenant, stream, Some(name), None, body, true).await
        }
        ["CONSUMER", "INFO", stream, name] => {
            let kind = response_type::CONSUMER_INFO;
            let info = engine
                .group_info(tenant, stream, name)
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&ConsumerInfoResponse::info(clustered(
                engine,
                tenant,
                consumer_info(&info),
            ))))
        }
        ["CONSUMER", "PAUSE", stream, name] => pause(engine, tenant, stream, name, body).await,
        ["CONSUMER", "DELETE", stream, name] => {
            let kind = response_type::CONSUMER_DELETE;
            engine
                .delete_group(tenant, stream, name)
                .await
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&SuccessResponse::ok(kind)))
        }
        ["CONSUMER", "NAMES", stream] => {
            let kind = response_type::CONSUMER_NAMES;
            let req: t::ApiPagedRequest = decode_optional_request(body).map_err(|e| (kind, e))?;
            let names = engine
                .group_names(tenant, stream)
                .map_err(|e| (kind, api_error(&e)))?;
            let total = names.len() as u64;
            let page = names
                .into_iter()
                .skip(req.offset as usize)
                .take(NAMES_PAGE_LIMIT as usize)
                .collect();
            Ok(to_json(&ConsumerNamesResponse::new(
                total, req.offset, page,
            )))
        }
        ["CONSUMER", "LIST", stream] => {
            let kind = response_type::CONSUMER_LIST;
            let req: t::ApiPagedRequest = decode_optional_request(body).map_err(|e| (kind, e))?;
            let names = engine
                .group_names(tenant, stream)
                .map_err(|e| (kind, api_error(&e)))?;
            let total = names.len() as u64;
            let infos = names
                .into_iter()
                .skip(req.offset as usize)
                .take(LIST_PAGE_LIMIT as usize)
                .filter_map(|n| engine.group_info(tenant, stream, &n).ok())
                .map(|i| clustered(engine, tenant, consumer_info(&i)))
                .collect();
            Ok(to_json(&ConsumerListResponse::new(
                total, req.offset, infos,
            )))
        }
        _ => Err((
            "io.nats.jetstream.api.v1.system_response",
            JsErrorCode::BadRequest.error(),
        )),
    }
}

/// `$JS.API.CONSUMER.PAUSE.<stream>.<consumer>` (nats-server 2.11): pauses
/// the consumer until `pause_until`, or resumes it when the request has none
/// (or a time already past). The answer says whether it is paused now.
async fn pause<E: Engine>(
    engine: &E,
    tenant: &TenantId,
    stream: &str,
    name: &str,
    body: &[u8],
) -> Routed {
    let kind = response_type::CONSUMER_PAUSE;
    #[derive(serde::Deserialize, Default)]
    #[serde(default)]
    struct PauseRequest {
        pause_until: Option<String>,
    }
    let req: PauseRequest = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest::default()
    } else {
        serde_json::from_slice(body)
            .map_err(|e| (kind, JsErrorCode::InvalidJson.with_err(e.to_string())))?
    };
    let until = match req.pause_until.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let ns = t::parse_rfc3339_nanos(text)
                .ok_or_else(|| (kind, JsErrorCode::InvalidJson.error()))?;
            u64::try_from(ns)
                .ok()
                .filter(|ns| *ns > 0)
                .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
        }
    };
    let info = engine
        .group_info(tenant, stream, name)
        .map_err(|e| (kind, api_error(&e)))?;
    let mut config = info.config;
    config.pause_until = until;
    engine
        .update_group(tenant, stream, config)
        .await
        .map_err(|e| (kind, api_error(&e)))?;
    let now = SystemTime::now();
    let remaining = until.and_then(|u| u.duration_since(now).ok());
    let mut answer = serde_json::json!({
        "type": kind,
        "paused": remaining.is_some(),
        // Go's zero time when it is not paused, as nats-server answers.
        "pause_until": until.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), timestamp),
    });
    if let (Some(r), Some(obj)) = (remaining, answer.as_object_mut()) {
        obj.insert("pause_remaining".into(), ns(r).into());
    }
    Ok(to_json(&answer))
}

fn random_name() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

#[allow(clippy::too_many_arguments)]
async fn create<E: Engine>(
    engine: &E,
    tenant: &TenantId,
    stream: &str,
    name: Option<&str>,
    filter: Option<&str>,
    body: &[u8],
    durable_api: bool,
) -> Routed {
    let kind = response_type::CONSUMER_CREATE;
    let req: CreateConsumerRequest = decode_request(body).map_err(|e| (kind, e))?;
    if !req.stream_name.is_empty() && req.stream_name != stream {
        return Err((kind, JsErrorCode::StreamMismatch.error()));
    }
    let mut c = req.config;
    if durable_api {
        let name = name.unwrap_or_default();
        if c.durable_name.is_empty() {
            c.durable_name = name.to_string();
        } else if c.durable_name != name {
            return Err((
                kind,
                JsErrorCode::ConsumerDurableNameNotMatchSubject.error(),
            ));
        }
    }
    match name {
        Some(n) if !durable_api => {
            if c.name.is_empty() {
                c.name = n.to_string();
            }
            if c.name != n {
                return Err((
                    kind,
                    JsErrorCode::ConsumerCreateDurableAndNameMismatch.error(),
                ));
            }
            if !c.durable_name.is_empty() && c.durable_name != n {
                return Err((
                    kind,
                    JsErrorCode::ConsumerCreateDurableAndNameMismatch.error(),
                ));
            }
        }
        None if !c.durable_name.is_empty() => {
            return Err((kind, JsErrorCode::ConsumerEphemeralWithDurableName.error()));
        }
        _ => {}
    }
    if let Some(f) = filter
        && c.filter_subject != f
    {
        return Err((
            kind,
            JsErrorCode::ConsumerCreateFilterSubjectMismatch.error(),
        ));
    }
    if !c.filter_subject.is_empty() && !c.filter_subjects.is_empty() {
        return Err((kind, JsErrorCode::ConsumerDuplicateFilterSubjects.error()));
    }
    if c.deliver_subject.is_empty() {
        if c.idle_heartbeat > 0 {
            return Err((kind, JsErrorCode::ConsumerHBRequiresPush.error()));
        }
        if c.flow_control {
            return Err((kind, JsErrorCode::ConsumerFCRequiresPush.error()));
        }
        if c.rate_limit_bps > 0 {
            return Err((kind, JsErrorCode::ConsumerPullWithRateLimit.error()));
        }
    } else {
        super::push::check_config(&c).map_err(|e| (kind, e))?;
        // Delivered into the stream itself, each delivery would be stored and
        // delivered again.
        if let Ok(si) = engine.station_info(tenant, stream)
            && let Ok(deliver) = Subject::new(c.deliver_subject.clone())
            && si
                .config
                .subjects
                .iter()
                .filter_map(|s| SubjectFilter::new(s.clone()).ok())
                .any(|f| f.matches(&deliver))
        {
            return Err((kind, JsErrorCode::ConsumerDeliverCycle.error()));
        }
    }
    let durable = !c.durable_name.is_empty();
    let group_name = if durable {
        c.durable_name.clone()
    } else if !c.name.is_empty() {
        c.name.clone()
    } else {
        random_name()
    };
    c.name = group_name.clone();
    c.apply_server_defaults(&t::StreamConsumerLimits::default());
    let exists = engine.group_info(tenant, stream, &group_name).is_ok();
    match req.action {
        ConsumerAction::Create if exists => {
            let current = engine.group_info(tenant, stream, &group_name).ok();
            let same =
                current.is_some_and(|i| i.config == group_config(&c, durable).unwrap_or_default());
            if !same {
                return Err((kind, JsErrorCode::ConsumerAlreadyExists.error()));
            }
        }
        ConsumerAction::Update if !exists => {
            return Err((kind, JsErrorCode::ConsumerDoesNotExist.error()));
        }
        _ => {}
    }
    let config = group_config(&c, durable).map_err(|e| (kind, e))?;
    // An existing consumer is updated in place (create-or-update, or update),
    // as nats-server does: what may not change is refused (10012).
    let info = if exists && req.action != ConsumerAction::Create {
        engine
            .update_group(tenant, stream, config)
            .await
            .map_err(|e| match e {
                EngineError::InvalidGroupConfig(junction_api::GroupConfigError::Invalid(m)) => {
                    (kind, JsErrorCode::ConsumerCreate.with_err(m))
                }
                other => (kind, api_error(&other)),
            })?
    } else {
        engine
            .create_group(tenant, stream, config)
            .await
            .map_err(|e| (kind, api_error(&e)))?
    };
    Ok(to_json(&ConsumerInfoResponse::create(clustered(
        engine,
        tenant,
        consumer_info(&info),
    ))))
}

/// `info` with its stream's `cluster` block (leader, replicas), in a cluster: a
/// replicated stream's consumers live on its replicas, as nats-server reports.
/// A push consumer is `push_bound` while someone subscribes to its deliver
/// subject.
fn clustered<E: Engine>(engine: &E, tenant: &TenantId, mut info: ConsumerInfo) -> ConsumerInfo {
    if let Ok(si) = engine.station_info(tenant, &info.stream_name) {
        info.cluster = super::convert::cluster_info(&si);
    }
    if let Ok(subject) = Subject::new(info.config.deliver_subject.clone())
        && !info.config.deliver_subject.is_empty()
    {
        info.push_bound = engine.has_interest(tenant, &subject);
    }
    info
}

/// A JetStream consumer configuration as a group configuration.
fn group_config(c: &ConsumerConfig, durable: bool) -> Result<GroupConfig, ApiError> {
    let deliver_policy = match c.deliver_policy {
        t::DeliverPolicy::All => DeliverPolicy::All,
        t::DeliverPolicy::Last => DeliverPolicy::Last,
        t::DeliverPolicy::New => DeliverPolicy::New,
        t::DeliverPolicy::LastPerSubject => DeliverPolicy::LastPerSubject,
        t::DeliverPolicy::ByStartSequence => {
            if c.opt_start_seq == 0 {
                return Err(JsErrorCode::ConsumerInvalidPolicy
                    .with_err("consumer deliver policy by_start_sequence requires opt_start_seq"));
            }
            DeliverPolicy::ByStartSequence(c.opt_start_seq)
        }
        t::DeliverPolicy::ByStartTime => {
            let Some(ts) = c.opt_start_time.as_deref().and_then(t::parse_rfc3339_nanos) else {
                return Err(JsErrorCode::ConsumerInvalidPolicy
                    .with_err("consumer deliver policy by_start_time requires opt_start_time"));
            };
            let ns = u64::try_from(ts.max(0)).unwrap_or(0);
            DeliverPolicy::ByStartTime(UNIX_EPOCH + Duration::from_nanos(ns))
        }
    };
    let filter_subjects = if c.filter_subject.is_empty() {
        c.filter_subjects.clone()
    } else {
        vec![c.filter_subject.clone()]
    };
    for f in &filter_subjects {
        if SubjectFilter::new(f.clone()).is_err() {
            return Err(JsErrorCode::ConsumerFilterNotSubset.error());
        }
    }
    if junction_api::parse_sample_freq(&c.sample_freq).is_none() {
        return Err(JsErrorCode::ConsumerInvalidSampling.with_err(format!(
            "strconv.Atoi: parsing {:?}: invalid syntax",
            c.sample_freq
        )));
    }
    let pause_until = match c.pause_until.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let Some(ns) = t::parse_rfc3339_nanos(text) else {
                return Err(JsErrorCode::InvalidJson.error());
            };
            // The Go zero time (and anything before 1970) is "not paused".
            u64::try_from(ns)
                .ok()
                .filter(|ns| *ns > 0)
                .map(|ns| UNIX_EPOCH + Duration::from_nanos(ns))
        }
    };
    Ok(GroupConfig {
        name: c.name.clone(),
        durable,
        description: (!c.description.is_empty()).then(|| c.description.clone()),
        deliver_policy,
        ack_policy: match c.ack_policy {
            t::AckPolicy::None => AckPolicy::None,
            t::AckPolicy::All => AckPolicy::All,
            t::AckPolicy::Explicit => AckPolicy::Explicit,
        },
        ack_wait: dur(c.ack_wait),
        max_deliver: c.max_deliver,
        backoff: c.backoff.iter().map(|b| dur(*b)).collect(),
        filter_subjects,
        max_waiting: c.max_waiting,
        max_ack_pending: c.max_ack_pending,
        inactive_threshold: dur(c.inactive_threshold),
        max_batch: c.max_batch,
        max_expires: dur(c.max_expires),
        max_bytes: c.max_bytes,
        headers_only: c.headers_only,
        // Lineage as `Junction-*` headers is Junction's own opt-in; JetStream
        // clients set it through the consumer's metadata.
        lineage_headers: c
            .metadata
            .get(junction_api::LINEAGE_METADATA_KEY)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        metadata: c.metadata.clone(),
        push: (!c.deliver_subject.is_empty()).then(|| PushConfig {
            deliver_subject: c.deliver_subject.clone(),
            deliver_group: (!c.deliver_group.is_empty()).then(|| c.deliver_group.clone()),
            flow_control: c.flow_control,
            idle_heartbeat: dur(c.idle_heartbeat),
            rate_limit_bps: c.rate_limit_bps,
        }),
        pause_until,
        replay_original: c.replay_policy == t::ReplayPolicy::Original,
        sample_freq: c.sample_freq.clone(),
    })
}

/// A group's info as a JetStream consumer info.
fn consumer_info(info: &GroupInfo) -> ConsumerInfo {
    let g = &info.config;
    let (deliver_policy, opt_start_seq, opt_start_time) = match &g.deliver_policy {
        DeliverPolicy::All => (t::DeliverPolicy::All, 0, None),
        DeliverPolicy::Last => (t::DeliverPolicy::Last, 0, None),
        DeliverPolicy::New => (t::DeliverPolicy::New, 0, None),
        DeliverPolicy::LastPerSubject => (t::DeliverPolicy::LastPerSubject, 0, None),
        DeliverPolicy::ByStartSequence(s) => (t::DeliverPolicy::ByStartSequence, *s, None),
        DeliverPolicy::ByStartTime(t0) => (t::DeliverPolicy::ByStartTime, 0, Some(timestamp(*t0))),
    };
    let config = ConsumerConfig {
        durable_name: if g.durable {
            g.name.clone()
        } else {
            String::new()
        },
        name: g.name.clone(),
        description: g.description.clone().unwrap_or_default(),
        deliver_policy,
        opt_start_seq,
        opt_start_time,
        ack_policy: match g.ack_policy {
            AckPolicy::None => t::AckPolicy::None,
            AckPolicy::All => t::AckPolicy::All,
            AckPolicy::Explicit => t::AckPolicy::Explicit,
        },
        ack_wait: ns(g.ack_wait),
        max_deliver: g.max_deliver,
        backoff: g.backoff.iter().map(|b| ns(*b)).collect(),
        filter_subject: if g.filter_subjects.len() == 1 {
            g.filter_subjects[0].clone()
        } else {
            String::new()
        },
        filter_subjects: if g.filter_subjects.len() > 1 {
            g.filter_subjects.clone()
        } else {
            Vec::new()
        },
        // A push consumer has no pull requests waiting (its pusher's own
        // fetches are not the client's).
        max_waiting: if g.push.is_some() { 0 } else { g.max_waiting },
        max_ack_pending: g.max_ack_pending,
        inactive_threshold: if g.durable {
            0
        } else {
            ns(g.inactive_threshold)
        },
        max_batch: g.max_batch,
        max_expires: ns(g.max_expires),
        max_bytes: g.max_bytes,
        headers_only: g.headers_only,
        metadata: g.metadata.clone(),
        deliver_subject: g
            .push
            .as_ref()
            .map(|p| p.deliver_subject.clone())
            .unwrap_or_default(),
        deliver_group: g
            .push
            .as_ref()
            .and_then(|p| p.deliver_group.clone())
            .unwrap_or_default(),
        flow_control: g.push.as_ref().is_some_and(|p| p.flow_control),
        idle_heartbeat: g.push.as_ref().map_or(0, |p| ns(p.idle_heartbeat)),
        rate_limit_bps: g.push.as_ref().map_or(0, |p| p.rate_limit_bps),
        replay_policy: if g.replay_original {
            t::ReplayPolicy::Original
        } else {
            t::ReplayPolicy::Instant
        },
        sample_freq: g.sample_freq.clone(),
        pause_until: g.pause_until.map(timestamp),
        ..ConsumerConfig::default()
    };
    let now = SystemTime::now();
    let pause_remaining = g
        .pause_until
        .and_then(|until| until.duration_since(now).ok())
        .map_or(0, ns);
    let s = &info.state;
    ConsumerInfo {
        stream_name: info.station.clone(),
        name: g.name.clone(),
        created: timestamp(info.created),
        config,
        delivered: SequenceInfo {
            consumer_seq: s.delivered_consumer_seq,
            stream_seq: s.delivered_stream_seq,
            last_active: s.last_active.map(timestamp),
        },
        ack_floor: SequenceInfo {
            consumer_seq: s.ack_floor_consumer_seq,
            stream_seq: s.ack_floor_stream_seq,
            last_active: None,
        },
        num_ack_pending: s.num_ack_pending,
        num_redelivered: s.num_redelivered,
        num_waiting: s.num_waiting,
        num_pending: s.num_pending,
        cluster: None,
        push_bound: false,
        paused: g.paused_at(now),
        pause_remaining,
        ts: timestamp(now),
    }
}

/// Delivers a pull request's messages and status to the requester's inbox. Holds the
/// engine weakly: the engine holds waiting requests, and must be able to drop.
struct PullSink<E: Engine> {
    engine: std::sync::Weak<E>,
    tenant: TenantId,
    inbox: Subject,
    stream: String,
    consumer: String,
}

impl<E: Engine> PullSink<E> {
    fn status(&self, block: &[u8]) {
        let Ok(headers) = encode::parse_header_block(block) else {
            return;
        };
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        let message = Message {
            subject: self.inbox.clone(),
            reply: None,
            headers: Some(headers),
            payload: Bytes::new(),
        };
        let system = engine.tenant_client(&self.tenant);
        engine.publish_routed(&system, &self.inbox, &message);
    }
}

/// A consumer's delivery as the message a client gets: its subject, headers and
/// payload, with the `$JS.ACK` reply subject (pull and push alike).
pub(crate) fn delivery_message(stream: &str, consumer: &str, d: &Delivered) -> Message {
    let ts = d
        .message
        .time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |x| i64::try_from(x.as_nanos()).unwrap_or(i64::MAX));
    let ack = ack_reply_subject(
        stream,
        consumer,
        u64::from(d.delivery_count),
        d.message.seq,
        d.consumer_seq,
        ts,
        d.pending,
    );
    Message {
        subject: d.message.subject.clone(),
        reply: Some(Subject::from_trusted(Bytes::from(ack))),
        headers: d.message.headers.clone(),
        payload: d.message.payload.clone(),
    }
}

impl<E: Engine> FetchSink for PullSink<E> {
    fn deliver(&self, d: &Delivered) -> bool {
        let message = delivery_message(&self.stream, &self.consumer, d);
        let Some(engine) = self.engine.upgrade() else {
            return false;
        };
        let system = engine.tenant_client(&self.tenant);
        engine.publish_routed(&system, &self.inbox, &message) > 0
    }

    fn end(&self, end: FetchEnd) {
        let clamp = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        match end {
            FetchEnd::Complete => {}
            FetchEnd::NoMessages => self.status(status::NO_MESSAGES),
            FetchEnd::Timeout { messages, bytes } => {
                self.status(&status::request_timeout(clamp(messages), clamp(bytes)))
            }
            FetchEnd::MaxBytes { messages, bytes } => self.status(
                &status::message_size_exceeds_max_bytes(clamp(messages), clamp(bytes)),
            ),
            FetchEnd::MaxWaiting => self.status(status::EXCEEDED_MAX_WAITING),
            FetchEnd::ExceedsLimits => self.status(&status::bad_request(
                "request exceeds the consumer's limits",
            )),
            FetchEnd::GroupDeleted => self.status(status::CONSUMER_DELETED),
            FetchEnd::PushBased => self.status(status::CONSUMER_IS_PUSH_BASED),
        }
    }

    fn heartbeat(&self) {
        self.status(&status::idle_heartbeat(0, 0, None));
    }
}

/// Handles `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`.
pub fn next<E: Engine>(
    engine: Arc<E>,
    tenant: &TenantId,
    api: &str,
    body: &[u8],
    reply: Subject,
    runtime: Option<&tokio::runtime::Handle>,
) {
    let Some(rest) = api.strip_prefix("CONSUMER.MSG.NEXT.") else {
        return;
    };
    let Some((stream, consumer)) = rest.split_once('.') else {
        return;
    };
    let sink = Arc::new(PullSink {
        engine: Arc::downgrade(&engine),
        tenant: tenant.clone(),
        inbox: reply,
        stream: stream.to_string(),
        consumer: consumer.to_string(),
    });
    let req = match parse_next_request(body) {
        Ok(r) => r,
        Err(e) => {
            sink.status(&status::bad_request(&e.to_string()));
            return;
        }
    };
    let request = FetchRequest {
        batch: usize::try_from(req.batch.max(1)).unwrap_or(1),
        max_bytes: usize::try_from(req.max_bytes.max(0)).unwrap_or(0),
        expires: (req.expires > 0).then(|| dur(req.expires)),
        no_wait: req.no_wait,
        idle_heartbeat: (req.idle_heartbeat > 0).then(|| dur(req.idle_heartbeat)),
        pull_request: true,
    };
    let expires = request.expires;
    if let Err(e) = engine.fetch(tenant, stream, consumer, request, sink.clone()) {
        tracing::debug!(stream, consumer, error = %e, "pull request refused");
        // A consumer that does not exist has nobody listening on its MSG.NEXT
        // subject in nats-server: the client gets no-responders (503), not the 409
        // that ends a request to a consumer deleted while it waited.
        sink.status(match e {
            EngineError::StationNotFound | EngineError::GroupNotFound => status::NO_RESPONDERS,
            _ => status::CONSUMER_DELETED,
        });
        return;
    }
    // Expire the request on time rather than on the engine's next 50 ms tick: a
    // coarse async sleep, then a precise one on a blocking thread (tokio timers round
    // up to the millisecond; clients give up ~100 µs after `expires`).
    if let (Some(after), Some(runtime)) = (expires, runtime) {
        let deadline = Instant::now() + after;
        let weak = Arc::downgrade(&engine);
        let (tenant, stream, consumer) = (tenant.clone(), stream.to_string(), consumer.to_string());
        runtime.spawn(async move {
            tokio::time::sleep(after.saturating_sub(COARSE_LEAD)).await;
            let _ = tokio::task::spawn_blocking(move || {
                let target = deadline.checked_sub(EXPIRY_LEAD).unwrap_or(deadline);
                if let Some(wait) = target.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                if let Some(engine) = weak.upgrade() {
                    engine.run_group_timers(&tenant, &stream, &consumer);
                }
            })
            .await;
        });
    }
}

/// How long before a pull request's expiry the async timer hands over to a precise
/// sleep.
const COARSE_LEAD: Duration = Duration::from_millis(3);

/// How long before a pull request's expiry its timer fires (the engine ends requests
/// up to 100 µs early).
const EXPIRY_LEAD: Duration = Duration::from_micros(20);

/// Receives `$JS.ACK.>` publishes and applies them where they arrive: on the
/// publishing connection's own task, in the order it sent them. An ack never
/// waits on I/O (`Broker::ack`: the group's position is saved by housekeeping, a
/// work queue's delete is queued to the writer), so no thread of its own is
/// needed; a hop to one cost a wake-up per ack.
struct AckInbox<E: Engine> {
    engine: std::sync::Weak<E>,
    tenant: TenantId,
    runtime: Option<tokio::runtime::Handle>,
}

impl<E: Engine> Subscriber for AckInbox<E> {
    fn deliver(&self, message: &Message, _fanout: junction_api::FanoutId) -> Delivery {
        let Some(engine) = self.engine.upgrade() else {
            return Delivery::Gone;
        };
        apply_ack(&engine, &self.tenant, message, self.runtime.as_ref());
        Delivery::Accepted
    }

    fn describe(&self) -> (String, u64) {
        ("$JS.ACK".into(), 0)
    }
}

/// Subscribes to `$JS.ACK.>` in `tenant` and applies acks until the engine drops
/// the subscription (it holds the engine weakly, so it never keeps it alive).
pub(crate) fn serve_acks<E: Engine>(engine: &Arc<E>, tenant: TenantId) -> Result<(), EngineError> {
    let client = engine.tenant_client(&tenant);
    let inbox = AckInbox {
        engine: Arc::downgrade(engine),
        tenant,
        runtime: tokio::runtime::Handle::try_current().ok(),
    };
    engine.subscribe(
        &client,
        SubjectFilter::new("$JS.ACK.>")?,
        None,
        Arc::new(inbox),
    )?;
    Ok(())
}

fn apply_ack<E: Engine>(
    engine: &Arc<E>,
    tenant: &TenantId,
    message: &Message,
    runtime: Option<&tokio::runtime::Handle>,
) {
    let subject = message.subject.to_str_lossy();
    let Ok(reply) = parse_ack_reply(&subject) else {
        tracing::debug!(%subject, "malformed ack subject");
        return;
    };
    let tenant = tenant.clone();
    // In a cluster, the stream's node applies it.
    if let Some(node) = engine.station_node(&tenant, reply.stream) {
        if let Err(e) = engine.forward_request(&node, &tenant, message) {
            tracing::debug!(%node, error = %e, "ack not passed on to the stream's node");
        }
        return;
    }
    let kind = match parse_ack(&message.payload) {
        JsAck::Ack => AckKind::Ack,
        JsAck::Nak { delay_ns } => AckKind::Nak(delay_ns.map(dur)),
        JsAck::Progress => AckKind::InProgress,
        JsAck::Term { reason } => AckKind::Term(reason),
        JsAck::Next(next_req) => {
            let result = engine.ack(
                &tenant,
                reply.stream,
                reply.consumer,
                reply.stream_seq,
                AckKind::Ack,
            );
            if let (Ok(()), Some(inbox)) = (result, message.reply.clone()) {
                let body = match next_req {
                    Ok(r) => serde_json::to_vec(&r).unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                next(
                    engine.clone(),
                    &tenant,
                    &format!("CONSUMER.MSG.NEXT.{}.{}", reply.stream, reply.consumer),
                    &body,
                    inbox,
                    runtime,
                );
            }
            return;
        }
        JsAck::Unknown => {
            tracing::debug!(%subject, "unknown ack payload");
            return;
        }
    };
    // An ack sent as a request (AckSync, double ack) gets an empty response once
    // it is durable: on a replicated stream, once the consumer's new position
    // is committed on a quorum. If that fails (the leader was lost) there is no
    // response, so the client's request times out and it knows the ack may not
    // have held.
    if let Some(r) = message.reply.clone() {
        let answer_to = engine.clone();
        let answer_in = tenant.clone();
        let subject = subject.to_string();
        engine.ack_committed(
            &tenant,
            reply.stream,
            reply.consumer,
            reply.stream_seq,
            kind,
            Box::new(move |result| match result {
                Err(e @ EngineError::ReplicasUnavailable(_)) => {
                    tracing::info!(%subject, error = %e, "ack sync not committed; not answered");
                }
                other => {
                    if let Err(e) = other {
                        tracing::debug!(%subject, error = %e, "ack refused");
                    }
                    respond(&*answer_to, &answer_in, r, Vec::new());
                }
            }),
        );
        return;
    }
    let result = engine.ack(
        &tenant,
        reply.stream,
        reply.consumer,
        reply.stream_seq,
        kind,
    );
    if let Err(e) = &result {
        tracing::debug!(%subject, error = %e, "ack refused");
    }
}
