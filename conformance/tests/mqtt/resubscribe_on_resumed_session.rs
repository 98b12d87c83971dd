//! A persistent session that comes back and subscribes again to the filter it
//! already has (what `mosquitto_sub -c` does every time) gets every message
//! queued while it was away, at once: the group's fetch made for the restored
//! subscription is taken over by the new one, never left pending until the ack
//! wait (an hour) runs out. Repeated, because the race is between the restored
//! fetch and the new SUBSCRIBE.

use crate::support::{V4, v4_options, within};
use junction_conformance::mqtt_broker;
use rumqttc::QoS;

#[tokio::test(flavor = "multi_thread")]
async fn queued_messages_arrive_after_resubscribing_the_same_filter() {
    let broker = mqtt_broker().await;
    let mut publisher = V4::new(&broker, "pub").await;
    for round in 0..10 {
        let id = format!("reader-{round}");
        let filter = format!("sensors{round}/#");
        let mut options = v4_options(&broker, &id);
        options.set_clean_session(false);
        let (mut reader, _) = V4::connect(options.clone()).await;
        reader.subscribe(&filter, QoS::AtLeastOnce).await;
        reader.disconnect().await;

        publisher
            .publish(
                &format!("sensors{round}/room1/temp"),
                QoS::AtLeastOnce,
                false,
                "21.5",
            )
            .await;
        publisher
            .publish(
                &format!("sensors{round}/room2/temp"),
                QoS::ExactlyOnce,
                false,
                "19.0",
            )
            .await;

        let (mut reader, ack) = V4::connect(options).await;
        assert!(ack.session_present, "round {round}: the session was kept");
        reader.subscribe(&filter, QoS::AtLeastOnce).await;
        let got = within("both queued messages", reader.recv_n(2)).await;
        let mut payloads: Vec<Vec<u8>> = got.iter().map(|p| p.payload.to_vec()).collect();
        payloads.sort();
        assert_eq!(
            payloads,
            vec![b"19.0".to_vec(), b"21.5".to_vec()],
            "round {round}"
        );
        reader.disconnect().await;
    }
}
