//! Network isolation of a cgroup (a pod, a container, a systemd unit) or of the whole host (the
//! root cgroup): `cgroup_skb` ingress and egress programs drop every packet whose peer no allow
//! rule names. The programs' maps are pinned by name and each isolated cgroup's two links are
//! pinned under `<bpffs dir>/isolated/`, so isolation survives the agent: a restarted agent
//! finds the pins, rewrites the allow rules from its configuration and carries on.

use std::{
    net::IpAddr,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use agent_common::osprey_iso_rule;
use aya::{
    maps::{Array, PerCpuArray},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType,
    },
    Ebpf, EbpfLoader,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tracing::info;

use crate::sensor::error_chain;

#[derive(Debug, Error)]
pub enum IsolateError {
    #[error("{0} is not a cgroup v2 directory")]
    NotCgroup(PathBuf),
    #[error("cgroup {0} is already isolated")]
    Already(PathBuf),
    #[error("cgroup {0} is not isolated")]
    NotIsolated(PathBuf),
    #[error("isolation programs: {0}")]
    Bpf(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("allow rule {0:?}: expected ADDR[/PREFIX][:PORT][/tcp|/udp], e.g. 10.0.0.53/32:53/udp or [::1]:443")]
    Rule(String),
    #[error("more than {max} allow rules", max = agent_common::OSPREY_ISO_RULES_MAX)]
    TooManyRules,
}

fn bpf_err(e: impl std::error::Error) -> IsolateError {
    IsolateError::Bpf(error_chain(&e))
}

/// One allow rule: a peer network, optionally one port and one transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowRule {
    pub addr: IpAddr,
    pub prefix: u8,
    pub port: u16,
    /// 6 TCP, 17 UDP, 0 any.
    pub proto: u8,
}

impl std::str::FromStr for AllowRule {
    type Err = IsolateError;

    /// `10.0.0.0/8`, `10.0.0.53:53/udp`, `[fd00::1]:443/tcp`, `::1`, `0.0.0.0/0:53`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IsolateError::Rule(s.to_owned());
        let (rest, proto) = match s.rsplit_once('/') {
            Some((r, "tcp")) => (r, 6),
            Some((r, "udp")) => (r, 17),
            _ => (s, 0),
        };
        // [v6]/prefix:port | [v6]:port | v4/prefix:port | v4:port | bare address
        let (addr_prefix, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (a, after) = inner.split_once(']').ok_or_else(bad)?;
            let (pfx, port) = match after.split_once(':') {
                Some((p, port)) => (p, Some(port)),
                None => (after, None),
            };
            (format!("{a}{pfx}"), port)
        } else if rest.matches(':').count() == 1 {
            let (a, p) = rest.split_once(':').ok_or_else(bad)?;
            (a.to_owned(), Some(p))
        } else {
            (rest.to_owned(), None)
        };
        let port = port.map(|p| p.parse::<u16>().map_err(|_| bad())).transpose()?.unwrap_or(0);
        let (addr, prefix) = match addr_prefix.split_once('/') {
            Some((a, p)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (addr_prefix.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix, port, proto })
    }
}

impl AllowRule {
    fn to_kernel(&self) -> osprey_iso_rule {
        let mut addr = [0u8; 16];
        let family = match self.addr {
            IpAddr::V4(a) => {
                addr[..4].copy_from_slice(&a.octets());
                4
            }
            IpAddr::V6(a) => {
                addr = a.octets();
                6
            }
        };
        osprey_iso_rule { family, prefixlen: self.prefix, proto: self.proto, _pad0: 0, port: self.port, _pad1: 0, addr }
    }
}

/// An isolated cgroup, as found in bpffs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Isolated {
    /// Absolute path of the cgroup directory.
    pub cgroup: PathBuf,
    pub cgroup_id: u64,
}

/// Owns the isolation programs (loaded on first use) and the pins.
pub struct Isolator {
    pin_dir: PathBuf,
    allow: Vec<AllowRule>,
    ebpf: Option<Ebpf>,
}

