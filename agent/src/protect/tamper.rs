//! Records that aim at the agent, turned into tamper alerts: the built-in rules of
//! self-protection (`rule.id` `osprey-tamper-*`, `rule.ruleset` `osprey`).

use std::{path::PathBuf, sync::Arc};

use agent_common::{osprey_file_op as fo, osprey_system_op as so, osprey_tamper_flags as tf};

use crate::{
    decode::{Record, System},
    detect::{alert::threat_from_tags, Level, RuleMeta},
};

/// bpf() commands (uapi/linux/bpf.h) the kernel side reports.
pub const BPF_MAP_UPDATE_ELEM: u64 = 2;
pub const BPF_MAP_DELETE_ELEM: u64 = 3;
pub const BPF_OBJ_GET: u64 = 7;
pub const BPF_PROG_DETACH: u64 = 9;
pub const BPF_PROG_GET_FD_BY_ID: u64 = 13;
pub const BPF_MAP_GET_FD_BY_ID: u64 = 14;
pub const BPF_RAW_TRACEPOINT_OPEN: u64 = 17;
pub const BPF_LINK_UPDATE: u64 = 29;
pub const BPF_LINK_GET_FD_BY_ID: u64 = 30;
pub const BPF_LINK_DETACH: u64 = 34;

pub fn bpf_cmd_name(cmd: u64) -> &'static str {
    match cmd {
        BPF_MAP_UPDATE_ELEM => "BPF_MAP_UPDATE_ELEM",
        BPF_MAP_DELETE_ELEM => "BPF_MAP_DELETE_ELEM",
        BPF_OBJ_GET => "BPF_OBJ_GET",
        8 => "BPF_PROG_ATTACH",
        BPF_PROG_DETACH => "BPF_PROG_DETACH",
        BPF_PROG_GET_FD_BY_ID => "BPF_PROG_GET_FD_BY_ID",
        BPF_MAP_GET_FD_BY_ID => "BPF_MAP_GET_FD_BY_ID",
        BPF_RAW_TRACEPOINT_OPEN => "BPF_RAW_TRACEPOINT_OPEN",
        28 => "BPF_LINK_CREATE",
        BPF_LINK_UPDATE => "BPF_LINK_UPDATE",
        BPF_LINK_GET_FD_BY_ID => "BPF_LINK_GET_FD_BY_ID",
        BPF_LINK_DETACH => "BPF_LINK_DETACH",
        _ => "bpf",
    }
}

/// What kind of tampering (the `kind` label of osprey_tamper_events_total).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Signal,
    Ptrace,
    Bpf,
    BpfRead,
    HookAttach,
    File,
    ModuleLoad,
    Netfilter,
    Blinded,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Signal => "signal",
            Kind::Ptrace => "ptrace",
            Kind::Bpf => "bpf",
            Kind::BpfRead => "bpf_read",
            Kind::HookAttach => "hook_attach",
            Kind::File => "file",
            Kind::ModuleLoad => "module_load",
            Kind::Netfilter => "netfilter",
            Kind::Blinded => "sensor_blinded",
        }
    }

    fn rule(self) -> (&'static str, Level, &'static str) {
        match self {
            Kind::Signal => ("Signal aimed at the Osprey agent", Level::Critical, "attack.t1562.001"),
            Kind::Ptrace => ("Osprey agent traced (ptrace)", Level::Critical, "attack.t1055.008"),
            Kind::Bpf => ("bpf() command on Osprey's programs, maps or links", Level::Critical, "attack.t1562.001"),
            Kind::BpfRead => ("Osprey's BPF objects opened by another process", Level::Medium, "attack.t1518.001"),
            Kind::HookAttach => ("Another BPF program attached to one of Osprey's hooks", Level::High, "attack.t1562.001"),
            Kind::File => ("Osprey's binary, configuration, rules or pins changed", Level::Critical, "attack.t1562.001"),
            Kind::ModuleLoad => ("Kernel module loaded", Level::High, "attack.t1547.006"),
            Kind::Netfilter => ("Firewall rules changed (iptables/nft)", Level::High, "attack.t1562.004"),
            Kind::Blinded => ("Osprey sensor blinded: a program stopped running", Level::Critical, "attack.t1562.001"),
        }
    }

    /// The built-in rule of this kind.
    pub fn meta(self) -> Arc<RuleMeta> {
        let (title, level, technique) = self.rule();
        let tags = vec!["attack.defense_evasion".to_string(), technique.to_string()];
        Arc::new(RuleMeta {
            id: Some(format!("osprey-tamper-{}", self.name().replace('_', "-"))),
            title: title.to_string(),
            description: Some(format!("Osprey self-protection ({}); see docs/self-protection.md", self.name())),
            level: Some(level),
            threat: threat_from_tags(&tags),
            tags,
            path: PathBuf::from("builtin:self-protection"),
            ..Default::default()
        })
    }
}

