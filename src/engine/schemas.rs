//! The schema registry: named, versioned JSON Schemas, stored in the metadata
//! keyspace, with every version's compiled validator kept in memory.
//!
//! Invariants:
//! - A version is compiled when it is added (or loaded); a definition that does not
//!   compile is refused, so validation never meets a broken schema.
//! - Version numbers start at 1 and are never reused; versions are never deleted,
//!   only the whole schema is, and only when no station uses it.
//! - Validation takes a read lock and clones one `Arc`: it never compiles.

use ahash::AHashMap;
use junction_api::{EngineError, SchemaFormat, SchemaInfo, SchemaVersion, TenantId};
use junction_storage::Store;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Serialize, Deserialize)]
struct StoredVersion {
    version: u32,
    definition: String,
    created_ns: u64,
}

#[derive(Serialize, Deserialize)]
struct StoredSchema {
    tenant: String,
    name: String,
    format: String,
    active: u32,
    created_ns: u64,
    versions: Vec<StoredVersion>,
}

struct Entry {
    stored: StoredSchema,
    format: SchemaFormat,
    compiled: AHashMap<u32, Arc<jsonschema::Validator>>,
}

/// Every schema, by tenant and name.
pub(crate) struct SchemaRegistry {
    store: Store,
    schemas: RwLock<AHashMap<(TenantId, String), Entry>>,
}

