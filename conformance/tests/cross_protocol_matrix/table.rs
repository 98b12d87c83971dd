//! The matrix's definition: the protocols on each side, the checks, and for every
//! (producer, consumer, check) what is expected — checked green, or not applicable
//! for a documented reason. The run fills in outcomes; the Markdown document
//! (`docs/cross-protocol.md`) and the printed matrix are both rendered from here.

use std::fmt::Write as _;

/// A protocol, as a producer or as a consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// NATS core: `PUB`/`HPUB` without a reply; `SUB` (live).
    NatsCore,
    /// NATS JetStream: a publish answered with a PubAck; a durable pull consumer.
    JetStream,
    /// MQTT 3.1.1 at QoS 1.
    Mqtt311,
    /// MQTT 5 at QoS 1.
    Mqtt5,
    /// HTTP: `POST /v1/subjects/{subject}`; consumer-group fetch, ack and nak.
    Http,
    /// WebSocket `/v1/ws`: publish frames; a live subscription and a group attach.
    WebSocket,
}

impl Proto {
    /// Every protocol, in the matrix's order.
    pub const ALL: [Proto; 6] = [
        Proto::NatsCore,
        Proto::JetStream,
        Proto::Mqtt311,
        Proto::Mqtt5,
        Proto::Http,
        Proto::WebSocket,
    ];

    /// The name in the matrix.
    pub fn label(self) -> &'static str {
        match self {
            Proto::NatsCore => "NATS core",
            Proto::JetStream => "JetStream",
            Proto::Mqtt311 => "MQTT 3.1.1",
            Proto::Mqtt5 => "MQTT 5",
            Proto::Http => "HTTP",
            Proto::WebSocket => "WebSocket",
        }
    }

    /// A subject token naming it (cells are `<producer>-<consumer>`).
    pub fn token(self) -> &'static str {
        match self {
            Proto::NatsCore => "nats",
            Proto::JetStream => "js",
            Proto::Mqtt311 => "mq3",
            Proto::Mqtt5 => "mq5",
            Proto::Http => "http",
            Proto::WebSocket => "ws",
        }
    }

    /// `Junction-Origin-Protocol` of a message it produced (docs/lineage.md).
    pub fn origin(self) -> &'static str {
        match self {
            Proto::NatsCore | Proto::JetStream => "nats",
            Proto::Mqtt311 | Proto::Mqtt5 => "mqtt",
            Proto::Http => "http",
            Proto::WebSocket => "websocket",
        }
    }

    /// MQTT, either version.
    pub fn is_mqtt(self) -> bool {
        matches!(self, Proto::Mqtt311 | Proto::Mqtt5)
    }

    /// A consumer that reads stored messages from a station through a consumer
    /// group (and so can NAK): JetStream, HTTP, WebSocket attach.
    pub fn reads_stored(self) -> bool {
        matches!(self, Proto::JetStream | Proto::Http | Proto::WebSocket)
    }

    /// What it is, as a producer.
    pub fn as_producer(self) -> &'static str {
        match self {
            Proto::NatsCore => "`HPUB` (no reply subject) with `async-nats`",
            Proto::JetStream => "`async-nats` JetStream publish, waiting for the PubAck",
            Proto::Mqtt311 => "`rumqttc` v4 PUBLISH at QoS 1, waiting for the PUBACK",
            Proto::Mqtt5 => {
                "`rumqttc` v5 PUBLISH at QoS 1 with user properties, waiting for the PUBACK"
            }
            Proto::Http => {
                "`POST /v1/subjects/{subject}` with `X-Junction-Header-*` headers (reqwest)"
            }
            Proto::WebSocket => {
                "`/v1/ws` `publish` frame (`payload_base64`, `headers`), waiting for `published`"
            }
        }
    }

    /// What it is, as a consumer.
    pub fn as_consumer(self) -> &'static str {
        match self {
            Proto::NatsCore => "`SUB` with a wildcard (live)",
            Proto::JetStream => {
                "durable pull consumer with a wildcard `filter_subject` on the station"
            }
            Proto::Mqtt311 => "`rumqttc` v4 SUBSCRIBE at QoS 1 with `+` or `#` (live)",
            Proto::Mqtt5 => "`rumqttc` v5 SUBSCRIBE at QoS 1 with `+` or `#` (live)",
            Proto::Http => "consumer group with wildcard `filter_subjects`: fetch, nak, ack",
            Proto::WebSocket => {
                "`/v1/ws`: a live `subscribe` and a group `attach` on one socket, nak and ack"
            }
        }
    }
}

