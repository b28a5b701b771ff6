//! `osprey ps`, `osprey tree` and `osprey status` against a running daemon (root), over a control
//! socket in the test's temp dir.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use osprey_tests::{osprey_bin, require_root};

fn cli(sock: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(osprey_bin()).args(args).arg("--socket").arg(sock).output().unwrap();
    assert!(out.status.success(), "osprey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn ps_tree_and_status_answer_from_the_running_agent() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("run/osprey.sock");
    let mode_of = |p: &std::path::Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o7777;
    let before = mode_of(dir.path());
    let mut agent = Command::new(osprey_bin())
        .args(["run", "--duration", "60s", "--no-stdout", "--no-health", "--no-recorder"])
        .arg("--control-socket")
        .arg(&sock)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no control socket");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "root only");
    let created = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(sock.parent().unwrap()).unwrap().permissions());
    assert_eq!(created & 0o777, 0o700, "the directory the agent created is root only");
    assert_eq!(mode_of(dir.path()), before, "an existing directory keeps its mode");

    let mut sh = Command::new("/bin/sh").args(["-c", "/bin/sleep 5; true"]).spawn().unwrap();
    let sh_pid = sh.id();
    std::thread::sleep(Duration::from_millis(500));

    let ps = cli(&sock, &["ps"]);
    let line = ps.lines().find(|l| l.split_whitespace().nth(1) == Some(&sh_pid.to_string()) && l.contains("sleep 5"));
    assert!(line.is_some(), "ps lists the sleep under our shell:\n{ps}");
    assert!(ps.lines().next().unwrap().contains("PID"));

    let tree = cli(&sock, &["tree", &sh_pid.to_string()]);
    let mut lines = tree.lines();
    assert!(lines.next().unwrap().starts_with(&format!("{sh_pid} /bin/sh -c")), "{tree}");
    assert!(lines.next().unwrap().starts_with("  ") && tree.contains("/bin/sleep 5"), "{tree}");

    let status: serde_json::Value = serde_json::from_str(&cli(&sock, &["status", "--json"])).unwrap();
    let probes = status["probes"].as_array().unwrap();
    let probe = |name: &str| probes.iter().find(|p| p["program"] == name).cloned();
    assert_eq!(probe("proc_exec").unwrap()["attached"], true);
    let module = probe("sys_module_load").unwrap();
    assert_eq!(module["attached"], false, "this kernel has no modules");
    assert!(module["reason"].as_str().unwrap().contains("module_load"));
    assert!(status["process_table"]["entries"].as_u64().unwrap() > 0);

    sh.kill().unwrap();
    sh.wait().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(agent.wait().unwrap().success());
    assert!(!sock.exists(), "the socket is removed on exit");
    let err = Command::new(osprey_bin()).args(["ps", "--socket"]).arg(&sock).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("is the agent running"));
}
