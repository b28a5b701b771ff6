//! An event as the detector reads it, straight from its typed ECS document: the fields rules
//! name most are read from the document's own fields ([`EcsView::direct`]); the others are
//! flattened out of the document ([`crate::detect::flat`]) instead of building its
//! `serde_json::Value`, which is built only when needed — for an alert's trigger, or for a field
//! or keyword search the rule set's table does not cover.

use std::{
    borrow::Cow,
    cell::{OnceCell, RefCell},
};

use serde_json::Value;

use super::{lazy::CommandLine, Doc, Ecs, Event, EventMeta};
use crate::detect::{
    flat::{self, Paths},
    json::{any_string_of, field_of},
    Category, EventFields, Field, FieldValue, Known, RuleSet, Scalar,
};

pub struct EcsView<'a> {
    doc: &'a Doc<'a>,
    paths: &'a Paths,
    /// The rule set's fields, flattened out of the document on the first read (an event no
    /// rule reads a field of costs no walk).
    values: OnceCell<Vec<FieldValue<'static>>>,
    category: Option<Category>,
    timestamp_ns: u64,
    json: OnceCell<Value>,
}

impl Ecs {
    /// `f` of `ev` as `rules` read it. The view borrows a document filled where it lies (a
    /// document is kilobytes: returning it, or a view holding it, costs a memcpy each).
    pub fn with_view<R>(&self, ev: &Event, rules: &RuleSet, f: impl FnOnce(EcsView<'_>) -> R) -> R {
        let mut doc = self.blank();
        self.fill(ev, &mut doc);
        let category = category_of(&doc.event);
        f(EcsView { doc: &doc, paths: rules.flat_paths(), values: OnceCell::new(), category, timestamp_ns: ev.wall_ns, json: OnceCell::new() })
    }
}

/// Event kinds whose category is kept per thread (they are made of the code's static strings).
const KINDS: usize = 1024;

/// The rules' category of an event of this kind: classified once per thread for each kind, by
/// the static strings it is made of (matching `event.action` against every category's names
/// costs a few hundred instructions an event).
fn category_of(m: &EventMeta) -> Option<Category> {
    type Key = [(usize, usize); 3];
    thread_local! {
        static KNOWN: RefCell<rustc_hash::FxHashMap<Key, Option<Category>>> = RefCell::default();
    }
    let at = |s: &'static str| (s.as_ptr() as usize, s.len());
    let key = [at(m.category[0]), at(m.type_[0]), at(m.action)];
    let classify = || Category::from_ecs(&m.category, &m.type_, m.action);
    KNOWN.with(|k| {
        if let Some(c) = k.borrow().get(&key) {
            return *c;
        }
        let c = classify();
        let mut k = k.borrow_mut();
        if k.len() < KINDS {
            k.insert(key, c);
        }
        c
    })
}

impl EcsView<'_> {
    /// The event's ECS JSON, as [`Ecs::to_value`] gives it (built on the first call).
    pub fn json(&self) -> &Value {
        self.json.get_or_init(|| serde_json::to_value(self.doc).expect("serialising an event cannot fail"))
    }

    /// The event's ECS JSON, without copying it if it was built already.
    pub fn into_json(self) -> Value {
        self.json();
        self.json.into_inner().unwrap_or_default()
    }
}

fn text(v: Option<&str>) -> FieldValue<'_> {
    v.map_or(FieldValue::Missing, |v| FieldValue::One(Scalar::Str(Cow::Borrowed(v))))
}

fn command_line<'a>(c: Option<&CommandLine<'a>>) -> FieldValue<'a> {
    c.map_or(FieldValue::Missing, |c| FieldValue::One(Scalar::Str(c.text())))
}

impl<'a> EcsView<'a> {
    /// A field read from the document's own fields, as its JSON would give it (`None`: not one
    /// of these; it is flattened out of the document). The fields most rules name, so that most
    /// events are matched without walking their document.
    fn direct(&self, k: Known) -> Option<FieldValue<'a>> {
        let d: &Doc<'a> = self.doc;
        let p = d.process.as_ref();
        let parent = p.and_then(|p| p.parent.as_ref());
        let file = d.file.as_ref();
        Some(match k {
            Known::EventAction => text(Some(d.event.action)),
            Known::ProcessPid => p.map_or(FieldValue::Missing, |p| FieldValue::One(Scalar::Int(p.pid.into()))),
            Known::ProcessExecutable => text(p.and_then(|p| p.executable)),
            Known::ProcessName => text(p.and_then(|p| p.name)),
            Known::ProcessCommandLine => command_line(p.and_then(|p| p.command_line.as_ref())),
            Known::ProcessWorkingDirectory => text(p.and_then(|p| p.working_directory)),
            Known::ProcessUserName => text(p.and_then(|p| p.user.as_ref()).and_then(|u| u.name)),
            Known::ProcessParentExecutable => text(parent.and_then(|x| x.executable)),
            Known::ProcessParentName => text(parent.and_then(|x| x.name)),
            Known::ProcessParentCommandLine => command_line(parent.and_then(|x| x.command_line.as_ref())),
            Known::FilePath => text(file.map(|f| f.path)),
            Known::FileName => text(file.map(|f| f.name)),
            Known::FileDirectory => text(file.map(|f| f.directory)),
            Known::FileOriginalPath => text(file.and_then(|f| f.ext.as_ref()).map(|e| e.original.path)),
            Known::ContainerId => text(d.container.as_ref().map(|c| c.id)),
            Known::OspreyExecSetuid | Known::OspreyExecMemfd | Known::OspreyExecDeleted => match d.osprey.exec.as_ref() {
                None => FieldValue::Missing,
                Some(x) => FieldValue::One(Scalar::Bool(match k {
                    Known::OspreyExecSetuid => x.setuid,
                    Known::OspreyExecMemfd => x.memfd,
                    _ => x.deleted,
                })),
            },
            _ => return None,
        })
    }
}

