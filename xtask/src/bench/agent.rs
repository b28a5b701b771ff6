//! The agent under test: `osprey run` as a child process, its /metrics, its CPU time, peak RSS
//! and the kernel-side statistics of the BPF programs it holds.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::sys;

/// How the workloads run: without an agent, with empty programs on Osprey's hooks, with Osprey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    None,
    Bare,
    Full,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::None, Mode::Bare, Mode::Full];

    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Bare => "bare",
            Mode::Full => "full",
        }
    }
}

/// Counters scraped from /metrics (summed over labels).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub events: f64,
    pub lost: f64,
    pub filtered: f64,
    pub decode_errors: f64,
    /// Alerts raised (osprey_alerts_total).
    pub alerts: f64,
    /// osprey_events_total by its `type` label.
    pub events_by_type: Vec<(String, f64)>,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let mut s = Scrape::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.trim().parse::<f64>() else { continue };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            match name {
                "osprey_events_total" => {
                    s.events += value;
                    let kind = label(labels, "type").unwrap_or("?").to_string();
                    match s.events_by_type.iter_mut().find(|(k, _)| *k == kind) {
                        Some((_, v)) => *v += value,
                        None => s.events_by_type.push((kind, value)),
                    }
                }
                "osprey_events_lost_total" => s.lost += value,
                "osprey_events_filtered_total" => s.filtered += value,
                "osprey_decode_errors_total" => s.decode_errors += value,
                "osprey_alerts_total" => s.alerts += value,
                _ => {}
            }
        }
        s
    }

    /// What grew from `before` to `self`.
    pub fn since(&self, before: &Scrape) -> Scrape {
        Scrape {
            events: self.events - before.events,
            lost: self.lost - before.lost,
            filtered: self.filtered - before.filtered,
            decode_errors: self.decode_errors - before.decode_errors,
            alerts: self.alerts - before.alerts,
            events_by_type: self
                .events_by_type
                .iter()
                .map(|(k, v)| {
                    let b = before.events_by_type.iter().find(|(bk, _)| bk == k).map_or(0.0, |(_, b)| *b);
                    (k.clone(), v - b)
                })
                .filter(|(_, v)| *v > 0.0)
                .collect(),
        }
    }
}

/// `key="value"` in a Prometheus label set.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    Some(&rest[..rest.find('"')?])
}

/// One hook as the agent reported it at start (its `probe` log lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub program: String,
    pub hook: String,
    pub attached: bool,
}

/// Writes the agent's configuration: the defaults plus the project's rule pack, unless this
/// build of the agent does not accept that (then the bare defaults). Returns what it chose.
pub fn write_config(bin: &Path, path: &Path, rules: &Path) -> Result<&'static str, String> {
    let valid = |text: &str| -> Result<bool, String> {
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        let out = Command::new(bin).arg("config").arg("--config").arg(path).output().map_err(|e| format!("{}: {e}", bin.display()))?;
        Ok(out.status.success())
    };
    // The recorder (on by default) writes beside the config, not into /var/lib/osprey.
    let store = path.with_file_name("recorder.db");
    let _ = std::fs::remove_file(&store);
    let recorder = format!("recorder:\n  path: {}\n", store.display());
    if rules.is_dir() && valid(&format!("rules:\n  paths:\n    - {}\n{recorder}", rules.display()))? {
        return Ok("defaults + the rules/ pack + the recorder");
    }
    if rules.is_dir() && valid(&format!("rules:\n  paths:\n    - {}\n", rules.display()))? {
        return Ok("defaults + the rules/ pack");
    }
    if valid("{}\n")? {
        return Ok("defaults");
    }
    Err(format!("{} rejects even an empty configuration", bin.display()))
}

pub struct Agent {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub mode: Mode,
    log: PathBuf,
}

