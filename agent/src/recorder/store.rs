//! The event store: one SQLite database (WAL, batched transactions) holding every recorded
//! event's ECS document and the columns hunts and stories look it up by.
//!
//! A batch is one block ([`super::block`]): its index rows packed and compressed together, its
//! documents in compressed frames, and its postings — each distinct entity, path, address, hash,
//! domain, user and alert of the batch once, as a key of a B-tree. A hunt finds the blocks
//! through the postings (and each block's time bounds), then filters their rows. Writing a
//! batch is thus a few large rows and a posting per distinct value, not a row and a dozen index
//! entries per event.
//!
//! Postings are kept in epochs, a table each of at most [`EPOCH_POSTINGS`]: the tree a batch
//! inserts into stays small enough to stay in the page cache, where one tree growing with the
//! store would cost a rewritten page per posting once it outgrew the cache (ingest fell from
//! 4.7 to 10 µs an event over the first 4 million events). Lookups ask every epoch; retention
//! drops an epoch whole once its blocks are gone.
//!
//! Events are appended in batches of one transaction each, so a crash (or `kill -9`) loses at
//! most the batch being written and never leaves a half-written one. Event ids run on without
//! holes from block to block. Retention deletes the oldest blocks first, by age and by size;
//! freed pages are reused by later inserts and handed back to the file system by incremental
//! vacuum.

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeSet, BinaryHeap},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

use super::{
    block::{self, Builder, Frame, FRAME},
    index::{Row, RowRef},
};

/// The schema version this build writes; older stores are migrated on open.
pub const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks(
    id     INTEGER PRIMARY KEY,
    first  INTEGER NOT NULL,
    n      INTEGER NOT NULL,
    -- its first n_exec rows (and documents) are its exec events
    n_exec INTEGER NOT NULL,
    ts_min INTEGER NOT NULL,
    ts_max INTEGER NOT NULL,
    rows   BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS frames(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS epochs(id INTEGER PRIMARY KEY, first_block INTEGER NOT NULL, postings INTEGER NOT NULL);
";

/// Postings per epoch (a table of their own, `post_<epoch>`): about 230,000 events' worth, a
/// few MiB of B-tree. (2^19 measured 30% slower ingest; 2^16 no faster, with twice the epochs
/// for every lookup to ask.)
pub(super) const EPOCH_POSTINGS: i64 = 1 << 17;

/// Postings written by one INSERT (two parameters each; SQLite allows 32,766).
const POSTINGS_PER_INSERT: usize = 128;
/// Events per block at most (a bigger batch is written as several blocks).
pub(super) const BLOCK_MAX: usize = 1 << 16;
/// A frame's row id: its block's id times this, plus its number in the block.
const FRAMES_PER_BLOCK: i64 = (BLOCK_MAX / FRAME) as i64;
/// Blocks whose rows (a few MiB each, decompressed) are kept, and frames.
const CACHE: usize = 16;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: schema version {found} is newer than this osprey understands ({SCHEMA_VERSION})")]
    TooNew { path: PathBuf, found: i64 },
    #[error("{path}: no recorder store here (is the recorder enabled, and is this its `recorder.path`?)")]
    Missing { path: PathBuf },
    #[error("{path}: block {block} is damaged")]
    Damaged { path: PathBuf, block: i64 },
    #[error("{path}: a block of {rows} rows and {docs} documents cannot be written (at most {max} of each, as many of one as of the other)")]
    BadBlock { path: PathBuf, rows: usize, docs: usize, max: usize },
}

/// What one retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub by_age: u64,
    pub by_size: u64,
}

/// A block as queries see it before reading its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockMeta {
    pub id: i64,
    /// The id of its first event; the others follow.
    pub first: i64,
    pub ts_min: i64,
    pub ts_max: i64,
    /// Its first `n_exec` rows are exec events.
    pub n_exec: usize,
}

/// One event a query found: its id, where its document is, and its row.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub id: i64,
    pub block: i64,
    pub slot: usize,
    pub row: Row,
}

/// An open store: the writer's (read-write) or a reader's (read-only) connection.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The blocks whose rows were read last (queries go through one block after another).
    rows: RefCell<Vec<(i64, Arc<block::Rows>)>>,
    frames: RefCell<Vec<(i64, Arc<Frame>)>>,
    /// Postings per epoch ([`EPOCH_POSTINGS`]; tests set fewer).
    epoch_postings: i64,
}

