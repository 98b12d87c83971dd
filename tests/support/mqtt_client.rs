//! A rumqttc client whose event loop the test polls itself: connect (with
//! CONNACK), subscribe and publish at QoS 1 (waiting for SUBACK / PUBACK), and
//! receive publishes, each under a hang guard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rumqttc::{AsyncClient, ConnAck, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use std::time::Duration;

/// How long any single step may hang before the test fails. A failure guard only.
pub const GUARD: Duration = Duration::from_secs(20);

/// `f`, or a panic naming `what` after [`GUARD`].
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A client whose event loop is polled by the test itself.
pub struct Client {
    pub client: AsyncClient,
    pub eventloop: EventLoop,
}

impl Client {
    pub async fn connect(port: u16, id: &str, clean: bool) -> (Client, ConnAck) {
        // "Server unavailable" (a cluster whose lost node's replicated session
        // store is still electing a new leader) asks the client to come back,
        // and MQTT clients do: so does this one, within the guard.
        let deadline = tokio::time::Instant::now() + GUARD;
        loop {
            let mut o = MqttOptions::new(id, "127.0.0.1", port);
            o.set_clean_session(clean);
            o.set_keep_alive(Duration::from_secs(30));
            let (client, mut eventloop) = AsyncClient::new(o, 100);
            // A broker may take a moment to answer CONNACK (in a cluster,
            // while a lost node's replicated session store elects a leader).
            eventloop
                .network_options
                .set_connection_timeout(GUARD.as_secs());
            let answer = within("CONNACK", async {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::ConnAck(a))) => return Ok(a),
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    }
                }
            })
            .await;
            match answer {
                Ok(ack) => return (Client { client, eventloop }, ack),
                Err(rumqttc::ConnectionError::ConnectionRefused(
                    rumqttc::ConnectReturnCode::ServiceUnavailable,
                )) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("connect {id}: {e:?}"),
            }
        }
    }

    pub async fn next_packet(&mut self) -> Packet {
        within("a packet", async {
            loop {
                match self.eventloop.poll().await {
                    Ok(Event::Incoming(p)) => return p,
                    Ok(_) => {}
                    Err(e) => panic!("connection failed: {e:?}"),
                }
            }
        })
        .await
    }

    pub async fn subscribe(&mut self, filter: &str) {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        while !matches!(self.next_packet().await, Packet::SubAck(_)) {}
    }

    pub async fn publish_acked(&mut self, topic: &str, retain: bool, payload: &str) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .unwrap();
        while !matches!(self.next_packet().await, Packet::PubAck(_)) {}
    }

    /// Subscribes at `qos` and waits for the SUBACK.
    pub async fn subscribe_qos(&mut self, filter: &str, qos: QoS) {
        self.client.subscribe(filter, qos).await.unwrap();
        while !matches!(self.next_packet().await, Packet::SubAck(_)) {}
    }

    /// Publishes at QoS 2 and waits for the exchange to end (PUBCOMP).
    pub async fn publish_qos2(&mut self, topic: &str, payload: &str) {
        self.client
            .publish(topic, QoS::ExactlyOnce, false, payload)
            .await
            .unwrap();
        while !matches!(self.next_packet().await, Packet::PubComp(_)) {}
    }

    pub async fn recv(&mut self) -> Publish {
        loop {
            if let Packet::Publish(p) = self.next_packet().await {
                return p;
            }
        }
    }

    pub async fn disconnect(mut self) {
        self.client.disconnect().await.unwrap();
        let _ = within("disconnect", async {
            loop {
                if self.eventloop.poll().await.is_err() {
                    return;
                }
            }
        })
        .await;
    }
}
