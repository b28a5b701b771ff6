//! Per-event evaluation state: each field an event is asked for is fetched and lowercased at most
//! once per event, whatever the number of rules that test it. Buffers are reused across events.

use super::fields::{EventFields, Field, FieldId, FieldValue, Scalar};
use super::pattern::lower_into;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Presence {
    #[default]
    Missing,
    Null,
    /// Present, not a scalar.
    Other,
    /// Present with `len` scalar values (texts hold their lowercased forms).
    Values,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u64,
    presence: Presence,
    texts: Vec<String>,
    len: usize,
    /// The values as they are (for `cased` and regular expressions), filled on demand.
    orig_generation: u64,
    orig: Vec<String>,
    orig_len: usize,
}

/// Reusable scratch space for evaluating events (one per evaluating thread).
#[derive(Debug, Default)]
pub struct Scratch {
    generation: u64,
    slots: Vec<Slot>,
    keyword_generation: u64,
    keyword_texts: Vec<String>,
    keyword_len: usize,
    pub(crate) bits: Vec<u64>,
    pub(crate) prefilter: super::prefilter::Bits,
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts a new event: everything cached is now stale.
    pub(crate) fn next_event(&mut self, n_fields: usize) {
        self.generation = self.generation.wrapping_add(1);
        if self.slots.len() < n_fields {
            self.slots.resize_with(n_fields, Slot::default);
        }
    }
}

fn fill(texts: &mut Vec<String>, len: &mut usize, s: &str) {
    if texts.len() <= *len {
        texts.push(String::new());
    }
    if let Some(t) = texts.get_mut(*len) {
        t.clear();
        lower_into(s, t);
    }
    *len += 1;
}

fn fill_as_is(texts: &mut Vec<String>, len: &mut usize, s: &super::fields::Scalar<'_>) {
    if texts.len() <= *len {
        texts.push(String::new());
    }
    if let Some(t) = texts.get_mut(*len) {
        t.clear();
        s.write_text(t);
    }
    *len += 1;
}

/// An event being evaluated, with its per-event caches.
pub(crate) struct Ctx<'a> {
    pub ev: &'a dyn EventFields,
    pub fields: &'a [Field],
    scratch: &'a mut Scratch,
}

impl<'a> Ctx<'a> {
    pub fn new(ev: &'a dyn EventFields, fields: &'a [Field], scratch: &'a mut Scratch) -> Self {
        scratch.next_event(fields.len());
        Self { ev, fields, scratch }
    }

    /// The raw value of a field (for case-sensitive, numeric, regex and CIDR tests).
    pub fn raw(&self, id: FieldId) -> FieldValue<'a> {
        match self.fields.get(id.index()) {
            Some(f) => self.ev.get(f),
            None => FieldValue::Missing,
        }
    }

    /// Whether the field is there, and its values lowercased.
    pub fn lowered(&mut self, id: FieldId) -> (Presence, &[String]) {
        let gen = self.scratch.generation;
        let Some(field) = self.fields.get(id.index()) else { return (Presence::Missing, &[]) };
        let ev = self.ev;
        let Some(slot) = self.scratch.slots.get_mut(id.index()) else { return (Presence::Missing, &[]) };
        if slot.generation != gen {
            slot.generation = gen;
            slot.len = 0;
            slot.presence = match ev.get(field) {
                FieldValue::Missing => Presence::Missing,
                FieldValue::Null => Presence::Null,
                FieldValue::Other => Presence::Other,
                v => {
                    v.for_each(|s| s.with_text(|t| fill(&mut slot.texts, &mut slot.len, t)));
                    Presence::Values
                }
            };
        }
        (slot.presence, slot.texts.get(..slot.len).unwrap_or(&[]))
    }

    /// `f` on each of the field's values as the prefilter scans them (with automata that ignore
    /// ASCII case): as they are when they are all ASCII, no copy made; lowercased otherwise
    /// (non-ASCII letters can lowercase to ASCII ones: the Kelvin sign to `k`), and then kept
    /// for the matchers.
    pub fn scan_texts(&mut self, id: FieldId, mut f: impl FnMut(&str)) {
        if let Some(slot) = self.scratch.slots.get(id.index()) {
            if slot.generation == self.scratch.generation {
                slot.texts.get(..slot.len).unwrap_or(&[]).iter().for_each(|t| f(t));
                return;
            }
        }
        let Some(field) = self.fields.get(id.index()) else { return };
        let v = self.ev.get(field);
        if !v.any(|s| matches!(s, Scalar::Str(t) if !t.is_ascii())) {
            v.for_each(|s| s.with_text(&mut f));
            return;
        }
        drop(v);
        self.lowered(id).1.iter().for_each(|t| f(t));
    }

    /// The field's values as text, case preserved.
    pub fn original(&mut self, id: FieldId) -> &[String] {
        let gen = self.scratch.generation;
        let Some(field) = self.fields.get(id.index()) else { return &[] };
        let ev = self.ev;
        let Some(slot) = self.scratch.slots.get_mut(id.index()) else { return &[] };
        if slot.orig_generation != gen {
            slot.orig_generation = gen;
            slot.orig_len = 0;
            let (texts, len) = (&mut slot.orig, &mut slot.orig_len);
            ev.get(field).for_each(|s| fill_as_is(texts, len, s));
        }
        slot.orig.get(..slot.orig_len).unwrap_or(&[])
    }

    /// Every string of the event, lowercased (keyword searches).
    pub fn keyword_texts(&mut self) -> &[String] {
        let s = &mut *self.scratch;
        if s.keyword_generation != s.generation {
            s.keyword_generation = s.generation;
            s.keyword_len = 0;
            let (texts, len) = (&mut s.keyword_texts, &mut s.keyword_len);
            self.ev.any_string(&mut |x| {
                fill(texts, len, x);
                false
            });
        }
        s.keyword_texts.get(..s.keyword_len).unwrap_or(&[])
    }
}
