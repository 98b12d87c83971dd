//! A restart keeps every station's exact state: message and byte counts, first and
//! last sequence, the number of subjects and of deleted messages, the last message
//! of every subject, the de-duplication window, and the limits, which keep evicting
//! the right messages afterwards.
//!
//! Runs the real `junction` binary twice over one data directory: once stopped with
//! SIGTERM (the clean shutdown writes an index snapshot, which the next start loads
//! instead of scanning the log) and once killed with SIGKILL (no snapshot is
//! trusted: the next start scans the log). Both must give the same answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::Child;

use crate::support::process;

/// How long any one step may hang before the test fails. A failure guard only.
const GUARD: Duration = Duration::from_secs(60);

/// Messages in the big station; subjects they spread over.
const MESSAGES: u64 = 3000;
const SUBJECTS: u64 = 40;

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Junction {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
}

/// The log line of a start that loaded the clean-shutdown snapshot, and of one
/// that had none and scanned the logs.
const LOADED: &str = "clean-shutdown snapshot found";
const SCANNED: &str = "no clean-shutdown snapshot";

impl Junction {
    async fn start(data: &Path, port: u16) -> Junction {
        let log = data.with_extension(format!("{}.log", rand_suffix()));
        let stderr = std::fs::File::create(&log).expect("log file");
        let child = process::serve_nats_only(data, port)
            .env_clear()
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("junction binary starts");
        // Ready once a JetStream request is answered (the listener is bound before
        // the stations are recovered).
        tokio::time::timeout(GUARD, async {
            loop {
                if let Ok(client) = async_nats::connect(format!("nats://127.0.0.1:{port}")).await
                    && jetstream::new(client).query_account().await.is_ok()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("junction answers JetStream requests");
        Junction { child, port, log }
    }

    /// What the process has logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn js(&self) -> jetstream::Context {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", self.port))
            .await
            .expect("connect");
        jetstream::new(client)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// SIGTERM: a clean shutdown, which must exit 0.
    async fn stop(mut self) {
        self.signal("TERM");
        let status = tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("junction exits after SIGTERM")
            .expect("wait");
        assert!(status.success(), "clean shutdown exits 0: {status}");
    }

    /// SIGKILL: no shutdown work at all.
    async fn kill_9(mut self) {
        self.signal("KILL");
        tokio::time::timeout(GUARD, self.child.wait())
            .await
            .expect("junction dies after SIGKILL")
            .expect("wait");
    }

    /// SIGKILL when `kill`, else a clean shutdown.
    async fn end(self, kill: bool) {
        if kill {
            self.kill_9().await;
        } else {
            self.stop().await;
        }
    }
}

/// A stream of `name` on `subjects` with nats-server's defaults for the rest.
fn config(name: &str, subjects: &str) -> stream::Config {
    stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        ..Default::default()
    }
}

/// (messages, first sequence, last sequence) of a stream.
async fn extent(s: &mut jetstream::stream::Stream) -> (u64, u64, u64) {
    let state = s.info().await.unwrap().state.clone();
    (state.messages, state.first_sequence, state.last_sequence)
}

/// A start after a clean shutdown loads the snapshot; one after SIGKILL has none
/// and scans the logs.
fn recovered_as_expected(j: &Junction, killed: bool) {
    let log = j.log();
    if killed {
        assert!(log.contains(SCANNED) && !log.contains(LOADED), "{log}");
    } else {
        assert!(log.contains(LOADED) && !log.contains(SCANNED), "{log}");
    }
}

/// Everything a client can see of a station's state.
#[derive(Debug, PartialEq)]
struct Seen {
    messages: u64,
    bytes: u64,
    first_seq: u64,
    last_seq: u64,
    num_subjects: u64,
    num_deleted: Option<u64>,
    /// (subject, sequence of its last message, that message's payload)
    last_by_subject: Vec<(String, u64, Vec<u8>)>,
    /// Sequence and payload of the first message.
    first: (u64, Vec<u8>),
}

fn subject(i: u64) -> String {
    format!("big.s{:02}", i % SUBJECTS)
}

async fn seen(js: &jetstream::Context, name: &str, subjects: &[String]) -> Seen {
    let mut s = js.get_stream(name).await.expect("stream exists");
    let state = s.info().await.expect("info").state.clone();
    let mut last_by_subject = Vec::new();
    for subject in subjects {
        match s.get_last_raw_message_by_subject(subject).await {
            Ok(m) => last_by_subject.push((subject.clone(), m.sequence, m.payload.to_vec())),
            Err(_) => last_by_subject.push((subject.clone(), 0, Vec::new())),
        }
    }
    let first = s
        .get_raw_message(state.first_sequence)
        .await
        .expect("the first message reads");
    Seen {
        messages: state.messages,
        bytes: state.bytes,
        first_seq: state.first_sequence,
        last_seq: state.last_sequence,
        num_subjects: state.subjects_count,
        num_deleted: state.deleted_count,
        last_by_subject,
        first: (first.sequence, first.payload.to_vec()),
    }
}

/// Fills the big station: many messages over many subjects, the last ones with
/// message ids, then deletes the head, some interior messages and one subject.
async fn fill_big(js: &jetstream::Context) {
    js.create_stream(config("BIG", "big.>"))
        .await
        .expect("create BIG");
    let mut acks = Vec::new();
    for i in 1..=MESSAGES {
        let payload = format!("payload-{i:08}");
        let ack = if i > MESSAGES - 50 {
            let mut h = HeaderMap::new();
            h.insert("Nats-Msg-Id", format!("id-{i}").as_str());
            js.publish_with_headers(subject(i), h, payload.into())
                .await
                .unwrap()
        } else {
            js.publish(subject(i), payload.into()).await.unwrap()
        };
        acks.push(ack);
        if acks.len() == 500 {
            for a in acks.drain(..) {
                a.await.expect("stored");
            }
        }
    }
    for a in acks {
        a.await.expect("stored");
    }
    let s = js.get_stream("BIG").await.unwrap();
    // The head, so the first sequence moves; some interior messages.
    for seq in [1, 2, 3, 700, 1500, 2222] {
        assert!(
            s.delete_message(seq).await.expect("delete"),
            "deleted {seq}"
        );
    }
    // One whole subject.
    let purged = s.purge().filter("big.s07").await.expect("purge");
    assert_eq!(purged.purged, MESSAGES / SUBJECTS);
}

async fn restart_keeps_state(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    let subjects: Vec<String> = (0..SUBJECTS).map(subject).collect();
    let j = Junction::start(dir.path(), port).await;
    let js = j.js().await;
    fill_big(&js).await;
    let before = seen(&js, "BIG", &subjects).await;
    assert_eq!(before.messages, MESSAGES - 6 - MESSAGES / SUBJECTS);
    assert_eq!(before.first_seq, 4);
    assert_eq!(before.last_seq, MESSAGES);
    assert_eq!(before.num_subjects, SUBJECTS - 1);
    drop(js);
    j.end(kill).await;

    let j = Junction::start(dir.path(), port).await;
    recovered_as_expected(&j, kill);
    let js = j.js().await;
    let after = seen(&js, "BIG", &subjects).await;
    assert_eq!(
        after, before,
        "the state after the restart is the state before"
    );

    // The dedup window holds across the restart: a message id sent before it is
    // answered as a duplicate, with the sequence it was stored at.
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", format!("id-{MESSAGES}").as_str());
    let ack = js
        .publish_with_headers(subject(MESSAGES), h, "again".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate, "{ack:?}");
    assert_eq!(ack.sequence, MESSAGES);
    // New messages take new sequence numbers, and the subject's last moves.
    let ack = js
        .publish(subject(7), "new".into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, MESSAGES + 1);
    let mut s = js.get_stream("BIG").await.unwrap();
    let state = s.info().await.unwrap().state.clone();
    assert_eq!(state.messages, before.messages + 1);
    assert_eq!(state.subjects_count, SUBJECTS);
    let last = s
        .get_last_raw_message_by_subject(&subject(7))
        .await
        .unwrap();
    assert_eq!(last.sequence, MESSAGES + 1);

    // Deleting the new first message moves the first sequence to the next one
    // still stored.
    assert!(s.delete_message(4).await.unwrap());
    let state = s.info().await.unwrap().state.clone();
    assert_eq!(state.first_sequence, 5);
    drop(js);
    j.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_restart_keeps_the_exact_state() {
    restart_keeps_state(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_kill_9_keeps_the_exact_state() {
    restart_keeps_state(true).await;
}

async fn publish_all(js: &jetstream::Context, items: impl IntoIterator<Item = (String, String)>) {
    let mut acks = Vec::new();
    for (subject, payload) in items {
        acks.push(js.publish(subject, payload.into()).await.unwrap());
    }
    for a in acks {
        a.await.expect("stored");
    }
}

async fn limits_evict_after_restart(kill: bool) {
    let dir = tempfile::tempdir().unwrap();
    let port = process::free_port();
    let j = Junction::start(dir.path(), port).await;
    let js = j.js().await;
    js.create_stream(stream::Config {
        max_messages: 100,
        ..config("CAPPED", "capped.>")
    })
    .await
    .unwrap();
    js.create_stream(stream::Config {
        max_messages_per_subject: 2,
        ..config("KV", "kv.>")
    })
    .await
    .unwrap();
    publish_all(
        &js,
        (1..=250).map(|i| (format!("capped.{}", i % 7), format!("c{i}"))),
    )
    .await;
    // More messages than the index keeps in memory: eviction reads the oldest
    // ones back from the log.
    js.create_stream(stream::Config {
        max_messages: 1500,
        ..config("WINDOW", "window.>")
    })
    .await
    .unwrap();
    publish_all(
        &js,
        (1..=3000).map(|i| (format!("window.{}", i % 3), format!("w{i}"))),
    )
    .await;
    let mut window = js.get_stream("WINDOW").await.unwrap();
    assert_eq!(extent(&mut window).await, (1500, 1501, 3000));
    publish_all(
        &js,
        (1..=3).flat_map(|round| (0..5).map(move |k| (format!("kv.k{k}"), format!("r{round}")))),
    )
    .await;
    drop(js);
    j.end(kill).await;

    let j = Junction::start(dir.path(), port).await;
    recovered_as_expected(&j, kill);
    let js = j.js().await;
    publish_all(
        &js,
        (251..=260).map(|i| (format!("capped.{}", i % 7), format!("c{i}"))),
    )
    .await;
    let mut capped = js.get_stream("CAPPED").await.unwrap();
    assert_eq!(extent(&mut capped).await, (100, 161, 260));
    let first = capped.get_raw_message(161).await.unwrap();
    assert_eq!(&first.payload[..], b"c161");
    assert!(
        capped.get_raw_message(160).await.is_err(),
        "160 was evicted"
    );

    publish_all(
        &js,
        (3001..=3010).map(|i| (format!("window.{}", i % 3), format!("w{i}"))),
    )
    .await;
    let mut window = js.get_stream("WINDOW").await.unwrap();
    assert_eq!(extent(&mut window).await, (1500, 1511, 3010));
    assert_eq!(window.info().await.unwrap().state.subjects_count, 3);
    assert_eq!(
        &window.get_raw_message(1511).await.unwrap().payload[..],
        b"w1511"
    );

    // Per-subject limit: after the restart a fourth round keeps the newest two of
    // each key.
    publish_all(&js, (0..5).map(|k| (format!("kv.k{k}"), "r4".to_string()))).await;
    let mut kv = js.get_stream("KV").await.unwrap();
    let state = kv.info().await.unwrap().state.clone();
    assert_eq!(state.messages, 10);
    assert_eq!(state.subjects_count, 5);
    assert_eq!(state.last_sequence, 20);
    for k in 0..5u64 {
        let last = kv
            .get_last_raw_message_by_subject(&format!("kv.k{k}"))
            .await
            .unwrap();
        assert_eq!(last.sequence, 16 + k);
        assert_eq!(&last.payload[..], b"r4");
        // The key's round-3 message is kept, its round-2 message is gone.
        assert_eq!(
            &kv.get_raw_message(11 + k).await.unwrap().payload[..],
            b"r3"
        );
        assert!(kv.get_raw_message(6 + k).await.is_err());
    }
    drop(js);
    j.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_still_evict_after_a_clean_restart() {
    limits_evict_after_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_still_evict_after_kill_9() {
    limits_evict_after_restart(true).await;
}
