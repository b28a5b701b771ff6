//! The `osprey` binary end to end: ECS JSON lines on stdout, clean detach on SIGTERM and after
//! --duration, and configuration errors that name file and line.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use osprey_tests::{loaded_program_names, marker, osprey_bin, prog_ids_of, require_root, unloaded_within};

/// Waits until process `pid` holds at least `n` BPF programs; returns their ids.
fn attached(pid: u32, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ids = prog_ids_of(pid);
        if ids.len() >= n || Instant::now() >= deadline {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_writes_ecs_json_lines_and_detaches_on_sigterm() {
    require_root();
    let sock = tempfile::tempdir().unwrap();
    let mut agent = Command::new(osprey_bin())
        .args(["run", "--duration", "60s", "--log-format", "json", "--health-listen", "127.0.0.1:0", "--no-recorder"])
        .arg("--control-socket")
        .arg(sock.path().join("osprey.sock"))
        .stdout(Stdio::piped())
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
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("sensor attached")) {
        let left = deadline.saturating_duration_since(Instant::now());
        log.push(rx.recv_timeout(left).unwrap_or_else(|_| panic!("agent did not attach: {log:#?}")));
    }
    let ids = attached(agent.id(), 40);
    assert!(ids.len() >= 40, "the agent holds its programs: {ids:?}");
    let loaded = loaded_program_names();
    for p in ["proc_exec", "proc_fork", "proc_exit", "file_open_x", "file_path_x", "cred_x", "sys_signal"] {
        assert!(loaded.iter().any(|n| n == p), "{p} attached: {loaded:?}");
    }

    let tag = marker();
    let status = Command::new("/bin/sh").args(["-c", &format!("exec /bin/echo {tag}")]).stdout(Stdio::null()).status().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(300));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut stdout = String::new();
    agent.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let exit = agent.wait().unwrap();
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    // Tearing down ~80 tracepoint links takes the kernel a few seconds.
    assert!(unloaded_within(&ids, Duration::from_secs(20)), "everything detached after exit: {ids:?}");

    let docs: Vec<serde_json::Value> =
        stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let exec = docs
        .iter()
        .find(|d| d["event"]["action"] == "exec" && d["process"]["args"][1] == tag.as_str())
        .unwrap_or_else(|| panic!("exec of echo {tag} in {} lines", docs.len()));
    assert_eq!(exec["process"]["args"][0], "/bin/echo");
    assert_eq!(exec["process"]["name"], "echo");
    assert_eq!(exec["event"]["category"][0], "process");
    assert!(exec["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(exec["process"]["entity_id"].as_str().unwrap().len(), 32);
    let pid = &exec["process"]["pid"];
    assert!(docs.iter().any(|d| d["event"]["action"] == "exit" && &d["process"]["pid"] == pid), "its exit too");
}

#[test]
fn duration_stops_the_agent_by_itself() {
    require_root();
    let started = Instant::now();
    let sock = tempfile::tempdir().unwrap();
    let agent = Command::new(osprey_bin())
        .args(["run", "--duration", "2s", "--no-stdout", "--no-health", "--no-recorder"])
        .arg("--control-socket")
        .arg(sock.path().join("osprey.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let ids = attached(agent.id(), 40);
    let out = agent.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(20), "{took:?}");
    assert!(ids.len() >= 40, "{ids:?}");
    assert!(unloaded_within(&ids, Duration::from_secs(20)), "{ids:?}");
}

#[test]
fn sigterm_while_the_programs_load_stops_the_agent_in_order() {
    require_root();
    let sock = tempfile::tempdir().unwrap();
    let mut agent = Command::new(osprey_bin())
        .args(["run", "--duration", "60s", "--no-stdout", "--health-listen", "127.0.0.1:0", "--no-recorder"])
        .arg("--control-socket")
        .arg(sock.path().join("osprey.sock"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The health endpoint is up before anything is loaded: stop it right then.
    let mut stderr = BufReader::new(agent.stderr.take().unwrap());
    let mut log = String::new();
    while !log.contains("health endpoint") {
        assert!(stderr.read_line(&mut log).unwrap() > 0, "the agent exited: {log}");
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(agent.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    stderr.read_to_string(&mut log).unwrap();
    let exit = agent.wait().unwrap();
    assert!(exit.success(), "clean exit on an early SIGTERM: {exit:?}\n{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");
}

#[test]
fn bad_config_and_flags_are_rejected_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("osprey.yaml");
    std::fs::write(&cfg, "sensor:\n  threads: true\n  ringbuf: 8MiB\n").unwrap();
    let out = Command::new(osprey_bin()).arg("run").arg("--config").arg(&cfg).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:3:", cfg.display())), "{err}");
    assert!(err.contains("ringbuf"), "{err}");

    let out = Command::new(osprey_bin()).args(["run", "--ringbuf-size", "5000"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("power of two"));

    let missing = dir.path().join("nope.yaml");
    let out = Command::new(osprey_bin()).arg("config").arg("--config").arg(&missing).output().unwrap();
    assert!(!out.status.success(), "an explicitly named config file must exist");
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.yaml"));
}
