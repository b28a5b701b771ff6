//! The kernel side of the agent: load the BPF object, create one ring buffer per possible CPU,
//! attach the programs this kernel supports, and expose the loss/filter counters.

pub mod fs;
pub mod ring;

use agent_common::{osprey_config, osprey_config_flags, RecordType};
use aya::{
    maps::{Array, ArrayOfMaps, MapData, MapError, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError},
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
}

/// What the sensor needs from the configuration.
#[derive(Debug, Clone)]
pub struct SensorConfig {
    /// Bytes per CPU ring buffer (power of two, multiple of the page size).
    pub ringbuf_bytes: u32,
    /// Report thread clone/exit too, not only processes.
    pub threads: bool,
}

impl Default for SensorConfig {
    fn default() -> Self {
        Self { ringbuf_bytes: 8 << 20, threads: false }
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
}

impl KernelCounters {
    pub fn lost_total(&self, kind: RecordType) -> u64 {
        self.lost.iter().filter(|(k, _)| *k == kind).flat_map(|(_, v)| v).sum()
    }
}

/// Hooks that are optional: the sensor runs without them and says what it fell back to.
const OPTIONAL: &[(&str, &str)] = &[(
    "osprey_prepare_exec",
    "without sched_prepare_exec (Linux < 6.10) setuid/setgid execs are judged from the new credentials alone",
)];

pub struct Sensor {
    ebpf: Ebpf,
    rings: Vec<(u32, RingBuf<MapData>)>,
    probes: Vec<ProbeStatus>,
    ncpus: u32,
}

fn map_err(name: &'static str) -> impl FnOnce(MapError) -> SensorError {
    move |source| SensorError::Map { name, source }
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
            .map_max_entries("rings", ncpus)
            .map_max_entries("scratch", ncpus)
            .load(agent_ebpf::OBJECT)?;

        let rings = create_rings(&mut ebpf, ncpus, cfg.ringbuf_bytes)?;
        let mut config: Array<_, osprey_config> =
            Array::try_from(ebpf.map_mut("config").ok_or(SensorError::Missing("config"))?)
                .map_err(map_err("config"))?;
        let settings = osprey_config {
            flags: if cfg.threads { osprey_config_flags::OSPREY_CFG_THREADS } else { 0 },
            agent_pid: std::process::id(),
        };
        config.set(0, settings, 0).map_err(map_err("config"))?;

        let btf = Btf::from_sys_fs()?;
        let mut probes = Vec::new();
        for &(program, hook) in agent_ebpf::PROCESS_PROGRAMS {
            let status = match attach_tp_btf(&mut ebpf, &btf, program, hook) {
                Ok(()) => ProbeStatus { program, hook, attached: true, reason: None },
                Err(e) => match OPTIONAL.iter().find(|(p, _)| *p == program) {
                    Some((_, fallback)) => {
                        warn!(program, hook, error = %e, "optional hook not attached; {fallback}");
                        ProbeStatus { program, hook, attached: false, reason: Some(format!("{e}; {fallback}")) }
                    }
                    None => return Err(e),
                },
            };
            probes.push(status);
        }
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
        let read = |name: &'static str| -> Result<Vec<(RecordType, Vec<u64>)>, SensorError> {
            let map = self.ebpf.map(name).ok_or(SensorError::Missing(name))?;
            let arr: PerCpuArray<_, u64> = PerCpuArray::try_from(map).map_err(map_err(name))?;
            RecordType::ALL
                .iter()
                .map(|&t| Ok((t, arr.get(&(t as u32), 0).map_err(map_err(name))?.to_vec())))
                .collect()
        };
        Ok(KernelCounters {
            lost: read("loss")?,
            filtered: read("filtered")?.into_iter().map(|(t, v)| (t, v.iter().sum())).collect(),
        })
    }
}

fn attach_tp_btf(ebpf: &mut Ebpf, btf: &Btf, program: &'static str, hook: &'static str) -> Result<(), SensorError> {
    let err = |source| SensorError::Program { program, hook, source };
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or(SensorError::Missing(program))?
        .try_into()
        .map_err(err)?;
    prog.load(hook, btf).map_err(err)?;
    prog.attach().map_err(err)?;
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