/// What every cell checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The payload arrives byte for byte (it holds `0x00` and `0xff`).
    Payload,
    /// The consumer sees the subject, or the MQTT topic, the producer used.
    Subject,
    /// A user header arrives as the consumer protocol's header.
    Headers,
    /// Lineage headers say where the message came from.
    Lineage,
    /// The consumer's wildcard matches.
    Wildcard,
    /// A schema violation is refused with the producer protocol's error and kept
    /// in the dead-letter station.
    DeadLetter,
    /// A NAKed delivery is delivered again.
    Nak,
}

impl Check {
    /// Every check, in the matrix's order.
    pub const ALL: [Check; 7] = [
        Check::Payload,
        Check::Subject,
        Check::Headers,
        Check::Lineage,
        Check::Wildcard,
        Check::DeadLetter,
        Check::Nak,
    ];

    /// Its index in [`Check::ALL`].
    pub fn index(self) -> usize {
        Check::ALL
            .iter()
            .position(|c| *c == self)
            .expect("every check is listed")
    }

    /// A heading.
    pub fn title(self) -> &'static str {
        match self {
            Check::Payload => "Payload bytes",
            Check::Subject => "Subject ↔ topic",
            Check::Headers => "User headers",
            Check::Lineage => "Lineage",
            Check::Wildcard => "Wildcard subscription",
            Check::DeadLetter => "Schema violation → dead-letter station",
            Check::Nak => "Redelivery after a NAK",
        }
    }

    /// What a green cell means.
    pub fn meaning(self) -> &'static str {
        match self {
            Check::Payload => {
                "The consumer gets the producer's payload byte for byte: a binary payload \
                 with a `0x00` and a `0xff` byte (HTTP and WebSocket consumers get it as \
                 `payload_base64`). MQTT consumers also check the delivered QoS: \
                 `min(publish QoS, subscription QoS)` for MQTT publishers, QoS 0 for \
                 everything else (docs/mqtt.md)."
            }
            Check::Subject => {
                "The producer publishes on subject `matrix.<cell>.t.x` (MQTT: topic \
                 `matrix/<cell>/t/x`); NATS, HTTP and WebSocket consumers see the subject, \
                 MQTT consumers the topic."
            }
            Check::Headers => {
                "The producer sends `X-Matrix-Cell: <cell>` (NATS header, MQTT 5 user \
                 property, `X-Junction-Header-X-Matrix-Cell`, WebSocket `headers`) and the \
                 consumer gets exactly that value as its protocol's header (MQTT 5: user \
                 property)."
            }
            Check::Lineage => {
                "Lineage is kept beside the message, not in its headers: no delivery, live \
                 or stored, carries a `Junction-*` header (the forged \
                 `Junction-Origin-Protocol` the producer sent is gone, and the MQTT \
                 front-end's own markers stay with MQTT). The stored copy read over HTTP \
                 with `Junction-Lineage: true` carries `Junction-Origin-Protocol` equal to \
                 the producer's protocol, `Junction-Origin-Subject`, a 32-hex-digit \
                 `Junction-Msg-Id` and a `traceparent`."
            }
            Check::Wildcard => {
                "The consumer subscribes only with its protocol's wildcard, alternating \
                 between one-level (`matrix.<cell>.*.x`, `matrix/<cell>/+/x`) and \
                 multi-level (`matrix.<cell>.>`, `matrix/<cell>/#`) forms from cell to \
                 cell; stored consumers use the same filters as group filter subjects."
            }
            Check::DeadLetter => {
                "The producer publishes a JSON payload that the station's schema refuses \
                 into a station with `dead_letter.schema_violation` on, then a valid one. \
                 The producer gets its protocol's error, named in the cell: none for a NATS \
                 core publish (no reply subject: the message is dropped), a PubAck error \
                 with `err_code` 19001 for JetStream, a plain PUBACK for MQTT 3.1.1 (no \
                 negative acknowledgement: the message is dropped), PUBACK reason code \
                 0x99 for MQTT 5, `422 schema_violation` for HTTP and an error frame with \
                 code `schema_violation` for the WebSocket. The consumer's \
                 first delivery from that station is the valid message (the refused one \
                 was neither stored nor delivered live); the dead-letter station holds the \
                 copy (payload, `Junction-Dls-Reason: schema_violation`, \
                 `Junction-Dls-Subject`, the validation error and the producer's \
                 `Junction-Origin-Protocol`), read by the consumer itself when it reads \
                 stations, otherwise (\"copy via HTTP\") through an HTTP group on the \
                 dead-letter station: a dead letter is stored, not published, so a live \
                 subscription never sees it (docs/dead-letter.md \"It is a normal \
                 station\" lists how to read one)."
            }
            Check::Nak => {
                "The consumer NAKs its delivery and gets the same stored message again \
                 (same payload and `Junction-Msg-Id`) with a delivery count of 2, then \
                 acks it."
            }
        }
    }
}

