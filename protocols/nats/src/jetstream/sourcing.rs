//! JetStream's `mirror` and `sources` as station sources, checked as
//! nats-server 2.10 checks them, and their progress as `StreamSourceInfo`.
//!
//! An origin on another broker is given by stream metadata
//! `junction.remote.<origin stream>`: a NATS URL with the credentials in it
//! (`nats://user:pass@host:4222`, or `nats://token@host:4222`), plus
//! `junction.remote.<origin stream>.creds` for a `.creds` file. The source's
//! `external.api` is the remote's JetStream API prefix (`$JS.API` when unset).
//! The value may instead name a `[remotes.<name>]` entry of the configuration
//! file (URL and credentials there); the engine resolves it when it connects.

use super::api_types::{
    ApiError, ExternalStream, JsErrorCode, StreamConfig, StreamSource, StreamSourceInfo,
    SubjectTransformConfig, parse_rfc3339_nanos,
};
use junction_api::{
    CompiledTransform, RemoteOrigin, SourceStatus, StationSource, SubjectFilter, SubjectTransform,
};

/// Stream metadata prefix naming a remote origin's URL.
pub const REMOTE_METADATA_PREFIX: &str = "junction.remote.";

fn valid_stream_name(n: &str) -> bool {
    !n.is_empty()
        && !n.chars().any(|c| {
            c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\')
        })
}

