//! Finding and reading rule files: `.yml`/`.yaml` under each given path (recursively), where
//! `*.ioc.yaml`/`*.ioc.yml` are IoC lists and everything else is Sigma.

use std::path::{Path, PathBuf};

use super::correlation::{self, CorrelationDoc, CorrelationOutcome};
use super::error::RuleError;
use super::ioc::{self, IocList};
use super::sigma::{self, expand_collection, RuleDoc, RuleOutcome, Skipped};
use super::yaml::{self, Located, Pos};

/// Largest rule file read.
const MAX_FILE_BYTES: u64 = 32 << 20;
/// Deepest directory recursion (guards against symlink loops).
const MAX_DIR_DEPTH: usize = 32;

/// Everything one file defines.
#[derive(Debug, Default)]
pub(crate) struct FileDocs {
    pub rules: Vec<RuleDoc>,
    pub correlations: Vec<CorrelationDoc>,
    pub iocs: Vec<IocList>,
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<(Pos, String)>,
}

pub(crate) fn is_ioc_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".ioc.yaml") || name.ends_with(".ioc.yml")
}

fn is_rule_file(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.') && (name.ends_with(".yml") || name.ends_with(".yaml"))
}

/// The rule files under `paths` (a path may be a file), sorted, each once. Unreadable
/// directories are reported as errors.
pub(crate) fn find_files(paths: &[PathBuf], errors: &mut Vec<RuleError>) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
        if depth > MAX_DIR_DEPTH {
            errors.push(RuleError::whole_file(dir, "directories nested too deeply (symlink loop?)"));
            return;
        }
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                errors.push(RuleError::whole_file(dir, format!("cannot read directory: {e}")));
                return;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            let hidden = p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, depth + 1, out, errors);
            } else if p.is_file() && is_rule_file(&p) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, 0, &mut out, errors);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            errors.push(RuleError::whole_file(p, "no such file or directory"));
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Reads a file as text, within the size limit.
pub(crate) fn read(path: &Path) -> Result<String, RuleError> {
    let meta = std::fs::metadata(path).map_err(|e| RuleError::whole_file(path, format!("cannot read: {e}")))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(RuleError::whole_file(path, format!("larger than {} MiB", MAX_FILE_BYTES >> 20)));
    }
    let bytes = std::fs::read(path).map_err(|e| RuleError::whole_file(path, format!("cannot read: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let before = e.as_bytes().get(..e.utf8_error().valid_up_to()).unwrap_or(&[]);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        RuleError { path: path.to_owned(), line, column: col, reason: "not valid UTF-8".into() }
    })
}

/// Parses one file's text. A file is all or nothing: any error rejects the whole file, and every
/// document's first error is reported.
pub(crate) fn parse_file(path: &Path, text: &str) -> Result<FileDocs, Vec<RuleError>> {
    let docs = yaml::parse(text).map_err(|e| vec![RuleError::from_located(path, e)])?;
    let mut out = FileDocs::default();
    let mut errors = Vec::new();
    if is_ioc_file(path) {
        for d in &docs {
            if d.is_null() {
                continue;
            }
            match ioc::parse(d, path, &mut out.warnings) {
                Ok(l) => out.iocs.push(l),
                Err(e) => errors.push(RuleError::from_located(path, e)),
            }
        }
    } else {
        let docs = expand_collection(docs).map_err(|e| vec![RuleError::from_located(path, e)])?;
        for d in &docs {
            if let Err(e) = parse_sigma_doc(d, path, &mut out) {
                errors.push(RuleError::from_located(path, e));
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn parse_sigma_doc(d: &yaml::Node, path: &Path, out: &mut FileDocs) -> Result<(), Located> {
    if d.get("correlation").is_some() {
        match correlation::parse(d, path, &mut out.warnings)? {
            CorrelationOutcome::Ok(c) => out.correlations.push(*c),
            CorrelationOutcome::NotApplicable(meta, pos, reason) => {
                out.skipped.push(Skipped { meta: *meta, pos, reason })
            }
        }
    } else if d.get("detection").is_some() {
        match sigma::parse_rule(d, path, &mut out.warnings)? {
            RuleOutcome::Rule(r) => out.rules.push(*r),
            RuleOutcome::NotApplicable(s) => out.skipped.push(*s),
        }
    } else if d.get("filter").is_some() {
        let meta = sigma::meta(d, path, &mut out.warnings)?;
        out.skipped.push(Skipped { meta, pos: d.pos, reason: "Sigma filter documents are not supported yet".into() });
    } else {
        return Err(Located::new(d.pos, "neither a rule (`detection:`) nor a correlation (`correlation:`)"));
    }
    Ok(())
}
