//! The guard's metrics, registered in the agent's registry (docs/metrics.md).

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::{GuardState, Mode, HOOKS};

pub struct PreventionMetrics {
    hooks: IntGaugeVec,
    features: IntGaugeVec,
    denials: IntCounterVec,
    lost: IntCounter,
}

impl PreventionMetrics {
    pub fn new(reg: &Registry) -> Self {
        let hooks = IntGaugeVec::new(
            Opts::new("osprey_prevention_hooks", "1 for the mode each prevention hook runs in: lsm (denied in the kernel), fallback (detected, not prevented: no BPF-LSM), off (configuration)"),
            &["hook", "mode"],
        )
        .expect("valid metric");
        let features = IntGaugeVec::new(
            Opts::new("osprey_kernel_hook_type_available", "1 when this kernel loads and attaches programs of the type (kprobe, fentry, lsm), 0 when it refuses them"),
            &["type"],
        )
        .expect("valid metric");
        let denials = IntCounterVec::new(
            Opts::new("osprey_prevention_denials_total", "Operations on the agent denied by a BPF-LSM hook, by hook"),
            &["hook"],
        )
        .expect("valid metric");
        let lost = IntCounter::new("osprey_prevention_denials_lost_total", "Denials not reported individually: their ring buffer was full (each was still denied)").expect("valid metric");
        for c in [Box::new(hooks.clone()) as Box<dyn prometheus::core::Collector>, Box::new(features.clone()), Box::new(denials.clone()), Box::new(lost.clone())] {
            reg.register(c).expect("unique metric");
        }
        for (hook, _) in HOOKS {
            denials.with_label_values(&[hook]);
        }
        Self { hooks, features, denials, lost }
    }

    /// Publishes what the guard chose.
    pub fn set_state(&self, state: &GuardState) {
        for h in &state.hooks {
            for m in Mode::ALL {
                self.hooks.with_label_values(&[h.hook, m.name()]).set((h.mode == m) as i64);
            }
        }
        for f in &state.features {
            self.features.with_label_values(&[f.name]).set(f.available as i64);
        }
    }

    pub fn denied(&self, hook: &str) {
        self.denials.with_label_values(&[hook]).inc();
    }

    pub fn denials(&self, hook: &str) -> u64 {
        self.denials.with_label_values(&[hook]).get()
    }

    pub fn lost(&self, n: u64) {
        self.lost.inc_by(n);
    }
}
