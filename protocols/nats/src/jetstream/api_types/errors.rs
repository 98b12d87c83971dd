//! API errors and the table of nats-server error codes.

#[allow(unused_imports)]
use super::*;
use serde::{Deserialize, Serialize};
use std::fmt;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The `error` object of API responses (`ApiError`): `code` is HTTP-like (400, 404, 500,
/// 503), `err_code` the JetStream code (`omitempty`), `description` the text
/// (`omitempty`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ApiError {
    /// HTTP-like status.
    pub code: u16,
    /// JetStream error code (10xxx).
    #[serde(default, skip_serializing_if = "is_zero_u16")]
    pub err_code: u16,
    /// Description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

pub(super) fn is_zero_u16(value: &u16) -> bool {
    *value == 0
}

impl fmt::Display for ApiError {
    /// As Go's `ApiError.Error()`: `description (err_code)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.description, self.err_code)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Is this the given JetStream error (`IsNatsErr`)?
    pub fn is(&self, code: JsErrorCode) -> bool {
        self.err_code == code.err_code()
    }

    /// [`JsErrorCode::StreamWrongLastSequence`]: `wrong last sequence: {seq}`, where `seq`
    /// is the stream's (or subject's) actual last sequence.
    pub fn wrong_last_sequence(actual: u64) -> Self {
        JsErrorCode::StreamWrongLastSequence.error_with(&[("{seq}", &actual)])
    }

    /// [`JsErrorCode::StreamWrongLastMsgId`]: `wrong last msg ID: {id}`, where `id` is the
    /// stream's actual last message id (possibly empty).
    pub fn wrong_last_msg_id(actual: &str) -> Self {
        JsErrorCode::StreamWrongLastMsgId.error_with(&[("{id}", &actual)])
    }

    /// [`JsErrorCode::SequenceNotFound`]: `sequence {seq} not found`.
    pub fn sequence_not_found(seq: u64) -> Self {
        JsErrorCode::SequenceNotFound.error_with(&[("{seq}", &seq)])
    }
}

impl From<JsErrorCode> for ApiError {
    fn from(code: JsErrorCode) -> Self {
        code.error()
    }
}

macro_rules! js_error_codes {
    ($( $(#[$doc:meta])* $name:ident = ($code:expr, $err_code:expr, $desc:expr); )*) => {
        /// Every JetStream API error nats-server 2.10 defines (`server/errors.json`,
        /// `server/jetstream_errors_generated.go`), with its HTTP-like `code`, its
        /// `err_code` and its description template. Placeholders such as `{err}`,
        /// `{seq}`, `{id}`, `{max}`, `{limit}`, `{subject}`, `{prefix}` and `{msg}` are
        /// filled by [`JsErrorCode::error_with`] / [`JsErrorCode::with_err`]. Variant names
        /// are the Go constant without `JS` and the `Err`/`ErrF`/`F` suffix.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum JsErrorCode {
            $( $(#[$doc])* $name, )*
        }

        impl JsErrorCode {
            /// All codes, ascending by `err_code`.
            pub const ALL: &'static [JsErrorCode] = &[$(JsErrorCode::$name),*];

            /// The HTTP-like status (`code`).
            pub const fn code(self) -> u16 {
                match self { $(JsErrorCode::$name => $code,)* }
            }

            /// The JetStream error code (`err_code`).
            pub const fn err_code(self) -> u16 {
                match self { $(JsErrorCode::$name => $err_code,)* }
            }

            /// The description template, verbatim from nats-server.
            pub const fn description(self) -> &'static str {
                match self { $(JsErrorCode::$name => $desc,)* }
            }
        }
    };
}

js_error_codes! {
    /// 400 / 10002: `resource limits exceeded for account` (`JSAccountResourcesExceededErr`).
    AccountResourcesExceeded = (400, 10002, "resource limits exceeded for account");
    /// 400 / 10003: `bad request` (`JSBadRequestErr`).
    BadRequest = (400, 10003, "bad request");
    /// 503 / 10004: `incomplete results` (`JSClusterIncompleteErr`).
    ClusterIncomplete = (503, 10004, "incomplete results");
    /// 400 / 10005: `{err}` (`JSClusterNoPeersErrF`).
    ClusterNoPeers = (400, 10005, "{err}");
    /// 500 / 10006: `JetStream not in clustered mode` (`JSClusterNotActiveErr`).
    ClusterNotActive = (500, 10006, "JetStream not in clustered mode");
    /// 500 / 10007: `JetStream cluster not assigned to this server` (`JSClusterNotAssignedErr`).
    ClusterNotAssigned = (500, 10007, "JetStream cluster not assigned to this server");
    /// 503 / 10008: `JetStream system temporarily unavailable` (`JSClusterNotAvailErr`).
    ClusterNotAvail = (503, 10008, "JetStream system temporarily unavailable");
    /// 500 / 10009: `JetStream cluster can not handle request` (`JSClusterNotLeaderErr`).
    ClusterNotLeader = (500, 10009, "JetStream cluster can not handle request");
    /// 503 / 10010: `JetStream clustering support required` (`JSClusterRequiredErr`).
    ClusterRequired = (503, 10010, "JetStream clustering support required");
    /// 400 / 10011: `tags placement not supported for operation` (`JSClusterTagsErr`).
    ClusterTags = (400, 10011, "tags placement not supported for operation");
    /// 500 / 10012: `{err}` (`JSConsumerCreateErrF`).
    ConsumerCreate = (500, 10012, "{err}");
    /// 400 / 10013: `consumer name already in use` (`JSConsumerNameExistErr`).
    ConsumerNameExist = (400, 10013, "consumer name already in use");
    /// 404 / 10014: `consumer not found` (`JSConsumerNotFoundErr`).
    ConsumerNotFound = (404, 10014, "consumer not found");
    /// 400 / 10015: `deliver subject not valid` (`JSSnapshotDeliverSubjectInvalidErr`).
    SnapshotDeliverSubjectInvalid = (400, 10015, "deliver subject not valid");
    /// 400 / 10016: `consumer expected to be durable but no durable name set in subject` (`JSConsumerDurableNameNotInSubjectErr`).
    ConsumerDurableNameNotInSubject = (400, 10016, "consumer expected to be durable but no durable name set in subject");
    /// 400 / 10017: `consumer name in subject does not match durable name in request` (`JSConsumerDurableNameNotMatchSubjectErr`).
    ConsumerDurableNameNotMatchSubject = (400, 10017, "consumer name in subject does not match durable name in request");
    /// 400 / 10018: `consumer expected to be durable but a durable name was not set` (`JSConsumerDurableNameNotSetErr`).
    ConsumerDurableNameNotSet = (400, 10018, "consumer expected to be durable but a durable name was not set");
    /// 400 / 10019: `consumer expected to be ephemeral but detected a durable name set in subject` (`JSConsumerEphemeralWithDurableInSubjectErr`).
    ConsumerEphemeralWithDurableInSubject = (400, 10019, "consumer expected to be ephemeral but detected a durable name set in subject");
    /// 400 / 10020: `consumer expected to be ephemeral but a durable name was set in request` (`JSConsumerEphemeralWithDurableNameErr`).
    ConsumerEphemeralWithDurableName = (400, 10020, "consumer expected to be ephemeral but a durable name was set in request");
    /// 400 / 10021: `stream external api prefix {prefix} must not overlap with {subject}` (`JSStreamExternalApiOverlapErrF`).
    StreamExternalApiOverlap = (400, 10021, "stream external api prefix {prefix} must not overlap with {subject}");
    /// 400 / 10022: `stream external delivery prefix {prefix} overlaps with stream subject {subject}` (`JSStreamExternalDelPrefixOverlapsErrF`).
    StreamExternalDelPrefixOverlaps = (400, 10022, "stream external delivery prefix {prefix} overlaps with stream subject {subject}");
    /// 503 / 10023: `insufficient resources` (`JSInsufficientResourcesErr`).
    InsufficientResources = (503, 10023, "insufficient resources");
    /// 400 / 10024: `stream external delivery prefix {prefix} must not contain wildcards` (`JSStreamInvalidExternalDeliverySubjErrF`).
    StreamInvalidExternalDeliverySubj = (400, 10024, "stream external delivery prefix {prefix} must not contain wildcards");
    /// 400 / 10025: `invalid JSON` (`JSInvalidJSONErr`).
    InvalidJson = (400, 10025, "invalid JSON");
    /// 400 / 10026: `maximum consumers limit reached` (`JSMaximumConsumersLimitErr`).
    MaximumConsumersLimit = (400, 10026, "maximum consumers limit reached");
    /// 400 / 10027: `maximum number of streams reached` (`JSMaximumStreamsLimitErr`).
    MaximumStreamsLimit = (400, 10027, "maximum number of streams reached");
    /// 500 / 10028: `insufficient memory resources available` (`JSMemoryResourcesExceededErr`).
    MemoryResourcesExceeded = (500, 10028, "insufficient memory resources available");
    /// 500 / 10029: `{err}` (`JSMirrorConsumerSetupFailedErrF`).
    MirrorConsumerSetupFailed = (500, 10029, "{err}");
    /// 400 / 10030: `stream mirror must have max message size >= source` (`JSMirrorMaxMessageSizeTooBigErr`).
    MirrorMaxMessageSizeTooBig = (400, 10030, "stream mirror must have max message size >= source");
    /// 400 / 10031: `stream mirrors can not also contain other sources` (`JSMirrorWithSourcesErr`).
    MirrorWithSources = (400, 10031, "stream mirrors can not also contain other sources");
    /// 400 / 10032: `stream mirrors can not have both start seq and start time configured` (`JSMirrorWithStartSeqAndTimeErr`).
    MirrorWithStartSeqAndTime = (400, 10032, "stream mirrors can not have both start seq and start time configured");
    /// 400 / 10033: `stream mirrors can not contain filtered subjects` (`JSMirrorWithSubjectFiltersErr`).
    MirrorWithSubjectFilters = (400, 10033, "stream mirrors can not contain filtered subjects");
    /// 400 / 10034: `stream mirrors can not contain subjects` (`JSMirrorWithSubjectsErr`).
    MirrorWithSubjects = (400, 10034, "stream mirrors can not contain subjects");
    /// 503 / 10035: `account not found` (`JSNoAccountErr`).
    NoAccount = (503, 10035, "account not found");
    /// 503 / 10036: `not currently supported in clustered mode` (`JSClusterUnSupportFeatureErr`).
    ClusterUnSupportFeature = (503, 10036, "not currently supported in clustered mode");
    /// 404 / 10037: `no message found` (`JSNoMessageFoundErr`).
    NoMessageFound = (404, 10037, "no message found");
    /// 400 / 10038: `expected an empty request payload` (`JSNotEmptyRequestErr`).
    NotEmptyRequest = (400, 10038, "expected an empty request payload");
    /// 503 / 10039: `JetStream not enabled for account` (`JSNotEnabledForAccountErr`).
    NotEnabledForAccount = (503, 10039, "JetStream not enabled for account");
    /// 400 / 10040: `peer not a member` (`JSClusterPeerNotMemberErr`).
    ClusterPeerNotMember = (400, 10040, "peer not a member");
    /// 500 / 10041: `{err}` (`JSRaftGeneralErrF`).
    RaftGeneral = (500, 10041, "{err}");
    /// 500 / 10042: `JetStream unable to subscribe to restore snapshot {subject}: {err}` (`JSRestoreSubscribeFailedErrF`).
    RestoreSubscribeFailed = (500, 10042, "JetStream unable to subscribe to restore snapshot {subject}: {err}");
    /// 400 / 10043: `sequence {seq} not found` (`JSSequenceNotFoundErrF`).
    SequenceNotFound = (400, 10043, "sequence {seq} not found");
    /// 400 / 10044: `server is not a member of the cluster` (`JSClusterServerNotMemberErr`).
    ClusterServerNotMember = (400, 10044, "server is not a member of the cluster");
    /// 500 / 10045: `{err}` (`JSSourceConsumerSetupFailedErrF`).
    SourceConsumerSetupFailed = (500, 10045, "{err}");
    /// 400 / 10046: `stream source must have max message size >= target` (`JSSourceMaxMessageSizeTooBigErr`).
    SourceMaxMessageSizeTooBig = (400, 10046, "stream source must have max message size >= target");
    /// 500 / 10047: `insufficient storage resources available` (`JSStorageResourcesExceededErr`).
    StorageResourcesExceeded = (500, 10047, "insufficient storage resources available");
    /// 500 / 10048: `{err}` (`JSStreamAssignmentErrF`).
    StreamAssignment = (500, 10048, "{err}");
    /// 500 / 10049: `{err}` (`JSStreamCreateErrF`).
    StreamCreate = (500, 10049, "{err}");
    /// 500 / 10050: `{err}` (`JSStreamDeleteErrF`).
    StreamDelete = (500, 10050, "{err}");
    /// 500 / 10051: `{err}` (`JSStreamGeneralErrorF`).
    StreamGeneral = (500, 10051, "{err}");
    /// 500 / 10052: `{err}` (`JSStreamInvalidConfigF`).
    StreamInvalidConfig = (500, 10052, "{err}");
    /// 500 / 10053: `{err}` (`JSStreamLimitsErrF`).
    StreamLimits = (500, 10053, "{err}");
    /// 400 / 10054: `message size exceeds maximum allowed` (`JSStreamMessageExceedsMaximumErr`).
    StreamMessageExceedsMaximum = (400, 10054, "message size exceeds maximum allowed");
    /// 400 / 10055: `stream mirror configuration can not be updated` (`JSStreamMirrorNotUpdatableErr`).
    StreamMirrorNotUpdatable = (400, 10055, "stream mirror configuration can not be updated");
    /// 400 / 10056: `stream name in subject does not match request` (`JSStreamMismatchErr`).
    StreamMismatch = (400, 10056, "stream name in subject does not match request");
    /// 500 / 10057: `{err}` (`JSStreamMsgDeleteFailedF`).
    StreamMsgDeleteFailed = (500, 10057, "{err}");
    /// 400 / 10058: `stream name already in use with a different configuration` (`JSStreamNameExistErr`).
    StreamNameExist = (400, 10058, "stream name already in use with a different configuration");
    /// 404 / 10059: `stream not found` (`JSStreamNotFoundErr`).
    StreamNotFound = (404, 10059, "stream not found");
    /// 400 / 10060: `expected stream does not match` (`JSStreamNotMatchErr`).
    StreamNotMatch = (400, 10060, "expected stream does not match");
    /// 400 / 10061: `Replicas configuration can not be updated` (`JSStreamReplicasNotUpdatableErr`).
    StreamReplicasNotUpdatable = (400, 10061, "Replicas configuration can not be updated");
    /// 500 / 10062: `restore failed: {err}` (`JSStreamRestoreErrF`).
    StreamRestore = (500, 10062, "restore failed: {err}");
    /// 503 / 10063: `expected stream sequence does not match` (`JSStreamSequenceNotMatchErr`).
    StreamSequenceNotMatch = (503, 10063, "expected stream sequence does not match");
    /// 500 / 10064: `snapshot failed: {err}` (`JSStreamSnapshotErrF`).
    StreamSnapshot = (500, 10064, "snapshot failed: {err}");
    /// 400 / 10065: `subjects overlap with an existing stream` (`JSStreamSubjectOverlapErr`).
    StreamSubjectOverlap = (400, 10065, "subjects overlap with an existing stream");
    /// 500 / 10066: `{err}` (`JSStreamTemplateCreateErrF`).
    StreamTemplateCreate = (500, 10066, "{err}");
    /// 500 / 10067: `{err}` (`JSStreamTemplateDeleteErrF`).
    StreamTemplateDelete = (500, 10067, "{err}");
    /// 404 / 10068: `template not found` (`JSStreamTemplateNotFoundErr`).
    StreamTemplateNotFound = (404, 10068, "template not found");
    /// 500 / 10069: `{err}` (`JSStreamUpdateErrF`).
    StreamUpdate = (500, 10069, "{err}");
    /// 400 / 10070: `wrong last msg ID: {id}` (`JSStreamWrongLastMsgIDErrF`).
    StreamWrongLastMsgId = (400, 10070, "wrong last msg ID: {id}");
    /// 400 / 10071: `wrong last sequence: {seq}` (`JSStreamWrongLastSequenceErrF`).
    StreamWrongLastSequence = (400, 10071, "wrong last sequence: {seq}");
    /// 500 / 10072: `JetStream unable to open temp storage for restore` (`JSTempStorageFailedErr`).
    TempStorageFailed = (500, 10072, "JetStream unable to open temp storage for restore");
    /// 400 / 10073: `template name in subject does not match request` (`JSTemplateNameNotMatchSubjectErr`).
    TemplateNameNotMatchSubject = (400, 10073, "template name in subject does not match request");
    /// 500 / 10074: `replicas > 1 not supported in non-clustered mode` (`JSStreamReplicasNotSupportedErr`).
    StreamReplicasNotSupported = (500, 10074, "replicas > 1 not supported in non-clustered mode");
    /// 503 / 10075: `peer remap failed` (`JSPeerRemapErr`).
    PeerRemap = (503, 10075, "peer remap failed");
    /// 503 / 10076: `JetStream not enabled` (`JSNotEnabledErr`).
    NotEnabled = (503, 10076, "JetStream not enabled");
    /// 503 / 10077: `{err}` (`JSStreamStoreFailedF`).
    StreamStoreFailed = (503, 10077, "{err}");
    /// 400 / 10078: `consumer config required` (`JSConsumerConfigRequiredErr`).
    ConsumerConfigRequired = (400, 10078, "consumer config required");
    /// 400 / 10079: `consumer deliver subject has wildcards` (`JSConsumerDeliverToWildcardsErr`).
    ConsumerDeliverToWildcards = (400, 10079, "consumer deliver subject has wildcards");
    /// 400 / 10080: `consumer in push mode can not set max waiting` (`JSConsumerPushMaxWaitingErr`).
    ConsumerPushMaxWaiting = (400, 10080, "consumer in push mode can not set max waiting");
    /// 400 / 10081: `consumer deliver subject forms a cycle` (`JSConsumerDeliverCycleErr`).
    ConsumerDeliverCycle = (400, 10081, "consumer deliver subject forms a cycle");
    /// 400 / 10082: `consumer requires ack policy for max ack pending` (`JSConsumerMaxPendingAckPolicyRequiredErr`).
    ConsumerMaxPendingAckPolicyRequired = (400, 10082, "consumer requires ack policy for max ack pending");
    /// 400 / 10083: `consumer idle heartbeat needs to be >= 100ms` (`JSConsumerSmallHeartbeatErr`).
    ConsumerSmallHeartbeat = (400, 10083, "consumer idle heartbeat needs to be >= 100ms");
    /// 400 / 10084: `consumer in pull mode requires ack policy` (`JSConsumerPullRequiresAckErr`).
    ConsumerPullRequiresAck = (400, 10084, "consumer in pull mode requires ack policy");
    /// 400 / 10085: `consumer in pull mode requires a durable name` (`JSConsumerPullNotDurableErr`).
    ConsumerPullNotDurable = (400, 10085, "consumer in pull mode requires a durable name");
    /// 400 / 10086: `consumer in pull mode can not have rate limit set` (`JSConsumerPullWithRateLimitErr`).
    ConsumerPullWithRateLimit = (400, 10086, "consumer in pull mode can not have rate limit set");
    /// 400 / 10087: `consumer max waiting needs to be positive` (`JSConsumerMaxWaitingNegativeErr`).
    ConsumerMaxWaitingNegative = (400, 10087, "consumer max waiting needs to be positive");
    /// 400 / 10088: `consumer idle heartbeat requires a push based consumer` (`JSConsumerHBRequiresPushErr`).
    ConsumerHBRequiresPush = (400, 10088, "consumer idle heartbeat requires a push based consumer");
    /// 400 / 10089: `consumer flow control requires a push based consumer` (`JSConsumerFCRequiresPushErr`).
    ConsumerFCRequiresPush = (400, 10089, "consumer flow control requires a push based consumer");
    /// 400 / 10090: `consumer direct requires a push based consumer` (`JSConsumerDirectRequiresPushErr`).
    ConsumerDirectRequiresPush = (400, 10090, "consumer direct requires a push based consumer");
    /// 400 / 10091: `consumer direct requires an ephemeral consumer` (`JSConsumerDirectRequiresEphemeralErr`).
    ConsumerDirectRequiresEphemeral = (400, 10091, "consumer direct requires an ephemeral consumer");
    /// 400 / 10092: `consumer direct on a mapped consumer` (`JSConsumerOnMappedErr`).
    ConsumerOnMapped = (400, 10092, "consumer direct on a mapped consumer");
    /// 400 / 10093: `consumer filter subject is not a valid subset of the interest subjects` (`JSConsumerFilterNotSubsetErr`).
    ConsumerFilterNotSubset = (400, 10093, "consumer filter subject is not a valid subset of the interest subjects");
    /// 400 / 10094: `{err}` (`JSConsumerInvalidPolicyErrF`).
    ConsumerInvalidPolicy = (400, 10094, "{err}");
    /// 400 / 10095: `failed to parse consumer sampling configuration: {err}` (`JSConsumerInvalidSamplingErrF`).
    ConsumerInvalidSampling = (400, 10095, "failed to parse consumer sampling configuration: {err}");
    /// 500 / 10096: `stream not valid` (`JSStreamInvalidErr`).
    StreamInvalid = (500, 10096, "stream not valid");
    /// 400 / 10097: `header size exceeds maximum allowed of 64k` (`JSStreamHeaderExceedsMaximumErr`).
    StreamHeaderExceedsMaximum = (400, 10097, "header size exceeds maximum allowed of 64k");
    /// 400 / 10098: `workqueue stream requires explicit ack` (`JSConsumerWQRequiresExplicitAckErr`).
    ConsumerWQRequiresExplicitAck = (400, 10098, "workqueue stream requires explicit ack");
    /// 400 / 10099: `multiple non-filtered consumers not allowed on workqueue stream` (`JSConsumerWQMultipleUnfilteredErr`).
    ConsumerWQMultipleUnfiltered = (400, 10099, "multiple non-filtered consumers not allowed on workqueue stream");
    /// 400 / 10100: `filtered consumer not unique on workqueue stream` (`JSConsumerWQConsumerNotUniqueErr`).
    ConsumerWQConsumerNotUnique = (400, 10100, "filtered consumer not unique on workqueue stream");
    /// 400 / 10101: `consumer must be deliver all on workqueue stream` (`JSConsumerWQConsumerNotDeliverAllErr`).
    ConsumerWQConsumerNotDeliverAll = (400, 10101, "consumer must be deliver all on workqueue stream");
    /// 400 / 10102: `consumer name is too long, maximum allowed is {max}` (`JSConsumerNameTooLongErrF`).
    ConsumerNameTooLong = (400, 10102, "consumer name is too long, maximum allowed is {max}");
    /// 400 / 10103: `durable name can not contain '.', '*', '>'` (`JSConsumerBadDurableNameErr`).
    ConsumerBadDurableName = (400, 10103, "durable name can not contain '.', '*', '>'");
    /// 500 / 10104: `error creating store for consumer: {err}` (`JSConsumerStoreFailedErrF`).
    ConsumerStoreFailed = (500, 10104, "error creating store for consumer: {err}");
    /// 400 / 10105: `consumer already exists and is still active` (`JSConsumerExistingActiveErr`).
    ConsumerExistingActive = (400, 10105, "consumer already exists and is still active");
    /// 400 / 10106: `consumer replacement durable config not the same` (`JSConsumerReplacementWithDifferentNameErr`).
    ConsumerReplacementWithDifferentName = (400, 10106, "consumer replacement durable config not the same");
    /// 400 / 10107: `consumer description is too long, maximum allowed is {max}` (`JSConsumerDescriptionTooLongErrF`).
    ConsumerDescriptionTooLong = (400, 10107, "consumer description is too long, maximum allowed is {max}");
    /// 400 / 10108: `consumer with flow control also needs heartbeats` (`JSConsumerWithFlowControlNeedsHeartbeats`).
    ConsumerWithFlowControlNeedsHeartbeats = (400, 10108, "consumer with flow control also needs heartbeats");
    /// 400 / 10109: `invalid operation on sealed stream` (`JSStreamSealedErr`).
    StreamSealed = (400, 10109, "invalid operation on sealed stream");
    /// 500 / 10110: `{err}` (`JSStreamPurgeFailedF`).
    StreamPurgeFailed = (500, 10110, "{err}");
    /// 500 / 10111: `{err}` (`JSStreamRollupFailedF`).
    StreamRollupFailed = (500, 10111, "{err}");
    /// 400 / 10112: `invalid push consumer deliver subject` (`JSConsumerInvalidDeliverSubject`).
    ConsumerInvalidDeliverSubject = (400, 10112, "invalid push consumer deliver subject");
    /// 400 / 10113: `account requires a stream config to have max bytes set` (`JSStreamMaxBytesRequired`).
    StreamMaxBytesRequired = (400, 10113, "account requires a stream config to have max bytes set");
    /// 400 / 10114: `consumer max request batch needs to be > 0` (`JSConsumerMaxRequestBatchNegativeErr`).
    ConsumerMaxRequestBatchNegative = (400, 10114, "consumer max request batch needs to be > 0");
    /// 400 / 10115: `consumer max request expires needs to be >= 1ms` (`JSConsumerMaxRequestExpiresToSmall`).
    ConsumerMaxRequestExpiresToSmall = (400, 10115, "consumer max request expires needs to be >= 1ms");
    /// 400 / 10116: `max deliver is required to be > length of backoff values` (`JSConsumerMaxDeliverBackoffErr`).
    ConsumerMaxDeliverBackoff = (400, 10116, "max deliver is required to be > length of backoff values");
    /// 500 / 10117: `subject details would exceed maximum allowed` (`JSStreamInfoMaxSubjectsErr`).
    StreamInfoMaxSubjects = (500, 10117, "subject details would exceed maximum allowed");
    /// 500 / 10118: `stream is offline` (`JSStreamOfflineErr`).
    StreamOffline = (500, 10118, "stream is offline");
    /// 500 / 10119: `consumer is offline` (`JSConsumerOfflineErr`).
    ConsumerOffline = (500, 10119, "consumer is offline");
    /// 400 / 10120: `no JetStream default or applicable tiered limit present` (`JSNoLimitsErr`).
    NoLimits = (400, 10120, "no JetStream default or applicable tiered limit present");
    /// 400 / 10121: `consumer max ack pending exceeds system limit of {limit}` (`JSConsumerMaxPendingAckExcessErrF`).
    ConsumerMaxPendingAckExcess = (400, 10121, "consumer max ack pending exceeds system limit of {limit}");
    /// 400 / 10122: `stream max bytes exceeds account limit max stream bytes` (`JSStreamMaxStreamBytesExceeded`).
    StreamMaxStreamBytesExceeded = (400, 10122, "stream max bytes exceeds account limit max stream bytes");
    /// 400 / 10123: `can not move and scale a stream in a single update` (`JSStreamMoveAndScaleErr`).
    StreamMoveAndScale = (400, 10123, "can not move and scale a stream in a single update");
    /// 400 / 10124: `stream move already in progress: {msg}` (`JSStreamMoveInProgressF`).
    StreamMoveInProgress = (400, 10124, "stream move already in progress: {msg}");
    /// 400 / 10125: `consumer max request batch exceeds server limit of {limit}` (`JSConsumerMaxRequestBatchExceededF`).
    ConsumerMaxRequestBatchExceeded = (400, 10125, "consumer max request batch exceeds server limit of {limit}");
    /// 400 / 10126: `consumer config replica count exceeds parent stream` (`JSConsumerReplicasExceedsStream`).
    ConsumerReplicasExceedsStream = (400, 10126, "consumer config replica count exceeds parent stream");
    /// 400 / 10127: `Consumer name can not contain path separators` (`JSConsumerNameContainsPathSeparatorsErr`).
    ConsumerNameContainsPathSeparators = (400, 10127, "Consumer name can not contain path separators");
    /// 400 / 10128: `Stream name can not contain path separators` (`JSStreamNameContainsPathSeparatorsErr`).
    StreamNameContainsPathSeparators = (400, 10128, "Stream name can not contain path separators");
    /// 400 / 10129: `stream move not in progress` (`JSStreamMoveNotInProgress`).
    StreamMoveNotInProgress = (400, 10129, "stream move not in progress");
    /// 400 / 10130: `stream name already in use, cannot restore` (`JSStreamNameExistRestoreFailedErr`).
    StreamNameExistRestoreFailed = (400, 10130, "stream name already in use, cannot restore");
    /// 400 / 10131: `Consumer create request did not match filtered subject from create subject` (`JSConsumerCreateFilterSubjectMismatchErr`).
    ConsumerCreateFilterSubjectMismatch = (400, 10131, "Consumer create request did not match filtered subject from create subject");
    /// 400 / 10132: `Consumer Durable and Name have to be equal if both are provided` (`JSConsumerCreateDurableAndNameMismatch`).
    ConsumerCreateDurableAndNameMismatch = (400, 10132, "Consumer Durable and Name have to be equal if both are provided");
    /// 400 / 10133: `replicas count cannot be negative` (`JSReplicasCountCannotBeNegative`).
    ReplicasCountCannotBeNegative = (400, 10133, "replicas count cannot be negative");
    /// 400 / 10134: `consumer config replicas must match interest retention stream's replicas` (`JSConsumerReplicasShouldMatchStream`).
    ConsumerReplicasShouldMatchStream = (400, 10134, "consumer config replicas must match interest retention stream's replicas");
    /// 400 / 10135: `consumer metadata exceeds maximum size of {limit}` (`JSConsumerMetadataLengthErrF`).
    ConsumerMetadataLength = (400, 10135, "consumer metadata exceeds maximum size of {limit}");
    /// 400 / 10136: `consumer cannot have both FilterSubject and FilterSubjects specified` (`JSConsumerDuplicateFilterSubjects`).
    ConsumerDuplicateFilterSubjects = (400, 10136, "consumer cannot have both FilterSubject and FilterSubjects specified");
    /// 400 / 10137: `consumer with multiple subject filters cannot use subject based API` (`JSConsumerMultipleFiltersNotAllowed`).
    ConsumerMultipleFiltersNotAllowed = (400, 10137, "consumer with multiple subject filters cannot use subject based API");
    /// 400 / 10138: `consumer subject filters cannot overlap` (`JSConsumerOverlappingSubjectFilters`).
    ConsumerOverlappingSubjectFilters = (400, 10138, "consumer subject filters cannot overlap");
    /// 400 / 10139: `consumer filter in FilterSubjects cannot be empty` (`JSConsumerEmptyFilter`).
    ConsumerEmptyFilter = (400, 10139, "consumer filter in FilterSubjects cannot be empty");
    /// 400 / 10140: `duplicate source configuration detected` (`JSSourceDuplicateDetected`).
    SourceDuplicateDetected = (400, 10140, "duplicate source configuration detected");
    /// 400 / 10141: `sourced stream name is invalid` (`JSSourceInvalidStreamName`).
    SourceInvalidStreamName = (400, 10141, "sourced stream name is invalid");
    /// 400 / 10142: `mirrored stream name is invalid` (`JSMirrorInvalidStreamName`).
    MirrorInvalidStreamName = (400, 10142, "mirrored stream name is invalid");
    /// 400 / 10143: `stream mirrors can not have first sequence configured` (`JSMirrorWithFirstSeqErr`).
    MirrorWithFirstSeq = (400, 10143, "stream mirrors can not have first sequence configured");
    /// 400 / 10144: `source with multiple subject transforms cannot also have a single subject filter` (`JSSourceMultipleFiltersNotAllowed`).
    SourceMultipleFiltersNotAllowed = (400, 10144, "source with multiple subject transforms cannot also have a single subject filter");
    /// 400 / 10145: `source subject filter is invalid` (`JSSourceInvalidSubjectFilter`).
    SourceInvalidSubjectFilter = (400, 10145, "source subject filter is invalid");
    /// 400 / 10146: `source transform destination is invalid` (`JSSourceInvalidTransformDestination`).
    SourceInvalidTransformDestination = (400, 10146, "source transform destination is invalid");
    /// 400 / 10147: `source filters can not overlap` (`JSSourceOverlappingSubjectFilters`).
    SourceOverlappingSubjectFilters = (400, 10147, "source filters can not overlap");
    /// 400 / 10148: `consumer already exists` (`JSConsumerAlreadyExists`).
    ConsumerAlreadyExists = (400, 10148, "consumer already exists");
    /// 400 / 10149: `consumer does not exist` (`JSConsumerDoesNotExist`).
    ConsumerDoesNotExist = (400, 10149, "consumer does not exist");
    /// 400 / 10150: `mirror with multiple subject transforms cannot also have a single subject filter` (`JSMirrorMultipleFiltersNotAllowed`).
    MirrorMultipleFiltersNotAllowed = (400, 10150, "mirror with multiple subject transforms cannot also have a single subject filter");
    /// 400 / 10151: `mirror subject filter is invalid` (`JSMirrorInvalidSubjectFilter`).
    MirrorInvalidSubjectFilter = (400, 10151, "mirror subject filter is invalid");
    /// 400 / 10152: `mirror subject filters can not overlap` (`JSMirrorOverlappingSubjectFilters`).
    MirrorOverlappingSubjectFilters = (400, 10152, "mirror subject filters can not overlap");
    /// 400 / 10153: `consumer inactive threshold exceeds system limit of {limit}` (`JSConsumerInactiveThresholdExcess`).
    ConsumerInactiveThresholdExcess = (400, 10153, "consumer inactive threshold exceeds system limit of {limit}");
    /// 400 / 10155: `stream transform source: {err}` (`JSStreamTransformInvalidSource`).
    StreamTransformInvalidSource = (400, 10155, "stream transform source: {err}");
    /// 400 / 10156: `stream transform: {err}` (`JSStreamTransformInvalidDestination`).
    StreamTransformInvalidDestination = (400, 10156, "stream transform: {err}");
}

impl JsErrorCode {
    /// The code with this `err_code`.
    pub fn from_err_code(err_code: u16) -> Option<JsErrorCode> {
        JsErrorCode::ALL
            .iter()
            .copied()
            .find(|code| code.err_code() == err_code)
    }

    /// The error with the description template as is (what nats-server sends for codes
    /// without placeholders).
    pub fn error(self) -> ApiError {
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description: self.description().to_owned(),
        }
    }

    /// The error with placeholders replaced, like Go's `strings.NewReplacer` over
    /// `(key, value)` pairs: one left-to-right pass, replaced text is not rescanned, and
    /// unknown placeholders stay as they are. Keys include the braces: `("{seq}", &5)`.
    pub fn error_with(self, args: &[(&str, &dyn fmt::Display)]) -> ApiError {
        ApiError {
            code: self.code(),
            err_code: self.err_code(),
            description: render_template(self.description(), args),
        }
    }

    /// The error with `{err}` replaced by `err` (the `...ErrF` constructors).
    pub fn with_err(self, err: impl fmt::Display) -> ApiError {
        self.error_with(&[("{err}", &err)])
    }
}

pub(super) fn render_template(template: &str, args: &[(&str, &dyn fmt::Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    'scan: while !rest.is_empty() {
        for (key, value) in args {
            if !key.is_empty() && rest.starts_with(key) {
                out.push_str(&value.to_string());
                rest = &rest[key.len()..];
                continue 'scan;
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}
