//! The watchdog: finds the agent's links that another process detached (a cgroup link whose
//! cgroup is gone, a link missing from the kernel's list) and attaches the program again; and
//! the canary: the agent triggers hooks itself and checks each program's run count moved.

use std::{
    collections::BTreeMap,
    os::fd::{AsFd, OwnedFd},
};

use agent_ebpf::{Hook, Program, PROGRAMS};
use aya::programs::{cgroup_skb::CgroupSkbAttachType, BtfTracePoint, CgroupAttachMode, CgroupSkb, CgroupSockAddr, TracePoint};
use serde::Serialize;
use tracing::{info, warn};

use super::kernel::{self, LinkState};
use crate::sensor::{error_chain, fs, Sensor};

pub struct Prog {
    pub name: String,
    pub id: u32,
    pub fd: OwnedFd,
    /// Hooks the sensor attached it to.
    pub hooks: Vec<&'static Program>,
}

pub struct Watchdog {
    pub programs: Vec<Prog>,
    /// Check at the next tick even if nothing looks wrong (a tamper record named a link).
    pub recheck: bool,
    last: Vec<LinkState>,
}

/// A program found detached, and what the watchdog did.
#[derive(Debug, Clone)]
pub struct Reattach {
    pub program: String,
    pub hook: &'static str,
    pub detached_links: Vec<u32>,
    pub result: Result<(), String>,
}

/// One program's state for the heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramRun {
    pub name: String,
    pub id: u32,
    pub run_count: u64,
    pub links: usize,
}

impl Watchdog {
    pub fn new(sensor: &Sensor) -> Self {
        let attached: Vec<(&str, &str)> = sensor.probes().iter().filter(|p| p.attached).map(|p| (p.program, p.hook)).collect();
        let programs = kernel::programs(sensor.ebpf())
            .into_iter()
            .map(|(name, id, fd)| {
                let hooks = PROGRAMS
                    .iter()
                    .filter(|p| p.name == name && attached.iter().any(|(n, h)| *n == p.name && *h == hook_name(p)))
                    .collect();
                Prog { name, id, fd, hooks }
            })
            .collect();
        let mut w = Self { programs, recheck: false, last: Vec::new() };
        w.last = kernel::links_of(&w.ids());
        w
    }

    fn ids(&self) -> Vec<u32> {
        self.programs.iter().map(|p| p.id).collect()
    }

    pub fn link_ids(&self) -> Vec<u32> {
        self.last.iter().map(|l| l.id).collect()
    }

    /// Finds programs with fewer live links than hooks and attaches them again (programs
    /// with one hook; a program on several hooks is reported, since the kernel does not say
    /// which of its tracepoint links went).
    pub fn check(&mut self, sensor: &mut Sensor) -> Vec<Reattach> {
        self.recheck = false;
        let links = kernel::links_of(&self.ids());
        let mut out = Vec::new();
        for p in &self.programs {
            if p.hooks.is_empty() {
                continue;
            }
            let live = links.iter().filter(|l| l.prog_id == p.id && l.live()).count();
            if live >= p.hooks.len() {
                continue;
            }
            let detached: Vec<u32> = links
                .iter()
                .filter(|l| l.prog_id == p.id && !l.live())
                .map(|l| l.id)
                .chain(self.last.iter().filter(|l| l.prog_id == p.id && !links.iter().any(|n| n.id == l.id)).map(|l| l.id))
                .collect();
            if p.hooks.len() != 1 {
                out.push(Reattach {
                    program: p.name.clone(),
                    hook: hook_name(p.hooks[0]),
                    detached_links: detached,
                    result: Err(format!("{} of {} links left; the kernel does not say which hook lost its link", live, p.hooks.len())),
                });
                continue;
            }
            let hook = p.hooks[0];
            let result = attach_again(sensor, hook);
            match &result {
                Ok(()) => info!(program = %p.name, hook = hook_name(hook), ?detached, "re-attached a detached program"),
                Err(e) => warn!(program = %p.name, error = %e, "could not re-attach a detached program"),
            }
            out.push(Reattach { program: p.name.clone(), hook: hook_name(hook), detached_links: detached, result });
        }
        self.last = if out.is_empty() { links } else { kernel::links_of(&self.ids()) };
        out
    }

