//! Sigma rule documents (specification v2): metadata, logsource, detection, and Osprey's
//! `response:` extension. Correlation documents are read by [`crate::detect::correlation`].

pub mod condition;
pub mod detection;
pub mod modifiers;

use std::path::{Path, PathBuf};

use super::alert::{threat_from_tags, Threat};
use super::fields::Category;
use super::yaml::{Located, Node, Pos, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        [Level::Informational, Level::Low, Level::Medium, Level::High, Level::Critical]
            .into_iter()
            .find(|l| l.name() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Stable,
    Test,
    Experimental,
    Deprecated,
    Unsupported,
}

impl Status {
    fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "stable" => Status::Stable,
            "test" => Status::Test,
            "experimental" => Status::Experimental,
            "deprecated" => Status::Deprecated,
            "unsupported" => Status::Unsupported,
            _ => return None,
        })
    }
}

/// Osprey's `response:` actions (carried out by the responder).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseAction {
    /// SIGKILL the matched process.
    Kill,
    /// SIGKILL the process and all its descendants.
    KillTree,
    /// Add the executable to the in-kernel exec block list.
    BlockExec,
    /// Cut the process's cgroup (pod) off the network.
    Isolate,
    /// Move the file involved to quarantine.
    Quarantine,
    /// SIGSTOP the process for an analyst to inspect.
    Suspend,
}

