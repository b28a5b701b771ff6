//! The bpf(2) calls self-protection needs that aya 0.14 does not expose: walking every link
//! with its cgroup, a program's run count by fd, the ids of what the agent loaded.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use aya::Ebpf;

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
const BPF_LINK_GET_NEXT_ID: libc::c_long = 31;
/// `bpf_link_type::BPF_LINK_TYPE_CGROUP`
pub const LINK_TYPE_CGROUP: u32 = 3;

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> libc::c_long {
    // SAFETY: bpf(2) with a zero-initialised attr buffer larger than any member used here; the
    // kernel reads and writes at most its size.
    unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len() as u32) }
}

/// The id after `start` of a BPF link in the kernel, or None at the end.
fn next_link_id(start: u32) -> Option<u32> {
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&start.to_ne_bytes());
    (bpf(BPF_LINK_GET_NEXT_ID, &mut attr) == 0).then(|| u32::from_ne_bytes(attr[4..8].try_into().unwrap()))
}

fn link_fd(id: u32) -> Option<OwnedFd> {
    let mut attr = [0u8; 128];
    attr[..4].copy_from_slice(&id.to_ne_bytes());
    let fd = bpf(BPF_LINK_GET_FD_BY_ID, &mut attr);
    // SAFETY: a non-negative result is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Fills `info` (a bpf_*_info struct) for the object behind `fd`.
fn obj_info<T>(fd: BorrowedFd<'_>, info: &mut T) -> bool {
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    let mut attr = [0u8; 128];
    let a = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: size_of::<T>() as u32, info: info as *mut T as u64 };
    // SAFETY: InfoAttr is the `info` member of union bpf_attr; the buffer is larger than it.
    unsafe { std::ptr::write_unaligned(attr.as_mut_ptr().cast::<InfoAttr>(), a) };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) == 0
}

/// One BPF link as the kernel shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    pub id: u32,
    pub prog_id: u32,
    pub link_type: u32,
    /// For cgroup links: the cgroup, 0 once the link was detached (BPF_LINK_DETACH).
    pub cgroup_id: u64,
}

impl LinkState {
    /// A link still doing its work (a detached cgroup link lingers, attached to nothing).
    pub fn live(&self) -> bool {
        self.link_type != LINK_TYPE_CGROUP || self.cgroup_id != 0
    }
}

/// Every BPF link in the kernel whose program is one of `progs`.
pub fn links_of(progs: &[u32]) -> Vec<LinkState> {
    let mut out = Vec::new();
    let mut id = 0;
    while let Some(next) = next_link_id(id) {
        id = next;
        let Some(fd) = link_fd(id) else { continue };
        // SAFETY: bpf_link_info is integers and unions of integers: all zeroes is valid.
        let mut info: aya_obj::generated::bpf_link_info = unsafe { std::mem::zeroed() };
        if !obj_info(fd.as_fd(), &mut info) || !progs.contains(&info.prog_id) {
            continue;
        }
        let cgroup_id = if info.type_ == LINK_TYPE_CGROUP {
            // SAFETY: the kernel filled the cgroup member for a cgroup link.
            unsafe { info.__bindgen_anon_1.cgroup.cgroup_id }
        } else {
            0
        };
        out.push(LinkState { id: info.id, prog_id: info.prog_id, link_type: info.type_, cgroup_id });
    }
    out
}

/// (id, run count, total run time ns) of a loaded program; run counts move only while BPF
/// statistics are enabled (see [`StatsGuard`]).
pub fn prog_stats(fd: BorrowedFd<'_>) -> Option<(u32, u64, u64)> {
    // SAFETY: bpf_prog_info is integers and pointers-as-integers: all zeroes is valid.
    let mut info: aya_obj::generated::bpf_prog_info = unsafe { std::mem::zeroed() };
    obj_info(fd, &mut info).then_some((info.id, info.run_cnt, info.run_time_ns))
}

/// Keeps kernel BPF run-time statistics on (BPF_ENABLE_STATS) while it lives.
pub struct StatsGuard(#[allow(dead_code)] OwnedFd);

impl StatsGuard {
    pub fn enable() -> Result<Self, String> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime).map(Self).map_err(|e| crate::sensor::error_chain(&e))
    }
}

/// The agent's programs: (name, id, fd) of every loaded one.
pub fn programs(ebpf: &Ebpf) -> Vec<(String, u32, OwnedFd)> {
    let mut out = Vec::new();
    for (name, prog) in ebpf.programs() {
        let Ok(fd) = prog.fd() else { continue };
        let Ok(owned) = fd.as_fd().try_clone_to_owned() else { continue };
        if let Some((id, _, _)) = prog_stats(owned.as_fd()) {
            out.push((name.to_owned(), id, owned));
        }
    }
    out
}

/// Ids of every map of the object (from the programs' map lists, plus the object's own).
pub fn map_ids(ebpf: &Ebpf) -> Vec<u32> {
    let mut ids: Vec<u32> = ebpf
        .maps()
        .filter_map(|(_, m)| {
            let data: &aya::maps::MapData = map_data(m)?;
            data.info().ok().map(|i| i.id())
        })
        .collect();
    for (_, prog) in ebpf.programs() {
        if let Ok(info) = prog.info() {
            ids.extend(info.map_ids().ok().flatten().unwrap_or_default());
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn map_data(m: &aya::maps::Map) -> Option<&aya::maps::MapData> {
    use aya::maps::Map;
    Some(match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::PerCpuHashMap(d)
        | Map::LpmTrie(d)
        | Map::RingBuf(d)
        | Map::ArrayOfMaps(d) => d,
        _ => return None,
    })
}
