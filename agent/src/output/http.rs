//! HTTP: events POSTed in batches, as NDJSON (one ECS document per line) or as an Elasticsearch
//! `_bulk` request. A batch goes out when it is full or `flush_interval` old. Connection errors,
//! 408, 429 and 5xx are retried with exponential backoff (and `Retry-After`); while a batch is
//! retried new events wait in the queue, and when the queue is full they are dropped and counted.
//!
//! The client is `ureq` (blocking, on this sink's own thread): small, no async runtime to share
//! with the pipeline, TLS through rustls with Mozilla's roots built in (nothing to install in a
//! slim image) or the CA file given.

use std::{
    collections::BTreeMap,
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{
    queue::{Backoff, Doc, Stop, Writer},
    OutputError,
};
use crate::{config::ByteSize, metrics::OutputMetrics};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `Content-Type: application/x-ndjson`, one document per line.
    #[default]
    Ndjson,
    /// Elasticsearch/OpenSearch `_bulk`: a `create` action line before each document.
    Elasticsearch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Where to POST. In `elasticsearch` mode the cluster's base URL (`/_bulk` is appended) or a
    /// full `…/_bulk` URL.
    pub url: String,
    #[serde(default)]
    pub mode: Mode,
    /// `elasticsearch` mode: the index or data stream written to.
    #[serde(default = "default_index")]
    pub index: String,
    /// Extra request headers, e.g. `Authorization: ApiKey …`; `${VAR}` is replaced by the
    /// environment variable VAR (keep secrets out of the config file).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Events per request at most.
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// Request body size at most (before compression).
    #[serde(default = "default_batch_bytes")]
    pub batch_bytes: ByteSize,
    /// A batch that is not full goes out after this long.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush_interval: Duration,
    /// One request, connect to response.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries after the first before a batch is given up (dropped and counted).
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
    /// `Content-Encoding: gzip` request bodies.
    #[serde(default)]
    pub gzip: bool,
    /// PEM file of CA certificates to trust instead of the built-in Mozilla roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_index() -> String {
    "osprey-events".into()
}
fn default_batch_events() -> usize {
    500
}
fn default_batch_bytes() -> ByteSize {
    ByteSize(1 << 20)
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
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

impl HttpConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            mode: Mode::default(),
            index: default_index(),
            headers: BTreeMap::new(),
            batch_events: default_batch_events(),
            batch_bytes: default_batch_bytes(),
            flush_interval: default_flush(),
            timeout: default_timeout(),
            max_retries: default_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            gzip: false,
            ca_file: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .or_else(|| self.url.strip_prefix("https://"))
            .ok_or_else(|| format!("http.url: `{}` is not an http:// or https:// URL", self.url))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("http.url: `{}` names no host", self.url));
        }
        if self.url.parse::<ureq::http::Uri>().is_err() {
            return Err(format!("http.url: `{}` is not a valid URL", self.url));
        }
        if self.batch_events == 0 || self.batch_events > 100_000 {
            return Err("http.batch_events: 1 to 100000".into());
        }
        if self.batch_bytes.0 < 1024 {
            return Err("http.batch_bytes: at least 1KiB".into());
        }
        if self.flush_interval.is_zero() || self.timeout.is_zero() || self.initial_backoff.is_zero() {
            return Err("http: flush_interval, timeout and initial_backoff must be more than 0".into());
        }
        if self.mode == Mode::Elasticsearch && (self.index.is_empty() || self.index.contains(['"', '\\', '/', ' '])) {
            return Err(format!("http.index: `{}` is not an index name", self.index));
        }
        for (k, v) in &self.headers {
            if ureq::http::HeaderName::try_from(k.as_str()).is_err() {
                return Err(format!("http.headers: `{k}` is not a header name"));
            }
            expand_env(v)?;
        }
        Ok(())
    }

    /// The URL requests go to.
    pub fn endpoint(&self) -> String {
        match self.mode {
            Mode::Ndjson => self.url.clone(),
            Mode::Elasticsearch if self.url.trim_end_matches('/').ends_with("/_bulk") => self.url.clone(),
            Mode::Elasticsearch => format!("{}/_bulk", self.url.trim_end_matches('/')),
        }
    }
}

