//! Self-protection (docs/self-protection.md): tamper alerts, enforcement through the kernel's
//! SIGKILL path, a watchdog that re-attaches detached links and checks program run counts
//! against a canary, and a signed heartbeat.
//!
//! The kernel half is agent-ebpf/src/protect.bpf.c; this side fills its maps (the agent's pids
//! and BPF object ids, the settings), turns its records into alerts, and acknowledges fatal
//! signals once their alert is out.

pub mod config;
pub mod guard;
pub mod heartbeat;
pub mod kernel;
pub mod ring;
pub mod tamper;
pub mod watchdog;

use std::{collections::BTreeSet, path::Path, sync::Arc};

use agent_common::{osprey_protect_config, osprey_protect_flags as pf, osprey_protect_kind as pk, osprey_protect_pid as pp};
use aya::maps::{Array, HashMap, MapData};
use prometheus::{IntCounter, IntCounterVec, Opts};
use thiserror::Error;
use tracing::{info, warn};

use crate::{
    alerting::{AlertEvent, Recent},
    decode::Record,
    detect::{Alert, AlertKind},
    enrich::Context,
    sensor::{error_chain, Sensor},
};

pub use config::SelfProtectionSection;
pub use tamper::{Finding, Kind};

#[derive(Debug, Error)]
pub enum ProtectError {
    #[error("self-protection map {0} is missing from the BPF object")]
    Missing(&'static str),
    #[error("self-protection map {name}: {reason}")]
    Map { name: &'static str, reason: String },
    #[error("{0}")]
    Config(String),
}

fn map_err(name: &'static str) -> impl Fn(aya::maps::MapError) -> ProtectError {
    move |e| ProtectError::Map { name, reason: error_chain(&e) }
}

/// osprey_tamper_events_total{kind}, osprey_heartbeat_total, osprey_program_reattach_total{program}.
#[derive(Clone)]
pub struct ProtectMetrics {
    pub tamper: IntCounterVec,
    pub heartbeats: IntCounter,
    pub reattach: IntCounterVec,
}

impl ProtectMetrics {
    pub fn register(reg: &prometheus::Registry) -> Self {
        let tamper = IntCounterVec::new(Opts::new("osprey_tamper_events_total", "Tamper findings (self-protection), by kind"), &["kind"])
            .expect("valid metric");
        let heartbeats = IntCounter::new("osprey_heartbeat_total", "Signed heartbeat events written").expect("valid metric");
        let reattach = IntCounterVec::new(
            Opts::new("osprey_program_reattach_total", "Programs the watchdog found detached and attached again"),
            &["program"],
        )
        .expect("valid metric");
        // A second agent in one process (tests) shares nothing: ignore "already registered".
        let _ = reg.register(Box::new(tamper.clone()));
        let _ = reg.register(Box::new(heartbeats.clone()));
        let _ = reg.register(Box::new(reattach.clone()));
        Self { tamper, heartbeats, reattach }
    }
}

const READ_ALERT_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// What the agent watches over itself.
pub struct Protector {
    pids: HashMap<MapData, u32, u32>,
    ids: HashMap<MapData, u64, u32>,
    settings_map: Array<MapData, osprey_protect_config>,
    seq: Array<MapData, u64>,
    settings: osprey_protect_config,
    pub protected: tamper::Protected,
    /// The acknowledgement the kernel waits for, once the alert is out.
    pending_ack: Option<u64>,
    pub(crate) watchdog: watchdog::Watchdog,
    pub(crate) heartbeat: heartbeat::Heartbeats,
    pub metrics: ProtectMetrics,
    pub grace: std::time::Duration,
    pub watchdog_every: std::time::Duration,
    /// Zero: no heartbeat.
    pub heartbeat_every: std::time::Duration,
    threads: BTreeSet<u32>,
    /// Processes already alerted for reading the agent's objects (bpftool lists everything):
    /// one alert per process and minute.
    readers: std::collections::HashMap<(u32, u64), std::time::Instant>,
    ring: Option<aya::maps::RingBuf<MapData>>,
}

/// Inputs from the rest of the configuration.
pub struct Setup<'a> {
    pub section: &'a SelfProtectionSection,
    /// `response.mode: enforce`
    pub enforce_mode: bool,
    pub config_file: Option<&'a Path>,
    pub rule_paths: &'a [std::path::PathBuf],
    pub bpffs_dir: &'a Path,
}

fn take<K: aya::Pod, V: aya::Pod>(sensor: &mut Sensor, name: &'static str) -> Result<HashMap<MapData, K, V>, ProtectError> {
    HashMap::try_from(sensor.take_map(name).ok_or(ProtectError::Missing(name))?).map_err(map_err(name))
}

fn take_array<V: aya::Pod>(sensor: &mut Sensor, name: &'static str) -> Result<Array<MapData, V>, ProtectError> {
    Array::try_from(sensor.take_map(name).ok_or(ProtectError::Missing(name))?).map_err(map_err(name))
}

impl Protector {
    pub fn new(sensor: &mut Sensor, setup: Setup<'_>, metrics: &prometheus::Registry) -> Result<Self, ProtectError> {
        let s = setup.section;
        let key = s.key().map_err(ProtectError::Config)?;
        let enforce = s.enforce && setup.enforce_mode;
        if s.enforce && !setup.enforce_mode {
            warn!("self_protection.enforce is set but response.mode is monitor: tampering is only alerted");
        }
        let settings = osprey_protect_config {
            flags: if enforce { pf::OSPREY_PROTECT_ENFORCE } else { 0 },
            grace_ms: s.signal_grace.as_millis() as u32,
        };
        let mut paths: Vec<String> = Vec::new();
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            paths.push(exe.display().to_string());
        }
        paths.extend(setup.config_file.map(|p| p.display().to_string()));
        paths.extend(setup.rule_paths.iter().chain(&s.protected_paths).map(|p| p.display().to_string()));
        let bpffs_dir = setup.bpffs_dir.display().to_string();
        let marked: Vec<String> = paths.iter().chain((!bpffs_dir.is_empty()).then_some(&bpffs_dir)).cloned().collect();
        if let Err(e) = sensor.protect_paths(&marked) {
            warn!(error = %e, "protected paths not marked in the kernel: writes to them may be filtered or folded");
        }
        let hooks = sensor
            .probes()
            .iter()
            .filter(|p| p.attached)
            .map(|p| p.hook)
            .filter(|h| !h.contains('/'))
            .collect();
        let mut p = Self {
            pids: take(sensor, "prot_pids")?,
            ids: take(sensor, "prot_ids")?,
            settings_map: take_array(sensor, "prot_cfg")?,
            seq: take_array(sensor, "prot_seq")?,
            settings,
            protected: tamper::Protected {
                agent_pid: std::process::id(),
                paths,
                bpffs_dir,
                hooks,
            },
            pending_ack: None,
            watchdog: watchdog::Watchdog::new(sensor),
            heartbeat: heartbeat::Heartbeats::new(key),
            metrics: ProtectMetrics::register(metrics),
            grace: s.signal_grace,
            watchdog_every: s.watchdog_interval,
            heartbeat_every: s.heartbeat_interval,
            threads: BTreeSet::new(),
            readers: std::collections::HashMap::new(),
            ring: Some(aya::maps::RingBuf::try_from(sensor.take_map("prot_ring").ok_or(ProtectError::Missing("prot_ring"))?).map_err(map_err("prot_ring"))?),
        };
        p.settings_map.set(0, p.settings, 0).map_err(map_err("prot_cfg"))?;
        let me = std::process::id();
        // SAFETY: getpgrp has no preconditions.
        let pgrp = unsafe { libc::getpgrp() } as u32;
        p.pids.insert(me, pp::OSPREY_PROTECT_TGID | pp::OSPREY_PROTECT_TID, 0).map_err(map_err("prot_pids"))?;
        if pgrp == me {
            p.pids.insert(pgrp, pp::OSPREY_PROTECT_TGID | pp::OSPREY_PROTECT_PGRP | pp::OSPREY_PROTECT_TID, 0).map_err(map_err("prot_pids"))?;
        } else {
            // The agent shares its group with others (run from a shell or a test): kill(-pgrp)
            // hits it too.
            let _ = p.pids.insert(pgrp, pp::OSPREY_PROTECT_PGRP, 0);
        }
        p.threads.insert(me);
        p.threads.insert(pgrp); // flagged above: never overwritten with TID only
        p.refresh_threads();
        p.refresh_ids(sensor);
        info!(enforce, grace_ms = settings.grace_ms, programs = p.watchdog.programs.len(), "self-protection armed");
        Ok(p)
    }

