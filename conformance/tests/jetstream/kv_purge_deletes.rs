//! `purge_deletes` as the clients call it (nats-py's `kv.purge_deletes`): a
//! client-side walk of the bucket's delete and purge markers, each followed by
//! `STREAM.PURGE` with the marker's subject and `keep` (1 for a marker newer
//! than `olderthan`, 0 otherwise). Afterwards the markers are gone, the live
//! keys and their values stay, and deleted keys read as missing.

use crate::support::{api, python_with_nats, within_for};
use junction_conformance::broker;
use std::time::Duration;

/// nats-py: three keys, one deleted and one purged, then `purge_deletes`
/// with `olderthan=-1` (every marker goes); prints the keys and the values.
const NATS_PY_PURGE_DELETES: &str = r#"
import asyncio, sys, nats
from nats.js.errors import KeyNotFoundError

async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    kv = await js.create_key_value(bucket="pd", history=5)
    await kv.put("keep", b"1")
    await kv.put("keep", b"2")
    await kv.put("gone", b"x")
    await kv.put("wiped", b"y")
    await kv.delete("gone")
    await kv.purge("wiped")
    await kv.purge_deletes(olderthan=-1)
    keys = sorted(await kv.keys())
    print("KEYS " + ",".join(keys), flush=True)
    e = await kv.get("keep")
    print(f"KEEP {e.value.decode()}", flush=True)
    for k in ("gone", "wiped"):
        try:
            await kv.get(k)
            print(f"FOUND {k}", flush=True)
        except KeyNotFoundError:
            print(f"MISSING {k}", flush=True)
    await nc.close()

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_purge_deletes_removes_the_markers() {
    let Some(python) = python_with_nats() else {
        return;
    };
    let b = broker().await;
    let out = within_for(
        Duration::from_secs(30),
        "nats-py purge_deletes",
        tokio::process::Command::new(python)
            .args(["-c", NATS_PY_PURGE_DELETES, &b.nats_url()])
            .output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("KEYS keep\n"), "{stdout}");
    assert!(stdout.contains("KEEP 2\n"), "{stdout}");
    assert!(stdout.contains("MISSING gone\n"), "{stdout}");
    assert!(stdout.contains("MISSING wiped\n"), "{stdout}");
    // What is left: the two revisions of "keep", no marker.
    let nc = async_nats::connect(b.nats_url()).await.unwrap();
    let v = api(&nc, "$JS.API.STREAM.INFO.KV_pd", "").await;
    assert_eq!(v["state"]["messages"], 2, "{v}");
    assert_eq!(v["state"]["num_subjects"], 1, "{v}");
}
