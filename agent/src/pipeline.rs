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
    alerting::{AlertEvent, Recent, RecentEvents, Repeats},
    decode::Record,
    detect::{Alert, Detector, RuleSet},
    enrich::{Enricher, ProcessSection},
    event::{Ecs, Event, EventBody},
    metrics::Metrics,
    output::{Outgoing, Sink},
    reorder::{ReadMarks, Reorder},
    respond::{context::TableLookup, signal::Identity, Outcome, Responder, ResponseEvent},
    sensor::{ring::{read_ring, Reader}, KernelCounters, Sensor, SensorError},
};

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// How long a record is held to let records from other CPUs overtake it.
    pub reorder_window: Duration,
    /// How often kernel loss counters are read (and a loss event emitted when they grew).
    pub loss_poll: Duration,
    /// The process table and enrichment.
    pub process: ProcessSection,
    /// DNS answers cache and network summaries.
    pub network: crate::net::NetworkSection,
    /// The prevention guard's state (crate::lsm::GuardState), shown by `osprey status`.
    pub prevention: Option<serde_json::Value>,
    /// `rules.repeat_window`: see [`crate::alerting::Repeats`].
    pub alert_repeat_window: Duration,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            reorder_window: Duration::from_millis(50),
            loss_poll: Duration::from_secs(1),
            process: ProcessSection::default(),
            network: crate::net::NetworkSection::default(),
            prevention: None,
            alert_repeat_window: crate::rules::RulesSection::default().repeat_window,
        }
    }
}

/// Batches (of up to 256 records) queued between the ring readers and the pipeline.
const READER_QUEUE: usize = 32;

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
    /// Records released after a younger one (see [`Reorder::late`]).
    pub late: u64,
    /// Times a ring reader fell silent and the others went on without it.
    pub stalls: u64,
}

/// The standalone alerts of an event that are raised, with how many repeats each stands for:
/// a repeat of an alert on the same process within the window is counted, not raised.
fn not_repeated(alerts: Vec<Alert>, ev: &Event, repeats: &mut Repeats, metrics: &Metrics) -> Vec<(Alert, u64)> {
    let mut raised = Vec::new();
    for alert in alerts.into_iter().filter(|a| a.standalone) {
        // Never held back: alerts whose rule responds (each hit may name another file or
        // image to act on) and alerts without a process. The key names the process's image
        // (exec keeps the entity id) and an indicator's value (one list, many indicators).
        let n = match &ev.ctx {
            Some(c) if alert.rule.response.is_empty() => {
                let image = c.process.image.as_ref().map_or("", |i| i.exe());
                let value = match &alert.kind {
                    crate::detect::AlertKind::Ioc { value, .. } => value.as_str(),
                    _ => "",
                };
                repeats.check(alert.rule.key(), &[&*c.process.entity_id, image, value], ev.wall_ns)
            }
            _ => Some(0),
        };
        match n {
            Some(n) => raised.push((alert, n)),
            None => metrics.alert_suppressed(alert.rule.key()),
        }
    }
    raised
}

struct Stage {
    enrich: Enricher,
    net: crate::net::NetState,
    detector: Detector,
    has_rules: bool,
    prevention: Option<serde_json::Value>,
    recent: RecentEvents,
    repeats: Repeats,
    alerts: Vec<Alert>,
    ecs: Ecs,
    sinks: Vec<Box<dyn Sink>>,
    metrics: Arc<Metrics>,
    events: u64,
    last_lost: Vec<(RecordType, u64)>,
    responder: Option<Responder>,
    /// Alerts raised in this run, for their ids.
    alert_seq: u64,
    protect: Option<crate::protect::Protector>,
    /// Write through (no sink queue): the alert of a fatal signal to the agent.
    urgent: bool,
}

impl Stage {
    fn emit(&mut self, ev: Event) {
        let out = self.write(ev);
        let ev = &out.event;
        if matches!(ev.body, EventBody::Record(_)) {
            self.remember(ev);
            self.tamper(ev);
            if self.has_rules {
                self.detect(ev);
            }
        }
    }

    fn write(&mut self, ev: Event) -> Arc<Outgoing> {
        self.events += 1;
        if let Some(rec) = ev.record() {
            self.metrics.event_latency(boottime_ns().saturating_sub(rec.header().ktime_ns));
        }
        // Each sink counts what it delivered, dropped or failed (osprey_output_*{sink}). They
        // share the event, and its JSON is printed once for all of them.
        let out = Outgoing::new(ev);
        for sink in &mut self.sinks {
            let r = if self.urgent { sink.write_now(&out.event, &self.ecs) } else { sink.send(&out, &self.ecs) };
            if let Err(e) = r {
                warn!(sink = sink.name(), error = %e, "output failed");
            }
        }
        out
    }

