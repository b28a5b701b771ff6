//! Response (issue 7) on the real kernel, as root, acting only on what each test creates: its
//! own processes, a cgroup it makes, files in its temp dir, listeners on 127.0.0.1, and a bpffs
//! directory of its own.

use std::{
    io::Write,
    os::unix::{fs::PermissionsExt, process::CommandExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use agent::{
    config::{Config, PipelineSection},
    decode::Record,
    event::{Event, EventBody},
    respond::{Mode, Outcome, Verdict},
};
use osprey_tests::{marker, sha256sum, test_config, Harness, TestCgroup};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

/// Enforce mode, the control socket, quarantine and bpffs pins all in the test's own places.
fn response_config(dir: &Path) -> Config {
    let mut cfg = test_config();
    cfg.response.mode = Mode::Enforce;
    cfg.response.quarantine_dir = dir.join("quarantine");
    cfg.response.bpffs_dir = PathBuf::from(format!("/sys/fs/bpf/{}", marker()));
    cfg.control.enabled = true;
    cfg.control.socket = dir.join("osprey.sock");
    cfg
}

fn ask(cfg: &Config, line: &str) -> serde_json::Value {
    let req = agent::control::Request::parse(line).unwrap();
    // The socket is bound once the pipeline runs, just after Harness::start returns.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cfg.control.socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    agent::control::ask(&cfg.control.socket, &req).unwrap_or_else(|e| panic!("{line}: {e}"))
}

fn done(v: &serde_json::Value) -> bool {
    v["result"] == "done"
}

/// A rule matching execs whose command line contains `tag`, with `response:` actions.
fn rule(dir: &Path, tag: &str, actions: &[&str]) -> PathBuf {
    let rules = dir.join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    let id = format!("osprey-test-{tag}");
    let yaml = format!(
        "title: response test {tag}\nid: {id}\nstatus: test\nlogsource:\n  product: linux\n  category: process_creation\n\
         detection:\n  sel:\n    CommandLine|contains: '{tag}'\n  condition: sel\nlevel: high\nresponse: [{}]\n",
        actions.join(", ")
    );
    std::fs::write(rules.join(format!("{tag}.yml")), yaml).unwrap();
    rules
}

/// Kills and reaps a child on drop, so a failing test leaves no process behind.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `child` at most `limit`; kills it (and fails) when it outlives that.
fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            // Started as a group leader (process_group(0)), its whole group goes too.
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL);
            let _ = child.kill();
            let _ = child.wait();
            panic!("process {} still running after {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn alert_responses<'a>(events: &'a [Event], rule_id: &str) -> Option<&'a [Outcome]> {
    events.iter().find_map(|e| match &e.body {
        EventBody::Alert(a) if a.alert.rule.id.as_deref() == Some(rule_id) => Some(a.responses.as_slice()),
        _ => None,
    })
}

fn response_events<'a>(events: &'a [Event], action: &'a str) -> impl Iterator<Item = &'a Outcome> + 'a {
    events.iter().filter_map(move |e| match &e.body {
        EventBody::Response(r) if r.outcome.action == action => Some(&r.outcome),
        _ => None,
    })
}

fn exec_of(events: &[Event], pid: u32) -> Option<&agent::decode::Exec> {
    events.iter().find_map(|e| match e.record() {
        Some(Record::Exec(x)) if x.hdr.pid == pid => Some(&**x),
        _ => None,
    })
}

fn exit_of(events: &[Event], pid: u32) -> Option<&agent::decode::Exit> {
    events.iter().find_map(|e| match e.record() {
        Some(Record::Exit(x)) if x.hdr.pid == pid && !x.thread => Some(x),
        _ => None,
    })
}

