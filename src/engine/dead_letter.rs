//! Dead letters: copies of failed messages in a station's dead-letter station
//! (`$dls_<station>`), the NATS consumer advisories, and resend tasks.
//!
//! What lands in a DLS (when the station's `dead_letter` policy says so):
//! - a message a group delivered `max_deliver` times without an ack;
//! - a message a member terminated;
//! - a publish the station's schema refused (it was never stored in the station).
//!
//! Each is a **copy** (retention of the source cannot break it), on subject
//! `$dls.<station>.<original subject>`, with the original headers (minus the ones
//! that steer storage: `Nats-Msg-Id`, `Nats-Expected-*`, `Nats-Rollup`) and the
//! `Junction-Dls-*` headers that say why.
//!
//! Advisories are published whatever the policy, as nats-server does, on
//! `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<station>.<group>` and
//! `$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.<station>.<group>`.

use super::StationEngine;
use super::schemas::SchemaRegistry;
use super::station::Station;
use super::stations::{GaveUp, StationRegistry};
use ahash::AHashMap;
use bytes::Bytes;
use junction_api::{
    ClientId, ClientRecord, DLS_DELIVERIES, DLS_GROUP, DLS_REASON, DLS_SEQUENCE, DLS_STATION,
    DLS_SUBJECT, DLS_TERM_REASON, DLS_TIMESTAMP, DLS_VALIDATION_ERROR, DeadLetterReason,
    EngineError, Headers, Message, NewClient, Protocol, ResendRequest, ResendState, ResendStatus,
    SchemaViolation, Subject, TenantId, dead_letter_station, dead_letter_subject_prefix,
};
use parking_lot::Mutex;
use rand::Rng;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

/// Header under which a dead letter keeps the producer's de-duplication id.
pub const DLS_MSG_ID: &str = "Junction-Dls-Msg-Id";

/// Most resend tasks remembered; the oldest finished ones are forgotten first.
const MAX_TASKS: usize = 100;
/// Most error lines a resend task keeps.
const MAX_TASK_ERRORS: usize = 100;

/// What is known about a message when it is dead-lettered.
pub(crate) struct DeadLetter<'a> {
    pub reason: DeadLetterReason,
    pub station: &'a str,
    pub subject: &'a Subject,
    pub headers: Option<&'a Headers>,
    pub payload: Bytes,
    pub seq: Option<u64>,
    pub time: SystemTime,
    pub group: Option<&'a str>,
    pub deliveries: Option<u32>,
    pub term_reason: Option<&'a str>,
    pub validation_error: Option<String>,
    /// The original's lineage section, kept by the copy (empty: none).
    pub lineage: Bytes,
}

impl DeadLetter<'_> {
    /// The copy stored in the dead-letter station.
    pub(crate) fn copy(&self) -> Result<Message, EngineError> {
        let mut h = self.headers.cloned().unwrap_or_default();
        h.set_status(None, None);
        // Headers that steer how a station stores a message: a copy must not carry
        // them into the dead-letter station (its headers are what a restart reads
        // the duplicate window back from: a second dead letter of the same message
        // would be taken for a duplicate). The id is kept under its own name.
        let msg_id = junction_api::stored_msg_id(self.headers).map(str::to_owned);
        for name in junction_api::STEERING_HEADERS {
            h.remove(name);
        }
        // A dead letter of a dead letter (resent, failed again) gets fresh reasons.
        let stale: Vec<String> = h
            .iter()
            .filter(|(n, _)| is_dls_header(n))
            .map(|(n, _)| n.to_string())
            .collect();
        for n in stale {
            h.remove(&n);
        }
        if let Some(id) = msg_id {
            h.insert(DLS_MSG_ID, id);
        }
        h.insert(DLS_REASON, self.reason.as_str());
        h.insert(DLS_STATION, self.station);
        h.insert(DLS_SUBJECT, self.subject.to_str_lossy().into_owned());
        if let Some(seq) = self.seq {
            h.insert(DLS_SEQUENCE, seq.to_string());
        }
        h.insert(
            DLS_TIMESTAMP,
            humantime::format_rfc3339_nanos(self.time).to_string(),
        );
        if let Some(g) = self.group {
            h.insert(DLS_GROUP, g);
        }
        if let Some(d) = self.deliveries {
            h.insert(DLS_DELIVERIES, d.to_string());
        }
        if let Some(r) = self.term_reason {
            h.insert(DLS_TERM_REASON, one_line(r));
        }
        if let Some(e) = &self.validation_error {
            h.insert(DLS_VALIDATION_ERROR, one_line(e));
        }
        let subject = Subject::new(format!(
            "{}.{}",
            dead_letter_subject_prefix(self.station),
            self.subject.to_str_lossy()
        ))?;
        Ok(Message {
            subject,
            reply: None,
            headers: Some(h),
            payload: self.payload.clone(),
        })
    }
}

