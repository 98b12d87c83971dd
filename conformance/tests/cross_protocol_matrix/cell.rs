//! Running one cell: the producer publishes, the consumer receives, and each check
//! of the table is decided from what arrived. Outcomes are recorded as they are
//! decided, so a cell that panics half-way keeps what it had established.

use crate::consumers::{Consumer, Delivery};
use crate::producers::Producer;
use crate::setup::{Matrix, Place, SCHEMA_STATION, Target};
use crate::table::{Check, Expect, Outcome, Proto, expect, wildcard};
use std::sync::{Arc, Mutex};

/// The outcomes of one cell, one per [`Check`].
pub type Outcomes = Arc<Mutex<Vec<Outcome>>>;

fn set(outcomes: &Outcomes, check: Check, outcome: Outcome) {
    if let Ok(mut o) = outcomes.lock() {
        o[check.index()] = outcome;
    }
}

/// Records `result` for `check`: green, or failed with its message.
fn record(outcomes: &Outcomes, check: Check, result: Result<(), String>) {
    set(
        outcomes,
        check,
        match result {
            Ok(()) => Outcome::Green,
            Err(why) => Outcome::Failed(why),
        },
    );
}

/// Fails every check in `checks` that is still undecided with `why`.
fn fail_rest(outcomes: &Outcomes, checks: &[Check], why: &str) {
    if let Ok(mut o) = outcomes.lock() {
        for c in checks {
            if matches!(o[c.index()], Outcome::NotRun) {
                o[c.index()] = Outcome::Failed(why.to_string());
            }
        }
    }
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(why()) }
}

