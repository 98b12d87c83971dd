//! Junction: a multi-protocol message broker over one station engine.
//!
//! This crate owns the `junction` binary, the typed [`Config`], the station
//! [`engine`], and the wiring that starts every front-end. Tests start a broker in
//! process with [`start`] (ephemeral ports, no signals) and stop it with
//! [`Running::shutdown`]; the binary uses [`run`], which also waits for SIGINT or
//! SIGTERM.
//!
//! What it is not: protocol code lives in `junction-nats`, `junction-mqtt` and
//! `junction-http`, which see the engine only through `junction_api::Engine`.

pub mod bench;
pub mod byte_size;
pub mod cli;
pub mod cluster_cli;
pub mod config;
pub mod engine;
pub mod fd_budget;
pub mod health;
pub mod lame_duck;
pub mod log_file;
pub mod nats_conf;
pub mod notify;
pub mod passwd;
pub mod reload;
mod serve;
pub mod tls;

pub use config::{Config, ConfigError};
pub use serve::{Running, StartError, restart_requested, run, run_with_loader, start};

/// Junction's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
