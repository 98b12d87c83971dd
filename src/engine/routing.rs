//! Content-based routing: rules evaluated on ingress for every publish (from any
//! protocol, except the engine's own), stored in the metadata keyspace.
//!
//! Evaluation order: ascending priority, then name. Every matching `route` rule adds
//! its stations; the first matching `drop` or `resubject` rule decides and ends the
//! evaluation. A tenant without rules pays one atomic load per publish.

use ahash::AHashMap;
use junction_api::{
    EngineError, Message, Predicate, RoutingAction, RoutingRule, Subject, SubjectFilter, TenantId,
    is_system_subject,
};
use junction_storage::Store;
use parking_lot::RwLock;
use serde_json::Value;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

enum Test {
    Equals(Value),
    Exists(bool),
    Glob(String),
    Compare {
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    OneOf(Vec<Value>),
}

enum Target {
    Header(String),
    Field(String),
    Token(usize),
}

struct Condition {
    target: Target,
    test: Test,
}

enum Action {
    Route(Vec<String>),
    Drop,
    Resubject(String),
}

struct Compiled {
    rule: RoutingRule,
    filters: Vec<SubjectFilter>,
    conditions: Vec<Condition>,
    action: Action,
}

/// What the rules decided for one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Stations that also store it.
    pub routes: Vec<String>,
    /// Drop it.
    pub drop: bool,
    /// Publish it on this subject instead.
    pub resubject: Option<Subject>,
    /// The rule that dropped it.
    pub dropped_by: Option<String>,
}

/// Every tenant's rules.
pub(crate) struct RoutingTable {
    store: Store,
    rules: RwLock<AHashMap<TenantId, Arc<Vec<Compiled>>>>,
    any: AtomicBool,
}

fn meta_key(tenant: &TenantId, name: &str) -> String {
    format!("routing/{}/{name}", tenant.0)
}

fn invalid(rule: &str, msg: impl std::fmt::Display) -> EngineError {
    EngineError::invalid_config(format!("routing rule '{rule}': {msg}"))
}

fn compile_condition(rule: &str, p: &Predicate) -> Result<Condition, EngineError> {
    let target = match (&p.header, &p.field, p.token) {
        (Some(h), None, None) => Target::Header(h.clone()),
        (None, Some(f), None) => {
            if !(f.is_empty() || f.starts_with('/')) {
                return Err(invalid(
                    rule,
                    format!("field '{f}' is not a JSON Pointer (it starts with '/')"),
                ));
            }
            Target::Field(f.clone())
        }
        (None, None, Some(t)) => Target::Token(t),
        _ => {
            return Err(invalid(
                rule,
                "each predicate names exactly one of header, field, token",
            ));
        }
    };
    let compare = p.gt.is_some() || p.gte.is_some() || p.lt.is_some() || p.lte.is_some();
    let tests = [
        p.equals.is_some(),
        p.exists.is_some(),
        p.glob.is_some(),
        compare,
        p.one_of.is_some(),
    ];
    if tests.iter().filter(|t| **t).count() != 1 {
        return Err(invalid(
            rule,
            "each predicate has exactly one test: equals, exists, glob, gt/gte/lt/lte, in",
        ));
    }
    let test = if let Some(v) = &p.equals {
        Test::Equals(v.clone())
    } else if let Some(e) = p.exists {
        Test::Exists(e)
    } else if let Some(g) = &p.glob {
        Test::Glob(g.clone())
    } else if compare {
        Test::Compare {
            gt: p.gt,
            gte: p.gte,
            lt: p.lt,
            lte: p.lte,
        }
    } else {
        Test::OneOf(p.one_of.clone().unwrap_or_default())
    };
    let fits = match (&target, &test) {
        (Target::Header(_), Test::Equals(v)) | (Target::Token(_), Test::Equals(v)) => v.is_string(),
        (Target::Header(_), Test::Exists(_) | Test::Glob(_)) => true,
        (Target::Header(_), _) => false,
        (Target::Token(_), Test::Glob(_)) => true,
        (Target::Token(_), Test::OneOf(vs)) => vs.iter().all(Value::is_string),
        (Target::Token(_), _) => false,
        (Target::Field(_), Test::Glob(_)) => false,
        (Target::Field(_), _) => true,
    };
    if !fits {
        return Err(invalid(
            rule,
            "that test does not apply there (headers: equals a string, exists, glob; tokens: equals a string, glob, in strings; fields: equals, exists, gt/gte/lt/lte, in)",
        ));
    }
    Ok(Condition { target, test })
}

/// Checks that a rule compiles, without saving it.
pub(crate) fn check(rule: &RoutingRule) -> Result<(), EngineError> {
    compile(rule.clone()).map(|_| ())
}

