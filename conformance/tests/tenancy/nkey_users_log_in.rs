//! NKey users: INFO carries a nonce, the client signs it with its seed, and
//! the server checks the signature against the configured public key, as
//! nats-server does. async-nats and nats-py log in; a key that is not
//! configured, or a signature of something else, is refused.

use crate::common::tenant;
use futures::StreamExt;
use junction::engine::User;
use junction_conformance::broker_with;
use std::process::Command;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey_users_connect_with_async_nats_and_nats_py() {
    let key = nkeys::KeyPair::new_user();
    let seed = key.seed().unwrap();
    let public = key.public_key();
    let b = broker_with(|c| {
        let mut t = tenant("keys", &[]);
        t.users = vec![User::nkey(public.clone())];
        c.tenants = vec![t];
        c.auth.users = vec![User::new("plain", "pw")];
    })
    .await;

    let nc = async_nats::ConnectOptions::with_nkey(seed.clone())
        .connect(b.nats_url())
        .await
        .expect("async-nats logs in with the seed");
    let mut sub = nc.subscribe("nk.>").await.unwrap();
    nc.publish("nk.a", "signed".into()).await.unwrap();
    let m = crate::support::within("message", sub.next()).await.unwrap();
    assert_eq!(&m.payload[..], b"signed");

    // A key that is not configured is refused.
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    assert!(
        async_nats::ConnectOptions::with_nkey(other)
            .connect(b.nats_url())
            .await
            .is_err(),
        "an unknown key logged in"
    );

    // The right key with a signature of something else than the nonce.
    let stream = tokio::net::TcpStream::connect(b.nats_addr()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    let info: serde_json::Value =
        serde_json::from_str(line.trim_start_matches("INFO ").trim()).unwrap();
    let nonce = info["nonce"]
        .as_str()
        .expect("INFO has a nonce")
        .to_string();
    use base64::Engine as _;
    let wrong = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(key.sign(format!("{nonce}x").as_bytes()).unwrap());
    let connect = format!(
        "CONNECT {{\"verbose\":false,\"nkey\":\"{public}\",\"sig\":\"{wrong}\"}}\r\nPING\r\n"
    );
    let mut stream = reader.into_inner();
    stream.write_all(connect.as_bytes()).await.unwrap();
    let mut reader = BufReader::new(stream);
    let mut answer = String::new();
    reader.read_line(&mut answer).await.unwrap();
    assert_eq!(answer, "-ERR 'Authorization Violation'\r\n");

    // nats-py with the seed.
    let python = std::env::var("NATS_PY_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = r#"
import asyncio, sys
import nats
async def main():
    nc = await nats.connect(sys.argv[1], nkeys_seed_str=sys.argv[2])
    sub = await nc.subscribe("py.nk")
    await nc.publish("py.nk", b"from nats-py")
    msg = await sub.next_msg(timeout=5)
    print(msg.data.decode())
    await nc.close()
asyncio.run(main())
"#;
    let out = Command::new(&python)
        .args(["-c", script, &b.nats_url(), &seed])
        .output()
        .expect("python with nats-py and nkeys (scripts/test installs them)");
    assert!(
        out.status.success(),
        "nats-py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "from nats-py");
}
