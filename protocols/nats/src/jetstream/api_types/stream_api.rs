//! Stream API requests and responses.

#[allow(unused_imports)]
use super::*;
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------
// Stream requests
// ---------------------------------------------------------------------------------------

/// Paging of list requests (`ApiPagedRequest`): `offset` is always emitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ApiPagedRequest {
    /// Items to skip.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
}

/// Paging of list responses (`ApiPaged`): all three always emitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiPaged {
    /// Items in total.
    pub total: u64,
    /// Items skipped.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
}

/// `STREAM.INFO` request body (optional; async-nats sends
/// `{"offset":0,"deleted_details":false,"subjects_filter":""}` or `null`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamInfoRequest {
    /// Offset into the subject details.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Include `state.deleted`.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub deleted_details: bool,
    /// Include `state.subjects` for subjects matching this filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subjects_filter: String,
}

/// `STREAM.NAMES` (and `STREAM.LIST`) request body; optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamNamesRequest {
    /// Items to skip.
    #[serde(deserialize_with = "nullable")]
    pub offset: u64,
    /// Only streams whose subjects collide with this subject.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub subject: String,
}

/// `STREAM.LIST` request body; same shape as [`StreamNamesRequest`].
pub type StreamListRequest = StreamNamesRequest;

/// `CONSUMER.NAMES` (and `CONSUMER.LIST`) request body; optional.
pub type ConsumerNamesRequest = ApiPagedRequest;

/// `CONSUMER.LIST` request body; optional.
pub type ConsumerListRequest = ApiPagedRequest;

/// `STREAM.PURGE` request body; optional (empty purges everything).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamPurgeRequest {
    /// Purge up to but not including this sequence.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub seq: u64,
    /// Only subjects matching this filter.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub filter: String,
    /// Keep this many of the newest messages.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub keep: u64,
}

impl StreamPurgeRequest {
    /// nats-server's check: `seq` and `keep` together are [`JsErrorCode::BadRequest`].
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.seq > 0 && self.keep > 0 {
            return Err(JsErrorCode::BadRequest.error());
        }
        Ok(())
    }
}

/// `STREAM.MSG.GET` request body (required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamMsgGetRequest {
    /// By sequence; with `next_by_subj`, the sequence to start looking from.
    #[serde(skip_serializing_if = "is_zero_u64", deserialize_with = "nullable")]
    pub seq: u64,
    /// Last message on this subject.
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub last_by_subj: String,
    /// First message at or after `seq` on this subject (wildcards allowed).
    #[serde(
        skip_serializing_if = "String::is_empty",
        deserialize_with = "nullable"
    )]
    pub next_by_subj: String,
}

/// What a valid [`StreamMsgGetRequest`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgGetTarget<'a> {
    /// The message with this sequence.
    Sequence(u64),
    /// The last message on this subject.
    LastBySubject(&'a str),
    /// The first message at or after `start_seq` matching `subject`.
    NextBySubject {
        /// Subject filter, may contain wildcards.
        subject: &'a str,
        /// Sequence to start from (0 means from the first).
        start_seq: u64,
    },
}

impl StreamMsgGetRequest {
    /// nats-server's checks, then the lookup to perform. `seq` with `last_by_subj`,
    /// nothing at all, or both `last_by_subj` and `next_by_subj` are
    /// [`JsErrorCode::BadRequest`].
    pub fn target(&self) -> Result<MsgGetTarget<'_>, ApiError> {
        let bad = || JsErrorCode::BadRequest.error();
        if (self.seq > 0 && !self.last_by_subj.is_empty())
            || (self.seq == 0 && self.last_by_subj.is_empty() && self.next_by_subj.is_empty())
        {
            return Err(bad());
        }
        if !self.last_by_subj.is_empty() && !self.next_by_subj.is_empty() {
            return Err(bad());
        }
        if !self.next_by_subj.is_empty() {
            Ok(MsgGetTarget::NextBySubject {
                subject: &self.next_by_subj,
                start_seq: self.seq,
            })
        } else if self.seq > 0 {
            Ok(MsgGetTarget::Sequence(self.seq))
        } else {
            Ok(MsgGetTarget::LastBySubject(&self.last_by_subj))
        }
    }
}

