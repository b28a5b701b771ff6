//! Processes: identity, the process table with lineage, and enrichment (users, containers,
//! hashes of executed files).

pub mod container;
pub mod hash;
pub mod identity;
mod procread;
pub mod table;
pub mod users;

pub use identity::{EntityIds, Host};
pub use table::{Applied, ProcKey, Process, ProcessTable, TableConfig};
