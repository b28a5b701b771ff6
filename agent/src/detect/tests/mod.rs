//! Cross-module tests of the detection engine: rules in, events through, alerts out.

mod conditions;
mod correlations;
mod loading;
mod modifiers;
mod prefilter;

use serde_json::{json, Value};

use super::{Alert, AlertKind, Detector, JsonEvent, LoadReport, RuleSet};
use std::sync::Arc;

/// A rule set from one file's text; panics (in tests) if it does not load cleanly.
pub(super) fn load(text: &str) -> RuleSet {
    let (set, report) = RuleSet::from_sources([("test.yml", text)]);
    assert!(report.is_ok(), "{:#?}", report.errors);
    set
}

pub(super) fn report_of(name: &str, text: &str) -> LoadReport {
    RuleSet::from_sources([(name, text)]).1
}

/// A process_creation rule around a detection section (indented by four spaces).
pub(super) fn proc_rule(detection: &str) -> String {
    rule("process_creation", detection)
}

pub(super) fn rule(category: &str, detection: &str) -> String {
    format!("title: Test rule\nid: test-rule\nlogsource:\n    product: linux\n    category: {category}\ndetection:\n{detection}\nlevel: high\n")
}

/// An exec event with `fields` merged over the ECS basics.
pub(super) fn exec(fields: Value) -> Value {
    let mut base = json!({
        "@timestamp": "2026-11-21T10:00:00Z",
        "event": {"kind": "event", "category": ["process"], "type": ["start"], "action": "exec"},
        "process": {"pid": 100, "entity_id": "e100", "executable": "/usr/bin/true", "name": "true",
                    "command_line": "true", "working_directory": "/root", "args": ["true"],
                    "user": {"id": "0", "name": "root"},
                    "parent": {"pid": 1, "executable": "/usr/lib/systemd/systemd", "command_line": "/sbin/init"}},
        "host": {"hostname": "h1"}
    });
    merge(&mut base, fields);
    base
}

pub(super) fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

pub(super) fn alerts(set: &Arc<RuleSet>, ev: &Value) -> Vec<Alert> {
    let mut d = Detector::new(Arc::clone(set));
    let mut out = Vec::new();
    d.evaluate(&JsonEvent::new(ev), &mut out);
    out
}

/// Whether the single rule of `set` matches `ev`.
pub(super) fn hit(set: &RuleSet, ev: &Value) -> bool {
    let mut scratch = super::Scratch::new();
    let (mut rules, mut iocs) = (Vec::new(), Vec::new());
    set.match_event(&JsonEvent::new(ev), &mut scratch, &mut rules, &mut iocs);
    !rules.is_empty()
}

/// Whether a process_creation rule with this detection matches an exec with these fields.
pub(super) fn proc_hit(detection: &str, fields: Value) -> bool {
    hit(&load(&proc_rule(detection)), &exec(fields))
}

pub(super) fn rule_alerts(out: &[Alert]) -> Vec<&str> {
    out.iter().filter(|a| a.kind == AlertKind::Rule).map(|a| a.rule.key()).collect()
}

#[test]
fn shared_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<RuleSet>();
    send_sync::<Alert>();
    send::<Detector>();
}
