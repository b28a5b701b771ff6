//! `cargo xtask bench`: what Osprey costs the workloads of this machine.
//!
//! Each workload runs three ways in one interleaved run: without an agent (`none`), with empty
//! programs on Osprey's hooks (`bare`, the floor: `osprey run --bare-hooks`) and with Osprey and
//! its default configuration (`full`). Repetitions rotate the order of the three modes. Then,
//! with `kernel.bpf_stats_enabled`, one more pass under the full agent measures what each BPF
//! program costs in the kernel (kept apart so the statistics do not tax the timed runs).
//!
//! Writes a Markdown table to stdout and target/bench/report.{md,json}. See docs/benchmarks.md.

mod agent;
mod json;
mod sys;
mod workloads;

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::exit,
    time::{Duration, Instant, SystemTime},
};

use agent::{Agent, Mode, Probe, Scrape};
use json::Json;
use workloads::{Ctx, Measure, Workload};

/// Targets of issue 9.
const TARGET_EXEC: f64 = 0.95;
const TARGET_FILE: f64 = 0.90;
const TARGET_REDIS: f64 = 0.97;
const TARGET_BUILD: f64 = 0.97;
const TARGET_RSS_MIB: f64 = 150.0;
/// Overheads below this are within this machine's run-to-run noise.
const NOISE: f64 = 0.01;

struct Opts {
    smoke: bool,
    reps: usize,
    duration: Duration,
    micro: Duration,
    only: Option<Vec<String>>,
    redis_requests: u64,
    redis_tests: String,
    profile: bool,
    build: bool,
    /// Cargo profile of the agent: release, or debug for the smoke run (CI has built it already).
    release: bool,
    ringbuf: Option<String>,
    /// The agent's configuration file (written by the bench).
    config: PathBuf,
    config_about: &'static str,
    /// What the macro workload builds.
    build_about: &'static str,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask bench [--smoke] [--reps N] [--duration SECS] [--micro SECS] [--only w1,w2]\n\
         \x20                        [--redis-requests N] [--redis-tests set,get] [--ringbuf-size SIZE]\n\
         \x20                        [--no-profile] [--no-build] [--release|--debug]\n\
         workloads: {}",
        workloads::all().iter().map(|w| w.name).collect::<Vec<_>>().join(", ")
    );
    exit(2);
}

fn parse_opts(args: &[&str]) -> Opts {
    if args.iter().any(|a| *a == "--help" || *a == "-h") {
        usage();
    }
    let smoke = args.contains(&"--smoke");
    let mut o = Opts {
        smoke,
        reps: if smoke { 1 } else { 3 },
        duration: Duration::from_secs(if smoke { 1 } else { 4 }),
        micro: Duration::from_millis(if smoke { 300 } else { 2000 }),
        only: None,
        redis_requests: if smoke { 5_000 } else { 200_000 },
        redis_tests: "set,get".into(),
        profile: true,
        build: true,
        release: !smoke,
        ringbuf: None,
        config: PathBuf::new(),
        config_about: "",
        build_about: "",
    };
    let mut it = args.iter();
    while let Some(&a) = it.next() {
        let mut value = || *it.next().unwrap_or_else(|| usage());
        let secs = |s: &str| Duration::from_secs_f64(s.parse().unwrap_or_else(|_| usage()));
        match a {
            "--smoke" => {}
            "--reps" => o.reps = value().parse().unwrap_or_else(|_| usage()),
            "--duration" => o.duration = secs(value()),
            "--micro" => o.micro = secs(value()),
            "--only" => o.only = Some(value().split(',').map(str::to_string).collect()),
            "--redis-requests" => o.redis_requests = value().parse().unwrap_or_else(|_| usage()),
            "--redis-tests" => o.redis_tests = value().to_string(),
            "--ringbuf-size" => o.ringbuf = Some(value().to_string()),
            "--no-profile" => o.profile = false,
            "--no-build" => o.build = false,
            "--release" => o.release = true,
            "--debug" => o.release = false,
            _ => usage(),
        }
    }
    if o.reps == 0 {
        usage();
    }
    o
}

/// What one workload measured in one mode and repetition.
struct Sample {
    measures: Vec<Measure>,
    agent: Option<AgentCost>,
}

/// What the agent cost (and saw) during one workload.
#[derive(Debug, Clone, Default)]
struct AgentCost {
    cpu_s: f64,
    wall_s: f64,
    peak_rss_kib: u64,
    seen: Scrape,
    /// From the end of the workload until the agent was idle again (None: not within the limit).
    catch_up_s: Option<f64>,
}

/// Kernel-side cost of each program during one workload (bpf_stats pass).
#[derive(Debug, Clone, Default)]
struct KernelCost {
    /// (program id, name, run_cnt, run_time_ns) that ran.
    programs: Vec<(u32, String, u64, u64)>,
    ops: f64,
}

