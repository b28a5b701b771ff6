//! The fleet store on real ClickHouse servers (Debian's clickhouse-server 18.16), each started by
//! the test on 127.0.0.1 with its own ports and directories and stopped after:
//! - a live `osprey run` (real kernel) writes into ClickHouse through its `clickhouse` sink; the
//!   rows match what the sink says it delivered; a server killed mid-run means retries, then
//!   counted drops, and no crash; after a restart delivery resumes;
//! - a two-shard cluster (a Distributed table) answers every hunt exactly like one server, and
//!   both like the node's own recorder;
//! - a pivot recorded on this host (a process connects to a loopback "sshd") and a second host's
//!   recorded events (the sshd that accepted that very connection, and what its child did) are one
//!   story across both hosts in `osprey story --fleet`.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use osprey_tests::{clickhouse::ClickHouse, marker, metric_sum, osprey_bin, require_root};
use serde_json::{json, Value};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

fn osprey(args: &[&str]) -> Output {
    Command::new(osprey_bin()).args(args).env_remove("OSPREY_FLEET_PASSWORD").output().unwrap()
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}\n{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stdout).unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

/// `osprey run` with a clickhouse sink named `fleet`, no recorder, health on a free port.
struct Agent {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Agent {
    fn start(dir: &Path, url: &str, sink: &str) -> Self {
        let port = free_port();
        let cfg = dir.join("osprey.yaml");
        std::fs::write(
            &cfg,
            format!(
                "output:\n  stdout: false\n  sinks:\n    - name: fleet\n{sink}      clickhouse:\n        url: {url}\n        flush_interval: 200ms\n        batch_events: 500\n        max_retries: 2\n        initial_backoff: 100ms\n        max_backoff: 400ms\n        timeout: 5s\nhealth:\n  listen: 127.0.0.1:{port}\ncontrol:\n  socket: {}\nrecorder:\n  enabled: false\n",
                dir.join("osprey.sock").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("agent.log")).unwrap();
        let child = Command::new(osprey_bin())
            .args(["--log-format", "json", "run", "--duration", "600s", "--config"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let agent = Self { child, dir: dir.to_owned(), port };
        wait_for("the agent to be ready", Duration::from_secs(60), || {
            http_get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200") || r.starts_with("HTTP/1.0 200"))
        });
        agent
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("agent.log")).unwrap_or_default()
    }

    fn metric(&self, name: &str) -> f64 {
        let text = http_get(self.port, "/metrics").unwrap_or_default();
        let mine: String = text.lines().filter(|l| l.contains("sink=\"fleet\"")).map(|l| format!("{l}\n")).collect();
        metric_sum(&mine, name)
    }

    /// SIGTERM, a clean exit, and the sink's last word: (written, dropped).
    fn stop(mut self) -> (u64, u64) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        let log = self.log();
        assert!(status.success(), "agent: {status}\n{log}");
        let closed = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["fields"]["message"] == "output closed" && v["fields"]["sink"] == "fleet")
            .unwrap_or_else(|| panic!("the sink reports its counts at shutdown:\n{log}"));
        let field = |k: &str| closed["fields"][k].as_u64().unwrap_or_else(|| panic!("{k} in {closed}"));
        (field("written"), field("dropped"))
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn init(url: &str) {
    ok(osprey(&["fleet", "init", "--url", url]), "fleet init");
}

/// Runs `n` short processes whose command line carries `tag`.
fn tagged_execs(tag: &str, n: usize) {
    for _ in 0..n {
        assert!(Command::new("/bin/sh").args(["-c", "true", tag]).status().unwrap().success());
    }
}

#[test]
fn live_agent_events_land_in_clickhouse_and_an_outage_is_counted_not_fatal() {
    require_root();
    let mut ch = ClickHouse::start();
    init(&ch.url());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &ch.url(), "      queue: 2000\n");
    let tag = marker();
    tagged_execs(&tag, 20);
    let q = format!("SELECT count() FROM osprey.events WHERE action = 'exec' AND position(cmdline, '{tag}') > 0");
    wait_for("the tagged execs in ClickHouse", Duration::from_secs(30), || ch.count(&q) == 20);
    // Typed columns are filled from the document.
    let row = ch.query(&format!(
        "SELECT host != '', entity != '', parent != '', pid > 0, exe, user, length(doc) > 100 FROM osprey.events WHERE action = 'exec' AND position(cmdline, '{tag}') > 0 LIMIT 1"
    ));
    let sh = osprey_tests::canonical("/bin/sh");
    assert_eq!(row.trim(), format!("1\t1\t1\t1\t{sh}\troot\t1"), "{row}");

    // The server dies: batches are retried, then given up and counted; the queue fills and
    // drops are counted; the agent keeps running.
    ch.kill();
    let churn = Command::new(WORKLOAD).args(["churn", "4000"]).status().unwrap();
    assert!(churn.success());
    wait_for("retries and drops", Duration::from_secs(60), || agent.metric("osprey_output_retries_total") > 0.0 && agent.metric("osprey_output_dropped_total") > 0.0);
    assert!(http_get(agent.port, "/healthz").is_some_and(|r| r.contains(" 200 ")), "the agent is alive");
    assert!(agent.metric("osprey_output_errors_total") > 0.0);

    // Back up: delivery resumes.
    ch.restart();
    // A server restarted after SIGKILL answers before it has loaded its tables: events sent
    // then are retried a few times and dropped (counted) like any during the outage. The tagged
    // execs come once the table answers again.
    wait_for("the table after the restart", Duration::from_secs(60), || ch.try_query("SELECT count() FROM osprey.events").is_ok());
    // A round sent while the restarted server still refuses inserts is retried, given up and
    // counted like any during the outage: new rounds until one arrives whole.
    let deadline = Instant::now() + Duration::from_secs(120);
    for round in 1.. {
        let tag2 = marker();
        tagged_execs(&tag2, 20);
        let q2 = format!("SELECT count() FROM osprey.events WHERE action = 'exec' AND position(cmdline, '{tag2}') > 0");
        let landed = |ch: &ClickHouse| ch.try_query(&q2).ok().and_then(|v| v.trim().parse::<u64>().ok()) == Some(20);
        let round_end = Instant::now() + Duration::from_secs(10);
        let arrived = loop {
            if landed(&ch) {
                break true;
            }
            if Instant::now() >= round_end {
                break false;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        if arrived {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no round of execs arrived after the restart ({round} rounds); sink retries {}, errors {}, dropped {}, written {}\nagent log:\n{}\nserver log:\n{}",
            agent.metric("osprey_output_retries_total"),
            agent.metric("osprey_output_errors_total"),
            agent.metric("osprey_output_dropped_total"),
            agent.metric("osprey_output_events_total"),
            agent.log().chars().rev().take(4000).collect::<Vec<_>>().into_iter().rev().collect::<String>(),
            ch.log()
        );
    }
    let written_live = agent.metric("osprey_output_events_total");
    let (written, dropped) = agent.stop();
    assert!(written as f64 >= written_live);
    assert!(dropped > 0, "the outage cost events, and they were counted");
    let rows = ch.count("SELECT count() FROM osprey.events");
    assert_eq!(rows, written, "every event the sink counted as delivered is in ClickHouse, once");
    assert_eq!(ch.count(&q), 20);
}

/// A synthetic fleet: `hosts` hosts, each with web servers running shells that fetch, connect,
/// resolve, write and trip alerts.
fn fleet_docs(hosts: usize, per_host: usize) -> Vec<String> {
    let t0: u64 = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 - 3_600_000_000_000;
    let mut docs = Vec::new();
    for h in 0..hosts {
        let host = format!("node-{h:02}");
        for i in 0..per_host {
            let ts = t0 + (i as u64) * 1_000_000_000 + h as u64 * 1000;
            let ent = format!("{host}-p{i}");
            let parent = if i == 0 { format!("{host}-init") } else { format!("{host}-p{}", i / 4) };
            let at = |t: u64| agent::event::rfc3339(t);
            let user = if i % 3 == 0 { "www-data" } else { "root" };
            let exe = ["/usr/bin/curl", "/bin/sh", "/tmp/x/dropper", "/usr/sbin/nginx"][i % 4];
            docs.push(json!({"@timestamp": at(ts), "event": {"kind": "event", "action": "exec", "category": ["process"], "type": ["start"]},
                "host": {"id": host, "hostname": host},
                "process": {"pid": 1000 + i, "entity_id": ent, "executable": exe, "command_line": format!("{exe} --job {i} http://evil{}.example/x", i % 5),
                  "hash": {"sha256": format!("{:064x}", i % 7)}, "user": {"name": user}, "parent": {"entity_id": parent}}}).to_string());
            let port = [443, 22, 8080][i % 3];
            let ip = if i % 2 == 0 { format!("203.0.113.{}", i % 250) } else { format!("2001:db8::{:x}", i) };
            docs.push(json!({"@timestamp": at(ts + 1000), "event": {"kind": "event", "action": "connection_established", "category": ["network"]},
                "host": {"id": host}, "process": {"pid": 1000 + i, "entity_id": ent, "executable": exe},
                "source": {"ip": "10.0.0.5", "port": 40000 + i}, "destination": {"ip": ip, "port": port, "domain": format!("evil{}.example", i % 5)}}).to_string());
            docs.push(json!({"@timestamp": at(ts + 2000), "event": {"kind": "event", "action": "dns_query", "category": ["network"]},
                "host": {"id": host}, "process": {"pid": 1000 + i, "entity_id": ent, "executable": exe},
                "dns": {"question": {"name": format!("c{}.evil{}.example.", i % 9, i % 5)}}}).to_string());
            docs.push(json!({"@timestamp": at(ts + 3000), "event": {"kind": "event", "action": "creation", "category": ["file"]},
                "host": {"id": host}, "process": {"pid": 1000 + i, "entity_id": ent, "executable": exe},
                "file": {"path": format!("/etc/cron.d/job{}", i % 11)}}).to_string());
            if i % 10 == 0 {
                docs.push(json!({"@timestamp": at(ts + 4000), "event": {"kind": "alert", "action": "alert", "id": format!("{host}-a{i}"), "severity": 73},
                    "host": {"id": host}, "process": {"pid": 1000 + i, "entity_id": ent, "executable": exe},
                    "rule": {"id": "r-cron", "name": "cron file written"}}).to_string());
            }
        }
    }
    docs
}

fn hunts() -> Vec<Vec<&'static str>> {
    vec![
        vec!["--ip", "203.0.113.8"],
        vec!["--cidr", "203.0.113.0/28"],
        vec!["--cidr", "2001:db8::/32"],
        vec!["--cidr", "10.0.0.0/8", "--port", "22"],
        vec!["--domain", "evil3.example"],
        vec!["--domain", "*.evil1.example"],
        vec!["--path", "/etc/cron.d/job1*"],
        vec!["--sha256", "0000000000000000000000000000000000000000000000000000000000000003"],
        vec!["--cmdline=--job 1", "--user", "www-data"],
        vec!["--exe", "/tmp/*", "--alerts"],
        vec!["--user", "www-data", "--port", "443"],
        vec!["--host", "node-03", "--path", "/etc/cron.d/*"],
        vec!["--exe", "*/curl", "--limit", "7"],
    ]
}

/// The hunt's hits as comparable rows, in host then time order.
fn hits(v: &Value) -> Vec<String> {
    let mut rows: Vec<String> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| format!("{} {} {} {} {} {}", h["host"], h["@timestamp"], h["action"], h["entity_id"], h["command_line"], h["object"]))
        .collect();
    rows.sort();
    rows
}

#[test]
fn a_two_shard_cluster_answers_hunts_like_one_server_and_like_the_recorder() {
    let docs = fleet_docs(8, 120);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fleet.jsonl");
    std::fs::write(&file, docs.join("\n")).unwrap();
    let file_s = file.to_str().unwrap();

    let single = ClickHouse::start();
    init(&single.url());
    ok(osprey(&["fleet", "init", "--url", &single.url()]), "init twice is fine");
    ok(osprey(&["fleet", "load", "--url", &single.url(), file_s]), "load");

    let shards = ClickHouse::cluster("osprey_fleet", 2);
    let (a, b) = (shards[0].url(), shards[1].url());
    let out = ok(osprey(&["fleet", "init", "--cluster", "osprey_fleet", "--shard", &a, "--shard", &b]), "cluster init");
    assert!(out.contains("schema version 1 applied"), "{out}");
    // Inserts through the Distributed table on one shard reach both.
    ok(osprey(&["fleet", "load", "--url", &a, file_s]), "load into the cluster");
    let n = docs.len() as u64;
    wait_for("the Distributed table to spread the rows", Duration::from_secs(60), || {
        shards.iter().map(|s| s.count("SELECT count() FROM osprey.events_local")).sum::<u64>() == n
    });
    for s in &shards {
        let local = s.count("SELECT count() FROM osprey.events_local");
        assert!(local > 0 && local < n, "both shards hold part of the fleet: {local} of {n}");
        assert_eq!(s.count("SELECT count() FROM osprey.events"), n, "either shard answers for all");
    }
    let hosts = |s: &ClickHouse| -> Vec<String> { s.query("SELECT DISTINCT host FROM osprey.events_local").lines().map(str::to_owned).collect() };
    let (ha, hb) = (hosts(&shards[0]), hosts(&shards[1]));
    assert!(ha.iter().all(|h| !hb.contains(h)), "a host's events live on one shard: {ha:?} {hb:?}");

    // The node recorder's store with the same events: the reference semantics.
    let store_path = dir.path().join("r.db");
    {
        let mut store = agent::recorder::Store::open(&store_path).unwrap();
        let rows: Vec<_> = docs.iter().map(|d| agent::recorder::index::row(d.as_bytes(), None).unwrap()).collect();
        store.insert(rows.iter().zip(&docs).map(|(r, d)| (r, d.as_bytes()))).unwrap();
    }
    for h in hunts() {
        let run = |extra: &[&str]| -> Value {
            let mut args = vec!["hunt", "--json"];
            args.extend_from_slice(&h);
            args.extend_from_slice(extra);
            serde_json::from_str(&ok(osprey(&args), &format!("hunt {h:?} {extra:?}"))).unwrap()
        };
        let one = run(&["--fleet", &single.url()]);
        let two = run(&["--fleet", &a]);
        let rec = run(&["--store", store_path.to_str().unwrap()]);
        assert!(!hits(&one).is_empty(), "{h:?} finds something");
        assert_eq!(hits(&one), hits(&two), "{h:?}: cluster = single server");
        assert_eq!(hits(&one), hits(&rec), "{h:?}: fleet = recorder");
        assert_eq!(one["truncated"], rec["truncated"], "{h:?}");
        // Grouped by host.
        let hosts: Vec<&str> = one["hits"].as_array().unwrap().iter().map(|x| x["host"].as_str().unwrap()).collect();
        let mut sorted = hosts.clone();
        sorted.sort();
        assert_eq!(hosts, sorted, "{h:?}");
    }
    // The table form names each host once, as a heading.
    let text = ok(osprey(&["hunt", "--fleet", &a, "--domain", "evil3.example"]), "hunt table");
    assert!(text.contains("== host node-00:") && text.contains("== host node-07:"), "{text}");

    // Stories read the same from the cluster as from one server.
    let story = |url: &str| -> Value {
        serde_json::from_str(&ok(osprey(&["story", "--json", "--fleet", url, "node-03-a40"]), "story --fleet")).unwrap()
    };
    let (st1, st2) = (story(&single.url()), story(&a));
    assert_eq!(st1["processes"], st2["processes"]);
    assert_eq!(st1["timeline"].as_array().unwrap().len(), st2["timeline"].as_array().unwrap().len());
    assert!(st1["processes"].as_array().unwrap().iter().any(|p| p["entity_id"] == "node-03-p40" && p["subject"] == true), "{st1:#}");

    // Sweeps with an IoC list run over the fleet too.
    let ioc = dir.path().join("bad.ioc.yaml");
    std::fs::write(&ioc, "title: Bad infra\ndomains:\n  - evil4.example\n").unwrap();
    let sweep = |url: &str| -> Value { serde_json::from_str(&ok(osprey(&["hunt", "--json", "--fleet", url, "--ioc", ioc.to_str().unwrap()]), "sweep")).unwrap() };
    let (s1, s2) = (sweep(&single.url()), sweep(&a));
    assert_eq!(s1["scanned"], json!(docs.iter().filter(|d| !d.contains("\"alert\"")).count()));
    assert!(!hits(&s1).is_empty());
    assert_eq!(hits(&s1), hits(&s2));

    // Retention without TTL (18.16): whole days dropped.
    let old_day = agent::event::rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 - 10 * 86_400_000_000_000);
    let old = dir.path().join("old.jsonl");
    std::fs::write(&old, json!({"@timestamp": old_day, "event": {"action": "exec"}, "host": {"id": "node-00"}, "process": {"entity_id": "old", "command_line": "old"}}).to_string()).unwrap();
    ok(osprey(&["fleet", "load", "--url", &single.url(), old.to_str().unwrap()]), "load an old day");
    assert_eq!(single.count("SELECT count() FROM osprey.events"), n + 1);
    let pruned = ok(osprey(&["fleet", "prune", "--url", &single.url(), "--days", "7"]), "prune");
    assert!(pruned.contains(&format!("dropped {} {}", single.url(), &old_day[..10])) && pruned.contains("1 partition(s) dropped"), "{pruned}");
    assert_eq!(single.count("SELECT count() FROM osprey.events"), n, "only the old day went");
}

/// Our side of the pivot, as this host's agent recorded it: the `connection_established` of the
/// "ssh" client to the loopback "sshd".
fn pivot_event(ch: &ClickHouse, client_pid: u32, sport: u16) -> Value {
    let q = format!(
        "SELECT doc FROM osprey.events WHERE action = 'connection_established' AND pid = {client_pid} AND src_port = {sport} LIMIT 1 FORMAT JSONEachRow"
    );
    let mut row = String::new();
    wait_for("the client's connection in ClickHouse", Duration::from_secs(30), || {
        row = ch.query(&q);
        !row.trim().is_empty()
    });
    let row: Value = serde_json::from_str(row.trim()).unwrap();
    serde_json::from_str(row["doc"].as_str().unwrap()).unwrap()
}

#[test]
fn a_pivot_from_this_host_to_another_is_one_story_across_both() {
    require_root();
    let ch = ClickHouse::start();
    init(&ch.url());
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path(), &ch.url(), "");

