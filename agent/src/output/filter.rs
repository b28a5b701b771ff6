//! Per-sink filters ("only alerts to the pager, everything to the SIEM") and the few facts about
//! an event they look at: `event.kind`, `event.category`, `event.action`, `event.severity`.
//!
//! Filters run on the pipeline's hot task, before an event is queued, so a sink that wants only
//! alerts never fills its queue with anything else. The facts of the event types the sensor emits
//! today are known without serialising; any other event (alerts, new record types) is serialised
//! once and its `event` object read back, so a filter always sees what the sink would write.

use std::borrow::Cow;

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    decode::Record,
    event::{Ecs, Event, EventBody},
};

/// ECS `event.kind` values.
pub const KINDS: &[&str] = &["alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"];

/// Severity names and the `event.severity` they stand for (Elastic's risk-score convention).
pub const SEVERITY_NAMES: &[(&str, i64)] =
    &[("informational", 0), ("low", 21), ("medium", 47), ("high", 73), ("critical", 99)];

/// An `event.severity` threshold, written as a name from [`SEVERITY_NAMES`] or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Severity(pub i64);

impl Severity {
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase();
        let name = if name == "info" { "informational" } else { name.as_str() };
        SEVERITY_NAMES.iter().find(|(n, _)| *n == name).map(|(_, v)| Self(*v))
    }
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match SEVERITY_NAMES.iter().find(|(_, v)| *v == self.0) {
            Some((name, _)) => s.serialize_str(name),
            None => s.serialize_i64(self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => Self::from_name(&s).ok_or_else(|| {
                let names: Vec<&str> = SEVERITY_NAMES.iter().map(|(n, _)| *n).collect();
                serde::de::Error::custom(format!("unknown severity `{s}`: use a number or one of {}", names.join(", ")))
            }),
        }
    }
}

/// What a sink lets through. Every condition that is set must hold; an empty filter passes all.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// `event.kind` values to pass, e.g. `[alert]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// Pass only events whose `event.severity` is at least this (events without one fail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// `event.category` values; an event passes when any of its categories is listed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// `event.action` values, e.g. `[exec, exit]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty() && self.min_severity.is_none() && self.categories.is_empty() && self.actions.is_empty()
    }

    pub fn validate(&self) -> Result<(), String> {
        if let Some(k) = self.kinds.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return Err(format!("filter.kinds: `{k}` is not an ECS event.kind (one of {})", KINDS.join(", ")));
        }
        if self.categories.iter().chain(&self.actions).any(|s| s.trim().is_empty()) {
            return Err("filter: empty category or action".into());
        }
        Ok(())
    }

    pub fn matches(&self, f: &Facts) -> bool {
        (self.kinds.is_empty() || self.kinds.iter().any(|k| *k == f.kind))
            && self.min_severity.is_none_or(|min| f.severity.is_some_and(|s| s >= min.0))
            && (self.categories.is_empty() || f.categories.iter().any(|c| self.categories.iter().any(|w| w == c)))
            && (self.actions.is_empty() || self.actions.iter().any(|a| *a == f.action))
    }
}

type Str = Cow<'static, str>;

/// The `event.*` fields filters and syslog headers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: Str,
    pub categories: Cow<'static, [Str]>,
    pub action: Str,
    pub severity: Option<i64>,
}

const PROCESS: &[Str] = &[Cow::Borrowed("process")];
const HOST: &[Str] = &[Cow::Borrowed("host")];

impl Facts {
    const fn fixed(categories: &'static [Str], action: &'static str) -> Self {
        Self { kind: Cow::Borrowed("event"), categories: Cow::Borrowed(categories), action: Cow::Borrowed(action), severity: None }
    }

    /// The facts of the event types whose ECS metadata is fixed, without serialising. `None` for
    /// anything else (alerts carry a severity and rule, new record types their own category).
    pub fn known(ev: &Event) -> Option<Self> {
        #[allow(unreachable_patterns)] // new event and record types take the JSON path
        match &ev.body {
            EventBody::Record(Record::Exec(_)) => Some(Self::fixed(PROCESS, "exec")),
            EventBody::Record(Record::Fork(_)) => Some(Self::fixed(PROCESS, "fork")),
            EventBody::Record(Record::Exit(_)) => Some(Self::fixed(PROCESS, "exit")),
            EventBody::Loss(_) => Some(Self::fixed(HOST, "events_lost")),
            _ => None,
        }
    }

    /// The facts of any event: [`Facts::known`], else read from its ECS JSON (written into
    /// `scratch`).
    pub fn of(ev: &Event, ecs: &Ecs, scratch: &mut Vec<u8>) -> Self {
        if let Some(f) = Self::known(ev) {
            return f;
        }
        scratch.clear();
        match ecs.write(ev, scratch) {
            Ok(()) => Self::from_json(scratch),
            Err(_) => Self::unknown(),
        }
    }

    fn unknown() -> Self {
        Self { kind: Cow::Borrowed("event"), categories: Cow::Borrowed(&[]), action: Cow::Borrowed(""), severity: None }
    }

