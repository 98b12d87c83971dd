//! An MQTT front-end over a real station engine on a temporary directory, with
//! no listener: for tests of the MQTT channel through
//! `junction_mqtt::harness`.

use junction::engine::{EngineOptions, StationEngine};
use junction_mqtt::harness::{ChannelHarness, ClientConnect};
use junction_mqtt::{MqttBroker, MqttOptions};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The broker, its engine and its data directory (removed when dropped).
pub struct World {
    pub broker: Arc<MqttBroker>,
    pub engine: Arc<StationEngine>,
    pub shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A world with the front-end's default settings.
pub fn world() -> World {
    world_with(MqttOptions::default())
}

/// A world with these front-end settings. Call it inside a tokio runtime.
pub fn world_with(options: MqttOptions) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = junction_storage::Store::open(dir.path()).expect("store opens");
    let engine = StationEngine::open(
        EngineOptions {
            server_name: "channel-tests".to_owned(),
            server_id: "channel-tests".to_owned(),
            max_connections: 0,
            max_subscriptions: 0,
            auth: Default::default(),
            tenants: Vec::new(),
            tenant_limits: Default::default(),
            tier: None,
            imports: Vec::new(),
            exports: Default::default(),
            system_tenant: None,
            disk: Default::default(),
            self_checks: Default::default(),
        },
        store,
    )
    .expect("engine opens");
    let shutdown = CancellationToken::new();
    let broker = MqttBroker::new(engine.clone(), options, shutdown.clone()).expect("front-end");
    World {
        broker,
        engine,
        shutdown,
        _dir: dir,
    }
}

impl World {
    /// A channel past CONNECT.
    pub async fn connect(&self, c: &ClientConnect) -> ChannelHarness {
        match ChannelHarness::connect(&self.broker, c).await {
            Ok(h) => h,
            Err(r) => panic!("CONNECT refused: {r:?}"),
        }
    }
}
