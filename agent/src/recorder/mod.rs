//! The drive recorder: every event (not only alerts) kept on the node in an embedded SQLite
//! store, so that after an alert an analyst can ask how it got in, what it did and where it
//! went — `osprey hunt` and `osprey story` — without a SIEM.
//!
//! The recorder is one more sink behind its own bounded queue ([`crate::output::Queued`]):
//! detection never waits for the disk, and what a full queue drops is counted in
//! `osprey_output_dropped_total{sink="recorder"}`. Its thread appends events in batched
//! transactions ([`store`]) and enforces retention by age and size.

pub mod block;
pub mod history;
pub mod html;
pub mod hunt;
pub mod index;
mod migrate;
pub mod query;
pub mod story;
pub mod store;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use prometheus::IntCounter;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

pub use self::store::{Store, StoreError};
use self::{block::Builder, store::BLOCK_MAX};
use crate::{
    config::ByteSize,
    metrics::{Metrics, OutputMetrics},
    output::{
        queue::{Doc, Writer},
        Filter, OutputError, Outgoing, Queued,
    },
};

pub const DEFAULT_PATH: &str = "/var/lib/osprey/recorder/events.db";

/// `recorder:` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecorderSection {
    pub enabled: bool,
    /// The SQLite database (with `-wal` and `-shm` files beside it).
    pub path: PathBuf,
    /// Oldest events are deleted once the store holds more than this.
    pub max_size: ByteSize,
    /// Events older than this are deleted.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Events waiting to be written; more are dropped (and counted).
    pub queue: usize,
    /// Events per transaction at most.
    pub batch: usize,
    /// How long an event may wait for its batch.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often retention runs.
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
}

impl Default for RecorderSection {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from(DEFAULT_PATH),
            max_size: ByteSize(2 << 30),
            max_age: Duration::from_secs(7 * 86_400),
            queue: 4096,
            batch: 2048,
            flush_interval: Duration::from_secs(1),
            retention_interval: Duration::from_secs(30),
        }
    }
}

impl RecorderSection {
    pub fn validate(&self) -> Result<(), String> {
        if self.path.as_os_str().is_empty() {
            return Err("recorder.path: empty".into());
        }
        if self.max_size.0 < 1 << 20 {
            return Err(format!("recorder.max_size: {} bytes is under 1MiB", self.max_size.0));
        }
        if self.max_age < Duration::from_secs(60) {
            return Err("recorder.max_age: at least 1m".into());
        }
        if self.queue == 0 || self.queue > 1 << 22 {
            return Err(format!("recorder.queue: {} is not between 1 and {}", self.queue, 1 << 22));
        }
        if self.batch == 0 || self.batch > BLOCK_MAX {
            return Err(format!("recorder.batch: {} is not between 1 and {BLOCK_MAX}", self.batch));
        }
        if self.flush_interval.is_zero() || self.retention_interval.is_zero() {
            return Err("recorder.flush_interval and recorder.retention_interval: must be more than 0".into());
        }
        Ok(())
    }
}

/// The recorder's own counters, beside the sink's (`osprey_output_*{sink="recorder"}`).
#[derive(Clone)]
pub struct RecorderMetrics {
    pub batches: IntCounter,
    pub deleted_age: IntCounter,
    pub deleted_size: IntCounter,
    pub bytes: prometheus::IntGauge,
}

impl RecorderMetrics {
    pub fn new(m: &Metrics) -> Self {
        Self {
            batches: m.recorder_batches.clone(),
            deleted_age: m.recorder_deleted.with_label_values(&["age"]),
            deleted_size: m.recorder_deleted.with_label_values(&["size"]),
            bytes: m.recorder_bytes.clone(),
        }
    }
}

