//! User-space pipeline stages on one core (issue 9: end to end ≥ 500,000 records/s):
//!
//! - `decode`: raw ring-buffer records (as the kernel writes them) → typed records;
//! - `ecs_write`: an enriched event → its ECS JSON line;
//! - `recorder_row`: an enriched event → the recorder's index columns (issue 11);
//! - `end_to_end`: a replay of raw records of short-lived processes (fork, exec, a file write,
//!   a rename, exit) through decode → reorder window → process table and enrichment (lineage,
//!   users, cgroup) → ECS JSON into a buffer, as the pipeline does; and the same with the
//!   project's rule pack evaluated on every event the way the pipeline does it (the event as a
//!   JSON value read by the detector).
//!
//! `cargo bench -p agent --bench pipeline`

use std::{hint::black_box, mem::offset_of, path::Path, sync::Arc, time::Duration};

use agent::{
    decode::{decode, raw, Record},
    detect::{Alert, Detector, RuleSet},
    enrich::{Enricher, ProcessSection},
    event::{Ecs, Event, EventBody},
    process::Host,
    reorder::Reorder,
};
use agent_common::{osprey_file_op as fo, osprey_fork, osprey_hdr};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SHELL_PID: u32 = 1000;
const SHELL_START: u64 = 1_000_000_000;
/// Processes per replay pass (five records each).
const PROCS: usize = 2048;
const RECORDS_PER_PROC: usize = 5;

