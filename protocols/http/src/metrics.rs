//! Prometheus `GET /metrics`, in the text exposition format.
//!
//! Nothing is counted on a hot path for it: every scrape builds a fresh
//! [`prometheus::Registry`] from engine snapshots (server figures, the client list,
//! stations and their consumer groups, storage figures) and the process's own
//! `/proc` figures, and encodes it with [`prometheus::TextEncoder`]. Counters are
//! therefore the engine's own totals since start, read at scrape time.
//!
//! Stations and groups carry a `tenant` label. The route requires the API's
//! credentials when monitoring auth is on (`[http] monitoring_auth`, on by
//! default when the broker has credentials). The operators get every figure and
//! every tenant's stations; a tenant's user gets its tenant's alone: its
//! connections and their traffic by protocol, its stations and groups, and none
//! of the server-wide figures (totals, storage, the process).

use crate::process;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use junction_api::{ClientSnapshot, Engine, Protocol, StorageStats, TenantId};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Histogram, Metric, MetricFamily, MetricType};
use prometheus::{
    Counter, Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The alarms there are, shown at 0 while not raised (so that Alertmanager
/// rules see them resolve).
const ALARMS: [&str; 4] = [
    "memory_high",
    "storage_full",
    "storage_low",
    "tls_certificate_expiring",
];

/// Every metric name starts with this.
const PREFIX: &str = "junction";

/// The `/metrics` route, ready to merge into a router. It has no fallback; with
/// `require_credentials` it answers 401 without the API's credentials (when the
/// broker has any).
pub fn metrics_router<E: Engine>(engine: Arc<E>, require_credentials: bool) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics::<E>))
        .with_state(engine.clone());
    crate::monitor::behind_credentials(router, engine, require_credentials)
}

async fn metrics<E: Engine>(
    State(engine): State<Arc<E>>,
    auth: Option<axum::Extension<crate::api::Authenticated>>,
) -> Response {
    // A tenant's user sees its tenant's figures; the operators (and everyone,
    // when monitoring needs no credentials) see all.
    let scope = auth
        .filter(|a| !a.sees_every_tenant())
        .map(|a| a.0.0.tenant.clone());
    // Snapshots take engine locks and read /proc and the store's directory size:
    // keep that off the async workers.
    let encoded =
        tokio::task::spawn_blocking(move || scrape(engine.as_ref(), scope.as_ref())).await;
    match encoded {
        Ok(Ok(body)) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(prometheus::TEXT_FORMAT),
            )],
            body,
        )
            .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "metrics failed to encode");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "metrics scrape failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Nats => "nats",
        Protocol::Mqtt => "mqtt",
        Protocol::Http => "http",
        Protocol::WebSocket => "websocket",
        _ => "other",
    }
}

/// Every protocol label, so each series exists (at zero) from the first scrape.
const PROTOCOLS: [Protocol; 4] = [
    Protocol::Nats,
    Protocol::Mqtt,
    Protocol::Http,
    Protocol::WebSocket,
];

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace(PREFIX)
}

/// Builds and registers a metric in one step.
struct Builder<'a> {
    registry: &'a Registry,
}

