//! The MQTT front-end over real sockets: `rumqttc` (v3.1.1 and 5) against an
//! in-process broker, `async-nats` and `reqwest` for cross-protocol checks, and raw
//! TCP bytes where a well-behaved client cannot send what a scenario needs.
//!
//! Each module is named after the behaviour it proves. Every test starts its own
//! broker on ephemeral ports. Timeouts only guard against hangs; no test asserts
//! how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt/support.rs"]
mod support;

#[path = "mqtt/auth_acl.rs"]
mod auth_acl;
#[path = "mqtt/bad_input.rs"]
mod bad_input;
#[path = "mqtt/bridge_to_mosquitto.rs"]
mod bridge_to_mosquitto;
#[path = "mqtt/cross_protocol.rs"]
mod cross_protocol;
#[path = "mqtt/keep_alive.rs"]
mod keep_alive;
#[path = "mqtt/maximum_packet_size_mqtt_3_1_2_25.rs"]
mod maximum_packet_size_mqtt_3_1_2_25;
#[path = "mqtt/msg_id_property_dedup.rs"]
mod msg_id_property_dedup;
#[path = "mqtt/qos2_exactly_once.rs"]
mod qos2_exactly_once;
#[path = "mqtt/qos_roundtrip.rs"]
mod qos_roundtrip;
#[path = "mqtt/response_information.rs"]
mod response_information;
#[path = "mqtt/restart.rs"]
mod restart;
#[path = "mqtt/resubscribe_on_resumed_session.rs"]
mod resubscribe_on_resumed_session;
#[path = "mqtt/resumed_session_state_mqtt_3_1_2_4.rs"]
mod resumed_session_state_mqtt_3_1_2_4;
#[path = "mqtt/retained.rs"]
mod retained;
#[path = "mqtt/scram_sha256_enhanced_authentication.rs"]
mod scram_sha256_enhanced_authentication;
#[path = "mqtt/session_expiry.rs"]
mod session_expiry;
#[path = "mqtt/session_takeover.rs"]
mod session_takeover;
#[path = "mqtt/shared_subscriptions.rs"]
mod shared_subscriptions;
#[path = "mqtt/slow_consumer.rs"]
mod slow_consumer;
#[path = "mqtt/subscription_live_before_suback_mqtt_3_8_4.rs"]
mod subscription_live_before_suback_mqtt_3_8_4;
#[path = "mqtt/topic_mapping.rs"]
mod topic_mapping;
#[path = "mqtt/unsubscribe.rs"]
mod unsubscribe;
#[path = "mqtt/user_properties_mqtt_3_3_2_17.rs"]
mod user_properties_mqtt_3_3_2_17;
#[path = "mqtt/user_properties_unaltered.rs"]
mod user_properties_unaltered;
#[path = "mqtt/v5_properties.rs"]
mod v5_properties;
#[path = "mqtt/websocket.rs"]
mod websocket;
#[path = "mqtt/will_delay.rs"]
mod will_delay;