fn compile(rule: RoutingRule) -> Result<Compiled, EngineError> {
    let name = rule.name.clone();
    if name.is_empty()
        || name.len() > 128
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(EngineError::invalid_config(
            "routing rule name must be 1 to 128 letters, digits, '-' or '_'",
        ));
    }
    let filters = rule
        .subjects
        .iter()
        .map(|s| {
            let f = SubjectFilter::new(s.clone())
                .map_err(|e| invalid(&name, format!("subject '{s}': {e}")))?;
            if is_system_subject(f.as_bytes()) {
                return Err(invalid(
                    &name,
                    format!(
                        "subject '{s}' is internal ('$…' and '_INBOX.…' subjects are the broker's own; rules never see them)"
                    ),
                ));
            }
            Ok(f)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // `>` (or `*.>`-like filters made only of wildcards) narrows nothing.
    let narrows = filters
        .iter()
        .any(|f| f.tokens().any(|t| t != b"*" && t != b">"));
    if rule.predicates.is_empty() && !narrows && !rule.match_all {
        return Err(invalid(
            &name,
            "a rule without predicates (\"match\") or a narrowing subject filter would apply to every message; add a predicate, or set \"match_all\": true to mean it",
        ));
    }
    let conditions = rule
        .predicates
        .iter()
        .map(|p| compile_condition(&name, p))
        .collect::<Result<Vec<_>, _>>()?;
    let RoutingAction {
        route,
        drop,
        resubject,
    } = &rule.action;
    if route.iter().flatten().any(|s| s.starts_with('$')) {
        return Err(invalid(
            &name,
            "a rule cannot route into the broker's internal ('$…') stations",
        ));
    }
    let action = match (route, drop, resubject) {
        (Some(stations), None, None) if !stations.is_empty() => Action::Route(stations.clone()),
        (None, Some(true), None) => Action::Drop,
        (None, None, Some(t)) if !t.is_empty() => {
            if is_system_subject(t.as_bytes()) {
                return Err(invalid(
                    &name,
                    format!("resubject '{t}' is an internal subject ('$…', '_INBOX.…')"),
                ));
            }
            Action::Resubject(t.clone())
        }

        _ => {
            return Err(invalid(
                &name,
                "the action is exactly one of {\"route\": [stations]}, {\"drop\": true}, {\"resubject\": \"subject\"}",
            ));
        }
    };
    Ok(Compiled {
        rule,
        filters,
        conditions,
        action,
    })
}

/// `*` matches any run of characters, `?` one character.
pub(crate) fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn json_equal(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// The message being evaluated, with its payload parsed at most once.
struct Subjectish<'a> {
    message: &'a Message,
    tokens: Vec<&'a str>,
    json: Option<Option<Value>>,
}

impl Subjectish<'_> {
    fn json(&mut self) -> Option<&Value> {
        if self.json.is_none() {
            self.json = Some(serde_json::from_slice(&self.message.payload).ok());
        }
        self.json.as_ref().and_then(Option::as_ref)
    }
}

impl Condition {
    fn holds(&self, m: &mut Subjectish) -> bool {
        match &self.target {
            Target::Header(name) => {
                let value = m.message.headers.as_ref().and_then(|h| h.get(name));
                match (&self.test, value) {
                    (Test::Exists(e), v) => v.is_some() == *e,
                    (Test::Equals(want), Some(v)) => want.as_str() == Some(v),
                    (Test::Glob(g), Some(v)) => glob_matches(g, v),
                    _ => false,
                }
            }
            Target::Token(i) => {
                let Some(tok) = m.tokens.get(*i).copied() else {
                    return false;
                };
                match &self.test {
                    Test::Equals(want) => want.as_str() == Some(tok),
                    Test::Glob(g) => glob_matches(g, tok),
                    Test::OneOf(vs) => vs.iter().any(|v| v.as_str() == Some(tok)),
                    _ => false,
                }
            }
            Target::Field(pointer) => {
                let value = m.json().and_then(|doc| doc.pointer(pointer));
                match (&self.test, value) {
                    (Test::Exists(e), v) => v.is_some() == *e,
                    (Test::Equals(want), Some(v)) => json_equal(want, v),
                    (Test::OneOf(vs), Some(v)) => vs.iter().any(|w| json_equal(w, v)),
                    (Test::Compare { gt, gte, lt, lte }, Some(v)) => {
                        let Some(x) = v.as_f64() else { return false };
                        gt.is_none_or(|b| x > b)
                            && gte.is_none_or(|b| x >= b)
                            && lt.is_none_or(|b| x < b)
                            && lte.is_none_or(|b| x <= b)
                    }
                    _ => false,
                }
            }
        }
    }
}

