//! File telemetry on the real kernel (root): every operation, absolute and dirfd-relative,
//! arrives once with the right absolute paths and values; sensitive reads; the write storm.

use std::{process::Command, time::Duration};

use agent::decode::{File, Record};
use agent_common::{osprey_file_op as fo, RecordType};
use osprey_tests::{test_config, Harness};

const WORKLOAD: &str = env!("CARGO_BIN_EXE_osprey-workload");

/// Runs the workload; returns its pid.
fn workload(args: &[&str]) -> u32 {
    let mut c = Command::new(WORKLOAD).args(args).spawn().unwrap();
    let pid = c.id();
    assert!(c.wait().unwrap().success(), "workload {args:?} failed");
    pid
}

fn has_exit(h: &[agent::event::Event], pid: u32) -> bool {
    h.iter().any(|e| matches!(e.record(), Some(Record::Exit(x)) if x.hdr.pid == pid))
}

fn file_events(h: &Harness, pid: u32) -> Vec<&File> {
    h.records()
        .filter_map(|r| match r {
            Record::File(f) if f.hdr.pid == pid => Some(&**f),
            _ => None,
        })
        .collect()
}

/// Exactly one event of `op` on `path` (path2 when given); returns it.
fn one<'a>(evs: &[&'a File], op: u32, path: &str, path2: Option<&str>) -> &'a File {
    let found: Vec<&&File> = evs.iter().filter(|f| f.op == op && f.path == path && f.path2.as_deref() == path2).collect();
    assert_eq!(found.len(), 1, "one op {op} on {path} -> {path2:?}; all events: {evs:#?}");
    found[0]
}

#[test]
fn file_operations_arrive_once_with_absolute_paths_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let d = std::fs::canonicalize(dir.path()).unwrap().to_string_lossy().into_owned();
    let p = |n: &str| format!("{d}/{n}");
    let mut h = Harness::start(test_config());
    let pid = workload(&["files", &d]);
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, pid)));
    let evs = file_events(&h, pid);

    one(&evs, fo::OSPREY_FILE_CREATE, &p("a.txt"), None);
    let m = one(&evs, fo::OSPREY_FILE_MODIFY, &p("a.txt"), None);
    assert_eq!(evs.iter().filter(|f| f.op == fo::OSPREY_FILE_MODIFY).count(), 1, "three writes, one open: one modify");
    assert!(m.ino != 0);
    one(&evs, fo::OSPREY_FILE_CREATE, &p("b.txt"), None); // openat(dirfd, "b.txt")
    one(&evs, fo::OSPREY_FILE_RENAME, &p("b.txt"), Some(&p("c.txt"))); // renameat(dirfd..)
    one(&evs, fo::OSPREY_FILE_RENAME, &p("a.txt"), Some(&p("d.txt"))); // rename(abs)
    assert_eq!(one(&evs, fo::OSPREY_FILE_CHMOD, &p("c.txt"), None).mode & 0o7777, 0o600);
    assert_eq!(one(&evs, fo::OSPREY_FILE_CHMOD, &p("d.txt"), None).mode & 0o7777, 0o640);
    let c = one(&evs, fo::OSPREY_FILE_CHOWN, &p("c.txt"), None);
    assert_eq!((c.uid, c.gid), (1234, 5678));
    let c = one(&evs, fo::OSPREY_FILE_CHOWN, &p("d.txt"), None);
    assert_eq!((c.uid, c.gid), (4321, u32::MAX), "gid -1: unchanged");
    assert_eq!(one(&evs, fo::OSPREY_FILE_TRUNCATE, &p("d.txt"), None).size, 10);
    let t = one(&evs, fo::OSPREY_FILE_TRUNCATE, &p("c.txt"), None); // ftruncate(fd)
    assert_eq!(t.size, 5);
    assert!(t.ino != 0, "resolved through the fd");
    one(&evs, fo::OSPREY_FILE_LINK, &p("c.txt"), Some(&p("e.txt")));
    one(&evs, fo::OSPREY_FILE_SYMLINK, "c.txt", Some(&p("f.lnk")));
    one(&evs, fo::OSPREY_FILE_UNLINK, &p("e.txt"), None);
    one(&evs, fo::OSPREY_FILE_UNLINK, &p("f.lnk"), None);
    one(&evs, fo::OSPREY_FILE_RMDIR, &p("sub"), None);
    one(&evs, fo::OSPREY_FILE_RENAME, &p("c.txt"), Some(&p("g.txt"))); // relative to cwd, with ..
    // Nothing else: 2 creates, 1 modify, 3 renames, 2 chmods, 2 chowns, 2 truncates, 1 link,
    // 1 symlink, 2 unlinks, 1 rmdir (mkdir is not a reported operation).
    assert_eq!(evs.len(), 17, "{evs:#?}");

    // ECS form of the rename.
    let ev = h
        .events
        .iter()
        .find(|e| matches!(e.record(), Some(Record::File(f)) if f.hdr.pid == pid && f.op == fo::OSPREY_FILE_RENAME && f.path.ends_with("b.txt")))
        .unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["category"][0], "file");
    assert_eq!(v["event"]["action"], "rename");
    assert_eq!(v["file"]["path"], p("c.txt"));
    assert_eq!(v["file"]["name"], "c.txt");
    assert_eq!(v["file"]["directory"], d);
    assert_eq!(v["file"]["Ext"]["original"]["path"], p("b.txt"));
    assert_eq!(v["process"]["pid"], pid);
    h.stop();
}

