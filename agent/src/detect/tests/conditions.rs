//! Condition forms through whole rules.

use serde_json::json;

use super::{proc_hit, proc_rule, report_of};

const SEARCHES: &str = "    selection_curl:\n        Image|endswith: '/curl'\n    selection_wget:\n        Image|endswith: '/wget'\n    filter_local:\n        CommandLine|contains: 'localhost'\n    _helper:\n        User: root\n";

fn ev(image: &str, cmd: &str, user: &str) -> serde_json::Value {
    json!({"process": {"executable": image, "command_line": cmd, "user": {"name": user}}})
}

fn check(cond: &str, image: &str, cmd: &str, user: &str) -> bool {
    proc_hit(&format!("{SEARCHES}    condition: {cond}"), ev(image, cmd, user))
}

#[test]
fn one_of_pattern_with_filter() {
    let c = "1 of selection_* and not filter_local";
    assert!(check(c, "/usr/bin/curl", "curl http://x", "bob"));
    assert!(check(c, "/usr/bin/wget", "wget http://x", "bob"));
    assert!(!check(c, "/usr/bin/curl", "curl http://localhost", "bob"));
    assert!(!check(c, "/usr/bin/ls", "ls", "bob"));
}

#[test]
fn one_of_them_with_filter() {
    // `them` leaves out `_helper`: root running ls is no match.
    let c = "1 of them";
    assert!(!check(c, "/usr/bin/ls", "ls", "root"));
    assert!(check(c, "/usr/bin/ls", "ls localhost", "bob"));
    assert!(check(c, "/usr/bin/curl", "curl", "bob"));
}

#[test]
fn all_of_them_and_all_of_pattern() {
    assert!(!check("all of selection_*", "/usr/bin/curl", "curl", "bob"));
    let both = "    a:\n        Image|endswith: '/curl'\n    b:\n        CommandLine|contains: 'http'\n    condition: all of them";
    assert!(proc_hit(both, ev("/usr/bin/curl", "curl http://x", "bob")));
    assert!(!proc_hit(both, ev("/usr/bin/curl", "curl -V", "bob")));
}

#[test]
fn precedence_and_parentheses() {
    // or < and < not
    let c = "selection_curl or selection_wget and filter_local";
    assert!(check(c, "/usr/bin/curl", "curl x", "bob"));
    assert!(!check(c, "/usr/bin/wget", "wget x", "bob"));
    assert!(check(c, "/usr/bin/wget", "wget localhost", "bob"));
    let p = "(selection_curl or selection_wget) and filter_local";
    assert!(!check(p, "/usr/bin/curl", "curl x", "bob"));
    let n = "not selection_curl and _helper";
    assert!(check(n, "/usr/bin/ls", "ls", "root"));
    assert!(!check(n, "/usr/bin/curl", "curl", "root"));
    let nn = "not (selection_curl or _helper)";
    assert!(check(nn, "/usr/bin/ls", "ls", "bob"));
    assert!(!check(nn, "/usr/bin/ls", "ls", "root"));
}

#[test]
fn condition_lists_are_or() {
    let d = format!("{SEARCHES}    condition:\n        - selection_curl\n        - selection_wget");
    assert!(proc_hit(&d, ev("/usr/bin/wget", "wget", "bob")));
    assert!(!proc_hit(&d, ev("/usr/bin/ls", "ls", "bob")));
}

#[test]
fn condition_errors_point_into_the_condition() {
    let r = report_of("c.yml", &proc_rule(&format!("{SEARCHES}    condition: selection_curl and nope")));
    assert_eq!(r.errors.len(), 1);
    // line 15; `    condition: ` is 15 characters, `selection_curl and ` 19 more.
    assert_eq!((r.errors[0].line, r.errors[0].column), (15, 35));
    assert!(r.errors[0].reason.contains("nope"));
    let q = report_of("c.yml", &proc_rule(&format!("{SEARCHES}    condition: 'selection_curl and ('")));
    assert_eq!(q.errors.len(), 1);
    let none = report_of("c.yml", &proc_rule(&format!("{SEARCHES}    condition: 1 of nothing*")));
    assert_eq!(none.errors.len(), 1);
    let missing = report_of("c.yml", &proc_rule("    sel:\n        Image: x"));
    assert!(missing.errors[0].reason.contains("no condition"));
}

#[test]
fn aggregations_are_not_applicable() {
    let r = report_of("c.yml", &proc_rule("    sel:\n        Image: x\n    condition: sel | count() by User > 5"));
    assert!(r.is_ok());
    assert_eq!(r.not_applicable.len(), 1);
    assert!(r.not_applicable[0].reason.contains("correlation"));
}
