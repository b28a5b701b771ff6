//! Osprey: an eBPF endpoint detection and response agent for Linux.
//!
//! Data flow (DESIGN.md): kernel hooks → per-CPU ring buffers → [`sensor`] readers →
//! [`decode`] → [`reorder`] → [`event`] → [`output`] sinks, wired in [`pipeline`].

pub mod agent;
pub mod alerting;
pub mod cli;
pub mod config;
pub mod control;
pub mod decode;
pub mod detect;
pub mod enrich;
pub mod event;
pub mod fleet;
pub mod health;
pub mod heap;
pub mod lsm;
pub mod metrics;
pub mod net;
pub mod output;
pub mod pipeline;
pub mod process;
pub mod recorder;
pub mod protect;
pub mod reorder;
pub mod respond;
pub mod rules;
pub mod sensor;

pub use agent::Agent;