/// Checks `f` on every delivery, naming the delivery in a failure.
fn each(ds: &[Delivery], f: impl Fn(&Delivery) -> Result<(), String>) -> Result<(), String> {
    for d in ds {
        f(d).map_err(|e| format!("{} delivery: {e}", d.via()))?;
    }
    Ok(())
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// A cell's messages.
struct Messages {
    cell: String,
    payload: Vec<u8>,
}

impl Messages {
    fn new(cell: &str) -> Messages {
        let mut payload = vec![0x00];
        payload.extend_from_slice(format!("matrix {cell} ").as_bytes());
        payload.push(0xff);
        Messages {
            cell: cell.to_string(),
            payload,
        }
    }

    /// A JSON document the schema refuses (no `n`).
    fn refused(&self) -> Vec<u8> {
        format!(r#"{{"cell":"{}"}}"#, self.cell).into_bytes()
    }

    /// A JSON document the schema accepts.
    fn accepted(&self) -> Vec<u8> {
        format!(r#"{{"n":1,"cell":"{}"}}"#, self.cell).into_bytes()
    }
}

/// Runs the cell (`p` → `c`), recording into `outcomes`.
pub async fn run(m: Arc<Matrix>, p: Proto, c: Proto, outcomes: Outcomes) {
    let cell = format!("{}-{}", p.token(), c.token());
    let form = wildcard(p, c);
    let msgs = Messages::new(&cell);
    // Checks the table marks N/A are decided now (and verified below where they can
    // be).
    for check in Check::ALL {
        if let Expect::NotApplicable(r) = expect(p, c, check) {
            set(&outcomes, check, Outcome::NotApplicable(r));
        }
    }

    let plain = Place::new(Target::Plain, &cell, form);
    let main_checks = [
        Check::Payload,
        Check::Subject,
        Check::Headers,
        Check::Lineage,
        Check::Wildcard,
        Check::Nak,
    ];
    let mut producer = match Producer::connect(&m, p, &cell).await {
        Ok(x) => x,
        Err(e) => return fail_rest(&outcomes, &Check::ALL, &format!("producer: {e}")),
    };

    // Payload, subject, headers, lineage, wildcard, NAK.
    match Consumer::open(&m, c, &cell, &plain).await {
        Err(e) => fail_rest(&outcomes, &main_checks, &format!("consumer: {e}")),
        Ok(mut consumer) => {
            let headers: &[(&str, &str)] = if p == Proto::Mqtt311 {
                &[]
            } else {
                // A forged lineage header: the engine must drop it.
                &[
                    ("X-Matrix-Cell", cell.as_str()),
                    ("Junction-Origin-Protocol", "forged"),
                ]
            };
            match producer
                .publish(&plain.subject, &msgs.payload, headers)
                .await
            {
                Err(e) => fail_rest(&outcomes, &main_checks, &format!("publish: {e}")),
                Ok(()) => match consumer.receive().await {
                    Err(e) => fail_rest(&outcomes, &main_checks, &format!("receive: {e}")),
                    Ok(ds) => {
                        // The stored copy's lineage, as a client that opts in reads it.
                        let stored = stored_lineage(
                            &m,
                            &format!("/v1/stations/{}/messages", plain.station),
                            &plain.subject,
                        )
                        .await;
                        main_checks_on(&outcomes, p, c, &plain, &msgs, &ds, &stored);
                        if matches!(expect(p, c, Check::Nak), Expect::Green(_)) {
                            let stored: Vec<Delivery> =
                                ds.iter().filter(|d| d.stored).cloned().collect();
                            let result = nak_check(&mut consumer, &stored).await;
                            record(&outcomes, Check::Nak, result);
                        }
                    }
                },
            }
            consumer.close().await;
        }
    }

    // Schema violation → refused, not delivered, copied to the dead-letter station.
    let result = dead_letter_check(&m, p, c, &cell, &msgs, &mut producer).await;
    record(&outcomes, Check::DeadLetter, result);
    producer.close().await;
}

fn main_checks_on(
    outcomes: &Outcomes,
    p: Proto,
    c: Proto,
    place: &Place,
    msgs: &Messages,
    ds: &[Delivery],
    stored: &Result<Vec<(String, String)>, String>,
) {
    let mqtt_qos = if p.is_mqtt() { 1 } else { 0 };
    record(
        outcomes,
        Check::Payload,
        each(ds, |d| {
            ensure(d.payload == msgs.payload, || {
                format!("payload {} ≠ {}", show(&d.payload), show(&msgs.payload))
            })?;
            match d.qos {
                Some(q) => ensure(q == mqtt_qos, || {
                    format!("delivered at QoS {q}, docs/mqtt.md says QoS {mqtt_qos}")
                }),
                None => Ok(()),
            }
        }),
    );
    let want_subject = if c.is_mqtt() {
        place.topic()
    } else {
        place.subject.clone()
    };
    record(
        outcomes,
        Check::Subject,
        each(ds, |d| {
            ensure(d.subject == want_subject, || {
                format!("arrived on {:?}, expected {want_subject:?}", d.subject)
            })
        }),
    );
    // The consumer subscribed only with a wildcard; what arrived came through it.
    record(outcomes, Check::Wildcard, Ok(()));
    if matches!(expect(p, c, Check::Headers), Expect::Green(_)) {
        let cell = msgs.cell.as_str();
        record(
            outcomes,
            Check::Headers,
            each(ds, |d| {
                ensure(d.header("X-Matrix-Cell") == [cell], || {
                    format!(
                        "X-Matrix-Cell {:?}, expected [{cell:?}]; headers {:?}",
                        d.header("X-Matrix-Cell"),
                        d.headers
                    )
                })
            }),
        );
    }
    if c != Proto::Mqtt311 {
        let result = each(ds, |d| lineage(p, place, d)).and_then(|()| match stored {
            Ok(h) => stored_lineage_names(p, place, h),
            Err(e) => Err(e.clone()),
        });
        match expect(p, c, Check::Lineage) {
            Expect::Green(_) => record(outcomes, Check::Lineage, result),
            // The N/A is verified: the documented behaviour holds.
            Expect::NotApplicable(_) => {
                if let Err(e) = result {
                    set(
                        outcomes,
                        Check::Lineage,
                        Outcome::Failed(format!("N/A, but not as documented: {e}")),
                    );
                }
            }
        }
    }
}

/// Lineage of one delivery (docs/lineage.md): none in the headers. Every consumer
/// gets exactly the producer's headers; the forged `Junction-Origin-Protocol` the
/// producer sent is gone, and the MQTT front-end's own markers stay with it.
fn lineage(_p: Proto, _place: &Place, d: &Delivery) -> Result<(), String> {
    let stamped: Vec<&String> = d
        .headers
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| k.to_ascii_lowercase().starts_with("junction-"))
        .collect();
    ensure(stamped.is_empty(), || {
        format!(
            "a {} delivery carries {stamped:?}; headers {:?}",
            d.via(),
            d.headers
        )
    })
}

/// The headers of the newest message on `subject` in the page at `path`, read
/// over HTTP with `Junction-Lineage: true`.
///
/// A core publish (NATS core, MQTT QoS 0) is delivered live before its stored copy
/// is durable, and nothing tells the producer when that is: the page is read again
/// until the copy shows up (at most 10 s).
async fn stored_lineage(
    m: &Matrix,
    path: &str,
    subject: &str,
) -> Result<Vec<(String, String)>, String> {
    let mut tries = 0;
    loop {
        match stored_lineage_once(m, path, subject).await {
            Err(e) if e.contains("no stored message") && tries < 200 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

async fn stored_lineage_once(
    m: &Matrix,
    path: &str,
    subject: &str,
) -> Result<Vec<(String, String)>, String> {
    let reply = m
        .api
        .send(
            m.api
                .request(reqwest::Method::GET, path)
                .query(&[("subject", subject)])
                .header("Junction-Lineage", "true"),
        )
        .await;
    if reply.status != 200 {
        return Err(format!("{path}: {} {}", reply.status, reply.json));
    }
    let last = reply.json["messages"]
        .as_array()
        .and_then(|a| a.last())
        .ok_or_else(|| format!("{path}: no stored message on {subject}"))?;
    let mut headers = Vec::new();
    for (k, v) in last["headers"].as_object().into_iter().flatten() {
        match v {
            serde_json::Value::Array(vs) => headers.extend(
                vs.iter()
                    .map(|v| (k.clone(), v.as_str().unwrap_or_default().to_string())),
            ),
            v => headers.push((k.clone(), v.as_str().unwrap_or_default().to_string())),
        }
    }
    Ok(headers)
}

/// The stored copy's lineage, rendered on request, names the producer: its
/// protocol (not the forged value), the subject and a 32-hex-digit message id.
fn stored_lineage_names(p: Proto, place: &Place, h: &[(String, String)]) -> Result<(), String> {
    let get = |name: &str| -> Vec<&str> {
        h.iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let all = || format!("stored copy read with Junction-Lineage: {h:?}");
    ensure(get("Junction-Origin-Protocol") == [p.origin()], || {
        format!(
            "Junction-Origin-Protocol should be [{:?}]; {}",
            p.origin(),
            all()
        )
    })?;
    ensure(
        get("Junction-Origin-Subject") == [place.subject.as_str()],
        || {
            format!(
                "Junction-Origin-Subject should be [{:?}]; {}",
                place.subject,
                all()
            )
        },
    )?;
    let id = get("Junction-Msg-Id");
    ensure(
        id.len() == 1 && id[0].len() == 32 && id[0].bytes().all(|b| b.is_ascii_hexdigit()),
        || format!("Junction-Msg-Id should be 32 hex digits; {}", all()),
    )?;
    ensure(get("traceparent").len() == 1, || {
        format!("one traceparent expected; {}", all())
    })
}

/// NAKs the stored delivery and checks its redelivery, then acks it.
async fn nak_check(consumer: &mut Consumer, stored: &[Delivery]) -> Result<(), String> {
    let first = stored.last().ok_or("no stored delivery to NAK")?;
    ensure(first.delivery_count == Some(1), || {
        format!(
            "first delivery count {:?}, expected 1",
            first.delivery_count
        )
    })?;
    let again = consumer.nak_and_receive().await?;
    ensure(again.payload == first.payload, || {
        format!(
            "redelivered payload {} ≠ {}",
            show(&again.payload),
            show(&first.payload)
        )
    })?;
    ensure(again.delivery_count == Some(2), || {
        format!("redelivery count {:?}, expected 2", again.delivery_count)
    })?;
    ensure(again.headers == first.headers, || {
        format!(
            "redelivered headers {:?} ≠ {:?}",
            again.headers, first.headers
        )
    })?;
    consumer.ack().await
}

/// The schema-violation check of a cell (see [`Check::DeadLetter`]).
async fn dead_letter_check(
    m: &Matrix,
    p: Proto,
    c: Proto,
    cell: &str,
    msgs: &Messages,
    producer: &mut Producer,
) -> Result<(), String> {
    let form = wildcard(p, c);
    let schema = Place::new(Target::Schema, cell, form);
    let mut consumer = Consumer::open(m, c, cell, &schema)
        .await
        .map_err(|e| format!("consumer of {}: {e}", schema.station))?;
    producer
        .publish_refused(&schema.subject, &msgs.refused())
        .await
        .map_err(|e| format!("refused publish: {e}"))?;
    producer
        .publish(&schema.subject, &msgs.accepted(), &[])
        .await
        .map_err(|e| format!("valid publish after the refused one: {e}"))?;
    let first = consumer.receive().await?;
    each(&first, |d| {
        ensure(d.payload == msgs.accepted(), || {
            format!(
                "first delivery {} is not the valid message {}: the refused one got through",
                show(&d.payload),
                show(&msgs.accepted())
            )
        })
    })?;
    consumer.ack().await?;
    consumer.close().await;

    // The copy, read by the consumer itself when it reads stations, else over HTTP.
    let dls = Place::new(Target::DeadLetter, cell, form);
    let reader = if c.reads_stored() { c } else { Proto::Http };
    let mut consumer = Consumer::open(m, reader, cell, &dls)
        .await
        .map_err(|e| format!("{} reader of {}: {e}", reader.label(), dls.station))?;
    let copies = consumer
        .receive()
        .await
        .map_err(|e| format!("{} reading {}: {e}", reader.label(), dls.station))?;
    let want = |name: &str, value: &str, d: &Delivery| {
        ensure(d.header(name) == [value], || {
            format!("{name} should be [{value:?}]; headers {:?}", d.headers)
        })
    };
    each(&copies, |d| {
        ensure(d.payload == msgs.refused(), || {
            format!(
                "dead letter payload {} ≠ {}",
                show(&d.payload),
                show(&msgs.refused())
            )
        })?;
        ensure(d.subject == dls.subject, || {
            format!("dead letter on {:?}, expected {:?}", d.subject, dls.subject)
        })?;
        want("Junction-Dls-Reason", "schema_violation", d)?;
        want("Junction-Dls-Station", schema.station, d)?;
        want("Junction-Dls-Subject", &schema.subject, d)?;
        // The copy keeps the original's lineage beside it, not in its headers.
        ensure(d.header("Junction-Origin-Protocol").is_empty(), || {
            format!("a dead letter carries lineage headers: {:?}", d.headers)
        })?;
        ensure(
            d.header("Junction-Dls-Validation-Error")
                .first()
                .is_some_and(|e| e.contains("\"n\"")),
            || format!("no validation error naming \"n\"; headers {:?}", d.headers),
        )
    })?;
    consumer.ack().await?;
    consumer.close().await;
    // Read with its lineage, the copy names the producer of the refused message.
    let h = stored_lineage(
        m,
        &format!("/v1/stations/{SCHEMA_STATION}/dls/messages"),
        &dls.subject,
    )
    .await?;
    let origin: Vec<&str> = h
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Junction-Origin-Protocol"))
        .map(|(_, v)| v.as_str())
        .collect();
    ensure(origin == [p.origin()], || {
        format!(
            "dead letter read with Junction-Lineage: Junction-Origin-Protocol should be [{:?}]; {h:?}",
            p.origin()
        )
    })?;
    Ok(())
}
