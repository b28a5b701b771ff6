//! `osprey`: the agent binary.

use std::time::Duration;

use std::{io::Write, sync::Arc};

use agent::{
    cli::{Cli, Command, FleetCommand, LogFormat, RulesCommand, RunArgs},
    metrics::Metrics,
    config::{Config, DEFAULT_PATH},
    health::{self, Readiness},
    output::build_sinks,
    Agent,
};
use anyhow::{Context, Result};
use clap::Parser;
use tokio::sync::watch;
use tracing::info;

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OSPREY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn effective_config(cli: &Cli, args: &RunArgs) -> Result<Config> {
    let required = cli.config.as_os_str() != DEFAULT_PATH;
    let mut cfg = Config::load(&cli.config, required)?;
    args.apply(&mut cfg).map_err(anyhow::Error::msg)?;
    Ok(cfg)
}

async fn run(cfg: Config, duration: Option<Duration>) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Stop signals are caught from the start: one that arrives while the programs load stops
    // the agent in order once it is up, instead of killing it half-attached.
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    // The health endpoint comes first: /healthz answers and /readyz says 503 while loading.
    let ready = Readiness::new();
    let metrics = Arc::new(Metrics::new());
    let server = match cfg.health.enabled {
        true => Some(health::start(cfg.health.listen, metrics.clone(), ready.clone()).await.context("health endpoint")?),
        false => None,
    };
    let mut agent = Agent::start_with(cfg.clone(), metrics.clone()).context("starting the sensor (are you root?)")?;
    for p in agent.probes() {
        info!(program = p.program, hook = p.hook, attached = p.attached, reason = p.reason.as_deref().unwrap_or(""), "probe");
    }
    ready.set_programs_attached(true);
    ready.set_rules_loaded(true);
    let mut sinks = build_sinks(&cfg.output, metrics.clone()).context("outputs")?;
    if cfg.recorder.enabled {
        sinks.push(Box::new(agent::recorder::sink(&cfg.recorder, &metrics).context("recorder")?));
    }
    ready.set_outputs_flowing(true);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let limit = async {
            match duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => info!("SIGINT: stopping"),
            _ = term.recv() => info!("SIGTERM: stopping"),
            _ = limit => info!("duration reached: stopping"),
        }
        let _ = stop_tx.send(true);
    });
    let summary = agent.run(sinks, stop_rx).await?;
    info!(events = summary.events, late = summary.late, reader_stalls = summary.stalls, "stopped; detaching");
    if let Some(server) = server {
        server.shutdown().await;
    }
    Ok(())
}

/// Sends an operator request to the running agent and prints the answer.
/// Sends a response request; prints the outcome; exit code 1 unless it was done.
fn respond(args: &agent::cli::SocketArgs, line: &str) -> Result<()> {
    let req = agent::control::Request::parse(line).map_err(anyhow::Error::msg)?;
    let v = agent::control::ask(&args.socket, &req).context("is the agent running? (osprey run)")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}", serde_json::to_string_pretty(&v).unwrap_or_default())?;
    }
    match v.get("result").and_then(|r| r.as_str()) {
        None | Some("done") => Ok(()),
        Some(other) => {
            let reason = v.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            anyhow::bail!("{other}: {reason}")
        }
    }
}

fn control(
    args: &agent::cli::SocketArgs,
    req: &agent::control::Request,
    print: impl Fn(&serde_json::Value, &mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let v = agent::control::ask(&args.socket, req).context("is the agent running? (osprey run)")?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{v}")?;
    } else {
        print(&v, &mut out)?;
    }
    Ok(())
}

