//! Rule sets in the daemon: loading with file:line errors, hot reload (file changes and SIGHUP)
//! with an atomic swap that keeps a broken file's previous version running, and the offline
//! `osprey rules check` / `osprey rules test` commands.

use std::{
    io::BufRead,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::{
    detect::{Detector, JsonEvent, LoadReport, RuleSet},
    metrics::Metrics,
};

/// `rules:` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RulesSection {
    /// Directories (or files) of Sigma rules and *.ioc.yaml lists.
    pub paths: Vec<PathBuf>,
    /// Reload when a rule file changes (and on SIGHUP).
    pub reload: bool,
    /// How often rule files are checked for changes.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// A rule firing again on the same process within this raises no new alert: the repeat is
    /// counted, and the next alert after it carries the number (`osprey.alert.repeats`). `0s`:
    /// every hit is an alert.
    #[serde(with = "humantime_serde")]
    pub repeat_window: Duration,
}

impl Default for RulesSection {
    fn default() -> Self {
        Self { paths: Vec::new(), reload: true, reload_interval: Duration::from_millis(500), repeat_window: Duration::from_secs(60) }
    }
}

/// Logs a load report: every broken file with file:line:column and reason.
pub fn log_report(report: &LoadReport) {
    for e in &report.errors {
        error!("rule error: {e}");
    }
    for p in &report.kept_previous {
        warn!(file = %p.display(), "rule file is broken now: its previous version keeps running");
    }
    for n in &report.not_applicable {
        info!("rule not applicable: {n}");
    }
    info!(
        files = report.files,
        rules = report.rules,
        correlations = report.correlations,
        ioc_lists = report.ioc_lists,
        errors = report.errors.len(),
        "rules loaded"
    );
}

/// Loads the configured rules (an empty set when none are configured).
pub fn load(cfg: &RulesSection, metrics: &Metrics) -> Arc<RuleSet> {
    let (set, report) = RuleSet::load(&cfg.paths);
    log_report(&report);
    metrics.rules_loaded(report.rules + report.correlations);
    Arc::new(set)
}

/// Every rule file with its modification time and size: a change in any is a reason to reload.
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, SystemTime, u64)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, SystemTime, u64)>) {
        let Ok(md) = std::fs::metadata(p) else { return };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(p) {
                let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                entries.sort();
                for e in entries {
                    walk(&e, out);
                }
            }
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push((p.to_path_buf(), md.modified().unwrap_or(SystemTime::UNIX_EPOCH), md.len()));
        }
    }
    let mut out = Vec::new();
    for p in paths {
        walk(p, &mut out);
    }
    out
}

/// Watches the rule files (and SIGHUP) and publishes each successfully reloaded set. A file that
/// fails to parse keeps its previous version (the engine's reload does that) and is reported.
pub async fn watch_rules(
    cfg: RulesSection,
    mut current: Arc<RuleSet>,
    metrics: Arc<Metrics>,
    tx: watch::Sender<Arc<RuleSet>>,
) {
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!(error = %e, "no SIGHUP handler: rules reload on file changes only");
            None
        }
    };
    let mut seen = fingerprint(&cfg.paths);
    let mut tick = tokio::time::interval(cfg.reload_interval);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = fingerprint(&cfg.paths);
        if !forced && now == seen {
            continue;
        }
        seen = now;
        let previous = current.clone();
        let Ok((set, report)) = tokio::task::spawn_blocking(move || previous.reload()).await else {
            metrics.rules_reloaded(false);
            continue;
        };
        log_report(&report);
        metrics.rules_reloaded(report.is_ok());
        metrics.rules_loaded(report.rules + report.correlations);
        current = Arc::new(set);
        if tx.send(current.clone()).is_err() {
            return;
        }
    }
}

/// `osprey rules check PATH...`: one line per problem; Ok(false) when any file is broken.
pub fn check(paths: &[PathBuf], out: &mut impl std::io::Write) -> std::io::Result<bool> {
    let (_, report) = RuleSet::load(paths);
    for e in &report.errors {
        writeln!(out, "{e}")?;
    }
    for n in &report.not_applicable {
        writeln!(out, "not applicable: {n}")?;
    }
    for w in &report.warnings {
        writeln!(out, "warning: {w}")?;
    }
    writeln!(
        out,
        "{} files, {} rules, {} correlations, {} IoC lists, {} errors",
        report.files,
        report.rules,
        report.correlations,
        report.ioc_lists,
        report.errors.len()
    )?;
    Ok(report.is_ok())
}

/// `osprey rules test --events FILE`: replays recorded ECS JSON lines through the rules and
/// writes one JSON line per alert. Returns the number of alerts.
pub fn test_events(paths: &[PathBuf], events: &Path, out: &mut impl std::io::Write) -> anyhow::Result<usize> {
    let (set, report) = RuleSet::load(paths);
    if !report.is_ok() {
        for e in &report.errors {
            eprintln!("{e}");
        }
    }
    let mut det = Detector::new(Arc::new(set));
    let file = std::fs::File::open(events).map_err(|e| anyhow::anyhow!("{}: {e}", events.display()))?;
    let mut alerts = Vec::new();
    let mut n = 0;
    let mut last_ns = 0;
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let doc: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| anyhow::anyhow!("{}:{}: not an ECS JSON event: {e}", events.display(), i + 1))?;
        let ev = JsonEvent::new(&doc);
        det.evaluate(&ev, &mut alerts);
        last_ns = crate::detect::EventFields::timestamp_ns(&ev).unwrap_or(last_ns);
        for a in alerts.drain(..).filter(|a| a.standalone) {
            n += 1;
            writeln!(out, "{}", alert_line(&a, Some(i + 1)))?;
        }
    }
    // close every correlation window
    det.flush(last_ns.saturating_add(86_400 * 1_000_000_000), &mut alerts);
    for a in alerts.drain(..).filter(|a| a.standalone) {
        n += 1;
        writeln!(out, "{}", alert_line(&a, None))?;
    }
    Ok(n)
}

fn alert_line(a: &crate::detect::Alert, line: Option<usize>) -> serde_json::Value {
    serde_json::json!({
        "rule": {"id": a.rule.id, "name": a.rule.title},
        "event": {"kind": "alert", "severity": a.severity()},
        "line": line,
    })
}