    /// Records from a ring reader: noted on arrival, then held for ordering.
    fn arrived(&mut self, reorder: &mut Reorder, batch: Vec<Record>) {
        for r in batch {
            self.enrich.on_arrival(&r);
            reorder.push(r);
        }
    }

    /// Keeps what a process did for the stories of later alerts.
    fn remember(&mut self, ev: &Event) {
        let (Some(ctx), EventBody::Record(rec)) = (&ev.ctx, &ev.body) else { return };
        let (action, object) = summary(rec, ctx);
        self.recent.push(Recent {
            wall_ns: ev.wall_ns,
            entity_id: Arc::clone(&ctx.process.entity_id),
            pid: ctx.process.pid,
            parent_entity_id: ctx.parent.as_ref().map(|p| Arc::clone(&p.entity_id)),
            action,
            object,
        });
    }

    /// Self-protection: a record aimed at the agent becomes a tamper alert.
    fn tamper(&mut self, ev: &Event) {
        let (Some(p), Some(rec)) = (self.protect.as_mut(), ev.record()) else { return };
        let Some(f) = p.check(rec) else { return };
        let doc = self.ecs.to_value(ev);
        let story = ev.ctx.as_ref().map(|c| self.recent.story(&c.process.entity_id, ev.wall_ns)).unwrap_or_default();
        self.urgent = f.wait_seq.is_some();
        self.raise(crate::protect::alert(&f, Some(doc), story, ev.ctx.clone(), ev.wall_ns), ev.wall_ns);
        self.urgent = false;
    }

    /// A tamper finding without a triggering record (watchdog, canary).
    fn tamper_finding(&mut self, f: &crate::protect::Finding) {
        let wall_ns = self.ecs.wall_ns(boottime_ns());
        self.raise(crate::protect::alert(f, None, Vec::new(), None, wall_ns), wall_ns);
    }

    /// A record of the tamper ring: handled now, outside the reorder window (a fatal signal's
    /// sender is held in the kernel meanwhile), then any others already waiting.
    fn tamper_record(&mut self, rec: Record, prio: &mut mpsc::UnboundedReceiver<Record>) {
        tracing::debug!("tamper record");
        self.enrich.on_arrival(&rec);
        self.record(rec);
        self.tamper_records(prio);
    }

    /// Handles the tamper records waiting, if any, and acknowledges them.
    fn tamper_records(&mut self, prio: &mut mpsc::UnboundedReceiver<Record>) {
        while let Ok(rec) = prio.try_recv() {
            self.enrich.on_arrival(&rec);
            self.record(rec);
        }
        self.tamper_ack();
    }

    /// Lets the kernel release an actor it holds: its alert was written through.
    fn tamper_ack(&mut self) {
        let Some(p) = self.protect.as_mut() else { return };
        if !p.ack_pending() {
            return;
        }
        // The alert went out through Sink::write_now: nothing to wait for.
        p.ack();
        tracing::debug!("tamper record acknowledged");
    }

    /// Runs the rules on an event and emits the alerts it raises.
    fn detect(&mut self, ev: &Event) {
        let rules = Arc::clone(self.detector.rules());
        let (detector, alerts, repeats, metrics) = (&mut self.detector, &mut self.alerts, &mut self.repeats, &self.metrics);
        let found = self.ecs.with_view(ev, &rules, |view| {
            detector.evaluate(&view, alerts);
            if alerts.is_empty() {
                return None;
            }
            let raised = not_repeated(std::mem::take(alerts), ev, repeats, metrics);
            // The triggering document, only for alerts that are raised.
            (!raised.is_empty()).then(|| (view.into_json(), raised))
        });
        let Some((doc, raised)) = found else { return };
        for (alert, repeats) in raised {
            let story = ev.ctx.as_ref().map(|c| self.recent.story(&c.process.entity_id, ev.wall_ns)).unwrap_or_default();
            let a = AlertEvent { id: String::new(), alert, trigger: Some(doc.clone()), story, ctx: ev.ctx.clone(), responses: Vec::new(), repeats };
            self.raise(a, ev.wall_ns);
        }
    }

