//! The `$JS.API` service: JetStream requests in, engine calls, JSON responses out.
//!
//! The service subscribes the engine's system client to `$JS.API.>`. Requests are
//! handed to a worker task (the subscriber only queues, as every subscriber must) and
//! each is answered on a blocking thread, because station operations may wait for
//! storage. The response is published to the request's reply subject.

use super::api_types::{
    AccountInfo, AccountInfoResponse, AccountLimits, ApiError, ApiErrorResponse, ApiPaged,
    ApiStats, JsErrorCode, LIST_PAGE_LIMIT, MsgGetTarget, NAMES_PAGE_LIMIT, StreamConfig,
    StreamInfoResponse, StreamListResponse, StreamMsgDeleteRequest, StreamMsgGetRequest,
    StreamMsgGetResponse, StreamNamesRequest, StreamNamesResponse, StreamPurgeRequest,
    StreamPurgeResponse, SuccessResponse, decode_optional_request, decode_request, response_type,
};
use super::convert::{api_error, station_config, stored_msg, stream_info};
use bytes::Bytes;
use junction_api::{
    Delivery, Engine, EngineError, Message, MessageQuery, Purge, StorageKind, Subject,
    SubjectFilter, Subscriber, TenantId,
};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Subject prefix of the JetStream API.
pub const API_PREFIX: &str = "$JS.API.";

/// One tenant's `$JS.API.>` subscription: requests go to the service with the
/// tenant they were made in.
struct ApiInbox {
    tenant: TenantId,
    requests: mpsc::UnboundedSender<(TenantId, Message)>,
}

impl Subscriber for ApiInbox {
    fn deliver(&self, message: &Message, _fanout: junction_api::FanoutId) -> Delivery {
        match self.requests.send((self.tenant.clone(), message.clone())) {
            Ok(()) => Delivery::Accepted,
            Err(_) => Delivery::Gone,
        }
    }

    fn describe(&self) -> (String, u64) {
        ("$JS.API".into(), 0)
    }
}

#[derive(Default)]
struct Stats {
    total: AtomicU64,
    errors: AtomicU64,
}

/// Starts the JetStream API service; the returned task ends at `shutdown`.
pub fn start<E: Engine>(
    engine: Arc<E>,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, EngineError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let pushers = super::push::Pushers::start(&engine)?;
    for tenant in engine.tenants() {
        serve_tenant(&engine, &pushers, &tx, tenant)?;
    }
    // Tenants made later (over the HTTP API) are served from then on; one made
    // again after a delete is served already.
    let served: Mutex<HashSet<TenantId>> = Mutex::new(engine.tenants().into_iter().collect());
    let weak = Arc::downgrade(&engine);
    let weak_pushers = Arc::downgrade(&pushers);
    let requests = tx.clone();
    engine.on_new_tenant(Arc::new(move |tenant: &TenantId| {
        let (Some(engine), Some(pushers)) = (weak.upgrade(), weak_pushers.upgrade()) else {
            return;
        };
        if !served.lock().insert(tenant.clone()) {
            return;
        }
        match serve_tenant(&engine, &pushers, &requests, tenant.clone()) {
            Ok(()) => tracing::info!(tenant = %tenant.0, "JetStream API serves a new tenant"),
            Err(e) => tracing::error!(tenant = %tenant.0, error = %e, "JetStream API cannot serve a new tenant"),
        }
    }));
    drop(tx);
    let stats = Arc::new(Stats::default());
    Ok(tokio::spawn(async move {
        loop {
            let (tenant, request) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rx.recv() => match r { Some(r) => r, None => break },
            };
            let engine = engine.clone();
            let stats = stats.clone();
            let pushers = pushers.clone();
            // Admin calls are awaited (the engine does their fsync on its own
            // blocking threads); everything else here is a cheap in-memory call.
            tokio::spawn(async move { answer(&engine, &stats, &pushers, &tenant, &request).await });
        }
    }))
}

/// Subscribes the API, acks and flow control in `tenant`.
fn serve_tenant<E: Engine>(
    engine: &Arc<E>,
    pushers: &Arc<super::push::Pushers<E>>,
    requests: &mpsc::UnboundedSender<(TenantId, Message)>,
    tenant: TenantId,
) -> Result<(), EngineError> {
    let client = engine.tenant_client(&tenant);
    let inbox = ApiInbox {
        tenant: tenant.clone(),
        requests: requests.clone(),
    };
    engine.subscribe(
        &client,
        SubjectFilter::new("$JS.API.>")?,
        None,
        Arc::new(inbox),
    )?;
    super::consumer_api::serve_acks(engine, tenant.clone())?;
    pushers.serve_tenant(engine, tenant)
}

