//! Errors of the detection engine. Every problem in a rule file names the file, line, column and
//! reason, so `osprey rules check` prints one `file:line:column: reason` line per problem.

use std::path::{Path, PathBuf};

use thiserror::Error;

use super::yaml::{Located, Pos};

/// A rule, correlation or IoC file that could not be loaded (or one document of it).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{}:{line}:{column}: {reason}", path.display())]
pub struct RuleError {
    pub path: PathBuf,
    /// 1-based; 0 when the problem is with the file as a whole (unreadable, too large).
    pub line: usize,
    /// 1-based; 0 when the problem is with the file as a whole.
    pub column: usize,
    pub reason: String,
}

impl RuleError {
    pub fn at(path: &Path, pos: Pos, reason: impl Into<String>) -> Self {
        Self { path: path.to_owned(), line: pos.line, column: pos.column, reason: reason.into() }
    }

    pub fn whole_file(path: &Path, reason: impl Into<String>) -> Self {
        Self { path: path.to_owned(), line: 0, column: 0, reason: reason.into() }
    }

    pub(crate) fn from_located(path: &Path, e: Located) -> Self {
        Self::at(path, e.pos, e.msg)
    }
}

/// A rule that is valid Sigma but cannot apply to what Osprey observes (another product, a log
/// service, a category Osprey does not produce). It is reported, never an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotApplicable {
    pub path: PathBuf,
    pub line: usize,
    pub rule_id: Option<String>,
    pub title: String,
    pub reason: String,
}

impl std::fmt::Display for NotApplicable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: not applicable: {}: {}", self.path.display(), self.line, self.title, self.reason)
    }
}

/// Something worth telling the rule author that does not stop the rule from loading
/// (an unknown field name that is looked up verbatim, `all` on a single value, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleWarning {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for RuleWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}: warning: {}", self.path.display(), self.line, self.column, self.message)
    }
}
