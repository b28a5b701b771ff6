//! Rule hot reload on a running agent (root): a broken file keeps the previous rules running and
//! is reported; a valid change takes effect within 2 seconds.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use agent::event::EventBody;
use osprey_tests::{marker, test_config, Harness};

fn rule(id: &str, needle: &str) -> String {
    format!(
        "title: Reload test {needle}\nid: {id}\nstatus: test\ndescription: hot reload test\nauthor: Osprey tests\nlevel: medium\n\
         tags: [attack.execution, attack.t1059]\nlogsource: {{product: linux, category: process_creation}}\n\
         detection:\n  selection:\n    CommandLine|contains: {needle}\n  condition: selection\n"
    )
}

fn run_marked(word: &str) {
    let st = Command::new("/bin/sh").args(["-c", &format!("echo {word} >/dev/null; true")]).stdout(Stdio::null()).status().unwrap();
    assert!(st.success());
}

fn alerts_for(h: &Harness, rule_id: &str) -> usize {
    h.events
        .iter()
        .filter(|e| matches!(&e.body, EventBody::Alert(a) if a.alert.rule.id.as_deref() == Some(rule_id)))
        .count()
}

#[test]
fn a_broken_rule_file_keeps_the_old_rules_and_a_valid_change_lands_within_two_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reload.yml");
    let (id, a, b) = ("7c9e6679-7425-40de-944b-e07fc1f90ae7", marker(), marker());
    std::fs::write(&file, rule(id, &a)).unwrap();
    let mut cfg = test_config();
    cfg.rules.paths = vec![dir.path().to_path_buf()];
    cfg.rules.reload_interval = Duration::from_millis(200);
    let mut h = Harness::start(cfg);

    run_marked(&a);
    assert!(h.wait_for(Duration::from_secs(10), |evs| evs.iter().any(|e| matches!(&e.body, EventBody::Alert(x) if x.alert.rule.id.as_deref() == Some(id)))), "rule fires before any change");
    let before = alerts_for(&h, id);

    // Broken: a YAML syntax error. The previous version must keep running, and it is reported.
    std::fs::write(&file, "title: broken\ndetection: [unclosed\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while h.metrics.rules_reloads(false) == 0 && Instant::now() < deadline {
        h.wait_for(Duration::from_millis(100), |_| false);
    }
    assert!(h.metrics.rules_reloads(false) >= 1, "the failed reload is counted");
    run_marked(&a);
    let fired = h.wait_for(Duration::from_secs(10), |evs| {
        evs.iter().filter(|e| matches!(&e.body, EventBody::Alert(x) if x.alert.rule.id.as_deref() == Some(id))).count() > before
    });
    assert!(fired, "the old rule still fires after a broken edit");

    // Valid change: now the rule looks for `b`. It must take effect within 2 s of the write.
    std::fs::write(&file, rule(id, &b)).unwrap();
    let written = Instant::now();
    let mut landed = None;
    while written.elapsed() < Duration::from_secs(5) {
        let n = alerts_for(&h, id);
        run_marked(&b);
        h.wait_for(Duration::from_millis(150), |_| false);
        if alerts_for(&h, id) > n {
            landed = Some(written.elapsed());
            break;
        }
    }
    let took = landed.expect("the changed rule fires");
    eprintln!("reload: a valid change took effect after {took:?}");
    assert!(took <= Duration::from_secs(2), "{took:?}");
    h.stop();
}
