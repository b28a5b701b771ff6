//! `osprey story`: the attack story rebuilt from the recorder.
//!
//! From the alert's process the lineage is walked up to the root cause — the nearest ancestor
//! that is an entry point (sshd, a web server, cron, a container shim, …), or where the process
//! tree crosses a cgroup boundary (a service, a container, a pod: where activity entered this
//! unit), or the oldest recorded ancestor. The story is that root and every descendant, each
//! with what it did (files, connections, DNS names, privilege changes, alerts, responses) in
//! time order. Unrelated processes are not in it.

use std::{collections::HashMap, path::Path};

use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{hunt::describe, store::Store, StoreError};

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
}

/// A process as its lineage events (fork, exec) recorded it.
#[derive(Debug, Clone, Default)]
struct Proc {
    entity: String,
    parent: Option<String>,
    host: String,
    pid: i64,
    exe: Option<String>,
    cmdline: Option<String>,
    user: Option<String>,
    start_ns: i64,
    cgroup: Option<i64>,
}

fn sql<T>(store: &Store, r: rusqlite::Result<T>) -> Result<T, StoreError> {
    r.map_err(|e| store.err(e))
}

fn proc_of(store: &Store, entity: &str) -> Result<Option<Proc>, StoreError> {
    // The first lineage event names the parent and the start; the latest exec the image.
    let first = sql(
        store,
        store
            .conn
            .query_row(
                "SELECT parent, host, pid, ts, cgroup FROM events WHERE entity = ?1 AND parent IS NOT NULL ORDER BY ts, id LIMIT 1",
                [entity],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, Option<i64>>(4)?)),
            )
            .optional(),
    )?;
    let exec = sql(
        store,
        store
            .conn
            .query_row(
                "SELECT exe, cmdline, user, cgroup, host, pid, ts FROM events WHERE entity = ?1 AND cmdline IS NOT NULL ORDER BY ts DESC, id DESC LIMIT 1",
                [entity],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional(),
    )?;
    let mut p = Proc { entity: entity.to_owned(), ..Proc::default() };
    match (&first, &exec) {
        (None, None) => {
            // Seen only in other events (started before the recorder): what they say.
            let any = sql(
                store,
                store
                    .conn
                    .query_row(
                        "SELECT host, pid, exe, user, ts FROM events WHERE entity = ?1 ORDER BY ts, id LIMIT 1",
                        [entity],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, i64>(4)?)),
                    )
                    .optional(),
            )?;
            let Some((host, pid, exe, user, ts)) = any else { return Ok(None) };
            (p.host, p.pid, p.exe, p.user, p.start_ns) = (host, pid.unwrap_or(0), exe, user, ts);
        }
        _ => {
            if let Some((parent, host, pid, ts, cgroup)) = first {
                (p.parent, p.host, p.pid, p.start_ns, p.cgroup) = (Some(parent), host, pid, ts, cgroup);
            }
            if let Some((exe, cmdline, user, cgroup, host, pid, ts)) = exec {
                (p.exe, p.cmdline, p.user) = (exe, cmdline, user);
                p.cgroup = cgroup.or(p.cgroup);
                if p.host.is_empty() {
                    (p.host, p.pid, p.start_ns) = (host, pid, ts);
                }
            }
        }
    }
    if p.cgroup.is_none() {
        // Started before the recorder: its other events still say where it runs.
        p.cgroup = sql(
            store,
            store
                .conn
                .query_row(
                    "SELECT cgroup FROM events WHERE entity = ?1 AND cgroup IS NOT NULL ORDER BY ts DESC, id DESC LIMIT 1",
                    [entity],
                    |r| r.get(0),
                )
                .optional(),
        )?;
    }
    Ok(Some(p))
}

fn basename(p: &str) -> &str {
    Path::new(p).file_name().and_then(|n| n.to_str()).unwrap_or(p)
}

/// Why `p` (whose parent is `parent`) is where the story starts, if it is.
fn root_reason(p: &Proc, parent: Option<&Proc>) -> Option<String> {
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
    pub fn build(store: &Store, subject: &Subject) -> Result<Self, StoryError> {
        let (entity, alert) = match subject {
            Subject::Alert(id) => {
                let row = sql(
                    store,
                    store
                        .conn
                        .query_row("SELECT entity, doc FROM events WHERE alert = ?1 LIMIT 1", [id], |r| {
                            Ok((r.get::<_, Option<String>>(0)?, r.get::<_, Vec<u8>>(1)?))
                        })
                        .optional(),
                )?;
                let Some((entity, doc)) = row else { return Err(StoryError::NoAlert(id.clone())) };
                let entity = entity.ok_or_else(|| StoryError::NoProcess(id.clone()))?;
                (entity, serde_json::from_slice::<Value>(&doc).ok())
            }
            Subject::Entity(e) => (e.clone(), None),
        };
        let me = proc_of(store, &entity)?.ok_or_else(|| StoryError::NoEntity(entity.clone()))?;

        // Up the lineage to the root cause.
        let mut cache: HashMap<String, Proc> = HashMap::new();
        let mut cur = me.clone();
        let reason = loop {
            let parent = match &cur.parent {
                Some(pe) if cache.len() < MAX_DEPTH => match cache.get(pe) {
                    Some(p) => Some(p.clone()),
                    None => proc_of(store, pe)?,
                },
                _ => None,
            };
            if let Some(r) = root_reason(&cur, parent.as_ref()) {
                break r;
            }
            let parent = parent.expect("root_reason is Some without a parent");
            cache.insert(parent.entity.clone(), parent.clone());
            cur = parent;
        };
        let root = cur;

        // Down from the root: every descendant, depth first in start order.
        let mut processes: Vec<ProcessNode> = Vec::new();
        let mut stack = vec![(root.clone(), 0usize)];
        let mut child_q = sql(
            store,
            store.conn.prepare("SELECT DISTINCT entity FROM events WHERE parent = ?1 AND entity IS NOT NULL"),
        )?;
        while let Some((p, depth)) = stack.pop() {
            if processes.len() == MAX_PROCESSES {
                break;
            }
            let kids: Vec<String> = sql(store, child_q.query_map([&p.entity], |r| r.get(0)).and_then(Iterator::collect))?;
            let mut children = Vec::new();
            for k in kids.iter().filter(|k| **k != p.entity && !processes.iter().any(|n| &n.entity_id == *k)) {
                if let Some(c) = proc_of(store, k)? {
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
        drop(child_q);

        // What each did.
        let mut timeline = Vec::new();
        let mut ev_q = sql(
            store,
            store.conn.prepare("SELECT id, ts, kind, action, doc FROM events WHERE entity = ?1 ORDER BY ts, id LIMIT ?2"),
        )?;
        for p in &processes {
            let rows = sql(
                store,
                ev_q.query_map(rusqlite::params![p.entity_id, MAX_EVENTS_PER_PROCESS as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, Vec<u8>>(4)?))
                })
                .and_then(Iterator::collect::<rusqlite::Result<Vec<_>>>),
            )?;
            for (id, ts, kind, action, doc) in rows {
                if action == "fork" {
                    continue; // shown as the child's node
                }
                let doc: Value = serde_json::from_slice(&doc).unwrap_or(Value::Null);
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
        drop(ev_q);
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
        for p in &self.processes {
            let pad = "    ".repeat(p.depth);
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
    use crate::recorder::index::row;

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
}