fn render(template: &str, subject: &str, tokens: &[&str]) -> String {
    let mut out = template.replace("{subject}", subject);
    for (i, t) in tokens.iter().enumerate().rev() {
        out = out.replace(&format!("{{{i}}}"), t);
    }
    out
}

impl RoutingTable {
    /// Loads every stored rule.
    pub fn load(store: Store) -> Result<Self, EngineError> {
        let mut rules: AHashMap<TenantId, Vec<Compiled>> = AHashMap::new();
        for (key, value) in store
            .list_meta("routing/")
            .map_err(|e| EngineError::Storage(e.to_string()))?
        {
            let Some(tenant) = key
                .strip_prefix("routing/")
                .and_then(|rest| rest.rsplit_once('/'))
                .map(|(t, _)| TenantId(Arc::from(t)))
            else {
                continue;
            };
            let rule: RoutingRule = serde_json::from_slice(&value)
                .map_err(|e| EngineError::Storage(format!("unreadable routing rule {key}: {e}")))?;
            // A rule stored by an older version may break today's checks (a rule
            // with no predicate now needs `match_all`): it keeps working as it was
            // meant, or is left out with a warning, never stopping the broker.
            let compiled = compile(rule.clone()).or_else(|e| {
                let mut lenient = rule.clone();
                lenient.match_all = true;
                lenient
                    .subjects
                    .retain(|s| !is_system_subject(s.as_bytes()));
                compile(lenient).map_err(|_| e)
            });
            match compiled {
                Ok(c) => rules.entry(tenant).or_default().push(c),
                Err(e) => tracing::warn!(rule = %key, error = %e, "stored routing rule ignored"),
            }
        }
        let any = !rules.is_empty();
        let rules = rules
            .into_iter()
            .map(|(t, mut v)| {
                sort(&mut v);
                (t, Arc::new(v))
            })
            .collect();
        Ok(RoutingTable {
            store,
            rules: RwLock::new(rules),
            any: AtomicBool::new(any),
        })
    }

    /// Creates or replaces a rule.
    pub fn put(&self, tenant: &TenantId, rule: RoutingRule) -> Result<RoutingRule, EngineError> {
        let compiled = compile(rule.clone())?;
        let json = serde_json::to_vec(&rule).map_err(|e| EngineError::Storage(e.to_string()))?;
        let mut all = self.rules.write();
        self.store
            .put_meta(&meta_key(tenant, &rule.name), &json)
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let mut list: Vec<Compiled> = Vec::new();
        if let Some(old) = all.get(tenant) {
            for c in old.iter().filter(|c| c.rule.name != rule.name) {
                list.push(compile(c.rule.clone())?);
            }
        }
        list.push(compiled);
        sort(&mut list);
        all.insert(tenant.clone(), Arc::new(list));
        self.any.store(true, Ordering::Release);
        tracing::info!(rule = %rule.name, "routing rule saved");
        Ok(rule)
    }

    /// Deletes a rule.
    pub fn delete(&self, tenant: &TenantId, name: &str) -> Result<(), EngineError> {
        let mut all = self.rules.write();
        let Some(old) = all.get(tenant) else {
            return Err(EngineError::RoutingRuleNotFound);
        };
        if !old.iter().any(|c| c.rule.name == name) {
            return Err(EngineError::RoutingRuleNotFound);
        }
        self.store
            .remove_meta(&meta_key(tenant, name))
            .map_err(|e| EngineError::Storage(e.to_string()))?;
        let mut list = Vec::new();
        for c in old.iter().filter(|c| c.rule.name != name) {
            list.push(compile(c.rule.clone())?);
        }
        if list.is_empty() {
            all.remove(tenant);
        } else {
            all.insert(tenant.clone(), Arc::new(list));
        }
        self.any.store(!all.is_empty(), Ordering::Release);
        Ok(())
    }

    /// A tenant's rules, in evaluation order.
    pub fn list(&self, tenant: &TenantId) -> Vec<RoutingRule> {
        self.rules
            .read()
            .get(tenant)
            .map(|l| l.iter().map(|c| c.rule.clone()).collect())
            .unwrap_or_default()
    }