/// Is `name` one of the `Junction-Dls-*` headers?
fn is_dls_header(name: &str) -> bool {
    name.get(..13)
        .is_some_and(|p| p.eq_ignore_ascii_case("Junction-Dls-"))
}

/// Header values travel in NATS header blocks and HTTP headers: one line only.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
        .collect()
}

/// Appends a dead letter to `station`'s DLS, if the station's policy captures its
/// reason. Never fails the caller: a dead letter that cannot be stored is logged.
pub(crate) fn store_dead_letter(stations: &StationRegistry, tenant: &TenantId, dl: &DeadLetter) {
    let result = (|| {
        let dls = match stations.get(tenant, &dead_letter_station(dl.station)) {
            Ok(dls) => dls,
            Err(EngineError::StationNotFound) => {
                // Created with the policy; it may have been lost with a storage
                // error. Recreate it from the station's policy.
                let parent = stations.get(tenant, dl.station)?;
                stations.ensure_dead_letter(tenant, &parent.config())?
            }
            Err(e) => return Err(e),
        };
        let copy = dl.copy()?;
        let station = dl.station.to_string();
        let reason = dl.reason;
        dls.append(
            &copy,
            &junction_api::PublishOptions::NONE,
            dl.lineage.clone(),
            Some(Box::new(move |r| {
                if let Err(e) = r {
                    tracing::error!(station, reason = reason.as_str(), error = %e, "dead letter not stored");
                }
            })),
        );
        Ok::<(), EngineError>(())
    })();
    match result {
        Ok(()) => tracing::debug!(
            station = dl.station,
            reason = dl.reason.as_str(),
            "dead letter stored"
        ),
        Err(e) => tracing::error!(
            station = dl.station,
            reason = dl.reason.as_str(),
            error = %e,
            "dead letter not stored"
        ),
    }
}

/// The advisory nats-server publishes when a consumer gives up on a message, as
/// `(subject, JSON)`.
fn advisory(g: &GaveUp) -> Option<(Subject, Vec<u8>)> {
    let id: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(22)
        .map(char::from)
        .collect();
    let timestamp = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let (kind, body) = match g.reason {
        DeadLetterReason::MaxDeliveries => (
            "MAX_DELIVERIES",
            serde_json::json!({
                "type": "io.nats.jetstream.advisory.v1.max_deliver",
                "id": id,
                "timestamp": timestamp,
                "stream": g.station,
                "consumer": g.group,
                "stream_seq": g.seq,
                "deliveries": g.deliveries,
            }),
        ),
        DeadLetterReason::Terminated => {
            let mut body = serde_json::json!({
                "type": "io.nats.jetstream.advisory.v1.terminated",
                "id": id,
                "timestamp": timestamp,
                "stream": g.station,
                "consumer": g.group,
                "consumer_seq": g.consumer_seq,
                "stream_seq": g.seq,
                "deliveries": g.deliveries,
            });
            if let (Some(reason), Some(obj)) = (&g.term_reason, body.as_object_mut())
                && !reason.is_empty()
            {
                obj.insert("reason".into(), reason.clone().into());
            }
            ("MSG_TERMINATED", body)
        }
        DeadLetterReason::SchemaViolation => return None,
    };
    let subject = Subject::new(format!(
        "$JS.EVENT.ADVISORY.CONSUMER.{kind}.{}.{}",
        g.station, g.group
    ))
    .ok()?;
    Some((subject, serde_json::to_vec(&body).ok()?))
}

impl StationEngine {
    /// Publishes a message from the engine in `tenant`.
    pub(crate) fn publish_as_system(&self, tenant: &TenantId, message: &Message) {
        use junction_api::Broker as _;
        if tenant == self.system.tenant() {
            self.publish(&self.system.clone(), message);
        } else {
            let system = ClientRecord::new(
                ClientId(0),
                tenant.clone(),
                &NewClient {
                    protocol: Protocol::Nats,
                    remote: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                },
            );
            system.set_kind(junction_api::ClientKind::Internal);
            self.publish(&system, message);
        }
    }

