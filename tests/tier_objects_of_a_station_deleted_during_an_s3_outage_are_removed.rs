//! A tiered station deleted while S3 cannot be reached leaves its objects in
//! the bucket (the deletes fail, or the process dies first). The deletion
//! writes the station's unique id under `tiergone/` first, and the
//! reconciler's next pass (here the one at start) removes everything left
//! under that id's prefix, while another tiered station's objects stay.
//!
//! Runs on moto's server mode (tests/support/s3.rs), hung with SIGSTOP for the
//! outage; without moto the test says so and passes, unless `REQUIRE_MOTO` is
//! set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::jetstream::{self, stream};
use std::collections::HashMap;
use std::time::Duration;

use crate::support::process;
use crate::support::s3;

const PREFIX: &str = "gone";

/// A segment key's sequence range (`<first>-<last>`), without its upload
/// attempt's id.
fn range(key: &str) -> String {
    let name = key.rsplit('/').next().unwrap();
    name.rsplit_once('-').unwrap().0.to_string()
}

/// The station unique ids with objects under the prefix, and their keys.
async fn objects_by_station(moto: &s3::S3) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for key in moto.list_keys(&format!("{PREFIX}/stations/")).await {
        let uid = key.split('/').nth(2).unwrap().to_string();
        out.entry(uid).or_default().push(key);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_a_station_deleted_during_an_s3_outage_are_removed_later() {
    let Some(moto) = s3::moto().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ports = (process::free_port(), process::free_port());
    let broker = moto.junction_at(PREFIX, dir.path(), &data, ports).await;
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", ports.0))
            .await
            .unwrap(),
    );
    let metadata: HashMap<String, String> = [
        ("junction.tier.segment_bytes", "32768"),
        ("junction.tier.local_max_bytes", "65536"),
        ("junction.tier.segment_max_age_ms", "500"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // DOOMED first, then KEPT, each until it has segments in the bucket: the
    // unique id of each is the one that appeared.
    let mut uids = Vec::new();
    for name in ["DOOMED", "KEPT"] {
        js.create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            metadata: metadata.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
        for i in 0..200 {
            js.publish(
                format!("{}.x", name.to_lowercase()),
                vec![i as u8; 1024].into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let uid = loop {
            let by = objects_by_station(&moto).await;
            let new = by.iter().find(|(uid, objects)| {
                !uids.contains(*uid) && objects.iter().filter(|k| k.ends_with(".seg")).count() >= 2
            });
            if let Some((uid, _)) = new {
                break uid.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no uploads of {name}: {by:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        uids.push(uid);
    }
    let (doomed, kept) = (uids[0].clone(), uids[1].clone());
    let segments_of = |by: &HashMap<String, Vec<String>>, uid: &str| {
        let mut s: Vec<String> = by
            .get(uid)
            .map(|o| o.iter().filter(|k| k.ends_with(".seg")).cloned().collect())
            .unwrap_or_default();
        s.sort();
        s
    };

    // S3 hangs; DOOMED is deleted (acknowledged: the local deletion is done);
    // the process dies before any remote delete could be answered.
    moto.hang();
    assert!(js.delete_stream("DOOMED").await.unwrap().success);
    tokio::time::sleep(Duration::from_millis(500)).await;
    s3::kill(broker).await;
    moto.unhang();
    let after_outage = objects_by_station(&moto).await;
    assert!(
        !segments_of(&after_outage, &doomed).is_empty(),
        "the outage left DOOMED's segments in the bucket: {after_outage:?}"
    );
    let kept_segments = segments_of(&after_outage, &kept);

    // At start the reconciler removes the deleted station's objects, and only
    // those.
    let broker = moto.junction_at(PREFIX, dir.path(), &data, ports).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let by = objects_by_station(&moto).await;
        if !by.contains_key(&doomed) {
            // Its ranges are all still there. (Its tail may have been sealed
            // and uploaded since, and a segment uploaded by the killed process
            // whose index entry was not written yet is uploaded again, under
            // another attempt id, its first object removed as an orphan.)
            let now: Vec<String> = segments_of(&by, &kept).iter().map(|k| range(k)).collect();
            assert!(
                kept_segments.iter().all(|k| now.contains(&range(k))),
                "KEPT's segments stay: {kept_segments:?} → {now:?}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "still there: {by:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let js = jetstream::new(
        async_nats::connect(format!("127.0.0.1:{}", ports.0))
            .await
            .unwrap(),
    );
    let mut kept_stream = js.get_stream("KEPT").await.unwrap();
    assert_eq!(kept_stream.info().await.unwrap().state.messages, 200);
    // Every message of KEPT reads back, most of them from the bucket.
    for seq in 1..=200u64 {
        let m = kept_stream.get_raw_message(seq).await.unwrap();
        assert_eq!(m.payload.len(), 1024);
        assert_eq!(m.payload[0], (seq - 1) as u8);
    }
    s3::kill(broker).await;
}