impl Store {
    /// Opens (creating and migrating) the store for writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let e = |source| StoreError::Sqlite { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|io| e(rusqlite::Error::ToSqlConversionFailure(Box::new(io))))?;
        }
        let conn = Connection::open(path).map_err(e)?;
        // The page size and auto_vacuum must be chosen before the first table exists. Frames are
        // tens of KiB: big pages keep their overflow chains short. The writer's page cache holds
        // what its inserts touch (readers map the file): 8 MiB, as 32 MiB wrote no faster and
        // filled up in every flood of events, a fifth of the agent's memory.
        conn.execute_batch(
            "PRAGMA page_size = 65536;
             PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA cache_size = -8192;",
        )
        .map_err(e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
        let mut store = Self::new(conn, path);
        store.migrate()?;
        // Events name users, commands and paths: not for every local user to read.
        for p in [path.to_owned(), wal_path(path, "-wal"), wal_path(path, "-shm")] {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o640));
        }
        Ok(store)
    }

    /// Opens an existing store for queries only; it may be written by a running agent meanwhile.
    pub fn open_read(path: &Path) -> Result<Self, StoreError> {
        if !path.exists() {
            return Err(StoreError::Missing { path: path.to_owned() });
        }
        let e = |source| StoreError::Sqlite { path: path.to_owned(), source };
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .map_err(e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
        // Queries read postings pages and blobs all over the file: mapped, not copied in by
        // read(2). (Only readers: the writer's touched pages would count against the agent.)
        conn.execute_batch("PRAGMA mmap_size = 1073741824;").map_err(e)?;
        let store = Self::new(conn, path);
        let v = store.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.to_owned(), found: v });
        }
        if v < SCHEMA_VERSION && v > 0 {
            // The agent migrates its store when it starts; a reader cannot.
            return Err(StoreError::Sqlite {
                path: path.to_owned(),
                source: rusqlite::Error::InvalidParameterName(format!(
                    "schema version {v} predates this osprey ({SCHEMA_VERSION}): start the agent (or open the store for writing) once to migrate it"
                )),
            });
        }
        Ok(store)
    }

    fn new(conn: Connection, path: &Path) -> Self {
        Self { conn, path: path.to_owned(), rows: RefCell::default(), frames: RefCell::default(), epoch_postings: EPOCH_POSTINGS }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite { path: self.path.clone(), source }
    }

    fn version(&self) -> Result<i64, StoreError> {
        let has_meta: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", [], |r| r.get::<_, i64>(0))
            .map_err(|x| self.err(x))?
            > 0;
        if !has_meta {
            return Ok(0);
        }
        let v: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key='schema_version'", [], |r| r.get(0))
            .optional()
            .map_err(|x| self.err(x))?;
        Ok(v.and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    fn migrate(&mut self) -> Result<(), StoreError> {
        let v = self.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: self.path.clone(), found: v });
        }
        if v == SCHEMA_VERSION {
            return Ok(());
        }
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        if v == 1 {
            tx.execute_batch("ALTER TABLE events RENAME TO events_v1; ALTER TABLE blocks RENAME TO blocks_v1;").map_err(e)?;
        }
        tx.execute_batch(SCHEMA).map_err(e)?;
        if v == 1 {
            super::migrate::from_v1(&tx).map_err(e)?;
            tx.execute_batch("DROP TABLE events_v1; DROP TABLE blocks_v1;").map_err(e)?;
        }
        tx.execute("INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?1)", [SCHEMA_VERSION.to_string()]).map_err(e)?;
        tx.commit().map_err(e)?;
        if v == 1 {
            self.conn.execute_batch("PRAGMA incremental_vacuum;").map_err(|x| self.err(x))?;
        }
        Ok(())
    }

    /// Appends events in one transaction: all of them, or none.
    pub fn insert<'a>(&mut self, batch: impl IntoIterator<Item = (&'a Row, &'a [u8])>) -> Result<u64, StoreError> {
        let batch: Vec<(&Row, &[u8])> = batch.into_iter().collect();
        let blocks: Vec<_> = batch.chunks(BLOCK_MAX).map(|c| build(c.iter().map(|(r, d)| (r.as_ref(), *d)))).collect();
        self.insert_blocks(blocks.iter().map(|(b, d)| (b, d.as_slice())))
    }

    /// A block its writer built as events came ([`BLOCK_MAX`] rows at most), its documents in the
    /// builder's order.
    pub fn insert_built(&mut self, b: &Builder, docs: &[&[u8]]) -> Result<u64, StoreError> {
        if b.len() > BLOCK_MAX || b.len() != docs.len() {
            return Err(StoreError::BadBlock { path: self.path.clone(), rows: b.len(), docs: docs.len(), max: BLOCK_MAX });
        }
        self.insert_blocks([(b, docs)])
    }

    /// Blocks in one transaction; the events written.
    fn insert_blocks<'b>(&mut self, blocks: impl IntoIterator<Item = (&'b Builder, &'b [&'b [u8]])>) -> Result<u64, StoreError> {
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        let mut n = 0;
        for (b, docs) in blocks {
            if !b.is_empty() {
                insert_block(&tx, b, docs, self.epoch_postings).map_err(e)?;
                n += b.len() as u64;
            }
        }
        tx.commit().map_err(e)?;
        Ok(n)
    }

    /// The blocks that may hold events between `since` and `until`, oldest first.
    pub(crate) fn blocks(&self, since: Option<i64>, until: Option<i64>) -> Result<Vec<BlockMeta>, StoreError> {
        let mut q = self
            .conn
            .prepare_cached("SELECT id, first, ts_min, ts_max, n_exec FROM blocks WHERE ts_max >= ?1 AND ts_min <= ?2 ORDER BY id")
            .map_err(|x| self.err(x))?;
        let rows = q.query_map([since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX)], block_meta);
        rows.and_then(Iterator::collect).map_err(|x| self.err(x))
    }

    /// One block's metadata (`None`: no such block, as after retention).
    fn block(&self, id: i64) -> Result<Option<BlockMeta>, StoreError> {
        self.conn
            .prepare_cached("SELECT id, first, ts_min, ts_max, n_exec FROM blocks WHERE id = ?1")
            .and_then(|mut q| q.query_row([id], block_meta).optional())
            .map_err(|x| self.err(x))
    }

    /// The blocks with a posting key in `lo ..= hi` (`hi` `None`: from `lo` on).
    pub(crate) fn posted(&self, lo: &[u8], hi: Option<&[u8]>) -> Result<BTreeSet<i64>, StoreError> {
        self.posted_range(lo, hi.map(|h| (h, true)))
    }

    /// The blocks with this posting key.
    pub(crate) fn posted_key(&self, k: &[u8]) -> Result<BTreeSet<i64>, StoreError> {
        self.posted(k, Some(k))
    }

    /// The blocks with any of these posting keys (many entities at once: a few queries per
    /// epoch, not one per key).
    pub(crate) fn posted_any(&self, keys: &[Vec<u8>]) -> Result<BTreeSet<i64>, StoreError> {
        const CHUNK: usize = 500;
        self.each_epoch(|tx, e, out| {
            for chunk in keys.chunks(CHUNK) {
                let marks = vec!["?"; chunk.len()].join(",");
                let mut q = tx.prepare_cached(&format!("SELECT DISTINCT block FROM post_{e} WHERE key IN ({marks})"))?;
                for b in q.query_map(rusqlite::params_from_iter(chunk), |r| r.get(0))? {
                    out.insert(b?);
                }
            }
            Ok(())
        })
    }

    /// The blocks with a posting key that starts with `prefix`.
    pub(crate) fn posted_prefix(&self, prefix: &[u8]) -> Result<BTreeSet<i64>, StoreError> {
        let end = block::after_prefix(prefix);
        self.posted_range(prefix, end.as_deref().map(|e| (e, false)))
    }

    /// The blocks with a posting key from `lo` up to `hi` (included or not), in every epoch's
    /// postings.
    fn posted_range(&self, lo: &[u8], hi: Option<(&[u8], bool)>) -> Result<BTreeSet<i64>, StoreError> {
        self.each_epoch(|tx, e, out| {
            let sql = match hi {
                Some((_, true)) => format!("SELECT block FROM post_{e} WHERE key >= ?1 AND key <= ?2"),
                Some((_, false)) => format!("SELECT block FROM post_{e} WHERE key >= ?1 AND key < ?2"),
                None => format!("SELECT block FROM post_{e} WHERE key >= ?1"),
            };
            let mut q = tx.prepare_cached(&sql)?;
            let rows = match hi {
                Some((h, _)) => q.query_map(params![lo, h], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?,
                None => q.query_map(params![lo], |r| r.get(0))?.collect::<Result<Vec<i64>, _>>()?,
            };
            out.extend(rows);
            Ok(())
        })
    }

    /// Runs `each` on every postings epoch, in one read snapshot (retention may drop an epoch
    /// meanwhile), gathering the blocks it finds.
    fn each_epoch(
        &self,
        mut each: impl FnMut(&Connection, i64, &mut BTreeSet<i64>) -> rusqlite::Result<()>,
    ) -> Result<BTreeSet<i64>, StoreError> {
        let mut run = || -> rusqlite::Result<BTreeSet<i64>> {
            let tx = self.conn.unchecked_transaction()?;
            let epochs: Vec<i64> = tx.prepare_cached("SELECT id FROM epochs ORDER BY id")?.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
            let mut out = BTreeSet::new();
            for e in epochs {
                each(&tx, e, &mut out)?;
            }
            Ok(out)
        };
        run().map_err(|x| self.err(x))
    }

    /// A block's rows (`None`: no such block, as after retention).
    pub(crate) fn rows(&self, block: i64) -> Result<Option<Arc<block::Rows>>, StoreError> {
        if let Some((_, r)) = self.rows.borrow().iter().find(|(id, _)| *id == block) {
            return Ok(Some(r.clone()));
        }
        let blob: Option<Vec<u8>> = self
            .conn
            .prepare_cached("SELECT rows FROM blocks WHERE id = ?1")
            .and_then(|mut q| q.query_row([block], |r| r.get(0)).optional())
            .map_err(|x| self.err(x))?;
        let Some(blob) = blob else { return Ok(None) };
        let rows = Arc::new(block::Rows::decode(&blob).ok_or_else(|| StoreError::Damaged { path: self.path.clone(), block })?);
        remember(&mut self.rows.borrow_mut(), block, rows.clone());
        Ok(Some(rows))
    }

    /// The first `limit` events (by time, then id) of the `candidates` blocks (every block when
    /// `None`) between `since` and `until` for which `keep` holds, in time order.
    pub(crate) fn find(
        &self,
        candidates: Option<&BTreeSet<i64>>,
        since: Option<i64>,
        until: Option<i64>,
        limit: usize,
        keep: impl FnMut(&RowRef<'_>) -> bool,
    ) -> Result<Vec<Found>, StoreError> {
        self.sorted(candidates, since, until, false, limit, keep)
    }

    /// As [`Store::find`], every exec event (each block's first rows): what process filters and
    /// command lines are looked up in.
    pub(crate) fn find_execs(&self, candidates: Option<&BTreeSet<i64>>, keep: impl FnMut(&RowRef<'_>) -> bool) -> Result<Vec<Found>, StoreError> {
        self.sorted(candidates, None, None, true, usize::MAX, keep)
    }

    /// The first `limit` events in time order: the latest of those found so far is the top of
    /// a max-heap, and a block that starts after it, once the heap is full, is not read at all.
    fn sorted(
        &self,
        candidates: Option<&BTreeSet<i64>>,
        since: Option<i64>,
        until: Option<i64>,
        execs_only: bool,
        limit: usize,
        keep: impl FnMut(&RowRef<'_>) -> bool,
    ) -> Result<Vec<Found>, StoreError> {
        let mut first: BinaryHeap<ByTime> = BinaryHeap::new();
        let latest: Cell<Option<i64>> = Cell::new(None);
        let wanted = |b: &BlockMeta| latest.get().is_none_or(|t| b.ts_min <= t);
        self.scan_where(candidates, since, until, execs_only, wanted, keep, |f| {
            first.push(ByTime(f));
            if first.len() > limit {
                first.pop();
            }
            if first.len() == limit {
                latest.set(first.peek().map(|m| m.0.row.ts_ns));
            }
            Ok(())
        })?;
        Ok(first.into_sorted_vec().into_iter().map(|b| b.0).collect())
    }

    /// The events of a process (by entity id, or by parent entity id: its children's lineage
    /// events), in time order: through the postings to the blocks, and each block's index of
    /// its rows by process.
    pub(crate) fn of_process(&self, by: block::ProcessKey, id: &str) -> Result<Vec<Found>, StoreError> {
        let mut out = Vec::new();
        for b in self.posted_key(&block::key(by.tag(), id.as_bytes()))? {
            let (Some(meta), Some(rows)) = (self.block(b)?, self.rows(b)?) else { continue };
            let found = rows.of_process(by, id).ok_or_else(|| StoreError::Damaged { path: self.path.clone(), block: b })?;
            out.extend(found.into_iter().map(|(slot, r)| Found { id: meta.first + slot as i64, block: b, slot, row: r.to_row() }));
        }
        out.sort_by_key(|f| (f.row.ts_ns, f.id));
        Ok(out)
    }

    /// As [`Store::find`], handing each event to `found` block by block (oldest block first, not
    /// sorted within; an error from `found` ends the scan): a sweep over the whole store holds
    /// one block at a time.
    pub(crate) fn scan(
        &self,
        candidates: Option<&BTreeSet<i64>>,
        since: Option<i64>,
        until: Option<i64>,
        execs_only: bool,
        keep: impl FnMut(&RowRef<'_>) -> bool,
        found: impl FnMut(Found) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.scan_where(candidates, since, until, execs_only, |_| true, keep, found)
    }

    /// As [`Store::scan`], reading only the blocks `wanted` still wants when their turn comes.
    #[allow(clippy::too_many_arguments)]
    fn scan_where(
        &self,
        candidates: Option<&BTreeSet<i64>>,
        since: Option<i64>,
        until: Option<i64>,
        execs_only: bool,
        wanted: impl Fn(&BlockMeta) -> bool,
        mut keep: impl FnMut(&RowRef<'_>) -> bool,
        mut found: impl FnMut(Found) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let (lo, hi) = (since.unwrap_or(i64::MIN), until.unwrap_or(i64::MAX));
        let metas = match candidates {
            // A few blocks by id (a store may hold hundreds of thousands of small ones).
            Some(c) => c.iter().filter_map(|&id| self.block(id).transpose()).collect::<Result<Vec<_>, _>>()?,
            None => self.blocks(since, until)?,
        };
        for b in metas.into_iter().filter(|b| b.ts_max >= lo && b.ts_min <= hi) {
            if !wanted(&b) {
                continue;
            }
            let Some(rows) = self.rows(b.id)? else { continue };
            for (slot, r) in rows.iter().enumerate().take(if execs_only { b.n_exec } else { usize::MAX }) {
                let r = r.map_err(|_| StoreError::Damaged { path: self.path.clone(), block: b.id })?;
                if r.ts_ns >= lo && r.ts_ns <= hi && keep(&r) {
                    found(Found { id: b.first + slot as i64, block: b.id, slot, row: r.to_row() })?;
                }
            }
        }
        Ok(())
    }

    /// The document of the event in `block` at `slot` (`Null` if it cannot be read).
    pub fn doc(&self, block: i64, slot: usize) -> Result<serde_json::Value, StoreError> {
        let id = block * FRAMES_PER_BLOCK + (slot / FRAME) as i64;
        let cached = self.frames.borrow().iter().find(|(f, _)| *f == id).map(|(_, f)| f.clone());
        let frame = match cached {
            Some(f) => Some(f),
            None => {
                let data: Option<Vec<u8>> = self
                    .conn
                    .prepare_cached("SELECT data FROM frames WHERE id = ?1")
                    .and_then(|mut q| q.query_row([id], |r| r.get(0)).optional())
                    .map_err(|x| self.err(x))?;
                let f = data.and_then(|d| Frame::decode(&d)).map(Arc::new);
                if let Some(f) = &f {
                    remember(&mut self.frames.borrow_mut(), id, f.clone());
                }
                f
            }
        };
        Ok(frame
            .as_ref()
            .and_then(|f| f.doc(slot % FRAME))
            .and_then(|d| serde_json::from_slice(d).ok())
            .unwrap_or(serde_json::Value::Null))
    }

    /// Bytes the database holds (its pages less the free ones).
    pub fn used_bytes(&self) -> Result<u64, StoreError> {
        let q = |sql: &str| self.conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(|x| self.err(x));
        let (pages, free, size) = (q("PRAGMA page_count")?, q("PRAGMA freelist_count")?, q("PRAGMA page_size")?);
        Ok(u64::try_from((pages - free) * size).unwrap_or(0))
    }

    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT coalesce(sum(n), 0) FROM blocks", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|x| self.err(x))
    }

    /// Deletes the blocks whose events are all older than `max_age` before `now_ns`, then the
    /// oldest blocks until the store is under 90% of `max_size`.
    pub fn enforce_retention(&mut self, max_size: u64, max_age: Duration, now_ns: i64) -> Result<Deleted, StoreError> {
        let mut d = Deleted::default();
        let cutoff = now_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
        let old: Vec<(i64, i64)> = self
            .conn
            .prepare("SELECT id, n FROM blocks WHERE ts_max < ?1 ORDER BY id")
            .and_then(|mut q| q.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(|x| self.err(x))?;
        d.by_age = self.delete_blocks(&old)?;
        let target = max_size / 10 * 9;
        let mut used = self.used_bytes()?;
        while used > max_size {
            let count = self.count()?;
            if count == 0 {
                break;
            }
            let per_event = (used / count).max(1);
            let mut excess = ((used - target) / per_event + 1).min(count) as i64;
            let mut oldest = Vec::new();
            {
                let mut q = self.conn.prepare("SELECT id, n FROM blocks ORDER BY id").map_err(|x| self.err(x))?;
                let mut it = q.query([]).map_err(|x| self.err(x))?;
                while excess > 0 {
                    let Some(r) = it.next().map_err(|x| self.err(x))? else { break };
                    let (id, n): (i64, i64) = (r.get(0).map_err(|x| self.err(x))?, r.get(1).map_err(|x| self.err(x))?);
                    oldest.push((id, n));
                    excess -= n;
                }
            }
            let n = self.delete_blocks(&oldest)?;
            d.by_size += n;
            used = self.used_bytes()?;
            if n == 0 {
                break;
            }
        }
        if d.by_age + d.by_size > 0 {
            self.conn.execute_batch("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);").map_err(|x| self.err(x))?;
        }
        Ok(d)
    }

    /// Deletes blocks (ids and event counts) with their frames, and the postings epochs none of
    /// whose blocks are left, in one transaction; returns the events they held. (Postings of a
    /// deleted block in an epoch still in use stay until the epoch goes: a query skips them.)
    fn delete_blocks(&mut self, blocks: &[(i64, i64)]) -> Result<u64, StoreError> {
        if blocks.is_empty() {
            return Ok(0);
        }
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        for &(id, _) in blocks {
            tx.execute("DELETE FROM frames WHERE id >= ?1 AND id < ?2", [id * FRAMES_PER_BLOCK, (id + 1) * FRAMES_PER_BLOCK]).map_err(e)?;
            tx.execute("DELETE FROM blocks WHERE id = ?1", [id]).map_err(e)?;
        }
        // An epoch holds the blocks from its first to the next epoch's first.
        let done: Vec<i64> = tx
            .prepare(
                "SELECT e.id FROM epochs e
                 WHERE coalesce((SELECT min(n.first_block) FROM epochs n WHERE n.id > e.id), (SELECT max(id) + 1 FROM blocks), e.first_block)
                       <= coalesce((SELECT min(id) FROM blocks), 9223372036854775807)",
            )
            .and_then(|mut q| q.query_map([], |r| r.get(0))?.collect())
            .map_err(e)?;
        for id in done {
            tx.execute_batch(&format!("DROP TABLE IF EXISTS post_{id}; DELETE FROM epochs WHERE id = {id};")).map_err(e)?;
        }
        // The oldest epoch left may have lost some of its blocks: their postings go too (a scan
        // of one epoch, bounded by EPOCH_POSTINGS), or they would hold their space.
        let oldest: Option<(i64, i64)> = tx
            .query_row("SELECT (SELECT min(id) FROM epochs), (SELECT min(id) FROM blocks)", [], |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)))
            .map_err(e)?;
        if let Some((epoch, first)) = oldest {
            tx.execute(&format!("DELETE FROM post_{epoch} WHERE block < ?1"), [first]).map_err(e)?;
        }
        tx.commit().map_err(e)?;
        self.rows.borrow_mut().clear();
        self.frames.borrow_mut().clear();
        Ok(blocks.iter().map(|&(_, n)| n as u64).sum())
    }

    /// The lowest and highest event ids (the oldest and newest events), if any.
    pub fn id_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            .query_row("SELECT min(first), max(first + n - 1) FROM blocks", [], |r| {
                Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?))
            })
            .map_err(|x| self.err(x))
    }

    /// `PRAGMA integrity_check`: "ok" or what is wrong.
    pub fn integrity(&self) -> Result<String, StoreError> {
        self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|x| self.err(x))
    }
}