    // This host (A): a loopback "sshd" and an "ssh" client started by a shell.
    let mut sshd = Command::new(WORKLOAD).args(["serve", "127.0.0.1:0", "1", "0"]).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    let mut out = sshd.stdout.take().unwrap();
    let mut b = [0u8; 1];
    while !line.ends_with('\n') {
        assert_eq!(out.read(&mut b).unwrap(), 1);
        line.push(b[0] as char);
    }
    let addr = line.trim().strip_prefix("listening: ").unwrap().to_owned();
    let client = Command::new("/bin/sh").args(["-c", &format!("exec {WORKLOAD} tcp {addr} 100")]).output().unwrap();
    assert!(client.status.success());
    let text = String::from_utf8_lossy(&client.stdout).into_owned();
    let local: std::net::SocketAddr = text.lines().find_map(|l| l.strip_prefix("local: ")).unwrap().parse().unwrap();
    assert!(sshd.wait().unwrap().success());

    // Find the client's process by its connection (the shell exec'd into it: same pid).
    let q = format!("SELECT pid FROM osprey.events WHERE action = 'connection_established' AND src_port = {} AND dst_port = {} LIMIT 1", local.port(), addr.rsplit(':').next().unwrap());
    let mut pid = String::new();
    wait_for("the pivot connection", Duration::from_secs(30), || {
        pid = ch.query(&q);
        !pid.trim().is_empty()
    });
    let pivot = pivot_event(&ch, pid.trim().parse().unwrap(), local.port());
    let a_host = pivot["host"]["id"].as_str().unwrap().to_owned();
    let client_entity = pivot["process"]["entity_id"].as_str().unwrap().to_owned();

