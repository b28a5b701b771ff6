//! The columns a recorded event is found by, read from its ECS JSON document.
//!
//! Only the fields hunts and stories filter on are read (serde skips the rest without building
//! it), so the same code indexes the agent's own events, fixtures and other hosts' exports.

use std::{borrow::Cow, net::IpAddr};

use serde::{Deserialize, Serialize};

/// One event as the store indexes it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub ts_ns: i64,
    pub host: String,
    /// `event.kind`: event, alert, …
    pub kind: String,
    pub action: String,
    pub entity: Option<String>,
    /// The parent's entity id: set on exec and fork events only (they carry the lineage).
    pub parent: Option<String>,
    pub pid: Option<i64>,
    pub exe: Option<String>,
    pub sha256: Option<String>,
    /// Set on exec events only (the process's identity; other events point at it by entity).
    pub cmdline: Option<String>,
    pub user: Option<String>,
    pub path: Option<String>,
    pub src_ip: Option<[u8; 16]>,
    pub src_port: Option<i64>,
    pub dst_ip: Option<[u8; 16]>,
    pub dst_port: Option<i64>,
    pub domain: Option<String>,
    /// `event.id` of alerts (and responses that name one).
    pub alert: Option<String>,
    pub rule: Option<String>,
    /// `event.severity` (alerts).
    pub severity: Option<i64>,
    pub cgroup: Option<i64>,
}

/// A [`Row`] read in place from a block's packed rows (the same layout: postcard writes a
/// `String` as it reads a `&str`), so a hunt filters rows without allocating; and a row packed
/// from the strings an event already has, without copying them.
#[derive(Debug, Serialize, Deserialize)]
pub struct RowRef<'a> {
    pub ts_ns: i64,
    pub host: &'a str,
    pub kind: &'a str,
    pub action: &'a str,
    pub entity: Option<&'a str>,
    pub parent: Option<&'a str>,
    pub pid: Option<i64>,
    pub exe: Option<&'a str>,
    pub sha256: Option<&'a str>,
    pub cmdline: Option<&'a str>,
    pub user: Option<&'a str>,
    pub path: Option<&'a str>,
    pub src_ip: Option<[u8; 16]>,
    pub src_port: Option<i64>,
    pub dst_ip: Option<[u8; 16]>,
    pub dst_port: Option<i64>,
    pub domain: Option<&'a str>,
    pub alert: Option<&'a str>,
    pub rule: Option<&'a str>,
    pub severity: Option<i64>,
    pub cgroup: Option<i64>,
}

impl Row {
    pub fn as_ref(&self) -> RowRef<'_> {
        RowRef {
            ts_ns: self.ts_ns,
            host: &self.host,
            kind: &self.kind,
            action: &self.action,
            entity: self.entity.as_deref(),
            parent: self.parent.as_deref(),
            pid: self.pid,
            exe: self.exe.as_deref(),
            sha256: self.sha256.as_deref(),
            cmdline: self.cmdline.as_deref(),
            user: self.user.as_deref(),
            path: self.path.as_deref(),
            src_ip: self.src_ip,
            src_port: self.src_port,
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            domain: self.domain.as_deref(),
            alert: self.alert.as_deref(),
            rule: self.rule.as_deref(),
            severity: self.severity,
            cgroup: self.cgroup,
        }
    }
}

impl RowRef<'_> {
    pub fn to_row(&self) -> Row {
        let s = |v: Option<&str>| v.map(str::to_owned);
        Row {
            ts_ns: self.ts_ns,
            host: self.host.to_owned(),
            kind: self.kind.to_owned(),
            action: self.action.to_owned(),
            entity: s(self.entity),
            parent: s(self.parent),
            pid: self.pid,
            exe: s(self.exe),
            sha256: s(self.sha256),
            cmdline: s(self.cmdline),
            user: s(self.user),
            path: s(self.path),
            src_ip: self.src_ip,
            src_port: self.src_port,
            dst_ip: self.dst_ip,
            dst_port: self.dst_port,
            domain: s(self.domain),
            alert: s(self.alert),
            rule: s(self.rule),
            severity: self.severity,
            cgroup: self.cgroup,
        }
    }
}

