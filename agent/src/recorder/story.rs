//! `osprey story`: the attack story rebuilt from the recorder.
//!
//! From the alert's process the lineage is walked up to the root cause — the nearest ancestor
//! that is an entry point (sshd, a web server, cron, a container shim, …), or where the process
//! tree crosses a cgroup boundary (a service, a container, a pod: where activity entered this
//! unit), or the oldest recorded ancestor. The story is that root and every descendant, each
//! with what it did (files, connections, DNS names, privilege changes, alerts, responses) in
//! time order. Unrelated processes are not in it.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{hunt::describe, StoreError};

/// Processes a story holds at most, and events per process.
const MAX_PROCESSES: usize = 500;
const MAX_EVENTS_PER_PROCESS: usize = 2000;
const MAX_DEPTH: usize = 64;

/// What a story is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Subject {
    Alert(String),
    Entity(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Story {
    /// The alert the story was asked for (its ECS document).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<Value>,
    /// The process the alert (or the request) named.
    pub subject: String,
    /// The root cause's entity id, and why it is the root.
    pub root: String,
    pub root_reason: String,
    /// Every process of the story, the root first, then depth-first in start order.
    pub processes: Vec<ProcessNode>,
    /// Everything that happened, in time order.
    pub timeline: Vec<Step>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessNode {
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub depth: usize,
    pub host: String,
    pub pid: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(rename = "start")]
    pub start_ns: i64,
    /// Indexes into `timeline` of this process's steps.
    pub steps: Vec<usize>,
    /// The subject of the story.
    pub subject: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: i64,
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub ts_ns: i64,
    pub entity_id: String,
    pub kind: String,
    pub action: String,
    pub object: String,
    /// For the graph: what the step touched (a file, an address, a domain), if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "name", rename_all = "lowercase")]
pub enum Target {
    File(String),
    Address(String),
    Domain(String),
}

#[derive(Debug, thiserror::Error)]
pub enum StoryError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no recorded alert with id {0}")]
    NoAlert(String),
    #[error("no recorded process with entity id {0}")]
    NoEntity(String),
    #[error("alert {0} names no process (a correlation across processes): use --entity")]
    NoProcess(String),
    #[error("{0}")]
    Backend(String),
}

/// A process as its lineage events (fork, exec) recorded it.
#[derive(Debug, Clone, Default)]
pub struct Proc {
    pub entity: String,
    pub parent: Option<String>,
    pub host: String,
    pub pid: i64,
    pub exe: Option<String>,
    pub cmdline: Option<String>,
    pub user: Option<String>,
    pub start_ns: i64,
    pub cgroup: Option<i64>,
}

/// One recorded event of a process, for its story.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub id: i64,
    pub ts_ns: i64,
    pub kind: String,
    pub action: String,
    pub doc: Value,
}

/// Where stories are read from: the node's recorder ([`Store`]), or a fleet store.
pub trait History {
    /// The alert with this `event.id`: its process's entity id (if it names one) and document.
    fn alert(&self, id: &str) -> Result<Option<(Option<String>, Value)>, StoryError>;
    /// A process by entity id.
    fn process(&self, entity: &str) -> Result<Option<Proc>, StoryError>;
    /// The entity ids of a process's children.
    fn children(&self, entity: &str) -> Result<Vec<String>, StoryError>;
    /// A process's events in time order, at most `limit`.
    fn events(&self, entity: &str, limit: usize) -> Result<Vec<Recorded>, StoryError>;
}

fn basename(p: &str) -> &str {
    Path::new(p).file_name().and_then(|n| n.to_str()).unwrap_or(p)
}

/// Why `p` (whose parent is `parent`) is where the story starts, if it is. A parent on another
/// host (a fleet story: `p` handled a connection that process made) is never: the story goes on
/// across the network to where the connection came from.
fn root_reason(p: &Proc, parent: Option<&Proc>) -> Option<String> {
    if parent.is_some_and(|q| !q.host.is_empty() && !p.host.is_empty() && q.host != p.host) {
        return None;
    }
    let name = p.exe.as_deref().map(basename);
    if let Some(n) = name.filter(|n| crate::alerting::ENTRY_POINTS.contains(n)) {
        return Some(format!("entry point ({n})"));
    }
    let Some(parent) = parent else { return Some("oldest recorded ancestor".into()) };
    if parent.pid == 1 {
        return Some("started by init".into());
    }
    match (p.cgroup, parent.cgroup) {
        (Some(a), Some(b)) if a != b => Some(format!("entered cgroup {a} (its parent runs in cgroup {b})")),
        _ => None,
    }
}

