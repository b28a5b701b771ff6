//! The event store: one SQLite database (WAL, batched transactions) holding every recorded
//! event's ECS document and the columns hunts and stories look it up by.
//!
//! Each batch's documents are stored together as one LZ4-compressed block (ECS documents of one
//! host repeat each other: the block shrinks them several times where one document alone barely
//! compresses), and each event row points at its block and slot.
//!
//! Events are appended in batches of one transaction each, so a crash (or `kill -9`) loses at
//! most the batch being written and never leaves a half-written one. Retention deletes the
//! oldest events first (lowest ids), by age and by size; freed pages are reused by later
//! inserts and handed back to the file system by incremental vacuum.

use std::{
    cell::RefCell,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use thiserror::Error;

use super::index::Row;

/// The schema version this build writes; older stores are migrated on open.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    id       INTEGER PRIMARY KEY,
    ts       INTEGER NOT NULL,
    host     TEXT NOT NULL,
    kind     TEXT NOT NULL,
    action   TEXT NOT NULL,
    entity   TEXT,
    parent   TEXT,
    pid      INTEGER,
    exe      TEXT,
    sha256   TEXT,
    cmdline  TEXT,
    user     TEXT,
    path     TEXT,
    src_ip   BLOB,
    src_port INTEGER,
    dst_ip   BLOB,
    dst_port INTEGER,
    domain   TEXT,
    alert    TEXT,
    rule     TEXT,
    cgroup   INTEGER,
    block    INTEGER NOT NULL,
    slot     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS ev_ts ON events(ts);
CREATE INDEX IF NOT EXISTS ev_entity ON events(entity, ts) WHERE entity IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_parent ON events(parent) WHERE parent IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_exe ON events(exe) WHERE cmdline IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_cmdline ON events(cmdline) WHERE cmdline IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_sha256 ON events(sha256) WHERE sha256 IS NOT NULL AND cmdline IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_path ON events(path) WHERE path IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_src ON events(src_ip) WHERE src_ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_dst ON events(dst_ip) WHERE dst_ip IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_domain ON events(domain) WHERE domain IS NOT NULL;
CREATE INDEX IF NOT EXISTS ev_alert ON events(alert) WHERE alert IS NOT NULL;
";

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: schema version {found} is newer than this osprey understands ({SCHEMA_VERSION})")]
    TooNew { path: PathBuf, found: i64 },
    #[error("{path}: no recorder store here (is the recorder enabled, and is this its `recorder.path`?)")]
    Missing { path: PathBuf },
}

/// What one retention pass removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub by_age: u64,
    pub by_size: u64,
}

/// An open store: the writer's (read-write) or a reader's (read-only) connection.
pub struct Store {
    pub(crate) conn: Connection,
    path: PathBuf,
    /// The blocks read last (readers go through one block after another).
    blocks: RefCell<Vec<(i64, Arc<Block>)>>,
}

/// A block's documents, decompressed.
struct Block {
    data: Vec<u8>,
    /// (start, end) of each document in `data`.
    spans: Vec<(usize, usize)>,
}

const BLOCK_CACHE: usize = 8;

