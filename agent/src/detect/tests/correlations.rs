//! Correlation rules over streams of timestamped events.

use std::sync::Arc;

use serde_json::{json, Value};

use super::{exec, load, report_of};
use crate::detect::{Alert, AlertKind, CorrelationLimits, Detector, JsonEvent};

const S: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * S;

/// Base rules: `recon_a` (whoami), `recon_b` (id), `recon_c` (uname), `login` (sshd child).
const BASE: &str = "title: whoami\nname: recon_a\nlogsource: {product: linux, category: process_creation}\ndetection:\n    sel:\n        Image|endswith: /whoami\n    condition: sel\n---\ntitle: id\nname: recon_b\nlogsource: {product: linux, category: process_creation}\ndetection:\n    sel:\n        Image|endswith: /id\n    condition: sel\n---\ntitle: uname\nname: recon_c\nlogsource: {product: linux, category: process_creation}\ndetection:\n    sel:\n        Image|endswith: /uname\n    condition: sel\n";

fn corr(body: &str) -> Arc<crate::detect::RuleSet> {
    Arc::new(load(&format!("title: Correlation\nid: corr\nlevel: high\ncorrelation:\n{body}\n---\n{BASE}")))
}

fn ev(image: &str, user: &str, host: &str, t: u64) -> Value {
    let ts = humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t)).to_string();
    exec(
        json!({"@timestamp": ts, "process": {"executable": image, "user": {"name": user}}, "host": {"hostname": host}}),
    )
}

fn feed(d: &mut Detector, e: &Value) -> Vec<Alert> {
    let mut out = Vec::new();
    d.evaluate(&JsonEvent::new(e), &mut out);
    out
}

fn fired(out: &[Alert]) -> Vec<&crate::detect::CorrelationHit> {
    out.iter()
        .filter_map(|a| match &a.kind {
            AlertKind::Correlation(h) => Some(h),
            _ => None,
        })
        .collect()
}

#[test]
fn event_count_with_group_by_and_expiry() {
    let set = corr("    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 10s\n    condition:\n        gte: 3");
    let mut d = Detector::new(set);
    // Two from alice, one from bob, then alice's third: fires for alice only.
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "alice", "h", T0))).is_empty());
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "alice", "h", T0 + S))).is_empty());
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "bob", "h", T0 + 2 * S))).is_empty());
    let out = feed(&mut d, &ev("/usr/bin/whoami", "alice", "h", T0 + 3 * S));
    let h = fired(&out);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].group, [("User".to_owned(), "alice".to_owned())]);
    assert_eq!(h[0].count, 3);
    assert_eq!((h[0].first_ns, h[0].last_ns), (T0, T0 + 3 * S));
    assert_eq!(h[0].rules, ["recon_a"]);
    // The base rule is referenced without `generate`: its own alerts are not standalone.
    assert!(out.iter().any(|a| a.kind == AlertKind::Rule && !a.standalone));
    assert!(out.iter().any(|a| matches!(a.kind, AlertKind::Correlation(_)) && a.standalone));
    // Spaced wider than the timespan: never three in 10 s.
    let mut d = Detector::new(corr("    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 10s\n    condition:\n        gte: 3"));
    for i in 0..10 {
        assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "alice", "h", T0 + i * 6 * S))).is_empty(), "{i}");
    }
}

#[test]
fn event_count_upper_bound_is_decided_when_the_window_closes() {
    let set = corr("    type: event_count\n    rules: [recon_a]\n    group-by: [host.hostname]\n    timespan: 1m\n    condition:\n        lt: 3");
    let mut d = Detector::new(set);
    feed(&mut d, &ev("/usr/bin/whoami", "a", "quiet", T0));
    for i in 0..5 {
        feed(&mut d, &ev("/usr/bin/whoami", "a", "busy", T0 + i * S));
    }
    let mut out = Vec::new();
    d.flush(T0 + 30 * S, &mut out);
    assert!(out.is_empty(), "windows still open");
    d.flush(T0 + 61 * S, &mut out);
    let h = fired(&out);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].group, [("host.hostname".to_owned(), "quiet".to_owned())]);
    assert_eq!(h[0].count, 1);
}

