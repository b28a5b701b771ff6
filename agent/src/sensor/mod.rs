//! The kernel side of the agent: load the BPF object, create one ring buffer per possible CPU,
//! attach the programs this kernel supports, and expose the loss/filter counters.

pub mod filters;
pub mod fs;
pub mod ring;
pub mod settings;

use std::{os::fd::AsFd, path::PathBuf};

use agent_common::{osprey_config, osprey_config_flags, osprey_inode_key, osprey_watch_kind as wk, RecordType};
use agent_ebpf::{Hook, Program, PROGRAMS};
use aya::{
    maps::{Array, ArrayOfMaps, HashMap, LpmTrie, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        cgroup_skb::CgroupSkbAttachType, CgroupAttachMode, BtfTracePoint, CgroupSkb, CgroupSockAddr, ProgramError,
        TracePoint,
    },
    Btf, Ebpf, EbpfError, EbpfLoader,
};
use thiserror::Error;
use tracing::{info, warn};

#[derive(Debug, Error)]
pub enum SensorError {
    #[error("loading the BPF object failed: {0}")]
    Load(#[from] EbpfError),
    #[error("kernel BTF (/sys/kernel/btf/vmlinux) is unreadable: {0}")]
    Btf(#[from] aya::BtfError),
    #[error("map {name}: {source}")]
    Map { name: &'static str, source: MapError },
    #[error("program {program} (hook {hook}): {source}")]
    Program { program: &'static str, hook: &'static str, source: ProgramError },
    #[error("ring buffer size {0} is not a power of two multiple of the page size")]
    RingSize(u32),
    #[error("cannot count CPUs: {0}")]
    Cpus(String),
    #[error("BPF object has no program or map named {0}")]
    Missing(&'static str),
    #[error("program {program} (hook {hook}) did not load: {reason}")]
    NotLoaded { program: &'static str, hook: &'static str, reason: String },
}

/// What the sensor needs from the configuration.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Bytes per CPU ring buffer (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Report thread clone/exit too, not only processes.
    pub threads: bool,
    /// Program domains to attach besides `proc` (always): `file`, `cred`, `sys`, `net`.
    pub domains: Vec<&'static str>,
    /// With `net`: copy DNS messages (cgroup_skb programs on the root cgroup v2).
    pub dns: bool,
    /// Bit (1 << op) per enum osprey_file_op to report.
    pub file_ops: u32,
    /// Bit (1 << op) per enum osprey_system_op to report.
    pub system_ops: u32,
    /// Files and directories whose reads are reported (inode watch list).
    pub read_watch: Vec<PathBuf>,
    /// Path prefixes whose writes are never reported.
    pub write_exclude: Vec<String>,
    /// When not empty, writes are reported only under these prefixes.
    pub write_include: Vec<String>,
    /// Benchmark floor: load `agent_ebpf::BARE_OBJECT` (empty programs on the same hooks)
    /// instead of the real programs. Nothing reaches the ring buffers.
    pub bare: bool,
    /// A TCP record like one sent less than this ago (same process, step, peer, port) is folded
    /// into the next one sent; zero: never (`network.fold_window`).
    pub net_fold: std::time::Duration,
    /// The same for file records (`file.fold_window`).
    pub file_fold: std::time::Duration,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self {
            ringbuf_bytes: 8 << 20,
            threads: false,
            domains: vec!["file", "cred", "sys", "net"],
            dns: true,
            file_ops: u32::MAX,
            system_ops: u32::MAX,
            read_watch: Vec::new(),
            write_exclude: Vec::new(),
            write_include: Vec::new(),
            bare: false,
            net_fold: crate::net::DEFAULT_FOLD_WINDOW,
            file_fold: crate::sensor::settings::DEFAULT_FILE_FOLD_WINDOW,
        }
    }
}

/// One hook and what happened when the sensor tried to attach it.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub hook: &'static str,
    pub attached: bool,
    /// Why it was skipped, and what covers for it.
    pub reason: Option<String>,
}

/// Counters the kernel keeps per record type, summed over CPUs (and per CPU for loss).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// lost[type][cpu]: records that found their ring buffer full.
    pub lost: Vec<(RecordType, Vec<u64>)>,
    /// filtered[type]: records dropped on purpose in the kernel (threads, kernel threads).
    pub filtered: Vec<(RecordType, u64)>,
    /// folded[type]: records not sent because one like them was sent just before; the next one
    /// sent carries their number (`network.fold_window`).
    pub folded: Vec<(RecordType, u64)>,
    /// nested[type]: runs of a program of that record type the kernel skipped because the same
    /// program was already running on the CPU (an interrupt arrived during it): the program's
    /// `recursion_misses`. Each may have been a record; counted as lost (an upper bound).
    pub nested: Vec<(RecordType, u64)>,
}

