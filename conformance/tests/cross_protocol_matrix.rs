//! The cross-protocol matrix: for every producer and every consumer in {NATS core,
//! JetStream, MQTT 3.1.1, MQTT 5, HTTP, WebSocket}, one broker, stock clients, and
//! the checks of `cross_protocol_matrix/table.rs` — payload bytes, subject ↔ topic,
//! user headers, lineage, wildcard subscriptions, a schema violation landing in the
//! dead-letter station, and redelivery after a NAK. Each check of each cell is
//! green or not applicable for a documented reason; the observed matrix is printed
//! (`--no-capture`), and `docs/cross-protocol.md` is rendered from the same table
//! (`MATRIX_WRITE_DOC=1` rewrites it; otherwise the test checks it is current).
//!
//! Cells run one after another on one broker, each on its own subjects, clients
//! and groups. Live subscriptions are synchronised with a round trip (a NATS
//! request, a SUBACK, a `subscribed` frame), never with a sleep. Timeouts only
//! guard against hangs; nothing asserts how long anything takes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "http_api/support.rs"]
mod http_support;
#[path = "mqtt/support.rs"]
mod mqtt_support;

#[path = "cross_protocol_matrix/cell.rs"]
mod cell;
#[path = "cross_protocol_matrix/consumers.rs"]
mod consumers;
#[path = "cross_protocol_matrix/producers.rs"]
mod producers;
#[path = "cross_protocol_matrix/setup.rs"]
mod setup;
#[path = "cross_protocol_matrix/table.rs"]
mod table;
#[path = "cross_protocol_matrix/ws_client.rs"]
mod ws_client;

use std::sync::{Arc, Mutex};
use table::{Check, Outcome, Proto};

/// Where the rendered matrix lives.
const DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cross-protocol.md");

/// The panic message of a failed cell task.
fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return format!("cell task ended: {e}");
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "the cell panicked".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_producer_reaches_every_consumer() {
    let matrix = Arc::new(setup::Matrix::start().await);
    let mut results: Vec<(Proto, Proto, Vec<Outcome>)> = Vec::new();
    for p in Proto::ALL {
        for c in Proto::ALL {
            let outcomes = Arc::new(Mutex::new(vec![Outcome::NotRun; Check::ALL.len()]));
            // A panic (a client helper's hang guard) fails what the cell had not
            // decided yet, and the matrix goes on.
            let task = tokio::spawn(cell::run(matrix.clone(), p, c, outcomes.clone()));
            let aborted = task.await.err().map(panic_text);
            let mut o = outcomes.lock().unwrap().clone();
            if let Some(why) = aborted {
                for x in o.iter_mut().filter(|x| matches!(x, Outcome::NotRun)) {
                    *x = Outcome::Failed(format!("cell aborted: {why}"));
                }
            }
            results.push((p, c, o));
        }
    }
    let outcome = |p: Proto, c: Proto, check: Check| {
        results
            .iter()
            .find(|(rp, rc, _)| *rp == p && *rc == c)
            .map(|(_, _, o)| o[check.index()].clone())
            .unwrap_or(Outcome::NotRun)
    };
    println!("{}", table::report(&outcome));
    let failed = results
        .iter()
        .flat_map(|(_, _, o)| o)
        .filter(|o| matches!(o, Outcome::Failed(_) | Outcome::NotRun))
        .count();
    assert_eq!(
        failed, 0,
        "{failed} matrix checks failed; see the report above"
    );
}

/// `docs/cross-protocol.md` is the table rendered: rewritten with
/// `MATRIX_WRITE_DOC=1`, otherwise compared.
#[test]
fn document_matches_the_table() {
    let rendered = table::markdown();
    if std::env::var_os("MATRIX_WRITE_DOC").is_some_and(|v| v == "1") {
        std::fs::write(DOC, &rendered).expect("write docs/cross-protocol.md");
        return;
    }
    let on_disk = std::fs::read_to_string(DOC).unwrap_or_default();
    assert!(
        on_disk == rendered,
        "docs/cross-protocol.md is not the rendered table; regenerate it with \
         MATRIX_WRITE_DOC=1 cargo nextest run -p junction-conformance --test cross_protocol_matrix"
    );
}
