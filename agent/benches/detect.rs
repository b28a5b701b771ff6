//! Detection throughput: events per second on one core through the default rule pack, the
//! engine's example rules and 500
//! generated ones (target ≥ 1,000,000/s), over a mix of process, file, network and DNS events in
//! which a few percent match.
//!
//! Two event forms are measured: a native event type that answers fields by `match` on
//! [`Known`] (as the pipeline's own event will), and ECS JSON documents read through
//! [`JsonEvent`] (the `osprey rules test --events FILE` path; parsing the JSON is not counted).
//!
//! `cargo bench -p agent --bench detect`

use std::{borrow::Cow, hint::black_box, path::Path, sync::Arc, time::Duration};

use agent::detect::{
    Alert, Category, Detector, EventFields, Field, FieldValue, JsonEvent, Known, RuleSet, Scalar, Scratch,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::{json, Value};

/// A small deterministic generator (no rand dependency).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[(self.next() as usize) % v.len()]
    }
}

const TOOLS: &[&str] = &[
    "curl",
    "wget",
    "nc",
    "ncat",
    "socat",
    "python3",
    "perl",
    "ruby",
    "php",
    "base64",
    "xxd",
    "chmod",
    "chattr",
    "crontab",
    "systemctl",
    "useradd",
    "usermod",
    "passwd",
    "ssh",
    "scp",
    "rsync",
    "tar",
    "zip",
    "gpg",
    "openssl",
    "nmap",
    "masscan",
    "tcpdump",
    "strace",
    "gdb",
    "insmod",
    "modprobe",
    "bpftool",
    "nsenter",
    "unshare",
    "mount",
    "iptables",
    "setcap",
    "getcap",
    "find",
    "dd",
    "shred",
    "history",
    "journalctl",
    "auditctl",
    "kubectl",
    "docker",
    "crictl",
    "xmrig",
    "minerd",
];
const WORDS: &[&str] = &[
    "--no-check-certificate",
    "-O-",
    "/dev/tcp/",
    "base64 -d",
    "|sh",
    "| bash",
    "-exec",
    "/etc/shadow",
    "authorized_keys",
    "LD_PRELOAD",
    "stratum+tcp",
    "--donate-level",
    "-p 4444",
    "reverse",
    "pty.spawn",
    "socket.socket",
    "chmod +x",
    "/tmp/.",
    "/dev/shm/",
    "release_agent",
    "-t 1 -m -u -i -n",
    "--privileged",
    "setuid",
    "cap_sys_admin",
    "-s /bin/sh",
    "curl -fsSL",
    "--output /tmp",
    "nohup",
    "disown",
    "unset HISTFILE",
    "rm -rf /var/log",
    "crontab -r",
    "@reboot",
];
const DIRS: &[&str] = &["/usr/bin/", "/usr/sbin/", "/bin/", "/tmp/", "/dev/shm/", "/var/tmp/", "/opt/app/bin/"];
const FILES: &[&str] = &[
    "/etc/passwd",
    "/etc/shadow",
    "/etc/sudoers",
    "/etc/crontab",
    "/etc/ld.so.preload",
    "/root/.ssh/authorized_keys",
    "/home/alice/.bashrc",
    "/etc/systemd/system/evil.service",
    "/var/spool/cron/crontabs/root",
    "/proc/sys/kernel/core_pattern",
];
const DOMAINS: &[&str] =
    &["pool.minexmr.com", "xmr.nanopool.org", "ngrok.io", "pastebin.com", "duckdns.org", "transfer.sh"];

/// 500 generated rules across categories, modifiers and condition forms.
fn generated_rules(n: usize) -> Vec<String> {
    let mut r = Lcg(7);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let header = |cat: &str| {
            format!("title: Generated rule {i}\nid: gen-{i}\nlevel: medium\nlogsource:\n    product: linux\n    category: {cat}\ndetection:\n")
        };
        let body = match i % 10 {
            0..=3 => format!(
                "    selection:\n        Image|endswith: '/{}'\n        CommandLine|contains:\n            - '{}'\n            - '{}'\n    filter:\n        ParentImage|endswith: '/{}'\n    condition: selection and not filter\n",
                r.pick(TOOLS), r.pick(WORDS), r.pick(WORDS), r.pick(TOOLS)
            ),
            4 => format!(
                "    selection:\n        CommandLine|contains|all:\n            - '{}'\n            - '{}'\n    condition: selection\n",
                r.pick(WORDS), r.pick(WORDS)
            ),
            5 => format!(
                "    sel_img:\n        Image|startswith: '{}'\n    sel_cmd:\n        CommandLine|re: '{}\\s+-[a-z]+'\n    condition: all of sel_*\n",
                r.pick(DIRS), r.pick(TOOLS)
            ),
            6 => format!(
                "    selection:\n        ParentImage|endswith:\n            - '/{}'\n            - '/{}'\n        Image|endswith: '/{}'\n    condition: selection\n",
                r.pick(TOOLS), r.pick(TOOLS), r.pick(TOOLS)
            ),
            7 => format!(
                "    selection:\n        TargetFilename|startswith: '{}'\n    filter:\n        Image|endswith: '/{}'\n    condition: selection and not filter\n",
                r.pick(FILES), r.pick(TOOLS)
            ),
            8 => format!(
                "    selection:\n        DestinationPort: {}\n        Image|endswith: '/{}'\n    condition: selection\n",
                1024 + r.next() % 60000, r.pick(TOOLS)
            ),
            _ => format!("    selection:\n        QueryName|endswith: '.{}{}'\n    condition: selection\n", r.pick(DOMAINS), i),
        };
        let cat = match i % 10 {
            7 => "file_event",
            8 => "network_connection",
            9 => "dns_query",
            _ => "process_creation",
        };
        out.push(format!("{}{}", header(cat), body));
    }
    out
}

