//! Parts of a document that are printed when it is serialised, not when it is built: most
//! documents are read for a few fields only (the detector's view, the recorder's index row), and
//! the arguments and command line of a process otherwise cost an allocation per argument.

use std::{borrow::Cow, cell::RefCell, fmt, hash::{Hash, Hasher}, sync::Arc};

use serde::{ser::SerializeSeq, Serialize};
use serde_json::value::RawValue;

use super::{print, EventMeta, Id};
use crate::{
    enrich::Ancestry,
    process::{
        table::{push_command_line, Image},
        EntityIds, Host,
    },
};

/// A process's arguments: an exec record's, or a process image's.
#[derive(Debug, Clone, Copy)]
pub(super) enum Args<'a> {
    Record(&'a [String]),
    Image(&'a Image),
}

impl Serialize for Args<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self {
            Args::Record(a) => a.serialize(s),
            Args::Image(img) => {
                let mut seq = s.serialize_seq(Some(img.args_count()))?;
                for a in img.args() {
                    seq.serialize_element(a)?;
                }
                seq.end()
            }
        }
    }
}

/// A process's command line: an exec record's arguments shell-quoted (`a 'b c'`), or a process
/// image's (quoted the same way when it was made).
#[derive(Debug, Clone, Copy)]
pub(super) enum CommandLine<'a> {
    Record(&'a [String]),
    Image(&'a Image),
}

impl<'a> CommandLine<'a> {
    /// The command line: an image's as it is, a record's built the same way
    /// ([`push_command_line`]).
    pub(super) fn text(&self) -> Cow<'a, str> {
        match *self {
            CommandLine::Image(img) => Cow::Borrowed(img.command_line()),
            CommandLine::Record(args) => {
                let mut line = String::with_capacity(args.iter().map(|a| a.len() + 3).sum());
                push_command_line(&mut line, args.iter().map(String::as_str));
                Cow::Owned(line)
            }
        }
    }
}

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl Serialize for CommandLine<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// An entity id: known (the process table's), or to be derived from pid and start time only
/// if the document is printed (a parent's, which the table's context usually replaces).
#[derive(Debug, Clone)]
pub(super) enum EntityId<'a> {
    Known(Cow<'a, str>),
    Of { ids: &'a EntityIds, pid: u32, start_ns: u64 },
}

impl Default for EntityId<'_> {
    fn default() -> Self {
        EntityId::Known(Cow::Borrowed(""))
    }
}

impl EntityId<'_> {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            EntityId::Known(s) => Cow::Borrowed(s),
            EntityId::Of { ids, pid, start_ns } => Cow::Owned(ids.entity_id(*pid, *start_ns)),
        }
    }
}

impl Serialize for EntityId<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

/// A sha256: the table's digest (printed as hex when serialised), or text at hand.
#[derive(Debug, Clone, Copy)]
pub(super) enum Sha256<'a> {
    Digest(crate::process::hash::Sha256Digest),
    Text(&'a str),
}

impl Sha256<'_> {
    pub(super) fn text(&self) -> Cow<'_, str> {
        match self {
            Sha256::Digest(d) => Cow::Owned(d.to_hex()),
            Sha256::Text(t) => Cow::Borrowed(t),
        }
    }
}

impl Serialize for Sha256<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Sha256::Digest(d) => d.serialize(s),
            Sha256::Text(t) => s.serialize_str(t),
        }
    }
}

/// `process.ancestry`: serialised element by element, or (for serde_json's printer only, see
/// [`super::Doc::printing`]) as the JSON the ancestry printed once for all its events.
#[derive(Debug, Clone, Copy)]
pub(super) enum AncestryDoc<'a> {
    List(&'a Ancestry),
    Printed(&'a Ancestry),
}

impl Serialize for AncestryDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AncestryDoc::List(a) => a[..].serialize(s),
            AncestryDoc::Printed(a) => a.json().serialize(s),
        }
    }
}

/// A number ECS has as a string (a user or group id, an inode): printed when serialised.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NumText<T>(pub T);

impl<T: itoa::Integer + Copy> Serialize for NumText<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(itoa::Buffer::new().format(self.0))
    }
}

/// A file mode in octal, as ECS has it (`"755"`): printed when serialised.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Octal(pub u32);

impl Serialize for Octal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.text(&mut [0; 11]))
    }
}

/// `host`: the host, or (for [`super::print`] only, once `printed`) the JSON it printed once.
#[derive(Debug, Clone, Copy)]
pub(super) struct HostDoc<'a> {
    pub host: &'a Host,
    pub json: &'a RawValue,
    pub printed: bool,
}

impl Serialize for HostDoc<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.printed {
            true => self.json.serialize(s),
            false => self.host.serialize(s),
        }
    }
}

/// Printed `event` objects kept per thread, by the static strings they are made of.
const EVENT_KINDS: usize = 1024;