    /// Puts the ids of every program, map and link of the agent into the kernel's map.
    pub fn refresh_ids(&mut self, sensor: &Sensor) {
        let mut keys: Vec<u64> = self.watchdog.programs.iter().map(|p| (pk::OSPREY_PROTECT_PROG as u64) << 32 | p.id as u64).collect();
        keys.extend(kernel::map_ids(sensor.ebpf()).into_iter().map(|id| (pk::OSPREY_PROTECT_MAP as u64) << 32 | id as u64));
        keys.extend(self.watchdog.link_ids().into_iter().map(|id| (pk::OSPREY_PROTECT_LINK as u64) << 32 | id as u64));
        for k in keys {
            if let Err(e) = self.ids.insert(k, 1, 0) {
                warn!(error = %error_chain(&e), "prot_ids full: an object of the agent is not protected");
                break;
            }
        }
    }

    /// Registers the agent's threads (tkill targets them).
    pub fn refresh_threads(&mut self) {
        let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return };
        for tid in dir.filter_map(Result::ok).filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            if self.threads.insert(tid) {
                let _ = self.pids.insert(tid, pp::OSPREY_PROTECT_TID, 0);
            }
        }
    }

    /// The tamper ring, for its reader (once).
    pub fn take_ring(&mut self) -> Option<aya::maps::RingBuf<MapData>> {
        self.ring.take()
    }

    /// The tamper finding of a record, counted.
    pub fn check(&mut self, rec: &Record) -> Option<Finding> {
        let f = self.protected.classify(rec)?;
        if f.kind == Kind::BpfRead {
            let h = rec.header();
            let now = std::time::Instant::now();
            self.readers.retain(|_, t| now.duration_since(*t) < READ_ALERT_EVERY);
            if self.readers.insert((h.pid, h.start_ns), now).is_some() {
                self.metrics.tamper.with_label_values(&[f.kind.name()]).inc();
                return None;
            }
        }
        self.found(&f);
        if let Some(seq) = f.wait_seq {
            self.pending_ack = Some(self.pending_ack.map_or(seq, |s| s.max(seq)));
        }
        if f.kind == Kind::Bpf {
            self.watchdog.recheck = true;
        }
        Some(f)
    }

    pub fn found(&self, f: &Finding) {
        self.metrics.tamper.with_label_values(&[f.kind.name()]).inc();
        warn!(kind = f.kind.name(), "tamper: {}", f.summary);
    }

    /// An acknowledgement is owed to the kernel.
    pub fn ack_pending(&self) -> bool {
        self.pending_ack.is_some()
    }

    /// Lets the held actors go: their alerts are out.
    pub fn ack(&mut self) {
        if let Some(seq) = self.pending_ack.take() {
            if let Err(e) = self.seq.set(1, seq, 0) {
                warn!(error = %error_chain(&e), "could not acknowledge a tamper record");
            }
        }
    }

    /// The orderly shutdown began: nothing is enforced or held from now on.
    pub fn stopping(&mut self) {
        self.settings.flags |= pf::OSPREY_PROTECT_STOPPING;
        let _ = self.settings_map.set(0, self.settings, 0);
    }
}

