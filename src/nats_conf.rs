//! nats-server's configuration file format (`-c server.conf`), read into
//! Junction's configuration for the keys Junction supports.
//!
//! The format: `key value`, `key: value` or `key = value`; blocks `name { … }`;
//! arrays `[a, b]`; strings quoted (`"…"`, `'…'`) or bare; numbers with size
//! suffixes as nats-server reads them (`64K` is 64000, `1MB` 1048576); booleans `true`/`false`/`yes`/`no`/`on`/`off`;
//! comments `#` and `//`; variables `$NAME` (a key defined earlier at the top
//! level, or an environment variable); `include path`.
//!
//! Keys Junction does not support are refused with the line that holds them, so
//! a migrated file never silently loses a setting.

use serde_json::{Map, Value, json};
use std::path::Path;

/// A parsed value, with the line it started on.
#[derive(Debug, Clone)]
struct Item {
    value: Conf,
    line: usize,
}

#[derive(Debug, Clone)]
enum Conf {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    List(Vec<Item>),
    Map(Vec<(String, Item)>),
}

struct Parser<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
    file: String,
    vars: Map<String, Value>,
    /// Top-level keys used as variables (not settings of their own).
    used: std::collections::HashSet<String>,
    dir: std::path::PathBuf,
    depth: usize,
}

type Res<T> = Result<T, String>;

impl Parser<'_> {
    fn err<T>(&self, why: impl std::fmt::Display) -> Res<T> {
        Err(format!("{}:{}: {why}", self.file, self.line))
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        if c == b'\n' {
            self.line += 1;
        }
        Some(c)
    }

    /// Skips blanks, newlines (when `newlines`), commas and comments.
    fn skip(&mut self, newlines: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' | b';' => {
                    self.bump();
                }
                b'\n' | b',' if newlines => {
                    self.bump();
                }
                b'#' => self.skip_line(),
                b'/' if self.text.get(self.pos + 1) == Some(&b'/') => self.skip_line(),
                _ => return,
            }
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'\n' {
                return;
            }
            self.bump();
        }
    }

    fn key(&mut self) -> Res<String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.bump();
                self.quoted(q)
            }
            _ => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if c.is_ascii_whitespace() || matches!(c, b'=' | b':' | b'{' | b'[' | b'}') {
                        break;
                    }
                    self.bump();
                }
                if start == self.pos {
                    return self.err("a key was expected");
                }
                Ok(String::from_utf8_lossy(&self.text[start..self.pos]).into_owned())
            }
        }
    }

    fn quoted(&mut self, q: u8) -> Res<String> {
        let mut out = Vec::new();
        loop {
            match self.bump() {
                None => return self.err("a string is not closed"),
                Some(c) if c == q => break,
                Some(b'\\') if q == b'"' => match self.bump() {
                    Some(b'n') => out.push(b'\n'),
                    Some(b't') => out.push(b'\t'),
                    Some(c) => out.push(c),
                    None => return self.err("a string is not closed"),
                },
                Some(c) => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// The entries of a block, up to `}` (or the end of the file at the top).
    fn entries(&mut self, top: bool) -> Res<Vec<(String, Item)>> {
        let mut out = Vec::new();
        loop {
            self.skip(true);
            match self.peek() {
                None if top => return Ok(out),
                None => return self.err("a block is not closed with '}'"),
                Some(b'}') if !top => {
                    self.bump();
                    return Ok(out);
                }
                _ => {}
            }
            let line = self.line;
            let key = self.key()?;
            self.skip(false);
            if key == "include" && !matches!(self.peek(), Some(b'=' | b':' | b'{')) {
                let path = self.bare_or_quoted()?;
                out.extend(self.include(&path)?);
                continue;
            }
            if matches!(self.peek(), Some(b'=' | b':')) {
                self.bump();
                self.skip(false);
            }
            let value = self.value(line)?;
            if top && let Ok(v) = to_json(&value) {
                self.vars.insert(key.clone(), v);
            }
            out.push((key, value));
        }
    }

    fn include(&mut self, path: &str) -> Res<Vec<(String, Item)>> {
        if self.depth > 8 {
            return self.err("includes nest too deep");
        }
        let full = self.dir.join(path);
        let text = match std::fs::read(&full) {
            Ok(t) => t,
            Err(e) => return self.err(format!("include {}: {e}", full.display())),
        };
        let mut p = Parser {
            text: &text,
            pos: 0,
            line: 1,
            file: full.display().to_string(),
            vars: self.vars.clone(),
            used: std::mem::take(&mut self.used),
            dir: full.parent().map(Path::to_path_buf).unwrap_or_default(),
            depth: self.depth + 1,
        };
        let entries = p.entries(true)?;
        self.vars = p.vars;
        self.used = p.used;
        Ok(entries)
    }

    fn bare_or_quoted(&mut self) -> Res<String> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => {
                self.bump();
                self.quoted(q)
            }
            _ => {
                let start = self.pos;
                while let Some(c) = self.peek() {
                    if matches!(c, b'\n' | b',' | b'}' | b']' | b'#' | b';') {
                        break;
                    }
                    self.bump();
                }
                Ok(String::from_utf8_lossy(&self.text[start..self.pos])
                    .trim()
                    .to_string())
            }
        }
    }

    fn value(&mut self, line: usize) -> Res<Item> {
        let item = |value| Ok(Item { value, line });
        match self.peek() {
            Some(b'{') => {
                self.bump();
                item(Conf::Map(self.entries(false)?))
            }
            Some(b'[') => {
                self.bump();
                let mut list = Vec::new();
                loop {
                    self.skip(true);
                    match self.peek() {
                        Some(b']') => {
                            self.bump();
                            return item(Conf::List(list));
                        }
                        None => return self.err("an array is not closed with ']'"),
                        _ => {
                            let l = self.line;
                            list.push(self.value(l)?);
                        }
                    }
                }
            }
            Some(q @ (b'"' | b'\'')) => {
                self.bump();
                let s = self.quoted(q)?;
                item(Conf::Str(s))
            }
            None => self.err("a value was expected"),
            _ => {
                let raw = self.bare_or_quoted()?;
                if let Some(name) = raw.strip_prefix('$') {
                    if self.vars.contains_key(name) {
                        self.used.insert(name.to_string());
                    }
                    return match self
                        .vars
                        .get(name)
                        .cloned()
                        .or_else(|| std::env::var(name).ok().map(Value::String))
                    {
                        Some(v) => item(from_json(&v, line)),
                        None => self.err(format!("variable ${name} is not defined")),
                    };
                }
                item(scalar(&raw))
            }
        }
    }
}