    // Host B: recorded elsewhere — the sshd that accepted that same connection (same four
    // values, 3 ms later by B's clock), the session it forked, a shell, and a payload that reads
    // /etc/shadow and trips an alert.
    let tag = marker();
    let b_host = format!("hostb-{}", &tag[7..13]);
    let t = agent::recorder::index::parse_ts(pivot["@timestamp"].as_str().unwrap()).unwrap() as u64 + 3_000_000;
    let at = |dt: i64| agent::event::rfc3339((t as i64 + dt) as u64);
    let e = |n: &str| format!("{b_host}-{n}");
    let h = json!({"id": b_host, "hostname": "web-2"});
    let alert_id = format!("alert-{tag}");
    let fixture = [
        json!({"@timestamp": at(-90_000_000_000), "event": {"action": "exec", "kind": "event"}, "host": h,
            "process": {"pid": 1, "entity_id": e("init"), "executable": "/sbin/init", "command_line": "/sbin/init"}}),
        json!({"@timestamp": at(-60_000_000_000), "event": {"action": "exec", "kind": "event"}, "host": h,
            "process": {"pid": 612, "entity_id": e("sshd"), "executable": "/usr/sbin/sshd", "command_line": "sshd: /usr/sbin/sshd -D", "user": {"name": "root"}, "parent": {"entity_id": e("init"), "pid": 1}}}),
        json!({"@timestamp": at(0), "event": {"action": "connection_accepted", "kind": "event", "category": ["network"]}, "host": h,
            "process": {"pid": 612, "entity_id": e("sshd"), "executable": "/usr/sbin/sshd"},
            "source": pivot["source"], "destination": pivot["destination"], "network": {"direction": "ingress", "transport": "tcp"}}),
        json!({"@timestamp": at(2_000_000), "event": {"action": "fork", "kind": "event"}, "host": h,
            "process": {"pid": 4001, "entity_id": e("session"), "executable": "/usr/sbin/sshd", "parent": {"entity_id": e("sshd"), "pid": 612}}}),
        json!({"@timestamp": at(40_000_000), "event": {"action": "exec", "kind": "event"}, "host": h,
            "process": {"pid": 4002, "entity_id": e("bash"), "executable": "/bin/bash", "command_line": "-bash", "user": {"name": "deploy"}, "parent": {"entity_id": e("session"), "pid": 4001}}}),
        json!({"@timestamp": at(900_000_000), "event": {"action": "exec", "kind": "event"}, "host": h,
            "process": {"pid": 4010, "entity_id": e("payload"), "executable": "/tmp/.x/payload", "command_line": "/tmp/.x/payload --grab", "user": {"name": "deploy"}, "parent": {"entity_id": e("bash"), "pid": 4002}}}),
        json!({"@timestamp": at(950_000_000), "event": {"action": "read", "kind": "event", "category": ["file"]}, "host": h,
            "process": {"pid": 4010, "entity_id": e("payload"), "executable": "/tmp/.x/payload"}, "file": {"path": "/etc/shadow"}}),
        json!({"@timestamp": at(951_000_000), "event": {"action": "alert", "kind": "alert", "id": alert_id, "severity": 73}, "host": h,
            "process": {"pid": 4010, "entity_id": e("payload"), "executable": "/tmp/.x/payload"},
            "rule": {"id": "69abb76e-7282-4c6f-85f5-e2a9195f0aa0", "name": "Read of /etc/shadow"}}),
        // Another login to the same sshd an hour earlier: not part of this story.
        json!({"@timestamp": at(-3_600_000_000_000), "event": {"action": "fork", "kind": "event"}, "host": h,
            "process": {"pid": 3001, "entity_id": e("old-session"), "executable": "/usr/sbin/sshd", "parent": {"entity_id": e("sshd"), "pid": 612}}}),
    ];
    let fx = dir.path().join("host-b.jsonl");
    std::fs::write(&fx, fixture.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();
    ok(osprey(&["fleet", "load", "--url", &ch.url(), fx.to_str().unwrap()]), "load host B");

    // One story: from B's alert up across the network to A's client, and down again.
    let html = dir.path().join("story.html");
    let story: Value = serde_json::from_str(&ok(
        osprey(&["story", "--fleet", &ch.url(), &alert_id, "--json", "--html", html.to_str().unwrap()]),
        "story --fleet",
    ))
    .unwrap();
    let procs = story["processes"].as_array().unwrap();
    let find = |ent: &str| procs.iter().find(|p| p["entity_id"] == ent).unwrap_or_else(|| panic!("{ent} in the story: {story:#}"));
    let client = find(&client_entity);
    assert_eq!(client["host"], a_host.as_str());
    assert_eq!(client["executable"], std::fs::canonicalize(WORKLOAD).unwrap().to_str().unwrap());
    let session = find(&e("session"));
    assert_eq!(session["parent"], client_entity.as_str(), "B's sshd session is a child of A's client");
    assert_eq!(session["host"], b_host.as_str());
    assert!(session["depth"].as_u64().unwrap() > client["depth"].as_u64().unwrap());
    assert_eq!(find(&e("bash"))["parent"], e("session").as_str());
    let payload = find(&e("payload"));
    assert!(payload["subject"].as_bool().unwrap());
    let root = &procs[0];
    assert_eq!(root["host"], a_host.as_str(), "the root cause is on host A: {story:#}");
    assert!(procs.iter().all(|p| p["entity_id"] != e("sshd") && p["entity_id"] != e("old-session")), "B's listener and its other logins stay out");
    assert!(story["timeline"].as_array().unwrap().iter().any(|s| s["entity_id"] == e("payload") && s["action"] == "read"));
    assert!(story["timeline"].as_array().unwrap().iter().any(|s| s["entity_id"] == client_entity.as_str() && s["action"] == "connection_established"));

    // The terminal tree names both hosts and the hop between them.
    let text = ok(osprey(&["story", "--fleet", &ch.url(), &alert_id]), "story text");
    let short_a: String = a_host.chars().take(12).collect();
    assert!(text.contains(&format!("host {short_a}")) && text.contains(&format!("host {b_host}")), "{text}");
    assert!(text.contains(&format!("⇢ over the network: host {short_a} → host {b_host}")), "{text}");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&b_host) && page.contains(&a_host) && page.contains("network → host"), "the graph holds both hosts");

    // From A's side too: the client's story reaches into B.
    let from_a: Value = serde_json::from_str(&ok(osprey(&["story", "--fleet", &ch.url(), "--entity", &client_entity, "--json"]), "story A")).unwrap();
    assert!(from_a["processes"].as_array().unwrap().iter().any(|p| p["entity_id"] == e("payload")), "{from_a:#}");
    drop(agent);
}
