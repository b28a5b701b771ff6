//! The process table on the real kernel (root): lineage, processes older than the agent,
//! containers from cgroups, executable hashes, and bounded churn.

use std::{
    os::unix::process::CommandExt,
    process::Command,
    time::{Duration, Instant},
};

use agent::{decode::Record, enrich::Context, event::EventBody};
use osprey_tests::{canonical, has_exit, sha256sum, test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The context of the exec of `exe` by process `pid`.
fn exec_ctx<'a>(h: &'a Harness, pid: u32, exe: &str) -> Option<&'a Context> {
    h.events.iter().find_map(|e| match e.record() {
        Some(Record::Exec(x)) if x.hdr.pid == pid && x.exe_path == exe => e.ctx.as_deref(),
        _ => None,
    })
}

#[test]
fn a_five_deep_chain_lists_every_ancestor_then_the_test() {
    // test -> sh -> sh -> bash -> sh -> sleep; "; true" keeps each shell from exec'ing its child.
    let c4 = "/bin/sleep 0.2; true";
    let c3 = format!("sh -c {}; true", q(c4));
    let c2 = format!("bash -c {}; true", q(&c3));
    let c1 = format!("sh -c {}; true", q(&c2));
    let mut h = Harness::start(test_config());
    let mut top = Command::new("/bin/sh").args(["-c", &c1]).spawn().unwrap();
    let top_pid = top.id();
    assert!(top.wait().unwrap().success());
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, top_pid)));

    let sleep = canonical("/bin/sleep");
    let leaf = h
        .events
        .iter()
        .find(|e| matches!(e.record(), Some(Record::Exec(x)) if x.exe_path == sleep
            && e.ctx.as_ref().is_some_and(|c| c.ancestry.iter().any(|a| a.pid == top_pid))))
        .expect("exec of sleep under the chain");
    let ctx = leaf.ctx.as_deref().unwrap();
    let anc = &ctx.ancestry;
    assert!(anc.len() >= 5, "{anc:#?}");
    let (sh, bash) = (canonical("/bin/sh"), canonical("/bin/bash"));
    let want = [&sh, &bash, &sh, &sh];
    for (i, exe) in want.iter().enumerate() {
        assert_eq!(anc[i].executable.as_deref(), Some(exe.as_str()), "ancestor {i}: {anc:#?}");
        // the pid is right: that process's own exec event says so
        assert!(exec_ctx(&h, anc[i].pid, exe).is_some(), "ancestor {i} pid {} exec'd {exe}", anc[i].pid);
    }
    assert_eq!(anc[0].pid, leaf.record().unwrap().header().ppid, "nearest first");
    assert_eq!(anc[3].pid, top_pid);
    assert_eq!(anc[4].pid, std::process::id(), "then the test's own process");
    let me = canonical("/proc/self/exe");
    assert_eq!(anc[4].executable.as_deref(), Some(me.as_str()));
    let v = h.ecs.to_value(leaf);
    assert_eq!(v["process"]["ancestry"][3]["pid"], top_pid);
    assert_eq!(v["process"]["parent"]["executable"], sh);
    h.stop();
}

#[test]
fn a_process_older_than_the_agent_has_full_ancestry_at_exit() {
    // It lives until the agent has seeded its table from /proc (however long loading the
    // programs takes on this host), then is killed.
    let mut old = Command::new("/bin/sleep").arg("60").spawn().unwrap();
    let pid = old.id();
    std::thread::sleep(Duration::from_millis(200));
    let mut h = Harness::start(test_config());
    // The pipeline seeds the table before it handles its first record: wait for one.
    let mut marker = Command::new("/bin/true").spawn().unwrap();
    let marker_pid = marker.id();
    marker.wait().unwrap();
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, marker_pid)));
    old.kill().unwrap();
    old.wait().unwrap();
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, pid)));
    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::Exit(x)) if x.hdr.pid == pid)).unwrap();
    let ctx = ev.ctx.as_deref().unwrap();
    let img = ctx.process.image.as_ref().expect("image from /proc");
    assert_eq!(img.exe(), canonical("/bin/sleep"));
    assert_eq!(ctx.ancestry[0].pid, std::process::id());
    assert_eq!(ctx.ancestry[0].executable.as_deref(), Some(canonical("/proc/self/exe").as_str()));
    assert!(ctx.ancestry.len() >= 2, "and on up: {:#?}", ctx.ancestry);
    let v = h.ecs.to_value(ev);
    assert_eq!(v["process"]["executable"], canonical("/bin/sleep"));
    assert_eq!(v["process"]["args"][1], "60");
    h.stop();
}

