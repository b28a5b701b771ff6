//! Loads `agent_ebpf::LSM_OBJECT` where the kernel allows it, keeps its protected sets current
//! and drains its denial records.

use std::collections::BTreeSet;

use agent_common::{osprey_denial, osprey_denial_hook as dh, osprey_protected_id};
use aya::{
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::{FEntry, KProbe, Lsm},
    Btf, Ebpf, EbpfLoader,
};
use tracing::{info, warn};

use super::{ids, kernel_release, lists_bpf, Feature, GuardState, HookState, Mode, PreventionSection, HOOKS};
use crate::metrics::Metrics;

/// An error and its causes, without aya's empty "Verifier output: " tail.
fn error_chain(e: &dyn std::error::Error) -> String {
    let s = crate::sensor::error_chain(e);
    s.trim_end().trim_end_matches("Verifier output:").trim_end().trim_end_matches('.').to_string()
}

const LSM_LIST: &str = "/sys/kernel/security/lsm";
/// The kernel function the kprobe and fentry feature probes attach to (exists on every kernel
/// with LSM support, BPF-LSM or not).
const PROBE_FN: &str = "security_task_kill";

/// The prevention programs, when the kernel accepted them. Dropping it detaches them.
pub struct Guard {
    state: GuardState,
    active: Option<Active>,
}

struct Active {
    /// Holds the attached programs (and their links) and the maps.
    _ebpf: Ebpf,
    denials: RingBuf<MapData>,
    lost: PerCpuArray<MapData, u64>,
    lost_seen: u64,
    ids: HashMap<MapData, osprey_protected_id, u8>,
    protected: BTreeSet<ids::ObjectId>,
}

/// One denied operation, from the kernel's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub hook: &'static str,
    pub actor_pid: u32,
    pub actor_tid: u32,
    pub actor_comm: String,
    pub target_pid: u32,
    /// Signal number, ptrace mode or bpf() command.
    pub arg: u32,
    /// The protected map or link id (bpf()).
    pub object: u32,
}

impl Denial {
    /// Decodes a `struct osprey_denial` record (None if short or of an unknown hook).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        if bytes.len() < std::mem::size_of::<osprey_denial>() {
            return None;
        }
        // SAFETY: the length is checked above and osprey_denial is plain integers (osprey.h).
        let d: osprey_denial = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let hook = match d.hook {
            dh::OSPREY_DENY_SIGNAL => "task_kill",
            dh::OSPREY_DENY_PTRACE => "ptrace_access_check",
            dh::OSPREY_DENY_BPF => "bpf",
            _ => return None,
        };
        let comm = d.comm.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect::<Vec<u8>>();
        Some(Self {
            hook,
            actor_pid: d.actor_pid,
            actor_tid: d.actor_tid,
            actor_comm: String::from_utf8_lossy(&comm).into_owned(),
            target_pid: d.target_pid,
            arg: d.arg,
            object: d.object,
        })
    }
}

fn wanted(cfg: &PreventionSection, hook: &str) -> bool {
    match hook {
        "task_kill" => cfg.signals,
        "ptrace_access_check" => cfg.ptrace,
        _ => cfg.bpf,
    }
}

/// Loads and attaches one probe program, then drops it; whether this kernel allows the type.
fn probe(ebpf: &mut Ebpf, name: &'static str, program: &str, btf: &Btf) -> Feature {
    let result = match ebpf.program_mut(program) {
        None => Err(format!("program {program} missing from the object")),
        Some(p) if name == "kprobe" => match <&mut KProbe>::try_from(p) {
            Ok(k) => k
                .load()
                .and_then(|_| k.attach(PROBE_FN, 0).map(drop))
                .map_err(|e| error_chain(&e))
                .inspect(|_| drop(k.unload())),
            Err(e) => Err(e.to_string()),
        },
        Some(p) => match <&mut FEntry>::try_from(p) {
            Ok(f) => f
                .load(PROBE_FN, btf)
                .and_then(|_| f.attach().map(drop))
                .map_err(|e| error_chain(&e))
                .inspect(|_| drop(f.unload())),
            Err(e) => Err(e.to_string()),
        },
    };
    Feature { name, available: result.is_ok(), reason: result.err() }
}