/// A realistic mix: mostly benign process and file activity, some network and DNS, a few hits.
fn events(n: usize) -> Vec<Value> {
    let mut r = Lcg(42);
    let benign = ["ls", "cat", "grep", "sed", "awk", "bash", "sh", "sleep", "date", "git", "make", "cc1", "ld", "node"];
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let ts = format!("2026-11-21T10:{:02}:{:02}.{:09}Z", (i / 60) % 60, i % 60, i);
        let kind = r.next() % 100;
        let suspicious = r.next().is_multiple_of(50);
        let tool = if suspicious { r.pick(TOOLS) } else { r.pick(&benign) };
        let exe = format!("{}{}", if suspicious { r.pick(DIRS) } else { "/usr/bin/" }, tool);
        let cmd = if suspicious {
            format!("{tool} {} {} http://203.0.113.{}/x", r.pick(WORDS), r.pick(WORDS), r.next() % 255)
        } else {
            format!("{tool} --color=auto -la /home/alice/src/project-{}/file{}.txt", r.next() % 50, r.next() % 1000)
        };
        let process = json!({"pid": 1000 + i, "entity_id": format!("e{i}"), "executable": exe, "name": tool,
            "command_line": cmd, "working_directory": "/home/alice",
            "user": {"id": "1000", "name": "alice"},
            "parent": {"pid": 999, "executable": "/usr/bin/bash", "command_line": "-bash"}});
        let ev = match kind {
            0..=54 => {
                json!({"@timestamp": ts, "event": {"category": ["process"], "type": ["start"], "action": "exec"}, "process": process})
            }
            55..=79 => {
                let path = if suspicious {
                    r.pick(FILES).to_owned()
                } else {
                    format!("/home/alice/src/project-{}/out{}.o", r.next() % 50, r.next() % 100)
                };
                json!({"@timestamp": ts, "event": {"category": ["file"], "type": ["creation"], "action": "create"}, "process": process, "file": {"path": path}})
            }
            80..=92 => {
                json!({"@timestamp": ts, "event": {"category": ["network"], "type": ["connection"], "action": "connect"}, "process": process,
                "destination": {"ip": format!("192.0.2.{}", r.next() % 255), "port": if suspicious { 4444 } else { 443 }},
                "network": {"transport": "tcp", "direction": "egress"}})
            }
            _ => {
                let name = if suspicious {
                    format!("x.{}", r.pick(DOMAINS))
                } else {
                    format!("api{}.github.com", r.next() % 9)
                };
                json!({"@timestamp": ts, "event": {"category": ["network"], "type": ["protocol"], "action": "dns_query"}, "process": process, "dns": {"question": {"name": name}}})
            }
        };
        out.push(ev);
    }
    out
}

/// What the pipeline's own event type looks like to rules: typed fields, answered by `match`.
#[derive(Default)]
struct Native {
    category: Option<Category>,
    ts: u64,
    pid: i64,
    entity_id: String,
    executable: String,
    name: String,
    command_line: String,
    cwd: String,
    user: String,
    parent_executable: String,
    parent_command_line: String,
    file_path: Option<String>,
    dst_ip: Option<String>,
    dst_port: Option<i64>,
    transport: Option<String>,
    direction: Option<String>,
    dns_name: Option<String>,
}

fn s(v: &str) -> FieldValue<'_> {
    FieldValue::One(Scalar::Str(Cow::Borrowed(v)))
}

fn opt(v: &Option<String>) -> FieldValue<'_> {
    v.as_deref().map_or(FieldValue::Missing, s)
}

impl Native {
    fn from_json(v: &Value) -> Native {
        let ev = JsonEvent::new(v);
        let text = |p: &str| v.pointer(p).and_then(Value::as_str).map(str::to_owned);
        Native {
            category: ev.category(),
            ts: ev.timestamp_ns().unwrap_or(0),
            pid: v.pointer("/process/pid").and_then(Value::as_i64).unwrap_or(0),
            entity_id: text("/process/entity_id").unwrap_or_default(),
            executable: text("/process/executable").unwrap_or_default(),
            name: text("/process/name").unwrap_or_default(),
            command_line: text("/process/command_line").unwrap_or_default(),
            cwd: text("/process/working_directory").unwrap_or_default(),
            user: text("/process/user/name").unwrap_or_default(),
            parent_executable: text("/process/parent/executable").unwrap_or_default(),
            parent_command_line: text("/process/parent/command_line").unwrap_or_default(),
            file_path: text("/file/path"),
            dst_ip: text("/destination/ip"),
            dst_port: v.pointer("/destination/port").and_then(Value::as_i64),
            transport: text("/network/transport"),
            direction: text("/network/direction"),
            dns_name: text("/dns/question/name"),
        }
    }
}

