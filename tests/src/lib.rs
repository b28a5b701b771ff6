//! Harness for the integration tests: start the real agent (BPF programs attached to this
//! machine's kernel) in-process, run a workload, and collect the events it produced.
//!
//! The kernel is shared with everything else on the machine, so every test filters the stream
//! by the pids, paths or cgroups it created. Tests that attach run one at a time (`LOCK`).

pub mod clickhouse;

use std::{
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use agent::{
    config::Config,
    decode::Record,
    event::{Ecs, Event},
    output::Channel,
    pipeline::Summary,
    Agent,
};
use tokio::sync::{mpsc, watch};

static LOCK: Mutex<()> = Mutex::new(());

/// One kernel test of a test binary at a time: a test that floods the machine (an exec storm)
/// would make another test's agent drop events it waits for.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "integration tests load BPF programs and must run as root (sudo -E cargo xtask test)"
    );
}

/// A running agent whose events arrive on a channel.
pub struct Harness {
    _guard: MutexGuard<'static, ()>,
    rt: tokio::runtime::Runtime,
    agent: Option<Agent>,
    stop: watch::Sender<bool>,
    running: Option<tokio::task::JoinHandle<(Agent, Summary)>>,
    rx: mpsc::UnboundedReceiver<Event>,
    tx: Option<mpsc::UnboundedSender<Event>>,
    pub ecs: Ecs,
    counters: agent::sensor::CounterReader,
    pub metrics: std::sync::Arc<agent::metrics::Metrics>,
    /// The hooks the sensor attached or skipped on this kernel.
    pub probes: Vec<agent::sensor::ProbeStatus>,
    /// What the prevention guard chose on this kernel.
    pub guard: agent::lsm::GuardState,
    /// Everything received so far.
    pub events: Vec<Event>,
}

impl Harness {
    /// Attaches the programs and starts reading at once.
    pub fn start(config: Config) -> Self {
        let mut h = Self::attach(config);
        h.read();
        h
    }

    /// Attaches the programs but does not read the ring buffers until [`Harness::read`]: the
    /// kernel buffers records meanwhile (and counts what does not fit).
    pub fn attach(config: Config) -> Self {
        require_root();
        let guard = serial();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let agent = Agent::start(config).expect("agent starts: programs load and attach");
        let ecs = agent.ecs().clone();
        let counters = agent.sensor().counter_reader().expect("counter maps");
        let metrics = agent.metrics();
        let probes = agent.probes().to_vec();
        let guard_state = agent.guard_state().clone();
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, _) = watch::channel(false);
        Self {
            _guard: guard,
            rt,
            agent: Some(agent),
            stop,
            running: None,
            rx,
            tx: Some(tx),
            ecs,
            counters,
            metrics,
            probes,
            guard: guard_state,
            events: Vec::new(),
        }
    }

    /// Whether the sensor attached `program` (to at least one of its hooks) on this kernel.
    pub fn attached(&self, program: &str) -> bool {
        self.probes.iter().any(|p| p.program == program && p.attached)
    }

    /// Starts the pipeline.
    pub fn read(&mut self) {
        let mut agent = self.agent.take().expect("read() once");
        let tx = self.tx.take().expect("read() once");
        let stop = self.stop.subscribe();
        self.running = Some(self.rt.spawn(async move {
            let summary = agent.run(vec![Box::new(Channel(tx))], stop).await.expect("pipeline runs");
            (agent, summary)
        }));
    }

    /// Waits (until `deadline`, at most 100 ms) for at least one event, then takes every event
    /// already queued. Returns whether anything arrived.
    fn pull(&mut self, deadline: Instant) -> bool {
        let rx = &mut self.rx;
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_millis(100));
        let first = self.rt.block_on(async { tokio::time::timeout(left, rx.recv()).await });
        let Ok(Some(ev)) = first else { return false };
        self.events.push(ev);
        while let Ok(ev) = self.rx.try_recv() {
            self.events.push(ev);
        }
        true
    }

    /// Collects events until `done` holds for what has arrived, or `timeout` passes.
    /// Returns whether `done` was reached.
    pub fn wait_for(&mut self, timeout: Duration, mut done: impl FnMut(&[Event]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.events) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.pull(deadline);
        }
    }

    /// Stops the pipeline (it drains the rings first, then reads the kernel counters one last
    /// time) and returns its summary, with every remaining event collected.
    pub fn stop(&mut self) -> Summary {
        let _ = self.stop.send(true);
        let handle = self.running.take().expect("read() was called");
        let (agent, summary) = self.rt.block_on(handle).expect("pipeline task");
        while let Ok(ev) = self.rx.try_recv() {
            self.events.push(ev);
        }
        drop(agent); // detaches
        summary
    }

    /// The kernel's loss and filter counters right now.
    pub fn kernel_counters(&self) -> agent::sensor::KernelCounters {
        self.counters.read().expect("kernel counters")
    }

    /// The records received (loss reports left out).
    pub fn records(&self) -> impl Iterator<Item = &Record> {
        self.events.iter().filter_map(Event::record)
    }
}