impl KernelCounters {
    /// Records lost: ring buffer full, plus skipped nested runs.
    pub fn lost_total(&self, kind: RecordType) -> u64 {
        self.lost.iter().filter(|(k, _)| *k == kind).flat_map(|(_, v)| v).sum::<u64>() + self.nested_total(kind)
    }

    pub fn nested_total(&self, kind: RecordType) -> u64 {
        of_kind(&self.nested, kind)
    }

    pub fn filtered_total(&self, kind: RecordType) -> u64 {
        of_kind(&self.filtered, kind)
    }

    pub fn folded_total(&self, kind: RecordType) -> u64 {
        of_kind(&self.folded, kind)
    }
}

/// A per-type count's value for `kind`.
fn of_kind(counts: &[(RecordType, u64)], kind: RecordType) -> u64 {
    counts.iter().filter(|(k, _)| *k == kind).map(|(_, n)| n).sum()
}

/// Reads the kernel's loss and filter counters through its own handles on the maps, so any
/// thread can read them while the sensor is busy.
pub struct CounterReader {
    loss: PerCpuArray<MapData, u64>,
    filtered: PerCpuArray<MapData, u64>,
    folded: PerCpuArray<MapData, u64>,
    /// Programs whose skipped runs count as lost records of a type (the network programs, which
    /// run in interrupts and so can be interrupted by themselves).
    programs: Vec<(RecordType, std::os::fd::OwnedFd)>,
}

/// `recursion_misses` of a loaded program (BPF_OBJ_GET_INFO_BY_FD); None if the kernel says no.
fn recursion_misses(fd: std::os::fd::BorrowedFd<'_>) -> Option<u64> {
    use std::os::fd::AsRawFd;
    // SAFETY: bpf_prog_info is plain integers and pointers-as-integers: all zeroes is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = [0u8; 128];
    let a = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: std::mem::size_of_val(&info) as u32, info: &mut info as *mut _ as u64 };
    // SAFETY: InfoAttr is the `info` member of union bpf_attr; the buffer is larger than it.
    unsafe { std::ptr::write_unaligned(attr.as_mut_ptr().cast::<InfoAttr>(), a) };
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    // SAFETY: bpf(2) with a valid attr buffer; the kernel writes at most info_len bytes to info.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_OBJ_GET_INFO_BY_FD, attr.as_mut_ptr(), attr.len() as u32) };
    (rc == 0).then_some(info.recursion_misses)
}

impl CounterReader {
    fn open(ebpf: &Ebpf) -> Result<Self, SensorError> {
        let dup = |name: &'static str| -> Result<PerCpuArray<MapData, u64>, SensorError> {
            let map = ebpf.map(name).ok_or(SensorError::Missing(name))?;
            let data: &MapData = match map {
                aya::maps::Map::PerCpuArray(m) => m,
                _ => return Err(SensorError::Missing(name)),
            };
            let fd = data.fd().as_fd().try_clone_to_owned().map_err(|e| SensorError::Map { name, source: MapError::IoError(e) })?;
            let data = MapData::from_fd(fd).map_err(map_err(name))?;
            PerCpuArray::try_from(aya::maps::Map::PerCpuArray(data)).map_err(map_err(name))
        };
        let mut programs = Vec::new();
        for (name, prog) in ebpf.programs() {
            let kind = match name {
                n if n.starts_with("net_dns") => RecordType::Dns,
                n if n.starts_with("net_") => RecordType::Net,
                _ => continue,
            };
            if let Ok(fd) = prog.fd() {
                if let Ok(owned) = fd.as_fd().try_clone_to_owned() {
                    programs.push((kind, owned));
                }
            }
        }
        Ok(Self { loss: dup("loss")?, filtered: dup("filtered")?, folded: dup("folded")?, programs })
    }

    pub fn read(&self) -> Result<KernelCounters, SensorError> {
        let read = |arr: &PerCpuArray<MapData, u64>, name: &'static str| -> Result<Vec<(RecordType, Vec<u64>)>, SensorError> {
            RecordType::ALL
                .iter()
                .map(|&t| Ok((t, arr.get(&(t as u32), 0).map_err(map_err(name))?.to_vec())))
                .collect()
        };
        let summed = |per_cpu: Vec<(RecordType, Vec<u64>)>| per_cpu.into_iter().map(|(t, v)| (t, v.iter().sum())).collect();
        Ok(KernelCounters {
            lost: read(&self.loss, "loss")?,
            filtered: summed(read(&self.filtered, "filtered")?),
            folded: summed(read(&self.folded, "folded")?),
            nested: RecordType::ALL
                .iter()
                .map(|&t| {
                    let n = self.programs.iter().filter(|(k, _)| *k == t).filter_map(|(_, fd)| recursion_misses(fd.as_fd())).sum();
                    (t, n)
                })
                .collect(),
        })
    }
}

