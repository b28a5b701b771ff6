//! The agent as a library: start (load + attach) synchronously, then run the pipeline until told
//! to stop. The `osprey` binary and the integration tests both drive it through this type.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    config::Config,
    event::Ecs,
    metrics::Metrics,
    output::Sink,
    pipeline::{self, Summary},
    process::Host,
    sensor::{ProbeStatus, Sensor, SensorError},
};

pub struct Agent {
    sensor: Sensor,
    ecs: Ecs,
    metrics: Arc<Metrics>,
    config: Config,
}

impl Agent {
    /// Loads the BPF object and attaches every hook; events are buffered in the kernel from here.
    pub fn start(config: Config) -> Result<Self, SensorError> {
        let sensor = Sensor::start(&config.sensor())?;
        let ecs = Ecs::new(Host::detect(), pipeline::boot_wall_ns());
        Ok(Self { sensor, ecs, metrics: Arc::new(Metrics::new()), config })
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
        pipeline::run(&mut self.sensor, &cfg, self.ecs.clone(), sinks, self.metrics.clone(), stop).await
    }
}
