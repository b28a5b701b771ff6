//! The default rule pack (`rules/`, issue 6), checked without root or a kernel:
//!
//! * it loads with no error, warning or not-applicable rule, and has at least 40 rules;
//! * every rule and correlation carries the metadata an analyst needs (UUID v4 id, title,
//!   description, references, author, date, level, false positives, ATT&CK technique and
//!   tactic tags) and sits in the folder of one of its tactics;
//! * the pack covers every behaviour the issue lists and every log source category;
//! * every test case in `rules/tests/*.jsonl` replays through the same [`Detector`] the agent
//!   runs: a rule fires on each of its positive events and not on its negative ones, and no
//!   other rule fires on any test event unless the case names it in `also`.
//!
//! A test case is one JSON object per line (see docs/rules.md):
//! `{"rule": ID, "expect": true|false, "note": "...", "event": {...}}`, or `"events": [...]`
//! for a sequence (correlations), replayed in order through one fresh detector.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agent::detect::{AlertKind, Category, Detector, EventFields, JsonEvent, LoadReport, RuleMeta, RuleSet};
use serde_json::Value;

/// The pack must have at least this many rules that alert on their own.
const MIN_RULES: usize = 40;

/// What the pack promises to detect (issue 6), by the rule files that detect it.
const COVERAGE: &[(&str, &[&str])] = &[
    (
        "reverse and bind shells",
        &[
            "execution/proc_reverse_shell_dev_tcp.yml",
            "execution/proc_netcat_shell.yml",
            "execution/proc_socat_shell.yml",
            "execution/proc_named_pipe_reverse_shell.yml",
            "execution/proc_scripting_reverse_shell.yml",
            "execution/proc_pty_shell_upgrade.yml",
            "command_and_control/net_shell_outbound_connection.yml",
        ],
    ),
    (
        "download and execute",
        &[
            "execution/proc_download_piped_to_shell.yml",
            "execution/proc_exec_from_tmp.yml",
            "execution/proc_exec_from_dev_shm.yml",
            "command_and_control/proc_download_to_temp_directory.yml",
            "defense_evasion/proc_chmod_executable_in_temp.yml",
        ],
    ),
    (
        "fileless execution",
        &[
            "execution/proc_exec_memfd.yml",
            "execution/proc_exec_deleted_binary.yml",
            "execution/mem_memfd_by_interpreter.yml",
            "defense_evasion/mem_executable_memory_in_non_jit_process.yml",
        ],
    ),
    ("base64-decoded execution", &["execution/proc_base64_decoded_execution.yml"]),
    (
        "privilege escalation",
        &[
            "privilege_escalation/cred_unexpected_root.yml",
            "privilege_escalation/cred_became_root_unusual_program.yml",
            "privilege_escalation/proc_setuid_binary_unusual_location.yml",
            "privilege_escalation/file_setuid_bit_set.yml",
            "privilege_escalation/file_sudoers_modified.yml",
            "privilege_escalation/proc_sudoers_nopasswd_rule_added.yml",
            "privilege_escalation/proc_setcap_dangerous_capability.yml",
            "privilege_escalation/proc_pkexec_without_arguments.yml",
            "privilege_escalation/ptrace_attach_by_non_debugger.yml",
        ],
    ),
    (
        "credential access",
        &[
            "credential_access/file_shadow_read_by_unexpected_process.yml",
            "credential_access/file_ssh_private_key_read.yml",
            "credential_access/file_cloud_credentials_read.yml",
            "credential_access/file_kubernetes_token_read_by_shell_tool.yml",
            "credential_access/proc_cloud_metadata_credentials_requested.yml",
            "credential_access/proc_process_memory_credential_dumping.yml",
        ],
    ),
    (
        "persistence",
        &[
            "persistence/file_cron_modified.yml",
            "persistence/file_systemd_unit_created.yml",
            "persistence/file_shell_profile_modified.yml",
            "persistence/file_ssh_authorized_keys_modified.yml",
            "persistence/file_ld_so_preload.yml",
            "persistence/proc_ld_preload_command_line.yml",
            "persistence/file_moved_into_persistence_location.yml",
        ],
    ),
    (
        "defence evasion",
        &[
            "defense_evasion/proc_shell_history_tampering.yml",
            "defense_evasion/file_shell_history_deleted.yml",
            "defense_evasion/file_log_deleted.yml",
            "defense_evasion/proc_log_tampering.yml",
            "defense_evasion/proc_timestomp_touch.yml",
            "defense_evasion/proc_auditd_disabled.yml",
            "defense_evasion/proc_osprey_agent_stopped.yml",
            "defense_evasion/bpf_program_loaded_by_unexpected_process.yml",
            "defense_evasion/bpf_tracing_program_loaded.yml",
            "defense_evasion/module_loaded_by_unexpected_process.yml",
            "defense_evasion/proc_kernel_module_inserted.yml",
        ],
    ),
    ("discovery bursts", &["discovery/corr_discovery_burst.yml"]),
    (
        "lateral movement",
        &["lateral_movement/proc_ssh_from_service_account.yml", "lateral_movement/proc_ssh_remote_payload.yml"],
    ),
    ("ransomware behaviour", &["impact/corr_ransomware_mass_file_change.yml", "impact/file_ransom_note_written.yml"]),
    ("crypto-mining", &["impact/proc_crypto_miner.yml", "impact/dns_mining_pool.yml"]),
    (
        "container escape",
        &[
            "privilege_escalation/proc_nsenter_host_namespaces.yml",
            "privilege_escalation/ns_mount_in_container.yml",
            "privilege_escalation/ns_unshare_in_container.yml",
            "privilege_escalation/file_proc_sys_written_from_container.yml",
            "privilege_escalation/file_cgroup_release_agent_write.yml",
        ],
    ),
    (
        "web server spawning a shell",
        &["initial_access/proc_web_server_spawns_shell.yml", "initial_access/proc_app_server_spawns_shell.yml"],
    ),
];

