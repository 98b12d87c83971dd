//! The notification centre: webhooks fed from the system events stations
//! (`[[notifications.webhooks]]`, docs/operations.md).
//!
//! Each webhook is a durable consumer group (`webhook-<name>`) on the
//! `$sys_events` station of every tenant it covers, so an event recorded before
//! a restart and not yet delivered is delivered after it (at least once, with
//! the same `Junction-Event-Id`). One task per webhook delivers in order:
//! - a POST per event, JSON (the event's one shape) or Slack (`{"text": ...}`),
//!   signed with `Junction-Signature: sha256=<HMAC of the body>` when the
//!   webhook has a secret;
//! - a failed POST (no answer, 5xx, 429, 408) is retried with exponential
//!   backoff and jitter, honouring `Retry-After`; another 4xx is not retried;
//! - after `max_attempts` the event is terminated in its group, so it goes to
//!   the dead-letter station `$dls_$sys_events`, and the alarm
//!   `webhook_failing:<name>` is raised (cleared by the next success);
//! - past `max_per_minute`, events are coalesced into one digest POST
//!   ("12 client_disconnected in 10 s").
//!
//! Delivery runs on its own tasks: a hung or failing receiver never slows a
//! publish (events are recorded through a bounded channel, and this side only
//! reads the stations).
//!
//! Webhooks come from two places: the configuration file (read-only over the
//! API, changed by a reload) and the HTTP API (`centre.rs`: kept in the
//! store's metadata as `webhook/<name>`, back after a restart). A name the file
//! defines is the file's: a webhook made over the API with that name is left
//! out while the file has it.

mod centre;

use crate::engine::StationEngine;
use hmac::{Hmac, Mac};
use junction_api::{
    AckKind, Admin as _, Broker as _, DeliverPolicy, Delivered, EVENTS_STATION, FetchEnd,
    FetchRequest, FetchSink, GroupConfig, Severity, SystemEvent, SystemEventKind, TenantId,
    WebhookHealth,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// `[notifications]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Notifications {
    /// `[[notifications.webhooks]]`.
    pub webhooks: Vec<WebhookConfig>,
}

/// How a webhook's body is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// The event as JSON (docs/operations.md's shape).
    #[default]
    Json,
    /// A Slack incoming webhook's `{"text": "..."}`.
    Slack,
}

/// One `[[notifications.webhooks]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the webhook (its consumer group is `webhook-<name>`, its alarm
    /// `webhook_failing:<name>`): letters, digits, `-` and `_`.
    pub name: String,
    /// Where events are POSTed (`http://` or `https://`).
    pub url: String,
    /// Only these event kinds (an alarm event matches its alarm's name too);
    /// empty: every kind.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only these tenants' events; empty: every tenant's.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Only events at least this severe: `info` (default), `warning`, `error`,
    /// `critical`.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// `json` (default) or `slack`.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra request headers (an `Authorization`, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Signs each body: `Junction-Signature: sha256=<hex HMAC-SHA256>`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Attempts per event before it goes to the dead-letter station
    /// [default: 8].
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// POSTs per minute at most; events past it are coalesced into one digest
    /// [default: 60].
    #[serde(default)]
    pub max_per_minute: Option<u32>,
    /// How long one POST may take [default: 10s].
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// The first retry's delay; each next one doubles, up to `retry_max`
    /// [default: 1s].
    #[serde(default, with = "humantime_serde")]
    pub retry_base: Option<Duration>,
    /// The longest wait between two attempts [default: 5m]: how soon a
    /// receiver that is back gets what waited for it.
    #[serde(default, with = "humantime_serde")]
    pub retry_max: Option<Duration>,
}