fn stamp() -> String {
    let out = std::process::Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

fn loadavg() -> String {
    sys::read_trim("/proc/loadavg").unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::root().join("target"))
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("xtask bench: {msg}");
    exit(1);
}

/// Restores kernel.bpf_stats_enabled when dropped.
struct BpfStats {
    before: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    fn enable() -> Result<Self, String> {
        let before = sys::read_trim(BPF_STATS).ok_or("kernel.bpf_stats_enabled is not available")?;
        std::fs::write(BPF_STATS, "1").map_err(|e| format!("enabling kernel.bpf_stats_enabled: {e}"))?;
        Ok(BpfStats { before })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        let _ = std::fs::write(BPF_STATS, &self.before);
    }
}

/// Our scratch directory on tmpfs (stress-ng's temp path), removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn make_scratch() -> Result<Scratch, String> {
    use std::os::unix::fs::PermissionsExt;
    let base = if Path::new("/dev/shm").is_dir() { Path::new("/dev/shm") } else { Path::new("/tmp") };
    let dir = base.join(format!("osprey-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // stress-ng runs as nobody and writes here
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).map_err(|e| e.to_string())?;
    Ok(Scratch(dir))
}

/// BPF programs of another Osprey (or bench) loaded right now: they would skew the numbers.
fn foreign_osprey_programs() -> usize {
    let ours = ["proc_exec", "proc_fork", "proc_exit", "file_openat", "file_write"];
    sys::prog_names().iter().filter(|(_, n)| ours.contains(&n.as_str())).count()
}

/// `cargo xtask bench --smoke`, for `cargo xtask test`: every workload once for about a second.
pub fn smoke() -> Result<(), String> {
    run(parse_opts(&["--smoke"]))
}

pub fn main(args: &[&str]) {
    // Errors return through `run` so every child (agent, redis) is stopped before exiting.
    if let Err(e) = run(parse_opts(args)) {
        fail(e);
    }
}

fn run(mut opts: Opts) -> Result<(), String> {
    if !crate::is_root() {
        return Err("the bench loads BPF programs and needs root: sudo -E cargo xtask bench".into());
    }
    crate::deps(true);
    let target = target_dir();
    let out_dir = target.join("bench");
    let logs = out_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    if opts.build {
        let mut build = crate::cargo();
        build.args(["build", "-p", "agent", "--bin", "osprey"]);
        if opts.release {
            build.arg("--release");
        }
        crate::run(&mut build);
    }
    let bin = target.join(if opts.release { "release/osprey" } else { "debug/osprey" });
    if !bin.exists() {
        return Err(format!("{} is missing (drop --no-build)", bin.display()));
    }
    opts.config = out_dir.join("osprey-bench.yaml");
    opts.config_about = agent::write_config(&bin, &opts.config, &crate::root().join("rules"))?;

    let all = workloads::all();
    let chosen: Vec<Workload> = match &opts.only {
        Some(names) => {
            for n in names {
                if !all.iter().any(|w| w.name == n) {
                    return Err(format!("unknown workload {n}"));
                }
            }
            all.into_iter().filter(|w| names.iter().any(|n| n == w.name)).collect()
        }
        None => all,
    };

    let mut foreign = 0;
    let scratch = make_scratch()?;
    let macro_dir = out_dir.join("build-crate");
    let cargo = std::env::var_os("CARGO").map_or_else(|| "cargo".into(), PathBuf::from);
    let build_about = workloads::prepare_build(&macro_dir, &cargo, &crate::root().join("xtask/src"), opts.smoke)?;
    opts.build_about = build_about;
    let needs_redis = chosen.iter().any(|w| matches!(w.kind, workloads::Kind::Redis));
    let redis = if needs_redis { Some(workloads::Redis::start(&scratch.0)?) } else { None };
    let ctx = Ctx {
        duration: opts.duration,
        micro: opts.micro,
        tmp: scratch.0.clone(),
        instances: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
        stress_ops: opts.smoke.then_some(50),
        redis_port: redis.as_ref().map_or(0, |r| r.port),
        redis_requests: opts.redis_requests,
        redis_tests: opts.redis_tests.clone(),
        macro_dir,
        cargo,
    };

    let started = Instant::now();
    let started_at = stamp();
    let load_start = loadavg();
    eprintln!(
        "xtask bench: {} workloads × 3 modes × {} repetitions{}; load average {load_start}",
        chosen.len(),
        opts.reps,
        if opts.smoke { " (smoke)" } else { "" }
    );

    // samples[workload][mode] = one per repetition
    let mut samples: Vec<Vec<Vec<Sample>>> = chosen.iter().map(|_| Mode::ALL.iter().map(|_| Vec::new()).collect()).collect();
    let mut probes: Vec<Probe> = Vec::new();
    let mut max_rss_kib = 0u64;
    for rep in 0..opts.reps {
        for i in 0..3 {
            let mode = Mode::ALL[(rep + i) % 3];
            let series = run_series(&bin, mode, rep, &chosen, &ctx, &logs, &opts, &mut max_rss_kib, &mut probes, &mut foreign)?;
            for (w, s) in series.into_iter().enumerate() {
                samples[w][mode as usize].push(s);
            }
        }
    }

    let kernel = if opts.profile {
        match profile(&bin, &chosen, &ctx, &logs, &opts, &mut probes) {
            Ok(k) => Some(k),
            Err(e) => {
                eprintln!("xtask bench: kernel per-program statistics skipped: {e}");
                None
            }
        }
    } else {
        None
    };
    drop(redis);

    let elapsed = started.elapsed();
    let load_end = loadavg();
    let report = Report {
        opts: &opts,
        workloads: &chosen,
        samples: &samples,
        kernel: kernel.as_deref(),
        probes: &probes,
        max_rss_kib,
        started_at,
        elapsed,
        load_start,
        load_end,
        foreign,
    };
    let md = report.markdown();
    print!("{md}");
    let json = report.json().pretty();
    let _ = std::fs::write(out_dir.join("report.md"), &md);
    std::fs::write(out_dir.join("report.json"), json).map_err(|e| format!("writing the report: {e}"))?;
    eprintln!(
        "xtask bench: done in {:.0} s; report: {}",
        elapsed.as_secs_f64(),
        out_dir.join("report.json").display()
    );
    Ok(())
}