impl Builder<'_> {
    fn register<C: Collector + Clone + 'static>(&self, c: C) -> prometheus::Result<C> {
        self.registry.register(Box::new(c.clone()))?;
        Ok(c)
    }

    fn gauge(&self, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
        let g = self.register(IntGauge::with_opts(opts(name, help))?)?;
        g.set(clamp(value));
        Ok(())
    }

    fn counter(&self, name: &str, help: &str, value: u64) -> prometheus::Result<()> {
        let c = self.register(IntCounter::with_opts(opts(name, help))?)?;
        c.inc_by(value);
        Ok(())
    }

    fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        self.register(IntGaugeVec::new(opts(name, help), labels)?)
    }

    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        self.register(IntCounterVec::new(opts(name, help), labels)?)
    }
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One scrape: every metric, encoded as Prometheus text.
/// The exposition: everything (`scope` none), or one tenant's figures.
fn scrape<E: Engine + ?Sized>(engine: &E, scope: Option<&TenantId>) -> prometheus::Result<String> {
    let registry = Registry::new();
    let b = Builder {
        registry: &registry,
    };
    if scope.is_none() {
        server_figures(engine, &b)?;
    }

    // Per protocol, summed over the clients connected now.
    let mut clients: Vec<ClientSnapshot> = engine.clients();
    if let Some(t) = scope {
        clients.retain(|c| c.tenant == *t);
    }
    let connections = b.gauge_vec(
        "connections",
        "Clients connected now, by protocol.",
        &["protocol"],
    )?;
    let per_protocol = [
        (
            "protocol_messages_in_total",
            "Messages published by the clients connected now, by protocol.",
        ),
        (
            "protocol_messages_out_total",
            "Messages delivered to the clients connected now, by protocol.",
        ),
        (
            "protocol_bytes_in_total",
            "Payload bytes published by the clients connected now, by protocol.",
        ),
        (
            "protocol_bytes_out_total",
            "Payload bytes delivered to the clients connected now, by protocol.",
        ),
    ]
    .map(|(name, help)| b.counter_vec(name, help, &["protocol"]));
    let [msgs_in, msgs_out, bytes_in, bytes_out] = per_protocol;
    let (msgs_in, msgs_out, bytes_in, bytes_out) = (msgs_in?, msgs_out?, bytes_in?, bytes_out?);
    for p in PROTOCOLS {
        let label = [protocol_label(p)];
        connections.with_label_values(&label);
        msgs_in.with_label_values(&label);
        msgs_out.with_label_values(&label);
        bytes_in.with_label_values(&label);
        bytes_out.with_label_values(&label);
    }
    for c in &clients {
        let label = [protocol_label(c.protocol)];
        // The broker's own clients are not connections; their traffic (HTTP
        // requests through `junction-http`) still counts for their protocol.
        if c.kind.is_connection() {
            connections.with_label_values(&label).inc();
        }
        msgs_in.with_label_values(&label).inc_by(c.in_msgs);
        msgs_out.with_label_values(&label).inc_by(c.out_msgs);
        bytes_in.with_label_values(&label).inc_by(c.in_bytes);
        bytes_out.with_label_values(&label).inc_by(c.out_bytes);
    }

    // Stations and consumer groups.
    let station_messages = b.gauge_vec(
        "station_messages",
        "Messages stored in a station.",
        &["tenant", "station"],
    )?;
    let station_bytes = b.gauge_vec(
        "station_bytes",
        "Bytes stored in a station.",
        &["tenant", "station"],
    )?;
    let station_last_seq = b.gauge_vec(
        "station_last_seq",
        "Sequence of a station's newest message.",
        &["tenant", "station"],
    )?;
    let tier_local_bytes = b.gauge_vec(
        "station_tier_local_bytes",
        "Bytes of a tiered station on local disk.",
        &["tenant", "station"],
    )?;
    let tier_remote_bytes = b.gauge_vec(
        "station_tier_remote_bytes",
        "Bytes of a tiered station's uploaded segments.",
        &["tenant", "station"],
    )?;
    let tier_segments = b.gauge_vec(
        "station_tier_segments",
        "Uploaded segments of a tiered station.",
        &["tenant", "station"],
    )?;
    let tier_lag = b.gauge_vec(
        "station_tier_upload_lag_messages",
        "Committed messages of a tiered station not yet uploaded.",
        &["tenant", "station"],
    )?;
    let tier_lag_secs = b.gauge_vec(
        "station_tier_upload_lag_seconds",
        "Age of a tiered station's oldest message not yet uploaded.",
        &["tenant", "station"],
    )?;
    let tier_cache_hits = b.counter_vec(
        "station_tier_cache_hits_total",
        "Reads of a tiered station's remote blocks served from the read cache.",
        &["tenant", "station"],
    )?;
    let tier_cache_misses = b.counter_vec(
        "station_tier_cache_misses_total",
        "Reads of a tiered station's remote blocks that went to S3.",
        &["tenant", "station"],
    )?;
    let tier_disk_cache_hits = b.counter_vec(
        "station_tier_disk_cache_hits_total",
        "Reads of a tiered station's remote blocks served from the on-disk cache (part of the cache hits).",
        &["tenant", "station"],
    )?;
    let compacted = b.counter_vec(
        "station_compacted_messages_total",
        "Messages a compacted station's compaction removed since the station was created.",
        &["tenant", "station"],
    )?;
    let group_labels = ["tenant", "station", "group"];
    let lag = b.gauge_vec(
        "consumer_group_lag",
        "Messages a consumer group has not yet been delivered (num_pending).",
        &group_labels,
    )?;
    let ack_pending = b.gauge_vec(
        "consumer_group_ack_pending",
        "Deliveries of a consumer group awaiting acknowledgement.",
        &group_labels,
    )?;
    let redelivered = b.gauge_vec(
        "consumer_group_redelivered",
        "Messages of a consumer group delivered more than once and not yet acknowledged.",
        &group_labels,
    )?;
    let tenants = match scope {
        Some(t) => vec![t.clone()],
        None => engine.tenants(),
    };
    for tenant in &tenants {
        for name in engine.station_names(tenant, None) {
            // A station deleted between the listing and here is skipped.
            let Ok(info) = engine.station_info(tenant, &name) else {
                continue;
            };
            let label = [tenant.0.as_ref(), name.as_str()];
            station_messages
                .with_label_values(&label)
                .set(clamp(info.state.messages));
            station_bytes
                .with_label_values(&label)
                .set(clamp(info.state.bytes));
            station_last_seq
                .with_label_values(&label)
                .set(clamp(info.state.last_seq));
            if info.config.compact.is_some() {
                compacted
                    .with_label_values(&label)
                    .inc_by(info.state.compacted);
            }
            if let Some(t) = &info.state.tier {
                tier_local_bytes
                    .with_label_values(&label)
                    .set(clamp(t.local_bytes));
                tier_remote_bytes
                    .with_label_values(&label)
                    .set(clamp(t.remote_bytes));
                tier_segments
                    .with_label_values(&label)
                    .set(clamp(t.segments));
                tier_lag
                    .with_label_values(&label)
                    .set(clamp(t.upload_lag_messages));
                tier_lag_secs
                    .with_label_values(&label)
                    .set(clamp(t.upload_lag_ms / 1000));
                tier_cache_hits
                    .with_label_values(&label)
                    .inc_by(t.cache_hits);
                tier_cache_misses
                    .with_label_values(&label)
                    .inc_by(t.cache_misses);
                tier_disk_cache_hits
                    .with_label_values(&label)
                    .inc_by(t.disk_cache_hits);
            }
            for group in engine.group_names(tenant, &name).unwrap_or_default() {
                let Ok(g) = engine.group_info(tenant, &name, &group) else {
                    continue;
                };
                let labels = [tenant.0.as_ref(), name.as_str(), group.as_str()];
                lag.with_label_values(&labels)
                    .set(clamp(g.state.num_pending));
                ack_pending
                    .with_label_values(&labels)
                    .set(clamp(g.state.num_ack_pending));
                redelivered
                    .with_label_values(&labels)
                    .set(clamp(g.state.num_redelivered));
            }
        }
    }

    if scope.is_none() {
        process_figures(engine, &b, &registry)?;
    }
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out)?;
    String::from_utf8(out).map_err(|e| prometheus::Error::Msg(e.to_string()))
}

