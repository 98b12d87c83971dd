//! The MQTT part of the hostile battery (issue 12): what an attacker, a broken
//! device or a careless client sends over MQTT 3.1.1 and 5, and the exact answer it
//! must get. Each module is one class of input; every test also checks that the
//! broker keeps serving and that nothing acknowledged is lost.
//!
//! Raw bytes where a well-behaved client cannot send the input, `rumqttc`,
//! `async-nats` and mosquitto's `mosquitto_pub`/`mosquitto_sub` (installed by
//! `scripts/test`) otherwise. Timeouts only guard against hangs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt/support.rs"]
mod support;

#[path = "hostile_mqtt/invalid_topics.rs"]
mod invalid_topics;
#[path = "hostile_mqtt/malformed_connect.rs"]
mod malformed_connect;
#[path = "hostile_mqtt/oversized_packets.rs"]
mod oversized_packets;
#[path = "hostile_mqtt/session_store_failure.rs"]
mod session_store_failure;
#[path = "hostile_mqtt/subjects_without_topic.rs"]
mod subjects_without_topic;
#[path = "hostile_mqtt/topic_escapes.rs"]
mod topic_escapes;