impl EventFields for EcsView<'_> {
    fn category(&self) -> Option<Category> {
        self.category
    }

    fn timestamp_ns(&self) -> Option<u64> {
        Some(self.timestamp_ns)
    }

    fn get(&self, field: &Field) -> FieldValue<'_> {
        if let Some(v) = field.known().and_then(|k| self.direct(k)) {
            return v;
        }
        let values = self.values.get_or_init(|| {
            let mut values = Vec::new();
            flat::flatten(self.doc, self.paths, &mut values);
            values
        });
        match values.get(field.id().index()) {
            Some(v) if self.paths.owns(field) => v.borrowed(),
            _ => field_of(self.json(), field),
        }
    }

    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        any_string_of(self.json(), f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use agent_common::{osprey_exec_flags as xf, osprey_file_op as fo, osprey_net_op as op, osprey_system_op as so};

    use super::*;
    use crate::{
        decode::{decode, raw},
        detect::{flat::all_paths, FieldId, JsonEvent},
        enrich::Enricher,
        event::{EventBody, Host},
        net::{dns::wire, record::raw as net_raw},
    };

    /// Enriched events of every record type the kernel sends, as the pipeline builds them.
    pub(crate) fn events(ecs: &Ecs) -> Vec<Event> {
        let cfg = crate::enrich::ProcessSection { hash: false, ..Default::default() };
        let (mut enrich, _late) = Enricher::new(&cfg, ecs.ids().clone());
        let q = wire::query(5, "evil.example", 1);
        let answer = wire::response(&q, 0, &["192.0.2.7".parse().unwrap()], 60).unwrap();
        let recs = vec![
            raw::exec(100, 10, "/usr/bin/bash", &["-bash"], "/home/u"),
            raw::fork(100, 101, 20),
            raw::exec(101, 30, "/usr/bin/curl", &["curl", "-s", "http://x/y z", "-o", "/tmp/p"], "/tmp"),
            raw::file(101, 40, fo::OSPREY_FILE_CREATE, "/tmp/p", None),
            raw::file(101, 41, fo::OSPREY_FILE_RENAME, "/tmp/p", Some("/tmp/q")),
            raw::file(101, 42, fo::OSPREY_FILE_CHMOD, "/tmp/q", None),
            raw::file(101, 43, fo::OSPREY_FILE_READ, "/etc/shadow", None),
            net_raw::net(101, 50, op::OSPREY_NET_CONNECT, false, "10.0.0.1:40000".parse().unwrap(), "192.0.2.7:443".parse().unwrap()),
            net_raw::dns(101, 51, true, "10.0.0.1:40001".parse().unwrap(), "10.0.0.53:53".parse().unwrap(), &answer),
            raw::system(101, so::OSPREY_SYS_PTRACE, 100, [16, 0, 0], ""),
            raw::system(101, so::OSPREY_SYS_MODULE_LOAD, 0, [0, 0, 0], "evil"),
            raw::exit(101, 9, 60),
        ];
        recs.iter()
            .map(|r| {
                let mut rec = decode(r).unwrap();
                if let crate::decode::Record::Exec(e) = &mut rec {
                    if e.exe_path == "/usr/bin/curl" {
                        // Some flags set, some not: each field reads its own.
                        e.flags = crate::decode::ExecFlags(xf::OSPREY_EXEC_MEMFD | xf::OSPREY_EXEC_SETUID);
                    }
                }
                enrich.on_arrival(&rec);
                let ctx = enrich.apply(&rec);
                Event { wall_ns: ecs.wall_ns(rec.header().ktime_ns), body: EventBody::Record(rec), ctx: Some(Arc::new(ctx)) }
            })
            .collect()
    }

    #[test]
    fn a_process_prints_one_command_line() {
        // Its exec's document (from the table's image of that exec) and its later events' agree.
        let ecs = Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000);
        let docs: Vec<serde_json::Value> = events(&ecs).iter().map(|ev| ecs.to_value(ev)).collect();
        let curl: Vec<&serde_json::Value> =
            docs.iter().filter(|v| v["process"]["pid"] == 101 && v["process"]["executable"] == "/usr/bin/curl").collect();
        assert_eq!(curl[0]["event"]["action"], "exec");
        assert!(curl.len() >= 5, "{}", curl.len());
        for v in curl {
            assert_eq!(v["process"]["command_line"], "curl -s 'http://x/y z' -o /tmp/p", "{}", v["event"]["action"]);
        }
    }

    #[test]
    fn the_printed_json_is_the_document() {
        let ecs = Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000);
        let mut with_ancestors = 0;
        let mut evs = events(&ecs);
        // The events that are not records (an alert naming a process, a late hash, a loss), a
        // record whose context has its image's hash, and one without a context.
        let ctx = evs[2].ctx.clone().expect("enriched");
        let f = crate::protect::tamper::Finding { kind: crate::protect::tamper::Kind::Blinded, summary: "s".into(), wait_seq: None, killed: false };
        let mut a = crate::protect::alert(&f, None, Vec::new(), Some(Arc::clone(&ctx)), evs[2].wall_ns);
        a.id = "alert-1".into();
        let late = crate::enrich::LateHash { process: ctx.process.clone(), sha256: "ab".repeat(32) };
        let mut hashed = (*ctx).clone();
        hashed.hash = Some(crate::process::hash::Sha256Digest::of(b"image"));
        let wall_ns = evs[2].wall_ns;
        let record = evs[3].body.clone();
        evs.extend([
            Event { wall_ns, body: EventBody::Alert(Box::new(a)), ctx: Some(Arc::clone(&ctx)) },
            Event { wall_ns, body: EventBody::Hash(late), ctx: None },
            Event { wall_ns, body: EventBody::Loss(vec![(agent_common::RecordType::Exec, 3), (agent_common::RecordType::File, 1)]), ctx: None },
            Event { wall_ns, body: record, ctx: Some(Arc::new(hashed)) },
            // An exit with a status (the others end by a signal), of a process the table lacks.
            Event { wall_ns, body: EventBody::Record(decode(&raw::exit(7, 3 << 8, 70)).unwrap()), ctx: None },
        ]);
        for ev in evs {
            let mut text = Vec::new();
            let facts = ecs.encode(&ev, &mut text).unwrap();
            let printed: serde_json::Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(printed, ecs.to_value(&ev));
            assert_eq!(facts.action, printed["event"]["action"]);
            // Byte for byte what serde_json prints of the document as it is (no printed parts).
            assert_eq!(String::from_utf8_lossy(&text), serde_json::to_string(&ecs.doc(&ev)).unwrap());
            // Twice: the second print copies the ancestry the first one printed.
            let mut again = Vec::new();
            ecs.write(&ev, &mut again).unwrap();
            assert_eq!(again, text);
            with_ancestors += usize::from(printed["process"]["ancestry"].as_array().is_some_and(|a| !a.is_empty()));
        }
        assert!(with_ancestors >= 5, "{with_ancestors}");
    }

    #[test]
    fn the_view_answers_every_field_as_the_json_does() {
        let ecs = Ecs::new(Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000);
        for ev in events(&ecs) {
            let json = ecs.to_value(&ev);
            let mut names = Vec::new();
            all_paths(&json, "", &mut names);
            names.extend(["nope", "process.nope.deeper", "process.args.x"].map(String::from));
            names.sort();
            names.dedup();
            // A rule set naming every one of them.
            let rules: String = names
                .iter()
                .enumerate()
                .map(|(i, n)| format!("title: R{i}\nid: r{i}\nlogsource: {{product: linux, category: process_creation}}\ndetection:\n    sel:\n        '{n}|exists': true\n    condition: sel\n---\n"))
                .collect();
            let (set, report) = RuleSet::from_sources([("all.yml", rules.as_str())]);
            assert!(report.is_ok(), "{:#?}", report.errors);
            let je = JsonEvent::new(&json);
            ecs.with_view(&ev, &set, |view| {
                assert_eq!(view.category(), je.category(), "{json}");
                assert_eq!(view.timestamp_ns(), je.timestamp_ns());
                let mut checked = 0;
                for f in set.fields().fields() {
                    assert!(set.flat_paths().owns(f));
                    assert_eq!(view.get(f), je.get(f), "{} in {json}", f.name());
                    checked += 1;
                }
                assert!(checked >= names.len(), "{checked} of {}", names.len());
                assert_eq!(view.json(), &json);
                // A field of another table is read from the JSON.
                let stranger = Field::new(FieldId(0), "process.pid");
                assert_eq!(view.get(&stranger), je.get(&stranger));
                assert_eq!(view.into_json(), json);
            });
        }
    }
}