async fn answer<E: Engine>(
    engine: &Arc<E>,
    stats: &Stats,
    pushers: &Arc<super::push::Pushers<E>>,
    tenant: &TenantId,
    request: &Message,
) {
    let Some(reply) = request.reply.clone() else {
        return;
    };
    stats.total.fetch_add(1, Ordering::Relaxed);
    let subject = request.subject.to_str_lossy().into_owned();
    let api = subject.strip_prefix(API_PREFIX).unwrap_or_default();
    // In a cluster, a request about a stream another node holds is answered
    // there, on the same reply subject (creates, updates and deletes go through
    // the cluster's meta group from any node).
    if let Some(stream) = stream_of(api)
        && let Some(node) = engine.station_node(tenant, stream)
    {
        if let Err(e) = engine.forward_request(&node, tenant, request) {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(api, %node, error = %e, "JetStream request not passed on");
            let error = JsErrorCode::ClusterNotAvail.with_err(e.to_string());
            respond(
                &**engine,
                tenant,
                reply,
                to_json(&ApiErrorResponse::new(
                    "io.nats.jetstream.api.v1.system_response",
                    error,
                )),
            );
        }
        return;
    }
    if api.starts_with("DIRECT.GET.") {
        super::direct::answer(&**engine, tenant, api, &request.payload, reply);
        return;
    }
    if api.starts_with("CONSUMER.MSG.NEXT.") {
        let runtime = tokio::runtime::Handle::try_current().ok();
        super::consumer_api::next(
            engine.clone(),
            tenant,
            api,
            &request.payload,
            reply,
            runtime.as_ref(),
        );
        return;
    }
    let response = match route(&**engine, stats, tenant, api, &request.payload).await {
        Ok(json) => {
            // A push consumer made here starts delivering at once.
            if api.starts_with("CONSUMER.CREATE.") || api.starts_with("CONSUMER.DURABLE.CREATE.") {
                start_push(pushers, tenant, &json);
            }
            json
        }
        Err((kind, error)) => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                api,
                code = error.err_code,
                "JetStream API error: {}",
                error.description
            );
            to_json(&ApiErrorResponse::new(kind, error))
        }
    };
    respond(&**engine, tenant, reply, response);
}

/// Starts the pusher of the consumer a create answered, when it is a push
/// consumer.
fn start_push<E: Engine>(
    pushers: &Arc<super::push::Pushers<E>>,
    tenant: &TenantId,
    response: &[u8],
) {
    #[derive(serde::Deserialize)]
    struct Created {
        stream_name: String,
        name: String,
        #[serde(default)]
        config: CreatedConfig,
    }
    #[derive(serde::Deserialize, Default)]
    struct CreatedConfig {
        #[serde(default)]
        deliver_subject: String,
    }
    if let Ok(c) = serde_json::from_slice::<Created>(response)
        && !c.config.deliver_subject.is_empty()
    {
        pushers.ensure(tenant, &c.stream_name, &c.name);
    }
}

/// The stream a request is about, for the requests its node answers: stream
/// reads and purges, and everything about its consumers.
fn stream_of(api: &str) -> Option<&str> {
    const SCOPED: [&str; 15] = [
        "STREAM.INFO.",
        "STREAM.PEER.REMOVE.",
        "STREAM.LEADER.STEPDOWN.",
        "STREAM.PURGE.",
        "STREAM.MSG.GET.",
        "STREAM.MSG.DELETE.",
        "DIRECT.GET.",
        "CONSUMER.CREATE.",
        "CONSUMER.DURABLE.CREATE.",
        "CONSUMER.NAMES.",
        "CONSUMER.LIST.",
        "CONSUMER.INFO.",
        "CONSUMER.DELETE.",
        "CONSUMER.PAUSE.",
        "CONSUMER.MSG.NEXT.",
    ];
    SCOPED
        .iter()
        .find_map(|p| api.strip_prefix(p))
        .and_then(|rest| rest.split('.').next())
        .filter(|s| !s.is_empty())
}

/// Publishes `payload` to `reply` from the engine's client in `tenant`.
pub fn respond<E: Engine + ?Sized>(
    engine: &E,
    tenant: &TenantId,
    reply: Subject,
    payload: Vec<u8>,
) {
    respond_message(engine, tenant, Message::new(reply, Bytes::from(payload)));
}

/// Publishes `message` (to its reply subject) from the engine's client in
/// `tenant`.
pub fn respond_message<E: Engine + ?Sized>(engine: &E, tenant: &TenantId, message: Message) {
    let system = engine.tenant_client(tenant);
    engine.publish(&system, &message);
}

fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "JetStream response failed to encode");
        b"{}".to_vec()
    })
}