impl WebhookConfig {
    /// Checks what serde cannot: the name, the URL, kinds and severity.
    pub fn validate(&self) -> Result<(), String> {
        let what = format!("notifications.webhooks '{}'", self.name);
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "{what}: name must be 1 to 64 letters, digits, '-' or '_'"
            ));
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| format!("{what}: url '{}' is not a URL: {e}", self.url))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(format!("{what}: url must be http:// or https://"));
        }
        for k in &self.kinds {
            if SystemEventKind::parse(k).is_none() && !is_alarm_name(k) {
                return Err(format!(
                    "{what}: unknown event kind '{k}' (docs/operations.md lists them)"
                ));
            }
        }
        if let Some(s) = &self.min_severity
            && Severity::parse(s).is_none()
        {
            return Err(format!(
                "{what}: min_severity '{s}' is not info, warning, error or critical"
            ));
        }
        if self.max_attempts == Some(0) || self.max_per_minute == Some(0) {
            return Err(format!(
                "{what}: max_attempts and max_per_minute must be at least 1"
            ));
        }
        if let Some(max) = self.retry_max
            && max < self.retry_base.unwrap_or(Duration::from_secs(1))
        {
            return Err(format!(
                "{what}: retry_max must be at least retry_base (1s by default)"
            ));
        }
        for (k, v) in &self.headers {
            reqwest::header::HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("{what}: '{k}' is not a header name"))?;
            reqwest::header::HeaderValue::from_str(v)
                .map_err(|_| format!("{what}: header '{k}' has a value HTTP cannot carry"))?;
        }
        Ok(())
    }

    fn wants(&self, e: &SystemEvent) -> bool {
        // Never its own failures: a failing receiver would feed itself.
        if e.details.get("webhook").and_then(|w| w.as_str()) == Some(self.name.as_str()) {
            return false;
        }
        let min = self
            .min_severity
            .as_deref()
            .and_then(Severity::parse)
            .unwrap_or(Severity::Info);
        e.severity >= min
            && (self.kinds.is_empty()
                || self.kinds.iter().any(|k| {
                    k == e.kind.as_str() || e.alarm.as_ref().is_some_and(|a| a.name == *k)
                }))
    }

    fn covers(&self, tenant: &TenantId) -> bool {
        self.tenants.is_empty() || self.tenants.iter().any(|t| t.as_str() == &*tenant.0)
    }

    fn group(&self) -> String {
        format!("webhook-{}", self.name)
    }
}

/// Alarm names webhooks may filter on besides event kinds.
fn is_alarm_name(k: &str) -> bool {
    matches!(
        k,
        "storage_full" | "storage_low" | "tls_certificate_expiring" | "memory_high"
    ) || k.starts_with("webhook_failing")
}

impl Notifications {
    /// Checks every webhook, and that names are unique.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for w in &self.webhooks {
            w.validate()?;
            if !seen.insert(&w.name) {
                return Err(format!(
                    "notifications.webhooks: the name '{}' is used twice",
                    w.name
                ));
            }
        }
        Ok(())
    }
}

/// The running webhooks.
pub struct Notifier {
    /// Itself, for the futures of the API's edits.
    me: Weak<Notifier>,
    engine: Weak<StationEngine>,
    http: reqwest::Client,
    /// The configuration file's webhooks.
    file: parking_lot::Mutex<Vec<WebhookConfig>>,
    /// The webhooks made over the API (kept in the store), by name.
    stored: parking_lot::Mutex<BTreeMap<String, WebhookConfig>>,
    /// One API edit at a time (held on a blocking thread, never across an
    /// `.await`).
    edits: parking_lot::Mutex<()>,
    running: parking_lot::Mutex<Vec<(WebhookConfig, CancellationToken)>>,
    health: Arc<parking_lot::Mutex<BTreeMap<String, WebhookHealth>>>,
    shutdown: CancellationToken,
}

