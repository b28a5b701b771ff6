//! [`JsonEvent`]: an ECS JSON document (`serde_json::Value`) as an event rules can evaluate.

use std::borrow::Cow;

use serde_json::Value;

use super::fields::{Category, EventFields, Field, FieldId, FieldValue, Scalar};

/// An ECS JSON document as an event. Both nested objects (`{"process": {"pid": 1}}`) and dotted
/// keys (`{"process.pid": 1}`) are understood; a path through an array of objects yields every
/// element's value.
#[derive(Debug, Clone)]
pub struct JsonEvent<'a> {
    doc: &'a Value,
    category: Option<Category>,
    timestamp_ns: Option<u64>,
}

impl<'a> JsonEvent<'a> {
    pub fn new(doc: &'a Value) -> Self {
        let strs = |v: Option<&'a Value>| -> Vec<&'a str> {
            match v {
                Some(Value::String(s)) => vec![s.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            }
        };
        let [cat, typ, act, ts] = classification_fields();
        let categories = strs(lookup_raw(doc, cat));
        let types = strs(lookup_raw(doc, typ));
        let action = lookup_raw(doc, act).and_then(Value::as_str).unwrap_or("");
        let category = Category::from_ecs(&categories, &types, action);
        let timestamp_ns = match lookup_raw(doc, ts) {
            Some(Value::String(s)) => humantime::parse_rfc3339_weak(s)
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| u64::try_from(d.as_nanos()).ok()),
            // Numbers are epoch milliseconds, as Elasticsearch's `epoch_millis`.
            Some(Value::Number(n)) => n.as_u64().map(|ms| ms.saturating_mul(1_000_000)),
            _ => None,
        };
        Self { doc, category, timestamp_ns }
    }

    /// Overrides the classification (for events whose `event.*` fields are incomplete).
    pub fn with_category(mut self, category: Option<Category>) -> Self {
        self.category = category;
        self
    }

    pub fn doc(&self) -> &'a Value {
        self.doc
    }
}

/// The fields [`JsonEvent::new`] reads, compiled once.
fn classification_fields() -> &'static [Field; 4] {
    static FIELDS: std::sync::OnceLock<[Field; 4]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        ["event.category", "event.type", "event.action", "@timestamp"].map(|n| Field::new(FieldId(0), n))
    })
}

fn lookup_raw<'a>(doc: &'a Value, field: &Field) -> Option<&'a Value> {
    match json_get(doc, field) {
        Walk::Found(v) => Some(v),
        _ => None,
    }
}

enum Walk<'a> {
    Missing,
    Found(&'a Value),
    /// The path crosses an array at segment index `.1` of the field.
    Array(&'a Value, usize),
}

fn json_get<'a>(root: &'a Value, field: &Field) -> Walk<'a> {
    let n = field.segments();
    let mut cur = root;
    let mut i = 0;
    while i < n {
        match cur {
            Value::Object(m) => {
                // The plain segment first, then ever longer dotted keys ("process.pid" flat).
                let mut next = None;
                for j in i..n {
                    if let Some(v) = m.get(field.key(i, j)) {
                        next = Some((v, j + 1));
                        break;
                    }
                }
                match next {
                    Some((v, j)) => {
                        cur = v;
                        i = j;
                    }
                    None => return Walk::Missing,
                }
            }
            Value::Array(_) => return Walk::Array(cur, i),
            _ => return Walk::Missing,
        }
    }
    Walk::Found(cur)
}

fn scalar_of(v: &Value) -> Option<Scalar<'_>> {
    match v {
        Value::String(s) => Some(Scalar::Str(Cow::Borrowed(s))),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Scalar::Int(i))
            } else if let Some(u) = n.as_u64() {
                Some(Scalar::UInt(u))
            } else {
                n.as_f64().map(Scalar::Float)
            }
        }
        _ => None,
    }
}

fn value_of(v: &Value) -> FieldValue<'_> {
    match v {
        Value::Null => FieldValue::Null,
        Value::Array(items) => FieldValue::Many(items.iter().filter_map(scalar_of).collect()),
        Value::Object(_) => FieldValue::Other,
        _ => scalar_of(v).map_or(FieldValue::Other, FieldValue::One),
    }
}