/// Runs every workload once in `mode` (one agent for the whole series).
#[allow(clippy::too_many_arguments)]
fn run_series(
    bin: &Path,
    mode: Mode,
    rep: usize,
    chosen: &[Workload],
    ctx: &Ctx,
    logs: &Path,
    opts: &Opts,
    max_rss_kib: &mut u64,
    probes: &mut Vec<Probe>,
    foreign: &mut usize,
) -> Result<Vec<Sample>, String> {
    eprintln!("xtask bench: repetition {}/{}, mode {}", rep + 1, opts.reps, mode.name());
    let others = foreign_osprey_programs();
    if others > 0 {
        eprintln!("xtask bench: WARNING: {others} Osprey programs of another process are loaded: numbers will be skewed");
        *foreign = (*foreign).max(others);
    }
    let mut agent = match mode {
        Mode::None => None,
        _ => {
            let log = logs.join(format!("agent-{}-{}.log", mode.name(), rep + 1));
            let a = Agent::start(bin, &opts.config, mode, &log, opts.ringbuf.as_deref())?;
            if mode == Mode::Full && probes.is_empty() {
                *probes = a.probes();
            }
            Some(a)
        }
    };
    // Let the agent finish starting (process table seeding, first loss poll) and the machine settle.
    std::thread::sleep(Duration::from_millis(if opts.smoke { 300 } else { 1500 }));
    if let Some(a) = &agent {
        *max_rss_kib = (*max_rss_kib).max(sys::status_kib(a.pid, "VmHWM").unwrap_or(0));
    }
    // At least one loss poll (1 s) after each workload, so the loss counters are current.
    let pause = Duration::from_millis(if opts.smoke { 300 } else { 1200 });
    let mut out = Vec::new();
    for w in chosen {
        let before = match &agent {
            Some(a) => {
                sys::reset_peak_rss(a.pid);
                Some((a.cpu_ticks(), a.scrape()?, Instant::now()))
            }
            None => None,
        };
        let measures = workloads::run(w, ctx).map_err(|e| format!("workload {} ({}): {e}", w.name, mode.name()))?;
        let cost = match (&mut agent, before) {
            (Some(a), Some((ticks, scrape, t0))) => {
                let caught_up = a.settle(pause, Duration::from_secs(if opts.smoke { 1 } else { 60 }));
                a.check_alive()?;
                let seen = a.scrape()?.since(&scrape);
                let cpu_s = a.cpu_ticks().saturating_sub(ticks) as f64 / sys::clk_tck() as f64;
                let peak = sys::status_kib(a.pid, "VmHWM").unwrap_or(0);
                *max_rss_kib = (*max_rss_kib).max(peak);
                Some(AgentCost { cpu_s, wall_s: t0.elapsed().as_secs_f64(), peak_rss_kib: peak, seen, catch_up_s: caught_up.map(|d| d.as_secs_f64()) })
            }
            _ => {
                std::thread::sleep(pause); // the same pause as the settle
                None
            }
        };
        let brief: Vec<String> = measures.iter().map(|m| format!("{} {:.1} {}", m.metric, m.value, m.unit)).collect();
        eprintln!("xtask bench:   {:<10} {:<4} {}", w.name, mode.name(), brief.join(", "));
        out.push(Sample { measures, agent: cost });
    }
    if let Some(a) = agent {
        a.stop()?;
    }
    Ok(out)
}

