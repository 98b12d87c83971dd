//! The `INFO` the server sends and the `CONNECT` options a client sends.

use serde::{Deserialize, Serialize};

/// The version string advertised to clients. Client libraries gate features on the
/// nats-server version, so Junction advertises the 2.10 line it is compatible with;
/// its own version is in `junction_version`.
pub const ADVERTISED_VERSION: &str = "2.10.22";

/// The server's `INFO`, field for field as nats-server orders it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// Unique server id.
    pub server_id: String,
    /// Server name.
    pub server_name: String,
    /// Advertised nats-server compatible version.
    pub version: String,
    /// Protocol version (1).
    pub proto: u8,
    /// Runtime, for parity with nats-server's `go` field.
    pub go: String,
    /// Listen host.
    pub host: String,
    /// Listen port.
    pub port: u16,
    /// Headers are supported.
    pub headers: bool,
    /// Credentials are required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub auth_required: bool,
    /// TLS is required on this port.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_required: bool,
    /// A client certificate is required.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_verify: bool,
    /// TLS is offered but not required (never, today).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_available: bool,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// JetStream is available.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub jetstream: bool,
    /// The connection's id.
    pub client_id: u64,
    /// The client's address as seen by the server.
    pub client_ip: String,
    /// Junction's own version.
    pub junction_version: String,
    /// Client URLs of every node of the cluster (nats-server's `connect_urls`), so
    /// that clients can fail over; absent when running alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub connect_urls: Vec<String>,
    /// A random challenge for NKey users to sign (present when some are
    /// configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// Lame-duck mode (nats-server's `ldm`): the server is going away; clients
    /// reconnect to another one from `connect_urls`. Absent when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ldm: bool,
}

fn yes() -> bool {
    true
}

/// The options in a client's `CONNECT`. Missing keys default as in nats-server:
/// verbose, pedantic and echo on; headers and no-responders off.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectOptions {
    /// Acknowledge each op with `+OK`.
    #[serde(default = "yes")]
    pub verbose: bool,
    /// Check publish subjects strictly.
    #[serde(default = "yes")]
    pub pedantic: bool,
    /// Deliver the client's own messages back to it.
    #[serde(default = "yes")]
    pub echo: bool,
    /// The client understands `HMSG`.
    #[serde(default)]
    pub headers: bool,
    /// Send a `503` status when a request has no responders.
    #[serde(default)]
    pub no_responders: bool,
    /// Protocol version (0 or 1).
    #[serde(default)]
    pub protocol: i64,
    /// Token credential.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// User credential.
    #[serde(default)]
    pub user: Option<String>,
    /// Password credential.
    #[serde(default)]
    pub pass: Option<String>,
    /// NKey public key (with `sig`, the INFO nonce signed by its seed).
    #[serde(default)]
    pub nkey: Option<String>,
    /// Signature of the INFO nonce, base64 (URL-safe or standard).
    #[serde(default)]
    pub sig: Option<String>,
    /// Client name.
    #[serde(default)]
    pub name: Option<String>,
    /// Client library language.
    #[serde(default)]
    pub lang: Option<String>,
    /// Client library version.
    #[serde(default)]
    pub version: Option<String>,
    /// Account binding (refused: not supported for clients).
    #[serde(default)]
    pub account: Option<String>,
    /// Account creation (refused: not supported for clients).
    #[serde(default)]
    pub new_account: Option<bool>,
}

impl Default for ConnectOptions {
    /// The options in force before `CONNECT`, as nats-server applies them.
    fn default() -> Self {
        ConnectOptions {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
            protocol: 0,
            auth_token: None,
            user: None,
            pass: None,
            nkey: None,
            sig: None,
            name: None,
            lang: None,
            version: None,
            account: None,
            new_account: None,
        }
    }
}
