//! Configuration: `/etc/osprey/osprey.yaml` (serde + YAML, unknown keys rejected with file:line),
//! every setting overridable by a command-line flag.

use std::{path::Path, time::Duration};

use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::{pipeline::PipelineConfig, sensor::SensorConfig};

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
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SensorSection {
    /// Size of each per-CPU ring buffer, e.g. `8MiB` (power of two, at least one page).
    #[serde(deserialize_with = "de_size", serialize_with = "ser_size")]
    pub ringbuf_size: u32,
    /// Report thread clone/exit too.
    pub threads: bool,
}

impl Default for SensorSection {
    fn default() -> Self {
        Self { ringbuf_size: 8 << 20, threads: false }
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

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct OutputSection {
    /// ECS JSON lines on standard output.
    pub stdout: bool,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self { stdout: true }
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
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    let n = match Raw::deserialize(d)? {
        Raw::N(n) => n,
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom)?,
    };
    u32::try_from(n).map_err(|_| serde::de::Error::custom(format!("{n} bytes is more than 4GiB")))
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
            Ok(text) => Self::parse(&text, &name),
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
        if self.pipeline.loss_report_interval.is_zero() {
            return Err("pipeline.loss_report_interval: must be more than 0".into());
        }
        Ok(())
    }

    pub fn sensor(&self) -> SensorConfig {
        SensorConfig { ringbuf_bytes: self.sensor.ringbuf_size, threads: self.sensor.threads }
    }

    pub fn pipeline(&self) -> PipelineConfig {
        PipelineConfig {
            reorder_window: self.pipeline.reorder_window,
            loss_poll: self.pipeline.loss_report_interval,
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
}
