//! Process exec/fork/exit telemetry on the real kernel (root).

use std::{
    ffi::CString,
    io::Write,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use agent::{
    decode::{Exec, Exit, Fork, Record},
    event::EventBody,
};
use agent_common::RecordType;
use osprey_tests::{marker, test_config, Harness};

fn canonical(p: &str) -> String {
    std::fs::canonicalize(p).unwrap().to_string_lossy().into_owned()
}

fn execs_of(h: &Harness, pid: u32) -> Vec<&Exec> {
    h.records().filter_map(|r| match r {
        Record::Exec(e) if e.hdr.pid == pid => Some(&**e),
        _ => None,
    }).collect()
}

fn exit_of(h: &Harness, pid: u32) -> Option<&Exit> {
    h.records().find_map(|r| match r {
        Record::Exit(x) if x.hdr.pid == pid => Some(x),
        _ => None,
    })
}

fn fork_of(h: &Harness, child: u32) -> Option<&Fork> {
    h.records().find_map(|r| match r {
        Record::Fork(f) if f.child_pid == child => Some(f),
        _ => None,
    })
}

fn has_exit(events: &[agent::event::Event], pid: u32) -> bool {
    events.iter().any(|e| matches!(e.record(), Some(Record::Exit(x)) if x.hdr.pid == pid))
}

#[test]
fn exec_fork_and_exit_of_a_shell_that_execs_echo() {
    let mut h = Harness::start(test_config());
    let tag = marker();
    let script = format!("exec /bin/echo {tag} a \"b c\"");
    let mut child = Command::new("/bin/sh").args(["-c", &script]).stdout(Stdio::null()).spawn().unwrap();
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, pid)), "exit event for {pid}");

    let me = std::process::id();
    let uid = nix::unistd::getuid().as_raw();
    let prepare_exec = h.attached("proc_prepare_exec");
    if osprey_tests::kernel_version() >= (6, 10) {
        assert!(prepare_exec, "sched_prepare_exec is attached on this kernel");
    }
    let cwd = std::env::current_dir().unwrap().to_string_lossy().into_owned();

    let fork = fork_of(&h, pid).expect("fork event for the child");
    assert_eq!(fork.hdr.pid, me, "the test process forked it");
    assert!(!fork.thread);

    let execs = execs_of(&h, pid);
    assert_eq!(execs.len(), 2, "sh, then echo: {execs:#?}");
    let (sh, echo) = (execs[0], execs[1]);
    assert_eq!(sh.exe_path, canonical("/bin/sh"));
    assert_eq!(sh.filename, "/bin/sh");
    assert_eq!(sh.args, ["/bin/sh", "-c", script.as_str()]);
    assert_eq!(echo.exe_path, canonical("/bin/echo"));
    assert_eq!(echo.args, ["/bin/echo", tag.as_str(), "a", "b c"], "the space-containing argument is intact");
    assert_eq!(echo.argc, 4);
    for e in [sh, echo] {
        assert_eq!(e.hdr.ppid, me);
        assert_eq!((e.hdr.uid, e.hdr.euid), (uid, uid));
        assert_eq!(e.cwd, cwd);
        assert!(!e.flags.memfd() && !e.flags.deleted() && !e.flags.setuid());
        // sched_prepare_exec (Linux 6.10+) gives the credentials before the exec; without it
        // (6.1 in the VM) the exec is judged from the new credentials alone and says so.
        assert_eq!(e.flags.cred_unknown(), !prepare_exec, "cred_unknown is set exactly when sched_prepare_exec is missing");
    }
    assert!(echo.exe_ino != 0 && echo.exe_size > 0);

    let exit = exit_of(&h, pid).expect("exit");
    assert_eq!(exit.exit_status(), Some(0));
    assert_eq!(exit.hdr.comm, "echo");

    // Kernel order is preserved: fork < exec(sh) < exec(echo) < exit, in timestamps and in the stream.
    let ts = [fork.hdr.ktime_ns, sh.hdr.ktime_ns, echo.hdr.ktime_ns, exit.hdr.ktime_ns];
    assert!(ts.windows(2).all(|w| w[0] < w[1]), "{ts:?}");
    let order: Vec<RecordType> = h
        .records()
        .filter(|r| match r {
            Record::Fork(f) => f.child_pid == pid,
            r => r.header().pid == pid,
        })
        .map(Record::kind)
        .collect();
    assert_eq!(order, [RecordType::Fork, RecordType::Exec, RecordType::Exec, RecordType::Exit]);

    // The ECS form of the echo exec.
    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::Exec(e)) if e.hdr.pid == pid && e.args.len() == 4)).unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["action"], "exec");
    assert_eq!(v["process"]["pid"], pid);
    assert_eq!(v["process"]["parent"]["pid"], me);
    assert_eq!(v["process"]["executable"], canonical("/bin/echo"));
    assert_eq!(v["process"]["args"], serde_json::json!(["/bin/echo", tag, "a", "b c"]));
    assert_eq!(v["process"]["command_line"], format!("/bin/echo {tag} a 'b c'"));
    assert_eq!(v["process"]["user"]["id"], uid.to_string());
    assert_eq!(v["process"]["working_directory"], cwd);
    let summary = h.stop();
    assert_eq!(summary.late, 0, "no record arrived after a younger one was released");
}

