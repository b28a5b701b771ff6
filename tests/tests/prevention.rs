//! Prevention with BPF-LSM (issue 10), on whichever kernel runs the tests (root):
//! - where BPF-LSM works (the Debian 6.1 kernel of `cargo xtask test --vm`, where /init sets
//!   OSPREY_EXPECT_LSM=1), `kill -9` of the agent, ptrace attach to it, opening its memory, a
//!   bpf() detach of one of its links and a bpf() delete in one of its maps are all denied (EPERM)
//!   and the agent keeps running;
//! - where it does not (this development machine: Linux 6.18 refuses LSM programs with EPERM),
//!   the fallback is chosen, with the kernel's reason, and reported in the log, the metrics and
//!   `osprey status`.
//!
//! The expectation is not taken from the agent: the test asks the kernel itself (the active
//! LSM list, and whether it loads an LSM program) and checks the agent chose accordingly.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use agent::lsm::{Mode, HOOKS};
use osprey_tests::{kernel_version, osprey_bin, require_root, test_config, Harness};

/// Whether this kernel runs BPF-LSM programs: `bpf` is an active LSM and an LSM program loads.
fn kernel_runs_bpf_lsm() -> (bool, String) {
    let lsms = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    if !agent::lsm::lists_bpf(&lsms) {
        return (false, format!("bpf not in the active LSMs ({lsms:?})"));
    }
    let mut ebpf = aya::EbpfLoader::new().load(agent_ebpf::LSM_OBJECT).expect("the LSM object parses");
    let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
    let prog: &mut aya::programs::Lsm = ebpf.program_mut("lsm_task_kill").unwrap().try_into().unwrap();
    match prog.load("task_kill", &btf) {
        Ok(()) => (true, "bpf is active and an LSM program loads".into()),
        Err(e) => (false, format!("the kernel refuses LSM programs: {}", agent::sensor::error_chain(&e))),
    }
}

fn expect_lsm() -> bool {
    let (runs, why) = kernel_runs_bpf_lsm();
    eprintln!("kernel {:?}: {why}", kernel_version());
    if std::env::var("OSPREY_EXPECT_LSM").is_ok_and(|v| v == "1") {
        assert!(runs, "OSPREY_EXPECT_LSM=1 (the VM boots with lsm=...,bpf) but: {why}");
    }
    runs
}

#[test]
fn the_agent_chooses_and_reports_the_prevention_mode_this_kernel_allows() {
    let lsm = expect_lsm();
    let mut h = Harness::start(test_config());
    let state = h.guard.clone();
    let want = if lsm { Mode::Lsm } else { Mode::Fallback };
    for (hook, _) in HOOKS {
        let st = state.hooks.iter().find(|s| s.hook == hook).unwrap_or_else(|| panic!("{hook} reported: {state:#?}"));
        assert_eq!(st.mode, want, "{hook}: {state:#?}");
        assert_eq!(st.reason.is_some(), !lsm, "a fallback says why, lsm does not: {st:?}");
    }
    assert_eq!(state.feature("lsm").map(|f| f.available), Some(lsm), "{state:#?}");
    if lsm {
        assert!(state.protected_objects >= 10, "the agent's maps and links are protected: {state:#?}");
    }
    // kprobes exist exactly where the kernel has the kprobe PMU (not on the 6.18 machine).
    let kprobes = std::path::Path::new("/sys/bus/event_source/devices/kprobe").exists();
    assert_eq!(state.feature("kprobe").map(|f| f.available), Some(kprobes), "{state:#?}");

    let text = h.metrics.render();
    for (hook, _) in HOOKS {
        for m in Mode::ALL {
            let line = format!("osprey_prevention_hooks{{hook=\"{hook}\",mode=\"{}\"}} {}", m.name(), (m == want) as u8);
            assert!(text.contains(&line), "{line} in:\n{}", text.lines().filter(|l| l.contains("prevention")).collect::<Vec<_>>().join("\n"));
        }
    }
    // The report of which hooks this kernel gave us (the VM run prints it), and why each
    // skipped one was. An optional hook may be skipped only where this kernel lacks its attach
    // point (a syscall or tracepoint newer than it); one the kernel has must load: a verifier
    // refusal is a bug.
    let skipped: Vec<_> = h.probes.iter().filter(|p| !p.attached).collect();
    let names: Vec<String> = skipped.iter().map(|p| format!("{}@{}", p.program, p.hook)).collect();
    println!("OSPREY-HOOKS: {}", state.summary());
    println!("OSPREY-HOOKS: sensor attached {} hooks, skipped {}: {}", h.probes.len() - skipped.len(), skipped.len(), names.join(" "));
    let mut refused = Vec::new();
    for (p, name) in skipped.iter().zip(&names) {
        let why = p.reason.as_deref().unwrap_or("");
        // the end of the reason: a verifier log ends with what it refused
        let tail: String = why.chars().rev().take(600).collect::<Vec<_>>().into_iter().rev().collect();
        println!("OSPREY-HOOKS: {name} skipped: …{}", tail.replace('\n', " | "));
        if !why.contains("No such file or directory") && !why.contains("unknown BTF type") {
            refused.push(format!("{name}: {why}"));
        }
    }
    assert!(refused.is_empty(), "hooks this kernel has did not load:\n{}", refused.join("\n"));
    h.stop();
}

