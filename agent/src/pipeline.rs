//! Wires the stages together: ring readers → reorder window → events → sinks, plus the loss
//! poll that turns kernel loss counters into metrics and `events_lost` events.

use std::{sync::Arc, time::Duration};

use agent_common::RecordType;
use nix::time::{clock_gettime, ClockId};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};
use tracing::{error, warn};

use crate::{
    enrich::{Enricher, ProcessSection},
    event::{Ecs, Event, EventBody},
    metrics::Metrics,
    output::Sink,
    reorder::Reorder,
    sensor::{ring::read_ring, KernelCounters, Sensor, SensorError},
};

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How long a record is held to let records from other CPUs overtake it.
    pub reorder_window: Duration,
    /// How often kernel loss counters are read (and a loss event emitted when they grew).
    pub loss_poll: Duration,
    /// The process table and enrichment.
    pub process: ProcessSection,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            reorder_window: Duration::from_millis(50),
            loss_poll: Duration::from_secs(1),
            process: ProcessSection::default(),
        }
    }
}

fn clock_ns(id: ClockId) -> u64 {
    let t = clock_gettime(id).expect("clock_gettime cannot fail for a valid clock");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Kernel boot-time clock (what bpf_ktime_get_boot_ns() reads), now.
pub fn boottime_ns() -> u64 {
    clock_ns(ClockId::CLOCK_BOOTTIME)
}

/// Wall-clock time of boot, to turn kernel timestamps into `@timestamp`.
pub fn boot_wall_ns() -> u64 {
    clock_ns(ClockId::CLOCK_REALTIME).saturating_sub(boottime_ns())
}

/// What a finished run saw.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub events: u64,
    pub counters: KernelCounters,
    pub late: u64,
}

struct Stage {
    enrich: Enricher,
    ecs: Ecs,
    sinks: Vec<Box<dyn Sink>>,
    metrics: Arc<Metrics>,
    events: u64,
    last_lost: Vec<(RecordType, u64)>,
}

impl Stage {
    fn emit(&mut self, ev: Event) {
        self.events += 1;
        // Each sink counts what it delivered, dropped or failed (osprey_output_*{sink}).
        for sink in &mut self.sinks {
            if let Err(e) = sink.write(&ev, &self.ecs) {
                warn!(sink = sink.name(), error = %e, "output failed");
            }
        }
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                warn!(sink = sink.name(), error = %e, "flush failed");
            }
        }
    }

    fn record(&mut self, rec: crate::decode::Record) {
        let wall_ns = self.ecs.wall_ns(rec.header().ktime_ns);
        let ctx = self.enrich.apply(&rec);
        self.emit(Event { wall_ns, body: EventBody::Record(rec), ctx: Some(Arc::new(ctx)) });
    }

    fn late_hash(&mut self, done: crate::process::hash::HashDone) {
        if let Some(late) = self.enrich.late_hash(done) {
            let wall_ns = self.ecs.wall_ns(boottime_ns());
            self.emit(Event { wall_ns, body: EventBody::Hash(late), ctx: None });
        }
    }

    /// Reads the kernel counters, updates metrics, and reports new loss as an event.
    fn poll_loss(&mut self, sensor: &Sensor) -> Option<KernelCounters> {
        let counters = match sensor.counters() {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "reading kernel counters failed");
                return None;
            }
        };
        self.metrics.set_kernel_counters(&counters);
        let mut grew = Vec::new();
        for t in RecordType::ALL {
            let now = counters.lost_total(t);
            let before = self.last_lost.iter().find(|(k, _)| *k == t).map_or(0, |(_, n)| *n);
            if now > before {
                grew.push((t, now - before));
            }
        }
        self.last_lost = RecordType::ALL.iter().map(|&t| (t, counters.lost_total(t))).collect();
        if !grew.is_empty() {
            warn!(?grew, "kernel ring buffers were full: records lost");
            let wall_ns = self.ecs.wall_ns(boottime_ns());
            self.emit(Event { wall_ns, body: EventBody::Loss(grew), ctx: None });
        }
        Some(counters)
    }
}

/// The next late hash, or never when hashing is off.
async fn recv_late(
    late: &mut Option<mpsc::Receiver<crate::process::hash::HashDone>>,
) -> Option<crate::process::hash::HashDone> {
    match late {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Runs until `stop` turns true, then drains every ring, flushes the reorder window and the
/// sinks, and returns what it saw. The sensor stays attached until the caller drops it.
pub async fn run(
    sensor: &mut Sensor,
    cfg: &PipelineConfig,
    ecs: Ecs,
    sinks: Vec<Box<dyn Sink>>,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> Result<Summary, SensorError> {
    let (tx, mut rx) = mpsc::channel(256);
    let (reader_stop_tx, reader_stop) = watch::channel(false);
    let mut readers = JoinSet::new();
    for (cpu, ring) in sensor.take_rings() {
        readers.spawn(read_ring(cpu, ring, tx.clone(), metrics.clone(), reader_stop.clone()));
    }
    drop(tx);

    let window_ns = cfg.reorder_window.as_nanos() as u64;
    let mut reorder = Reorder::new(window_ns);
    let (enrich, mut late) = Enricher::new(&cfg.process, ecs.ids().clone());
    let mut stage = Stage { enrich, ecs, sinks, metrics, events: 0, last_lost: Vec::new() };
    let mut tick = tokio::time::interval(Duration::from_millis(10).min(cfg.reorder_window.max(Duration::from_millis(1))));
    let mut loss_tick = tokio::time::interval(cfg.loss_poll);
    let mut readers_done = false;

    loop {
        tokio::select! {
            batch = rx.recv() => match batch {
                Some(batch) => for r in batch {
                    stage.enrich.on_arrival(&r);
                    reorder.push(r);
                },
                None => { readers_done = true; break; }
            },
            Some(done) = recv_late(&mut late) => stage.late_hash(done),
            _ = tick.tick() => {
                let now = boottime_ns();
                while let Some(rec) = reorder.pop_ready(now) {
                    stage.record(rec);
                }
                stage.flush();
            }
            _ = loss_tick.tick() => {
                stage.poll_loss(sensor);
                stage.enrich.tick(boottime_ns());
                let t = stage.enrich.table().stats();
                stage.metrics.set_process_table(t.entries, t.evicted_grace, t.evicted_cap);
            }
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }

    // Shutdown: readers drain their rings, then everything held is released in order.
    let _ = reader_stop_tx.send(true);
    if !readers_done {
        while let Some(batch) = rx.recv().await {
            for r in batch {
                stage.enrich.on_arrival(&r);
                reorder.push(r);
            }
        }
    }
    while let Some(res) = readers.join_next().await {
        match res {
            Ok(Err(e)) => error!(error = %e, "ring reader failed"),
            Err(e) => error!(error = %e, "ring reader panicked"),
            Ok(Ok(())) => {}
        }
    }
    while let Some(rec) = reorder.pop() {
        stage.record(rec);
    }
    let counters = stage.poll_loss(sensor).unwrap_or_default();
    stage.flush();
    Ok(Summary { events: stage.events, counters, late: reorder.late() })
}
