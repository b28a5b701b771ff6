//! How a batch of events is laid out on disk: one block per batch.
//!
//! - The block's index rows ([`super::index::Row`]), packed (`postcard`) and LZ4-compressed together: hunts
//!   and stories filter these, a whole block at a time.
//! - Its documents, in frames of [`FRAME`] documents each, every frame LZ4-compressed on its
//!   own: ECS documents of one host repeat each other, so a frame shrinks them several times
//!   where one document alone barely compresses, and showing one hit decompresses one frame,
//!   not the whole batch.
//! - Its postings ([`keys`]): each distinct value a hunt looks events up by (an entity, a path,
//!   an address, …) once per block, instead of one index entry per event and column.

use std::{
    hash::{Hash, Hasher},
    sync::OnceLock,
};

use rustc_hash::{FxHashMap, FxHasher};

use super::index::RowRef;
#[cfg(test)]
use super::index::Row;

/// Documents per frame: a hit decompresses its frame (64 × ~2 KiB); larger frames compress
/// hardly better (LZ4 looks back 64 KiB at most).
pub const FRAME: usize = 64;

/// Posting tags: the first byte of a posting key, the value's bytes follow.
pub mod tag {
    pub const ENTITY: u8 = b'E';
    /// The parent's entity id of exec and fork events.
    pub const PARENT: u8 = b'P';
    /// Exec events only: the executable, its hash, its user.
    pub const EXE: u8 = b'X';
    pub const SHA256: u8 = b'H';
    pub const USER: u8 = b'U';
    pub const PATH: u8 = b'F';
    /// Either end of a connection or DNS exchange, 16 bytes ([`super::super::index::ip_key`]).
    pub const IP: u8 = b'I';
    pub const DOMAIN: u8 = b'D';
    /// An alert's `event.id`.
    pub const ALERT: u8 = b'A';
}

/// A block as its events arrive: each row packed at once from the strings its event already
/// has (no row is kept), exec rows apart because a block lists them first, and the posting keys
/// in one arena.
#[derive(Debug, Default)]
pub struct Builder {
    /// Packed rows: exec events', the others'.
    exec: Vec<u8>,
    other: Vec<u8>,
    n_exec: usize,
    n: usize,
    ts_min: i64,
    ts_max: i64,
    arena: Vec<u8>,
    /// (start, end) of each key in `arena`, repeats included.
    spans: Vec<(usize, usize)>,
}

impl Builder {
    /// Adds a row; true if it is an exec row (a block lists those first: their documents must
    /// go first too).
    pub fn push(&mut self, r: &RowRef<'_>) -> bool {
        let exec = r.cmdline.is_some();
        let out = if exec { &mut self.exec } else { &mut self.other };
        // Writing to a Vec cannot fail, and a row has no map or sequence of unknown length.
        *out = postcard::to_extend(r, std::mem::take(out)).expect("rows serialise");
        if self.n == 0 {
            (self.ts_min, self.ts_max) = (r.ts_ns, r.ts_ns);
        }
        (self.ts_min, self.ts_max) = (self.ts_min.min(r.ts_ns), self.ts_max.max(r.ts_ns));
        self.n += 1;
        self.n_exec += usize::from(exec);
        let mut put = |t: u8, v: &[u8]| {
            let start = self.arena.len();
            self.arena.push(t);
            self.arena.extend_from_slice(v);
            self.spans.push((start, self.arena.len()));
        };
        let exec_keys = [(tag::EXE, r.exe), (tag::SHA256, r.sha256), (tag::USER, r.user)];
        let keys = [(tag::ENTITY, r.entity), (tag::PARENT, r.parent), (tag::PATH, r.path), (tag::DOMAIN, r.domain), (tag::ALERT, r.alert)];
        for (t, v) in keys.into_iter().chain(exec_keys.into_iter().filter(|_| exec)) {
            if let Some(v) = v {
                put(t, v.as_bytes());
            }
        }
        for ip in [&r.src_ip, &r.dst_ip].into_iter().flatten() {
            put(tag::IP, ip);
        }
        exec
    }

    pub fn len(&self) -> usize {
        self.n
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    pub fn n_exec(&self) -> usize {
        self.n_exec
    }

    /// The earliest and latest row times.
    pub fn span(&self) -> (i64, i64) {
        (self.ts_min, self.ts_max)
    }

    /// The rows, exec rows first, packed as a sequence of rows and compressed.
    pub fn rows(&self) -> Vec<u8> {
        let mut packed = postcard::to_stdvec(&(self.n as u64)).expect("a count serialises");
        packed.extend_from_slice(&self.exec);
        packed.extend_from_slice(&self.other);
        lz4_flex::compress_prepend_size(&packed)
    }

    /// The posting keys, each distinct key once, sorted.
    pub fn keys(&self) -> Vec<&[u8]> {
        let mut keys: Vec<&[u8]> = self.spans.iter().map(|&(a, z)| &self.arena[a..z]).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }

    pub fn clear(&mut self) {
        self.exec.clear();
        self.other.clear();
        self.arena.clear();
        self.spans.clear();
        (self.n, self.n_exec) = (0, 0);
    }
}

/// A posting key: the tag, then the value.
pub fn key(t: u8, v: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + v.len());
    k.push(t);
    k.extend_from_slice(v);
    k
}