#[test]
fn exit_codes_and_death_by_signal() {
    let mut h = Harness::start(test_config());
    let mut failing = Command::new("/bin/sh").args(["-c", "exit 7"]).spawn().unwrap();
    let failing_pid = failing.id();
    assert_eq!(failing.wait().unwrap().code(), Some(7));

    let mut sleeper = Command::new("/bin/sleep").arg("30").spawn().unwrap();
    let sleeper_pid = sleeper.id();
    std::thread::sleep(Duration::from_millis(100));
    sleeper.kill().unwrap(); // SIGKILL
    sleeper.wait().unwrap();

    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, failing_pid) && has_exit(evs, sleeper_pid)));
    let x = exit_of(&h, failing_pid).unwrap();
    assert_eq!((x.exit_status(), x.signal()), (Some(7), None));
    let x = exit_of(&h, sleeper_pid).unwrap();
    assert_eq!((x.exit_status(), x.signal()), (None, Some(libc::SIGKILL)));
    assert!(!x.core_dumped());

    let ecs_exit = |pid: u32| {
        let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::Exit(x)) if x.hdr.pid == pid)).unwrap();
        h.ecs.to_value(ev)
    };
    assert_eq!(ecs_exit(failing_pid)["process"]["exit_code"], 7);
    let v = ecs_exit(sleeper_pid);
    assert_eq!(v["process"]["exit_code"], 128 + libc::SIGKILL);
    assert_eq!(v["osprey"]["exit"]["signal"], libc::SIGKILL);
    h.stop();
}

/// A copy of /bin/true behind an fd the child inherits (no close-on-exec), executed through
/// /proc/self/fd/N so the kernel execs that exact file.
fn exec_fd(fd: &OwnedFd) -> u32 {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let mut child = Command::new(&path).spawn().unwrap_or_else(|e| panic!("exec {path}: {e}"));
    let pid = child.id();
    assert!(child.wait().unwrap().success());
    pid
}

#[test]
fn fileless_execs_from_a_memfd_and_a_deleted_file_are_flagged() {
    let image = std::fs::read(canonical("/bin/true")).unwrap();
    let mut h = Harness::start(test_config());

    // memfd: created without MFD_CLOEXEC so the child keeps it.
    let name = CString::new("osprey-memfd-test").unwrap();
    // SAFETY: memfd_create with a valid C string; the fd is owned right after.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), 0) };
    assert!(raw >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: raw is a fresh fd we own.
    let memfd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut f = std::fs::File::from(memfd.try_clone().unwrap());
    f.write_all(&image).unwrap();
    nix::sys::stat::fchmod(f.as_raw_fd(), nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    let memfd_pid = exec_fd(&memfd);

    // A deleted file: copy, open read-only without O_CLOEXEC, unlink, exec through the fd.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("true-copy");
    std::fs::copy(canonical("/bin/true"), &copy).unwrap();
    let raw = nix::fcntl::open(&copy, nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()).unwrap();
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    std::fs::remove_file(&copy).unwrap();
    let deleted_pid = exec_fd(&fd);

    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, memfd_pid) && has_exit(evs, deleted_pid)));
    let m = execs_of(&h, memfd_pid);
    assert_eq!(m.len(), 1);
    assert!(m[0].flags.memfd(), "{:?}", m[0]);
    assert!(!m[0].flags.deleted());
    assert_eq!(m[0].exe_path, "/memfd:osprey-memfd-test");
    assert_eq!(m[0].exe_size, image.len() as u64);

    let d = execs_of(&h, deleted_pid);
    assert_eq!(d.len(), 1);
    assert!(d[0].flags.deleted(), "{:?}", d[0]);
    assert!(!d[0].flags.memfd());
    assert_eq!(Path::new(&d[0].exe_path), copy.as_path(), "the path it had before it was deleted");

    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::Exec(e)) if e.hdr.pid == memfd_pid)).unwrap();
    assert_eq!(h.ecs.to_value(ev)["osprey"]["exec"]["memfd"], true);
    h.stop();
}

