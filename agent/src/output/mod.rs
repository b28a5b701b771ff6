//! Where events go. Every sink gets every event; the pipeline flushes them on its tick.
//!
//! The sinks configured in `output` ([`build_sinks`]) each sit behind their own bounded queue and
//! thread ([`Queued`]): the pipeline's `write` only filters and `try_send`s, so a slow or dead
//! sink never stalls detection; what a full queue drops is counted in
//! `osprey_output_dropped_total{sink}`. Each sink counts what it delivered
//! (`osprey_output_events_total{sink}`) and its failures (`osprey_output_errors_total{sink}`).
//! One file per sink: [`stdout`], [`file`], [`syslog`], [`http`], [`clickhouse`]; [`filter`] holds the per-sink
//! filters.

pub mod clickhouse;
pub mod file;
pub mod filter;
pub mod http;
pub(crate) mod queue;
pub mod stdout;
pub mod syslog;

use std::{
    io::{self, Write},
    sync::{Arc, OnceLock},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;

pub use self::{
    clickhouse::ClickHouseConfig,
    file::FileConfig,
    filter::{Facts, Filter, Severity},
    http::HttpConfig,
    queue::Queued,
    stdout::StdoutConfig,
    syslog::SyslogConfig,
};
use crate::{
    config::OutputSection,
    event::{Ecs, Event},
    metrics::Metrics,
};

#[derive(Debug, Error)]
pub enum OutputError {
    #[error("output config: {0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("{0}")]
    Http(String),
    #[error("message of {size} bytes is over the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("serialising an event: {0}")]
    Json(#[from] serde_json::Error),
}

/// One entry of `output.sinks`: the common settings, and exactly one of `stdout`, `file`,
/// `syslog`, `http`, `clickhouse` with that sink's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// The `sink` label of its metrics and logs; defaults to the kind (`file`, `syslog`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Events the queue holds; more are dropped (and counted) until the sink catches up.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// On shutdown, how long the sink may take to deliver what it still holds.
    #[serde(default = "default_drain", with = "humantime_serde")]
    pub drain_timeout: Duration,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub filter: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<StdoutConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clickhouse: Option<ClickHouseConfig>,
}

pub const DEFAULT_QUEUE: usize = 4096;

fn default_queue() -> usize {
    DEFAULT_QUEUE
}
fn default_drain() -> Duration {
    Duration::from_secs(5)
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            name: None,
            queue: DEFAULT_QUEUE,
            drain_timeout: default_drain(),
            filter: Filter::default(),
            stdout: None,
            file: None,
            syslog: None,
            http: None,
            clickhouse: None,
        }
    }
}

impl SinkConfig {
    /// Which kind of sink this entry is; an error unless exactly one is given.
    pub fn kind(&self) -> Result<&'static str, String> {
        let kinds: Vec<&'static str> = [
            self.stdout.as_ref().map(|_| "stdout"),
            self.file.as_ref().map(|_| "file"),
            self.syslog.as_ref().map(|_| "syslog"),
            self.http.as_ref().map(|_| "http"),
            self.clickhouse.as_ref().map(|_| "clickhouse"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match kinds[..] {
            [one] => Ok(one),
            [] => Err("names no sink: give one of `stdout`, `file`, `syslog`, `http`, `clickhouse`".into()),
            _ => Err(format!("names {} sinks ({}): one per entry", kinds.len(), kinds.join(", "))),
        }
    }