fn put_u32(rec: &mut [u8], at: usize, v: u32) {
    rec[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(rec: &mut [u8], at: usize, v: u64) {
    rec[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

/// The cgroup v2 id (inode of its directory) of this process, as the kernel reports it, so
/// the replay's events resolve to a real, cached cgroup as most events do in production.
fn own_cgroup_id() -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mount = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
    });
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let path = cgroup.lines().find_map(|l| l.strip_prefix("0::").map(str::to_string));
    match (mount, path) {
        (Some(m), Some(p)) => std::fs::metadata(format!("{m}{p}")).map(|md| md.ino()).unwrap_or(0),
        _ => 0,
    }
}

/// Sets the header fields that say who did it and when.
fn set_hdr(rec: &mut [u8], pid: u32, ktime: u64, start: u64, cgroup_id: u64) {
    put_u64(rec, offset_of!(osprey_hdr, ktime_ns), ktime);
    put_u32(rec, offset_of!(osprey_hdr, pid), pid);
    put_u32(rec, offset_of!(osprey_hdr, tid), pid);
    put_u64(rec, offset_of!(osprey_hdr, start_ns), start);
    let (ppid, pstart) = if pid == SHELL_PID { (1, 0) } else { (SHELL_PID, SHELL_START) };
    put_u32(rec, offset_of!(osprey_hdr, ppid), ppid);
    put_u64(rec, offset_of!(osprey_hdr, parent_start_ns), pstart);
    put_u32(rec, offset_of!(osprey_hdr, uid), 1000);
    put_u32(rec, offset_of!(osprey_hdr, euid), 1000);
    put_u32(rec, offset_of!(osprey_hdr, gid), 1000);
    put_u32(rec, offset_of!(osprey_hdr, egid), 1000);
    put_u64(rec, offset_of!(osprey_hdr, cgroup_id), cgroup_id);
}

/// Raw records of PROCS short-lived children of one shell: fork, exec, write, rename, exit.
/// Each pass rewrites pids and times in place (as new processes would have them), so the
/// process table sees a stream of distinct processes, with pid reuse after 4M.
struct Replay {
    recs: Vec<Vec<u8>>,
    pass: u64,
    cgroup_id: u64,
}

impl Replay {
    fn new() -> Self {
        let mut recs = Vec::with_capacity(PROCS * RECORDS_PER_PROC);
        for _ in 0..PROCS {
            recs.push(raw::fork(SHELL_PID, 0, 0));
            recs.push(raw::exec(
                0,
                0,
                "/usr/bin/grep",
                &["grep", "-r", "--color=auto", "needle", "src/"],
                "/home/user/project",
            ));
            recs.push(raw::file(0, 0, fo::OSPREY_FILE_MODIFY, "/home/user/project/target/debug/.fingerprint/out.json", None));
            recs.push(raw::file(
                0,
                0,
                fo::OSPREY_FILE_RENAME,
                "/home/user/project/target/debug/.tmpXYZ",
                Some("/home/user/project/target/debug/libgrep.rlib"),
            ));
            recs.push(raw::exit(0, 0, 0));
        }
        let mut r = Replay { recs, pass: 0, cgroup_id: own_cgroup_id() };
        r.next_pass();
        r
    }

    fn next_pass(&mut self) {
        let cgroup_id = self.cgroup_id;
        for (i, chunk) in self.recs.chunks_mut(RECORDS_PER_PROC).enumerate() {
            let n = self.pass * PROCS as u64 + i as u64;
            let pid = 2000 + (n % 4_000_000) as u32;
            let t0 = 2 * SHELL_START + n * 1000;
            let [fork, exec, write, rename, exit] = chunk else { unreachable!() };
            set_hdr(fork, SHELL_PID, t0, SHELL_START, cgroup_id);
            put_u32(fork, offset_of!(osprey_fork, child_pid), pid);
            put_u32(fork, offset_of!(osprey_fork, child_tid), pid);
            put_u64(fork, offset_of!(osprey_fork, child_start_ns), t0);
            for (k, rec) in [exec, write, rename, exit].into_iter().enumerate() {
                set_hdr(rec, pid, t0 + 200 * (k as u64 + 1), t0, cgroup_id);
            }
        }
        self.pass += 1;
    }
}

/// The pipeline's stages, without the kernel and the sinks' I/O.
struct Stages {
    ecs: Ecs,
    enrich: Enricher,
    reorder: Reorder,
    detector: Option<Detector>,
    alerts: Vec<Alert>,
    out: Vec<u8>,
}

impl Stages {
    fn new(rules: Option<Arc<RuleSet>>) -> Self {
        let ecs = Ecs::new(Host::detect(), 1_700_000_000_000_000_000);
        let cfg = ProcessSection { hash: false, ..ProcessSection::default() };
        let (mut enrich, _late) = Enricher::new(&cfg, ecs.ids().clone());
        // The shell every replayed process is a child of, so lineage resolves.
        let mut shell = raw::exec(SHELL_PID, SHELL_START, "/usr/bin/bash", &["-bash"], "/home/user/project");
        set_hdr(&mut shell, SHELL_PID, SHELL_START, SHELL_START, own_cgroup_id());
        enrich.apply(&decode(&shell).expect("shell exec"));
        Stages {
            ecs,
            enrich,
            reorder: Reorder::new(50_000_000),
            detector: rules.map(Detector::new),
            alerts: Vec::new(),
            out: Vec::with_capacity(4 << 20),
        }
    }

    /// One replay pass, end to end. Returns the records that left the pipeline.
    fn run(&mut self, replay: &Replay) -> usize {
        for raw in &replay.recs {
            let rec = decode(raw).expect("well-formed record");
            self.enrich.on_arrival(&rec);
            self.reorder.push(rec);
        }
        let mut n = 0;
        while let Some(rec) = self.reorder.pop() {
            let wall_ns = self.ecs.wall_ns(rec.header().ktime_ns);
            let ctx = self.enrich.apply(&rec);
            let ev = Event { wall_ns, body: EventBody::Record(rec), ctx: Some(Arc::new(ctx)) };
            self.ecs.write(&ev, &mut self.out).expect("serialise");
            self.out.push(b'\n');
            if let Some(d) = &mut self.detector {
                // As the pipeline does: the rules read the typed document's fields.
                let rules = Arc::clone(d.rules());
                self.ecs.with_view(&ev, &rules, |view| d.evaluate(&view, &mut self.alerts));
                self.alerts.clear();
            }
            n += 1;
        }
        // the sink's write(2) is not part of this measurement
        black_box(&self.out);
        self.out.clear();
        self.enrich.tick(u64::MAX / 2);
        n
    }
}

fn rule_pack() -> Option<Arc<RuleSet>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules");
    if !dir.is_dir() {
        return None;
    }
    let (set, _report) = RuleSet::load(&[dir]);
    (!set.is_empty()).then(|| Arc::new(set))
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let exec = raw::exec(42, 7, "/usr/bin/grep", &["grep", "-r", "--color=auto", "needle", "src/"], "/home/user/project");
    let fork = raw::fork(41, 42, 7);
    let exit = raw::exit(42, 0, 9);
    let file = raw::file(42, 8, fo::OSPREY_FILE_RENAME, "/home/user/project/a.tmp", Some("/home/user/project/a.rs"));
    for (name, rec) in [("exec", &exec), ("fork", &fork), ("exit", &exit), ("file_rename", &file)] {
        g.bench_function(name, |b| b.iter(|| black_box(decode(black_box(rec)).unwrap())));
    }
    g.finish();
}