#[test]
fn value_count() {
    let set = corr("    type: value_count\n    rules: [recon_a, recon_b]\n    group-by: [host.hostname]\n    timespan: 5m\n    condition:\n        field: User\n        gt: 2");
    let mut d = Detector::new(set);
    let mut t = T0;
    for user in ["a", "b", "a", "b", "b"] {
        t += S;
        assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", user, "h1", t))).is_empty());
    }
    assert!(fired(&feed(&mut d, &ev("/usr/bin/id", "c", "h2", t + S))).is_empty(), "another host");
    let out = feed(&mut d, &ev("/usr/bin/id", "c", "h1", t + 2 * S));
    let h = fired(&out);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].count, 3);
    assert_eq!(h[0].rules, ["recon_a", "recon_b"]);
    // Distinct values older than the timespan do not count.
    let mut d = Detector::new(corr("    type: value_count\n    rules: [recon_a]\n    group-by: [host.hostname]\n    timespan: 10s\n    condition:\n        field: User\n        gte: 3"));
    feed(&mut d, &ev("/usr/bin/whoami", "a", "h", T0));
    feed(&mut d, &ev("/usr/bin/whoami", "b", "h", T0 + 8 * S));
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "c", "h", T0 + 12 * S))).is_empty());
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "d", "h", T0 + 13 * S))).len(), 1);
}

#[test]
fn temporal_any_order_within_timespan() {
    let body = "    type: temporal\n    rules: [recon_a, recon_b, recon_c]\n    group-by: [User]\n    timespan: 1m";
    let mut d = Detector::new(corr(body));
    assert!(fired(&feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0))).is_empty());
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + S))).is_empty());
    assert!(fired(&feed(&mut d, &ev("/usr/bin/id", "mallory", "h", T0 + 2 * S))).is_empty(), "other user");
    let out = feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 3 * S));
    assert_eq!(fired(&out).len(), 1);
    assert_eq!(fired(&out)[0].first_ns, T0);
    // Expiry: the first match is too old by the time the last arrives.
    let mut d = Detector::new(corr(body));
    feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0));
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + 30 * S));
    assert!(fired(&feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 61 * S))).is_empty());
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + 62 * S))).len(), 1);
}

#[test]
fn temporal_conditions() {
    let count = "    type: temporal\n    rules: [recon_a, recon_b, recon_c]\n    group-by: [User]\n    timespan: 1m\n    condition:\n        gte: 2";
    let mut d = Detector::new(corr(count));
    feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0));
    feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + S));
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 2 * S))).len(), 1);
    let expr = "    type: temporal\n    rules: [recon_a, recon_b, recon_c]\n    group-by: [User]\n    timespan: 1m\n    condition: recon_a and not recon_c";
    let mut d = Detector::new(corr(expr));
    feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0));
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + S))).is_empty());
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "bob", "h", T0 + S))).len(), 1);
}

#[test]
fn temporal_ordered() {
    let body =
        "    type: temporal_ordered\n    rules: [recon_a, recon_b, recon_c]\n    group-by: [User]\n    timespan: 1m";
    let mut d = Detector::new(corr(body));
    // Wrong order: c, b, a.
    for (i, img) in ["/usr/bin/uname", "/usr/bin/id", "/usr/bin/whoami"].iter().enumerate() {
        assert!(fired(&feed(&mut d, &ev(img, "eve", "h", T0 + i as u64 * S))).is_empty());
    }
    // ... then b and c complete a, b, c.
    assert!(fired(&feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 5 * S))).is_empty());
    let out = feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + 6 * S));
    let h = fired(&out);
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].first_ns, T0 + 2 * S);
    // In order but too slow.
    let mut d = Detector::new(corr(body));
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0));
    feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 40 * S));
    assert!(fired(&feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + 70 * S))).is_empty());
    // A later start rescues the sequence.
    let mut d = Detector::new(corr(body));
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0));
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + 30 * S));
    feed(&mut d, &ev("/usr/bin/id", "eve", "h", T0 + 50 * S));
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + 80 * S))).len(), 1);
}

#[test]
fn state_is_capped() {
    let set = corr("    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 1h\n    condition:\n        gte: 2");
    let mut d = Detector::with_limits(set, CorrelationLimits { max_groups: 100, max_values: 10 });
    for i in 0..1_000u64 {
        feed(&mut d, &ev("/usr/bin/whoami", &format!("u{i}"), "h", T0 + i * 1_000));
    }
    assert_eq!(d.correlation_groups(), 100);
    assert_eq!(d.stats().evicted_groups, 900);
    // The oldest groups were evicted: u0 starts afresh, u999 fires.
    assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "u0", "h", T0 + 2 * S))).is_empty());
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "u999", "h", T0 + 2 * S))).len(), 1);
    // value_count keeps at most max_values values per group.
    let set = corr("    type: value_count\n    rules: [recon_a]\n    group-by: [host.hostname]\n    timespan: 1h\n    condition:\n        field: User\n        lt: 100000");
    let mut d = Detector::with_limits(set, CorrelationLimits { max_groups: 10, max_values: 50 });
    for i in 0..500u64 {
        feed(&mut d, &ev("/usr/bin/whoami", &format!("u{i}"), "h", T0 + i));
    }
    assert_eq!(d.stats().dropped_values, 450);
    // An event_count threshold above max_values still fires (counted per tumbling window).
    let set = corr("    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 1h\n    condition:\n        gte: 50");
    let mut d = Detector::with_limits(set, CorrelationLimits { max_groups: 10, max_values: 10 });
    for i in 0..49u64 {
        assert!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + i * S))).is_empty());
    }
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + 49 * S))).len(), 1);
}