    /// Its metric label: `name`, else the kind.
    pub fn name(&self) -> Result<String, String> {
        match &self.name {
            Some(n) => Ok(n.clone()),
            None => self.kind().map(str::to_owned),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let kind = self.kind()?;
        if let Some(n) = &self.name {
            if n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(format!("name: `{n}` must be 1 to 64 of A-Z a-z 0-9 - _ ."));
            }
        }
        if self.queue == 0 || self.queue > 1 << 20 {
            return Err(format!("queue: {} is not between 1 and {}", self.queue, 1 << 20));
        }
        self.filter.validate()?;
        let r = match kind {
            "file" => self.file.as_ref().map(FileConfig::validate),
            "syslog" => self.syslog.as_ref().map(SyslogConfig::validate),
            "http" => self.http.as_ref().map(HttpConfig::validate),
            "clickhouse" => self.clickhouse.as_ref().map(ClickHouseConfig::validate),
            _ => None,
        };
        r.unwrap_or(Ok(()))
    }
}

/// Builds every sink `output` configures (`stdout: true` first), each behind its own queue and
/// thread. Files are opened and URLs checked now; network sinks connect on first use.
pub fn build_sinks(output: &OutputSection, metrics: Arc<Metrics>) -> Result<Vec<Box<dyn Sink>>, OutputError> {
    output.validate().map_err(OutputError::Config)?;
    let mut entries: Vec<SinkConfig> = Vec::new();
    if output.stdout {
        entries.push(SinkConfig { stdout: Some(StdoutConfig {}), ..SinkConfig::default() });
    }
    entries.extend(output.sinks.iter().cloned());
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for cfg in entries {
        sinks.push(Box::new(build_one(&cfg, &metrics)?));
    }
    Ok(sinks)
}

fn build_one(cfg: &SinkConfig, metrics: &Metrics) -> Result<Queued, OutputError> {
    let name = cfg.name().map_err(OutputError::Config)?;
    let m = metrics.output(&name);
    // Sink names are few and live as long as the agent; `Sink::name` hands out &'static str.
    let name: &'static str = Box::leak(name.into_boxed_str());
    let stop = queue::Stop::default();
    let writer: Box<dyn queue::Writer> = if let Some(f) = &cfg.file {
        Box::new(file::FileWriter::open(f.clone(), m.clone())?)
    } else if let Some(s) = &cfg.syslog {
        Box::new(syslog::SyslogWriter::new(s, m.clone(), stop.clone()))
    } else if let Some(h) = &cfg.http {
        Box::new(http::HttpWriter::new(h.clone(), m.clone(), stop.clone())?)
    } else if let Some(c) = &cfg.clickhouse {
        Box::new(clickhouse::ClickHouseWriter::new(name, c.clone(), m.clone(), stop.clone())?)
    } else {
        stdout::StdoutWriter::boxed(m.clone())
    };
    let mut q = Queued::spawn(name, cfg.queue, cfg.filter.clone(), cfg.drain_timeout, m, stop, writer)?;
    q.direct = match (&cfg.file, &cfg.syslog, &cfg.http) {
        (Some(f), _, _) => Some(queue::Direct::File(f.path.clone())),
        (None, None, None) => Some(queue::Direct::Stdout),
        _ => None,
    };
    Ok(q)
}

/// One event on its way out, shared by every sink: its ECS JSON and facts are made once, by
/// the first sink thread that needs them, and read by the others.
pub struct Outgoing {
    pub event: Event,
    encoded: OnceLock<Result<Encoded, String>>,
}

/// An event's ECS JSON object (no newline) and its `event.*` facts.
pub(crate) struct Encoded {
    pub json: Box<[u8]>,
    pub facts: Facts,
}

impl Outgoing {
    pub fn new(event: Event) -> Arc<Self> {
        Arc::new(Self { event, encoded: OnceLock::new() })
    }

    /// The event printed, the first time any sink asks; the reason when it cannot be.
    pub(crate) fn encoded(&self, ecs: &Ecs) -> Result<&Encoded, &str> {
        thread_local! {
            static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
        }
        let e = self.encoded.get_or_init(|| {
            // Printed into this thread's buffer, then copied at its size (a slower sink's queue
            // may hold it a while): one allocation an event, not one of 4 KiB and a shrink.
            SCRATCH.with(|s| {
                let mut json = s.borrow_mut();
                json.clear();
                let facts = ecs.encode(&self.event, &mut json).map_err(|e| e.to_string())?;
                Ok(Encoded { json: json.as_slice().into(), facts })
            })
        });
        e.as_ref().map_err(String::as_str)
    }