impl Notifier {
    /// Starts `config`'s webhooks and those made over the API before the last
    /// stop; they stop with `shutdown`.
    pub fn start(
        engine: Weak<StationEngine>,
        config: &Notifications,
        shutdown: CancellationToken,
    ) -> Arc<Notifier> {
        let stored = engine
            .upgrade()
            .map(|e| centre::load_stored(&e))
            .unwrap_or_default();
        let notifier = Arc::new_cyclic(|me| Notifier {
            me: me.clone(),
            engine,
            http: reqwest::Client::builder()
                .user_agent(concat!("junction/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            file: parking_lot::Mutex::new(Vec::new()),
            stored: parking_lot::Mutex::new(stored),
            edits: parking_lot::Mutex::new(()),
            running: parking_lot::Mutex::new(Vec::new()),
            health: Arc::default(),
            shutdown,
        });
        notifier.apply(config);
        notifier
    }

    /// Runs `config`'s webhooks (and those made over the API) from now on:
    /// new ones start, removed ones stop, changed ones restart (their groups
    /// keep their positions).
    pub fn apply(&self, config: &Notifications) {
        *self.file.lock() = config.webhooks.clone();
        self.run_wanted();
    }

    /// Every webhook that should run, with where it is defined: the file's,
    /// then those made over the API whose names the file does not use.
    fn wanted(&self) -> Vec<(WebhookConfig, junction_api::WebhookSource)> {
        let file = self.file.lock().clone();
        let mut all: Vec<_> = file
            .iter()
            .map(|w| (w.clone(), junction_api::WebhookSource::Config))
            .collect();
        for (name, w) in self.stored.lock().iter() {
            if !file.iter().any(|f| f.name == *name) {
                all.push((w.clone(), junction_api::WebhookSource::Api));
            }
        }
        all
    }

    /// Starts and stops webhooks so that [`Notifier::wanted`] run.
    fn run_wanted(&self) {
        let wanted: Vec<WebhookConfig> = self.wanted().into_iter().map(|(w, _)| w).collect();
        let mut running = self.running.lock();
        running.retain(|(w, token)| {
            let keep = wanted.contains(w);
            if !keep {
                token.cancel();
            }
            keep
        });
        self.health
            .lock()
            .retain(|name, _| wanted.iter().any(|w| w.name == *name));
        for w in &wanted {
            if running.iter().any(|(r, _)| r == w) {
                continue;
            }
            let token = self.shutdown.child_token();
            running.push((w.clone(), token.clone()));
            let sink = Sink {
                config: w.clone(),
                engine: self.engine.clone(),
                http: self.http.clone(),
                health: self.health.clone(),
                sent: VecDeque::new(),
                started: std::time::SystemTime::now(),
            };
            tracing::info!(webhook = %w.name, url = %w.url, "webhook started");
            tokio::spawn(sink.run(token));
        }
    }

    /// Every webhook's health, by name (`pending` is left at 0 here:
    /// [`junction_api::NotificationCentre::webhooks`] reads it).
    pub fn health(&self) -> BTreeMap<String, WebhookHealth> {
        self.health.lock().clone()
    }
}

/// A [`FetchSink`] that hands deliveries to an async task.
struct ToTask(mpsc::UnboundedSender<Option<Delivered>>);

impl FetchSink for ToTask {
    fn deliver(&self, delivered: &Delivered) -> bool {
        self.0.send(Some(delivered.clone())).is_ok()
    }
    fn end(&self, _: FetchEnd) {
        let _ = self.0.send(None);
    }
    fn heartbeat(&self) {}
    fn alive(&self) -> bool {
        !self.0.is_closed()
    }
}

/// One event waiting to go out, with where to ack it.
struct Out {
    tenant: TenantId,
    seq: u64,
    event: SystemEvent,
}

struct Sink {
    config: WebhookConfig,
    engine: Weak<StationEngine>,
    http: reqwest::Client,
    health: Arc<parking_lot::Mutex<BTreeMap<String, WebhookHealth>>>,
    /// When the last POSTs went out (for `max_per_minute`).
    sent: VecDeque<Instant>,
    /// When this webhook started.
    started: std::time::SystemTime,
}

/// How a POST went.
enum Posted {
    Ok,
    /// Retry, at the earliest after this (a `Retry-After`).
    Retry(String, Option<Duration>),
    /// Do not retry (another 4xx).
    Refused(String),
}

impl Sink {
    async fn run(mut self, stop: CancellationToken) {
        let mut idle = Duration::from_millis(100);
        loop {
            let batch = self.collect(&stop).await;
            if batch.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(idle) => {}
                }
                idle = (idle * 2).min(Duration::from_millis(500));
                continue;
            }
            idle = Duration::from_millis(100);
            if !self.deliver(batch, &stop).await {
                return;
            }
        }
    }

