//! The workloads: bounded in time or count, loopback only, each returning its throughput.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::sys;

/// Everything a workload needs to run.
#[derive(Clone)]
pub struct Ctx {
    /// How long each time-bounded workload runs.
    pub duration: Duration,
    /// How long each syscall micro-benchmark loops.
    pub micro: Duration,
    /// Scratch directory on tmpfs, writable by `nobody` (stress-ng's temp path).
    pub tmp: PathBuf,
    /// Processes per stress-ng stressor.
    pub instances: u32,
    /// Bogo-ops bound of each stress-ng stressor (the smoke run keeps the event volume small).
    pub stress_ops: Option<u64>,
    pub redis_port: u16,
    pub redis_requests: u64,
    /// redis-benchmark `-t` list.
    pub redis_tests: String,
    /// The crate the macro workload builds.
    pub macro_dir: PathBuf,
    pub cargo: PathBuf,
}

/// One number a workload reports.
#[derive(Debug, Clone)]
pub struct Measure {
    pub metric: String,
    pub unit: &'static str,
    pub value: f64,
    pub higher_is_better: bool,
    /// Operations performed (calls, bogo ops, connections, requests, builds), for costs per op.
    pub ops: f64,
}

impl Measure {
    fn rate(metric: impl Into<String>, unit: &'static str, value: f64, ops: f64) -> Self {
        Measure { metric: metric.into(), unit, value, higher_is_better: true, ops }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Getppid,
    OpenClose,
    WriteNull,
    /// stress-ng stressors run together, as `nobody`.
    Stress(&'static [&'static str]),
    Connect,
    Redis,
    Macro,
}

#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub kind: Kind,
    pub about: &'static str,
}

pub fn all() -> Vec<Workload> {
    vec![
        Workload { name: "getppid", kind: Kind::Getppid, about: "getppid() loop: a syscall Osprey does not hook" },
        Workload {
            name: "open",
            kind: Kind::OpenClose,
            about: "open(O_RDONLY) + close of an unwatched file: hooked, filtered in the kernel",
        },
        Workload { name: "write", kind: Kind::WriteNull, about: "1-byte write() to /dev/null: hooked (sys_enter_write)" },
        Workload { name: "exec", kind: Kind::Stress(&["exec"]), about: "stress-ng --exec (fork + execve), as nobody" },
        Workload { name: "spawn", kind: Kind::Stress(&["spawn"]), about: "stress-ng --spawn (posix_spawn), as nobody" },
        Workload { name: "fork", kind: Kind::Stress(&["fork"]), about: "stress-ng --fork (fork + exit), as nobody" },
        Workload { name: "connect", kind: Kind::Connect, about: "TCP connect/accept/close loop over 127.0.0.1" },
        Workload { name: "redis", kind: Kind::Redis, about: "redis-benchmark against a local redis-server (loopback)" },
        Workload { name: "build", kind: Kind::Macro, about: "cargo build --release of a small crate, from scratch" },
        // Last: it floods the agent (and raises alerts), whose backlog would spill into the next.
        Workload {
            name: "file-churn",
            kind: Kind::Stress(&["open", "rename", "chmod"]),
            about: "stress-ng --open --rename --chmod on tmpfs, as nobody",
        },
    ]
}

pub fn run(w: &Workload, ctx: &Ctx) -> Result<Vec<Measure>, String> {
    match w.kind {
        Kind::Getppid => Ok(vec![micro("getppid", ctx.micro, || {
            std::hint::black_box(sys::getppid());
        })]),
        Kind::OpenClose => {
            let path = ctx.tmp.join("unwatched");
            std::fs::write(&path, b"x").map_err(|e| format!("{}: {e}", path.display()))?;
            Ok(vec![micro("open+close", ctx.micro, || {
                drop(std::hint::black_box(std::fs::File::open(&path).expect("open the unwatched file")));
            })])
        }
        Kind::WriteNull => {
            let mut null = std::fs::OpenOptions::new().write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
            Ok(vec![micro("write", ctx.micro, || {
                null.write_all(b"x").expect("write /dev/null");
            })])
        }
        Kind::Stress(stressors) => stress(w.name, stressors, ctx),
        Kind::Connect => connect_loop(ctx.duration),
        Kind::Redis => redis_benchmark(ctx),
        Kind::Macro => build(ctx),
    }
}

/// Calls `f` in chunks for `d`; the median ns per call over the chunks (robust to the odd
/// chunk another process preempted).
fn micro(metric: &str, d: Duration, mut f: impl FnMut()) -> Measure {
    const CHUNK: u32 = 5_000;
    let start = Instant::now();
    let mut per_call = Vec::new();
    let mut calls = 0u64;
    while start.elapsed() < d || per_call.len() < 5 {
        let t = Instant::now();
        for _ in 0..CHUNK {
            f();
        }
        per_call.push(t.elapsed().as_nanos() as f64 / CHUNK as f64);
        calls += CHUNK as u64;
    }
    per_call.sort_by(f64::total_cmp);
    Measure {
        metric: metric.to_string(),
        unit: "ns/call",
        value: per_call[per_call.len() / 2],
        higher_is_better: false,
        ops: calls as f64,
    }
}