/// The store's and the process's figures (the operators').
fn process_figures<E: Engine + ?Sized>(
    engine: &E,
    b: &Builder<'_>,
    registry: &Registry,
) -> prometheus::Result<()> {
    // Alarms, for Alertmanager: 1 while raised.
    let alarms = b.gauge_vec(
        "alarm_active",
        "1 while an alarm is raised (storage_low, storage_full: stored writes fenced on a nearly full disk; memory_high; tls_certificate_expiring; webhook_failing:<name>).",
        &["name"],
    )?;
    for name in ALARMS {
        alarms.with_label_values(&[name]).set(0);
    }
    for (name, _) in engine.alarms() {
        alarms.with_label_values(&[name.as_str()]).set(1);
    }

    // System events.
    let (dropped, recorded) = engine.event_counts();
    b.counter(
        "events_dropped_total",
        "System events dropped because the event writer was behind (never a publish).",
        dropped,
    )?;
    b.counter(
        "events_recorded_total",
        "System events recorded since start.",
        recorded,
    )?;

    // Storage.
    let storage = engine.storage_stats();
    b.gauge(
        "storage_disk_bytes",
        "Disk space the store uses.",
        storage.disk_bytes,
    )?;
    b.gauge(
        "storage_log_table_bytes",
        "Disk space of the message log's tables (the part of storage_disk_bytes that deletes, purges and compaction give back; the journal is not in it).",
        storage.log_table_bytes,
    )?;
    b.counter(
        "storage_corrupt_records_total",
        "Stored records found corrupt (checksum mismatch or undecodable) on read since start.",
        storage.corrupt_records,
    )?;
    if let Some(t) = &storage.tier {
        for (name, help, v) in [
            (
                "tier_uploads_total",
                "Segments uploaded to the remote tier.",
                t.uploads,
            ),
            (
                "tier_upload_errors_total",
                "Segment upload attempts that failed (each is retried).",
                t.upload_errors,
            ),
            (
                "tier_uploaded_bytes_total",
                "Bytes uploaded to the remote tier.",
                t.uploaded_bytes,
            ),
            (
                "tier_cache_hits_total",
                "Remote block reads served from a cache (memory or disk).",
                t.cache_hits,
            ),
            (
                "tier_cache_misses_total",
                "Remote block reads that went to the bucket.",
                t.cache_misses,
            ),
            (
                "tier_get_requests_total",
                "GET requests sent to the bucket for reads (one read-ahead GET fetches several blocks).",
                t.get_requests,
            ),
            (
                "tier_read_errors_total",
                "Remote reads that failed (unavailable or corrupt).",
                t.read_errors,
            ),
            (
                "tier_corrupt_total",
                "Remote segment objects or blocks that failed their checks.",
                t.corrupt,
            ),
            (
                "tier_manifest_writes_total",
                "Station manifests written to the bucket.",
                t.manifest_writes,
            ),
            (
                "tier_manifest_errors_total",
                "Station manifest writes that failed (retried on the next tick).",
                t.manifest_errors,
            ),
            (
                "tier_manifest_conflicts_total",
                "Station manifest writes refused because another writer changed the object.",
                t.manifest_conflicts,
            ),
            (
                "tier_segments_restored_total",
                "Segments restored into a station's remote index from its manifest.",
                t.segments_restored,
            ),
            (
                "tier_orphans_removed_total",
                "Objects the tier reconciler deleted (uploads no index took, dropped segments whose delete failed, leftovers of deleted stations).",
                t.orphans_removed,
            ),
        ] {
            b.counter(name, help, v)?;
        }
        if let Some(d) = &t.disk_cache {
            b.gauge(
                "tier_disk_cache_bytes",
                "Bytes of remote blocks and footers in the on-disk cache.",
                d.bytes,
            )?;
            b.gauge(
                "tier_disk_cache_files",
                "Files in the on-disk cache.",
                d.files,
            )?;
            b.gauge(
                "tier_disk_cache_capacity_bytes",
                "The on-disk cache's bound (tier.disk_cache_bytes).",
                d.capacity_bytes,
            )?;
            b.gauge(
                "tier_disk_cache_queued_bytes",
                "Bytes read from S3 waiting to be written to the on-disk cache.",
                d.queued_bytes,
            )?;
            for (name, help, v) in [
                (
                    "tier_disk_cache_hits_total",
                    "Remote block reads served from the on-disk cache (part of the cache hits).",
                    d.hits,
                ),
                (
                    "tier_disk_cache_corrupt_total",
                    "On-disk cache files that failed their checksum (deleted and read from S3).",
                    d.corrupt,
                ),
                (
                    "tier_disk_cache_writes_total",
                    "Files written to the on-disk cache.",
                    d.writes,
                ),
                (
                    "tier_disk_cache_evictions_total",
                    "On-disk cache files removed to stay within its bound.",
                    d.evictions,
                ),
                (
                    "tier_disk_cache_errors_total",
                    "On-disk cache files that could not be written, read or removed.",
                    d.errors,
                ),
            ] {
                b.counter(name, help, v)?;
            }
        }
    }
    registry.register(Box::new(FsyncHistogram::new(storage)?))?;

    // The process.
    b.gauge(
        "resident_memory_bytes",
        "Resident memory of the process.",
        process::rss_bytes(),
    )?;
    let cpu = b.register(Counter::with_opts(opts(
        "cpu_seconds_total",
        "User and system CPU time of the process.",
    ))?)?;
    cpu.inc_by(process::cpu_seconds().max(0.0));
    Ok(())
}