    /// Advisories and dead letters for messages groups gave up on.
    pub(crate) fn handle_gave_up(&self, gave_up: Vec<GaveUp>) {
        for g in gave_up {
            // A replicated station gives up on its leader only (a follower's
            // copy of a group follows the leader's positions); its dead letter
            // goes through the station's log to every replica's dead-letter
            // station.
            let replica = self
                .stations
                .get(&g.tenant, &g.station)
                .ok()
                .filter(|s| s.is_replicated())
                .map(|s| s.replica.get().cloned());
            if let Some(replica) = &replica
                && !replica.as_ref().is_some_and(|r| r.is_leader())
            {
                tracing::debug!(station = %g.station, seq = g.seq, "gave up on a follower's copy: left to the leader");
                continue;
            }
            let why = match g.reason {
                DeadLetterReason::MaxDeliveries => {
                    format!("reached max deliveries ({})", g.deliveries)
                }
                DeadLetterReason::Terminated => match g.term_reason.as_deref() {
                    Some(r) if !r.is_empty() => format!("was terminated: {r}"),
                    _ => "was terminated".to_string(),
                },
                DeadLetterReason::SchemaViolation => "failed its schema".to_string(),
            };
            let whereto = if g.message.is_some() {
                format!(
                    "; copied to {}",
                    junction_api::dead_letter_station(&g.station)
                )
            } else {
                String::new()
            };
            self.events.record(
                junction_api::SystemEventKind::DeadLetter,
                super::events::About {
                    tenant: Some(&g.tenant),
                    station: Some(&g.station),
                    ..Default::default()
                },
                format!(
                    "message {} of station '{}' {why} in group '{}'{whereto}",
                    g.seq, g.station, g.group
                ),
            );
            if let Some((subject, json)) = advisory(&g) {
                self.publish_as_system(&g.tenant, &Message::new(subject, Bytes::from(json)));
            }
            let Some(m) = &g.message else { continue };
            let dl = DeadLetter {
                reason: g.reason,
                station: &g.station,
                subject: &m.subject,
                headers: m.headers.as_ref(),
                payload: m.payload.clone(),
                seq: Some(m.seq),
                time: m.time,
                group: Some(&g.group),
                deliveries: Some(g.deliveries),
                term_reason: g.term_reason.as_deref(),
                validation_error: None,
                lineage: m.lineage.clone(),
            };
            let Some(Some(r)) = &replica else {
                store_dead_letter(&self.stations, &g.tenant, &dl);
                continue;
            };
            match dl.copy() {
                Ok(copy) => super::replicated::spawn_logged(
                    &g.station,
                    "dead letter",
                    super::replicated::propose_dead_letter(
                        r, &g.tenant, &g.station, &copy, &m.lineage,
                    ),
                ),
                Err(e) => {
                    tracing::error!(station = %g.station, error = %e, "dead letter not stored")
                }
            }
        }
    }

    /// Validates a publish against `station`'s schema; on a violation the message
    /// is dead-lettered when the policy says so, and the violation returned.
    pub(crate) fn check_schema(
        &self,
        station: &Station,
        message: &Message,
        lineage: &Bytes,
    ) -> Result<(), SchemaViolation> {
        check_schema(
            &self.schemas,
            &self.stations,
            station,
            message,
            lineage,
            true,
        )
    }
}

/// See [`StationEngine::check_schema`]; `dead_letter` false validates only (a
/// resend whose dead letter stays where it is).
pub(crate) fn check_schema(
    schemas: &SchemaRegistry,
    stations: &StationRegistry,
    station: &Station,
    message: &Message,
    lineage: &Bytes,
    dead_letter: bool,
) -> Result<(), SchemaViolation> {
    let Some((name, pinned)) = station.schema() else {
        return Ok(());
    };
    let errors = match schemas.validator(&station.tenant, &name, pinned) {
        Some((version, validator)) => {
            match super::schemas::validate_payload(&validator, &message.payload) {
                Ok(()) => return Ok(()),
                Err(errors) => (version, errors),
            }
        }
        None => (
            pinned.unwrap_or(0),
            vec![format!(
                "(root): schema '{name}' is not available (see the server log)"
            )],
        ),
    };
    let violation = SchemaViolation {
        station: station.name().to_string(),
        schema: name.to_string(),
        version: errors.0,
        errors: errors.1,
    };
    tracing::debug!(station = station.name(), %violation, "schema violation");
    if dead_letter && station.config().dead_letter.schema_violation {
        store_dead_letter(
            stations,
            &station.tenant,
            &DeadLetter {
                reason: DeadLetterReason::SchemaViolation,
                station: station.name(),
                subject: &message.subject,
                headers: message.headers.as_ref(),
                payload: message.payload.clone(),
                seq: None,
                time: SystemTime::now(),
                group: None,
                deliveries: None,
                term_reason: None,
                validation_error: Some(violation.errors.join("; ")),
                lineage: lineage.clone(),
            },
        );
    }
    Err(violation)
}