/// `"event":{…}` as [`print`] prints `m`, printed once per thread for each kind of event and
/// kept for good (kinds are made of the code's own static strings: a few hundred at most;
/// past [`EVENT_KINDS`], or for an event with an id, a severity or a duration, `None`).
pub(super) fn printed_event(m: &EventMeta) -> Option<&'static str> {
    type Key = [(usize, usize); 7];
    thread_local! {
        static PRINTED: RefCell<rustc_hash::FxHashMap<Key, &'static str>> = RefCell::default();
    }
    if m.id.is_some() || m.severity.is_some() || m.duration.is_some() {
        return None;
    }
    let at = |s: &'static str| (s.as_ptr() as usize, s.len());
    let outcome = m.outcome.map_or((0, 0), at);
    let key = [at(m.kind), at(m.category[0]), at(m.type_[0]), at(m.action), at(m.module), at(m.dataset), outcome];
    PRINTED.with(|p| {
        if let Some(text) = p.borrow().get(&key) {
            return Some(*text);
        }
        let mut p = p.borrow_mut();
        if p.len() >= EVENT_KINDS {
            return None;
        }
        #[derive(Serialize)]
        struct Field<'m> {
            event: &'m EventMeta,
        }
        let text: &'static str = print::fields(&Field { event: m }).ok()?.leak();
        p.insert(key, text);
        Some(text)
    })
}

/// Sets of printed ids kept per thread (cleared when full).
const ID_SETS: usize = 4096;

/// `"user":{…},"group":{…},"real_user":{…},"real_group":{…}` as [`print`] prints `ids`,
/// printed once per thread for each set of ids and names (`None`: a set that shares its hash
/// with another one kept).
pub(super) fn printed_ids(ids: [&Id<'_>; 4]) -> Option<Arc<str>> {
    #[derive(Clone)]
    struct Kept {
        ids: [u32; 4],
        names: [Option<Box<str>>; 4],
        text: Arc<str>,
    }
    thread_local! {
        static PRINTED: RefCell<rustc_hash::FxHashMap<u64, Kept>> = RefCell::default();
        /// The set printed last: most events are of the same user as the one before.
        static LAST: RefCell<Option<Kept>> = const { RefCell::new(None) };
    }
    let same = |k: &Kept| k.ids.iter().zip(ids).all(|(a, b)| *a == b.id.0) && k.names.iter().zip(ids).all(|(a, b)| a.as_deref() == b.name);
    if let Ok(Some(text)) = LAST.try_with(|l| l.borrow().as_ref().filter(|k| same(k)).map(|k| Arc::clone(&k.text))) {
        return Some(text);
    }
    let mut h = rustc_hash::FxHasher::default();
    for id in ids {
        (id.id.0, id.name).hash(&mut h);
    }
    let key = h.finish();
    let remember = |k: &Kept| {
        let _ = LAST.try_with(|l| *l.borrow_mut() = Some(k.clone()));
    };
    PRINTED.with(|p| {
        if let Some(k) = p.borrow().get(&key) {
            if !same(k) {
                return None;
            }
            remember(k);
            return Some(Arc::clone(&k.text));
        }
        let mut p = p.borrow_mut();
        if p.len() >= ID_SETS {
            p.clear();
        }
        #[derive(Serialize)]
        struct Fields<'i, 'a> {
            user: &'i Id<'a>,
            group: &'i Id<'a>,
            real_user: &'i Id<'a>,
            real_group: &'i Id<'a>,
        }
        let [user, group, real_user, real_group] = ids;
        let text: Arc<str> = print::fields(&Fields { user, group, real_user, real_group }).ok()?.into();
        let kept = Kept { ids: ids.map(|i| i.id.0), names: ids.map(|i| i.name.map(Box::from)), text: Arc::clone(&text) };
        remember(&kept);
        p.insert(key, kept);
        Some(text)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(v: u32, name: Option<&str>) -> Id<'_> {
        Id { id: NumText(v), name }
    }

    #[test]
    fn numbers_print_as_the_strings_ecs_has() {
        for v in [0, 1, 7, 8, 0o644, 0o100755, 0o7777, u32::MAX] {
            assert_eq!(serde_json::to_value(Octal(v)).unwrap(), format!("{v:o}"));
            assert_eq!(serde_json::to_value(NumText(v)).unwrap(), v.to_string());
        }
        for v in [0, 42, u64::MAX] {
            assert_eq!(serde_json::to_value(NumText(v)).unwrap(), v.to_string());
        }
    }

    #[test]
    fn printed_ids_are_the_fields_and_kept_per_set() {
        let (a, b) = ([id(0, Some("root")), id(0, None), id(5, Some("x")), id(6, None)], [id(0, Some("rooT")), id(0, None), id(5, Some("x")), id(6, None)]);
        let want = |s: &[Id<'_>; 4]| {
            let mut v = serde_json::json!({"user": {"id": s[0].id.0.to_string(), "name": s[0].name}, "group": {"id": "0"}, "real_user": {"id": "5", "name": "x"}, "real_group": {"id": "6"}});
            if s[0].name.is_none() {
                v["user"].as_object_mut().unwrap().remove("name");
            }
            v
        };
        let print = |s: &[Id<'_>; 4]| printed_ids([&s[0], &s[1], &s[2], &s[3]]).unwrap();
        let (pa, pb) = (print(&a), print(&b));
        for (p, s) in [(&pa, &a), (&pb, &b)] {
            assert_eq!(serde_json::from_str::<serde_json::Value>(&format!("{{{p}}}")).unwrap(), want(s), "{p}");
        }
        assert!(Arc::ptr_eq(&pa, &print(&a)), "a set printed once is kept");
        assert!(Arc::ptr_eq(&pa, &print(&a)), "and the set printed last");
        assert!(Arc::ptr_eq(&pb, &print(&b)));
        assert_ne!(pa, pb, "names differing in one letter are another set");
    }
}