/// Why a check cannot be made for a cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// MQTT 3.1.1 has no headers.
    Mqtt311NoHeaders,
    /// NATS core subscriptions have no acknowledgements.
    CoreNoAck,
    /// MQTT has no negative acknowledgement.
    MqttNoNak,
}

impl Reason {
    /// Every reason, in footnote order.
    pub const ALL: [Reason; 3] = [
        Reason::Mqtt311NoHeaders,
        Reason::CoreNoAck,
        Reason::MqttNoNak,
    ];

    /// Its footnote number.
    pub fn number(self) -> usize {
        Reason::ALL
            .iter()
            .position(|r| *r == self)
            .expect("every reason is listed")
            + 1
    }

    /// The documented reason.
    pub fn text(self) -> &'static str {
        match self {
            Reason::Mqtt311NoHeaders => {
                "MQTT 3.1.1 has no headers or properties: a 3.1.1 producer cannot send \
                 headers and a 3.1.1 consumer never sees them, lineage included \
                 (docs/mqtt.md \"Lineage headers\", docs/lineage.md \"Per protocol\")."
            }
            Reason::CoreNoAck => {
                "A NATS core subscription is live: nothing is acknowledged, so there is \
                 nothing to NAK. Acks, NAKs and redelivery belong to consumer groups, which \
                 NATS clients reach through JetStream (docs/stations.md \"Consumer \
                 groups\"; docs/nats.md: core subscribers get messages as published)."
            }
            Reason::MqttNoNak => {
                "MQTT has no negative acknowledgement: a QoS 1 delivery is only PUBACKed, \
                 and MQTT subscriptions are live (a persistent session's backlog is \
                 resent only on reconnect), docs/mqtt.md."
            }
        }
    }
}

/// What a cell's check is expected to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Checked; the note says what exactly (may be empty).
    Green(String),
    /// Cannot be checked, for a documented reason.
    NotApplicable(Reason),
}

/// How the consumer of a cell subscribes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wildcard {
    /// `*` / `+`.
    OneLevel,
    /// `>` / `#`.
    MultiLevel,
}

/// The wildcard form a cell's consumer uses: alternating, so that every row and
/// every column uses both.
pub fn wildcard(p: Proto, c: Proto) -> Wildcard {
    let i = Proto::ALL.iter().position(|x| *x == p).unwrap_or(0);
    let j = Proto::ALL.iter().position(|x| *x == c).unwrap_or(0);
    if (i + j) % 2 == 0 {
        Wildcard::OneLevel
    } else {
        Wildcard::MultiLevel
    }
}