impl Protector {
    /// One watchdog round: re-attaches what was detached; each repair is a finding.
    pub fn watch(&mut self, sensor: &mut Sensor) -> Vec<Finding> {
        self.refresh_threads();
        let repaired = self.watchdog.check(sensor);
        if repaired.is_empty() {
            return Vec::new();
        }
        self.refresh_ids(sensor);
        repaired
            .into_iter()
            .map(|r| {
                if r.result.is_ok() {
                    self.metrics.reattach.with_label_values(&[&r.program]).inc();
                }
                let what = match &r.result {
                    Ok(()) => "attached again".to_string(),
                    Err(e) => format!("NOT attached again: {e}"),
                };
                let f = Finding {
                    kind: Kind::Bpf,
                    summary: format!("program {} ({}) found detached (links {:?}); {what}", r.program, r.hook, r.detached_links),
                    wait_seq: None,
                    killed: false,
                };
                self.found(&f);
                f
            })
            .collect()
    }

    /// A heartbeat, after firing the canary; programs the canary did not run are findings.
    pub fn beat(&mut self, wall_ns: u64) -> (heartbeat::Heartbeat, Vec<Finding>) {
        let blinded = if self.heartbeat.run_counts() { self.watchdog.canary() } else { Vec::new() };
        let findings: Vec<Finding> = blinded
            .iter()
            .map(|p| Finding {
                kind: Kind::Blinded,
                summary: format!("program {p} did not run while the agent's canary fired its hook"),
                wait_seq: None,
                killed: false,
            })
            .collect();
        for f in &findings {
            self.found(f);
        }
        self.metrics.heartbeats.inc();
        (self.heartbeat.beat(wall_ns, self.watchdog.runs(), blinded), findings)
    }
}

/// A tamper finding as an alert, with the actor's context and story.
pub fn alert(f: &Finding, trigger: Option<serde_json::Value>, story: Vec<Recent>, ctx: Option<Arc<Context>>, wall_ns: u64) -> AlertEvent {
    let mut rule = (*f.kind.meta()).clone();
    rule.description = Some(f.summary.clone());
    AlertEvent {
        repeats: 0,
        id: String::new(), // set when raised
        alert: Alert { rule: Arc::new(rule), kind: AlertKind::Rule, timestamp_ns: wall_ns, standalone: true },
        trigger,
        story,
        ctx,
        responses: Vec::new(),
    }
}
