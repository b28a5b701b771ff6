//! Enrichment: every record, in kernel-time order, updates the process table and leaves with
//! its process context — the subject's image, parent, ancestry, user names, container and
//! binary hash — so every event tells who did it, from where, in which container.
//!
//! Hashes are requested when an exec record arrives (before the reorder window), so the
//! window is also the hash budget: by the time the event leaves, the hash is usually known.
//! When it is not, the event says `hash_pending` and a `hash` event follows with the digest.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::{
    decode::{Header, Record},
    process::{
        container::{CgroupInfo, CgroupResolver},
        hash::{HashConfig, HashDone, HashPool, HashRequest, HashTicket, Sha256Digest},
        identity::EntityIds,
        table::{Ancestor, Comm, Image, ImageSource, ProcKey, ProcessTable, TableConfig},
        users::UserDb,
    },
};

/// `process:` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ProcessSection {
    /// Hard cap on process-table entries (live and exited).
    pub max_entries: usize,
    /// How long an exited process stays resolvable.
    #[serde(with = "humantime_serde")]
    pub exit_grace: Duration,
    /// Ancestors listed in `process.ancestry`.
    pub ancestry_depth: usize,
    /// sha256 of executed files.
    pub hash: bool,
    /// Files larger than this are not hashed (bytes, or with a unit: 256MiB).
    #[serde(deserialize_with = "crate::config::de_size_u64")]
    pub hash_max_size: u64,
    /// Threads hashing files.
    pub hash_workers: usize,
}

impl Default for ProcessSection {
    fn default() -> Self {
        let t = TableConfig::default();
        Self {
            max_entries: t.max_entries,
            exit_grace: t.exit_grace,
            ancestry_depth: t.ancestry_depth,
            hash: true,
            hash_max_size: HashConfig::default().max_file_size,
            hash_workers: 2,
        }
    }
}

/// The process an event is about (or by), as the table knows it.
#[derive(Debug, Clone)]
pub struct ProcCtx {
    pub pid: u32,
    /// Shared with the process table's entry.
    pub entity_id: Arc<str>,
    pub start_ns: u64,
    pub image: Option<Arc<Image>>,
    /// The task's comm (the name when there is no image).
    pub comm: Comm,
}

impl ProcCtx {
    /// The process name: the executable's file name, else comm.
    pub fn name(&self) -> &str {
        match self.image.as_ref().map(|i| i.name()) {
            Some(n) if !n.is_empty() => n,
            _ => self.comm.as_str(),
        }
    }

    /// Its image if the table made it from the exec record of `ktime_ns`: what that record's
    /// arguments would give again (the shell-quoted command line), made already.
    pub fn image_of_exec(&self, ktime_ns: u64) -> Option<&Image> {
        self.image.as_deref().filter(|i| i.source == ImageSource::Exec && i.exec_ns == ktime_ns)
    }
}

/// Everything the table adds to an event.
#[derive(Debug, Clone)]
pub struct Context {
    pub process: ProcCtx,
    pub parent: Option<ProcCtx>,
    /// Nearest first, the subject not included. Shared by the events of a process (and its
    /// siblings) while its ancestors stay the same.
    pub ancestry: Arc<Ancestry>,
    /// The image before the latest exec (exec chains).
    pub previous: Option<Arc<Image>>,
    pub user: Option<Arc<str>>,
    pub group: Option<Arc<str>>,
    pub real_user: Option<Arc<str>>,
    pub cgroup: Option<Arc<CgroupInfo>>,
    pub hash: Option<Sha256Digest>,
    pub hash_pending: bool,
    /// The process was explained by neither records nor /proc.
    pub incomplete: bool,
}

/// `process.ancestry`, with its JSON printed once for every event that shares it.
#[derive(Debug, Default)]
pub struct Ancestry {
    list: Box<[Ancestor]>,
    json: OnceLock<Box<RawValue>>,
}