impl EventFields for Native {
    fn category(&self) -> Option<Category> {
        self.category
    }
    fn timestamp_ns(&self) -> Option<u64> {
        Some(self.ts)
    }
    fn get(&self, field: &Field) -> FieldValue<'_> {
        match field.known() {
            Some(Known::ProcessPid) => FieldValue::One(Scalar::Int(self.pid)),
            Some(Known::ProcessEntityId) => s(&self.entity_id),
            Some(Known::ProcessExecutable) => s(&self.executable),
            Some(Known::ProcessName) => s(&self.name),
            Some(Known::ProcessCommandLine) => s(&self.command_line),
            Some(Known::ProcessWorkingDirectory) => s(&self.cwd),
            Some(Known::ProcessUserName) => s(&self.user),
            Some(Known::ProcessParentExecutable) => s(&self.parent_executable),
            Some(Known::ProcessParentCommandLine) => s(&self.parent_command_line),
            Some(Known::FilePath) => opt(&self.file_path),
            Some(Known::DestinationIp) => opt(&self.dst_ip),
            Some(Known::DestinationPort) => {
                self.dst_port.map_or(FieldValue::Missing, |p| FieldValue::One(Scalar::Int(p)))
            }
            Some(Known::NetworkTransport) => opt(&self.transport),
            Some(Known::NetworkDirection) => opt(&self.direction),
            Some(Known::DnsQuestionName) => opt(&self.dns_name),
            _ => FieldValue::Missing,
        }
    }
    fn any_string(&self, f: &mut dyn FnMut(&str) -> bool) -> bool {
        [&self.executable, &self.command_line, &self.cwd, &self.user, &self.parent_executable].into_iter().any(|x| f(x))
            || [&self.file_path, &self.dst_ip, &self.dns_name].into_iter().flatten().any(|x| f(x))
    }
}

/// Every .yml/.yaml file below `dir`, with its text.
fn rule_files(dir: &Path, out: &mut Vec<(String, String)>) {
    for e in std::fs::read_dir(dir).expect("rule dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rule_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yml" || x == "yaml") {
            out.push((p.display().to_string(), std::fs::read_to_string(&p).expect("read")));
        }
    }
}

/// The default pack (rules/), the engine's example rules and IoC list, and 500 generated rules.
fn rule_set() -> RuleSet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rule_files(&root.join("../rules"), &mut files);
    let pack = files.len();
    assert!(pack >= 40, "the default pack is there: {pack} files");
    rule_files(&root.join("src/detect/testdata"), &mut files);
    files.extend(generated_rules(500).into_iter().enumerate().map(|(i, t)| (format!("gen_{i}.yml"), t)));
    let (set, report) = RuleSet::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())));
    assert!(report.is_ok(), "{:#?}", report.errors);
    assert!(report.rules >= 500 + pack, "{} rules", report.rules);
    set
}

fn bench(c: &mut Criterion) {
    let set = Arc::new(rule_set());
    let docs = events(10_000);
    let natives: Vec<Native> = docs.iter().map(Native::from_json).collect();

    // How many events match (sanity: a few percent, not zero, not all).
    let mut d = Detector::new(Arc::clone(&set));
    let mut out: Vec<Alert> = Vec::new();
    let mut matching = 0;
    for n in &natives {
        out.clear();
        d.evaluate(n, &mut out);
        matching += usize::from(!out.is_empty());
    }
    eprintln!(
        "detect bench: {} rules ({} unfiltered in process_creation), {} events, {} with alerts",
        set.rules().len(),
        set.unfiltered_rules(Category::ProcessCreation),
        natives.len(),
        matching
    );

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(natives.len() as u64));
    g.measurement_time(Duration::from_secs(8));
    g.bench_function("native_events", |b| {
        let mut d = Detector::new(Arc::clone(&set));
        let mut out = Vec::new();
        b.iter(|| {
            for n in &natives {
                d.evaluate(black_box(n), &mut out);
                out.clear();
            }
        })
    });
    g.bench_function("json_events", |b| {
        let mut d = Detector::new(Arc::clone(&set));
        let mut out = Vec::new();
        b.iter(|| {
            for v in &docs {
                d.evaluate(&JsonEvent::new(black_box(v)), &mut out);
                out.clear();
            }
        })
    });
    g.bench_function("native_rules_only", |b| {
        let mut scratch = Scratch::new();
        let (mut rules, mut iocs) = (Vec::new(), Vec::new());
        b.iter(|| {
            for n in &natives {
                set.match_event(black_box(n), &mut scratch, &mut rules, &mut iocs);
                rules.clear();
                iocs.clear();
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