/// Replaces `${VAR}` with the environment variable VAR (an error when it is not set).
pub(crate) fn expand_env(v: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after.find('}').ok_or_else(|| format!("http.headers: unclosed `${{` in `{v}`"))?;
        let var = &after[..end];
        out.push_str(&std::env::var(var).map_err(|_| format!("http.headers: environment variable `{var}` is not set"))?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What became of one request.
enum Outcome {
    Done,
    /// Try again (after at least this long, when the server said so).
    Retry(String, Option<Duration>),
    /// Will not succeed by retrying.
    Fatal(String),
}

pub(crate) struct HttpWriter {
    cfg: HttpConfig,
    endpoint: String,
    headers: Vec<(String, String)>,
    agent: ureq::Agent,
    /// The batch: documents (with action lines in bulk mode), how many, since when.
    body: Vec<u8>,
    /// Offsets of each document's first byte in `body` (to rebuild a partial bulk retry).
    starts: Vec<usize>,
    since: Option<Instant>,
    action: Vec<u8>,
    m: OutputMetrics,
    stop: Stop,
}

impl HttpWriter {
    pub fn new(cfg: HttpConfig, m: OutputMetrics, stop: Stop) -> Result<Self, OutputError> {
        cfg.validate().map_err(OutputError::Config)?;
        let mut headers = Vec::new();
        for (k, v) in &cfg.headers {
            headers.push((k.clone(), expand_env(v).map_err(OutputError::Config)?));
        }
        let mut b = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("osprey/", env!("CARGO_PKG_VERSION")))
            .max_idle_connections(2)
            // A redirected POST is a wrong `url`: report the 3xx instead of following it.
            .max_redirects(0)
            .max_redirects_will_error(false);
        if let Some(path) = &cfg.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| OutputError::Io { what: format!("reading the CA file {}", path.display()), source: e })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(OutputError::Config(format!("http.ca_file: no certificate in {}", path.display())));
            }
            b = b.tls_config(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::from(certs)).build());
        }
        let action = format!("{{\"create\":{{\"_index\":\"{}\"}}}}\n", cfg.index).into_bytes();
        Ok(Self {
            endpoint: cfg.endpoint(),
            cfg,
            headers,
            agent: b.build().into(),
            body: Vec::new(),
            starts: Vec::new(),
            since: None,
            action,
            m,
            stop,
        })
    }

    fn count(&self) -> u64 {
        self.starts.len() as u64
    }

    fn clear(&mut self) {
        self.body.clear();
        self.starts.clear();
        self.since = None;
    }

    /// One POST of the current batch.
    fn post(&mut self) -> Outcome {
        // Elasticsearch takes `_bulk` bodies as application/x-ndjson too.
        let mut req = self.agent.post(&self.endpoint).header("Content-Type", "application/x-ndjson");
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let result = if self.cfg.gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            let body = enc.write_all(&self.body).and_then(|()| enc.finish());
            match body {
                Ok(b) => req.header("Content-Encoding", "gzip").send(&b[..]),
                Err(e) => return Outcome::Fatal(format!("compressing the batch: {e}")),
            }
        } else {
            req.send(&self.body[..])
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(format!("POST {}: {e}", self.endpoint), None),
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.body_mut().with_config().limit(16 << 20).read_to_string().unwrap_or_default();
        match status {
            200..=299 if self.cfg.mode == Mode::Elasticsearch => self.bulk_result(&text),
            200..=299 => Outcome::Done,
            408 | 429 | 500..=599 => Outcome::Retry(format!("POST {}: HTTP {status}: {}", self.endpoint, snippet(&text)), retry_after),
            _ => Outcome::Fatal(format!("POST {}: HTTP {status}: {}", self.endpoint, snippet(&text))),
        }
    }

    /// Reads a `_bulk` response: documents rejected for good are dropped and counted; those
    /// refused for load (429, 5xx) stay in the batch to be retried.
    fn bulk_result(&mut self, text: &str) -> Outcome {
        #[derive(Deserialize)]
        struct Bulk {
            #[serde(default)]
            errors: bool,
            #[serde(default)]
            items: Vec<BTreeMap<String, Item>>,
        }
        #[derive(Deserialize)]
        struct Item {
            #[serde(default)]
            status: u16,
            #[serde(default)]
            error: Option<serde_json::Value>,
        }
        let bulk: Bulk = match serde_json::from_str(text) {
            Ok(b) => b,
            Err(e) => return Outcome::Fatal(format!("unreadable _bulk response ({e}): {}", snippet(text))),
        };
        if !bulk.errors {
            return Outcome::Done;
        }
        if bulk.items.len() != self.starts.len() {
            return Outcome::Fatal(format!("_bulk answered {} items for {} documents", bulk.items.len(), self.starts.len()));
        }
        let mut keep_body = Vec::new();
        let mut keep_starts = Vec::new();
        let (mut rejected, mut first_error) = (0u64, None);
        for (i, item) in bulk.items.iter().enumerate() {
            let Some(item) = item.values().next() else { continue };
            let retry = item.status == 429 || item.status >= 500;
            if retry {
                let end = self.starts.get(i + 1).copied().unwrap_or(self.body.len());
                keep_starts.push(keep_body.len());
                keep_body.extend_from_slice(&self.body[self.starts[i]..end]);
            } else if item.status >= 300 || item.error.is_some() {
                rejected += 1;
                first_error.get_or_insert_with(|| item.error.as_ref().map(|e| e.to_string()).unwrap_or_default());
            }
        }
        let accepted = self.count() - rejected - keep_starts.len() as u64;
        self.m.written.inc_by(accepted);
        if rejected > 0 {
            self.m.errors.inc();
            self.m.dropped.inc_by(rejected);
            warn!(
                endpoint = %self.endpoint,
                rejected,
                error = first_error.as_deref().unwrap_or(""),
                "Elasticsearch rejected documents"
            );
        }
        if keep_starts.is_empty() {
            // Everything is accounted for: nothing left to send.
            self.body.clear();
            self.starts.clear();
            return Outcome::Done;
        }
        let n = keep_starts.len();
        self.body = keep_body;
        self.starts = keep_starts;
        Outcome::Retry(format!("_bulk refused {n} documents for load"), None)
    }

    /// Sends the batch, retrying as configured; whatever cannot be delivered is counted dropped.
    fn send(&mut self) -> Result<(), OutputError> {
        if self.starts.is_empty() {
            self.clear();
            return Ok(());
        }
        let mut backoff = Backoff::new(self.cfg.initial_backoff, self.cfg.max_backoff);
        let mut tries = 0u32;
        let result = loop {
            let n = self.count();
            match self.post() {
                Outcome::Done => {
                    // In bulk mode a partial success already counted its part and cleared.
                    self.m.written.inc_by(if self.starts.is_empty() { 0 } else { n });
                    break Ok(());
                }
                Outcome::Fatal(msg) => {
                    self.m.errors.inc();
                    break Err(OutputError::Http(msg));
                }
                Outcome::Retry(msg, after) => {
                    self.m.errors.inc();
                    if tries >= self.cfg.max_retries || self.stop.expired() {
                        break Err(OutputError::Http(format!("{msg} (gave up after {} tries)", tries + 1)));
                    }
                    tries += 1;
                    let delay = backoff.next_delay().max(after.unwrap_or_default().min(self.cfg.max_backoff));
                    if !self.stop.sleep(delay) {
                        break Err(OutputError::Http(format!("{msg} (stopping)")));
                    }
                    self.m.retries.inc();
                }
            }
        };
        if result.is_err() {
            self.m.dropped.inc_by(self.count());
        }
        self.clear();
        result
    }
}