impl Story {
    /// Rebuilds the story of `subject` from the store.
    pub fn build(store: &dyn History, subject: &Subject) -> Result<Self, StoryError> {
        let (entity, alert) = match subject {
            Subject::Alert(id) => {
                let Some((entity, doc)) = store.alert(id)? else { return Err(StoryError::NoAlert(id.clone())) };
                let entity = entity.ok_or_else(|| StoryError::NoProcess(id.clone()))?;
                (entity, Some(doc).filter(|v| !v.is_null()))
            }
            Subject::Entity(e) => (e.clone(), None),
        };
        let me = store.process(&entity)?.ok_or_else(|| StoryError::NoEntity(entity.clone()))?;

        // Up the lineage to the root cause. Recorded lineage can loop (a process named as its own
        // ancestor by forged or merged data): the climb stops where it would come back.
        let mut seen: HashSet<String> = HashSet::from([me.entity.clone()]);
        let mut cur = me.clone();
        let reason = loop {
            let parent = match &cur.parent {
                Some(pe) if seen.contains(pe) => break format!("oldest recorded ancestor (its lineage loops back to {pe})"),
                Some(pe) if seen.len() <= MAX_DEPTH => store.process(pe)?,
                _ => None,
            };
            if let Some(r) = root_reason(&cur, parent.as_ref()) {
                break r;
            }
            let parent = parent.expect("root_reason is Some without a parent");
            seen.insert(parent.entity.clone());
            cur = parent;
        };
        let root = cur;

        // Down from the root: every descendant, depth first in start order.
        let mut processes: Vec<ProcessNode> = Vec::new();
        let mut stack = vec![(root.clone(), 0usize)];
        while let Some((p, depth)) = stack.pop() {
            if processes.len() == MAX_PROCESSES {
                break;
            }
            let kids = store.children(&p.entity)?;
            let mut children = Vec::new();
            for k in kids.iter().filter(|k| **k != p.entity && !processes.iter().any(|n| &n.entity_id == *k)) {
                if let Some(c) = store.process(k)? {
                    children.push(c);
                }
            }
            children.sort_by_key(|c| std::cmp::Reverse(c.start_ns));
            processes.push(ProcessNode {
                subject: p.entity == entity,
                entity_id: p.entity.clone(),
                parent: (depth > 0).then(|| p.parent.clone()).flatten(),
                depth,
                host: p.host,
                pid: p.pid,
                executable: p.exe,
                command_line: p.cmdline,
                user: p.user,
                start_ns: p.start_ns,
                steps: Vec::new(),
            });
            stack.extend(children.into_iter().map(|c| (c, depth + 1)));
        }

        // What each did.
        let mut timeline = Vec::new();
        for p in &processes {
            let rows = store.events(&p.entity_id, MAX_EVENTS_PER_PROCESS)?;
            for Recorded { id, ts_ns: ts, kind, action, doc } in rows {
                if action == "fork" {
                    continue; // shown as the child's node
                }
                timeline.push(Step {
                    id,
                    timestamp: crate::event::rfc3339(ts as u64),
                    ts_ns: ts,
                    entity_id: p.entity_id.clone(),
                    object: describe(&doc),
                    target: target(&doc, &action),
                    kind,
                    action,
                });
            }
        }
        timeline.sort_by_key(|s| (s.ts_ns, s.id));
        let index: HashMap<&str, usize> = processes.iter().enumerate().map(|(i, p)| (p.entity_id.as_str(), i)).collect();
        let mut steps: Vec<Vec<usize>> = vec![Vec::new(); processes.len()];
        for (i, s) in timeline.iter().enumerate() {
            if let Some(&p) = index.get(s.entity_id.as_str()) {
                steps[p].push(i);
            }
        }
        for (p, s) in processes.iter_mut().zip(steps) {
            p.steps = s;
        }
        Ok(Story { alert, subject: entity, root: root.entity, root_reason: reason, processes, timeline })
    }