/// A tamper finding: its kind, what happened in words, and the kernel's acknowledgement number
/// when the actor is held until the agent has written it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub summary: String,
    pub wait_seq: Option<u64>,
    /// The actor was killed by the kernel (enforcement).
    pub killed: bool,
}

/// What the agent protects, as tamper classification needs it.
#[derive(Debug, Clone, Default)]
pub struct Protected {
    pub agent_pid: u32,
    /// Paths (files or directories: everything below) whose changes are tampering.
    pub paths: Vec<String>,
    /// The bpffs directory of the agent's pins.
    pub bpffs_dir: String,
    /// Tracepoint names the agent's programs use (for BPF_RAW_TRACEPOINT_OPEN by others).
    pub hooks: Vec<&'static str>,
}

const NETFILTER_TOOLS: &[&str] = &[
    "iptables", "ip6tables", "iptables-legacy", "ip6tables-legacy", "iptables-nft", "ip6tables-nft",
    "iptables-restore", "ip6tables-restore", "iptables-nft-restore", "iptables-legacy-restore", "nft",
    "ebtables", "arptables", "xtables-nft-multi", "xtables-legacy-multi",
];

fn signal_name(sig: u64) -> String {
    nix::sys::signal::Signal::try_from(sig as i32).map_or_else(|_| format!("signal {sig}"), |s| s.as_str().to_string())
}

fn under(path: &str, prefix: &str) -> bool {
    path == prefix || (path.starts_with(prefix) && (prefix.ends_with('/') || path.as_bytes().get(prefix.len()) == Some(&b'/')))
}

impl Protected {
    /// The tamper finding a record is, if any.
    pub fn classify(&self, rec: &Record) -> Option<Finding> {
        match rec {
            Record::System(y) => self.system(y),
            Record::File(f) => {
                let changes = matches!(
                    f.op,
                    fo::OSPREY_FILE_OPEN_WRITE
                        | fo::OSPREY_FILE_CREATE
                        | fo::OSPREY_FILE_MODIFY
                        | fo::OSPREY_FILE_UNLINK
                        | fo::OSPREY_FILE_RMDIR
                        | fo::OSPREY_FILE_RENAME
                        | fo::OSPREY_FILE_CHMOD
                        | fo::OSPREY_FILE_CHOWN
                        | fo::OSPREY_FILE_TRUNCATE
                        | fo::OSPREY_FILE_LINK
                        | fo::OSPREY_FILE_SYMLINK
                );
                if !changes || f.hdr.pid == self.agent_pid || f.ret < 0 {
                    return None;
                }
                let hit = |p: &str| self.paths.iter().any(|pre| under(p, pre)) || (!self.bpffs_dir.is_empty() && under(p, &self.bpffs_dir));
                let path = [Some(f.path.as_str()), f.path2.as_deref()].into_iter().flatten().find(|p| hit(p))?;
                Some(Finding {
                    kind: Kind::File,
                    summary: format!("{} of {path} by pid {}", crate::event::file_action(f.op), f.hdr.pid),
                    wait_seq: None,
                    killed: false,
                })
            }
            Record::Exec(e) => {
                let base = e.exe_path.rsplit('/').next().unwrap_or(&e.exe_path);
                NETFILTER_TOOLS.contains(&base).then(|| Finding {
                    kind: Kind::Netfilter,
                    summary: format!("{} ran (pid {}): firewall rules may cut the agent's output", e.exe_path, e.hdr.pid),
                    wait_seq: None,
                    killed: false,
                })
            }
            _ => None,
        }
    }

