//! Alerts as events, with the story an analyst needs: the rule, the process and its ancestry,
//! the root cause (the entry point the activity came through), and what the process and its
//! descendants did just before.

use std::{collections::VecDeque, path::Path, sync::Arc};

use rustc_hash::FxHashSet;

use serde::Serialize;

use crate::{
    detect::{Alert, AlertKind},
    enrich::Context,
    process::table::Ancestor,
};

/// Programs through which activity enters a host: an ancestor running one of these is where
/// an attack story starts.
pub const ENTRY_POINTS: &[&str] = &[
    "sshd", "sshd-session", "login", "agetty", "cron", "crond", "atd", "anacron", "nginx", "apache2", "httpd",
    "php-fpm", "php-fpm8.2", "lighttpd", "caddy", "containerd-shim", "containerd-shim-runc-v2", "conmon", "runc",
    "crun", "dockerd", "containerd", "crio", "kubelet", "systemd", "init",
];

/// How many recent events the story looks back through, and how far.
const RECENT_CAP: usize = 4096;
const STORY_WINDOW_NS: u64 = 300 * 1_000_000_000;
const STORY_MAX: usize = 50;

/// One thing a process did, for stories.
#[derive(Debug, Clone, Serialize)]
pub struct Recent {
    /// Formatted only when a story is written.
    #[serde(rename = "@timestamp", serialize_with = "as_rfc3339")]
    pub wall_ns: u64,
    pub entity_id: Arc<str>,
    pub pid: u32,
    #[serde(skip)]
    pub parent_entity_id: Option<Arc<str>>,
    pub action: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub object: String,
}

fn as_rfc3339<S: serde::Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::event::rfc3339(*ns))
}

/// The last events of every process, for the stories of alerts to come.
#[derive(Debug, Default)]
pub struct RecentEvents {
    ring: VecDeque<Recent>,
}

impl RecentEvents {
    pub fn push(&mut self, r: Recent) {
        if self.ring.len() == RECENT_CAP {
            self.ring.pop_front();
        }
        self.ring.push_back(r);
    }

    /// What `entity` and its descendants did within the window before `now_ns`, in time order.
    pub fn story(&self, entity: &str, now_ns: u64) -> Vec<Recent> {
        // The family grows forward in time (a child's events follow its fork), so the walk is
        // forward; it keeps positions and copies only the last STORY_MAX (a busy process can
        // fill the whole ring, and an alert storm asks again on every alert).
        // (Entity ids are digests the agent makes, not chosen by anyone: a fast hash is safe.)
        let mut family: FxHashSet<&str> = FxHashSet::default();
        family.insert(entity);
        let mut ours = Vec::new();
        for (i, r) in self.ring.iter().enumerate().filter(|(_, r)| r.wall_ns + STORY_WINDOW_NS >= now_ns) {
            let member = family.contains(&*r.entity_id);
            if member || r.parent_entity_id.as_deref().is_some_and(|p| family.contains(p)) {
                if !member {
                    family.insert(&r.entity_id);
                }
                ours.push(i);
            }
        }
        ours[ours.len().saturating_sub(STORY_MAX)..].iter().map(|&i| self.ring[i].clone()).collect()
    }
}

/// The entry-point ancestor (nearest first), else the farthest one known.
pub fn root_cause(ancestry: &[Ancestor]) -> Option<&Ancestor> {
    ancestry
        .iter()
        .find(|a| {
            a.pid == 1
                || a.executable.as_deref().or(a.name.as_deref()).is_some_and(|exe| {
                    let base = Path::new(exe).file_name().and_then(|n| n.to_str()).unwrap_or(exe);
                    ENTRY_POINTS.contains(&base)
                })
        })
        .or(ancestry.last())
}

/// A unique alert id: 32 hex digits from the host's boot id, the alert's time and its number
/// in this run.
pub fn alert_id(boot_id: &str, wall_ns: u64, seq: u64) -> String {
    let mut buf = Vec::with_capacity(boot_id.len() + 16);
    buf.extend_from_slice(boot_id.as_bytes());
    buf.extend_from_slice(&wall_ns.to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&buf))
}

/// Repeats of an alert: the same rule firing on the same process again within `window` raises
/// no new alert. The repeat is counted (`osprey_alerts_suppressed_total{rule}`) and the next
/// alert of that rule and process after the window carries the number (`osprey.alert.repeats`).
/// One process tripping a rule thousands of times a second (a chmod loop, a scanner) is then one
/// alert a window, not an alert storm that buries the others and the agent with them.
#[derive(Debug)]
pub struct Repeats {
    window_ns: u64,
    /// (rule key, subject: entity id, executable, indicator) → (when its last alert was
    /// raised, repeats since).
    last: std::collections::HashMap<(String, String), (u64, u64)>,
}

/// Rule-and-subject pairs remembered at most (the oldest are forgotten first, on the tick).
const REPEATS_CAP: usize = 65_536;