type Routed = Result<Vec<u8>, (&'static str, ApiError)>;

async fn route<E: Engine>(
    engine: &E,
    stats: &Stats,
    tenant: &TenantId,
    api: &str,
    body: &[u8],
) -> Routed {
    let tenant = tenant.clone();
    let (verb, name) = match api.rsplit_once('.') {
        Some((verb, name)) => (verb, name),
        None => (api, ""),
    };
    match (api, verb) {
        ("INFO", _) => account_info(engine, &tenant, stats),
        ("STREAM.NAMES", _) => stream_names(engine, &tenant, body),
        ("STREAM.LIST", _) => stream_list(engine, &tenant, body),
        (_, "STREAM.CREATE") => stream_create(engine, &tenant, name, body, false).await,
        (_, "STREAM.UPDATE") => stream_create(engine, &tenant, name, body, true).await,
        (_, "STREAM.INFO") => {
            let kind = response_type::STREAM_INFO;
            let info = engine
                .station_info(&tenant, name)
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&StreamInfoResponse::info(
                stream_info(&info),
                ApiPaged::default(),
            )))
        }
        (_, "STREAM.DELETE") => {
            let kind = response_type::STREAM_DELETE;
            engine
                .delete_station(&tenant, name)
                .await
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&SuccessResponse::ok(kind)))
        }
        (_, "STREAM.PURGE") => stream_purge(engine, &tenant, name, body).await,
        (_, "STREAM.PEER.REMOVE") => {
            let kind = response_type::STREAM_REMOVE_PEER;
            #[derive(serde::Deserialize)]
            struct PeerRemove {
                peer: String,
            }
            let req: PeerRemove = serde_json::from_slice(body)
                .map_err(|_| (kind, JsErrorCode::BadRequest.error()))?;
            engine
                .remove_station_peer(&tenant, name, &req.peer)
                .await
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&SuccessResponse::ok(kind)))
        }
        (_, "STREAM.LEADER.STEPDOWN") => {
            let kind = response_type::STREAM_LEADER_STEPDOWN;
            engine
                .step_down_station(&tenant, name)
                .await
                .map_err(|e| (kind, api_error(&e)))?;
            Ok(to_json(&SuccessResponse::ok(kind)))
        }
        (_, "STREAM.MSG.GET") => msg_get(engine, &tenant, name, body),
        (_, "STREAM.MSG.DELETE") => {
            let kind = response_type::STREAM_MSG_DELETE;
            let req: StreamMsgDeleteRequest = decode_request(body).map_err(|e| (kind, e))?;
            engine
                .delete_message(&tenant, name, req.seq)
                .await
                .map_err(|e| match e {
                    // nats-server: 400/10043 "sequence N not found".
                    EngineError::MessageNotFound => (kind, ApiError::sequence_not_found(req.seq)),
                    other => (kind, api_error(&other)),
                })?;
            Ok(to_json(&SuccessResponse::ok(kind)))
        }
        _ => super::consumer_api::route(engine, &tenant, api, body).await,
    }
}

fn account_info<E: Engine>(engine: &E, tenant: &TenantId, stats: &Stats) -> Routed {
    let names = engine.station_names(tenant, None);
    let (mut memory, mut storage, mut consumers) = (0u64, 0u64, 0u64);
    // What `max_bytes` reserves, as nats-server's `reservedStorage` sums it.
    let (mut reserved_memory, mut reserved_storage) = (0u64, 0u64);
    for name in &names {
        if let Ok(info) = engine.station_info(tenant, name) {
            consumers += info.state.consumer_count;
            let reserved = u64::try_from(info.config.max_bytes).unwrap_or(0);
            match info.config.storage {
                StorageKind::Memory => {
                    memory += info.state.bytes;
                    reserved_memory += reserved;
                }
                _ => {
                    storage += info.state.bytes;
                    reserved_storage += reserved;
                }
            }
        }
    }
    // The tenant's limits, -1 where it has none (as nats-server reports them).
    let quota = engine.station_quota(tenant);
    let limit = |l: Option<u64>| l.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX));
    Ok(to_json(&AccountInfoResponse::ok(AccountInfo {
        memory,
        storage,
        reserved_memory,
        reserved_storage,
        streams: names.len() as u64,
        consumers,
        limits: AccountLimits {
            max_memory: limit(quota.max_memory),
            max_storage: limit(quota.max_file),
            max_streams: limit(quota.max_streams),
            max_consumers: limit(quota.max_consumers),
            max_ack_pending: -1,
            memory_max_stream_bytes: -1,
            storage_max_stream_bytes: -1,
            ..AccountLimits::default()
        },
        api: ApiStats {
            total: stats.total.load(Ordering::Relaxed),
            errors: stats.errors.load(Ordering::Relaxed),
            ..ApiStats::default()
        },
        ..AccountInfo::default()
    })))
}