#[test]
fn a_kubepods_containerd_cgroup_gives_container_and_pod() {
    let mount = agent::sensor::fs::cgroup2_mount().expect("cgroup v2 mount");
    let pod = "1b4e28ba-2fa1-11d2-883f-0016d3cca427";
    let cid = "4f2b7c1e9d8a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";
    let slice = format!("{mount}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice", pod.replace('-', "_"));
    let leaf = format!("{slice}/cri-containerd-{cid}.scope");
    std::fs::create_dir_all(&leaf).unwrap();
    let procs = format!("{leaf}/cgroup.procs");
    let mut h = Harness::start(test_config());
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec /bin/true"]);
    // SAFETY: the closure only writes to a file; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(move || std::fs::write(&procs, b"0"));
    }
    let mut child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, pid)));
    let t = canonical("/bin/true");
    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::Exec(x)) if x.hdr.pid == pid && x.exe_path == t)).unwrap();
    let v = h.ecs.to_value(ev);
    h.stop();
    for d in [leaf.as_str(), slice.as_str(), &format!("{mount}/kubepods.slice/kubepods-burstable.slice"), &format!("{mount}/kubepods.slice")] {
        let _ = std::fs::remove_dir(d);
    }
    assert_eq!(v["container"]["id"], cid, "{v:#}");
    assert_eq!(v["container"]["runtime"], "containerd");
    assert_eq!(v["orchestrator"]["type"], "kubernetes");
    assert_eq!(v["orchestrator"]["resource"]["id"], pod);
    assert_eq!(v["orchestrator"]["resource"]["qos"], "burstable");
}

/// The sha256 Osprey reported for the image `pid` exec'd (the memfd one, or not): on the exec
/// event or on a later hash event.
fn reported_hash(h: &Harness, pid: u32, memfd: bool) -> Option<String> {
    h.events.iter().find_map(|e| match (&e.body, &e.ctx) {
        (EventBody::Record(Record::Exec(x)), Some(c)) if x.hdr.pid == pid && x.flags.memfd() == memfd => c.hash.map(|d| d.to_hex()),
        (EventBody::Hash(late), _)
            if late.process.pid == pid && late.process.image.as_ref().is_some_and(|i| i.flags.memfd() == memfd) =>
        {
            Some(late.sha256.clone())
        }
        _ => None,
    })
}

#[test]
fn executed_files_and_memfd_images_are_hashed() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("sleep-copy");
    std::fs::copy(canonical("/bin/sleep"), &copy).unwrap();
    // distinct content from every other binary on the host: a fresh hash, not a cache hit
    std::io::Write::write_all(&mut std::fs::OpenOptions::new().append(true).open(&copy).unwrap(), b"osprey").unwrap();
    let mut h = Harness::start(test_config());
    let mut c = Command::new(&copy).arg("0.3").spawn().unwrap();
    let file_pid = c.id();
    c.wait().unwrap();
    let mut m = Command::new(WORKLOAD).arg("memfd-exec").spawn().unwrap();
    let memfd_pid = m.id();
    m.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && (reported_hash(&h, file_pid, false).is_none() || reported_hash(&h, memfd_pid, true).is_none()) {
        h.wait_for(Duration::from_millis(200), |_| false);
    }
    assert_eq!(reported_hash(&h, file_pid, false), Some(sha256sum(copy.to_str().unwrap())));
    // the workload copies /bin/sleep into a memfd and execs it
    assert_eq!(reported_hash(&h, memfd_pid, true), Some(sha256sum(&canonical("/bin/sleep"))));
    h.stop();
}

#[test]
fn churn_of_100000_processes_stays_within_the_cap() {
    const N: u64 = 100_000;
    const CAP: usize = 4_000;
    let mut cfg = test_config();
    cfg.process.max_entries = CAP;
    cfg.process.exit_grace = Duration::from_secs(2);
    let mut h = Harness::start(cfg);
    let started = Instant::now();
    let mut c = Command::new(WORKLOAD).args(["churn", &N.to_string()]).spawn().unwrap();
    let pid = c.id();
    assert!(c.wait().unwrap().success());
    assert!(h.wait_for(Duration::from_secs(60), |evs| has_exit(evs, pid)));
    // let the 1 s housekeeping tick publish the table's size
    std::thread::sleep(Duration::from_millis(2500));
    h.wait_for(Duration::from_millis(100), |_| false);
    let entries = h.metrics.process_table_entries();
    let evicted = h.metrics.process_table_evictions("grace") + h.metrics.process_table_evictions("cap");
    let forks = h.records().filter(|r| matches!(r, Record::Fork(f) if f.hdr.pid == pid)).count();
    eprintln!(
        "churn: {N} processes in {:?}, {forks} fork events, table {entries} entries (cap {CAP}), {evicted} evicted",
        started.elapsed()
    );
    assert!(entries as usize <= CAP, "table within its cap: {entries}");
    assert!(evicted >= N - CAP as u64, "churned processes were evicted: {evicted}");
    h.stop();
}