    /// Reads `event.{kind,category,action,severity}` from an ECS document.
    pub fn from_json(doc: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Doc<'a> {
            #[serde(borrow, default)]
            event: Option<Meta<'a>>,
        }
        #[derive(Deserialize)]
        struct Meta<'a> {
            #[serde(borrow, default)]
            kind: Option<Cow<'a, str>>,
            #[serde(borrow, default)]
            category: Option<OneOrMany<'a>>,
            #[serde(borrow, default)]
            action: Option<Cow<'a, str>>,
            #[serde(default)]
            severity: Option<serde_json::Value>,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany<'a> {
            One(#[serde(borrow)] Cow<'a, str>),
            Many(#[serde(borrow)] Vec<Cow<'a, str>>),
        }
        let Ok(Doc { event: Some(m) }) = serde_json::from_slice::<Doc>(doc) else {
            return Self::unknown();
        };
        let own = |c: Cow<'_, str>| -> Str { Cow::Owned(c.into_owned()) };
        let categories: Vec<Str> = match m.category {
            Some(OneOrMany::One(c)) => vec![own(c)],
            Some(OneOrMany::Many(v)) => v.into_iter().map(own).collect(),
            None => Vec::new(),
        };
        let severity = match m.severity {
            Some(serde_json::Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            Some(serde_json::Value::String(s)) => Severity::from_name(&s).map(|s| s.0).or_else(|| s.parse().ok()),
            _ => None,
        };
        Self {
            kind: m.kind.map_or(Cow::Borrowed("event"), own),
            categories: Cow::Owned(categories),
            action: m.action.map_or(Cow::Borrowed(""), own),
            severity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{decode, raw},
        process::Host,
    };
    use agent_common::RecordType;

    fn ecs() -> Ecs {
        Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000)
    }

    fn events() -> Vec<Event> {
        let recs = [
            raw::exec(7, 1_000, "/usr/bin/echo", &["echo", "hi"], "/tmp"),
            raw::fork(7, 8, 2_000),
            raw::exit(8, 0, 3_000),
        ];
        let mut evs: Vec<Event> =
            recs.iter().map(|r| Event { wall_ns: 1, body: EventBody::Record(decode(r).unwrap()), ctx: None }).collect();
        evs.push(Event { wall_ns: 1, body: EventBody::Loss(vec![(RecordType::ALL[0], 3)]), ctx: None });
        evs
    }

    #[test]
    fn known_facts_agree_with_the_json() {
        let ecs = ecs();
        for ev in events() {
            let known = Facts::known(&ev).expect("a known event type");
            let mut buf = Vec::new();
            ecs.write(&ev, &mut buf).unwrap();
            assert_eq!(known, Facts::from_json(&buf), "{}", String::from_utf8_lossy(&buf));
        }
    }

    #[test]
    fn reads_alert_facts_from_json() {
        let f = Facts::from_json(
            br#"{"@timestamp":"x","event":{"kind":"alert","category":["process","intrusion_detection"],"action":"exec","severity":73},"rule":{"name":"r"}}"#,
        );
        assert_eq!(f.kind, "alert");
        assert_eq!(f.categories.len(), 2);
        assert_eq!(f.severity, Some(73));
        let f = Facts::from_json(br#"{"event":{"kind":"alert","category":"file","severity":"critical"}}"#);
        assert_eq!((f.categories[0].as_ref(), f.severity), ("file", Some(99)));
        let f = Facts::from_json(b"not json");
        assert_eq!((f.kind.as_ref(), f.severity), ("event", None));
    }

    fn facts(kind: &'static str, cat: &'static str, action: &'static str, sev: Option<i64>) -> Facts {
        Facts {
            kind: kind.into(),
            categories: Cow::Owned(vec![cat.into()]),
            action: action.into(),
            severity: sev,
        }
    }

    #[test]
    fn filters() {
        let yaml = "kinds: [alert]\nmin_severity: high\n";
        let pager: Filter = serde_yaml_ng::from_str(yaml).unwrap();
        assert!(pager.matches(&facts("alert", "process", "exec", Some(73))));
        assert!(pager.matches(&facts("alert", "process", "exec", Some(99))));
        assert!(!pager.matches(&facts("alert", "process", "exec", Some(47))));
        assert!(!pager.matches(&facts("alert", "process", "exec", None)), "no severity fails min_severity");
        assert!(!pager.matches(&facts("event", "process", "exec", Some(99))));

        let f: Filter = serde_yaml_ng::from_str("categories: [file, network]\nactions: [exec, connect]\n").unwrap();
        assert!(!f.matches(&facts("event", "process", "exec", None)));
        assert!(f.matches(&facts("event", "network", "connect", None)));
        assert!(!f.matches(&facts("event", "network", "accept", None)));

        assert!(Filter::default().matches(&facts("event", "x", "y", None)));
        assert!(Filter::default().is_empty());

        let f: Filter = serde_yaml_ng::from_str("min_severity: 50\n").unwrap();
        assert_eq!(f.min_severity, Some(Severity(50)));
        let err = serde_yaml_ng::from_str::<Filter>("min_severity: urgent\n").unwrap_err().to_string();
        assert!(err.contains("unknown severity `urgent`"), "{err}");
        let err = serde_yaml_ng::from_str::<Filter>("kind: [alert]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `kind`"), "{err}");
        let f: Filter = serde_yaml_ng::from_str("kinds: [alarm]\n").unwrap();
        assert!(f.validate().unwrap_err().contains("alarm"));
        // Names round-trip as names, other numbers as numbers.
        assert_eq!(serde_yaml_ng::to_string(&pager).unwrap(), "kinds:\n- alert\nmin_severity: high\n");
    }
}
