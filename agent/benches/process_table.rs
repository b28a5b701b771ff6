//! Process-table throughput: fork + exec + exit triples per second on one core (target ≥ 1M/s),
//! and ancestry lookups. Records are decoded-form templates whose pid and times change per
//! iteration, so the table sees a stream of distinct short-lived processes, as under churn.
//!
//! `cargo bench -p agent --bench process_table`

use std::{hint::black_box, time::Duration};

use agent::{
    decode::{Exec, ExecFlags, Exit, Fork, Header, Record},
    process::{
        table::{ProcessTable, TableConfig},
        EntityIds,
    },
};
use agent_common::RecordType;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SHELL_PID: u32 = 1000;
const SHELL_START: u64 = 1_000_000_000;

fn hdr(kind: RecordType, pid: u32, start_ns: u64, ppid: u32, pstart: u64, comm: &str) -> Header {
    Header {
        kind,
        ktime_ns: 0,
        cpu: 0,
        pid,
        tid: pid,
        ppid,
        start_ns,
        parent_start_ns: pstart,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        cgroup_id: 1,
        comm: comm.into(),
    }
}

fn exec_record(pid: u32, start: u64, ppid: u32, pstart: u64, exe: &str, args: &[&str]) -> Record {
    Record::Exec(Box::new(Exec {
        hdr: hdr(RecordType::Exec, pid, start, ppid, pstart, exe.rsplit('/').next().unwrap_or(exe)),
        exe_ino: 1234,
        exe_ctime_ns: 1,
        exe_size: 35_000,
        exe_dev: 8 << 20,
        exe_mode: 0o100755,
        exe_uid: 0,
        exe_gid: 0,
        flags: ExecFlags(0),
        argc: args.len() as u32,
        suid: 1000,
        sgid: 1000,
        old_uid: 1000,
        old_euid: 1000,
        old_gid: 1000,
        old_egid: 1000,
        old_pid: pid,
        cap_effective: 0,
        old_cap_effective: 0,
        exe_path: exe.into(),
        filename: exe.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: "/home/user/project".into(),
    }))
}

struct Churn {
    table: ProcessTable,
    fork: Record,
    exec: Record,
    exit: Record,
    next_pid: u32,
    now: u64,
    n: u64,
}

impl Churn {
    fn new(max_entries: usize, grace: Duration) -> Self {
        let cfg = TableConfig { max_entries, exit_grace: grace, resolve_from_proc: false, ..Default::default() };
        let mut table = ProcessTable::new(cfg, EntityIds::new("bench-boot"));
        table.apply(&exec_record(SHELL_PID, SHELL_START, 1, 0, "/bin/bash", &["-bash"]));
        let fork = Record::Fork(Fork {
            hdr: hdr(RecordType::Fork, SHELL_PID, SHELL_START, 1, 0, "bash"),
            child_pid: 0,
            child_tid: 0,
            child_start_ns: 0,
            thread: false,
        });
        let exec = exec_record(0, 0, SHELL_PID, SHELL_START, "/usr/bin/grep", &["grep", "-r", "--color=auto", "needle", "."]);
        let exit = Record::Exit(Exit { hdr: hdr(RecordType::Exit, 0, 0, SHELL_PID, SHELL_START, "grep"), status: 0, thread: false });
        Self { table, fork, exec, exit, next_pid: 2000, now: 2 * SHELL_START, n: 0 }
    }

    /// One short-lived process: fork, exec, exit. 1 µs of kernel time apart, so a new clock
    /// tick (and a new identity for reused pids) every 10,000 processes.
    #[inline]
    fn triple(&mut self) {
        let pid = self.next_pid;
        self.next_pid = if pid >= 4_000_000 { 2000 } else { pid + 1 };
        let start = self.now;
        if let Record::Fork(f) = &mut self.fork {
            f.hdr.ktime_ns = start;
            f.child_pid = pid;
            f.child_tid = pid;
            f.child_start_ns = start;
        }
        if let Record::Exec(e) = &mut self.exec {
            e.hdr.ktime_ns = start + 300;
            e.hdr.pid = pid;
            e.hdr.tid = pid;
            e.hdr.start_ns = start;
        }
        if let Record::Exit(x) = &mut self.exit {
            x.hdr.ktime_ns = start + 600;
            x.hdr.pid = pid;
            x.hdr.tid = pid;
            x.hdr.start_ns = start;
        }
        black_box(self.table.apply(&self.fork));
        black_box(self.table.apply(&self.exec));
        black_box(self.table.apply(&self.exit));
        self.now += 1000;
        self.n += 1;
        if self.n.is_multiple_of(1024) {
            self.table.evict(self.now);
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("process_table");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));

    // Defaults (64k cap, 30 s grace): at 1M processes/s the cap does the evicting.
    let mut churn = Churn::new(65_536, Duration::from_secs(30));
    g.bench_function("fork_exec_exit_triple/cap_65536", |b| b.iter(|| churn.triple()));

    // A short grace period: the eviction tick does the evicting, the table stays small.
    let mut churn = Churn::new(65_536, Duration::from_millis(5));
    g.bench_function("fork_exec_exit_triple/grace_5ms", |b| b.iter(|| churn.triple()));

    // Ancestry of a process 8 levels deep, as every event would ask.
    let mut churn = Churn::new(65_536, Duration::from_secs(30));
    let (mut pid, mut ppid, mut pstart, mut t) = (500_000u32, SHELL_PID, SHELL_START, 3 * SHELL_START);
    for _ in 0..8 {
        churn.table.apply(&exec_record(pid, t, ppid, pstart, "/bin/sh", &["sh", "-c", "next"]));
        (ppid, pstart) = (pid, t);
        pid += 1;
        t += 1_000_000_000;
    }
    let leaf = churn.table.key_of(ppid, pstart);
    g.bench_function("ancestors_walk/depth_9", |b| {
        b.iter(|| black_box(churn.table.ancestors(leaf, 32).filter(|a| a.process.is_some()).count()))
    });
    g.bench_function("ancestry_owned/depth_9", |b| b.iter(|| black_box(churn.table.ancestry(leaf, None))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
