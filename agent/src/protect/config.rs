//! `self_protection:` in the configuration file.

use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SelfProtectionSection {
    /// SIGKILL (in the kernel, before the syscall returns) a process that sends the agent a
    /// fatal signal or detaches one of its BPF links. Takes effect only with
    /// `response.mode: enforce`; otherwise tampering is only alerted.
    pub enforce: bool,
    /// How long the sender of a fatal signal to the agent is held in the kernel until the agent
    /// has written the alert out (0: not held).
    #[serde(with = "humantime_serde")]
    pub signal_grace: Duration,
    /// How often the agent checks its links (a detached one is re-attached) and the run counts
    /// of its programs against its canary.
    #[serde(with = "humantime_serde")]
    pub watchdog_interval: Duration,
    /// How often a signed heartbeat event is written (0: never).
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// The HMAC-SHA256 key of heartbeats, inline. Prefer `heartbeat_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_key: Option<String>,
    /// A file holding the HMAC key (e.g. a mounted Kubernetes secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_key_file: Option<PathBuf>,
    /// Files and directories watched for tampering besides the agent's binary, its
    /// configuration file, rule paths and bpffs directory.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub protected_paths: Vec<PathBuf>,
    /// The configuration file this was read from (protected too). Not a setting.
    #[serde(skip)]
    pub config_file: Option<PathBuf>,
}

impl Default for SelfProtectionSection {
    fn default() -> Self {
        Self {
            enforce: false,
            signal_grace: Duration::from_millis(500),
            watchdog_interval: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(60),
            heartbeat_key: None,
            heartbeat_key_file: None,
            protected_paths: Vec::new(),
            config_file: None,
        }
    }
}

impl SelfProtectionSection {
    pub fn validate(&self) -> Result<(), String> {
        if self.signal_grace > Duration::from_secs(2) {
            return Err(format!(
                "self_protection.signal_grace: {:?} is more than 2s (the sender spins in the kernel meanwhile)",
                self.signal_grace
            ));
        }
        if self.watchdog_interval.is_zero() {
            return Err("self_protection.watchdog_interval: must be more than 0".into());
        }
        if !self.heartbeat_interval.is_zero() && self.heartbeat_interval < Duration::from_millis(100) {
            return Err("self_protection.heartbeat_interval: at least 100ms (or 0 to disable)".into());
        }
        if self.heartbeat_key.is_some() && self.heartbeat_key_file.is_some() {
            return Err("self_protection.heartbeat_key and heartbeat_key_file: set one, not both".into());
        }
        if self.heartbeat_key.as_deref().is_some_and(str::is_empty) {
            return Err("self_protection.heartbeat_key: empty".into());
        }
        for (i, p) in self.protected_paths.iter().enumerate() {
            if !p.is_absolute() {
                return Err(format!("self_protection.protected_paths[{i}]: {} is not absolute", p.display()));
            }
        }
        Ok(())
    }

    /// The heartbeat key: inline, from its file, else none (heartbeats are then unsigned and say so).
    pub fn key(&self) -> Result<Option<Vec<u8>>, String> {
        if let Some(k) = &self.heartbeat_key {
            return Ok(Some(k.as_bytes().to_vec()));
        }
        match &self.heartbeat_key_file {
            Some(p) => {
                let k = std::fs::read(p).map_err(|e| format!("self_protection.heartbeat_key_file: {}: {e}", p.display()))?;
                let k = k.trim_ascii().to_vec();
                if k.is_empty() {
                    return Err(format!("self_protection.heartbeat_key_file: {} is empty", p.display()));
                }
                Ok(Some(k))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            ("self_protection:\n  signal_grace: 5s\n", "self_protection.signal_grace"),
            ("self_protection:\n  watchdog_interval: 0s\n", "self_protection.watchdog_interval"),
            ("self_protection:\n  heartbeat_interval: 10ms\n", "self_protection.heartbeat_interval"),
            ("self_protection:\n  heartbeat_key: a\n  heartbeat_key_file: /k\n", "self_protection.heartbeat_key"),
            ("self_protection:\n  protected_paths: [relative/x]\n", "self_protection.protected_paths[0]"),
            ("self_protection:\n  enforce: yes please\n", "c.yaml:2:"),
        ] {
            let msg = Config::parse(text, "c.yaml").unwrap_err().to_string();
            assert!(msg.contains(field), "{text}: {msg}");
        }
        let c = Config::parse("self_protection:\n  enforce: true\n  heartbeat_interval: 0s\n", "c.yaml").unwrap();
        assert!(c.self_protection.enforce && c.self_protection.heartbeat_interval.is_zero());
    }

    #[test]
    fn the_key_comes_from_its_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "s3cret\n").unwrap();
        let s = super::SelfProtectionSection { heartbeat_key_file: Some(f.clone()), ..Default::default() };
        assert_eq!(s.key().unwrap().as_deref(), Some(&b"s3cret"[..]));
        std::fs::write(&f, "\n").unwrap();
        assert!(s.key().unwrap_err().contains("heartbeat_key_file"));
    }
}
