//! Detection: Sigma rules, correlations and IoC lists, compiled for speed, and the alerts they
//! produce (DESIGN.md "Rules").
//!
//! ```text
//! RuleSet::load(dirs) ──► RuleSet (immutable, Arc-shared; reload() keeps broken files' old version)
//!                              │
//! event (impl EventFields) ──► Detector::evaluate ──► Vec<Alert>  (rule, IoC and correlation hits)
//!                              │  category index → literal prefilter → full match
//!                              └► correlation state (bounded), Detector::flush for closing windows
//! ```
//!
//! * [`fields`]: the event model rules see ([`EventFields`]); [`json`]: [`JsonEvent`] over ECS JSON.
//! * [`mapping`]: Sigma field names → ECS (docs/sigma-fields.md).
//! * [`sigma`]: rule documents, modifiers, conditions. [`correlation`]: correlation rules.
//! * [`ioc`]: IoC lists (docs/ioc-format.md).
//! * [`RuleSet`], [`Detector`], [`Alert`]: what the pipeline uses.

pub mod alert;
pub mod compile;
pub mod correlation;
pub mod detector;
pub mod error;
pub mod fields;
pub mod flat;
pub mod ioc;
pub mod json;
pub mod mapping;
pub mod net;
pub mod pattern;
pub mod ruleset;
pub mod sigma;
pub mod yaml;

mod eval;
mod loader;
mod prefilter;

#[cfg(test)]
mod tests;

pub use alert::{Alert, AlertKind, CorrelationHit, Tactic, Technique, Threat};
pub use correlation::engine::{Limits as CorrelationLimits, Stats as CorrelationStats};
pub use detector::Detector;
pub use error::{NotApplicable, RuleError, RuleWarning};
pub use eval::Scratch;
pub use fields::{Category, EventFields, Field, FieldId, FieldValue, Known, Scalar};
pub use ioc::IocHit;
pub use json::JsonEvent;
pub use ruleset::{LoadReport, RuleSet};
pub use sigma::{Level, ResponseAction, RuleMeta, Status};