async fn stream_create<E: Engine>(
    engine: &E,
    tenant: &TenantId,
    name: &str,
    body: &[u8],
    update: bool,
) -> Routed {
    let kind = if update {
        response_type::STREAM_UPDATE
    } else {
        response_type::STREAM_CREATE
    };
    let mut config: StreamConfig = decode_request(body).map_err(|e| (kind, e))?;
    if config.name.is_empty() {
        config.name = name.to_string();
    }
    if config.name != name {
        return Err((kind, JsErrorCode::StreamMismatch.error()));
    }
    // A stream is sealed by an update, never made sealed (nats-server).
    if !update && config.sealed {
        return Err((
            kind,
            JsErrorCode::StreamInvalidConfig
                .with_err("stream configuration for create can not be sealed"),
        ));
    }
    let mut station = station_config(&config, update).map_err(|e| (kind, e))?;
    // The JetStream configuration cannot express Junction's schema and dead-letter
    // settings: an update or a repeated create keeps the station's own.
    if let Ok(existing) = engine.station_info(tenant, name) {
        // nats-server: a mirror stays the mirror it was (10055).
        if update && existing.config.mirror != station.mirror {
            return Err((kind, JsErrorCode::StreamMirrorNotUpdatable.error()));
        }
        station.schema = existing.config.schema;
        station.schema_version = existing.config.schema_version;
        station.dead_letter = existing.config.dead_letter;
    }
    let info = if update {
        engine.update_station(tenant, station).await
    } else {
        engine.create_station(tenant, station).await
    }
    .map_err(|e| (kind, api_error(&e)))?;
    let info = stream_info(&info);
    Ok(to_json(&if update {
        StreamInfoResponse::update(info)
    } else {
        StreamInfoResponse::create(info)
    }))
}

fn page<T>(items: Vec<T>, offset: u64, limit: u64) -> Vec<T> {
    items
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
}

fn names_for<E: Engine>(engine: &E, tenant: &TenantId, subject: &str) -> Vec<String> {
    if subject.is_empty() || subject == ">" {
        engine.station_names(tenant, None)
    } else {
        engine.station_names(tenant, Some(subject))
    }
}

fn stream_names<E: Engine>(engine: &E, tenant: &TenantId, body: &[u8]) -> Routed {
    let kind = response_type::STREAM_NAMES;
    let req: StreamNamesRequest = decode_optional_request(body).map_err(|e| (kind, e))?;
    let names = names_for(engine, tenant, &req.subject);
    let total = names.len() as u64;
    Ok(to_json(&StreamNamesResponse::new(
        total,
        req.offset,
        page(names, req.offset, NAMES_PAGE_LIMIT),
    )))
}

fn stream_list<E: Engine>(engine: &E, tenant: &TenantId, body: &[u8]) -> Routed {
    let kind = response_type::STREAM_LIST;
    let req: StreamNamesRequest = decode_optional_request(body).map_err(|e| (kind, e))?;
    let names = names_for(engine, tenant, &req.subject);
    let total = names.len() as u64;
    let infos = page(names, req.offset, LIST_PAGE_LIMIT)
        .into_iter()
        .filter_map(|n| engine.station_info(tenant, &n).ok())
        .map(|i| stream_info(&i))
        .collect();
    Ok(to_json(&StreamListResponse::new(total, req.offset, infos)))
}

async fn stream_purge<E: Engine>(engine: &E, tenant: &TenantId, name: &str, body: &[u8]) -> Routed {
    let kind = response_type::STREAM_PURGE;
    let req: StreamPurgeRequest = decode_optional_request(body).map_err(|e| (kind, e))?;
    req.validate().map_err(|e| (kind, e))?;
    let purge = Purge {
        filter: (!req.filter.is_empty()).then(|| req.filter.clone()),
        seq: (req.seq > 0).then_some(req.seq),
        keep: (req.keep > 0).then_some(req.keep),
    };
    let purged = engine
        .purge_station(tenant, name, purge)
        .await
        .map_err(|e| (kind, api_error(&e)))?;
    Ok(to_json(&StreamPurgeResponse::ok(purged)))
}

fn msg_get<E: Engine>(engine: &E, tenant: &TenantId, name: &str, body: &[u8]) -> Routed {
    let kind = response_type::STREAM_MSG_GET;
    let req: StreamMsgGetRequest = decode_request(body).map_err(|e| (kind, e))?;
    let query = match req.target().map_err(|e| (kind, e))? {
        MsgGetTarget::Sequence(seq) => MessageQuery::Seq(seq),
        MsgGetTarget::LastBySubject(s) => MessageQuery::LastBySubject(s.to_string()),
        MsgGetTarget::NextBySubject { subject, start_seq } => MessageQuery::NextBySubject {
            seq: start_seq,
            subject: subject.to_string(),
        },
    };
    let message = engine
        .get_message(tenant, name, query)
        .map_err(|e| (kind, api_error(&e)))?;
    Ok(to_json(&StreamMsgGetResponse::ok(stored_msg(&message))))
}
