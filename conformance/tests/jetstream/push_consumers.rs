//! Push consumers with async-nats, as a NATS user writes them:
//! - a durable push consumer delivers every message to its deliver subject with
//!   `$JS.ACK` replies; acknowledged ones are not delivered again, and its
//!   position survives the subscriber going away and coming back;
//! - a queue push consumer (`deliver_group`) splits the messages among the
//!   members of the queue group, each message to one of them;
//! - an ordered consumer (ephemeral, flow control, idle heartbeats) gets every
//!   message in order, also those published while it reads, and recovers from
//!   a delivery lost on the way (a proxy drops it) by making a new consumer;
//! - idle heartbeats carry `Nats-Last-Consumer` / `Nats-Last-Stream`, and a flow
//!   control request is answered before more is delivered (raw subscriber);
//! - an ephemeral push consumer is deleted once nobody subscribes to it;
//! - bad configurations get nats-server's error codes.

use crate::support::{
    api, connect, expect_api_error, poll_until, publish, python_with_nats, simple_stream, within,
};
use async_nats::jetstream::consumer::{self, AckPolicy, push};
use futures::StreamExt;
use junction_conformance::broker;
use std::collections::BTreeSet;
use std::time::Duration;

fn payload_text(m: &async_nats::jetstream::Message) -> String {
    String::from_utf8_lossy(&m.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_push_consumer_delivers_everything_and_keeps_its_position() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "PUSH", &["push.>"]).await;
    for n in 0..20 {
        publish(&js, "push.a", format!("m{n}")).await;
    }
    let inbox = client.new_inbox();
    let consumer: consumer::PushConsumer = within(
        "create push consumer",
        stream.create_consumer(push::Config {
            durable_name: Some("pd".into()),
            deliver_subject: inbox.clone(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(2),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let info = within("info", js.get_stream("PUSH"))
        .await
        .unwrap()
        .consumer_info("pd")
        .await
        .unwrap();
    assert_eq!(info.config.deliver_subject.as_deref(), Some(inbox.as_str()));
    let mut messages = consumer.messages().await.unwrap();
    let mut got = Vec::new();
    while got.len() < 10 {
        let m = within("push delivery", messages.next())
            .await
            .unwrap()
            .unwrap();
        let info = m.info().unwrap();
        assert_eq!(info.stream, "PUSH");
        assert_eq!(info.consumer, "pd");
        got.push(payload_text(&m));
        m.double_ack().await.unwrap();
    }
    assert_eq!(got, (0..10).map(|n| format!("m{n}")).collect::<Vec<_>>());
    drop(messages);
    // Nobody subscribed: nothing is delivered meanwhile, and the consumer
    // stays (durable).
    let unbound = || async {
        let nc = async_nats::connect(b.nats_url()).await.unwrap();
        let v = api(&nc, "$JS.API.CONSUMER.INFO.PUSH.pd", "").await;
        v["push_bound"] != true
    };
    poll_until("the consumer is unbound", unbound).await;
    for n in 20..25 {
        publish(&js, "push.a", format!("m{n}")).await;
    }
    // The subscriber is back: the rest, from where it was (the 10 it had
    // delivered but not acknowledged come again after their ack wait; these
    // were delivered with acks, so only the unacknowledged follow).
    let consumer: consumer::PushConsumer = js
        .get_stream("PUSH")
        .await
        .unwrap()
        .get_consumer("pd")
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut rest = BTreeSet::new();
    while rest.len() < 15 {
        let m = within_for_long(messages.next()).await.unwrap().unwrap();
        rest.insert(payload_text(&m));
        m.ack().await.unwrap();
    }
    let want: BTreeSet<String> = (10..25).map(|n| format!("m{n}")).collect();
    assert_eq!(rest, want);
    drop(client);
}

async fn within_for_long<F: std::future::Future>(f: F) -> F::Output {
    crate::support::within_for(Duration::from_secs(45), "push delivery", f).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_push_consumer_gives_each_message_to_one_member() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "QPUSH", &["qpush.>"]).await;
    let deliver = "deliver.qpush".to_string();
    let mut members = Vec::new();
    for _ in 0..2 {
        let nc = async_nats::connect(b.nats_url()).await.unwrap();
        let sub = nc
            .queue_subscribe(deliver.clone(), "workers".into())
            .await
            .unwrap();
        nc.flush().await.unwrap();
        members.push((nc, sub));
    }
    within(
        "create queue push consumer",
        stream.create_consumer(push::Config {
            durable_name: Some("q".into()),
            deliver_subject: deliver.clone(),
            deliver_group: Some("workers".into()),
            ack_policy: AckPolicy::None,
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    for n in 0..100 {
        publish(&js, "qpush.x", format!("m{n}")).await;
    }
    let mut seen = Vec::new();
    let mut per_member = Vec::new();
    for (_, sub) in members.iter_mut() {
        let mut mine = 0;
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), sub.next()).await
        {
            seen.push(String::from_utf8_lossy(&m.payload).into_owned());
            mine += 1;
        }
        per_member.push(mine);
    }
    seen.sort();
    let mut want: Vec<String> = (0..100).map(|n| format!("m{n}")).collect();
    want.sort();
    assert_eq!(seen, want, "each message once, to one member");
    assert!(
        per_member.iter().all(|n| *n > 0),
        "both members got some: {per_member:?}"
    );
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_consumer_gets_every_message_in_order() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "ORD", &["ord.>"]).await;
    for n in 0..1500 {
        publish(&js, &format!("ord.{}", n % 3), format!("{n}")).await;
    }
    let consumer: consumer::Consumer<push::OrderedConfig> = within(
        "ordered consumer",
        stream.create_consumer(push::OrderedConfig {
            deliver_subject: client.new_inbox(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let js2 = js.clone();
    let more = tokio::spawn(async move {
        for n in 1500..1600 {
            publish(&js2, "ord.9", format!("{n}")).await;
        }
    });
    let mut next = 0u64;
    while next < 1600 {
        let m = within_for_long(messages.next()).await.unwrap().unwrap();
        assert_eq!(payload_text(&m), next.to_string(), "in order, none missing");
        assert_eq!(m.info().unwrap().stream_sequence, next + 1);
        next += 1;
    }
    more.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_and_flow_control_as_nats_server_sends_them() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "HB", &["hb.>"]).await;
    publish(&js, "hb.a", "one").await;
    let deliver = client.new_inbox();
    let mut sub = client.subscribe(deliver.clone()).await.unwrap();
    client.flush().await.unwrap();
    let body = serde_json::json!({
        "stream_name": "HB",
        "config": {
            "durable_name": "hb",
            "deliver_subject": deliver,
            "ack_policy": "none",
            "idle_heartbeat": 200_000_000,
            "flow_control": true,
        }
    });
    let v = api(&client, "$JS.API.CONSUMER.CREATE.HB.hb", &body.to_string()).await;
    assert_eq!(v["config"]["flow_control"], true, "{v}");
    assert_eq!(v["config"]["idle_heartbeat"], 200_000_000, "{v}");
    let first = within("the message", sub.next()).await.unwrap();
    assert_eq!(&first.payload[..], b"one");
    assert!(
        first
            .reply
            .as_ref()
            .unwrap()
            .starts_with("$JS.ACK.HB.hb.1.1.1.")
    );
    // Then heartbeats, with the last sequences.
    let hb = within("a heartbeat", sub.next()).await.unwrap();
    assert_eq!(hb.status, Some(async_nats::StatusCode::IDLE_HEARTBEAT));
    let h = hb.headers.as_ref().unwrap();
    assert_eq!(h.get("Nats-Last-Consumer").unwrap().as_str(), "1");
    assert_eq!(h.get("Nats-Last-Stream").unwrap().as_str(), "1");
    assert!(hb.reply.is_none());
    // A burst: a flow-control request (status 100 with a reply) comes, and
    // nothing more until it is answered.
    for n in 0..1200 {
        publish(&js, "hb.a", format!("{n}")).await;
    }
    let mut data = 0;
    let fc = loop {
        let m = within("flow control", sub.next()).await.unwrap();
        if m.status.is_none() {
            data += 1;
            continue;
        }
        if let Some(reply) = m.reply.clone() {
            break reply;
        }
    };
    assert!(
        data > 0 && data < 1200,
        "stopped at the flow-control request: {data}"
    );
    // Unanswered: heartbeats name it as stalled, and no data comes.
    let stalled = loop {
        let m = within("stalled heartbeat", sub.next()).await.unwrap();
        assert!(
            m.status.is_some(),
            "no data while flow control is unanswered"
        );
        if let Some(s) = m
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Consumer-Stalled"))
        {
            break s.as_str().to_string();
        }
    };
    assert_eq!(stalled, fc.as_str());
    client.publish(fc, "".into()).await.unwrap();
    while data < 1200 {
        let m = within("after flow control", sub.next()).await.unwrap();
        if m.status.is_none() {
            data += 1;
        } else if let Some(reply) = m.reply.clone() {
            client.publish(reply, "".into()).await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ephemeral_push_consumer_goes_when_nobody_listens() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "EPH", &["eph.>"]).await;
    let deliver = client.new_inbox();
    let sub = client.subscribe(deliver.clone()).await.unwrap();
    client.flush().await.unwrap();
    let body = serde_json::json!({
        "stream_name": "EPH",
        "config": {
            "deliver_subject": deliver,
            "ack_policy": "none",
            "inactive_threshold": 500_000_000,
        }
    });
    let v = api(&client, "$JS.API.CONSUMER.CREATE.EPH", &body.to_string()).await;
    let name = v["name"].as_str().unwrap().to_string();
    assert_eq!(v["push_bound"], true, "{v}");
    drop(sub);
    client.flush().await.unwrap();
    let nc = client.clone();
    poll_until("the ephemeral consumer is deleted", || {
        let nc = nc.clone();
        let name = name.clone();
        async move {
            let v = api(&nc, &format!("$JS.API.CONSUMER.INFO.EPH.{name}"), "").await;
            v["error"]["err_code"] == 10014
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_push_configurations_get_nats_server_errors() {
    let b = broker().await;
    let (client, js) = connect(&b).await;
    simple_stream(&js, "BADP", &["badp.>"]).await;
    let create = |config: serde_json::Value| {
        let client = client.clone();
        async move {
            let body = serde_json::json!({"stream_name": "BADP", "config": config});
            api(&client, "$JS.API.CONSUMER.CREATE.BADP", &body.to_string()).await
        }
    };
    let cases = [
        (serde_json::json!({"deliver_subject": "d.*"}), 10079),
        (serde_json::json!({"deliver_subject": "badp.x"}), 10081),
        (
            serde_json::json!({"deliver_subject": "d.x", "max_waiting": 5}),
            10080,
        ),
        (
            serde_json::json!({"deliver_subject": "d.x", "flow_control": true}),
            10108,
        ),
        (
            serde_json::json!({"deliver_subject": "d.x", "idle_heartbeat": 1000}),
            10083,
        ),
        (serde_json::json!({"idle_heartbeat": 1_000_000_000}), 10088),
        (serde_json::json!({"flow_control": true}), 10089),
    ];
    for (config, code) in cases {
        let v = create(config.clone()).await;
        expect_api_error(&v, 400, code);
    }
}

/// nats-py's push subscriptions: `js.subscribe` with a durable (acks each
/// message) and with `ordered_consumer=True`; each prints the payloads it got.
const NATS_PY_PUSH: &str = r#"
import asyncio, sys, nats

async def main():
    nc = await nats.connect(sys.argv[1])
    js = nc.jetstream()
    got = []
    sub = await js.subscribe("np.>", durable="npd", manual_ack=True)
    while len(got) < 50:
        m = await sub.next_msg(timeout=10)
        got.append(m.data.decode())
        await m.ack()
    print("DURABLE " + ",".join(got), flush=True)
    ordered = []
    osub = await js.subscribe("np.>", ordered_consumer=True, idle_heartbeat=1)
    while len(ordered) < 50:
        m = await osub.next_msg(timeout=10)
        ordered.append(m.data.decode())
    print("ORDERED " + ",".join(ordered), flush=True)
    await nc.close()

asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_py_push_subscriptions_durable_and_ordered() {
    let Some(python) = python_with_nats() else {
        return;
    };
    let b = broker().await;
    let (_client, js) = connect(&b).await;
    simple_stream(&js, "NP", &["np.>"]).await;
    for n in 0..50 {
        publish(&js, "np.x", format!("{n}")).await;
    }
    let out = within_for_long(
        tokio::process::Command::new(python)
            .args(["-c", NATS_PY_PUSH, &b.nats_url()])
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
    let want: Vec<String> = (0..50).map(|n| n.to_string()).collect();
    let line = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix}line in {stdout}"))
            .split(',')
            .map(str::to_string)
            .collect()
    };
    assert_eq!(line("DURABLE "), want);
    assert_eq!(line("ORDERED "), want);
    // The durable acknowledged all 50.
    let nc = async_nats::connect(b.nats_url()).await.unwrap();
    let v = api(&nc, "$JS.API.CONSUMER.INFO.NP.npd", "").await;
    assert_eq!(v["ack_floor"]["stream_seq"], 50, "{v}");
}

/// A TCP proxy in front of the broker that forwards everything, except that it
/// drops the first delivery of stream sequence `drop_seq` on a `$JS.ACK` reply
/// (a `MSG`/`HMSG` the server sends), so the client sees a gap in the consumer
/// sequence, as after a lost packet. Returns its address and how many it dropped.
async fn gap_proxy(
    upstream: std::net::SocketAddr,
    drop_seq: u64,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dropped = std::sync::Arc::new(AtomicU64::new(0));
    let counter = dropped.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (mut client_read, mut client_write) = client.into_split();
            let (server_read, mut server_write) = server.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
            });
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut from_server = BufReader::new(server_read);
                let mut line = String::new();
                loop {
                    line.clear();
                    if from_server.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let words: Vec<&str> = line.split_whitespace().collect();
                    // MSG <subject> <sid> [reply] <size>; HMSG … [reply] <hdr> <total>.
                    let (reply, size) = match words.first().copied() {
                        Some("MSG") if words.len() == 5 => (Some(words[3]), words[4]),
                        Some("MSG") => (None, words[words.len() - 1]),
                        Some("HMSG") if words.len() == 6 => (Some(words[3]), words[5]),
                        Some("HMSG") => (None, words[words.len() - 1]),
                        _ => {
                            if client_write.write_all(line.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    };
                    let size: usize = size.parse().unwrap();
                    let mut body = vec![0u8; size + 2];
                    if from_server.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
                    let sseq = reply
                        .filter(|r| r.starts_with("$JS.ACK."))
                        .and_then(|r| r.split('.').nth(5))
                        .and_then(|s| s.parse::<u64>().ok());
                    if sseq == Some(drop_seq) && counter.load(Ordering::SeqCst) == 0 {
                        counter.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    if client_write.write_all(line.as_bytes()).await.is_err()
                        || client_write.write_all(&body).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, dropped)
}

/// The issue's induced gap: one delivery to an ordered consumer is lost on the
/// way (a proxy drops it). The client sees the consumer sequence jump, makes a
/// new consumer from the stream sequence after the last one it got, as
/// async-nats's ordered consumer does, and still gets every message exactly
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordered_consumer_recovers_from_an_induced_gap() {
    const N: u64 = 600;
    const LOST: u64 = 250;
    let b = broker().await;
    let (client, js) = connect(&b).await;
    let stream = simple_stream(&js, "GAP", &["gap.>"]).await;
    // Each consumer made on the stream, as nats-server advises it.
    let mut created = client
        .subscribe("$JS.EVENT.ADVISORY.CONSUMER.CREATED.GAP.*")
        .await
        .unwrap();
    client.flush().await.unwrap();
    for n in 1..=N {
        publish(&js, "gap.a", format!("{n}")).await;
    }
    let (proxy, dropped) = gap_proxy(b.nats_addr(), LOST).await;
    let via_proxy = async_nats::connect(proxy.to_string()).await.unwrap();
    let stream_via_proxy = async_nats::jetstream::new(via_proxy.clone())
        .get_stream("GAP")
        .await
        .unwrap();
    let consumer: consumer::Consumer<push::OrderedConfig> = within(
        "ordered consumer",
        stream_via_proxy.create_consumer(push::OrderedConfig {
            deliver_subject: via_proxy.new_inbox(),
            ..Default::default()
        }),
    )
    .await
    .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    for want in 1..=N {
        let m = within_for_long(messages.next()).await.unwrap().unwrap();
        assert_eq!(
            m.info().unwrap().stream_sequence,
            want,
            "in order, none missing"
        );
        assert_eq!(payload_text(&m), want.to_string());
    }
    assert_eq!(
        dropped.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the proxy dropped delivery {LOST} once"
    );
    // The client made a second consumer after the gap: two creations.
    for n in 1..=2 {
        within("consumer created advisory", created.next())
            .await
            .unwrap_or_else(|| panic!("advisory {n}"));
    }
    drop(stream);
}
