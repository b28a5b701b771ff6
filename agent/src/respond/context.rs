//! From the pipeline's view of an event (process table context, the ECS document) to what the
//! responder acts on.

use crate::{
    enrich::{Context, Enricher},
    process::hash::FileKey,
};

use super::{signal::Identity, Lookup, Subject};

/// The subject of an alert: its process (identity from the process table: pid and start
/// time), executable, hash, cgroup, and the file the triggering event names.
pub fn subject(ctx: Option<&Context>, trigger: Option<&serde_json::Value>, enrich: &Enricher) -> Subject {
    let mut s = Subject::default();
    if let Some(c) = ctx {
        let key = enrich.table().key_of(c.process.pid, c.process.start_ns);
        s.process = Some(Identity { pid: key.pid, ticks: key.ticks });
        s.name = c.process.name().to_owned();
        if let Some(img) = &c.process.image {
            s.executable = Some(img.exe().to_owned()).filter(|e| !e.is_empty());
            s.exe_file = img.file;
        }
        s.sha256 = c.hash.map(|h| h.to_hex());
        s.cgroup = c.cgroup.as_ref().map(|g| g.path.clone());
    }
    s.file = trigger.and_then(|t| t.pointer("/file/path")).and_then(|p| p.as_str()).map(str::to_owned);
    s
}

/// The process table and hash cache, for operator requests.
pub struct TableLookup<'a>(pub &'a Enricher);

impl Lookup for TableLookup<'_> {
    fn entity(&self, entity_id: &str) -> Option<Identity> {
        let t = self.0.table();
        t.iter().find(|p| p.is_alive() && **t.entity_id_of(p) == *entity_id).map(|p| Identity { pid: p.key.pid, ticks: p.key.ticks })
    }

    fn files_with_hash(&self, sha256: &str) -> Vec<FileKey> {
        self.0.files_with_hash(&sha256.to_ascii_lowercase())
    }
}
