//! `osprey hunt --fleet URL`: the recorder's hunt ([`Hunt`]) answered from ClickHouse across
//! every host, the same semantics as [`Hunt::run`] on the node's store (docs/recorder.md):
//! process filters pick processes by their exec events, event filters pick events, both
//! together the processes' matching events. Globs become anchored RE2 patterns (`match`), CIDR
//! blocks ranges over the 16-byte address columns. The answer is the first `limit` hits in time,
//! grouped by host.

use std::{collections::HashMap, sync::Arc};

use serde::Deserialize;
use serde_json::Value;

use super::{ip_lit, lit, Fleet, FleetError};
use crate::{
    detect::{Detector, JsonEvent, RuleSet},
    recorder::hunt::{describe, ip_range, Answer, Hit, Hunt},
};

/// A glob (`*`, `?`, `[…]`, as SQLite's GLOB: case-sensitive, `*` crosses `/`) as an anchored
/// RE2 pattern.
pub fn glob_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                let mut class = String::from("[");
                if chars.peek() == Some(&'^') {
                    chars.next();
                    class.push('^');
                }
                let mut closed = false;
                for d in chars.by_ref() {
                    if d == ']' && class.len() > 1 {
                        closed = true;
                        break;
                    }
                    if d == '\\' || d == '[' {
                        class.push('\\');
                    }
                    class.push(d);
                }
                if closed {
                    re.push_str(&class);
                    re.push(']');
                } else {
                    re.push_str("\\[");
                    re.push_str(&regex_syntax::escape(&class[1..]));
                }
            }
            c => re.push_str(&regex_syntax::escape(&c.to_string())),
        }
    }
    re.push('$');
    re
}

#[derive(Deserialize)]
struct Row {
    id: u64,
    ts: u64,
    host: String,
    kind: String,
    action: String,
    entity: String,
    pid: u32,
    exe: String,
    cmdline: String,
    user: String,
    doc: String,
}

const SELECT: &str = "SELECT id, ts, host, kind, action, entity, pid, exe, cmdline, user, doc";

