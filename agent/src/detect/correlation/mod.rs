//! Sigma correlation rules (`correlation:` with `event_count`, `value_count`, `temporal`,
//! `temporal_ordered`): parsing here, streaming evaluation with bounded state in [`engine`].

pub mod engine;

use std::sync::Arc;

use super::fields::FieldId;
use super::sigma::condition::{self, Expr};
use super::sigma::{meta, RuleMeta};
use super::yaml::{Located, Node, Pos, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    EventCount,
    ValueCount,
    Temporal,
    TemporalOrdered,
}

impl CorrelationType {
    pub fn name(self) -> &'static str {
        match self {
            CorrelationType::EventCount => "event_count",
            CorrelationType::ValueCount => "value_count",
            CorrelationType::Temporal => "temporal",
            CorrelationType::TemporalOrdered => "temporal_ordered",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bound {
    Gt(u64),
    Gte(u64),
    Lt(u64),
    Lte(u64),
    Eq(u64),
}

/// `condition: {gte: 10, lt: 20}`: all bounds must hold.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Bounds(pub Vec<Bound>);

impl Bounds {
    pub fn holds(&self, n: u64) -> bool {
        self.0.iter().all(|b| match *b {
            Bound::Gt(x) => n > x,
            Bound::Gte(x) => n >= x,
            Bound::Lt(x) => n < x,
            Bound::Lte(x) => n <= x,
            Bound::Eq(x) => n == x,
        })
    }

    /// Only lower bounds: the condition can be decided the moment the count reaches it, and
    /// fires then. Otherwise it is decided when the window closes.
    pub fn eager(&self) -> bool {
        self.0.iter().all(|b| matches!(b, Bound::Gt(_) | Bound::Gte(_)))
    }

    /// The smallest count a lower bound accepts.
    pub fn needed(&self) -> u64 {
        self.0
            .iter()
            .map(|b| match *b {
                Bound::Gt(x) => x.saturating_add(1),
                Bound::Gte(x) | Bound::Eq(x) => x,
                Bound::Lt(_) | Bound::Lte(_) => 0,
            })
            .max()
            .unwrap_or(0)
            .max(1)
    }

    /// The largest count any upper bound accepts, if there is one.
    pub fn ceiling(&self) -> Option<u64> {
        self.0
            .iter()
            .filter_map(|b| match *b {
                Bound::Lt(x) => Some(x.saturating_sub(1)),
                Bound::Lte(x) | Bound::Eq(x) => Some(x),
                _ => None,
            })
            .min()
    }
}

/// When a temporal correlation holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemporalCondition {
    /// Every referenced rule (the default).
    All,
    /// This many distinct referenced rules.
    Count(Bounds),
    /// A boolean expression over the referenced rules' names.
    Expr(Expr),
}

/// A correlation document as written (rule references unresolved).
#[derive(Debug, Clone)]
pub struct CorrelationDoc {
    pub meta: RuleMeta,
    pub kind: CorrelationType,
    /// Referenced rules (id or name) with their positions.
    pub rules: Vec<(String, Pos)>,
    pub group_by: Vec<String>,
    pub timespan_ns: u64,
    pub bounds: Bounds,
    pub temporal: TemporalCondition,
    /// value_count: the field(s) whose distinct values are counted.
    pub value_fields: Vec<String>,
    /// alias → [(rule name, field)].
    pub aliases: Vec<(String, Vec<(String, String)>)>,
    /// Whether the referenced rules also alert on their own.
    pub generate: bool,
    pub pos: Pos,
}

/// The outcome of reading a correlation document.
pub enum CorrelationOutcome {
    Ok(Box<CorrelationDoc>),
    NotApplicable(Box<RuleMeta>, Pos, String),
}

/// `90s`, `10m`, `1h`, `2d` (and `1w`).
pub fn parse_timespan(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mult: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult)?.checked_mul(1_000_000_000).filter(|&ns| ns > 0)
}

fn bounds(cond: &Node) -> Result<(Bounds, Vec<String>), Located> {
    let mut b = Vec::new();
    let mut fields = Vec::new();
    for (k, v) in cond.as_map().unwrap_or(&[]) {
        let key = k.expect_str("a condition key")?;
        if key == "field" {
            fields = v.string_list("`field`")?;
            continue;
        }
        let n = match v.value {
            Value::Int(i) if i >= 0 => i as u64,
            _ => return Err(Located::new(v.pos, format!("`{key}` takes a non-negative integer"))),
        };
        b.push(match key {
            "gt" => Bound::Gt(n),
            "gte" => Bound::Gte(n),
            "lt" => Bound::Lt(n),
            "lte" => Bound::Lte(n),
            "eq" => Bound::Eq(n),
            _ => return Err(Located::new(k.pos, format!("unknown condition `{key}` (gt, gte, lt, lte, eq, field)"))),
        });
    }
    Ok((Bounds(b), fields))
}

