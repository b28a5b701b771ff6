//! The documents' JSON printer: compact JSON, byte for byte what `serde_json::to_writer` prints
//! (tests compare the two), but cheaper where the event stream spends its time:
//!
//! - a string is checked for bytes that need escaping eight at a time, and copied in one piece
//!   when it has none (nearly every value);
//! - a struct's field names are copied as they are, unchecked: the one difference from
//!   serde_json, which would escape them (the documents' names need no escaping: debug builds
//!   check every one they print);
//! - a `serde_json` raw value (JSON printed already) is copied in as it is.
//!
//! The documents of the hot record kinds are printed by hand ([`super::emit`]) with this
//! module's primitives; this printer does the rest (the rare parts of a document, and the parts
//! printed once for many documents).

use std::fmt;

use serde::{ser, Serialize};
use serde_json::Error;

/// `serde_json::value::RawValue` serialises as a struct of this name with one field of this name.
const RAW_VALUE: &str = "$serde_json::private::RawValue";

/// Appends `value`'s JSON to `out`.
pub fn to_vec<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Printer { out, mode: Mode::Value })
}

/// A struct's fields as they print between its braces (`"a":1,"b":2`): a run of fields to
/// copy into a document printed by hand.
pub fn fields<T: Serialize + ?Sized>(value: &T) -> Result<String, Error> {
    let mut out = Vec::with_capacity(256);
    to_vec(&mut out, value)?;
    let text = String::from_utf8(out).map_err(ser::Error::custom)?;
    Ok(text.get(1..text.len().saturating_sub(1)).unwrap_or_default().to_owned())
}

/// Appends `s` as a JSON string (quoted and escaped) to `out`.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if b.len() <= SHORT && !any_escaped(b) {
        // `"s"` in one piece: most values are short and clean.
        put_framed(out, b"\"", b, b"\"", 1);
        return;
    }
    out.push(b'"');
    write_escaped(out, s);
    out.push(b'"');
}

/// True if any of the eight bytes of `w` is below 0x20, `"` or `\`.
#[inline]
fn needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Bit twiddling hacks' "has a byte less than n" and "has a zero byte" (exact as to whether
    // one is there; the caller looks at every byte of a flagged word anyway).
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let quote = w ^ (ONES * u64::from(b'"'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = w ^ (ONES * u64::from(b'\\'));
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (control | quote | backslash) & HIGH != 0
}

/// How serde_json escapes one byte, if it does.
#[inline]
fn escape(b: u8) -> Option<&'static [u8]> {
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        0x08 => b"\\b",
        0x0c => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0..=0x1f => {
            const CONTROL: [[u8; 6]; 32] = {
                let mut t = [*b"\\u0000"; 32];
                let hex = b"0123456789abcdef";
                let mut i = 0;
                while i < 32 {
                    t[i][4] = hex[i >> 4];
                    t[i][5] = hex[i & 0xf];
                    i += 1;
                }
                t
            };
            &CONTROL[b as usize]
        }
        _ => return None,
    })
}

/// True if some byte of `b` needs escaping.
#[inline]
fn any_escaped(b: &[u8]) -> bool {
    #[inline(always)]
    fn word(b: &[u8]) -> u64 {
        u64::from_le_bytes(b[..8].try_into().unwrap_or_default())
    }
    #[inline(always)]
    fn half(b: &[u8]) -> u64 {
        u64::from(u32::from_le_bytes(b[..4].try_into().unwrap_or_default()))
    }
    let n = b.len();
    match n {
        // Whole words, then the last eight bytes (overlapping what was checked).
        8.. => b.chunks_exact(8).any(|w| needs_escape(word(w))) || needs_escape(word(&b[n - 8..])),
        // Two overlapping halves, or the first, middle and last bytes, in one word; the
        // bytes left over are a letter, which needs no escaping.
        4.. => needs_escape(half(b) | half(&b[n - 4..]) << 32),
        1.. => needs_escape(u64::from_le_bytes([b[0], b[n / 2], b[n - 1], b'a', b'a', b'a', b'a', b'a'])),
        0 => false,
    }
}