/// Resend tasks, by id.
#[derive(Default)]
pub(crate) struct ResendTasks {
    next: u64,
    tasks: AHashMap<u64, Arc<Mutex<ResendStatus>>>,
}

impl ResendTasks {
    pub fn status(&self, station: &str, id: u64) -> Result<ResendStatus, EngineError> {
        self.tasks
            .get(&id)
            .map(|t| t.lock().clone())
            .filter(|s| s.station == station)
            .ok_or(EngineError::ResendTaskNotFound)
    }

    fn start(&mut self, station: &str, total: u64) -> Arc<Mutex<ResendStatus>> {
        if self.tasks.len() >= MAX_TASKS {
            let oldest = self
                .tasks
                .iter()
                .filter(|(_, t)| t.lock().state == ResendState::Done)
                .map(|(id, _)| *id)
                .min();
            if let Some(id) = oldest {
                self.tasks.remove(&id);
            }
        }
        self.next += 1;
        let status = Arc::new(Mutex::new(ResendStatus {
            id: self.next,
            station: station.to_string(),
            state: ResendState::Running,
            total,
            redelivered: 0,
            republished: 0,
            failed: 0,
            errors: Vec::new(),
            started: SystemTime::now(),
            finished: None,
        }));
        self.tasks.insert(self.next, status.clone());
        status
    }
}

impl StationEngine {
    /// Starts a resend task; see [`junction_api::Engine::resend_dead_letters`].
    pub(crate) fn start_resend(
        &self,
        tenant: &TenantId,
        station_name: &str,
        request: ResendRequest,
    ) -> Result<ResendStatus, EngineError> {
        let station = self.stations.get(tenant, station_name)?;
        let dls = self
            .stations
            .get(tenant, &dead_letter_station(station_name))
            .map_err(|_| {
                EngineError::BadRequest(format!(
                    "station '{station_name}' has no dead-letter station (its dead_letter policy captures nothing)"
                ))
            })?;
        if let Some(g) = &request.group {
            self.stations.group(tenant, station_name, g)?;
        }
        let seqs: Vec<u64> = match &request.ids {
            Some(ids) => ids.clone(),
            None => {
                let mut seqs = Vec::new();
                let mut from = 1;
                while let Some(seq) = dls.next_from(from, &[]) {
                    seqs.push(seq);
                    from = seq + 1;
                }
                seqs
            }
        };
        let status = self.resends.lock().start(station_name, seqs.len() as u64);
        let snapshot = status.lock().clone();
        let job = ResendJob {
            engine: self.me.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            tenant: tenant.clone(),
            stations: self.stations.clone(),
            schemas: self.schemas.clone(),
            station,
            dls,
            request,
            status,
        };
        std::thread::Builder::new()
            .name("junction-dls-resend".into())
            .spawn(move || job.run(seqs))
            .map_err(|e| EngineError::Storage(format!("cannot start resend task: {e}")))?;
        Ok(snapshot)
    }
}

struct ResendJob {
    /// A replicated station is written through its group (the engine's).
    engine: std::sync::Weak<StationEngine>,
    runtime: Option<tokio::runtime::Handle>,
    tenant: TenantId,
    stations: Arc<StationRegistry>,
    schemas: Arc<SchemaRegistry>,
    station: Arc<Station>,
    dls: Arc<Station>,
    request: ResendRequest,
    status: Arc<Mutex<ResendStatus>>,
}

enum Resent {
    Redelivered,
    Republished,
}

impl ResendJob {
    fn run(self, seqs: Vec<u64>) {
        for seq in seqs {
            let outcome = self.resend_one(seq);
            let mut s = self.status.lock();
            match outcome {
                Ok(Resent::Redelivered) => s.redelivered += 1,
                Ok(Resent::Republished) => s.republished += 1,
                Err(why) => {
                    s.failed += 1;
                    if s.errors.len() < MAX_TASK_ERRORS {
                        s.errors.push(format!("{seq}: {why}"));
                    }
                }
            }
        }
        let mut s = self.status.lock();
        s.state = ResendState::Done;
        s.finished = Some(SystemTime::now());
        tracing::info!(
            station = self.station.name(),
            redelivered = s.redelivered,
            republished = s.republished,
            failed = s.failed,
            "dead-letter resend finished"
        );
    }