impl Store {
    /// Opens (creating and migrating) the store for writing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let e = |source| StoreError::Sqlite { path: path.to_owned(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|io| e(rusqlite::Error::ToSqlConversionFailure(Box::new(io))))?;
        }
        let conn = Connection::open(path).map_err(e)?;
        // auto_vacuum must be chosen before the first table exists.
        conn.execute_batch(
            "PRAGMA auto_vacuum = INCREMENTAL;
             PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA journal_size_limit = 67108864;
             PRAGMA cache_size = -32768;",
        )
        .map_err(e)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(e)?;
        let store = Self { conn, path: path.to_owned(), blocks: RefCell::default() };
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
        let store = Self { conn, path: path.to_owned(), blocks: RefCell::default() };
        let v = store.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: path.to_owned(), found: v });
        }
        Ok(store)
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

    fn migrate(&self) -> Result<(), StoreError> {
        let v = self.version()?;
        if v > SCHEMA_VERSION {
            return Err(StoreError::TooNew { path: self.path.clone(), found: v });
        }
        if v < SCHEMA_VERSION {
            // Version 1 is the first: creating is the whole migration. Later versions add their
            // steps here, each in its own transaction.
            self.conn.execute_batch(SCHEMA).map_err(|x| self.err(x))?;
            self.conn
                .execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|x| self.err(x))?;
        }
        Ok(())
    }

    /// Appends events in one transaction: all of them, or none. Their documents become one block.
    pub fn insert<'a>(&mut self, batch: impl IntoIterator<Item = (&'a Row, &'a [u8])>) -> Result<u64, StoreError> {
        let batch: Vec<(&Row, &[u8])> = batch.into_iter().collect();
        if batch.is_empty() {
            return Ok(0);
        }
        let path = self.path.clone();
        let e = |source| StoreError::Sqlite { path: path.clone(), source };
        let tx = self.conn.transaction().map_err(e)?;
        tx.prepare_cached("INSERT INTO blocks(data) VALUES(?1)").map_err(e)?.execute([encode_block(batch.iter().map(|(_, d)| *d))]).map_err(e)?;
        let block = tx.last_insert_rowid();
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO events(ts, host, kind, action, entity, parent, pid, exe, sha256, cmdline, user, path,
                        src_ip, src_port, dst_ip, dst_port, domain, alert, rule, cgroup, block, slot)
                     VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                )
                .map_err(e)?;
            for (slot, (r, _)) in batch.iter().enumerate() {
                st.execute(params![
                    r.ts_ns,
                    r.host,
                    r.kind,
                    r.action,
                    r.entity,
                    r.parent,
                    r.pid,
                    r.exe,
                    r.sha256,
                    r.cmdline,
                    r.user,
                    r.path,
                    r.src_ip.as_ref().map(|b| &b[..]),
                    r.src_port,
                    r.dst_ip.as_ref().map(|b| &b[..]),
                    r.dst_port,
                    r.domain,
                    r.alert,
                    r.rule,
                    r.cgroup,
                    block,
                    slot as i64,
                ])
                .map_err(e)?;
            }
        }
        tx.commit().map_err(e)?;
        Ok(batch.len() as u64)
    }

    /// The document of the event in `block` at `slot` (`Null` if it cannot be read).
    pub fn doc(&self, block: i64, slot: i64) -> Result<serde_json::Value, StoreError> {
        let cached = self.blocks.borrow().iter().find(|(id, _)| *id == block).map(|(_, b)| b.clone());
        let b = match cached {
            Some(b) => b,
            None => {
                let data: Option<Vec<u8>> = self
                    .conn
                    .prepare_cached("SELECT data FROM blocks WHERE id = ?1")
                    .and_then(|mut q| q.query_row([block], |r| r.get(0)).optional())
                    .map_err(|x| self.err(x))?;
                let b = Arc::new(data.and_then(|d| decode_block(&d)).unwrap_or(Block { data: Vec::new(), spans: Vec::new() }));
                let mut cache = self.blocks.borrow_mut();
                if cache.len() == BLOCK_CACHE {
                    cache.remove(0);
                }
                cache.push((block, b.clone()));
                b
            }
        };
        Ok(usize::try_from(slot)
            .ok()
            .and_then(|i| b.spans.get(i))
            .and_then(|&(a, z)| serde_json::from_slice(&b.data[a..z]).ok())
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
            .query_row("SELECT count(*) FROM events", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|x| self.err(x))
    }

    /// Deletes events older than `max_age` before `now_ns`, then the oldest events until the
    /// store is under 90% of `max_size`.
    pub fn enforce_retention(&mut self, max_size: u64, max_age: Duration, now_ns: i64) -> Result<Deleted, StoreError> {
        let mut d = Deleted::default();
        let cutoff = now_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX));
        d.by_age = self.conn.execute("DELETE FROM events WHERE ts < ?1", [cutoff]).map_err(|x| self.err(x))? as u64;
        if d.by_age > 0 {
            self.drop_unused_blocks()?;
        }
        let target = max_size / 10 * 9;
        let mut used = self.used_bytes()?;
        while used > max_size {
            let count = self.count()?;
            if count == 0 {
                break;
            }
            let per_row = (used / count).max(1);
            let excess = ((used - target) / per_row + 1).min(count);
            let first: i64 = self.conn.query_row("SELECT min(id) FROM events", [], |r| r.get(0)).map_err(|x| self.err(x))?;
            let n = self
                .conn
                .execute("DELETE FROM events WHERE id < ?1", [first + excess as i64])
                .map_err(|x| self.err(x))? as u64;
            self.drop_unused_blocks()?;
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

    /// Blocks older than the oldest event left. (Age retention may leave a block's later events:
    /// blocks go only once nothing before them is left.)
    fn drop_unused_blocks(&self) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM blocks WHERE id < coalesce((SELECT min(block) FROM events), (SELECT max(id) + 1 FROM blocks))", [])
            .map_err(|x| self.err(x))?;
        self.blocks.borrow_mut().clear();
        Ok(())
    }

    /// The lowest and highest event ids (the oldest and newest events), if any.
    pub fn id_range(&self) -> Result<Option<(i64, i64)>, StoreError> {
        self.conn
            .query_row("SELECT min(id), max(id) FROM events", [], |r| Ok(r.get::<_, Option<i64>>(0)?.zip(r.get::<_, Option<i64>>(1)?)))
            .map_err(|x| self.err(x))
    }

    /// `PRAGMA integrity_check`: "ok" or what is wrong.
    pub fn integrity(&self) -> Result<String, StoreError> {
        self.conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).map_err(|x| self.err(x))
    }
}

