//! sha256 of executed files, off the hot path.
//!
//! A fixed pool of worker threads reads files from a bounded queue (a full queue drops the
//! request and counts it). Results are cached by the file's identity (device, inode, ctime,
//! size), so a binary executed a thousand times is read once, and concurrent requests for the
//! same file share one read. Files above a size limit are skipped.
//!
//! A request answers at once from the cache, or returns a [`PendingHash`] that the pipeline can
//! await for a bounded budget (it is a `Future`; `wait_timeout` blocks instead). When the caller
//! gives up (drops it) before the result comes, the result is sent later as a [`HashDone`] on the
//! channel returned by [`HashPool::new`], so the event can go out with `hash_pending` and the
//! hash follow in an update.
//!
//! The file opened is checked against the identity the kernel reported: a path replaced since
//! the exec is not hashed in its place. memfd and deleted images have no usable path and are
//! read through `/proc/PID/exe` while the process lives; so is a path that no longer matches.

use std::{
    collections::VecDeque,
    fmt,
    fs::{File, Metadata},
    future::Future,
    io::Read,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        mpsc, Arc, Condvar, Mutex, MutexGuard,
    },
    task::{Context, Poll, Waker},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::mpsc as tmpsc;

use super::table::ProcKey;
use crate::decode::Exec;

#[derive(Debug, Error)]
pub enum HashError {
    #[error("starting hash worker: {0}")]
    Spawn(#[from] std::io::Error),
}

/// The identity of a file's content: the kernel's view of (device, inode, ctime, size). The
/// device is in the kernel's internal encoding (`MAJOR << 20 | MINOR`), as exec records carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileKey {
    pub dev: u64,
    pub ino: u64,
    pub ctime_ns: u64,
    pub size: u64,
}

/// User-space `st_dev` (glibc encoding) → kernel-internal dev_t.
pub fn kernel_dev(st_dev: u64) -> u64 {
    let major = ((st_dev >> 32) & 0xffff_f000) | ((st_dev >> 8) & 0xfff);
    let minor = ((st_dev >> 12) & 0xffff_ff00) | (st_dev & 0xff);
    (major << 20) | (minor & 0xf_ffff)
}

impl FileKey {
    pub fn from_exec(e: &Exec) -> Self {
        Self { dev: u64::from(e.exe_dev), ino: e.exe_ino, ctime_ns: e.exe_ctime_ns, size: e.exe_size }
    }

    pub fn from_metadata(m: &Metadata) -> Self {
        let ctime_ns = (m.ctime().max(0) as u64).saturating_mul(1_000_000_000).saturating_add(m.ctime_nsec().max(0) as u64);
        Self { dev: kernel_dev(m.dev()), ino: m.ino(), ctime_ns, size: m.size() }
    }
}

/// A sha256 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Digest(pub [u8; 32]);

impl Sha256Digest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }

    /// The 64 lower-case hex digits, on the stack.
    pub fn hex(&self) -> [u8; 64] {
        let mut out = [0u8; 64];
        hex_lower(&self.0, &mut out);
        out
    }

    /// From 64 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(std::str::from_utf8(&b[2 * i..2 * i + 2]).ok()?, 16).ok()?;
        }
        Some(Self(out))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

/// Writes `bytes` as lower-case hex into the first `2 * bytes.len()` bytes of `out`.
pub(crate) fn hex_lower(bytes: &[u8], out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 15)];
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({self})")
    }
}

/// As its hex text.
impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(std::str::from_utf8(&self.hex()).unwrap_or_default())
    }
}

/// Why no hash was computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashSkip {
    /// Larger than the configured limit.
    TooLarge,
    /// The request queue was full; the request was dropped (counted).
    QueueFull,
    /// Neither the path nor /proc/PID/exe led to the file the kernel reported (replaced,
    /// modified, or the process is gone).
    Unavailable,
    /// The file changed while it was read.
    Changed,
    /// An I/O error other than the above.
    Io(String),
    /// The pool is shutting down.
    Shutdown,
}