#[test]
fn a_kill_tree_rule_kills_the_process_and_its_children_within_100ms_of_the_exec() {
    let dir = tempfile::tempdir().unwrap();
    let tag = marker();
    let mut cfg = response_config(dir.path());
    let _pins = Pins(cfg.response.bpffs_dir.clone());
    cfg.rules.paths = vec![rule(dir.path(), &tag, &["kill_tree"])];
    // The shipped reorder window: the latency is the agent's as configured by default.
    cfg.pipeline.reorder_window = PipelineSection::default().reorder_window;
    let mut h = Harness::start(cfg);

    let mut root = Command::new("/bin/sh").args(["-c", "sleep 1000 & sleep 1000 & wait", &tag]).process_group(0).spawn().unwrap();
    let pid = root.id();
    let status = wait_at_most(&mut root, Duration::from_secs(10));
    assert_eq!(status.signal(), Some(9), "the root was killed by SIGKILL: {status:?}");

    let rule_id = format!("osprey-test-{tag}");
    let mut pids = Vec::new();
    let complete = h.wait_for(Duration::from_secs(10), |evs| {
        let Some(r) = alert_responses(evs, &rule_id) else { return false };
        pids = r.first().map(|o| o.pids.clone()).unwrap_or_default();
        !pids.is_empty() && pids.iter().all(|&p| exit_of(evs, p).is_some())
    });
    assert!(complete, "the alert with its response, and the exits of {pids:?}");
    let outcome = &alert_responses(&h.events, &rule_id).unwrap()[0];
    assert_eq!((outcome.action, outcome.result, outcome.origin), ("kill_tree", Verdict::Done, "rule"), "{outcome:?}");
    assert_eq!(pids.len(), 3, "sh and its two sleeps: {pids:?}");
    assert_eq!(pids[0], pid, "the root first");

    let exec_ns = exec_of(&h.events, pid).expect("the root's exec").hdr.ktime_ns;
    for &p in &pids {
        let x = exit_of(&h.events, p).unwrap();
        let after = Duration::from_nanos(x.hdr.ktime_ns.saturating_sub(exec_ns));
        eprintln!("kill_tree: {p} ({}) dead {after:?} after the exec, {:?}", x.hdr.comm, x.signal());
        assert_eq!(x.signal(), Some(9), "{p} died of SIGKILL");
        assert!(after <= Duration::from_millis(100), "{p} died {after:?} after the exec (limit 100 ms)");
    }
    let ev = response_events(&h.events, "kill_tree").next().expect("a response event");
    assert_eq!(ev.pids, pids);
    let doc = h.ecs.to_value(h.events.iter().find(|e| matches!(e.body, EventBody::Response(_))).unwrap());
    assert_eq!(doc["event"]["action"], "osprey-response");
    assert_eq!(doc["event"]["category"][0], "process");
    assert_eq!(doc["event"]["type"][0], "change");
    assert_eq!(doc["event"]["outcome"], "success");
    assert_eq!(doc["rule"]["id"], rule_id);
    assert_eq!(doc["process"]["pid"], pid);
    h.stop();
}