#[derive(Deserialize)]
struct Doc<'a> {
    #[serde(rename = "@timestamp", borrow, default)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    event: Option<EventIx<'a>>,
    #[serde(borrow, default)]
    host: Option<HostIx<'a>>,
    #[serde(borrow, default)]
    process: Option<ProcessIx<'a>>,
    #[serde(borrow, default)]
    file: Option<PathIx<'a>>,
    #[serde(borrow, default)]
    source: Option<EndpointIx<'a>>,
    #[serde(borrow, default)]
    destination: Option<EndpointIx<'a>>,
    #[serde(borrow, default)]
    dns: Option<DnsIx<'a>>,
    #[serde(borrow, default)]
    rule: Option<RuleIx<'a>>,
    #[serde(borrow, default)]
    user: Option<NameIx<'a>>,
    #[serde(default)]
    osprey: Option<OspreyIx>,
}

#[derive(Deserialize)]
struct EventIx<'a> {
    #[serde(borrow, default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    severity: Option<i64>,
}

#[derive(Deserialize)]
struct HostIx<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    hostname: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ProcessIx<'a> {
    #[serde(default)]
    pid: Option<i64>,
    #[serde(borrow, default)]
    entity_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    executable: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    command_line: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    hash: Option<HashIx<'a>>,
    #[serde(borrow, default)]
    user: Option<NameIx<'a>>,
    #[serde(borrow, default)]
    parent: Option<ParentIx<'a>>,
}

#[derive(Deserialize)]
struct ParentIx<'a> {
    #[serde(borrow, default)]
    entity_id: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct HashIx<'a> {
    #[serde(borrow, default)]
    sha256: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct NameIx<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PathIx<'a> {
    #[serde(borrow, default)]
    path: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct EndpointIx<'a> {
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    #[serde(default)]
    port: Option<i64>,
    #[serde(borrow, default)]
    domain: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct DnsIx<'a> {
    #[serde(borrow, default)]
    question: Option<NameIx<'a>>,
}

#[derive(Deserialize)]
struct RuleIx<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct OspreyIx {
    #[serde(default)]
    cgroup_id: Option<i64>,
}

/// An address as 16 bytes (IPv4 as v4-mapped IPv6), so that a CIDR is a byte range.
pub fn ip_key(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn own(s: Option<Cow<'_, str>>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(Cow::into_owned)
}

/// Parses an RFC 3339 timestamp into ns since the epoch.
pub fn parse_ts(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s).ok()?;
    i64::try_from(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos()).ok()
}

