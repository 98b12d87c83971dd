//! Durable storage for the Junction station engine.
//!
//! Not implemented yet: this crate is a placeholder so the workspace has its final
//! shape. It will own the fjall keyspaces (station logs, consumer offsets, dedup
//! windows, retained messages, MQTT sessions, metadata) and the S3 tier.