/// The error a producer gets for a publish its station's schema refuses
/// (docs/schemas.md "What producers see").
pub fn refusal(p: Proto) -> &'static str {
    match p {
        Proto::NatsCore => "no reply: dropped",
        Proto::JetStream => "PubAck error 19001",
        Proto::Mqtt311 => "PUBACK, dropped",
        Proto::Mqtt5 => "PUBACK 0x99",
        Proto::Http => "422",
        Proto::WebSocket => "error frame",
    }
}

/// The table: what each (producer, consumer, check) is expected to be.
pub fn expect(p: Proto, c: Proto, check: Check) -> Expect {
    use Proto::*;
    let green = |s: &str| Expect::Green(s.to_string());
    match check {
        Check::Payload => match c {
            Mqtt311 | Mqtt5 if p.is_mqtt() => green("QoS 1"),
            Mqtt311 | Mqtt5 => green("QoS 0"),
            _ => green(""),
        },
        Check::Subject => match c {
            Mqtt311 | Mqtt5 => green("topic"),
            _ => green("subject"),
        },
        Check::Headers => {
            if p == Mqtt311 || c == Mqtt311 {
                Expect::NotApplicable(Reason::Mqtt311NoHeaders)
            } else {
                green("")
            }
        }
        Check::Lineage => match c {
            Mqtt311 => Expect::NotApplicable(Reason::Mqtt311NoHeaders),
            _ => green("opt-in"),
        },
        Check::Wildcard => {
            let one = wildcard(p, c) == Wildcard::OneLevel;
            green(match (c.is_mqtt(), one) {
                (true, true) => "`+`",
                (true, false) => "`#`",
                (false, true) => "`*`",
                (false, false) => "`>`",
            })
        }
        Check::DeadLetter => {
            let reader = if c.reads_stored() {
                ""
            } else {
                "; copy via HTTP"
            };
            green(&format!("{}{reader}", refusal(p)))
        }
        Check::Nak => match c {
            NatsCore => Expect::NotApplicable(Reason::CoreNoAck),
            Mqtt311 | Mqtt5 => Expect::NotApplicable(Reason::MqttNoNak),
            JetStream | Http | WebSocket => green(""),
        },
    }
}

/// The outcome of one check of one cell.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Checked, and it held.
    Green,
    /// Not applicable, as the table says (and, where it can be, verified).
    NotApplicable(Reason),
    /// Checked, and it did not hold: why.
    Failed(String),
    /// Not run (the cell stopped before).
    NotRun,
}

/// Renders one 6 × 6 table for `check`; `cell` gives each entry's text.
fn render_table(out: &mut String, check: Check, cell: &dyn Fn(Proto, Proto) -> String) {
    let _ = writeln!(out, "### {}\n", check.title());
    let _ = writeln!(out, "{}\n", check.meaning());
    out.push_str("| producer ↓ · consumer → |");
    for c in Proto::ALL {
        let _ = write!(out, " {} |", c.label());
    }
    out.push_str("\n|---|");
    for _ in Proto::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for p in Proto::ALL {
        let _ = write!(out, "| **{}** |", p.label());
        for c in Proto::ALL {
            let _ = write!(out, " {} |", cell(p, c));
        }
        out.push('\n');
    }
    out.push('\n');
}

fn expected_text(e: &Expect) -> String {
    match e {
        Expect::Green(note) if note.is_empty() => "✅".into(),
        Expect::Green(note) => format!("✅ {note}"),
        Expect::NotApplicable(r) => format!("N/A [{}]", r.number()),
    }
}