    /// Run counts (BPF statistics must be on) and live links per program.
    pub fn runs(&self) -> Vec<ProgramRun> {
        self.programs
            .iter()
            .map(|p| ProgramRun {
                name: p.name.clone(),
                id: p.id,
                run_count: kernel::prog_stats(p.fd.as_fd()).map_or(0, |(_, n, _)| n),
                links: self.last.iter().filter(|l| l.prog_id == p.id && l.live()).count(),
            })
            .collect()
    }

    /// Fires the canary and returns the programs it should have run that did not run.
    pub fn canary(&self) -> Vec<String> {
        let before: BTreeMap<String, u64> = self.runs().into_iter().map(|r| (r.name, r.run_count)).collect();
        fire_canary();
        let after = self.runs();
        after
            .into_iter()
            .filter(|r| CANARY_PROGRAMS.contains(&r.name.as_str()) && before.get(&r.name).is_some_and(|b| *b == r.run_count))
            .filter(|r| self.programs.iter().any(|p| p.name == r.name && !p.hooks.is_empty()))
            .map(|r| r.name)
            .collect()
    }
}

/// Programs whose hooks the canary runs for sure.
pub const CANARY_PROGRAMS: &[&str] =
    &["proc_fork", "proc_exec", "proc_exit", "prot_kill", "net_udp_send4", "net_udp_recv4", "net_dns_egress", "net_dns_ingress"];

/// A fork + exec + exit (/bin/true), a kill(self, 0), a UDP datagram over loopback to
/// ourselves and back: each hook of CANARY_PROGRAMS fires at least once, synchronously.
pub fn fire_canary() {
    if let Ok(mut c) = std::process::Command::new("/bin/true").spawn() {
        let _ = c.wait();
    }
    // SAFETY: signal 0 to ourselves only checks permissions.
    unsafe { libc::kill(libc::getpid(), 0) };
    if let (Ok(rx), Ok(tx)) = (std::net::UdpSocket::bind("127.0.0.1:0"), std::net::UdpSocket::bind("127.0.0.1:0")) {
        if let Ok(addr) = rx.local_addr() {
            let _ = tx.send_to(b"osprey-canary", addr);
            let _ = rx.set_read_timeout(Some(std::time::Duration::from_millis(100)));
            let mut buf = [0u8; 32];
            let _ = rx.recv_from(&mut buf);
        }
    }
}

fn hook_name(p: &Program) -> &'static str {
    match p.hook {
        Hook::TpBtf(tp) | Hook::TracePoint(_, tp) => tp,
        Hook::CgroupSkb("ingress") => "cgroup_skb/ingress",
        Hook::CgroupSkb(_) => "cgroup_skb/egress",
        Hook::CgroupSockAddr(kind) => kind,
    }
}

/// Attaches an already loaded program of the sensor to `hook` once more.
fn attach_again(sensor: &mut Sensor, hook: &'static Program) -> Result<(), String> {
    let prog = sensor.ebpf_mut().program_mut(hook.name).ok_or_else(|| format!("no program {}", hook.name))?;
    let cgroup = || -> Result<std::fs::File, String> {
        let m = fs::cgroup2_mount().ok_or("no cgroup v2 mount")?;
        std::fs::File::open(&m).map_err(|e| format!("open {m}: {e}"))
    };
    let e = |e: aya::programs::ProgramError| error_chain(&e);
    match hook.hook {
        Hook::TpBtf(_) => <&mut BtfTracePoint>::try_from(prog).map_err(e)?.attach().map(drop).map_err(e),
        Hook::TracePoint(cat, tp) => <&mut TracePoint>::try_from(prog).map_err(e)?.attach(cat, tp).map(drop).map_err(e),
        Hook::CgroupSkb(dir) => {
            let at = if dir == "ingress" { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
            <&mut CgroupSkb>::try_from(prog).map_err(e)?.attach(cgroup()?, at, CgroupAttachMode::Single).map(drop).map_err(e)
        }
        Hook::CgroupSockAddr(_) => {
            <&mut CgroupSockAddr>::try_from(prog).map_err(e)?.attach(cgroup()?, CgroupAttachMode::Single).map(drop).map_err(e)
        }
    }
}
