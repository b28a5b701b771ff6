//! The recorder's index columns ([`Row`]) of an event, read from its typed ECS document: what
//! [`crate::recorder::index::row`] reads from the document's JSON, without printing and
//! re-parsing it (the recorder's writer gets both; this is the cheap way).

use std::net::IpAddr;

use super::{Ecs, Event};
use crate::recorder::index::{ip_key, Row};

fn own(s: Option<&str>) -> Option<String> {
    s.filter(|s| !s.is_empty()).map(str::to_owned)
}

impl Ecs {
    /// The event's index row, as [`crate::recorder::index::row`] reads it from the JSON.
    pub fn index_row(&self, ev: &Event) -> Row {
        let d = self.doc(ev);
        let kind = own(Some(d.event.kind)).unwrap_or_else(|| "event".into());
        let action = d.event.action;
        let mut r = Row {
            ts_ns: ev.wall_ns as i64,
            host: own(Some(&d.host.host.id)).or_else(|| own(Some(&d.host.host.hostname))).unwrap_or_default(),
            alert: if kind == "alert" { own(d.event.id.as_deref()) } else { None },
            severity: d.event.severity.map(i64::from),
            kind,
            action: action.to_owned(),
            ..Row::default()
        };
        if let Some(p) = &d.process {
            r.pid = Some(p.pid.into());
            r.entity = own(Some(&p.entity_id.text()));
            r.exe = own(p.executable);
            r.sha256 = p.hash.as_ref().and_then(|h| own(Some(&h.sha256.text()))).map(|h| h.to_ascii_lowercase());
            r.user = p.user.as_ref().and_then(|u| own(u.name));
            if action == "exec" || action == "fork" {
                r.parent = p.parent.as_ref().and_then(|x| own(Some(&x.entity_id.text())));
            }
            if action == "exec" {
                r.cmdline = p.command_line.map(|c| c.to_string()).filter(|c| !c.is_empty());
            }
        }
        r.path = d.file.as_ref().and_then(|f| own(Some(f.path)));
        let ip = |s: &str| s.parse::<IpAddr>().ok().map(ip_key);
        let mut domain = None;
        if let Some(s) = &d.source {
            (r.src_ip, r.src_port) = (ip(&s.ip), s.port.map(i64::from));
        }
        if let Some(t) = &d.destination {
            (r.dst_ip, r.dst_port) = (ip(&t.ip), t.port.map(i64::from));
            domain = t.domain;
        }
        if let Some(q) = d.dns.as_ref().map(|x| x.question.name.as_str()).filter(|q| !q.is_empty()) {
            domain = Some(q);
        }
        r.domain = domain.filter(|s| !s.is_empty()).map(|s| s.trim_end_matches('.').to_ascii_lowercase());
        r.rule = d.rule.as_ref().and_then(|x| own(x.id).or_else(|| own(Some(x.name))));
        r.cgroup = d.osprey.cgroup_id.map(|c| c as i64);
        r
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
