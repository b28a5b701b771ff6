//! `osprey story --fleet URL`: the recorder's stories ([`Story::build`](crate::recorder::story::Story::build))
//! read from ClickHouse, with lineage stitched across hosts.
//!
//! A process X on host A whose outbound connection was established (`connection_established`:
//! source and destination address and port) is linked to the connection a listener L on another
//! host B accepted (`connection_accepted`, the same four values, within `window` of each other).
//! The process that handled it on B — the first child L started within `window` after the
//! accept (sshd forks one per login), else L itself — becomes a child of X: [`History::children`]
//! of X lists it, and [`History::process`] of it names X as its parent. One tree then spans both
//! hosts, and the walk up to the root cause crosses from B to A (a parent on another host is
//! never where a story starts). Entity ids need no namespacing: they hash the host's boot id.

use std::{cell::RefCell, collections::HashMap};

use serde::Deserialize;
use serde_json::Value;

use super::{lit, Fleet, FleetError};
use crate::recorder::story::{History, Proc, Recorded, StoryError};

/// How far apart in time the two ends of one connection may be recorded (clocks of two hosts).
pub const DEFAULT_WINDOW_NS: u64 = 5_000_000_000;

pub struct FleetHistory {
    fleet: Fleet,
    table: String,
    window: u64,
    /// The host of each entity seen so far: queries by entity then use the primary key.
    hosts: RefCell<HashMap<String, String>>,
}

impl From<FleetError> for StoryError {
    fn from(e: FleetError) -> Self {
        StoryError::Backend(e.to_string())
    }
}

#[derive(Deserialize)]
struct Lineage {
    parent: String,
    host: String,
    pid: u32,
    ts: u64,
    cgroup: u64,
    exe: String,
    cmdline: String,
    user: String,
}

#[derive(Deserialize)]
struct Conn {
    src_ip: String,
    src_port: u16,
    dst_ip: String,
    dst_port: u16,
    ts: u64,
}

#[derive(Deserialize)]
struct Peer {
    host: String,
    entity: String,
    ts: u64,
}

#[derive(Deserialize)]
struct Ent {
    entity: String,
}

#[derive(Deserialize)]
struct Started {
    entity: String,
}

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn fixed(hex: &str) -> String {
    format!("toFixedString(unhex({}), 16)", lit(hex))
}

impl FleetHistory {
    pub fn new(fleet: Fleet) -> Self {
        Self { table: fleet.table(), fleet, window: DEFAULT_WINDOW_NS, hosts: RefCell::default() }
    }

    pub fn with_window(mut self, ns: u64) -> Self {
        self.window = ns;
        self
    }

    /// ` AND host = '…'` when the entity's host is known.
    fn host_of(&self, entity: &str) -> String {
        self.hosts.borrow().get(entity).map(|h| format!("host = {} AND ", lit(h))).unwrap_or_default()
    }

    fn learn(&self, entity: &str, host: &str) {
        if !host.is_empty() {
            self.hosts.borrow_mut().insert(entity.to_owned(), host.to_owned());
        }
    }