fn snippet(s: &str) -> &str {
    let s = s.trim();
    match s.char_indices().nth(200) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl Writer for HttpWriter {
    fn write(&mut self, doc: &Doc<'_>) -> Result<(), OutputError> {
        let add = doc.json.len() + 1 + if self.cfg.mode == Mode::Elasticsearch { self.action.len() } else { 0 };
        let mut r = Ok(());
        if !self.starts.is_empty() && self.body.len() + add > self.cfg.batch_bytes.0 as usize {
            r = self.send();
        }
        self.since.get_or_insert_with(Instant::now);
        self.starts.push(self.body.len());
        if self.cfg.mode == Mode::Elasticsearch {
            self.body.extend_from_slice(&self.action);
        }
        self.body.extend_from_slice(doc.json);
        self.body.push(b'\n');
        if self.starts.len() >= self.cfg.batch_events {
            let s = self.send();
            return r.and(s);
        }
        r
    }

    fn idle(&mut self) -> Result<(), OutputError> {
        match self.since {
            Some(t) if t.elapsed() >= self.cfg.flush_interval => self.send(),
            _ => Ok(()),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.cfg.flush_interval)
    }

    fn close(&mut self) -> Result<(), OutputError> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::{BufRead, BufReader, Read},
        net::{TcpListener, TcpStream},
        sync::{
            atomic::{AtomicUsize, Ordering},
            Arc, Mutex,
        },
        thread,
    };

    use super::*;
    use crate::{
        metrics::Metrics,
        output::{filter::Facts, queue::tests::*},
    };

    /// A request as the test server saw it.
    #[derive(Debug, Clone)]
    struct Req {
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    /// Answers each request with `respond(n, &req)` = (status, body).
    fn server(respond: impl Fn(usize, &Req) -> (u16, String) + Send + Sync + 'static) -> (String, Arc<Mutex<Vec<Req>>>) {
        // The client honours *_PROXY variables; these receivers are on loopback.
        for v in ["ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] {
            std::env::remove_var(v);
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (seen2, respond, n) = (seen.clone(), Arc::new(respond), Arc::new(AtomicUsize::new(0)));
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { return };
                let (seen, respond, n) = (seen2.clone(), respond.clone(), n.clone());
                thread::spawn(move || serve(c, &seen, &*respond, &n));
            }
        });
        (url, seen)
    }

    fn serve(c: TcpStream, seen: &Mutex<Vec<Req>>, respond: &dyn Fn(usize, &Req) -> (u16, String), n: &AtomicUsize) {
        let mut r = BufReader::new(c.try_clone().unwrap());
        let mut w = c;
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let path = line.split(' ').nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                r.read_line(&mut h).unwrap();
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                let (k, v) = h.split_once(':').unwrap();
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
            let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            if headers.iter().any(|(k, v)| k == "content-encoding" && v == "gzip") {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain).unwrap();
                body = plain;
            }
            let req = Req { path, headers, body };
            let (status, text) = respond(n.fetch_add(1, Ordering::SeqCst), &req);
            seen.lock().unwrap().push(req);
            write!(w, "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nContent-Type: application/json\r\n\r\n{text}", text.len())
                .unwrap();
        }
    }

    fn feed(w: &mut HttpWriter, pids: std::ops::Range<u32>) -> Vec<Result<(), OutputError>> {
        let ecs = ecs();
        pids.map(|pid| {
            let ev = exec(pid);
            let json = serde_json::to_vec(&ecs.to_value(&ev)).unwrap();
            let facts = Facts::known(&ev).unwrap();
            w.write(&Doc { event: &ev, json: &json, facts: &facts, ecs: &ecs, shared: None })
        })
        .collect()
    }

    fn fast(url: &str) -> HttpConfig {
        HttpConfig {
            batch_events: 10,
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..HttpConfig::new(url)
        }
    }

    fn ndjson_pids(body: &[u8]) -> Vec<u64> {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap())
            .filter_map(|v| v["process"]["pid"].as_u64())
            .collect()
    }

    #[test]
    fn batches_and_retries_ndjson() {
        let (url, seen) = server(|n, _| if n < 2 { (503, "busy".into()) } else { (200, String::new()) });
        let m = Metrics::new().output("http");
        std::env::set_var("OSPREY_TEST_TOKEN", "s3cret");
        let mut cfg = fast(&format!("{url}/ingest"));
        cfg.headers.insert("Authorization".into(), "Bearer ${OSPREY_TEST_TOKEN}".into());
        let mut w = HttpWriter::new(cfg, m.clone(), Stop::default()).unwrap();
        assert!(feed(&mut w, 0..25).iter().all(|r| r.is_ok()));
        w.close().unwrap();
        let seen = seen.lock().unwrap();
        // 503, 503, then batches of 10, 10 and the 5 left at close.
        assert_eq!(seen.len(), 5);
        let delivered: Vec<u64> = seen[2..].iter().flat_map(|r| ndjson_pids(&r.body)).collect();
        assert_eq!(delivered, (0..25).collect::<Vec<u64>>());
        let req = &seen[2];
        assert_eq!(req.path, "/ingest");
        assert!(req.headers.contains(&("authorization".into(), "Bearer s3cret".into())));
        assert!(req.headers.contains(&("content-type".into(), "application/x-ndjson".into())));
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get(), m.retries.get()), (25, 0, 2, 2));
    }

    #[test]
    fn gives_up_and_counts_drops() {
        let (url, seen) = server(|_, _| (500, "down".into()));
        let m = Metrics::new().output("http");
        let mut cfg = fast(&url);
        cfg.max_retries = 2;
        let mut w = HttpWriter::new(cfg, m.clone(), Stop::default()).unwrap();
        let results = feed(&mut w, 0..10);
        assert!(results[9].as_ref().unwrap_err().to_string().contains("gave up after 3 tries"));
        assert_eq!(seen.lock().unwrap().len(), 3);
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get()), (0, 10, 3));

        // A 4xx is not retried, and neither is a redirect (it is not followed either).
        for status in [400, 301] {
            let (url, seen) = server(move |_, _| (status, "no".into()));
            let mut w = HttpWriter::new(fast(&url), m.clone(), Stop::default()).unwrap();
            let results = feed(&mut w, 0..10);
            assert!(results[9].as_ref().unwrap_err().to_string().contains(&format!("HTTP {status}")), "{results:?}");
            assert_eq!(seen.lock().unwrap().len(), 1);
        }
        assert_eq!(m.dropped.get(), 30);
    }

    #[test]
    fn elasticsearch_bulk_with_partial_failures() {
        // First answer: doc 1 rejected (mapping), doc 2 refused for load; the retry takes the rest.
        let (url, seen) = server(|n, req| {
            let docs = req.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count() / 2;
            let items: Vec<String> = (0..docs)
                .map(|i| match (n, i) {
                    (0, 1) => r#"{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}"#.to_string(),
                    (0, 2) => r#"{"create":{"status":429,"error":{"type":"es_rejected_execution_exception"}}}"#.to_string(),
                    _ => r#"{"create":{"status":201}}"#.to_string(),
                })
                .collect();
            (200, format!(r#"{{"took":1,"errors":{},"items":[{}]}}"#, n == 0, items.join(",")))
        });
        let m = Metrics::new().output("es");
        let mut cfg = fast(&url);
        cfg.mode = Mode::Elasticsearch;
        cfg.index = "logs-osprey-default".into();
        cfg.batch_events = 4;
        cfg.gzip = true;
        let mut w = HttpWriter::new(cfg, m.clone(), Stop::default()).unwrap();
        feed(&mut w, 0..4);
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].path, "/_bulk");
        assert!(seen[0].headers.contains(&("content-encoding".into(), "gzip".into())));
        let lines: Vec<&[u8]> = seen[0].body.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 8);
        assert_eq!(lines[0], br#"{"create":{"_index":"logs-osprey-default"}}"#);
        assert_eq!(ndjson_pids(lines[1]), vec![0]);
        assert_eq!(ndjson_pids(&seen[1].body), vec![2], "only the document refused for load is retried");
        assert_eq!((m.written.get(), m.dropped.get()), (3, 1));
    }

    #[test]
    fn flushes_on_interval_and_validates() {
        let (url, seen) = server(|_, _| (200, String::new()));
        let m = Metrics::new().output("http");
        let mut cfg = fast(&url);
        cfg.flush_interval = Duration::from_millis(500);
        let mut w = HttpWriter::new(cfg, m.clone(), Stop::default()).unwrap();
        feed(&mut w, 0..3);
        w.idle().unwrap();
        assert!(seen.lock().unwrap().is_empty(), "not yet");
        let d = w.deadline().unwrap();
        thread::sleep(d.saturating_duration_since(Instant::now()));
        w.idle().unwrap();
        assert_eq!(seen.lock().unwrap().len(), 1);
        assert_eq!(m.written.get(), 3);
        assert!(w.deadline().is_none());

        assert!(HttpConfig::new("ftp://x").validate().unwrap_err().contains("http://"));
        assert!(HttpConfig::new("http:///x").validate().unwrap_err().contains("no host"));
        let mut c = HttpConfig::new("http://es:9200/");
        c.mode = Mode::Elasticsearch;
        assert_eq!(c.endpoint(), "http://es:9200/_bulk");
        c.headers.insert("X-Key".into(), "${OSPREY_SURELY_UNSET_VAR}".into());
        assert!(c.validate().unwrap_err().contains("OSPREY_SURELY_UNSET_VAR"));
        let err = serde_yaml_ng::from_str::<HttpConfig>("url: http://x\nbatch_size: 3\n").unwrap_err().to_string();
        assert!(err.contains("batch_size"), "{err}");
    }
}