/// Parses a document with a `correlation:` section.
pub fn parse(
    doc: &Node,
    path: &std::path::Path,
    warnings: &mut Vec<(Pos, String)>,
) -> Result<CorrelationOutcome, Located> {
    let meta = meta(doc, path, warnings)?;
    let c = doc.get("correlation").ok_or_else(|| Located::new(doc.pos, "missing `correlation`"))?;
    if c.as_map().is_none() {
        return Err(Located::new(c.pos, "`correlation` must be a map"));
    }
    let type_node = c.get("type").ok_or_else(|| Located::new(c.pos, "correlation has no `type`"))?;
    let kind = match type_node.expect_str("`type`")? {
        "event_count" => CorrelationType::EventCount,
        "value_count" => CorrelationType::ValueCount,
        "temporal" => CorrelationType::Temporal,
        "temporal_ordered" => CorrelationType::TemporalOrdered,
        t @ ("value_sum" | "value_avg" | "value_percentile" | "value_median" | "value_min" | "value_max") => {
            return Ok(CorrelationOutcome::NotApplicable(
                Box::new(meta),
                type_node.pos,
                format!("correlation type `{t}` is not supported yet"),
            ))
        }
        t => {
            return Err(Located::new(
                type_node.pos,
                format!("unknown correlation type `{t}` (event_count, value_count, temporal, temporal_ordered)"),
            ))
        }
    };
    let rules_node = c.get("rules").ok_or_else(|| Located::new(c.pos, "correlation has no `rules`"))?;
    let rules: Vec<(String, Pos)> = match &rules_node.value {
        Value::Seq(items) => items
            .iter()
            .map(|n| n.expect_str("a rule reference").map(|s| (s.to_owned(), n.pos)))
            .collect::<Result<_, _>>()?,
        _ => vec![(rules_node.expect_str("`rules`")?.to_owned(), rules_node.pos)],
    };
    if rules.is_empty() {
        return Err(Located::new(rules_node.pos, "`rules` is empty"));
    }
    for (i, (r, pos)) in rules.iter().enumerate() {
        if rules[..i].iter().any(|(x, _)| x == r) {
            return Err(Located::new(*pos, format!("`{r}` is listed twice")));
        }
    }
    let group_by = c.get("group-by").map_or(Ok(Vec::new()), |n| n.string_list("`group-by`"))?;
    let ts_node = c.get("timespan").ok_or_else(|| Located::new(c.pos, "correlation has no `timespan`"))?;
    let ts_text = ts_node.scalar_text().unwrap_or_default();
    let timespan_ns = parse_timespan(&ts_text).ok_or_else(|| {
        Located::new(ts_node.pos, format!("bad timespan `{ts_text}` (a number and s, m, h or d: `10m`)"))
    })?;

    let mut b = Bounds::default();
    let mut temporal = TemporalCondition::All;
    let mut value_fields = c.get("field").map_or(Ok(Vec::new()), |n| n.string_list("`field`"))?;
    match c.get("condition") {
        None => {
            if matches!(kind, CorrelationType::EventCount | CorrelationType::ValueCount) {
                return Err(Located::new(c.pos, format!("a {} correlation needs a `condition`", kind.name())));
            }
        }
        Some(cn) => match &cn.value {
            Value::Map(_) => {
                let (bb, f) = bounds(cn)?;
                if bb.0.is_empty() {
                    return Err(Located::new(cn.pos, "the condition needs one of gt, gte, lt, lte, eq"));
                }
                if !f.is_empty() {
                    value_fields = f;
                }
                if matches!(kind, CorrelationType::Temporal | CorrelationType::TemporalOrdered) {
                    temporal = TemporalCondition::Count(bb.clone());
                }
                b = bb;
            }
            Value::Str(s) if matches!(kind, CorrelationType::Temporal | CorrelationType::TemporalOrdered) => {
                let names: Vec<String> = rules.iter().map(|(r, _)| r.clone()).collect();
                let e = condition::parse(s).and_then(|x| x.resolve(&names)).map_err(|e| {
                    Located::new(cn.pos, format!("condition: {} (at character {})", e.msg, e.offset + 1))
                })?;
                temporal = TemporalCondition::Expr(e);
            }
            _ => return Err(Located::new(cn.pos, "the condition must be a map such as `gte: 10`")),
        },
    }
    if kind == CorrelationType::ValueCount && value_fields.is_empty() {
        return Err(Located::new(c.pos, "a value_count correlation needs `field` in its condition"));
    }
    let mut aliases = Vec::new();
    if let Some(a) = c.get("aliases") {
        let pairs = a.as_map().ok_or_else(|| Located::new(a.pos, "`aliases` must be a map"))?;
        for (alias, per_rule) in pairs {
            let alias = alias.expect_str("an alias name")?.to_owned();
            let m =
                per_rule.as_map().ok_or_else(|| Located::new(per_rule.pos, "an alias maps rule names to fields"))?;
            let mut v = Vec::new();
            for (rule, field) in m {
                let rule = rule.expect_str("a rule name")?;
                if !rules.iter().any(|(r, _)| r == rule) {
                    warnings.push((per_rule.pos, format!("alias `{alias}` names `{rule}`, which is not in `rules`")));
                }
                v.push((rule.to_owned(), field.expect_str("a field name")?.to_owned()));
            }
            aliases.push((alias, v));
        }
    }
    let generate = match c.get("generate").or_else(|| doc.get("generate")) {
        None => false,
        Some(Node { value: Value::Bool(b), .. }) => *b,
        Some(n) => return Err(Located::new(n.pos, "`generate` must be true or false")),
    };
    Ok(CorrelationOutcome::Ok(Box::new(CorrelationDoc {
        meta,
        kind,
        rules,
        group_by,
        timespan_ns,
        bounds: b,
        temporal,
        value_fields,
        aliases,
        generate,
        pos: doc.pos,
    })))
}

