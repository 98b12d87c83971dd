//! TLS on every client listener, with certificates made in the test (rcgen) and
//! clients others wrote: async-nats (`require_tls`, `tls_first`, client
//! certificates), rumqttc over rustls, `mosquitto_pub`, and curl.
//!
//! Each module is named after the behaviour it proves. Timeouts only guard
//! against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt/support.rs"]
mod support;

#[path = "tls/certs.rs"]
mod certs;

#[path = "tls/nats_requires_tls.rs"]
mod nats_requires_tls;

#[path = "tls/client_certificates_are_verified.rs"]
mod client_certificates_are_verified;

#[path = "tls/mqtt_and_https_over_tls.rs"]
mod mqtt_and_https_over_tls;

#[path = "tls/certificates_reload_without_dropping_connections.rs"]
mod certificates_reload_without_dropping_connections;

#[path = "tls/certificates_map_to_users.rs"]
mod certificates_map_to_users;

#[path = "tls/an_expiring_certificate_raises_an_alarm.rs"]
mod an_expiring_certificate_raises_an_alarm;