impl Guard {
    /// Probes the kernel and loads what it allows. Never fails: what could not be loaded is
    /// reported as `fallback` with the reason.
    pub fn try_load(cfg: &PreventionSection) -> Self {
        let kernel = kernel_release();
        let active_lsms = std::fs::read_to_string(LSM_LIST).ok().map(|s| s.trim().to_string());
        let all = |mode: Mode, reason: Option<String>| -> Vec<HookState> {
            HOOKS
                .iter()
                .map(|&(hook, program)| {
                    let mode = if mode == Mode::Off || !wanted(cfg, hook) { Mode::Off } else { mode };
                    HookState { hook, program, mode, reason: (mode == Mode::Fallback).then(|| reason.clone()).flatten() }
                })
                .collect()
        };
        let state = |hooks, features| GuardState { kernel: kernel.clone(), active_lsms: active_lsms.clone(), hooks, features, protected_objects: 0 };
        if !cfg.enabled {
            return Self { state: state(all(Mode::Off, None), Vec::new()), active: None };
        }
        let loaded = EbpfLoader::new().load(agent_ebpf::LSM_OBJECT).map_err(|e| error_chain(&e));
        let btf = Btf::from_sys_fs().map_err(|e| error_chain(&e));
        let (mut ebpf, btf) = match (loaded, btf) {
            (Ok(e), Ok(b)) => (e, b),
            (Err(why), _) | (_, Err(why)) => {
                let why = format!("the prevention object did not load: {why}");
                return Self { state: state(all(Mode::Fallback, Some(why)), Vec::new()), active: None };
            }
        };
        let mut features = vec![probe(&mut ebpf, "kprobe", "probe_kprobe", &btf), probe(&mut ebpf, "fentry", "probe_fentry", &btf)];

        // The agent protects itself: in the map before any program runs.
        let own = std::process::id();
        let tgids = ebpf.map_mut("protected_tgids").map(HashMap::<_, u32, u8>::try_from);
        let mut tgids_ok = matches!(tgids, Some(Ok(_)));
        if let Some(Ok(mut m)) = tgids {
            tgids_ok = m.insert(own, 1, 0).is_ok();
        }
        let listed = active_lsms.as_deref().map(lists_bpf);
        let not_listed = match (&active_lsms, listed) {
            (_, Some(true)) => None,
            (Some(l), _) => Some(format!("bpf is not an active LSM ({LSM_LIST}: {l}); boot with lsm=...,bpf")),
            (None, _) => Some(format!("{LSM_LIST} is unreadable (securityfs not mounted?)")),
        };
        let mut hooks = Vec::new();
        let mut lsm_loads: Result<(), String> = Err("no BPF-LSM hook enabled".into());
        for &(hook, program) in &HOOKS {
            let mut st = HookState { hook, program, mode: Mode::Off, reason: None };
            if !wanted(cfg, hook) {
                hooks.push(st);
                continue;
            }
            let prog = ebpf.program_mut(program).ok_or_else(|| format!("program {program} missing from the object"));
            let lsm = prog.and_then(|p| <&mut Lsm>::try_from(p).map_err(|e| e.to_string()));
            let load = lsm.and_then(|l| l.load(hook, &btf).map(|_| l).map_err(|e| format!("the kernel refused the BPF-LSM program: {}", error_chain(&e))));
            if load.is_ok() || lsm_loads.is_err() {
                lsm_loads = load.as_ref().map(drop).map_err(Clone::clone);
            }
            let attached = match (load, &not_listed) {
                (Err(why), _) => Err(why),
                (Ok(_), Some(why)) => Err(why.clone()), // attached it would never run
                (Ok(_), None) if !tgids_ok => Err("could not write protected_tgids".to_string()),
                (Ok(l), None) => l.attach().map(drop).map_err(|e| format!("attach failed: {}", error_chain(&e))),
            };
            match attached {
                Ok(()) => st.mode = Mode::Lsm,
                Err(why) => (st.mode, st.reason) = (Mode::Fallback, Some(why)),
            }
            hooks.push(st);
        }
        let lsm_reason = lsm_loads.err().or(not_listed);
        features.push(Feature { name: "lsm", available: lsm_reason.is_none(), reason: lsm_reason });
        let state = state(hooks, features);
        if !state.lsm_active() {
            return Self { state, active: None };
        }
        let active = Active::new(ebpf).map_err(|e| warn!(error = %e, "prevention maps unavailable; the BPF-LSM hooks still run"));
        let mut guard = Self { active: active.ok(), state };
        guard.refresh();
        guard
    }

    pub fn state(&self) -> &GuardState {
        &self.state
    }

