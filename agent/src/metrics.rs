//! The agent's health metrics (Prometheus). One registry per agent, owned here; every module
//! reports through the methods below instead of reaching for a global registry.

use agent_common::RecordType;
use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use crate::decode::DecodeError;

pub struct Metrics {
    pub registry: Registry,
    events: IntCounterVec,
    /// `events` of each record type, in [`RecordType::ALL`]'s order: counted for every record,
    /// so not looked up by label each time.
    events_by_type: [IntCounter; RecordType::ALL.len()],
    decode_errors: IntCounterVec,
    lost: IntCounterVec,
    filtered: IntCounterVec,
    folded: IntCounterVec,
    output_events: IntCounterVec,
    output_errors: IntCounterVec,
    output_dropped: IntCounterVec,
    output_retries: IntCounterVec,
    output_queue: IntGaugeVec,
    table_entries: prometheus::IntGauge,
    table_evictions: IntCounterVec,
    rules_loaded: prometheus::IntGauge,
    rules_reload: IntCounterVec,
    alerts: IntCounterVec,
    alerts_suppressed: IntCounterVec,
    probes: IntGaugeVec,
    latency: prometheus::Histogram,
    ringbuf_used: IntGaugeVec,
    ringbuf_sweep: IntCounterVec,
    reorder_late: prometheus::IntCounter,
    reader_stalls: prometheus::IntCounter,
    responses: IntCounterVec,
    pub(crate) recorder_batches: prometheus::IntCounter,
    pub(crate) recorder_deleted: IntCounterVec,
    pub(crate) recorder_bytes: prometheus::IntGauge,
    /// Self-protection with BPF-LSM (crate::lsm).
    pub prevention: crate::lsm::PreventionMetrics,
}