/// A copy of the workload binary with bytes appended, so its sha256 is the test's alone.
fn unique_binary(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::copy(WORKLOAD, &p).unwrap();
    std::fs::OpenOptions::new().append(true).open(&p).unwrap().write_all(marker().as_bytes()).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

fn run_touch(bin: &Path, marker_file: &Path) -> (u32, ExitStatus) {
    let mut c = Command::new(bin).arg("touch").arg(marker_file).stderr(Stdio::null()).spawn().unwrap();
    let pid = c.id();
    (pid, wait_at_most(&mut c, Duration::from_secs(10)))
}

#[test]
fn blocked_binaries_by_path_and_by_hash_are_killed_before_they_run() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cfg = response_config(d);
    let _pins = Pins(cfg.response.bpffs_dir.clone());
    let mut h = Harness::start(cfg.clone());

    // By path.
    let by_path = unique_binary(d, "by-path");
    let v = ask(&cfg, &format!("block path {}", by_path.display()));
    assert!(done(&v), "{v}");
    let marker1 = d.join("m1");
    let (pid, st) = run_touch(&by_path, &marker1);
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL: {st:?}");
    assert!(!marker1.exists(), "the blocked image never ran its first instruction");
    assert!(h.wait_for(Duration::from_secs(5), |evs| exec_of(evs, pid).is_some() && response_events(evs, "block_exec").any(|o| o.pids == [pid])));
    assert!(exec_of(&h.events, pid).unwrap().flags.blocked(), "the exec record says blocked");
    let o = response_events(&h.events, "block_exec").find(|o| o.pids == [pid]).unwrap();
    assert_eq!((o.origin, o.result), ("kernel", Verdict::Done));

    // By hash: a file the agent has seen (hashed at its first exec) is blocked at once.
    let by_hash = unique_binary(d, "by-hash");
    let sha = sha256sum(by_hash.to_str().unwrap());
    let marker2 = d.join("m2");
    let (pid2, st) = run_touch(&by_hash, &marker2);
    assert!(st.success() && marker2.exists(), "not blocked yet: it runs");
    let hashed = h.wait_for(Duration::from_secs(10), |evs| {
        evs.iter().any(|e| match (&e.body, &e.ctx) {
            (EventBody::Record(Record::Exec(x)), Some(c)) if x.hdr.pid == pid2 => c.hash.is_some_and(|h| h.to_hex() == sha),
            (EventBody::Hash(l), _) => l.process.pid == pid2 && l.sha256 == sha,
            _ => false,
        })
    });
    assert!(hashed, "the agent hashed the first exec");
    let v = ask(&cfg, &format!("block sha256 {sha}"));
    assert!(done(&v), "{v}");
    assert!(v["reason"].as_str().unwrap().starts_with("1 known file"), "{v}");
    let marker3 = d.join("m3");
    let (pid3, st) = run_touch(&by_hash, &marker3);
    assert_eq!(st.signal(), Some(9), "killed by SIGKILL: {st:?}");
    assert!(!marker3.exists(), "the blocked image never ran its first instruction");
    assert!(h.wait_for(Duration::from_secs(5), |evs| exec_of(evs, pid3).is_some_and(|x| x.flags.blocked())));

    // The lists, and unblocking.
    let list = ask(&cfg, "responses");
    assert_eq!(list["blocked"]["sha256"][0], sha.as_str());
    assert_eq!(list["blocked"]["paths"][0], by_path.to_str().unwrap());
    assert!(done(&ask(&cfg, &format!("unblock path {}", by_path.display()))));
    assert!(done(&ask(&cfg, &format!("unblock sha256 {sha}"))));
    let (_, st) = run_touch(&by_path, &marker1);
    assert!(st.success() && marker1.exists(), "runs again once unblocked");
    h.stop();
}

/// Connects to `addr` from a process inside `cg` (or outside it): true when it did.
fn connect(cg: &TestCgroup, addr: &str, inside: bool) -> bool {
    let mut cmd = Command::new(WORKLOAD);
    cmd.args(["try-connect", addr, "700"]).stderr(Stdio::null());
    if inside {
        cg.enter_on_exec(&mut cmd);
    }
    cmd.status().unwrap().success()
}

fn listener() -> (std::net::TcpListener, String) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