/// Runs `n` execs of /bin/true from one shell; returns the shell's pid.
fn exec_storm(n: u32) -> u32 {
    let script = format!("i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done");
    let mut sh = Command::new("/bin/sh").args(["-c", &script]).spawn().unwrap();
    let pid = sh.id();
    assert!(sh.wait().unwrap().success());
    pid
}

fn storm_execs(h: &Harness, shell: u32, exe: &str) -> u64 {
    h.records().filter(|r| matches!(r, Record::Exec(e) if e.hdr.ppid == shell && e.exe_path == exe)).count() as u64
}

#[test]
fn exec_storm_every_exec_is_delivered_or_counted_lost() {
    const N: u32 = 20_000;
    let t = canonical("/bin/true");
    let mut h = Harness::start(test_config());
    let shell = exec_storm(N);
    h.wait_for(Duration::from_secs(60), |evs| {
        evs.iter().filter(|e| matches!(e.record(), Some(Record::Exec(e)) if e.hdr.ppid == shell && e.exe_path == t)).count()
            >= N as usize
    });
    let summary = h.stop();
    let counters = &summary.counters;
    let delivered = storm_execs(&h, shell, &t);
    let lost = counters.lost_total(RecordType::Exec);
    eprintln!("exec storm: performed {N}, delivered {delivered}, lost (all processes) {lost}, events {}", summary.events);
    assert!(delivered <= N as u64, "never more than performed");
    assert!(delivered + lost >= N as u64, "delivered {delivered} + lost {lost} < performed {N}");
    if lost == 0 {
        assert_eq!(delivered, N as u64, "nothing lost, so every exec is delivered");
    }
}

#[test]
fn a_full_ring_buffer_counts_what_it_drops_and_says_so_in_the_stream() {
    const N: u32 = 3_000;
    let t = canonical("/bin/true");
    let mut cfg = test_config();
    cfg.sensor.ringbuf_size = 16 << 10; // 16 KiB per CPU: a few dozen records
    // Attached but not reading: the rings fill and the kernel must count every record it drops.
    let mut h = Harness::attach(cfg);
    let shell = exec_storm(N);
    h.read();
    h.wait_for(Duration::from_secs(5), |evs| evs.iter().any(|e| matches!(e.body, EventBody::Loss(_))));
    let counters = h.stop().counters;
    let delivered = storm_execs(&h, shell, &t);
    let lost = counters.lost_total(RecordType::Exec);
    eprintln!("full ring: performed {N}, delivered {delivered}, lost {lost}");
    assert!(lost > 0, "a 16 KiB ring cannot hold {N} execs");
    assert!(delivered < N as u64);
    assert!(delivered + lost >= N as u64, "delivered {delivered} + lost {lost} < performed {N}");
    let reported: u64 = h
        .events
        .iter()
        .filter_map(|e| match &e.body {
            EventBody::Loss(l) => Some(l.iter().filter(|(k, _)| *k == RecordType::Exec).map(|(_, n)| n).sum::<u64>()),
            _ => None,
        })
        .sum();
    assert_eq!(reported, lost, "loss events in the stream add up to the kernel's counter");
}
