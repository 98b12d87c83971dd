//! Random packet and timer sequences against the MQTT channel, with no socket,
//! checked by a model of the client (`junction_mqtt::harness::invariants`): no
//! outgoing packet id in use twice, QoS 1/2 in flight within the client's
//! Receive Maximum, every PUBREC answered by exactly one PUBREL, no delivery
//! above the granted QoS, every inbound QoS 1/2 PUBLISH (and PUBREL, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ) answered exactly once unless the connection ended.
//!
//! The sequences come from a seeded xorshift generator, so a failure names its
//! seed and replays. The cargo-fuzz target `mqtt_channel` runs the same body on
//! libFuzzer's bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::mqtt_channel as support;

use junction_mqtt::harness::invariants::{self, Choices, Totals};

/// xorshift64*: small, seeded, good enough to choose packets.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() >> 56) as u8).collect()
    }
}

const SEQUENCES: u64 = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_channel_invariants_hold_under_random_packet_sequences() {
    let w = support::world_with(invariants::options());
    let mut totals = Totals::default();
    for seed in 1..=SEQUENCES {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // Between a few and ~100 operations.
        let len = 8 + (rng.next() % 200) as usize;
        let bytes = rng.bytes(len);
        let id = format!("seed{seed}");
        let t = invariants::run(&w.broker, &id, &mut Choices::new(&bytes)).await;
        totals.add(&t);
    }
    println!("{totals:#?}");
    assert_eq!(totals.sequences, SEQUENCES);
    // The sequences reach what they are meant to check.
    assert!(totals.deliveries_qos1 > 1000, "{totals:?}");
    assert!(totals.deliveries_qos2 > 500, "{totals:?}");
    assert!(totals.pubrels > 1000, "{totals:?}");
    assert!(totals.persistent > 200, "{totals:?}");
    assert!(totals.closed_by_server > 100, "{totals:?}");
}