    fn resend_one(&self, seq: u64) -> Result<Resent, String> {
        let letter = self
            .dls
            .read_message(seq)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no such dead letter".to_string())?;
        let headers = letter.headers.clone().unwrap_or_default();
        let group = self
            .request
            .group
            .clone()
            .or_else(|| headers.get(DLS_GROUP).map(str::to_owned));
        let original: Option<u64> = headers.get(DLS_SEQUENCE).and_then(|s| s.parse().ok());
        let outcome = match (group, original) {
            (Some(group), Some(orig)) if !self.request.to_station => {
                match self.redeliver(&group, orig) {
                    Some(r) => r?,
                    None => self.republish(&letter.payload, &headers, &letter.lineage)?,
                }
            }
            _ => self.republish(&letter.payload, &headers, &letter.lineage)?,
        };
        if let Err(e) = self.remove_letter(seq) {
            tracing::warn!(seq, error = %e, "resent dead letter not removed");
        }
        Ok(outcome)
    }

    /// Removes a re-sent dead letter: through the station's log when the
    /// station is replicated (every replica keeps the same dead letters).
    fn remove_letter(&self, seq: u64) -> Result<(), EngineError> {
        let Some(group) = self
            .station
            .replica
            .get()
            .filter(|_| self.station.is_replicated())
        else {
            return self.dls.delete_message(seq);
        };
        let runtime = self.runtime.as_ref().ok_or(EngineError::ShuttingDown)?;
        let op = super::replicated::AdminOp::DeadLetterDelete { seq };
        runtime.block_on(super::replicated::propose_admin_wait(
            group,
            self.station.name(),
            op,
        ))
    }

    /// Hands the original back to `group`; `None` when the original is gone.
    fn redeliver(&self, group: &str, orig: u64) -> Option<Result<Resent, String>> {
        self.station.read_message(orig).ok().flatten()?;
        let g = match self.station.groups.read().get(group).cloned() {
            Some(g) => g,
            None => return Some(Err(format!("group '{group}' not found"))),
        };
        if !g.requeue(orig) {
            return Some(Err(format!(
                "group '{group}' still holds sequence {orig} (pending or queued)"
            )));
        }
        g.fill(&self.station);
        Some(Ok(Resent::Redelivered))
    }

    /// Publishes the copy into the station again, as a new message.
    /// The copy keeps the original's lineage: it is the same message, sent again.
    fn republish(
        &self,
        payload: &Bytes,
        headers: &Headers,
        lineage: &Bytes,
    ) -> Result<Resent, String> {
        let subject = headers
            .get(DLS_SUBJECT)
            .ok_or_else(|| format!("missing {DLS_SUBJECT} header"))
            .and_then(|s| Subject::new(s.to_string()).map_err(|e| e.to_string()))?;
        if !self.station.captures(&subject) {
            return Err(format!(
                "station '{}' no longer captures '{}'",
                self.station.name(),
                subject.to_str_lossy()
            ));
        }
        let mut h = headers.clone();
        let names: Vec<String> = h
            .iter()
            .filter(|(n, _)| is_dls_header(n))
            .map(|(n, _)| n.to_string())
            .collect();
        for n in names {
            h.remove(&n);
        }
        let message = Message {
            subject,
            reply: None,
            headers: (!h.is_empty()).then_some(h),
            payload: payload.clone(),
        };
        // A failure leaves the dead letter where it is (no second copy).
        check_schema(
            &self.schemas,
            &self.stations,
            &self.station,
            &message,
            lineage,
            false,
        )
        .map_err(|v| v.to_string())?;
        let (tx, rx) = mpsc::channel();
        let done: junction_api::StoredCallback = Box::new(move |r| {
            let _ = tx.send(r);
        });
        if self.station.is_replicated() {
            // Only the station's group writes it: proposed (or sent to its
            // leader) like any publish, acknowledged once on a quorum.
            let (Some(engine), Some(runtime), Some(group)) = (
                self.engine.upgrade(),
                self.runtime.as_ref(),
                self.station.replica.get(),
            ) else {
                return Err("the station's replica group is not running here".into());
            };
            let _in = runtime.enter();
            engine.replicated_append(
                &self.tenant,
                &self.station,
                group,
                &message,
                &junction_api::PublishOptions::NONE,
                lineage,
                false,
                None,
                done,
            );
        } else {
            self.station.append(
                &message,
                &junction_api::PublishOptions::NONE,
                lineage.clone(),
                Some(done),
            );
        }
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(_)) => Ok(Resent::Republished),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the station did not answer".into()),
        }
    }
}