/// The server-wide totals (the operators').
fn server_figures<E: Engine + ?Sized>(engine: &E, b: &Builder<'_>) -> prometheus::Result<()> {
    let server = engine.server_snapshot();
    b.counter(
        "total_connections",
        "Clients connected since the server started.",
        server.total_connections,
    )?;
    b.counter(
        "messages_in_total",
        "Messages published into the server.",
        server.in_msgs,
    )?;
    b.counter(
        "messages_out_total",
        "Messages delivered by the server.",
        server.out_msgs,
    )?;
    b.counter(
        "bytes_in_total",
        "Payload bytes published into the server.",
        server.in_bytes,
    )?;
    b.counter(
        "bytes_out_total",
        "Payload bytes delivered by the server.",
        server.out_bytes,
    )?;
    b.counter(
        "slow_consumer_disconnects_total",
        "Clients disconnected as slow consumers.",
        server.slow_consumers,
    )?;
    b.counter(
        "tenant_storage_refused_total",
        "Messages not stored because their tenant's stations would have held more than its max_file or max_memory.",
        server.tenant_storage_refused,
    )?;
    b.gauge("subscriptions", "Live subscriptions.", server.subscriptions)?;

    Ok(())
}

/// `junction_fsync_seconds`: the store's fsync latency histogram, from buckets the
/// storage layer has already counted.
struct FsyncHistogram {
    desc: Desc,
    stats: StorageStats,
}

