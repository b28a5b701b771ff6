//! Prevention (self-protection) with BPF-LSM, where the kernel allows it.
//!
//! [`Guard::try_load`] probes the kernel: is `bpf` among the active LSMs
//! (`/sys/kernel/security/lsm`)? does it accept and attach the programs of
//! `agent_ebpf::LSM_OBJECT`? Where it does, signals and ptrace aimed at the agent and bpf()
//! commands that change its maps or links are denied in the kernel (docs/self-protection.md).
//! Where it does not (no BPF-LSM, or the load is refused: Linux 6.18 on the development machine
//! answers EPERM), each hook is reported in `fallback` mode: the attempt is still seen by the
//! sensor's tracepoints (tamper detection) but not prevented. Never an error: the agent runs
//! either way and says which it got, in its log, its metrics and `osprey status`.
//!
//! The same probe learns whether kprobes and fentry programs load and attach on this kernel, so
//! a run reports which hook types each kernel offered.

mod guard;
mod ids;
mod metrics;

pub use guard::{log_state, Denial, Guard};
pub use metrics::PreventionMetrics;

use serde::{Deserialize, Serialize};

/// `prevention:` in the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PreventionSection {
    /// Load the BPF-LSM programs where the kernel allows it. `false`: every hook is `off`.
    pub enabled: bool,
    /// Deny signals aimed at the agent (except from init and from the agent itself). Under
    /// Kubernetes the runtime's stop signal comes from runc, not init: leave this off there
    /// unless the pod may hang in Terminating (docs/self-protection.md).
    pub signals: bool,
    /// Deny ptrace attach, /proc/PID/mem, pidfd_getfd and process_vm_* on the agent.
    pub ptrace: bool,
    /// Deny bpf() commands of other processes that change the agent's maps or links.
    pub bpf: bool,
}

impl Default for PreventionSection {
    fn default() -> Self {
        Self { enabled: true, signals: true, ptrace: true, bpf: true }
    }
}

/// How a prevention hook is covered on this kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The BPF-LSM program is attached: the operation is denied in the kernel.
    Lsm,
    /// No BPF-LSM here: the operation is detected (tracepoints), not prevented.
    Fallback,
    /// Turned off in the configuration.
    Off,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Lsm, Mode::Fallback, Mode::Off];

    pub fn name(self) -> &'static str {
        match self {
            Mode::Lsm => "lsm",
            Mode::Fallback => "fallback",
            Mode::Off => "off",
        }
    }
}

/// One prevention hook (`task_kill`, `ptrace_access_check`, `bpf`) and its mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookState {
    pub hook: &'static str,
    pub program: &'static str,
    pub mode: Mode,
    /// Why it is not `lsm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Whether a program type loads and attaches on this kernel (`kprobe`, `fentry`, `lsm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What the guard found and chose: reported in the log, the metrics and `osprey status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardState {
    /// `uname -r`.
    pub kernel: String,
    /// The active LSMs (`/sys/kernel/security/lsm`), if readable.
    pub active_lsms: Option<String>,
    pub hooks: Vec<HookState>,
    pub features: Vec<Feature>,
    /// Maps and links protected from other processes' bpf() commands (their kernel ids).
    pub protected_objects: usize,
}

/// The prevention hooks: (LSM hook, program in LSM_OBJECT).
pub const HOOKS: [(&str, &str); 3] =
    [("task_kill", "lsm_task_kill"), ("ptrace_access_check", "lsm_ptrace"), ("bpf", "lsm_bpf")];

impl GuardState {
    /// True when at least one hook denies in the kernel.
    pub fn lsm_active(&self) -> bool {
        self.hooks.iter().any(|h| h.mode == Mode::Lsm)
    }

    pub fn mode_of(&self, hook: &str) -> Option<Mode> {
        self.hooks.iter().find(|h| h.hook == hook).map(|h| h.mode)
    }

    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// One line for the log: `lsm: task_kill, ptrace_access_check, bpf` or
    /// `fallback: no BPF-LSM (reason)`.
    pub fn summary(&self) -> String {
        let names = |m: Mode| self.hooks.iter().filter(|h| h.mode == m).map(|h| h.hook).collect::<Vec<_>>().join(", ");
        let mut parts = Vec::new();
        if self.lsm_active() {
            parts.push(format!("lsm: {}", names(Mode::Lsm)));
        }
        let fallback: Vec<&HookState> = self.hooks.iter().filter(|h| h.mode == Mode::Fallback).collect();
        if let Some(first) = fallback.first() {
            let why = first.reason.as_deref().unwrap_or("unknown");
            parts.push(format!("fallback: no BPF-LSM for {} ({why})", names(Mode::Fallback)));
        }
        if self.hooks.iter().any(|h| h.mode == Mode::Off) {
            parts.push(format!("off: {}", names(Mode::Off)));
        }
        let feats: Vec<String> =
            self.features.iter().map(|f| format!("{}={}", f.name, if f.available { "yes" } else { "no" })).collect();
        format!("{}; kernel {} hook types: {}", parts.join("; "), self.kernel, feats.join(" "))
    }
}

/// The running kernel's release (`uname -r`).
pub fn kernel_release() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_else(|_| "unknown".into())
}

/// Whether `bpf` is in a `/sys/kernel/security/lsm` list (comma-separated).
pub fn lists_bpf(lsms: &str) -> bool {
    lsms.trim().split(',').any(|l| l.trim() == "bpf")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(modes: &[Mode]) -> GuardState {
        GuardState {
            kernel: "6.1.0".into(),
            active_lsms: None,
            hooks: HOOKS
                .iter()
                .zip(modes)
                .map(|(&(hook, program), &mode)| HookState {
                    hook,
                    program,
                    mode,
                    reason: (mode == Mode::Fallback).then(|| "bpf is not an active LSM".into()),
                })
                .collect(),
            features: vec![Feature { name: "kprobe", available: true, reason: None }],
            protected_objects: 0,
        }
    }

    #[test]
    fn reads_the_active_lsm_list() {
        assert!(lists_bpf("lockdown,capability,bpf\n"));
        assert!(lists_bpf("bpf"));
        assert!(!lists_bpf("lockdown,capability,landlock,yama,apparmor"));
        assert!(!lists_bpf("bpfish"));
    }

    #[test]
    fn the_summary_names_each_mode() {
        let s = state(&[Mode::Lsm, Mode::Lsm, Mode::Lsm]);
        assert!(s.lsm_active());
        assert!(s.summary().starts_with("lsm: task_kill, ptrace_access_check, bpf;"), "{}", s.summary());
        let s = state(&[Mode::Fallback, Mode::Fallback, Mode::Off]);
        assert!(!s.lsm_active());
        let sum = s.summary();
        assert!(sum.contains("fallback: no BPF-LSM for task_kill, ptrace_access_check (bpf is not an active LSM)"), "{sum}");
        assert!(sum.contains("off: bpf") && sum.contains("kprobe=yes"), "{sum}");
        assert_eq!(s.mode_of("bpf"), Some(Mode::Off));
    }

    #[test]
    fn state_serialises_for_osprey_status() {
        let v = serde_json::to_value(state(&[Mode::Lsm, Mode::Fallback, Mode::Off])).unwrap();
        assert_eq!(v["hooks"][0]["mode"], "lsm");
        assert_eq!(v["hooks"][1]["mode"], "fallback");
        assert!(v["hooks"][0].get("reason").is_none());
        assert_eq!(v["features"][0]["name"], "kprobe");
    }
}