/// One sink's counters, bound to its label once so its hot path does no label lookups.
/// Cloning is cheap (the counters are shared).
#[derive(Clone)]
pub struct OutputMetrics {
    /// Events the sink delivered (written, sent, acknowledged).
    pub written: IntCounter,
    /// Failed operations (a write, a connection, a request), not events.
    pub errors: IntCounter,
    /// Events that will never be delivered: queue full, or given up on after errors.
    pub dropped: IntCounter,
    /// Requests or connections tried again after a failure.
    pub retries: IntCounter,
    /// Events waiting in the sink's queue.
    pub queued: IntGauge,
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    reg.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Advances a counter that mirrors a monotonic kernel counter to the kernel's value.
fn catch_up(c: &prometheus::IntCounter, kernel_value: u64) {
    let seen = c.get();
    if kernel_value > seen {
        c.inc_by(kernel_value - seen);
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let events = counter(&registry, "osprey_events_total", "Kernel records received, by type", &["type"]);
        let decode_errors = counter(
            &registry,
            "osprey_decode_errors_total",
            "Kernel records rejected by the decoder, by reason",
            &["reason"],
        );
        // The kernel owns these two; each poll adds what they grew by since the last one.
        let lost = counter(
            &registry,
            "osprey_events_lost_total",
            "Records the kernel could not reserve ring buffer space for, by type and CPU",
            &["type", "cpu"],
        );
        let filtered = counter(
            &registry,
            "osprey_events_filtered_total",
            "Records dropped on purpose by in-kernel filters, by type",
            &["type"],
        );
        let folded = counter(
            &registry,
            "osprey_events_folded_total",
            "Records not sent because one like them was just sent (network.fold_window, file.fold_window); the next one sent carries their number, by type",
            &["type"],
        );
        let output_events = counter(
            &registry,
            "osprey_output_events_total",
            "Events a sink delivered (written, sent, acknowledged), by sink",
            &["sink"],
        );
        let output_errors = counter(
            &registry,
            "osprey_output_errors_total",
            "Failed output operations (writes, connections, requests), by sink",
            &["sink"],
        );
        let output_dropped = counter(
            &registry,
            "osprey_output_dropped_total",
            "Events a sink will never deliver (its queue was full, or it gave up after errors), by sink",
            &["sink"],
        );
        let output_retries = counter(
            &registry,
            "osprey_output_retries_total",
            "Requests or connections a sink tried again after a failure, by sink",
            &["sink"],
        );
        let output_queue = gauge(&registry, "osprey_output_queue_length", "Events waiting in a sink's queue, by sink", &["sink"]);
        let build_info = gauge(&registry, "osprey_build_info", "Always 1; the labels say which build of Osprey this is", &["version"]);
        build_info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let table_entries = prometheus::IntGauge::new(
            "osprey_process_table_entries",
            "Processes in the table, running and recently exited",
        )
        .expect("valid metric");
        registry.register(Box::new(table_entries.clone())).expect("unique metric");
        let table_evictions = counter(
            &registry,
            "osprey_process_table_evictions_total",
            "Processes removed from the table: after their grace period, or by the entry cap",
            &["reason"],
        );
        let rules_loaded = prometheus::IntGauge::new("osprey_rules_loaded", "Rules and correlations running")
            .expect("valid metric");
        registry.register(Box::new(rules_loaded.clone())).expect("unique metric");
        let rules_reload = counter(&registry, "osprey_rules_reload_total", "Rule reloads, by result", &["result"]);
        let alerts = counter(&registry, "osprey_alerts_total", "Alerts raised, by rule and severity", &["rule", "severity"]);
        let alerts_suppressed = counter(
            &registry,
            "osprey_alerts_suppressed_total",
            "Repeats of an alert on the same process within rules.repeat_window, held back (the next alert carries their number), by rule",
            &["rule"],
        );
        for r in ["ok", "error"] {
            rules_reload.with_label_values(&[r]);
        }
        let probes = gauge(&registry, "osprey_probe_attached", "1 when a program is attached to its hook, 0 when this kernel refused it (the reason is logged)", &["program", "hook"]);
        let latency = prometheus::Histogram::with_opts(
            prometheus::HistogramOpts::new(
                "osprey_event_latency_seconds",
                "From the kernel's timestamp of an event to its hand-over to the outputs",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .expect("valid metric");
        registry.register(Box::new(latency.clone())).expect("unique metric");
        let ringbuf_used = gauge(&registry, "osprey_ringbuf_used_bytes", "Bytes the kernel wrote into a CPU's ring buffer that were not read yet, when the reader woke", &["cpu"]);
        let ringbuf_sweep = counter(&registry, "osprey_ringbuf_sweep_records_total", "Records a reader collected on its periodic sweep of a CPU's ring buffer rather than after a kernel wakeup (kernel programs wake readers only when a ring is over a quarter full)", &["cpu"]);
        let single = |name: &str, help: &str| {
            let c = prometheus::IntCounter::new(name, help).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let reorder_late = single("osprey_events_late_total", "Records released out of kernel-time order: they arrived after a younger record had already been handed on");
        let reader_stalls = single("osprey_ring_reader_stalls_total", "Times a ring reader reported no progress for a second while the pipeline ran, so the other CPUs' records were released without waiting for its older ones");
        let responses = counter(&registry, "osprey_responses_total", "Response actions by action and result (done, would: monitor mode, refused: a safety rail, failed, rate_limited)", &["action", "result"]);
        let recorder_batches = prometheus::IntCounter::new("osprey_recorder_batches_total", "Transactions of events the recorder committed to its store").expect("valid metric");
        registry.register(Box::new(recorder_batches.clone())).expect("unique metric");
        let recorder_deleted = counter(&registry, "osprey_recorder_deleted_total", "Recorded events deleted by retention, by reason (age, size)", &["reason"]);
        let recorder_bytes = prometheus::IntGauge::new("osprey_recorder_bytes", "Bytes the recorder's store holds (at the last retention pass)").expect("valid metric");
        registry.register(Box::new(recorder_bytes.clone())).expect("unique metric");
        // RSS, CPU seconds, open fds, threads, start time of this process (process_* metrics).
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .expect("unique metric");
        let events_by_type = RecordType::ALL.map(|t| events.with_label_values(&[t.name()]));
        for r in DecodeError::REASONS {
            decode_errors.with_label_values(&[r]);
        }
        let prevention = crate::lsm::PreventionMetrics::new(&registry);
        Self {
            prevention,
            registry,
            events,
            events_by_type,
            decode_errors,
            lost,
            filtered,
            folded,
            output_events,
            output_errors,
            output_dropped,
            output_retries,
            output_queue,
            table_entries,
            table_evictions,
            rules_loaded,
            rules_reload,
            alerts,
            alerts_suppressed,
            probes,
            latency,
            ringbuf_used,
            ringbuf_sweep,
            reorder_late,
            reader_stalls,
            responses,
            recorder_batches,
            recorder_deleted,
            recorder_bytes,
        }
    }

    pub fn ringbuf_used(&self, cpu: u32, bytes: u64) {
        self.ringbuf_used.with_label_values(&[&cpu.to_string()]).set(bytes as i64);
    }

    pub fn ringbuf_sweep(&self, cpu: u32, records: u64) {
        self.ringbuf_sweep.with_label_values(&[&cpu.to_string()]).inc_by(records);
    }

    /// The reorder stage's running totals (late records, reader stalls).
    pub fn reorder(&self, late: u64, stalls: u64) {
        self.reorder_late.inc_by(late.saturating_sub(self.reorder_late.get()));
        self.reader_stalls.inc_by(stalls.saturating_sub(self.reader_stalls.get()));
    }

    pub fn response(&self, action: &str, result: crate::respond::Verdict) {
        let r = serde_json::to_value(result).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        self.responses.with_label_values(&[action, &r]).inc();
    }

    pub fn probe(&self, program: &str, hook: &str, attached: bool) {
        self.probes.with_label_values(&[program, hook]).set(attached as i64);
    }

    /// Kernel timestamp to output, in ns.
    pub fn event_latency(&self, ns: u64) {
        self.latency.observe(ns as f64 / 1e9);
    }

    pub fn rules_loaded(&self, n: usize) {
        self.rules_loaded.set(n as i64);
    }

    pub fn rules_reloaded(&self, ok: bool) {
        self.rules_reload.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    }

    pub fn rules_reloads(&self, ok: bool) -> u64 {
        self.rules_reload.with_label_values(&[if ok { "ok" } else { "error" }]).get()
    }

    pub fn alert(&self, rule: &str, severity: u8) {
        self.alerts.with_label_values(&[rule, &severity.to_string()]).inc();
    }

    /// A repeat of an alert held back (`rules.repeat_window`).
    pub fn alert_suppressed(&self, rule: &str) {
        self.alerts_suppressed.with_label_values(&[rule]).inc();
    }

    pub fn alerts_suppressed(&self, rule: &str) -> u64 {
        self.alerts_suppressed.with_label_values(&[rule]).get()
    }

    /// Mirrors the process table's size and eviction counters.
    pub fn set_process_table(&self, entries: usize, evicted_grace: u64, evicted_cap: u64) {
        self.table_entries.set(entries as i64);
        for (reason, n) in [("grace", evicted_grace), ("cap", evicted_cap)] {
            let c = self.table_evictions.with_label_values(&[reason]);
            if n > c.get() {
                c.inc_by(n - c.get());
            }
        }
    }

    pub fn process_table_entries(&self) -> i64 {
        self.table_entries.get()
    }

    pub fn process_table_evictions(&self, reason: &str) -> u64 {
        self.table_evictions.with_label_values(&[reason]).get()
    }

    pub fn record_received(&self, kind: RecordType) {
        match RecordType::ALL.iter().position(|t| *t == kind) {
            Some(i) => self.events_by_type[i].inc(),
            None => self.events.with_label_values(&[kind.name()]).inc(),
        }
    }

    pub fn decode_error(&self, e: &DecodeError) {
        self.decode_errors.with_label_values(&[e.reason()]).inc();
    }

    pub fn decode_errors(&self, reason: &str) -> u64 {
        self.decode_errors.with_label_values(&[reason]).get()
    }

    pub fn received(&self, kind: RecordType) -> u64 {
        self.events.with_label_values(&[kind.name()]).get()
    }

    pub fn set_kernel_counters(&self, c: &crate::sensor::KernelCounters) {
        for (kind, per_cpu) in &c.lost {
            for (cpu, n) in per_cpu.iter().enumerate() {
                catch_up(&self.lost.with_label_values(&[kind.name(), &cpu.to_string()]), *n);
            }
        }
        for (kind, n) in &c.filtered {
            catch_up(&self.filtered.with_label_values(&[kind.name()]), *n);
        }
        for (kind, n) in &c.folded {
            catch_up(&self.folded.with_label_values(&[kind.name()]), *n);
        }
        // Skipped nested program runs: lost too, under cpu="nested" (not tied to one CPU).
        for (kind, n) in &c.nested {
            if *n > 0 {
                catch_up(&self.lost.with_label_values(&[kind.name(), "nested"]), *n);
            }
        }
    }

    pub fn output_written(&self, sink: &str, n: u64) {
        self.output_events.with_label_values(&[sink]).inc_by(n);
    }

    /// The counters of sink `sink` (created at zero, so they show up before the first event).
    pub fn output(&self, sink: &str) -> OutputMetrics {
        OutputMetrics {
            written: self.output_events.with_label_values(&[sink]),
            errors: self.output_errors.with_label_values(&[sink]),
            dropped: self.output_dropped.with_label_values(&[sink]),
            retries: self.output_retries.with_label_values(&[sink]),
            queued: self.output_queue.with_label_values(&[sink]),
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        buf
    }
}
