//! A typed document read as rules read its JSON, without building the JSON.
//!
//! [`flatten`] drives a document's `Serialize` implementation through a serializer that follows
//! only the paths some rule's field needs (a subtree no field lies under is never visited) and
//! stores each field's value by [`FieldId`]. The result answers [`EventFields::get`] exactly as
//! [`super::JsonEvent`] would over the document's JSON — nested objects, arrays of scalars
//! (`process.args`), paths through arrays of objects (every element's value), `null`, objects as
//! [`FieldValue::Other`] — and costs a fraction of building a `serde_json::Value`.
//!
//! [`EventFields::get`]: super::EventFields::get

use std::{borrow::Cow, fmt};

use rustc_hash::FxHashMap;
use serde::{ser, Serialize};

use super::fields::{Field, FieldId, FieldValue, Scalar};

/// The fields of one rule set as a tree of their dotted paths' segments.
#[derive(Debug)]
pub struct Paths {
    /// Node 0 is the document's root.
    nodes: Vec<PathNode>,
    names: Vec<Box<str>>,
}

#[derive(Debug, Default)]
struct PathNode {
    /// The field whose path ends here, if any.
    field: Option<FieldId>,
    /// Next segment → node. (The keys are the rule set's own field names: no input chooses
    /// them, so a fast hash is safe.)
    children: FxHashMap<Box<str>, u32>,
}

impl Default for Paths {
    fn default() -> Self {
        Paths { nodes: vec![PathNode::default()], names: Vec::new() }
    }
}

impl Paths {
    pub fn new(fields: &[Field]) -> Self {
        let mut p = Paths::default();
        for f in fields {
            let name = f.name();
            let mut node = 0;
            for seg in name.split('.') {
                let next = p.nodes.len() as u32;
                let child = *p.nodes[node].children.entry(seg.into()).or_insert(next);
                if child == next {
                    p.nodes.push(PathNode::default());
                }
                node = child as usize;
            }
            p.nodes[node].field = Some(f.id());
            let i = f.id().index();
            if p.names.len() <= i {
                p.names.resize(i + 1, Box::from(""));
            }
            p.names[i] = name.into();
        }
        p
    }

    /// True if `field` is the field this set knows by its id (not a field of another table).
    pub fn owns(&self, field: &Field) -> bool {
        self.names.get(field.id().index()).is_some_and(|n| **n == *field.name())
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    fn at(&self, node: u32, crossed: bool) -> At {
        let n = &self.nodes[node as usize];
        At { node, field: n.field, prefix: !n.children.is_empty(), crossed, elem: false }
    }
}

/// Fills `out` (indexed by [`FieldId`]) with the value of every field of `paths` in `doc`.
pub fn flatten<T: Serialize + ?Sized>(doc: &T, paths: &Paths, out: &mut Vec<FieldValue<'static>>) {
    out.clear();
    out.resize(paths.len(), FieldValue::Missing);
    let mut w = Walker { paths, out };
    // Serialising into the walker cannot fail but for a custom error no document raises.
    let _ = doc.serialize(Node { w: &mut w, at: paths.at(0, false) });
}

struct Walker<'p, 'o> {
    paths: &'p Paths,
    out: &'o mut Vec<FieldValue<'static>>,
}

/// Where a node sits relative to the fields.
#[derive(Clone, Copy)]
struct At {
    /// The node of [`Paths`] at this node's path.
    node: u32,
    /// The field whose path this node is at.
    field: Option<FieldId>,
    /// Some field lies below this node.
    prefix: bool,
    /// The path crossed an array on the way here (values are gathered, as JSON fan-out does).
    crossed: bool,
    /// This node is an element of an array sitting at `field`'s path: only scalars count.
    elem: bool,
}

impl At {
    /// The node is the field's value itself (not gathered through an array).
    fn whole(self) -> Option<FieldId> {
        self.field.filter(|_| !self.crossed && !self.elem)
    }
}

impl Walker<'_, '_> {
    fn slot(&mut self, f: FieldId) -> Option<&mut FieldValue<'static>> {
        self.out.get_mut(f.index())
    }