    /// The events waiting in every covered tenant's station (at most 100),
    /// oldest first per tenant; those this webhook does not want are acked.
    async fn collect(&mut self, stop: &CancellationToken) -> Vec<Out> {
        let mut out = Vec::new();
        let Some(engine) = self.engine.upgrade() else {
            return out;
        };
        for tenant in engine.events_tenants() {
            if !self.config.covers(&tenant) {
                continue;
            }
            let group = self.config.group();
            if engine.group_info(&tenant, EVENTS_STATION, &group).is_err() {
                if stop.is_cancelled() {
                    // Stopped (a webhook deleted over the API has its groups
                    // deleted): never make its group again.
                    return out;
                }
                let config = GroupConfig {
                    name: group.clone(),
                    description: Some(format!("webhook '{}'", self.config.name)),
                    // A new webhook gets what happened since it started (not
                    // the station's history): a tenant whose events station
                    // appears later loses nothing to the group being made
                    // after its first events.
                    deliver_policy: DeliverPolicy::ByStartTime(self.started),
                    // The webhook retries by itself and marks what it retries
                    // in progress before each wait (at most 10 min, a capped
                    // Retry-After): the group redelivers only what a stopped
                    // or restarted webhook left unanswered, 11 min later.
                    ack_wait: Duration::from_secs(660),
                    max_ack_pending: 1000,
                    ..GroupConfig::default()
                };
                if let Err(e) = engine.create_group(&tenant, EVENTS_STATION, config).await {
                    tracing::warn!(webhook = %self.config.name, tenant = %tenant.0, error = %e, "webhook's group not made");
                    continue;
                }
            }
            let (tx, mut rx) = mpsc::unbounded_channel();
            let request = FetchRequest {
                batch: 100,
                max_bytes: 0,
                expires: None,
                no_wait: true,
                idle_heartbeat: None,
                pull_request: false,
            };
            if engine
                .fetch(
                    &tenant,
                    EVENTS_STATION,
                    &group,
                    request,
                    Arc::new(ToTask(tx)),
                )
                .is_err()
            {
                continue;
            }
            while let Some(Some(d)) = rx.recv().await {
                let seq = d.message.seq;
                match SystemEvent::from_json(seq, &d.message.payload) {
                    Some(event) if self.config.wants(&event) => out.push(Out {
                        tenant: tenant.clone(),
                        seq,
                        event,
                    }),
                    _ => self.ack(&tenant, seq, AckKind::Ack),
                }
            }
        }
        out
    }

    fn ack(&self, tenant: &TenantId, seq: u64, kind: AckKind) {
        let Some(engine) = self.engine.upgrade() else {
            return;
        };
        if let Err(e) = engine.ack(tenant, EVENTS_STATION, &self.config.group(), seq, kind) {
            tracing::warn!(webhook = %self.config.name, seq, error = %e, "webhook ack failed");
        }
    }

