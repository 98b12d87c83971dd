//! Content-based routing rules: predicates on headers, JSON payload fields and
//! subject tokens, and what to do with a message that matches (store it in more
//! stations, drop it, or publish it on another subject).
//!
//! The JSON shape of these types is the admin API's (docs/routing.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A named rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    /// Name: 1 to 128 letters, digits, `-` or `_`.
    pub name: String,
    /// Rules run in ascending priority (then by name).
    #[serde(default)]
    pub priority: i32,
    /// Subject filters the rule looks at (`*`, `>`); empty means every subject.
    /// Internal subjects (`$…`, `_INBOX.…`) are never looked at.
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Every predicate must hold.
    #[serde(default, rename = "match")]
    pub predicates: Vec<Predicate>,
    /// A rule with no predicate and no narrowing subject filter would apply to every
    /// message of the tenant; it is refused unless this says so explicitly.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub match_all: bool,
    /// What to do with a matching message.
    pub action: RoutingAction,
}

/// One condition. Exactly one of `header`, `field` and `token` says what is
/// tested; exactly one test goes with it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicate {
    /// A header's first value (name matched ignoring case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A JSON Pointer into the payload (`/order/amount`); a payload that is not JSON
    /// has no fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A subject token by position, 0 for the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<usize>,
    /// Equal to this (a string for headers and tokens; any JSON value for fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    /// Present (true) or absent (false): headers and fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    /// Matches a glob: `*` any run of characters, `?` one (headers and tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub glob: Option<String>,
    /// Greater than (fields holding numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    /// Greater than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    /// Less than.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
    /// Less than or equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    /// Equal to one of these (fields: JSON values; tokens: strings).
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
}

/// What a matching rule does. Exactly one field is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingAction {
    /// Also store the message in these stations (whatever subjects they capture).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<String>>,
    /// Drop the message: not stored, not delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop: Option<bool>,
    /// Publish it on this subject instead; `{subject}` stands for the original
    /// subject and `{0}`, `{1}`, … for its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubject: Option<String>,
}
