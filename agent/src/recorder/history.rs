//! The recorder's store as the [`History`] stories are read from.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    block::{key, tag, ProcessKey},
    store::{Found, Store},
    story::{History, Proc, Recorded, StoryError},
};
use crate::recorder::StoreError;

impl Store {
    /// A process's events, in time order.
    pub(crate) fn of_entity(&self, entity: &str) -> Result<Vec<Found>, StoreError> {
        self.of_process(ProcessKey::Entity, entity)
    }
}

impl History for Store {
    fn alert(&self, id: &str) -> Result<Option<(Option<String>, Value)>, StoryError> {
        // The postings name the alert's blocks; its event is the first there.
        let blocks = self.posted_key(&key(tag::ALERT, id.as_bytes()))?;
        let found = self.find(Some(&blocks), None, None, 1, |r| r.alert == Some(id))?;
        Ok(match found.into_iter().next() {
            Some(f) => Some((f.row.entity, self.doc(f.block, f.slot)?)),
            None => None,
        })
    }

    fn process(&self, entity: &str) -> Result<Option<Proc>, StoryError> {
        Ok(proc_of(&self.of_entity(entity)?, entity))
    }

    fn children(&self, entity: &str) -> Result<Vec<String>, StoryError> {
        let mut seen = BTreeSet::new();
        let found = self.of_process(ProcessKey::Parent, entity)?;
        Ok(found.into_iter().filter_map(|f| f.row.entity).filter(|e| seen.insert(e.clone())).collect())
    }

    fn events(&self, entity: &str, limit: usize) -> Result<Vec<Recorded>, StoryError> {
        let mut found = self.of_entity(entity)?;
        found.truncate(limit);
        found
            .into_iter()
            .map(|f| {
                let doc = self.doc(f.block, f.slot)?;
                Ok(Recorded { id: f.id, ts_ns: f.row.ts_ns, kind: f.row.kind, action: f.row.action, doc })
            })
            .collect()
    }
}

/// A process as its recorded events (in time order) tell it: the first lineage event names the
/// parent and the start, the latest exec the image.
pub(crate) fn proc_of(events: &[Found], entity: &str) -> Option<Proc> {
    let first = events.iter().find(|f| f.row.parent.is_some()).map(|f| &f.row);
    let exec = events.iter().rev().find(|f| f.row.cmdline.is_some()).map(|f| &f.row);
    let mut p = Proc { entity: entity.to_owned(), ..Proc::default() };
    match (first, exec) {
        (None, None) => {
            // Seen only in other events (started before the recorder): what they say.
            let any = &events.first()?.row;
            (p.host, p.pid, p.exe, p.user, p.start_ns) = (any.host.clone(), any.pid.unwrap_or(0), any.exe.clone(), any.user.clone(), any.ts_ns);
        }
        _ => {
            if let Some(f) = first {
                (p.parent, p.host, p.pid, p.start_ns, p.cgroup) = (f.parent.clone(), f.host.clone(), f.pid.unwrap_or(0), f.ts_ns, f.cgroup);
            }
            if let Some(x) = exec {
                (p.exe, p.cmdline, p.user) = (x.exe.clone(), x.cmdline.clone(), x.user.clone());
                p.cgroup = x.cgroup.or(p.cgroup);
                if p.host.is_empty() {
                    (p.host, p.pid, p.start_ns) = (x.host.clone(), x.pid.unwrap_or(0), x.ts_ns);
                }
            }
        }
    }
    if p.cgroup.is_none() {
        // Started before the recorder: its other events still say where it runs.
        p.cgroup = events.iter().rev().find_map(|f| f.row.cgroup);
    }
    Some(p)
}