impl Repeats {
    pub fn new(window: std::time::Duration) -> Self {
        Self { window_ns: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX), last: Default::default() }
    }

    /// `None`: a repeat within the window, raise nothing. `Some(n)`: raise the alert, which
    /// carries the `n` repeats held back since the last one. `subject`: what makes two hits the
    /// same (the process's entity id, its image, an indicator).
    pub fn check(&mut self, rule: &str, subject: &[&str], now_ns: u64) -> Option<u64> {
        if self.window_ns == 0 {
            return Some(0);
        }
        let key = (rule.to_owned(), subject.join("\0"));
        if let Some((last, repeats)) = self.last.get_mut(&key) {
            if now_ns.saturating_sub(*last) < self.window_ns {
                *repeats += 1;
                return None;
            }
            *last = now_ns;
            return Some(std::mem::take(repeats));
        }
        self.last.insert(key, (now_ns, 0));
        Some(0)
    }

    /// Forgets pairs quiet for a window with nothing held back, and the oldest beyond
    /// [`REPEATS_CAP`] (what they held back stays in the metric).
    pub fn expire(&mut self, now_ns: u64) {
        self.last.retain(|_, (last, repeats)| *repeats > 0 || now_ns.saturating_sub(*last) < self.window_ns);
        if self.last.len() > REPEATS_CAP {
            let mut oldest: Vec<(u64, (String, String))> = self.last.iter().map(|(k, (t, _))| (*t, k.clone())).collect();
            oldest.sort_unstable();
            for (_, k) in oldest.into_iter().take(self.last.len() - REPEATS_CAP) {
                self.last.remove(&k);
            }
        }
    }
}

/// An alert ready for output: the engine's verdict, the event that triggered it (ECS), and the
/// story.
#[derive(Debug, Clone)]
pub struct AlertEvent {
    /// ECS `event.id`: unique per alert ([`alert_id`]).
    pub id: String,
    pub alert: Alert,
    /// The triggering event as it was written (correlations have none).
    pub trigger: Option<serde_json::Value>,
    pub story: Vec<Recent>,
    /// The triggering process's context (ancestry, image) for process.*.
    pub ctx: Option<Arc<Context>>,
    /// What the rule's `response:` actions did.
    pub responses: Vec<crate::respond::Outcome>,
    /// Alerts of the same rule on the same process held back since the last one ([`Repeats`]).
    pub repeats: u64,
}

#[derive(Serialize)]
pub struct RuleDoc<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<&'a str>,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub reference: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<&'a str>,
    pub ruleset: &'static str,
}

#[derive(Serialize)]
pub struct ThreatDoc {
    pub framework: &'static str,
    pub tactic: NamesIds,
    pub technique: NamesIds,
}

#[derive(Serialize)]
pub struct NamesIds {
    pub id: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub name: Vec<String>,
}

#[derive(Serialize)]
pub struct AlertMeta<'a> {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "<[&str]>::is_empty")]
    pub response: Vec<&'static str>,
    #[serde(skip_serializing_if = "<[crate::respond::Outcome]>::is_empty")]
    pub responses: &'a [crate::respond::Outcome],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_cause: Option<&'a Ancestor>,
    pub story: &'a [Recent],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<&'a serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ioc: Option<IocDoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation: Option<CorrelationDoc<'a>>,
    pub rule_file: String,
    /// Alerts of this rule on this process held back since the last one (`rules.repeat_window`).
    #[serde(skip_serializing_if = "is_zero")]
    pub repeats: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize)]
pub struct IocDoc<'a> {
    pub field: &'a str,
    pub value: &'a str,
    pub indicator: &'a str,
}

#[derive(Serialize)]
pub struct CorrelationDoc<'a> {
    pub group: Vec<(&'a str, &'a str)>,
    pub count: u64,
    pub rules: &'a [String],
}

/// ECS `rule.*` of a rule.
pub fn rule_doc(r: &crate::detect::RuleMeta) -> RuleDoc<'_> {
    RuleDoc {
        id: r.id.as_deref(),
        name: &r.title,
        description: r.description.as_deref(),
        reference: &r.references,
        author: r.author.as_deref(),
        ruleset: "osprey",
    }
}