impl Ancestry {
    pub fn new(list: Vec<Ancestor>) -> Self {
        Self { list: list.into(), json: OnceLock::new() }
    }

    /// The list as JSON, printed on first use.
    pub fn json(&self) -> &RawValue {
        self.json.get_or_init(|| {
            let text = serde_json::to_string(&self.list).expect("serialising ancestors cannot fail");
            RawValue::from_string(text).expect("serde_json prints valid JSON")
        })
    }
}

impl std::ops::Deref for Ancestry {
    type Target = [Ancestor];
    fn deref(&self) -> &[Ancestor] {
        &self.list
    }
}

/// A hash that arrived after its exec event left.
#[derive(Debug, Clone)]
pub struct LateHash {
    pub process: ProcCtx,
    pub sha256: String,
}

pub struct Enricher {
    table: ProcessTable,
    users: UserDb,
    cgroups: CgroupResolver,
    hashes: Option<HashPool>,
    tickets: FxHashMap<(u32, u64), HashTicket>,
    depth: usize,
    /// The ancestry last built per parent (its children's ancestry), with the digest of the
    /// chain it was built from: most events come from processes whose ancestors did not change
    /// since their last one, and siblings share one.
    ancestries: FxHashMap<ProcKey, CachedAncestry>,
}

/// Parents whose children's ancestry is kept; past this the cache starts over.
const ANCESTRIES_CACHED: usize = 8192;

/// `key`'s ancestry, shared with every other child of the same parent while their chain is
/// unchanged (a fork storm's children all have one). Keyed by the parent: the ancestry is the
/// parent's chain.
fn cached_ancestry(
    table: &ProcessTable,
    cache: &mut FxHashMap<ProcKey, CachedAncestry>,
    key: ProcKey,
    depth: usize,
) -> Arc<Ancestry> {
    let Some(parent) = table.get(key).and_then(|p| p.parent) else {
        return Arc::default();
    };
    let generation = table.generation();
    if let Some(c) = cache.get(&parent).filter(|c| c.generation == generation) {
        return Arc::clone(&c.ancestry);
    }
    let digest = table.ancestry_digest(key, Some(depth));
    if let Some(c) = cache.get_mut(&parent).filter(|c| c.digest == digest) {
        c.generation = generation;
        return Arc::clone(&c.ancestry);
    }
    let built = Arc::new(Ancestry::new(table.ancestry(key, Some(depth))));
    if cache.len() >= ANCESTRIES_CACHED {
        cache.clear();
    }
    cache.insert(parent, CachedAncestry { generation, digest, ancestry: Arc::clone(&built) });
    built
}

/// The ancestry shared by a parent's children, as of a generation of the table (then nothing
/// needs checking) and with the digest of its chain (checked once the table has moved on).
#[derive(Debug)]
struct CachedAncestry {
    generation: u64,
    digest: u64,
    ancestry: Arc<Ancestry>,
}

impl Enricher {
    /// Builds the table and seeds it from /proc. Returns the receiver of late hashes too.
    pub fn new(cfg: &ProcessSection, ids: EntityIds) -> (Self, Option<mpsc::Receiver<HashDone>>) {
        let cgroups = CgroupResolver::detect("/proc");
        let tcfg = TableConfig {
            max_entries: cfg.max_entries,
            exit_grace: cfg.exit_grace,
            ancestry_depth: cfg.ancestry_depth,
            cgroup_mount: cgroups.mount().map(Into::into),
            ..TableConfig::default()
        };
        let mut table = ProcessTable::new(tcfg, ids);
        match table.seed_from_proc() {
            Ok(n) => info!(processes = n, "process table seeded from /proc"),
            Err(e) => warn!(error = %e, "seeding the process table from /proc failed"),
        }
        let (hashes, late) = if cfg.hash {
            let hc = HashConfig { workers: cfg.hash_workers, max_file_size: cfg.hash_max_size, ..HashConfig::default() };
            match HashPool::new(hc) {
                Ok((pool, rx)) => (Some(pool), Some(rx)),
                Err(e) => {
                    warn!(error = %e, "hash workers did not start: executables are not hashed");
                    (None, None)
                }
            }
        } else {
            (None, None)
        };
        let users = UserDb::new("/").with_check_interval(Duration::from_secs(5));
        let me = Self { table, users, cgroups, hashes, tickets: FxHashMap::default(), depth: cfg.ancestry_depth, ancestries: FxHashMap::default() };
        (me, late)
    }