/// The exit event of `pid` has arrived.
pub fn has_exit(events: &[Event], pid: u32) -> bool {
    events.iter().any(|e| matches!(e.record(), Some(Record::Exit(x)) if x.hdr.pid == pid))
}

/// Reads an HTTP request or response head up to its blank line (or EOF), so that a server which
/// answers and closes leaves nothing unread: unread data at close turns the FIN into a RST, which
/// can destroy the answer still in flight to the client.
pub fn read_http_head(s: &mut impl std::io::Read) -> Vec<u8> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && matches!(s.read(&mut b), Ok(1)) {
        head.push(b[0]);
    }
    head
}

/// `/path/to/x` with symlinks resolved, as the kernel reports executables.
pub fn canonical(p: &str) -> String {
    std::fs::canonicalize(p).unwrap_or_else(|e| panic!("{p}: {e}")).to_string_lossy().into_owned()
}

/// sha256 of a file, by the system's sha256sum.
pub fn sha256sum(path: &str) -> String {
    let out = std::process::Command::new("sha256sum").arg(path).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().expect("digest").to_owned()
}

/// A config for tests: defaults with a short reorder window.
pub fn test_config() -> Config {
    let mut c = Config::default();
    c.pipeline.reorder_window = Duration::from_millis(100);
    c.output.stdout = false;
    c.health.enabled = false;
    c.control.enabled = false; // never /run/osprey on the test machine
    c.recorder.enabled = false; // never /var/lib/osprey either
    c
}

/// A random tag to mark a test's own processes.
pub fn marker() -> String {
    let mut b = [0u8; 8];
    getrandom(&mut b);
    format!("osprey-{}", b.iter().map(|x| format!("{x:02x}")).collect::<String>())
}

fn getrandom(buf: &mut [u8]) {
    use std::io::Read;
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(buf)).expect("/dev/urandom");
}

/// The `osprey` binary next to this test executable (target/<profile>/osprey); `cargo xtask
/// test` builds it first. OSPREY_BIN overrides (the VM's /init sets it: `cargo xtask test --vm`).
pub fn osprey_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("OSPREY_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join("osprey");
    assert!(bin.exists(), "{} is missing: build it with `cargo build -p agent --bin osprey`", bin.display());
    bin
}

/// IDs of the BPF programs process `pid` holds open (from /proc/PID/fdinfo).
pub fn prog_ids_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return Vec::new() };
    let mut ids: Vec<u32> = dir
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("prog_id:").and_then(|v| v.trim().parse().ok())))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// IDs of every BPF program loaded in the kernel right now.
pub fn loaded_program_ids() -> Vec<u32> {
    aya::programs::loaded_programs().filter_map(Result::ok).map(|p| p.id()).collect()
}

/// Waits (bounded) until none of `ids` is loaded any more; the kernel frees programs
/// asynchronously after their last fd and link close.
pub fn unloaded_within(ids: &[u32], limit: std::time::Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let loaded = loaded_program_ids();
        if !ids.iter().any(|id| loaded.contains(id)) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Names of the BPF programs loaded in the kernel right now (truncated to 15 bytes by the kernel).
pub fn loaded_program_names() -> Vec<String> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter_map(|p| p.name_as_str().map(str::to_owned))
        .collect()
}

/// (major, minor) of the running kernel's release.
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname().expect("uname").release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse().ok());
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The sum of every series of metric `name` in Prometheus text (`name{labels} value` lines).
pub fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric = series.split('{').next()?;
            (metric == name).then(|| value.trim().parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// A cgroup v2 directory of the test's own, removed (with its processes gone) on drop.
pub struct TestCgroup {
    pub path: std::path::PathBuf,
    /// Its path below the cgroup2 mount, `/osprey-…`.
    pub rel: String,
}

impl TestCgroup {
    pub fn new() -> Self {
        let root = agent::sensor::fs::cgroup2_mount().expect("cgroup v2 is mounted");
        let rel = format!("/{}", marker());
        let path = std::path::PathBuf::from(format!("{root}{rel}"));
        std::fs::create_dir(&path).unwrap();
        Self { path, rel }
    }

    /// Makes `cmd`'s process move itself into this cgroup before it execs.
    pub fn enter_on_exec(&self, cmd: &mut std::process::Command) {
        use std::os::unix::process::CommandExt;
        let procs = self.path.join("cgroup.procs");
        // SAFETY: between fork and exec only a write(2) to a path computed before the fork.
        unsafe {
            cmd.pre_exec(move || std::fs::write(&procs, b"0"));
        }
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.path);
    }
}