impl Isolator {
    pub fn new(pin_dir: &Path, allow: Vec<AllowRule>) -> Result<Self, IsolateError> {
        if allow.len() > agent_common::OSPREY_ISO_RULES_MAX as usize {
            return Err(IsolateError::TooManyRules);
        }
        Ok(Self { pin_dir: pin_dir.to_owned(), allow, ebpf: None })
    }

    fn links_dir(&self) -> PathBuf {
        self.pin_dir.join("isolated")
    }

    fn link_pin(&self, cgroup_id: u64, dir: &str) -> PathBuf {
        self.links_dir().join(format!("{cgroup_id}_{dir}"))
    }

    /// Loads the programs (reusing pinned maps), and writes the allow rules.
    fn loaded(&mut self) -> Result<&mut Ebpf, IsolateError> {
        if self.ebpf.is_none() {
            let io = |path: &Path| {
                let path = path.to_owned();
                move |source| IsolateError::Io { path, source }
            };
            std::fs::create_dir_all(self.links_dir()).map_err(io(&self.links_dir()))?;
            let mut ebpf = EbpfLoader::new()
                .default_map_pin_directory(&self.pin_dir)
                .load(agent_ebpf::ISOLATE_OBJECT)
                .map_err(bpf_err)?;
            for name in ["iso_egress", "iso_ingress"] {
                let p: &mut CgroupSkb = ebpf
                    .program_mut(name)
                    .ok_or_else(|| IsolateError::Bpf(format!("{name} missing")))?
                    .try_into()
                    .map_err(bpf_err)?;
                p.load().map_err(bpf_err)?;
            }
            let mut rules: Array<_, osprey_iso_rule> =
                Array::try_from(ebpf.map_mut("iso_allow").ok_or_else(|| IsolateError::Bpf("iso_allow missing".into()))?)
                    .map_err(bpf_err)?;
            for (i, r) in self.allow.iter().enumerate() {
                rules.set(i as u32, r.to_kernel(), 0).map_err(bpf_err)?;
            }
            let mut n: Array<_, u32> =
                Array::try_from(ebpf.map_mut("iso_allow_n").ok_or_else(|| IsolateError::Bpf("iso_allow_n missing".into()))?)
                    .map_err(bpf_err)?;
            n.set(0, self.allow.len() as u32, 0).map_err(bpf_err)?;
            self.ebpf = Some(ebpf);
        }
        Ok(self.ebpf.as_mut().expect("loaded above"))
    }

    fn cgroup_id(cgroup: &Path) -> Result<u64, IsolateError> {
        let m = std::fs::metadata(cgroup).map_err(|source| IsolateError::Io { path: cgroup.to_owned(), source })?;
        if !m.is_dir() || !cgroup.join("cgroup.procs").exists() || !cgroup.join("cgroup.controllers").exists() {
            return Err(IsolateError::NotCgroup(cgroup.to_owned()));
        }
        Ok(m.ino())
    }

    /// Cuts `cgroup` (an absolute cgroup v2 directory) off the network but for the allow rules.
    pub fn isolate(&mut self, cgroup: &Path) -> Result<Isolated, IsolateError> {
        let id = Self::cgroup_id(cgroup)?;
        if self.link_pin(id, "egress").exists() {
            return Err(IsolateError::Already(cgroup.to_owned()));
        }
        let pins = [(self.link_pin(id, "egress"), "iso_egress", CgroupSkbAttachType::Egress), (self.link_pin(id, "ingress"), "iso_ingress", CgroupSkbAttachType::Ingress)];
        let file = std::fs::File::open(cgroup).map_err(|source| IsolateError::Io { path: cgroup.to_owned(), source })?;
        let ebpf = self.loaded()?;
        let mut done = Vec::new();
        for (pin, prog, kind) in pins {
            let attached = (|| {
                let p: &mut CgroupSkb = ebpf.program_mut(prog).expect("loaded").try_into().map_err(bpf_err)?;
                // A bpf_link takes no attach flags (the kernel rejects them): links always coexist with
                // other programs on the cgroup, as BPF_F_ALLOW_MULTI attachments do.
                let link_id = p.attach(&file, kind, CgroupAttachMode::Single).map_err(bpf_err)?;
                let link: FdLink = p.take_link(link_id).map_err(bpf_err)?.try_into().map_err(bpf_err)?;
                link.pin(&pin).map_err(bpf_err)
            })();
            match attached {
                Ok(pinned) => done.push(pinned),
                Err(e) => {
                    // Never leave half an isolation behind.
                    for p in done {
                        let _ = p.unpin();
                    }
                    return Err(e);
                }
            }
        }
        info!(cgroup = %cgroup.display(), cgroup_id = id, "cgroup isolated from the network");
        Ok(Isolated { cgroup: cgroup.to_owned(), cgroup_id: id })
    }

