//! The process table: every process the agent knows, keyed by identity (pid + start time, the
//! inputs of `process.entity_id`), with lineage, exec chains and exit state.
//!
//! - Seeded from /proc at start-up ([`ProcessTable::seed_from_proc`]) so processes that started
//!   before the agent have lineage, then kept current by [`ProcessTable::apply`] for fork, exec
//!   and exit records.
//! - Internally a process is a [`ProcKey`] (two integers, no allocation); the hex
//!   `entity_id` string is made only at output ([`ProcessTable::entity_id`]).
//! - Records arrive out of order across CPUs. An exec or exit for a process never seen is
//!   resolved from /proc when the process is still there (its start time must match) and
//!   otherwise recorded from the record's own header, marked `incomplete`: never dropped. A fork
//!   that arrives after its child's exec fills only what is missing.
//! - Exited processes stay for a grace period (longer while a descendant still in the table needs
//!   them for its ancestry), then are evicted; a hard cap evicts the oldest exited first, then
//!   the oldest. Every eviction is counted.

use std::{
    collections::VecDeque,
    fmt,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustc_hash::FxHashMap;
use serde::Serialize;
use thiserror::Error;

use super::{
    hash::{FileKey, HashRequest, Sha256Digest},
    identity::{EntityIdText, EntityIds},
    procread::{self, Snapshot},
};
pub use crate::decode::Comm;
use crate::decode::{Exec, ExecFlags, Exit, Fork, Header, Record};

/// Images kept per process: the current one and up to three before it.
pub const MAX_CHAIN: usize = 4;
/// Default length of an ancestor's args summary, in bytes.
pub const ARGS_SUMMARY_MAX: usize = 256;
/// How far /proc resolution follows parents of an unknown process.
const MAX_PROC_DEPTH: usize = 64;

#[derive(Debug, Error)]
pub enum TableError {
    #[error("listing {path}: {source}")]
    ListProc { path: PathBuf, source: std::io::Error },
}

/// The identity of a process: pid and start time in clock ticks since boot. Two processes with
/// the same pid (reuse) have different keys; the key maps 1:1 to `process.entity_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
pub struct ProcKey {
    pub pid: u32,
    pub ticks: u64,
}

#[derive(Debug, Clone)]
pub struct TableConfig {
    /// Hard cap on entries, live and exited.
    pub max_entries: usize,
    /// How long an exited process stays.
    pub exit_grace: Duration,
    /// Default depth of [`ProcessTable::ancestry`].
    pub ancestry_depth: usize,
    /// Where /proc is (a test or a container with the host's /proc elsewhere changes it).
    pub proc_root: PathBuf,
    /// Read /proc for processes the records do not explain. Off: never touch the file system.
    pub resolve_from_proc: bool,
    /// The cgroup2 mount, to give seeded processes a cgroup id.
    pub cgroup_mount: Option<PathBuf>,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            max_entries: 65_536,
            exit_grace: Duration::from_secs(30),
            ancestry_depth: 32,
            proc_root: PathBuf::from("/proc"),
            resolve_from_proc: true,
            cgroup_mount: None,
        }
    }
}

/// Where an image's facts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageSource {
    /// An exec record.
    Exec,
    /// /proc (seeded, or resolved late).
    Proc,
}

/// The object of a document an image's fields are printed in ([`Image::printed`]).
#[derive(Debug, Clone, Copy)]
pub enum PrintedAs {
    /// `process`.
    Process,
    /// `process.parent`.
    Parent,
    /// `process.previous`.
    Previous,
}

/// One executable image a process ran: what exec (or /proc) said about it. Shared between a
/// parent and the children it forked until they exec.
pub struct Image {
    /// exe, filename, NUL-joined args, cwd, and the command line ([`push_command_line`]), in one
    /// allocation.
    text: Box<str>,
    ends: Ends,
    /// argc as the kernel counted it (args may be truncated).
    pub argc: u32,
    pub file: Option<FileKey>,
    pub flags: ExecFlags,
    /// Boot-time ns of the exec; 0 when unknown (seeded).
    pub exec_ns: u64,
    pub source: ImageSource,
    hash: OnceLock<Sha256Digest>,
    /// Its fields as the documents of a process, of a child and of a process that exec'd
    /// from it print them (`event::print`), printed once for all of them.
    printed: [OnceLock<Box<str>>; 3],
}

/// Where each part of [`Image::text`] ends, and how many arguments it holds.
#[derive(Clone, Copy)]
struct Ends {
    exe: usize,
    /// Where the executable's file name starts (after its last `/`).
    name: usize,
    filename: usize,
    args: usize,
    cwd: usize,
    nargs: usize,
}

/// Appends the command line of `args`: joined by spaces, an argument single-quoted as a shell
/// would need it (`a 'b c' 'it'\''s'`), so that it can be read back into its arguments. Every
/// document of a process prints this one.
pub fn push_command_line<'s>(line: &mut String, args: impl IntoIterator<Item = &'s str>) {
    for (i, a) in args.into_iter().enumerate() {
        if i > 0 {
            line.push(' ');
        }
        if !needs_quotes(a) {
            line.push_str(a);
            continue;
        }
        line.push('\'');
        let mut parts = a.split('\'');
        if let Some(first) = parts.next() {
            line.push_str(first);
        }
        for p in parts {
            line.push_str("'\\''");
            line.push_str(p);
        }
        line.push('\'');
    }
}

/// True if a shell would need `a` quoted: empty, or with whitespace, a quote, `\`, `$` or a
/// backquote. Bytes first (nearly every argument is ASCII); other characters only if there are
/// any.
fn needs_quotes(a: &str) -> bool {
    a.is_empty()
        || a.bytes().any(|b| matches!(b, b' ' | b'\t'..=b'\r' | b'\'' | b'"' | b'\\' | b'$' | b'`'))
        || (!a.is_ascii() && a.chars().any(char::is_whitespace))
}

impl Image {
    fn build(exe: &str, filename: &str, args: &[impl AsRef<str>], cwd: &str) -> (Box<str>, Ends) {
        let args_len: usize = args.iter().map(|a| a.as_ref().len() + 1).sum();
        let mut text = String::with_capacity(exe.len() + filename.len() + 2 * args_len + 2 * args.len() + cwd.len());
        text.push_str(exe);
        let exe_end = text.len();
        text.push_str(filename);
        let filename_end = text.len();
        for (i, a) in args.iter().enumerate() {
            if i > 0 {
                text.push('\0');
            }
            text.push_str(a.as_ref());
        }
        let args_end = text.len();
        text.push_str(cwd);
        let cwd_end = text.len();
        push_command_line(&mut text, args.iter().map(AsRef::as_ref));
        let name = exe.rfind('/').map_or(0, |i| i + 1);
        let ends = Ends { exe: exe_end, name, filename: filename_end, args: args_end, cwd: cwd_end, nargs: args.len() };
        (text.into_boxed_str(), ends)
    }

    pub fn from_exec(e: &Exec) -> Self {
        let (text, ends) = Self::build(&e.exe_path, &e.filename, &e.args, &e.cwd);
        Self {
            text,
            ends,
            argc: e.argc,
            file: Some(FileKey::from_exec(e)),
            flags: e.flags,
            exec_ns: e.hdr.ktime_ns,
            source: ImageSource::Exec,
            hash: OnceLock::new(),
            printed: Default::default(),
        }
    }

    fn from_snapshot(s: &Snapshot) -> Self {
        let exe = s.exe.as_deref().unwrap_or("");
        let (text, ends) = Self::build(exe, "", &s.args, s.cwd.as_deref().unwrap_or(""));
        let mut flags = 0;
        if s.memfd {
            flags |= agent_common::osprey_exec_flags::OSPREY_EXEC_MEMFD;
        }
        if s.deleted {
            flags |= agent_common::osprey_exec_flags::OSPREY_EXEC_DELETED;
        }
        Self {
            text,
            ends,
            argc: u32::try_from(s.args.len()).unwrap_or(u32::MAX),
            file: s.exe_file,
            flags: ExecFlags(flags),
            exec_ns: 0,
            source: ImageSource::Proc,
            hash: OnceLock::new(),
            printed: Default::default(),
        }
    }

    fn part(&self, from: usize, to: usize) -> &str {
        self.text.get(from..to).unwrap_or("")
    }

    /// The executable's path.
    pub fn exe(&self) -> &str {
        self.part(0, self.ends.exe)
    }

    /// The path as exec was called with it (empty when seeded).
    pub fn filename(&self) -> &str {
        self.part(self.ends.exe, self.ends.filename)
    }

    pub fn cwd(&self) -> &str {
        self.part(self.ends.args, self.ends.cwd)
    }

    /// The executable's file name.
    pub fn name(&self) -> &str {
        self.part(self.ends.name, self.ends.exe)
    }