#[test]
fn an_isolated_cgroup_loses_the_network_but_its_allow_list_and_isolation_outlives_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let cg = TestCgroup::new();
    let protected = TestCgroup::new();
    let (_l1, blocked_addr) = listener();
    let (_l2, allowed_addr) = listener();
    let mut cfg = response_config(dir.path());
    cfg.response.isolation_allow = vec![format!("{allowed_addr}/tcp")];
    cfg.response.protected_cgroups = vec![protected.rel.clone()];
    let _pins = Pins(cfg.response.bpffs_dir.clone());

    let mut h = Harness::start(cfg.clone());
    assert!(connect(&cg, &blocked_addr, true), "before isolation the cgroup connects");
    let v = ask(&cfg, &format!("isolate {}", cg.rel));
    assert!(done(&v), "{v}");
    assert!(!connect(&cg, &blocked_addr, true), "isolated: the connect fails");
    assert!(connect(&cg, &blocked_addr, false), "a process outside the cgroup still connects");
    assert!(connect(&cg, &allowed_addr, true), "the allow-listed port still works");
    let v = ask(&cfg, &format!("isolate {}", protected.rel));
    assert_eq!(v["result"], "refused", "a protected cgroup is never isolated: {v}");
    assert!(connect(&protected, &blocked_addr, true), "and keeps its network");
    h.stop();
    drop(h);

    // No agent: the pinned links keep the cgroup isolated.
    assert!(!connect(&cg, &blocked_addr, true), "isolation outlives the agent");

    let mut h = Harness::start(cfg.clone());
    let list = ask(&cfg, "responses");
    assert_eq!(list["isolated"][0]["cgroup"], cg.path.to_str().unwrap(), "found again at start-up: {list}");
    assert!(!connect(&cg, &blocked_addr, true), "still isolated under the restarted agent");
    assert!(connect(&cg, &allowed_addr, true), "the restarted agent's allow list is in force");
    let v = ask(&cfg, &format!("release {}", cg.rel));
    assert!(done(&v), "{v}");
    assert!(connect(&cg, &blocked_addr, true), "released: it connects again");
    assert_eq!(ask(&cfg, "responses")["isolated"], serde_json::json!([]));
    let ev = response_events(&h.events, "release").next();
    assert!(ev.is_none() || ev.is_some_and(|o| o.result == Verdict::Done));
    h.stop();
}

/// Removes a test's bpffs pins (links first: unpinning detaches them) even when it fails.
struct Pins(PathBuf);

impl Drop for Pins {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn quarantine_and_restore_round_trip_content_mode_owner_and_times() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let cfg = response_config(dir.path());
    let _pins = Pins(cfg.response.bpffs_dir.clone());
    let mut h = Harness::start(cfg.clone());
    let f = dir.path().join("suspicious.sh");
    std::fs::write(&f, b"#!/bin/sh\necho owned\n").unwrap();
    std::os::unix::fs::chown(&f, Some(65534), Some(65534)).unwrap(); // before chmod: chown clears setuid
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o4751)).unwrap();
    let sha = sha256sum(f.to_str().unwrap()); // reads: before the times are set (relatime)
    let t = |s: i64, ns: i64| nix::sys::time::TimeSpec::new(s, ns);
    nix::sys::stat::utimensat(None, &f, &t(1_600_000_000, 123_456_789), &t(1_500_000_000, 987_654_321), nix::sys::stat::UtimensatFlags::NoFollowSymlink).unwrap();
    let before = std::fs::metadata(&f).unwrap();

    let v = ask(&cfg, &format!("quarantine {}", f.display()));
    assert!(done(&v), "{v}");
    assert!(!f.exists(), "moved away");
    let id = v["quarantine_id"].as_str().unwrap().to_owned();
    let list = ask(&cfg, "responses");
    let entry = &list["quarantined"][0];
    assert_eq!((entry["id"].as_str(), entry["sha256"].as_str(), entry["mode"].as_u64()), (Some(id.as_str()), Some(sha.as_str()), Some(0o4751)));

    let v = ask(&cfg, &format!("restore {id}"));
    assert!(done(&v), "{v}");
    let after = std::fs::metadata(&f).unwrap();
    assert_eq!(std::fs::read(&f).unwrap(), b"#!/bin/sh\necho owned\n");
    assert_eq!((after.mode() & 0o7777, after.uid(), after.gid()), (0o4751, 65534, 65534));
    assert_eq!((after.atime(), after.atime_nsec(), after.mtime(), after.mtime_nsec()), (before.atime(), before.atime_nsec(), before.mtime(), before.mtime_nsec()));
    assert!(h.wait_for(Duration::from_secs(5), |evs| response_events(evs, "restore").any(|o| o.result == Verdict::Done)));
    h.stop();
}