    /// Undoes [`Isolator::isolate`]: unpins both links, which detaches them.
    pub fn release(&mut self, cgroup: &Path) -> Result<Isolated, IsolateError> {
        let id = Self::cgroup_id(cgroup)?;
        let mut found = false;
        for dir in ["egress", "ingress"] {
            let pin = self.link_pin(id, dir);
            if !pin.exists() {
                continue;
            }
            found = true;
            let link = PinnedLink::from_pin(&pin).map_err(bpf_err)?;
            drop(link.unpin().map_err(|source| IsolateError::Io { path: pin.clone(), source })?);
        }
        if !found {
            return Err(IsolateError::NotIsolated(cgroup.to_owned()));
        }
        info!(cgroup = %cgroup.display(), cgroup_id = id, "cgroup network isolation released");
        Ok(Isolated { cgroup: cgroup.to_owned(), cgroup_id: id })
    }

    /// What is isolated now, from the pins (`cgroup_root` maps ids back to paths). Called at
    /// start-up, it also rewrites the allow rules in the pinned maps from the configuration.
    pub fn reconcile(&mut self, cgroup_root: &Path) -> Result<Vec<Isolated>, IsolateError> {
        let ids = self.pinned_ids();
        if !ids.is_empty() {
            self.loaded()?; // the pinned allow list takes this configuration's rules
        }
        let mut out: Vec<Isolated> = ids
            .into_iter()
            .map(|id| Isolated { cgroup: find_cgroup(cgroup_root, id).unwrap_or_default(), cgroup_id: id })
            .collect();
        out.sort_by_key(|i| i.cgroup_id);
        Ok(out)
    }

    fn pinned_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = std::fs::read_dir(self.links_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix("_egress")?.parse().ok())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Packets dropped so far: (ingress, egress), summed over CPUs.
    pub fn dropped(&mut self) -> Option<(u64, u64)> {
        let ebpf = self.ebpf.as_mut()?;
        let m: PerCpuArray<_, u64> = PerCpuArray::try_from(ebpf.map_mut("iso_dropped")?).ok()?;
        let sum = |i: u32| m.get(&i, 0).map(|v| v.iter().sum::<u64>()).unwrap_or(0);
        Some((sum(0), sum(1)))
    }
}

/// The cgroup directory under `root` whose inode (cgroup id) is `id`.
pub fn find_cgroup(root: &Path, id: u64) -> Option<PathBuf> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let m = std::fs::metadata(&dir).ok()?;
        if m.ino() == id {
            return Some(dir);
        }
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_rules_parse() {
        let r: AllowRule = "10.0.0.53:53/udp".parse().unwrap();
        assert_eq!((r.prefix, r.port, r.proto), (32, 53, 17));
        let r: AllowRule = "10.0.0.0/8".parse().unwrap();
        assert_eq!((r.prefix, r.port, r.proto), (8, 0, 0));
        let r: AllowRule = "[fd00::1]/64:443/tcp".parse().unwrap();
        assert_eq!((r.addr.to_string().as_str(), r.prefix, r.port, r.proto), ("fd00::1", 64, 443, 6));
        let r: AllowRule = "::1".parse().unwrap();
        assert_eq!(r.prefix, 128);
        let r: AllowRule = "127.0.0.1:8080".parse().unwrap();
        let k = r.to_kernel();
        assert_eq!((k.family, k.port, &k.addr[..4]), (4, 8080, &[127, 0, 0, 1][..]));
        for bad in ["10.0.0.1/33", "nonsense", "10.0.0.1:99999", "[::1"] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad}");
        }
    }
}