    /// The process its own host recorded (no stitching).
    fn local_process(&self, entity: &str) -> Result<Option<Proc>, FleetError> {
        let e = lit(entity);
        let rows: Vec<Lineage> = self.fleet.rows(&format!(
            "SELECT parent, host, pid, ts, cgroup, exe, cmdline, user FROM {} WHERE {}entity = {e} AND (parent != '' OR cmdline != '') ORDER BY ts, id LIMIT 100",
            self.table,
            self.host_of(entity)
        ))?;
        let mut p = Proc { entity: entity.to_owned(), ..Proc::default() };
        let first = rows.iter().find(|r| !r.parent.is_empty());
        let exec = rows.iter().rev().find(|r| !r.cmdline.is_empty());
        if first.is_none() && exec.is_none() {
            // Seen only in other events (started before the agent): what they say.
            let any: Vec<Lineage> = self.fleet.rows(&format!(
                "SELECT parent, host, pid, ts, cgroup, exe, cmdline, user FROM {} WHERE {}entity = {e} ORDER BY ts, id LIMIT 1",
                self.table,
                self.host_of(entity)
            ))?;
            let Some(a) = any.into_iter().next() else { return Ok(None) };
            (p.host, p.pid, p.exe, p.user, p.start_ns) = (a.host, i64::from(a.pid), some(a.exe), some(a.user), a.ts as i64);
            p.cgroup = (a.cgroup != 0).then_some(a.cgroup as i64);
        } else {
            if let Some(f) = first {
                (p.parent, p.host, p.pid, p.start_ns) = (some(f.parent.clone()), f.host.clone(), i64::from(f.pid), f.ts as i64);
                p.cgroup = (f.cgroup != 0).then_some(f.cgroup as i64);
            }
            if let Some(x) = exec {
                (p.exe, p.cmdline, p.user) = (some(x.exe.clone()), some(x.cmdline.clone()), some(x.user.clone()));
                if x.cgroup != 0 {
                    p.cgroup = Some(x.cgroup as i64);
                }
                if p.host.is_empty() {
                    (p.host, p.pid, p.start_ns) = (x.host.clone(), i64::from(x.pid), x.ts as i64);
                }
            }
        }
        self.learn(entity, &p.host);
        if let Some(parent) = &p.parent {
            self.learn(parent, &p.host);
        }
        Ok(Some(p))
    }

    /// Connections of `entity` on `host` with this action, optionally in a time range.
    fn conns(&self, host: &str, entity: &str, action: &str, range: Option<(u64, u64)>) -> Result<Vec<Conn>, FleetError> {
        let time = range.map(|(a, b)| format!(" AND ts BETWEEN {a} AND {b}")).unwrap_or_default();
        self.fleet.rows(&format!(
            "SELECT hex(src_ip) AS src_ip, src_port, hex(dst_ip) AS dst_ip, dst_port, ts FROM {} WHERE host = {} AND entity = {} AND action = {}{time} AND src_port != 0 ORDER BY ts LIMIT 1000",
            self.table,
            lit(host),
            lit(entity),
            lit(action)
        ))
    }

    /// The other end of `c` recorded on another host than `host` with one of `actions`.
    fn peer(&self, host: &str, c: &Conn, actions: &str) -> Result<Vec<Peer>, FleetError> {
        self.fleet.rows(&format!(
            "SELECT host, entity, ts FROM {} WHERE ts BETWEEN {} AND {} AND action IN ({actions}) AND host != {} AND entity != '' \
             AND src_ip = {} AND src_port = {} AND dst_ip = {} AND dst_port = {} ORDER BY ts LIMIT 10",
            self.table,
            c.ts.saturating_sub(self.window),
            c.ts + self.window,
            lit(host),
            fixed(&c.src_ip),
            c.src_port,
            fixed(&c.dst_ip),
            c.dst_port
        ))
    }

    /// The process that handled a connection `listener` accepted at `ts`: its first child
    /// started within the window, else the listener itself.
    fn handler(&self, host: &str, listener: &str, ts: u64) -> Result<String, FleetError> {
        let kids: Vec<Started> = self.fleet.rows(&format!(
            "SELECT entity, min(ts) AS start FROM {} WHERE host = {} AND parent = {} AND action IN ('fork', 'exec') \
             GROUP BY entity HAVING start BETWEEN {ts} AND {} ORDER BY start LIMIT 1",
            self.table,
            lit(host),
            lit(listener),
            ts + self.window
        ))?;
        Ok(kids.into_iter().next().map_or_else(|| listener.to_owned(), |k| k.entity))
    }