/// Collects the values under the remaining path of every element of an array.
fn fan_out<'a>(v: &'a Value, field: &Field, from: usize, out: &mut Vec<Scalar<'a>>, depth: usize) {
    if depth > 16 {
        return;
    }
    match v {
        Value::Array(items) => items.iter().for_each(|e| fan_out(e, field, from, out, depth + 1)),
        Value::Object(m) => {
            if from >= field.segments() {
                return;
            }
            for j in from..field.segments() {
                if let Some(x) = m.get(field.key(from, j)) {
                    if j + 1 == field.segments() {
                        match x {
                            Value::Array(a) => out.extend(a.iter().filter_map(scalar_of)),
                            _ => out.extend(scalar_of(x)),
                        }
                    } else {
                        fan_out(x, field, j + 1, out, depth + 1);
                    }
                    return;
                }
            }
        }
        _ => {}
    }
}

/// The value of `field` in an ECS JSON document (what [`JsonEvent`] answers).
pub fn field_of<'a>(doc: &'a Value, field: &Field) -> FieldValue<'a> {
    match json_get(doc, field) {
        Walk::Missing => FieldValue::Missing,
        Walk::Found(v) => value_of(v),
        Walk::Array(v, from) => {
            let mut out = Vec::new();
            fan_out(v, field, from, &mut out, 0);
            if out.is_empty() {
                FieldValue::Missing
            } else {
                FieldValue::Many(out)
            }
        }
    }
}

/// Calls `f` on every string in an ECS JSON document until it returns true.
pub fn any_string_of(doc: &Value, f: &mut dyn FnMut(&str) -> bool) -> bool {
    any_string_in(doc, f, 0)
}

fn any_string_in(v: &Value, f: &mut dyn FnMut(&str) -> bool, depth: usize) -> bool {
    match v {
        Value::String(s) => f(s),
        Value::Array(a) if depth < 32 => a.iter().any(|x| any_string_in(x, f, depth + 1)),
        Value::Object(m) if depth < 32 => m.values().any(|x| any_string_in(x, f, depth + 1)),
        _ => false,
    }
}