    fn system(&self, y: &System) -> Option<Finding> {
        let flags = y.args[2] & 0xff;
        let seq = y.args[2] >> 8;
        let killed = flags & tf::OSPREY_TAMPER_KILLED as u64 != 0;
        let enforced = if killed { "; the sender was killed (enforcement)" } else { "" };
        match y.op {
            so::OSPREY_SYS_TAMPER_SIGNAL => {
                let sig = y.args[0];
                // An orderly stop from init is not tampering.
                if y.hdr.pid == 1 && (sig == libc::SIGTERM as u64 || sig == libc::SIGINT as u64) {
                    return None;
                }
                let call = match y.args[1] as u32 {
                    agent_common::osprey_tamper_call::OSPREY_TAMPER_TKILL => "tkill",
                    agent_common::osprey_tamper_call::OSPREY_TAMPER_TGKILL => "tgkill",
                    agent_common::osprey_tamper_call::OSPREY_TAMPER_PIDFD => "pidfd_send_signal",
                    _ => "kill",
                };
                let group = if flags & tf::OSPREY_TAMPER_GROUP as u64 != 0 { " (to a process group or everyone)" } else { "" };
                Some(Finding {
                    kind: Kind::Signal,
                    summary: format!(
                        "{} sent to the agent (pid {}) by pid {} through {call}(){group}{enforced}",
                        signal_name(sig),
                        y.target_pid,
                        y.hdr.pid
                    ),
                    wait_seq: (flags & tf::OSPREY_TAMPER_WAITED as u64 != 0).then_some(seq),
                    killed,
                })
            }
            so::OSPREY_SYS_TAMPER_BPF => {
                let cmd = y.args[0];
                let (kind, id) = (y.args[1] >> 32, y.args[1] & 0xffff_ffff);
                let object = match kind {
                    1 => format!("program {id}"),
                    2 => format!("map {id}"),
                    3 => format!("link {id}"),
                    _ => y.text.clone(),
                };
                let k = match cmd {
                    BPF_OBJ_GET if self.bpffs_dir.is_empty() || !under(&y.text, &self.bpffs_dir) => return None,
                    BPF_PROG_GET_FD_BY_ID | BPF_MAP_GET_FD_BY_ID | BPF_LINK_GET_FD_BY_ID | BPF_OBJ_GET => Kind::BpfRead,
                    _ => Kind::Bpf,
                };
                Some(Finding {
                    kind: k,
                    summary: format!("{} on Osprey's {object} by pid {}{enforced}", bpf_cmd_name(cmd), y.hdr.pid),
                    wait_seq: None,
                    killed,
                })
            }
            so::OSPREY_SYS_BPF_ATTACH => {
                // Only attaches to a raw tracepoint Osprey uses are named by the kernel.
                let tp = y.text.as_str();
                (!tp.is_empty() && self.hooks.contains(&tp)).then(|| Finding {
                    kind: Kind::HookAttach,
                    summary: format!("program {} attached to raw tracepoint {tp} by pid {}", y.args[1], y.hdr.pid),
                    wait_seq: None,
                    killed: false,
                })
            }
            // The sys domain's ptrace record of the same call is not alerted twice.
            so::OSPREY_SYS_TAMPER_PTRACE => {
                let what = match y.args[1] as u32 {
                    agent_common::osprey_tamper_call::OSPREY_TAMPER_VM_READ => "process_vm_readv".to_string(),
                    agent_common::osprey_tamper_call::OSPREY_TAMPER_VM_WRITE => "process_vm_writev".to_string(),
                    _ => format!("ptrace request {}", y.args[0]),
                };
                Some(Finding {
                    kind: Kind::Ptrace,
                    summary: format!("{what} on the agent (pid {}) by pid {}{enforced}", y.target_pid, y.hdr.pid),
                    wait_seq: None,
                    killed,
                })
            }
            so::OSPREY_SYS_MODULE_LOAD => Some(Finding {
                kind: Kind::ModuleLoad,
                summary: format!("kernel module {} loaded by pid {}", y.text, y.hdr.pid),
                wait_seq: None,
                killed: false,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::raw;

    fn protected() -> Protected {
        Protected {
            agent_pid: 100,
            paths: vec!["/usr/bin/osprey".into(), "/etc/osprey".into()],
            bpffs_dir: "/sys/fs/bpf/osprey".into(),
            hooks: vec!["sched_process_exec"],
        }
    }

    fn system(pid: u32, op: u32, target: u32, args: [u64; 3], text: &str) -> Record {
        crate::decode::decode(&raw::system(pid, op, target, args, text)).unwrap()
    }

    #[test]
    fn fatal_signals_wait_and_orderly_stops_from_init_are_not_tampering() {
        let p = protected();
        let f = p
            .classify(&system(42, so::OSPREY_SYS_TAMPER_SIGNAL, 100, [9, 1, 7 << 8 | (tf::OSPREY_TAMPER_FATAL | tf::OSPREY_TAMPER_WAITED) as u64], ""))
            .unwrap();
        assert_eq!(f.kind, Kind::Signal);
        assert_eq!(f.wait_seq, Some(7));
        assert!(f.summary.contains("SIGKILL") && f.summary.contains("pid 42"), "{}", f.summary);
        assert!(p.classify(&system(1, so::OSPREY_SYS_TAMPER_SIGNAL, 100, [15, 1, 8 << 8], "")).is_none());
        let term = p.classify(&system(42, so::OSPREY_SYS_TAMPER_SIGNAL, 100, [15, 1, 9 << 8], "")).unwrap();
        assert_eq!(term.wait_seq, None);
    }

    #[test]
    fn bpf_commands_and_pins() {
        let p = protected();
        let f = p.classify(&system(42, so::OSPREY_SYS_TAMPER_BPF, 0, [BPF_LINK_DETACH, 3 << 32 | 77, 1 << 8 | 1], "")).unwrap();
        assert_eq!(f.kind, Kind::Bpf);
        assert!(f.killed && f.summary.contains("link 77"), "{}", f.summary);
        assert_eq!(p.classify(&system(42, so::OSPREY_SYS_TAMPER_BPF, 0, [BPF_PROG_GET_FD_BY_ID, 1 << 32 | 5, 0], "")).unwrap().kind, Kind::BpfRead);
        assert!(p.classify(&system(42, so::OSPREY_SYS_TAMPER_BPF, 0, [BPF_OBJ_GET, 0, 0], "/sys/fs/bpf/other/x")).is_none());
        assert!(p.classify(&system(42, so::OSPREY_SYS_TAMPER_BPF, 0, [BPF_OBJ_GET, 0, 0], "/sys/fs/bpf/osprey/iso")).is_some());
        assert!(p.classify(&system(42, so::OSPREY_SYS_BPF_ATTACH, 0, [17, 9, 0], "sched_process_exec")).is_some());
        assert!(p.classify(&system(42, so::OSPREY_SYS_BPF_ATTACH, 0, [17, 9, 0], "sys_enter")).is_none());
        assert_eq!(p.classify(&system(42, so::OSPREY_SYS_TAMPER_PTRACE, 100, [16, 5, 0], "")).unwrap().kind, Kind::Ptrace);
        assert!(p.classify(&system(42, so::OSPREY_SYS_PTRACE, 100, [16, 100, 0], "")).is_none(), "reported by prot_ptrace");
    }

    #[test]
    fn paths_match_whole_components() {
        assert!(under("/etc/osprey/osprey.yaml", "/etc/osprey"));
        assert!(under("/etc/osprey", "/etc/osprey"));
        assert!(!under("/etc/osprey2/x", "/etc/osprey"));
    }
}