    pub fn table(&self) -> &ProcessTable {
        &self.table
    }

    /// Files the hash cache knows to have this sha256 (hex).
    pub fn files_with_hash(&self, sha256: &str) -> Vec<crate::process::hash::FileKey> {
        let (Some(pool), Some(d)) = (&self.hashes, crate::process::hash::Sha256Digest::from_hex(sha256)) else {
            return Vec::new();
        };
        pool.files_with(&d)
    }

    /// Called when a record arrives, before the reorder window: starts hashing an exec's image.
    pub fn on_arrival(&mut self, rec: &Record) {
        let (Some(pool), Record::Exec(e)) = (&self.hashes, rec) else { return };
        let key = self.table.key_of_header(&e.hdr);
        let ticket = pool.request(HashRequest::from_exec(e, key, e.hdr.ktime_ns));
        self.tickets.insert((e.hdr.pid, e.hdr.ktime_ns), ticket);
    }

    /// Adds a network record to its process's summary (call after [`Enricher::apply`]).
    pub fn note_network(&mut self, rec: &Record) {
        let key = self.table.key_of_header(rec.header());
        if let Some(s) = self.table.net_mut(key) {
            s.observe(rec);
        }
    }

    fn proc_ctx(&self, key: ProcKey, fallback: &Header) -> ProcCtx {
        match self.table.get(key) {
            Some(p) => ProcCtx {
                pid: p.pid(),
                entity_id: Arc::clone(self.table.entity_id_of(p)),
                start_ns: p.start_ns,
                image: p.image().cloned(),
                comm: p.comm,
            },
            None => ProcCtx {
                pid: key.pid,
                entity_id: self.table.entity_id_text(key).as_str().into(),
                start_ns: fallback.start_ns,
                image: None,
                comm: fallback.comm,
            },
        }
    }

    /// Applies a record (in kernel-time order) and returns its context.
    pub fn apply(&mut self, rec: &Record) -> Context {
        let applied = self.table.apply(rec);
        // The subject: the child of a fork, the actor otherwise.
        let key = match rec {
            Record::Fork(f) if !f.thread => self.table.key_of(f.child_pid, f.child_start_ns),
            _ => applied.key,
        };
        let h = rec.header();
        let process = self.proc_ctx(key, h);
        let entry = self.table.get(key);
        let parent_key = entry.and_then(|p| p.parent).or(applied.parent);
        let parent = parent_key.map(|pk| self.proc_ctx(pk, h));
        let previous = entry.and_then(|p| p.previous_image().cloned());
        let incomplete = entry.is_none_or(|p| p.incomplete);
        let ancestry = cached_ancestry(&self.table, &mut self.ancestries, key, self.depth);
        let (euid, egid, uid) = match entry {
            Some(p) => (p.creds.euid, p.creds.egid, p.creds.uid),
            None => (h.euid, h.egid, h.uid),
        };
        let cgroup = self.cgroups.resolve(h.cgroup_id, Some(h.pid));
        let (hash, hash_pending) = self.hash_of(rec, process.image.as_ref());
        Context {
            process,
            parent,
            ancestry,
            previous,
            user: self.users.user(euid),
            group: self.users.group(egid),
            real_user: self.users.user(uid),
            cgroup,
            hash,
            hash_pending,
            incomplete,
        }
    }