    /// The story as a tree for the terminal.
    pub fn print(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        if let Some(a) = &self.alert {
            writeln!(
                out,
                "alert {} — \"{}\" (severity {}) at {}",
                a["event"]["id"].as_str().unwrap_or(""),
                a["rule"]["name"].as_str().unwrap_or(""),
                a["event"]["severity"],
                a["@timestamp"].as_str().unwrap_or("")
            )?;
        }
        let root = &self.processes[0];
        writeln!(
            out,
            "root cause: {} (pid {}) — {}\n",
            root.executable.as_deref().unwrap_or("?"),
            root.pid,
            self.root_reason
        )?;
        let hosts: HashMap<&str, &str> = self.processes.iter().map(|p| (p.entity_id.as_str(), p.host.as_str())).collect();
        for p in &self.processes {
            let pad = "    ".repeat(p.depth);
            if let Some(from) = p.parent.as_deref().and_then(|e| hosts.get(e)).filter(|h| **h != p.host) {
                let short = |h: &str| h.chars().take(12).collect::<String>();
                writeln!(out, "{pad}⇢ over the network: host {} → host {}", short(from), short(&p.host))?;
            }
            let mark = if p.subject { "  ◀ subject" } else { "" };
            writeln!(
                out,
                "{pad}└─ {} [pid {}{}{}] {}{mark}",
                p.executable.as_deref().map(basename).unwrap_or("?"),
                p.pid,
                p.user.as_deref().map(|u| format!(", {u}")).unwrap_or_default(),
                if p.host.is_empty() { String::new() } else { format!(", host {}", p.host.chars().take(12).collect::<String>()) },
                p.command_line.as_deref().unwrap_or("")
            )?;
            for &i in &p.steps {
                let s = &self.timeline[i];
                let flag = match s.kind.as_str() {
                    "alert" => "!",
                    _ if s.action == "osprey-response" => "»",
                    _ => "•",
                };
                writeln!(out, "{pad}     {flag} {} {:<20} {}", &s.timestamp[11..23.min(s.timestamp.len())], s.action, s.object)?;
            }
        }
        Ok(())
    }
}

