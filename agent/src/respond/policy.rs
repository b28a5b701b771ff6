//! The response configuration and its safety rails: monitor or enforce, protected processes
//! and cgroups, and a rate limit per rule.

use std::{
    collections::{HashMap, VecDeque},
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::isolate::AllowRule;

/// `monitor` records what would have been done; `enforce` does it. Applies to actions rules
/// ask for; an operator's explicit command is always carried out (safety rails still apply).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Monitor,
    Enforce,
}

/// At most `actions` automatic actions per rule within `per`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    pub actions: u32,
    #[serde(with = "humantime_serde")]
    pub per: Duration,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { actions: 10, per: Duration::from_secs(60) }
    }
}

/// `response:` in the configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseSection {
    pub mode: Mode,
    /// Processes never signalled, by executable path or by name (e.g. `sshd`, `/usr/bin/dockerd`).
    /// PID 1, kernel threads and the agent itself are always protected.
    pub protected_processes: Vec<String>,
    /// Cgroups never isolated, as paths below the cgroup v2 mount (`/system.slice/sshd.service`);
    /// a prefix protects everything below it. The agent's own cgroup and its ancestors are
    /// always protected from cgroup isolation (use `osprey isolate host` for the host).
    pub protected_cgroups: Vec<String>,
    pub rate_limit: RateLimit,
    /// Root-only directory for quarantined files and their manifests.
    pub quarantine_dir: PathBuf,
    /// bpffs directory for the isolation programs' pinned maps and links.
    pub bpffs_dir: PathBuf,
    /// Peers an isolated cgroup or host may still talk to: `ADDR[/PREFIX][:PORT][/tcp|/udp]`,
    /// e.g. the DNS resolver `10.0.0.2:53/udp`, the SIEM `10.1.2.3:9200/tcp`.
    pub isolation_allow: Vec<String>,
}

impl Default for ResponseSection {
    fn default() -> Self {
        Self {
            mode: Mode::Monitor,
            protected_processes: ["systemd", "init", "sshd", "kubelet", "containerd", "dockerd", "crio", "osprey"]
                .into_iter()
                .map(String::from)
                .collect(),
            protected_cgroups: Vec::new(),
            rate_limit: RateLimit::default(),
            quarantine_dir: PathBuf::from("/var/lib/osprey/quarantine"),
            bpffs_dir: PathBuf::from("/sys/fs/bpf/osprey"),
            isolation_allow: Vec::new(),
        }
    }
}

impl ResponseSection {
    pub fn validate(&self) -> Result<(), String> {
        self.allow_rules()?;
        if self.rate_limit.per.is_zero() {
            return Err("response.rate_limit.per: must be more than 0".into());
        }
        for (key, p) in [("quarantine_dir", &self.quarantine_dir), ("bpffs_dir", &self.bpffs_dir)] {
            if !p.is_absolute() {
                return Err(format!("response.{key}: {} is not an absolute path", p.display()));
            }
        }
        Ok(())
    }

    pub fn allow_rules(&self) -> Result<Vec<AllowRule>, String> {
        if self.isolation_allow.len() > agent_common::OSPREY_ISO_RULES_MAX as usize {
            return Err(format!("response.isolation_allow: more than {} rules", agent_common::OSPREY_ISO_RULES_MAX));
        }
        self.isolation_allow
            .iter()
            .enumerate()
            .map(|(i, r)| r.parse().map_err(|e| format!("response.isolation_allow[{i}]: {e}")))
            .collect()
    }

    /// Whether a process with this executable and name is on the protected list.
    pub fn is_protected_process(&self, executable: Option<&str>, name: &str) -> bool {
        let base = executable.and_then(|e| e.rsplit('/').next());
        self.protected_processes.iter().any(|p| {
            if p.starts_with('/') {
                executable == Some(p.as_str())
            } else {
                p == name || Some(p.as_str()) == base
            }
        })
    }

    /// Whether `cgroup` (relative to the cgroup v2 mount, starting with `/`) is protected.
    pub fn is_protected_cgroup(&self, cgroup: &str) -> bool {
        self.protected_cgroups.iter().any(|p| {
            let p = p.trim_end_matches('/');
            cgroup == p || cgroup.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))
        })
    }
}

/// Counts automatic actions per rule in a sliding window.
#[derive(Debug, Default)]
pub struct Limiter {
    seen: HashMap<String, VecDeque<Instant>>,
}

impl Limiter {
    /// Takes one action for `rule` if the limit allows it.
    pub fn allow(&mut self, rule: &str, limit: &RateLimit, now: Instant) -> bool {
        let q = self.seen.entry(rule.to_owned()).or_default();
        while q.front().is_some_and(|t| now.duration_since(*t) >= limit.per) {
            q.pop_front();
        }
        if q.len() >= limit.actions as usize {
            return false;
        }
        q.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_lists() {
        let s = ResponseSection { protected_processes: vec!["sshd".into(), "/opt/app/bin/server".into()], protected_cgroups: vec!["/system.slice/".into()], ..Default::default() };
        assert!(s.is_protected_process(Some("/usr/sbin/sshd"), "sshd"));
        assert!(s.is_protected_process(None, "sshd"));
        assert!(s.is_protected_process(Some("/opt/app/bin/server"), "server"));
        assert!(!s.is_protected_process(Some("/tmp/server"), "server"));
        assert!(s.is_protected_cgroup("/system.slice/ssh.service"));
        assert!(s.is_protected_cgroup("/system.slice"));
        assert!(!s.is_protected_cgroup("/system.slicer"));
    }

    #[test]
    fn rate_limit_slides() {
        let mut l = Limiter::default();
        let lim = RateLimit { actions: 2, per: Duration::from_secs(10) };
        let t = Instant::now();
        assert!(l.allow("r", &lim, t));
        assert!(l.allow("r", &lim, t));
        assert!(!l.allow("r", &lim, t + Duration::from_secs(1)));
        assert!(l.allow("other", &lim, t), "per rule");
        assert!(l.allow("r", &lim, t + Duration::from_secs(10)));
    }

    #[test]
    fn validation_names_the_key() {
        let s = ResponseSection { isolation_allow: vec!["10.0.0.1/99".into()], ..Default::default() };
        assert!(s.validate().unwrap_err().starts_with("response.isolation_allow[0]"));
        assert_eq!(ResponseSection::default().mode, Mode::Monitor, "acting is opt-in");
    }
}