    /// Protects every map and link the agent holds now (call again after it made new ones;
    /// objects it closed are forgotten).
    pub fn refresh(&mut self) {
        let Some(a) = &mut self.active else { return };
        let now = ids::own_objects();
        for &(kind, id) in now.difference(&a.protected) {
            if let Err(e) = a.ids.insert(osprey_protected_id { kind, id }, 1, 0) {
                warn!(kind, id, error = %e, "could not protect a BPF object");
            }
        }
        for &(kind, id) in a.protected.difference(&now) {
            let _ = a.ids.remove(&osprey_protected_id { kind, id });
        }
        a.protected = now;
        self.state.protected_objects = a.protected.len();
    }

    /// Takes every denial the kernel recorded since the last call, logs each and counts it.
    pub fn poll(&mut self, metrics: &Metrics) -> Vec<Denial> {
        let Some(a) = &mut self.active else { return Vec::new() };
        let mut out = Vec::new();
        while let Some(item) = a.denials.next() {
            if let Some(d) = Denial::parse(&item) {
                out.push(d);
            }
        }
        for d in &out {
            metrics.prevention.denied(d.hook);
            warn!(
                hook = d.hook, actor.pid = d.actor_pid, actor.tid = d.actor_tid, actor.comm = %d.actor_comm,
                target.pid = d.target_pid, arg = d.arg, object = d.object,
                "prevented: {} by pid {} ({}) denied", d.hook, d.actor_pid, d.actor_comm
            );
        }
        if let Ok(per_cpu) = a.lost.get(&0, 0) {
            let total: u64 = per_cpu.iter().sum();
            if total > a.lost_seen {
                metrics.prevention.lost(total - a.lost_seen);
                a.lost_seen = total;
            }
        }
        out
    }
}

impl Active {
    fn new(mut ebpf: Ebpf) -> Result<Self, String> {
        let take = |e: &mut Ebpf, name: &str| e.take_map(name).ok_or_else(|| format!("map {name} missing"));
        let denials = RingBuf::try_from(take(&mut ebpf, "denials")?).map_err(|e| e.to_string())?;
        let lost = PerCpuArray::try_from(take(&mut ebpf, "denials_lost")?).map_err(|e| e.to_string())?;
        let ids = HashMap::try_from(take(&mut ebpf, "protected_ids")?).map_err(|e| e.to_string())?;
        Ok(Self { _ebpf: ebpf, denials, lost, lost_seen: 0, ids, protected: BTreeSet::new() })
    }
}

/// Logs what the guard chose, once at startup.
pub fn log_state(state: &GuardState) {
    for h in &state.hooks {
        info!(hook = h.hook, mode = h.mode.name(), reason = h.reason.as_deref().unwrap_or(""), "prevention hook");
    }
    for f in &state.features {
        info!(feature = f.name, available = f.available, reason = f.reason.as_deref().unwrap_or(""), "kernel hook type");
    }
    info!(protected_objects = state.protected_objects, "prevention: {}", state.summary());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_denial_record() {
        let mut d = osprey_denial { hook: dh::OSPREY_DENY_SIGNAL, actor_pid: 42, actor_tid: 43, target_pid: 7, arg: 9, ..Default::default() };
        for (i, c) in b"kill".iter().enumerate() {
            d.comm[i] = *c as _;
        }
        // SAFETY: reading a plain C struct as bytes.
        let bytes = unsafe { std::slice::from_raw_parts((&d as *const osprey_denial).cast::<u8>(), std::mem::size_of_val(&d)) };
        let got = Denial::parse(bytes).unwrap();
        assert_eq!((got.hook, got.actor_pid, got.actor_tid, got.target_pid, got.arg), ("task_kill", 42, 43, 7, 9));
        assert_eq!(got.actor_comm, "kill");
        assert_eq!(Denial::parse(&bytes[..20]), None, "short record");
        d.hook = 99;
        let bytes = unsafe { std::slice::from_raw_parts((&d as *const osprey_denial).cast::<u8>(), std::mem::size_of_val(&d)) };
        assert_eq!(Denial::parse(bytes), None, "unknown hook");
    }

    #[test]
    fn a_disabled_guard_loads_nothing() {
        let g = Guard::try_load(&PreventionSection { enabled: false, ..Default::default() });
        assert!(g.state().hooks.iter().all(|h| h.mode == Mode::Off));
        assert!(g.state().features.is_empty());
    }
}