/// The recorder as a sink: opens (and migrates) the store now, so a bad path fails at start-up.
pub fn sink(cfg: &RecorderSection, metrics: &Arc<Metrics>) -> Result<Queued, OutputError> {
    cfg.validate().map_err(OutputError::Config)?;
    let store = Store::open(&cfg.path).map_err(|e| OutputError::Config(e.to_string()))?;
    info!(path = %cfg.path.display(), events = store.count().unwrap_or(0), "recorder open");
    let out = metrics.output("recorder");
    let writer = RecorderWriter {
        store,
        cfg: cfg.clone(),
        block: Builder::default(),
        docs: [Vec::new(), Vec::new()],
        oldest: None,
        next_retention: Instant::now(),
        since_retention: 0,
        out: out.clone(),
        rec: RecorderMetrics::new(metrics),
    };
    Queued::spawn("recorder", cfg.queue, Filter::default(), Duration::from_secs(10), out, Default::default(), Box::new(writer))
}

fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}

/// A pending event's JSON: the queue's shared event (its JSON printed once for every sink), or
/// a copy for an event written around the queue.
enum Held {
    Shared(Arc<Outgoing>),
    Copied(Box<[u8]>),
}

impl Held {
    fn json(&self) -> &[u8] {
        match self {
            Held::Shared(o) => o.json(),
            Held::Copied(j) => j,
        }
    }
}

struct RecorderWriter {
    store: Store,
    cfg: RecorderSection,
    /// The pending events' rows, packed as they come.
    block: Builder,
    /// Their documents: exec events', the others' (the block's order).
    docs: [Vec<Held>; 2],
    /// When the oldest pending event arrived.
    oldest: Option<Instant>,
    next_retention: Instant,
    /// Document bytes committed since the last retention pass: a flood triggers one early, so
    /// the store overshoots `max_size` by a few percent at most.
    since_retention: u64,
    out: OutputMetrics,
    rec: RecorderMetrics,
}

impl RecorderWriter {
    fn commit(&mut self) -> Result<(), OutputError> {
        self.oldest = None;
        if self.block.is_empty() {
            return Ok(());
        }
        let n = self.block.len() as u64;
        let docs: Vec<&[u8]> = self.docs.iter().flatten().map(Held::json).collect();
        self.since_retention += docs.iter().map(|d| d.len() as u64).sum::<u64>();
        let r = self.store.insert_built(&self.block, &docs);
        drop(docs);
        self.block.clear();
        self.docs.iter_mut().for_each(Vec::clear);
        match r {
            Ok(_) => {
                self.out.written.inc_by(n);
                self.rec.batches.inc();
            }
            Err(e) => {
                self.out.errors.inc();
                self.out.dropped.inc_by(n);
                return Err(OutputError::Config(e.to_string()));
            }
        }
        if Instant::now() >= self.next_retention || self.since_retention > self.cfg.max_size.0 / 20 {
            self.next_retention = Instant::now() + self.cfg.retention_interval;
            self.since_retention = 0;
            self.retention();
        }
        Ok(())
    }

    fn retention(&mut self) {
        match self.store.enforce_retention(self.cfg.max_size.0, self.cfg.max_age, now_ns()) {
            Ok(d) => {
                self.rec.deleted_age.inc_by(d.by_age);
                self.rec.deleted_size.inc_by(d.by_size);
                if d.by_size > 0 {
                    info!(deleted = d.by_size, max_size = self.cfg.max_size.0, "recorder: oldest events deleted for space");
                }
            }
            Err(e) => warn!(error = %e, "recorder retention failed"),
        }
        if let Ok(b) = self.store.used_bytes() {
            self.rec.bytes.set(b as i64);
        }
    }
}

impl Writer for RecorderWriter {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        // The index columns from the typed event: the same as reading them from the JSON
        // (`index::row`), several times cheaper.
        let held = match doc.shared {
            Some(o) if std::ptr::eq(o.json(), doc.json) => Held::Shared(Arc::clone(o)),
            _ => Held::Copied(doc.json.into()),
        };
        let exec = doc.ecs.with_index_row(doc.event, |r| self.block.push(r));
        self.docs[usize::from(!exec)].push(held);
        self.oldest.get_or_insert_with(Instant::now);
        if self.block.len() >= self.cfg.batch {
            self.commit()?;
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        match self.oldest {
            Some(t) if t.elapsed() >= self.cfg.flush_interval => self.commit(),
            _ => Ok(()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.cfg.flush_interval)
    }

    fn close(&mut self) -> Result<(), OutputError> {
        self.commit()
    }
}