    /// Delivers `batch`: one POST per event while under `max_per_minute`, the
    /// rest as one digest. False when stopped.
    async fn deliver(&mut self, batch: Vec<Out>, stop: &CancellationToken) -> bool {
        let per_minute = self.config.max_per_minute.unwrap_or(60) as usize;
        let now = Instant::now();
        while self
            .sent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            self.sent.pop_front();
        }
        let room = per_minute.saturating_sub(self.sent.len());
        if batch.len() <= room {
            for out in batch {
                if !self.deliver_one(vec![out], stop).await {
                    return false;
                }
            }
            return true;
        }
        if room == 0 {
            // Wait for the oldest POST of the minute to age out, then send
            // everything waiting as one digest.
            let wait = self.sent.front().map_or(Duration::ZERO, |t| {
                Duration::from_secs(60).saturating_sub(t.elapsed())
            });
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            return self.deliver_one(batch, stop).await;
        }
        let mut batch = batch;
        let rest = batch.split_off(room.saturating_sub(1));
        for out in batch {
            if !self.deliver_one(vec![out], stop).await {
                return false;
            }
        }
        self.deliver_one(rest, stop).await
    }

    /// POSTs `events` (one, or a digest of several) until it is taken,
    /// refused, or out of attempts; then acks (or terminates) each.
    async fn deliver_one(&mut self, events: Vec<Out>, stop: &CancellationToken) -> bool {
        let body = self.body(&events);
        let ids: Vec<String> = events.iter().map(event_id).collect();
        let max = self.config.max_attempts.unwrap_or(8);
        let base = self.config.retry_base.unwrap_or(Duration::from_secs(1));
        let mut attempt = 1;
        let outcome = loop {
            let posted = tokio::select! {
                _ = stop.cancelled() => return false,
                p = self.post(&body, &ids, attempt) => p,
            };
            let (why, after) = match posted {
                Posted::Ok => break Ok(()),
                Posted::Refused(why) => break Err(why),
                Posted::Retry(why, after) => (why, after),
            };
            self.note_failure(&why);
            if attempt >= max {
                break Err(format!("{why} (after {attempt} attempts)"));
            }
            let backoff = base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(self.config.retry_max.unwrap_or(Duration::from_secs(300)));
            let jitter = rand::random_range(0.5..=1.0);
            let wait = after.unwrap_or(Duration::ZERO).max(backoff.mul_f64(jitter));
            tracing::debug!(webhook = %self.config.name, attempt, ?wait, "webhook retry: {why}");
            for e in &events {
                self.ack(&e.tenant, e.seq, AckKind::InProgress);
            }
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(wait) => {}
            }
            attempt += 1;
        };
        self.sent.push_back(Instant::now());
        match outcome {
            Ok(()) => {
                for e in &events {
                    self.ack(&e.tenant, e.seq, AckKind::Ack);
                }
                self.health
                    .lock()
                    .entry(self.config.name.clone())
                    .or_default()
                    .delivered += events.len() as u64;
                if let Some(engine) = self.engine.upgrade() {
                    engine.clear_alarm(&format!("webhook_failing:{}", self.config.name));
                }
            }
            Err(why) => {
                tracing::warn!(webhook = %self.config.name, url = %self.config.url, events = events.len(), "webhook gave up: {why}; the events go to the dead-letter station");
                for e in &events {
                    self.ack(
                        &e.tenant,
                        e.seq,
                        AckKind::Term(Some(format!("webhook '{}': {why}", self.config.name))),
                    );
                }
                {
                    let mut health = self.health.lock();
                    let h = health.entry(self.config.name.clone()).or_default();
                    h.dead_lettered += events.len() as u64;
                    h.last_error = Some(why.clone());
                }
                if let Some(engine) = self.engine.upgrade() {
                    engine.webhook_gave_up(
                        &self.config.name,
                        &format!(
                            "webhook '{}' gave up on {} event(s): {why}",
                            self.config.name,
                            events.len()
                        ),
                    );
                }
            }
        }
        true
    }

    fn note_failure(&self, why: &str) {
        let mut health = self.health.lock();
        let h = health.entry(self.config.name.clone()).or_default();
        h.failed_attempts += 1;
        h.last_error = Some(why.to_string());
    }

    async fn post(&self, body: &[u8], ids: &[String], attempt: u32) -> Posted {
        let request = post_request(&self.http, &self.config, body, ids, attempt);
        match request.send().await {
            Err(e) => Posted::Retry(format!("POST {} failed: {e}", self.config.url), None),
            Ok(r) => {
                let status = r.status();
                if status.is_success() {
                    return Posted::Ok;
                }
                let why = format!("POST {} answered {status}", self.config.url);
                let retry_after = r
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| Duration::from_secs(s.min(600)));
                if status.is_server_error()
                    || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                    || status == reqwest::StatusCode::REQUEST_TIMEOUT
                {
                    Posted::Retry(why, retry_after)
                } else {
                    Posted::Refused(why)
                }
            }
        }
    }

    /// The body: the event, or a digest of several.
    fn body(&self, events: &[Out]) -> Vec<u8> {
        body(self.config.format, events)
    }
}

/// A webhook's POST of `body` (events `ids`), as every delivery is made: its
/// timeout, `Junction-Event-Id`, `Junction-Delivery-Attempt`, signature and
/// headers.
fn post_request(
    http: &reqwest::Client,
    config: &WebhookConfig,
    body: &[u8],
    ids: &[String],
    attempt: u32,
) -> reqwest::RequestBuilder {
    let mut request = http
        .post(&config.url)
        .timeout(config.timeout.unwrap_or(Duration::from_secs(10)))
        .header("Content-Type", "application/json")
        .header("Junction-Event-Id", ids.join(","))
        .header("Junction-Delivery-Attempt", attempt.to_string());
    if let Some(secret) = &config.secret {
        request = request.header("Junction-Signature", signature(secret, body));
    }
    for (k, v) in &config.headers {
        request = request.header(k.as_str(), v.as_str());
    }
    request.body(body.to_vec())
}

