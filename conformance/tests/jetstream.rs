//! JetStream API over real sockets with async-nats's `jetstream` module: stations
//! seen as streams, consumer groups seen as pull consumers.
//!
//! Each module is named after the behaviour it proves. Timeouts only guard against
//! hangs; no test asserts how long anything takes (time-based behaviour is polled
//! for, and at most a lower bound is checked).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "jetstream/support.rs"]
mod support;

#[path = "jetstream/ack_nak_term.rs"]
mod ack_nak_term;
#[path = "jetstream/advisories.rs"]
mod advisories;
#[path = "jetstream/allow_direct.rs"]
mod allow_direct;
#[path = "jetstream/consumer_pause.rs"]
mod consumer_pause;
#[path = "jetstream/consumer_update.rs"]
mod consumer_update;
#[path = "jetstream/dedup_ids_survive_restart.rs"]
mod dedup_ids_survive_restart;
#[path = "jetstream/direct_get.rs"]
mod direct_get;
#[path = "jetstream/error_codes.rs"]
mod error_codes;
#[path = "jetstream/group_sharing.rs"]
mod group_sharing;
#[path = "jetstream/key_value.rs"]
mod key_value;
#[path = "jetstream/kv_purge_deletes.rs"]
mod kv_purge_deletes;
#[path = "jetstream/max_ack_pending.rs"]
mod max_ack_pending;
#[path = "jetstream/object_store.rs"]
mod object_store;
#[path = "jetstream/publish_ack_dedup.rs"]
mod publish_ack_dedup;
#[path = "jetstream/pull_fetch_batch_expires.rs"]
mod pull_fetch_batch_expires;
#[path = "jetstream/push_consumers.rs"]
mod push_consumers;
#[path = "jetstream/redelivery_after_ack_wait.rs"]
mod redelivery_after_ack_wait;
#[path = "jetstream/replay_and_sampling.rs"]
mod replay_and_sampling;
#[path = "jetstream/restart_keeps_positions.rs"]
mod restart_keeps_positions;
#[path = "jetstream/retention_interest_workqueue.rs"]
mod retention_interest_workqueue;
#[path = "jetstream/retention_limits.rs"]
mod retention_limits;
#[path = "jetstream/sealed_and_republish.rs"]
mod sealed_and_republish;
#[path = "jetstream/smoke.rs"]
mod smoke;
#[path = "jetstream/start_position.rs"]
mod start_position;
#[path = "jetstream/stream_lifecycle.rs"]
mod stream_lifecycle;
#[path = "jetstream/stream_subject_transform.rs"]
mod stream_subject_transform;
#[path = "jetstream/subject_transforms_answer_as_nats_server_2_10.rs"]
mod subject_transforms_answer_as_nats_server_2_10;
#[path = "jetstream/two_groups.rs"]
mod two_groups;