/// The longest copy done without a call to `memcpy` (most keys and values are short, and the
/// call costs more than the copy; timestamps and entity ids are 30 and 32 bytes).
const SHORT: usize = 32;

/// Copies `n` ≤ [`SHORT`] bytes from `src` to `dst`, in at most two moves.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes; they must not overlap.
#[inline(always)]
unsafe fn copy_short(dst: *mut u8, src: *const u8, n: usize) {
    debug_assert!(n <= SHORT);
    // SAFETY: each move reads and writes within the `n` bytes (two overlapping 16-byte blocks
    // cover 16..=32, two words 8..=15, two halves 4..=7, three bytes 1..=3), which the caller
    // vouches for.
    unsafe {
        match n {
            16.. => {
                dst.cast::<u128>().write_unaligned(src.cast::<u128>().read_unaligned());
                dst.add(n - 16).cast::<u128>().write_unaligned(src.add(n - 16).cast::<u128>().read_unaligned());
            }
            8.. => {
                dst.cast::<u64>().write_unaligned(src.cast::<u64>().read_unaligned());
                dst.add(n - 8).cast::<u64>().write_unaligned(src.add(n - 8).cast::<u64>().read_unaligned());
            }
            4.. => {
                dst.cast::<u32>().write_unaligned(src.cast::<u32>().read_unaligned());
                dst.add(n - 4).cast::<u32>().write_unaligned(src.add(n - 4).cast::<u32>().read_unaligned());
            }
            // The first, middle and last bytes cover 1..=3 (a loop would become a `memcpy` call).
            1.. => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            0 => {}
        }
    }
}

/// Copies `b` (at most two bytes) to `dst`, byte by byte: a loop here would be compiled into a
/// call to `memcpy`.
///
/// # Safety
/// `dst` must be writable for `b.len()` bytes.
#[inline(always)]
unsafe fn copy_tiny(dst: *mut u8, b: &[u8]) {
    debug_assert!(b.len() <= 2);
    // SAFETY: the caller vouches for `b.len()` writable bytes at `dst`.
    unsafe {
        if let Some(&c) = b.first() {
            *dst = c;
        }
        if let Some(&c) = b.get(1) {
            *dst.add(1) = c;
        }
    }
}

/// Appends the last `keep` bytes of `head`, then `b` (at most [`SHORT`] bytes), then `tail`:
/// one capacity check and one length update for a key or a short string with its quotes.
/// `head` and `tail` are at most two bytes.
#[inline(always)]
fn put_framed(out: &mut Vec<u8>, head: &[u8], b: &[u8], tail: &[u8], keep: usize) {
    let (n, head) = (b.len(), &head[head.len() - keep..]);
    debug_assert!(n <= SHORT && head.len() <= 2 && tail.len() <= 2);
    out.reserve(SHORT + 4);
    let len = out.len();
    // SAFETY: the spare capacity holds SHORT + 4 bytes (reserved above), enough for the at most
    // 2 + n + 2 bytes written; the sources are the slices' own bytes. Exactly those bytes are
    // written, so the vector's new length covers initialised bytes only.
    unsafe {
        let dst = out.spare_capacity_mut().as_mut_ptr().cast::<u8>();
        copy_tiny(dst, head);
        copy_short(dst.add(head.len()), b.as_ptr(), n);
        copy_tiny(dst.add(head.len() + n), tail);
        out.set_len(len + head.len() + n + tail.len());
    }
}

/// Appends `b`: a short one without a call to `memcpy`.
#[inline]
pub(super) fn put(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() > SHORT {
        out.extend_from_slice(b);
        return;
    }
    put_framed(out, b"", b, b"", 0);
}

