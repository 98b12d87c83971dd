//! The session state machine over a real socket: a valid CONNECT (v3.1.1 or v5,
//! chosen by the first byte), then whatever the fuzzer writes. The broker must
//! never panic and must keep serving: every input runs against the same broker.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = junction::Config {
            nats_listen: "off".into(),
            http_listen: "off".into(),
            mqtt_listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            ..junction::Config::default()
        };
        let running = rt.block_on(junction::start(config)).unwrap();
        let addr = running.mqtt_addr().unwrap();
        std::mem::forget(running);
        World { rt, addr, _dir: dir }
    })
}

const CONNECT_V4: &[u8] = b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04fuzz";
const CONNECT_V5: &[u8] = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x04fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let w = world();
    let connect = if first & 1 == 0 { CONNECT_V4 } else { CONNECT_V5 };
    w.rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
        let _ = s.write_all(connect).await;
        let _ = s.write_all(rest).await;
        let _ = s.shutdown().await;
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut sink)).await;
        // The broker is still up: a new client gets a CONNACK.
        let mut s = tokio::net::TcpStream::connect(w.addr).await.unwrap();
        s.write_all(CONNECT_V4).await.unwrap();
        let mut ack = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut ack))
            .await
            .expect("broker answers")
            .expect("CONNACK");
        assert_eq!(ack[0], 0x20);
    });
});