/// The correlations the issue asks for, by file.
const CORRELATIONS: &[&str] = &["discovery/corr_discovery_burst.yml", "impact/corr_ransomware_mass_file_change.yml"];

fn pack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn load() -> (Arc<RuleSet>, LoadReport) {
    let (set, report) = RuleSet::load(&[pack_dir()]);
    (Arc::new(set), report)
}

/// A rule file's path relative to `rules/`, with `/` separators.
fn relative(path: &Path) -> String {
    let base = pack_dir();
    let rel = path.strip_prefix(&base).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect::<Vec<_>>().join("/")
}

/// What the tests need to know about a detection rule or a correlation.
struct RuleInfo {
    meta: Arc<RuleMeta>,
    /// None for correlations.
    category: Option<Category>,
    /// Alerts on its own (false for rules that only feed a correlation).
    standalone: bool,
}

fn rules_by_id(set: &RuleSet) -> BTreeMap<String, RuleInfo> {
    let fed: BTreeSet<String> =
        set.correlations().iter().filter(|c| !c.generate).flat_map(|c| c.source_keys.iter().cloned()).collect();
    let mut out = BTreeMap::new();
    for r in set.rules() {
        let standalone = ![r.meta.id.as_deref(), r.meta.name.as_deref()].into_iter().flatten().any(|k| fed.contains(k));
        let info = RuleInfo { meta: Arc::clone(&r.meta), category: Some(r.category), standalone };
        out.insert(r.meta.key().to_owned(), info);
    }
    for c in set.correlations() {
        out.insert(c.meta.key().to_owned(), RuleInfo { meta: Arc::clone(&c.meta), category: None, standalone: true });
    }
    out
}

fn describe(rules: &BTreeMap<String, RuleInfo>, key: &str) -> String {
    match rules.get(key) {
        Some(r) => format!("{key} \"{}\" ({})", r.meta.title, relative(&r.meta.path)),
        None => format!("{key} (no such rule)"),
    }
}

/// One line of `rules/tests/*.jsonl`.
struct Case {
    origin: String,
    rule: String,
    expect: bool,
    note: String,
    events: Vec<Value>,
    also: BTreeSet<String>,
}

fn read_cases() -> Vec<Case> {
    let dir = pack_dir().join("tests");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no *.jsonl test files in {}", dir.display());
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let origin = format!("rules/tests/{}:{}", file.file_name().unwrap_or_default().to_string_lossy(), i + 1);
            out.push(parse_case(origin, line));
        }
    }
    out
}

fn parse_case(origin: String, line: &str) -> Case {
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{origin}: not JSON: {e}"));
    let obj = v.as_object().unwrap_or_else(|| panic!("{origin}: a test case is a JSON object"));
    for k in obj.keys() {
        assert!(
            ["rule", "expect", "note", "event", "events", "also"].contains(&k.as_str()),
            "{origin}: unknown key `{k}` (rule, expect, note, event, events, also)"
        );
    }
    let text = |k: &str| {
        obj.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("{origin}: `{k}` (a string) is required"))
    };
    let rule = text("rule");
    let note = text("note");
    let expect = obj
        .get("expect")
        .and_then(Value::as_bool)
        .unwrap_or_else(|| panic!("{origin}: `expect` must be true or false"));
    let events = match (obj.get("event"), obj.get("events")) {
        (Some(e), None) => vec![e.clone()],
        (None, Some(Value::Array(es))) if !es.is_empty() => es.clone(),
        _ => panic!("{origin}: give either `event` (an object) or `events` (a non-empty list)"),
    };
    for (n, e) in events.iter().enumerate() {
        assert!(e.is_object(), "{origin}: event {n} is not a JSON object");
    }
    let also = match obj.get("also") {
        None => BTreeSet::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| panic!("{origin}: `also` lists rule ids")))
            .collect(),
        Some(_) => panic!("{origin}: `also` must be a list of rule ids"),
    };
    Case { origin, rule, expect, note, events, also }
}