/// Appends `"key":`, after a comma unless it is the first field. A struct's field names are
/// copied as they are: they are Rust names or `rename`s of the document types, none with a
/// byte JSON escapes (checked in debug builds, so by every test that prints a document). Map
/// keys, which come from data, are escaped.
#[inline(always)]
pub(super) fn put_key(out: &mut Vec<u8>, key: &str, comma: bool) {
    let k = key.as_bytes();
    debug_assert!(!any_escaped(k), "field name {key:?} needs escaping");
    if k.len() > SHORT {
        if comma {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(k);
        out.extend_from_slice(b"\":");
        return;
    }
    put_framed(out, b",\"", k, b"\":", 1 + usize::from(comma));
}

/// `s` escaped as inside a JSON string.
#[inline]
fn write_escaped(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    if !any_escaped(b) {
        put(out, b);
        return;
    }
    let mut clean = 0; // start of the bytes not yet copied
    for (i, &c) in b.iter().enumerate() {
        if let Some(e) = escape(c) {
            out.extend_from_slice(&b[clean..i]);
            out.extend_from_slice(e);
            clean = i + 1;
        }
    }
    out.extend_from_slice(&b[clean..]);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Value,
    /// A map key: numbers and booleans are quoted, as serde_json does.
    Key,
    /// A string to copy as it is (a raw value's text).
    Raw,
}

struct Printer<'a> {
    out: &'a mut Vec<u8>,
    mode: Mode,
}

impl<'a> Printer<'a> {
    fn key_error() -> Error {
        ser::Error::custom("key must be a string")
    }

    /// A number (`text`), quoted as a map key.
    fn number(&mut self, text: &str) -> Result<(), Error> {
        match self.mode {
            Mode::Key => write_str(self.out, text),
            _ => put(self.out, text.as_bytes()),
        }
        Ok(())
    }

    /// A float as serde_json prints it: shortest form, NaN and infinities as null (refused as
    /// map keys).
    fn float(&mut self, v: impl zmij::Float, finite: bool) -> Result<(), Error> {
        match (finite, self.mode) {
            (true, _) => self.number(zmij::Buffer::new().format_finite(v)),
            (false, Mode::Key) => Err(ser::Error::custom("float key must be finite (got NaN or +/-inf)")),
            (false, _) => self.null(),
        }
    }

    fn null(&mut self) -> Result<(), Error> {
        self.value_only()?;
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn value_only(&self) -> Result<(), Error> {
        match self.mode {
            Mode::Key => Err(Self::key_error()),
            _ => Ok(()),
        }
    }

    /// `value` printed with the printer in `mode`.
    fn with_mode<T: Serialize + ?Sized>(&mut self, mode: Mode, value: &T) -> Result<(), Error> {
        let before = std::mem::replace(&mut self.mode, mode);
        let r = value.serialize(&mut *self);
        self.mode = before;
        r
    }

    /// An array or object: `open`, its items, then `close`.
    fn open<'p>(p: &'p mut Self, open: &[u8], close: &'static [u8]) -> Result<Compound<'p, 'a>, Error> {
        p.value_only()?;
        p.out.extend_from_slice(open);
        Ok(Compound { p, first: true, close, raw_value: false })
    }

    /// `{"variant":` and an array or object, closed by `close`.
    fn open_variant<'p>(p: &'p mut Self, variant: &str, bracket: u8, close: &'static [u8]) -> Result<Compound<'p, 'a>, Error> {
        p.value_only()?;
        p.out.push(b'{');
        write_str(p.out, variant);
        p.out.push(b':');
        Self::open(p, &[bracket], close)
    }
}

macro_rules! integers {
    ($($method:ident: $t:ty),*) => {$(
        fn $method(self, v: $t) -> Result<(), Error> {
            self.number(itoa::Buffer::new().format(v))
        }
    )*};
}

