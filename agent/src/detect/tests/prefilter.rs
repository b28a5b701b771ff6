//! The prefilter never drops a match, and does cut the rules evaluated.

use serde_json::json;

use super::{exec, load};
use crate::detect::{JsonEvent, RuleSet, Scratch};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() % v.len()]
    }
}

const WORDS: &[&str] = &["curl", "wget", "Bash", "-i", "/dev/tcp/", "base64", "/tmp/", "sh", "nc", "-e", "pass", "x"];

/// Detection sections exercising every way a literal requirement can arise (or not).
fn detection(r: &mut Lcg) -> String {
    let (a, b, c) = (r.pick(WORDS), r.pick(WORDS), r.pick(WORDS));
    match r.next() % 16 {
        0 => format!("    sel:\n        CommandLine|contains: '{a}'\n    condition: sel"),
        1 => format!("    sel:\n        Image|endswith: '{a}'\n        CommandLine|contains|all: ['{b}', '{c}']\n    condition: sel"),
        2 => format!("    sel:\n        - Image|endswith: '{a}'\n        - CommandLine|startswith: '{b}'\n    condition: sel"),
        3 => format!("    sel:\n        CommandLine|re: '{}.*{}'\n    condition: sel", regex::escape(a), regex::escape(b)),
        4 => format!("    sel:\n        CommandLine|re|i: '(?:{}|{})'\n    condition: sel", regex::escape(a), regex::escape(b)),
        5 => format!("    sel:\n        CommandLine: '*{a}*{b}?'\n    condition: sel"),
        6 => format!("    sel:\n        CommandLine|contains: '{a}'\n    filter:\n        Image|endswith: '{b}'\n    condition: sel and not filter"),
        7 => format!("    a:\n        CommandLine|contains: '{a}'\n    b:\n        Image|contains: '{b}'\n    condition: 1 of them"),
        8 => format!("    a:\n        CommandLine|contains: '{a}'\n    b:\n        Image|contains: '{b}'\n    condition: all of them"),
        9 => format!("    sel:\n        CommandLine|contains|cased: '{a}'\n    condition: sel"),
        10 => format!("    sel:\n        CommandLine|windash|contains: ' -{a}'\n    condition: sel"),
        11 => format!("    kw:\n        - '{a}'\n    condition: kw"),
        12 => format!("    sel:\n        CommandLine|contains: '{a}'\n    other:\n        Image|endswith: '{b}'\n    condition: sel or (other and not sel)"),
        13 => format!("    sel:\n        CommandLine|re: '(^|/|\\s){}\\s+[a-z]*{}'\n    condition: sel", regex::escape(a), regex::escape(b)),
        14 => format!("    sel:\n        CommandLine|re|i: '[0-9]*(?:x|{})\\S?{}'\n    condition: sel", regex::escape(a), regex::escape(b)),
        _ => format!("    sel:\n        CommandLine|base64offset|contains: '{a}{b}'\n    condition: sel"),
    }
}

#[test]
fn prefilter_never_drops_a_match() {
    let mut r = Lcg(1);
    let rules: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "title: R{i}\nid: r{i}\nlogsource: {{product: linux, category: process_creation}}\ndetection:\n{}\n",
                detection(&mut r)
            )
        })
        .collect();
    let all = rules.join("---\n");
    let (set, report) = RuleSet::from_sources([("all.yml", all.as_str())]);
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert_eq!(set.rules().len(), 300);
    let mut scratch = Scratch::new();
    let (mut total_matches, mut evaluated, mut all) = (0, 0, 0);
    for _ in 0..2_000 {
        let n = 1 + r.next() % 5;
        let cmd: Vec<String> = (0..n)
            .map(|_| {
                let w = r.pick(WORDS);
                if r.next().is_multiple_of(3) {
                    w.to_uppercase()
                } else {
                    w.to_owned()
                }
            })
            .collect();
        let mut cmd = cmd.join(if r.next().is_multiple_of(2) { " " } else { "" });
        if r.next().is_multiple_of(4) {
            cmd = format!("echo {} | base64 -d", crate::detect::pattern::base64(cmd.as_bytes()));
        }
        let image = format!("/usr/bin/{}", r.pick(WORDS));
        let doc = exec(json!({"process": {"executable": image, "command_line": cmd}}));
        let ev = JsonEvent::new(&doc);
        let (mut got, mut iocs) = (Vec::new(), Vec::new());
        set.match_event(&ev, &mut scratch, &mut got, &mut iocs);
        let (want, n_rules) = set.match_event_unfiltered(&ev, &mut scratch);
        assert_eq!(got, want, "event {doc}");
        total_matches += want.len();
        evaluated += set.candidate_count(&ev, &mut scratch);
        all += n_rules;
    }
    assert!(total_matches > 1_000, "the corpus should match often: {total_matches}");
    assert!(evaluated * 2 < all, "the prefilter should cut evaluation: {evaluated} of {all}");
}