fn is_uuid_v4(s: &str) -> bool {
    let b = s.as_bytes();
    let dashes = [8, 13, 18, 23];
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if dashes.contains(&i) {
                *c == b'-'
            } else {
                c.is_ascii_digit() || (b'a'..=b'f').contains(c)
            }
        })
        && b[14] == b'4'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
}

fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

#[test]
fn pack_loads_cleanly() {
    let (set, report) = load();
    let problems: Vec<String> = report
        .errors
        .iter()
        .map(|e| format!("error: {e}"))
        .chain(report.warnings.iter().map(|w| format!("warning: {w}")))
        .chain(report.not_applicable.iter().map(|n| format!("not applicable: {n}")))
        .collect();
    assert!(problems.is_empty(), "the default rule pack must load cleanly:\n{}", problems.join("\n"));
    let rules = rules_by_id(&set);
    let standalone = rules.values().filter(|r| r.standalone && r.category.is_some()).count();
    assert!(standalone >= MIN_RULES, "{standalone} detection rules alert on their own; the pack needs {MIN_RULES}");
    assert_eq!(report.rules + report.correlations, rules.len(), "rule ids are unique");
    for file in CORRELATIONS {
        assert!(
            set.correlations().iter().any(|c| relative(&c.meta.path) == *file),
            "{file} must hold a correlation rule"
        );
    }
    // Every *.yml under rules/ is a rule: test data must not be YAML.
    for r in rules.values() {
        assert!(!relative(&r.meta.path).starts_with("tests/"), "{} is under rules/tests/", r.meta.path.display());
    }
}