impl<'p, 'a> ser::Serializer for &'p mut Printer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'p, 'a>;
    type SerializeTuple = Compound<'p, 'a>;
    type SerializeTupleStruct = Compound<'p, 'a>;
    type SerializeTupleVariant = Compound<'p, 'a>;
    type SerializeMap = Compound<'p, 'a>;
    type SerializeStruct = Compound<'p, 'a>;
    type SerializeStructVariant = Compound<'p, 'a>;

    integers!(serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.number(if v { "true" } else { "false" })
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v, v.is_finite())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        match self.mode {
            Mode::Raw => self.out.extend_from_slice(v.as_bytes()),
            Mode::Value | Mode::Key => write_str(self.out, v),
        }
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.null()
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(self, _name: &'static str, _index: u32, variant: &'static str) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _name: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.value_only()?;
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'p, 'a>, Error> {
        Printer::open(self, b"[", b"]")
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'p, 'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Compound<'p, 'a>, Error> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'p, 'a>, Error> {
        Printer::open_variant(self, variant, b'[', b"]}")
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'p, 'a>, Error> {
        Printer::open(self, b"{", b"}")
    }

    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'p, 'a>, Error> {
        if name == RAW_VALUE {
            // Its one field is the JSON text: see Compound::serialize_field.
            let mut c = Printer::open(self, b"", b"")?;
            c.raw_value = true;
            return Ok(c);
        }
        Printer::open(self, b"{", b"}")
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'p, 'a>, Error> {
        Printer::open_variant(self, variant, b'{', b"}}")
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        struct Escaping<'o>(&'o mut Vec<u8>);
        impl fmt::Write for Escaping<'_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                write_escaped(self.0, s);
                Ok(())
            }
        }
        if self.mode == Mode::Raw {
            return self.serialize_str(&value.to_string());
        }
        self.out.push(b'"');
        fmt::write(&mut Escaping(self.out), format_args!("{value}")).map_err(ser::Error::custom)?;
        self.out.push(b'"');
        Ok(())
    }
}

/// An array, object or variant being printed.
struct Compound<'p, 'a> {
    p: &'p mut Printer<'a>,
    first: bool,
    /// What ends it: `]`, `}`, or a variant's `]}` or `}}`.
    close: &'static [u8],
    /// A serde_json raw value: its one field is the JSON text.
    raw_value: bool,
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.p.out.push(b',');
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        // An array or object is printed in value mode (keys and raw text are strings).
        value.serialize(&mut *self.p)
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        if self.raw_value {
            return self.p.with_mode(Mode::Raw, value);
        }
        put_key(self.p.out, key, !std::mem::take(&mut self.first));
        value.serialize(&mut *self.p)
    }

    fn end(self) -> Result<(), Error> {
        put(self.p.out, self.close);
        Ok(())
    }
}

macro_rules! compound {
    ($($trait:ident { $method:ident $(, $key:ident)? => $how:ident }),*) => {$(
        impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = Error;
            fn $method<T: Serialize + ?Sized>(&mut self, $($key: &'static str,)? value: &T) -> Result<(), Error> {
                self.$how($($key,)? value)
            }
            fn end(self) -> Result<(), Error> {
                Compound::end(self)
            }
        }
    )*};
}