    /// Writes an alert after carrying out its rule's `response:` actions (so the alert reports
    /// their results), then one response event per action.
    fn raise(&mut self, mut a: AlertEvent, wall_ns: u64) {
        self.alert_seq += 1;
        a.id = crate::alerting::alert_id(&self.ecs.host().boot_id, wall_ns, self.alert_seq);
        self.metrics.alert(a.alert.rule.key(), a.alert.severity());
        let rule = a.alert.rule.clone();
        if let (Some(r), false) = (self.responder.as_mut(), rule.response.is_empty()) {
            let subject = crate::respond::context::subject(a.ctx.as_deref(), a.trigger.as_ref(), &self.enrich);
            let enrich = &self.enrich;
            a.responses = r.on_alert(rule.key(), &rule.response, &subject, &|h| enrich.files_with_hash(h));
        }
        let ctx = a.ctx.clone();
        let responses = a.responses.clone();
        self.write(Event { wall_ns, body: EventBody::Alert(Box::new(a)), ctx: ctx.clone() });
        for o in responses {
            self.respond_event(o, Some(rule.clone()), ctx.clone());
        }
    }

    fn respond_event(&mut self, outcome: Outcome, rule: Option<Arc<crate::detect::RuleMeta>>, ctx: Option<Arc<crate::enrich::Context>>) {
        self.metrics.response(outcome.action, outcome.result);
        let wall_ns = self.ecs.wall_ns(boottime_ns());
        self.write(Event { wall_ns, body: EventBody::Response(Box::new(ResponseEvent { outcome, rule })), ctx });
    }

    /// An exec the kernel blocked is reported; an exec of a file whose (already known) hash is
    /// blocked, but whose inode was not yet, is killed now.
    fn exec_response(&mut self, e: &crate::decode::Exec, ctx: &crate::enrich::Context) -> Option<Outcome> {
        let r = self.responder.as_mut()?;
        if e.flags.blocked() {
            return Some(r.blocked_exec(e.hdr.pid, &e.exe_path));
        }
        match (&ctx.hash, ctx.process.image.as_ref().and_then(|i| i.file)) {
            (Some(h), Some(file)) if r.on_hashed(&file, &h.to_hex()) => {
                let key = self.enrich.table().key_of(e.hdr.pid, e.hdr.start_ns);
                Some(r.kill_blocked(Identity { pid: key.pid, ticks: key.ticks }, format!("process {} ({})", e.hdr.pid, e.exe_path)))
            }
            _ => None,
        }
    }

    /// Correlation windows that closed.
    fn flush_correlations(&mut self) {
        if !self.has_rules {
            return;
        }
        let now = self.ecs.wall_ns(boottime_ns());
        self.detector.flush(now, &mut self.alerts);
        for alert in std::mem::take(&mut self.alerts).into_iter().filter(|a| a.standalone) {
            self.raise(AlertEvent { id: String::new(), alert, trigger: None, story: Vec::new(), ctx: None, responses: Vec::new(), repeats: 0 }, now);
        }
    }