/// bpf(2) with a zeroed attr buffer and `fields` (offset, u32 value) written into it.
fn bpf(cmd: libc::c_long, fields: &[(usize, u32)]) -> Result<i64, std::io::Error> {
    let mut attr = [0u8; 128];
    for &(off, v) in fields {
        attr[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    // SAFETY: bpf(2) reads (and for some commands writes) at most `size` bytes of attr.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_DETACH: libc::c_long = 34;

/// (fdinfo key → value) of every fd of `pid` that has `key`.
fn fdinfos_with(pid: u32, key: &str) -> Vec<std::collections::HashMap<String, String>> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    dir.filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|t| t.lines().filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect::<std::collections::HashMap<_, _>>())
        .filter(|m| m.contains_key(key))
        .collect()
}

fn is_eperm(r: &Result<i64, std::io::Error>) -> bool {
    matches!(r, Err(e) if e.raw_os_error() == Some(libc::EPERM))
}

/// The agent this test started: killed if the test fails half way (where signals to it are
/// denied, it still ends at its --duration).
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Starts the `osprey` binary; returns it and its stderr lines as they come.
fn spawn_agent(dir: &std::path::Path, duration: &str) -> (Spawned, mpsc::Receiver<String>) {
    let mut agent = Command::new(osprey_bin())
        .args(["run", "--duration", duration, "--no-stdout", "--no-health", "--no-recorder"])
        .arg("--control-socket")
        .arg(dir.join("osprey.sock"))
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = agent.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (Spawned(agent), rx)
}

#[test]
fn signals_ptrace_and_bpf_aimed_at_the_agent_are_denied_where_bpf_lsm_runs() {
    require_root();
    let lsm = expect_lsm();
    let dir = tempfile::tempdir().unwrap();
    // Where signals are denied the test cannot stop the agent: it stops itself after --duration.
    let (mut agent, rx) = spawn_agent(dir.path(), "30s");
    let pid = agent.id();
    let started = Instant::now();
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("prevention:")) {
        let left = Duration::from_secs(180).saturating_sub(started.elapsed());
        log.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("agent did not report prevention: {log:#?}")));
    }
    eprintln!("agent up after {:?}", started.elapsed());
    // osprey status shows the same choice (the socket is served once the pipeline runs).
    let sock = dir.path().join("osprey.sock");
    while !sock.exists() {
        assert!(started.elapsed() < Duration::from_secs(180), "no control socket: {log:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = Command::new(osprey_bin()).args(["status", "--json", "--socket"]).arg(dir.path().join("osprey.sock")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let want = if lsm { "lsm" } else { "fallback" };
    for (hook, _) in HOOKS {
        let h = status["prevention"]["hooks"].as_array().unwrap().iter().find(|h| h["hook"] == hook).cloned();
        assert_eq!(h.as_ref().map(|h| h["mode"].clone()), Some(serde_json::json!(want)), "{hook}: {status:#}");
    }

    if !lsm {
        // Nothing to deny here: detection covers it (tamper alerts). Stop our agent.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
        assert!(agent.wait().unwrap().success());
        return;
    }

    let target = nix::unistd::Pid::from_raw(pid as i32);
    // Signals: SIGKILL and SIGTERM refused; a liveness probe (signal 0) still answers.
    for sig in [nix::sys::signal::Signal::SIGKILL, nix::sys::signal::Signal::SIGTERM] {
        assert_eq!(nix::sys::signal::kill(target, sig), Err(nix::errno::Errno::EPERM), "{sig} to the agent");
    }
    assert_eq!(nix::sys::signal::kill(target, None), Ok(()));
    // ptrace attach, and its relatives: /proc/PID/mem.
    // SAFETY: PTRACE_SEIZE on another process; nothing is dereferenced.
    let rc = unsafe { libc::ptrace(libc::PTRACE_SEIZE, pid as libc::pid_t, 0, 0) };
    assert_eq!((rc, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::EPERM)), "ptrace seize");
    assert!(std::fs::File::open(format!("/proc/{pid}/mem")).is_err(), "/proc/PID/mem of the agent opened");
    // Read-mode access stays open (ps, lsof): its fdinfo lists its links and maps.
    let links = fdinfos_with(pid, "link_id");
    let cgroup_link = links.iter().find(|l| l.get("link_type").is_some_and(|t| t == "cgroup")).unwrap_or_else(|| panic!("a cgroup link of the agent: {links:#?}"));
    let link_id: u32 = cgroup_link["link_id"].parse().unwrap();
    // bpf(): getting an fd to the link is allowed (bpftool link show works); detaching it is not.
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, &[(0, link_id)]).expect("LINK_GET_FD_BY_ID");
    let detach = bpf(BPF_LINK_DETACH, &[(0, fd as u32)]);
    assert!(is_eperm(&detach), "BPF_LINK_DETACH of the agent's link {link_id}: {detach:?}");
    // SAFETY: closing the fd we got.
    unsafe { libc::close(fd as i32) };
    // A delete in one of its hash maps: EPERM (ENOENT would mean the kernel looked for the key).
    let maps = fdinfos_with(pid, "map_id");
    let hash = maps.iter().find(|m| m.get("map_type").is_some_and(|t| t == "1")).unwrap_or_else(|| panic!("a hash map of the agent: {maps:#?}"));
    let map_id: u32 = hash["map_id"].parse().unwrap();
    let mfd = bpf(BPF_MAP_GET_FD_BY_ID, &[(0, map_id)]).expect("MAP_GET_FD_BY_ID");
    let key = [0u8; 512];
    // attr.map_fd at 0, attr.key (u64 pointer) at 8
    let ptr = key.as_ptr() as u64;
    let del = bpf(BPF_MAP_DELETE_ELEM, &[(0, mfd as u32), (8, ptr as u32), (12, (ptr >> 32) as u32)]);
    assert!(is_eperm(&del), "MAP_DELETE_ELEM in the agent's map {map_id}: {del:?}");
    // SAFETY: closing the fd we got.
    unsafe { libc::close(mfd as i32) };

    std::thread::sleep(Duration::from_millis(600)); // the guard drains denials every 250 ms
    assert_eq!(agent.try_wait().unwrap(), None, "the agent survived kill -9");
    let status = agent.wait().unwrap();
    log.extend(rx.iter()); // until the agent's stderr closes
    assert!(status.success(), "the agent stopped on its own after --duration: {log:#?}");
    let me = std::process::id();
    for hook in ["task_kill", "ptrace_access_check", "bpf"] {
        let needle = format!("prevented: {hook} by pid {me} ");
        assert!(log.iter().any(|l| l.contains(&needle)), "{needle:?} logged: {:#?}", log.iter().filter(|l| l.contains("prevent")).collect::<Vec<_>>());
    }
}