    fn set(&mut self, f: FieldId, v: FieldValue<'static>) {
        if let Some(s) = self.slot(f) {
            *s = v;
        }
    }

    fn scalar(&mut self, at: At, v: Scalar<'static>) {
        let Some(f) = at.field else { return };
        if at.whole().is_some() {
            return self.set(f, FieldValue::One(v));
        }
        match self.slot(f) {
            Some(FieldValue::Many(list)) => list.push(v),
            Some(s) => *s = FieldValue::Many(vec![v]),
            None => {}
        }
    }

    /// The child at `key` of an object at `at`, if any field needs it.
    fn enter(&self, at: At, key: &str) -> Option<At> {
        if !at.prefix {
            return None;
        }
        let child = *self.paths.nodes[at.node as usize].children.get(key)?;
        Some(self.paths.at(child, at.crossed))
    }

    fn object(&mut self, at: At) {
        if let Some(f) = at.whole() {
            self.set(f, FieldValue::Other);
        }
    }
}

#[derive(Debug)]
pub struct Never;

impl fmt::Display for Never {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unsupported")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Never
    }
}

struct Node<'a, 'p, 'o> {
    w: &'a mut Walker<'p, 'o>,
    at: At,
}

/// An array or object being visited.
struct Compound<'a, 'p, 'o> {
    w: &'a mut Walker<'p, 'o>,
    at: At,
    /// Objects with dynamic keys: the key just entered, if a field needs its value.
    pending: Option<At>,
}

impl<'a, 'p, 'o> Compound<'a, 'p, 'o> {
    fn new(w: &'a mut Walker<'p, 'o>, at: At) -> Self {
        Compound { w, at, pending: None }
    }

    fn finish(self) -> Result<(), Never> {
        Ok(())
    }

    fn element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        let at = self.at;
        let child = At {
            node: at.node,
            // Arrays inside the field's array hold nothing for it.
            field: if at.elem { None } else { at.field },
            prefix: at.prefix,
            crossed: true,
            elem: at.field.is_some() && !at.elem,
        };
        if child.field.is_none() && !child.prefix {
            return Ok(());
        }
        v.serialize(Node { w: self.w, at: child })
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, v: &T) -> Result<(), Never> {
        let child = self.w.enter(self.at, key);
        self.child(child, v)
    }

    /// Visits the value of a key [`Walker::enter`]ed, if a field needs it.
    fn child<T: Serialize + ?Sized>(&mut self, child: Option<At>, v: &T) -> Result<(), Never> {
        match child {
            Some(at) => v.serialize(Node { w: self.w, at }),
            None => Ok(()),
        }
    }
}

macro_rules! int {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<(), Never> {
            let s = match i64::try_from(v) {
                Ok(i) => Scalar::Int(i),
                Err(_) => u64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::UInt),
            };
            self.w.scalar(self.at, s);
            Ok(())
        }
    )*};
}

impl<'a, 'p, 'o> Node<'a, 'p, 'o> {
    /// `{"Variant": inner}`: the inner array or object, one key down.
    fn variant(
        self,
        variant: &'static str,
        inner: impl FnOnce(Self) -> Result<Compound<'a, 'p, 'o>, Never>,
    ) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.w.object(self.at);
        match self.w.enter(self.at, variant) {
            Some(at) => inner(Node { w: self.w, at }),
            None => Ok(Compound::new(self.w, At { field: None, prefix: false, ..self.at })),
        }
    }
}

impl<'a, 'p, 'o> ser::Serializer for Node<'a, 'p, 'o> {
    type Ok = ();
    type Error = Never;
    type SerializeSeq = Compound<'a, 'p, 'o>;
    type SerializeTuple = Compound<'a, 'p, 'o>;
    type SerializeTupleStruct = Compound<'a, 'p, 'o>;
    type SerializeTupleVariant = Compound<'a, 'p, 'o>;
    type SerializeMap = Compound<'a, 'p, 'o>;
    type SerializeStruct = Compound<'a, 'p, 'o>;
    type SerializeStructVariant = Compound<'a, 'p, 'o>;

