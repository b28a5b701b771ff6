//! Processes: identity now; the table with lineage and enrichment builds on it.

pub mod identity;

pub use identity::{EntityIds, Host};