    /// The image's hash if known now; for an exec whose hash is still being computed, pending
    /// (its result then arrives on the late channel).
    fn hash_of(&mut self, rec: &Record, image: Option<&Arc<Image>>) -> (Option<Sha256Digest>, bool) {
        if let Some(d) = image.and_then(|i| i.hash()) {
            return (Some(d), false);
        }
        let Record::Exec(e) = rec else { return (None, false) };
        let Some(ticket) = self.tickets.remove(&(e.hdr.pid, e.hdr.ktime_ns)) else {
            tracing::debug!(exe = %e.exe_path, "no hash request for this exec");
            return (None, false);
        };
        let outcome = match ticket {
            HashTicket::Ready(o) => Some(o),
            HashTicket::Pending(mut p) => p.try_take(),
        };
        match outcome {
            Some(o) => {
                let digest = o.digest();
                if digest.is_none() {
                    tracing::debug!(exe = %e.exe_path, outcome = ?o, "no hash");
                }
                if let (Some(d), Some(img)) = (digest, image) {
                    img.set_hash(d);
                }
                (digest, false)
            }
            // Dropping the pending ticket sends its result to the late channel.
            None => (None, true),
        }
    }

    /// A late hash: stored on the image, and returned for a `hash` event naming the image whose
    /// file was hashed (the process may have exec'd something else since).
    pub fn late_hash(&mut self, done: HashDone) -> Option<LateHash> {
        let digest = done.outcome.digest()?;
        let key = done.owner?;
        self.table.set_hash(key, &done.file, digest);
        let p = self.table.get(key)?;
        let image = p.images().find(|i| i.file.as_ref() == Some(&done.file)).cloned()?;
        let process = ProcCtx {
            pid: p.pid(),
            entity_id: Arc::clone(self.table.entity_id_of(p)),
            start_ns: p.start_ns,
            image: Some(image),
            comm: p.comm,
        };
        Some(LateHash { process, sha256: digest.to_hex() })
    }

    fn proc_json(&mut self, p: &crate::process::Process) -> serde_json::Value {
        let img = p.image();
        serde_json::json!({
            "pid": p.pid(),
            "ppid": p.ppid,
            "entity_id": self.table.entity_id_of(p),
            "user": self.users.user(p.creds.euid).map(|u| u.to_string()).unwrap_or_else(|| p.creds.euid.to_string()),
            "state": if p.is_alive() { "running" } else { "exited" },
            "exited": !p.is_alive(),
            "executable": img.map(|i| i.exe().to_owned()),
            "command_line": img.map(|i| i.command_line().to_owned()).unwrap_or_else(|| format!("[{}]", p.name())),
            "network": p.net.as_deref(),
        })
    }

    /// `osprey ps`: the live processes, by pid.
    pub fn ps_json(&mut self) -> serde_json::Value {
        self.users.maybe_refresh();
        let mut keys: Vec<ProcKey> = self.table.iter().filter(|p| p.is_alive()).map(|p| p.key).collect();
        keys.sort_by_key(|k| k.pid);
        let procs: Vec<serde_json::Value> = keys
            .into_iter()
            .filter_map(|k| {
                let p = self.table.get(k)?.clone();
                Some(self.proc_json(&p))
            })
            .collect();
        serde_json::json!({ "processes": procs })
    }

    /// `osprey tree [PID]`: the process tree from `pid` (else from every process whose parent is
    /// unknown), recently exited processes included.
    pub fn tree_json(&mut self, pid: Option<u32>) -> serde_json::Value {
        const MAX_NODES: usize = 100_000;
        self.users.maybe_refresh();
        let roots: Vec<ProcKey> = match pid {
            Some(pid) => self.table.get_by_pid(pid).map(|p| vec![p.key]).unwrap_or_default(),
            None => {
                let mut r: Vec<ProcKey> = self
                    .table
                    .iter()
                    .filter(|p| p.parent.is_none_or(|pk| self.table.get(pk).is_none()))
                    .map(|p| p.key)
                    .collect();
                r.sort_by_key(|k| k.pid);
                r
            }
        };
        let mut budget = MAX_NODES;
        let nodes: Vec<serde_json::Value> = roots.into_iter().filter_map(|k| self.tree_node(k, 0, &mut budget)).collect();
        serde_json::json!({ "roots": nodes })
    }