impl ResponseAction {
    pub const ALL: [ResponseAction; 6] = [
        ResponseAction::Kill,
        ResponseAction::KillTree,
        ResponseAction::BlockExec,
        ResponseAction::Isolate,
        ResponseAction::Quarantine,
        ResponseAction::Suspend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ResponseAction::Kill => "kill",
            ResponseAction::KillTree => "kill_tree",
            ResponseAction::BlockExec => "block_exec",
            ResponseAction::Isolate => "isolate",
            ResponseAction::Quarantine => "quarantine",
            ResponseAction::Suspend => "suspend",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogSource {
    pub product: Option<String>,
    pub category: Option<String>,
    pub service: Option<String>,
}

/// What an alert carries about the rule that fired.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleMeta {
    pub id: Option<String>,
    pub name: Option<String>,
    pub title: String,
    pub status: Option<Status>,
    pub description: Option<String>,
    pub references: Vec<String>,
    pub author: Option<String>,
    pub date: Option<String>,
    pub modified: Option<String>,
    pub tags: Vec<String>,
    pub level: Option<Level>,
    pub falsepositives: Vec<String>,
    pub fields: Vec<String>,
    pub response: Vec<ResponseAction>,
    pub threat: Threat,
    pub logsource: LogSource,
    /// The file and line of the document.
    pub path: PathBuf,
    pub line: usize,
}

impl RuleMeta {
    /// How other rules and reports refer to this one: its id, else its name, else its title.
    pub fn key(&self) -> &str {
        self.id.as_deref().or(self.name.as_deref()).unwrap_or(&self.title)
    }
}

fn opt_str(doc: &Node, key: &str) -> Result<Option<String>, Located> {
    match doc.get(key) {
        None => Ok(None),
        Some(n) if n.is_null() => Ok(None),
        Some(n) => n
            .scalar_text()
            .map(Some)
            .ok_or_else(|| Located::new(n.pos, format!("`{key}` must be a string, not {}", n.kind()))),
    }
}

fn list(doc: &Node, key: &str) -> Result<Vec<String>, Located> {
    doc.get(key).map_or(Ok(Vec::new()), |n| n.string_list(key))
}

/// Reads the metadata shared by rules, correlations and IoC lists. `warnings` collects
/// non-fatal remarks.
pub fn meta(doc: &Node, path: &Path, warnings: &mut Vec<(Pos, String)>) -> Result<RuleMeta, Located> {
    let title_node = doc.get("title").ok_or_else(|| Located::new(doc.pos, "missing `title`"))?;
    let title = title_node.scalar_text().ok_or_else(|| Located::new(title_node.pos, "`title` must be a string"))?;
    if title.trim().is_empty() {
        return Err(Located::new(title_node.pos, "`title` is empty"));
    }
    let level = match doc.get("level") {
        None => None,
        Some(n) if n.is_null() => None,
        Some(n) => {
            let s = n.expect_str("`level`")?;
            Some(Level::parse(s).ok_or_else(|| {
                Located::new(n.pos, format!("unknown level `{s}` (informational, low, medium, high, critical)"))
            })?)
        }
    };
    let status = match doc.get("status") {
        None => None,
        Some(n) if n.is_null() => None,
        Some(n) => {
            let s = n.expect_str("`status`")?;
            Some(Status::parse(s).ok_or_else(|| {
                Located::new(
                    n.pos,
                    format!("unknown status `{s}` (stable, test, experimental, deprecated, unsupported)"),
                )
            })?)
        }
    };
    let tags = list(doc, "tags")?;
    if let Some(n) = doc.get("tags") {
        for t in &tags {
            if t.is_empty() || !t.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)) {
                warnings.push((n.pos, format!("tag `{t}` should be lowercase letters, digits, `.`, `_` and `-`")));
            }
        }
    }
    let mut response = Vec::new();
    if let Some(n) = doc.get("response") {
        let items: Vec<&Node> = match &n.value {
            Value::Seq(items) => items.iter().collect(),
            Value::Null => Vec::new(),
            _ => vec![n],
        };
        for it in items {
            let s = it.expect_str("a response action")?;
            let a = ResponseAction::from_name(s).ok_or_else(|| {
                let known: Vec<&str> = ResponseAction::ALL.iter().map(|a| a.name()).collect();
                Located::new(it.pos, format!("unknown response action `{s}` (one of {})", known.join(", ")))
            })?;
            if !response.contains(&a) {
                response.push(a);
            }
        }
    }
    let logsource = match doc.get("logsource") {
        None => LogSource::default(),
        Some(ls) => {
            if ls.as_map().is_none() {
                return Err(Located::new(ls.pos, "`logsource` must be a map"));
            }
            LogSource {
                product: opt_str(ls, "product")?,
                category: opt_str(ls, "category")?,
                service: opt_str(ls, "service")?,
            }
        }
    };
    Ok(RuleMeta {
        id: opt_str(doc, "id")?,
        name: opt_str(doc, "name")?,
        title,
        status,
        description: opt_str(doc, "description")?,
        references: list(doc, "references")?,
        author: opt_str(doc, "author")?,
        date: opt_str(doc, "date")?,
        modified: opt_str(doc, "modified")?,
        threat: threat_from_tags(&tags),
        tags,
        level,
        falsepositives: list(doc, "falsepositives")?,
        fields: list(doc, "fields")?,
        response,
        logsource,
        path: path.to_owned(),
        line: doc.pos.line,
    })
}

/// The category a logsource selects, or why the rule cannot apply to Osprey's events.
pub fn applicable_category(ls: &LogSource) -> Result<Category, String> {
    if let Some(p) = &ls.product {
        if p != "linux" {
            return Err(format!("logsource product `{p}`: Osprey observes Linux"));
        }
    }
    if let Some(s) = &ls.service {
        return Err(format!("logsource service `{s}` is a log Osprey does not read"));
    }
    match &ls.category {
        None => Err("the logsource names no category; Osprey matches events by category".into()),
        Some(c) => Category::from_name(c).ok_or_else(|| format!("logsource category `{c}` is not one Osprey produces")),
    }
}

/// A detection rule, parsed and applicable.
#[derive(Debug)]
pub struct RuleDoc {
    pub meta: RuleMeta,
    pub category: Category,
    pub detection: detection::Detection,
}

/// A valid document that Osprey will not evaluate, and why.
#[derive(Debug)]
pub struct Skipped {
    pub meta: RuleMeta,
    pub pos: Pos,
    pub reason: String,
}

