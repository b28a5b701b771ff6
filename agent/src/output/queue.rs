//! The queue in front of every configured sink: the pipeline's hot task only filters and
//! `try_send`s the event all sinks share ([`Outgoing`]); printing it (once, by whichever sink
//! thread gets to it first) and the (blocking) delivery happen on the sinks' own threads.
//! A full queue drops the event and counts it in `osprey_output_dropped_total{sink}`.

use std::{
    io,
    sync::{
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
        Arc, OnceLock,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use tracing::{info, warn};

use super::{
    filter::{Facts, Filter},
    OutputError, Outgoing, Sink,
};
use crate::{
    event::{Ecs, Event},
    metrics::OutputMetrics,
};

/// How many queued events a worker takes in one go before it gives its writer a chance to flush.
const BURST: usize = 1024;
/// How long a worker waits for events before it calls [`Writer::idle`] anyway.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// How long a worker that emptied its queue sleeps before it looks again. A worker blocked on
/// an empty queue is woken (a futex syscall on the pipeline's thread, a context switch on its
/// own) by every event that arrives; at 10,000 events/s that cost more than writing them. Events
/// queued meanwhile wait at most this long, and the queue holds far more than arrive in it.
const LINGER: Duration = Duration::from_millis(5);

/// One event as a writer sees it.
pub(crate) struct Doc<'a> {
    pub event: &'a Event,
    /// The event's ECS JSON object, no newline.
    pub json: &'a [u8],
    pub facts: &'a Facts,
    pub ecs: &'a Ecs,
    /// The shared event `json` belongs to, when it came through a queue: a writer that holds
    /// events for a while keeps this instead of copying the JSON.
    pub shared: Option<&'a Arc<Outgoing>>,
}

/// The blocking half of a sink; it runs on the sink's own thread and keeps its own counts of
/// written, failed and dropped events in [`OutputMetrics`]. Errors it returns are only logged.
pub(crate) trait Writer: Send + 'static {
    /// Takes one event (it may only buffer it).
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError>;
    /// The queue is empty for now: push out whatever should not wait any longer.
    fn idle(&mut self) -> Result<(), OutputError>;
    /// When the writer wants [`Writer::idle`] called even if no event arrives.
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// The pipeline is gone: deliver everything still buffered (until [`Stop::expired`]).
    fn close(&mut self) -> Result<(), OutputError>;
}

/// Set when the sink is dropped: the writer has until then to deliver what it holds, and any
/// retry loop gives up once it has passed.
#[derive(Clone, Default)]
pub(crate) struct Stop(Arc<OnceLock<Instant>>);

impl Stop {
    pub fn set(&self, deadline: Instant) {
        let _ = self.0.set(deadline);
    }
    pub fn expired(&self) -> bool {
        self.0.get().is_some_and(|d| Instant::now() >= *d)
    }
    /// Sleeps `d`, or less if the stop deadline comes first. False when it did.
    pub fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        loop {
            if self.expired() {
                return false;
            }
            let now = Instant::now();
            if now >= end {
                return true;
            }
            thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

/// Exponential backoff with jitter (so a thousand nodes do not retry in step).
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        let seed = u64::from(std::process::id()).rotate_left(32) ^ now ^ 0x9e37_79b9_7f4a_7c15;
        Self { initial, max: max.max(initial), next: initial, seed: seed | 1 }
    }
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
    /// The next wait: the current step ±20%, then the step doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = 0.8 + (self.seed % 401) as f64 / 1000.0;
        base.mul_f64(jitter).min(self.max)
    }
}

/// Logs a writer's errors without flooding: the first at once, then one summary per interval.
pub(crate) struct ErrorLog {
    sink: &'static str,
    last: Option<Instant>,
    suppressed: u64,
}

impl ErrorLog {
    const EVERY: Duration = Duration::from_secs(10);

    pub fn new(sink: &'static str) -> Self {
        Self { sink, last: None, suppressed: 0 }
    }

    pub fn check(&mut self, r: Result<(), OutputError>) {
        if let Err(e) = r {
            self.report(&e);
        }
    }

