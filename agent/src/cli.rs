//! Command line (clap derive). Flags override the config file.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::config::{parse_size, Config, DEFAULT_PATH};

#[derive(Debug, Parser)]
#[command(name = "osprey", version, about = "eBPF endpoint detection and response for Linux")]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, default_value = DEFAULT_PATH)]
    pub config: PathBuf,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: attach the kernel programs and write ECS JSON events to the outputs.
    Run(RunArgs),
    /// Print the effective configuration (file + flags) as YAML.
    Config(RunArgs),
    /// Validate and replay rules.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// The running agent's processes (over its control socket).
    Ps(SocketArgs),
    /// The running agent's process tree, from PID or from every root.
    Tree {
        pid: Option<u32>,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// The running agent's hooks (attached, or why not), counters and table.
    Status(SocketArgs),
    /// Kill a process (PID or entity:ID), or with --tree it and all its descendants (stopped
    /// first so none can respawn).
    Kill {
        target: String,
        #[arg(long)]
        tree: bool,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Stop a process and its descendants (SIGSTOP) for inspection.
    Suspend {
        target: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Continue a suspended process tree (SIGCONT).
    Resume {
        target: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Cut a cgroup (path below the cgroup v2 mount) or `host` off the network, but for
    /// response.isolation_allow.
    Isolate {
        cgroup: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Undo `osprey isolate`.
    Release {
        cgroup: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Block an executable in the kernel: killed at exec before it runs.
    Block(BlockArgs),
    /// Remove an executable from the block list.
    Unblock(BlockArgs),
    /// Move a file into the quarantine directory.
    Quarantine {
        path: PathBuf,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// Put a quarantined file back exactly where and as it was.
    Restore {
        id: String,
        #[command(flatten)]
        socket: SocketArgs,
    },
    /// What is isolated, blocked and quarantined, and the response mode.
    Responses(SocketArgs),
    /// Search the recorder: events by hash, address, domain, path, command line, user, time;
    /// or sweep history with IoC lists (`--ioc`) or Sigma rules (`--rules`).
    Hunt(Box<HuntArgs>),
    /// The attack story of an alert (or a process): root cause, process tree, what each did.
    Story(StoryArgs),
}

/// Where recorder queries go: the running agent's control socket, else the store itself.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The recorder's store (default: `recorder.path` of the config).
    #[arg(long)]
    pub store: Option<PathBuf>,
    /// Read the store directly even when the agent is running.
    #[arg(long)]
    pub direct: bool,
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print JSON instead of a table / tree.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HuntArgs {
    /// Processes whose executable has this sha256.
    #[arg(long)]
    pub sha256: Option<String>,
    /// Events with this address at either end (or in this CIDR block).
    #[arg(long, conflicts_with = "cidr")]
    pub ip: Option<String>,
    #[arg(long)]
    pub cidr: Option<String>,
    #[arg(long)]
    pub port: Option<u16>,
    /// A domain, or a glob like `*.example.com`.
    #[arg(long)]
    pub domain: Option<String>,
    /// A glob over file paths (`/etc/cron.d/*`).
    #[arg(long)]
    pub path: Option<String>,
    /// Processes whose command line contains this.
    #[arg(long)]
    pub cmdline: Option<String>,
    /// Processes of this user (name).
    #[arg(long)]
    pub user: Option<String>,
    /// A glob over executable paths.
    #[arg(long)]
    pub exe: Option<String>,
    /// Only this host (host.id or hostname as recorded).
    #[arg(long)]
    pub host: Option<String>,
    /// Alerts only (with the other filters: alerts on those processes).
    #[arg(long)]
    pub alerts: bool,
    /// From this long ago (`24h`) or this RFC 3339 time.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 1000)]
    pub limit: usize,
    /// Sweep history with this IoC list (repeatable).
    #[arg(long)]
    pub ioc: Vec<PathBuf>,
    /// Run these Sigma rules (files or directories) over history: retroactive detection.
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

impl HuntArgs {
    pub fn hunt(&self) -> Result<crate::recorder::hunt::Hunt, String> {
        use crate::recorder::hunt::parse_time;
        let h = crate::recorder::hunt::Hunt {
            sha256: self.sha256.clone(),
            ip: self.ip.clone().or(self.cidr.clone()),
            port: self.port,
            domain: self.domain.clone(),
            path: self.path.clone(),
            cmdline: self.cmdline.clone(),
            user: self.user.clone(),
            exe: self.exe.clone(),
            host: self.host.clone(),
            alerts: self.alerts,
            since_ns: self.since.as_deref().map(parse_time).transpose().map_err(|e| format!("--since: {e}"))?,
            until_ns: self.until.as_deref().map(parse_time).transpose().map_err(|e| format!("--until: {e}"))?,
            limit: self.limit,
            rules: self.ioc.iter().chain(&self.rules).cloned().collect(),
        };
        h.validate()?;
        Ok(h)
    }
}

#[derive(Debug, Args)]
pub struct StoryArgs {
    /// The alert's `event.id`.
    #[arg(required_unless_present = "entity", conflicts_with = "entity")]
    pub alert_id: Option<String>,
    /// A process's `process.entity_id` instead of an alert.
    #[arg(long)]
    pub entity: Option<String>,
    /// Also write the story as a self-contained HTML graph to this file.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, Args)]
pub struct BlockArgs {
    /// By exact path (resolved when the file exists).
    #[arg(long, conflicts_with = "sha256", required_unless_present = "sha256")]
    pub path: Option<PathBuf>,
    /// By content: 64 hex digits.
    #[arg(long)]
    pub sha256: Option<String>,
    #[command(flatten)]
    pub socket: SocketArgs,
}

#[derive(Debug, Args)]
pub struct SocketArgs {
    /// The agent's control socket.
    #[arg(long, default_value = crate::control::DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// Print the raw JSON answer.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files and IoC lists: one line per problem (file:line:column: reason);
    /// exit code 1 when any file is broken.
    Check {
        /// Rule files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Replay recorded ECS JSON events (one per line) through the rules; prints one JSON line per
    /// alert. No kernel needed.
    Test {
        /// The recorded events.
        #[arg(long)]
        events: PathBuf,
        /// Rule files or directories.
        #[arg(long = "rules", required = true)]
        rules: Vec<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Stop after this long (e.g. 10s, 2m); runs until SIGINT/SIGTERM otherwise.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Per-CPU ring buffer size (e.g. 8MiB).
    #[arg(long, value_parser = parse_size_u32)]
    pub ringbuf_size: Option<u32>,
    /// Report thread clone/exit too.
    #[arg(long)]
    pub threads: bool,
    /// Reorder window for records from different CPUs (e.g. 50ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub reorder_window: Option<Duration>,
    /// Do not write events to standard output.
    #[arg(long)]
    pub no_stdout: bool,
    /// Rule directory or file (repeatable); replaces `rules.paths` from the config file.
    #[arg(long = "rules")]
    pub rules: Vec<PathBuf>,
    /// Path of the control socket (osprey ps/tree/status).
    #[arg(long)]
    pub control_socket: Option<PathBuf>,
    /// Address of the /metrics, /healthz and /readyz endpoint (port 0: any free port).
    #[arg(long)]
    pub health_listen: Option<std::net::SocketAddr>,
    /// Do not serve the health endpoint.
    #[arg(long)]
    pub no_health: bool,
    /// Benchmark floor: attach empty programs on the same hooks instead of Osprey's.
    #[arg(long, hide = true)]
    pub bare_hooks: bool,
    /// Record every event into this store (`recorder.path`).
    #[arg(long, conflicts_with = "no_recorder")]
    pub recorder: Option<PathBuf>,
    /// Do not record events (`recorder.enabled: false`).
    #[arg(long)]
    pub no_recorder: bool,
}

fn parse_size_u32(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    u32::try_from(n).map_err(|_| format!("{s} is more than 4GiB"))
}

impl RunArgs {
    /// Applies the flags on top of the file's settings and re-validates.
    pub fn apply(&self, cfg: &mut Config) -> Result<(), String> {
        if let Some(n) = self.ringbuf_size {
            cfg.sensor.ringbuf_size = n;
        }
        if self.threads {
            cfg.sensor.threads = true;
        }
        if let Some(w) = self.reorder_window {
            cfg.pipeline.reorder_window = w;
        }
        if self.no_stdout {
            cfg.output.stdout = false;
        }
        if let Some(addr) = self.health_listen {
            cfg.health.listen = addr;
        }
        if self.no_health {
            cfg.health.enabled = false;
        }
        if !self.rules.is_empty() {
            cfg.rules.paths = self.rules.clone();
        }
        if let Some(p) = &self.control_socket {
            cfg.control.socket = p.clone();
        }
        if self.bare_hooks {
            cfg.sensor.bare_hooks = true;
        }
        if let Some(p) = &self.recorder {
            cfg.recorder.enabled = true;
            cfg.recorder.path = p.clone();
        }
        if self.no_recorder {
            cfg.recorder.enabled = false;
        }
        cfg.validate().map_err(|e| format!("command line: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_and_validate() {
        let cli = Cli::try_parse_from(["osprey", "run", "--duration", "10s", "--ringbuf-size", "1MiB"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        assert_eq!(args.duration, Some(Duration::from_secs(10)));
        let mut cfg = Config::default();
        args.apply(&mut cfg).unwrap();
        assert_eq!(cfg.sensor.ringbuf_size, 1 << 20);

        let cli = Cli::try_parse_from(["osprey", "run", "--ringbuf-size", "12KiB"]).unwrap();
        let Command::Run(args) = cli.command else { panic!() };
        assert!(args.apply(&mut Config::default()).unwrap_err().contains("power of two"));
        assert!(Cli::try_parse_from(["osprey", "run", "--duration", "soon"]).is_err());
    }
}