    /// The process on another host whose connection `p` (or the listener that started it)
    /// accepted to start its work: `p`'s parent across hosts.
    fn remote_parent(&self, p: &Proc) -> Result<Option<(String, String)>, FleetError> {
        let start = p.start_ns.max(0) as u64;
        let mut candidates = Vec::new();
        if let Some(l) = &p.parent {
            candidates.push((l.clone(), Some((start.saturating_sub(self.window), start))));
        }
        candidates.push((p.entity.clone(), None));
        for (listener, range) in candidates {
            for acc in self.conns(&p.host, &listener, "connection_accepted", range)?.iter().rev() {
                if self.handler(&p.host, &listener, acc.ts)? != p.entity {
                    continue;
                }
                let peers = self.peer(&p.host, acc, "'connection_established'")?;
                if let Some(x) = peers.into_iter().next() {
                    return Ok(Some((x.entity, x.host)));
                }
            }
        }
        Ok(None)
    }

    /// Processes on other hosts that handled connections `entity` made.
    fn remote_children(&self, entity: &str) -> Result<Vec<String>, FleetError> {
        let Some(host) = self.hosts.borrow().get(entity).cloned() else { return Ok(Vec::new()) };
        let mut out = Vec::new();
        for c in self.conns(&host, entity, "connection_established", None)? {
            for acc in self.peer(&host, &c, "'connection_accepted'")? {
                let h = self.handler(&acc.host, &acc.entity, acc.ts)?;
                self.learn(&h, &acc.host);
                if !out.contains(&h) {
                    out.push(h);
                }
            }
        }
        Ok(out)
    }
}

impl History for FleetHistory {
    fn alert(&self, id: &str) -> Result<Option<(Option<String>, Value)>, StoryError> {
        #[derive(Deserialize)]
        struct A {
            entity: String,
            host: String,
            doc: String,
        }
        let rows: Vec<A> = self.fleet.rows(&format!("SELECT entity, host, doc FROM {} PREWHERE alert = {} LIMIT 1", self.table, lit(id)))?;
        Ok(rows.into_iter().next().map(|a| {
            self.learn(&a.entity, &a.host);
            (some(a.entity), serde_json::from_str(&a.doc).unwrap_or(Value::Null))
        }))
    }

    fn process(&self, entity: &str) -> Result<Option<Proc>, StoryError> {
        let Some(mut p) = self.local_process(entity)? else { return Ok(None) };
        if let Some((x, host)) = self.remote_parent(&p)? {
            self.learn(&x, &host);
            p.parent = Some(x);
        }
        Ok(Some(p))
    }

    fn children(&self, entity: &str) -> Result<Vec<String>, StoryError> {
        let rows: Vec<Ent> = self.fleet.rows(&format!(
            "SELECT DISTINCT entity FROM {} WHERE {}parent = {} AND entity != ''",
            self.table,
            self.host_of(entity),
            lit(entity)
        ))?;
        let host = self.hosts.borrow().get(entity).cloned().unwrap_or_default();
        let mut kids: Vec<String> = rows.into_iter().map(|r| r.entity).collect();
        for k in &kids {
            self.learn(k, &host);
        }
        for r in self.remote_children(entity)? {
            if !kids.contains(&r) {
                kids.push(r);
            }
        }
        Ok(kids)
    }

    fn events(&self, entity: &str, limit: usize) -> Result<Vec<Recorded>, StoryError> {
        #[derive(Deserialize)]
        struct E {
            id: u64,
            ts: u64,
            kind: String,
            action: String,
            doc: String,
        }
        let rows: Vec<E> = self.fleet.rows(&format!(
            "SELECT id, ts, kind, action, doc FROM {} PREWHERE {}entity = {} ORDER BY ts, id LIMIT {limit}",
            self.table,
            self.host_of(entity),
            lit(entity)
        ))?;
        Ok(rows
            .into_iter()
            .map(|e| Recorded {
                id: (e.id >> 1) as i64,
                ts_ns: e.ts as i64,
                kind: e.kind,
                action: e.action,
                doc: serde_json::from_str(&e.doc).unwrap_or(Value::Null),
            })
            .collect())
    }
}