fn some(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

fn hit(r: Row) -> Hit {
    let doc: Value = serde_json::from_str(&r.doc).unwrap_or(Value::Null);
    Hit {
        id: (r.id >> 1) as i64,
        timestamp: crate::event::rfc3339(r.ts),
        host: r.host,
        kind: r.kind,
        action: r.action,
        entity_id: some(r.entity),
        pid: (r.pid != 0).then_some(i64::from(r.pid)),
        executable: some(r.exe),
        command_line: some(r.cmdline),
        user: some(r.user),
        object: describe(&doc),
        matched_rule: None,
        doc,
    }
}

fn time_and_host(h: &Hunt, sql: &mut String) {
    if let Some(s) = h.since_ns {
        sql.push_str(&format!(" AND ts >= {}", s.max(0)));
    }
    if let Some(u) = h.until_ns {
        sql.push_str(&format!(" AND ts <= {}", u.max(0)));
    }
    if let Some(host) = &h.host {
        sql.push_str(&format!(" AND host = {}", lit(host)));
    }
}

/// The WHERE clause of a hunt (after `WHERE 1`).
pub fn conditions(h: &Hunt, table: &str) -> Result<String, FleetError> {
    let mut sql = String::new();
    let process = h.sha256.is_some() || h.cmdline.is_some() || h.user.is_some() || h.exe.is_some();
    let event = h.ip.is_some() || h.port.is_some() || h.domain.is_some() || h.path.is_some() || h.alerts;
    if process {
        let mut sub = format!("SELECT entity FROM {table} WHERE cmdline != '' AND entity != ''");
        if let Some(s) = &h.sha256 {
            sub.push_str(&format!(" AND sha256 = {}", lit(&s.to_ascii_lowercase())));
        }
        if let Some(c) = &h.cmdline {
            sub.push_str(&format!(" AND position(cmdline, {}) > 0", lit(c)));
        }
        if let Some(u) = &h.user {
            sub.push_str(&format!(" AND user = {}", lit(u)));
        }
        if let Some(e) = &h.exe {
            sub.push_str(&format!(" AND match(exe, {})", lit(&glob_regex(e))));
        }
        // GLOBAL: on a Distributed table the subquery runs once and its result goes to every shard.
        sql.push_str(&format!(" AND entity GLOBAL IN ({sub})"));
        if !event {
            sql.push_str(" AND cmdline != ''");
        }
    }
    if let Some(ip) = &h.ip {
        let (lo, hi) = ip_range(ip).map_err(FleetError::Invalid)?;
        let (lo, hi, zero) = (ip_lit(&lo), ip_lit(&hi), ip_lit(&[0; 16]));
        sql.push_str(&format!(
            " AND ((src_ip != {zero} AND src_ip BETWEEN {lo} AND {hi}) OR (dst_ip != {zero} AND dst_ip BETWEEN {lo} AND {hi}))"
        ));
    }
    if let Some(p) = h.port {
        sql.push_str(&format!(" AND (src_port = {p} OR dst_port = {p})"));
    }
    if let Some(d) = &h.domain {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        if d.contains(['*', '?', '[']) {
            sql.push_str(&format!(" AND match(domain, {})", lit(&glob_regex(&d))));
        } else {
            sql.push_str(&format!(" AND domain = {}", lit(&d)));
        }
    }
    if let Some(p) = &h.path {
        sql.push_str(&format!(" AND match(path, {})", lit(&glob_regex(p))));
    }
    if h.alerts {
        sql.push_str(" AND alert != ''");
    }
    time_and_host(h, &mut sql);
    Ok(sql)
}

/// Runs a hunt on the fleet store.
pub fn run(fleet: &Fleet, h: &Hunt) -> Result<Answer, FleetError> {
    fleet.validate()?;
    h.validate().map_err(FleetError::Invalid)?;
    let table = fleet.table();
    if !h.rules.is_empty() {
        return sweep(fleet, h, &table);
    }
    let limit = if h.limit == 0 { 1000 } else { h.limit };
    // PREWHERE: the filter columns are read first, the documents only for the rows that match.
    let sql = format!("{SELECT} FROM {table} PREWHERE 1{} ORDER BY ts, id LIMIT {}", conditions(h, &table)?, limit + 1);
    let mut hits: Vec<Hit> = fleet.rows::<Row>(&sql)?.into_iter().map(hit).collect();
    let truncated = hits.len() > limit;
    hits.truncate(limit);
    fill_cmdlines(fleet, &table, &mut hits)?;
    hits.sort_by(|a, b| a.host.cmp(&b.host)); // stable: in time order within each host
    Ok(Answer { hits, truncated, scanned: None })
}

#[derive(Deserialize)]
struct Cmd {
    entity: String,
    c: String,
}

/// Events other than execs name their process by entity id: its command line comes from its
/// latest exec.
fn fill_cmdlines(fleet: &Fleet, table: &str, hits: &mut [Hit]) -> Result<(), FleetError> {
    let mut want: Vec<String> = hits.iter().filter(|h| h.command_line.is_none()).filter_map(|h| h.entity_id.clone()).collect();
    want.sort();
    want.dedup();
    if want.is_empty() {
        return Ok(());
    }
    let mut map: HashMap<String, String> = HashMap::new();
    for chunk in want.chunks(5000) {
        let list: Vec<String> = chunk.iter().map(|e| lit(e)).collect();
        let rows: Vec<Cmd> = fleet.rows(&format!(
            "SELECT entity, argMax(cmdline, ts) AS c FROM {table} PREWHERE cmdline != '' AND entity IN ({}) GROUP BY entity",
            list.join(", ")
        ))?;
        map.extend(rows.into_iter().map(|r| (r.entity, r.c)));
    }
    for h in hits.iter_mut().filter(|h| h.command_line.is_none()) {
        if let Some(c) = h.entity_id.as_ref().and_then(|e| map.get(e)) {
            h.command_line = Some(c.clone());
        }
    }
    Ok(())
}

/// `--ioc` / `--rules`: the detection engine over every recorded document in the time range,
/// streamed from the server in time order.
fn sweep(fleet: &Fleet, h: &Hunt, table: &str) -> Result<Answer, FleetError> {
    let (set, report) = RuleSet::load(&h.rules);
    if !report.is_ok() {
        return Err(FleetError::Invalid(report.errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")));
    }
    let limit = if h.limit == 0 { 1000 } else { h.limit };
    let mut det = Detector::new(Arc::new(set));
    let mut sql = format!("{SELECT} FROM {table} WHERE kind = 'event'");
    time_and_host(h, &mut sql);
    sql.push_str(" ORDER BY ts, id");
    let mut answer = Answer { scanned: Some(0), ..Answer::default() };
    let mut alerts = Vec::new();
    fleet.each_row::<Row>(&sql, &mut |r| {
        *answer.scanned.as_mut().expect("set") += 1;
        let hit = hit(r);
        det.evaluate(&JsonEvent::new(&hit.doc), &mut alerts);
        for a in alerts.drain(..).filter(|a| a.standalone) {
            if answer.hits.len() == limit {
                answer.truncated = true;
                break;
            }
            let mut m = hit.clone();
            m.matched_rule = Some(a.rule.title.clone());
            answer.hits.push(m);
        }
    })?;
    fill_cmdlines(fleet, table, &mut answer.hits)?;
    answer.hits.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_patterns() {
        let m = |g: &str, s: &str| regex::Regex::new(&glob_regex(g)).unwrap().is_match(s);
        assert!(m("/tmp/*", "/tmp/a/b"));
        assert!(!m("/tmp/*", "/var/tmp/a"));
        assert!(m("*.evil.example", "a.b.evil.example"));
        assert!(!m("*.evil.example", "evil-example"));
        assert!(m("/bin/[bd]ash", "/bin/dash"));
        assert!(m("a?c", "abc"));
        assert!(m("a.c+(", "a.c+("));
        assert!(!m("a.c", "abc"));
        assert!(m("x[", "x["));
        let h = Hunt { user: Some("o'brien".into()), port: Some(22), ..Hunt::default() };
        let c = conditions(&h, "osprey.events").unwrap();
        assert!(c.contains("GLOBAL IN (SELECT entity FROM osprey.events WHERE cmdline != '' AND entity != '' AND user = 'o\\'brien')"), "{c}");
        assert!(c.contains("(src_port = 22 OR dst_port = 22)") && !c.contains("AND cmdline != ''\n"), "{c}");
    }
}