/// The least key after every key that starts with `prefix` (`None`: there is none).
pub fn after_prefix(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut k = prefix.to_vec();
    while let Some(last) = k.pop() {
        if last < u8::MAX {
            k.push(last + 1);
            return Some(k);
        }
    }
    None
}

/// A block's rows, decompressed, read in place as they are gone through.
pub struct Rows {
    packed: Vec<u8>,
    /// Where the first row starts, and how many there are.
    first: usize,
    n: usize,
    /// Built on the first look-up by process: where each row starts, and the rows of each
    /// entity and parent entity id (by hash), so a story reads a process's rows, not the block's.
    by_process: OnceLock<Option<ByProcess>>,
}

struct ByProcess {
    starts: Vec<usize>,
    entity: FxHashMap<u64, Vec<u32>>,
    parent: FxHashMap<u64, Vec<u32>>,
}

/// Which id a process look-up goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessKey {
    Entity,
    Parent,
}

impl ProcessKey {
    /// Its posting tag.
    pub fn tag(self) -> u8 {
        match self {
            ProcessKey::Entity => tag::ENTITY,
            ProcessKey::Parent => tag::PARENT,
        }
    }

    fn of<'r>(self, r: &RowRef<'r>) -> Option<&'r str> {
        match self {
            ProcessKey::Entity => r.entity,
            ProcessKey::Parent => r.parent,
        }
    }
}

fn hash(s: &str) -> u64 {
    let mut h = FxHasher::default();
    s.hash(&mut h);
    h.finish()
}

impl Rows {
    pub fn decode(blob: &[u8]) -> Option<Rows> {
        let packed = lz4_flex::decompress_size_prepended(blob).ok()?;
        let (n, rest) = postcard::take_from_bytes::<u64>(&packed).ok()?;
        Some(Rows { first: packed.len() - rest.len(), n: usize::try_from(n).ok()?, packed, by_process: OnceLock::new() })
    }

    /// The rows in order; a damaged row ends them (`Err`).
    pub fn iter(&self) -> impl Iterator<Item = Result<RowRef<'_>, postcard::Error>> {
        self.walk().map(|r| r.map(|(_, r)| r))
    }

    /// The rows in order with where each starts in `packed`; a damaged row ends them.
    fn walk(&self) -> impl Iterator<Item = Result<(usize, RowRef<'_>), postcard::Error>> {
        let mut rest = &self.packed[self.first..];
        let mut left = self.n;
        std::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            left -= 1;
            let start = self.packed.len() - rest.len();
            match postcard::take_from_bytes::<RowRef>(rest) {
                Ok((r, more)) => {
                    rest = more;
                    Some(Ok((start, r)))
                }
                Err(e) => {
                    left = 0;
                    Some(Err(e))
                }
            }
        })
    }

    /// The rows (slot and row) whose entity (or parent) id is `id`; `None` if the block is
    /// damaged.
    pub fn of_process(&self, by: ProcessKey, id: &str) -> Option<Vec<(usize, RowRef<'_>)>> {
        let ix = self
            .by_process
            .get_or_init(|| {
                // `n` is read from the block: a damaged one must not size an allocation.
                let mut ix = ByProcess { starts: Vec::with_capacity(self.n.min(self.packed.len())), entity: FxHashMap::default(), parent: FxHashMap::default() };
                for (slot, row) in self.walk().enumerate() {
                    let (start, r) = row.ok()?;
                    ix.starts.push(start);
                    if let Some(e) = r.entity {
                        ix.entity.entry(hash(e)).or_default().push(slot as u32);
                    }
                    if let Some(p) = r.parent {
                        ix.parent.entry(hash(p)).or_default().push(slot as u32);
                    }
                }
                Some(ix)
            })
            .as_ref()?;
        let slots = match by {
            ProcessKey::Entity => ix.entity.get(&hash(id)),
            ProcessKey::Parent => ix.parent.get(&hash(id)),
        };
        let mut out = Vec::new();
        for &slot in slots.into_iter().flatten() {
            let slot = slot as usize;
            let (r, _) = postcard::take_from_bytes::<RowRef>(&self.packed[ix.starts[slot]..]).ok()?;
            if by.of(&r) == Some(id) {
                out.push((slot, r));
            }
        }
        Some(out)
    }
}

