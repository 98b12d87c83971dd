//! Bans: who is kept out before their credentials are checked, and for how
//! long. The engine bans an address or an MQTT client id after repeated failed
//! logins (EMQX's flapping detection applied to logins); operators list, lift
//! and add bans by hand.

use serde::{Deserialize, Serialize};
use std::time::SystemTime;

/// What a ban keeps out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    /// Every login from one IP address, on every protocol.
    Address,
    /// Every MQTT CONNECT with one client identifier, from any address.
    ClientId,
}

impl BanKind {
    /// Its name in the API: `address` or `client_id`.
    pub fn as_str(self) -> &'static str {
        match self {
            BanKind::Address => "address",
            BanKind::ClientId => "client_id",
        }
    }

    /// The kind named `name` (`address` or `client_id`), if any.
    pub fn parse(name: &str) -> Option<BanKind> {
        match name {
            "address" => Some(BanKind::Address),
            "client_id" => Some(BanKind::ClientId),
            _ => None,
        }
    }
}

impl std::fmt::Display for BanKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One ban in force, as shown to operators (`GET /v1/bans`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    /// What it keeps out.
    pub kind: BanKind,
    /// The address (as `127.0.0.1` or `::1`) or the client id.
    pub who: String,
    /// When it ends.
    pub until: SystemTime,
    /// Why it was made, in the broker's words or the operator's.
    pub reason: String,
}