fn meta_key(tenant: &TenantId, name: &str) -> String {
    format!("schema/{}/{name}", tenant.0)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn storage(e: impl std::fmt::Display) -> EngineError {
    EngineError::Storage(e.to_string())
}

fn validate_name(name: &str) -> Result<(), EngineError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(EngineError::invalid_config(
            "schema name must be 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

/// Compiles a definition of `format`.
fn compile(
    format: SchemaFormat,
    definition: &str,
) -> Result<Arc<jsonschema::Validator>, EngineError> {
    match format {
        SchemaFormat::Json => {
            let doc: serde_json::Value = serde_json::from_str(definition).map_err(|e| {
                EngineError::invalid_config(format!("schema definition is not JSON: {e}"))
            })?;
            jsonschema::validator_for(&doc)
                .map(Arc::new)
                .map_err(|e| EngineError::invalid_config(format!("invalid JSON Schema: {e}")))
        }
        _ => Err(EngineError::invalid_config(format!(
            "unsupported schema type '{}'",
            format.as_str()
        ))),
    }
}

impl Entry {
    fn info(&self, stations: Vec<String>) -> SchemaInfo {
        let s = &self.stored;
        SchemaInfo {
            name: s.name.clone(),
            format: self.format,
            active_version: s.active,
            versions: s
                .versions
                .iter()
                .map(|v| SchemaVersion {
                    version: v.version,
                    definition: v.definition.clone(),
                    created: UNIX_EPOCH + Duration::from_nanos(v.created_ns),
                })
                .collect(),
            created: UNIX_EPOCH + Duration::from_nanos(s.created_ns),
            stations,
        }
    }
}

impl SchemaRegistry {
    /// Loads every schema in `store` and compiles every version.
    pub fn load(store: Store) -> Result<Self, EngineError> {
        let mut schemas = AHashMap::new();
        for (key, value) in store.list_meta("schema/").map_err(storage)? {
            let stored: StoredSchema = serde_json::from_slice(&value)
                .map_err(|e| EngineError::Storage(format!("unreadable schema {key}: {e}")))?;
            let format = SchemaFormat::parse(&stored.format).ok_or_else(|| {
                EngineError::Storage(format!("schema {key}: unknown type {}", stored.format))
            })?;
            let mut compiled = AHashMap::new();
            for v in &stored.versions {
                match compile(format, &v.definition) {
                    Ok(c) => {
                        compiled.insert(v.version, c);
                    }
                    // It compiled when it was added; a newer validator may be
                    // stricter. Publishes against it are refused, not accepted.
                    Err(e) => {
                        tracing::error!(schema = %stored.name, version = v.version, error = %e, "schema version no longer compiles")
                    }
                }
            }
            let tenant = TenantId(Arc::from(stored.tenant.as_str()));
            schemas.insert(
                (tenant, stored.name.clone()),
                Entry {
                    stored,
                    format,
                    compiled,
                },
            );
        }
        Ok(SchemaRegistry {
            store,
            schemas: RwLock::new(schemas),
        })
    }

    fn persist(&self, tenant: &TenantId, stored: &StoredSchema) -> Result<(), EngineError> {
        let json = serde_json::to_vec(stored).map_err(storage)?;
        self.store
            .put_meta(&meta_key(tenant, &stored.name), &json)
            .map_err(storage)
    }

    pub fn create(
        &self,
        tenant: &TenantId,
        name: &str,
        format: SchemaFormat,
        definition: &str,
    ) -> Result<SchemaInfo, EngineError> {
        validate_name(name)?;
        let validator = compile(format, definition)?;
        let mut schemas = self.schemas.write();
        let key = (tenant.clone(), name.to_string());
        if schemas.contains_key(&key) {
            return Err(EngineError::SchemaExists);
        }
        let now = now_ns();
        let stored = StoredSchema {
            tenant: tenant.0.to_string(),
            name: name.to_string(),
            format: format.as_str().to_string(),
            active: 1,
            created_ns: now,
            versions: vec![StoredVersion {
                version: 1,
                definition: definition.to_string(),
                created_ns: now,
            }],
        };
        self.persist(tenant, &stored)?;
        let entry = Entry {
            stored,
            format,
            compiled: [(1, validator)].into_iter().collect(),
        };
        let info = entry.info(Vec::new());
        schemas.insert(key, entry);
        tracing::info!(schema = name, "schema created");
        Ok(info)
    }

    pub fn add_version(
        &self,
        tenant: &TenantId,
        name: &str,
        definition: &str,
        stations: Vec<String>,
    ) -> Result<SchemaInfo, EngineError> {
        let mut schemas = self.schemas.write();
        let entry = schemas
            .get_mut(&(tenant.clone(), name.to_string()))
            .ok_or(EngineError::SchemaNotFound)?;
        let validator = compile(entry.format, definition)?;
        let version = entry
            .stored
            .versions
            .iter()
            .map(|v| v.version)
            .max()
            .unwrap_or(0)
            + 1;
        entry.stored.versions.push(StoredVersion {
            version,
            definition: definition.to_string(),
            created_ns: now_ns(),
        });
        let previous = entry.stored.active;
        entry.stored.active = version;
        if let Err(e) = self.persist(tenant, &entry.stored) {
            entry.stored.versions.pop();
            entry.stored.active = previous;
            return Err(e);
        }
        entry.compiled.insert(version, validator);
        tracing::info!(schema = name, version, "schema version added");
        Ok(entry.info(stations))
    }

    pub fn activate(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
        stations: Vec<String>,
    ) -> Result<SchemaInfo, EngineError> {
        let mut schemas = self.schemas.write();
        let entry = schemas
            .get_mut(&(tenant.clone(), name.to_string()))
            .ok_or(EngineError::SchemaNotFound)?;
        if !entry.stored.versions.iter().any(|v| v.version == version) {
            return Err(EngineError::SchemaNotFound);
        }
        let previous = entry.stored.active;
        entry.stored.active = version;
        if let Err(e) = self.persist(tenant, &entry.stored) {
            entry.stored.active = previous;
            return Err(e);
        }
        tracing::info!(schema = name, version, "schema version activated");
        Ok(entry.info(stations))
    }

    pub fn info(
        &self,
        tenant: &TenantId,
        name: &str,
        stations: Vec<String>,
    ) -> Result<SchemaInfo, EngineError> {
        self.schemas
            .read()
            .get(&(tenant.clone(), name.to_string()))
            .map(|e| e.info(stations))
            .ok_or(EngineError::SchemaNotFound)
    }

    /// Every schema name of `tenant`, sorted.
    pub fn names(&self, tenant: &TenantId) -> Vec<String> {
        let mut names: Vec<String> = self
            .schemas
            .read()
            .keys()
            .filter(|(t, _)| t == tenant)
            .map(|(_, n)| n.clone())
            .collect();
        names.sort();
        names
    }

    /// Does `name` exist, with `version` when given?
    pub fn check(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<(), EngineError> {
        let schemas = self.schemas.read();
        let entry = schemas
            .get(&(tenant.clone(), name.to_string()))
            .ok_or_else(|| EngineError::invalid_config(format!("schema '{name}' not found")))?;
        if let Some(v) = version
            && !entry.stored.versions.iter().any(|s| s.version == v)
        {
            return Err(EngineError::invalid_config(format!(
                "schema '{name}' has no version {v}"
            )));
        }
        Ok(())
    }

    pub fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), EngineError> {
        let mut schemas = self.schemas.write();
        let key = (tenant.clone(), name.to_string());
        if !schemas.contains_key(&key) {
            return Err(EngineError::SchemaNotFound);
        }
        self.store
            .remove_meta(&meta_key(tenant, name))
            .map_err(storage)?;
        schemas.remove(&key);
        tracing::info!(schema = name, "schema deleted");
        Ok(())
    }

    /// The validator for `name` (at `version`, or the active one) and that version.
    pub fn validator(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Option<(u32, Arc<jsonschema::Validator>)> {
        let schemas = self.schemas.read();
        let entry = schemas.get(&(tenant.clone(), name.to_string()))?;
        let v = version.unwrap_or(entry.stored.active);
        entry.compiled.get(&v).map(|c| (v, c.clone()))
    }
}

/// How validation errors name the document's root (whose JSON pointer is empty).
const ROOT: &str = "(root)";

/// Validates a payload: `Ok(())` or the errors, each `"<pointer>: <message>"`.
pub(crate) fn validate_payload(
    validator: &jsonschema::Validator,
    payload: &[u8],
) -> Result<(), Vec<String>> {
    let doc: serde_json::Value = match serde_json::from_slice(payload) {
        Ok(doc) => doc,
        Err(e) => return Err(vec![format!("{ROOT}: payload is not valid JSON: {e}")]),
    };
    if validator.is_valid(&doc) {
        return Ok(());
    }
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .take(junction_api::SchemaViolation::MAX_ERRORS)
        .map(|e| {
            let path = e.instance_path().as_str();
            format!("{}: {e}", if path.is_empty() { ROOT } else { path })
        })
        .collect();
    Err(errors)
}

/// Definitions as the cluster's meta group keeps them (`meta.rs`): a schema is its
/// stored form, as JSON, planned on every node from the same inputs.
impl SchemaRegistry {
    /// The stored form of a schema, as JSON.
    pub(crate) fn stored_json(&self, tenant: &TenantId, name: &str) -> Option<serde_json::Value> {
        self.schemas
            .read()
            .get(&(tenant.clone(), name.to_string()))
            .and_then(|e| serde_json::to_value(&e.stored).ok())
    }

    /// Puts a schema in the stored form `value` (from the meta group), replacing
    /// what this node has.
    pub(crate) fn install_json(&self, value: &serde_json::Value) -> Result<(), EngineError> {
        let stored: StoredSchema = serde_json::from_value(value.clone()).map_err(storage)?;
        let format = SchemaFormat::parse(&stored.format).ok_or_else(|| {
            EngineError::invalid_config(format!("unknown schema type {}", stored.format))
        })?;
        let compiled = stored
            .versions
            .iter()
            .map(|v| Ok((v.version, compile(format, &v.definition)?)))
            .collect::<Result<AHashMap<_, _>, EngineError>>()?;
        let tenant = TenantId(Arc::from(stored.tenant.as_str()));
        let mut schemas = self.schemas.write();
        self.persist(&tenant, &stored)?;
        let key = (tenant, stored.name.clone());
        schemas.insert(
            key,
            Entry {
                stored,
                format,
                compiled,
            },
        );
        Ok(())
    }

    /// Checks a new schema's name and definition without creating it.
    pub(crate) fn check_new(
        name: &str,
        format: SchemaFormat,
        definition: &str,
    ) -> Result<(), EngineError> {
        validate_name(name)?;
        compile(format, definition).map(|_| ())
    }

    /// Checks a definition against an existing schema's format.
    pub(crate) fn check_version(
        &self,
        tenant: &TenantId,
        name: &str,
        definition: &str,
    ) -> Result<(), EngineError> {
        let format = self
            .schemas
            .read()
            .get(&(tenant.clone(), name.to_string()))
            .map(|e| e.format)
            .ok_or(EngineError::SchemaNotFound)?;
        compile(format, definition).map(|_| ())
    }
}

/// A new schema's stored form (planned by the meta group).
pub(crate) fn plan_create(
    tenant: &str,
    name: &str,
    format: &str,
    definition: &str,
    now_ns: u64,
) -> serde_json::Value {
    serde_json::to_value(StoredSchema {
        tenant: tenant.to_string(),
        name: name.to_string(),
        format: format.to_string(),
        active: 1,
        created_ns: now_ns,
        versions: vec![StoredVersion {
            version: 1,
            definition: definition.to_string(),
            created_ns: now_ns,
        }],
    })
    .unwrap_or_default()
}

/// A schema's stored form with one more version, made active.
pub(crate) fn plan_add_version(
    current: &serde_json::Value,
    definition: &str,
    now_ns: u64,
) -> Result<serde_json::Value, String> {
    let mut stored: StoredSchema =
        serde_json::from_value(current.clone()).map_err(|e| e.to_string())?;
    let version = stored.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
    stored.versions.push(StoredVersion {
        version,
        definition: definition.to_string(),
        created_ns: now_ns,
    });
    stored.active = version;
    serde_json::to_value(stored).map_err(|e| e.to_string())
}

/// A schema's stored form with `version` active.
pub(crate) fn plan_activate(
    current: &serde_json::Value,
    version: u32,
) -> Result<serde_json::Value, String> {
    let mut stored: StoredSchema =
        serde_json::from_value(current.clone()).map_err(|e| e.to_string())?;
    if !stored.versions.iter().any(|v| v.version == version) {
        return Err("schema version not found".to_string());
    }
    stored.active = version;
    serde_json::to_value(stored).map_err(|e| e.to_string())
}

/// The current time in nanoseconds, for plans made on the proposing node.
pub(crate) fn now() -> u64 {
    now_ns()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_pointer_and_reason() {
        let v = compile(
            SchemaFormat::Json,
            r#"{"type":"object","required":["id"],"properties":{"id":{"type":"integer"}}}"#,
        )
        .unwrap();
        assert!(validate_payload(&v, br#"{"id":7}"#).is_ok());
        let errors = validate_payload(&v, br#"{"id":"x"}"#).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("/id: "), "{errors:?}");
        let errors = validate_payload(&v, b"not json").unwrap_err();
        assert!(
            errors[0].starts_with("(root): payload is not valid JSON"),
            "{errors:?}"
        );
        let errors = validate_payload(&v, b"{}").unwrap_err();
        assert_eq!(errors, ["(root): \"id\" is a required property"]);
    }

    #[test]
    fn refuses_broken_definitions() {
        assert!(compile(SchemaFormat::Json, "{").is_err());
        assert!(compile(SchemaFormat::Json, r#"{"type":"no-such-type"}"#).is_err());
    }
}