/// A block of rows and their documents, with the documents in the block's order (exec events'
/// first, as [`Builder::push`] says).
pub(super) fn build<'a>(batch: impl IntoIterator<Item = (RowRef<'a>, &'a [u8])>) -> (Builder, Vec<&'a [u8]>) {
    let (mut b, mut exec, mut other) = (Builder::default(), Vec::new(), Vec::new());
    for (r, d) in batch {
        if b.push(&r) { exec.push(d) } else { other.push(d) }
    }
    exec.append(&mut other);
    (b, exec)
}

/// Writes one block: its rows, frames and postings, exec events first (a process filter reads
/// those alone); `docs` in the builder's order. Event ids go on from the newest block's (or
/// from the last id ever given, kept in `meta`, once retention has emptied the store).
pub(super) fn insert_block(tx: &Connection, b: &Builder, docs: &[&[u8]], epoch_postings: i64) -> rusqlite::Result<()> {
    debug_assert_eq!(b.len(), docs.len());
    let next: i64 = tx.query_row(
        "SELECT max(coalesce((SELECT first + n FROM blocks ORDER BY id DESC LIMIT 1), 1),
                    coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'next_event'), 1))",
        [],
        |r| r.get(0),
    )?;
    let (ts_min, ts_max) = b.span();
    tx.prepare_cached("INSERT INTO blocks(first, n, n_exec, ts_min, ts_max, rows) VALUES(?1, ?2, ?3, ?4, ?5, ?6)")?
        .execute(params![next, b.len() as i64, b.n_exec() as i64, ts_min, ts_max, b.rows()])?;
    let id = tx.last_insert_rowid();
    let (mut raw, mut out) = (Vec::new(), Vec::new());
    let mut frame = tx.prepare_cached("INSERT INTO frames(id, data) VALUES(?1, ?2)")?;
    for (i, chunk) in docs.chunks(FRAME).enumerate() {
        frame.execute(params![id * FRAMES_PER_BLOCK + i as i64, block::encode_frame(chunk, &mut raw, &mut out)])?;
    }
    let keys = b.keys();
    let epoch: Option<(i64, i64)> =
        tx.prepare_cached("SELECT id, postings FROM epochs ORDER BY id DESC LIMIT 1")?.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
    let epoch = match epoch {
        Some((e, n)) if n < epoch_postings => e,
        _ => {
            tx.execute("INSERT INTO epochs(first_block, postings) VALUES(?1, 0)", [id])?;
            let e = tx.last_insert_rowid();
            tx.execute_batch(&format!(
                "CREATE TABLE post_{e}(key BLOB NOT NULL, block INTEGER NOT NULL, PRIMARY KEY(key, block)) WITHOUT ROWID;"
            ))?;
            e
        }
    };
    // Many postings a statement: SQLite's work per statement run is much of a posting's cost.
    let many = keys.len() / POSTINGS_PER_INSERT * POSTINGS_PER_INSERT;
    if many > 0 {
        let values = vec!["(?, ?)"; POSTINGS_PER_INSERT].join(",");
        let mut post = tx.prepare_cached(&format!("INSERT OR IGNORE INTO post_{epoch}(key, block) VALUES {values}"))?;
        for chunk in keys[..many].chunks(POSTINGS_PER_INSERT) {
            let args: Vec<&dyn rusqlite::ToSql> = chunk.iter().flat_map(|k| [k as &dyn rusqlite::ToSql, &id]).collect();
            post.execute(args.as_slice())?;
        }
    }
    let mut post = tx.prepare_cached(&format!("INSERT OR IGNORE INTO post_{epoch}(key, block) VALUES(?1, ?2)"))?;
    for k in &keys[many..] {
        post.execute(params![k, id])?;
    }
    tx.prepare_cached("UPDATE epochs SET postings = postings + ?1 WHERE id = ?2")?.execute([keys.len() as i64, epoch])?;
    tx.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES('next_event', ?1)")?
        .execute([(next + b.len() as i64).to_string()])?;
    Ok(())
}

