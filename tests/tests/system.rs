//! Privilege and system telemetry on the real kernel (root): credential changes with before and
//! after, setuid execs, and the system-level moves an attacker makes.

use std::{
    os::unix::{fs::PermissionsExt, process::CommandExt},
    process::Command,
    time::Duration,
};

use agent::decode::{Cred, Record, System};
use agent_common::{osprey_cred_op as co, osprey_system_op as so};
use osprey_tests::{canonical, has_exit, test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

/// Runs the workload to completion; returns its pid and what it printed.
fn workload(h: &mut Harness, args: &[&str]) -> (u32, String) {
    let child = Command::new(WORKLOAD).args(args).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "workload {args:?} failed");
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, pid)), "exit of workload {args:?}");
    (pid, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn creds_of(h: &Harness, pid: u32) -> Vec<&Cred> {
    h.records().filter_map(|r| match r {
        Record::Cred(c) if c.hdr.pid == pid => Some(&**c),
        _ => None,
    }).collect()
}

fn system_of(h: &Harness, pid: u32, op: u32) -> Vec<&System> {
    h.records().filter_map(|r| match r {
        Record::System(s) if s.hdr.pid == pid && s.op == op => Some(&**s),
        _ => None,
    }).collect()
}

/// The number after `prefix` in the workload's output.
fn printed(out: &str, prefix: &str) -> u64 {
    let v = out.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("`{prefix}` in {out:?}")).trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).unwrap(),
        None => v.parse().unwrap(),
    }
}

#[test]
fn seteuid_then_setresuid_reports_both_changes_with_before_and_after() {
    let mut h = Harness::start(test_config());
    let (pid, _) = workload(&mut h, &["creds"]);
    let c = creds_of(&h, pid);
    assert_eq!(c.len(), 2, "{c:#?}");
    // glibc's seteuid is setresuid(-1, euid, -1)
    assert_eq!(c[0].op, co::OSPREY_CRED_SETRESUID);
    assert_eq!((c[0].old_uids[1], c[0].new_uids[1]), (0, 65534), "euid 0 -> 65534");
    assert_eq!((c[0].old_uids[0], c[0].new_uids[0]), (0, 0), "uid kept");
    assert_eq!(c[1].op, co::OSPREY_CRED_SETRESUID);
    assert_eq!(c[1].old_uids[..3], [0, 65534, 0], "before: uid, euid, suid");
    assert_eq!(c[1].new_uids[..3], [0, 0, 0], "after");
    assert_eq!(c[1].args, [0, 0, 0]);
    let ev = h.events.iter().filter(|e| matches!(e.record(), Some(Record::Cred(x)) if x.hdr.pid == pid)).nth(1).unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["action"], "setresuid");
    assert_eq!(v["osprey"]["cred"]["became_root"], true);
    assert_eq!(v["osprey"]["cred"]["before"]["euid"], 65534);
    assert_eq!(v["user"]["effective"]["id"], "0");
    h.stop();
}

#[test]
fn a_setuid_root_copy_run_by_nobody_execs_with_the_privilege_gain_flag() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = dir.path().join("id-setuid");
    std::fs::copy(canonical("/usr/bin/id"), &copy).unwrap();
    std::os::unix::fs::chown(&copy, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut h = Harness::start(test_config());
    let out = Command::new(&copy).arg("-u").uid(65534).gid(65534).output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0", "effective uid 0 inside");
    let path = copy.to_string_lossy().into_owned();
    assert!(h.wait_for(Duration::from_secs(10), |evs| evs
        .iter()
        .any(|e| matches!(e.record(), Some(Record::Exec(x)) if x.exe_path == path))));
    let e = h
        .records()
        .find_map(|r| match r {
            Record::Exec(x) if x.exe_path == path => Some(x),
            _ => None,
        })
        .unwrap();
    assert!(e.flags.setuid(), "{e:#?}");
    assert!(!e.flags.cred_unknown());
    assert_eq!((e.old_euid, e.hdr.euid, e.hdr.uid), (65534, 0, 65534));
    let ev = h.events.iter().find(|x| matches!(x.record(), Some(Record::Exec(x)) if x.exe_path == path)).unwrap();
    assert_eq!(h.ecs.to_value(ev)["osprey"]["exec"]["setuid"], true);
    h.stop();
}

#[test]
fn memfd_mprotect_ptrace_bpf_unshare_and_kill_each_yield_their_event() {
    let mut h = Harness::start(test_config());

    let (pid, _) = workload(&mut h, &["memfd-exec"]);
    let m = system_of(&h, pid, so::OSPREY_SYS_MEMFD_CREATE);
    assert_eq!(m.len(), 1, "{m:#?}");
    assert_eq!(m[0].text, "osprey-wl");
    assert!(m[0].ret >= 0, "the fd");
    assert!(h.records().any(|r| matches!(r, Record::Exec(x) if x.hdr.pid == pid && x.flags.memfd())), "then its execveat");

    let (pid, out) = workload(&mut h, &["mprotect"]);
    let p = system_of(&h, pid, so::OSPREY_SYS_MPROTECT_EXEC);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert_eq!(p[0].args[0], printed(&out, "mprotect "), "address");
    assert_eq!(p[0].args[1], 4096, "length");
    assert_eq!(p[0].args[2], (libc::PROT_READ | libc::PROT_EXEC) as u64, "prot");

    let (pid, out) = workload(&mut h, &["ptrace"]);
    let t = system_of(&h, pid, so::OSPREY_SYS_PTRACE);
    let traced = printed(&out, "ptraced ") as u32;
    assert_eq!(t.len(), 1, "attach only (detach is not reported): {t:#?}");
    assert_eq!(t[0].args[0], libc::PTRACE_ATTACH as u64);
    assert_eq!(t[0].target_pid, traced);

    let (pid, _) = workload(&mut h, &["bpf-load"]);
    let b = system_of(&h, pid, so::OSPREY_SYS_BPF_PROG_LOAD);
    assert_eq!(b.len(), 1, "{b:#?}");
    assert_eq!(b[0].text, "osprey_wl");
    assert_eq!(b[0].args[0], 1, "BPF_PROG_TYPE_SOCKET_FILTER");

    let (pid, _) = workload(&mut h, &["unshare"]);
    let u = system_of(&h, pid, so::OSPREY_SYS_UNSHARE);
    assert_eq!(u.len(), 1, "{u:#?}");
    assert_eq!(u[0].args[0], libc::CLONE_NEWNS as u64);

    let (pid, out) = workload(&mut h, &["kill-child"]);
    let child = printed(&out, "child ") as u32;
    let k: Vec<&System> = system_of(&h, pid, so::OSPREY_SYS_SIGNAL).into_iter().filter(|s| s.target_pid == child).collect();
    assert_eq!(k.len(), 1, "{k:#?}");
    assert_eq!(k[0].args[0], libc::SIGKILL as u64);
    assert!(k[0].target_start_ns > 0);

    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::System(s)) if s.op == so::OSPREY_SYS_SIGNAL && s.target_pid == child)).unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["action"], "signal");
    assert_eq!(v["osprey"]["system"]["target"]["pid"], child);
    assert_eq!(v["osprey"]["system"]["args"][0], libc::SIGKILL);
    h.stop();
}