/// Hooks the agent cannot run without.
const REQUIRED: &[&str] = &["proc_exec", "proc_fork", "proc_exit"];

/// What covers for an optional hook this kernel lacks.
fn fallback(program: &str) -> &'static str {
    match program {
        "proc_prepare_exec" => {
            "setuid/setgid execs are judged from the new credentials alone (sched_prepare_exec needs Linux 6.10)"
        }
        p if p.starts_with("file_") => "this syscall's file events are not reported on this kernel",
        p if p.starts_with("net_dns") => "DNS messages are not reported on this kernel",
        p if p.starts_with("net_udp") => "UDP peers are not reported on this kernel",
        p if p.starts_with("net_") => "TCP connections are not reported on this kernel",
        _ => "its events are not reported on this kernel",
    }
}

pub struct Sensor {
    ebpf: Ebpf,
    rings: Vec<(u32, RingBuf<MapData>)>,
    probes: Vec<ProbeStatus>,
    ncpus: u32,
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> SensorError {
    move |source| SensorError::Map { name, source }
}

impl Drop for Sensor {
    /// Detaches every program in parallel (see ATTACH_THREADS) instead of one by one.
    fn drop(&mut self) {
        let mut progs: Vec<&mut aya::programs::Program> = self.ebpf.programs_mut().map(|(_, p)| p).collect();
        let chunk = progs.len().div_ceil(ATTACH_THREADS).max(1);
        std::thread::scope(|s| {
            for part in progs.chunks_mut(chunk) {
                s.spawn(move || {
                    for p in part.iter_mut() {
                        // Unloading an already unloaded or never loaded program is not an error here.
                        let _ = unload(p);
                    }
                });
            }
        });
    }
}

fn unload(p: &mut aya::programs::Program) -> Result<(), ProgramError> {
    match p {
        aya::programs::Program::BtfTracePoint(p) => p.unload(),
        aya::programs::Program::TracePoint(p) => p.unload(),
        aya::programs::Program::CgroupSkb(p) => p.unload(),
        aya::programs::Program::CgroupSockAddr(p) => p.unload(),
        _ => Ok(()),
    }
}

impl Sensor {
    /// Loads and attaches everything. Dropping the sensor detaches it.
    pub fn start(cfg: &SensorConfig) -> Result<Self, SensorError> {
        for problem in fs::ensure_mounted() {
            warn!("{problem}");
        }
        raise_memlock_limit();
        let page = page_size();
        if !cfg.ringbuf_bytes.is_power_of_two() || cfg.ringbuf_bytes < page {
            return Err(SensorError::RingSize(cfg.ringbuf_bytes));
        }
        let ncpus = aya::util::nr_cpus().map_err(|(f, e)| SensorError::Cpus(format!("{f}: {e}")))? as u32;

        let mut ebpf = EbpfLoader::new()
            // `pending` is a task-storage map, which aya creates but offers no typed API for
            // (only the kernel programs use it).
            .allow_unsupported_maps()
            .map_max_entries("rings", ncpus)
            .map_max_entries("scratch", ncpus)
            .load(if cfg.bare { agent_ebpf::BARE_OBJECT } else { agent_ebpf::OBJECT })?;

        let rings = create_rings(&mut ebpf, ncpus, cfg.ringbuf_bytes)?;
        let mut config: Array<_, osprey_config> =
            Array::try_from(ebpf.map_mut("config").ok_or(SensorError::Missing("config"))?)
                .map_err(map_err("config"))?;
        let mut flags = 0;
        if cfg.threads {
            flags |= osprey_config_flags::OSPREY_CFG_THREADS;
        }
        if !cfg.write_include.is_empty() {
            flags |= osprey_config_flags::OSPREY_CFG_WRITE_INCLUDE;
        }
        let settings = osprey_config {
            flags,
            agent_pid: std::process::id(),
            file_ops: cfg.file_ops,
            system_ops: cfg.system_ops,
            net_fold_ns: u64::try_from(cfg.net_fold.as_nanos()).unwrap_or(u64::MAX),
            file_fold_ns: u64::try_from(cfg.file_fold.as_nanos()).unwrap_or(u64::MAX),
        };
        config.set(0, settings, 0).map_err(map_err("config"))?;
        if !cfg.bare {
            set_filters(&mut ebpf, cfg)?; // the bare object has no filter maps
        }

        let btf = Btf::from_sys_fs()?;
        let probes = attach_all(&mut ebpf, &btf, cfg)?;
        info!(cpus = ncpus, ringbuf_bytes = cfg.ringbuf_bytes, "sensor attached");
        Ok(Self { ebpf, rings, probes, ncpus })
    }

