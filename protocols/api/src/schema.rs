//! Broker-side schemas: named documents with numbered versions, attached to
//! stations so that every publish into them is validated by the engine.

use std::time::SystemTime;

/// The language a schema is written in. Another format (Protobuf, Avro) is one more
/// variant here and one more validator in the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SchemaFormat {
    /// JSON Schema (drafts 4, 6, 7, 2019-09 and 2020-12; the document's `$schema`
    /// picks the draft, 2020-12 when absent).
    #[default]
    Json,
}

impl SchemaFormat {
    /// The name used in the API (`"json"`).
    pub fn as_str(self) -> &'static str {
        match self {
            SchemaFormat::Json => "json",
        }
    }

    /// The format named `name` (`"json"`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "json" | "json-schema" | "jsonschema" => Some(SchemaFormat::Json),
            _ => None,
        }
    }
}

/// One version of a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVersion {
    /// 1, 2, 3, …; never reused.
    pub version: u32,
    /// The schema document, as JSON text.
    pub definition: String,
    /// When it was added.
    pub created: SystemTime,
}

/// A schema: its versions and which one stations use by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaInfo {
    /// Name: letters, digits, `-` and `_`.
    pub name: String,
    /// What language the versions are written in.
    pub format: SchemaFormat,
    /// The version stations without a pinned `schema_version` validate against.
    /// New versions become active when added; a rollback makes an older one active.
    pub active_version: u32,
    /// Every version, oldest first.
    pub versions: Vec<SchemaVersion>,
    /// When the schema was created.
    pub created: SystemTime,
    /// Stations that use it, sorted.
    pub stations: Vec<String>,
}