#[test]
fn every_rule_has_the_metadata_an_analyst_needs() {
    let (set, _) = load();
    let rules = rules_by_id(&set);
    let mut problems = Vec::new();
    for (key, r) in &rules {
        let m = &r.meta;
        let at = describe(&rules, key);
        let mut need = |ok: bool, what: &str| {
            if !ok {
                problems.push(format!("{at}: {what}"));
            }
        };
        need(m.id.as_deref().is_some_and(is_uuid_v4), "`id` must be a UUID v4 (lowercase)");
        need(!m.title.trim().is_empty() && m.title.len() <= 110, "`title` must be set and at most 110 characters");
        need(m.status.is_some(), "`status` is required");
        need(m.description.as_deref().is_some_and(|d| d.trim().len() >= 40), "`description` must explain the rule");
        need(
            !m.references.is_empty() && m.references.iter().all(|u| u.starts_with("https://")),
            "`references` (https URLs) required",
        );
        need(m.author.as_deref() == Some("Osprey"), "`author` must be Osprey");
        need(m.date.as_deref().is_some_and(is_date), "`date` must be YYYY-MM-DD");
        need(m.level.is_some(), "`level` is required");
        need(!m.falsepositives.is_empty(), "`falsepositives` is required");
        need(!m.threat.techniques.is_empty(), "tags must name an ATT&CK technique (attack.tNNNN)");
        need(!m.threat.tactics.is_empty(), "tags must name an ATT&CK tactic (attack.execution, ...)");
        need(
            m.tags.iter().all(|t| t.starts_with("attack.") || t.starts_with("cve.")),
            "tags are attack.* or cve.* only",
        );
        // One folder per tactic: the folder is one of the rule's tactics.
        let rel = relative(&m.path);
        let folder = rel.split('/').next().unwrap_or("");
        need(m.tags.iter().any(|t| t.strip_prefix("attack.") == Some(folder)), "the folder must be one of its tactics");
        if r.category.is_some() {
            need(m.logsource.product.as_deref() == Some("linux"), "`logsource.product` must be linux");
        }
        if !m.response.is_empty() {
            need(
                matches!(m.level, Some(agent::detect::Level::High | agent::detect::Level::Critical)),
                "`response` is for high or critical rules only",
            );
        }
    }
    let responding = set.rules().iter().map(|r| &r.meta).chain(set.correlations().iter().map(|c| &c.meta));
    let responding = responding.filter(|m| !m.response.is_empty()).count();
    assert!(
        responding <= 12,
        "{responding} rules take automatic responses: keep `response:` to a few high-confidence rules"
    );
    assert!(problems.is_empty(), "{} metadata problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn pack_covers_the_promised_behaviour() {
    let (set, _) = load();
    let rules = rules_by_id(&set);
    let files: BTreeSet<String> = rules.values().map(|r| relative(&r.meta.path)).collect();
    let mut missing = Vec::new();
    for (topic, wanted) in COVERAGE {
        for f in *wanted {
            if !files.contains(*f) {
                missing.push(format!("{topic}: {f} is not loaded"));
            }
        }
    }
    // Every category Osprey produces (or will) has a rule, except process_termination.
    for c in Category::ALL {
        if c != Category::ProcessTermination && !rules.values().any(|r| r.category == Some(c)) {
            missing.push(format!("no rule for logsource category {}", c.name()));
        }
    }
    assert!(missing.is_empty(), "coverage gaps:\n{}", missing.join("\n"));
}

/// The last event time of a sequence, for closing correlation windows at the end.
fn last_timestamp(events: &[Value]) -> u64 {
    events.iter().filter_map(|e| JsonEvent::new(e).timestamp_ns()).max().unwrap_or(0)
}

#[test]
fn test_events_fire_exactly_the_expected_rules() {
    let (set, _) = load();
    let rules = rules_by_id(&set);
    let cases = read_cases();
    let mut problems = Vec::new();
    let (mut positives, mut negatives) = (BTreeMap::<&str, usize>::new(), BTreeMap::<&str, usize>::new());

    for case in &cases {
        let Some(info) = rules.get(&case.rule) else {
            problems.push(format!("{}: `rule` {} is not in the pack", case.origin, case.rule));
            continue;
        };
        for a in &case.also {
            if a == &case.rule || !rules.contains_key(a) {
                problems.push(format!("{}: `also` names {a}, which is not another rule of the pack", case.origin));
            }
        }
        *if case.expect { &mut positives } else { &mut negatives }.entry(case.rule.as_str()).or_default() += 1;

        let mut detector = Detector::new(Arc::clone(&set));
        let mut alerts = Vec::new();
        for (n, doc) in case.events.iter().enumerate() {
            let ev = JsonEvent::new(doc);
            let Some(category) = ev.category() else {
                problems.push(format!(
                    "{}: event {n} has no logsource category (check event.category/type/action)",
                    case.origin
                ));
                continue;
            };
            // A near miss is an event the rule looks at: same category.
            if let (false, Some(want), 1) = (case.expect, info.category, case.events.len()) {
                if category != want {
                    problems.push(format!(
                        "{}: negative event is {}, not {} like the rule: not a near miss",
                        case.origin,
                        category.name(),
                        want.name()
                    ));
                }
            }
            detector.evaluate(&ev, &mut alerts);
        }
        detector.flush(last_timestamp(&case.events).saturating_add(86_400 * 1_000_000_000), &mut alerts);

        // What an analyst would see, plus the case's own rule even where it only feeds a correlation.
        let fired: BTreeSet<String> = alerts
            .iter()
            .filter(|a| a.standalone || a.rule.key() == case.rule)
            .map(|a| a.rule.key().to_owned())
            .collect();
        let mut expected = case.also.clone();
        if case.expect {
            expected.insert(case.rule.clone());
        }
        if info.category.is_none() && case.expect {
            let correlated =
                alerts.iter().any(|a| a.rule.key() == case.rule && matches!(a.kind, AlertKind::Correlation(_)));
            if !correlated {
                problems.push(format!("{}: the correlation did not fire", case.origin));
            }
        }
        if fired != expected {
            let missing: Vec<String> = expected.difference(&fired).map(|k| describe(&rules, k)).collect();
            let extra: Vec<String> = fired.difference(&expected).map(|k| describe(&rules, k)).collect();
            let mut msg = format!("{} ({}): {}", case.origin, case.note, describe(&rules, &case.rule));
            if !missing.is_empty() {
                msg += &format!("\n    did not fire: {}", missing.join(", "));
            }
            if !extra.is_empty() {
                msg += &format!("\n    fired unexpectedly: {}", extra.join(", "));
            }
            problems.push(msg);
        }
    }

    for key in rules.keys() {
        let (p, n) =
            (positives.get(key.as_str()).copied().unwrap_or(0), negatives.get(key.as_str()).copied().unwrap_or(0));
        if p == 0 || n == 0 {
            problems
                .push(format!("{}: needs a positive and a negative test case ({p} and {n})", describe(&rules, key)));
        }
    }
    println!("replayed {} test cases for {} rules", cases.len(), rules.len());
    assert!(problems.is_empty(), "{} rule pack test problems:\n{}", problems.len(), problems.join("\n"));
}