#[test]
fn reading_shadow_is_reported_and_an_unwatched_read_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "nothing to see").unwrap();
    let mut h = Harness::start(test_config());
    let shadow_pid = workload(&["read", "/etc/shadow"]);
    let plain_pid = workload(&["read", plain.to_str().unwrap()]);
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, shadow_pid) && has_exit(evs, plain_pid)));
    let reads = file_events(&h, shadow_pid);
    let r = one(&reads, fo::OSPREY_FILE_READ, "/etc/shadow", None);
    assert!(r.watched());
    assert_eq!(reads.len(), 1, "{reads:#?}");
    assert!(file_events(&h, plain_pid).is_empty(), "an unwatched read is no event: {:#?}", file_events(&h, plain_pid));
    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::File(f)) if f.hdr.pid == shadow_pid)).unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["action"], "read");
    assert_eq!(v["file"]["path"], "/etc/shadow");
    assert_eq!(v["osprey"]["file"]["watched"], true);
    h.stop();
}

#[test]
fn a_watched_directory_covers_what_is_below_it_and_proc_mem_is_always_watched() {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    std::fs::create_dir_all(root.join("a/b")).unwrap();
    let inside = root.join("a/b/secret.key");
    std::fs::write(&inside, "key").unwrap();
    let other = tempfile::tempdir().unwrap();
    let outside = other.path().join("plain.txt");
    std::fs::write(&outside, "plain").unwrap();
    let mut cfg = test_config();
    // Only this directory: no other inode of any filesystem is watched, so opens on every other
    // device are decided before the ancestor walk (watch_devs), and /proc/PID/mem regardless.
    cfg.file.watch_reads = vec![root.to_string_lossy().into_owned()];
    let mut h = Harness::start(cfg);
    let inside_pid = workload(&["read", inside.to_str().unwrap()]);
    let outside_pid = workload(&["read", outside.to_str().unwrap()]);
    let mut sleeper = Command::new("/bin/sleep").arg("10").spawn().unwrap();
    let mem = format!("/proc/{}/mem", sleeper.id());
    drop(std::fs::File::open(&mem).expect("root opens a child's memory"));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    let me = std::process::id();
    let mem_read = |evs: &[agent::event::Event]| {
        evs.iter().any(|e| matches!(e.record(), Some(Record::File(f)) if f.hdr.pid == me && f.path == mem))
    };
    assert!(h.wait_for(Duration::from_secs(10), |evs| has_exit(evs, inside_pid) && has_exit(evs, outside_pid) && mem_read(evs)));
    let reads = file_events(&h, inside_pid);
    assert!(one(&reads, fo::OSPREY_FILE_READ, inside.to_str().unwrap(), None).watched(), "two levels below the watched directory");
    assert!(file_events(&h, outside_pid).is_empty(), "outside the watched directory: {:#?}", file_events(&h, outside_pid));
    assert!(one(&file_events(&h, me), fo::OSPREY_FILE_READ, &mem, None).watched());
    h.stop();
}

