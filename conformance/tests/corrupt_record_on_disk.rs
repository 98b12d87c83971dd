//! A stored message whose bytes were damaged on disk (one byte flipped in the data
//! directory while the broker was down) is never handed to a client: the broker
//! starts, counts it in `junction_storage_corrupt_records_total`, logs it, and
//! serves every other message as stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod support;

use junction_conformance::{broker, start_in};
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use support::Api;

/// Every file under `dir`.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The store's table files (what fjall has flushed out of its memtable; the rest is
/// in its journal).
fn tables(dir: &Path) -> Vec<std::path::PathBuf> {
    files(dir)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
        .collect()
}

fn tables_hold(dir: &Path, needle: &[u8]) -> bool {
    tables(dir)
        .iter()
        .any(|p| std::fs::read(p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle)))
}

/// Flips one bit in the middle of every occurrence of `needle` in the store's
/// tables; returns how many were found. (A damaged journal — the tail of writes
/// since the last flush — makes the store refuse to open with a one-line error
/// instead: docs/stations.md.)
fn flip(dir: &Path, needle: &[u8]) -> usize {
    let mut found = 0;
    for path in tables(dir) {
        let mut bytes = std::fs::read(&path).unwrap();
        let mut changed = false;
        let mut i = 0;
        while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
            let at = i + pos + needle.len() / 2;
            bytes[at] ^= 0x01;
            changed = true;
            found += 1;
            i = at + 1;
        }
        if changed {
            std::fs::write(&path, &bytes).unwrap();
        }
    }
    found
}

async fn corrupt_total(api: &Api) -> u64 {
    let text = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("junction_storage_corrupt_records_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no corrupt-records metric in:\n{text}"))
}

const MESSAGES: u64 = 400;
const DAMAGE: &[u8] = b"DAMAGE-THIS-PAYLOAD-PLEASE";
const DAMAGED: u64 = 200;

fn payload(seq: u64) -> String {
    if seq == DAMAGED {
        "DAMAGE-THIS-PAYLOAD-PLEASE".to_string()
    } else {
        format!("intact message number {seq:05} {}", "x".repeat(60))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flipped_byte_is_refused_counted_and_the_rest_is_served() {
    let b = broker().await;
    let api = Api::new(&b);
    api.station("s", &["s.>"]).await;
    for seq in 1..=MESSAGES {
        assert_eq!(api.publish_stored("s.x", &payload(seq)).await, seq);
    }
    assert_eq!(corrupt_total(&api).await, 0);
    // Enough more (over 16 MiB, the log's memtable) that the store writes the first
    // messages out to a table file, where they stay.
    let filler = "f".repeat(2000);
    let batch: Vec<_> = (0..500)
        .map(|_| json!({"subject": "s.fill", "payload": filler}))
        .collect();
    let mut rounds = 0;
    while !tables_hold(b.data_dir(), DAMAGE) {
        assert!(
            rounds < 100,
            "nothing was flushed to a table after {rounds} batches"
        );
        let reply = api
            .post("/v1/stations/s/messages/batch", &json!(batch))
            .await
            .expect(200);
        assert_eq!(reply["results"].as_array().map(Vec::len), Some(500));
        rounds += 1;
        if rounds > 20 {
            // The flush runs in the background.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let (config, dir) = b.stop().await;
    let found = flip(dir.path(), DAMAGE);
    assert!(
        found > 0,
        "the payload is stored as is in the store's tables"
    );

    // The broker starts despite the damage.
    let b = start_in(config, dir).await;
    let api = Api::new(&b);
    // Every message reads back as stored, or is refused with a clear error: never
    // different bytes. The damage is confined (a storage block at most).
    let mut served = 0;
    for seq in 1..=MESSAGES {
        let reply = api.get(&format!("/v1/stations/s/messages/{seq}")).await;
        match reply.status.as_u16() {
            200 => {
                assert_eq!(reply.json["payload"], payload(seq), "seq {seq}");
                served += 1;
            }
            500 => assert_eq!(
                reply.json["error"]["code"], "corrupt_record",
                "{}",
                reply.json
            ),
            404 => assert_eq!(
                reply.json["error"]["code"], "message_not_found",
                "{}",
                reply.json
            ),
            other => panic!("seq {seq}: {other} {}", reply.json),
        }
        assert!(!reply.json.to_string().contains("DAMAGE"), "{}", reply.json);
    }
    assert!(served < MESSAGES, "the damaged message is not served");
    assert!(
        served >= MESSAGES / 2,
        "only the damaged block is lost: {served} served"
    );
    assert!(corrupt_total(&api).await >= 1);
    // New messages get new sequence numbers.
    assert!(api.publish_stored("s.x", "after").await > MESSAGES);
}
