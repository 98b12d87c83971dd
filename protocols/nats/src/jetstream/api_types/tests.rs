//! Round trips against what nats-server emits and what clients send.

use super::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A stream config as async-nats 0.51 serializes `Config { name, subjects, ..Default }`.
const ASYNC_NATS_STREAM: &str = r#"{"name":"events","max_bytes":0,"max_msgs":0,"max_msgs_per_subject":0,"discard":"old","subjects":["events.>"],"retention":"limits","max_consumers":0,"max_age":0,"storage":"file","num_replicas":0,"consumer_limits":null}"#;

/// A KV-style stream config from async-nats 0.51.
const ASYNC_NATS_KV_STREAM: &str = r#"{"name":"kv","max_bytes":0,"max_msgs":0,"max_msgs_per_subject":5,"discard":"new","subjects":["$KV.kv.>"],"retention":"limits","max_consumers":0,"max_age":3600000000000,"max_msg_size":-1,"storage":"memory","num_replicas":1,"duplicate_window":120000000000,"allow_rollup_hdrs":true,"deny_delete":true,"allow_direct":true,"consumer_limits":null}"#;

/// `StreamConfig(name="foo", subjects=["foo.*"]).as_dict()` from nats-py 2.x.
const NATS_PY_STREAM: &str = r#"{"name": "foo", "subjects": ["foo.*"], "discard": "old", "discard_new_per_subject": false, "max_msgs_per_subject": -1, "max_msg_size": -1, "no_ack": false, "duplicate_window": 0, "sealed": false, "deny_delete": false, "deny_purge": false, "allow_rollup_hdrs": false, "max_age": 0}"#;

/// The stored config nats-server 2.10 reports for `ASYNC_NATS_STREAM`.
const SERVER_STREAM_CONFIG: &str = r#"{"name":"events","subjects":["events.>"],"retention":"limits","max_consumers":-1,"max_msgs":-1,"max_bytes":-1,"max_age":0,"max_msgs_per_subject":-1,"max_msg_size":-1,"discard":"old","storage":"file","num_replicas":1,"duplicate_window":120000000000,"compression":"none","allow_direct":false,"mirror_direct":false,"sealed":false,"deny_delete":false,"deny_purge":false,"allow_rollup_hdrs":false,"consumer_limits":{}}"#;

const EMPTY_STATE: &str = r#"{"messages":0,"bytes":0,"first_seq":0,"first_ts":"0001-01-01T00:00:00Z","last_seq":0,"last_ts":"0001-01-01T00:00:00Z","consumer_count":0}"#;

fn server_stream_info() -> StreamInfo {
    StreamInfo {
        config: serde_json::from_str(SERVER_STREAM_CONFIG).unwrap(),
        created: "2024-01-02T03:04:05.123456789Z".into(),
        state: StreamState::default(),
        domain: String::new(),
        cluster: None,
        mirror: None,
        sources: Vec::new(),
        alternates: Vec::new(),
        ts: "2024-01-02T03:04:05.1234Z".into(),
    }
}

fn assert_round_trip<T>(json: &str) -> T
where
    T: Serialize + DeserializeOwned,
{
    let value: T = serde_json::from_str(json).unwrap();
    assert_eq!(serde_json::to_string(&value).unwrap(), json);
    value
}

#[test]
fn async_nats_stream_create_request_gets_server_defaults() {
    let mut config: StreamConfig = serde_json::from_str(ASYNC_NATS_STREAM).unwrap();
    assert_eq!(config.name, "events");
    assert_eq!(config.num_replicas, 0);
    assert_eq!(config.consumer_limits, StreamConsumerLimits::default());
    config.apply_server_defaults();
    assert_eq!(
        serde_json::to_string(&config).unwrap(),
        SERVER_STREAM_CONFIG
    );
    assert_round_trip::<StreamConfig>(SERVER_STREAM_CONFIG);
}

#[test]
fn async_nats_kv_stream_config() {
    let mut config: StreamConfig = serde_json::from_str(ASYNC_NATS_KV_STREAM).unwrap();
    assert_eq!(config.discard, DiscardPolicy::New);
    assert_eq!(config.storage, StorageType::Memory);
    assert!(config.allow_rollup_hdrs && config.deny_delete && config.allow_direct);
    assert_eq!(config.max_age, 3_600_000_000_000);
    config.apply_server_defaults();
    assert_eq!(config.max_msgs_per_subject, 5);
    assert_eq!(config.max_msg_size, -1);
    assert_eq!(config.duplicate_window, DEFAULT_DUPLICATE_WINDOW_NS);
}

#[test]
fn nats_py_stream_config_and_defaults() {
    let mut config: StreamConfig = serde_json::from_str(NATS_PY_STREAM).unwrap();
    assert_eq!(config.retention, RetentionPolicy::Limits);
    assert_eq!(config.storage, StorageType::File);
    config.apply_server_defaults();
    assert_eq!(config.num_replicas, 1);
    assert_eq!(config.max_msgs, -1);
    assert_eq!(config.subjects, vec!["foo.*".to_owned()]);
}