    pub fn report(&mut self, e: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self.last.is_none_or(|t| now.duration_since(t) >= Self::EVERY) {
            warn!(sink = self.sink, error = %e, suppressed = self.suppressed, "output failed");
            self.last = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
    }
}

/// A sink behind a bounded queue and its own thread. `write` never blocks.
pub struct Queued {
    name: &'static str,
    tx: Option<SyncSender<Arc<Outgoing>>>,
    ecs: Arc<OnceLock<Ecs>>,
    filter: Option<Filter>,
    metrics: OutputMetrics,
    stop: Stop,
    drain: Duration,
    worker: Option<JoinHandle<()>>,
    gone: bool,
    /// The writer, shared with the worker: an urgent event is written by the caller itself.
    writer: Arc<std::sync::Mutex<Box<dyn Writer>>>,
    /// Where an urgent event goes without the worker or its lock: the file a file sink appends
    /// to (one O_APPEND write of the line), or standard output.
    pub(crate) direct: Option<Direct>,
}

/// See [`Queued::direct`].
pub(crate) enum Direct {
    File(std::path::PathBuf),
    Stdout,
}

impl Queued {
    /// Starts the writer's thread with a queue of `capacity` events.
    pub(crate) fn spawn(
        name: &'static str,
        capacity: usize,
        filter: Filter,
        drain: Duration,
        metrics: OutputMetrics,
        stop: Stop,
        writer: Box<dyn Writer>,
    ) -> Result<Self, OutputError> {
        let (tx, rx) = mpsc::sync_channel::<Arc<Outgoing>>(capacity);
        let ecs: Arc<OnceLock<Ecs>> = Arc::default();
        let writer = Arc::new(std::sync::Mutex::new(writer));
        let worker = {
            let ecs = ecs.clone();
            let metrics = metrics.clone();
            let writer = writer.clone();
            thread::Builder::new()
                .name(format!("osprey-out-{name}"))
                .spawn(move || run(name, rx, ecs, writer, metrics))
                .map_err(|e| OutputError::Io { what: format!("starting the {name} output thread"), source: e })?
        };
        let filter = (!filter.is_empty()).then_some(filter);
        Ok(Self {
            name,
            tx: Some(tx),
            ecs,
            filter,
            metrics,
            stop,
            drain,
            worker: Some(worker),
            gone: false,
            writer,
            direct: None,
        })
    }
}

impl Sink for Queued {
    fn name(&self) -> &'static str {
        self.name
    }

    fn send(&mut self, ev: &Arc<Outgoing>, ecs: &Ecs) -> io::Result<()> {
        if let Some(filter) = &self.filter {
            if !filter.matches(&ecs.facts(&ev.event)) {
                return Ok(());
            }
        }
        let Some(tx) = &self.tx else { return Ok(()) };
        self.ecs.get_or_init(|| ecs.clone());
        self.metrics.queued.inc();
        match tx.try_send(Arc::clone(ev)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.queued.dec();
                self.metrics.dropped.inc();
            }
            Err(TrySendError::Disconnected(_)) => {
                self.metrics.queued.dec();
                self.metrics.dropped.inc();
                if !self.gone {
                    self.gone = true;
                    warn!(sink = self.name, "output thread is gone: its events are dropped");
                }
            }
        }
        Ok(())
    }

    /// The worker flushes on its own whenever its queue runs empty.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Writes `ev` from the calling thread, ahead of what is queued (the worker thread may be
    /// waiting for a CPU that a process held by self-protection occupies).
    fn write_now(&mut self, ev: &Event, ecs: &Ecs) -> io::Result<()> {
        if let Some(filter) = &self.filter {
            if !filter.matches(&ecs.facts(ev)) {
                return Ok(());
            }
        }
        let mut json = Vec::with_capacity(4096);
        let facts = ecs.encode(ev, &mut json).map_err(io::Error::other)?;
        if let Some(d) = &self.direct {
            // One write(2) of the whole line, appended: lines of the worker stay whole.
            json.push(b'\n');
            let r = match d {
                Direct::File(p) => std::fs::OpenOptions::new().append(true).open(p).and_then(|mut f| io::Write::write_all(&mut f, &json)),
                Direct::Stdout => io::Write::write_all(&mut io::stdout().lock(), &json).and_then(|()| io::Write::flush(&mut io::stdout())),
            };
            if r.is_ok() {
                self.metrics.written.inc();
            }
            return r;
        }
        // The worker holds the lock for one event at most; if it was preempted holding it (on the
        // CPU a held sender occupies), queue the event rather than wait out the sender's grace.
        let deadline = Instant::now() + Duration::from_millis(50);
        let shared = self.writer.clone();
        let mut w = loop {
            match shared.try_lock() {
                Ok(g) => break g,
                Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) if Instant::now() < deadline => thread::sleep(Duration::from_micros(50)),
                Err(std::sync::TryLockError::WouldBlock) => return self.write(ev, ecs),
            }
        };
        let r = w.write(&Doc { event: ev, json: &json, facts: &facts, ecs, shared: None }).and_then(|()| w.idle());
        r.map_err(|e| io::Error::other(e.to_string()))
    }
}