    /// The rules' decision for `message`; `None` when no rule matched.
    pub fn evaluate(&self, tenant: &TenantId, message: &Message) -> Option<Decision> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        // Internal subjects (the JetStream API, acks, MQTT state, inboxes, …) are
        // out of the rules' reach: a rule can never stop the broker's own traffic.
        if is_system_subject(message.subject.as_bytes()) {
            return None;
        }
        let rules = self.rules.read().get(tenant).cloned()?;
        let subject = message.subject.to_str_lossy();
        let mut m = Subjectish {
            message,
            tokens: subject.split('.').collect(),
            json: None,
        };
        let mut decision = Decision::default();
        let mut matched = false;
        for c in rules.iter() {
            if !c.filters.is_empty() && !c.filters.iter().any(|f| f.matches(&message.subject)) {
                continue;
            }
            if !c.conditions.iter().all(|cond| cond.holds(&mut m)) {
                continue;
            }
            matched = true;
            match &c.action {
                Action::Route(stations) => {
                    for s in stations {
                        if !decision.routes.contains(s) {
                            decision.routes.push(s.clone());
                        }
                    }
                }
                Action::Drop => {
                    decision.drop = true;
                    decision.dropped_by = Some(c.rule.name.clone());
                    break;
                }
                Action::Resubject(template) => {
                    let rendered = render(template, &subject, &m.tokens);
                    match Subject::new(rendered.clone()) {
                        Ok(s) if is_system_subject(s.as_bytes()) => {
                            tracing::warn!(rule = %c.rule.name, subject = rendered, "routing rule made an internal subject; message left as is")
                        }
                        Ok(s) => decision.resubject = Some(s),
                        Err(e) => {
                            tracing::warn!(rule = %c.rule.name, subject = rendered, error = %e, "routing rule made an invalid subject; message left as is")
                        }
                    }
                    break;
                }
            }
        }
        matched.then_some(decision)
    }
}

fn sort(list: &mut [Compiled]) {
    list.sort_by(|a, b| (a.rule.priority, &a.rule.name).cmp(&(b.rule.priority, &b.rule.name)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_matches("eu-*", "eu-west"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a?c", "abc"));
        assert!(!glob_matches("a?c", "ac"));
        assert!(glob_matches("*west*", "eu-west-1"));
        assert!(!glob_matches("eu-*", "us-east"));
    }

    #[test]
    fn refuses_malformed_rules() {
        let rule = |p: Predicate, a: RoutingAction| RoutingRule {
            name: "r".into(),
            priority: 0,
            subjects: vec![],
            predicates: vec![p],
            match_all: false,
            action: a,
        };
        let drop = RoutingAction {
            drop: Some(true),
            ..Default::default()
        };
        // No target.
        assert!(compile(rule(Predicate::default(), drop.clone())).is_err());
        // Two tests.
        let p = Predicate {
            header: Some("h".into()),
            exists: Some(true),
            glob: Some("*".into()),
            ..Default::default()
        };
        assert!(compile(rule(p, drop.clone())).is_err());
        // A comparison on a header.
        let p = Predicate {
            header: Some("h".into()),
            gt: Some(1.0),
            ..Default::default()
        };
        assert!(compile(rule(p, drop)).is_err());
        // Two actions.
        let p = Predicate {
            token: Some(0),
            equals: Some(Value::from("a")),
            ..Default::default()
        };
        let both = RoutingAction {
            drop: Some(true),
            resubject: Some("x".into()),
            ..Default::default()
        };
        assert!(compile(rule(p, both)).is_err());
    }

    #[test]
    fn a_rule_for_every_message_needs_match_all() {
        let drop = RoutingAction {
            drop: Some(true),
            ..Default::default()
        };
        let mut rule = RoutingRule {
            name: "x".into(),
            priority: 0,
            subjects: vec![],
            predicates: vec![],
            match_all: false,
            action: drop,
        };
        assert!(compile(rule.clone()).is_err());
        rule.subjects = vec![">".into()];
        assert!(compile(rule.clone()).is_err());
        rule.subjects = vec!["orders.>".into()];
        assert!(compile(rule.clone()).is_ok());
        rule.subjects = vec![];
        rule.match_all = true;
        assert!(compile(rule.clone()).is_ok());
        rule.subjects = vec!["$JS.API.>".into()];
        assert!(compile(rule.clone()).is_err());
        rule.subjects = vec![];
        rule.action = RoutingAction {
            resubject: Some("_INBOX.x".into()),
            ..Default::default()
        };
        assert!(compile(rule.clone()).is_err());
        rule.action = RoutingAction {
            route: Some(vec!["$MQTT_sess".into()]),
            ..Default::default()
        };
        assert!(compile(rule).is_err());
    }

    #[test]
    fn renders_templates() {
        assert_eq!(
            render("big.{subject}", "orders.eu", &["orders", "eu"]),
            "big.orders.eu"
        );
        assert_eq!(render("{1}.{0}", "a.b", &["a", "b"]), "b.a");
    }
}
