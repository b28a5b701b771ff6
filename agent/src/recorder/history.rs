//! The recorder's store as the [`History`] stories are read from.

use rusqlite::OptionalExtension;
use serde_json::Value;

use super::{
    store::Store,
    story::{History, Proc, Recorded, StoryError},
};
use crate::recorder::StoreError;

impl History for Store {
    fn alert(&self, id: &str) -> Result<Option<(Option<String>, Value)>, StoryError> {
        let row = sql(
            self,
            self.conn
                .query_row("SELECT entity, block, slot FROM events WHERE alert = ?1 LIMIT 1", [id], |r| {
                    Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
                })
                .optional(),
        )?;
        Ok(match row {
            Some((e, block, slot)) => Some((e, self.doc(block, slot)?)),
            None => None,
        })
    }

    fn process(&self, entity: &str) -> Result<Option<Proc>, StoryError> {
        Ok(proc_of(self, entity)?)
    }

    fn children(&self, entity: &str) -> Result<Vec<String>, StoryError> {
        let mut q = sql(self, self.conn.prepare_cached("SELECT DISTINCT entity FROM events WHERE parent = ?1 AND entity IS NOT NULL"))?;
        Ok(sql(self, q.query_map([entity], |r| r.get(0)).and_then(Iterator::collect))?)
    }

    fn events(&self, entity: &str, limit: usize) -> Result<Vec<Recorded>, StoryError> {
        let mut q = sql(self, self.conn.prepare_cached("SELECT id, ts, kind, action, block, slot FROM events WHERE entity = ?1 ORDER BY ts, id LIMIT ?2"))?;
        let rows = q.query_map(rusqlite::params![entity, limit as i64], |r| {
            Ok((Recorded { id: r.get(0)?, ts_ns: r.get(1)?, kind: r.get(2)?, action: r.get(3)?, doc: Value::Null }, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?))
        });
        let rows: Vec<(Recorded, i64, i64)> = sql(self, rows.and_then(Iterator::collect))?;
        rows.into_iter()
            .map(|(mut rec, block, slot)| {
                rec.doc = self.doc(block, slot)?;
                Ok(rec)
            })
            .collect()
    }
}

fn sql<T>(store: &Store, r: rusqlite::Result<T>) -> Result<T, StoreError> {
    r.map_err(|e| store.err(e))
}

fn proc_of(store: &Store, entity: &str) -> Result<Option<Proc>, StoreError> {
    // The first lineage event names the parent and the start; the latest exec the image.
    let first = sql(
        store,
        store
            .conn
            .query_row(
                "SELECT parent, host, pid, ts, cgroup FROM events WHERE entity = ?1 AND parent IS NOT NULL ORDER BY ts, id LIMIT 1",
                [entity],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, Option<i64>>(4)?)),
            )
            .optional(),
    )?;
    let exec = sql(
        store,
        store
            .conn
            .query_row(
                "SELECT exe, cmdline, user, cgroup, host, pid, ts FROM events WHERE entity = ?1 AND cmdline IS NOT NULL ORDER BY ts DESC, id DESC LIMIT 1",
                [entity],
                |r| {
                    Ok((
                        r.get::<_, Option<String>>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional(),
    )?;
    let mut p = Proc { entity: entity.to_owned(), ..Proc::default() };
    match (&first, &exec) {
        (None, None) => {
            // Seen only in other events (started before the recorder): what they say.
            let any = sql(
                store,
                store
                    .conn
                    .query_row(
                        "SELECT host, pid, exe, user, ts FROM events WHERE entity = ?1 ORDER BY ts, id LIMIT 1",
                        [entity],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, Option<String>>(3)?, r.get::<_, i64>(4)?)),
                    )
                    .optional(),
            )?;
            let Some((host, pid, exe, user, ts)) = any else { return Ok(None) };
            (p.host, p.pid, p.exe, p.user, p.start_ns) = (host, pid.unwrap_or(0), exe, user, ts);
        }
        _ => {
            if let Some((parent, host, pid, ts, cgroup)) = first {
                (p.parent, p.host, p.pid, p.start_ns, p.cgroup) = (Some(parent), host, pid, ts, cgroup);
            }
            if let Some((exe, cmdline, user, cgroup, host, pid, ts)) = exec {
                (p.exe, p.cmdline, p.user) = (exe, cmdline, user);
                p.cgroup = cgroup.or(p.cgroup);
                if p.host.is_empty() {
                    (p.host, p.pid, p.start_ns) = (host, pid, ts);
                }
            }
        }
    }
    if p.cgroup.is_none() {
        // Started before the recorder: its other events still say where it runs.
        p.cgroup = sql(
            store,
            store
                .conn
                .query_row(
                    "SELECT cgroup FROM events WHERE entity = ?1 AND cgroup IS NOT NULL ORDER BY ts DESC, id DESC LIMIT 1",
                    [entity],
                    |r| r.get(0),
                )
                .optional(),
        )?;
    }
    Ok(Some(p))
}