    fn tree_node(&mut self, key: ProcKey, depth: usize, budget: &mut usize) -> Option<serde_json::Value> {
        if *budget == 0 || depth > 256 {
            return None;
        }
        *budget -= 1;
        let p = self.table.get(key)?.clone();
        let mut v = self.proc_json(&p);
        let mut kids: Vec<ProcKey> = self.table.children(key).iter().map(|c| c.key).collect();
        kids.sort_by_key(|k| (k.ticks, k.pid));
        let children: Vec<serde_json::Value> = kids.into_iter().filter_map(|k| self.tree_node(k, depth + 1, budget)).collect();
        v["children"] = serde_json::Value::Array(children);
        Some(v)
    }

    /// Periodic housekeeping: evicts exited processes past their grace period, and rereads the
    /// user and group names if their files changed (at most every 5 s: here, not for every
    /// record, which would read the clock each time).
    pub fn tick(&mut self, now_boottime_ns: u64) -> usize {
        self.users.maybe_refresh();
        // Tickets of records that were dropped before leaving the window would pile up.
        if self.tickets.len() > 65_536 {
            self.tickets.clear();
        }
        let evicted = self.table.evict(now_boottime_ns);
        let table = &self.table;
        self.ancestries.retain(|k, _| table.get(*k).is_some());
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{decode, raw},
        process::Host,
    };
    use agent_common::osprey_file_op as fo;

    #[test]
    fn a_process_shares_its_ancestry_until_an_ancestor_changes() {
        let host = Host { hostname: "h".into(), id: "m".into(), boot_id: "b".into() };
        let cfg = ProcessSection { hash: false, ..Default::default() };
        let (mut e, _late) = Enricher::new(&cfg, EntityIds::new(&host.boot_id));
        let apply = |e: &mut Enricher, r: Vec<u8>| {
            let rec = decode(&r).unwrap();
            e.on_arrival(&rec);
            e.apply(&rec)
        };
        apply(&mut e, raw::exec(100, 10, "/usr/bin/bash", &["-bash"], "/home/u"));
        apply(&mut e, raw::fork(100, 101, 20));
        apply(&mut e, raw::exec(101, 30, "/usr/bin/make", &["make"], "/src"));
        apply(&mut e, raw::fork(101, 102, 40));
        let a = apply(&mut e, raw::file(102, 50, fo::OSPREY_FILE_CREATE, "/src/a.o", None)).ancestry;
        let b = apply(&mut e, raw::file(102, 51, fo::OSPREY_FILE_CREATE, "/src/b.o", None)).ancestry;
        assert!(Arc::ptr_eq(&a, &b), "the same chain: the same ancestry");
        assert_eq!(a[0].executable.as_deref(), Some("/usr/bin/make"));
        // The table moves on elsewhere: the chain's digest still matches.
        apply(&mut e, raw::fork(100, 103, 45));
        let generation = e.table.generation();
        let b = apply(&mut e, raw::file(102, 52, fo::OSPREY_FILE_CREATE, "/src/b.o", None)).ancestry;
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(e.table.generation(), generation, "a known process's file event changes no lineage");
        // The parent runs something else: the child's next event shows it.
        apply(&mut e, raw::exec(101, 60, "/usr/bin/cc", &["cc", "-c", "x.c"], "/src"));
        let c = apply(&mut e, raw::file(102, 70, fo::OSPREY_FILE_CREATE, "/src/c.o", None)).ancestry;
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((c[0].executable.as_deref(), c[0].args.as_deref()), (Some("/usr/bin/cc"), Some("cc -c x.c")));
        assert_eq!(c[1].executable.as_deref(), Some("/usr/bin/bash"));
    }
}