/// A found event ordered by (time, id), for the heap of [`Store::find`].
struct ByTime(Found);

impl ByTime {
    fn key(&self) -> (i64, i64) {
        (self.0.row.ts_ns, self.0.id)
    }
}

impl PartialEq for ByTime {
    fn eq(&self, o: &Self) -> bool {
        self.key() == o.key()
    }
}
impl Eq for ByTime {}
impl PartialOrd for ByTime {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByTime {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.key().cmp(&o.key())
    }
}

fn block_meta(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlockMeta> {
    Ok(BlockMeta { id: r.get(0)?, first: r.get(1)?, ts_min: r.get(2)?, ts_max: r.get(3)?, n_exec: r.get::<_, i64>(4)?.try_into().unwrap_or(0) })
}

fn remember<T>(cache: &mut Vec<(i64, Arc<T>)>, id: i64, v: Arc<T>) {
    if cache.len() == CACHE {
        cache.remove(0);
    }
    cache.push((id, v));
}

fn wal_path(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::recorder::index::row;

    pub(crate) fn doc(ts: i64, entity: &str, action: &str, extra: &str) -> Vec<u8> {
        format!(
            r#"{{"@timestamp":"{}","event":{{"kind":"event","action":"{action}"}},"host":{{"id":"h"}},"process":{{"pid":1,"entity_id":"{entity}"}}{extra}}}"#,
            crate::event::rfc3339(ts as u64)
        )
        .into_bytes()
    }

    #[test]
    fn inserts_reopens_and_enforces_retention_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/rec.db");
        let mut s = Store::open(&path).unwrap();
        let docs: Vec<Vec<u8>> =
            (0..4000).map(|i| doc(1_000_000_000 * i, &format!("e{i}"), "open_write", &format!(r#","file":{{"path":"/tmp/{i}{}"}}"#, "x".repeat(400)))).collect();
        let rows: Vec<Row> = docs.iter().map(|d| row(d, None).unwrap()).collect();
        for chunk in rows.iter().zip(&docs).collect::<Vec<_>>().chunks(500) {
            s.insert(chunk.iter().map(|(r, d)| (*r, d.as_slice()))).unwrap();
        }
        assert_eq!(s.count().unwrap(), 4000);
        let used = s.used_bytes().unwrap();
        drop(s);

        let mut s = Store::open(&path).unwrap();
        assert_eq!(s.count().unwrap(), 4000, "committed batches survive a reopen");
        // by age: everything before t=1000 s goes
        let d = s.enforce_retention(u64::MAX, Duration::from_secs(3000), 4000 * 1_000_000_000).unwrap();
        assert_eq!(d, Deleted { by_age: 1000, by_size: 0 });
        // by size: the oldest go until under 90% of the limit
        let limit = used / 2;
        let d = s.enforce_retention(limit, Duration::from_secs(1 << 40), 0).unwrap();
        assert!(d.by_size > 0);
        assert!(s.used_bytes().unwrap() <= limit, "{} > {limit}", s.used_bytes().unwrap());
        let oldest: i64 = s.conn.query_row("SELECT min(ts_min) FROM blocks", [], |r| r.get(0)).unwrap();
        let newest: i64 = s.conn.query_row("SELECT max(ts_max) FROM blocks", [], |r| r.get(0)).unwrap();
        assert_eq!(newest, 3999 * 1_000_000_000, "the newest is kept");
        assert_eq!(oldest, (1000 + d.by_size as i64) * 1_000_000_000, "the oldest went first");
        assert_eq!(s.integrity().unwrap(), "ok");
        assert!(std::fs::metadata(&path).unwrap().len() <= used, "freed pages go back to the file system");
    }

    #[test]
    fn find_with_a_limit_gives_the_first_events_in_time_and_skips_later_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("rec.db")).unwrap();
        // Ten blocks of five, out of time order (block 0 first, then 7, 4, 1, … tens of seconds
        // later), and two events of each block at the same time (ids break the tie).
        for b in 0..10i64 {
            let docs: Vec<Vec<u8>> = (0..5).map(|i| doc(1_000_000_000 * ((b * 7) % 10 * 10 + i.min(3)), "e", "creation", "")).collect();
            let rows: Vec<Row> = docs.iter().map(|d| row(d, None).unwrap()).collect();
            s.insert(rows.iter().zip(&docs).map(|(r, d)| (r, d.as_slice()))).unwrap();
        }
        let key = |f: &Found| (f.row.ts_ns, f.id);
        let all: Vec<(i64, i64)> = s.find(None, None, None, usize::MAX, |_| true).unwrap().iter().map(key).collect();
        assert_eq!(all.len(), 50);
        assert!(all.windows(2).all(|w| w[0] < w[1]), "in time order, then by id");
        for limit in [1, 4, 5, 7, 50, 51] {
            let first: Vec<(i64, i64)> = s.find(None, None, None, limit, |_| true).unwrap().iter().map(key).collect();
            assert_eq!(first, all[..limit.min(50)], "limit {limit}");
        }
        // The first five are block 0's: once they are in, no other block starts early enough.
        s.rows.borrow_mut().clear();
        s.find(None, None, None, 5, |_| true).unwrap();
        assert_eq!(s.rows.borrow().len(), 1, "only the first block was read");
        assert!(s.find(None, None, None, 3, |r| r.cmdline.is_some()).unwrap().is_empty());
    }

    #[test]
    fn postings_live_in_epochs_that_retention_drops_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.db");
        let mut s = Store::open(&path).unwrap();
        s.epoch_postings = 50;
        // 40 batches of 10 events, 2 processes and 10 paths each: 12 postings a batch.
        for b in 0..40i64 {
            let docs: Vec<Vec<u8>> = (0..10)
                .map(|i| doc(1_000_000_000 * (b * 10 + i), &format!("e{}", (b * 10 + i) / 5), "creation", &format!(r#","file":{{"path":"/p/{b}/{i}"}}"#)))
                .collect();
            let rows: Vec<Row> = docs.iter().map(|d| row(d, None).unwrap()).collect();
            s.insert(rows.iter().zip(&docs).map(|(r, d)| (r, d.as_slice()))).unwrap();
        }
        let epochs = |s: &Store| -> i64 { s.conn.query_row("SELECT count(*) FROM epochs", [], |r| r.get(0)).unwrap() };
        assert_eq!(epochs(&s), 8, "a new epoch every 5 batches");
        let hunt = |s: &Store, glob: &str| crate::recorder::hunt::Hunt { path: Some(glob.into()), limit: 10_000, ..Default::default() }.run(s).unwrap().hits.len();
        assert_eq!(hunt(&s, "/p/*"), 400, "a hunt reads every epoch");
        assert_eq!(hunt(&s, "/p/3[0-9]/*"), 100);
        assert_eq!(s.of_entity("e7").unwrap().len(), 5);
        // Age retention takes the first 120 events: two epochs go whole, the third loses two
        // of its blocks and their postings.
        let d = s.enforce_retention(u64::MAX, Duration::from_secs(280), 400 * 1_000_000_000).unwrap();
        assert_eq!(d.by_age, 120);
        assert_eq!(epochs(&s), 6);
        let third: i64 = s.conn.query_row("SELECT min(id) FROM epochs", [], |r| r.get(0)).unwrap();
        let stale: i64 = s.conn.query_row(&format!("SELECT count(*) FROM post_{third} WHERE block <= 12"), [], |r| r.get(0)).unwrap();
        assert_eq!(stale, 0, "the deleted blocks' postings are gone");
        assert_eq!(hunt(&s, "/p/*"), 280);
        assert_eq!(hunt(&s, "/p/1[0-9]/*"), 80);
        assert!(s.of_entity("e7").unwrap().is_empty());
        assert_eq!(s.integrity().unwrap(), "ok");
    }

    #[test]
    fn a_block_with_more_postings_than_one_insert_holds_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(&dir.path().join("rec.db")).unwrap();
        // 300 distinct paths (two full statements of postings and a remainder), one process.
        let n = 2 * POSTINGS_PER_INSERT as i64 + 44;
        let docs: Vec<Vec<u8>> =
            (0..n).map(|i| doc(1_000_000_000 * i, "e1", "creation", &format!(r#","file":{{"path":"/q/{i}"}}"#))).collect();
        let rows: Vec<Row> = docs.iter().map(|d| row(d, None).unwrap()).collect();
        assert_eq!(s.insert(rows.iter().zip(&docs).map(|(r, d)| (r, d.as_slice()))).unwrap(), n as u64);
        let postings: i64 = s.conn.query_row("SELECT postings FROM epochs", [], |r| r.get(0)).unwrap();
        let epoch: i64 = s.conn.query_row("SELECT id FROM epochs", [], |r| r.get(0)).unwrap();
        let stored: i64 = s.conn.query_row(&format!("SELECT count(*) FROM post_{epoch}"), [], |r| r.get(0)).unwrap();
        assert_eq!((postings, stored), (n + 1, n + 1), "each path and the entity, once");
        let hunt = |glob: &str| crate::recorder::hunt::Hunt { path: Some(glob.into()), limit: 10_000, ..Default::default() }.run(&s).unwrap().hits.len();
        for i in [0, 1, POSTINGS_PER_INSERT as i64, n - 1] {
            assert_eq!(hunt(&format!("/q/{i}")), 1, "/q/{i}");
        }
        assert_eq!(hunt("/q/*"), n as usize);
    }

    #[test]
    fn readers_name_a_missing_store() {
        let err = Store::open_read(Path::new("/nonexistent/rec.db")).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/rec.db") && err.contains("recorder"), "{err}");
    }
}
