//! Per-sink filters ("only alerts to the pager, everything to the SIEM") and the few facts about
//! an event they look at: `event.kind`, `event.category`, `event.action`, `event.severity`.
//!
//! Filters run on the pipeline's hot task, before an event is queued, so a sink that wants only
//! alerts never fills its queue with anything else. The facts are read off the typed document the
//! sinks print (never off printed JSON), so a filter always sees what the sink would write.

use serde::{Deserialize, Deserializer, Serialize};

use crate::{
    decode::Record,
    event::{Event, EventBody},
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
            && (self.categories.is_empty() || self.categories.iter().any(|w| w == f.category))
            && (self.actions.is_empty() || self.actions.iter().any(|a| *a == f.action))
    }
}

/// The `event.*` fields filters and syslog headers use, as the typed ECS document has them
/// ([`Ecs::facts`], [`Ecs::encode`]): one category each, every name fixed at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Facts {
    pub kind: &'static str,
    pub category: &'static str,
    pub action: &'static str,
    pub severity: Option<i64>,
}

impl Facts {
    const fn fixed(category: &'static str, action: &'static str) -> Self {
        Self { kind: "event", category, action, severity: None }
    }

    /// The facts of the event types whose ECS metadata is fixed, without building the document.
    /// `None` for anything else (alerts carry a severity, other records their own category).
    pub fn known(ev: &Event) -> Option<Self> {
        match &ev.body {
            EventBody::Record(Record::Exec(_)) => Some(Self::fixed("process", "exec")),
            EventBody::Record(Record::Fork(_)) => Some(Self::fixed("process", "fork")),
            EventBody::Record(Record::Exit(_)) => Some(Self::fixed("process", "exit")),
            EventBody::Loss(_) => Some(Self::fixed("host", "events_lost")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{decode, raw},
        event::Ecs,
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
    fn known_facts_agree_with_the_document() {
        let ecs = ecs();
        for ev in events() {
            let known = Facts::known(&ev).expect("a known event type");
            let mut buf = Vec::new();
            assert_eq!(known, ecs.encode(&ev, &mut buf).unwrap());
            let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
            assert_eq!(
                (v["event"]["kind"].as_str(), v["event"]["category"][0].as_str(), v["event"]["action"].as_str()),
                (Some(known.kind), Some(known.category), Some(known.action))
            );
        }
    }

    #[test]
    fn the_facts_of_other_events_are_what_their_json_says() {
        let ecs = ecs();
        let file = raw::file(7, 1_000, agent_common::osprey_file_op::OSPREY_FILE_RENAME, "/tmp/a", Some("/tmp/b"));
        let ev = Event { wall_ns: 1, body: EventBody::Record(decode(&file).unwrap()), ctx: None };
        assert_eq!(Facts::known(&ev), None);
        let mut buf = Vec::new();
        let f = ecs.encode(&ev, &mut buf).unwrap();
        assert_eq!(f, ecs.facts(&ev));
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!((f.kind, f.category, f.action, f.severity), ("event", "file", v["event"]["action"].as_str().unwrap(), None));
    }

    fn facts(kind: &'static str, category: &'static str, action: &'static str, severity: Option<i64>) -> Facts {
        Facts { kind, category, action, severity }
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