/// Reads the index columns of one ECS document. `ts_ns` overrides `@timestamp` when the caller
/// knows it (the agent's own events).
pub fn row(json: &[u8], ts_ns: Option<i64>) -> Result<Row, serde_json::Error> {
    let d: Doc = serde_json::from_slice(json)?;
    let ev = d.event;
    let (kind, action, event_id, severity) = match ev {
        Some(e) => (own(e.kind).unwrap_or_else(|| "event".into()), own(e.action).unwrap_or_default(), own(e.id), e.severity),
        None => ("event".into(), String::new(), None, None),
    };
    let lineage = action == "exec" || action == "fork";
    let mut r = Row {
        ts_ns: ts_ns.or_else(|| d.timestamp.as_deref().and_then(parse_ts)).unwrap_or(0),
        host: d.host.and_then(|h| own(h.id).or(own(h.hostname))).unwrap_or_default(),
        alert: if kind == "alert" { event_id } else { None },
        severity,
        kind,
        ..Row::default()
    };
    if let Some(p) = d.process {
        r.pid = p.pid;
        r.entity = own(p.entity_id);
        r.exe = own(p.executable);
        r.sha256 = p.hash.and_then(|h| own(h.sha256)).map(|h| h.to_ascii_lowercase());
        r.user = p.user.and_then(|u| own(u.name));
        if lineage {
            r.parent = p.parent.and_then(|x| own(x.entity_id));
        }
        if action == "exec" {
            r.cmdline = own(p.command_line);
        }
    }
    if r.user.is_none() {
        r.user = d.user.and_then(|u| own(u.name));
    }
    r.path = d.file.and_then(|f| own(f.path));
    let ip = |e: &EndpointIx| e.ip.as_deref().and_then(|s| s.parse::<IpAddr>().ok()).map(ip_key);
    let mut domain = None;
    if let Some(s) = &d.source {
        (r.src_ip, r.src_port) = (ip(s), s.port);
    }
    if let Some(t) = &d.destination {
        (r.dst_ip, r.dst_port) = (ip(t), t.port);
        domain = t.domain.as_deref().map(str::to_owned);
    }
    if let Some(q) = d.dns.and_then(|x| x.question).and_then(|q| own(q.name)) {
        domain = Some(q);
    }
    r.domain = domain.filter(|s| !s.is_empty()).map(|s| s.trim_end_matches('.').to_ascii_lowercase());
    r.rule = d.rule.and_then(|x| own(x.id).or(own(x.name)));
    r.cgroup = d.osprey.and_then(|o| o.cgroup_id);
    r.action = action;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_hunted_fields() {
        let doc = br#"{"@timestamp":"2026-11-22T00:43:04.5Z","event":{"kind":"event","action":"exec"},
            "host":{"hostname":"vm","id":"h1"},
            "process":{"pid":7,"entity_id":"e7","executable":"/usr/bin/curl","command_line":"curl x",
              "hash":{"sha256":"ABC"},"user":{"id":"0","name":"root"},"parent":{"entity_id":"e1","pid":1},
              "ancestry":[{"pid":1}]},
            "osprey":{"cgroup_id":42,"exec":{"inode":1}}}"#;
        let r = row(doc, None).unwrap();
        assert_eq!(r.ts_ns, 1_795_308_184_500_000_000);
        assert_eq!((r.host.as_str(), r.kind.as_str(), r.action.as_str()), ("h1", "event", "exec"));
        assert_eq!((r.entity.as_deref(), r.parent.as_deref(), r.pid), (Some("e7"), Some("e1"), Some(7)));
        assert_eq!((r.exe.as_deref(), r.cmdline.as_deref()), (Some("/usr/bin/curl"), Some("curl x")));
        assert_eq!((r.sha256.as_deref(), r.user.as_deref(), r.cgroup), (Some("abc"), Some("root"), Some(42)));

        let net = br#"{"@timestamp":"2026-11-22T00:43:04Z","event":{"kind":"event","action":"connection_attempted"},
            "process":{"pid":7,"entity_id":"e7","parent":{"entity_id":"e1"},"command_line":"curl x"},
            "source":{"ip":"10.0.0.1","port":5555},"destination":{"ip":"::1","port":443,"domain":"Evil.Example."}}"#;
        let r = row(net, Some(5)).unwrap();
        assert_eq!(r.ts_ns, 5);
        assert_eq!((r.parent, r.cmdline), (None, None), "lineage and identity only on exec/fork");
        assert_eq!(r.src_ip, Some(ip_key("10.0.0.1".parse().unwrap())));
        assert_eq!((r.src_port, r.dst_port), (Some(5555), Some(443)));
        assert_eq!(r.dst_ip, Some(ip_key("::1".parse().unwrap())));
        assert_eq!(r.domain.as_deref(), Some("evil.example"));

        let alert = br#"{"event":{"kind":"alert","action":"alert","id":"a1"},"rule":{"id":"r1","name":"R"}}"#;
        let r = row(alert, None).unwrap();
        assert_eq!((r.alert.as_deref(), r.rule.as_deref()), (Some("a1"), Some("r1")));
        assert!(row(b"[1,2]", None).is_err());
    }
}