#[test]
fn rules_with_several_required_literals_need_all_of_them() {
    let set = load(&super::proc_rule(
        "    sel:\n        Image|endswith: '/curl'\n        CommandLine|contains: 'pastebin'\n    condition: sel",
    ));
    let mut scratch = Scratch::new();
    let count = |image: &str, cmd: &str, scratch: &mut Scratch| {
        let doc = exec(json!({"process": {"executable": image, "command_line": cmd}}));
        set.candidate_count(&JsonEvent::new(&doc), scratch)
    };
    assert_eq!(count("/usr/bin/curl", "curl https://example.com", &mut scratch), 0);
    assert_eq!(count("/usr/bin/wget", "wget https://pastebin.com/x", &mut scratch), 0);
    assert_eq!(count("/usr/bin/curl", "curl https://pastebin.com/x", &mut scratch), 1);
    // A regular expression's literal is required too.
    let re = load(&super::proc_rule("    sel:\n        Image|startswith: '/usr/bin/'\n        CommandLine|re: 'nmap\\s+-s[STU]'\n    condition: sel"));
    let doc = exec(json!({"process": {"executable": "/usr/bin/ls", "command_line": "ls -la"}}));
    assert_eq!(re.candidate_count(&JsonEvent::new(&doc), &mut scratch), 0);
    // A literal inside, with neither a prefix nor a suffix every match shares.
    let inner = load(&super::proc_rule("    sel:\n        CommandLine|re|i: '(^|/|\\s)GCore\\s'\n    condition: sel"));
    assert_eq!(inner.candidate_count(&JsonEvent::new(&doc), &mut scratch), 0);
    let doc = exec(json!({"process": {"executable": "/usr/bin/gcore", "command_line": "/usr/bin/gcore 42"}}));
    assert_eq!(inner.candidate_count(&JsonEvent::new(&doc), &mut scratch), 1);
    // ASCII text is scanned as it is, its case ignored.
    let upper = exec(json!({"process": {"executable": "/usr/bin/gcore", "command_line": "/USR/BIN/GCORE 42"}}));
    assert_eq!(inner.candidate_count(&JsonEvent::new(&upper), &mut scratch), 1);
    let (mut got, mut iocs) = (Vec::new(), Vec::new());
    inner.match_event(&JsonEvent::new(&doc), &mut scratch, &mut got, &mut iocs);
    assert_eq!(got.len(), 1);
    // Case-insensitive regular expressions fold `ſ` to `s` and the Kelvin sign to `k`: the
    // lowered text the prefilter searches holds the literal then too.
    let folded = load(&super::proc_rule("    sel:\n        CommandLine|re|i: 'mask\\s'\n    condition: sel"));
    let doc = exec(json!({"process": {"executable": "/usr/bin/x", "command_line": "x MAſ\u{212A} 1"}}));
    let (mut got, mut iocs) = (Vec::new(), Vec::new());
    folded.match_event(&JsonEvent::new(&doc), &mut scratch, &mut got, &mut iocs);
    assert_eq!(got.len(), 1, "{doc}");
}