    pub fn args(&self) -> impl Iterator<Item = &str> + '_ {
        let n = self.ends.nargs;
        self.part(self.ends.filename, self.ends.args).split('\0').take(n)
    }

    pub fn args_count(&self) -> usize {
        self.ends.nargs
    }

    pub fn args_vec(&self) -> Vec<String> {
        self.args().map(str::to_owned).collect()
    }

    /// The arguments joined as [`push_command_line`] joins them: the command line every
    /// document of the process prints, its exec's included, made once per image.
    pub fn command_line(&self) -> &str {
        self.part(self.ends.cwd, self.text.len())
    }

    /// The command line cut to at most `max` bytes (on a character boundary), `…` marking a cut.
    pub fn args_summary(&self, max: usize) -> String {
        let line = self.command_line();
        if line.len() <= max {
            return line.to_owned();
        }
        let mut end = max;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &line[..end])
    }

    pub fn hash(&self) -> Option<Sha256Digest> {
        self.hash.get().copied()
    }

    /// Its fields as the documents print them in the `role`'s object: `print`'s text, kept
    /// from the first call on.
    pub fn printed(&self, role: PrintedAs, print: impl FnOnce(&Self) -> Box<str>) -> &str {
        self.printed[role as usize].get_or_init(|| print(self))
    }

    /// Records the file's hash (once; later calls are ignored). Returns whether it was set.
    pub fn set_hash(&self, d: Sha256Digest) -> bool {
        self.hash.set(d).is_ok()
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("exe", &self.exe())
            .field("args", &self.args().collect::<Vec<_>>())
            .field("cwd", &self.cwd())
            .field("exec_ns", &self.exec_ns)
            .field("source", &self.source)
            .finish()
    }
}

/// Credentials as last seen. `u32::MAX` where unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    pub suid: Option<u32>,
    pub sgid: Option<u32>,
}

impl Creds {
    fn from_hdr(h: &Header) -> Self {
        Self { uid: h.uid, gid: h.gid, euid: h.euid, egid: h.egid, suid: None, sgid: None }
    }

    fn update(&mut self, h: &Header) {
        self.uid = h.uid;
        self.gid = h.gid;
        self.euid = h.euid;
        self.egid = h.egid;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ExitInfo {
    pub ktime_ns: u64,
    /// Raw wait status; None when the exit was inferred (pid reused, or gone from /proc)
    /// rather than reported.
    pub status: Option<u32>,
}

impl ExitInfo {
    pub fn implied(&self) -> bool {
        self.status.is_none()
    }

    pub fn exit_code(&self) -> Option<i32> {
        self.status.filter(|s| s & 0x7f == 0).map(|s| ((s >> 8) & 0xff) as i32)
    }

    pub fn signal(&self) -> Option<i32> {
        self.status.map(|s| (s & 0x7f) as i32).filter(|&s| s != 0)
    }
}

/// How an entry came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Read from /proc at start-up.
    Seeded,
    Fork,
    /// An exec before (or without) its fork.
    Exec,
    /// Resolved from /proc when a record named an unknown process.
    Proc,
    /// Only a record's header: the process was gone from /proc.
    Record,
}

/// How far to trust `session` / `pgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaderState {
    Unknown,
    /// Copied from the parent at fork (setsid/setpgid since are invisible to the records).
    Inherited,
    /// Read from /proc.
    Verified,
}

/// One process.
#[derive(Debug, Clone)]
pub struct Process {
    pub key: ProcKey,
    /// Boot-time ns (tick precision when seeded).
    pub start_ns: u64,
    pub ppid: u32,
    pub parent: Option<ProcKey>,
    pub comm: Comm,
    pub creds: Creds,
    pub cgroup_id: u64,
    pub session: Option<u32>,
    pub pgid: Option<u32>,
    pub leaders: LeaderState,
    chain: [Option<Arc<Image>>; MAX_CHAIN],
    /// Execs seen (the chain keeps the last [`MAX_CHAIN`] images).
    pub exec_count: u32,
    pub fork_ns: Option<u64>,
    pub exit: Option<ExitInfo>,
    pub origin: Origin,
    /// Something the record stream should have told is missing (its exec image or its parent).
    pub incomplete: bool,
    /// Boot-time ns of the latest record about it.
    pub last_ns: u64,
    children: u32,
    seq: u64,
    /// `entity_id`, made on first use.
    entity_id: OnceLock<Arc<str>>,
    /// Network activity (connections, peers, bytes), once it has any.
    pub net: Option<Box<crate::net::NetSummary>>,
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.key.pid
    }

    pub fn is_alive(&self) -> bool {
        self.exit.is_none()
    }

    fn chain_len(&self) -> usize {
        self.chain.iter().take_while(|c| c.is_some()).count()
    }

    /// The image it runs now.
    pub fn image(&self) -> Option<&Arc<Image>> {
        self.chain.iter().rev().find_map(Option::as_ref)
    }

    /// The image before the current one (the parent's, for a child that forked then exec'd).
    pub fn previous_image(&self) -> Option<&Arc<Image>> {
        self.chain.iter().rev().filter_map(Option::as_ref).nth(1)
    }

    /// Images, oldest first.
    pub fn images(&self) -> impl Iterator<Item = &Arc<Image>> {
        self.chain.iter().filter_map(Option::as_ref)
    }

    /// The executable, when known.
    pub fn executable(&self) -> Option<&str> {
        self.image().map(|i| i.exe()).filter(|e| !e.is_empty())
    }

    /// The process name: the executable's file name, else comm.
    pub fn name(&self) -> &str {
        match self.image().map(|i| i.name()) {
            Some(n) if !n.is_empty() => n,
            _ => self.comm.as_str(),
        }
    }

    /// Number of entries in the table whose parent this is.
    pub fn children_in_table(&self) -> u32 {
        self.children
    }

    /// The image it ran at boot-time `ns`.
    fn image_at(&self, ns: u64) -> Option<&Arc<Image>> {
        self.chain.iter().rev().filter_map(Option::as_ref).find(|i| i.exec_ns <= ns)
    }

    /// Inserts an image in exec order; with a full chain the oldest goes.
    fn insert_image(&mut self, img: Arc<Image>) {
        let n = self.chain_len();
        let mut pos = n;
        while pos > 0 && self.chain[pos - 1].as_ref().is_some_and(|c| c.exec_ns > img.exec_ns) {
            pos -= 1;
        }
        if n == MAX_CHAIN {
            if pos == 0 {
                return; // older than everything kept
            }
            self.chain[0] = None;
            self.chain[..pos].rotate_left(1);
            self.chain[pos - 1] = Some(img);
        } else {
            self.chain[pos..=n].rotate_right(1);
            self.chain[pos] = Some(img);
        }
    }
}

/// What [`ProcessTable::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Applied {
    /// The process the record is about: the child of a fork, the exec'ing or exiting process
    /// (for a thread clone/exit, its process).
    pub key: ProcKey,
    pub parent: Option<ProcKey>,
    /// A new entry was made for `key`.
    pub created: bool,
}

/// An ancestor as the event shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ancestor {
    pub pid: u32,
    pub entity_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub executable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Not in the table (evicted, or never seen): only pid and entity_id are known.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incomplete: bool,
}

/// An ancestor, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct AncestorRef<'a> {
    pub key: ProcKey,
    /// None when the link leads out of the table; the walk ends there.
    pub process: Option<&'a Process>,
}

/// Iterator over ancestors, nearest first.
pub struct Ancestors<'a> {
    table: &'a ProcessTable,
    next: Option<ProcKey>,
    left: usize,
}

impl<'a> Iterator for Ancestors<'a> {
    type Item = AncestorRef<'a>;
    fn next(&mut self) -> Option<AncestorRef<'a>> {
        if self.left == 0 {
            return None;
        }
        let key = self.next.take()?;
        self.left -= 1;
        let process = self.table.map.get(&key);
        self.next = process.and_then(|p| p.parent);
        Some(AncestorRef { key, process })
    }
}

/// A session or process-group leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Leader {
    pub pid: u32,
    /// The leader's identity when it is (or was) in the table.
    pub key: Option<ProcKey>,
}

/// Counters; read with [`ProcessTable::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TableStats {
    pub entries: usize,
    pub exited: usize,
    pub inserted: u64,
    pub seeded: u64,
    pub resolved_from_proc: u64,
    /// Entries made from a record header alone.
    pub incomplete: u64,
    pub evicted_grace: u64,
    /// Evicted by the entry cap (of which `evicted_cap_live` were still running).
    pub evicted_cap: u64,
    pub evicted_cap_live: u64,
    /// Exits inferred: a pid reused before the exit record came, or gone from /proc.
    pub implied_exits: u64,
    pub forks: u64,
    pub execs: u64,
    pub exits: u64,
}

impl TableStats {
    pub fn evictions(&self) -> u64 {
        self.evicted_grace + self.evicted_cap
    }
}

/// The table. Owned by one task (the pipeline stage); not shared.
pub struct ProcessTable {
    cfg: TableConfig,
    ids: EntityIds,
    ns_per_tick: u64,
    map: FxHashMap<ProcKey, Process>,
    by_pid: FxHashMap<u32, ProcKey>,
    /// Insertion order, for cap eviction of live entries (stale items skipped by seq).
    order: VecDeque<(ProcKey, u64)>,
    /// Exits in arrival order: (exit ns, key, seq).
    exited: VecDeque<(u64, ProcKey, u64)>,
    exited_count: usize,
    next_seq: u64,
    now_ns: u64,
    stats: TableStats,
    /// Moves on every call that may change a process's lineage, image, name or completeness
    /// (all but the record of a process already known that only acts): while it stands still,
    /// every ancestry is as it was.
    generation: u64,
}