    /// The printed JSON, if a sink has printed it (empty otherwise).
    pub(crate) fn json(&self) -> &[u8] {
        match self.encoded.get() {
            Some(Ok(e)) => &e.json,
            _ => &[],
        }
    }
}

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    /// Takes one event that the other sinks share.
    fn send(&mut self, ev: &Arc<Outgoing>, ecs: &Ecs) -> io::Result<()>;
    /// Takes one event of its own.
    fn write(&mut self, ev: &Event, ecs: &Ecs) -> io::Result<()> {
        self.send(&Outgoing::new(ev.clone()), ecs)
    }
    fn flush(&mut self) -> io::Result<()>;
    /// Writes one event now, from the calling thread, bypassing any queue (self-protection's
    /// alert about a fatal signal to the agent). Defaults to write + flush.
    fn write_now(&mut self, ev: &Event, ecs: &Ecs) -> io::Result<()> {
        self.write(ev, ecs)?;
        self.flush()
    }
}

/// ECS JSON lines on standard output.
pub struct Stdout {
    out: io::BufWriter<io::Stdout>,
}

impl Default for Stdout {
    fn default() -> Self {
        Self { out: io::BufWriter::with_capacity(1 << 16, io::stdout()) }
    }
}

impl Sink for Stdout {
    fn name(&self) -> &'static str {
        "stdout"
    }
    fn send(&mut self, ev: &Arc<Outgoing>, ecs: &Ecs) -> io::Result<()> {
        let json = &ev.encoded(ecs).map_err(io::Error::other)?.json;
        self.out.write_all(json)?;
        self.out.write_all(b"\n")
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Hands events to an in-process consumer (tests, embedding).
pub struct Channel(pub mpsc::UnboundedSender<Event>);

impl Sink for Channel {
    fn name(&self) -> &'static str {
        "channel"
    }
    fn send(&mut self, ev: &Arc<Outgoing>, _: &Ecs) -> io::Result<()> {
        self.0.send(ev.event.clone()).map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "receiver gone"))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::Config, output::queue::tests::*};

    #[test]
    fn sink_entries_need_exactly_one_kind_and_unique_names() {
        let c = Config::parse("output:\n  sinks:\n    - queue: 10\n", "o.yaml").unwrap_err().to_string();
        assert!(c.contains("output.sinks[0]: names no sink"), "{c}");
        let c = Config::parse(
            "output:\n  sinks:\n    - file: {path: /tmp/x}\n      syslog: {transport: udp}\n",
            "o.yaml",
        )
        .unwrap_err()
        .to_string();
        assert!(c.contains("names 2 sinks (file, syslog)"), "{c}");
        let c = Config::parse("output:\n  sinks:\n    - stdout: {}\n", "o.yaml").unwrap_err().to_string();
        assert!(c.contains("second sink named `stdout`"), "{c}");
        let ok = Config::parse(
            "output:\n  stdout: false\n  sinks:\n    - stdout: {}\n    - name: pager\n      syslog: {}\n    - syslog: {transport: tcp}\n",
            "o.yaml",
        )
        .unwrap();
        assert_eq!(ok.output.sinks.len(), 3);
        let c = Config::parse("output:\n  sinks:\n    - name: a b\n      stdout: {}\n", "o.yaml").unwrap_err().to_string();
        assert!(c.contains("name: `a b`"), "{c}");
        let c = Config::parse("output:\n  sinks:\n    - queue: 0\n      stdout: {}\n", "o.yaml").unwrap_err().to_string();
        assert!(c.contains("queue: 0"), "{c}");
    }

    #[test]
    fn unknown_keys_in_sinks_name_the_line() {
        let text = "output:\n  sinks:\n    - name: siem\n      http:\n        url: http://siem:8080/\n        batch_size: 10\n";
        let msg = Config::parse(text, "/etc/osprey/osprey.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("/etc/osprey/osprey.yaml:6:"), "{msg}");
        assert!(msg.contains("batch_size"), "{msg}");
        let text = "output:\n  sinks:\n    - filter:\n        kinds: [alert]\n        severity: high\n      stdout: {}\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("c.yaml:5:"), "{msg}");
        let text = "output:\n  sinks:\n    - file:\n        path: /x\n        keep: many\n";
        let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("c.yaml:5:"), "{msg}");
    }

    #[test]
    fn full_config_round_trips() {
        let text = r#"
output:
  stdout: false
  sinks:
    - name: archive
      queue: 100000
      file:
        path: /var/log/osprey/events.json
        max_size: 50MiB
        keep: 3
    - name: pager
      filter:
        kinds: [alert]
        min_severity: high
      syslog:
        transport: tcp
        address: siem.example.com:601
        facility: auth
    - name: siem
      filter:
        categories: [process]
        actions: [exec]
      http:
        url: https://es.example.com:9200
        mode: elasticsearch
        index: logs-osprey-default
        headers:
          Authorization: ApiKey abc
        flush_interval: 2s
        gzip: true
health:
  listen: 0.0.0.0:9090
"#;
        let c = Config::parse(text, "t.yaml").unwrap();
        assert_eq!(c.output.sinks[0].file.as_ref().unwrap().max_size.0, 50 << 20);
        assert_eq!(c.output.sinks[1].filter.min_severity, Some(Severity(73)));
        assert_eq!(c.output.sinks[2].http.as_ref().unwrap().flush_interval, Duration::from_secs(2));
        assert_eq!(c.health.listen.to_string(), "0.0.0.0:9090");
        let dumped = serde_yaml_ng::to_string(&c).unwrap();
        assert_eq!(Config::parse(&dumped, "dump").unwrap(), c, "{dumped}");
    }

    #[test]
    fn build_sinks_end_to_end_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alerts.json");
        let text = format!(
            "output:\n  stdout: false\n  sinks:\n    - name: exits\n      filter: {{actions: [exit]}}\n      file: {{path: {}}}\n",
            path.display()
        );
        let cfg = Config::parse(&text, "t.yaml").unwrap();
        let metrics = Arc::new(Metrics::new());
        let mut sinks = build_sinks(&cfg.output, metrics.clone()).unwrap();
        assert_eq!(sinks.len(), 1);
        assert_eq!(sinks[0].name(), "exits");
        let ecs = ecs();
        for pid in 0..10 {
            sinks[0].write(&exec(pid), &ecs).unwrap();
            sinks[0].write(&exit(pid), &ecs).unwrap();
            sinks[0].flush().unwrap();
        }
        drop(sinks);
        let text = std::fs::read_to_string(&path).unwrap();
        let actions: Vec<String> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]["action"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(actions, vec!["exit"; 10]);
        let m = metrics.output("exits");
        assert_eq!((m.written.get(), m.dropped.get(), m.errors.get()), (10, 0, 0));
        let exposition = metrics.render();
        assert!(exposition.contains("osprey_output_events_total{sink=\"exits\"} 10"), "{exposition}");
        assert!(exposition.contains("osprey_output_dropped_total{sink=\"exits\"} 0"));

        // A file that cannot be opened fails at start-up, not later.
        let bad = OutputSection {
            stdout: false,
            sinks: vec![SinkConfig { file: Some(FileConfig::new("/nonexistent/dir/x.json")), ..Default::default() }],
        };
        let err = build_sinks(&bad, metrics).err().unwrap().to_string();
        assert!(err.contains("/nonexistent/dir/x.json"), "{err}");
    }
}