/// A batch's documents as one block: their count, each one's length, the documents, all
/// LZ4-compressed with the uncompressed size prepended.
fn encode_block<'a>(docs: impl Iterator<Item = &'a [u8]> + Clone) -> Vec<u8> {
    let n = docs.clone().count();
    let mut raw = Vec::with_capacity(4 + 4 * n + docs.clone().map(<[u8]>::len).sum::<usize>());
    raw.extend_from_slice(&(n as u32).to_le_bytes());
    for d in docs.clone() {
        raw.extend_from_slice(&(d.len() as u32).to_le_bytes());
    }
    for d in docs {
        raw.extend_from_slice(d);
    }
    lz4_flex::compress_prepend_size(&raw)
}

fn decode_block(blob: &[u8]) -> Option<Block> {
    let data = lz4_flex::decompress_size_prepended(blob).ok()?;
    let n = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    let mut at = 4usize.checked_add(n.checked_mul(4)?)?;
    let mut spans = Vec::with_capacity(n);
    for i in 0..n {
        let len = u32::from_le_bytes(data.get(4 + 4 * i..8 + 4 * i)?.try_into().ok()?) as usize;
        let end = at.checked_add(len).filter(|&e| e <= data.len())?;
        spans.push((at, end));
        at = end;
    }
    Some(Block { data, spans })
}

fn wal_path(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
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
        let oldest: i64 = s.conn.query_row("SELECT min(ts) FROM events", [], |r| r.get(0)).unwrap();
        let newest: i64 = s.conn.query_row("SELECT max(ts) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(newest, 3999 * 1_000_000_000, "the newest is kept");
        assert_eq!(oldest, (1000 + d.by_size as i64) * 1_000_000_000, "the oldest went first");
        assert_eq!(s.integrity().unwrap(), "ok");
        assert!(std::fs::metadata(&path).unwrap().len() <= used, "freed pages go back to the file system");
    }

    #[test]
    fn readers_name_a_missing_store() {
        let err = Store::open_read(Path::new("/nonexistent/rec.db")).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/rec.db") && err.contains("recorder"), "{err}");
    }
}