/// The station's mirror and sources, from a stream configuration.
pub fn station_sources(
    c: &StreamConfig,
) -> Result<(Option<StationSource>, Vec<StationSource>), ApiError> {
    if let Some(m) = &c.mirror {
        if !c.subjects.is_empty() {
            return Err(JsErrorCode::MirrorWithSubjects.error());
        }
        if !c.sources.is_empty() {
            return Err(JsErrorCode::MirrorWithSources.error());
        }
        if c.first_seq > 0 {
            return Err(JsErrorCode::MirrorWithFirstSeq.error());
        }
        if m.opt_start_seq > 0 && m.opt_start_time.is_some() {
            return Err(JsErrorCode::MirrorWithStartSeqAndTime.error());
        }
        if !valid_stream_name(&m.name) {
            return Err(JsErrorCode::MirrorInvalidStreamName.error());
        }
        if !m.filter_subject.is_empty() && !m.subject_transforms.is_empty() {
            return Err(JsErrorCode::MirrorMultipleFiltersNotAllowed.error());
        }
        let mirror = one_source(c, m, true)?;
        return Ok((Some(mirror), Vec::new()));
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut sources = Vec::with_capacity(c.sources.len());
    for s in &c.sources {
        if !valid_stream_name(&s.name) {
            return Err(JsErrorCode::SourceInvalidStreamName.error());
        }
        if !s.filter_subject.is_empty() && !s.subject_transforms.is_empty() {
            return Err(JsErrorCode::SourceMultipleFiltersNotAllowed.error());
        }
        let source = one_source(c, s, false)?;
        let key = (
            source.key(),
            source.filter_subject.clone(),
            source.transforms.clone(),
        );
        if !seen.insert(format!("{key:?}")) {
            return Err(JsErrorCode::SourceDuplicateDetected.error());
        }
        if source.remote.is_none() && source.name == c.name {
            return Err(
                JsErrorCode::StreamInvalidConfig.with_err("stream can not source or mirror itself")
            );
        }
        sources.push(source);
    }
    Ok((None, sources))
}

fn one_source(c: &StreamConfig, s: &StreamSource, mirror: bool) -> Result<StationSource, ApiError> {
    let bad_filter = || {
        if mirror {
            JsErrorCode::MirrorInvalidSubjectFilter.error()
        } else {
            JsErrorCode::SourceInvalidSubjectFilter.error()
        }
    };
    let filter_subject = if s.filter_subject.is_empty() {
        None
    } else {
        SubjectFilter::new(s.filter_subject.clone()).map_err(|_| bad_filter())?;
        Some(s.filter_subject.clone())
    };
    let mut transforms = Vec::with_capacity(s.subject_transforms.len());
    let mut filters: Vec<String> = Vec::new();
    for t in &s.subject_transforms {
        let src = if t.src.is_empty() {
            ">"
        } else {
            t.src.as_str()
        };
        SubjectFilter::new(src.to_string()).map_err(|_| bad_filter())?;
        if filters
            .iter()
            .any(|g| junction_api::filters_overlap(g.as_bytes(), src.as_bytes()))
        {
            return Err(if mirror {
                JsErrorCode::MirrorOverlappingSubjectFilters.error()
            } else {
                JsErrorCode::SourceOverlappingSubjectFilters.error()
            });
        }
        filters.push(src.to_string());
        // nats-server 2.10.26: a source's destination that fails its
        // `ValidateMappingDestination` is 10146; any other refusal, and every
        // refusal for a mirror, is 10049 with the transform's own text.
        if !mirror && junction_api::validate_transform_destination(&t.dest).is_err() {
            return Err(JsErrorCode::SourceInvalidTransformDestination.error());
        }
        CompiledTransform::new(src, &t.dest).map_err(|e| {
            let of = if mirror { "mirror" } else { "source" };
            JsErrorCode::StreamCreate.with_err(format!(
                "subject transform from '{}' to '{}' for the {of}: {e}",
                t.src, t.dest
            ))
        })?;
        transforms.push(SubjectTransform {
            source: src.to_string(),
            destination: t.dest.clone(),
        });
    }
    let start_time_ns = match &s.opt_start_time {
        None => 0,
        Some(t) => {
            let ns = parse_rfc3339_nanos(t).ok_or_else(|| {
                JsErrorCode::StreamInvalidConfig.with_err(format!("invalid opt_start_time '{t}'"))
            })?;
            u64::try_from(ns).unwrap_or(0)
        }
    };
    let remote = c
        .metadata
        .get(&format!("{REMOTE_METADATA_PREFIX}{}", s.name))
        .map(|url| RemoteOrigin {
            url: url.clone(),
            api: s
                .external
                .as_ref()
                .map(|e| e.api.clone())
                .filter(|a| !a.is_empty()),
            creds_file: c
                .metadata
                .get(&format!("{REMOTE_METADATA_PREFIX}{}.creds", s.name))
                .cloned(),
            ..RemoteOrigin::default()
        });
    if s.external.is_some() && remote.is_none() {
        return Err(JsErrorCode::StreamInvalidConfig.with_err(format!(
            "external sources need the remote's URL in metadata '{REMOTE_METADATA_PREFIX}{}' \
             (Junction has no accounts or domains to reach it otherwise)",
            s.name
        )));
    }
    Ok(StationSource {
        name: s.name.clone(),
        start_seq: s.opt_start_seq,
        start_time_ns,
        filter_subject,
        transforms,
        remote,
    })
}

/// A station source as the stream configuration shows it.
pub fn stream_source(s: &StationSource) -> StreamSource {
    StreamSource {
        name: s.name.clone(),
        opt_start_seq: s.start_seq,
        opt_start_time: (s.start_time_ns > 0).then(|| {
            super::api_types::format_rfc3339_nanos(i64::try_from(s.start_time_ns).unwrap_or(0))
        }),
        filter_subject: s.filter_subject.clone().unwrap_or_default(),
        subject_transforms: s
            .transforms
            .iter()
            .map(|t| SubjectTransformConfig {
                src: t.source.clone(),
                dest: t.destination.clone(),
            })
            .collect(),
        external: s.remote.as_ref().map(|r| ExternalStream {
            api: r.api.clone().unwrap_or_default(),
            deliver: String::new(),
        }),
    }
}

/// A source's progress as `StreamSourceInfo`.
pub fn source_info(s: &StationSource, st: &SourceStatus) -> StreamSourceInfo {
    let c = stream_source(s);
    StreamSourceInfo {
        name: s.name.clone(),
        external: c.external,
        lag: st.lag,
        active: if st.active_ms < 0 {
            -1
        } else {
            st.active_ms.saturating_mul(1_000_000)
        },
        error: st
            .error
            .as_ref()
            .map(|e| JsErrorCode::SourceConsumerSetupFailed.with_err(e.clone())),
        filter_subject: c.filter_subject,
        subject_transforms: c.subject_transforms,
    }
}