#[test]
fn a_write_storm_is_one_event_per_open_and_the_rest_is_counted() {
    const N: u64 = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("storm.bin").to_string_lossy().into_owned();
    let mut h = Harness::start(test_config());
    let before = h.kernel_counters().filtered_total(RecordType::File);
    let pid = workload(&["write-storm", &path, &N.to_string()]);
    assert!(h.wait_for(Duration::from_secs(20), |evs| has_exit(evs, pid)));
    let after = h.kernel_counters().filtered_total(RecordType::File);
    let evs = file_events(&h, pid);
    one(&evs, fo::OSPREY_FILE_CREATE, &path, None);
    one(&evs, fo::OSPREY_FILE_MODIFY, &path, None);
    assert_eq!(evs.len(), 2, "one open, one first write: {evs:#?}");
    eprintln!("write storm: {N} writes, 1 modify event, filtered counter +{}", after - before);
    assert!(after - before >= N - 1, "the other {} writes are counted as filtered, got {}", N - 1, after - before);
    h.stop();
}

/// The chmod events among `evs` of `path` to `mode`.
fn chmods<'a>(evs: &[&'a File], path: &str, mode: u32) -> Vec<&'a File> {
    evs.iter().filter(|f| f.op == fo::OSPREY_FILE_CHMOD && f.path == path && f.mode & 0o7777 == mode).copied().collect()
}

#[test]
fn repeats_of_one_operation_are_folded_and_every_folded_one_is_counted() {
    const N: u64 = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("mode.txt").to_string_lossy().into_owned();
    let other = format!("{path}.2");
    let mut h = Harness::start(test_config()); // file.fold_window: the default, 1 s
    let folded_before = h.kernel_counters().folded_total(RecordType::File);
    let pid = workload(&["chmod-storm", &path, &N.to_string()]);
    assert!(h.wait_for(Duration::from_secs(20), |evs| has_exit(evs, pid)));
    let summary = h.stop();
    let evs = file_events(&h, pid);
    let storm = chmods(&evs, &path, 0o600);
    let folded: u64 = storm.iter().map(|f| u64::from(f.folded)).sum();
    eprintln!(
        "fold: {} chmods to 0600 in {} events carrying {:?} folded; kernel folded +{}",
        N + 1,
        storm.len(),
        storm.iter().map(|f| f.folded).collect::<Vec<_>>(),
        summary.counters.folded_total(RecordType::File) - folded_before
    );
    assert_eq!(summary.counters.lost_total(RecordType::File), 0, "nothing lost");
    // The first is sent, the storm folds into the one after the window, which carries it all.
    assert!(storm.len() >= 2 && storm.len() < 100, "a handful of events, not {}", storm.len());
    assert_eq!(storm[0].folded, 0, "the first of its kind carries nothing");
    assert_eq!(storm.len() as u64 + folded, N + 1, "every chmod is an event or carried by one");
    assert!(summary.counters.folded_total(RecordType::File) - folded_before >= folded);
    // Another mode and another path are other kinds: each arrives, unfolded.
    assert_eq!(chmods(&evs, &path, 0o700).len(), 1, "chmod 0700 (execute bits) is its own event");
    assert_eq!(chmods(&evs, &other, 0o600).len(), 1, "the other file is its own event");
    for sub in ["a", "b"] {
        assert_eq!(chmods(&evs, &format!("{path}.{sub}/f"), 0o600).len(), 1, "a name relative to another cwd is another file");
    }
    let ev = h.events.iter().find(|e| matches!(e.record(), Some(Record::File(f)) if f.hdr.pid == pid && f.folded > 0)).unwrap();
    let v = h.ecs.to_value(ev);
    assert_eq!(v["event"]["action"], "chmod");
    assert!(v["osprey"]["file"]["folded"].as_u64().unwrap() > 0, "{v}");
}

#[test]
fn with_no_fold_window_every_repeat_is_an_event() {
    const N: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap().join("mode.txt").to_string_lossy().into_owned();
    let mut config = test_config();
    config.file.fold_window = Duration::ZERO;
    let mut h = Harness::start(config);
    let pid = workload(&["chmod-storm", &path, &N.to_string()]);
    assert!(h.wait_for(Duration::from_secs(20), |evs| has_exit(evs, pid)));
    h.stop();
    let evs = file_events(&h, pid);
    let storm = chmods(&evs, &path, 0o600);
    assert_eq!(storm.len() as u64, N + 1, "every chmod is its own event");
    assert!(storm.iter().all(|f| f.folded == 0));
}