/// The thing a step touched, for the graph.
fn target(doc: &Value, action: &str) -> Option<Target> {
    if action == "exec" || action == "exit" || action == "fork" {
        return None;
    }
    if let Some(q) = doc["dns"]["question"]["name"].as_str() {
        return Some(Target::Domain(q.trim_end_matches('.').to_owned()));
    }
    if let Some(ip) = doc["destination"]["ip"].as_str() {
        let port = doc["destination"]["port"].as_u64().map(|p| format!(":{p}")).unwrap_or_default();
        return Some(Target::Address(format!("{ip}{port}")));
    }
    doc["file"]["path"].as_str().map(|p| Target::File(p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{index::row, Store};

    fn ev(ts: i64, entity: &str, parent: Option<&str>, action: &str, exe: &str, cgroup: i64, extra: &str) -> Vec<u8> {
        let parent = parent.map(|p| format!(r#","parent":{{"entity_id":"{p}"}}"#)).unwrap_or_default();
        let cmd = if action == "exec" { format!(r#","command_line":"{exe} --x""#) } else { String::new() };
        format!(
            r#"{{"@timestamp":"{}","event":{{"kind":"{}","action":"{action}","id":"{entity}-{ts}"}},"host":{{"id":"h"}},"process":{{"pid":{ts},"entity_id":"{entity}","executable":"{exe}"{cmd}{parent}}},"osprey":{{"cgroup_id":{cgroup}}}{extra}}}"#,
            crate::event::rfc3339(ts as u64),
            if action == "alert" { "alert" } else { "event" },
        )
        .into_bytes()
    }

    pub(crate) fn fill(store: &mut Store, docs: &[Vec<u8>]) {
        let rows: Vec<_> = docs.iter().map(|d| row(d, None).unwrap()).collect();
        store.insert(rows.iter().zip(docs).map(|(r, d)| (r, d.as_slice()))).unwrap();
    }

    #[test]
    fn story_starts_at_the_cgroup_boundary_and_keeps_out_unrelated_processes() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let docs = vec![
            ev(1, "init", None, "exec", "/sbin/init", 1, ""),
            ev(2, "test", Some("init"), "exec", "/usr/bin/cargo", 1, ""),
            ev(3, "web", Some("test"), "fork", "/usr/bin/cargo", 1, ""),
            ev(4, "web", Some("test"), "exec", "/usr/bin/python3", 9, ""),
            ev(5, "other", Some("test"), "exec", "/usr/bin/ls", 1, ""),
            ev(6, "sh", Some("web"), "fork", "/usr/bin/python3", 9, ""),
            ev(7, "sh", Some("web"), "exec", "/bin/sh", 9, ""),
            ev(8, "sh", None, "connection_attempted", "/bin/sh", 9, r#","destination":{"ip":"127.0.0.1","port":8080}"#),
            ev(9, "pay", Some("sh"), "exec", "/tmp/payload", 9, ""),
            ev(10, "pay", None, "read", "/tmp/payload", 9, r#","file":{"path":"/etc/shadow"}"#),
            ev(11, "pay", None, "alert", "/tmp/payload", 9, r#","rule":{"name":"shadow read"}"#),
            ev(12, "other", None, "read", "/usr/bin/ls", 1, r#","file":{"path":"/etc/passwd"}"#),
        ];
        fill(&mut s, &docs);
        let st = Story::build(&s, &Subject::Alert("pay-11".into())).unwrap();
        assert_eq!(st.root, "web");
        assert!(st.root_reason.contains("cgroup 9"), "{}", st.root_reason);
        let order: Vec<&str> = st.processes.iter().map(|p| p.entity_id.as_str()).collect();
        assert_eq!(order, ["web", "sh", "pay"]);
        assert_eq!(st.processes.iter().map(|p| p.depth).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(st.processes[2].subject);
        let steps: Vec<(&str, &str)> = st.timeline.iter().map(|s| (s.entity_id.as_str(), s.action.as_str())).collect();
        assert_eq!(
            steps,
            [("web", "exec"), ("sh", "exec"), ("sh", "connection_attempted"), ("pay", "exec"), ("pay", "read"), ("pay", "alert")]
        );
        assert_eq!(st.timeline[4].target, Some(Target::File("/etc/shadow".into())));
        assert_eq!(st.timeline[2].target, Some(Target::Address("127.0.0.1:8080".into())));
        let mut text = Vec::new();
        st.print(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.contains("root cause: /usr/bin/python3"), "{text}");
        assert!(!text.contains("/etc/passwd"), "{text}");

        // by entity; an entry point is a root too
        let st = Story::build(&s, &Subject::Entity("sh".into())).unwrap();
        assert_eq!(st.root, "web");
        assert!(matches!(Story::build(&s, &Subject::Alert("nope".into())), Err(StoryError::NoAlert(_))));
        assert!(matches!(Story::build(&s, &Subject::Entity("nope".into())), Err(StoryError::NoEntity(_))));
    }

    #[test]
    fn a_lineage_that_loops_ends_the_climb() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let docs = vec![
            ev(11, "self", Some("self"), "exec", "/usr/bin/a", 1, ""),
            ev(12, "kid", Some("self"), "exec", "/usr/bin/b", 1, ""),
            ev(13, "x", Some("y"), "exec", "/usr/bin/x", 1, ""),
            ev(14, "y", Some("x"), "exec", "/usr/bin/y", 1, ""),
        ];
        fill(&mut s, &docs);
        let st = Story::build(&s, &Subject::Entity("kid".into())).unwrap();
        assert_eq!(st.root, "self");
        assert!(st.root_reason.contains("loops back to self"), "{}", st.root_reason);
        assert_eq!(st.processes.iter().map(|p| p.entity_id.as_str()).collect::<Vec<_>>(), ["self", "kid"]);
        let st = Story::build(&s, &Subject::Entity("x".into())).unwrap();
        assert_eq!(st.root, "y");
        assert_eq!(st.processes.len(), 2, "each process once");
    }
}