    /// Answers an operator's request from the control socket.
    fn control(&mut self, p: crate::control::Pending, sensor: &Sensor) {
        use crate::control::Request;
        let answer = match p.request {
            Request::Respond(req) => match self.responder.as_mut() {
                Some(r) => {
                    let (outcome, answer) = r.operator(&req, &TableLookup(&self.enrich));
                    if let Some(o) = outcome {
                        self.respond_event(o, None, None);
                    }
                    answer
                }
                None => serde_json::json!({"error": "response is not available in this agent"}),
            },
            // The control socket answers these itself (off the pipeline).
            Request::Query(_) => serde_json::json!({"error": "recorder queries are not answered by the pipeline"}),
            Request::Ps => self.enrich.ps_json(),
            Request::Tree(pid) => self.enrich.tree_json(pid),
            Request::Status => {
                let t = self.enrich.table().stats();
                let counters = sensor.counters().unwrap_or_default();
                serde_json::json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "probes": sensor.probes().iter().map(|p| serde_json::json!({
                        "program": p.program, "hook": p.hook, "attached": p.attached, "reason": p.reason,
                    })).collect::<Vec<_>>(),
                    "events": self.events,
                    "lost": RecordType::ALL.iter().map(|&k| (k.name(), counters.lost_total(k))).collect::<std::collections::BTreeMap<_, _>>(),
                    "filtered": RecordType::ALL.iter().map(|&k| (k.name(), counters.filtered_total(k))).collect::<std::collections::BTreeMap<_, _>>(),
                    "folded": RecordType::ALL.iter().map(|&k| (k.name(), counters.folded_total(k))).collect::<std::collections::BTreeMap<_, _>>(),
                    "process_table": {"entries": t.entries, "evicted_grace": t.evicted_grace, "evicted_cap": t.evicted_cap},
                    "rules_active": self.has_rules,
                    "prevention": self.prevention,
                })
            }
        };
        let _ = p.reply.send(answer);
    }

    fn swap_rules(&mut self, rules: Arc<RuleSet>) {
        self.has_rules = !rules.is_empty();
        self.detector.replace_rules(rules);
    }

    fn flush(&mut self) {
        for sink in &mut self.sinks {
            if let Err(e) = sink.flush() {
                warn!(sink = sink.name(), error = %e, "flush failed");
            }
        }
    }

    fn record(&mut self, mut rec: crate::decode::Record) {
        let wall_ns = self.ecs.wall_ns(rec.header().ktime_ns);
        self.net.observe(&mut rec);
        // A socket that predates the agent has no owner: no process to apply or describe.
        let ctx = match &rec {
            Record::Net(n) if n.owner_unknown() => None,
            Record::Dns(d) if d.owner_unknown() => None,
            Record::Net(_) | Record::Dns(_) => {
                let ctx = self.enrich.apply(&rec);
                self.enrich.note_network(&rec);
                Some(Arc::new(ctx))
            }
            _ => Some(Arc::new(self.enrich.apply(&rec))),
        };
        let response = match (&rec, &ctx) {
            (Record::Exec(e), Some(ctx)) => self.exec_response(e, ctx),
            _ => None,
        };
        self.emit(Event { wall_ns, body: EventBody::Record(rec), ctx: ctx.clone() });
        if let Some(o) = response {
            self.respond_event(o, None, ctx);
        }
    }

    fn late_hash(&mut self, done: crate::process::hash::HashDone) {
        if let (Some(r), Some(d), Some(owner)) = (self.responder.as_mut(), done.outcome.digest(), done.owner) {
            if r.on_hashed(&done.file, &d.to_hex()) {
                let o = r.kill_blocked(Identity { pid: owner.pid, ticks: owner.ticks }, format!("process {}", owner.pid));
                self.respond_event(o, None, None);
            }
        }
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

/// (action, object) of a record, for stories.
fn summary(rec: &Record, ctx: &crate::enrich::Context) -> (&'static str, String) {
    match rec {
        Record::Exec(e) => {
            let line = ctx.process.image_of_exec(e.hdr.ktime_ns);
            ("exec", line.map_or_else(|| crate::event::command_line(&e.args), |img| img.command_line().to_owned()))
        }
        Record::Fork(f) => ("fork", f.child_pid.to_string()),
        Record::Exit(x) => ("exit", x.exit_status().map_or_else(|| format!("signal {}", x.signal().unwrap_or(0)), |c| c.to_string())),
        Record::File(f) => {
            let action = crate::event::file_action(f.op);
            let object = match &f.path2 {
                Some(p2) => format!("{} -> {p2}", f.path),
                None => f.path.clone(),
            };
            (action, object)
        }
        Record::Cred(c) => (crate::event::cred_action(c.op), format!("euid {} -> {}", c.old_uids[1], c.new_uids[1])),
        Record::System(y) => (crate::event::system_action(y.op), if y.text.is_empty() { y.target_pid.to_string() } else { y.text.clone() }),
        Record::Net(n) => (crate::event::net_action(n.op), match &n.domain {
            Some(d) => format!("{} ({d})", n.remote),
            None => n.remote.to_string(),
        }),
        Record::Dns(d) => (crate::event::dns_action(d), d.message.questions.first().map(|q| q.name.clone()).unwrap_or_default()),
    }
}

/// The next operator request, or never without a control socket.
async fn next_control(rx: &mut Option<mpsc::Receiver<crate::control::Pending>>) -> Option<crate::control::Pending> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}