/// The answer to a hash request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOutcome {
    Hashed(Sha256Digest),
    Skipped(HashSkip),
}

impl HashOutcome {
    pub fn digest(&self) -> Option<Sha256Digest> {
        match self {
            HashOutcome::Hashed(d) => Some(*d),
            HashOutcome::Skipped(_) => None,
        }
    }

    /// Whether the same file would give the same answer again (so it is cached).
    fn cacheable(&self) -> bool {
        matches!(self, HashOutcome::Hashed(_) | HashOutcome::Skipped(HashSkip::TooLarge))
    }
}

/// What to hash.
#[derive(Debug, Clone)]
pub struct HashRequest {
    pub file: FileKey,
    /// The executable's path as the exec reported it.
    pub path: PathBuf,
    /// The process running it, for `/proc/PID/exe` (0: none).
    pub pid: u32,
    /// The path cannot be used (memfd, deleted): only `/proc/PID/exe`.
    pub proc_only: bool,
    /// Echoed in a late result: which process asked.
    pub owner: Option<ProcKey>,
    /// Echoed in a late result: a caller's tag (an event sequence number, say).
    pub tag: u64,
}

impl HashRequest {
    pub fn from_exec(e: &Exec, owner: ProcKey, tag: u64) -> Self {
        Self {
            file: FileKey::from_exec(e),
            path: PathBuf::from(&e.exe_path),
            pid: e.hdr.pid,
            proc_only: e.flags.memfd() || e.flags.deleted(),
            owner: Some(owner),
            tag,
        }
    }
}

/// A result that arrived after its requester stopped waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashDone {
    pub file: FileKey,
    pub owner: Option<ProcKey>,
    pub tag: u64,
    pub outcome: HashOutcome,
}

#[derive(Debug, Clone)]
pub struct HashConfig {
    pub workers: usize,
    /// Requests waiting for a worker; beyond this they are dropped.
    pub queue: usize,
    /// Files larger than this are not hashed.
    pub max_file_size: u64,
    /// Results kept (oldest dropped first).
    pub cache_entries: usize,
    /// Capacity of the late-result channel; a full channel drops results (counted).
    pub late_capacity: usize,
    pub proc_root: PathBuf,
}

impl Default for HashConfig {
    fn default() -> Self {
        Self {
            workers: 2,
            queue: 1024,
            max_file_size: 256 << 20,
            cache_entries: 16_384,
            late_capacity: 4096,
            proc_root: PathBuf::from("/proc"),
        }
    }
}

/// Counters; read with [`HashPool::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    pub requests: u64,
    pub cache_hits: u64,
    /// Requests that joined a read already under way.
    pub joined: u64,
    pub hashed: u64,
    pub bytes: u64,
    pub skipped_too_large: u64,
    pub dropped_queue_full: u64,
    pub unavailable: u64,
    pub errors: u64,
    pub late_sent: u64,
    pub late_dropped: u64,
    pub cache_evictions: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    cache_hits: AtomicU64,
    joined: AtomicU64,
    hashed: AtomicU64,
    bytes: AtomicU64,
    skipped_too_large: AtomicU64,
    dropped_queue_full: AtomicU64,
    unavailable: AtomicU64,
    errors: AtomicU64,
    late_sent: AtomicU64,
    late_dropped: AtomicU64,
    cache_evictions: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Default)]
struct SlotState {
    result: Option<HashOutcome>,
    taken: bool,
    abandoned: bool,
    waker: Option<Waker>,
}

/// One waiter's mailbox.
struct Slot {
    state: Mutex<SlotState>,
    cv: Condvar,
    file: FileKey,
    owner: Option<ProcKey>,
    tag: u64,
    shared: Arc<Shared>,
}

impl Slot {
    fn late(&self, outcome: HashOutcome) {
        self.shared.send_late(HashDone { file: self.file, owner: self.owner, tag: self.tag, outcome });
    }

    /// Called by a worker: hand the result to the waiter, or send it late if it gave up.
    fn deliver(&self, outcome: HashOutcome) {
        let mut st = lock(&self.state);
        if st.abandoned {
            drop(st);
            self.late(outcome);
            return;
        }
        st.result = Some(outcome);
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        drop(st);
        self.cv.notify_all();
    }
}

