//! Configuration: `/etc/osprey/osprey.yaml` (serde + YAML, unknown keys rejected with file:line),
//! every setting overridable by a command-line flag.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::{
    control::ControlSection,
    enrich::ProcessSection,
    net::NetworkSection,
    rules::RulesSection,
    output::SinkConfig,
    pipeline::PipelineConfig,
    respond::ResponseSection,
    sensor::{
        filters::expand_homes,
        settings::{op_mask, FileSection, SystemSection, FILE_OPS, SYSTEM_OPS},
        SensorConfig,
    },
};

pub const DEFAULT_PATH: &str = "/etc/osprey/osprey.yaml";

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {message}")]
    Parse { path: String, line: usize, column: usize, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub sensor: SensorSection,
    pub pipeline: PipelineSection,
    pub output: OutputSection,
    pub health: HealthSection,
    pub file: FileSection,
    pub system: SystemSection,
    pub process: ProcessSection,
    pub network: NetworkSection,
    pub rules: RulesSection,
    pub control: ControlSection,
    pub response: ResponseSection,
    pub recorder: crate::recorder::RecorderSection,
    pub self_protection: crate::protect::SelfProtectionSection,
    pub prevention: crate::lsm::PreventionSection,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    /// Size of each per-CPU ring buffer, e.g. `8MiB` (power of two, at least one page).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub ringbuf_size: u32,
    /// Report thread clone/exit too.
    pub threads: bool,
    /// Benchmark floor (`osprey run --bare-hooks`): empty programs on the same hooks. Not a
    /// config-file setting.
    #[serde(skip)]
    pub bare_hooks: bool,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self { ringbuf_size: 8 << 20, threads: false, bare_hooks: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    #[serde(with = "humantime_serde")]
    pub loss_report_interval: Duration,
}

impl Default for PipelineSection {
    fn default() -> Self {
        let d = PipelineConfig::default();
        Self { reorder_window: d.reorder_window, loss_report_interval: d.loss_poll }
    }
}

/// Where events go (docs/outputs.md). `stdout: true` is shorthand for an unfiltered stdout sink;
/// `sinks` adds any number of others, each with its own queue and filter.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// ECS JSON lines on standard output.
    pub stdout: bool,
    /// More sinks: each entry names exactly one of `stdout`, `file`, `syslog`, `http`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<SinkConfig>,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self { stdout: true, sinks: Vec::new() }
    }
}

impl OutputSection {
    /// Checks every sink's settings and that sink names (metric labels) are unique.
    pub fn validate(&self) -> Result<(), String> {
        let mut names: Vec<String> = Vec::new();
        if self.stdout {
            names.push("stdout".into());
        }
        for (i, sink) in self.sinks.iter().enumerate() {
            sink.validate().map_err(|e| format!("output.sinks[{i}]: {e}"))?;
            let name = sink.name().map_err(|e| format!("output.sinks[{i}]: {e}"))?;
            if names.contains(&name) {
                return Err(format!(
                    "output.sinks[{i}]: a second sink named `{name}` (give each sink of a kind its own `name`; `stdout: true` is named `stdout`)"
                ));
            }
            names.push(name);
        }
        Ok(())
    }
}

/// The health and metrics endpoint: `/metrics`, `/healthz`, `/readyz` on one port.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// Address and port to listen on; 127.0.0.1 keeps it off the network.
    pub listen: SocketAddr,
}

impl Default for HealthSection {
    fn default() -> Self {
        Self { enabled: true, listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 9090)) }
    }
}