fn bench_ecs(c: &mut Criterion) {
    let mut g = c.benchmark_group("ecs_write");
    g.throughput(Throughput::Elements(1));
    let mut stages = Stages::new(None);
    let replay = Replay::new();
    // Enrich one process's records (fork, exec, write, rename, exit) so events carry context.
    let events: Vec<(&str, Event)> = ["fork", "exec", "file_modify", "file_rename", "exit"]
        .into_iter()
        .zip(&replay.recs[..RECORDS_PER_PROC])
        .map(|(name, raw)| {
            let rec: Record = decode(raw).unwrap();
            let ctx = stages.enrich.apply(&rec);
            (name, Event { wall_ns: stages.ecs.wall_ns(rec.header().ktime_ns), body: EventBody::Record(rec), ctx: Some(Arc::new(ctx)) })
        })
        .collect();
    let mut out = Vec::with_capacity(4096);
    for (name, ev) in &events {
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                stages.ecs.write(black_box(ev), &mut out).unwrap();
                black_box(out.len())
            })
        });
    }
    // What the pipeline builds for the detector on every event when rules are loaded.
    g.bench_function("exec_to_value", |b| b.iter(|| black_box(stages.ecs.to_value(black_box(&events[1].1)))));
    g.finish();
    // What the recorder's writer reads off every event for its index (issue 11).
    let mut g = c.benchmark_group("recorder_row");
    g.throughput(Throughput::Elements(1));
    for (name, ev) in &events {
        g.bench_function(*name, |b| b.iter(|| black_box(stages.ecs.index_row(black_box(ev)))));
    }
    g.finish();
}

/// `REPLAY_PASSES=N`: instead of criterion's runs, N passes of one end-to-end variant (the first,
/// or `REPLAY_VARIANT`), then the fastest and the median pass. Under
/// `valgrind --tool=cachegrind`, the difference between two values of N is what a record costs
/// in instructions, which a noisy shared host shows where times do not (docs/benchmarks.md).
fn replay_passes() -> Option<usize> {
    std::env::var("REPLAY_PASSES").ok()?.parse().ok()
}

fn fixed_passes(name: &str, stages: &mut Stages, passes: usize) {
    let mut replay = Replay::new();
    let mut ms: Vec<f64> = (0..passes)
        .map(|_| {
            replay.next_pass();
            let t = std::time::Instant::now();
            assert_eq!(stages.run(&replay), PROCS * RECORDS_PER_PROC);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    if let (Some(min), Some(median)) = (ms.first(), ms.get(ms.len() / 2)) {
        let rate = |ms: f64| (PROCS * RECORDS_PER_PROC) as f64 / ms;
        println!("{name}: {passes} passes of {} records: fastest {min:.2} ms ({:.0} k records/s), median {median:.2} ms ({:.0} k/s)", PROCS * RECORDS_PER_PROC, rate(*min), rate(*median));
    }
}

fn bench_end_to_end(c: &mut Criterion) {
    let mut g = c.benchmark_group("end_to_end");
    g.throughput(Throughput::Elements((PROCS * RECORDS_PER_PROC) as u64));
    g.measurement_time(Duration::from_secs(8));
    g.sample_size(30);
    let mut variants = vec![("decode_reorder_enrich_json", None)];
    match rule_pack() {
        Some(rules) => variants.push(("with_rule_pack", Some(rules))),
        None => eprintln!("rules/ not found or empty: end_to_end/with_rule_pack skipped"),
    }
    for (name, rules) in variants {
        let mut stages = Stages::new(rules);
        if let Some(passes) = replay_passes() {
            if std::env::var("REPLAY_VARIANT").map_or(true, |v| v == name) {
                fixed_passes(name, &mut stages, passes);
                std::process::exit(0);
            }
            continue;
        }
        let mut replay = Replay::new();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    replay.next_pass();
                    let t = std::time::Instant::now();
                    let n = stages.run(&replay);
                    spent += t.elapsed();
                    assert_eq!(n, PROCS * RECORDS_PER_PROC);
                }
                spent
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_ecs, bench_end_to_end);
criterion_main!(benches);