/// A block's rows, owned.
#[cfg(test)]
fn decode_rows(blob: &[u8]) -> Option<Vec<Row>> {
    Rows::decode(blob)?.iter().map(|r| r.ok().map(|r| r.to_row())).collect()
}

/// One frame of documents: their count, each one's length, the documents, LZ4-compressed with
/// the uncompressed size prepended. `raw` and `out` are the caller's buffers, reused from frame
/// to frame (a frame is hundreds of KiB: allocating it anew each time costs page faults).
pub fn encode_frame<'o>(docs: &[&[u8]], raw: &mut Vec<u8>, out: &'o mut Vec<u8>) -> &'o [u8] {
    raw.clear();
    raw.extend_from_slice(&(docs.len() as u32).to_le_bytes());
    for d in docs {
        raw.extend_from_slice(&(d.len() as u32).to_le_bytes());
    }
    for d in docs {
        raw.extend_from_slice(d);
    }
    let need = 4 + lz4_flex::block::get_maximum_output_size(raw.len());
    if out.len() < need {
        out.resize(need, 0);
    }
    out[..4].copy_from_slice(&(raw.len() as u32).to_le_bytes());
    let n = lz4_flex::block::compress_into(raw, &mut out[4..]).expect("the buffer fits the worst case");
    &out[..4 + n]
}

/// A frame's documents, decompressed.
pub struct Frame {
    data: Vec<u8>,
    /// (start, end) of each document in `data`.
    spans: Vec<(usize, usize)>,
}

impl Frame {
    pub fn decode(blob: &[u8]) -> Option<Frame> {
        let data = lz4_flex::decompress_size_prepended(blob).ok()?;
        let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
        let mut at = 4usize.checked_add(n.checked_mul(4)?)?;
        if at > data.len() {
            return None; // a damaged count must not size an allocation
        }
        let mut spans = Vec::with_capacity(n);
        for i in 0..n {
            let len = u32::from_le_bytes(data.get(4 + 4 * i..8 + 4 * i)?.try_into().ok()?) as usize;
            let end = at.checked_add(len).filter(|&e| e <= data.len())?;
            spans.push((at, end));
            at = end;
        }
        Some(Frame { data, spans })
    }

    pub fn doc(&self, i: usize) -> Option<&[u8]> {
        self.spans.get(i).map(|&(a, z)| &self.data[a..z])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_frames_and_keys_round_trip() {
        let rows = vec![
            Row { ts_ns: 5, host: "h".into(), kind: "event".into(), action: "exec".into(), entity: Some("e1".into()), parent: Some("e0".into()), cmdline: Some("sh".into()), exe: Some("/bin/sh".into()), dst_ip: Some([7; 16]), ..Row::default() },
            Row { ts_ns: 6, host: "h".into(), kind: "event".into(), action: "open".into(), entity: Some("e1".into()), exe: Some("/bin/sh".into()), path: Some("/etc/x".into()), ..Row::default() },
        ];
        // The open row first: the block lists exec rows first all the same.
        let mut b = Builder::default();
        assert_eq!(rows.iter().rev().map(|r| b.push(&r.as_ref())).collect::<Vec<_>>(), [false, true]);
        assert_eq!((b.len(), b.n_exec(), b.span()), (2, 1, (5, 6)));
        assert_eq!(decode_rows(&b.rows()).unwrap(), rows);
        assert_eq!(postcard::to_stdvec(&rows[0]).unwrap(), postcard::to_stdvec(&rows[0].as_ref()).unwrap(), "a row packs as its borrowed form");
        let k = b.keys();
        assert_eq!(k.iter().filter(|k| k[0] == tag::ENTITY).count(), 1, "one posting per distinct value");
        assert_eq!(k.iter().filter(|k| k[0] == tag::EXE).count(), 1, "the executable of exec rows only");
        assert!(k.contains(&&key(tag::IP, &[7; 16])[..]) && k.contains(&&key(tag::PATH, b"/etc/x")[..]));
        assert!(k.windows(2).all(|w| w[0] < w[1]));
        b.clear();
        assert!(b.is_empty() && b.keys().is_empty());
        b.push(&rows[1].as_ref());
        assert_eq!((b.n_exec(), b.span()), (0, (6, 6)), "a cleared builder starts afresh");

        let docs: [&[u8]; 2] = [b"{\"a\":1}", b"{}"];
        let f = Frame::decode(encode_frame(&docs, &mut Vec::new(), &mut Vec::new())).unwrap();
        assert_eq!((f.doc(0), f.doc(1), f.doc(2)), (Some(&b"{\"a\":1}"[..]), Some(&b"{}"[..]), None));
        assert!(Frame::decode(b"junk").is_none() && decode_rows(b"junk").is_none());

        assert_eq!(after_prefix(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(after_prefix(&[b'a', 0xff]), Some(b"b".to_vec()));
        assert_eq!(after_prefix(&[0xff]), None);
    }
}