enum CacheEntry {
    Done(HashOutcome),
    InFlight(Vec<Arc<Slot>>),
}

struct Shared {
    cfg: HashConfig,
    cache: Mutex<Cache>,
    counters: Counters,
    late: tmpsc::Sender<HashDone>,
}

#[derive(Default)]
struct Cache {
    map: FxHashMap<FileKey, CacheEntry>,
    /// Done entries, oldest first.
    order: VecDeque<FileKey>,
}

impl Shared {
    fn send_late(&self, done: HashDone) {
        // Counted before the send so a receiver never sees the result before the count.
        self.counters.late_sent.fetch_add(1, Relaxed);
        if self.late.try_send(done).is_err() {
            self.counters.late_sent.fetch_sub(1, Relaxed);
            self.counters.late_dropped.fetch_add(1, Relaxed);
        }
    }
}

struct Job {
    req: HashRequest,
}

/// A hash that is being computed.
pub struct PendingHash {
    slot: Arc<Slot>,
}

impl PendingHash {
    /// The result if it is there, without waiting.
    pub fn try_take(&mut self) -> Option<HashOutcome> {
        let mut st = lock(&self.slot.state);
        let r = st.result.take();
        st.taken |= r.is_some();
        r
    }

    /// Blocks the thread up to `budget`.
    pub fn wait_timeout(&mut self, budget: Duration) -> Option<HashOutcome> {
        let deadline = Instant::now() + budget;
        let mut st = lock(&self.slot.state);
        loop {
            if let Some(r) = st.result.take() {
                st.taken = true;
                return Some(r);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            st = self.slot.cv.wait_timeout(st, deadline - now).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Waits asynchronously up to `budget`. On timeout the result will come as a [`HashDone`]
    /// on the late channel (once this is dropped).
    pub async fn wait(&mut self, budget: Duration) -> Option<HashOutcome> {
        tokio::time::timeout(budget, &mut *self).await.ok()
    }
}

impl Future for PendingHash {
    type Output = HashOutcome;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<HashOutcome> {
        let mut st = lock(&self.slot.state);
        if let Some(r) = st.result.take() {
            st.taken = true;
            return Poll::Ready(r);
        }
        st.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for PendingHash {
    fn drop(&mut self) {
        let mut st = lock(&self.slot.state);
        if st.taken {
            return;
        }
        st.abandoned = true;
        st.waker = None;
        if let Some(r) = st.result.take() {
            drop(st);
            self.slot.late(r);
        }
    }
}

impl fmt::Debug for PendingHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingHash").field("file", &self.slot.file).finish()
    }
}

/// The answer to [`HashPool::request`].
#[derive(Debug)]
pub enum HashTicket {
    /// From the cache, or decided without reading (too large, queue full).
    Ready(HashOutcome),
    Pending(PendingHash),
}

/// The worker pool with its cache.
pub struct HashPool {
    shared: Arc<Shared>,
    jobs: Option<mpsc::SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for HashPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashPool").field("cfg", &self.shared.cfg).finish()
    }
}

impl HashPool {
    /// Starts the workers. The receiver gets results that arrived after their requester gave up.
    pub fn new(cfg: HashConfig) -> Result<(Self, tmpsc::Receiver<HashDone>), HashError> {
        let (late_tx, late_rx) = tmpsc::channel(cfg.late_capacity.max(1));
        let (jobs_tx, jobs_rx) = mpsc::sync_channel::<Job>(cfg.queue.max(1));
        let jobs_rx = Arc::new(Mutex::new(jobs_rx));
        let shared = Arc::new(Shared {
            cfg: cfg.clone(),
            cache: Mutex::new(Cache::default()),
            counters: Counters::default(),
            late: late_tx,
        });
        let mut pool = Self { shared: shared.clone(), jobs: Some(jobs_tx), workers: Vec::new() };
        for i in 0..cfg.workers.max(1) {
            let shared = shared.clone();
            let rx = jobs_rx.clone();
            let h = std::thread::Builder::new().name(format!("osprey-hash-{i}")).spawn(move || loop {
                let job = match lock(&rx).recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let outcome = hash_file(&shared, &job.req);
                complete(&shared, job.req.file, outcome);
            })?;
            pool.workers.push(h);
        }
        Ok((pool, late_rx))
    }

    /// Asks for the hash of a file. Never blocks.
    pub fn request(&self, req: HashRequest) -> HashTicket {
        let c = &self.shared.counters;
        c.requests.fetch_add(1, Relaxed);
        if req.file.size > self.shared.cfg.max_file_size {
            c.skipped_too_large.fetch_add(1, Relaxed);
            return HashTicket::Ready(HashOutcome::Skipped(HashSkip::TooLarge));
        }
        let Some(jobs) = &self.jobs else {
            return HashTicket::Ready(HashOutcome::Skipped(HashSkip::Shutdown));
        };
        let mut cache = lock(&self.shared.cache);
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::default()),
            cv: Condvar::new(),
            file: req.file,
            owner: req.owner,
            tag: req.tag,
            shared: self.shared.clone(),
        });
        match cache.map.get_mut(&req.file) {
            Some(CacheEntry::Done(o)) => {
                c.cache_hits.fetch_add(1, Relaxed);
                return HashTicket::Ready(o.clone());
            }
            Some(CacheEntry::InFlight(waiters)) => {
                c.joined.fetch_add(1, Relaxed);
                waiters.push(slot.clone());
                return HashTicket::Pending(PendingHash { slot });
            }
            None => {}
        }
        let file = req.file;
        match jobs.try_send(Job { req }) {
            Ok(()) => {
                cache.map.insert(file, CacheEntry::InFlight(vec![slot.clone()]));
                HashTicket::Pending(PendingHash { slot })
            }
            Err(mpsc::TrySendError::Full(_)) => {
                c.dropped_queue_full.fetch_add(1, Relaxed);
                HashTicket::Ready(HashOutcome::Skipped(HashSkip::QueueFull))
            }
            Err(mpsc::TrySendError::Disconnected(_)) => HashTicket::Ready(HashOutcome::Skipped(HashSkip::Shutdown)),
        }
    }

    /// A cached result, without queueing anything.
    pub fn cached(&self, file: &FileKey) -> Option<HashOutcome> {
        match lock(&self.shared.cache).map.get(file) {
            Some(CacheEntry::Done(o)) => Some(o.clone()),
            _ => None,
        }
    }

    /// Cached files whose content hashed to `digest` (a scan: for block requests).
    pub fn files_with(&self, digest: &Sha256Digest) -> Vec<FileKey> {
        lock(&self.shared.cache)
            .map
            .iter()
            .filter(|(_, e)| matches!(e, CacheEntry::Done(o) if o.digest().as_ref() == Some(digest)))
            .map(|(k, _)| *k)
            .collect()
    }

    pub fn stats(&self) -> HashStats {
        let c = &self.shared.counters;
        HashStats {
            requests: c.requests.load(Relaxed),
            cache_hits: c.cache_hits.load(Relaxed),
            joined: c.joined.load(Relaxed),
            hashed: c.hashed.load(Relaxed),
            bytes: c.bytes.load(Relaxed),
            skipped_too_large: c.skipped_too_large.load(Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Relaxed),
            unavailable: c.unavailable.load(Relaxed),
            errors: c.errors.load(Relaxed),
            late_sent: c.late_sent.load(Relaxed),
            late_dropped: c.late_dropped.load(Relaxed),
            cache_evictions: c.cache_evictions.load(Relaxed),
        }
    }

    /// Stops accepting requests, lets the workers finish the queue, and joins them.
    pub fn shutdown(&mut self) {
        self.jobs = None;
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Records a worker's result and hands it to every waiter.
fn complete(shared: &Shared, file: FileKey, outcome: HashOutcome) {
    let waiters = {
        let mut cache = lock(&shared.cache);
        let waiters = match cache.map.remove(&file) {
            Some(CacheEntry::InFlight(w)) => w,
            Some(done @ CacheEntry::Done(_)) => {
                cache.map.insert(file, done);
                Vec::new()
            }
            None => Vec::new(),
        };
        if outcome.cacheable() {
            cache.map.insert(file, CacheEntry::Done(outcome.clone()));
            cache.order.push_back(file);
            while cache.order.len() > shared.cfg.cache_entries.max(1) {
                let Some(old) = cache.order.pop_front() else { break };
                if matches!(cache.map.get(&old), Some(CacheEntry::Done(_))) {
                    cache.map.remove(&old);
                    shared.counters.cache_evictions.fetch_add(1, Relaxed);
                }
            }
        }
        waiters
    };
    for w in waiters {
        w.deliver(outcome.clone());
    }
}

/// Opens `path` and returns it when it is the file `want` names.
fn open_checked(path: &Path, want: &FileKey) -> Option<File> {
    let f = File::open(path).ok()?;
    let md = f.metadata().ok()?;
    (md.is_file() && FileKey::from_metadata(&md) == *want).then_some(f)
}

fn hash_file(shared: &Shared, req: &HashRequest) -> HashOutcome {
    let c = &shared.counters;
    let via_proc = || {
        (req.pid != 0)
            .then(|| shared.cfg.proc_root.join(req.pid.to_string()).join("exe"))
            .and_then(|p| open_checked(&p, &req.file))
    };
    let file = if req.proc_only { via_proc() } else { open_checked(&req.path, &req.file).or_else(via_proc) };
    let Some(mut f) = file else {
        c.unavailable.fetch_add(1, Relaxed);
        return HashOutcome::Skipped(HashSkip::Unavailable);
    };
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total: u64 = 0;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                total += n as u64;
                if total > shared.cfg.max_file_size {
                    c.skipped_too_large.fetch_add(1, Relaxed);
                    return HashOutcome::Skipped(HashSkip::TooLarge);
                }
                h.update(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                c.errors.fetch_add(1, Relaxed);
                return HashOutcome::Skipped(HashSkip::Io(e.to_string()));
            }
        }
    }
    // A write during the read changes ctime (and usually size): do not cache a torn hash.
    let unchanged = f.metadata().ok().is_some_and(|md| FileKey::from_metadata(&md) == req.file);
    if !unchanged || total != req.file.size {
        return HashOutcome::Skipped(HashSkip::Changed);
    }
    c.hashed.fetch_add(1, Relaxed);
    c.bytes.fetch_add(total, Relaxed);
    HashOutcome::Hashed(Sha256Digest(h.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{io::Write, os::fd::AsRawFd};

    fn temp_file(bytes: &[u8]) -> (tempfile::TempDir, PathBuf, FileKey) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bin");
        let mut f = File::create(&p).unwrap();
        f.write_all(bytes).unwrap();
        drop(f);
        let key = FileKey::from_metadata(&std::fs::metadata(&p).unwrap());
        (dir, p, key)
    }

    fn req(path: &Path, file: FileKey) -> HashRequest {
        HashRequest { file, path: path.to_owned(), pid: 0, proc_only: false, owner: None, tag: 7 }
    }

    fn pool(cfg: HashConfig) -> (HashPool, tmpsc::Receiver<HashDone>) {
        HashPool::new(cfg).unwrap()
    }

    fn resolve(t: HashTicket) -> HashOutcome {
        match t {
            HashTicket::Ready(o) => o,
            HashTicket::Pending(mut p) => p.wait_timeout(Duration::from_secs(10)).expect("in time"),
        }
    }

    #[test]
    fn hash_matches_sha2_and_the_cache_hits() {
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_d, path, key) = temp_file(&bytes);
        let (pool, _late) = pool(HashConfig::default());
        let want = Sha256Digest(Sha256::digest(&bytes).into());
        assert_eq!(resolve(pool.request(req(&path, key))), HashOutcome::Hashed(want));
        // second request: straight from the cache
        match pool.request(req(&path, key)) {
            HashTicket::Ready(o) => assert_eq!(o, HashOutcome::Hashed(want)),
            HashTicket::Pending(_) => panic!("expected a cache hit"),
        }
        let s = pool.stats();
        assert_eq!((s.requests, s.cache_hits, s.hashed, s.bytes), (2, 1, 1, bytes.len() as u64));
        assert_eq!(want.to_hex().len(), 64);
        assert_eq!(pool.cached(&key), Some(HashOutcome::Hashed(want)));
    }

    #[test]
    fn empty_file_hash_is_the_known_constant() {
        let (_d, path, key) = temp_file(b"");
        let (pool, _late) = pool(HashConfig::default());
        let d = resolve(pool.request(req(&path, key))).digest().unwrap();
        assert_eq!(d.to_hex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }

    #[test]
    fn too_large_is_skipped_without_reading() {
        let (_d, path, key) = temp_file(&[1u8; 100]);
        let (pool, _late) = pool(HashConfig { max_file_size: 50, ..Default::default() });
        assert_eq!(resolve(pool.request(req(&path, key))), HashOutcome::Skipped(HashSkip::TooLarge));
        assert_eq!((pool.stats().skipped_too_large, pool.stats().hashed), (1, 0));
    }

    #[test]
    fn a_replaced_file_is_not_hashed_under_the_old_identity() {
        let (_d, path, key) = temp_file(b"original");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"attacker payload").unwrap();
        let (pool, _late) = pool(HashConfig::default());
        assert_eq!(resolve(pool.request(req(&path, key))), HashOutcome::Skipped(HashSkip::Unavailable));
        // not cached: a later request tries again
        assert_eq!(pool.cached(&key), None);
    }

    #[test]
    fn deleted_image_is_hashed_through_proc_pid_exe() {
        // A live child's image through /proc/PID/exe, with a path that leads nowhere (as for a
        // deleted binary): identity taken from /proc/PID/exe.
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("spawn sleep");
        let pid = child.id();
        let exe = PathBuf::from(format!("/proc/{pid}/exe"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(&exe).map_or(true, |l| !l.to_string_lossy().contains("sleep")) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let key = FileKey::from_metadata(&std::fs::metadata(&exe).unwrap());
        let bytes = std::fs::read(&exe).unwrap();
        let (pool, _late) = pool(HashConfig::default());
        let r = HashRequest { file: key, path: "/nonexistent (deleted)".into(), pid, proc_only: true, owner: None, tag: 0 };
        let got = resolve(pool.request(r));
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(got, HashOutcome::Hashed(Sha256Digest::of(&bytes)));
    }

    #[test]
    fn memfd_image_is_hashed_through_proc() {
        // A memfd holding bytes; this process "runs" it only in the sense that /proc/self/fd
        // points at it, which is what /proc/PID/exe does for an executed memfd.
        let name = std::ffi::CString::new("osprey-test").unwrap();
        // SAFETY: memfd_create with a valid C string and no flags.
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh, owned descriptor.
        let mut f = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        f.write_all(b"\x7fELF memfd payload").unwrap();
        let key = FileKey::from_metadata(&f.metadata().unwrap());
        let dir = tempfile::tempdir().unwrap();
        // a fake proc root whose <pid>/exe is the memfd
        std::fs::create_dir_all(dir.path().join("4242")).unwrap();
        std::os::unix::fs::symlink(format!("/proc/self/fd/{}", f.as_raw_fd()), dir.path().join("4242/exe")).unwrap();
        let (pool, _late) = pool(HashConfig { proc_root: dir.path().to_owned(), ..Default::default() });
        let r = HashRequest { file: key, path: "/memfd:osprey-test (deleted)".into(), pid: 4242, proc_only: true, owner: None, tag: 0 };
        assert_eq!(resolve(pool.request(r)), HashOutcome::Hashed(Sha256Digest::of(b"\x7fELF memfd payload")));
    }

    #[test]
    fn kernel_dev_encoding() {
        // 8:1 (sda1): user 0x801, kernel 8<<20|1
        assert_eq!(kernel_dev(0x801), (8 << 20) | 1);
        // 259:3 (nvme): user (259 & 0xfff) << 8 | 3
        assert_eq!(kernel_dev((259 << 8) | 3), (259 << 20) | 3);
        // minor above 255
        let user = ((300u64 & !0xff) << 12) | (300 & 0xff) | (7 << 8);
        assert_eq!(kernel_dev(user), (7 << 20) | 300);
    }

    #[test]
    fn late_results_arrive_on_the_channel_after_the_waiter_gives_up() {
        let (_d, path, key) = temp_file(&vec![3u8; 1 << 20]);
        let (pool, mut late) = pool(HashConfig { workers: 1, ..Default::default() });
        let mut r = req(&path, key);
        r.tag = 99;
        let HashTicket::Pending(p) = pool.request(r) else { panic!("not cached yet") };
        drop(p); // gave up at once
        let done = late.blocking_recv().expect("late result");
        assert_eq!(done.tag, 99);
        assert_eq!(done.file, key);
        assert!(matches!(done.outcome, HashOutcome::Hashed(_)));
        assert_eq!(pool.stats().late_sent, 1);
    }

    #[test]
    fn a_result_taken_in_time_is_not_sent_late() {
        let (_d, path, key) = temp_file(b"abc");
        let (pool, mut late) = pool(HashConfig::default());
        let HashTicket::Pending(mut p) = pool.request(req(&path, key)) else { panic!() };
        assert!(p.wait_timeout(Duration::from_secs(10)).is_some());
        drop(p);
        drop(pool); // joins the workers and closes the channel
        assert!(late.blocking_recv().is_none());
    }

    #[tokio::test]
    async fn async_wait_with_a_budget() {
        let (_d, path, key) = temp_file(b"async");
        let (pool, _late) = pool(HashConfig::default());
        let HashTicket::Pending(mut p) = pool.request(req(&path, key)) else { panic!() };
        let o = p.wait(Duration::from_secs(10)).await.expect("within budget");
        assert_eq!(o.digest(), Some(Sha256Digest::of(b"async")));
    }

    #[test]
    fn queue_full_drops_and_counts_and_concurrent_requests_share_a_read() {
        // One worker, queue of one: the first file occupies the worker or the queue.
        let files: Vec<_> = (0..20u8).map(|i| temp_file(&vec![i; 4 << 20])).collect();
        let (pool, _late) = pool(HashConfig { workers: 1, queue: 1, ..Default::default() });
        let mut pending = Vec::new();
        let mut dropped = 0;
        for (_d, p, k) in &files {
            match pool.request(req(p, *k)) {
                HashTicket::Ready(HashOutcome::Skipped(HashSkip::QueueFull)) => dropped += 1,
                HashTicket::Pending(p) => pending.push(p),
                HashTicket::Ready(o) => panic!("unexpected {o:?}"),
            }
        }
        assert!(dropped > 0, "a queue of one cannot take twenty 4 MiB files at once");
        assert_eq!(pool.stats().dropped_queue_full, dropped);
        for mut p in pending {
            assert!(p.wait_timeout(Duration::from_secs(30)).is_some());
        }
        // two requests for the same uncached file while it is in flight: one read
        let (_d, path, key) = temp_file(&vec![9u8; 8 << 20]);
        let a = pool.request(req(&path, key));
        let b = pool.request(req(&path, key));
        let (a, b) = (resolve(a), resolve(b));
        assert_eq!(a, b);
        let s = pool.stats();
        assert!(s.joined >= 1 || s.cache_hits >= 1);
    }

    #[test]
    fn cache_is_bounded() {
        let (pool, _late) = pool(HashConfig { cache_entries: 4, ..Default::default() });
        let files: Vec<_> = (0..10u8).map(|i| temp_file(&[i; 10])).collect();
        for (_d, p, k) in &files {
            assert!(resolve(pool.request(req(p, *k))).digest().is_some());
        }
        assert!(lock(&pool.shared.cache).map.len() <= 4);
        assert_eq!(pool.stats().cache_evictions, 6);
    }
}
