//! Clustering for Junction.
//!
//! Not implemented yet: this crate is a placeholder so the workspace has its final
//! shape. It will own the openraft type configuration, log store, state machine
//! and raft RPC, for metadata first and station replication after.