pub enum RuleOutcome {
    Rule(Box<RuleDoc>),
    NotApplicable(Box<Skipped>),
}

/// Parses a detection rule document (one with a `detection:` section).
pub fn parse_rule(doc: &Node, path: &Path, warnings: &mut Vec<(Pos, String)>) -> Result<RuleOutcome, Located> {
    let meta = meta(doc, path, warnings)?;
    if doc.get("logsource").is_none() {
        return Err(Located::new(doc.pos, "missing `logsource`"));
    }
    let det = doc.get("detection").ok_or_else(|| Located::new(doc.pos, "missing `detection`"))?;
    // Detection is checked even for rules that will not apply, so `rules check` finds their errors.
    let parsed = detection::parse(det)?;
    let line_of = |key: &str| doc.key_node(key).map_or(doc.pos, |n| n.pos);
    let skip = |meta: RuleMeta, pos: Pos, reason: String| {
        Ok(RuleOutcome::NotApplicable(Box::new(Skipped { meta, pos, reason })))
    };
    if meta.status == Some(Status::Unsupported) {
        return skip(meta, line_of("status"), "status `unsupported`".into());
    }
    let category = match applicable_category(&meta.logsource) {
        Ok(c) => c,
        Err(reason) => return skip(meta, line_of("logsource"), reason),
    };
    match parsed {
        detection::Parsed::NotApplicable(pos, reason) => skip(meta, pos, reason),
        detection::Parsed::Ok(detection, w) => {
            warnings.extend(w);
            Ok(RuleOutcome::Rule(Box::new(RuleDoc { meta, category, detection })))
        }
    }
}

/// Applies Sigma v1 rule-collection actions (`action: global | reset | repeat`) to the documents
/// of one file, returning the effective documents.
pub fn expand_collection(docs: Vec<Node>) -> Result<Vec<Node>, Located> {
    let mut out = Vec::new();
    let mut global: Option<Node> = None;
    let mut prev: Option<Node> = None;
    for d in docs {
        if d.as_map().is_none() {
            if d.is_null() {
                continue;
            }
            return Err(Located::new(d.pos, format!("a rule document must be a map, not {}", d.kind())));
        }
        let action = d.get("action").and_then(Node::as_str).map(str::to_owned);
        let body = without_key(&d, "action");
        match action.as_deref() {
            None => {
                let doc = match &global {
                    Some(g) => merge(g, &body),
                    None => body,
                };
                prev = Some(doc.clone());
                out.push(doc);
            }
            Some("global") => global = Some(body),
            Some("reset") => global = None,
            Some("repeat") => {
                let base =
                    prev.as_ref().ok_or_else(|| Located::new(d.pos, "`action: repeat` with nothing to repeat"))?;
                let doc = merge(base, &body);
                prev = Some(doc.clone());
                out.push(doc);
            }
            Some(a) => return Err(Located::new(d.pos, format!("unknown collection action `{a}`"))),
        }
    }
    Ok(out)
}

fn without_key(n: &Node, key: &str) -> Node {
    match &n.value {
        Value::Map(pairs) => Node {
            value: Value::Map(pairs.iter().filter(|(k, _)| k.as_str() != Some(key)).cloned().collect()),
            ..n.clone()
        },
        _ => n.clone(),
    }
}

/// Deep merge of maps; `over` wins for everything else.
fn merge(base: &Node, over: &Node) -> Node {
    match (&base.value, &over.value) {
        (Value::Map(b), Value::Map(o)) => {
            let mut pairs: Vec<(Node, Node)> = b.clone();
            for (k, v) in o {
                match pairs.iter_mut().find(|(bk, _)| bk.value == k.value) {
                    Some(slot) => slot.1 = merge(&slot.1, v),
                    None => pairs.push((k.clone(), v.clone())),
                }
            }
            Node { value: Value::Map(pairs), ..over.clone() }
        }
        _ => over.clone(),
    }
}
