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
    /// The fleet store in ClickHouse: create or migrate its schema, prune old days.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

/// A fleet store (ClickHouse) to ask instead of this node's recorder.
#[derive(Debug, Args, Clone, Default)]
pub struct FleetArgs {
    /// ClickHouse's HTTP interface, e.g. http://clickhouse:8123: ask the fleet store (every
    /// host) instead of this node's recorder.
    #[arg(long, value_name = "URL")]
    pub fleet: Option<String>,
    #[arg(long, default_value = crate::fleet::DEFAULT_DATABASE)]
    pub fleet_database: String,
    /// The table queried (the Distributed table on a cluster).
    #[arg(long, default_value = crate::fleet::DEFAULT_TABLE)]
    pub fleet_table: String,
    /// ClickHouse user; the password is read from OSPREY_FLEET_PASSWORD.
    #[arg(long)]
    pub fleet_user: Option<String>,
}

impl FleetArgs {
    /// The fleet store, when `--fleet` is given.
    pub fn fleet(&self) -> Option<crate::fleet::Fleet> {
        let url = self.fleet.as_deref()?;
        let mut f = crate::fleet::Fleet::new(url);
        f.database.clone_from(&self.fleet_database);
        f.table.clone_from(&self.fleet_table);
        f.user.clone_from(&self.fleet_user);
        f.password = std::env::var("OSPREY_FLEET_PASSWORD").ok();
        Some(f)
    }
}

/// Which server(s) `osprey fleet` works on.
#[derive(Debug, Args)]
pub struct FleetTarget {
    /// ClickHouse's HTTP interface (a single server).
    #[arg(long, required_unless_present = "shard")]
    pub url: Option<String>,
    #[arg(long, default_value = crate::fleet::DEFAULT_DATABASE)]
    pub database: String,
    /// The table the sinks write to and hunts read (the Distributed table on a cluster; the
    /// shards' local tables are TABLE_local).
    #[arg(long, default_value = crate::fleet::DEFAULT_TABLE)]
    pub table: String,
    /// ClickHouse user; the password is read from OSPREY_FLEET_PASSWORD.
    #[arg(long)]
    pub user: Option<String>,
    /// A cluster of the servers' remote_servers configuration: local tables on every shard and
    /// a Distributed table over them.
    #[arg(long, requires = "shard")]
    pub cluster: Option<String>,
    /// The HTTP interface of each shard of the cluster (repeat).
    #[arg(long)]
    pub shard: Vec<String>,
}

impl FleetTarget {
    pub fn fleet(&self) -> crate::fleet::Fleet {
        let url = self.url.clone().or_else(|| self.shard.first().cloned()).unwrap_or_default();
        let mut f = crate::fleet::Fleet::new(&url);
        f.database.clone_from(&self.database);
        f.table.clone_from(&self.table);
        f.user.clone_from(&self.user);
        f.password = std::env::var("OSPREY_FLEET_PASSWORD").ok();
        f
    }
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create (or migrate) the database and tables; safe to run again.
    Init {
        #[command(flatten)]
        target: FleetTarget,
        /// Table TTL in days (ClickHouse 19.6 and later; older servers: use `osprey fleet prune`).
        #[arg(long)]
        ttl_days: Option<u32>,
    },
    /// Load ECS JSON lines (another host's export, a recorded fixture) into the fleet table.
    Load {
        #[command(flatten)]
        target: FleetTarget,
        /// Files of ECS JSON documents, one per line.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Drop the days (partitions) older than --days.
    Prune {
        #[command(flatten)]
        target: FleetTarget,
        #[arg(long)]
        days: u32,
    },
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
    #[command(flatten)]
    pub fleet: FleetArgs,
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
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Fleet stories: how far apart the two ends of one connection may be recorded.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub window: Duration,
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