fn scalar(raw: &str) -> Conf {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => return Conf::Bool(true),
        "false" | "no" | "off" => return Conf::Bool(false),
        _ => {}
    }
    if let Ok(n) = raw.parse::<i64>() {
        return Conf::Int(n);
    }
    // Sizes, as nats-server reads them: 1K = 1000, 1KB = 1KiB = 1024, and so on
    // up to E/EB (`crate::byte_size`).
    if raw.starts_with(|c: char| c.is_ascii_digit())
        && let Ok(n) = crate::byte_size::parse(raw)
        && let Ok(n) = i64::try_from(n)
    {
        return Conf::Int(n);
    }
    if let Ok(f) = raw.parse::<f64>() {
        return Conf::Float(f);
    }
    Conf::Str(raw.to_string())
}

fn to_json(item: &Item) -> Res<Value> {
    Ok(match &item.value {
        Conf::Str(s) => Value::String(s.clone()),
        Conf::Int(n) => json!(n),
        Conf::Float(f) => json!(f),
        Conf::Bool(b) => json!(b),
        Conf::List(l) => Value::Array(l.iter().map(to_json).collect::<Res<_>>()?),
        Conf::Map(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                out.insert(k.clone(), to_json(v)?);
            }
            Value::Object(out)
        }
    })
}

fn from_json(v: &Value, line: usize) -> Conf {
    let item = |v: &Value| Item {
        value: from_json(v, line),
        line,
    };
    match v {
        Value::String(s) => Conf::Str(s.clone()),
        Value::Bool(b) => Conf::Bool(*b),
        Value::Number(n) => n
            .as_i64()
            .map(Conf::Int)
            .unwrap_or_else(|| Conf::Float(n.as_f64().unwrap_or(0.0))),
        Value::Array(a) => Conf::List(a.iter().map(item).collect()),
        Value::Object(o) => Conf::Map(o.iter().map(|(k, v)| (k.clone(), item(v))).collect()),
        Value::Null => Conf::Str(String::new()),
    }
}