impl Drop for Queued {
    /// Closes the queue and gives the worker `drain` to deliver what it holds.
    fn drop(&mut self) {
        let deadline = Instant::now() + self.drain;
        self.stop.set(deadline);
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            // Past the deadline the writer gives up on its own; allow it a moment to count that.
            let hard = deadline + Duration::from_secs(1);
            while !worker.is_finished() && Instant::now() < hard {
                thread::sleep(Duration::from_millis(5));
            }
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                warn!(sink = self.name, "output did not drain in time; leaving it behind");
            }
        }
    }
}

fn run(
    name: &'static str,
    rx: mpsc::Receiver<Arc<Outgoing>>,
    ecs: Arc<OnceLock<Ecs>>,
    shared: Arc<std::sync::Mutex<Box<dyn Writer>>>,
    metrics: OutputMetrics,
) {
    let lock = || shared.lock().unwrap_or_else(|e| e.into_inner());
    let mut log = ErrorLog::new(name);
    // The event is printed (or its print awaited, from another sink's thread) before the writer
    // is locked: Sink::write_now must not wait behind that.
    let handle = |ev: Arc<Outgoing>, log: &mut ErrorLog| {
        metrics.queued.dec();
        // The Ecs is set before the first event is queued.
        let Some(ecs) = ecs.get() else { return };
        match ev.encoded(ecs) {
            Ok(e) => log.check(lock().write(&Doc { event: &ev.event, json: &e.json, facts: &e.facts, ecs, shared: Some(&ev) })),
            Err(e) => {
                metrics.errors.inc();
                metrics.dropped.inc();
                log.report(&e);
            }
        }
    };
    loop {
        let wait = lock().deadline().map_or(IDLE_TICK, |d| d.saturating_duration_since(Instant::now()));
        match rx.recv_timeout(wait) {
            Ok(ev) => {
                // The writer is locked per event, not per burst: Sink::write_now (another
                // thread) must not wait behind a whole burst.
                handle(ev, &mut log);
                let mut taken = 1;
                while taken < BURST {
                    match rx.try_recv() {
                        Ok(ev) => handle(ev, &mut log),
                        Err(_) => break,
                    }
                    taken += 1;
                }
                log.check(lock().idle());
                if taken < BURST {
                    std::thread::sleep(LINGER);
                }
            }
            Err(RecvTimeoutError::Timeout) => log.check(lock().idle()),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    log.check(lock().close());
    // What the sink delivered and lost in its life: the last word on its counts at shutdown.
    info!(
        sink = name,
        written = metrics.written.get(),
        dropped = metrics.dropped.get(),
        errors = metrics.errors.get(),
        retries = metrics.retries.get(),
        "output closed"
    );
}

/// A buffer of newline-terminated documents waiting for one write.
#[derive(Default)]
pub(crate) struct Lines {
    pub buf: Vec<u8>,
    pub count: u64,
}

impl Lines {
    pub fn push(&mut self, json: &[u8]) {
        self.buf.extend_from_slice(json);
        self.buf.push(b'\n');
        self.count += 1;
    }
    pub fn clear(&mut self) {
        self.buf.clear();
        self.count = 0;
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Writes everything out and counts it as written, or as errored and dropped.
    pub fn drain_into(&mut self, out: &mut impl io::Write, m: &OutputMetrics) -> io::Result<()> {
        if self.is_empty() {
            return Ok(());
        }
        let r = out.write_all(&self.buf).and_then(|()| out.flush());
        match &r {
            Ok(()) => m.written.inc_by(self.count),
            Err(_) => {
                m.errors.inc();
                m.dropped.inc_by(self.count);
            }
        }
        self.clear();
        r
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::{
        decode::{decode, raw},
        event::EventBody,
        metrics::Metrics,
        process::Host,
    };

    pub fn ecs() -> Ecs {
        Ecs::new(Host { hostname: "testhost".into(), id: "m".into(), boot_id: "b".into() }, 1_700_000_000_000_000_000)
    }

    pub fn exec(pid: u32) -> Event {
        let rec = decode(&raw::exec(pid, 1_000, "/usr/bin/echo", &["echo", "hi"], "/tmp")).unwrap();
        Event { wall_ns: 1_700_000_000_123_456_789, body: EventBody::Record(rec), ctx: None }
    }

    pub fn exit(pid: u32) -> Event {
        let rec = decode(&raw::exit(pid, 0, 2_000)).unwrap();
        Event { wall_ns: 1_700_000_000_123_456_789, body: EventBody::Record(rec), ctx: None }
    }

    /// Records what it is given; `gate` blocks it until opened.
    struct Slow {
        seen: Arc<Mutex<Vec<String>>>,
        gate: Arc<Mutex<()>>,
        m: OutputMetrics,
    }

    impl Writer for Slow {
        fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
            let _open = self.gate.lock().unwrap();
            self.seen.lock().unwrap().push(doc.facts.action.to_string());
            self.m.written.inc();
            Ok(())
        }
        fn idle(&mut self) -> Result<(), OutputError> {
            Ok(())
        }
        fn close(&mut self) -> Result<(), OutputError> {
            Ok(())
        }
    }

    #[test]
    fn full_queue_drops_and_counts_without_blocking() {
        let metrics = Metrics::new();
        let m = metrics.output("slow");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let w = Slow { seen: seen.clone(), gate: gate.clone(), m: m.clone() };
        let mut q =
            Queued::spawn("slow", 4, Filter::default(), Duration::from_secs(5), m.clone(), Stop::default(), Box::new(w))
                .unwrap();
        let ecs = ecs();
        let t = Instant::now();
        for pid in 0..100 {
            q.write(&exec(pid), &ecs).unwrap();
        }
        assert!(t.elapsed() < Duration::from_secs(1), "write must not block");
        // The worker holds at most one event (blocked in write) and the queue four.
        let dropped = m.dropped.get();
        assert!((95..=96).contains(&dropped), "dropped {dropped}");
        drop(closed);
        drop(q);
        assert_eq!(m.written.get() + m.dropped.get(), 100);
        assert_eq!(seen.lock().unwrap().len() as u64, m.written.get());
        assert_eq!(m.queued.get(), 0);
    }

    #[test]
    fn filter_runs_before_the_queue() {
        let metrics = Metrics::new();
        let m = metrics.output("f");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let w = Slow { seen: seen.clone(), gate: Arc::default(), m: m.clone() };
        let filter = Filter { actions: vec!["exit".into()], ..Default::default() };
        let mut q = Queued::spawn("f", 8, filter, Duration::from_secs(5), m.clone(), Stop::default(), Box::new(w)).unwrap();
        let ecs = ecs();
        for pid in 0..50 {
            q.write(&exec(pid), &ecs).unwrap();
            if pid % 10 == 0 {
                q.write(&exit(pid), &ecs).unwrap();
                thread::sleep(Duration::from_millis(20));
            }
        }
        drop(q);
        assert_eq!(*seen.lock().unwrap(), vec!["exit"; 5]);
        assert_eq!(m.dropped.get(), 0, "filtered events never reach the queue");
    }

    #[test]
    fn backoff_grows_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let d: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(80) && d[0] <= Duration::from_millis(120), "{d:?}");
        assert!(d[3] >= Duration::from_millis(640), "{d:?}");
        assert!(d.iter().all(|x| *x <= Duration::from_secs(1)), "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(120));
    }

    #[test]
    fn stop_cuts_sleeps_short() {
        let s = Stop::default();
        assert!(s.sleep(Duration::from_millis(1)));
        s.set(Instant::now());
        let t = Instant::now();
        assert!(!s.sleep(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
