//! The recorder's index columns ([`Row`]) of an event, read from its typed ECS document: what
//! [`crate::recorder::index::row`] reads from the document's JSON, without printing and
//! re-parsing it (the recorder's writer gets both; this is the cheap way).

use std::{borrow::Cow, net::IpAddr};

use super::{Ecs, Event};
use crate::recorder::index::{ip_key, Row, RowRef};

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Lowercase, copied only when it is not already.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) { Cow::Owned(s.to_ascii_lowercase()) } else { Cow::Borrowed(s) }
}

impl Ecs {
    /// The event's index row, as [`crate::recorder::index::row`] reads it from the JSON.
    pub fn index_row(&self, ev: &Event) -> Row {
        self.with_index_row(ev, |r| r.to_row())
    }

    /// The event's index row handed to `f`, borrowed from the event where it can be (the
    /// recorder packs it straight away).
    pub fn with_index_row<R>(&self, ev: &Event, f: impl FnOnce(&RowRef<'_>) -> R) -> R {
        let mut d = self.blank();
        self.fill(ev, &mut d);
        let kind = non_empty(Some(d.event.kind)).unwrap_or("event");
        let action = d.event.action;
        let p = d.process.as_ref();
        let entity = p.map(|p| p.entity_id.text());
        let sha256 = p.and_then(|p| p.hash.as_ref()).map(|h| h.sha256.text());
        let sha256 = sha256.as_deref().and_then(|h| non_empty(Some(h))).map(lower);
        let parent = p.and_then(|p| p.parent.as_ref()).filter(|_| action == "exec" || action == "fork").map(|x| x.entity_id.text());
        let cmdline = p.and_then(|p| p.command_line).filter(|_| action == "exec").map(|c| c.to_string());
        let ip = |s: &str| s.parse::<IpAddr>().ok().map(ip_key);
        let (src, dst) = (d.source.as_ref(), d.destination.as_ref());
        let domain = match d.dns.as_ref().map(|x| x.question.name.as_str()).filter(|q| !q.is_empty()) {
            Some(q) => Some(q),
            None => dst.and_then(|t| t.domain),
        };
        let domain = non_empty(domain).map(|s| s.trim_end_matches('.')).map(lower);
        let r = RowRef {
            ts_ns: ev.wall_ns as i64,
            host: non_empty(Some(&d.host.host.id)).or_else(|| non_empty(Some(&d.host.host.hostname))).unwrap_or_default(),
            kind,
            action,
            entity: non_empty(entity.as_deref()),
            parent: non_empty(parent.as_deref()),
            pid: p.map(|p| p.pid.into()),
            exe: non_empty(p.and_then(|p| p.executable)),
            sha256: sha256.as_deref(),
            cmdline: non_empty(cmdline.as_deref()),
            user: non_empty(p.and_then(|p| p.user.as_ref()).and_then(|u| u.name)),
            path: non_empty(d.file.as_ref().map(|f| f.path)),
            src_ip: src.and_then(|s| ip(&s.ip)),
            src_port: src.and_then(|s| s.port).map(i64::from),
            dst_ip: dst.and_then(|t| ip(&t.ip)),
            dst_port: dst.and_then(|t| t.port).map(i64::from),
            domain: domain.as_deref(),
            alert: if kind == "alert" { non_empty(d.event.id.as_deref()) } else { None },
            rule: d.rule.as_ref().and_then(|x| non_empty(x.id).or_else(|| non_empty(Some(x.name)))),
            severity: d.event.severity.map(i64::from),
            cgroup: d.osprey.cgroup_id.map(|c| c as i64),
        };
        f(&r)
    }
}

#[cfg(test)]
mod tests {
    use crate::{
        event::{view::tests::events, Ecs, Host},
        recorder::index::row,
    };

    #[test]
    fn the_typed_row_is_the_row_read_from_the_json() {
        let ecs = Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000);
        let mut evs = events(&ecs);
        assert!(evs.len() >= 12);
        // An alert, with the context of the process it names.
        let f = crate::protect::tamper::Finding { kind: crate::protect::tamper::Kind::Blinded, summary: "s".into(), wait_seq: None, killed: false };
        let mut a = crate::protect::alert(&f, None, Vec::new(), evs[2].ctx.clone(), evs[2].wall_ns);
        a.id = "alert-1".into();
        evs.push(crate::event::Event { wall_ns: evs[2].wall_ns, body: crate::event::EventBody::Alert(Box::new(a)), ctx: evs[2].ctx.clone() });
        for ev in evs {
            let mut json = Vec::new();
            ecs.write(&ev, &mut json).unwrap();
            let r = ecs.index_row(&ev);
            assert_eq!(r, row(&json, Some(ev.wall_ns as i64)).unwrap(), "{}", String::from_utf8_lossy(&json));
            if r.kind == "alert" {
                assert_eq!((r.alert.as_deref(), r.entity.is_some(), r.rule.is_some()), (Some("alert-1"), true, true));
            }
        }
    }
}