/// A command run as `nobody` (stress-ng's exec stressors refuse root).
fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "nobody", "--", program]);
    c
}

fn stress(name: &str, stressors: &[&str], ctx: &Ctx) -> Result<Vec<Measure>, String> {
    let yaml = ctx.tmp.join(format!("stress-{name}.yaml"));
    let _ = std::fs::remove_file(&yaml);
    let mut cmd = as_nobody("stress-ng");
    for s in stressors {
        // one instance of each when several run together
        let n = if stressors.len() == 1 { ctx.instances } else { 1 };
        cmd.arg(format!("--{s}")).arg(n.to_string());
        if let Some(ops) = ctx.stress_ops {
            cmd.arg(format!("--{s}-ops")).arg(ops.to_string());
        }
    }
    let secs = ctx.duration.as_secs().max(1);
    cmd.args(["--timeout", &format!("{secs}s"), "--metrics-brief", "--yaml"]).arg(&yaml).arg("--temp-path").arg(&ctx.tmp);
    cmd.current_dir(&ctx.tmp);
    let out = cmd.output().map_err(|e| format!("stress-ng: {e} (install it: cargo xtask deps)"))?;
    if !out.status.success() {
        return Err(format!("stress-ng {stressors:?} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let text = std::fs::read_to_string(&yaml).map_err(|e| format!("{}: {e}", yaml.display()))?;
    let metrics = parse_stress_yaml(&text);
    stressors
        .iter()
        .map(|s| {
            let (ops, rate) = metrics
                .iter()
                .find(|(n, _, _)| n == s)
                .map(|(_, ops, rate)| (*ops, *rate))
                .ok_or_else(|| format!("stress-ng reported no metrics for {s}:\n{text}"))?;
            Ok(Measure::rate(format!("{s} bogo-ops/s"), "ops/s", rate, ops))
        })
        .collect()
}

/// (stressor, bogo-ops, bogo-ops per second of real time) from stress-ng's --yaml output.
fn parse_stress_yaml(text: &str) -> Vec<(String, f64, f64)> {
    let mut out: Vec<(String, f64, f64)> = Vec::new();
    for line in text.lines().map(str::trim) {
        let Some((key, value)) = line.trim_start_matches("- ").split_once(':') else { continue };
        let value = value.trim();
        match key {
            "stressor" => out.push((value.to_string(), 0.0, 0.0)),
            "bogo-ops" => {
                if let (Some(last), Ok(v)) = (out.last_mut(), value.parse()) {
                    last.1 = v;
                }
            }
            "bogo-ops-per-second-real-time" => {
                if let (Some(last), Ok(v)) = (out.last_mut(), value.parse()) {
                    last.2 = v;
                }
            }
            _ => {}
        }
    }
    out
}

/// Connects to a loopback listener and closes, as fast as possible, for `d`. Client and server
/// share one CPU: the loop then measures CPU cost, not how fast an idle CPU wakes up (which,
/// in a VM, varies with whatever else keeps the CPUs busy, an agent included).
fn connect_loop(d: Duration) -> Result<Vec<Measure>, String> {
    let cpu = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    let saved = sys::affinity();
    sys::set_affinity(&sys::CpuSet::one(cpu));
    let result = connect_loop_on(d, cpu);
    if let Some(saved) = saved {
        sys::set_affinity(&saved);
    }
    result
}

fn connect_loop_on(d: Duration, cpu: usize) -> Result<Vec<Measure>, String> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| format!("bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let server_stop = stop.clone();
    let server = std::thread::spawn(move || {
        sys::set_affinity(&sys::CpuSet::one(cpu));
        let mut accepted = 0u64;
        for conn in listener.incoming() {
            if server_stop.load(Ordering::Relaxed) {
                break;
            }
            if let Ok(mut s) = conn {
                let _ = s.write_all(b"k");
                accepted += 1;
            }
        }
        accepted
    });
    let start = Instant::now();
    let mut n = 0u64;
    let mut buf = [0u8; 1];
    while start.elapsed() < d {
        let mut s = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.read_exact(&mut buf).map_err(|e| format!("read from {addr}: {e}"))?;
        sys::close_with_reset(s);
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = TcpStream::connect(addr); // wakes the accept loop
    let accepted = server.join().map_err(|_| "the accept thread panicked".to_string())?;
    if accepted < n {
        return Err(format!("connected {n} times but accepted {accepted}"));
    }
    Ok(vec![Measure::rate("connections/s", "conn/s", n as f64 / secs, n as f64)])
}

/// A redis-server on a loopback port, stopped when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    pub fn start(dir: &Path) -> Result<Redis, String> {
        let port = sys::free_port().map_err(|e| format!("free port: {e}"))?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e} (install it: cargo xtask deps)"))?;
        let redis = Redis { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n" {
                    return Ok(redis);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server did not answer on 127.0.0.1:{port}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        sys::signal(self.child.id(), sys::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_benchmark(ctx: &Ctx) -> Result<Vec<Measure>, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, ctx.redis_port));
    let out = Command::new("redis-benchmark")
        .args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
        .args(["-q", "--csv", "-n", &ctx.redis_requests.to_string(), "-t", &ctx.redis_tests])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("redis-benchmark: {e} (install redis-tools: cargo xtask deps)"))?;
    if !out.status.success() {
        return Err(format!("redis-benchmark failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let rows = parse_redis_csv(&text);
    if rows.is_empty() {
        return Err(format!("redis-benchmark printed no results:\n{text}"));
    }
    Ok(rows
        .into_iter()
        .map(|(test, rps)| Measure::rate(format!("{test} req/s"), "req/s", rps, ctx.redis_requests as f64))
        .collect())
}

/// (test, requests per second) rows of `redis-benchmark --csv`.
fn parse_redis_csv(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut cols = l.split(',').map(|c| c.trim().trim_matches('"'));
            let test = cols.next()?.to_string();
            let rps: f64 = cols.next()?.parse().ok()?;
            Some((test, rps))
        })
        .collect()
}

/// Writes the crate the macro workload builds and returns what it is: a binary using `regex`
/// (five crates from the local cargo registry, built offline), else a copy of xtask's own
/// sources (std only); for the smoke run a one-file crate.
pub fn prepare_build(dir: &Path, cargo: &Path, sources: &Path, tiny: bool) -> Result<&'static str, String> {
    let _ = std::fs::remove_dir_all(dir);
    let src = dir.join("src");
    std::fs::create_dir_all(&src).map_err(|e| format!("{}: {e}", src.display()))?;
    let manifest = |deps: &str| {
        format!(
            "[package]\nname = \"osprey-bench-build\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [[bin]]\nname = \"osprey-bench-build\"\npath = \"src/main.rs\"\n\n[dependencies]\n{deps}\n[workspace]\n"
        )
    };
    let write = |path: PathBuf, text: &str| std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()));
    if tiny {
        write(dir.join("Cargo.toml"), &manifest(""))?;
        write(src.join("main.rs"), "fn main() { println!(\"hello\"); }\n")?;
        return Ok("a one-file crate");
    }
    write(dir.join("Cargo.toml"), &manifest("regex = \"1\"\n"))?;
    write(
        src.join("main.rs"),
        "fn main() {\n    let re = regex::Regex::new(r\"(?i)osprey-\\d+\").unwrap();\n    \
         println!(\"{}\", re.is_match(\"OSPREY-9\"));\n}\n",
    )?;
    let resolved = Command::new(cargo)
        .args(["generate-lockfile", "--offline", "--quiet"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if resolved {
        return Ok("regex and its dependencies (5 crates)");
    }
    // No registry cache: xtask's own sources, which need nothing.
    write(dir.join("Cargo.toml"), &manifest(""))?;
    std::fs::remove_file(src.join("main.rs")).map_err(|e| e.to_string())?;
    copy_tree(sources, &src)?;
    Ok("a copy of xtask's sources (std only)")
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(|e| e.to_string())?;
        let target = to.join(entry.file_name());
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).map_err(|e| format!("{}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// A from-scratch release build of the prepared crate; lower is better.
fn build(ctx: &Ctx) -> Result<Vec<Measure>, String> {
    let target = ctx.macro_dir.join("target");
    let _ = std::fs::remove_dir_all(&target);
    let start = Instant::now();
    let out = Command::new(&ctx.cargo)
        .args(["build", "--release", "--offline", "--quiet"])
        .current_dir(&ctx.macro_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cargo: {e}"))?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        return Err(format!("the macro build failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(vec![Measure { metric: "release build".into(), unit: "s", value: secs, higher_is_better: false, ops: 1.0 }])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stress_ng_yaml() {
        let text = "metrics:\n    - stressor: open\n      bogo-ops: 2161\n      bogo-ops-per-second-usr-sys-time: 3526.5\n\
                    \x20     bogo-ops-per-second-real-time: 2124.57\n\n    - stressor: rename\n      bogo-ops: 600\n\
                    \x20     bogo-ops-per-second-real-time: 592.1\n...\n";
        assert_eq!(parse_stress_yaml(text), [("open".into(), 2161.0, 2124.57), ("rename".into(), 600.0, 592.1)]);
    }

    #[test]
    fn parses_redis_benchmark_csv() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\"\n\"SET\",\"42105.27\",\"0.752\"\n\"GET\",\"58139.53\",\"0.574\"\n";
        assert_eq!(parse_redis_csv(text), [("SET".into(), 42105.27), ("GET".into(), 58139.53)]);
    }

    #[test]
    fn the_micro_loop_reports_ns_per_call() {
        let m = micro("noop", Duration::from_millis(5), || {});
        assert!(m.value >= 0.0 && m.value < 1000.0, "{m:?}");
        assert!(m.ops >= 25_000.0);
        assert!(!m.higher_is_better);
    }

    #[test]
    fn the_connect_loop_counts_connections() {
        let m = &connect_loop(Duration::from_millis(50)).unwrap()[0];
        assert!(m.ops > 0.0 && m.value > 0.0, "{m:?}");
    }
}
