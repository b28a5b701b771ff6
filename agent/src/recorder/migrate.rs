//! Migrations of stores written by earlier versions.
//!
//! Version 1 kept a row per event in `events`, with a B-tree index per hunted column, and each
//! batch's documents as one compressed block in `blocks`. [`from_v1`] rewrites it, batch by
//! batch and in event order, as version 2's blocks; the caller has renamed the old tables to
//! `events_v1` and `blocks_v1` and drops them once this returns, all in one transaction.

use rusqlite::Connection;

use super::{
    block::Frame,
    index::Row,
    store::{build, insert_block, EPOCH_POSTINGS},
};

pub(super) fn from_v1(tx: &Connection) -> rusqlite::Result<()> {
    // New ids go on after the old ones (the events are renumbered, and an id seen before must
    // not name another event now).
    tx.execute("INSERT OR REPLACE INTO meta(key, value) SELECT 'next_event', coalesce(max(id), 0) + 1 FROM events_v1", [])?;
    let mut q = tx.prepare(
        "SELECT ts, host, kind, action, entity, parent, pid, exe, sha256, cmdline, user, path,
                src_ip, src_port, dst_ip, dst_port, domain, alert, rule, cgroup, block, slot
         FROM events_v1 ORDER BY id",
    )?;
    let mut it = q.query([])?;
    let mut rows: Vec<Row> = Vec::new();
    let mut slots: Vec<usize> = Vec::new();
    let mut current: Option<i64> = None;
    while let Some(r) = it.next()? {
        let block: i64 = r.get(20)?;
        if current.is_some_and(|c| c != block) {
            flush(tx, current.take(), &mut rows, &mut slots)?;
        }
        current = Some(block);
        let ip = |i: usize| -> rusqlite::Result<Option<[u8; 16]>> { Ok(r.get::<_, Option<Vec<u8>>>(i)?.and_then(|b| b.try_into().ok())) };
        rows.push(Row {
            ts_ns: r.get(0)?,
            host: r.get(1)?,
            kind: r.get(2)?,
            action: r.get(3)?,
            entity: r.get(4)?,
            parent: r.get(5)?,
            pid: r.get(6)?,
            exe: r.get(7)?,
            sha256: r.get(8)?,
            cmdline: r.get(9)?,
            user: r.get(10)?,
            path: r.get(11)?,
            src_ip: ip(12)?,
            src_port: r.get(13)?,
            dst_ip: ip(14)?,
            dst_port: r.get(15)?,
            domain: r.get(16)?,
            alert: r.get(17)?,
            rule: r.get(18)?,
            severity: None,
            cgroup: r.get(19)?,
        });
        slots.push(usize::try_from(r.get::<_, i64>(21)?).unwrap_or(usize::MAX));
    }
    flush(tx, current, &mut rows, &mut slots)
}

/// Writes one old block's surviving events (retention may have taken some) as a new block.
fn flush(tx: &Connection, block: Option<i64>, rows: &mut Vec<Row>, slots: &mut Vec<usize>) -> rusqlite::Result<()> {
    let Some(block) = block else { return Ok(()) };
    let data: Option<Vec<u8>> = tx.query_row("SELECT data FROM blocks_v1 WHERE id = ?1", [block], |r| r.get(0)).ok();
    // Version 1's block has the layout of a frame.
    let frame = data.as_deref().and_then(Frame::decode);
    let docs: Vec<&[u8]> = slots.iter().map(|&s| frame.as_ref().and_then(|f| f.doc(s)).unwrap_or(b"null")).collect();
    for (r, d) in rows.chunks(1 << 16).zip(docs.chunks(1 << 16)) {
        let (b, docs) = build(r.iter().map(Row::as_ref).zip(d.iter().copied()));
        insert_block(tx, &b, &docs, EPOCH_POSTINGS)?;
    }
    rows.clear();
    slots.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::recorder::{block::encode_frame, hunt::Hunt, index::row, Store};

    /// Version 1's schema, as it shipped.
    const V1: &str = "
        CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, host TEXT NOT NULL, kind TEXT NOT NULL,
            action TEXT NOT NULL, entity TEXT, parent TEXT, pid INTEGER, exe TEXT, sha256 TEXT, cmdline TEXT,
            user TEXT, path TEXT, src_ip BLOB, src_port INTEGER, dst_ip BLOB, dst_port INTEGER, domain TEXT,
            alert TEXT, rule TEXT, cgroup INTEGER, block INTEGER NOT NULL, slot INTEGER NOT NULL);
        CREATE TABLE blocks(id INTEGER PRIMARY KEY, data BLOB NOT NULL);
        CREATE INDEX ev_ts ON events(ts);
        INSERT INTO meta VALUES('schema_version', '1');";

    #[test]
    fn a_version_1_store_is_rewritten_and_answers_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let docs: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let extra = if i % 2 == 0 { format!(r#","file":{{"path":"/tmp/f{i}"}}"#) } else { r#","destination":{"ip":"10.0.0.9","port":443}"#.into() };
                crate::recorder::store::tests::doc(1_000_000_000 * i, &format!("e{}", i / 3), "open_write", &extra)
            })
            .collect();
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(V1).unwrap();
            // two old blocks of 5; retention had taken the first event
            for (b, chunk) in docs.chunks(5).enumerate() {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                c.execute("INSERT INTO blocks(id, data) VALUES(?1, ?2)", rusqlite::params![b as i64 + 1, encode_frame(&refs, &mut Vec::new(), &mut Vec::new())]).unwrap();
                for (slot, d) in chunk.iter().enumerate().filter(|(s, _)| b > 0 || *s > 0) {
                    let r = row(d, None).unwrap();
                    c.execute(
                        "INSERT INTO events(ts, host, kind, action, entity, path, dst_ip, dst_port, block, slot) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                        rusqlite::params![r.ts_ns, r.host, r.kind, r.action, r.entity, r.path, r.dst_ip.map(|b| b.to_vec()), r.dst_port, b as i64 + 1, slot as i64],
                    )
                    .unwrap();
                }
            }
        }
        assert!(Store::open_read(&path).err().unwrap().to_string().contains("migrate"), "a reader says what to do");
        let s = Store::open(&path).unwrap();
        assert_eq!(s.count().unwrap(), 9);
        assert_eq!(s.integrity().unwrap(), "ok");
        assert_eq!(s.id_range().unwrap().unwrap().0, 10, "new ids come after the old ones (1 to 9)");
        let a = Hunt { ip: Some("10.0.0.9".into()), ..Hunt::default() }.run(&s).unwrap();
        assert_eq!(a.hits.len(), 5);
        let a = Hunt { path: Some("/tmp/f*".into()), ..Hunt::default() }.run(&s).unwrap();
        let paths: Vec<&str> = a.hits.iter().map(|h| h.doc["file"]["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["/tmp/f2", "/tmp/f4", "/tmp/f6", "/tmp/f8"], "each event keeps its own document");
        let tables: i64 = s.conn.query_row("SELECT count(*) FROM sqlite_master WHERE name LIKE '%_v1' OR name = 'events'", [], |r| r.get(0)).unwrap();
        assert_eq!(tables, 0, "the old tables are gone");
        drop(s);
        assert_eq!(Store::open_read(&path).unwrap().count().unwrap(), 9);
    }
}