compound!(
    SerializeSeq { serialize_element => element },
    SerializeTuple { serialize_element => element },
    SerializeTupleStruct { serialize_field => element },
    SerializeTupleVariant { serialize_field => element },
    SerializeStruct { serialize_field, key => field },
    SerializeStructVariant { serialize_field, key => field }
);

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        self.p.with_mode(Mode::Key, key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.p.out.push(b':');
        value.serialize(&mut *self.p)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::value::RawValue;

    use super::*;

    fn printed<T: Serialize + ?Sized>(v: &T) -> String {
        let mut out = Vec::new();
        to_vec(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_print_as_serde_json_prints_them() {
        // Every byte that needs escaping, at every offset of a word and in runs.
        let specials: Vec<char> = (0u8..0x20).map(char::from).chain(['"', '\\', '/', '\u{7f}', 'é', '€', '😀']).collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..50_000 {
            let len = (next() % 40) as usize;
            let s: String = (0..len)
                .map(|_| match next() % 4 {
                    0 => specials[(next() % specials.len() as u64) as usize],
                    _ => char::from(b'a' + (next() % 26) as u8),
                })
                .collect();
            assert_eq!(printed(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }

    #[derive(Serialize)]
    enum Variant {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { a: Option<u8>, b: Vec<f64> },
    }

    #[derive(Serialize)]
    struct Unit;

    #[derive(Serialize)]
    struct Newtype(u16);

    #[derive(Serialize)]
    struct Tuple(bool, char);

    #[derive(Serialize)]
    struct Every<'a> {
        ints: (i8, i16, i32, i64, i128, u8, u16, u32, u64, u128),
        extremes: (i64, u64, i128, u128),
        floats: Vec<f64>,
        float32: (f32, f32, f32),
        #[serde(with = "bytes")]
        bytes: &'a [u8],
        none: Option<u8>,
        some: Option<&'a str>,
        unit: (),
        unit_struct: Unit,
        newtype: Newtype,
        tuple: Tuple,
        empty_seq: Vec<u8>,
        empty_map: BTreeMap<String, u8>,
        variants: Vec<Variant>,
        int_keys: BTreeMap<i32, &'a str>,
        bool_keys: BTreeMap<bool, u8>,
        char_keys: BTreeMap<char, u8>,
        nested: BTreeMap<&'a str, Vec<BTreeMap<&'a str, Option<Variant>>>>,
        raw: Box<RawValue>,
        display: Shown,
        weird: BTreeMap<&'a str, u8>,
    }

    mod bytes {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    struct Shown;

    impl Serialize for Shown {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(&format_args!("a \"{}\" \\ {}\t", 42, 'é'))
        }
    }

    #[test]
    fn every_kind_of_value_prints_as_serde_json_prints_it() {
        let v = Every {
            ints: (-8, -16, -32, -64, -128, 8, 16, 32, 64, 128),
            extremes: (i64::MIN, u64::MAX, i128::MIN, u128::MAX),
            floats: vec![0.0, -0.0, 1.5, 1e300, -2.5e-300, 0.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 123456789.0],
            float32: (0.1, f32::NAN, 3.0),
            bytes: &[0, 1, 255],
            none: None,
            some: Some("x"),
            unit: (),
            unit_struct: Unit,
            newtype: Newtype(7),
            tuple: Tuple(true, '"'),
            empty_seq: vec![],
            empty_map: BTreeMap::new(),
            variants: vec![Variant::Unit, Variant::Newtype(1), Variant::Tuple(-1, "t".into()), Variant::Struct { a: None, b: vec![0.5] }],
            int_keys: [(-1, "a"), (2, "b")].into(),
            bool_keys: [(true, 1), (false, 0)].into(),
            char_keys: [('k', 1)].into(),
            nested: [("n", vec![[("v", Some(Variant::Unit)), ("w", None)].into(), BTreeMap::new()])].into(),
            raw: RawValue::from_string(r#"{"already": [1, "printed"]}"#.into()).unwrap(),
            display: Shown,
            weird: [("we\"ird\nkey", 1)].into(),
        };
        assert_eq!(printed(&v), serde_json::to_string(&v).unwrap());
    }

    /// The one difference from serde_json: struct field names are not escaped (see `put_key`).
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "needs escaping")]
    fn a_struct_field_name_that_needs_escaping_is_refused_in_debug_builds() {
        #[derive(Serialize)]
        struct Weird {
            #[serde(rename = "we\"ird")]
            weird: u8,
        }
        printed(&Weird { weird: 1 });
    }

    #[test]
    fn keys_that_are_not_strings_fail_as_they_do_for_serde_json() {
        let map: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
        assert!(serde_json::to_string(&map).is_err());
        assert!(to_vec(&mut Vec::new(), &map).is_err());
        let floats: Vec<(f64, u8)> = vec![(f64::NAN, 1)];
        let map: serde_json::Map<String, serde_json::Value> = serde_json::Map::new();
        assert_eq!(printed(&map), "{}");
        struct FloatKeys(Vec<(f64, u8)>);
        impl Serialize for FloatKeys {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
            }
        }
        assert!(serde_json::to_string(&FloatKeys(floats.clone())).is_err());
        assert!(to_vec(&mut Vec::new(), &FloatKeys(floats)).is_err());
        assert_eq!(printed(&FloatKeys(vec![(1.5, 1)])), serde_json::to_string(&FloatKeys(vec![(1.5, 1)])).unwrap());
    }
}