#[test]
fn stream_defaults_duplicate_window_and_subjects() {
    let mut config = StreamConfig::named("S");
    config.max_age = 30 * NANOS_PER_SEC;
    config.apply_server_defaults();
    assert_eq!(config.duplicate_window, 30 * NANOS_PER_SEC);
    assert_eq!(config.subjects, vec!["S".to_owned()]);

    let mut mirror = StreamConfig::named("M");
    mirror.mirror = Some(StreamSource {
        name: "S".into(),
        ..StreamSource::default()
    });
    mirror.apply_server_defaults();
    assert_eq!(mirror.duplicate_window, 0);
    assert!(mirror.subjects.is_empty());
}

#[test]
fn enums_follow_go_unmarshalers() {
    let discard: DiscardPolicy = serde_json::from_str(r#""NEW""#).unwrap();
    assert_eq!(discard, DiscardPolicy::New);
    assert!(serde_json::from_str::<RetentionPolicy>(r#""Limits""#).is_err());
    let deliver: DeliverPolicy = serde_json::from_str(r#""undefined""#).unwrap();
    assert_eq!(deliver, DeliverPolicy::All);
    assert_eq!(
        serde_json::to_string(&DeliverPolicy::LastPerSubject).unwrap(),
        r#""last_per_subject""#
    );
    assert_eq!(
        serde_json::to_string(&ConsumerAction::CreateOrUpdate).unwrap(),
        r#""""#
    );
    assert!(serde_json::from_str::<ConsumerAction>(r#""upsert""#).is_err());
    assert!(serde_json::from_str::<StreamConfig>(r#"{"name":"x","retention":null}"#).is_err());
}

#[test]
fn stream_create_response_round_trips() {
    let json = format!(
        r#"{{"type":"io.nats.jetstream.api.v1.stream_create_response","config":{SERVER_STREAM_CONFIG},"created":"2024-01-02T03:04:05.123456789Z","state":{EMPTY_STATE},"ts":"2024-01-02T03:04:05.1234Z","did_create":true}}"#
    );
    let response: StreamInfoResponse = assert_round_trip(&json);
    assert_eq!(response, StreamInfoResponse::create(server_stream_info()));
}

#[test]
fn stream_info_response_carries_paging_and_cluster() {
    let json = format!(
        r#"{{"type":"io.nats.jetstream.api.v1.stream_info_response","total":0,"offset":0,"limit":0,"config":{SERVER_STREAM_CONFIG},"created":"2024-01-02T03:04:05.123456789Z","state":{{"messages":3,"bytes":120,"first_seq":1,"first_ts":"2024-01-02T03:04:06Z","last_seq":4,"last_ts":"2024-01-02T03:04:07.5Z","num_subjects":2,"num_deleted":1,"consumer_count":1}},"cluster":{{"leader":"NDJWE4SOUJOJT2TY5Y2YQEOAHGAK5VIGXTGKWJSFHVCII4ITI3LBHBUV"}},"ts":"2024-01-02T03:04:08Z"}}"#
    );
    let response: StreamInfoResponse = assert_round_trip(&json);
    let info = response.info.unwrap();
    assert_eq!(info.state.num_deleted, 1);
    assert_eq!(response.paged, Some(ApiPaged::default()));

    let error = StreamInfoResponse::error(
        response_type::STREAM_INFO,
        JsErrorCode::StreamNotFound.error(),
    );
    assert_eq!(
        serde_json::to_string(&error).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_info_response","error":{"code":404,"err_code":10059,"description":"stream not found"},"total":0,"offset":0,"limit":0}"#
    );
    let parsed: StreamInfoResponse =
        serde_json::from_str(&serde_json::to_string(&error).unwrap()).unwrap();
    assert!(parsed.info.is_none());
    assert!(parsed.error.unwrap().is(JsErrorCode::StreamNotFound));

    let create_error = StreamInfoResponse::error(
        response_type::STREAM_CREATE,
        JsErrorCode::StreamNameExist.error(),
    );
    assert_eq!(
        serde_json::to_string(&create_error).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":400,"err_code":10058,"description":"stream name already in use with a different configuration"}}"#
    );
}

#[test]
fn stream_names_and_list_responses() {
    assert_eq!(
        serde_json::to_string(&StreamNamesResponse::new(0, 0, Vec::new())).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":0,"offset":0,"limit":1024,"streams":null}"#
    );
    let names: StreamNamesResponse = assert_round_trip(
        r#"{"type":"io.nats.jetstream.api.v1.stream_names_response","total":2,"offset":0,"limit":1024,"streams":["A","B"]}"#,
    );
    assert_eq!(names.streams.unwrap(), vec!["A".to_owned(), "B".to_owned()]);
    assert_eq!(
        serde_json::to_string(&StreamListResponse::new(0, 0, Vec::new())).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_list_response","total":0,"offset":0,"limit":256,"streams":[]}"#
    );
    assert_eq!(
        serde_json::to_string(&ConsumerNamesResponse::new(0, 0, Vec::new())).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.consumer_names_response","total":0,"offset":0,"limit":1024,"consumers":[]}"#
    );
    let request: StreamNamesRequest =
        decode_request(br#"{"offset":0,"subject":"orders.*"}"#).unwrap();
    assert_eq!(request.subject, "orders.*");
}

#[test]
fn success_purge_and_msg_responses() {
    assert_eq!(
        serde_json::to_string(&SuccessResponse::ok(response_type::STREAM_DELETE)).unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_delete_response","success":true}"#
    );
    assert_eq!(
        serde_json::to_string(&SuccessResponse::error(
            response_type::CONSUMER_DELETE,
            JsErrorCode::ConsumerNotFound.error()
        ))
        .unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.consumer_delete_response","error":{"code":404,"err_code":10014,"description":"consumer not found"}}"#
    );
    assert_round_trip::<StreamPurgeResponse>(
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","success":true,"purged":7}"#,
    );
    assert_eq!(
        serde_json::to_string(&StreamPurgeResponse::error(
            JsErrorCode::StreamSealed.error()
        ))
        .unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.stream_purge_response","error":{"code":400,"err_code":10109,"description":"invalid operation on sealed stream"},"purged":0}"#
    );
    let get: StreamMsgGetResponse = assert_round_trip(
        r#"{"type":"io.nats.jetstream.api.v1.stream_msg_get_response","message":{"subject":"events.a","seq":3,"hdrs":"TkFUUy8xLjANCkZvbzogYmFyDQoNCg==","data":"aGVsbG8=","time":"2024-01-02T03:04:05.000000001Z"}}"#,
    );
    let message = get.message.unwrap();
    assert_eq!(&message.hdrs[..], b"NATS/1.0\r\nFoo: bar\r\n\r\n");
    assert_eq!(&message.data[..], b"hello");
    let bare: StoredMsg =
        serde_json::from_str(r#"{"subject":"s","seq":1,"time":"2024-01-02T03:04:05Z"}"#).unwrap();
    assert!(bare.data.is_empty());
    assert_eq!(
        serde_json::to_string(&bare).unwrap(),
        r#"{"subject":"s","seq":1,"time":"2024-01-02T03:04:05Z"}"#
    );
}

#[test]
fn msg_get_and_purge_validation() {
    let by_seq: StreamMsgGetRequest = decode_request(br#"{"seq":5}"#).unwrap();
    assert_eq!(by_seq.target().unwrap(), MsgGetTarget::Sequence(5));
    let last: StreamMsgGetRequest = decode_request(br#"{"last_by_subj":"a.b"}"#).unwrap();
    assert_eq!(last.target().unwrap(), MsgGetTarget::LastBySubject("a.b"));
    let next: StreamMsgGetRequest = decode_request(br#"{"seq":2,"next_by_subj":"a.*"}"#).unwrap();
    assert_eq!(
        next.target().unwrap(),
        MsgGetTarget::NextBySubject {
            subject: "a.*",
            start_seq: 2
        }
    );
    for bad in [
        &br#"{}"#[..],
        br#"{"seq":1,"last_by_subj":"a"}"#,
        br#"{"last_by_subj":"a","next_by_subj":"b"}"#,
    ] {
        let request: StreamMsgGetRequest = decode_request(bad).unwrap();
        assert!(request.target().unwrap_err().is(JsErrorCode::BadRequest));
    }
    let purge: StreamPurgeRequest = decode_request(br#"{"seq":3,"keep":1}"#).unwrap();
    assert!(purge.validate().is_err());
    let delete: StreamMsgDeleteRequest = decode_request(br#"{"seq":9}"#).unwrap();
    assert_eq!(
        delete,
        StreamMsgDeleteRequest {
            seq: 9,
            no_erase: false
        }
    );
    assert_eq!(
        serde_json::to_string(&StreamMsgDeleteRequest {
            seq: 0,
            no_erase: true
        })
        .unwrap(),
        r#"{"seq":0,"no_erase":true}"#
    );
}

#[test]
fn request_bodies_like_encoding_json() {
    assert!(is_empty_request(b""));
    assert!(is_empty_request(b"{}"));
    assert!(is_empty_request(b" { } "));
    assert!(!is_empty_request(b"null"));
    assert!(!is_empty_request(b"[]"));
    // async-nats `get_stream` sends `null` to STREAM.INFO.
    let info: StreamInfoRequest = decode_request(b"null").unwrap();
    assert_eq!(info, StreamInfoRequest::default());
    let info: StreamInfoRequest =
        decode_request(br#"{"offset":0,"deleted_details":false,"subjects_filter":""}"#).unwrap();
    assert_eq!(info, StreamInfoRequest::default());
    assert!(
        decode_request::<StreamInfoRequest>(b"[]")
            .unwrap_err()
            .is(JsErrorCode::InvalidJson)
    );
    assert!(
        decode_request::<StreamConfig>(b"")
            .unwrap_err()
            .is(JsErrorCode::InvalidJson)
    );
    assert!(decode_request::<StreamConfig>(b"{\"name\":").is_err());
    let config: StreamConfig =
        decode_request(br#"{"name":"x","subjects":null,"metadata":null,"max_msgs":null}"#).unwrap();
    assert_eq!(config.name, "x");
    assert!(config.subjects.is_empty());
}

#[test]
fn consumer_create_requests_from_clients() {
    // async-nats: json!({"stream_name", "config", "action"}) with a pull::Config.
    let request: CreateConsumerRequest = decode_request(
            br#"{"action":"","config":{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","replay_policy":"instant"},"stream_name":"events"}"#,
        )
        .unwrap();
    assert_eq!(request.action, ConsumerAction::CreateOrUpdate);
    assert_eq!(request.config.durable_name, "dur");
    assert_eq!(request.config.ack_policy, AckPolicy::Explicit);
    let mut config = request.config;
    config.apply_server_defaults(&StreamConsumerLimits::default());
    assert_eq!(
        serde_json::to_string(&config).unwrap(),
        r#"{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0}"#
    );

    let full: ConsumerConfig = serde_json::from_str(
            r#"{"durable_name":"d","deliver_policy":"by_start_sequence","opt_start_seq":10,"ack_policy":"explicit","ack_wait":5000000000,"max_deliver":3,"filter_subjects":["a.*","b.>"],"replay_policy":"instant","sample_freq":"50","backoff":[1000000000,2000000000]}"#,
        )
        .unwrap();
    assert_eq!(full.deliver_policy, DeliverPolicy::ByStartSequence);
    assert_eq!(full.opt_start_seq, 10);
    assert_eq!(full.sample_freq, "50");
    let mut defaulted = full.clone();
    defaulted.apply_server_defaults(&StreamConsumerLimits::default());
    assert_eq!(defaulted.ack_wait, 1_000_000_000);
    assert_eq!(defaulted.max_deliver, 3);

    let by_time: ConsumerConfig = serde_json::from_str(
            r#"{"deliver_policy":"by_start_time","opt_start_time":"2024-01-02T03:04:05.123456789Z","ack_policy":"explicit","replay_policy":"instant"}"#,
        )
        .unwrap();
    assert_eq!(
        parse_rfc3339_nanos(by_time.opt_start_time.as_deref().unwrap()),
        Some(1_704_164_645_123_456_789)
    );

    // nats-py: no action key, zero durations, ephemeral.
    let py: CreateConsumerRequest = decode_request(
            br#"{"stream_name": "foo", "config": {"deliver_policy": "new", "ack_policy": "explicit", "replay_policy": "instant", "ack_wait": 0, "idle_heartbeat": 0, "inactive_threshold": 0}}"#,
        )
        .unwrap();
    assert_eq!(py.action, ConsumerAction::CreateOrUpdate);
    let mut eph = py.config;
    eph.apply_server_defaults(&StreamConsumerLimits {
        inactive_threshold: 0,
        max_ack_pending: 20,
    });
    assert_eq!(
        eph.inactive_threshold,
        DEFAULT_EPHEMERAL_INACTIVE_THRESHOLD_NS
    );
    assert_eq!(eph.max_ack_pending, 20);

    // A missing ack_policy is "none" on the server.
    let bare: ConsumerConfig = serde_json::from_str(r#"{"durable_name":"x"}"#).unwrap();
    assert_eq!(bare.ack_policy, AckPolicy::None);
    let action: CreateConsumerRequest =
        decode_request(br#"{"stream_name":"s","config":null,"action":"create"}"#).unwrap();
    assert_eq!(action.action, ConsumerAction::Create);
}

#[test]
fn consumer_info_response_round_trips() {
    let json = r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","stream_name":"events","name":"dur","created":"2024-01-02T03:04:05.5Z","config":{"durable_name":"dur","name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0},"delivered":{"consumer_seq":0,"stream_seq":0},"ack_floor":{"consumer_seq":0,"stream_seq":0},"num_ack_pending":0,"num_redelivered":0,"num_waiting":0,"num_pending":0,"ts":"2024-01-02T03:04:05.6Z"}"#;
    let response: ConsumerInfoResponse = assert_round_trip(json);
    let info = response.info.unwrap();
    assert_eq!(info.config.max_waiting, 512);
    let active = r#"{"type":"io.nats.jetstream.api.v1.consumer_info_response","stream_name":"events","name":"dur","created":"2024-01-02T03:04:05.5Z","config":{"durable_name":"dur","deliver_policy":"all","ack_policy":"explicit","ack_wait":30000000000,"max_deliver":-1,"replay_policy":"instant","max_waiting":512,"max_ack_pending":1000,"num_replicas":0},"delivered":{"consumer_seq":4,"stream_seq":6,"last_active":"2024-01-02T03:04:07.25Z"},"ack_floor":{"consumer_seq":2,"stream_seq":3,"last_active":"2024-01-02T03:04:07Z"},"num_ack_pending":2,"num_redelivered":1,"num_waiting":1,"num_pending":10,"cluster":{"leader":"srv"},"ts":"2024-01-02T03:04:08Z"}"#;
    let response: ConsumerInfoResponse = assert_round_trip(active);
    assert_eq!(response.info.unwrap().delivered.stream_seq, 6);
    assert_eq!(
        serde_json::to_string(&ConsumerInfoResponse::error(
            response_type::CONSUMER_CREATE,
            JsErrorCode::ConsumerAlreadyExists.error()
        ))
        .unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.consumer_create_response","error":{"code":400,"err_code":10148,"description":"consumer already exists"}}"#
    );
}

#[test]
fn pull_requests_in_every_form() {
    // async-nats BatchConfig, including its null extras.
    let request = parse_next_request(
            br#"{"batch":200,"expires":30000000000,"max_bytes":0,"idle_heartbeat":15000000000,"min_pending":null,"min_ack_pending":null,"group":null,"priority":null}"#,
        )
        .unwrap();
    assert_eq!(
        request,
        NextRequest {
            expires: 30_000_000_000,
            batch: 200,
            max_bytes: 0,
            no_wait: false,
            idle_heartbeat: 15_000_000_000
        }
    );
    let no_wait = parse_next_request(
            br#"{"batch":10,"no_wait":true,"max_bytes":0,"min_pending":null,"min_ack_pending":null,"group":null,"priority":null}"#,
        )
        .unwrap();
    assert!(no_wait.no_wait);
    assert_eq!(no_wait.batch, 10);
    // nats-py.
    let py =
        parse_next_request(br#"{"batch": 5, "expires": 4500000000, "no_wait": true}"#).unwrap();
    assert_eq!((py.batch, py.expires), (5, 4_500_000_000));
    // Empty, bare numbers and junk.
    assert_eq!(parse_next_request(b"").unwrap().batch, 1);
    assert_eq!(parse_next_request(b" \r\n").unwrap().batch, 1);
    assert_eq!(parse_next_request(b"25").unwrap().batch, 25);
    assert_eq!(parse_next_request(b" +3 ").unwrap().batch, 3);
    assert_eq!(parse_next_request(b"abc").unwrap().batch, 1);
    assert_eq!(parse_next_request(br#"{}"#).unwrap().batch, 0);
    assert!(matches!(
        parse_next_request(b"{bad"),
        Err(NextRequestError::InvalidJson(_))
    ));
    assert_eq!(
        parse_next_request(br#"{"batch":1,"expires":1000,"idle_heartbeat":600}"#),
        Err(NextRequestError::HeartbeatTooLarge)
    );
    assert_eq!(
        parse_next_request(br#"{"batch":1,"idle_heartbeat":1}"#),
        Err(NextRequestError::HeartbeatTooLarge)
    );
    assert_eq!(
        serde_json::to_string(&NextRequest {
            batch: 2,
            expires: 5,
            ..NextRequest::default()
        })
        .unwrap(),
        r#"{"expires":5,"batch":2}"#
    );
}

#[test]
fn ack_reply_subjects() {
    let subject = ack_reply_subject("ORDERS", "dur", 1, 42, 7, 1_704_164_645_123_456_789, 3);
    assert_eq!(subject, "$JS.ACK.ORDERS.dur.1.42.7.1704164645123456789.3");
    let reply = parse_ack_reply(&subject).unwrap();
    assert_eq!(
        reply,
        AckReply {
            domain: None,
            account_hash: None,
            stream: "ORDERS",
            consumer: "dur",
            delivered: 1,
            stream_seq: 42,
            consumer_seq: 7,
            timestamp_ns: 1_704_164_645_123_456_789,
            pending: 3,
            token: None,
        }
    );
    assert_eq!(reply.to_subject(), subject);

    let v2 = "$JS.ACK.hub.ACCHASH.ORDERS.dur.2.43.8.1704164645123456789.0.rand0m";
    let reply = parse_ack_reply(v2).unwrap();
    assert_eq!(reply.domain, Some("hub"));
    assert_eq!(reply.account_hash, Some("ACCHASH"));
    assert_eq!(
        (
            reply.stream,
            reply.consumer,
            reply.delivered,
            reply.stream_seq
        ),
        ("ORDERS", "dur", 2, 43)
    );
    assert_eq!(reply.token, Some("rand0m"));
    assert_eq!(reply.to_subject(), v2);
    let no_domain = parse_ack_reply("$JS.ACK._.H.S.C.1.2.3.4.5.tok").unwrap();
    assert_eq!(no_domain.domain, None);
    assert_eq!(no_domain.to_subject(), "$JS.ACK._.H.S.C.1.2.3.4.5.tok");
    assert!(
        parse_ack_reply("$JS.ACK._.H.S.C.1.2.3.4.5")
            .unwrap()
            .token
            .is_none()
    );

    assert_eq!(parse_ack_reply("foo.bar"), Err(AckReplyError::NotAck));
    assert_eq!(
        parse_ack_reply("$JS.ACK.S.C.1.2.3.4"),
        Err(AckReplyError::TokenCount(8))
    );
    assert_eq!(
        parse_ack_reply("$JS.ACK.S.C.1.2.3.4.5.6"),
        Err(AckReplyError::TokenCount(10))
    );
    assert_eq!(
        parse_ack_reply("$JS.ACK.S.C.1.-2.3.4.5"),
        Err(AckReplyError::BadNumber(5))
    );
}

#[test]
fn ack_payloads() {
    assert_eq!(parse_ack(b""), AckKind::Ack);
    assert_eq!(parse_ack(b"+ACK"), AckKind::Ack);
    assert_eq!(parse_ack(b"+OK"), AckKind::Ack);
    assert_eq!(parse_ack(b"+ACK "), AckKind::Unknown);
    assert_eq!(parse_ack(b"-NAK"), AckKind::Nak { delay_ns: None });
    // async-nats and nats-py.
    assert_eq!(
        parse_ack(br#"-NAK {"delay":5000000000}"#),
        AckKind::Nak {
            delay_ns: Some(5_000_000_000)
        }
    );
    assert_eq!(
        parse_ack(br#"-NAK {"delay": 250}"#),
        AckKind::Nak {
            delay_ns: Some(250)
        }
    );
    // Go duration text, and junk falling back to a plain NAK.
    assert_eq!(
        parse_ack(b"-NAK 1m30s"),
        AckKind::Nak {
            delay_ns: Some(90_000_000_000)
        }
    );
    assert_eq!(parse_ack(b"-NAK soon"), AckKind::Nak { delay_ns: None });
    assert_eq!(parse_ack(b"-NAK {bad"), AckKind::Nak { delay_ns: None });
    assert_eq!(parse_ack(b"+WPI"), AckKind::Progress);
    assert_eq!(parse_ack(b"+TERM"), AckKind::Term { reason: None });
    assert_eq!(
        parse_ack(b"+TERM  poison pill "),
        AckKind::Term {
            reason: Some("poison pill".into())
        }
    );
    assert_eq!(
        parse_ack(b"+NXT"),
        AckKind::Next(Ok(NextRequest {
            batch: 1,
            ..NextRequest::default()
        }))
    );
    assert_eq!(
        parse_ack(b"+NXT 10"),
        AckKind::Next(Ok(NextRequest {
            batch: 10,
            ..NextRequest::default()
        }))
    );
    assert_eq!(
        parse_ack(br#"+NXT {"batch":2,"no_wait":true}"#),
        AckKind::Next(Ok(NextRequest {
            batch: 2,
            no_wait: true,
            ..NextRequest::default()
        }))
    );
    assert_eq!(parse_ack(b"hello"), AckKind::Unknown);
}

#[test]
fn error_table_matches_nats_server() {
    assert_eq!(JsErrorCode::ALL.len(), 154);
    let check = |code: JsErrorCode, status: u16, err_code: u16, description: &str| {
        assert_eq!(
            (code.code(), code.err_code(), code.description()),
            (status, err_code, description)
        );
        assert_eq!(JsErrorCode::from_err_code(err_code), Some(code));
    };
    check(JsErrorCode::BadRequest, 400, 10003, "bad request");
    check(
        JsErrorCode::ConsumerNameExist,
        400,
        10013,
        "consumer name already in use",
    );
    check(
        JsErrorCode::ConsumerNotFound,
        404,
        10014,
        "consumer not found",
    );
    check(JsErrorCode::InvalidJson, 400, 10025, "invalid JSON");
    check(JsErrorCode::NoMessageFound, 404, 10037, "no message found");
    check(
        JsErrorCode::NotEmptyRequest,
        400,
        10038,
        "expected an empty request payload",
    );
    check(
        JsErrorCode::NotEnabledForAccount,
        503,
        10039,
        "JetStream not enabled for account",
    );
    check(
        JsErrorCode::SequenceNotFound,
        400,
        10043,
        "sequence {seq} not found",
    );
    check(JsErrorCode::StreamInvalidConfig, 500, 10052, "{err}");
    check(
        JsErrorCode::StreamMismatch,
        400,
        10056,
        "stream name in subject does not match request",
    );
    check(
        JsErrorCode::StreamNameExist,
        400,
        10058,
        "stream name already in use with a different configuration",
    );
    check(JsErrorCode::StreamNotFound, 404, 10059, "stream not found");
    check(
        JsErrorCode::StreamNotMatch,
        400,
        10060,
        "expected stream does not match",
    );
    check(
        JsErrorCode::StreamSubjectOverlap,
        400,
        10065,
        "subjects overlap with an existing stream",
    );
    check(
        JsErrorCode::StreamWrongLastMsgId,
        400,
        10070,
        "wrong last msg ID: {id}",
    );
    check(
        JsErrorCode::StreamWrongLastSequence,
        400,
        10071,
        "wrong last sequence: {seq}",
    );
    check(JsErrorCode::NotEnabled, 503, 10076, "JetStream not enabled");
    check(
        JsErrorCode::ConsumerDurableNameNotMatchSubject,
        400,
        10017,
        "consumer name in subject does not match durable name in request",
    );
    check(JsErrorCode::StreamPurgeFailed, 500, 10110, "{err}");
    check(
        JsErrorCode::ConsumerMaxPendingAckExcess,
        400,
        10121,
        "consumer max ack pending exceeds system limit of {limit}",
    );
    check(
        JsErrorCode::ConsumerAlreadyExists,
        400,
        10148,
        "consumer already exists",
    );
    check(
        JsErrorCode::ConsumerDoesNotExist,
        400,
        10149,
        "consumer does not exist",
    );
    check(
        JsErrorCode::ConsumerInactiveThresholdExcess,
        400,
        10153,
        "consumer inactive threshold exceeds system limit of {limit}",
    );
    check(
        JsErrorCode::StreamTransformInvalidSource,
        400,
        10155,
        "stream transform source: {err}",
    );
    check(
        JsErrorCode::StreamTransformInvalidDestination,
        400,
        10156,
        "stream transform: {err}",
    );
    assert_eq!(JsErrorCode::from_err_code(10001), None);
    let mut codes: Vec<u16> = JsErrorCode::ALL.iter().map(|c| c.err_code()).collect();
    codes.dedup();
    assert_eq!(codes.len(), 154);
    assert!(codes.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn error_rendering() {
    let error = ApiError::wrong_last_sequence(5);
    assert_eq!(
        serde_json::to_string(&error).unwrap(),
        r#"{"code":400,"err_code":10071,"description":"wrong last sequence: 5"}"#
    );
    assert_eq!(error.to_string(), "wrong last sequence: 5 (10071)");
    assert_eq!(
        ApiError::wrong_last_msg_id("").description,
        "wrong last msg ID: "
    );
    assert_eq!(
        ApiError::sequence_not_found(9).description,
        "sequence 9 not found"
    );
    assert_eq!(
        JsErrorCode::StreamInvalidConfig
            .with_err("max age needs to be >= 100ms")
            .description,
        "max age needs to be >= 100ms"
    );
    assert_eq!(
        JsErrorCode::ConsumerNameTooLong
            .error_with(&[("{max}", &MAX_NAME_LEN)])
            .description,
        "consumer name is too long, maximum allowed is 255"
    );
    // Replaced text is not rescanned, and unknown placeholders stay.
    assert_eq!(
        JsErrorCode::RestoreSubscribeFailed
            .error_with(&[("{subject}", &"{err}"), ("{err}", &"boom")])
            .description,
        "JetStream unable to subscribe to restore snapshot {err}: boom"
    );
    assert_eq!(JsErrorCode::StreamCreate.error().description, "{err}");
    let parsed: ApiError = serde_json::from_str(r#"{"code":503}"#).unwrap();
    assert_eq!(
        parsed,
        ApiError {
            code: 503,
            err_code: 0,
            description: String::new()
        }
    );
    assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"{"code":503}"#);
}

#[test]
fn pub_acks() {
    let ack = PubAck {
        stream: "ORDERS".into(),
        seq: 5,
        ..PubAck::default()
    };
    assert_eq!(ack.to_nats_json(), br#"{"stream":"ORDERS", "seq":5}"#);
    let with_domain = PubAck {
        domain: "hub".into(),
        ..ack.clone()
    };
    assert_eq!(
        with_domain.to_nats_json(),
        br#"{"stream":"ORDERS", "domain":"hub", "seq":5}"#
    );
    let duplicate = PubAck {
        duplicate: true,
        ..ack.clone()
    };
    assert_eq!(
        duplicate.to_nats_json(),
        br#"{"stream":"ORDERS", "seq":5,"duplicate": true}"#
    );
    for bytes in [
        ack.to_nats_json(),
        with_domain.to_nats_json(),
        duplicate.to_nats_json(),
    ] {
        let parsed: PubAckResponse = serde_json::from_slice(&bytes).unwrap();
        assert!(parsed.error.is_none());
        assert_eq!(parsed.ack.seq, 5);
    }
    assert_eq!(
        serde_json::to_string(&PubAckResponse::ok(ack)).unwrap(),
        r#"{"stream":"ORDERS","seq":5}"#
    );
    let failed = PubAckResponse::error("ORDERS", ApiError::wrong_last_sequence(3));
    let json = r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"},"stream":"ORDERS","seq":0}"#;
    assert_eq!(serde_json::to_string(&failed).unwrap(), json);
    assert_eq!(
        serde_json::from_str::<PubAckResponse>(json).unwrap(),
        failed
    );
}

#[test]
fn account_info_response() {
    let json = r#"{"type":"io.nats.jetstream.api.v1.account_info_response","memory":0,"storage":1024,"reserved_memory":0,"reserved_storage":0,"streams":1,"consumers":2,"limits":{"max_memory":-1,"max_storage":-1,"max_streams":-1,"max_consumers":-1,"max_ack_pending":-1,"memory_max_stream_bytes":-1,"storage_max_stream_bytes":-1,"max_bytes_required":false},"api":{"total":5,"errors":1}}"#;
    let response: AccountInfoResponse = assert_round_trip(json);
    let info = response.info.unwrap();
    assert_eq!(info.limits, AccountLimits::unlimited());
    assert_eq!((info.streams, info.consumers, info.api.total), (1, 2, 5));
    assert_eq!(
        serde_json::to_string(&AccountInfoResponse::error(
            JsErrorCode::NotEnabledForAccount.error()
        ))
        .unwrap(),
        r#"{"type":"io.nats.jetstream.api.v1.account_info_response","error":{"code":503,"err_code":10039,"description":"JetStream not enabled for account"}}"#
    );
}

#[test]
fn status_messages() {
    assert_eq!(status::NO_MESSAGES, b"NATS/1.0 404 No Messages\r\n\r\n");
    assert_eq!(
            status::request_timeout(5, 0),
            b"NATS/1.0 408 Request Timeout\r\nNats-Pending-Messages: 5\r\nNats-Pending-Bytes: 0\r\n\r\n"
        );
    assert_eq!(
            status::message_size_exceeds_max_bytes(2, 100),
            b"NATS/1.0 409 Message Size Exceeds MaxBytes\r\nNats-Pending-Messages: 2\r\nNats-Pending-Bytes: 100\r\n\r\n"
        );
    assert_eq!(
            status::batch_completed(0, 50),
            b"NATS/1.0 409 Batch Completed\r\nNats-Pending-Messages: 0\r\nNats-Pending-Bytes: 50\r\n\r\n"
        );
    assert_eq!(
        status::exceeded_max_request_batch(10),
        b"NATS/1.0 409 Exceeded MaxRequestBatch of 10\r\n\r\n"
    );
    assert_eq!(
        status::exceeded_max_request_expires(60 * NANOS_PER_SEC),
        b"NATS/1.0 409 Exceeded MaxRequestExpires of 1m0s\r\n\r\n"
    );
    assert_eq!(
        status::bad_request("heartbeat value too large"),
        b"NATS/1.0 400 Bad Request - heartbeat value too large\r\n\r\n"
    );
    assert_eq!(
        status::idle_heartbeat(4, 9, None),
        b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 4\r\nNats-Last-Stream: 9\r\n\r\n"
    );
    assert_eq!(
            status::idle_heartbeat(0, 0, Some("$JSC.FC.x")),
            b"NATS/1.0 100 Idle Heartbeat\r\nNats-Last-Consumer: 0\r\nNats-Last-Stream: 0\r\nNats-Consumer-Stalled: $JSC.FC.x\r\n\r\n"
        );
}

#[test]
fn go_durations() {
    for (nanos, text) in [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_500, "1.5µs"),
        (2_500_000, "2.5ms"),
        (1_000_000_000, "1s"),
        (1_500_000_000, "1.5s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (7_200_000_000_000, "2h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-3_000_000_000, "-3s"),
    ] {
        assert_eq!(format_go_duration(nanos), text);
        assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
    }
    assert_eq!(parse_go_duration("1.5h"), Ok(5_400_000_000_000));
    assert_eq!(parse_go_duration("2h45m"), Ok(9_900_000_000_000));
    assert_eq!(parse_go_duration("300us"), Ok(300_000));
    assert_eq!(parse_go_duration("300μs"), Ok(300_000));
    assert_eq!(parse_go_duration(".5s"), Ok(500_000_000));
    assert_eq!(parse_go_duration("+0"), Ok(0));
    assert_eq!(format_go_duration(i64::MIN), "-2562047h47m16.854775808s");
    assert_eq!(parse_go_duration("-2562047h47m16.854775808s"), Ok(i64::MIN));
    for bad in [
        "",
        "5",
        "s",
        ".s",
        "1x",
        "1.5",
        "-",
        "9999999999999999999h",
        "2562047h47m16.854775808s",
    ] {
        assert!(parse_go_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn rfc3339_times() {
    assert_eq!(format_rfc3339_nanos(0), "1970-01-01T00:00:00Z");
    assert_eq!(
        format_rfc3339_nanos(1_704_164_645_123_456_789),
        "2024-01-02T03:04:05.123456789Z"
    );
    assert_eq!(
        format_rfc3339_nanos(1_704_164_645_120_000_000),
        "2024-01-02T03:04:05.12Z"
    );
    assert_eq!(
        format_rfc3339_nanos(951_782_400 * NANOS_PER_SEC),
        "2000-02-29T00:00:00Z"
    );
    assert_eq!(format_rfc3339_nanos(-1), "1969-12-31T23:59:59.999999999Z");
    assert_eq!(
        parse_rfc3339_nanos("2024-01-02T03:04:05.12Z"),
        Some(1_704_164_645_120_000_000)
    );
    assert_eq!(
        parse_rfc3339_nanos("2024-01-02T04:04:05+01:00"),
        Some(1_704_164_645_000_000_000)
    );
    assert_eq!(
        parse_rfc3339_nanos("2024-01-01T22:04:05.5-05:00"),
        Some(1_704_164_645_500_000_000)
    );
    assert_eq!(
        parse_rfc3339_nanos(GO_ZERO_TIME),
        Some(-62_135_596_800 * i128::from(NANOS_PER_SEC))
    );
    for bad in [
        "",
        "2024-01-02",
        "2024-02-30T00:00:00Z",
        "2024-01-02T03:04:05",
        "2024-01-02 03:04:05Z",
        "2024-01-02T03:04:05.Z",
        "2024-01-02T24:00:00Z",
    ] {
        assert_eq!(parse_rfc3339_nanos(bad), None, "{bad}");
    }
    for nanos in [
        0,
        1,
        1_704_164_645_123_456_789,
        -86_400_000_000_001,
        4_102_444_800_000_000_000,
    ] {
        assert_eq!(
            parse_rfc3339_nanos(&format_rfc3339_nanos(nanos)),
            Some(i128::from(nanos))
        );
    }
}

#[test]
fn base64_matches_go() {
    for (raw, encoded) in [
        (&b""[..], ""),
        (b"f", "Zg=="),
        (b"fo", "Zm8="),
        (b"foo", "Zm9v"),
        (b"foob", "Zm9vYg=="),
        (b"\xff\xfe\x00", "//4A"),
    ] {
        assert_eq!(base64_bytes::encode(raw), encoded);
        assert_eq!(base64_bytes::decode(encoded).unwrap(), raw);
    }
    assert_eq!(base64_bytes::decode("Zm9v\r\nYg==").unwrap(), b"foob");
    assert!(base64_bytes::decode("Zm9").is_err());
    assert!(base64_bytes::decode("Zg==Zg==").is_err());
    assert!(base64_bytes::decode("Z!==").is_err());
}
