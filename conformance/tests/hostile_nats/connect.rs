//! CONNECT bodies that are JSON but not an object: nats-server closes the
//! connection; so does Junction (no `+OK`, no `PONG`).

use crate::wire::Wire;
use junction_conformance::broker;

#[tokio::test]
async fn connect_with_a_json_array_closes_the_connection() {
    let broker = broker().await;
    let mut bystander = Wire::bystander(broker.nats_addr()).await;
    for body in ["[]", "[true]", "\"x\"", "42", "null"] {
        let mut wire = Wire::open(broker.nats_addr()).await;
        wire.send(format!("CONNECT {body}\r\nPING\r\n").as_bytes())
            .await;
        wire.expect_closed().await;
    }
    bystander.assert_healthy().await;
}

#[tokio::test]
async fn connect_with_an_object_still_works_verbose() {
    let broker = broker().await;
    let mut wire = Wire::open(broker.nats_addr()).await;
    wire.send(b"CONNECT {\"verbose\":true}\r\nPING\r\n").await;
    wire.expect(b"+OK\r\nPONG\r\n").await;
}