/// One more pass with the full agent and kernel.bpf_stats_enabled: run count and run time of
/// each program, per workload.
fn profile(
    bin: &Path,
    chosen: &[Workload],
    ctx: &Ctx,
    logs: &Path,
    opts: &Opts,
    probes: &mut Vec<Probe>,
) -> Result<Vec<KernelCost>, String> {
    eprintln!("xtask bench: kernel per-program cost (kernel.bpf_stats_enabled=1, full agent)");
    let _stats = BpfStats::enable()?;
    let agent = Agent::start(bin, &opts.config, Mode::Full, &logs.join("agent-profile.log"), opts.ringbuf.as_deref())?;
    if probes.is_empty() {
        *probes = agent.probes();
    }
    let names: BTreeMap<u32, String> = sys::prog_names().into_iter().collect();
    // Shorter than the timed runs: this pass counts, it does not time.
    let ctx = &Ctx { duration: ctx.duration.min(Duration::from_secs(2)), micro: ctx.micro.min(Duration::from_secs(1)), ..ctx.clone() };
    std::thread::sleep(Duration::from_millis(500));
    let mut out = Vec::new();
    for w in chosen {
        let before = sys::prog_stats(agent.pid);
        let measures = workloads::run(w, ctx).map_err(|e| format!("workload {}: {e}", w.name))?;
        let after = sys::prog_stats(agent.pid);
        let programs = after
            .iter()
            .filter_map(|a| {
                let b = before.iter().find(|b| b.id == a.id).copied().unwrap_or_default();
                let (cnt, ns) = (a.run_cnt - b.run_cnt, a.run_time_ns - b.run_time_ns);
                let name = names.get(&a.id).cloned().unwrap_or_else(|| format!("id {}", a.id));
                (cnt > 0).then_some((a.id, name, cnt, ns))
            })
            .collect();
        out.push(KernelCost { programs, ops: measures.first().map_or(0.0, |m| m.ops) });
        std::thread::sleep(Duration::from_millis(300));
    }
    agent.stop()?;
    Ok(out)
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 { s[n / 2] } else { (s[n / 2 - 1] + s[n / 2]) / 2.0 })
}

/// One metric of one workload across modes and repetitions.
struct Row<'a> {
    workload: &'a Workload,
    metric: String,
    unit: &'static str,
    higher_is_better: bool,
    values: [Vec<f64>; 3],
    med: [Option<f64>; 3],
}

impl Row<'_> {
    /// Throughput with `mode` relative to no agent (1.0 = no cost).
    fn ratio(&self, mode: Mode) -> Option<f64> {
        let (none, m) = (self.med[0]?, self.med[mode as usize]?);
        if none <= 0.0 || m <= 0.0 {
            return None;
        }
        Some(if self.higher_is_better { m / none } else { none / m })
    }

    fn overhead(&self, mode: Mode) -> Option<f64> {
        self.ratio(mode).map(|r| 1.0 - r)
    }

    /// ns added per call (micro-benchmarks).
    fn added_ns(&self, mode: Mode) -> Option<f64> {
        (self.unit == "ns/call").then(|| Some(self.med[mode as usize]? - self.med[0]?)).flatten()
    }

    /// Spread of the no-agent runs: (max − min) / median.
    fn noise(&self) -> Option<f64> {
        let v = &self.values[0];
        if v.len() < 2 {
            return None;
        }
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
        Some((hi - lo) / self.med[0]?)
    }

    /// Osprey's overhead within twice the floor's (overheads under NOISE count as NOISE).
    fn within_twice_the_floor(&self) -> Option<bool> {
        let (full, bare) = (self.overhead(Mode::Full)?, self.overhead(Mode::Bare)?);
        Some(full <= 2.0 * bare.max(NOISE))
    }
}

struct Report<'a> {
    opts: &'a Opts,
    workloads: &'a [Workload],
    samples: &'a [Vec<Vec<Sample>>],
    kernel: Option<&'a [KernelCost]>,
    probes: &'a [Probe],
    max_rss_kib: u64,
    started_at: String,
    elapsed: Duration,
    load_start: String,
    load_end: String,
    foreign: usize,
}

fn pct(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{:.1}%", x * 100.0))
}

fn num(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(x) if x.abs() >= 1000.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    }
}

