//! MQTT 3.1, 3.1.1 and 5.0 front-end for Junction.
//!
//! Not implemented yet: this crate is a placeholder so the workspace has its final
//! shape. It will own the MQTT codec, sessions, QoS 1/2 state, retained messages,
//! wills, `$share` groups and the topic ↔ subject mapping, and it will talk to the
//! broker only through `junction-api`.