impl FsyncHistogram {
    fn new(stats: StorageStats) -> prometheus::Result<Self> {
        let desc = Desc::new(
            format!("{PREFIX}_fsync_seconds"),
            "Latency of the store's fsyncs (group commits, interval syncs, metadata writes)."
                .to_string(),
            Vec::new(),
            HashMap::new(),
        )?;
        Ok(FsyncHistogram { desc, stats })
    }
}

impl Collector for FsyncHistogram {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Bounds are ascending and unique; a BTreeMap keyed by their bits keeps
        // that even if a caller hands them over unsorted.
        let ordered: BTreeMap<u64, (f64, u64)> = self
            .stats
            .fsync_buckets
            .iter()
            .filter(|(le, _)| le.is_finite() && *le >= 0.0)
            .map(|&(le, n)| (le.to_bits(), (le, n)))
            .collect();
        let buckets: Vec<Bucket> = ordered
            .into_values()
            .map(|(le, n)| {
                let mut b = Bucket::default();
                b.set_upper_bound(le);
                b.set_cumulative_count(n);
                b
            })
            .collect();
        let mut histogram = Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_sum(self.stats.fsync_sum_secs);
        histogram.set_sample_count(self.stats.fsync_count);
        let mut metric = Metric::default();
        metric.set_histogram(histogram);
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(MetricType::HISTOGRAM);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn fsync_histogram_is_encoded_as_a_prometheus_histogram() {
        let registry = Registry::new();
        let stats = StorageStats {
            fsync_buckets: vec![(0.001, 2), (0.01, 5)],
            fsync_sum_secs: 0.02,
            fsync_count: 6,
            disk_bytes: 0,
            log_table_bytes: 0,
            corrupt_records: 0,
            tier: None,
        };
        registry
            .register(Box::new(FsyncHistogram::new(stats).unwrap()))
            .unwrap();
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("# TYPE junction_fsync_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("junction_fsync_seconds_bucket{le=\"0.001\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("junction_fsync_seconds_bucket{le=\"0.01\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("junction_fsync_seconds_bucket{le=\"+Inf\"} 6"),
            "{text}"
        );
        assert!(text.contains("junction_fsync_seconds_sum 0.02"), "{text}");
        assert!(text.contains("junction_fsync_seconds_count 6"), "{text}");
    }
}