/// A recorder query: to the running agent if its control socket answers (unless `--direct`),
/// else straight from the store.
fn query(cli: &Cli, args: &agent::cli::StoreArgs, q: agent::recorder::query::Query) -> Result<serde_json::Value> {
    if !args.direct && args.store.is_none() && args.socket.exists() {
        let req = agent::control::Request::Query(Box::new(q.clone()));
        match agent::control::ask(&args.socket, &req) {
            Ok(v) => return Ok(v),
            Err(agent::control::ControlError::Protocol(e)) if !e.contains("recorder is disabled") => anyhow::bail!("{e}"),
            Err(e) => tracing::debug!(error = %e, "agent not answering; reading the store"),
        }
    }
    let path = match &args.store {
        Some(p) => p.clone(),
        None => {
            let required = cli.config.as_os_str() != DEFAULT_PATH;
            Config::load(&cli.config, required)?.recorder.path
        }
    };
    q.answer(&path).map_err(anyhow::Error::msg)
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match &cli.command {
        Command::Run(args) => {
            let cfg = effective_config(&cli, args)?;
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            rt.block_on(run(cfg, args.duration))
        }
        Command::Config(args) => {
            let cfg = effective_config(&cli, args)?;
            print!("{}", serde_yaml_ng::to_string(&cfg)?);
            Ok(())
        }
        Command::Ps(s) => control(s, &agent::control::Request::Ps, agent::control::print_ps),
        Command::Tree { pid, socket } => control(socket, &agent::control::Request::Tree(*pid), agent::control::print_tree),
        Command::Status(s) => control(s, &agent::control::Request::Status, |v, out| {
            writeln!(out, "{}", serde_json::to_string_pretty(v).unwrap_or_default())
        }),
        Command::Kill { target, tree, socket } => respond(socket, &format!("kill {}{target}", if *tree { "--tree " } else { "" })),
        Command::Suspend { target, socket } => respond(socket, &format!("suspend {target}")),
        Command::Resume { target, socket } => respond(socket, &format!("resume {target}")),
        Command::Isolate { cgroup, socket } => respond(socket, &format!("isolate {cgroup}")),
        Command::Release { cgroup, socket } => respond(socket, &format!("release {cgroup}")),
        Command::Block(b) | Command::Unblock(b) => {
            let verb = if matches!(cli.command, Command::Block(_)) { "block" } else { "unblock" };
            let what = match (&b.path, &b.sha256) {
                (Some(p), _) => format!("path {}", p.display()),
                (None, Some(h)) => format!("sha256 {h}"),
                (None, None) => unreachable!("clap requires one"),
            };
            respond(&b.socket, &format!("{verb} {what}"))
        }
        Command::Quarantine { path, socket } => {
            let abs = std::path::absolute(path).with_context(|| format!("{}", path.display()))?;
            respond(socket, &format!("quarantine {}", abs.display()))
        }
        Command::Restore { id, socket } => respond(socket, &format!("restore {id}")),
        Command::Responses(s) => respond(s, "responses"),
        Command::Hunt(h) => {
            let hunt = h.hunt().map_err(anyhow::Error::msg)?;
            let answer: agent::recorder::hunt::Answer = match h.fleet.fleet() {
                Some(fleet) => agent::fleet::hunt::run(&fleet, &hunt)?,
                None => {
                    let v = query(&cli, &h.store, agent::recorder::query::Query::Hunt(Box::new(hunt)))?;
                    serde_json::from_value(v).context("the agent's answer")?
                }
            };
            let mut out = std::io::stdout().lock();
            if h.store.json {
                writeln!(out, "{}", serde_json::to_string(&answer)?)?;
            } else if h.fleet.fleet.is_some() {
                agent::recorder::hunt::print_by_host(&answer, &mut out)?;
            } else {
                agent::recorder::hunt::print_table(&answer, &mut out)?;
            }
            Ok(())
        }
        Command::Fleet(FleetCommand::Init { target, ttl_days }) => {
            let layout = agent::fleet::schema::Layout {
                cluster: target.cluster.clone().map(|c| (c, target.shard.clone())),
                ttl_days: *ttl_days,
            };
            let report = agent::fleet::schema::init(&target.fleet(), &layout)?;
            for l in report.lines {
                println!("{l}");
            }
            Ok(())
        }
        Command::Fleet(FleetCommand::Load { target, files }) => {
            let fleet = target.fleet();
            fleet.validate()?;
            for f in files {
                let text = std::fs::read(f).with_context(|| format!("{}", f.display()))?;
                let n = fleet.load(&text).with_context(|| format!("{}", f.display()))?;
                println!("{}: {n} event(s) loaded", f.display());
            }
            Ok(())
        }
        Command::Fleet(FleetCommand::Prune { target, days }) => {
            let dropped = agent::fleet::schema::prune(&target.fleet(), &target.shard, target.cluster.is_some(), *days)?;
            for d in &dropped {
                println!("dropped {d}");
            }
            println!("{} partition(s) dropped", dropped.len());
            Ok(())
        }
        Command::Story(a) => {
            use agent::recorder::story::{Story, Subject};
            let subject = match (&a.alert_id, &a.entity) {
                (Some(id), _) => Subject::Alert(id.clone()),
                (None, Some(e)) => Subject::Entity(e.clone()),
                (None, None) => unreachable!("clap requires one"),
            };
            let story: Story = match a.fleet.fleet() {
                Some(fleet) => {
                    fleet.validate()?;
                    let history = agent::fleet::history::FleetHistory::new(fleet).with_window(a.window.as_nanos() as u64);
                    Story::build(&history, &subject)?
                }
                None => {
                    let v = query(&cli, &a.store, agent::recorder::query::Query::Story(subject))?;
                    serde_json::from_value(v).context("the agent's answer")?
                }
            };
            if let Some(path) = &a.html {
                std::fs::write(path, agent::recorder::html::render(&story)).with_context(|| format!("{}", path.display()))?;
                eprintln!("story written to {}", path.display());
            }
            let mut out = std::io::stdout().lock();
            if a.store.json {
                writeln!(out, "{}", serde_json::to_string(&story)?)?;
            } else {
                story.print(&mut out)?;
            }
            Ok(())
        }
        Command::Rules(RulesCommand::Check { paths }) => {
            let ok = agent::rules::check(paths, &mut std::io::stdout().lock())?;
            if !ok {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Rules(RulesCommand::Test { events, rules }) => {
            let n = agent::rules::test_events(rules, events, &mut std::io::stdout().lock())?;
            eprintln!("{n} alerts");
            Ok(())
        }
    }
}