impl AlertEvent {
    pub fn rule_doc(&self) -> RuleDoc<'_> {
        rule_doc(&self.alert.rule)
    }

    pub fn threat_doc(&self) -> Option<ThreatDoc> {
        let t = &self.alert.rule.threat;
        if t.is_empty() {
            return None;
        }
        Some(ThreatDoc {
            framework: t.framework(),
            tactic: NamesIds {
                id: t.tactics.iter().map(|x| x.id.to_string()).collect(),
                name: t.tactics.iter().map(|x| x.name.to_string()).collect(),
            },
            technique: NamesIds {
                id: t.techniques.iter().map(|x| x.subtechnique.clone().unwrap_or_else(|| x.id.clone())).collect(),
                name: Vec::new(),
            },
        })
    }

    pub fn meta(&self) -> AlertMeta<'_> {
        let (kind, ioc, correlation) = match &self.alert.kind {
            AlertKind::Rule => ("rule", None, None),
            AlertKind::Ioc { field, value, indicator } => ("ioc", Some(IocDoc { field, value, indicator }), None),
            AlertKind::Correlation(hit) => (
                "correlation",
                None,
                Some(CorrelationDoc {
                    group: hit.group.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect(),
                    count: hit.count,
                    rules: &hit.rules,
                }),
            ),
        };
        let rule = &self.alert.rule;
        AlertMeta {
            kind,
            response: rule.response.iter().map(|a| a.name()).collect(),
            responses: &self.responses,
            root_cause: self.ctx.as_ref().and_then(|c| root_cause(&c.ancestry)),
            story: &self.story,
            trigger: self.trigger.as_ref(),
            ioc,
            correlation,
            rule_file: format!("{}:{}", rule.path.display(), rule.line),
            repeats: self.repeats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anc(pid: u32, exe: &str) -> Ancestor {
        Ancestor { pid, entity_id: format!("e{pid}"), executable: Some(exe.into()), name: None, args: None, incomplete: false }
    }

    #[test]
    fn root_cause_is_the_nearest_entry_point() {
        let a = [anc(30, "/usr/bin/bash"), anc(20, "/usr/sbin/nginx"), anc(10, "/usr/sbin/sshd"), anc(1, "/sbin/init")];
        assert_eq!(root_cause(&a).unwrap().pid, 20);
        let b = [anc(30, "/usr/bin/bash"), anc(20, "/usr/bin/python3")];
        assert_eq!(root_cause(&b).unwrap().pid, 20, "else the farthest known");
        assert!(root_cause(&[]).is_none());
    }

    fn recent(ns: u64, e: &str, parent: Option<&str>, what: &'static str) -> Recent {
        Recent {
            wall_ns: ns,
            entity_id: e.into(),
            pid: 1,
            parent_entity_id: parent.map(Into::into),
            action: what,
            object: String::new(),
        }
    }

    #[test]
    fn story_follows_descendants_only() {
        let mut r = RecentEvents::default();
        r.push(recent(1, "other", None, "noise"));
        r.push(recent(2, "sh", Some("web"), "exec"));
        r.push(recent(3, "curl", Some("sh"), "exec"));
        r.push(recent(4, "curl", Some("sh"), "creation"));
        r.push(recent(5, "unrelated", Some("init"), "exec"));
        let s: Vec<String> = r.story("sh", 10).into_iter().map(|x| format!("{}:{}", x.entity_id, x.action)).collect();
        assert_eq!(s, ["sh:exec", "curl:exec", "curl:creation"]);
    }

    #[test]
    fn repeats_of_a_rule_on_a_process_within_the_window_are_held_back_and_counted() {
        const S: u64 = 1_000_000_000;
        let mut r = Repeats::new(std::time::Duration::from_secs(60));
        assert_eq!(r.check("rule-a", &["p1"], 0), Some(0));
        for t in 1..=5 {
            assert_eq!(r.check("rule-a", &["p1"], t * S), None);
        }
        assert_eq!(r.check("rule-a", &["p2"], 3 * S), Some(0), "another process alerts");
        assert_eq!(r.check("rule-b", &["p1"], 3 * S), Some(0), "another rule alerts");
        assert_eq!(r.check("rule-a", &["p1"], 60 * S), Some(5), "after the window: the held-back count");
        assert_eq!(r.check("rule-a", &["p1"], 61 * S), None);
        // Quiet pairs are forgotten on the tick unless they hold repeats back.
        r.expire(200 * S);
        assert_eq!(r.last.len(), 1);
        assert_eq!(r.check("rule-a", &["p1"], 201 * S), Some(1));
        r.expire(400 * S);
        assert!(r.last.is_empty());
        assert_eq!(r.check("rule-a", &["p1"], 401 * S), Some(0));
        // A window of 0 holds nothing back.
        let mut off = Repeats::new(std::time::Duration::ZERO);
        assert_eq!((off.check("r", &["p"], 1), off.check("r", &["p"], 2)), (Some(0), Some(0)));
    }

    #[test]
    fn a_story_is_the_last_events_of_the_family_in_time_order() {
        let mut r = RecentEvents::default();
        for i in 0..(RECENT_CAP as u64 + 100) {
            r.push(recent(i, if i % 2 == 0 { "busy" } else { "other" }, None, "write"));
        }
        let s = r.story("busy", RECENT_CAP as u64 + 100);
        assert_eq!(s.len(), STORY_MAX);
        let times: Vec<u64> = s.iter().map(|x| x.wall_ns).collect();
        let last = RECENT_CAP as u64 + 98;
        assert_eq!(times, (0..STORY_MAX as u64).rev().map(|k| last - 2 * k).collect::<Vec<_>>());
    }
}
