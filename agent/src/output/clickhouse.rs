//! ClickHouse: events inserted in batches over ClickHouse's HTTP interface into the fleet table
//! (`osprey fleet init` creates it): `INSERT INTO db.table (columns) FORMAT RowBinary`, the
//! typed columns hunts filter on (the recorder's index row, [`crate::event::Ecs::index_row`])
//! and the full ECS document.
//!
//! RowBinary rather than JSONEachRow: the server parses it several times faster (no JSON
//! tokenising of every document), and it carries addresses as the 16-byte keys the schema
//! stores. The queue, batching, retry with backoff and drop accounting are the HTTP sink's.

use std::{
    sync::{
        mpsc::{self, Receiver, SyncSender},
        Arc, Mutex, PoisonError,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::{
    http::expand_env,
    queue::{Backoff, Doc, ErrorLog, Stop, Writer},
    OutputError,
};
use crate::{
    fleet,
    metrics::OutputMetrics,
    recorder::index::{row, RowRef},
};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseConfig {
    /// The HTTP interface of a server (any shard of a cluster), e.g. `http://clickhouse:8123`.
    pub url: String,
    #[serde(default = "default_database")]
    pub database: String,
    /// The table written to: the MergeTree table, or the `Distributed` one on a cluster.
    #[serde(default = "default_table")]
    pub table: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `${VAR}` is replaced by the environment variable VAR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// Events per INSERT at most. ClickHouse likes few large inserts.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// A batch that is not full goes out after this long.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries after the first before a batch is given up (dropped and counted).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// INSERTs posted at once, each from a thread of its own, while the next batch fills. The
    /// server works on each in parallel; memory holds up to this many batches plus the one
    /// filling. 1: the sink's thread posts each batch itself and waits.
    #[serde(default = "default_inflight")]
    pub inflight: usize,
}

fn default_database() -> String {
    fleet::DEFAULT_DATABASE.into()
}
fn default_table() -> String {
    fleet::DEFAULT_TABLE.into()
}
fn default_batch_events() -> usize {
    20_000
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_retries() -> u32 {
    10
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(30)
}
fn default_inflight() -> usize {
    2
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: default_database(),
            table: default_table(),
            user: None,
            password: None,
            batch_events: default_batch_events(),
            flush_interval: default_flush(),
            timeout: default_timeout(),
            max_retries: default_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            inflight: default_inflight(),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        fleet::check_url("clickhouse.url", &self.url)?;
        fleet::check_ident("clickhouse.database", &self.database)?;
        fleet::check_ident("clickhouse.table", &self.table)?;
        if self.batch_events == 0 || self.batch_events > 1_000_000 {
            return Err("clickhouse.batch_events: 1 to 1000000".into());
        }
        if !(1..=8).contains(&self.inflight) {
            return Err("clickhouse.inflight: 1 to 8".into());
        }
        if self.flush_interval.is_zero() || self.timeout.is_zero() || self.initial_backoff.is_zero() {
            return Err("clickhouse: flush_interval, timeout and initial_backoff must be more than 0".into());
        }
        if let Some(p) = &self.password {
            expand_env(p).map_err(|e| e.replace("http.headers", "clickhouse.password"))?;
        }
        Ok(())
    }
}

/// ClickHouse error codes that retrying cannot fix: the batch itself is wrong.
const FATAL_CODES: &[u32] = &[
    16,  // NO_SUCH_COLUMN_IN_TABLE
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA
    53,  // TYPE_MISMATCH
    62,  // SYNTAX_ERROR
    117, // INCORRECT_DATA
];

enum Outcome {
    Done,
    Retry(String),
    Fatal(String),
}

/// What posts a batch, with its retries and accounting: the writer's, or shared by its senders.
struct Poster {
    cfg: ClickHouseConfig,
    query: String,
    password: Option<String>,
    agent: ureq::Agent,
    m: OutputMetrics,
    stop: Stop,
}

impl Poster {
    fn post(&self, body: &[u8]) -> Outcome {
        let mut req = self.agent.post(&self.cfg.url).query("query", &self.query);
        if let Some(u) = &self.cfg.user {
            req = req.header("X-ClickHouse-User", u);
        }
        if let Some(p) = &self.password {
            req = req.header("X-ClickHouse-Key", p);
        }
        let mut resp = match req.header("Content-Type", "application/octet-stream").send(body) {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(format!("INSERT into {}: {e}", self.cfg.url)),
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Outcome::Done;
        }
        let text = resp.body_mut().with_config().limit(1 << 20).read_to_string().unwrap_or_default();
        let msg = format!("INSERT into {}: HTTP {status}: {}", self.cfg.url, text.trim().chars().take(300).collect::<String>());
        match fleet::error_code(&text) {
            Some(c) if FATAL_CODES.contains(&c) => Outcome::Fatal(msg),
            _ if (400..500).contains(&status) && status != 408 && status != 429 => Outcome::Fatal(msg),
            _ => Outcome::Retry(msg),
        }
    }

    /// Sends a batch of `count` events, retrying as configured; whatever cannot be delivered is
    /// counted dropped.
    fn deliver(&self, body: &[u8], count: u64) -> Result<(), OutputError> {
        let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
        let mut tries = 0u32;
        let result = loop {
            match self.post(body) {
                Outcome::Done => {
                    self.m.written.inc_by(count);
                    break Ok(());
                }
                Outcome::Fatal(msg) => {
                    self.m.errors.inc();
                    break Err(OutputError::Http(msg));
                }
                Outcome::Retry(msg) => {
                    self.m.errors.inc();
                    if tries >= self.cfg.max_retries || self.stop.expired() {
                        break Err(OutputError::Http(format!("{msg} (gave up after {} tries)", tries + 1)));
                    }
                    tries += 1;
                    if !self.stop.sleep(backoff.next_delay()) {
                        break Err(OutputError::Http(format!("{msg} (stopping)")));
                    }
                    self.m.retries.inc();
                }
            }
        };
        if result.is_err() {
            self.m.dropped.inc_by(count);
        }
        result
    }
}

struct Batch {
    body: Vec<u8>,
    count: u64,
}

/// `inflight` threads, each posting one batch at a time; emptied bodies come back for reuse.
struct Senders {
    tx: Option<SyncSender<Batch>>,
    spare: Receiver<Vec<u8>>,
    threads: Vec<JoinHandle<()>>,
}

impl Senders {
    fn spawn(sink: &'static str, poster: &Arc<Poster>, n: usize) -> Result<Self, OutputError> {
        // A rendezvous: a full batch waits for a free sender, as it would for the server.
        let (tx, rx) = mpsc::sync_channel::<Batch>(0);
        let rx = Arc::new(Mutex::new(rx));
        let (spare_tx, spare) = mpsc::sync_channel(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n {
            let (rx, spare_tx, poster) = (rx.clone(), spare_tx.clone(), poster.clone());
            let t = std::thread::Builder::new().name(format!("clickhouse-{i}")).spawn(move || {
                let mut log = ErrorLog::new(sink);
                loop {
                    let next = rx.lock().unwrap_or_else(PoisonError::into_inner).recv();
                    let Ok(mut b) = next else { return };
                    log.check(poster.deliver(&b.body, b.count));
                    b.body.clear();
                    let _ = spare_tx.try_send(b.body);
                }
            });
            threads.push(t.map_err(|source| OutputError::Io { what: "starting a clickhouse sender".into(), source })?);
        }
        Ok(Self { tx: Some(tx), spare, threads })
    }

    /// Waits for a free sender, hands it the batch, and returns an empty body to fill next; the
    /// batch back if no sender is left to take it (they end only when `tx` is gone, or by a
    /// panic).
    fn hand_off(&mut self, batch: Batch) -> Result<Vec<u8>, Batch> {
        match &self.tx {
            Some(tx) => tx.send(batch).map_err(|e| e.0)?,
            None => return Err(batch),
        }
        Ok(self.spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(1 << 20)))
    }

    /// Lets the senders finish what they hold (each gives up at the stop deadline).
    fn finish(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Batches into one server: posted by the caller (`inflight` 1), or handed to sender threads.
pub struct Inserter {
    poster: Arc<Poster>,
    senders: Option<Senders>,
}

impl Inserter {
    /// `sink`: the name its senders log failures under.
    pub(crate) fn with(sink: &'static str, cfg: ClickHouseConfig, m: OutputMetrics, stop: Stop) -> Result<Self, OutputError> {
        cfg.validate().map_err(OutputError::Config)?;
        let password = cfg.password.as_deref().map(expand_env).transpose().map_err(OutputError::Config)?;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("osprey/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(cfg.inflight + 1)
            .max_idle_connections_per_host(cfg.inflight + 1)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .build()
            .into();
        let query = format!("INSERT INTO {}.{} {} FORMAT RowBinary", cfg.database, cfg.table, fleet::schema::column_list());
        let inflight = cfg.inflight;
        let poster = Arc::new(Poster { query, password, agent, cfg, m, stop });
        let senders = if inflight > 1 { Some(Senders::spawn(sink, &poster, inflight)?) } else { None };
        Ok(Self { poster, senders })
    }

    /// An inserter of its own (benches, tools): its own counters, no stop deadline.
    pub fn new(cfg: ClickHouseConfig) -> Result<Self, OutputError> {
        Self::with("clickhouse", cfg, crate::metrics::Metrics::new().output("clickhouse"), Stop::default())
    }

    /// Inserts `body`, `count` rows of [`encode`]: posted here, or handed to a free sender (its
    /// outcome is counted and logged there). Returns an empty buffer to fill next.
    pub fn insert(&mut self, mut body: Vec<u8>, count: u64) -> (Result<(), OutputError>, Vec<u8>) {
        match &mut self.senders {
            Some(s) => match s.hand_off(Batch { body, count }) {
                Ok(next) => (Ok(()), next),
                Err(mut lost) => {
                    self.poster.m.dropped.inc_by(count);
                    lost.body.clear();
                    (Err(OutputError::Http(format!("no sender left for an INSERT of {count} events: dropped"))), lost.body)
                }
            },
            None => {
                let r = self.poster.deliver(&body, count);
                body.clear();
                (r, body)
            }
        }
    }

    /// Waits for the batches in flight (each gives up at the stop deadline).
    pub fn finish(&mut self) {
        if let Some(s) = &mut self.senders {
            s.finish();
        }
    }

    /// Rows delivered and rows dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.poster.m.written.get(), self.poster.m.dropped.get())
    }
}

pub(crate) struct ClickHouseWriter {
    inserter: Inserter,
    body: Vec<u8>,
    count: u64,
    since: Option<Instant>,
}

impl ClickHouseWriter {
    pub fn new(sink: &'static str, cfg: ClickHouseConfig, m: OutputMetrics, stop: Stop) -> Result<Self, OutputError> {
        Ok(Self { inserter: Inserter::with(sink, cfg, m, stop)?, body: Vec::with_capacity(1 << 20), count: 0, since: None })
    }

    fn cfg(&self) -> &ClickHouseConfig {
        &self.inserter.poster.cfg
    }

    fn send(&mut self) -> Result<(), OutputError> {
        let count = std::mem::take(&mut self.count);
        self.since = None;
        if count == 0 {
            return Ok(());
        }
        let (r, body) = self.inserter.insert(std::mem::take(&mut self.body), count);
        self.body = body;
        r
    }
}

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn opt(out: &mut Vec<u8>, s: Option<&str>) {
    string(out, s.unwrap_or("").as_bytes());
}

/// One event as a RowBinary row in [`fleet::schema::COLUMNS`] order, its columns read from its
/// JSON document (other hosts' exports, fixtures).
pub fn encode_row(out: &mut Vec<u8>, json: &[u8], ts_ns: Option<i64>) -> Result<(), serde_json::Error> {
    encode(out, &row(json, ts_ns)?.as_ref(), json);
    Ok(())
}

/// One event as a RowBinary row: its index columns and its document.
pub fn encode(out: &mut Vec<u8>, r: &RowRef<'_>, json: &[u8]) {
    let ts = r.ts_ns.max(0) as u64;
    let days = (ts / 86_400_000_000_000).min(u64::from(u16::MAX)) as u16;
    out.extend_from_slice(&days.to_le_bytes());
    out.extend_from_slice(&ts.to_le_bytes());
    out.extend_from_slice(&xxhash_rust::xxh3::xxh3_64(json).to_le_bytes());
    string(out, r.host.as_bytes());
    string(out, r.kind.as_bytes());
    string(out, r.action.as_bytes());
    opt(out, r.entity);
    opt(out, r.parent);
    out.extend_from_slice(&(r.pid.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32).to_le_bytes());
    opt(out, r.exe);
    opt(out, r.sha256);
    opt(out, r.cmdline);
    opt(out, r.user);
    opt(out, r.path);
    out.extend_from_slice(&r.src_ip.unwrap_or([0; 16]));
    out.extend_from_slice(&(r.src_port.unwrap_or(0).clamp(0, 65535) as u16).to_le_bytes());
    out.extend_from_slice(&r.dst_ip.unwrap_or([0; 16]));
    out.extend_from_slice(&(r.dst_port.unwrap_or(0).clamp(0, 65535) as u16).to_le_bytes());
    opt(out, r.domain);
    opt(out, r.alert);
    opt(out, r.rule);
    out.push(r.severity.unwrap_or(0).clamp(0, 255) as u8);
    out.extend_from_slice(&(r.cgroup.unwrap_or(0).max(0) as u64).to_le_bytes());
    string(out, json);
}

impl Writer for ClickHouseWriter {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        // The columns from the typed event, as the recorder takes them (the same as reading
        // them from the JSON, several times cheaper).
        doc.ecs.with_index_row(doc.event, |r| encode(&mut self.body, r, doc.json));
        self.count += 1;
        self.since.get_or_insert_with(Instant::now);
        if self.count >= self.cfg().batch_events as u64 {
            return self.send();
        }
        Ok(())
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        match self.since {
            Some(t) if t.elapsed() >= self.cfg().flush_interval => self.send(),
            _ => Ok(()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.cfg().flush_interval)
    }

    fn close(&mut self) -> Result<(), OutputError> {
        let r = self.send();
        self.inserter.finish();
        r
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read, Write},
        net::{TcpListener, TcpStream},
        sync::Condvar,
    };

    use super::*;
    use crate::{
        metrics::Metrics,
        output::{filter::Facts, queue::tests::*},
    };

    /// A fake ClickHouse: answers request n with `answers[n]` (the last one from then on);
    /// records each request's target and body.
    /// Each request's target (path and query) and body.
    type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    fn no_proxy() {
        for v in ["ALL_PROXY", "all_proxy", "HTTP_PROXY", "http_proxy"] {
            std::env::remove_var(v);
        }
    }

    /// One request's target (path and query) and body; None when the client hung up.
    fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<u8>)> {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return None;
        }
        let target = line.split(' ').nth(1).unwrap_or("").to_owned();
        let mut len = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body).unwrap();
        Some((target, body))
    }

    fn server(answers: Vec<(u16, &'static str)>) -> (String, Seen) {
        no_proxy();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let mut r = BufReader::new(c.try_clone().unwrap());
                let mut w = c;
                while let Some(req) = read_request(&mut r) {
                    let n = {
                        let mut s = seen2.lock().unwrap();
                        s.push(req);
                        s.len() - 1
                    };
                    let (status, text) = answers[n.min(answers.len() - 1)];
                    write!(w, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n\r\n{text}", text.len()).unwrap();
                }
            }
        });
        (url, seen)
    }

    fn feed(w: &mut ClickHouseWriter, n: u32) -> Vec<Result<(), OutputError>> {
        let ecs = ecs();
        (0..n)
            .map(|pid| {
                let ev = exec(pid);
                let json = serde_json::to_vec(&ecs.to_value(&ev)).unwrap();
                let facts = Facts::known(&ev).unwrap();
                w.write(&Doc { event: &ev, json: &json, facts: &facts, ecs: &ecs, shared: None })
            })
            .collect()
    }

    fn fast(url: &str) -> ClickHouseConfig {
        ClickHouseConfig {
            batch_events: 10,
            inflight: 1,
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..ClickHouseConfig::new(url)
        }
    }

    #[test]
    fn retries_server_errors_and_gives_up_on_bad_batches() {
        let (url, seen) = server(vec![(503, "Code: 252, e.displayText() = DB::Exception: Too many parts"), (200, "")]);
        let m = Metrics::new().output("fleet");
        let mut w = ClickHouseWriter::new("fleet", fast(&url), m.clone(), Stop::default()).unwrap();
        assert!(feed(&mut w, 10).iter().all(Result::is_ok));
        {
            let seen = seen.lock().unwrap();
            assert_eq!(seen.len(), 2);
            assert!(seen[1].0.contains("INSERT+INTO+osprey.events+%28date%2C+ts") || seen[1].0.contains("INSERT%20INTO"), "{}", seen[1].0);
            assert!(seen[1].0.contains("RowBinary"), "{}", seen[1].0);
            assert_eq!(seen[0].1, seen[1].1, "the same batch again");
        }
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get(), m.retries.get()), (10, 0, 1, 1));

        // A syntax or type error will not go away: dropped at once.
        let (url, seen) = server(vec![(500, "Code: 62, e.displayText() = DB::Exception: Syntax error")]);
        let m = Metrics::new().output("fleet");
        let mut w = ClickHouseWriter::new("fleet", fast(&url), m.clone(), Stop::default()).unwrap();
        let r = feed(&mut w, 10);
        assert!(r[9].as_ref().unwrap_err().to_string().contains("Syntax error"));
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!((m.written.get(), m.dropped.get()), (0, 10));

        // A server that stays down: retried, then given up and counted.
        let (url, seen) = server(vec![(500, "Code: 210, e.displayText() = DB::NetException: Connection refused")]);
        let m = Metrics::new().output("fleet");
        let mut w = ClickHouseWriter::new("fleet", fast(&url), m.clone(), Stop::default()).unwrap();
        let r = feed(&mut w, 10);
        assert!(r[9].as_ref().unwrap_err().to_string().contains("gave up after 3 tries"));
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!((m.written.get(), m.dropped.get(), m.retries.get()), (0, 10, 2));
    }

    #[test]
    fn batches_are_posted_in_parallel() {
        // A server that answers no INSERT until two have arrived (or 10 s have passed): with
        // `inflight` 2 the first two batches are out at once.
        no_proxy();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let state = Arc::new((Mutex::new((0usize, Vec::<Vec<u8>>::new())), Condvar::new()));
        let st = state.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let st = st.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(c.try_clone().unwrap());
                    let mut w = c;
                    while let Some((_, body)) = read_request(&mut r) {
                        let (lock, cv) = &*st;
                        let mut g = lock.lock().unwrap();
                        g.0 += 1;
                        g.1.push(body);
                        cv.notify_all();
                        let (g, _) = cv.wait_timeout_while(g, Duration::from_secs(10), |g| g.0 < 2).unwrap();
                        drop(g);
                        write!(w, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
                    }
                });
            }
        });
        let m = Metrics::new().output("fleet");
        let mut w = ClickHouseWriter::new("fleet", ClickHouseConfig { inflight: 2, ..fast(&url) }, m.clone(), Stop::default()).unwrap();
        let start = Instant::now();
        assert!(feed(&mut w, 25).iter().all(Result::is_ok));
        w.close().unwrap();
        assert!(start.elapsed() < Duration::from_secs(8), "the first two batches waited for each other: {:?}", start.elapsed());
        let g = state.0.lock().unwrap();
        assert_eq!(g.1.len(), 3, "two full batches and the rest at close");
        let mut sizes: Vec<usize> = g.1.iter().map(Vec::len).collect();
        sizes.sort_unstable();
        assert!(sizes[0] * 10 < sizes[1] * 6, "5, 10 and 10 events: {sizes:?}");
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get()), (25, 0, 0));
    }

    #[test]
    fn rows_and_config() {
        let doc = br#"{"@timestamp":"2026-11-22T00:00:01Z","event":{"kind":"alert","action":"alert","id":"a1","severity":73},"host":{"id":"h1"},"process":{"pid":7,"entity_id":"e7"},"rule":{"id":"r1"}}"#;
        let mut out = Vec::new();
        encode_row(&mut out, doc, None).unwrap();
        assert_eq!(u16::from_le_bytes([out[0], out[1]]), 20_779, "2026-11-22");
        assert_eq!(&out[18..21], b"\x02h1");
        assert!(out.ends_with(doc));
        assert!(encode_row(&mut out, b"[", None).is_err());

        let mut c = ClickHouseConfig::new("http://127.0.0.1:8123");
        assert!(c.validate().is_ok());
        c.inflight = 9;
        assert!(c.validate().unwrap_err().contains("clickhouse.inflight"));
        c.inflight = 2;
        c.table = "x; DROP".into();
        assert!(c.validate().unwrap_err().contains("clickhouse.table"));
        let err = serde_yaml_ng::from_str::<ClickHouseConfig>("url: http://x\nbatch: 3\n").unwrap_err().to_string();
        assert!(err.contains("batch"), "{err}");
    }
}