impl Report<'_> {
    fn rows(&self) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        for (wi, w) in self.workloads.iter().enumerate() {
            let first = self.samples[wi].iter().flatten().next();
            let Some(first) = first else { continue };
            for (mi, m) in first.measures.iter().enumerate() {
                let values: [Vec<f64>; 3] = std::array::from_fn(|mode| {
                    self.samples[wi][mode].iter().filter_map(|s| s.measures.get(mi).map(|m| m.value)).collect()
                });
                let med = std::array::from_fn(|mode| median(&values[mode]));
                rows.push(Row {
                    workload: w,
                    metric: m.metric.clone(),
                    unit: m.unit,
                    higher_is_better: m.higher_is_better,
                    values,
                    med,
                });
            }
        }
        rows
    }

    /// Median agent cost of workload `wi` in `mode`.
    fn agent(&self, wi: usize, mode: Mode) -> Option<AgentCost> {
        let costs: Vec<&AgentCost> = self.samples[wi][mode as usize].iter().filter_map(|s| s.agent.as_ref()).collect();
        if costs.is_empty() {
            return None;
        }
        let m = |f: &dyn Fn(&AgentCost) -> f64| median(&costs.iter().map(|c| f(c)).collect::<Vec<_>>()).unwrap_or(0.0);
        let catch_up: Vec<f64> = costs.iter().map(|c| c.catch_up_s.unwrap_or(f64::INFINITY)).collect();
        Some(AgentCost {
            catch_up_s: median(&catch_up).filter(|x| x.is_finite()),
            cpu_s: m(&|c| c.cpu_s),
            wall_s: m(&|c| c.wall_s),
            peak_rss_kib: costs.iter().map(|c| c.peak_rss_kib).max().unwrap_or(0),
            seen: Scrape {
                // totals over the repetitions: loss anywhere counts
                events: costs.iter().map(|c| c.seen.events).sum::<f64>() / costs.len() as f64,
                lost: costs.iter().map(|c| c.seen.lost).sum(),
                filtered: costs.iter().map(|c| c.seen.filtered).sum::<f64>() / costs.len() as f64,
                decode_errors: costs.iter().map(|c| c.seen.decode_errors).sum(),
                alerts: costs.iter().map(|c| c.seen.alerts).sum::<f64>() / costs.len() as f64,
                events_by_type: Vec::new(),
            },
        })
    }

    /// Hooks of a program, by its kernel name (15 bytes at most).
    fn hooks_of(&self, kname: &str) -> Vec<String> {
        self.probes
            .iter()
            .filter(|p| p.program == kname || (kname.len() == 15 && p.program.starts_with(kname)))
            .map(|p| p.hook.clone())
            .collect()
    }

    fn program_name(&self, kname: &str) -> String {
        self.probes
            .iter()
            .find(|p| p.program == kname || (kname.len() == 15 && p.program.starts_with(kname)))
            .map_or(kname.to_string(), |p| p.program.clone())
    }

    /// (program, hooks, runs, ns) summed over every workload of the profile pass.
    fn kernel_totals(&self) -> Vec<(String, Vec<String>, u64, u64)> {
        let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for k in self.kernel.unwrap_or_default() {
            for (_, name, cnt, ns) in &k.programs {
                let t = totals.entry(self.program_name(name)).or_default();
                t.0 += cnt;
                t.1 += ns;
            }
        }
        let mut v: Vec<_> = totals.into_iter().map(|(n, (c, ns))| (n.clone(), self.hooks_of(&n), c, ns)).collect();
        v.sort_by_key(|p| std::cmp::Reverse(p.3));
        v
    }

    fn targets(&self, rows: &[Row]) -> Vec<(String, String, String, Option<bool>)> {
        let mut t = Vec::new();
        let min_ratio = |names: &[&str]| -> Option<f64> {
            rows.iter().filter(|r| names.contains(&r.workload.name)).filter_map(|r| r.ratio(Mode::Full)).reduce(f64::min)
        };
        for (label, names, target) in [
            ("exec storm throughput (exec, spawn, fork)", &["exec", "spawn", "fork"][..], TARGET_EXEC),
            ("file churn throughput (open, rename, chmod)", &["file-churn"][..], TARGET_FILE),
            ("redis-benchmark throughput", &["redis"][..], TARGET_REDIS),
            ("macro build throughput", &["build"][..], TARGET_BUILD),
        ] {
            let r = min_ratio(names);
            t.push((label.to_string(), format!("≥ {:.0}% of no agent", target * 100.0), format!("worst {}", pct(r)), r.map(|r| r >= target)));
        }
        if let Some(g) = rows.iter().find(|r| r.workload.name == "getppid") {
            let (b, f) = (g.added_ns(Mode::Bare), g.added_ns(Mode::Full));
            let met = b.zip(f).map(|(b, f)| f <= b.max(0.0) + 1.0);
            t.push((
                "unhooked syscall (getppid) micro-cost".into(),
                "≤ the bare-hook floor (+1 ns noise)".into(),
                format!("+{} ns (floor +{} ns)", num(f), num(b)),
                met,
            ));
        }
        let bad: Vec<String> =
            rows.iter().filter(|r| r.within_twice_the_floor() == Some(false)).map(|r| format!("{}: {}", r.workload.name, r.metric)).collect();
        let judged = rows.iter().filter(|r| r.within_twice_the_floor().is_some()).count();
        t.push((
            "Osprey overhead ≤ 2× bare-hook overhead".into(),
            format!("every workload (overheads < {:.0}% count as {:.0}%)", NOISE * 100.0, NOISE * 100.0),
            if bad.is_empty() { format!("{judged} of {judged} metrics") } else { format!("over on {}", bad.join("; ")) },
            (judged > 0).then_some(bad.is_empty()),
        ));
        let lost: f64 = self
            .workloads
            .iter()
            .enumerate()
            .filter(|(_, w)| ["exec", "spawn", "fork", "connect"].contains(&w.name))
            .filter_map(|(i, _)| self.agent(i, Mode::Full))
            .map(|a| a.seen.lost)
            // Not .sum(): an empty f64 sum is -0.0, printed "-0 lost".
            .fold(0.0, |a, b| a + b);
        t.push((
            "zero loss at exec and connect rates".into(),
            "0 lost (default ring buffers)".into(),
            format!("{lost:.0} lost"),
            Some(lost == 0.0),
        ));
        let rss = self.max_rss_kib as f64 / 1024.0;
        t.push((
            "agent RSS during the whole bench".into(),
            format!("< {TARGET_RSS_MIB:.0} MiB"),
            format!("peak {rss:.1} MiB"),
            (self.max_rss_kib > 0).then_some(rss < TARGET_RSS_MIB),
        ));
        t
    }

    fn markdown(&self) -> String {
        let rows = self.rows();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n## Osprey benchmark{} — {} ({} rep{}, {:.0} s per workload, {:.0} s total)\n",
            if self.opts.smoke { " (smoke: not for judging speed)" } else { "" },
            self.started_at,
            self.opts.reps,
            if self.opts.reps == 1 { "" } else { "s" },
            self.opts.duration.as_secs_f64(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(s, "Load average at start: {}; at end: {}", self.load_start, self.load_end);
        let _ = writeln!(s, "Agent configuration: {}; events to stdout (/dev/null).", self.opts.config_about);
        let _ = writeln!(s, "The build workload compiles {} in release mode from scratch.", self.opts.build_about);
        if self.foreign > 0 {
            let _ = writeln!(s, "\n**Warning:** up to {} Osprey programs of another process were loaded during the run: numbers are skewed.", self.foreign);
        }
        let _ = writeln!(s, "\n### Throughput (median of repetitions; % of no agent)\n");
        let _ = writeln!(s, "| workload | metric | no agent | bare hooks | Osprey | bare | Osprey | overhead Osprey / bare | noise |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        for r in &rows {
            let over = match (r.overhead(Mode::Full), r.overhead(Mode::Bare)) {
                (Some(f), Some(b)) if b >= NOISE => format!("{:.1}×", f / b),
                (Some(_), Some(_)) => "floor < 1%".into(),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {} | {} ({}) | {} | {} | {} | {} | {} | {} | {} |",
                r.workload.name,
                r.metric,
                r.unit,
                num(r.med[0]),
                num(r.med[1]),
                num(r.med[2]),
                pct(r.ratio(Mode::Bare)),
                pct(r.ratio(Mode::Full)),
                over,
                r.noise().map_or("–".into(), |n| format!("±{:.1}%", n * 50.0)),
            );
        }
        let micro: Vec<&Row> = rows.iter().filter(|r| r.unit == "ns/call").collect();
        if !micro.is_empty() {
            let _ = writeln!(s, "\n### Syscall micro-costs (ns per call, median)\n");
            let _ = writeln!(s, "| call | no agent | bare hooks | Osprey | added by bare hooks | added by Osprey |");
            let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
            for r in micro {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {:+.1} ns | {:+.1} ns |",
                    r.metric,
                    num(r.med[0]),
                    num(r.med[1]),
                    num(r.med[2]),
                    r.added_ns(Mode::Bare).unwrap_or(f64::NAN),
                    r.added_ns(Mode::Full).unwrap_or(f64::NAN)
                );
            }
        }
        let _ = writeln!(s, "\n### The agent during each workload (median; lost summed over repetitions)\n");
        let _ = writeln!(
            s,
            "| workload | CPU Osprey (% of a core) | CPU bare | catch-up | peak RSS Osprey (MiB) | events delivered | lost | filtered in kernel | alerts | decode errors |"
        );
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (wi, w) in self.workloads.iter().enumerate() {
            let (Some(f), b) = (self.agent(wi, Mode::Full), self.agent(wi, Mode::Bare)) else { continue };
            let cpu = |c: &AgentCost| if c.wall_s > 0.0 { c.cpu_s / c.wall_s * 100.0 } else { 0.0 };
            let _ = writeln!(
                s,
                "| {} | {:.1}% ({:.2} s) | {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                w.name,
                cpu(&f),
                f.cpu_s,
                b.as_ref().map_or("–".into(), |b| format!("{:.1}%", cpu(b))),
                f.catch_up_s.map_or("> limit".into(), |c| format!("{c:.1} s")),
                f.peak_rss_kib as f64 / 1024.0,
                f.seen.events,
                f.seen.lost,
                f.seen.filtered,
                f.seen.alerts,
                f.seen.decode_errors
            );
        }
        if let Some(kernel) = self.kernel {
            let _ = writeln!(s, "\n### Kernel cost per workload (bpf_stats pass, full agent)\n");
            let _ = writeln!(s, "| workload | BPF time | BPF ns per op | top programs (ns/run × runs) |");
            let _ = writeln!(s, "|---|---:|---:|---|");
            for (w, k) in self.workloads.iter().zip(kernel) {
                let total: u64 = k.programs.iter().map(|p| p.3).sum();
                let mut top = k.programs.clone();
                top.sort_by_key(|p| std::cmp::Reverse(p.3));
                let top: Vec<String> = top
                    .iter()
                    .take(4)
                    .map(|(_, n, c, ns)| format!("{} {:.0}×{}", self.program_name(n), *ns as f64 / *c as f64, c))
                    .collect();
                let per_op = if k.ops > 0.0 { total as f64 / k.ops } else { 0.0 };
                let _ = writeln!(s, "| {} | {:.1} ms | {:.0} | {} |", w.name, total as f64 / 1e6, per_op, top.join(", "));
            }
            let _ = writeln!(s, "\n### Kernel cost per program (all workloads of the bpf_stats pass)\n");
            let _ = writeln!(s, "| program | hooks | runs | ns per run | total ms |");
            let _ = writeln!(s, "|---|---|---:|---:|---:|");
            for (name, hooks, cnt, ns) in self.kernel_totals() {
                let hooks = if hooks.len() > 3 { format!("{}, … ({} hooks)", hooks[..2].join(", "), hooks.len()) } else { hooks.join(", ") };
                let _ = writeln!(s, "| {name} | {hooks} | {cnt} | {:.0} | {:.1} |", ns as f64 / cnt.max(1) as f64, ns as f64 / 1e6);
            }
        }
        let _ = writeln!(s, "\n### Targets (issue 9)\n");
        let _ = writeln!(s, "| target | goal | measured | met |");
        let _ = writeln!(s, "|---|---|---|---|");
        for (label, goal, measured, met) in self.targets(&rows) {
            let met = match met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "–",
            };
            let _ = writeln!(s, "| {label} | {goal} | {measured} | {met} |");
        }
        s
    }

    fn json(&self) -> Json {
        let rows = self.rows();
        let machine = Json::obj()
            .with("cpus", std::thread::available_parallelism().map_or(0, |n| n.get()))
            .with(
                "cpu_model",
                std::fs::read_to_string("/proc/cpuinfo")
                    .ok()
                    .and_then(|c| c.lines().find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_string()))),
            )
            .with("kernel", sys::read_trim("/proc/sys/kernel/osrelease"))
            .with("mem_total_kib", sys::status_kib_meminfo())
            .with("load_start", self.load_start.as_str())
            .with("load_end", self.load_end.as_str())
            .with("foreign_osprey_programs", self.foreign);
        let config = Json::obj()
            .with("smoke", self.opts.smoke)
            .with("reps", self.opts.reps)
            .with("duration_s", self.opts.duration.as_secs_f64())
            .with("micro_s", self.opts.micro.as_secs_f64())
            .with("redis_requests", self.opts.redis_requests)
            .with("redis_tests", self.opts.redis_tests.as_str())
            .with("ringbuf_size", self.opts.ringbuf.clone())
            .with("agent_profile", if self.opts.release { "release" } else { "debug" })
            .with("agent_config", self.opts.config_about)
            .with("build_workload", self.opts.build_about);
        let mode_obj = |f: &dyn Fn(Mode) -> Json| {
            Mode::ALL.iter().fold(Json::obj(), |o, &m| o.with(m.name(), f(m)))
        };
        let workloads: Vec<Json> = self
            .workloads
            .iter()
            .enumerate()
            .map(|(wi, w)| {
                let metrics: Vec<Json> = rows
                    .iter()
                    .filter(|r| r.workload.name == w.name)
                    .map(|r| {
                        Json::obj()
                            .with("metric", r.metric.as_str())
                            .with("unit", r.unit)
                            .with("higher_is_better", r.higher_is_better)
                            .with("samples", mode_obj(&|m| r.values[m as usize].clone().into()))
                            .with("median", mode_obj(&|m| r.med[m as usize].into()))
                            .with("ratio_bare", r.ratio(Mode::Bare))
                            .with("ratio_full", r.ratio(Mode::Full))
                            .with("added_ns_bare", r.added_ns(Mode::Bare))
                            .with("added_ns_full", r.added_ns(Mode::Full))
                            .with("noise", r.noise())
                            .with("full_within_twice_bare", r.within_twice_the_floor())
                    })
                    .collect();
                let agent = |m: Mode| -> Json {
                    let per_rep: Vec<Json> = self.samples[wi][m as usize]
                        .iter()
                        .filter_map(|s| s.agent.as_ref())
                        .map(|c| {
                            Json::obj()
                                .with("cpu_s", c.cpu_s)
                                .with("wall_s", c.wall_s)
                                .with("catch_up_s", c.catch_up_s)
                                .with("peak_rss_kib", c.peak_rss_kib)
                                .with("events", c.seen.events)
                                .with("lost", c.seen.lost)
                                .with("filtered", c.seen.filtered)
                                .with("decode_errors", c.seen.decode_errors)
                                .with("alerts", c.seen.alerts)
                                .with(
                                    "events_by_type",
                                    c.seen.events_by_type.iter().fold(Json::obj(), |o, (k, v)| o.with(k, *v)),
                                )
                        })
                        .collect();
                    Json::Arr(per_rep)
                };
                let mut o = Json::obj()
                    .with("name", w.name)
                    .with("about", w.about)
                    .with("metrics", Json::Arr(metrics))
                    .with("agent", Json::obj().with("bare", agent(Mode::Bare)).with("full", agent(Mode::Full)));
                if let Some(k) = self.kernel.and_then(|k| k.get(wi)) {
                    let progs: Vec<Json> = k
                        .programs
                        .iter()
                        .map(|(id, n, c, ns)| {
                            Json::obj()
                                .with("program", self.program_name(n))
                                .with("id", *id)
                                .with("run_cnt", *c)
                                .with("run_time_ns", *ns)
                        })
                        .collect();
                    o.set("kernel", Json::obj().with("ops", k.ops).with("programs", Json::Arr(progs)));
                }
                o
            })
            .collect();
        let programs: Vec<Json> = self
            .kernel_totals()
            .into_iter()
            .map(|(n, hooks, c, ns)| {
                Json::obj().with("program", n).with("hooks", hooks).with("run_cnt", c).with("run_time_ns", ns)
            })
            .collect();
        let targets: Vec<Json> = self
            .targets(&rows)
            .into_iter()
            .map(|(t, goal, measured, met)| Json::obj().with("target", t).with("goal", goal).with("measured", measured).with("met", met))
            .collect();
        let unix = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Json::obj()
            .with("started_at", self.started_at.as_str())
            .with("finished_unix", unix)
            .with("elapsed_s", self.elapsed.as_secs_f64())
            .with("machine", machine)
            .with("config", config)
            .with("workloads", Json::Arr(workloads))
            .with("kernel_programs", Json::Arr(programs))
            .with("probes", Json::Arr(self.probes.iter().map(|p| Json::obj().with("program", p.program.as_str()).with("hook", p.hook.as_str()).with("attached", p.attached)).collect()))
            .with("agent_peak_rss_kib", self.max_rss_kib)
            .with("targets", Json::Arr(targets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        let w = workloads::all().into_iter().find(|w| w.name == "getppid").unwrap();
        let r = Row {
            workload: &w,
            metric: "getppid".into(),
            unit: "ns/call",
            higher_is_better: false,
            values: [vec![100.0, 102.0], vec![110.0], vec![120.0]],
            med: [Some(101.0), Some(110.0), Some(120.0)],
        };
        assert_eq!(r.added_ns(Mode::Full), Some(19.0));
        assert!((r.ratio(Mode::Full).unwrap() - 101.0 / 120.0).abs() < 1e-9);
        assert_eq!(r.within_twice_the_floor(), Some(true));
        let t = Row { unit: "ops/s", higher_is_better: true, med: [Some(100.0), Some(99.0), Some(90.0)], ..r };
        assert_eq!(t.added_ns(Mode::Full), None);
        assert!((t.overhead(Mode::Full).unwrap() - 0.10).abs() < 1e-9);
        assert_eq!(t.within_twice_the_floor(), Some(false), "10% is more than twice a 1% floor");
    }
}
