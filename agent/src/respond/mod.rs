//! Response: what Osprey does about what it detects, from a rule's `response:` list or an
//! operator's command. Every action goes through the safety rails (protected targets, monitor
//! mode, a rate limit per rule) and ends as an [`Outcome`] that the pipeline writes as an ECS
//! event (`event.action: osprey-response`) and attaches to the alert that caused it.

pub mod block;
pub mod context;
pub mod isolate;
pub mod policy;
pub mod quarantine;
pub mod request;
pub mod signal;

use std::{
    path::{Path, PathBuf},
    time::Instant,
};

use nix::sys::signal::Signal;
use serde::Serialize;
use tracing::{info, warn};

pub use policy::{Mode, ResponseSection};
pub use request::{Lookup, Request};
use signal::Identity;

use crate::detect::ResponseAction;

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Done,
    /// Monitor mode: it would have been done.
    Would,
    /// A safety rail said no.
    Refused,
    Failed,
    RateLimited,
}

/// One action and its result, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub action: &'static str,
    pub target: String,
    pub result: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Processes signalled (kill, kill_tree, suspend, resume).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pids: Vec<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_id: Option<String>,
    /// `rule`, `operator` or `kernel` (an exec the kernel blocked).
    pub origin: &'static str,
    pub mode: Mode,
    pub took_us: u64,
    /// ECS `event.category` of the response event.
    #[serde(skip)]
    pub category: &'static str,
}

/// A response as an event in the stream (its target process, if any, is the event's context).
#[derive(Debug, Clone)]
pub struct ResponseEvent {
    pub outcome: Outcome,
    /// The rule that asked for it.
    pub rule: Option<std::sync::Arc<crate::detect::RuleMeta>>,
}

/// What an automatic action acts on, taken from the alert's event.
#[derive(Debug, Default, Clone)]
pub struct Subject {
    pub process: Option<Identity>,
    pub name: String,
    pub executable: Option<String>,
    pub sha256: Option<String>,
    /// (kernel dev, inode) of the executable.
    pub exe_file: Option<crate::process::hash::FileKey>,
    /// Path below the cgroup v2 mount.
    pub cgroup: Option<String>,
    /// The file the event is about (quarantine).
    pub file: Option<String>,
}

pub struct Responder {
    cfg: ResponseSection,
    blocker: Option<block::ExecBlocker>,
    isolator: Option<isolate::Isolator>,
    quarantine: Option<quarantine::Quarantine>,
    cgroup_root: Option<PathBuf>,
    /// The agent and its ancestors: never signalled, never in a tree that is.
    agent_lineage: Vec<u32>,
    /// The agent's cgroup (below the mount): it and its ancestors are never isolated.
    agent_cgroup: Option<String>,
    limiter: policy::Limiter,
}

fn lineage_of(pid: u32) -> Vec<u32> {
    let mut out = vec![pid];
    let mut cur = pid;
    while let Ok(st) = procfs::process::Process::new(cur as i32).and_then(|p| p.stat()) {
        if st.ppid <= 0 || out.len() > 64 {
            break;
        }
        cur = st.ppid as u32;
        out.push(cur);
    }
    out
}

/// The executable (if readable) and name (comm) of whatever runs as `pid` now, for the
/// protected-process check.
fn running_image(pid: u32) -> (Option<String>, String) {
    let p = procfs::process::Process::new(pid as i32);
    let exe = p.as_ref().ok().and_then(|p| p.exe().ok()).map(|e| e.display().to_string());
    let name = p.as_ref().ok().and_then(|p| p.stat().ok()).map(|s| s.comm).unwrap_or_default();
    (exe, name)
}

