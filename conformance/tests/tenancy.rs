//! Tenants (nats-server's accounts), user permissions and password hashes, over
//! real sockets with clients others wrote: async-nats, rumqttc, reqwest,
//! tokio-tungstenite, a raw NATS socket compared byte for byte with a real
//! nats-server, Python's bcrypt and `htpasswd -B`.
//!
//! Each module is named after the behaviour it proves. Timeouts only guard
//! against hangs; no test asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "mqtt/support.rs"]
mod support;

#[path = "tenancy/common.rs"]
mod common;

#[path = "tenancy/tenants_are_isolated_across_protocols.rs"]
mod tenants_are_isolated_across_protocols;

#[path = "tenancy/permissions_answer_as_nats_server_does.rs"]
mod permissions_answer_as_nats_server_does;

#[path = "tenancy/permissions_on_mqtt_http_and_websocket.rs"]
mod permissions_on_mqtt_http_and_websocket;

#[path = "tenancy/bcrypt_hashes_log_in_everywhere.rs"]
mod bcrypt_hashes_log_in_everywhere;

#[path = "tenancy/tenant_limits_answer_as_nats_server_does.rs"]
mod tenant_limits_answer_as_nats_server_does;

#[path = "tenancy/tenant_storage_limits_answer_as_nats_server_does.rs"]
mod tenant_storage_limits_answer_as_nats_server_does;

#[path = "tenancy/nkey_users_log_in.rs"]
mod nkey_users_log_in;

#[path = "tenancy/repeated_failed_logins_ban_the_address.rs"]
mod repeated_failed_logins_ban_the_address;

#[path = "tenancy/bans_by_client_id_and_the_ban_list.rs"]
mod bans_by_client_id_and_the_ban_list;

#[path = "tenancy/exports_and_imports_between_tenants.rs"]
mod exports_and_imports_between_tenants;

#[path = "tenancy/operators_edit_tenants_live.rs"]
mod operators_edit_tenants_live;