/// The next reloaded rule set, or never without a watcher.
async fn next_rules(rx: &mut Option<watch::Receiver<Arc<RuleSet>>>) -> Option<Arc<RuleSet>> {
    match rx {
        Some(r) => match r.changed().await {
            Ok(()) => Some(r.borrow_and_update().clone()),
            Err(_) => {
                *rx = None;
                None
            }
        },
        None => std::future::pending().await,
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
#[allow(clippy::too_many_arguments)]
pub async fn run(
    sensor: &mut Sensor,
    cfg: &PipelineConfig,
    ecs: Ecs,
    sinks: Vec<Box<dyn Sink>>,
    metrics: Arc<Metrics>,
    rules: Arc<RuleSet>,
    mut rules_rx: Option<watch::Receiver<Arc<RuleSet>>>,
    mut control: Option<mpsc::Receiver<crate::control::Pending>>,
    responder: Option<Responder>,
    protect: Option<crate::protect::Protector>,
    mut stop: watch::Receiver<bool>,
) -> Result<Summary, SensorError> {
    // A short queue: the kernel rings are the buffer. A long one only delays recovery after a
    // flood (records queued here are old news) and hides the backlog from the ring-fill metric.
    let (tx, mut rx) = mpsc::channel(READER_QUEUE);
    let (reader_stop_tx, reader_stop) = watch::channel(false);
    let mut readers = JoinSet::new();
    let rings = sensor.take_rings();
    let marks = Arc::new(ReadMarks::new(rings.len()));
    for (slot, (cpu, ring)) in rings.into_iter().enumerate() {
        let me = Reader { cpu, slot, marks: marks.clone() };
        readers.spawn(read_ring(me, ring, tx.clone(), metrics.clone(), reader_stop.clone()));
    }
    drop(tx);

    let window_ns = cfg.reorder_window.as_nanos() as u64;
    let mut reorder = Reorder::with_marks(window_ns, marks, boottime_ns());
    let (enrich, mut late) = Enricher::new(&cfg.process, ecs.ids().clone());
    let mut stage = Stage {
        enrich,
        net: crate::net::NetState::new(&cfg.network),
        detector: Detector::new(rules.clone()),
        has_rules: false,
        prevention: cfg.prevention.clone(),
        recent: RecentEvents::default(),
        repeats: Repeats::new(cfg.alert_repeat_window),
        alerts: Vec::new(),
        ecs,
        sinks,
        metrics,
        events: 0,
        last_lost: Vec::new(),
        responder,
        alert_seq: 0,
        protect,
        urgent: false,
    };
    let every = |d: Option<Duration>| {
        let mut t = tokio::time::interval(d.filter(|d| !d.is_zero()).unwrap_or(Duration::from_secs(3600)));
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    };
    // Tamper records: their own ring and reader, handled on arrival (Stage::tamper_records).
    let (prio_tx, mut prio_rx) = mpsc::unbounded_channel();
    if let Some(ring) = stage.protect.as_mut().and_then(|p| p.take_ring()) {
        readers.spawn(crate::protect::ring::read(ring, prio_tx, stage.metrics.clone(), reader_stop.clone()));
    } else {
        drop(prio_tx);
    }
    let mut watchdog_tick = every(stage.protect.as_ref().map(|p| p.watchdog_every));
    let heartbeat_on = stage.protect.as_ref().is_some_and(|p| !p.heartbeat_every.is_zero());
    let mut heartbeat_tick = every(stage.protect.as_ref().map(|p| p.heartbeat_every));
    stage.swap_rules(rules);
    let mut tick = tokio::time::interval(Duration::from_millis(10).min(cfg.reorder_window.max(Duration::from_millis(1))));
    let mut loss_tick = tokio::time::interval(cfg.loss_poll);
    let mut trim_tick = tokio::time::interval(crate::heap::TRIM_EVERY);
    trim_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut readers_done = false;

    loop {
        tokio::select! {
            Some(rec) = prio_rx.recv() => stage.tamper_record(rec, &mut prio_rx),
            batch = rx.recv() => match batch {
                Some(batch) => {
                    stage.tamper_records(&mut prio_rx);
                    stage.arrived(&mut reorder, batch);
                }
                None => { readers_done = true; break; }
            },
            _ = watchdog_tick.tick(), if stage.protect.is_some() => {
                let found = stage.protect.as_mut().map(|p| p.watch(sensor)).unwrap_or_default();
                for f in &found {
                    stage.tamper_finding(f);
                }
            }
            _ = heartbeat_tick.tick(), if heartbeat_on => {
                let wall_ns = stage.ecs.wall_ns(boottime_ns());
                if let Some((hb, found)) = stage.protect.as_mut().map(|p| p.beat(wall_ns)) {
                    for f in &found {
                        stage.tamper_finding(f);
                    }
                    stage.write(Event { wall_ns, body: EventBody::Heartbeat(Box::new(hb)), ctx: None });
                }
            }
            Some(done) = recv_late(&mut late) => stage.late_hash(done),
            Some(rules) = next_rules(&mut rules_rx) => stage.swap_rules(rules),
            Some(req) = next_control(&mut control) => stage.control(req, sensor),
            _ = tick.tick() => {
                // The marks first, then what the readers queued before moving them: at most a
                // full queue, so a flood cannot keep this loop going.
                let horizon = reorder.horizon(boottime_ns());
                for _ in 0..READER_QUEUE {
                    let Ok(batch) = rx.try_recv() else { break };
                    stage.arrived(&mut reorder, batch);
                }
                let mut n = 0u32;
                while let Some(rec) = reorder.pop_ready(horizon) {
                    stage.record(rec);
                    n += 1;
                    if n.is_multiple_of(64) {
                        stage.tamper_records(&mut prio_rx);
                    }
                }
                stage.flush();
                stage.tamper_ack();
                // A tamper_bpf record named one of the agent's objects: check the links now.
                if stage.protect.as_ref().is_some_and(|p| p.watchdog.recheck) {
                    let found = stage.protect.as_mut().map(|p| p.watch(sensor)).unwrap_or_default();
                    for f in &found {
                        stage.tamper_finding(f);
                    }
                }
            }
            _ = loss_tick.tick() => {
                stage.poll_loss(sensor);
                stage.enrich.tick(boottime_ns());
                stage.flush_correlations();
                stage.repeats.expire(stage.ecs.wall_ns(boottime_ns()));
                let t = stage.enrich.table().stats();
                stage.metrics.set_process_table(t.entries, t.evicted_grace, t.evicted_cap);
                stage.metrics.reorder(reorder.late(), reorder.stalls());
            }
            _ = trim_tick.tick() => crate::heap::trim(),
            _ = stop.changed() => if *stop.borrow() { break },
        }
    }

    // Shutdown: readers drain their rings, then everything held is released in order.
    if let Some(p) = stage.protect.as_mut() {
        p.stopping();
    }
    let _ = reader_stop_tx.send(true);
    if !readers_done {
        while let Some(batch) = rx.recv().await {
            stage.arrived(&mut reorder, batch);
        }
    }
    while let Some(res) = readers.join_next().await {
        match res {
            Ok(Err(e)) => error!(error = %e, "ring reader failed"),
            Err(e) => error!(error = %e, "ring reader panicked"),
            Ok(Ok(())) => {}
        }
    }
    stage.tamper_records(&mut prio_rx);
    while let Some(rec) = reorder.pop() {
        stage.record(rec);
    }
    let counters = stage.poll_loss(sensor).unwrap_or_default();
    stage.flush();
    Ok(Summary { events: stage.events, counters, late: reorder.late(), stalls: reorder.stalls() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        decode::{decode, raw},
        enrich::{Enricher, ProcessSection},
        process::identity::EntityIds,
    };

    #[test]
    fn an_execs_story_step_is_its_command_line_whichever_image_the_context_holds() {
        let cfg = ProcessSection { hash: false, ..Default::default() };
        let (mut e, _late) = Enricher::new(&cfg, EntityIds::new("b"));
        let mut apply = |r: Vec<u8>| {
            let rec = decode(&r).unwrap();
            e.on_arrival(&rec);
            let ctx = e.apply(&rec);
            (rec, ctx)
        };
        let (curl, ctx) = apply(raw::exec(100, 10, "/usr/bin/curl", &["curl", "-s", "http://x/y z"], "/tmp"));
        assert!(ctx.process.image_of_exec(10).is_some(), "the table's image of this exec");
        assert_eq!(summary(&curl, &ctx), ("exec", "curl -s 'http://x/y z'".to_owned()));
        // The process has run something else since: the record's own arguments are joined.
        let (_, later) = apply(raw::exec(100, 20, "/usr/bin/env", &["env", "a b"], "/tmp"));
        assert!(later.process.image_of_exec(10).is_none());
        assert_eq!(summary(&curl, &later), ("exec", "curl -s 'http://x/y z'".to_owned()));
        let (_, file) = apply(raw::file(100, 30, agent_common::osprey_file_op::OSPREY_FILE_CREATE, "/tmp/o", None));
        assert!(file.process.image_of_exec(30).is_none(), "a file record's time is no exec's");
    }
}