    int!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
         serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);

    fn serialize_bool(self, v: bool) -> Result<(), Never> {
        self.w.scalar(self.at, Scalar::Bool(v));
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), Never> {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Result<(), Never> {
        // JSON has no NaN or infinity: serde_json writes them as null.
        if v.is_finite() {
            self.w.scalar(self.at, Scalar::Float(v));
            Ok(())
        } else {
            self.serialize_unit()
        }
    }

    fn serialize_char(self, v: char) -> Result<(), Never> {
        self.w.scalar(self.at, Scalar::Str(Cow::Owned(v.to_string())));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Never> {
        if self.at.field.is_some() {
            self.w.scalar(self.at, Scalar::Str(Cow::Owned(v.to_owned())));
        }
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Never> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), Never> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Never> {
        if let Some(f) = self.at.whole() {
            self.w.set(f, FieldValue::Null);
        }
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Never> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Never> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Never> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Never> {
        // {"Variant": value}
        self.w.object(self.at);
        Compound::new(self.w, self.at).field(variant, v)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a, 'p, 'o>, Never> {
        if let Some(f) = self.at.whole() {
            self.w.set(f, FieldValue::Many(Vec::new()));
        }
        Ok(Compound::new(self.w, self.at))
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.variant(variant, |n| ser::Serializer::serialize_seq(n, Some(len)))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.w.object(self.at);
        Ok(Compound::new(self.w, self.at))
    }

    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'p, 'o>, Never> {
        self.variant(variant, |n| ser::Serializer::serialize_map(n, Some(len)))
    }
}

/// Arrays (and tuples) visit their elements; structs their fields.
macro_rules! compound {
    ($($t:ident :: $m:ident ($($key:ident: $kt:ty)?) => $how:ident;)*) => {$(
        impl ser::$t for Compound<'_, '_, '_> {
            type Ok = ();
            type Error = Never;
            fn $m<T: Serialize + ?Sized>(&mut self, $($key: $kt,)? v: &T) -> Result<(), Never> {
                self.$how($($key,)? v)
            }
            fn end(self) -> Result<(), Never> {
                self.finish()
            }
        }
    )*};
}

compound! {
    SerializeSeq::serialize_element() => element;
    SerializeTuple::serialize_element() => element;
    SerializeTupleStruct::serialize_field() => element;
    SerializeTupleVariant::serialize_field() => element;
    SerializeStruct::serialize_field(key: &'static str) => field;
    SerializeStructVariant::serialize_field(key: &'static str) => field;
}

impl ser::SerializeMap for Compound<'_, '_, '_> {
    type Ok = ();
    type Error = Never;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Never> {
        let key = key.serialize(KeyText)?;
        self.pending = self.w.enter(self.at, &key);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Never> {
        let child = self.pending.take();
        self.child(child, v)
    }
    fn end(self) -> Result<(), Never> {
        self.finish()
    }
}

/// A map key as JSON writes it: strings as they are, numbers and chars as text.
struct KeyText;

macro_rules! key_int {
    ($($f:ident: $t:ty),*) => {$(
        fn $f(self, v: $t) -> Result<String, Never> {
            Ok(v.to_string())
        }
    )*};
}

impl ser::Serializer for KeyText {
    type Ok = String;
    type Error = Never;
    type SerializeSeq = ser::Impossible<String, Never>;
    type SerializeTuple = ser::Impossible<String, Never>;
    type SerializeTupleStruct = ser::Impossible<String, Never>;
    type SerializeTupleVariant = ser::Impossible<String, Never>;
    type SerializeMap = ser::Impossible<String, Never>;
    type SerializeStruct = ser::Impossible<String, Never>;
    type SerializeStructVariant = ser::Impossible<String, Never>;

    key_int!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
             serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
             serialize_char: char);

    fn serialize_str(self, v: &str) -> Result<String, Never> {
        Ok(v.to_owned())
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, v: &'static str) -> Result<String, Never> {
        Ok(v.to_owned())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<String, Never> {
        v.serialize(self)
    }
    fn serialize_bool(self, _: bool) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_f32(self, _: f32) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_f64(self, _: f64) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_none(self) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_unit(self) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(self, _: &'static str, _: u32, _: &'static str, _: &T) -> Result<String, Never> {
        Err(Never)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Never> {
        Err(Never)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Never> {
        Err(Never)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Never> {
        Err(Never)
    }
    fn serialize_tuple_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeTupleVariant, Never> {
        Err(Never)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Never> {
        Err(Never)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Never> {
        Err(Never)
    }
    fn serialize_struct_variant(self, _: &'static str, _: u32, _: &'static str, _: usize) -> Result<Self::SerializeStructVariant, Never> {
        Err(Never)
    }
}

/// Every path of a JSON document (and of its array elements), intermediate ones included.
#[cfg(test)]
pub(crate) fn all_paths(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                out.push(p.clone());
                all_paths(x, &p, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| all_paths(x, prefix, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{EventFields, JsonEvent};
    use serde_json::json;

    /// Flattening `doc` answers every one of `names` as [`JsonEvent`] does over its JSON.
    fn assert_same<T: Serialize>(doc: &T, extra: &[&str]) {
        let json = serde_json::to_value(doc).unwrap();
        let mut names = Vec::new();
        all_paths(&json, "", &mut names);
        names.extend(extra.iter().map(|s| s.to_string()));
        names.sort();
        names.dedup();
        let fields: Vec<Field> = names.iter().enumerate().map(|(i, n)| Field::new(FieldId(i as u32), n)).collect();
        let paths = Paths::new(&fields);
        let mut out = Vec::new();
        flatten(doc, &paths, &mut out);
        let ev = JsonEvent::new(&json);
        for f in &fields {
            assert_eq!(out[f.id().index()], ev.get(f), "{} in {json}", f.name());
        }
    }

    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tup(u8, String),
        Rec { a: i32 },
    }

    #[test]
    fn answers_as_the_json_would() {
        let doc = json!({
            "process": {"pid": 7, "args": ["sh", "-c", ["nested"], {"o": 1}], "parent": {"pid": 1, "name": null}},
            "dns": {"answers": [{"data": "1.2.3.4", "ttl": [1, 2]}, {"data": "5.6.7.8"}, {"other": 1}, [{"data": "9.9.9.9"}]]},
            "empty": [], "big": u64::MAX, "neg": -3, "f": 1.5, "t": true,
            "map": {"1": "one"},
        });
        assert_same(&doc, &["nope", "process.nope", "dns.answers.nope", "process.args.x", "map.1"]);
        #[derive(Serialize)]
        struct S {
            e: Vec<E>,
            o: Option<u8>,
            c: char,
            b: &'static [u8],
            m: std::collections::BTreeMap<u32, E>,
        }
        let s = S {
            e: vec![E::Unit, E::New(1), E::Tup(2, "x".into()), E::Rec { a: -1 }],
            o: None,
            c: 'z',
            b: b"ab",
            m: [(3, E::Rec { a: 4 }), (5, E::New(6))].into_iter().collect(),
        };
        assert_same(&s, &["e.New", "e.Rec.a", "m.3.Rec.a", "m.5.New"]);
    }

    #[test]
    fn skips_what_no_field_needs_and_knows_its_own_fields() {
        let fields = vec![Field::new(FieldId(0), "a.b")];
        let paths = Paths::new(&fields);
        let mut out = Vec::new();
        flatten(&json!({"a": {"b": "x", "c": "y"}, "z": 1}), &paths, &mut out);
        assert_eq!(out, vec![FieldValue::One(Scalar::Str("x".into()))]);
        assert!(paths.owns(&fields[0]));
        assert!(!paths.owns(&Field::new(FieldId(0), "a.c")));
        assert!(!paths.owns(&Field::new(FieldId(1), "a.b")));
    }
}