/// Where a correlation's input comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Matches of a detection rule (index into the rule set's rules).
    Rule(usize),
    /// Alerts of another correlation (index into the rule set's correlations).
    Correlation(usize),
}

/// How to read one group-by (or value) field from one source.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldSource {
    /// A field of the matching event.
    Event(FieldId),
    /// A group-by value of the upstream correlation alert, by name.
    Upstream(String),
}

/// A correlation with its references resolved.
#[derive(Debug, Clone)]
pub struct CompiledCorrelation {
    pub meta: Arc<RuleMeta>,
    pub kind: CorrelationType,
    pub timespan_ns: u64,
    pub sources: Vec<Source>,
    /// Keys of the referenced rules, as written, in order.
    pub source_keys: Vec<String>,
    pub group_names: Vec<String>,
    /// `group[s][g]`: how source `s` yields group-by value `g`.
    pub group: Vec<Vec<FieldSource>>,
    /// value_count: how source `s` yields the counted value(s).
    pub value: Vec<Vec<FieldSource>>,
    pub bounds: Bounds,
    pub temporal: TemporalCondition,
    pub generate: bool,
}

impl CompiledCorrelation {
    /// Identifies the definition, so state survives a reload that does not change it.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{:?}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.meta.key(),
            self.kind,
            self.timespan_ns,
            self.source_keys,
            self.group_names,
            self.bounds,
            self.temporal,
            self.value
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("10s"), Some(10_000_000_000));
        assert_eq!(parse_timespan("90m"), Some(5_400_000_000_000));
        assert_eq!(parse_timespan("1h"), Some(3_600_000_000_000));
        assert_eq!(parse_timespan("1d"), Some(86_400_000_000_000));
        assert_eq!(parse_timespan("10"), None);
        assert_eq!(parse_timespan("m"), None);
        assert_eq!(parse_timespan("0s"), None);
        assert_eq!(parse_timespan("5x"), None);
        assert_eq!(parse_timespan("99999999999999999d"), None);
    }

    #[test]
    fn bounds_logic() {
        let b = Bounds(vec![Bound::Gt(100), Bound::Lte(200)]);
        assert!(b.holds(101) && b.holds(200) && !b.holds(100) && !b.holds(201));
        assert!(!b.eager());
        assert_eq!(b.needed(), 101);
        assert_eq!(b.ceiling(), Some(200));
        let b = Bounds(vec![Bound::Gte(3)]);
        assert!(b.eager());
        assert_eq!(b.needed(), 3);
        assert_eq!(Bounds(vec![Bound::Lt(5)]).ceiling(), Some(4));
    }
}
