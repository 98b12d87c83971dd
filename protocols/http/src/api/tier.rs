//! The remote tier's operator routes: the station manifests in the bucket, and
//! adopting one into a station (the way back to a station's data in S3 after
//! the broker's disk was lost). Operators only: the bucket is the broker's,
//! shared by every tenant's stations.

use super::ApiState;
use super::auth::{Authenticated, Tenant};
use super::error::{AppError, ErrorBody};
use super::extract::{ApiPath, JsonBody};
use super::wire::rfc3339;
use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};
use utoipa::ToSchema;

/// A station manifest in the bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestJson {
    /// The unique id its objects are kept under (`stations/<uid>/`): what
    /// `POST /v1/stations/{station}/tier/adopt` takes.
    pub uid: String,
    /// Segments it lists.
    pub segments: u64,
    /// First and last sequence in them.
    pub first_seq: u64,
    /// Last sequence in them.
    pub last_seq: u64,
    /// Messages in them.
    pub messages: u64,
    /// Their stored bytes.
    pub bytes: u64,
    /// Time of the oldest message (RFC 3339).
    pub first_time: Option<String>,
    /// Time of the newest message (RFC 3339).
    pub last_time: Option<String>,
    /// Up to 10 of the messages' subjects, to tell stations apart.
    pub subjects: Vec<String>,
    /// The station of this broker that uses these objects now, if any.
    pub station: Option<String>,
    /// That station's tenant.
    pub tenant: Option<String>,
    /// Why the manifest could not be read (damaged).
    pub error: Option<String>,
}

/// The station manifests in the bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct ManifestList {
    /// One per station folder with a manifest, by unique id.
    pub manifests: Vec<ManifestJson>,
}

fn time(ns: u64) -> Option<String> {
    (ns > 0).then(|| rfc3339(UNIX_EPOCH + Duration::from_nanos(ns)))
}

impl From<junction_api::TierManifest> for ManifestJson {
    fn from(m: junction_api::TierManifest) -> Self {
        let (tenant, station) = match m.station {
            Some((t, s)) => (Some(t.0.to_string()), Some(s)),
            None => (None, None),
        };
        ManifestJson {
            uid: m.uid,
            segments: m.segments,
            first_seq: m.first_seq,
            last_seq: m.last_seq,
            messages: m.messages,
            bytes: m.bytes,
            first_time: time(m.first_time_ns),
            last_time: time(m.last_time_ns),
            subjects: m.subjects,
            station,
            tenant,
            error: m.error,
        }
    }
}

/// List the station manifests in the tier's bucket (operators only).
///
/// Every station that uploaded segments under the broker's bucket and prefix
/// has one, including stations of a broker whose disk was lost: their unique
/// id is what a new station adopts. `station` names the station of this broker
/// that uses the objects now.
#[utoipa::path(
    get,
    path = "/v1/tier/manifests",
    tag = "stations",
    responses(
        (status = 200, description = "The manifests in the bucket", body = ManifestList),
        (status = 400, description = "`bad_request`: no `[tier]` configured", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 503, description = "`tier_unavailable`: the bucket did not answer", body = ErrorBody),
    )
)]
pub async fn list_manifests(
    State(state): State<Arc<ApiState>>,
    Extension(auth): Extension<Authenticated>,
) -> Result<Json<ManifestList>, AppError> {
    auth.operators_only("the tier's manifests")?;
    let manifests = state.engine.tier_manifests().await?;
    Ok(Json(ManifestList {
        manifests: manifests.into_iter().map(ManifestJson::from).collect(),
    }))
}

/// What `POST /v1/stations/{station}/tier/adopt` takes.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptRequest {
    /// The unique id of the manifest to adopt (`uid` in `GET /v1/tier/manifests`).
    pub uid: String,
}

/// What adopting a manifest did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdoptJson {
    /// Segments taken into the station's remote index.
    pub segments: u64,
    /// Segments missing from the bucket or failing their checks (logged,
    /// never served).
    pub skipped: u64,
    /// Messages in the adopted segments.
    pub messages: u64,
    /// First adopted sequence.
    pub first_seq: u64,
    /// Last adopted sequence: the station's next message gets a higher one.
    pub last_seq: u64,
    /// The old manifest left the bucket (the station's own lists the segments
    /// now); false when the station's could not be written yet (retried, the
    /// old one then stays).
    pub old_manifest_removed: bool,
}

/// Adopt a manifest from the bucket into a station (operators only).
///
/// After the broker's disk was lost, define the station again (tiered, one
/// copy, no messages yet), then adopt its old manifest: every segment it lists
/// that reads back and passes its checks enters the station's remote index,
/// with the old sequence numbers; the station's next message gets a higher
/// one. Consumers, browsing and `MSG.GET` read them as any remote range.
#[utoipa::path(
    post,
    path = "/v1/stations/{station}/tier/adopt",
    tag = "stations",
    params(("station" = String, Path, description = "Station name")),
    request_body = AdoptRequest,
    responses(
        (status = 200, description = "Adopted", body = AdoptJson),
        (status = 400, description = "`bad_request`: no `[tier]`, the station is not tiered or is replicated, or the id is malformed or the station's own", body = ErrorBody),
        (status = 403, description = "`forbidden`: not an operator", body = ErrorBody),
        (status = 404, description = "`station_not_found`, or `manifest_not_found`", body = ErrorBody),
        (status = 409, description = "`adopt_conflict`: the station has held messages, or another station uses the objects", body = ErrorBody),
        (status = 503, description = "`tier_unavailable`: the bucket did not answer", body = ErrorBody),
    )
)]
pub async fn adopt(
    State(state): State<Arc<ApiState>>,
    Extension(Tenant(tenant)): Extension<Tenant>,
    Extension(auth): Extension<Authenticated>,
    ApiPath(station): ApiPath<String>,
    JsonBody(request): JsonBody<AdoptRequest>,
) -> Result<Json<AdoptJson>, AppError> {
    auth.operators_only("adopting the tier's manifests")?;
    let a = state
        .engine
        .adopt_tier(&tenant, &station, &request.uid)
        .await?;
    tracing::info!(station, uid = %request.uid, segments = a.segments, "tier manifest adopted over HTTP");
    Ok(Json(AdoptJson {
        segments: a.segments,
        skipped: a.skipped,
        messages: a.messages,
        first_seq: a.first_seq,
        last_seq: a.last_seq,
        old_manifest_removed: a.old_manifest_removed,
    }))
}