impl EventFields for JsonEvent<'_> {
    fn category(&self) -> Option<Category> {
        self.category
    }

    fn timestamp_ns(&self) -> Option<u64> {
        self.timestamp_ns
    }

    fn get(&self, field: &Field) -> FieldValue<'_> {
        field_of(self.doc, field)
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        any_string_of(self.doc, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(doc: &Value, name: &str) -> FieldValue<'static> {
        let ev = JsonEvent::new(doc);
        match ev.get(&Field::new(FieldId(0), name)) {
            FieldValue::One(Scalar::Str(s)) => FieldValue::One(Scalar::Str(Cow::Owned(s.into_owned()))),
            FieldValue::One(Scalar::Int(i)) => FieldValue::One(Scalar::Int(i)),
            FieldValue::Many(v) => {
                FieldValue::Many(v.into_iter().map(|s| Scalar::Str(Cow::Owned(s.to_text()))).collect())
            }
            FieldValue::Missing => FieldValue::Missing,
            FieldValue::Null => FieldValue::Null,
            other => panic!("{other:?}"),
        }
    }

    fn s(v: &str) -> FieldValue<'static> {
        FieldValue::One(Scalar::Str(Cow::Owned(v.into())))
    }

    #[test]
    fn nested_flat_and_arrays() {
        let doc = json!({
            "process": {"pid": 7, "executable": "/bin/sh", "args": ["sh", "-c"], "parent": {"pid": 1}},
            "file.path": "/etc/passwd",
            "dns": {"answers": [{"data": "1.2.3.4"}, {"data": "5.6.7.8"}]},
            "x": null,
        });
        assert_eq!(get(&doc, "process.pid"), FieldValue::One(Scalar::Int(7)));
        assert_eq!(get(&doc, "process.executable"), s("/bin/sh"));
        assert_eq!(get(&doc, "process.parent.pid"), FieldValue::One(Scalar::Int(1)));
        assert_eq!(get(&doc, "file.path"), s("/etc/passwd"));
        assert_eq!(get(&doc, "process.missing"), FieldValue::Missing);
        assert_eq!(get(&doc, "x"), FieldValue::Null);
        assert_eq!(
            get(&doc, "process.args"),
            FieldValue::Many(vec![Scalar::Str("sh".into()), Scalar::Str("-c".into())])
        );
        assert_eq!(
            get(&doc, "dns.answers.data"),
            FieldValue::Many(vec![Scalar::Str("1.2.3.4".into()), Scalar::Str("5.6.7.8".into())])
        );
    }

    #[test]
    fn classification() {
        let c = |doc: Value| JsonEvent::new(&doc).category();
        assert_eq!(
            c(json!({"event": {"category": ["process"], "type": ["start"], "action": "exec"}})),
            Some(Category::ProcessCreation)
        );
        assert_eq!(c(json!({"event": {"category": ["process"], "type": ["start"], "action": "fork"}})), None);
        assert_eq!(
            c(json!({"event": {"category": ["process"], "type": ["end"], "action": "exit"}})),
            Some(Category::ProcessTermination)
        );
        assert_eq!(c(json!({"event": {"category": "file", "type": "creation"}})), Some(Category::FileEvent));
        assert_eq!(c(json!({"event": {"category": "file", "type": "deletion"}})), Some(Category::FileDelete));
        assert_eq!(
            c(json!({"event": {"category": "file", "type": "change", "action": "rename"}})),
            Some(Category::FileRename)
        );
        assert_eq!(
            c(json!({"event": {"category": "network", "type": "connection"}})),
            Some(Category::NetworkConnection)
        );
        assert_eq!(
            c(json!({"event": {"category": "network", "type": "protocol", "action": "dns_query"}})),
            Some(Category::DnsQuery)
        );
        assert_eq!(
            c(json!({"event": {"category": "process", "type": "change", "action": "setuid"}})),
            Some(Category::PrivilegeChange)
        );
        assert_eq!(c(json!({"event": {"category": "driver", "type": "start"}})), Some(Category::ModuleLoad));
        // The encodings Osprey's own events use.
        for (cat, typ, action, want) in [
            ("file", "creation", "creation", Category::FileEvent),
            ("file", "access", "open_write", Category::FileEvent),
            ("file", "change", "modification", Category::FileChange),
            ("file", "change", "chmod", Category::FileChange),
            ("file", "access", "read", Category::FileAccess),
            ("file", "deletion", "rmdir", Category::FileDelete),
            ("file", "change", "rename", Category::FileRename),
            ("process", "change", "setresuid", Category::PrivilegeChange),
            ("process", "change", "unexpected_root", Category::PrivilegeChange),
            ("driver", "start", "module_load", Category::ModuleLoad),
            ("process", "info", "bpf_prog_load", Category::Bpf),
            ("process", "access", "ptrace", Category::Ptrace),
            ("process", "creation", "memfd_create", Category::MemoryExec),
            ("process", "change", "mprotect_exec", Category::MemoryExec),
            ("configuration", "change", "mount", Category::Namespace),
            ("process", "change", "unshare", Category::Namespace),
        ] {
            assert_eq!(
                c(json!({"event": {"category": [cat], "type": [typ], "action": action}})),
                Some(want),
                "{action}"
            );
        }
        assert_eq!(c(json!({"event": {"category": ["process"], "type": ["info"], "action": "signal"}})), None);
        assert_eq!(c(json!({"event.category": "process", "event.type": "start"})), Some(Category::ProcessCreation));
    }

    #[test]
    fn timestamp() {
        let doc = json!({"@timestamp": "2023-11-14T22:13:20.000001000Z"});
        assert_eq!(JsonEvent::new(&doc).timestamp_ns(), Some(1_700_000_000_000_001_000));
        let doc = json!({"@timestamp": 1_700_000_000_000u64});
        assert_eq!(JsonEvent::new(&doc).timestamp_ns(), Some(1_700_000_000_000_000_000));
    }
}