/// `STREAM.MSG.DELETE` request body (required).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamMsgDeleteRequest {
    /// Sequence to delete. Always emitted.
    #[serde(deserialize_with = "nullable")]
    pub seq: u64,
    /// Only mark deleted instead of overwriting the bytes.
    #[serde(skip_serializing_if = "is_false", deserialize_with = "nullable")]
    pub no_erase: bool,
}

// ---------------------------------------------------------------------------------------
// Stream responses
// ---------------------------------------------------------------------------------------

/// A reply that is only an error: `{"type":..., "error":{...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorResponse {
    /// Response type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The error.
    pub error: ApiError,
}

impl ApiErrorResponse {
    /// An error reply of the given response type.
    pub fn new(kind: &str, error: ApiError) -> Self {
        ApiErrorResponse {
            kind: kind.to_owned(),
            error,
        }
    }
}

/// Stream create, update and info responses: [`StreamInfo`] inline after `type`.
///
/// When deserializing, `info` (and `paged`) follow serde's flatten rules: an info that
/// does not parse becomes `None` rather than an error.
///
/// On the wire: create is `type, <info>, did_create: true`; update is `type, <info>`;
/// info is `type, total, offset, limit, <info>` (the paging fields are always present
/// for info, zero unless `subjects_filter` matched).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfoResponse {
    /// Response type ([`response_type::STREAM_CREATE`], `STREAM_UPDATE` or `STREAM_INFO`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Error, instead of the info.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Subject-details paging, stream info responses only.
    #[serde(flatten)]
    pub paged: Option<ApiPaged>,
    /// The info.
    #[serde(flatten)]
    pub info: Option<StreamInfo>,
    /// Set by a (non-clustered) create, even when an identical stream already existed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub did_create: bool,
}

impl StreamInfoResponse {
    /// `STREAM.CREATE` success.
    pub fn create(info: StreamInfo) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_CREATE.to_owned(),
            error: None,
            paged: None,
            info: Some(info),
            did_create: true,
        }
    }

    /// `STREAM.UPDATE` success.
    pub fn update(info: StreamInfo) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_UPDATE.to_owned(),
            error: None,
            paged: None,
            info: Some(info),
            did_create: false,
        }
    }

    /// `STREAM.INFO` success; `paged` is all zero unless subject details were asked for.
    pub fn info(info: StreamInfo, paged: ApiPaged) -> Self {
        StreamInfoResponse {
            kind: response_type::STREAM_INFO.to_owned(),
            error: None,
            paged: Some(paged),
            info: Some(info),
            did_create: false,
        }
    }

    /// An error reply of type `kind`; for [`response_type::STREAM_INFO`] the zero paging
    /// fields are kept, as nats-server sends them.
    pub fn error(kind: &str, error: ApiError) -> Self {
        StreamInfoResponse {
            kind: kind.to_owned(),
            error: Some(error),
            paged: (kind == response_type::STREAM_INFO).then(ApiPaged::default),
            info: None,
            did_create: false,
        }
    }
}

/// `STREAM.CREATE` response ([`response_type::STREAM_CREATE`], `did_create: true`).
pub type StreamCreateResponse = StreamInfoResponse;

/// `STREAM.UPDATE` response ([`response_type::STREAM_UPDATE`]).
pub type StreamUpdateResponse = StreamInfoResponse;

/// `STREAM.NAMES` response. `streams` is `null` when empty (Go nil slice).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamNamesResponse {
    /// [`response_type::STREAM_NAMES`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Matching streams in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`NAMES_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Names on this page, sorted; `None` serializes as `null`.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
}

