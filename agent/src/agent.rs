//! The agent as a library: start (load + attach) synchronously, then run the pipeline until told
//! to stop. The `osprey` binary and the integration tests both drive it through this type.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    config::Config,
    detect::RuleSet,
    event::Ecs,
    metrics::Metrics,
    output::Sink,
    pipeline::{self, Summary},
    process::Host,
    respond::{block::ExecBlocker, Responder},
    lsm::{Guard, GuardState},
    sensor::{ProbeStatus, Sensor, SensorError},
};

pub struct Agent {
    sensor: Sensor,
    /// Prevention with BPF-LSM where the kernel allows it (crate::lsm); run() lends it to a task.
    guard: Option<Guard>,
    guard_state: GuardState,
    responder: Option<Responder>,
    protect: Option<crate::protect::Protector>,
    ecs: Ecs,
    metrics: Arc<Metrics>,
    rules: Arc<RuleSet>,
    config: Config,
}

impl Agent {
    /// Loads the BPF object and attaches every hook; events are buffered in the kernel from here.
    pub fn start(config: Config) -> Result<Self, SensorError> {
        Self::start_with(config, Arc::new(Metrics::new()))
    }

    /// The same, reporting into `metrics` (created earlier, e.g. to serve /healthz while the
    /// programs load). Rules are loaded here too: broken files are logged, good ones run.
    pub fn start_with(config: Config, metrics: Arc<Metrics>) -> Result<Self, SensorError> {
        let mut sensor = Sensor::start(&config.sensor())?;
        let enforce = config.response.mode == crate::respond::policy::Mode::Enforce;
        let blocker = exec_blocker(&mut sensor).map(|b| b.with_guard(&config.response.bpffs_dir, enforce));
        let responder = Some(Responder::new(config.response.clone(), blocker));
        for p in sensor.probes() {
            metrics.probe(p.program, p.hook, p.attached);
        }
        // After the sensor and the responder: the guard protects every map and link they made.
        let guard = Guard::try_load(&config.prevention);
        let guard_state = guard.state().clone();
        crate::lsm::log_state(&guard_state);
        metrics.prevention.set_state(&guard_state);
        let ecs = Ecs::new(Host::detect(), pipeline::boot_wall_ns());
        let rules = crate::rules::load(&config.rules, &metrics);
        let protect = protector(&mut sensor, &config, &metrics);
        Ok(Self { sensor, guard: Some(guard), guard_state, responder, protect, ecs, metrics, rules, config })
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    pub fn ecs(&self) -> &Ecs {
        &self.ecs
    }

    pub fn probes(&self) -> &[ProbeStatus] {
        self.sensor.probes()
    }

    pub fn sensor(&self) -> &Sensor {
        &self.sensor
    }

    /// Which prevention hooks run in which mode, and which hook types this kernel offers.
    pub fn guard_state(&self) -> &GuardState {
        &self.guard_state
    }

    /// Runs the pipeline into `sinks` until `stop` turns true; everything already in the kernel
    /// buffers at that moment is still delivered. Detaches when the agent is dropped.
    pub async fn run(&mut self, sinks: Vec<Box<dyn Sink>>, stop: watch::Receiver<bool>) -> Result<Summary, SensorError> {
        let mut cfg = self.config.pipeline();
        cfg.prevention = serde_json::to_value(&self.guard_state).ok();
        let guard_task = self.guard.take().map(|g| tokio::spawn(guard_loop(g, self.metrics.clone(), stop.clone())));
        let rules_cfg = self.config.rules.clone();
        let watcher = (rules_cfg.reload && !rules_cfg.paths.is_empty()).then(|| {
            let (tx, rx) = watch::channel(self.rules.clone());
            let task = tokio::spawn(crate::rules::watch_rules(rules_cfg, self.rules.clone(), self.metrics.clone(), tx));
            (task, rx)
        });
        let (task, rx) = watcher.map_or((None, None), |(t, r)| (Some(t), Some(r)));
        let control = match self.config.control.enabled {
            true => match crate::control::serve(&self.config.control.socket, self.config.recorder.enabled.then(|| self.config.recorder.path.clone())) {
                Ok((rx, server)) => Some((rx, server)),
                Err(e) => {
                    tracing::warn!(error = %e, "no control socket: osprey ps/tree/status will not reach this agent");
                    None
                }
            },
            false => None,
        };
        let (control_rx, control_task) = control.map_or((None, None), |(r, t)| (Some(r), Some(t)));
        let res = pipeline::run(
            &mut self.sensor,
            &cfg,
            self.ecs.clone(),
            sinks,
            self.metrics.clone(),
            self.rules.clone(),
            rx,
            control_rx,
            self.responder.take(),
            self.protect.take(),
            stop,
        )
        .await;
        for t in [task, control_task].into_iter().flatten() {
            t.abort();
        }
        if let Some(t) = guard_task {
            self.guard = t.await.ok();
        }
        if self.config.control.enabled {
            let _ = std::fs::remove_file(&self.config.control.socket);
        }
        res
    }
}

/// Self-protection (absent from the bare benchmark object, which has no prot_* maps).
fn protector(sensor: &mut Sensor, config: &Config, metrics: &Metrics) -> Option<crate::protect::Protector> {
    if config.sensor.bare_hooks {
        return None;
    }
    let setup = crate::protect::Setup {
        section: &config.self_protection,
        enforce_mode: config.response.mode == crate::respond::policy::Mode::Enforce,
        config_file: config.self_protection.config_file.as_deref(),
        rule_paths: &config.rules.paths,
        bpffs_dir: &config.response.bpffs_dir,
    };
    crate::protect::Protector::new(sensor, setup, &metrics.registry)
        .map_err(|e| tracing::error!(error = %e, "self-protection unavailable"))
        .ok()
}

/// Drains the guard's denials and re-protects the agent's BPF objects (new ones appear, e.g.
/// an isolation object) until `stop`; hands the guard back so it stays attached until the agent
/// is dropped.
async fn guard_loop(mut guard: Guard, metrics: Arc<Metrics>, mut stop: watch::Receiver<bool>) -> Guard {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
    let mut n: u64 = 0;
    loop {
        let stopped = tokio::select! {
            _ = tick.tick() => false,
            changed = stop.changed() => changed.is_err(), // the sender is gone: stop too
        };
        guard.poll(&metrics);
        n += 1;
        if n.is_multiple_of(8) {
            guard.refresh();
        }
        if stopped || *stop.borrow() {
            return guard;
        }
    }
}

/// The exec block list maps of the sensor's object (absent from the bare benchmark object).
fn exec_blocker(sensor: &mut Sensor) -> Option<ExecBlocker> {
    let maps = (sensor.take_map("block_inodes"), sensor.take_map("block_paths"), sensor.take_map("block_state"));
    let (Some(inodes), Some(paths), Some(state)) = maps else { return None };
    ExecBlocker::new(inodes, paths, state)
        .map_err(|e| tracing::warn!(error = %e, "exec block list unavailable"))
        .ok()
}
