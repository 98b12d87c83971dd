//! The engine client HTTP requests publish as.
//!
//! HTTP requests are not connections, so the gateway registers one client per
//! tenant (protocol `http`, named `junction-http`) on first use and publishes every
//! request of that tenant through it; `/v1/connections` lists it (`"internal": true`)
//! with the traffic of all HTTP producers added up. It is not a connection
//! ([`ClientKind::Gateway`]): `/varz` and `/connz` leave it out, but its messages
//! count as messages in. It is disconnected when the router drops.

use junction_api::{ClientKind, ClientRecord, Engine, EngineError, NewClient, Protocol, TenantId};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

/// Name the gateway's clients announce.
pub const GATEWAY_CLIENT_NAME: &str = "junction-http";

/// One engine client per tenant, created lazily.
pub struct GatewayClients {
    engine: Arc<dyn Engine>,
    remote: SocketAddr,
    by_tenant: Mutex<HashMap<TenantId, Arc<ClientRecord>>>,
}

impl GatewayClients {
    /// Clients that show `remote` (the listener's address) as their peer.
    pub fn new(engine: Arc<dyn Engine>, remote: SocketAddr) -> Self {
        GatewayClients {
            engine,
            remote,
            by_tenant: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant's gateway client; registers it on first use.
    pub fn get(&self, tenant: &TenantId) -> Result<Arc<ClientRecord>, EngineError> {
        let mut map = self.by_tenant.lock();
        if let Some(c) = map.get(tenant) {
            c.stats.touch();
            return Ok(c.clone());
        }
        let client = self.engine.connect(
            NewClient {
                protocol: Protocol::Http,
                remote: self.remote,
            },
            tenant.clone(),
        )?;
        client.set_kind(ClientKind::Gateway);
        client.set_identity(
            Some(GATEWAY_CLIENT_NAME.into()),
            Some("http".into()),
            Some(env!("CARGO_PKG_VERSION").into()),
            None,
        );
        map.insert(tenant.clone(), client.clone());
        Ok(client)
    }
}

impl Drop for GatewayClients {
    fn drop(&mut self) {
        for (_, client) in self.by_tenant.lock().drain() {
            self.engine.disconnect(client.id);
        }
    }
}