impl fmt::Debug for ProcessTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessTable").field("entries", &self.map.len()).field("cfg", &self.cfg).finish()
    }
}

impl ProcessTable {
    pub fn new(cfg: TableConfig, ids: EntityIds) -> Self {
        let hz = ids.ticks(1_000_000_000).max(1);
        Self {
            ns_per_tick: 1_000_000_000 / hz,
            cfg,
            ids,
            map: FxHashMap::default(),
            by_pid: FxHashMap::default(),
            order: VecDeque::new(),
            exited: VecDeque::new(),
            exited_count: 0,
            next_seq: 0,
            now_ns: 0,
            stats: TableStats::default(),
            generation: 0,
        }
    }

    /// See [`ProcessTable::generation`]: equal values, equal ancestries.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn config(&self) -> &TableConfig {
        &self.cfg
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn stats(&self) -> TableStats {
        TableStats { entries: self.map.len(), exited: self.exited_count, ..self.stats }
    }

    /// The key of process `pid` started at boot-time `start_ns`.
    pub fn key_of(&self, pid: u32, start_ns: u64) -> ProcKey {
        ProcKey { pid, ticks: self.ids.ticks(start_ns) }
    }

    /// The key of the process a record header describes.
    pub fn key_of_header(&self, h: &Header) -> ProcKey {
        self.key_of(h.pid, h.start_ns)
    }

    /// `process.entity_id` of a key.
    pub fn entity_id(&self, key: ProcKey) -> String {
        self.entity_id_text(key).as_str().to_owned()
    }

    /// [`ProcessTable::entity_id`] on the stack.
    pub fn entity_id_text(&self, key: ProcKey) -> EntityIdText {
        self.ids.text_from_ticks(key.pid, key.ticks)
    }

