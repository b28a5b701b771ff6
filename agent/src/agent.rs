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
    sensor::{ProbeStatus, Sensor, SensorError},
};

pub struct Agent {
    sensor: Sensor,
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
        let ecs = Ecs::new(Host::detect(), pipeline::boot_wall_ns());
        let rules = crate::rules::load(&config.rules, &metrics);
        let protect = protector(&mut sensor, &config, &metrics);
        Ok(Self { sensor, responder, protect, ecs, metrics, rules, config })
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

    /// Runs the pipeline into `sinks` until `stop` turns true; everything already in the kernel
    /// buffers at that moment is still delivered. Detaches when the agent is dropped.
    pub async fn run(&mut self, sinks: Vec<Box<dyn Sink>>, stop: watch::Receiver<bool>) -> Result<Summary, SensorError> {
        let cfg = self.config.pipeline();
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

/// The exec block list maps of the sensor's object (absent from the bare benchmark object).
fn exec_blocker(sensor: &mut Sensor) -> Option<ExecBlocker> {
    let maps = (sensor.take_map("block_inodes"), sensor.take_map("block_paths"), sensor.take_map("block_state"));
    let (Some(inodes), Some(paths), Some(state)) = maps else { return None };
    ExecBlocker::new(inodes, paths, state)
        .map_err(|e| tracing::warn!(error = %e, "exec block list unavailable"))
        .ok()
}