#[test]
fn chained_correlations_and_generate() {
    let text = format!(
        "title: Burst then uname\nid: chain\ncorrelation:\n    type: temporal_ordered\n    rules: [burst, recon_c]\n    group-by: [User]\n    timespan: 5m\n---\ntitle: Burst\nname: burst\ncorrelation:\n    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 1m\n    condition:\n        gte: 2\n    generate: true\n---\n{BASE}"
    );
    let mut d = Detector::new(Arc::new(load(&text)));
    let whoami = feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0));
    assert!(whoami.iter().all(|a| a.standalone), "generate: true makes recon_a alert on its own");
    let out = feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + S));
    let burst: Vec<&Alert> = out.iter().filter(|a| a.rule.key() == "burst").collect();
    assert_eq!(burst.len(), 1);
    assert!(!burst[0].standalone, "an inner correlation of a chain does not alert on its own");
    let out = feed(&mut d, &ev("/usr/bin/uname", "eve", "h", T0 + 2 * S));
    let chain: Vec<&Alert> = out.iter().filter(|a| a.rule.key() == "chain").collect();
    assert_eq!(chain.len(), 1);
    assert!(matches!(&chain[0].kind, AlertKind::Correlation(h) if h.group == [("User".to_owned(), "eve".to_owned())]));
}

#[test]
fn reload_keeps_state_of_unchanged_correlations() {
    let body = "    type: event_count\n    rules: [recon_a]\n    group-by: [User]\n    timespan: 1m\n    condition:\n        gte: 2";
    let mut d = Detector::new(corr(body));
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0));
    d.replace_rules(corr(body));
    assert_eq!(fired(&feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + S))).len(), 1);
    feed(&mut d, &ev("/usr/bin/whoami", "eve", "h", T0 + 2 * S));
    d.replace_rules(corr(&body.replace("gte: 2", "gte: 3")));
    assert_eq!(d.correlation_groups(), 0, "a changed correlation starts afresh");
}

#[test]
fn correlation_errors_and_not_applicable() {
    let r = report_of("c.yml", "title: C\ncorrelation:\n    type: event_count\n    rules: [ghost]\n    group-by: [User]\n    timespan: 1m\n    condition: {gte: 2}\n");
    assert_eq!(r.errors.len(), 1);
    assert_eq!((r.errors[0].line, r.errors[0].column), (4, 13));
    let r = report_of("c.yml", "title: C\ncorrelation:\n    type: event_count\n    rules: [a]\n    timespan: 1 hour\n    condition: {gte: 2}\n");
    assert_eq!(r.errors[0].line, 5);
    let r = report_of("c.yml", "title: C\ncorrelation:\n    type: event_sum\n    rules: [a]\n    timespan: 1h\n");
    assert_eq!(r.errors[0].line, 3);
    let r = report_of(
        "c.yml",
        "title: C\ncorrelation:\n    type: value_count\n    rules: [a]\n    timespan: 1h\n    condition: {gte: 2}\n",
    );
    assert!(r.errors[0].reason.contains("field"));
    // Referencing a rule for another product: the correlation is not applicable either.
    let text = "title: C\ncorrelation:\n    type: event_count\n    rules: [win]\n    group-by: [User]\n    timespan: 1m\n    condition: {gte: 2}\n---\ntitle: W\nname: win\nlogsource: {product: windows, category: process_creation}\ndetection:\n    sel:\n        Image: x\n    condition: sel\n";
    let r = report_of("c.yml", text);
    assert!(r.is_ok(), "{:#?}", r.errors);
    assert_eq!(r.not_applicable.len(), 2);
    // Cycles are errors.
    let text = "title: A\nname: ca\ncorrelation: {type: temporal, rules: [cb], group-by: [User], timespan: 1m}\n---\ntitle: B\nname: cb\ncorrelation: {type: temporal, rules: [ca], group-by: [User], timespan: 1m}\n";
    let r = report_of("c.yml", text);
    assert_eq!(r.errors.len(), 2);
}