    /// The per-CPU ring buffers, each with its CPU id. Callable once; later calls return none.
    pub fn take_rings(&mut self) -> Vec<(u32, RingBuf<MapData>)> {
        std::mem::take(&mut self.rings)
    }

    pub fn probes(&self) -> &[ProbeStatus] {
        &self.probes
    }

    pub fn ncpus(&self) -> u32 {
        self.ncpus
    }

    /// Reads the kernel's loss and filter counters.
    pub fn counters(&self) -> Result<KernelCounters, SensorError> {
        self.counter_reader()?.read()
    }

    /// Takes a map out of the object (e.g. the exec block list, for the responder).
    pub fn take_map(&mut self, name: &str) -> Option<aya::maps::Map> {
        self.ebpf.take_map(name)
    }

    /// The loaded object: self-protection reads its program ids and re-attaches programs.
    pub fn ebpf(&self) -> &Ebpf {
        &self.ebpf
    }

    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// Marks path prefixes as self-protected in the kernel's prefix trie: writes to them are
    /// reported whatever `file.write_exclude`/`write_include` say, and never folded. A no-op
    /// for the bare object (benchmark floor), which has no filter maps.
    pub fn protect_paths(&mut self, paths: &[String]) -> Result<(), SensorError> {
        let Some(map) = self.ebpf.map_mut("prefixes") else { return Ok(()) };
        let mut trie: LpmTrie<_, [u8; filters::PREFIX_MAX], u32> = LpmTrie::try_from(map).map_err(map_err("prefixes"))?;
        filters::protect_prefixes(&mut trie, paths).map_err(map_err("prefixes"))
    }

    /// A handle that reads the counters from any thread.
    pub fn counter_reader(&self) -> Result<CounterReader, SensorError> {
        CounterReader::open(&self.ebpf)
    }
}

/// An error and every cause below it, `: `-separated (aya keeps the errno in a source).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

fn hook_name(p: &Program) -> &'static str {
    match p.hook {
        Hook::TpBtf(tp) | Hook::TracePoint(_, tp) => tp,
        Hook::CgroupSkb("ingress") => "cgroup_skb/ingress",
        Hook::CgroupSkb(_) => "cgroup_skb/egress",
        Hook::CgroupSockAddr(kind) => kind,
    }
}

/// Threads that attach (and detach) programs. Each tracepoint link costs the kernel an RCU
/// grace period; done one after another ~80 programs take seconds, in parallel they overlap.
const ATTACH_THREADS: usize = 16;

