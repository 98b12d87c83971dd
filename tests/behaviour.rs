//! Junction's integration tests (the files of `tests/`), built as one test
//! binary: one link instead of one per file, which took most of a CI build's
//! link time and about 7 GB of `target/` (each binary holds the whole broker).
//! Each file keeps the name of the behaviour it proves, as its module; run one
//! with `cargo nextest run --test behaviour <file>::` (nextest runs every test in
//! a process of its own, so files do not share process state).

#![allow(clippy::unwrap_used, clippy::expect_used)]

/// What the files share: each loaded once, here (a file names what it uses with
/// `use crate::support::…`).
#[allow(dead_code)] // each file uses part of it
mod support {
    pub mod cluster;
    pub mod compaction;
    pub mod jepsen;
    pub mod mqtt_channel;
    pub mod mqtt_client;
    pub mod netns;
    pub mod notify;
    pub mod process;
    pub mod s3;
    pub mod sourcing;
}

mod a_hung_or_closed_webhook_receiver_never_holds_up_the_broker;
mod a_station_with_a_transform_nats_server_refuses_still_loads;
mod bench_cluster_smoke;
mod bench_smoke;
mod cluster_core_pubsub_across_nodes;
mod cluster_join_a_running_node;
mod cluster_meta_group_shares_definitions;
mod cluster_mqtt_sessions_resume_on_any_node;
mod cluster_mqtt_state_across_nodes;
mod cluster_partition_minority_side;
mod cluster_push_consumer_follows_the_stream_leader;
mod cluster_stations_any_node;
mod cluster_tenants_made_live_reach_every_node;
mod cluster_tenants_stay_apart_across_nodes;
mod cluster_websocket_attach_on_any_node;
mod compaction_keeps_the_latest_message_per_subject;
mod compaction_survives_sigkill_without_losing_or_reviving_keys;
mod crash_consistency;
mod geo_source_copies_every_message_once_across_kills;
mod geo_source_from_a_remote_named_in_the_config;
mod hostile_config;
mod mirror_and_sources_copy_every_message_once_across_restarts;
mod mqtt_bridge_kill9;
mod mqtt_channel_invariants_hold_under_random_packet_sequences;
mod mqtt_channel_packet_families;
mod mqtt_restart_kill9;
mod operators_get_events_alarms_and_webhooks;
mod process_signals_and_health;
mod replicated_consumer_groups_survive_leader_kills;
mod replicated_memory_station_rebuilds_after_restarts;
mod replicated_station_client_failover;
mod replicated_station_corrupt_log;
mod replicated_station_dead_letters;
mod replicated_station_faults;
mod replicated_station_replica_restarts_after_a_storage_error;
mod replicated_station_replicas_change_from_and_to_1;
mod replicated_station_self_heals;
mod replicated_station_snapshots;
mod replicated_station_survives_leader_loss;
mod restart_keeps_station_state;
mod self_checks_raise_alarms_and_shed_under_memory_pressure;
mod sequences_are_never_reused_after_kill_9;
mod tier_disk_cache_survives_restart;
mod tier_index_is_rebuilt_from_the_bucket_manifest;
mod tier_keys_only_in_s3_are_found_and_counted;
mod tier_objects_of_a_station_deleted_during_an_s3_outage_are_removed;
mod tier_on_a_replicated_station;
mod tier_s3_round_trip;
mod tier_station_adopted_after_the_disk_was_lost;
mod webhooks_are_managed_over_http;