/// The Markdown document, from the table definitions alone.
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str(
        "# The cross-protocol matrix\n\n\
         <!-- Generated by conformance/tests/cross_protocol_matrix.rs from its table \
         (cross_protocol_matrix/table.rs); do not edit by hand. Regenerate with\n     \
         MATRIX_WRITE_DOC=1 cargo nextest run -p junction-conformance --test cross_protocol_matrix -->\n\n\
         Every protocol reaches the same engine, so a message published over one can be \
         consumed over any other. `conformance/tests/cross_protocol_matrix.rs` proves it \
         for every pair of producer and consumer with stock clients against one broker, \
         and checks, in each cell, the payload, the subject or topic, user headers, \
         lineage, wildcard subscriptions, the dead-letter station on a schema violation \
         and redelivery after a NAK. Each check of each cell is either green (✅, with \
         what exactly was checked) or not applicable for the documented reason in its \
         footnote. The test fails when any green entry does not hold, and prints the \
         matrix it observed (`--nocapture`).\n\n\
         <!-- doc-test: skip scripts/test runs this test with the rest of the suite -->\n\
         ```sh\n\
         cargo nextest run -p junction-conformance --test cross_protocol_matrix --no-capture\n\
         ```\n\n\
         ## Setup\n\n\
         - Station `MATRIX` captures `matrix.>`. Station `MATRIXS` captures `matrixs.>`, \
         has the JSON schema `matrix_payload` (`{\"type\":\"object\",\"required\":[\"n\"],\
         \"properties\":{\"n\":{\"type\":\"integer\"}}}`) and \
         `\"dead_letter\": {\"schema_violation\": true}`, so its dead-letter station is \
         `$dls_MATRIXS` on `$dls.MATRIXS.>` (docs/dead-letter.md).\n\
         - Each cell has its own subjects, `matrix.<producer>-<consumer>.t.x` and \
         `matrixs.<producer>-<consumer>.t.x` (e.g. `matrix.mq5-http.t.x`), its own \
         clients and its own groups.\n\n\
         | Protocol | As a producer | As a consumer |\n|---|---|---|\n",
    );
    for p in Proto::ALL {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            p.label(),
            p.as_producer(),
            p.as_consumer()
        );
    }
    out.push_str("\n## The matrix\n\n");
    for check in Check::ALL {
        render_table(&mut out, check, &|p, c| expected_text(&expect(p, c, check)));
    }
    out.push_str("## Why a cell is N/A\n\n");
    for r in Reason::ALL {
        let _ = writeln!(out, "{}. {}", r.number(), r.text());
    }
    out
}

/// The observed matrix, for stdout: every check's table with outcomes, then every
/// failure in full.
pub fn report(outcome: &dyn Fn(Proto, Proto, Check) -> Outcome) -> String {
    let mut out = String::from("\n# Cross-protocol matrix (observed)\n\n");
    for check in Check::ALL {
        render_table(&mut out, check, &|p, c| match outcome(p, c, check) {
            Outcome::Green => expected_text(&expect(p, c, check)),
            Outcome::NotApplicable(r) => format!("N/A [{}]", r.number()),
            Outcome::Failed(_) => "❌ FAILED".into(),
            Outcome::NotRun => "❌ not run".into(),
        });
    }
    out.push_str("N/A reasons:\n");
    for r in Reason::ALL {
        let _ = writeln!(out, "{}. {}", r.number(), r.text());
    }
    let mut failures = String::new();
    for p in Proto::ALL {
        for c in Proto::ALL {
            for check in Check::ALL {
                match outcome(p, c, check) {
                    Outcome::Failed(why) => {
                        let _ = writeln!(
                            failures,
                            "- {} → {} / {}: {why}",
                            p.label(),
                            c.label(),
                            check.title()
                        );
                    }
                    Outcome::NotRun => {
                        let _ = writeln!(
                            failures,
                            "- {} → {} / {}: not run",
                            p.label(),
                            c.label(),
                            check.title()
                        );
                    }
                    _ => {}
                }
            }
        }
    }
    if !failures.is_empty() {
        out.push_str("\nFailures:\n");
        out.push_str(&failures);
    }
    out
}