/// A byte count written as `4096`, `64KiB`, `100MiB` (see [`parse_size`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.0;
        for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
            if n != 0 && n.is_multiple_of(1 << shift) {
                return s.serialize_str(&format!("{}{unit}", n >> shift));
            }
        }
        s.serialize_u64(n)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(Self(n)),
            Raw::S(s) => parse_size(&s).map(Self).map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `4096`, `64KiB`, `8MiB`, `1GiB` (also KB/MB/GB and K/M/G, all binary).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a size like 8MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}` in `{s}`")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = de_size_u64(d)?;
    u32::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} bytes is more than 4GiB")))
}

/// A byte size as a number or with a unit (`256MiB`).
pub fn de_size_u64<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    ByteSize::deserialize(d).map(|b| b.0)
}

fn ser_size<S: serde::Serializer>(v: &u32, s: S) -> Result<S::Ok, S::Error> {
    if v.is_multiple_of(1 << 20) {
        s.serialize_str(&format!("{}MiB", v >> 20))
    } else {
        s.serialize_u32(*v)
    }
}

impl Config {
    /// Parses YAML text; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Config = serde_yaml_ng::from_str(text).map_err(|e| {
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            ConfigError::Parse { path: path.into(), line, column, message: e.to_string() }
        })?;
        cfg.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(cfg)
    }

    /// Reads `path`; a missing file at the default path means the defaults.
    pub fn load(path: &Path, required: bool) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &name).map(|mut c| {
                c.self_protection.config_file = std::fs::canonicalize(path).ok();
                c
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(Self::default()),
            Err(source) => Err(ConfigError::Read { path: name, source }),
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        let rb = self.sensor.ringbuf_size;
        if !rb.is_power_of_two() || rb < 4096 {
            return Err(format!("sensor.ringbuf_size: {rb} bytes is not a power of two of at least 4KiB"));
        }
        if self.pipeline.reorder_window > Duration::from_secs(10) {
            return Err("pipeline.reorder_window: more than 10s would hold events too long".into());
        }
        op_mask(&self.file.ops, FILE_OPS, "file.ops")?;
        op_mask(&self.system.ops, SYSTEM_OPS, "system.ops")?;
        if self.pipeline.loss_report_interval.is_zero() {
            return Err("pipeline.loss_report_interval: must be more than 0".into());
        }
        self.output.validate()?;
        self.response.validate()?;
        self.recorder.validate()?;
        self.self_protection.validate()?;
        if self.network.dns_cache_entries == 0 {
            return Err("network.dns_cache_entries: must be more than 0".into());
        }
        if self.rules.repeat_window > std::time::Duration::from_secs(86_400) {
            return Err("rules.repeat_window: more than 24h would hide a rule's repeats too long".into());
        }
        if self.network.fold_window > std::time::Duration::from_secs(3600) {
            return Err("network.fold_window: more than 1h would hide a connection's repeats too long".into());
        }
        if self.file.fold_window > std::time::Duration::from_secs(3600) {
            return Err("file.fold_window: more than 1h would hide a file's repeats too long".into());
        }
        Ok(())
    }

    /// The sensor's settings; call after [`Config::validate`] (op names are checked there).
    pub fn sensor(&self) -> SensorConfig {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let mut domains = Vec::new();
        if self.file.enabled {
            domains.push("file");
        }
        if self.system.credentials {
            domains.push("cred");
        }
        if self.system.enabled {
            domains.push("sys");
        }
        if self.network.enabled {
            domains.push("net");
        }
        SensorConfig {
            ringbuf_bytes: self.sensor.ringbuf_size,
            threads: self.sensor.threads,
            domains,
            file_ops: op_mask(&self.file.ops, FILE_OPS, "file.ops").unwrap_or(u32::MAX),
            system_ops: op_mask(&self.system.ops, SYSTEM_OPS, "system.ops").unwrap_or(u32::MAX),
            read_watch: expand_homes(&self.file.watch_reads, &passwd),
            write_exclude: self.file.write_exclude.clone(),
            write_include: self.file.write_include.clone(),
            bare: self.sensor.bare_hooks,
            dns: self.network.enabled && self.network.dns,
            net_fold: self.network.fold_window,
            file_fold: self.file.fold_window,
        }
    }

    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            reorder_window: self.pipeline.reorder_window,
            loss_poll: self.pipeline.loss_report_interval,
            process: self.process.clone(),
            network: self.network.clone(),
            prevention: None,
            alert_repeat_window: self.rules.repeat_window,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_defaults() {
        let c = Config::parse("sensor:\n  ringbuf_size: 1MiB\npipeline:\n  reorder_window: 20ms\n", "t.yaml").unwrap();
        assert_eq!(c.sensor.ringbuf_size, 1 << 20);
        assert_eq!(c.pipeline.reorder_window, Duration::from_millis(20));
        assert!(c.output.stdout);
        assert_eq!(Config::parse("", "t.yaml").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = Config::parse("sensor:\n  threads: true\n  ringbuf_sise: 1MiB\n", "/etc/o.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/o.yaml:3:"), "{msg}");
        assert!(msg.contains("ringbuf_sise"), "{msg}");
    }

    #[test]
    fn wrong_type_and_bad_values() {
        let msg = Config::parse("sensor:\n  threads: maybe\n", "c.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("c.yaml:2:"), "{msg}");
        let msg = Config::parse("sensor:\n  ringbuf_size: 3000\n", "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("power of two"), "{msg}");
        let msg = Config::parse("sensor:\n  ringbuf_size: 8XB\n", "c.yaml").unwrap_err().to_string();
        assert!(msg.contains("unknown size unit"), "{msg}");
    }

    #[test]
    fn round_trips_through_yaml() {
        let c = Config::default();
        let text = serde_yaml_ng::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, "dump").unwrap(), c);
    }

    #[test]
    fn health_section() {
        let c = Config::default();
        assert!(c.health.enabled);
        assert_eq!(c.health.listen, SocketAddr::from(([127, 0, 0, 1], 9090)));
        let c = Config::parse("health:\n  listen: '[::]:9191'\n", "h.yaml").unwrap();
        assert_eq!(c.health.listen.port(), 9191);
        let msg = Config::parse("health:\n  enabled: true\n  listen: localhost\n", "h.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("h.yaml:3:"), "{msg}");
        let msg = Config::parse("health:\n  port: 9090\n", "h.yaml").unwrap_err().to_string();
        assert!(msg.starts_with("h.yaml:2:") && msg.contains("unknown field `port`"), "{msg}");
    }

    #[test]
    fn byte_sizes() {
        for (text, n) in [("4096", 4096), ("64KiB", 64 << 10), ("100MiB", 100 << 20), ("2G", 2 << 30)] {
            let b: ByteSize = serde_yaml_ng::from_str(text).unwrap();
            assert_eq!(b.0, n, "{text}");
            assert_eq!(serde_yaml_ng::from_str::<ByteSize>(&serde_yaml_ng::to_string(&b).unwrap()).unwrap(), b);
        }
        assert_eq!(serde_yaml_ng::to_string(&ByteSize(3 << 20)).unwrap(), "3MiB\n");
        assert_eq!(serde_yaml_ng::to_string(&ByteSize(1000)).unwrap(), "1000\n");
        assert!(serde_yaml_ng::from_str::<ByteSize>("12XB").is_err());
    }
}