impl Agent {
    /// Starts `osprey run` with `config` (plus `--bare-hooks` for the floor),
    /// its events on stdout to /dev/null, and waits until it reports ready.
    pub fn start(bin: &Path, config: &Path, mode: Mode, log: &Path, ringbuf: Option<&str>) -> Result<Agent, String> {
        assert!(mode != Mode::None);
        let port = sys::free_port().map_err(|e| format!("free port: {e}"))?;
        let mut cmd = Command::new(bin);
        cmd.arg("run").arg("--config").arg(config);
        cmd.args(["--health-listen", &format!("127.0.0.1:{port}")]);
        if mode == Mode::Bare {
            cmd.arg("--bare-hooks");
        }
        if let Some(size) = ringbuf {
            cmd.args(["--ringbuf-size", size]);
        }
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        cmd.env("NO_COLOR", "1").stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", bin.display()))?;
        let mut agent = Agent { pid: child.id(), child, port, mode, log: log.to_path_buf() };
        agent.wait_ready(Duration::from_secs(90))?;
        Ok(agent)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the agent exited ({status}) before it was ready:\n{}", self.log_tail()));
            }
            if let Ok((200, _)) = sys::http_get(self.port, "/readyz", Duration::from_secs(2)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the agent was not ready after {timeout:?}:\n{}", self.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fails when the agent is no longer running.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("the agent ({}) exited during the bench ({status}):\n{}", self.mode.name(), self.log_tail())),
            Err(e) => Err(format!("waiting for the agent: {e}")),
        }
    }

    pub fn scrape(&self) -> Result<Scrape, String> {
        match sys::http_get(self.port, "/metrics", Duration::from_secs(5)) {
            Ok((200, body)) => Ok(Scrape::parse(&body)),
            Ok((status, _)) => Err(format!("/metrics answered {status}")),
            Err(e) => Err(format!("/metrics: {e}")),
        }
    }

    /// Waits until the agent has caught up after a workload: at least `min` (one loss poll,
    /// 1 s, so the loss counters are current), then until the agent is nearly idle (under 20% of
    /// a core over half a second: its backlog is processed), at most `max`. Returns how long
    /// the agent needed to become idle, or None when it still was not at `max`.
    pub fn settle(&self, min: Duration, max: Duration) -> Option<Duration> {
        let start = Instant::now();
        std::thread::sleep(min);
        let window = Duration::from_millis(500);
        let idle_ticks = (sys::clk_tck() as f64 * window.as_secs_f64() * 0.2) as u64;
        while start.elapsed() < max {
            let before = self.cpu_ticks();
            std::thread::sleep(window);
            if self.cpu_ticks().saturating_sub(before) <= idle_ticks {
                return Some(start.elapsed().saturating_sub(window));
            }
        }
        None
    }

    pub fn cpu_ticks(&self) -> u64 {
        sys::cpu_ticks(self.pid).unwrap_or(0)
    }

    /// The hooks the agent attached, from its log.
    pub fn probes(&self) -> Vec<Probe> {
        parse_probes(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// SIGTERM, then waits for the agent to detach and exit (SIGKILL after 60 s).
    pub fn stop(mut self) -> Result<(), String> {
        sys::signal(self.pid, sys::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("the agent exited with {status}:\n{}", self.log_tail())),
                Ok(None) if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err("the agent did not stop within 60 s of SIGTERM".into());
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(format!("waiting for the agent: {e}")),
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            sys::signal(self.pid, sys::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `probe program="x" hook="y" attached=true` lines of the agent's text log.
fn parse_probes(log: &str) -> Vec<Probe> {
    let field = |line: &str, key: &str| -> Option<String> {
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        let rest = &line[at..];
        let value = match rest.strip_prefix('"') {
            Some(quoted) => &quoted[..quoted.find('"')?],
            None => rest.split_whitespace().next()?,
        };
        Some(value.to_string())
    };
    log.lines()
        .filter(|l| l.contains(" probe "))
        .filter_map(|l| {
            let l = strip_ansi(l);
            Some(Probe { program: field(&l, "program")?, hook: field(&l, "hook")?, attached: field(&l, "attached")? == "true" })
        })
        .collect()
}

/// Text without ANSI colour escapes (tracing colours its log when it thinks it may).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_the_counters_it_reports() {
        let text = "# HELP osprey_events_total x\n\
                    osprey_events_total{type=\"exec\"} 10\n\
                    osprey_events_total{type=\"file\"} 5\n\
                    osprey_events_lost_total{cpu=\"0\",type=\"exec\"} 2\n\
                    osprey_events_lost_total{cpu=\"1\",type=\"exec\"} 1\n\
                    osprey_events_filtered_total{type=\"file\"} 7\n\
                    process_resident_memory_bytes 1e6\n";
        let s = Scrape::parse(text);
        assert_eq!((s.events, s.lost, s.filtered), (15.0, 3.0, 7.0));
        assert_eq!(s.events_by_type, [("exec".to_string(), 10.0), ("file".to_string(), 5.0)]);
        let mut later = s.clone();
        later.events_by_type[0].1 = 12.0;
        later.events = 17.0;
        assert_eq!(later.since(&s).events_by_type, [("exec".to_string(), 2.0)]);
    }

    #[test]
    fn reads_probe_lines() {
        let log = "2026-01-01T00:00:00Z  INFO osprey: probe program=\"file_open_x\" hook=\"sys_exit_open\" attached=true reason=\"\"\n\
                   2026-01-01T00:00:00Z  INFO osprey: probe program=proc_exec hook=sched_process_exec attached=true reason=\n\
                   2026-01-01T00:00:00Z  INFO osprey: sensor attached\n";
        let p = parse_probes(log);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].program.as_str(), p[0].hook.as_str(), p[0].attached), ("file_open_x", "sys_exit_open", true));
        assert_eq!(p[1].hook, "sched_process_exec");
    }
}