impl StreamNamesResponse {
    /// A page; an empty page becomes `"streams": null` as in nats-server.
    pub fn new(total: u64, offset: u64, streams: Vec<String>) -> Self {
        StreamNamesResponse {
            kind: response_type::STREAM_NAMES.to_owned(),
            error: None,
            total,
            offset,
            limit: NAMES_PAGE_LIMIT,
            streams: (!streams.is_empty()).then_some(streams),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamNamesResponse {
            kind: response_type::STREAM_NAMES.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            streams: None,
        }
    }
}

/// `STREAM.LIST` response; `streams` is always an array.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamListResponse {
    /// [`response_type::STREAM_LIST`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// Matching streams in total.
    #[serde(default)]
    pub total: u64,
    /// Offset of this page.
    #[serde(default)]
    pub offset: u64,
    /// Page size ([`LIST_PAGE_LIMIT`]).
    #[serde(default)]
    pub limit: u64,
    /// Infos on this page, sorted by name.
    #[serde(default, deserialize_with = "nullable")]
    pub streams: Vec<StreamInfo>,
    /// Streams that did not answer in time (clustered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl StreamListResponse {
    /// A page.
    pub fn new(total: u64, offset: u64, streams: Vec<StreamInfo>) -> Self {
        StreamListResponse {
            kind: response_type::STREAM_LIST.to_owned(),
            error: None,
            total,
            offset,
            limit: LIST_PAGE_LIMIT,
            streams,
            missing: Vec::new(),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamListResponse {
            kind: response_type::STREAM_LIST.to_owned(),
            error: Some(error),
            total: 0,
            offset: 0,
            limit: 0,
            streams: Vec::new(),
            missing: Vec::new(),
        }
    }
}

/// Responses that are only a success flag: stream delete, message delete, consumer
/// delete. `success` is `omitempty`, so it is absent on errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SuccessResponse {
    /// Response type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// True on success.
    #[serde(default, skip_serializing_if = "is_false")]
    pub success: bool,
}

impl SuccessResponse {
    /// Success of the given response type.
    pub fn ok(kind: &str) -> Self {
        SuccessResponse {
            kind: kind.to_owned(),
            error: None,
            success: true,
        }
    }

    /// Error of the given response type.
    pub fn error(kind: &str, error: ApiError) -> Self {
        SuccessResponse {
            kind: kind.to_owned(),
            error: Some(error),
            success: false,
        }
    }
}

/// `STREAM.DELETE` response ([`response_type::STREAM_DELETE`]).
pub type StreamDeleteResponse = SuccessResponse;

/// `STREAM.MSG.DELETE` response ([`response_type::STREAM_MSG_DELETE`]).
pub type StreamMsgDeleteResponse = SuccessResponse;

/// `CONSUMER.DELETE` response ([`response_type::CONSUMER_DELETE`]).
pub type ConsumerDeleteResponse = SuccessResponse;

/// `STREAM.PURGE` response; `purged` is always emitted (0 on errors).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPurgeResponse {
    /// [`response_type::STREAM_PURGE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// True on success.
    #[serde(default, skip_serializing_if = "is_false")]
    pub success: bool,
    /// Messages removed.
    #[serde(default)]
    pub purged: u64,
}

impl StreamPurgeResponse {
    /// Success.
    pub fn ok(purged: u64) -> Self {
        StreamPurgeResponse {
            kind: response_type::STREAM_PURGE.to_owned(),
            error: None,
            success: true,
            purged,
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamPurgeResponse {
            kind: response_type::STREAM_PURGE.to_owned(),
            error: Some(error),
            success: false,
            purged: 0,
        }
    }
}

/// `STREAM.MSG.GET` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMsgGetResponse {
    /// [`response_type::STREAM_MSG_GET`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Error (typically [`JsErrorCode::NoMessageFound`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
    /// The message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<StoredMsg>,
}

impl StreamMsgGetResponse {
    /// Success.
    pub fn ok(message: StoredMsg) -> Self {
        StreamMsgGetResponse {
            kind: response_type::STREAM_MSG_GET.to_owned(),
            error: None,
            message: Some(message),
        }
    }

    /// An error reply.
    pub fn error(error: ApiError) -> Self {
        StreamMsgGetResponse {
            kind: response_type::STREAM_MSG_GET.to_owned(),
            error: Some(error),
            message: None,
        }
    }
}