/// Reads a nats-server configuration file into the settings of Junction's
/// configuration it maps to, as a JSON object of Junction's keys.
pub fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(
        &text,
        &path.display().to_string(),
        path.parent().unwrap_or(Path::new(".")),
    )
}

/// [`read`] on text already read (`file` names it in errors).
pub fn parse(text: &[u8], file: &str, dir: &Path) -> Result<Value, String> {
    let mut p = Parser {
        text,
        pos: 0,
        line: 1,
        file: file.to_string(),
        vars: Map::new(),
        used: std::collections::HashSet::new(),
        dir: dir.to_path_buf(),
        depth: 0,
    };
    let mut entries = p.entries(true)?;
    entries.retain(|(k, _)| !p.used.contains(k));
    Mapper { file }.top(&entries)
}

struct Mapper<'a> {
    file: &'a str,
}

impl Mapper<'_> {
    fn unsupported<T>(&self, key: &str, item: &Item, where_: &str) -> Result<T, String> {
        Err(format!(
            "{}:{}: '{where_}{key}' is not supported by Junction (see docs/security.md, \"From a nats-server configuration\")",
            self.file, item.line
        ))
    }

    fn bad<T>(&self, key: &str, item: &Item, what: &str) -> Result<T, String> {
        Err(format!(
            "{}:{}: '{key}' must be {what}",
            self.file, item.line
        ))
    }

    fn string(&self, key: &str, item: &Item) -> Result<String, String> {
        match &item.value {
            Conf::Str(s) => Ok(s.clone()),
            Conf::Int(n) => Ok(n.to_string()),
            Conf::Float(f) => Ok(f.to_string()),
            _ => self.bad(key, item, "a string"),
        }
    }

    fn int(&self, key: &str, item: &Item) -> Result<i64, String> {
        match &item.value {
            Conf::Int(n) => Ok(*n),
            _ => self.bad(key, item, "a number"),
        }
    }

    fn boolean(&self, key: &str, item: &Item) -> Result<bool, String> {
        match &item.value {
            Conf::Bool(b) => Ok(*b),
            _ => self.bad(key, item, "true or false"),
        }
    }

    /// A duration: a number of seconds, or a string such as "2s" or "1m".
    fn duration(&self, key: &str, item: &Item) -> Result<String, String> {
        match &item.value {
            Conf::Int(n) => Ok(format!("{n}s")),
            Conf::Float(f) => Ok(format!("{}ms", (f * 1000.0) as i64)),
            Conf::Str(s) => Ok(s.clone()),
            _ => self.bad(key, item, "a duration"),
        }
    }

    fn map<'b>(&self, key: &str, item: &'b Item) -> Result<&'b [(String, Item)], String> {
        match &item.value {
            Conf::Map(m) => Ok(m),
            _ => self.bad(key, item, "a block { … }"),
        }
    }

    fn top(&self, entries: &[(String, Item)]) -> Result<Value, String> {
        let mut out = Map::new();
        let mut limits = Map::new();
        let mut auth = Map::new();
        let mut tenants = Vec::new();
        let (mut host, mut port) = (None::<String>, None::<i64>);
        for (key, item) in entries {
            match key.as_str() {
                "listen" => {
                    out.insert("nats_listen".into(), json!(self.string(key, item)?));
                }
                "host" | "net" => host = Some(self.string(key, item)?),
                "port" => port = Some(self.int(key, item)?),
                "server_name" => {
                    out.insert("server_name".into(), json!(self.string(key, item)?));
                }
                "http" | "monitor_listen" => {
                    out.insert("monitor_listen".into(), json!(self.string(key, item)?));
                }
                "http_port" | "monitor_port" => {
                    out.insert(
                        "monitor_listen".into(),
                        json!(format!(":{}", self.int(key, item)?)),
                    );
                }
                "pid_file" => {
                    out.insert("pid_file".into(), json!(self.string(key, item)?));
                }
                "log_file" => {
                    out.insert("log_file".into(), json!(self.string(key, item)?));
                }
                "debug" if self.boolean(key, item)? => {
                    out.insert("log_level".into(), json!("debug"));
                }
                "trace" if self.boolean(key, item)? => {
                    out.insert("log_level".into(), json!("trace"));
                }
                "debug" | "trace" | "logtime" | "logtime_utc" => {}
                "max_payload" => {
                    limits.insert(key.clone(), json!(self.int(key, item)?));
                }
                "max_control_line" | "max_connections" | "max_pending" => {
                    limits.insert(key.clone(), json!(self.int(key, item)?));
                }
                "max_subscriptions" | "max_subs" => {
                    limits.insert("max_subscriptions".into(), json!(self.int(key, item)?));
                }
                "ping_interval" | "write_deadline" => {
                    limits.insert(key.clone(), json!(self.duration(key, item)?));
                }
                "ping_max" => {
                    limits.insert("max_pings_out".into(), json!(self.int(key, item)?));
                }
                "no_auth_user" => {
                    auth.insert("no_auth_user".into(), json!(self.string(key, item)?));
                }
                "system_account" => {
                    out.insert("system_account".into(), json!(self.string(key, item)?));
                }
                "authorization" => self.authorization(item, &mut auth, &mut limits)?,
                "accounts" => {
                    for (name, account) in self.map(key, item)? {
                        tenants.push(self.account(name, account)?);
                    }
                }
                "tls" => {
                    out.insert("tls".into(), self.tls(item)?);
                }
                "jetstream" => match &item.value {
                    Conf::Bool(b) => {
                        out.insert("jetstream".into(), json!(b));
                    }
                    Conf::Str(s) if s == "enabled" => {
                        out.insert("jetstream".into(), json!(true));
                    }
                    Conf::Str(s) if s == "disabled" => {
                        out.insert("jetstream".into(), json!(false));
                    }
                    Conf::Map(m) => {
                        out.insert("jetstream".into(), json!(true));
                        for (k, v) in m {
                            match k.as_str() {
                                "store_dir" | "store" => {
                                    out.insert("data_dir".into(), json!(self.string(k, v)?));
                                }
                                "max_memory_store" | "max_mem" | "max_file_store" | "max_file"
                                | "domain" => {}
                                _ => return self.unsupported(k, v, "jetstream."),
                            }
                        }
                    }
                    _ => return self.bad(key, item, "true, false or a block"),
                },
                "mqtt" => {
                    for (k, v) in self.map(key, item)? {
                        match k.as_str() {
                            "listen" => {
                                out.insert("mqtt_listen".into(), json!(self.string(k, v)?));
                            }
                            "port" => {
                                out.insert(
                                    "mqtt_listen".into(),
                                    json!(format!(":{}", self.int(k, v)?)),
                                );
                            }
                            _ => return self.unsupported(k, v, "mqtt."),
                        }
                    }
                }
                _ => return self.unsupported(key, item, ""),
            }
        }
        if host.is_some() || port.is_some() {
            let port = port.unwrap_or(4222);
            let listen = match &host {
                Some(h) => format!("{h}:{}", if port == -1 { 0 } else { port }),
                None => format!(":{}", if port == -1 { 0 } else { port }),
            };
            out.insert("nats_listen".into(), json!(listen));
        }
        if !limits.is_empty() {
            out.insert("limits".into(), Value::Object(limits));
        }
        if !auth.is_empty() {
            out.insert("auth".into(), Value::Object(auth));
        }
        if !tenants.is_empty() {
            out.insert("tenants".into(), Value::Array(tenants));
        }
        Ok(Value::Object(out))
    }

    fn authorization(
        &self,
        item: &Item,
        auth: &mut Map<String, Value>,
        limits: &mut Map<String, Value>,
    ) -> Result<(), String> {
        for (k, v) in self.map("authorization", item)? {
            match k.as_str() {
                "user" | "username" => {
                    auth.insert("user".into(), json!(self.string(k, v)?));
                }
                "password" | "pass" => {
                    auth.insert("password".into(), json!(self.string(k, v)?));
                }
                "token" => {
                    auth.insert("token".into(), json!(self.string(k, v)?));
                }
                "timeout" => {
                    limits.insert("auth_timeout".into(), json!(self.duration(k, v)?));
                }
                "users" => {
                    auth.insert("users".into(), self.users(k, v)?);
                }
                _ => return self.unsupported(k, v, "authorization."),
            }
        }
        Ok(())
    }

    fn account(&self, name: &str, item: &Item) -> Result<Value, String> {
        let mut t = Map::new();
        t.insert("name".into(), json!(name));
        for (k, v) in self.map(name, item)? {
            match k.as_str() {
                "users" => {
                    t.insert("users".into(), self.users(k, v)?);
                }
                "max_connections" => {
                    t.insert(
                        "limits".into(),
                        json!({ "max_connections": self.int(k, v)? }),
                    );
                }
                "jetstream" => match &v.value {
                    Conf::Map(m) => {
                        let mut js = Map::new();
                        for (jk, jv) in m {
                            match jk.as_str() {
                                "max_streams" | "max_stream" | "streams" => {
                                    js.insert("max_streams".into(), json!(self.int(jk, jv)?));
                                }
                                "max_consumers" | "max_consumer" | "consumers" => {
                                    js.insert("max_consumers".into(), json!(self.int(jk, jv)?));
                                }
                                // nats-server's keys for an account's storage
                                // (`parseJetStreamForAccount`); -1 is no limit.
                                "max_store" | "max_file" | "max_disk" | "store" | "disk" => {
                                    js.insert("max_file".into(), json!(self.int(jk, jv)?));
                                }
                                "max_memory" | "max_mem" | "mem" | "memory" => {
                                    js.insert("max_memory".into(), json!(self.int(jk, jv)?));
                                }
                                _ => {
                                    return self.unsupported(
                                        jk,
                                        jv,
                                        &format!("accounts.{name}.jetstream."),
                                    );
                                }
                            }
                        }
                        t.insert("jetstream".into(), Value::Object(js));
                    }
                    Conf::Bool(_) | Conf::Str(_) => {}
                    _ => return self.bad(k, v, "a block or enabled"),
                },
                "exports" => {
                    let Conf::List(list) = &v.value else {
                        return self.bad(k, v, "a list");
                    };
                    let mut exports = Vec::new();
                    for e in list {
                        let mut stream = None;
                        for (ek, ev) in self.map("exports", e)? {
                            match ek.as_str() {
                                "stream" => stream = Some(self.string(ek, ev)?),
                                _ => {
                                    return self.unsupported(
                                        ek,
                                        ev,
                                        &format!("accounts.{name}.exports[]."),
                                    );
                                }
                            }
                        }
                        exports.push(json!({ "stream": stream.unwrap_or_default() }));
                    }
                    t.insert("exports".into(), Value::Array(exports));
                }
                "imports" => {
                    let Conf::List(list) = &v.value else {
                        return self.bad(k, v, "a list");
                    };
                    let mut imports = Vec::new();
                    for i in list {
                        let mut import = Map::new();
                        for (ik, iv) in self.map("imports", i)? {
                            match ik.as_str() {
                                "stream" => {
                                    let mut source = Map::new();
                                    for (sk, sv) in self.map(ik, iv)? {
                                        match sk.as_str() {
                                            "account" => {
                                                source.insert(
                                                    "tenant".into(),
                                                    json!(self.string(sk, sv)?),
                                                );
                                            }
                                            "subject" => {
                                                source.insert(
                                                    "subject".into(),
                                                    json!(self.string(sk, sv)?),
                                                );
                                            }
                                            _ => {
                                                return self.unsupported(
                                                    sk,
                                                    sv,
                                                    "imports[].stream.",
                                                );
                                            }
                                        }
                                    }
                                    import.insert("stream".into(), Value::Object(source));
                                }
                                "prefix" | "to" => {
                                    import.insert("prefix".into(), json!(self.string(ik, iv)?));
                                }
                                _ => {
                                    return self.unsupported(
                                        ik,
                                        iv,
                                        &format!("accounts.{name}.imports[]."),
                                    );
                                }
                            }
                        }
                        imports.push(Value::Object(import));
                    }
                    t.insert("imports".into(), Value::Array(imports));
                }
                _ => return self.unsupported(k, v, &format!("accounts.{name}.")),
            }
        }
        Ok(Value::Object(t))
    }

    fn users(&self, key: &str, item: &Item) -> Result<Value, String> {
        let Conf::List(list) = &item.value else {
            return self.bad(key, item, "a list of users");
        };
        let mut out = Vec::new();
        for u in list {
            let mut user = Map::new();
            for (k, v) in self.map("users", u)? {
                match k.as_str() {
                    "user" | "username" => {
                        user.insert("user".into(), json!(self.string(k, v)?));
                    }
                    "password" | "pass" => {
                        user.insert("password".into(), json!(self.string(k, v)?));
                    }
                    "nkey" => {
                        user.insert("nkey".into(), json!(self.string(k, v)?));
                    }
                    "permissions" => {
                        user.insert("permissions".into(), self.permissions(v)?);
                    }
                    _ => return self.unsupported(k, v, "users[]."),
                }
            }
            out.push(Value::Object(user));
        }
        Ok(Value::Array(out))
    }

    fn permissions(&self, item: &Item) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in self.map("permissions", item)? {
            match k.as_str() {
                "publish" | "subscribe" | "pub" | "sub" => {
                    let name = if k.starts_with("pub") {
                        "publish"
                    } else {
                        "subscribe"
                    };
                    let value = match &v.value {
                        Conf::Map(m) => {
                            let mut rules = Map::new();
                            for (rk, rv) in m {
                                match rk.as_str() {
                                    "allow" | "deny" => {
                                        rules.insert(rk.clone(), to_json(rv)?);
                                    }
                                    _ => return self.unsupported(rk, rv, "permissions.publish."),
                                }
                            }
                            Value::Object(rules)
                        }
                        _ => to_json(v)?,
                    };
                    out.insert(name.into(), value);
                }
                "allow_responses" => {
                    let value = match &v.value {
                        Conf::Bool(b) => json!(b),
                        Conf::Map(m) => {
                            let mut r = Map::new();
                            for (rk, rv) in m {
                                match rk.as_str() {
                                    "max" => {
                                        r.insert("max".into(), json!(self.int(rk, rv)?));
                                    }
                                    "expires" | "ttl" => {
                                        r.insert("expires".into(), json!(self.duration(rk, rv)?));
                                    }
                                    _ => return self.unsupported(rk, rv, "allow_responses."),
                                }
                            }
                            Value::Object(r)
                        }
                        _ => return self.bad(k, v, "true, false or { max, expires }"),
                    };
                    out.insert("allow_responses".into(), value);
                }
                _ => return self.unsupported(k, v, "permissions."),
            }
        }
        Ok(Value::Object(out))
    }

    fn tls(&self, item: &Item) -> Result<Value, String> {
        let mut out = Map::new();
        for (k, v) in self.map("tls", item)? {
            match k.as_str() {
                "cert_file" | "key_file" | "ca_file" => {
                    out.insert(k.clone(), json!(self.string(k, v)?));
                }
                "verify" | "verify_and_map" => {
                    out.insert(k.clone(), json!(self.boolean(k, v)?));
                }
                "handshake_first" | "first" => {
                    out.insert("handshake_first".into(), json!(self.boolean(k, v)?));
                }
                "timeout" => {
                    out.insert("timeout".into(), json!(self.duration(k, v)?));
                }
                _ => return self.unsupported(k, v, "tls."),
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_common_shapes() {
        let text = br#"
# comment
port: 4333
net = 127.0.0.1
max_payload 1MB
ping_interval: "1m"
authorization {
  users = [
    {user: alice, password: "$2a$11$abc", permissions: {publish: {allow: ["a.>"], deny: "a.b"}, subscribe: ["_INBOX.>"], allow_responses: true}}
    {nkey: UABC}
  ]
  timeout: 2
}
accounts {
  acme { users: [ {user: bob, pass: pw} ], jetstream { max_streams: 1 } }
}
tls { cert_file: "c.pem", key_file: 'k.pem', verify: true, timeout: 2 }
"#;
        let v = parse(text, "t.conf", Path::new(".")).expect("parses");
        assert_eq!(v["nats_listen"], "127.0.0.1:4333");
        assert_eq!(v["limits"]["max_payload"], 1 << 20);
        assert_eq!(v["limits"]["ping_interval"], "1m");
        assert_eq!(v["limits"]["auth_timeout"], "2s");
        assert_eq!(v["auth"]["users"][0]["user"], "alice");
        assert_eq!(
            v["auth"]["users"][0]["permissions"]["publish"]["deny"],
            "a.b"
        );
        assert_eq!(
            v["auth"]["users"][0]["permissions"]["allow_responses"],
            true
        );
        assert_eq!(v["auth"]["users"][1]["nkey"], "UABC");
        assert_eq!(v["tenants"][0]["name"], "acme");
        assert_eq!(v["tenants"][0]["users"][0]["password"], "pw");
        assert_eq!(v["tenants"][0]["jetstream"]["max_streams"], 1);
        assert_eq!(v["tls"]["key_file"], "k.pem");
        assert_eq!(v["tls"]["timeout"], "2s");
    }

    #[test]
    fn the_system_account_holds_the_operators() {
        let v = parse(
            b"system_account: SYS\naccounts {\n  SYS { users = [{user: ops, password: pw}] }\n}\n",
            "s.conf",
            Path::new("."),
        )
        .expect("parses");
        assert_eq!(v["system_account"], "SYS");
        assert_eq!(v["tenants"][0]["name"], "SYS");
        assert_eq!(v["tenants"][0]["users"][0]["user"], "ops");
    }

    #[test]
    fn account_storage_limits_map_to_the_tenants_jetstream_keys() {
        let v = parse(
            b"accounts {\n  a { jetstream { max_file: 10G, max_mem: 1GB, max_streams: 2 } }\n  b { jetstream { max_store: 512K, max_memory: -1, consumers: 4 } }\n  c { jetstream { disk: 1048576, mem: 0 } }\n}\n",
            "j.conf",
            Path::new("."),
        )
        .expect("parses");
        let js = |i: usize| &v["tenants"][i]["jetstream"];
        assert_eq!(js(0)["max_file"], 10_000_000_000_i64);
        assert_eq!(js(0)["max_memory"], 1_i64 << 30);
        assert_eq!(js(0)["max_streams"], 2);
        assert_eq!(js(1)["max_file"], 512_000);
        assert_eq!(js(1)["max_memory"], -1);
        assert_eq!(js(1)["max_consumers"], 4);
        assert_eq!(js(2)["max_file"], 1_048_576);
        assert_eq!(js(2)["max_memory"], 0);
        // As the broker reads it: -1 is no limit, 0 allows no memory station.
        let tenants: Vec<crate::config::TenantConfig> =
            serde_json::from_value(v["tenants"].clone()).expect("tenants");
        assert_eq!(tenants[0].jetstream.max_file, Some(10_000_000_000));
        assert_eq!(tenants[0].jetstream.max_memory, Some(1 << 30));
        assert_eq!(tenants[1].jetstream.max_file, Some(512_000));
        assert_eq!(tenants[1].jetstream.max_memory, None);
        assert_eq!(tenants[2].jetstream.max_memory, Some(0));
        let e = parse(
            b"accounts { a { jetstream { max_file: \"lots\" } } }\n",
            "j.conf",
            Path::new("."),
        )
        .expect_err("a size is a number");
        assert!(e.contains("max_file"), "{e}");
    }

    #[test]
    fn unsupported_keys_name_their_line() {
        let e = parse(
            b"port: 1\nleafnodes { port: 7422 }\n",
            "s.conf",
            Path::new("."),
        )
        .expect_err("refused");
        assert!(
            e.starts_with("s.conf:2: 'leafnodes' is not supported"),
            "{e}"
        );
        let e = parse(
            b"authorization {\n  users = [ {user: a, password: b, foo: 1} ]\n}\n",
            "s.conf",
            Path::new("."),
        )
        .expect_err("refused");
        assert!(e.contains("s.conf:2: 'users[].foo'"), "{e}");
        assert!(parse(b"a { b: 1", "s.conf", Path::new(".")).is_err());
    }

    #[test]
    fn variables() {
        let v = parse(
            b"PW: secret\nauthorization { user: u, password: $PW }\n",
            "v.conf",
            Path::new("."),
        )
        .expect("a variable is not a setting");
        assert_eq!(v["auth"]["password"], "secret");
        let v = parse(
            b"authorization { user: u, password: $JUNCTION_TEST_UNSET_VARIABLE }\n",
            "v.conf",
            Path::new("."),
        );
        assert!(v.is_err());
    }
}