    /// `process.entity_id` of an entry, computed once and kept with it.
    pub fn entity_id_of<'a>(&self, p: &'a Process) -> &'a Arc<str> {
        p.entity_id.get_or_init(|| self.entity_id_text(p.key).as_str().into())
    }

    /// The network summary of `key`, created on first use; None for a process not in the table.
    pub fn net_mut(&mut self, key: ProcKey) -> Option<&mut crate::net::NetSummary> {
        self.map.get_mut(&key).map(|p| &mut **p.net.get_or_insert_with(Default::default))
    }

    pub fn get(&self, key: ProcKey) -> Option<&Process> {
        self.map.get(&key)
    }

    /// The newest process with this pid.
    pub fn get_by_pid(&self, pid: u32) -> Option<&Process> {
        self.by_pid.get(&pid).and_then(|k| self.map.get(k))
    }

    pub fn parent(&self, key: ProcKey) -> Option<&Process> {
        self.map.get(&key).and_then(|p| p.parent).and_then(|k| self.map.get(&k))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Process> {
        self.map.values()
    }

    /// Entries whose parent is `key` (a scan: for `osprey tree`, not the hot path).
    pub fn children(&self, key: ProcKey) -> Vec<&Process> {
        let mut v: Vec<&Process> = self.map.values().filter(|p| p.parent == Some(key)).collect();
        v.sort_by_key(|p| p.key);
        v
    }

    /// Ancestors of `key`, nearest first, at most `depth`. A link that leads out of the table
    /// yields one last item without a process.
    pub fn ancestors(&self, key: ProcKey, depth: usize) -> Ancestors<'_> {
        Ancestors { table: self, next: self.map.get(&key).and_then(|p| p.parent), left: depth }
    }

    /// A digest of everything [`ProcessTable::ancestry`] would read for `key`: each ancestor's
    /// key, image (by identity), name and completeness. Equal digests, equal ancestries (barring
    /// a 64-bit hash collision); it costs the walk, not the strings.
    pub fn ancestry_digest(&self, key: ProcKey, depth: Option<usize>) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = rustc_hash::FxHasher::default();
        for a in self.ancestors(key, depth.unwrap_or(self.cfg.ancestry_depth)) {
            (a.key.pid, a.key.ticks).hash(&mut h);
            match a.process {
                Some(p) => (p.image().map(|i| (Arc::as_ptr(i) as usize, i.exec_ns)), p.name(), p.incomplete).hash(&mut h),
                None => 0u8.hash(&mut h),
            }
        }
        h.finish()
    }

    /// `process.ancestry` of `key`, nearest first, at most `depth` (None: the configured
    /// default).
    pub fn ancestry(&self, key: ProcKey, depth: Option<usize>) -> Vec<Ancestor> {
        self.ancestors(key, depth.unwrap_or(self.cfg.ancestry_depth))
            .map(|a| {
                let img = a.process.and_then(|p| p.image());
                Ancestor {
                    pid: a.key.pid,
                    entity_id: match a.process {
                        Some(p) => self.entity_id_of(p).to_string(),
                        None => self.entity_id(a.key),
                    },
                    executable: a.process.and_then(|p| p.executable()).map(str::to_owned),
                    name: a.process.map(|p| p.name().to_owned()),
                    args: img.map(|i| i.args_summary(ARGS_SUMMARY_MAX)),
                    incomplete: a.process.is_none_or(|p| p.incomplete),
                }
            })
            .collect()
    }

    fn leader(&self, p: &Process, lpid: u32, field: fn(&Process) -> Option<u32>) -> Leader {
        if lpid == p.key.pid {
            return Leader { pid: lpid, key: Some(p.key) };
        }
        // The newest process with that pid is the leader if it started no later than `p` and
        // leads that session/group itself (or we do not know what it leads).
        let key = self.by_pid.get(&lpid).copied().filter(|k| {
            k.ticks <= p.key.ticks && self.map.get(k).is_none_or(|c| field(c).is_none_or(|v| v == lpid))
        });
        Leader { pid: lpid, key }
    }

    /// `process.session_leader`, from what is known (see [`Self::resolve_leaders`]).
    pub fn session_leader(&self, key: ProcKey) -> Option<Leader> {
        let p = self.map.get(&key)?;
        Some(self.leader(p, p.session?, |c| c.session))
    }

    /// `process.group_leader`.
    pub fn group_leader(&self, key: ProcKey) -> Option<Leader> {
        let p = self.map.get(&key)?;
        Some(self.leader(p, p.pgid?, |c| c.pgid))
    }

    /// Reads /proc/PID/stat of a live process whose session and group were inherited (or
    /// changed by an exec since they were read), to see setsid/setpgid. Returns whether they
    /// are now verified. Costs a /proc read: call it for the events that need the leaders.
    pub fn resolve_leaders(&mut self, key: ProcKey) -> bool {
        self.generation += 1;
        let Some(p) = self.map.get(&key) else { return false };
        if p.leaders == LeaderState::Verified {
            return true;
        }
        if !self.cfg.resolve_from_proc || p.exit.is_some() {
            return false;
        }
        let Some(st) = procread::read_stat(&self.cfg.proc_root, key.pid) else { return false };
        if st.ticks != key.ticks {
            return false;
        }
        if let Some(p) = self.map.get_mut(&key) {
            p.session = Some(st.session);
            p.pgid = Some(st.pgrp);
            p.leaders = LeaderState::Verified;
        }
        true
    }

    /// A request to hash the current image of `key` (for processes seeded from /proc, whose
    /// exec the pipeline never saw).
    pub fn hash_request(&self, key: ProcKey, tag: u64) -> Option<HashRequest> {
        let p = self.map.get(&key)?;
        let img = p.image()?;
        Some(HashRequest {
            file: img.file?,
            path: PathBuf::from(img.exe()),
            pid: if p.is_alive() { key.pid } else { 0 },
            proc_only: img.flags.memfd() || img.flags.deleted(),
            owner: Some(key),
            tag,
        })
    }

    /// Records a hash result on the images of `key` that are that file. Returns whether any
    /// was set.
    pub fn set_hash(&self, key: ProcKey, file: &FileKey, digest: Sha256Digest) -> bool {
        let Some(p) = self.map.get(&key) else { return false };
        let mut set = false;
        for img in p.images().filter(|i| i.file.as_ref() == Some(file)) {
            set |= img.set_hash(digest);
        }
        set
    }

    // ---- updates -------------------------------------------------------------------------

    /// Applies a fork, exec or exit record.
    pub fn apply(&mut self, rec: &Record) -> Applied {
        if matches!(rec, Record::Fork(_) | Record::Exec(_) | Record::Exit(_)) {
            self.generation += 1;
        }
        match rec {
            Record::Fork(f) => self.on_fork(f),
            Record::Exec(e) => self.on_exec(e),
            Record::Exit(x) => self.on_exit(x),
            // File, credential and system records: make sure their actor is known.
            other => {
                let key = self.ensure(other.header());
                Applied { key, parent: self.map.get(&key).and_then(|p| p.parent), created: false }
            }
        }
    }

    fn on_fork(&mut self, f: &Fork) -> Applied {
        self.stats.forks += 1;
        let (pk, _) = self.ensure_inner(&f.hdr);
        if f.thread {
            return Applied { key: pk, parent: self.map.get(&pk).and_then(|p| p.parent), created: false };
        }
        let ck = self.key_of(f.child_pid, f.child_start_ns);
        if ck == pk {
            return Applied { key: pk, parent: None, created: false };
        }
        let fork_ns = f.hdr.ktime_ns;
        let (pimg, psess, ppgid, suid, sgid) = match self.map.get(&pk) {
            Some(p) => (p.image_at(fork_ns).cloned(), p.session, p.pgid, p.creds.suid, p.creds.sgid),
            None => (None, None, None, None, None),
        };
        let linkable = pk.ticks <= ck.ticks;
        if let Some(c) = self.map.get_mut(&ck) {
            // The child's exec (or exit) came first: fill in only what is missing.
            if c.fork_ns.is_none() {
                c.fork_ns = Some(fork_ns);
            }
            let link = c.parent.is_none() && linkable;
            if link {
                c.parent = Some(pk);
                c.ppid = pk.pid;
            }
            if c.session.is_none() && psess.is_some() {
                c.session = psess;
                c.pgid = ppgid;
                c.leaders = LeaderState::Inherited;
            }
            if let Some(img) = pimg {
                if !c.images().any(|i| i.exec_ns <= fork_ns) {
                    c.insert_image(img);
                }
            }
            if c.incomplete && c.parent.is_some() && c.image().is_some() {
                c.incomplete = false;
            }
            let parent = c.parent;
            if link {
                if let Some(p) = self.map.get_mut(&pk) {
                    p.children += 1;
                }
            }
            return Applied { key: ck, parent, created: false };
        }
        let mut chain: [Option<Arc<Image>>; MAX_CHAIN] = Default::default();
        chain[0] = pimg;
        let h = &f.hdr;
        let child = Process {
            key: ck,
            start_ns: f.child_start_ns,
            ppid: pk.pid,
            parent: linkable.then_some(pk),
            comm: h.comm,
            creds: Creds { suid, sgid, ..Creds::from_hdr(h) },
            cgroup_id: h.cgroup_id,
            session: psess,
            pgid: ppgid,
            leaders: if psess.is_some() { LeaderState::Inherited } else { LeaderState::Unknown },
            chain,
            exec_count: 0,
            fork_ns: Some(fork_ns),
            exit: None,
            origin: Origin::Fork,
            incomplete: false,
            last_ns: fork_ns,
            children: 0,
            seq: 0,
            entity_id: OnceLock::new(),
            net: None,
        };
        self.insert(child);
        Applied { key: ck, parent: linkable.then_some(pk), created: true }
    }

    fn on_exec(&mut self, e: &Exec) -> Applied {
        self.stats.execs += 1;
        let h = &e.hdr;
        let k = self.key_of_header(h);
        let img = Arc::new(Image::from_exec(e));
        if let Some(p) = self.map.get_mut(&k) {
            p.insert_image(img);
            p.exec_count += 1;
            p.comm = h.comm;
            p.creds = Creds { suid: Some(e.suid), sgid: Some(e.sgid), ..Creds::from_hdr(h) };
            p.cgroup_id = h.cgroup_id;
            p.last_ns = p.last_ns.max(h.ktime_ns);
            if p.leaders == LeaderState::Verified {
                p.leaders = LeaderState::Inherited;
            }
            if p.parent.is_none() && h.ppid != 0 {
                let pk = self.parent_from_header(h, k);
                self.link(k, pk);
            }
            let p = self.map.get_mut(&k);
            let parent = p.as_ref().and_then(|p| p.parent);
            if let Some(p) = p {
                if p.incomplete && (p.parent.is_some() || h.ppid == 0) {
                    p.incomplete = false;
                }
            }
            return Applied { key: k, parent, created: false };
        }
        let parent = self.parent_from_header(h, k);
        let pp = parent.and_then(|pk| self.map.get(&pk));
        let (session, pgid) = pp.map_or((None, None), |p| (p.session, p.pgid));
        let incomplete = h.ppid != 0 && pp.is_none();
        let mut chain: [Option<Arc<Image>>; MAX_CHAIN] = Default::default();
        chain[0] = Some(img);
        let p = Process {
            key: k,
            start_ns: h.start_ns,
            ppid: h.ppid,
            parent,
            comm: h.comm,
            creds: Creds { suid: Some(e.suid), sgid: Some(e.sgid), ..Creds::from_hdr(h) },
            cgroup_id: h.cgroup_id,
            session,
            pgid,
            leaders: if session.is_some() { LeaderState::Inherited } else { LeaderState::Unknown },
            chain,
            exec_count: 1,
            fork_ns: None,
            exit: None,
            origin: Origin::Exec,
            incomplete,
            last_ns: h.ktime_ns,
            children: 0,
            seq: 0,
            entity_id: OnceLock::new(),
            net: None,
        };
        if incomplete {
            self.stats.incomplete += 1;
        }
        self.insert(p);
        Applied { key: k, parent, created: true }
    }

    fn on_exit(&mut self, x: &Exit) -> Applied {
        self.stats.exits += 1;
        let (k, created) = self.ensure_inner(&x.hdr);
        let Some(p) = self.map.get_mut(&k) else {
            return Applied { key: k, parent: None, created };
        };
        let parent = p.parent;
        if x.thread {
            return Applied { key: k, parent, created };
        }
        p.creds.update(&x.hdr);
        p.cgroup_id = x.hdr.cgroup_id;
        let was = p.exit;
        match was {
            Some(e) if !e.implied() => {} // a duplicate
            _ => {
                p.exit = Some(ExitInfo { ktime_ns: x.hdr.ktime_ns, status: Some(x.status) });
                if was.is_none() {
                    let seq = p.seq;
                    self.exited_count += 1;
                    self.exited.push_back((x.hdr.ktime_ns, k, seq));
                }
            }
        }
        self.now_ns = self.now_ns.max(x.hdr.ktime_ns);
        Applied { key: k, parent, created }
    }

    /// Makes sure the process a record header describes is in the table (resolving it from
    /// /proc, or recording what the header says, marked incomplete) and returns its key. For
    /// events of any kind about a process the table may not know.
    pub fn ensure(&mut self, h: &Header) -> ProcKey {
        let (key, created) = self.ensure_inner(h);
        self.generation += u64::from(created);
        key
    }

    fn ensure_inner(&mut self, h: &Header) -> (ProcKey, bool) {
        let k = self.key_of_header(h);
        if let Some(p) = self.map.get_mut(&k) {
            p.last_ns = p.last_ns.max(h.ktime_ns);
            return (k, false);
        }
        if self.resolve_from_proc(h.pid, Some(k.ticks), 0).is_some() {
            if let Some(p) = self.map.get_mut(&k) {
                p.start_ns = h.start_ns;
                p.last_ns = h.ktime_ns;
            }
            return (k, true);
        }
        let parent = self.parent_from_header(h, k);
        let p = Process {
            key: k,
            start_ns: h.start_ns,
            ppid: h.ppid,
            parent,
            comm: h.comm,
            creds: Creds::from_hdr(h),
            cgroup_id: h.cgroup_id,
            session: None,
            pgid: None,
            leaders: LeaderState::Unknown,
            chain: Default::default(),
            exec_count: 0,
            fork_ns: None,
            exit: None,
            origin: Origin::Record,
            incomplete: true,
            last_ns: h.ktime_ns,
            children: 0,
            seq: 0,
            entity_id: OnceLock::new(),
            net: None,
        };
        self.stats.incomplete += 1;
        self.insert(p);
        (k, true)
    }

    /// The parent a header names, resolved from /proc when the table lacks it. A dangling key is
    /// kept: the ancestry then ends with the parent's pid and entity_id.
    fn parent_from_header(&mut self, h: &Header, child: ProcKey) -> Option<ProcKey> {
        if h.ppid == 0 {
            return None;
        }
        let pk = self.key_of(h.ppid, h.parent_start_ns);
        if pk.ticks > child.ticks || pk == child {
            return None;
        }
        if !self.map.contains_key(&pk) {
            self.resolve_from_proc(h.ppid, Some(pk.ticks), 1);
        }
        Some(pk)
    }

    fn link(&mut self, child: ProcKey, parent: Option<ProcKey>) {
        let Some(pk) = parent else { return };
        if let Some(c) = self.map.get_mut(&child) {
            if c.parent.is_some() {
                return;
            }
            c.parent = Some(pk);
            c.ppid = pk.pid;
        }
        if let Some(p) = self.map.get_mut(&pk) {
            p.children += 1;
        }
    }

    fn process_from_snapshot(&self, s: &Snapshot, parent: Option<ProcKey>, origin: Origin) -> Process {
        let key = ProcKey { pid: s.stat.pid, ticks: s.stat.ticks };
        let mut chain: [Option<Arc<Image>>; MAX_CHAIN] = Default::default();
        if s.exe.is_some() || !s.args.is_empty() {
            chain[0] = Some(Arc::new(Image::from_snapshot(s)));
        }
        let [uid, euid, suid] = s.uids.unwrap_or([u32::MAX; 3]);
        let [gid, egid, sgid] = s.gids.unwrap_or([u32::MAX; 3]);
        Process {
            key,
            start_ns: s.stat.ticks.saturating_mul(self.ns_per_tick),
            ppid: s.stat.ppid,
            parent,
            comm: Comm::new(&s.stat.comm),
            creds: Creds { uid, gid, euid, egid, suid: s.uids.map(|_| suid), sgid: s.gids.map(|_| sgid) },
            cgroup_id: s.cgroup_id.unwrap_or(0),
            session: Some(s.stat.session),
            pgid: Some(s.stat.pgrp),
            leaders: LeaderState::Verified,
            chain,
            exec_count: 0,
            fork_ns: None,
            exit: None,
            origin,
            incomplete: false,
            last_ns: 0,
            children: 0,
            seq: 0,
            entity_id: OnceLock::new(),
            net: None,
        }
    }

    /// Reads process `pid` from /proc (when its start time is `expect_ticks`, if given) and
    /// its missing ancestors, and returns its key.
    fn resolve_from_proc(&mut self, pid: u32, expect_ticks: Option<u64>, depth: usize) -> Option<ProcKey> {
        if !self.cfg.resolve_from_proc || pid == 0 {
            return None;
        }
        let root = self.cfg.proc_root.clone();
        let st = procread::read_stat(&root, pid)?;
        if expect_ticks.is_some_and(|t| t != st.ticks) {
            return None;
        }
        let k = ProcKey { pid, ticks: st.ticks };
        if self.map.contains_key(&k) {
            return Some(k);
        }
        let snap = procread::snapshot(&root, pid, self.cfg.cgroup_mount.as_deref())?;
        if snap.stat.ticks != k.ticks {
            return None;
        }
        let ppid = snap.stat.ppid;
        let parent = if ppid == 0 || ppid == pid {
            None
        } else if depth < MAX_PROC_DEPTH {
            self.resolve_from_proc(ppid, None, depth + 1).filter(|pk| pk.ticks <= k.ticks)
        } else {
            self.by_pid.get(&ppid).copied().filter(|pk| pk.ticks <= k.ticks)
        };
        let p = self.process_from_snapshot(&snap, parent, Origin::Proc);
        self.stats.resolved_from_proc += 1;
        self.insert(p);
        Some(k)
    }

    /// Loads every process in /proc. Processes already in the table are left alone.
    pub fn seed_from_proc(&mut self) -> Result<usize, TableError> {
        self.generation += 1;
        let root = self.cfg.proc_root.clone();
        let pids = procread::list_pids(&root).map_err(|source| TableError::ListProc { path: root.clone(), source })?;
        let mut snaps: Vec<Snapshot> = pids
            .into_iter()
            .filter_map(|pid| procread::snapshot(&root, pid, self.cfg.cgroup_mount.as_deref()))
            .collect();
        // Parents start no later than their children: insert them first.
        snaps.sort_by_key(|s| (s.stat.ticks, s.stat.pid));
        let ticks_of: FxHashMap<u32, u64> = snaps.iter().map(|s| (s.stat.pid, s.stat.ticks)).collect();
        let mut n = 0;
        for s in &snaps {
            let key = ProcKey { pid: s.stat.pid, ticks: s.stat.ticks };
            if self.map.contains_key(&key) {
                continue;
            }
            let ppid = s.stat.ppid;
            let parent = ticks_of
                .get(&ppid)
                .filter(|&&t| ppid != 0 && ppid != key.pid && t <= key.ticks)
                .map(|&t| ProcKey { pid: ppid, ticks: t });
            let p = self.process_from_snapshot(s, parent, Origin::Seeded);
            self.insert(p);
            n += 1;
        }
        self.stats.seeded += n as u64;
        Ok(n)
    }

    /// Marks live entries whose process is gone from /proc (or whose pid now belongs to another
    /// process) as exited, so lost exit records do not keep them forever. A scan with a /proc
    /// read per live entry: run it rarely (every minute or so).
    pub fn sweep_dead(&mut self) -> usize {
        self.generation += 1;
        if !self.cfg.resolve_from_proc {
            return 0;
        }
        let root = self.cfg.proc_root.clone();
        let live: Vec<ProcKey> = self.map.values().filter(|p| p.exit.is_none()).map(|p| p.key).collect();
        let mut n = 0;
        for k in live {
            let gone = procread::read_stat(&root, k.pid).is_none_or(|st| st.ticks != k.ticks);
            if gone {
                let at = self.now_ns;
                self.mark_implied_exit(k, at);
                n += 1;
            }
        }
        n
    }

    // ---- bookkeeping ---------------------------------------------------------------------

    fn mark_implied_exit(&mut self, k: ProcKey, at_ns: u64) {
        if let Some(p) = self.map.get_mut(&k) {
            if p.exit.is_none() {
                p.exit = Some(ExitInfo { ktime_ns: at_ns, status: None });
                let seq = p.seq;
                self.exited_count += 1;
                self.exited.push_back((at_ns, k, seq));
                self.stats.implied_exits += 1;
            }
        }
    }

    fn insert(&mut self, mut p: Process) {
        let cap = self.cfg.max_entries.max(1);
        while self.map.len() >= cap {
            if !self.evict_one_for_cap() {
                break;
            }
        }
        self.next_seq += 1;
        p.seq = self.next_seq;
        let k = p.key;
        match self.by_pid.get(&k.pid).copied() {
            Some(old) if old == k => {}
            Some(old) if old.ticks > k.ticks => {
                // An older incarnation reported late: its pid has been reused, so it is gone.
                if p.exit.is_none() {
                    p.exit = Some(ExitInfo { ktime_ns: p.last_ns.max(p.start_ns), status: None });
                    self.stats.implied_exits += 1;
                }
            }
            Some(old) => {
                self.by_pid.insert(k.pid, k);
                self.mark_implied_exit(old, p.start_ns);
            }
            None => {
                self.by_pid.insert(k.pid, k);
            }
        }
        if let Some(pk) = p.parent {
            if let Some(pp) = self.map.get_mut(&pk) {
                pp.children += 1;
            }
        }
        if let Some(x) = p.exit {
            self.exited_count += 1;
            self.exited.push_back((x.ktime_ns, k, p.seq));
        }
        self.order.push_back((k, p.seq));
        self.map.insert(k, p);
        self.stats.inserted += 1;
        self.compact();
    }

    /// Drops queue items that no longer name an entry, when they outnumber the entries.
    fn compact(&mut self) {
        let map = &self.map;
        if self.order.len() > 2 * map.len() + 1024 {
            self.order.retain(|(k, s)| map.get(k).is_some_and(|p| p.seq == *s));
        }
        if self.exited.len() > 2 * self.exited_count + 1024 {
            self.exited.retain(|(_, k, s)| map.get(k).is_some_and(|p| p.seq == *s && p.exit.is_some()));
        }
    }

    fn detach(&mut self, k: ProcKey) -> Option<Process> {
        let p = self.map.remove(&k)?;
        if self.by_pid.get(&k.pid) == Some(&k) {
            self.by_pid.remove(&k.pid);
        }
        if p.exit.is_some() {
            self.exited_count = self.exited_count.saturating_sub(1);
        }
        Some(p)
    }

    fn grace_ns(&self) -> u64 {
        u64::try_from(self.cfg.exit_grace.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Removes `k`, then any exited ancestors whose grace has passed and that were kept only
    /// for their descendants.
    fn remove(&mut self, k: ProcKey) {
        let Some(p) = self.detach(k) else { return };
        let grace = self.grace_ns();
        let mut parent = p.parent;
        while let Some(pk) = parent {
            let Some(pp) = self.map.get_mut(&pk) else { break };
            pp.children = pp.children.saturating_sub(1);
            let due =
                pp.children == 0 && pp.exit.is_some_and(|x| x.ktime_ns.saturating_add(grace) <= self.now_ns);
            if !due {
                break;
            }
            parent = pp.parent;
            self.detach(pk);
            self.stats.evicted_grace += 1;
        }
    }

    fn evict_one_for_cap(&mut self) -> bool {
        while let Some((_, k, seq)) = self.exited.pop_front() {
            if self.map.get(&k).is_some_and(|p| p.seq == seq && p.exit.is_some()) {
                self.remove(k);
                self.stats.evicted_cap += 1;
                return true;
            }
        }
        while let Some((k, seq)) = self.order.pop_front() {
            let live = match self.map.get(&k) {
                Some(p) if p.seq == seq => p.exit.is_none(),
                _ => continue,
            };
            self.remove(k);
            self.stats.evicted_cap += 1;
            if live {
                self.stats.evicted_cap_live += 1;
            }
            return true;
        }
        false
    }

    /// The eviction tick: removes processes that exited at least the grace period before
    /// `now_ns` (boot-time ns), except those still needed as ancestors of entries in the table
    /// (they go with their last descendant). Returns how many were removed.
    pub fn evict(&mut self, now_ns: u64) -> usize {
        self.generation += 1;
        self.now_ns = self.now_ns.max(now_ns);
        let grace = self.grace_ns();
        let before = self.map.len();
        let mut requeue = Vec::new();
        while let Some(&(t, k, seq)) = self.exited.front() {
            if t.saturating_add(grace) > now_ns {
                break;
            }
            self.exited.pop_front();
            let (exit_ns, children) = match self.map.get(&k) {
                Some(p) if p.seq == seq => match p.exit {
                    Some(x) => (x.ktime_ns, p.children),
                    None => continue,
                },
                _ => continue,
            };
            if exit_ns.saturating_add(grace) > now_ns {
                requeue.push((exit_ns, k, seq)); // its exit time moved later
            } else if children == 0 {
                self.remove(k);
                self.stats.evicted_grace += 1;
            }
            // else: kept for its descendants; removed with the last of them
        }
        self.exited.extend(requeue);
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agent_common::RecordType;

    const TICK: u64 = 10_000_000; // 100 Hz
    const S: u64 = 1_000_000_000;

    fn table(cap: usize, grace: Duration) -> ProcessTable {
        let cfg = TableConfig { max_entries: cap, exit_grace: grace, resolve_from_proc: false, ..Default::default() };
        ProcessTable::new(cfg, EntityIds::new("test-boot"))
    }

    fn hdr(kind: RecordType, pid: u32, start_ns: u64, ppid: u32, pstart: u64, t: u64, comm: &str) -> Header {
        Header {
            kind,
            ktime_ns: t,
            cpu: 0,
            pid,
            tid: pid,
            ppid,
            start_ns,
            parent_start_ns: pstart,
            uid: 1000,
            gid: 1000,
            euid: 1000,
            egid: 1000,
            cgroup_id: 7,
            comm: Comm::new(comm),
        }
    }

    /// A tiny process model that produces consistent records.
    #[derive(Clone, Copy)]
    struct P {
        pid: u32,
        start: u64,
        ppid: u32,
        pstart: u64,
    }

    fn fork(parent: P, child_pid: u32, t: u64) -> (Record, P) {
        let child = P { pid: child_pid, start: t, ppid: parent.pid, pstart: parent.start };
        let r = Record::Fork(Fork {
            hdr: hdr(RecordType::Fork, parent.pid, parent.start, parent.ppid, parent.pstart, t, "parent"),
            child_pid,
            child_tid: child_pid,
            child_start_ns: t,
            thread: false,
        });
        (r, child)
    }

    fn exec(p: P, exe: &str, args: &[&str], t: u64) -> Record {
        let comm = exe.rsplit('/').next().unwrap();
        Record::Exec(Box::new(Exec {
            hdr: hdr(RecordType::Exec, p.pid, p.start, p.ppid, p.pstart, t, comm),
            exe_ino: u64::from(p.pid) + 1000,
            exe_ctime_ns: 1,
            exe_size: 100,
            exe_dev: 8 << 20,
            exe_mode: 0o100755,
            exe_uid: 0,
            exe_gid: 0,
            flags: ExecFlags(0),
            argc: args.len() as u32,
            suid: 1000,
            sgid: 1000,
            old_uid: 1000,
            old_euid: 1000,
            old_gid: 1000,
            old_egid: 1000,
            old_pid: p.pid,
            cap_effective: 0,
            old_cap_effective: 0,
            exe_path: exe.into(),
            filename: exe.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: "/tmp".into(),
        }))
    }

    fn exit(p: P, status: u32, t: u64) -> Record {
        Record::Exit(Exit { hdr: hdr(RecordType::Exit, p.pid, p.start, p.ppid, p.pstart, t, "x"), status, thread: false })
    }

    fn root(t: &mut ProcessTable, pid: u32, start: u64, exe: &str) -> P {
        let p = P { pid, start, ppid: 0, pstart: 0 };
        t.apply(&exec(p, exe, &[exe], start + 1));
        p
    }

    #[test]
    fn lineage_of_a_five_deep_chain() {
        let mut t = table(1000, Duration::from_secs(30));
        let test = root(&mut t, 100, S, "/usr/bin/cargo-test");
        let mut now = 2 * S;
        let mut cur = test;
        let chain = [("/bin/sh", 201), ("/bin/sh", 202), ("/bin/bash", 203), ("/bin/sh", 204), ("/bin/sleep", 205)];
        for (exe, pid) in chain {
            let (f, child) = fork(cur, pid, now);
            t.apply(&f);
            t.apply(&exec(child, exe, &[exe, "-c", "x"], now + 1000));
            cur = child;
            now += S;
        }
        let leaf = t.key_of(cur.pid, cur.start);
        let p = t.get(leaf).unwrap();
        assert_eq!(p.executable(), Some("/bin/sleep"));
        assert_eq!(p.previous_image().unwrap().exe(), "/bin/sh", "inherited from its parent at fork");
        let anc = t.ancestry(leaf, None);
        let got: Vec<(u32, Option<&str>)> = anc.iter().map(|a| (a.pid, a.executable.as_deref())).collect();
        assert_eq!(
            got,
            [
                (204, Some("/bin/sh")),
                (203, Some("/bin/bash")),
                (202, Some("/bin/sh")),
                (201, Some("/bin/sh")),
                (100, Some("/usr/bin/cargo-test")),
            ]
        );
        assert!(anc.iter().all(|a| !a.incomplete));
        assert_eq!(anc[0].entity_id, t.entity_id(t.key_of(204, 5 * S)));
        let p204 = t.get(t.key_of(204, 5 * S)).unwrap();
        assert_eq!(&**t.entity_id_of(p204), anc[0].entity_id, "cached id equals the computed one");
        assert_eq!(anc[0].args.as_deref(), Some("/bin/sh -c x"));
        // depth limit
        assert_eq!(t.ancestry(leaf, Some(2)).len(), 2);
        assert_eq!(t.parent(leaf).unwrap().pid(), 204);
    }

    #[test]
    fn entity_ids_match_the_identity_module() {
        let t = table(10, Duration::ZERO);
        let ids = EntityIds::new("test-boot");
        let k = t.key_of(42, 123 * TICK + 5);
        assert_eq!(t.entity_id(k), ids.entity_id(42, 123 * TICK + 5));
    }

    #[test]
    fn exec_chain_keeps_current_and_previous_in_order() {
        let mut t = table(100, Duration::from_secs(30));
        let sh = root(&mut t, 10, S, "/bin/sh");
        let (f, c) = fork(sh, 11, 2 * S);
        t.apply(&f);
        for (i, exe) in ["/a", "/b", "/c", "/d", "/e"].iter().enumerate() {
            t.apply(&exec(c, exe, &[exe], 3 * S + i as u64));
        }
        let p = t.get(t.key_of(11, 2 * S)).unwrap();
        assert_eq!(p.exec_count, 5);
        assert_eq!(p.executable(), Some("/e"));
        assert_eq!(p.previous_image().unwrap().exe(), "/d");
        let chain: Vec<&str> = p.images().map(|i| i.exe()).collect();
        assert_eq!(chain, ["/b", "/c", "/d", "/e"], "bounded, oldest dropped");

        // out of order: the later exec arrives first
        let (f, c) = fork(sh, 12, 2 * S);
        t.apply(&f);
        t.apply(&exec(c, "/second", &["/second"], 5 * S));
        t.apply(&exec(c, "/first", &["/first"], 4 * S));
        let p = t.get(t.key_of(12, 2 * S)).unwrap();
        let chain: Vec<&str> = p.images().map(|i| i.exe()).collect();
        assert_eq!(chain, ["/bin/sh", "/first", "/second"]);
        assert_eq!(p.executable(), Some("/second"));
    }

    #[test]
    fn pid_reuse_never_merges_two_entity_ids() {
        let mut t = table(100, Duration::from_secs(30));
        let sh = root(&mut t, 10, S, "/bin/sh");
        let (f, a) = fork(sh, 500, 2 * S);
        t.apply(&f);
        t.apply(&exec(a, "/bin/first", &["first"], 2 * S + 1));
        t.apply(&exit(a, 0, 3 * S));
        let (f, b) = fork(sh, 500, 4 * S);
        t.apply(&f);
        t.apply(&exec(b, "/bin/second", &["second"], 4 * S + 1));
        let (ka, kb) = (t.key_of(500, 2 * S), t.key_of(500, 4 * S));
        assert_ne!(ka, kb);
        assert_ne!(t.entity_id(ka), t.entity_id(kb));
        assert_eq!(t.get(ka).unwrap().executable(), Some("/bin/first"));
        assert_eq!(t.get(kb).unwrap().executable(), Some("/bin/second"));
        assert_eq!(t.get_by_pid(500).unwrap().key, kb, "the pid index follows the newest");
        assert!(t.get(kb).unwrap().is_alive());
        // a late record for the old one touches only the old one
        t.apply(&exit(a, 1 << 8, 3 * S + 5));
        assert!(t.get(kb).unwrap().is_alive());
        assert_eq!(t.get(ka).unwrap().exit.unwrap().exit_code(), Some(0), "duplicate exit ignored");

        // reuse with the exit record lost: the old one is marked exited (implied)
        let (f, c) = fork(sh, 600, 5 * S);
        t.apply(&f);
        let (f, d) = fork(sh, 600, 6 * S);
        t.apply(&f);
        let old = t.get(t.key_of(c.pid, c.start)).unwrap();
        assert!(old.exit.unwrap().implied());
        assert!(t.get(t.key_of(d.pid, d.start)).unwrap().is_alive());
        assert_eq!(t.stats().implied_exits, 1);

        // a late record for an older incarnation arriving after the newer one is marked exited
        let late = P { pid: 500, start: S + S / 2, ppid: 10, pstart: S };
        t.apply(&exec(late, "/bin/older", &["older"], S + S / 2 + 1));
        let k = t.key_of(late.pid, late.start);
        assert!(t.get(k).unwrap().exit.is_some());
        assert_eq!(t.get_by_pid(500).unwrap().key, kb);
    }

    #[test]
    fn fork_after_exec_does_not_clobber_the_exec() {
        let mut t = table(100, Duration::from_secs(30));
        let sh = root(&mut t, 10, S, "/bin/bash");
        let child = P { pid: 20, start: 2 * S, ppid: 10, pstart: S };
        // the child's exec is seen first
        let a = t.apply(&exec(child, "/usr/bin/curl", &["curl", "http://x"], 2 * S + 500));
        assert!(a.created);
        let k = t.key_of(20, 2 * S);
        {
            let p = t.get(k).unwrap();
            assert_eq!(p.origin, Origin::Exec);
            assert_eq!(p.parent, Some(t.key_of(10, S)), "parent from the exec header");
            assert!(!p.incomplete);
        }
        let (f, _) = fork(sh, 20, 2 * S);
        let a = t.apply(&f);
        assert!(!a.created);
        let p = t.get(k).unwrap();
        assert_eq!(p.executable(), Some("/usr/bin/curl"));
        assert_eq!(p.comm.as_str(), "curl");
        assert_eq!(p.image().unwrap().args_vec(), ["curl", "http://x"]);
        assert_eq!(p.exec_count, 1);
        assert_eq!(p.fork_ns, Some(2 * S));
        assert_eq!(p.previous_image().unwrap().exe(), "/bin/bash", "the pre-exec image is filled in");
        assert_eq!(t.get(t.key_of(10, S)).unwrap().children_in_table(), 1, "linked once");
    }

    #[test]
    fn unknown_process_without_proc_is_recorded_incomplete_never_dropped() {
        let mut t = table(100, Duration::from_secs(30));
        let ghost = P { pid: 77, start: 5 * S, ppid: 66, pstart: 4 * S };
        let a = t.apply(&exit(ghost, 9, 6 * S));
        assert!(a.created);
        let p = t.get(a.key).unwrap();
        assert!(p.incomplete);
        assert_eq!(p.origin, Origin::Record);
        assert_eq!(p.comm.as_str(), "x");
        assert_eq!(p.exit.unwrap().signal(), Some(9));
        assert_eq!(p.parent, Some(t.key_of(66, 4 * S)));
        // ancestry ends with the parent's identity even though it is not in the table
        let anc = t.ancestry(a.key, None);
        assert_eq!(anc.len(), 1);
        assert_eq!(anc[0].pid, 66);
        assert_eq!(anc[0].entity_id, t.entity_id(t.key_of(66, 4 * S)));
        assert!(anc[0].incomplete);
        assert_eq!(t.stats().incomplete, 1);

        // a later exec completes an incomplete entry
        let g2 = P { pid: 78, start: 5 * S, ppid: 0, pstart: 0 };
        t.apply(&exit(g2, 0, 6 * S)); // exit before exec (out of order)
        t.apply(&exec(g2, "/bin/late", &["late"], 5 * S + 1));
        let p = t.get(t.key_of(78, 5 * S)).unwrap();
        assert_eq!(p.executable(), Some("/bin/late"));
        assert!(p.exit.is_some());
        assert!(!p.incomplete);
    }

    #[test]
    fn thread_clone_and_thread_exit_do_not_make_processes() {
        let mut t = table(100, Duration::from_secs(30));
        let sh = root(&mut t, 10, S, "/bin/sh");
        let n = t.len();
        let Record::Fork(mut f) = fork(sh, 11, 2 * S).0 else { unreachable!() };
        f.thread = true;
        let a = t.apply(&Record::Fork(f));
        assert_eq!(a.key, t.key_of(10, S));
        let Record::Exit(mut x) = exit(sh, 0, 3 * S) else { unreachable!() };
        x.thread = true;
        t.apply(&Record::Exit(x));
        assert_eq!(t.len(), n);
        assert!(t.get(t.key_of(10, S)).unwrap().is_alive());
    }

    #[test]
    fn exited_processes_stay_for_the_grace_period() {
        let grace = Duration::from_secs(10);
        let mut t = table(100, grace);
        let sh = root(&mut t, 10, S, "/bin/sh");
        let (f, c) = fork(sh, 11, 2 * S);
        t.apply(&f);
        t.apply(&exit(c, 0, 3 * S));
        let k = t.key_of(11, 2 * S);
        assert_eq!(t.evict(3 * S + 10 * S - 1), 0);
        assert!(t.get(k).is_some());
        assert_eq!(t.evict(13 * S), 1);
        assert!(t.get(k).is_none());
        assert_eq!(t.stats().evicted_grace, 1);
        assert!(t.get_by_pid(11).is_none());
    }

    #[test]
    fn an_exited_ancestor_stays_while_a_descendant_needs_it() {
        let mut t = table(100, Duration::from_secs(10));
        let init = root(&mut t, 1, S, "/sbin/init");
        let (f, sh) = fork(init, 50, 2 * S);
        t.apply(&f);
        let (f, daemon) = fork(sh, 51, 3 * S);
        t.apply(&f);
        t.apply(&exec(daemon, "/usr/sbin/daemon", &["daemon"], 3 * S + 1));
        t.apply(&exit(sh, 0, 4 * S)); // the shell exits, the daemon lives on
        t.evict(100 * S);
        let dk = t.key_of(51, 3 * S);
        let anc: Vec<u32> = t.ancestry(dk, None).iter().map(|a| a.pid).collect();
        assert_eq!(anc, [50, 1], "lineage survives the grace period");
        // the daemon exits and is evicted: the shell goes with it
        t.apply(&exit(daemon, 0, 101 * S));
        t.evict(200 * S);
        assert!(t.get(dk).is_none());
        assert!(t.get(t.key_of(50, 2 * S)).is_none());
        assert!(t.get(t.key_of(1, S)).is_some());
        assert_eq!(t.stats().evicted_grace, 2);
    }

    #[test]
    fn cap_evicts_exited_first_then_oldest() {
        let mut t = table(4, Duration::from_secs(3600));
        let a = root(&mut t, 1, S, "/a");
        let (f, b) = fork(a, 2, 2 * S);
        t.apply(&f);
        let (f, c) = fork(a, 3, 3 * S);
        t.apply(&f);
        t.apply(&exit(c, 0, 4 * S));
        let (f, _d) = fork(a, 4, 5 * S);
        t.apply(&f);
        assert_eq!(t.len(), 4);
        let (f, _e) = fork(a, 5, 6 * S);
        t.apply(&f);
        assert_eq!(t.len(), 4);
        assert!(t.get(t.key_of(3, 3 * S)).is_none(), "the exited one went first");
        assert!(t.get(t.key_of(2, 2 * S)).is_some());
        let (f, _g) = fork(a, 6, 7 * S);
        t.apply(&f);
        assert!(t.get(t.key_of(1, S)).is_none(), "then the oldest");
        let s = t.stats();
        assert_eq!((s.evicted_cap, s.evicted_cap_live), (2, 1));
        let _ = b;
    }

    #[test]
    fn churn_of_100k_processes_stays_within_the_cap() {
        let cap = 5_000;
        let mut t = table(cap, Duration::from_secs(5));
        let sh = root(&mut t, 1, S, "/bin/sh");
        let mut now = 2 * S;
        let mut peak = 0;
        for i in 0..100_000u32 {
            let pid = 2 + (i % 30_000); // pids wrap: reuse is exercised too
            let (f, c) = fork(sh, pid, now);
            t.apply(&f);
            t.apply(&exec(c, "/bin/true", &["true"], now + 10));
            t.apply(&exit(c, 0, now + 20));
            now += 100_000; // 10k processes per second
            if i.is_multiple_of(1000) {
                t.evict(now);
            }
            peak = peak.max(t.len());
            assert!(t.order.len() <= 2 * cap + 1025 && t.exited.len() <= 2 * cap + 1025);
        }
        assert!(peak <= cap, "peak {peak}");
        let s = t.stats();
        assert!(s.evictions() >= 95_000, "{s:?}");
        assert!(t.by_pid.len() <= cap);
        // the shell survived: live entries are evicted only when nothing exited is left
        assert!(t.get(t.key_of(1, S)).is_some());
        // and once the grace period passes everything exited goes
        t.evict(now + 10 * S);
        assert_eq!(t.len(), 1);
        assert_eq!(t.stats().exited, 0);
    }

    #[test]
    fn session_and_group_are_inherited_at_fork() {
        let cfg = TableConfig { resolve_from_proc: true, ..Default::default() };
        let mut t = ProcessTable::new(cfg, EntityIds::new("b"));
        t.seed_from_proc().unwrap();
        let me = t.get_by_pid(std::process::id()).expect("this process was seeded").key;
        let me_p = t.get(me).map(|p| (p.session, p.pgid, p.leaders)).unwrap();
        assert_eq!(me_p.2, LeaderState::Verified);
        // a synthetic child of ours
        let start = me.ticks * TICK + 1;
        let mep = P { pid: me.pid, start: me.ticks * TICK, ppid: 0, pstart: 0 };
        let (f, c) = fork(mep, 4_000_000, start);
        t.apply(&f);
        let ck = t.key_of(c.pid, c.start);
        let cp = t.get(ck).unwrap();
        assert_eq!((cp.session, cp.pgid), (me_p.0, me_p.1));
        assert_eq!(cp.leaders, LeaderState::Inherited);
        let sl = t.session_leader(ck).unwrap();
        assert_eq!(Some(sl.pid), me_p.0);
        // not in /proc: cannot be verified
        assert!(!t.resolve_leaders(ck));
        assert!(t.resolve_leaders(me));
    }

    #[test]
    fn seeding_from_proc_gives_lineage_to_processes_started_before() {
        let cfg = TableConfig { resolve_from_proc: true, ..Default::default() };
        let mut t = ProcessTable::new(cfg, EntityIds::new("b"));
        let n = t.seed_from_proc().unwrap();
        assert!(n > 1);
        assert_eq!(t.stats().seeded, n as u64);
        let me = t.get_by_pid(std::process::id()).unwrap().clone();
        assert_eq!(me.origin, Origin::Seeded);
        assert!(me.executable().is_some());
        assert!(me.image().unwrap().file.is_some());
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        let anc = t.ancestry(me.key, None);
        assert_eq!(anc.first().map(|a| a.pid), Some(std::os::unix::process::parent_id()));
        if t.get_by_pid(1).is_some() {
            assert_eq!(anc.last().map(|a| a.pid), Some(1), "{anc:?}");
        }
        // seeding twice adds only processes that started since (other tests spawn some)
        let before = t.len();
        let n2 = t.seed_from_proc().unwrap();
        assert!(n2 < n, "{n2} of {n}");
        assert_eq!(t.len(), before + n2);
        assert_eq!(t.stats().seeded, (n + n2) as u64);
        // a hash request can be made for a seeded image
        assert!(t.hash_request(me.key, 1).is_some());
    }

    #[test]
    fn unknown_pid_is_resolved_from_proc() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        // wait for the exec to finish so /proc shows sleep, not the forked test binary
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let st = loop {
            let st = procread::read_stat(std::path::Path::new("/proc"), pid).unwrap();
            // comm changes early in exec, the argument area is set up after it
            let args = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if (st.comm == "sleep" && args.starts_with(b"sleep\0")) || std::time::Instant::now() > deadline {
                break st;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let cfg = TableConfig { resolve_from_proc: true, ..Default::default() };
        let mut t = ProcessTable::new(cfg, EntityIds::new("b"));
        let me = procread::read_stat(std::path::Path::new("/proc"), std::process::id()).unwrap();
        // an event for the child, whose fork and exec were never seen
        let h = hdr(RecordType::Exit, pid, st.ticks * TICK + 3, me.pid, me.ticks * TICK, 0, "sleep");
        let a = t.apply(&Record::Exit(Exit { hdr: h, status: 0, thread: false }));
        let p = t.get(a.key).unwrap();
        assert_eq!(p.origin, Origin::Proc);
        assert!(!p.incomplete);
        assert!(p.executable().is_some_and(|e| e.ends_with("/sleep")), "{:?}", p.executable());
        assert_eq!(p.image().unwrap().args_vec(), ["sleep", "30"]);
        assert_eq!(p.start_ns, st.ticks * TICK + 3);
        // its ancestry reaches this test process and beyond, all from /proc
        let anc = t.ancestry(a.key, None);
        assert_eq!(anc[0].pid, std::process::id());
        assert!(anc[0].executable.is_some());
        assert!(t.stats().resolved_from_proc >= 2);
        // a start time that does not match /proc (pid reused) is not taken from /proc
        let h = hdr(RecordType::Exit, pid, (st.ticks + 5) * TICK, me.pid, me.ticks * TICK, 0, "other");
        let a = t.apply(&Record::Exit(Exit { hdr: h, status: 0, thread: false }));
        assert!(t.get(a.key).unwrap().incomplete);
        let _ = child.kill();
        let _ = child.wait();
        // sweeping marks the killed child as exited
        let k = t.key_of(pid, st.ticks * TICK);
        t.map.get_mut(&k).unwrap().exit = None;
        t.exited_count -= 1;
        assert!(t.sweep_dead() >= 1);
        assert!(t.get(k).unwrap().exit.unwrap().implied());
    }

    #[test]
    fn args_summary_and_names() {
        let mut t = table(10, Duration::ZERO);
        let long = "x".repeat(300);
        let p = root(&mut t, 5, S, "/usr/bin/python3");
        t.apply(&exec(p, "/usr/bin/python3", &["python3", "-c", &long, "é"], 2 * S));
        let img = t.get(t.key_of(5, S)).unwrap().image().unwrap().clone();
        let s = img.args_summary(ARGS_SUMMARY_MAX);
        assert!(s.len() <= ARGS_SUMMARY_MAX + '…'.len_utf8());
        assert!(s.ends_with('…'));
        assert_eq!(img.name(), "python3");
        assert_eq!(img.args_count(), 4);
        assert_eq!(img.cwd(), "/tmp");
        assert_eq!(img.args_summary(3), "pyt…");
        // multi-byte boundary
        let q = root(&mut t, 6, S, "/bin/e");
        t.apply(&exec(q, "/bin/e", &["éé"], 2 * S));
        let img = t.get(t.key_of(6, S)).unwrap().image().unwrap().clone();
        assert_eq!(img.args_summary(3), "é…");
        // The name is what follows the executable's last slash.
        for (exe, name) in [("/usr/bin/python3", "python3"), ("python3", "python3"), ("", ""), ("/opt/dir/", ""), ("/é/ü", "ü")] {
            let (_, ends) = Image::build(exe, "f", &["a"], "/");
            assert_eq!(&exe[ends.name..ends.exe], name, "{exe:?}");
        }
        assert_eq!(Comm::new("abcdefghijklmnopqrstuvwxyz").as_str().len(), 16);
        assert_eq!(Comm::new("ééééééééé").as_str(), "éééééééé");
    }

    #[test]
    fn empty_args_and_empty_strings_are_kept_apart() {
        let mut t = table(10, Duration::ZERO);
        let p = P { pid: 9, start: S, ppid: 0, pstart: 0 };
        t.apply(&exec(p, "/bin/x", &[], S + 1));
        assert_eq!(t.get(t.key_of(9, S)).unwrap().image().unwrap().args_count(), 0);
        assert_eq!(t.get(t.key_of(9, S)).unwrap().image().unwrap().args().count(), 0);
        t.apply(&exec(p, "/bin/y", &[""], S + 2));
        assert_eq!(t.get(t.key_of(9, S)).unwrap().image().unwrap().args_vec(), [""]);
    }

    #[test]
    fn an_images_command_line_is_quoted_as_its_exec_event_prints_it() {
        let mut t = table(10, Duration::ZERO);
        let p = root(&mut t, 5, S, "/bin/sh");
        let args = ["sh", "-c", "echo 'hi there'", "", "$HOME"];
        t.apply(&exec(p, "/bin/sh", &args, 2 * S));
        let img = t.get(t.key_of(5, S)).unwrap().image().unwrap().clone();
        assert_eq!(img.command_line(), r"sh -c 'echo '\''hi there'\''' '' '$HOME'");
        let owned: Vec<String> = args.map(String::from).to_vec();
        assert_eq!(img.command_line(), crate::event::command_line(&owned));
        assert_eq!(img.args_vec(), owned);
    }

    #[test]
    fn hashes_land_on_shared_images() {
        let mut t = table(10, Duration::ZERO);
        let sh = root(&mut t, 10, S, "/bin/sh");
        let (f, c) = fork(sh, 11, 2 * S);
        t.apply(&f);
        let pk = t.key_of(10, S);
        let file = t.get(pk).unwrap().image().unwrap().file.unwrap();
        let d = Sha256Digest::of(b"sh");
        assert!(t.set_hash(pk, &file, d));
        // the forked child runs the same image: it sees the hash too
        assert_eq!(t.get(t.key_of(c.pid, c.start)).unwrap().image().unwrap().hash(), Some(d));
        assert!(!t.set_hash(pk, &file, Sha256Digest::of(b"other")), "set once");
    }

    #[test]
    fn ancestry_never_loops() {
        let mut t = table(10, Duration::ZERO);
        // two processes that claim each other as parent (same tick): bounded by depth
        let a = P { pid: 1, start: S, ppid: 2, pstart: S };
        let b = P { pid: 2, start: S, ppid: 1, pstart: S };
        t.apply(&exec(a, "/a", &["a"], S + 1));
        t.apply(&exec(b, "/b", &["b"], S + 2));
        assert!(t.ancestry(t.key_of(1, S), Some(32)).len() <= 32);
    }
}