/// A webhook's body in `format`: the event, or a digest of several.
fn body(format: WebhookFormat, events: &[Out]) -> Vec<u8> {
    let value = match (format, events) {
        (WebhookFormat::Json, [one]) => with_id(one),
        (WebhookFormat::Json, many) => serde_json::json!({
            "digest": {"count": many.len(), "summary": summary(many)},
            "events": many.iter().map(with_id).collect::<Vec<_>>(),
        }),
        (WebhookFormat::Slack, [one]) => serde_json::json!({"text": slack_line(&one.event)}),
        (WebhookFormat::Slack, many) => {
            let mut text = format!("*{}*", summary(many));
            for o in many.iter().take(20) {
                text.push('\n');
                text.push_str(&slack_line(&o.event));
            }
            serde_json::json!({ "text": text })
        }
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

fn with_id(o: &Out) -> serde_json::Value {
    let mut v = o.event.to_json();
    v["event_id"] = serde_json::Value::from(event_id(o));
    v
}

/// An event's id across nodes and tenants: `<node>/<tenant>/<seq>`.
fn event_id(o: &Out) -> String {
    if o.event.kind == SystemEventKind::Test {
        // Not stored, so no sequence: each test gets its own id all the same.
        return format!("{}/{}/test-{}", o.event.node, o.tenant.0, o.event.time_ms);
    }
    format!("{}/{}/{}", o.event.node, o.tenant.0, o.seq)
}

/// "12 client_disconnected, 3 schema_violation in 10 s".
fn summary(events: &[Out]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for o in events {
        *counts.entry(o.event.kind.as_str()).or_default() += 1;
    }
    let first = events.iter().map(|o| o.event.time_ms).min().unwrap_or(0);
    let last = events.iter().map(|o| o.event.time_ms).max().unwrap_or(0);
    let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "{} in {} s",
        parts.join(", "),
        (last.saturating_sub(first)).div_ceil(1000).max(1)
    )
}

fn slack_line(e: &SystemEvent) -> String {
    let station = e
        .station
        .as_deref()
        .map(|s| format!(" station `{s}`"))
        .unwrap_or_default();
    format!(
        "[{}] {} (tenant `{}`{station}): {}",
        e.severity.as_str(),
        e.kind.as_str(),
        e.tenant,
        e.message
    )
}

/// `sha256=<hex HMAC-SHA256 of body>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut hex = String::with_capacity(7 + bytes.len() * 2);
    hex.push_str("sha256=");
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(toml: &str) -> Result<WebhookConfig, String> {
        let w: WebhookConfig = figment::Figment::from(
            <figment::providers::Toml as figment::providers::Format>::string(toml),
        )
        .extract()
        .map_err(|e| e.to_string())?;
        w.validate().map(|()| w)
    }

    #[test]
    fn webhooks_are_checked() {
        assert!(hook("name = 'ops'\nurl = 'http://127.0.0.1:9/x'").is_ok());
        assert!(hook("name = 'a b'\nurl = 'http://x/'").is_err());
        assert!(hook("name = 'a'\nurl = 'ftp://x/'").is_err());
        assert!(hook("name = 'a'\nurl = 'not a url'").is_err());
        assert!(hook("name = 'a'\nurl = 'http://x/'\nkinds = ['nope']").is_err());
        assert!(hook("name = 'a'\nurl = 'http://x/'\nkinds = ['storage_low']").is_ok());
        assert!(hook("name = 'a'\nurl = 'http://x/'\nmin_severity = 'loud'").is_err());
        assert!(hook("name = 'a'\nurl = 'http://x/'\nmax_attempts = 0").is_err());
        assert!(hook("name = 'a'\nurl = 'http://x/'\nsurprise = 1").is_err());
    }

    #[test]
    fn the_signature_is_rfc_2104_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_webhook_filters_by_kind_severity_and_never_takes_its_own_failures() {
        let w = hook("name = 'ops'\nurl = 'http://x/'\nmin_severity = 'warning'").unwrap();
        let e = SystemEvent::new(SystemEventKind::SchemaViolation, "bad".into());
        assert!(w.wants(&e));
        assert!(!w.wants(&SystemEvent::new(
            SystemEventKind::ClientConnected,
            "hi".into()
        )));
        let mut own = SystemEvent::new(SystemEventKind::WebhookFailed, "x".into());
        own.details = serde_json::json!({"webhook": "ops"});
        assert!(!w.wants(&own));
        own.details = serde_json::json!({"webhook": "other"});
        assert!(w.wants(&own));
    }
}
