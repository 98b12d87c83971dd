//! The MQTT channel (the sans-I/O session state machine) with no socket: the
//! fuzzer's bytes choose a CONNECT and a sequence of client packets and clock
//! ticks, and a model of the client checks the channel's invariants after
//! every packet it sends (`junction_mqtt::harness::invariants`, the same body
//! as `tests/mqtt_channel_invariants_hold_under_random_packet_sequences.rs`):
//! packet ids, Receive Maximum, PUBREC → one PUBREL, granted QoS, every
//! QoS 1/2 PUBLISH answered once. One broker (a real station engine on a temp
//! dir) serves every input; each input is a new client id.
#![no_main]

use junction::engine::{EngineOptions, StationEngine};
use junction_mqtt::MqttBroker;
use junction_mqtt::harness::invariants::{self, Choices};
use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

struct World {
    rt: tokio::runtime::Runtime,
    broker: Arc<MqttBroker>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        // On tmpfs when there is one: its fsyncs cost nothing, and a persistent
        // session's stores (one input in eight) would otherwise set the pace.
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::tempdir_in(shm).unwrap()
        } else {
            tempfile::tempdir().unwrap()
        };
        let store = junction_storage::Store::open(dir.path()).unwrap();
        let broker = rt.block_on(async {
            let engine = StationEngine::open(
                EngineOptions {
                    server_name: "fuzz".to_owned(),
                    server_id: "fuzz".to_owned(),
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
            .unwrap();
            let shutdown = tokio_util::sync::CancellationToken::new();
            MqttBroker::new(engine, invariants::options(), shutdown).unwrap()
        });
        World {
            rt,
            broker,
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    static N: AtomicU64 = AtomicU64::new(0);
    let w = world();
    let id = format!("f{}", N.fetch_add(1, Ordering::Relaxed));
    w.rt.block_on(invariants::run(&w.broker, &id, &mut Choices::new(data)));
});
