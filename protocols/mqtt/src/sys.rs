//! `$SYS/broker/...` topics, mosquitto-style: broker figures refreshed every
//! `sys_interval`, retained (in memory only) so a new subscriber sees them at once.

use crate::broker::MqttBroker;
use crate::session::{H_MQTT_QOS, Retained};
use bytes::Bytes;
use junction_api::{Headers, Message};
use std::sync::Arc;
use std::time::SystemTime;

/// Publishes the figures every interval until shutdown.
pub(crate) async fn run(broker: Arc<MqttBroker>) {
    let mut tick = tokio::time::interval(broker.options.sys_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tick.tick() => publish(&broker),
        }
    }
}

fn publish(broker: &MqttBroker) {
    let s = broker.engine.server_snapshot();
    let uptime = SystemTime::now()
        .duration_since(s.start)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let figures: Vec<(&str, String)> = vec![
        (
            "$SYS/broker/version",
            format!("junction {}", env!("CARGO_PKG_VERSION")),
        ),
        ("$SYS/broker/uptime", format!("{uptime} seconds")),
        ("$SYS/broker/clients/connected", s.connections.to_string()),
        ("$SYS/broker/clients/total", s.total_connections.to_string()),
        ("$SYS/broker/messages/received", s.in_msgs.to_string()),
        ("$SYS/broker/messages/sent", s.out_msgs.to_string()),
        ("$SYS/broker/bytes/received", s.in_bytes.to_string()),
        ("$SYS/broker/bytes/sent", s.out_bytes.to_string()),
        (
            "$SYS/broker/subscriptions/count",
            s.subscriptions.to_string(),
        ),
        (
            "$SYS/broker/messages/undeliverable",
            broker
                .undeliverable
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
        (
            "$SYS/broker/messages/too_large",
            broker
                .too_large
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
    ];
    for tenant in broker.tenants() {
        let retained_count = tenant
            .retained
            .read()
            .values()
            .filter(|r| !r.volatile)
            .count();
        let mut all = figures.clone();
        all.push(("$SYS/broker/retained/count", retained_count.to_string()));
        for (topic, value) in all {
            let Ok(subject) = crate::topic::topic_to_subject(topic) else {
                continue;
            };
            let mut headers = Headers::new();
            headers.insert(H_MQTT_QOS, "0");
            let payload = Bytes::from(value);
            tenant.retained.write().insert(
                topic.to_owned(),
                Retained {
                    subject: subject.clone(),
                    payload: payload.clone(),
                    qos: 0,
                    headers: Some(headers.clone()),
                    reply: None,
                    volatile: true,
                    at_ns: 0,
                },
            );
            let mut message = Message::new(subject, payload);
            message.headers = Some(headers);
            broker.engine.publish(&tenant.client, &message);
        }
    }
}
