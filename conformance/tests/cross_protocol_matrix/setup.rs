//! The one broker every cell uses, its stations and schema, and where a cell
//! publishes and subscribes.

use crate::http_support::Api;
use crate::table::Wildcard;
use junction_conformance::{TestBroker, mqtt_broker};
use serde_json::json;

/// The station of the plain messages.
pub const PLAIN_STATION: &str = "MATRIX";
/// The station with a schema and a dead-letter policy for schema violations.
pub const SCHEMA_STATION: &str = "MATRIXS";
/// Its dead-letter station (docs/dead-letter.md "Naming").
pub const DEAD_LETTER_STATION: &str = "$dls_MATRIXS";
/// The schema of [`SCHEMA_STATION`].
pub const SCHEMA: &str = "matrix_payload";

/// The shared broker and an HTTP client for administration.
pub struct Matrix {
    /// The broker (NATS, MQTT and HTTP listeners on loopback).
    pub broker: TestBroker,
    /// Admin and HTTP-protocol client.
    pub api: Api,
}

impl Matrix {
    /// Starts the broker and creates the schema and both stations.
    pub async fn start() -> Matrix {
        let broker = mqtt_broker().await;
        let api = Api::new(&broker);
        api.post(
            "/v1/schemas",
            &json!({"name": SCHEMA, "type": "json", "definition": {
                "type": "object",
                "required": ["n"],
                "properties": {"n": {"type": "integer"}}
            }}),
        )
        .await
        .expect(201);
        api.station(PLAIN_STATION, &["matrix.>"]).await;
        let created = api
            .post(
                "/v1/stations",
                &json!({"name": SCHEMA_STATION, "subjects": ["matrixs.>"], "schema": SCHEMA,
                        "dead_letter": {"schema_violation": true}}),
            )
            .await
            .expect(201);
        assert_eq!(created["dead_letter_station"], DEAD_LETTER_STATION);
        Matrix { broker, api }
    }
}

/// Which station a cell's consumer reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// [`PLAIN_STATION`].
    Plain,
    /// [`SCHEMA_STATION`].
    Schema,
    /// [`DEAD_LETTER_STATION`].
    DeadLetter,
}

/// Where a cell publishes and subscribes for one target.
#[derive(Clone, Debug)]
pub struct Place {
    /// Which station.
    pub target: Target,
    /// The station's name.
    pub station: &'static str,
    /// The subject the producer publishes on (for the dead-letter station: where
    /// the copy is stored).
    pub subject: String,
    /// The consumer's NATS filter (wildcard).
    pub filter: String,
    /// A group name unique to the cell and target.
    pub group: String,
}

impl Place {
    /// The place of `cell` in `target`, subscribed with `form`.
    pub fn new(target: Target, cell: &str, form: Wildcard) -> Place {
        let (station, base, tag) = match target {
            Target::Plain => (PLAIN_STATION, format!("matrix.{cell}"), "plain"),
            Target::Schema => (SCHEMA_STATION, format!("matrixs.{cell}"), "schema"),
            Target::DeadLetter => (
                DEAD_LETTER_STATION,
                format!("$dls.{SCHEMA_STATION}.matrixs.{cell}"),
                "dls",
            ),
        };
        let filter = match form {
            Wildcard::OneLevel => format!("{base}.*.x"),
            Wildcard::MultiLevel => format!("{base}.>"),
        };
        Place {
            target,
            station,
            subject: format!("{base}.t.x"),
            filter,
            group: format!("{cell}-{tag}"),
        }
    }

    /// The MQTT topic of [`Place::subject`].
    pub fn topic(&self) -> String {
        to_mqtt(&self.subject)
    }

    /// The MQTT filter of [`Place::filter`].
    pub fn mqtt_filter(&self) -> String {
        to_mqtt(&self.filter)
    }
}

/// A NATS subject or filter of plain tokens as MQTT (docs/mqtt.md "Topic ↔
/// subject mapping"): `.` → `/`, `*` → `+`, `>` → `#`.
pub fn to_mqtt(subject: &str) -> String {
    subject
        .split('.')
        .map(|t| match t {
            "*" => "+",
            ">" => "#",
            t => t,
        })
        .collect::<Vec<_>>()
        .join("/")
}