/// Loads and attaches every program of the enabled domains, in parallel. A required program
/// that fails is an error; an optional one is reported with what covers for it.
fn attach_all(ebpf: &mut Ebpf, btf: &Btf, cfg: &SensorConfig) -> Result<Vec<ProbeStatus>, SensorError> {
    let wanted = |p: &Program| {
        // proc and prot (self-protection) are always attached
        (matches!(p.domain(), "proc" | "prot") || cfg.domains.contains(&p.domain()))
            && (cfg.dns || !p.name.starts_with("net_dns"))
    };
    // cgroup programs attach to the root of the cgroup v2 hierarchy: every process on the host.
    let cgroup = match fs::cgroup2_mount() {
        Some(m) => std::fs::File::open(&m).map_err(|e| format!("open {m}: {e}")),
        None => Err("no cgroup v2 mount in /proc/self/mountinfo".to_string()),
    };
    let cgroup = &cgroup;
    // One work item per program with all its hooks: it is loaded (verified) once.
    let mut work: Vec<(Vec<&'static Program>, &mut aya::programs::Program)> = ebpf
        .programs_mut()
        .filter_map(|(name, prog)| {
            let hooks: Vec<&'static Program> = PROGRAMS.iter().filter(|p| p.name == name && wanted(p)).collect();
            (!hooks.is_empty()).then_some((hooks, prog))
        })
        .collect();
    work.sort_by_key(|(hooks, _)| hooks[0].name);
    let chunk = work.len().div_ceil(ATTACH_THREADS).max(1);
    let results: Vec<(&'static Program, Result<(), SensorError>)> = std::thread::scope(|s| {
        let handles: Vec<_> = work
            .chunks_mut(chunk)
            .map(|part| s.spawn(move || part.iter_mut().flat_map(|(hooks, prog)| attach(prog, btf, cgroup, hooks)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("attach thread")).collect()
    });
    let mut probes = Vec::new();
    for (meta, res) in results {
        let status = match res {
            Ok(()) => ProbeStatus { program: meta.name, hook: hook_name(meta), attached: true, reason: None },
            Err(e) if REQUIRED.contains(&meta.name) => return Err(e),
            Err(e) => {
                let (fb, why) = (fallback(meta.name), error_chain(&e));
                warn!(program = meta.name, hook = hook_name(meta), error = %why, "optional hook not attached; {fb}");
                ProbeStatus { program: meta.name, hook: hook_name(meta), attached: false, reason: Some(format!("{why}; {fb}")) }
            }
        };
        probes.push(status);
    }
    Ok(probes)
}

/// Loads `prog` and attaches it to each of its hooks; one result per hook.
fn attach(
    prog: &mut aya::programs::Program,
    btf: &Btf,
    cgroup: &Result<std::fs::File, String>,
    hooks: &[&'static Program],
) -> Vec<(&'static Program, Result<(), SensorError>)> {
    let first = hooks[0];
    let err = |p: &'static Program| move |source| SensorError::Program { program: p.name, hook: hook_name(p), source };
    let loaded = match first.hook {
        Hook::TpBtf(tp) => <&mut BtfTracePoint>::try_from(&mut *prog).map_err(err(first)).and_then(|p| p.load(tp, btf).map_err(err(first))),
        Hook::TracePoint(..) => <&mut TracePoint>::try_from(&mut *prog).map_err(err(first)).and_then(|p| p.load().map_err(err(first))),
        Hook::CgroupSkb(_) => <&mut CgroupSkb>::try_from(&mut *prog).map_err(err(first)).and_then(|p| p.load().map_err(err(first))),
        Hook::CgroupSockAddr(_) => {
            <&mut CgroupSockAddr>::try_from(&mut *prog).map_err(err(first)).and_then(|p| p.load().map_err(err(first)))
        }
    };
    if let Err(e) = loaded {
        // Not loadable: every hook of it is missing, for the same reason.
        let reason = error_chain(&e);
        return hooks
            .iter()
            .map(|h| (*h, Err(SensorError::NotLoaded { program: h.name, hook: hook_name(h), reason: reason.clone() })))
            .collect();
    }
    hooks
        .iter()
        .map(|h| {
            let res = match h.hook {
                Hook::TpBtf(_) => <&mut BtfTracePoint>::try_from(&mut *prog).map_err(err(h)).and_then(|p| p.attach().map(drop).map_err(err(h))),
                Hook::TracePoint(category, tp) => <&mut TracePoint>::try_from(&mut *prog)
                    .map_err(err(h))
                    .and_then(|p| p.attach(category, tp).map(drop).map_err(err(h))),
                // A bpf_link (kernel >= 5.7, what aya uses here) always coexists with other programs
                // on the cgroup; link_create rejects attach flags, so the mode is Single (flags 0).
                Hook::CgroupSkb(dir) => match cgroup {
                    Ok(cg) => <&mut CgroupSkb>::try_from(&mut *prog).map_err(err(h)).and_then(|p| {
                        let at = if dir == "ingress" { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
                        p.attach(cg, at, CgroupAttachMode::Single).map(drop).map_err(err(h))
                    }),
                    Err(why) => Err(SensorError::NotLoaded { program: h.name, hook: hook_name(h), reason: why.clone() }),
                },
                Hook::CgroupSockAddr(_) => match cgroup {
                    Ok(cg) => <&mut CgroupSockAddr>::try_from(&mut *prog)
                        .map_err(err(h))
                        .and_then(|p| p.attach(cg, CgroupAttachMode::Single).map(drop).map_err(err(h))),
                    Err(why) => Err(SensorError::NotLoaded { program: h.name, hook: hook_name(h), reason: why.clone() }),
                },
            };
            (*h, res)
        })
        .collect()
}

/// Writes the watch list and prefix filters into their maps.
fn set_filters(ebpf: &mut Ebpf, cfg: &SensorConfig) -> Result<(), SensorError> {
    let mut watch: HashMap<_, osprey_inode_key, u32> =
        HashMap::try_from(ebpf.map_mut("watch").ok_or(SensorError::Missing("watch"))?).map_err(map_err("watch"))?;
    let keys = filters::watch_inodes(&mut watch, &cfg.read_watch, wk::OSPREY_WATCH_READ).map_err(map_err("watch"))?;
    let devs: std::collections::BTreeSet<u32> = keys.iter().map(|k| k.dev).collect();
    let mut watch_devs: HashMap<_, u32, u32> =
        HashMap::try_from(ebpf.map_mut("watch_devs").ok_or(SensorError::Missing("watch_devs"))?).map_err(map_err("watch_devs"))?;
    for dev in &devs {
        watch_devs.insert(dev, 1, 0).map_err(map_err("watch_devs"))?;
    }
    info!(watched = keys.len(), listed = cfg.read_watch.len(), devices = devs.len(), "read watch list set");
    let mut trie: LpmTrie<_, [u8; filters::PREFIX_MAX], u32> =
        LpmTrie::try_from(ebpf.map_mut("prefixes").ok_or(SensorError::Missing("prefixes"))?)
            .map_err(map_err("prefixes"))?;
    filters::set_prefixes(&mut trie, &cfg.write_exclude, &cfg.write_include).map_err(map_err("prefixes"))?;
    Ok(())
}

/// One ring buffer per possible CPU, created here at the configured size and inserted into the
/// `rings` array-of-maps the programs index by CPU id.
fn create_rings(ebpf: &mut Ebpf, ncpus: u32, bytes: u32) -> Result<Vec<(u32, RingBuf<MapData>)>, SensorError> {
    let mut outer: ArrayOfMaps<_, MapData> =
        ArrayOfMaps::try_from(ebpf.map_mut("rings").ok_or(SensorError::Missing("rings"))?)
            .map_err(map_err("rings"))?;
    let mut rings = Vec::with_capacity(ncpus as usize);
    for cpu in 0..ncpus {
        let def = aya_obj::Map::new_from_params(
            aya_obj::generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF as u32,
            0,
            0,
            bytes,
            0,
        );
        let inner = MapData::create(def, &format!("osprey_rb{cpu}"), None).map_err(map_err("rings"))?;
        outer.set(cpu, &inner, 0).map_err(map_err("rings"))?;
        let ring = RingBuf::try_from(aya::maps::Map::RingBuf(inner)).map_err(map_err("rings"))?;
        rings.push((cpu, ring));
    }
    Ok(rings)
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) as u32
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it (harmless elsewhere).
fn raise_memlock_limit() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: setrlimit reads a valid struct.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        warn!("could not raise RLIMIT_MEMLOCK: {}", std::io::Error::last_os_error());
    }
}