#[test]
fn monitor_mode_only_records_and_protected_processes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (tag_monitor, tag_protected) = (marker(), marker());
    let mut cfg = response_config(dir.path());
    let _pins = Pins(cfg.response.bpffs_dir.clone());
    rule(dir.path(), &tag_monitor, &["kill"]);
    cfg.rules.paths = vec![rule(dir.path(), &tag_protected, &["kill_tree"])];
    cfg.response.mode = Mode::Monitor;
    let mut h = Harness::start(cfg.clone());

    let mut watched = Reaped(Command::new("/bin/sh").args(["-c", "exec sleep 1000", &tag_monitor]).spawn().unwrap());
    let id = format!("osprey-test-{tag_monitor}");
    assert!(h.wait_for(Duration::from_secs(10), |evs| alert_responses(evs, &id).is_some()));
    let o = &alert_responses(&h.events, &id).unwrap()[0];
    assert_eq!((o.result, o.mode), (Verdict::Would, Mode::Monitor), "{o:?}");
    assert_eq!(watched.0.try_wait().unwrap(), None, "monitor mode takes no action");
    assert!(h.wait_for(Duration::from_secs(5), |evs| response_events(evs, "kill").any(|o| o.result == Verdict::Would)), "but records it");
    drop(watched);
    h.stop();
    drop(h);

    // Enforce, with the test's shell on the protected list.
    cfg.response.mode = Mode::Enforce;
    cfg.response.protected_processes.push(osprey_tests::canonical("/bin/sh"));
    let mut h = Harness::start(cfg);
    let mut protected = Reaped(Command::new("/bin/sh").args(["-c", "exec sleep 1000", &tag_protected]).spawn().unwrap());
    let id = format!("osprey-test-{tag_protected}");
    assert!(h.wait_for(Duration::from_secs(10), |evs| alert_responses(evs, &id).is_some()));
    let o = &alert_responses(&h.events, &id).unwrap()[0];
    assert_eq!(o.result, Verdict::Refused, "{o:?}");
    assert!(o.reason.as_deref().unwrap().contains("protected"), "{o:?}");
    assert_eq!(protected.0.try_wait().unwrap(), None, "a protected process is left alone");
    drop(protected);
    h.stop();
}

/// Makes the kernel hand out `pid` next (root pid namespace), then starts `sleep`. Retries
/// while other processes on the machine take the pid first.
fn spawn_with_pid(pid: u32) -> Option<Child> {
    for _ in 0..50 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut c = Command::new("sleep").arg("1000").spawn().unwrap();
        if c.id() == pid {
            return Some(c);
        }
        let _ = c.kill();
        let _ = c.wait();
    }
    None
}

#[test]
fn a_kill_for_an_entity_whose_pid_was_reused_does_not_kill_the_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = response_config(dir.path());
    let _pins = Pins(cfg.response.bpffs_dir.clone());
    let mut h = Harness::start(cfg.clone());

    let mut old = Reaped(Command::new("sleep").arg("1000").spawn().unwrap());
    let pid = old.0.id();
    assert!(h.wait_for(Duration::from_secs(5), |evs| exec_of(evs, pid).is_some()));
    let entity = h.events.iter().find_map(|e| match (e.record(), &e.ctx) {
        (Some(Record::Exec(x)), Some(c)) if x.hdr.pid == pid => Some(c.process.entity_id.clone()),
        _ => None,
    });
    let entity = entity.expect("the old process's entity id");
    old.0.kill().unwrap();
    old.0.wait().unwrap();
    assert!(h.wait_for(Duration::from_secs(5), |evs| exit_of(evs, pid).is_some()));

    let mut new = Reaped(spawn_with_pid(pid).expect("the pid was reused for a process of ours"));
    let v = ask(&cfg, &format!("kill entity:{entity}"));
    assert_ne!(v["result"], "done", "{v}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(new.0.try_wait().unwrap(), None, "the new process with the reused pid lives: {v}");

    // The same pid, named by its new identity, is killed.
    assert!(h.wait_for(Duration::from_secs(5), |evs| evs.iter().filter(|e| matches!(e.record(), Some(Record::Exec(x)) if x.hdr.pid == pid)).count() == 2));
    let v = ask(&cfg, &format!("kill {pid}"));
    assert!(done(&v), "{v}");
    assert_eq!(wait_at_most(&mut new.0, Duration::from_secs(5)).signal(), Some(9));
    h.stop();
}
