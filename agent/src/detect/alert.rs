//! What a match produces: the rule's identity and metadata, ECS severity, ATT&CK threat fields and
//! the response actions to take. Serialisation into the output stream is the pipeline's job.

use std::sync::Arc;

use super::sigma::{Level, RuleMeta};

/// An ATT&CK tactic (ECS `threat.tactic.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tactic {
    pub id: &'static str,
    pub name: &'static str,
}

impl Tactic {
    pub fn reference(&self) -> String {
        format!("https://attack.mitre.org/tactics/{}/", self.id)
    }
}

/// An ATT&CK technique (ECS `threat.technique.*`), with its sub-technique if the tag named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Technique {
    /// `T1059`.
    pub id: String,
    /// `T1059.004`.
    pub subtechnique: Option<String>,
}

impl Technique {
    pub fn reference(&self) -> String {
        match &self.subtechnique {
            Some(s) => format!("https://attack.mitre.org/techniques/{}/", s.replace('.', "/")),
            None => format!("https://attack.mitre.org/techniques/{}/", self.id),
        }
    }
}

/// ECS `threat.*` from a rule's `attack.*` tags.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Threat {
    pub tactics: Vec<Tactic>,
    pub techniques: Vec<Technique>,
}

impl Threat {
    pub fn framework(&self) -> &'static str {
        "MITRE ATT&CK"
    }

    pub fn is_empty(&self) -> bool {
        self.tactics.is_empty() && self.techniques.is_empty()
    }
}

const TACTICS: &[(&str, &str, &str)] = &[
    ("reconnaissance", "TA0043", "Reconnaissance"),
    ("resource_development", "TA0042", "Resource Development"),
    ("initial_access", "TA0001", "Initial Access"),
    ("execution", "TA0002", "Execution"),
    ("persistence", "TA0003", "Persistence"),
    ("privilege_escalation", "TA0004", "Privilege Escalation"),
    ("defense_evasion", "TA0005", "Defense Evasion"),
    ("credential_access", "TA0006", "Credential Access"),
    ("discovery", "TA0007", "Discovery"),
    ("lateral_movement", "TA0008", "Lateral Movement"),
    ("collection", "TA0009", "Collection"),
    ("command_and_control", "TA0011", "Command and Control"),
    ("exfiltration", "TA0010", "Exfiltration"),
    ("impact", "TA0040", "Impact"),
];

fn is_technique(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 5 && b[0] == b't' && b[1..].iter().all(u8::is_ascii_digit)
}

/// Reads `attack.execution`, `attack.t1059`, `attack.t1059.004` (and `attack.ta0002`).
pub fn threat_from_tags(tags: &[String]) -> Threat {
    let mut t = Threat::default();
    for tag in tags {
        let Some(rest) = tag.to_ascii_lowercase().strip_prefix("attack.").map(str::to_owned) else { continue };
        if let Some((_, id, name)) = TACTICS.iter().find(|(k, id, _)| *k == rest || id.eq_ignore_ascii_case(&rest)) {
            if !t.tactics.iter().any(|x| x.id == *id) {
                t.tactics.push(Tactic { id, name });
            }
            continue;
        }
        let (tech, sub) = match rest.split_once('.') {
            Some((a, b)) if b.len() == 3 && b.bytes().all(|c| c.is_ascii_digit()) => (a.to_owned(), Some(b.to_owned())),
            Some(_) => continue,
            None => (rest.clone(), None),
        };
        if !is_technique(&tech) {
            continue;
        }
        let id = tech.to_ascii_uppercase();
        let subtechnique = sub.map(|s| format!("{id}.{s}"));
        match t.techniques.iter_mut().find(|x| x.id == id) {
            Some(existing) if existing.subtechnique.is_none() => existing.subtechnique = subtechnique,
            Some(_) if subtechnique.is_some() => t.techniques.push(Technique { id, subtechnique }),
            Some(_) => {}
            None => t.techniques.push(Technique { id, subtechnique }),
        }
    }
    t
}

/// ECS `event.severity` (0–100) for a Sigma level, on the scale SIEM risk scores use.
pub fn severity(level: Option<Level>) -> u8 {
    match level {
        Some(Level::Informational) => 1,
        Some(Level::Low) => 21,
        None | Some(Level::Medium) => 47,
        Some(Level::High) => 73,
        Some(Level::Critical) => 99,
    }
}

/// Why an alert fired.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertKind {
    /// A detection rule matched this event.
    Rule,
    /// An IoC list entry matched a field of this event.
    Ioc { field: String, value: String, indicator: String },
    /// A correlation rule's condition held over a window of matches.
    Correlation(CorrelationHit),
}

/// The evidence of a correlation alert.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationHit {
    /// `(group-by field, value)` of the group that fired.
    pub group: Vec<(String, String)>,
    /// Events counted (event_count), distinct values (value_count) or rules seen (temporal*).
    pub count: u64,
    /// Time of the first and last contributing match, ns since the Unix epoch.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Keys (id, else name, else title) of the rules whose matches contributed.
    pub rules: Vec<String>,
}

/// A rule, IoC or correlation hit, ready for the responder and the outputs.
#[derive(Debug, Clone)]
pub struct Alert {
    pub rule: Arc<RuleMeta>,
    pub kind: AlertKind,
    /// ns since the Unix epoch (the event's time, else the time of evaluation).
    pub timestamp_ns: u64,
    /// False for a rule only referenced by a correlation (no `generate: true`): it feeds the
    /// correlation and is not reported on its own.
    pub standalone: bool,
}

impl Alert {
    /// ECS `event.severity`.
    pub fn severity(&self) -> u8 {
        severity(self.rule.level)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attack_tags() {
        let tags: Vec<String> = [
            "attack.execution",
            "attack.t1059.004",
            "attack.t1059",
            "attack.defense_evasion",
            "attack.g0032",
            "cve.2021-4034",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let t = threat_from_tags(&tags);
        assert_eq!(t.tactics.iter().map(|x| x.id).collect::<Vec<_>>(), ["TA0002", "TA0005"]);
        assert_eq!(t.tactics[0].name, "Execution");
        assert_eq!(t.techniques, vec![Technique { id: "T1059".into(), subtechnique: Some("T1059.004".into()) }]);
        assert_eq!(t.techniques[0].reference(), "https://attack.mitre.org/techniques/T1059/004/");
    }

    #[test]
    fn levels() {
        assert_eq!(severity(Some(Level::Critical)), 99);
        assert_eq!(severity(Some(Level::Informational)), 1);
        assert!(severity(Some(Level::High)) > severity(Some(Level::Medium)));
    }
}