impl Responder {
    /// `blocker` comes from the sensor's maps (None with the bare benchmark object). Isolation
    /// pins found in bpffs are reconciled here.
    pub fn new(cfg: ResponseSection, blocker: Option<block::ExecBlocker>) -> Self {
        let cgroup_root = crate::sensor::fs::cgroup2_mount().map(PathBuf::from);
        let isolator = match cfg.allow_rules().map_err(|e| e.to_string()).and_then(|allow| {
            isolate::Isolator::new(&cfg.bpffs_dir, allow).map_err(|e| e.to_string())
        }) {
            Ok(mut iso) => {
                if let Some(root) = &cgroup_root {
                    match iso.reconcile(root) {
                        Ok(found) if !found.is_empty() => {
                            info!(isolated = ?found, "network isolation found in bpffs is still in force")
                        }
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "reconciling network isolation"),
                    }
                }
                Some(iso)
            }
            Err(e) => {
                warn!(error = %e, "network isolation unavailable");
                None
            }
        };
        Self {
            cfg,
            blocker,
            isolator,
            quarantine: None,
            cgroup_root,
            agent_lineage: lineage_of(std::process::id()),
            agent_cgroup: crate::process::container::proc_cgroup_path(Path::new("/proc"), std::process::id()),
            limiter: policy::Limiter::default(),
        }
    }

    pub fn mode(&self) -> Mode {
        self.cfg.mode
    }

    fn outcome(&self, action: &'static str, target: String, origin: &'static str, category: &'static str) -> Outcome {
        Outcome { action, target, result: Verdict::Done, reason: None, pids: Vec::new(), quarantine_id: None, origin, mode: self.cfg.mode, took_us: 0, category }
    }

    /// Carries out a rule's `response:` list for an alert about `subject`.
    pub fn on_alert(&mut self, rule_key: &str, actions: &[ResponseAction], subject: &Subject, known_files: &dyn Fn(&str) -> Vec<crate::process::hash::FileKey>) -> Vec<Outcome> {
        let mut out = Vec::new();
        for &action in actions {
            let t0 = Instant::now();
            let mut o = self.outcome(action.name(), self.describe(action, subject), "rule", category_of(action));
            if !self.limiter.allow(rule_key, &self.cfg.rate_limit, Instant::now()) {
                o.result = Verdict::RateLimited;
                o.reason = Some(format!(
                    "more than {} actions for rule {rule_key} within {:?}",
                    self.cfg.rate_limit.actions, self.cfg.rate_limit.per
                ));
            } else if let Err(why) = self.check(action, subject) {
                o.result = Verdict::Refused;
                o.reason = Some(why);
            } else if self.cfg.mode == Mode::Monitor {
                o.result = Verdict::Would;
            } else {
                self.act(action, subject, known_files, &mut o);
            }
            o.took_us = t0.elapsed().as_micros() as u64;
            log(&o);
            out.push(o);
        }
        out
    }

    fn describe(&self, action: ResponseAction, s: &Subject) -> String {
        match action {
            ResponseAction::Kill | ResponseAction::KillTree | ResponseAction::Suspend => match s.process {
                Some(id) => format!("process {} ({})", id.pid, s.executable.as_deref().unwrap_or(&s.name)),
                None => "no process".into(),
            },
            ResponseAction::BlockExec => match (&s.sha256, &s.executable) {
                (Some(h), _) => format!("sha256 {h}"),
                (None, Some(e)) => format!("path {e}"),
                _ => "no executable".into(),
            },
            ResponseAction::Isolate => format!("cgroup {}", s.cgroup.as_deref().unwrap_or("?")),
            ResponseAction::Quarantine => format!("file {}", s.file.as_deref().or(s.executable.as_deref()).unwrap_or("?")),
        }
    }

    /// The safety rails for a rule's action: Err says why it is refused.
    fn check(&self, action: ResponseAction, s: &Subject) -> Result<(), String> {
        match action {
            ResponseAction::Kill | ResponseAction::KillTree | ResponseAction::Suspend => {
                let id = s.process.ok_or("the alert names no process")?;
                self.check_process(id.pid, s.executable.as_deref(), &s.name)
            }
            ResponseAction::BlockExec => {
                if s.sha256.is_none() && s.executable.is_none() {
                    return Err("the alert names no executable".into());
                }
                if self.cfg.is_protected_process(s.executable.as_deref(), &s.name) {
                    return Err("the executable is protected (response.protected_processes)".into());
                }
                Ok(())
            }
            ResponseAction::Isolate => {
                let cg = s.cgroup.as_deref().ok_or("the process's cgroup is unknown")?;
                if cg == "/" {
                    return Err("the process is in the root cgroup: isolating it is isolating the host (`osprey isolate host`)".into());
                }
                self.check_cgroup(cg)
            }
            ResponseAction::Quarantine => {
                s.file.as_deref().or(s.executable.as_deref()).ok_or("the alert names no file")?;
                Ok(())
            }
        }
    }

    fn check_process(&self, pid: u32, executable: Option<&str>, name: &str) -> Result<(), String> {
        if pid <= 1 {
            return Err(format!("pid {pid} is never acted on"));
        }
        if pid == std::process::id() {
            return Err("that is the agent itself".into());
        }
        if self.agent_lineage.contains(&pid) {
            return Err(format!("the agent runs below process {pid}"));
        }
        if self.cfg.is_protected_process(executable, name) {
            return Err(format!("{} is protected (response.protected_processes)", executable.unwrap_or(name)));
        }
        Ok(())
    }

    fn check_cgroup(&self, cg: &str) -> Result<(), String> {
        if self.cfg.is_protected_cgroup(cg) {
            return Err(format!("cgroup {cg} is protected (response.protected_cgroups)"));
        }
        if let Some(own) = &self.agent_cgroup {
            if own == cg || own.starts_with(&format!("{}/", cg.trim_end_matches('/'))) {
                return Err(format!("the agent runs in cgroup {cg} or below it"));
            }
        }
        Ok(())
    }

    /// Skips the agent's lineage and protected processes inside a tree.
    fn tree_skip(&self) -> impl Fn(u32) -> bool + '_ {
        move |pid| {
            if self.agent_lineage.contains(&pid) || pid <= 1 {
                return true;
            }
            let (exe, name) = running_image(pid);
            self.cfg.is_protected_process(exe.as_deref(), &name)
        }
    }

    fn act(&mut self, action: ResponseAction, s: &Subject, known_files: &dyn Fn(&str) -> Vec<crate::process::hash::FileKey>, o: &mut Outcome) {
        let r: Result<(), String> = match action {
            ResponseAction::Kill => self.kill(s.process.expect("checked"), false, o),
            ResponseAction::KillTree => self.kill(s.process.expect("checked"), true, o),
            ResponseAction::Suspend => self.suspend(s.process.expect("checked"), o),
            ResponseAction::BlockExec => match &s.sha256 {
                Some(h) => {
                    let mut files = known_files(h);
                    files.extend(s.exe_file);
                    self.block_hash(h, &files).map(|_| ())
                }
                None => self.block_path(Path::new(s.executable.as_deref().expect("checked"))).map(|_| ()),
            },
            ResponseAction::Isolate => self.isolate_cgroup(s.cgroup.as_deref().expect("checked")).map(|_| ()),
            ResponseAction::Quarantine => self
                .quarantine_file(Path::new(s.file.as_deref().or(s.executable.as_deref()).expect("checked")))
                .map(|e| o.quarantine_id = Some(e.id)),
        };
        if let Err(e) = r {
            o.result = Verdict::Failed;
            o.reason = Some(e);
        }
    }

    fn kill(&self, id: Identity, tree: bool, o: &mut Outcome) -> Result<(), String> {
        if tree {
            let stopped = signal::stop_tree(id, &self.tree_skip()).map_err(|e| e.to_string())?;
            o.pids = stopped.signal_all(Signal::SIGKILL);
        } else {
            signal::open(id).and_then(|p| p.signal(Signal::SIGKILL)).map_err(|e| e.to_string())?;
            o.pids = vec![id.pid];
        }
        Ok(())
    }

    fn suspend(&self, id: Identity, o: &mut Outcome) -> Result<(), String> {
        let stopped = signal::stop_tree(id, &self.tree_skip()).map_err(|e| e.to_string())?;
        o.pids = stopped.pids();
        Ok(())
    }

    fn resume(&self, id: Identity, o: &mut Outcome) -> Result<(), String> {
        let members = signal::tree(id).map_err(|e| e.to_string())?;
        o.pids = members.iter().filter(|m| m.signal(Signal::SIGCONT).is_ok()).map(|m| m.id.pid).collect();
        Ok(())
    }

    fn blocker(&mut self) -> Result<&mut block::ExecBlocker, String> {
        self.blocker.as_mut().ok_or_else(|| "the exec block list is not loaded".to_owned())
    }

    fn block_hash(&mut self, sha256: &str, files: &[crate::process::hash::FileKey]) -> Result<usize, String> {
        self.blocker()?.block_hash(sha256, files).map_err(|e| e.to_string())
    }

    fn block_path(&mut self, p: &Path) -> Result<PathBuf, String> {
        self.blocker()?.block_path(p).map_err(|e| e.to_string())
    }

    /// A file was hashed; true when its digest is blocked (the process running it must die).
    pub fn on_hashed(&mut self, file: &crate::process::hash::FileKey, sha256: &str) -> bool {
        self.blocker.as_mut().is_some_and(|b| b.on_hashed(file, sha256))
    }

    /// Kills a process found running a blocked digest after the fact (its first exec, before
    /// the file was known): reported as a kernel-origin block.
    pub fn kill_blocked(&mut self, id: Identity, target: String) -> Outcome {
        let t0 = Instant::now();
        let mut o = self.outcome("block_exec", target, "kernel", "process");
        o.mode = Mode::Enforce;
        match signal::open(id).and_then(|p| p.signal(Signal::SIGKILL)) {
            Ok(()) => {
                o.pids = vec![id.pid];
                o.reason = Some("its sha256 is blocked: killed once the hash was known (first exec of this file)".into());
            }
            Err(e) => {
                o.result = Verdict::Failed;
                o.reason = Some(e.to_string());
            }
        }
        o.took_us = t0.elapsed().as_micros() as u64;
        log(&o);
        o
    }

    /// An exec the kernel blocked (the record's flag): reported, nothing left to do.
    pub fn blocked_exec(&self, pid: u32, executable: &str) -> Outcome {
        let mut o = self.outcome("block_exec", format!("process {pid} ({executable})"), "kernel", "process");
        o.mode = Mode::Enforce;
        o.pids = vec![pid];
        o.reason = Some("the executable is on the block list: SIGKILL before it ran".into());
        log(&o);
        o
    }

    fn cgroup_dir(&self, cg: &str) -> Result<PathBuf, String> {
        let root = self.cgroup_root.as_ref().ok_or("no cgroup v2 mount")?;
        let rel = cg.trim_start_matches('/');
        if rel.split('/').any(|c| c == "..") {
            return Err(format!("cgroup {cg}: `..` is not allowed"));
        }
        Ok(if rel.is_empty() { root.clone() } else { root.join(rel) })
    }

    fn isolator(&mut self) -> Result<&mut isolate::Isolator, String> {
        self.isolator.as_mut().ok_or_else(|| "network isolation is unavailable (see the start-up log)".to_owned())
    }

    fn isolate_cgroup(&mut self, cg: &str) -> Result<isolate::Isolated, String> {
        let dir = self.cgroup_dir(cg)?;
        self.isolator()?.isolate(&dir).map_err(|e| e.to_string())
    }

    fn release_cgroup(&mut self, cg: &str) -> Result<isolate::Isolated, String> {
        let dir = self.cgroup_dir(cg)?;
        self.isolator()?.release(&dir).map_err(|e| e.to_string())
    }

    fn quarantine(&mut self) -> Result<&quarantine::Quarantine, String> {
        if self.quarantine.is_none() {
            self.quarantine = Some(quarantine::Quarantine::open(&self.cfg.quarantine_dir).map_err(|e| e.to_string())?);
        }
        Ok(self.quarantine.as_ref().expect("opened above"))
    }

    fn quarantine_file(&mut self, p: &Path) -> Result<quarantine::Entry, String> {
        self.quarantine()?.quarantine(p).map_err(|e| e.to_string())
    }
}

fn category_of(a: ResponseAction) -> &'static str {
    match a {
        ResponseAction::Kill | ResponseAction::KillTree | ResponseAction::Suspend | ResponseAction::BlockExec => "process",
        ResponseAction::Isolate => "network",
        ResponseAction::Quarantine => "file",
    }
}

fn log(o: &Outcome) {
    match o.result {
        Verdict::Done | Verdict::Would => info!(action = o.action, target = %o.target, result = ?o.result, origin = o.origin, pids = ?o.pids, "response"),
        _ => warn!(action = o.action, target = %o.target, result = ?o.result, reason = o.reason.as_deref().unwrap_or(""), origin = o.origin, "response"),
    }
}
